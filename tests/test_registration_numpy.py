"""The NumPy twin of the camera-space registration against the torch original.

Both run the same algorithm in float64 and differ only in rounding (summation order).
Tolerance on translations: 1e-8 m. Typically they agree to ~1e-15 m, but where the
Levenberg-Marquardt test ``cost_new <= cost`` compares two costs equal to the last bit
(at convergence, while the Huber IRLS steps are still a few nanometres long), the two
can take different branches; measured over 19200 noisy samples: median 3e-15 m, 99.9 %
below 1.3e-9 m, max 2.5e-9 m. Inlier masks and success flags must be identical.
"""

import warnings

import numpy as np
import pytest
import torch
from registration_cases import hand_cases, with_outliers

from m3dhmr.geometry import RegistrationResult, RegistrationSettings, register_camera_space_numpy
from m3dhmr.geometry.camera import project
from m3dhmr.geometry.registration import register_camera_space
from m3dhmr.geometry.registration_numpy import SOLVE3_LOOP_MAX_B, solve3

T_ATOL = 1e-8   # metres; see the module docstring


def _noisy(B, seed, noise_px=0.5, dtype=torch.float64):
    X, t, K, uv = hand_cases(B, seed=seed, dtype=dtype)
    g = torch.Generator().manual_seed(seed + 1000)
    return X, t, K, uv + torch.randn(uv.shape, generator=g, dtype=dtype) * noise_px


def _both(X, uv, K, V=None, weights=None, **settings):
    """Run the torch and the NumPy registration on the same (torch) inputs."""
    st = RegistrationSettings(**settings)
    ref = register_camera_space(X, uv, K, V, weights=weights, settings=st)
    kw_np = {"weights": None if weights is None else weights.numpy(), "settings": st}
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # degenerate input must not warn either
        res = register_camera_space_numpy(X.numpy(), uv.numpy(), K.numpy(), None if V is None else V.numpy(), **kw_np)
    return ref, res


def _assert_same(ref, res, t_atol=T_ATOL):
    assert isinstance(res, RegistrationResult) and isinstance(res.translation, np.ndarray)
    np.testing.assert_array_equal(res.success, ref.success.numpy())
    np.testing.assert_array_equal(res.inliers, ref.inliers.numpy())
    assert res.success.dtype == bool and res.inliers.dtype == bool
    for name in ("translation", "joints", "reprojection_error"):
        a, b = getattr(ref, name).numpy(), getattr(res, name)
        assert b.dtype == a.dtype and b.shape == a.shape, name
    np.testing.assert_allclose(res.translation, ref.translation.numpy(), rtol=0, atol=t_atol)
    np.testing.assert_allclose(res.joints, ref.joints.numpy(), rtol=0, atol=t_atol)
    np.testing.assert_allclose(res.reprojection_error, ref.reprojection_error.numpy(), rtol=1e-6, atol=1e-6)
    if ref.vertices is None:
        assert res.vertices is None
    else:
        assert res.vertices.dtype == ref.vertices.numpy().dtype
        np.testing.assert_allclose(res.vertices, ref.vertices.numpy(), rtol=0, atol=t_atol)
    return np.abs(res.translation.astype(np.float64) - ref.translation.double().numpy()).max(-1)


def test_parity_well_posed_batch_with_vertices():
    X, _, K, uv = _noisy(16, seed=11)
    V = torch.randn(16, 50, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 0.05
    ref, res = _both(X, uv, K, V)
    d = _assert_same(ref, res)
    assert res.success.all() and np.median(d) < 1e-12
    np.testing.assert_allclose(res.vertices, V.numpy() + res.translation[:, None], rtol=0, atol=1e-15)
    # Without vertices: same numbers, vertices None.
    ref2, res2 = _both(X, uv, K)
    _assert_same(ref2, res2)
    assert res2.vertices is None
    np.testing.assert_array_equal(res2.translation, res.translation)


def test_parity_20_percent_outliers():
    X, _, K, uv = _noisy(16, seed=12)
    uv_bad, mask = with_outliers(uv, 4, seed=13)      # 4 of 21 joints, 30-80 px off
    ref, res = _both(X, uv_bad, K)
    _assert_same(ref, res)
    assert res.success.all()
    assert not (res.inliers & mask.numpy()).any()  # the outliers were really dropped (in both)
    assert (res.inliers.sum(1) < 21).all()


@pytest.mark.parametrize("kw", [{"huber_px": 0.0}, {"outlier_rounds": 0}, {"iterations": 8, "refine_iterations": 3},
                                {"min_inliers": 18, "outlier_px": 2.0}])
def test_parity_other_parameters(kw):
    X, _, K, uv = _noisy(16, seed=14, noise_px=1.5)
    uv_bad, _ = with_outliers(uv, 3, seed=15)
    _assert_same(*_both(X, uv_bad, K, **kw))


def test_parity_with_weights_and_zeros():
    X, _, K, uv = _noisy(16, seed=16)
    uv_bad, _ = with_outliers(uv, 2, seed=17)
    g = torch.Generator().manual_seed(18)
    w = 0.2 + torch.rand(16, 21, generator=g, dtype=torch.float64)
    w[0, :5] = 0.0                                 # a few joints excluded
    w[1, 3] = float("nan")                         # a non-finite weight excludes the joint too
    w[2, :19] = 0.0                                # 2 joints left: fails (fewer than 3)
    w[3] = 0.0                                     # nothing usable
    ref, res = _both(X, uv_bad, K, weights=w)
    _assert_same(ref, res)
    assert not res.inliers[0, :5].any() and not res.inliers[1, 3]
    assert res.success.tolist()[:4] == [True, True, False, False]
    assert np.isinf(res.reprojection_error[3])


def test_parity_degenerate_inputs_and_fallbacks():
    X, t, K, uv = _noisy(12, seed=19)
    X, uv, K = X.clone(), uv.clone(), K.clone()
    uv[0] = float("nan")                                        # all 2D joints NaN
    X[1] = 0.0                                                  # coincident 3D points
    uv[2] = uv[2, :1].expand(21, 2).clone()                     # all 2D joints on one pixel
    X[3, 5, 1] = float("nan")                                   # one bad 3D joint: dropped, still fine
    uv[4, 7, 0] = float("inf")                                  # one bad 2D joint: dropped, still fine
    K[5, 0, 0] = 0.0                                            # zero focal length
    K[6, 1, 1] = -300.0                                         # negative focal length
    K[7, 0, 2] = float("nan")                                   # NaN in K
    uv[8] = project(X[8] + torch.tensor([0.0, 0.0, -0.6], dtype=X.dtype), K[8])   # behind the camera
    X[9] = float("nan")                                         # all-NaN sample
    X[10, :, 1:] = 0.0                                          # collinear 3D points (a line along x)
    uv[10] = project(X[10] + t[10], K[10])
    X[11, :, 2] = 0.0                                           # flat hand facing the camera: fine
    uv[11] = project(X[11] + t[11], K[11])
    ref, res = _both(X, uv, K)
    _assert_same(ref, res)
    assert res.success.tolist() == [False, False, False, True, True, False, False, False, False, False, True, True]
    assert np.isfinite(res.translation).all() and (res.translation[~res.success, 2] > 0).all()
    np.testing.assert_allclose(res.translation[0], [0.0, 0.0, 0.6])   # nothing usable: optical axis
    assert not res.inliers[3, 5] and not res.inliers[4, 7]
    np.testing.assert_allclose(res.translation[[3, 4]], t[[3, 4]].numpy(), atol=5e-3)     # 0.5 px noise
    np.testing.assert_allclose(res.translation[[10, 11]], t[[10, 11]].numpy(), atol=1e-6)  # noise-free
    # The same samples one at a time (B=1 goes through the per-sample 3x3 solve).
    for b in range(12):
        _assert_same(*_both(X[b:b + 1], uv[b:b + 1], K[b:b + 1]))


def test_batch_of_one_float32_and_shared_K():
    X, t, K, uv = _noisy(4, seed=20, dtype=torch.float32)
    V = torch.randn(1, 30, 3, generator=torch.Generator().manual_seed(3)) * 0.05
    ref, res = _both(X[:1], uv[:1], K[0], V)                     # K (3, 3), B = 1
    _assert_same(ref, res, t_atol=1e-6)                          # float32 outputs: one float32 ulp
    assert res.translation.dtype == np.float32 and res.joints.dtype == np.float32
    assert res.vertices.dtype == np.float32 and res.reprojection_error.dtype == np.float32
    assert res.translation.shape == (1, 3) and res.success.shape == (1,) and res.inliers.shape == (1, 21)
    assert res.success[0] and np.abs(res.translation[0] - t[0].numpy()).max() < 1e-2


def test_batch_of_one_matches_batched_call():
    X, _, K, uv = _noisy(8, seed=21, noise_px=1.0)
    uv_bad, _ = with_outliers(uv, 3, seed=22)
    Xn, uvn, Kn = X.numpy(), uv_bad.numpy(), K.numpy()
    full = register_camera_space_numpy(Xn, uvn, Kn)
    for b in range(8):
        one = register_camera_space_numpy(Xn[b:b + 1], uvn[b:b + 1], Kn[b:b + 1])
        assert one.success[0] == full.success[b]
        np.testing.assert_array_equal(one.inliers[0], full.inliers[b])
        np.testing.assert_allclose(one.translation[0], full.translation[b], rtol=0, atol=T_ATOL)


def test_noise_free_recovers_translation():
    X, t, K, uv = hand_cases(16, seed=23)
    for sl in (slice(0, 16), slice(5, 6)):
        res = register_camera_space_numpy(X[sl].numpy(), uv[sl].numpy(), K[sl].numpy())
        assert res.success.all() and res.inliers.all()
        assert np.abs(res.translation - t[sl].numpy()).max() < 1e-5
        assert res.reprojection_error.max() < 1e-6
        np.testing.assert_allclose(res.joints, X[sl].numpy() + res.translation[:, None], rtol=0, atol=1e-15)


def test_solve3_loop_and_vectorised_paths_agree():
    # The per-sample Python path (B <= SOLVE3_LOOP_MAX_B) against the array path, damped and
    # undamped, on well-conditioned, singular, non-finite and tiny matrices.
    rng = np.random.default_rng(0)
    B = 24
    A = rng.normal(size=(B, 6, 4))
    M = A.transpose(0, 2, 1) @ A                                  # (B, 4, 4) Gram: SPD N and a rhs
    M[1, :3, :3] = np.outer([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])     # rank 1
    M[2, :3, :3] = 0.0
    M[3, 1, 1] = np.nan
    M[4, 0, 2] = M[4, 2, 0] = np.inf
    M[5, :3, :3] *= 1e-110                                        # (trace / 3)^3 underflows
    lam = 10.0 ** rng.uniform(-9, 2, B)
    assert B > SOLVE3_LOOP_MAX_B
    for lm in (None, lam):
        with np.errstate(all="ignore"):
            x, rc = solve3(M, lm)
            parts = [solve3(M[b:b + 1], None if lm is None else lm[b:b + 1]) for b in range(B)]
        x1, rc1 = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        np.testing.assert_array_equal(rc == 0, rc1 == 0)
        singular = [1, 2, 3, 4, 5] if lm is None else [2, 3, 4, 5]   # damping makes rank 1 regular
        assert (rc[singular] == 0).all() and (x[singular] == 0).all()
        np.testing.assert_allclose(x1, x, rtol=1e-10, atol=0)
        np.testing.assert_allclose(rc1, rc, rtol=1e-10, atol=0)
        N = M[:, :3, :3] * (1.0 + (0.0 if lm is None else lm[:, None, None]) * np.eye(3))
        ok = rc > 1e-3                                            # well conditioned
        assert ok.sum() >= 12
        np.testing.assert_allclose(np.linalg.solve(N[ok], M[ok, :3, 3:4])[..., 0], x[ok], rtol=1e-9)


def test_empty_batch():
    X, _, K, uv = hand_cases(2, seed=24)
    res = register_camera_space_numpy(X[:0].numpy(), uv[:0].numpy(), K[:0].numpy())
    assert res.translation.shape == (0, 3) and res.success.shape == (0,) and res.inliers.shape == (0, 21)


def test_shape_errors_name_the_argument():
    X, _, K, uv = (a.numpy() for a in hand_cases(2, seed=25))
    with pytest.raises(ValueError, match="joints2d"):
        register_camera_space_numpy(X, uv[:, :20], K)
    with pytest.raises(ValueError, match="K"):
        register_camera_space_numpy(X, uv, K[:1])
    with pytest.raises(ValueError, match="K"):
        register_camera_space_numpy(X, uv, K[0, :, :2])
    with pytest.raises(ValueError, match="joints3d_rr"):
        register_camera_space_numpy(X[0], uv, K)
    with pytest.raises(ValueError, match="joints3d_rr"):
        register_camera_space_numpy(X[..., :2], uv, K)
    with pytest.raises(ValueError, match="weights"):
        register_camera_space_numpy(X, uv, K, weights=np.ones((2, 20)))
    with pytest.raises(ValueError, match="vertices_rr"):
        register_camera_space_numpy(X, uv, K, np.zeros((3, 10, 3)))
    with pytest.raises(ValueError, match="vertices_rr"):
        register_camera_space_numpy(X, uv, K, np.zeros((2, 10)))
