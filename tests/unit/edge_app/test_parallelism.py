"""`edge-app run --parallelism 2`: two scoring processes, and still every message in order, each once."""

from __future__ import annotations

import os
import subprocess

from edgemnist.wire.messages import MetricsMessage, UncertainImage, parse_message
from tests.helpers import EDGE_APP


def dry_run(model_path, tmp_path, parallelism: int) -> list:
    argv = [*EDGE_APP, "run", "--dry-run", "--repeat", "1", "--camera", "TestPar", "--model", str(model_path),
            "--batch-size", "16", "--metrics-duration", "0.5", "--parallelism", str(parallelism),
            "--outbox", str(tmp_path / f"o{parallelism}.db")]  # fmt: skip
    env = {**os.environ, "EDGE_MNIST_STATE_DIR": str(tmp_path)}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [parse_message(line) for line in proc.stdout.splitlines()]


def test_parallelism_2_keeps_the_order_and_the_counts_of_one_process(model_path, tmp_path):
    one, two = dry_run(model_path, tmp_path, 1), dry_run(model_path, tmp_path, 2)
    images = [m for m in two if isinstance(m, UncertainImage)]
    metrics = [m for m in two if isinstance(m, MetricsMessage)]
    # a Test camera sends every image home: all 1,000, in the camera's order, each once
    assert [m.count for m in images] == list(range(1000))
    assert len({m.id for m in images}) == 1000
    # every image counted by exactly one window, the windows in order
    assert sum(m.total for m in metrics) == 1000 and len(metrics) >= 1
    assert [m.id.rsplit("/", 1)[1] for m in metrics] == [f"m{i}" for i in range(1, len(metrics) + 1)]
    assert [m.window_start for m in metrics] == sorted(m.window_start for m in metrics)
    assert {m.config.classify_parallel for m in metrics} == {2}
    # the same scores as one process: parallel workers change where, not what
    single = {
        m.count: (m.result_class, round(m.result_probability, 9))
        for m in one
        if isinstance(m, UncertainImage)
    }
    assert {m.count: (m.result_class, round(m.result_probability, 9)) for m in images} == single
