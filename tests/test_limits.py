import numpy as np
import pytest
import torch

from m3dhmr.conventions import KINEMATIC_JOINTS
from m3dhmr.hand.limits import JOINT_KIND_LIMITS, clamp_pose, joint_kind, pose_limits, within_limits


def within_naive(pose: np.ndarray) -> np.ndarray:
    out = []
    for p in pose:
        ok = True
        for k, j in enumerate(KINEMATIC_JOINTS[1:], start=1):
            lo, hi = JOINT_KIND_LIMITS[joint_kind(j)]
            for c in range(3):
                ok &= lo[c] <= p[3 * k + c] <= hi[c]
        out.append(ok)
    return np.array(out)


def test_kinds_hand_computed():
    assert [joint_kind(j) for j in (1, 2, 3)] == ["thumb_cmc", "thumb_mcp", "thumb_ip"]
    assert [joint_kind(j) for j in (5, 6, 7, 17)] == ["mcp", "pip", "dip", "mcp"]
    for bad in (0, 4, 21):
        with pytest.raises(ValueError):
            joint_kind(bad)
    lo, hi = pose_limits()
    assert lo.shape == hi.shape == (48,) and np.isinf(lo[:3]).all() and (lo[3:] < hi[3:]).all()
    # Index MCP flexion (pose entries 12..14 = kinematic joint 4) allows ~90 deg.
    assert KINEMATIC_JOINTS[4] == 5 and hi[12] > np.radians(85)
    assert all(lo[3 * k] < 0 < hi[3 * k] for k in range(1, 16))      # rest is inside


def test_within_and_clamp_vs_naive():
    rng = np.random.default_rng(0)
    pose = rng.normal(0, 0.6, size=(200, 48))
    np.testing.assert_array_equal(within_limits(pose), within_naive(pose))
    clamped = clamp_pose(pose)
    assert within_limits(clamped).all()
    inside = within_limits(pose)
    np.testing.assert_array_equal(clamped[inside], pose[inside])
    np.testing.assert_array_equal(clamped[:, :3], pose[:, :3])       # the global rotation is free
    t = torch.tensor(pose, requires_grad=True)
    ct = clamp_pose(t)
    np.testing.assert_allclose(ct.detach().numpy(), clamped)
    ct.sum().backward()
    assert torch.isfinite(t.grad).all()


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"\(N, 48\)"):
        within_limits(np.zeros((2, 45)))
    with pytest.raises(ValueError, match=r"\(N, 48\)"):
        clamp_pose(np.zeros(48))
