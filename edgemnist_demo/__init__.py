"""The laptop demo: starts the local broker, the hub and edge cameras as processes, and stops them.

It drives both apps through their commands (`metro-app`, `edge-app`), so it lives beside them, not in
the `edgemnist` core they share.
"""

from edgemnist_demo.run import DemoOptions, camera_plan, run_demo

__all__ = ["DemoOptions", "camera_plan", "run_demo"]
