"""The Voila dashboard in a real headless Chromium: live charts from both cameras, then the
Correction Station driven with keys and clicks, uploaded, and read back from the hub's store."""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from metro_app.store import Store
from tests.e2e.stack import ARTIFACTS, CHROMIUM_ARGS, Stack, chromium_path, voila_server

pytestmark = pytest.mark.e2e

DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"


@pytest.fixture(scope="module")
def voila(live_stack: Stack, tmp_path_factory) -> Iterator[str]:
    """`voila notebooks/render-metro-views.ipynb` on a free loopback port, pointed at the live stack."""
    pytest.importorskip(
        "voila", reason="the dashboards extra is not installed (pip install -e '.[dashboards]')"
    )
    with voila_server(live_stack.env(), tmp_path_factory.mktemp("voila") / "voila.log") as url:
        yield url


def _small_png(png: bytes, path: Path, limit: int = 200_000) -> None:
    """Save a screenshot for the README, palette-quantised so it stays under `limit` bytes."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    for width in (1280, 1024, 800, 640):
        scaled = img.resize((width, round(img.height * width / img.width)), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        scaled.quantize(colors=64).save(buf, format="PNG", optimize=True)
        if buf.tell() < limit:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(buf.getvalue())
            return


def test_dashboard_in_chromium(live_stack: Stack, voila: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    labeller = f"e2e-browser-{time.time_ns()}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        try:
            _drive(page, expect, live_stack, voila, labeller)
        finally:
            page.screenshot(path=str(ARTIFACTS / "dashboard-final.png"), full_page=True)
            (ARTIFACTS / "dashboard-console.log").write_text("\n".join(console))
            browser.close()
    _check_store(live_stack, labeller)


def _drive(page, expect, stack: Stack, url: str, labeller: str) -> None:  # noqa: ANN001 - Playwright types
    page.goto(url, timeout=120_000)
    # the Cameras section lists both cameras; a click opens one: its charts, from its own windows
    rows = page.locator(".metro-camera-row")
    for cam in stack.cameras:
        expect(rows.filter(has_text=cam)).to_have_count(1, timeout=120_000)
    panel = page.locator(".metro-camera-panel")
    for cam in reversed(stack.cameras):  # the first camera is opened last: its chart is the docs' picture
        rows.filter(has_text=cam).locator(".metro-camera-open").click()
        expect(panel.locator(".metro-camera-name")).to_have_text(cam, timeout=60_000)
        expect(panel.locator(".metro-window-images")).to_have_text(re.compile(r"^[1-9]\d*$"), timeout=60_000)
        expect(panel.locator("img").first).to_have_attribute(
            "src", re.compile("^blob:|^data:"), timeout=30_000
        )
    # one live accuracy over the labelled camera's last windows, charted per window
    expect(panel.locator(".metro-live-accuracy")).to_have_text(re.compile(r"^\d+\.\d%$"), timeout=60_000)
    expect(panel.locator(".metro-accuracy-chart img, img.metro-accuracy-chart").first).to_have_attribute(
        "src", re.compile("^blob:|^data:"), timeout=30_000
    )
    page.locator(".metro-monitor").scroll_into_view_if_needed()
    charts_png = page.screenshot()
    (ARTIFACTS / "dashboard-charts.png").write_bytes(charts_png)
    if os.environ.get("EDGE_MNIST_UPDATE_DOCS_SCREENSHOT") or not DOCS_SHOT.exists():
        _small_png(charts_png, DOCS_SHOT)

    station = page.locator(".metro-station")
    counter = station.locator(".metro-counter")
    expect(counter).to_have_text(re.compile(r"^0 of (2[0-9]|[3-9]\d|\d{3}) labelled"), timeout=90_000)
    station.locator(".metro-labeller input").fill(labeller)
    station.scroll_into_view_if_needed()
    # a person starts a session with Load snapshot (the live thread's first load may still be drawing)
    station.locator(".metro-reload").click()
    image_id = station.locator(".metro-image-id")
    try:
        expect(image_id).to_have_text(re.compile(r"\S"), timeout=60_000)
    except AssertionError as exc:  # say what the station shows instead of an image id
        raise AssertionError(f"{exc}\nstation shows: {station.inner_text()[:3000]}") from None

    def current() -> str:
        return image_id.inner_text()

    def moved_from(old: str) -> str:
        expect(image_id).not_to_have_text(old, timeout=30_000)
        return current()

    page.locator("body").click(position={"x": 5, "y": 5})  # focus the page, not a text field
    expected: dict[str, str] = {}
    i0 = current()
    page.keyboard.press("3")  # key: label 3, moves on
    expected[i0] = "3"
    i1 = moved_from(i0)
    station.locator(".metro-label-12").click()  # click: "Not a Digit"
    expected[i1] = "Not a Digit"
    i2 = moved_from(i1)
    page.keyboard.press("7")
    moved_from(i2)
    page.keyboard.press("Backspace")  # undo the 7: back on i2, unlabelled
    expect(image_id).to_have_text(i2, timeout=30_000)
    page.keyboard.press("8")
    expected[i2] = "8"
    i3 = moved_from(i2)
    page.keyboard.press(" ")  # skip i3
    i4 = moved_from(i3)
    station.locator(".metro-label-10").click()  # click: "Camera Error"
    expected[i4] = "Camera Error"
    i5 = moved_from(i4)
    page.keyboard.press("ArrowLeft")
    expect(image_id).to_have_text(i4, timeout=30_000)
    page.keyboard.press("ArrowRight")
    expect(image_id).to_have_text(i5, timeout=30_000)
    station.locator(".metro-label-5").click()
    expected[i5] = "5"
    moved_from(i5)
    expect(counter).to_have_text(re.compile(r"^5 of \d+ labelled, \d+ left"), timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "station-labelled.png"))

    upload = station.locator(".metro-upload")
    upload.click()
    expect(station.locator(".metro-upload-done")).to_have_text("Uploaded 5 labels", timeout=60_000)
    expect(upload).to_be_enabled()
    page.screenshot(path=str(ARTIFACTS / "station-uploaded.png"))
    # Retrain from the Models panel: the hub retrains on the stored labels and records the decision
    models = page.locator(".metro-models")
    models.scroll_into_view_if_needed()
    models.locator(".metro-retrain").click()
    expect(models.locator(".metro-retrain-done")).to_contain_text(
        re.compile("accepted|refused"), timeout=180_000
    )
    expect(models.locator(".metro-models-table tr")).to_have_count(
        3, timeout=30_000
    )  # header, base, candidate
    page.screenshot(path=str(ARTIFACTS / "dashboard-retrained.png"))
    page.locator(".metro-stop").click()  # the live updates end; the page stays usable
    expect(page.locator(".metro-ticker-status")).to_contain_text("stopped", timeout=30_000)
    (ARTIFACTS / "station-expected-labels.txt").write_text(repr(expected))
    stack.expected_labels = expected  # type: ignore[attr-defined]


def store_models(stack: Stack) -> list[dict]:
    from metro_app.client import ViewClient

    models = ViewClient(stack.api_url).models()
    assert len(models) == 2, models  # the edges' model, registered when the hub started, and the candidate
    return models


def _check_store(stack: Stack, labeller: str) -> None:
    expected = stack.expected_labels  # type: ignore[attr-defined]
    assert len(expected) == 5
    store = Store(stack.store_url)
    try:
        mine = [lab for lab in store.labels(0, 10_000) if lab["labeller"] == labeller]
    finally:
        store.close()
    assert {lab["image_id"]: lab["label"] for lab in mine} == expected
    assert len(mine) == 5, "one upload sends the latest label of each image once"
    assert all(lab["previous_prediction"] is not None and lab["model_version"] for lab in mine)
    registered = {m["status"] for m in store_models(stack)}
    # accepted: the new model is published and the first one superseded; refused: the first one serves on
    assert registered in ({"published", "superseded"}, {"serving", "refused"}), registered
    # reopening the station shows the stored labels
    from metro_app.client import ViewClient
    from metro_app.dashboard import CorrectionStation

    station = CorrectionStation(ViewClient(stack.api_url), size=500)
    station.load()
    shown = {t["id"]: station.state.label_of(t) for t in station.state.items if t["id"] in expected}
    assert shown == expected
