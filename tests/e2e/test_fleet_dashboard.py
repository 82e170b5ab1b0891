"""The Voila dashboard in headless Chromium against a hub holding 1,000 simulated cameras.

The cameras' metrics windows are written into the hub's store (the store's own write path, which
keeps each camera's health row) before the hub starts on it, so the page reads a fleet-sized hub
at once. Then: the worst camera is on top, the filter finds a named camera and a click opens it,
the Models panel shows the model the fleet runs (status serving), and stopping the hub turns the
header red.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgemnist.model import load_model
from metro_app.samples import make_metrics
from metro_app.store import Store
from metro_app.testing import HubProcess
from tests.e2e.stack import ARTIFACTS, CHROMIUM_ARGS, chromium_path, voila_server
from tests.helpers import topic_names

pytestmark = pytest.mark.e2e

CAMERAS = 1000
WORST = "Fleet-0421"  # live accuracy 31 %, every other camera 80-99 %
NAMED = "Fleet-0777"


def fleet_windows(cameras: int = CAMERAS, windows: int = 3) -> list:
    """`windows` labelled metrics windows per camera; camera k is right on 80 + k % 20 of 100 images."""
    out = []
    for k in range(cameras):
        name = f"Fleet-{k:04d}"
        correct = 31 if name == WORST else 80 + k % 20
        out += [make_metrics(name, n, images=100, correct=correct, run="sim") for n in range(windows)]
    return out


@pytest.fixture(scope="module")
def fleet_hub(kafka, kafka_settings, model_path: Path, tmp_path_factory) -> Iterator[HubProcess]:
    tmp = tmp_path_factory.mktemp("fleet-dashboard")
    store_url = f"sqlite:///{tmp}/hub.db"
    store = Store(store_url)
    try:
        store.write_batch(fleet_windows(), [])
    finally:
        store.close()
    topic = topic_names("fleet-dash")("events")
    hub = HubProcess(
        kafka.bootstrap_servers, topic, store_url, tmp / "hub.log", extra=["--model", str(model_path)]
    ).start()
    try:
        yield hub
    finally:
        hub.stop()


def test_fleet_dashboard_in_chromium(fleet_hub: HubProcess, model_path: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert fleet_hub.client.camera_page(limit=1)["total"] == CAMERAS
    serving = load_model(model_path).version
    env = {"EDGE_MNIST_API_URL": fleet_hub.client.base, "EDGE_MNIST_API_TOKEN": fleet_hub.token}
    with voila_server({**os.environ, **env}, tmp_path / "voila-fleet.log") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(url, timeout=120_000)
            rows = page.locator(".metro-camera-row")
            # worst first: the lowest live accuracy on top of the first page, of all 1,000
            expect(rows.first).to_contain_text(WORST, timeout=120_000)
            expect(rows.first).to_contain_text("31.0%")
            expect(page.locator(".metro-camera-total")).to_have_text(str(CAMERAS))
            # the worst camera opens by itself
            panel = page.locator(".metro-camera-panel")
            expect(panel.locator(".metro-camera-name")).to_have_text(WORST, timeout=60_000)
            # the Models panel shows the model every camera runs, registered when the hub started
            models = page.locator(".metro-models-table")
            expect(models).to_contain_text(serving, timeout=60_000)
            expect(models.locator("tr").filter(has_text=serving)).to_contain_text("serving")
            page.screenshot(path=str(ARTIFACTS / "fleet-dashboard.png"))
            # the filter finds a named camera; a click opens it
            box = page.locator(".metro-camera-filter input")
            box.fill(NAMED)
            box.press("Enter")
            expect(page.locator(".metro-camera-total")).to_have_text("1", timeout=30_000)
            visible = page.locator(".metro-camera-row:visible")
            expect(visible).to_have_count(1, timeout=30_000)
            expect(visible).to_contain_text(NAMED)
            visible.locator(".metro-camera-open").click()
            expect(panel.locator(".metro-camera-name")).to_have_text(NAMED, timeout=30_000)
            expect(panel.locator(".metro-live-accuracy")).to_have_text(
                "97.0%", timeout=30_000
            )  # 777 % 20 = 17
            # its own windows, asked of the hub by name: the page's newest 400 are other cameras'
            expect(panel.locator(".metro-accuracy-chart")).to_be_visible(timeout=30_000)
            expect(panel.locator(".metro-window-images")).to_have_text("100")
            expect(panel).to_contain_text("over the last 3 windows")
            # a hub that stops answering: the header turns red within two refreshes
            fleet_hub.stop()
            down = page.locator(".metro-hub-down")
            expect(down).to_contain_text(
                re.compile(r"hub unreachable since \d\d:\d\d:\d\d UTC \([12] refresh(es)? failed"),
                timeout=60_000,
            )
            page.screenshot(path=str(ARTIFACTS / "fleet-dashboard-hub-down.png"))
        finally:
            page.screenshot(path=str(ARTIFACTS / "fleet-dashboard-final.png"), full_page=True)
            browser.close()
