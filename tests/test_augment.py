import math

import numpy as np
import pytest

from m3dhmr.config_loader import ConfigError, from_dict, to_dict
from m3dhmr.data import augment as aug
from m3dhmr.data.augment import AugmentConfig, ColourJitter
from m3dhmr.geometry.crop import CropBox


# ----------------------------------------------------------------------------- config


def test_config_strict_loading_and_roundtrip():
    cfg = from_dict(AugmentConfig, {"rotation_deg": 45, "scale_range": [0.9, 1.1], "eval_box": "joints"})
    assert cfg.rotation_deg == 45.0 and cfg.scale_range == (0.9, 1.1) and cfg.eval_box == "joints"
    assert from_dict(AugmentConfig, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="rotation_degs"):
        from_dict(AugmentConfig, {"rotation_degs": 10})
    with pytest.raises(ConfigError, match="eval_box"):
        from_dict(AugmentConfig, {"eval_box": "mask"})
    with pytest.raises(ValueError, match="scale_range"):
        AugmentConfig(scale_range=(1.2, 0.8))
    with pytest.raises(ValueError, match="brightness"):
        AugmentConfig(brightness=1.5)
    with pytest.raises(ValueError, match="shift_fraction"):
        AugmentConfig(shift_fraction=-0.1)


# ----------------------------------------------------------------------------- boxes


def test_joints_and_image_box_hand_computed():
    j = np.array([[10.0, 20.0], [30.0, 25.0], [20.0, 60.0]])
    assert aug.joints_box(j, 2.0) == (20.0, 40.0, 80.0)  # extent max(20, 40) x 2
    assert aug.joints_box(np.zeros((3, 2)), 2.0, min_extent=8.0) == (0.0, 0.0, 16.0)
    assert aug.image_box(224, 224) == (111.5, 111.5, 224.0)
    with pytest.raises(ValueError, match=r"\(J, 2\)"):
        aug.joints_box(np.zeros((3, 3)), 2.0)


def test_sample_box_ranges_and_reproducible():
    cfg = AugmentConfig(scale_range=(0.8, 1.25), rotation_deg=30, shift_fraction=0.1)
    boxes = [aug.sample_box(100, 100, 50, cfg, np.random.default_rng([0, i])) for i in range(200)]
    sides = np.array([b.side for b in boxes])
    assert sides.min() >= 40 - 1e-9 and sides.max() <= 62.5 + 1e-9
    assert np.abs([b.theta for b in boxes]).max() <= math.radians(30)
    assert np.abs([b.cx - 100 for b in boxes]).max() <= 0.1 * sides.max()
    assert aug.sample_box(100, 100, 50, cfg, np.random.default_rng([0, 3])) == boxes[3]
    # No randomness at all: the base box comes back.
    still = AugmentConfig(scale_range=(1, 1), rotation_deg=0, shift_fraction=0)
    assert aug.sample_box(1, 2, 3, still, np.random.default_rng(0)) == CropBox(1, 2, 3, 0.0)


# ----------------------------------------------------------------------------- colour


def _colour_naive(img, j: ColourJitter):
    luma = np.array([0.299, 0.587, 0.114])
    out = img.astype(np.float64) * j.brightness
    mean = float((out.reshape(-1, 3) @ luma).mean())
    out = (out - mean) * j.contrast + mean
    res = np.zeros_like(out)
    yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    for r in range(out.shape[0]):
        for c in range(out.shape[1]):
            px = out[r, c]
            g = px @ luma
            px = g + (px - g) * j.saturation
            y, i, q = yiq @ px
            ch, sh = math.cos(j.hue_rad), math.sin(j.hue_rad)
            i, q = ch * i - sh * q, sh * i + ch * q
            res[r, c] = np.linalg.solve(yiq, [y, i, q])
    return np.clip(res, 0, 1)


def test_colour_jitter_matches_naive_and_hand_cases():
    rng = np.random.default_rng(3)
    img = rng.uniform(0.3, 0.7, (5, 6, 3)).astype(np.float32)
    for seed in range(5):
        j = aug.sample_colour(AugmentConfig(hue_deg=30), np.random.default_rng(seed))
        np.testing.assert_allclose(aug.apply_colour(img.copy(), j), _colour_naive(img, j), atol=1e-5)
    np.testing.assert_allclose(aug.apply_colour(img.copy(), ColourJitter()), img, atol=1e-6)
    np.testing.assert_allclose(aug.apply_colour(img.copy(), ColourJitter(brightness=0.5)), img * 0.5, atol=1e-6)
    grey = aug.apply_colour(img.copy(), ColourJitter(saturation=0.0))
    np.testing.assert_allclose(grey[..., 0], grey[..., 2], atol=1e-6)
    # A hue rotation keeps each pixel's luma.
    hued = aug.apply_colour(img.copy(), ColourJitter(hue_rad=0.3))
    np.testing.assert_allclose(hued @ aug.LUMA, img @ aug.LUMA, atol=1e-5)


def test_centre_box_hand_computed_and_its_crop():
    assert aug.centre_box(224, 224, 130 / 224) == (111.5, 111.5, 130.0)  # MobRecon's FreiHAND crop
    assert aug.centre_box(300, 200, 0.5) == (149.5, 99.5, 100.0)
    with pytest.raises(ValueError, match="eval_centre_fraction"):
        AugmentConfig(eval_centre_fraction=0.0)
    with pytest.raises(ValueError, match="'centre'"):
        AugmentConfig(eval_box="middle")


def test_mask_box_hand_computed():
    m = np.zeros((20, 30), np.uint8)
    m[5:10, 4:14] = 255  # 10 px wide (x 4..13), 5 tall (y 5..9)
    assert aug.mask_box(m, 1.3) == (8.5, 7.0, 13.0)
    assert aug.mask_box(np.zeros((4, 4), np.uint8), 1.3) is None
    with pytest.raises(ValueError, match="box_source"):
        AugmentConfig(box_source="silhouette")
