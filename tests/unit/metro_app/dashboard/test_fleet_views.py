"""The dashboard's fleet fixes without a browser (fake hub client): a page of cameras in the hub's
order, a filter, a camera opened by a click, a red header while the hub does not answer, the
gallery without confident Test-camera images, and the Labellers table read again after an upload."""

from __future__ import annotations

import pytest

from metro_app.client import ApiError
from metro_app.dashboard.gallery import Gallery
from metro_app.dashboard.monitor import HubMonitor
from metro_app.dashboard.station import CorrectionStation
from metro_app.samples import make_image, make_metrics


def camera(name: str, accuracy: float) -> dict:
    return {"name": name, "accuracy": accuracy, "accuracy_samples": 100, "uncertain_share": 0.02,
            "fleet_uncertain_share": 0.02, "images": 500, "uncertain": 10, "images_per_second": 5.0,
            "prep_p99": 0.001, "predict_p99": 0.002, "model_version": "m-1", "departs_from_fleet": False,
            "alerts": []}  # fmt: skip


class FleetHub:
    """A hub of 40 cameras that sorts, filters and pages as GET /cameras does; `down` makes it not answer."""

    def __init__(self) -> None:
        self.cams = [camera(f"Cam-{k:02d}", 0.5 + k / 100) for k in range(40)]
        self.down = False
        self.asked: list[dict] = []
        self.windows: dict[str, list[dict]] = {}
        self.images: dict[str, list[dict]] = {}

    def _up(self) -> None:
        if self.down:
            raise ApiError("GET /health: hub at http://127.0.0.1:1 unreachable (<urlopen error refused>)")

    def health(self, timeout: float | None = None) -> dict:
        self._up()
        return {"status": "ok", "uptime": 5.0, "consumer_lag": 0, "dlq": 0,
                "stored": {"metrics": 3, "images": 0, "labels": 0}}  # fmt: skip

    def page(self, view: str, after: int = 0, max: int = 100) -> dict:
        self._up()
        return {"items": [], "last_seq": 0}

    def fleet_summary(self, worst: int = 5) -> dict:
        return {
            "cameras": len(self.cams),
            "active": len(self.cams),
            "alerting": 0,
            "fleet_uncertain_share": 0.02,
        }

    def camera_page(self, *, limit: int, offset: int, sort: str, q: str | None = None) -> dict:
        self._up()
        self.asked.append({"limit": limit, "offset": offset, "sort": sort, "q": q})
        rows = [c for c in self.cams if not q or q.lower() in c["name"].lower()]
        key = {"accuracy": lambda c: (c["accuracy"], c["name"]), "name": lambda c: c["name"]}[sort]
        rows = sorted(rows, key=key)
        return {"items": rows[offset : offset + limit], "total": len(rows)}

    def camera(self, name: str, *, recent_windows: int = 0, recent_images: int = 0) -> dict:
        """Health; asked for, the camera's own newest windows and images, as GET /cameras/{name} gives them."""
        self.asked_camera = {"name": name, "windows": recent_windows, "images": recent_images}
        got = dict(next(c for c in self.cams if c["name"] == name))
        mine, imgs = self.windows.get(name, []), self.images.get(name, [])
        return got | {"recent_windows": mine[-recent_windows:], "recent_images": imgs[-recent_images:]}


def shown(monitor: HubMonitor) -> list[str]:
    return [r.name for r in monitor.list.rows if r.widget.layout.display != "none"]


def test_the_page_is_worst_first_stable_paged_and_filtered_and_a_click_opens_a_camera():
    hub = FleetHub()
    hub.cams[17]["accuracy"] = 0.2  # the worst
    monitor = HubMonitor(hub, page_size=10)
    monitor.refresh()
    first = shown(monitor)
    assert first[0] == "Cam-17" and len(first) == 10 and hub.asked[-1]["sort"] == "accuracy"
    assert (
        "cameras <b>1&ndash;10</b> of" in monitor.list.position.value
        and ">40<" in monitor.list.position.value
    )
    assert (
        monitor.selected == "Cam-17" and "Cam-17" in monitor.detail.title.value
    )  # the worst opens by itself
    monitor.refresh()
    assert shown(monitor) == first  # the same data: the same order
    monitor.list.next.click()
    assert hub.asked[-1]["offset"] == 10 and shown(monitor)[0] == "Cam-09"
    monitor.list.filter.value = "cam-3"
    assert hub.asked[-1] == {"limit": 10, "offset": 0, "sort": "accuracy", "q": "cam-3"}
    assert shown(monitor) == [f"Cam-3{k}" for k in range(10)]
    monitor.list.rows[4].button.click()  # a person opens Cam-34
    assert monitor.selected == "Cam-34" and "Cam-34" in monitor.detail.title.value
    assert "84.0%" in monitor.detail.stats.value  # its one live accuracy, from the hub when no window is held


def test_an_opened_camera_draws_its_own_windows_and_images_asked_of_the_hub_by_name():
    """In a fleet of 10,000 the page's newest windows are other cameras'; the detail asks for its own."""
    hub = FleetHub()
    hub.windows["Cam-05"] = [make_metrics("Cam-05", n, correct=10 + n % 10).to_dict() for n in range(90)]
    hub.images["Cam-05"] = [make_image("Cam-05", n).to_dict() for n in range(9)]
    monitor = HubMonitor(hub, page_size=10)
    monitor.refresh()
    monitor.open("Cam-05")
    assert hub.asked_camera == {"name": "Cam-05", "windows": 60, "images": 6}
    assert monitor.detail.accuracy_points == 60 and monitor.detail.window_images == 20
    assert "its 6 newest uncertain images" in monitor.detail.thumbs_caption.value
    assert "20</span> images in its last window" in monitor.detail.title.value
    assert "over the last 5 windows" in monitor.detail.stats.value  # the live accuracy of its newest windows
    parsed = dict(monitor._windows)
    monitor.refresh()
    assert all(monitor._windows[k] is m for k, m in parsed.items())  # a window is parsed once


def test_a_hub_that_stops_answering_turns_the_header_red_and_says_since_when():
    hub = FleetHub()
    monitor = HubMonitor(hub, page_size=5)
    monitor.refresh()
    assert "Hub ok" in monitor.health_box.value and "metro-hub-down" not in monitor.health_box.value
    hub.down = True
    for failed in (1, 2):
        with pytest.raises(ApiError):
            monitor.refresh()
        assert (
            "metro-hub-down" in monitor.health_box.value
            and "hub unreachable since" in monitor.health_box.value
        )
        assert f"({failed} refresh" in monitor.health_box.value and "&lt;urlopen" in monitor.health_box.value
    since = monitor.unreachable_since
    hub.down = False
    monitor.refresh()
    assert "Hub ok" in monitor.health_box.value and monitor.unreachable_since is None and since is not None


class ImageHub:
    def __init__(self, items: list[dict]) -> None:
        self.items = items

    def page(self, view: str, after: int = 0, max: int = 100) -> dict:
        items = [{"seq": k + 1, "tuple": t} for k, t in enumerate(self.items)][after:][:max]
        return {"items": items, "last_seq": len(self.items)}


def test_the_gallery_leaves_out_what_a_test_camera_was_sure_of():
    sure = make_image("TestCam", 1).to_dict() | {"result_probability": 1.0}
    unsure = make_image("TestCam", 2).to_dict() | {"result_probability": 0.41}
    other = make_image("CamA", 3).to_dict() | {"result_probability": 0.65}
    gallery = Gallery(ImageHub([sure, unsure, other]))
    gallery.refresh()
    assert [t["result_probability"] for t in gallery.items] == [0.41, 0.65]
    assert (
        gallery.confident_left_out == 1
        and ">1</span> confident images from Test cameras" in gallery.position.value
    )


class LabelHub:
    def __init__(self) -> None:
        self.stored: list[tuple[str, str]] = []

    def add_label(self, image_id: str, label: str, labeller: str, **kw) -> dict:
        self.stored.append((image_id, label))
        return {"image_id": image_id, "label": label, "labeller": labeller}

    def labellers(self) -> dict:
        n = len(self.stored)
        return {"images": n, "conflicts": 1 if n else 0,
                "labellers": [{"labeller": "ana", "labels": n, "compared": 0, "agreement": None, "conflicts": 0}]}  # fmt: skip


def test_the_labellers_table_is_read_again_after_an_upload_and_says_what_waits():
    hub = LabelHub()
    station = CorrectionStation(hub)  # type: ignore[arg-type]
    station.state.items = [make_image("CamA", k).to_dict() for k in range(2)]
    station.state.choose("3")
    station.state.choose("5")
    station.upload(wait=True)
    assert len(hub.stored) == 2
    text = station.labellers.value
    assert 'class="metro-labelled-images">2<' in text and "<td>ana</td><td>2</td>" in text
    assert "wait for a second opinion" in text and "left out of retrain" not in text


def test_the_header_of_an_api_hub_says_it_ingests_nothing_instead_of_a_lag() -> None:
    """Issue 23: a dashboard pointed at a `--no-ingest` hub read "lag None"."""
    from metro_app.dashboard.monitor import health_html

    base = {"status": "ok", "uptime": 5.0, "dlq": 0, "stored": {"metrics": 7, "images": 3, "labels": 1}}
    api = health_html({**base, "consumer_lag": None, "consumer": {"ingest": False}})
    assert "API hub, no ingest" in api and "lag" not in api and "7 metrics windows" in api
    ingesting = health_html({**base, "consumer_lag": 12, "consumer": {"ingest": True}})
    assert "lag 12" in ingesting and "API hub" not in ingesting
