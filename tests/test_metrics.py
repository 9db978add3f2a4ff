import numpy as np
import pytest
import scipy.linalg
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from m3dhmr.metrics import (AUC_THRESHOLDS_M, SUMMARY_KEYS, f_score, freihand_metrics, nearest_distances,
                            pck_auc)


def _align_official(mtx1, mtx2):
    t1 = mtx1.mean(0)
    mtx1_t = mtx1 - t1
    mtx2_t = mtx2 - mtx2.mean(0)
    s1 = np.linalg.norm(mtx1_t) + 1e-8
    mtx1_t /= s1
    mtx2_t /= np.linalg.norm(mtx2_t) + 1e-8
    R, s = scipy.linalg.orthogonal_procrustes(mtx1_t, mtx2_t)
    return np.dot(mtx2_t, R.T) * s * s1 + t1


def _fscore_naive(gt, pr, th):
    d1 = cKDTree(pr).query(gt)[0]   # gt -> pred
    d2 = cKDTree(gt).query(pr)[0]   # pred -> gt
    recall = float(sum(d < th for d in d1)) / len(d1)
    precision = float(sum(d < th for d in d2)) / len(d2)
    return 2 * recall * precision / (recall + precision) if recall + precision > 0 else 0.0


def _auc_naive(dists_per_kp):
    """Official EvalUtil: per keypoint PCK curve over samples, trapz AUC, mean over keypoints."""
    thresholds = np.linspace(0.0, 0.05, 100)
    norm = np.trapezoid(np.ones_like(thresholds), thresholds)
    aucs = []
    for data in dists_per_kp:
        curve = [np.mean((np.array(data) <= t).astype("float")) for t in thresholds]
        aucs.append(np.trapezoid(curve, thresholds) / norm)
    return float(np.mean(aucs))


def _data(n=6, v=60, seed=0):
    rng = np.random.default_rng(seed)
    gt_xyz = rng.normal(size=(n, 21, 3)) * 0.03 + [0, 0, 0.6]
    gt_verts = rng.normal(size=(n, v, 3)) * 0.03 + [0, 0, 0.6]
    pred_xyz = gt_xyz + rng.normal(size=gt_xyz.shape) * 0.008 + [0.01, 0, 0.02]
    pred_verts = gt_verts + rng.normal(size=gt_verts.shape) * 0.006
    return pred_xyz, pred_verts, gt_xyz, gt_verts


def test_against_naive_official_loop():
    pred_xyz, pred_verts, gt_xyz, gt_verts = _data()
    res = freihand_metrics(pred_xyz, pred_verts, gt_xyz, gt_verts)
    n = len(gt_xyz)
    kp_d = [[] for _ in range(21)]
    v_d = [[] for _ in range(gt_verts.shape[1])]
    for i in range(n):
        xa = _align_official(gt_xyz[i].copy(), pred_xyz[i].copy())
        va = _align_official(gt_verts[i].copy(), pred_verts[i].copy())
        dj = np.linalg.norm(xa - gt_xyz[i], axis=1)
        dv = np.linalg.norm(va - gt_verts[i], axis=1)
        for k in range(21):
            kp_d[k].append(dj[k])
        for k in range(len(dv)):
            v_d[k].append(dv[k])
        assert res.pa_mpjpe_mm[i] == pytest.approx(dj.mean() * 1000, abs=1e-9)
        assert res.pa_mpvpe_mm[i] == pytest.approx(dv.mean() * 1000, abs=1e-9)
        assert res.f5[i] == pytest.approx(_fscore_naive(gt_verts[i], va, 0.005), abs=1e-12)
        assert res.f15[i] == pytest.approx(_fscore_naive(gt_verts[i], va, 0.015), abs=1e-12)
        rr = np.linalg.norm((pred_xyz[i] - pred_xyz[i, 0]) - (gt_xyz[i] - gt_xyz[i, 0]), axis=1).mean()
        assert res.mpjpe_rr_mm[i] == pytest.approx(rr * 1000, abs=1e-9)
        assert res.root_error_mm[i] == pytest.approx(np.linalg.norm(pred_xyz[i, 0] - gt_xyz[i, 0]) * 1000)
    s = res.summary
    assert list(s) == list(SUMMARY_KEYS) and s["num_samples"] == n
    # Official aggregation: per-keypoint mean / AUC, then mean over keypoints.
    assert s["pa_mpjpe_mm"] == pytest.approx(np.mean([np.mean(d) for d in kp_d]) * 1000, abs=1e-9)
    assert s["pa_mpvpe_mm"] == pytest.approx(np.mean([np.mean(d) for d in v_d]) * 1000, abs=1e-9)
    assert s["auc_pa_joints"] == pytest.approx(_auc_naive(kp_d), abs=1e-12)
    assert s["auc_pa_verts"] == pytest.approx(_auc_naive(v_d), abs=1e-12)
    assert 0 < s["f5"] < s["f15"] <= 1


def test_hand_computed_cases():
    rng = np.random.default_rng(1)
    gt_xyz = rng.normal(size=(2, 21, 3)) * 0.03
    gt_verts = rng.normal(size=(2, 40, 3)) * 0.03
    R = Rotation.random(random_state=3).as_matrix()
    R_ref = R @ np.diag([1.0, 1.0, -1.0])        # a reflection: allowed by the protocol
    pred_xyz = np.stack([1.3 * gt_xyz[0] @ R.T + 0.1, 0.7 * gt_xyz[1] @ R_ref.T - 0.2])
    pred_verts = np.stack([1.3 * gt_verts[0] @ R.T + 0.1, 0.7 * gt_verts[1] @ R_ref.T - 0.2])
    res = freihand_metrics(pred_xyz, pred_verts, gt_xyz, gt_verts)
    # Not exactly 0: the official 1e-8 added to each norm leaves ~1e-8 relative error.
    np.testing.assert_allclose(res.pa_mpjpe_mm, 0, atol=1e-4)
    np.testing.assert_allclose(res.pa_mpvpe_mm, 0, atol=1e-4)
    np.testing.assert_allclose(res.f5, 1.0)
    # Every distance is above threshold 0 and below the next one: the PCK curve is 0 then
    # 1, so the trapezoid loses half of the first of 99 intervals.
    np.testing.assert_allclose(res.auc_pa_joints, 1 - 0.5 / 99, atol=1e-12)


def test_f_score_single_point_offset():
    # 4 true points far apart; the prediction moves one of them by 10 mm.
    gt = np.array([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]])
    pred = gt.copy()
    pred[0, 0, 0] += 0.010
    f = f_score(pred, gt, (0.005, 0.015, 0.010))
    # P = R = 3/4 at 5 mm -> F = 0.75; all within 15 mm -> 1; exactly 10 mm is not < 10 mm.
    np.testing.assert_allclose(f[0], [0.75, 1.0, 0.75])
    # Empty overlap: F is 0, not NaN.
    assert f_score(gt + 5.0, gt, (0.005,))[0, 0] == 0.0


def test_auc_hand_computed_and_loop():
    # One point at distance 0.025 m: PCK = 0 below, 1 from the first threshold >= 0.025.
    thr = AUC_THRESHOLDS_M
    auc, curve = pck_auc(np.array([[0.025]]))
    k = np.searchsorted(thr, 0.025)
    expected = (np.trapezoid((thr >= 0.025).astype(float), thr)) / 0.05
    assert auc[0] == pytest.approx(expected)
    # The curve jumps from 0 to 1 between thresholds k-1 and k: area = h * (100 - k - 0.5).
    assert auc[0] == pytest.approx((100 - k - 0.5) * (0.05 / 99) / 0.05, rel=1e-12)
    assert curve[k - 1] == 0 and curve[k] == 1
    rng = np.random.default_rng(2)
    d = rng.uniform(0, 0.06, (7, 30))
    auc, _ = pck_auc(d)
    for i in range(7):
        curve_i = [np.mean(d[i] <= t) for t in thr]
        assert auc[i] == pytest.approx(np.trapezoid(curve_i, thr) / 0.05, abs=1e-14)


def test_nearest_distances_match_kdtree():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(3, 50, 3)), rng.normal(size=(3, 70, 3))
    d_ab, d_ba = nearest_distances(a, b)
    for i in range(3):
        np.testing.assert_array_equal(d_ab[i], cKDTree(b[i]).query(a[i])[0])
        np.testing.assert_array_equal(d_ba[i], cKDTree(a[i]).query(b[i])[0])


def test_degenerate_predictions():
    pred_xyz, pred_verts, gt_xyz, gt_verts = _data(n=3)
    zeros = freihand_metrics(np.zeros_like(pred_xyz), np.zeros_like(pred_verts), gt_xyz, gt_verts)
    assert all(np.isfinite(v) for v in zeros.summary.values())
    # All-zero prediction = every point at the true centroid.
    centroid_err = np.linalg.norm(gt_xyz - gt_xyz.mean(1, keepdims=True), axis=-1).mean(1) * 1000
    np.testing.assert_allclose(zeros.pa_mpjpe_mm, centroid_err, rtol=1e-6)
    bad = pred_verts.copy()
    bad[2, 5, 1] = np.nan
    with pytest.raises(ValueError, match="pred_verts: sample 2"):
        freihand_metrics(pred_xyz, bad, gt_xyz, gt_verts)
    with pytest.raises(ValueError, match=r"pred_xyz: expected shape \(3, 21, 3\)"):
        freihand_metrics(pred_xyz[:2], pred_verts, gt_xyz, gt_verts)
    with pytest.raises(ValueError, match="pred_verts"):
        freihand_metrics(pred_xyz, pred_verts[:, :10], gt_xyz, gt_verts)
