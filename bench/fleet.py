"""Fleet at size: N simulated cameras (default 10,000) against K hubs on one PostgreSQL.

The same run as `edge-mnist fleet-sim` (`edgemnist_demo/fleetcli.py`, docs/fleet.md): per hub count
(`--hubs 1,2,3`) a fresh topic with `--partitions` (keyed by camera) and database, K `metro-app run`
processes in one group, `--workers` load processes sending the edge's own messages, view requests
under that load; then a drain. Prints a table (offered vs stored messages/s, lag, edge-to-store
and view latency, hub RSS, store growth, rows = messages sent, what saturated first) and ends with
one JSON line. The machine is shared: CPU figures are per process group, and the machine's load
is printed beside them.

    .venv/bin/python bench/fleet.py [--cameras 10000] [--duration 60] [--hubs 1,2,3] [--partitions 12]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgemnist_demo.fleetcli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
