"""Camera effects of the synthetic images (:mod:`m3dhmr.data.synth_camera`)."""

import cv2
import numpy as np
import pytest

from m3dhmr.data import synth_camera as sc
from m3dhmr.data.synth_scene import SynthConfig


def test_motion_kernel_hand_cases_and_moments():
    np.testing.assert_allclose(sc.motion_kernel(3, 0.0)[2], [0, 1 / 3, 1 / 3, 1 / 3, 0], atol=1e-7)
    vert = sc.motion_kernel(5, np.pi / 2)
    np.testing.assert_allclose(vert[1:6, 3], [0.2] * 5, atol=1e-7)  # a vertical line of 5 px
    assert vert.sum() == pytest.approx(1.0) and vert[:, 3].sum() == pytest.approx(1.0)
    for length, angle in ((7.3, 0.4), (12.0, 2.2), (4.0, np.pi / 4)):
        k = sc.motion_kernel(length, angle)
        assert k.sum() == pytest.approx(1.0, abs=1e-6) and k.shape[0] % 2 == 1
        c = (k.shape[0] - 1) / 2
        y, x = np.mgrid[: k.shape[0], : k.shape[1]] - c
        along = x * np.cos(angle) + y * np.sin(angle)
        across = -x * np.sin(angle) + y * np.cos(angle)
        assert (k * along).sum() == pytest.approx(0.0, abs=0.1)  # centred
        # A uniform motion of L px has std L / sqrt(12) along it and ~0 across (pixel rounding).
        assert np.sqrt((k * along ** 2).sum()) == pytest.approx(length / np.sqrt(12), rel=0.12)
        assert np.sqrt((k * across ** 2).sum()) < 0.45
    with pytest.raises(ValueError, match="length"):
        sc.motion_kernel(0.5, 0.0)


def test_disc_kernel_matches_naive_coverage():
    for radius in (0.5, 1.3, 2.7):
        k = sc.disc_kernel(radius)
        h = (k.shape[0] - 1) // 2
        naive = np.zeros_like(k, dtype=np.float64)
        for i in range(k.shape[0]):
            for j in range(k.shape[1]):
                n = 0
                for a in range(4):
                    for b in range(4):
                        yy, xx = i - h + (a + 0.5) / 4 - 0.5, j - h + (b + 0.5) / 4 - 0.5
                        n += xx * xx + yy * yy <= radius * radius
                naive[i, j] = n
        np.testing.assert_allclose(k, naive / naive.sum(), atol=1e-7)
        np.testing.assert_allclose(k, k.T, atol=1e-7)
    assert sc.disc_kernel(0.5)[1, 1] == 1.0  # hand case: only the centre pixel's samples lie inside


def test_tone_lut_hand_case_and_identity():
    ident = sc.tone_lut((1.0, 1.0, 1.0), sc.BASE_GAMMA)
    np.testing.assert_array_equal(ident[:, 0, 0], np.arange(256))
    lut = sc.tone_lut((2.0, 1.0, 0.5), 2.0)
    # 128: linear (128/255)^2.2 = 0.2195; x2 -> 0.4389, encoded with gamma 2: 0.6625 -> 169.
    assert lut[128, 0, 0] == 169
    assert lut[128, 0, 1] == round(((128 / 255) ** 2.2) ** 0.5 * 255)
    assert lut[255, 0, 0] == 255 and lut[0, 0, 2] == 0  # clipped at white, black stays black


def test_apply_camera_matches_naive_reference():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    cam = sc.CameraDraw(gains=(1.3, 1.0, 0.7), gamma=2.0, motion_length=4.0, motion_angle=0.7)
    out = sc.apply_camera(img, cam)
    lut = sc.tone_lut(cam.gains, cam.gamma)[:, 0]
    toned = np.stack([lut[img[..., c], c] for c in range(3)], -1).astype(np.float64)
    k = sc.motion_kernel(cam.motion_length, cam.motion_angle)
    h = (k.shape[0] - 1) // 2
    for y in range(h, 20 - h):  # interior pixels: no border handling involved
        for x in range(h, 24 - h):
            ref = (toned[y - h: y + h + 1, x - h: x + h + 1] * k[:, :, None]).sum((0, 1))
            assert np.abs(out[y, x].astype(float) - ref).max() <= 1.0
    np.testing.assert_array_equal(sc.apply_camera(img, sc.CameraDraw()), img)  # neutral: unchanged
    with pytest.raises(ValueError, match="uint8"):
        sc.apply_camera(img.astype(np.float32), cam)


def test_noise_is_signal_dependent_and_seeded():
    flat = np.concatenate([np.full((64, 64, 3), 40, np.uint8), np.full((64, 64, 3), 200, np.uint8)], 1)
    cam = sc.CameraDraw(shot=0.004, read=0.002, noise_seed=9)
    a, b = sc.apply_camera(flat, cam), sc.apply_camera(flat, cam)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, sc.apply_camera(flat, sc.CameraDraw(shot=0.004, read=0.002, noise_seed=10)))
    sig = sc.noise_sigma_lut(cam.shot, cam.read)
    for sl, v in ((slice(0, 64), 40), (slice(64, 128), 200)):
        measured = a[:, sl].astype(float).std()
        assert measured == pytest.approx(sig[v], rel=0.1)
    # Hand case of the model at 200: lin = (200/255)^2.2, std_lin = sqrt(shot lin + read^2),
    # slope d enc / d lin = enc / (2.2 lin).
    enc = 200 / 255
    lin = enc ** 2.2
    assert sig[200] == pytest.approx(np.sqrt(0.004 * lin + 0.002 ** 2) * enc / (2.2 * lin) * 255, rel=1e-5)
    assert sig[40] > sig[200]  # shadows of a gamma-encoded image are noisier


def test_draw_camera_is_deterministic_and_switches_off_without_shifting_draws():
    cfg = SynthConfig()
    a, b = sc.draw_camera(np.random.default_rng(4), cfg), sc.draw_camera(np.random.default_rng(4), cfg)
    assert a == b
    off = SynthConfig(blur_prob=0.0, defocus_prob=0.0, motion_blur_prob=0.0, noise_prob=0.0, color_prob=0.0,
                      jpeg_quality_range=(90, 90))
    r1, r2 = np.random.default_rng(4), np.random.default_rng(4)
    c_on, c_off = sc.draw_camera(r1, cfg), sc.draw_camera(r2, off)
    assert r1.random() == r2.random()  # the same number of draws either way
    assert c_off.gains == (1.0, 1.0, 1.0) and c_off.gamma == sc.BASE_GAMMA and c_off.jpeg_quality == 90
    assert c_off.gaussian_sigma == c_off.defocus_radius == c_off.motion_length == c_off.shot == c_off.read == 0
    qs = [sc.draw_camera(np.random.default_rng(i), cfg).jpeg_quality for i in range(200)]
    assert min(qs) >= 40 and max(qs) <= 95 and len(set(qs)) > 30
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(sc.apply_camera(img, c_off), img)
    assert c_on.as_params()["jpeg_quality"] == c_on.jpeg_quality


def test_blur_effects_keep_a_flat_image_flat():
    flat = np.full((30, 30, 3), 123, np.uint8)
    for cam in (sc.CameraDraw(defocus_radius=2.5), sc.CameraDraw(motion_length=9.0, motion_angle=1.0),
                sc.CameraDraw(gaussian_sigma=1.0)):
        np.testing.assert_array_equal(sc.apply_camera(flat, cam), flat)
    edge = np.zeros((30, 30, 3), np.uint8)
    edge[:, 15:] = 255
    blurred = sc.apply_camera(edge, sc.CameraDraw(motion_length=9.0, motion_angle=0.0))
    vblur = sc.apply_camera(edge, sc.CameraDraw(motion_length=9.0, motion_angle=np.pi / 2))
    assert (blurred[15, 10:20, 0] % 255 != 0).sum() >= 6  # a horizontal motion smears a vertical edge
    np.testing.assert_array_equal(vblur, edge)              # a vertical one does not
    assert cv2.absdiff(blurred, edge).max() > 50
