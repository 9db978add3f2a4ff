"""The per-hand quality score: hand-computed cases, a loop reference, flags and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from m3dhmr.detect import DetectedHand
from m3dhmr.detect.rois import RotatedSquare
from m3dhmr.inference import quality as Q


def open_hand() -> np.ndarray:
    """(21, 3) a flat hand, fingers up, thumb out to +x; palm (wrist -> middle MCP (1, -8)) = sqrt(65)."""
    j = np.zeros((21, 3))
    for k in range(4):
        base = np.array([3.0 - 2.0 * k, -8.0, 0.0])
        for i in range(4):
            j[5 + 4 * k + i] = base + [0.0, -3.0 * i, 0.0]
    for i in range(4):
        j[1 + i] = [2.0 + 2.0 * (i + 1), -1.5 * (i + 1), 0.0]
    return j


def test_hand_computed_scores():
    ref = open_hand()
    # perfect agreement: only the residual counts (4 px of a 128 px crop)
    q = Q.hand_quality(ref[:, :2], ref, 4.0, 128.0, landmarks3d=ref)
    assert q.landmark_error == 0 and q.finger_disagreement == 0
    assert q.score == pytest.approx(math.exp(-(4 / 128) / Q.RESIDUAL_SCALE)) and q.flag == "good"
    # every joint half a palm off: a factor e
    q = Q.hand_quality(ref[:, :2] + [math.sqrt(65) / 2, 0.0], ref, 0.0, 128.0, landmarks3d=ref)
    assert q.landmark_error == pytest.approx(0.5) and q.score == pytest.approx(math.exp(-1)) and q.flag == "fair"
    # the index finger folded in the prediction: one finger in another state
    bent = ref.copy()
    bent[6:9] = bent[5] + np.array([[0, 0, 3.0], [0, 3.0, 3.0], [0, 3.0, 0.0]])
    q = Q.hand_quality(ref[:, :2], bent, 0.0, 128.0, landmarks3d=ref)
    assert q.finger_disagreement == 1 and q.score == pytest.approx(math.exp(-1 / Q.FINGER_SCALE))


def test_landmark_error_matches_a_loop():
    rng = np.random.default_rng(0)
    ref = open_hand() + rng.normal(scale=0.3, size=(21, 3))
    pred2d = ref[:, :2] + rng.normal(scale=2.0, size=(21, 2))
    q = Q.hand_quality(pred2d, ref, 1.0, 64.0, landmarks3d=ref)
    palm = math.dist(ref[0, :2], ref[9, :2])
    naive = sum(math.dist(pred2d[j], ref[j, :2]) for j in range(21)) / 21 / palm
    assert q.landmark_error == pytest.approx(naive)
    assert q.residual == pytest.approx(1 / 64)


def test_flags():
    ref = open_hand()
    assert Q.hand_quality(ref[:, :2], ref, 2.0, 128.0).flag == "unchecked"  # no landmarks: a box was given
    assert Q.hand_quality(ref[:, :2], ref, 200.0, 128.0).flag == "poor"  # the registration is far off
    assert Q.hand_quality(ref[:, :2], ref, 1.0, 128.0, success=False, landmarks3d=ref).flag == "poor"
    far = Q.hand_quality(ref[:, :2] + 20.0, ref, 1.0, 128.0, landmarks3d=ref)
    assert far.flag == "poor" and far.score < Q.FAIR
    assert Q.hand_quality(ref[:, :2], ref, float("inf"), 128.0).score == 0.0
    assert "poor" in far.describe() and "palm" in far.describe()
    j = far.to_json()
    assert j["flag"] == "poor" and j["finger_disagreement"] == 0 and j["landmark_error_palm"] > 1


def test_bad_shapes():
    ref = open_hand()
    with pytest.raises(ValueError, match="joints2d"):
        Q.hand_quality(ref, ref, 1.0, 128.0)
    with pytest.raises(ValueError, match="landmarks3d"):
        Q.hand_quality(ref[:, :2], ref, 1.0, 128.0, landmarks3d=ref[:, :2])
    with pytest.raises(ValueError, match="crop_side"):
        Q.hand_quality(ref[:, :2], ref, 1.0, 0.0)


def test_landmarks_3d_scales_depth_like_the_image():
    hand = DetectedHand(box=np.zeros(4), landmarks=np.ones((21, 2)), depth=np.arange(21.0), handedness="right",
                        handedness_score=1.0, score=1.0, square=RotatedSquare(50.0, 50.0, 448.0, 0.3))
    lm = Q.landmarks_3d(hand)
    assert lm.shape == (21, 3)
    np.testing.assert_allclose(lm[:, 2], np.arange(21.0) * 2)  # a 448-px square read at 224 px
    np.testing.assert_allclose(lm[:, :2], 1.0)
