import math

import numpy as np
import pytest
import torch

from m3dhmr.geometry.camera import project


def _naive_project(points, K):
    out = np.empty(points.shape[:-1] + (2,))
    for idx in np.ndindex(points.shape[:-1]):
        p = K[idx[:-1]] @ points[idx] if K.ndim > 2 else K @ points[idx]
        out[idx] = p[:2] / p[2]
    return out


def test_project_hand_computed():
    K = np.array([[100.0, 0, 50], [0, 200.0, 20], [0, 0, 1]])
    uv = project(np.array([[0.1, -0.2, 2.0]]), K)
    np.testing.assert_allclose(uv, [[100 * 0.05 + 50, 200 * -0.1 + 20]])


def test_project_matches_loop_numpy_and_torch():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-0.2, 0.2, (4, 7, 3)) + [0, 0, 0.8]
    K = np.tile(np.array([[300.0, 0.5, 60], [0, 310.0, 70], [0, 0, 1]]), (4, 1, 1))
    K[:, 0, 0] += rng.uniform(0, 50, 4)
    ref = _naive_project(pts, K)
    np.testing.assert_allclose(project(pts, K), ref, rtol=1e-12)
    out_t = project(torch.from_numpy(pts), torch.from_numpy(K))
    assert isinstance(out_t, torch.Tensor) and out_t.shape == (4, 7, 2)
    np.testing.assert_allclose(out_t.numpy(), ref, rtol=1e-12)
    # A single K broadcasts over the batch.
    np.testing.assert_allclose(project(pts, K[0]), _naive_project(pts, K[0]), rtol=1e-12)


def test_project_depth_handling():
    K = np.eye(3)
    behind = np.array([[0.1, 0.2, -1.0]])
    np.testing.assert_allclose(project(behind, K), [[-0.1, -0.2]])  # mirrored, as the formula says
    np.testing.assert_allclose(project(behind, K, min_depth=0.5), [[0.2, 0.4]])
    t = torch.tensor([[0.1, 0.2, 0.0]], requires_grad=True)
    project(t, torch.eye(3), min_depth=1e-3).sum().backward()
    assert torch.isfinite(t.grad).all()


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="points"):
        project(np.zeros((4, 2)), np.eye(3))
    with pytest.raises(ValueError, match="K"):
        project(np.zeros((4, 3)), np.eye(4))


def test_intrinsics_from_fov_hand_case():
    from m3dhmr.geometry.camera import intrinsics_from_fov

    K = intrinsics_from_fov(100, 200, 90.0)  # tan(45 deg) = 1: f = W / 2
    np.testing.assert_allclose(K, [[100.0, 0, 99.5], [0, 100.0, 49.5], [0, 0, 1]])
    # A point on the image's right edge direction projects to the last pixel's edge.
    np.testing.assert_allclose(project(np.array([[1.0, 0.0, 1.0]]), K)[0], [199.5, 49.5])
    with pytest.raises(ValueError, match="field of view"):
        intrinsics_from_fov(10, 10, 180.0)


@pytest.mark.parametrize("fov", [0.0, 0.99, 170.01, 180.0, float("nan"), float("inf")])
def test_intrinsics_from_fov_limits(fov):
    from m3dhmr.geometry.camera import intrinsics_from_fov

    with pytest.raises(ValueError, match=r"^fov_deg: field of view must be in \[1, 170\] degrees, got "):
        intrinsics_from_fov(10, 10, fov)
    with pytest.raises(ValueError, match=r"^--fov: field of view must be in \[1, 170\] degrees"):
        intrinsics_from_fov(10, 10, fov, where="--fov")


def test_intrinsics_from_fov_edges_and_size():
    from m3dhmr.geometry.camera import intrinsics_from_fov

    for fov in (1.0, 170.0):  # the limits themselves are allowed
        K = intrinsics_from_fov(4, 8, fov)
        assert K[0, 0] == pytest.approx(4.0 / math.tan(math.radians(fov) / 2))
    with pytest.raises(ValueError, match="image size must be positive, got 0x10"):
        intrinsics_from_fov(10, 0, 60.0)
