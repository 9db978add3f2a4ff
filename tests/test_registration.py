import numpy as np
import pytest
import scipy.optimize
import torch

from m3dhmr.geometry.camera import project
from m3dhmr.geometry.registration import RegistrationResult, RegistrationSettings, register_camera_space
from registration_cases import hand_cases, with_outliers


def test_noise_free_recovers_translation():
    X, t, K, uv = hand_cases(64)
    verts = torch.randn(64, 50, 3, dtype=torch.float64) * 0.05
    res = register_camera_space(X, uv, K, verts)
    assert isinstance(res, RegistrationResult)
    assert res.success.all()
    assert (res.translation - t).abs().max() < 1e-5
    assert res.reprojection_error.max() < 1e-6
    assert res.inliers.all()
    torch.testing.assert_close(res.joints, X + t[:, None])
    torch.testing.assert_close(res.vertices, verts + res.translation[:, None])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_and_no_grad(dtype):
    X, t, K, uv = hand_cases(8, dtype=dtype)
    with torch.no_grad():
        res = register_camera_space(X, uv, K)
        res_own = register_camera_space(X, uv, K, compute_dtype=None)
    for r in (res, res_own):
        assert r.translation.dtype == dtype and r.joints.dtype == dtype and r.vertices is None
        assert r.success.all()
        assert (r.translation.double() - t.double()).abs().max() < 1e-5
        assert r.success.dtype == torch.bool and r.inliers.shape == (8, 21)


def test_batch_of_one_and_shared_K():
    X, t, K, uv = hand_cases(5)
    res = register_camera_space(X[:1], uv[:1], K[0])
    assert res.translation.shape == (1, 3) and res.success.item()
    assert (res.translation - t[:1]).abs().max() < 1e-5


def test_outliers_20_percent_within_5mm():
    X, t, K, uv = hand_cases(128, seed=3)
    uv_bad, mask = with_outliers(uv, 4)   # 4 of 21 joints, 30-80 px off
    res = register_camera_space(X, uv_bad, K)
    assert res.success.all()
    err = (res.translation - t).norm(dim=-1)
    assert err.max() < 5e-3
    # Outliers end up dropped, the true joints kept.
    assert (res.inliers & mask).sum() <= 0.05 * mask.sum()
    assert (res.inliers | mask).all()
    # Without robustness the same data is much worse: the test can fail.
    plain = register_camera_space(X, uv_bad, K, settings=RegistrationSettings(outlier_rounds=0, huber_px=0.0))
    assert (plain.translation - t).norm(dim=-1).mean() > 3 * err.mean()


def test_matches_per_sample_least_squares_loop():
    # Plain least squares (no robust weights, no rounds) equals a per-sample scipy solve.
    X, t, K, uv = hand_cases(6, seed=4)
    g = torch.Generator().manual_seed(5)
    uv = uv + torch.randn(uv.shape, generator=g, dtype=uv.dtype) * 1.5
    res = register_camera_space(X, uv, K, settings=RegistrationSettings(outlier_rounds=0, huber_px=0.0, iterations=8))
    for b in range(6):
        Xb, uvb, Kb = X[b].numpy(), uv[b].numpy(), K[b].numpy()

        def resid(tt, Xb=Xb, uvb=uvb, Kb=Kb):
            return (project(Xb + tt, Kb) - uvb).ravel()

        ref = scipy.optimize.least_squares(resid, np.array([0, 0, 0.6]), xtol=1e-14, ftol=1e-14, gtol=1e-14).x
        np.testing.assert_allclose(res.translation[b].numpy(), ref, atol=1e-8)
        np.testing.assert_allclose(res.reprojection_error[b].item(),
                                   np.linalg.norm(resid(ref).reshape(-1, 2), axis=1).mean(), rtol=1e-6)


def test_degenerate_inputs_flag_failure_without_raising():
    X, t, K, uv = hand_cases(8, seed=6)
    X, uv, K = X.clone(), uv.clone(), K.clone()
    uv[0] = float("nan")                       # all 2D joints NaN
    X[1] = 0.0                                 # coincident 3D points: depth unobservable
    uv[2] = uv[2, :1].expand(21, 2).clone()    # all 2D joints on one pixel
    X[3, 5, 1] = float("nan")                  # one bad joint: dropped, sample still fine
    K[4, 0, 0] = 0.0                           # invalid intrinsics
    uv[5] = project(X[5] + torch.tensor([0.0, 0.0, -0.6], dtype=X.dtype), K[5])  # behind the camera
    weights = torch.ones(8, 21, dtype=X.dtype)
    weights[6] = 0.0                           # nothing usable
    res = register_camera_space(X, uv, K, weights=weights)
    assert res.success.tolist() == [False, False, False, True, False, False, False, True]
    assert torch.isfinite(res.translation).all()
    assert (res.translation[~res.success, 2] > 0).all()          # documented fallback depth 0.6
    # Nothing usable: the root goes on the optical axis at the fallback depth.
    torch.testing.assert_close(res.translation[0], torch.tensor([0.0, 0.0, 0.6], dtype=X.dtype))
    assert not res.inliers[3, 5] and res.inliers[3].sum() == 20
    assert (res.translation[3] - t[3]).abs().max() < 1e-5
    assert not res.inliers[6].any() and torch.isinf(res.reprojection_error[6])


def test_shape_errors():
    X, t, K, uv = hand_cases(2)
    with pytest.raises(ValueError, match="joints2d"):
        register_camera_space(X, uv[:, :20], K)
    with pytest.raises(ValueError, match="K"):
        register_camera_space(X, uv, K[:1])
    with pytest.raises(ValueError, match="joints3d_rr"):
        register_camera_space(X[0], uv, K)
    with pytest.raises(ValueError, match="weights"):
        register_camera_space(X, uv, K, weights=torch.ones(2, 20))


def test_empty_batch():
    X, t, K, uv = hand_cases(2)
    res = register_camera_space(X[:0], uv[:0], K[:0], X[:0])
    assert res.translation.shape == (0, 3) and res.success.shape == (0,)
    assert res.vertices.shape == (0, 21, 3) and res.joints.shape == (0, 21, 3)


def test_settings_are_checked():
    for bad in ({"iterations": -1}, {"min_inliers": 2}, {"fallback_depth": 0.0}, {"outlier_px": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RegistrationSettings(**bad)
