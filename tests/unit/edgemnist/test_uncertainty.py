"""The one uncertainty rule: at or below the confidence goes home, a Test camera sends everything."""

import numpy as np

from edge_app.settings import EdgeSettings
from edgemnist.model import CONFIDENCE as MODEL_CONFIDENCE
from edgemnist.uncertainty import CONFIDENCE, is_uncertain
from edgemnist.wire.messages import EdgeConfig


def test_at_the_threshold_is_uncertain_above_is_not():
    top = np.array([0.99, CONFIDENCE + 1e-9, CONFIDENCE, 0.2])
    assert is_uncertain(top).tolist() == [False, False, True, True]
    assert is_uncertain(top, 0.5).tolist() == [False, False, False, True]


def test_a_test_camera_sends_everything_other_cameras_follow_the_score():
    top = np.array([0.99, 0.1])
    assert is_uncertain(top, camera="TestCam-h").tolist() == [True, True]
    assert is_uncertain(top, camera="Cam-h").tolist() == [False, True]
    assert is_uncertain(top, camera="MyTest-h").tolist() == [False, True]


def test_every_default_is_the_one_constant():
    assert CONFIDENCE == MODEL_CONFIDENCE == EdgeSettings().confidence == EdgeConfig().confidence == 0.7
