import numpy as np
import pytest
import torch

from m3dhmr import conventions as cv
from m3dhmr.hand import SHAPE_NAMES, SHAPE_RANGES, load_open_hand, sample_poses, sample_shapes
from m3dhmr.conventions import KINEMATIC_JOINTS
from m3dhmr.hand.limits import within_limits
from m3dhmr.hand.sampler import ALL_KINDS


def flexion(pose: np.ndarray, finger: str) -> np.ndarray:
    rows = [KINEMATIC_JOINTS.index(j) for j in cv.FINGER_JOINTS[finger][:3]]
    return pose.reshape(len(pose), 16, 3)[:, rows, 0].sum(1)


def test_poses_within_limits_for_every_kind():
    rng = np.random.default_rng(0)
    for kind in (None,) + ALL_KINDS:
        p = sample_poses(300, rng, kind)
        assert p.shape == (300, 48) and p.dtype == np.float64
        assert within_limits(p).all(), kind
        assert (p[:, :3] == 0).all()
        assert np.isfinite(p).all() and p.std(0)[3:].min() > 0


def test_kinds_mean_what_they_say():
    rng = np.random.default_rng(1)
    fist, open_, point = (sample_poses(100, rng, k) for k in ("fist", "open", "point"))
    assert flexion(fist, "middle").mean() > 3.0 > 0.6 > flexion(open_, "middle").mean()
    assert flexion(point, "index").mean() < 0.6 and flexion(point, "ring").mean() > 3.0


def test_deterministic_and_errors():
    a = sample_poses(5, np.random.default_rng(7))
    b = sample_poses(5, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert sample_poses(0, np.random.default_rng(0)).shape == (0, 48)
    with pytest.raises(ValueError, match="kind"):
        sample_poses(2, np.random.default_rng(0), "wave")


def test_shapes_within_ranges():
    s = sample_shapes(500, np.random.default_rng(2))
    assert s.shape == (500, len(SHAPE_NAMES))
    for i, n in enumerate(SHAPE_NAMES):
        lo, hi = SHAPE_RANGES[n]
        assert lo <= s[:, i].min() and s[:, i].max() <= hi and s[:, i].std() > 0.2 * (hi - lo)


def test_sampled_hands_are_plausible():
    hand = load_open_hand(torch.float64)
    rng = np.random.default_rng(3)
    out = hand(torch.tensor(sample_poses(64, rng)), torch.tensor(sample_shapes(64, rng)))
    length = (out.joints[:, 12] - out.joints[:, 0]).norm(dim=-1)
    assert torch.isfinite(out.vertices).all() and length.max() < 0.22
    # Default shape, rest: wrist to middle tip in the adult range.
    rest = hand(torch.zeros(1, 48, dtype=torch.float64)).joints
    assert 0.16 <= (rest[0, 12] - rest[0, 0]).norm() <= 0.21


def test_pinch_brings_thumb_and_index_together():
    hand = load_open_hand(torch.float64)
    rng = np.random.default_rng(4)
    pinch = hand(torch.tensor(sample_poses(64, rng, "pinch"))).joints
    open_ = hand(torch.tensor(sample_poses(64, rng, "open"))).joints
    gap = lambda j: (j[:, 4] - j[:, 8]).norm(dim=-1).median()  # noqa: E731
    assert gap(pinch) < 0.03 < 0.06 < gap(open_)
