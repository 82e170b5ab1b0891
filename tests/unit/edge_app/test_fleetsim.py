"""The fleet simulator's cameras (issue 23): valid edge messages, counts that add up, drift on a share."""

from __future__ import annotations

import base64
from collections import Counter, defaultdict

import numpy as np
import pytest

from edge_app.fleetsim import FleetPlan, SimulatedFleet, camera_names
from edgemnist.prep import prepare_batch
from edgemnist.wire.messages import MetricsMessage, UncertainImage, parse_message, parse_timestamp

T0 = 1.7e9  # 2023-11: a fixed time the wire accepts (not in the future)


def run(plan: FleetPlan, seconds: float, workers: int = 1) -> list:
    out = []
    for w in range(workers):
        with SimulatedFleet(plan, w, workers) as fleet:
            fleet.begin(T0)
            now = T0
            while now < T0 + seconds:
                now += 0.25
                out += [(o, parse_message(o.value)) for o in fleet.due(now)]
    return out


def test_each_window_counts_the_uncertain_images_its_camera_sent():
    plan = FleetPlan(cameras=40, window=2, fps=20, uncertain_share=0.1, drift_share=0.25, seed=7)
    sent = run(plan, 6.0, workers=2)
    metrics = [m for _, m in sent if isinstance(m, MetricsMessage)]
    images = [m for _, m in sent if isinstance(m, UncertainImage)]
    assert all(o.camera.encode() and o.camera in (m.camera_metrics if o.is_metrics else {m.camera: 0})
               for o, m in sent)  # fmt: skip
    assert len({m.id for _, m in sent}) == len(sent)  # every message once
    assert Counter(m.single_camera for m in metrics) == dict.fromkeys(camera_names(plan), 3)
    closed = {m.single_camera: max(parse_timestamp(w.window_end).timestamp() for w in metrics
                                   if w.single_camera == m.single_camera) for m in metrics}  # fmt: skip
    counted = defaultdict(int)
    for m in metrics:
        counted[m.single_camera] += m.uncertain
    shipped = Counter(
        i.camera for i in images if parse_timestamp(i.timestamp).timestamp() <= closed[i.camera]
    )
    assert shipped == {c: n for c, n in counted.items() if n}
    scored = Counter()
    for m in metrics:
        scored[m.single_camera] += m.total
    assert all(
        abs(scored[c] - 20 * (closed[c] - T0)) <= 1 for c in scored
    )  # fps x the seconds its windows span
    assert all(m.labelled == m.total and 0 <= m.correct <= m.total for m in metrics)


def test_images_are_real_bundled_frames_with_their_prepared_image_and_an_uncertain_score():
    sent = run(FleetPlan(cameras=5, window=1, fps=30, uncertain_share=0.5, drift_share=0), 2.0)
    images = [m for _, m in sent if isinstance(m, UncertainImage)][:20]
    assert len(images) == 20
    for img in images:
        png = base64.b64decode(img.image)
        assert png.startswith(b"\x89PNG") and np.array_equal(prepare_batch([png])[0], img.prepared_image)
        assert img.result_probability <= 0.7 and img.true_class is not None
        assert img.predictions[img.result_class] == img.result_probability


def test_drifting_cameras_are_the_chosen_share_and_send_more_uncertain_images():
    plan = FleetPlan(cameras=200, window=1, fps=30, uncertain_share=0.05, drift_share=0.1, seed=1)
    with SimulatedFleet(plan) as fleet:
        drifting = {c.name for c in fleet._cams if c.drifts}
    assert len(drifting) == 20
    sent = run(plan, 3.0)
    per = Counter(m.camera for _, m in sent if isinstance(m, UncertainImage))
    drift_mean = sum(per[c] for c in drifting) / 20
    plain_mean = sum(n for c, n in per.items() if c not in drifting) / 180
    assert drift_mean > 1.5 * plain_mean


@pytest.mark.parametrize(("field", "value"), [("cameras", 0), ("uncertain_share", 1.5), ("window", 0)])
def test_a_bad_plan_names_its_flag(field, value):
    with pytest.raises(ValueError, match=f"--{field.replace('_', '-')}"):
        FleetPlan(**{field: value})
