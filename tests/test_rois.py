"""Rotated hand regions: hand-computed cases and a naive reference of the landmark rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from m3dhmr.detect import rois


def test_rotation_makes_the_hand_point_up():
    assert rois.hand_rotation(np.array([0, 10.0]), np.array([0, 0.0])) == pytest.approx(0.0)  # already up
    assert rois.hand_rotation(np.array([0, 0.0]), np.array([10.0, 0])) == pytest.approx(math.pi / 2)  # right
    assert rois.hand_rotation(np.array([0, 0.0]), np.array([-10.0, 0])) == pytest.approx(-math.pi / 2)  # left
    assert abs(rois.hand_rotation(np.array([0, 0.0]), np.array([0, 10.0]))) == pytest.approx(math.pi)  # down


def test_crop_to_image_hand_case():
    sq = rois.RotatedSquare(cx=100.0, cy=50.0, side=20.0, rotation=math.pi / 2)
    A = sq.crop_to_image(10)
    def f(p):
        return A[:, :2] @ np.asarray(p, float) + A[:, 2]
    np.testing.assert_allclose(f([4.5, 4.5]), [100, 50])  # crop centre -> square centre
    # Crop "up" (towards row 0) is the hand's direction: +x in the image for 90 degrees.
    np.testing.assert_allclose(f([4.5, -0.5]), [110, 50])
    np.testing.assert_allclose(f([9.5, 4.5]), [100, 60])  # crop right -> image down
    np.testing.assert_allclose(sq.box(), [90, 40, 20, 20])
    np.testing.assert_allclose(rois.RotatedSquare(0, 0, 10, math.pi / 4).box()[2], 10 * math.sqrt(2))


def test_square_from_an_upright_palm():
    box = np.array([40.0, 60.0, 60.0, 80.0])  # 20 x 20 palm centred at (50, 70)
    kps = np.zeros((7, 2))
    kps[0], kps[2] = [50, 80], [50, 60]  # wrist below the middle finger's base: upright
    sq = rois.square_from_palm(box, kps)
    assert sq.rotation == pytest.approx(0.0)
    assert (sq.cx, sq.cy) == pytest.approx((50.0, 60.0))  # shifted half a palm towards the fingers
    assert sq.side == pytest.approx(20 * rois.PALM_SCALE)
    kps_r = kps.copy()
    kps_r[0], kps_r[2] = [40, 70], [60, 70]  # pointing right: shifted right instead
    sq_r = rois.square_from_palm(box, kps_r)
    assert sq_r.rotation == pytest.approx(math.pi / 2)
    assert (sq_r.cx, sq_r.cy) == pytest.approx((60.0, 70.0))


def _naive_square_from_landmarks(p):
    """MediaPipe's formulation: axis-aligned centre, projected extent, back-rotation."""
    x0, y0 = p[0]
    x1 = ((p[6, 0] + p[14, 0]) / 2 + p[10, 0]) / 2
    y1 = ((p[6, 1] + p[14, 1]) / 2 + p[10, 1]) / 2
    r = math.pi / 2 - math.atan2(-(y1 - y0), x1 - x0)
    r = r - 2 * math.pi * math.floor((r + math.pi) / (2 * math.pi))
    sub = p[list(rois.TRACK_LANDMARKS)]
    acx = (sub[:, 0].max() + sub[:, 0].min()) / 2
    acy = (sub[:, 1].max() + sub[:, 1].min()) / 2
    rev = -r
    xs, ys = [], []
    for x, y in sub:
        ox, oy = x - acx, y - acy
        xs.append(ox * math.cos(rev) - oy * math.sin(rev))
        ys.append(ox * math.sin(rev) + oy * math.cos(rev))
    pcx, pcy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    cx = pcx * math.cos(r) - pcy * math.sin(r) + acx
    cy = pcx * math.sin(r) + pcy * math.cos(r) + acy
    w, h = max(xs) - min(xs), max(ys) - min(ys)
    cx -= h * rois.TRACK_SHIFT_Y * math.sin(r)
    cy += h * rois.TRACK_SHIFT_Y * math.cos(r)
    return cx, cy, max(w, h) * rois.TRACK_SCALE, r


@pytest.mark.parametrize("seed", range(5))
def test_square_from_landmarks_matches_mediapipes_formulation(seed):
    p = np.random.default_rng(seed).uniform(0, 300, (21, 2))
    sq = rois.square_from_landmarks(p)
    cx, cy, side, r = _naive_square_from_landmarks(p)
    assert (sq.cx, sq.cy, sq.side, sq.rotation) == pytest.approx((cx, cy, side, r))


def test_crop_square_samples_the_image_where_the_affine_says():
    img = np.zeros((120, 160, 3), np.uint8)
    img[30, 110] = 255  # one white pixel
    sq = rois.RotatedSquare(cx=100.0, cy=40.0, side=40.0, rotation=0.7)
    crop, A = rois.crop_square(img, sq, 40)
    iy, ix = np.unravel_index(np.argmax(crop[:, :, 0]), crop.shape[:2])
    np.testing.assert_allclose(A[:, :2] @ [ix, iy] + A[:, 2], [110, 30], atol=1.0)
