"""Rotation matrices and axis-angle (:mod:`m3dhmr.geometry.rotations`)."""

import numpy as np
import pytest

from m3dhmr.geometry import rotations


def test_rotation_to_axis_angle_matches_scipy():
    from scipy.spatial.transform import Rotation

    mats = list(Rotation.random(50, random_state=0).as_matrix())
    for angle in (0.0, 1e-9, 1e-4, np.pi / 2, np.pi - 1e-7, np.pi):
        for axis in ([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 2, -2]):
            mats.append(Rotation.from_rotvec(np.array(axis) / np.linalg.norm(axis) * angle).as_matrix())
    for R in mats:
        rv = rotations.rotation_to_axis_angle(R)
        assert np.linalg.norm(rv) <= np.pi + 1e-12
        np.testing.assert_allclose(Rotation.from_rotvec(rv).as_matrix(), R, atol=1e-12)
    # Hand case: 90 degrees about z.
    np.testing.assert_allclose(rotations.rotation_to_axis_angle(rotations.rot_z(np.pi / 2)), [0, 0, np.pi / 2], atol=1e-15)


def test_hand_computed_rotations():
    x, y, z = np.eye(3)
    np.testing.assert_allclose(rotations.rot_z(np.pi / 2) @ x, y, atol=1e-15)   # x -> y about z
    np.testing.assert_allclose(rotations.rot_x(np.pi / 2) @ y, z, atol=1e-15)   # y -> z about x
    np.testing.assert_allclose(rotations.rot_y(np.pi / 2) @ z, x, atol=1e-15)   # z -> x about y
    np.testing.assert_allclose(rotations.rotation_to_axis_angle(rotations.rot_z(0.3)), [0, 0, 0.3], atol=1e-12)
    np.testing.assert_allclose(rotations.rotation_to_axis_angle(np.eye(3)), 0.0, atol=1e-15)
    with pytest.raises(ValueError, match="shape"):
        rotations.rotation_to_axis_angle(np.eye(2))


def test_random_rotation_is_a_rotation_and_matches_a_naive_quaternion_formula():
    rng = np.random.default_rng(0)
    for _ in range(20):
        R = rotations.random_rotation(rng)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
    # The same draw, turned into a matrix by scipy from the quaternion (x, y, z, w order).
    from scipy.spatial.transform import Rotation

    q = np.random.default_rng(5).standard_normal(4)
    ref = Rotation.from_quat([q[1], q[2], q[3], q[0]]).as_matrix()
    np.testing.assert_allclose(rotations.random_rotation(np.random.default_rng(5)), ref, atol=1e-12)


def _rot_naive(axis: int, a: float) -> np.ndarray:
    """Rodrigues' formula about a coordinate axis, one angle at a time."""
    k = np.zeros(3)
    k[axis] = 1.0
    Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(a) * Kx + (1 - np.cos(a)) * Kx @ Kx


@pytest.mark.parametrize("axis,fn", [(0, "rot_x"), (1, "rot_y"), (2, "rot_z")])
def test_batched_rotations_match_the_loop_numpy_and_torch(axis, fn):
    import torch

    f = getattr(rotations, fn)
    angles = np.random.default_rng(axis).uniform(-4, 4, (2, 5))
    ref = np.stack([[_rot_naive(axis, a) for a in row] for row in angles])            # (2, 5, 3, 3)
    single = np.stack([[f(float(a)) for a in row] for row in angles])
    np.testing.assert_allclose(single, ref, atol=1e-15)
    out_np = f(angles)
    assert isinstance(out_np, np.ndarray) and out_np.shape == (2, 5, 3, 3) and out_np.dtype == np.float64
    np.testing.assert_allclose(out_np, ref, atol=1e-15)
    for dtype in (torch.float64, torch.float32):
        out_t = f(torch.as_tensor(angles, dtype=dtype))
        assert isinstance(out_t, torch.Tensor) and out_t.shape == (2, 5, 3, 3) and out_t.dtype == dtype
        np.testing.assert_allclose(out_t.double().numpy(), ref, atol=1e-6 if dtype == torch.float32 else 1e-15)
    # A scalar (Python or NumPy, 0-d included) gives one (3, 3) float64 matrix.
    for a in (0.3, np.float64(0.3), np.array(0.3)):
        assert f(a).shape == (3, 3) and f(a).dtype == np.float64
    # Empty batches keep their shape.
    assert f(np.zeros(0)).shape == (0, 3, 3) and f(torch.zeros(0)).shape == (0, 3, 3)


def test_rot_z_gradient_is_finite_and_checked():
    import torch

    a = torch.tensor([0.0, 0.4, -2.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rotations.rot_z, (a,))
