"""Dashboards for the hub: live widgets, charts, an uncertain-image gallery and the Correction Station.

The notebooks in `notebooks/` only call into this package, so its logic is tested as code.
Needs the `dashboards` extra (ipywidgets, matplotlib, anywidget).
"""

from metro_app.dashboard.app import MetroDashboard, render_metro_views
from metro_app.dashboard.gallery import Gallery
from metro_app.dashboard.live import Ticker
from metro_app.dashboard.models import ModelsPanel
from metro_app.dashboard.monitor import HubMonitor
from metro_app.dashboard.station import LABELS, CorrectionStation, StationState

__all__ = [
    "LABELS",
    "CorrectionStation",
    "Gallery",
    "HubMonitor",
    "ModelsPanel",
    "MetroDashboard",
    "StationState",
    "Ticker",
    "render_metro_views",
]
