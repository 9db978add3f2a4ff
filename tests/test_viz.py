import math

import numpy as np
import pytest

from m3dhmr import viz
from m3dhmr.conventions import BONES
from m3dhmr.geometry.camera import project


def star_joints(cx=50.0, cy=50.0):
    """Wrist at the centre, each finger a straight ray: bones never overlap."""
    j = np.zeros((21, 2))
    j[0] = (cx, cy)
    for f in range(5):
        a = math.radians(-150 + 30 * f)
        for k in range(4):
            r = 12 + 9 * k
            j[1 + 4 * f + k] = (cx + r * math.cos(a), cy + r * math.sin(a))
    return j


def test_draw_pose2d_colours_each_finger():
    img = np.zeros((100, 100, 3), np.uint8)
    j = star_joints()
    out = viz.draw_pose2d(img, j, thickness=2, radius=1)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert img.sum() == 0  # input untouched
    for p, c in BONES:
        if p == 0:
            continue
        mid = np.round((j[p] + j[c]) / 2).astype(int)
        np.testing.assert_allclose(out[mid[1], mid[0]], viz.bone_color(c), atol=40)
    # Non-finite joints are skipped rather than crashing cv2.
    j[5:9] = np.nan
    viz.draw_pose2d(img, j)
    with pytest.raises(ValueError, match=r"\(21, 2\)"):
        viz.draw_pose2d(img, j[:20])
    with pytest.raises(ValueError, match="uint8"):
        viz.draw_pose2d(img.astype(np.float32), star_joints())


def quad(z=1.0, half=0.1):
    v = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]])
    return v, np.array([[0, 1, 2], [0, 2, 3]])


def test_overlay_mesh_covers_projected_square():
    img = np.full((50, 60, 3), 10, np.uint8)
    K = np.array([[100.0, 0, 29.5], [0, 100.0, 24.5], [0, 0, 1]])
    v, f = quad()  # projects to [19.5, 39.5] x [14.5, 34.5]
    out = viz.overlay_mesh(img, v, f, K, alpha=1.0)
    changed = np.any(out != 10, axis=2)
    ys, xs = np.nonzero(changed)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (20, 39, 15, 34)
    half = viz.overlay_mesh(img, v, f, K, alpha=0.5)
    assert 10 < half[25, 30].mean() < out[25, 30].mean()  # blended between image and mesh


def view_transform_naive(vertices, size, angle_deg, fill=0.85):
    c = sum(vertices) / len(vertices)
    a = math.radians(angle_deg)
    out = []
    for v in vertices:
        x, y, z = v - c
        out.append([math.cos(a) * x + math.sin(a) * z, y, -math.sin(a) * x + math.cos(a) * z])
    out = np.array(out)
    r = max(np.linalg.norm(p) for p in out)
    f = 2.5 * size
    d = 2 * f * r / (fill * size) + r
    return out + [0, 0, d], f


def test_view_transform_matches_naive_and_fills_tile():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(30, 3)) * 0.05 + [0.1, 0.0, 0.6]
    for angle in (0.0, 90.0, 33.0):
        vv, K = viz.view_transform(v, 64, angle)
        ref, f = view_transform_naive(v, 64, angle)
        np.testing.assert_allclose(vv, ref, atol=1e-12)
        assert K[0, 0] == f
        uv = project(vv, K)
        assert np.all((uv > -0.5) & (uv < 63.5))
    # Hand-computed: a 90 degree turn about y sends +x to -z.
    vv, _ = viz.view_transform(np.array([[1.0, 0, 0], [-1.0, 0, 0]]), 10, 90.0)
    np.testing.assert_allclose(vv[0, :2], [0, 0], atol=1e-12)
    assert vv[0, 2] < vv[1, 2]
    with pytest.raises(ValueError, match="NaN"):
        viz.view_transform(np.full((3, 3), np.nan), 10)


def test_front_side_views_show_depth_extent():
    # A thin slab: wide in x, shallow in z. From the front it is wide, from the side narrow.
    v = np.array([[x, y, z] for x in (-0.1, 0.1) for y in (-0.02, 0.02) for z in (0.49, 0.51)])
    f = np.array([[0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3], [0, 1, 3], [0, 3, 2],
                  [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6]])
    front, side = viz.render_front_side(v, f, size=64)
    assert front.shape == side.shape == (64, 64, 3)
    width = lambda im: np.ptp(np.nonzero(np.any(im != 255, axis=(0, 2)))[0])
    assert width(front) > 40 and width(side) < 15


def test_make_panel():
    a = np.zeros((10, 20, 3), np.uint8)
    b = np.zeros((40, 40, 3), np.uint8)
    p = viz.make_panel([a, b], height=20, gap=2)
    assert p.shape == (20, 40 + 2 + 20, 3)
    assert np.all(p[:, 40:42] == 255)
    with pytest.raises(ValueError, match="no tiles"):
        viz.make_panel([])


def test_plot_learning_curve_writes_a_png(tmp_path):
    rows = [{"step": 10.0, "pa_mpjpe_mm": float("nan"), "pa_mpvpe_mm": float("nan"), "err2d_px": 20.0},
            {"step": 20.0, "pa_mpjpe_mm": 30.0, "pa_mpvpe_mm": 32.0, "err2d_px": 12.0},
            {"step": 30.0, "pa_mpjpe_mm": 25.0, "pa_mpvpe_mm": 27.0, "err2d_px": 9.0}]
    path = tmp_path / "curve.png"
    viz.plot_learning_curve(rows, path, title="t", baseline={"pa_mpjpe_mm": 35.0})
    import cv2

    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > 200 and img.shape[1] > 600
    with pytest.raises(ValueError, match="no rows"):
        viz.plot_learning_curve([], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
