"""The Correction Station's Load snapshot brings the page back in step with the kernel.

The browser test saw a station whose counter showed 24 images but whose card stayed blank: an
update sent while the page was still connecting was lost, and pressing Load snapshot set the
same values again, which ipywidgets does not send. Load snapshot now sends the state itself.
"""

from __future__ import annotations

from metro_app.dashboard.station import CorrectionStation
from metro_app.samples import make_image


class Hub:
    """The three images the station reads, with no stored labels."""

    def recent(self, view: str, n: int) -> list[dict]:
        return [{"tuple": make_image("CamA", k).to_dict()} for k in range(3)]

    def labels(self, image_id: str | None = None) -> list:
        return []

    def conflicts(self) -> list:
        return []

    def labellers(self) -> dict:
        return {"labellers": [], "images": 0, "conflicts": 0}


def test_load_snapshot_sends_the_card_and_counter_even_when_nothing_changed(monkeypatch) -> None:
    station = CorrectionStation(Hub())
    station.load_if_empty()  # the live thread's first load, whose updates the page may miss
    sent: list[str] = []
    for name, widget in (("caption", station.card.caption), ("frame", station.card.frame),
                         ("scores", station.card.scores), ("counter", station.counter)):  # fmt: skip
        monkeypatch.setattr(widget, "send_state", lambda key=None, name=name: sent.append(name))
    station.load_if_empty()  # already loaded: the live thread sends nothing again
    assert sent == []
    station.load()  # a person's Load snapshot: same images, same values
    assert set(sent) == {"caption", "counter", "frame", "scores"}
    assert 'class="metro-image-id"' in station.card.caption.value
