"""Crop maths (:mod:`m3dhmr.geometry.crop`): hand-computed cases and naive references."""

import math

import numpy as np
import pytest
import torch

from m3dhmr.geometry import crop
from m3dhmr.geometry.camera import project
from m3dhmr.geometry.crop import CropBox
from m3dhmr.geometry.rotations import rot_z


def _random_box(rng, w=224):
    return CropBox(rng.uniform(0, w), rng.uniform(0, w), rng.uniform(60, 300), rng.uniform(-math.pi, math.pi))


def _random_K(rng, fy_ratio=1.0, skew=0.0):
    f = rng.uniform(300, 700)
    return np.array([[f, skew, rng.uniform(100, 124)], [0, f * fy_ratio, rng.uniform(100, 124)], [0, 0, 1.0]])


def _random_points(rng, n=21):
    return np.column_stack([rng.uniform(-0.1, 0.1, n), rng.uniform(-0.1, 0.1, n), rng.uniform(0.4, 0.8, n)])


def test_crop_affine_hand_computed():
    # Whole 224 image into 128: the image's outer edges map to the crop's outer edges.
    A = crop.crop_affine(CropBox(111.5, 111.5, 224.0, 0.0), 128)
    np.testing.assert_allclose(crop.apply_affine_np(np.array([[-0.5, -0.5], [223.5, 223.5]]), A),
                               [[-0.5, -0.5], [127.5, 127.5]], atol=1e-12)
    # 90 degrees: +x offsets from the centre become +y offsets (y down, R acts on columns).
    A = crop.crop_affine(CropBox(50.0, 60.0, 100.0, math.pi / 2), 100)
    np.testing.assert_allclose(crop.apply_affine_np(np.array([[50.0, 60.0], [60.0, 60.0]]), A),
                               [[49.5, 49.5], [49.5, 59.5]], atol=1e-12)
    with pytest.raises(ValueError, match="side"):
        crop.crop_affine(CropBox(0, 0, 0, 0), 10)


def test_crop_intrinsics_hand_computed():
    K = np.array([[500.0, 0, 112.0], [0, 500.0, 110.0], [0, 0, 1]])
    A = crop.crop_affine(CropBox(111.5, 111.5, 224.0, 0.0), 112)  # scale 0.5
    Kc, R = crop.crop_camera(K, A)
    np.testing.assert_allclose(R, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(Kc, [[250, 0, 0.5 * 112.5 - 0.5 + 0.0], [0, 250, 0.5 * 110.5 - 0.5], [0, 0, 1]])


def test_crop_affine_batched_hand_case():
    # The whole 128-px image, unrotated, into a 64-px crop: q = p / 2 - 0.25 (torch and NumPy).
    for box in (torch.tensor([[63.5, 63.5, 128.0, 0.0]], dtype=torch.float64), np.array([[63.5, 63.5, 128.0, 0.0]])):
        A = crop.crop_affine(box, 64)
        assert type(A) is type(box) and A.shape == (1, 2, 3)
        np.testing.assert_allclose(np.asarray(A[0]), [[0.5, 0, -0.25], [0, 0.5, -0.25]], atol=1e-12)
    with pytest.raises(ValueError, match="side"):
        crop.crop_affine(torch.tensor([[1.0, 1.0, 5.0, 0.0], [1.0, 1.0, 0.0, 0.0]]), 10)


def _batch_boxes_and_Ks(n=6, seed=0):
    rng = np.random.default_rng(seed)
    boxes = np.stack([rng.uniform(60, 160, n), rng.uniform(60, 160, n), rng.uniform(50, 200, n),
                      rng.uniform(-math.pi, math.pi, n)], -1)
    Ks = np.stack([_random_K(rng, fy_ratio=1.0 + 0.05 * (i % 3), skew=float(i % 2)) for i in range(n)])
    return boxes, Ks


def test_batched_crop_affine_and_camera_match_the_loop():
    """(B, ...) NumPy and torch batches against one box at a time, and equal to it bit for bit
    where the maths are the same (NumPy batch vs NumPy single: only cos/hypot/atan2 differ)."""
    boxes, Ks = _batch_boxes_and_Ks()
    loop_A = np.stack([crop.crop_affine(CropBox(*b), 128) for b in boxes])
    loop_cams = [crop.crop_camera(K, A) for K, A in zip(Ks, loop_A)]
    loop_Kc, loop_R = np.stack([c[0] for c in loop_cams]), np.stack([c[1] for c in loop_cams])
    for to in (lambda x: x, torch.from_numpy):
        A = crop.crop_affine(to(boxes), 128)
        Kc, R = crop.crop_camera(to(Ks), A)
        assert type(A) is type(Kc) is type(R) is type(to(boxes))
        assert A.shape == (6, 2, 3) and Kc.shape == (6, 3, 3) and R.shape == (6, 3, 3)
        np.testing.assert_allclose(np.asarray(A), loop_A, rtol=0, atol=1e-10)
        np.testing.assert_allclose(np.asarray(Kc), loop_Kc, rtol=0, atol=1e-9)
        np.testing.assert_allclose(np.asarray(R), loop_R, rtol=0, atol=1e-12)
    # Leading dimensions (2, 3) and a 3-D batch of points.
    A = crop.crop_affine(boxes.reshape(2, 3, 4), 128)
    np.testing.assert_allclose(A.reshape(6, 2, 3), loop_A, atol=1e-10)
    pts = np.random.default_rng(3).uniform(0, 224, (6, 21, 2))
    ref = np.stack([[A_i[:, :2] @ p + A_i[:, 2] for p in pts_i] for A_i, pts_i in zip(loop_A, pts)])
    np.testing.assert_allclose(crop.apply_affine(pts, loop_A), ref, atol=1e-9)
    np.testing.assert_allclose(crop.apply_affine(torch.from_numpy(pts), torch.from_numpy(loop_A)).numpy(), ref,
                               atol=1e-9)
    x = np.random.default_rng(4).normal(0, 0.1, (6, 21, 3))
    ref = np.stack([[R_i @ p for p in x_i] for R_i, x_i in zip(loop_R, x)])
    np.testing.assert_allclose(crop.apply_rotation(x, loop_R), ref, atol=1e-12)
    np.testing.assert_allclose(crop.apply_rotation(torch.from_numpy(x), torch.from_numpy(loop_R)).numpy(), ref,
                               atol=1e-12)


def test_crop_camera_degenerate_inputs():
    A = crop.crop_affine(CropBox(10.0, 10.0, 20.0, 0.3), 32)
    with pytest.raises(ValueError, match="degenerate.*K="):
        crop.crop_camera(np.zeros((3, 3)), A)
    Ks = torch.from_numpy(np.stack([np.eye(3), np.zeros((3, 3))]))
    with pytest.raises(ValueError, match="degenerate"):
        crop.crop_camera(Ks, torch.from_numpy(np.stack([A, A])))


def _project_naive(points, K):
    out = np.zeros((len(points), 2))
    for n, (x, y, z) in enumerate(points):
        out[n] = [K[0, 0] * x / z + K[0, 1] * y / z + K[0, 2], K[1, 1] * y / z + K[1, 2]]
    return out


@pytest.mark.parametrize("fy_ratio,skew", [(1.0, 0.0), (1.03, 0.0), (0.8, 0.0), (1.0, 4.0)])
def test_rotate_then_project_equals_project_then_rotate(fy_ratio, skew):
    rng = np.random.default_rng(1)
    worst = 0.0
    for _ in range(50):
        K, pts, box = _random_K(rng, fy_ratio, skew), _random_points(rng), _random_box(rng)
        A = crop.crop_affine(box, 128)
        Kc, R = crop.crop_camera(K, A)
        if fy_ratio == 1.0 and skew == 0:  # square pixels: the camera turns with the box, no skew
            np.testing.assert_allclose(R, rot_z(box.theta), atol=1e-12)
            np.testing.assert_allclose([Kc[0, 0], Kc[1, 1]], [K[0, 0] * 128 / box.side] * 2, rtol=1e-12)
            assert abs(Kc[0, 1]) < 1e-9
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert Kc[1, 0] == 0 and Kc[0, 0] > 0 and Kc[1, 1] > 0
        rotate_then_project = _project_naive(pts @ R.T, Kc)
        project_then_rotate = crop.apply_affine_np(_project_naive(pts, K), A)
        worst = max(worst, np.abs(rotate_then_project - project_then_rotate).max())
        np.testing.assert_allclose(project(pts @ R.T, Kc), rotate_then_project, atol=1e-9)
    assert worst < 1e-6  # exact (the brief asks < 0.5 px)


def _bilinear_naive(img, x, y):
    """Zero-padded bilinear sample of a (H, W) float image at (x, y), pixel centres at integers."""
    h, w = img.shape
    x0, y0 = math.floor(x), math.floor(y)
    val = 0.0
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= xx < w and 0 <= yy < h:
                val += wx * wy * img[yy, xx]
    return val


def test_warp_image_matches_naive_pixel_convention():
    rng = np.random.default_rng(2)
    img = rng.uniform(0, 1, (20, 24)).astype(np.float32)
    box = CropBox(11.0, 9.5, 14.0, 0.4)
    A = crop.crop_affine(box, 16)
    out = crop.warp_image(img, A, 16)
    Ainv = np.linalg.inv(np.vstack([A, [0, 0, 1]]))
    naive = np.zeros((16, 16))
    for qy in range(16):
        for qx in range(16):
            px, py, _ = Ainv @ [qx, qy, 1.0]
            naive[qy, qx] = _bilinear_naive(img, px, py)
    # OpenCV quantises sample positions to 1/32 pixel, hence the tolerance.
    assert np.abs(out - naive).max() < 0.05
    assert np.abs(out - naive).mean() < 0.01


def _mapping_naive(rot_1, affine_1, rot_2, affine_2):
    B = rot_1.shape[0]
    R12, A12 = np.zeros((B, 3, 3)), np.zeros((B, 2, 3))
    for b in range(B):
        R12[b] = rot_2[b] @ np.linalg.inv(rot_1[b])
        H1 = np.vstack([affine_1[b], [0, 0, 1]])
        H2 = np.vstack([affine_2[b], [0, 0, 1]])
        A12[b] = (H2 @ np.linalg.inv(H1))[:2]
    return R12, A12


def test_view_mapping_recovers_second_view():
    rng = np.random.default_rng(4)
    B = 6
    boxes = [(_random_box(rng), _random_box(rng)) for _ in range(B)]
    rot_1 = np.stack([rot_z(b1.theta) for b1, _ in boxes])
    rot_2 = np.stack([rot_z(b2.theta) for _, b2 in boxes])
    aff_1 = np.stack([crop.crop_affine(b1, 128) for b1, _ in boxes])
    aff_2 = np.stack([crop.crop_affine(b2, 128) for _, b2 in boxes])
    t = lambda x: torch.from_numpy(x)  # noqa: E731
    R12, A12 = crop.view_mapping(t(rot_1), t(aff_1), t(rot_2), t(aff_2))
    R12n, A12n = _mapping_naive(rot_1, aff_1, rot_2, aff_2)
    np.testing.assert_allclose(R12.numpy(), R12n, atol=1e-12)
    np.testing.assert_allclose(A12.numpy(), A12n, atol=1e-9)

    pts = rng.normal(0, 0.05, (B, 21, 3))
    v1 = pts @ rot_1.transpose(0, 2, 1)
    v2 = pts @ rot_2.transpose(0, 2, 1)
    np.testing.assert_allclose(crop.apply_rotation(t(v1), R12).numpy(), v2, atol=1e-12)
    p = rng.uniform(0, 224, (B, 21, 2))
    p1 = np.stack([crop.apply_affine_np(p[b], aff_1[b]) for b in range(B)])
    p2 = np.stack([crop.apply_affine_np(p[b], aff_2[b]) for b in range(B)])
    np.testing.assert_allclose(crop.apply_affine(t(p1), A12).numpy(), p2, atol=1e-9)


def test_view_mapping_identity_and_shapes():
    rot = torch.eye(3).expand(2, 3, 3)
    aff = torch.tensor([[[2.0, 0, 3], [0, 2, 4]]]).expand(2, 2, 3)
    R12, A12 = crop.view_mapping(rot, aff, rot, aff)
    torch.testing.assert_close(R12, torch.eye(3).expand(2, 3, 3))
    torch.testing.assert_close(A12, torch.tensor([[1.0, 0, 0], [0, 1, 0]]).expand(2, 2, 3))
    with pytest.raises(ValueError, match=r"affine_1.*\(B, 2, 3\)"):
        crop.view_mapping(rot, aff[:, :, :2], rot, aff)
