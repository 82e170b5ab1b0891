"""A model trained once per session, as `edge-mnist train` makes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgemnist.data import load_bundled
from edgemnist.model import evaluate, load_model, save_model, train_model


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models")
    held_out = load_bundled("stream")
    estimator = train_model(load_bundled("train"), progress=False)
    skops_path, _ = save_model(estimator, out, dataset="bundled", n_train=4000, n_test=len(held_out.images),
                               accuracy=0.0, uncertain_share=0.0)
    scores = evaluate(load_model(skops_path), held_out)
    assert scores["accuracy"] >= 0.96
    return skops_path
