import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.spatial.transform import Rotation

from m3dhmr.geometry.procrustes import align_w_scale, align_w_scale_batch


def _official_naive(mtx1, mtx2):
    """Line by line the official FreiHAND ``align_w_scale(gt, pred)``."""
    t1 = mtx1.mean(0)
    t2 = mtx2.mean(0)
    mtx1_t = mtx1 - t1
    mtx2_t = mtx2 - t2
    s1 = np.linalg.norm(mtx1_t) + 1e-8
    mtx1_t /= s1
    s2 = np.linalg.norm(mtx2_t) + 1e-8
    mtx2_t /= s2
    R, s = scipy.linalg.orthogonal_procrustes(mtx1_t, mtx2_t)
    mtx2_t = np.dot(mtx2_t, R.T) * s
    return mtx2_t * s1 + t1


def _similar_copy(gt, rng, reflect=False):
    R = Rotation.random(random_state=rng.integers(1 << 30)).as_matrix()
    if reflect:
        R = R @ np.diag([1.0, 1.0, -1.0])
    return 1.7 * gt @ R.T + rng.normal(size=3)


def test_similarity_copy_aligns_exactly():
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(21, 3)) * 0.05
    for reflect in (False, True):  # reflections are not excluded by the protocol
        pred = _similar_copy(gt, rng, reflect)
        np.testing.assert_allclose(align_w_scale(gt, pred), gt, atol=1e-7)
        np.testing.assert_allclose(align_w_scale_batch(gt[None], pred[None])[0], gt, atol=1e-7)


def test_hand_computed_scale_and_shift():
    # Two points: pred is gt scaled by 2 and shifted; alignment undoes both.
    gt = np.array([[0.0, 0, 0], [1.0, 0, 0]])
    pred = np.array([[5.0, 5, 5], [7.0, 5, 5]])
    np.testing.assert_allclose(align_w_scale(gt, pred), gt, atol=1e-7)
    # All-zero prediction collapses onto the ground-truth centroid (the sanity anchor's case).
    gt3 = np.array([[0.0, 0, 0], [3.0, 0, 0], [0.0, 3, 0]])
    np.testing.assert_allclose(align_w_scale(gt3, np.zeros((3, 3))), np.tile([1.0, 1.0, 0.0], (3, 1)))


def test_matches_official_and_batch_matches_loop():
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(16, 21, 3)) * 0.05 + [0, 0, 0.6]
    pred = gt + rng.normal(size=gt.shape) * 0.02
    loop = np.stack([_official_naive(g.copy(), p.copy()) for g, p in zip(gt, pred)])
    single = np.stack([align_w_scale(g, p) for g, p in zip(gt, pred)])
    np.testing.assert_allclose(single, loop, atol=1e-12)
    np.testing.assert_allclose(align_w_scale_batch(gt, pred), loop, atol=1e-10)
    out_t = align_w_scale_batch(torch.from_numpy(gt), torch.from_numpy(pred))
    np.testing.assert_allclose(out_t.numpy(), loop, atol=1e-10)
    out_32 = align_w_scale_batch(torch.from_numpy(gt).float(), torch.from_numpy(pred).float())
    assert out_32.dtype == torch.float32
    np.testing.assert_allclose(out_32.numpy(), loop, atol=1e-5)


def test_alignment_never_worse_than_identity():
    rng = np.random.default_rng(2)
    gt = rng.normal(size=(8, 30, 3))
    pred = gt + rng.normal(size=gt.shape) * 0.3
    al = align_w_scale_batch(gt, pred)
    assert (((al - gt) ** 2).sum((1, 2)) <= ((pred - gt) ** 2).sum((1, 2)) + 1e-9).all()


def test_inputs_not_modified_and_shape_errors():
    gt = np.ones((5, 3)) * np.arange(5)[:, None]
    pred = gt.copy() * 2
    g0, p0 = gt.copy(), pred.copy()
    align_w_scale(gt, pred)
    align_w_scale_batch(gt[None], pred[None])
    np.testing.assert_array_equal(gt, g0)
    np.testing.assert_array_equal(pred, p0)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        align_w_scale(np.zeros((5, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        align_w_scale_batch(np.zeros((2, 5, 3)), np.zeros((2, 5, 2)))
