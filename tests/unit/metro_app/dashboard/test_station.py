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

    def rollouts(self, max: int = 100) -> list:
        return []


class ShadowHub(Hub):
    """Five images, the middle one a disagreement of m-2, which runs in shadow on CamA."""

    def recent(self, view: str, n: int) -> list[dict]:
        items = [make_image("CamA", k).to_dict() for k in range(5)]
        items[2] |= {"shadow_version": "m-2", "shadow_predicted": 7, "result_probability": 0.99}
        return [{"tuple": t} for t in items]

    def rollouts(self, max: int = 100) -> list:
        shadow = {"needed": 7, "candidate_right": 9, "serving_right": 4, "disagreements": 30}
        return [{"rollout": 4, "version": "m-2", "stage": "shadow", "targets": ["CamA"], "shadow": shadow}]


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


def test_the_disagreements_of_a_running_shadow_stage_come_first_with_both_predictions() -> None:
    station = CorrectionStation(ShadowHub())  # default order: least confident first
    station.load()
    first = station.state.items[0]
    assert first["shadow_version"] == "m-2", "the most confident image, but a disagreement: first"
    assert [t["result_probability"] for t in station.state.items[1:]] == sorted(
        t["result_probability"] for t in station.state.items[1:]
    )
    caption = station.card.caption.value
    assert f"serving model says {first['result_class']}" in caption and "says 7" in caption
    assert "<b>7 more labels</b> decide the canary on CamA" in station.shadow_needs.value
    station.show_shadow([])  # the stage ended: the banner goes
    assert station.shadow_needs.value == ""
