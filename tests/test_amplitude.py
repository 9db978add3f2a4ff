"""Amplitude-spectrum augmentation: the NumPy maths against a naive DFT, hand cases, the
batched torch version against the per-sample loop, and the loader's use of it."""

import dataclasses

import numpy as np
import pytest
import torch

from m3dhmr.data import amplitude as amp
from m3dhmr.data.augment import AugmentConfig


def _naive_dft2(x):
    """(H, W) -> (H, W) complex, the DFT sum written out frequency by frequency."""
    h, w = x.shape
    ys, xs = np.mgrid[0:h, 0:w]
    out = np.zeros((h, w), complex)
    for ky in range(h):
        for kx in range(w):
            out[ky, kx] = (x * np.exp(-2j * np.pi * (ky * ys / h + kx * xs / w))).sum()
    return out


def _naive_mix(image, other, beta, lam):
    """Reference for mix_amplitude: naive DFT per channel, frequencies picked by a loop."""
    h, w, _ = image.shape
    by, bx = int(np.floor(beta * h / 2)), int(np.floor(beta * w / 2))
    out = np.empty_like(image, dtype=np.float64)
    for c in range(3):
        f, g = _naive_dft2(image[:, :, c]), _naive_dft2(other[:, :, c])
        for ky in range(h):
            for kx in range(w):
                sy, sx = min(ky, h - ky), min(kx, w - kx)  # |signed frequency|
                if beta > 0 and sy <= by and sx <= bx:
                    a = (1 - lam) * abs(f[ky, kx]) + lam * abs(g[ky, kx])
                    f[ky, kx] = a * np.exp(1j * np.angle(f[ky, kx]))
        out[:, :, c] = np.fft.ifft2(f).real  # inverse of the naive forward sum
    return np.clip(out, 0, 1)


def test_mask_hand_cases():
    # 8 samples: signed frequencies 0 1 2 3 -4 -3 -2 -1; beta 0.5 -> |k| <= 2.
    m = amp.low_frequency_mask(8, 8, 0.5)
    row = np.array([1, 1, 1, 0, 0, 0, 1, 1], bool)
    np.testing.assert_array_equal(m, row[:, None] & row[None, :])
    assert not amp.low_frequency_mask(8, 6, 0.0).any()
    assert amp.low_frequency_mask(8, 6, 1.0).all()
    only_dc = amp.low_frequency_mask(16, 16, 0.05)
    assert only_dc.sum() == 1 and only_dc[0, 0]
    with pytest.raises(ValueError, match="beta"):
        amp.low_frequency_mask(8, 8, 1.5)


def test_mix_matches_the_naive_dft():
    rng = np.random.default_rng(0)
    x, y = rng.random((6, 7, 3)), rng.random((6, 7, 3))
    for beta, lam in ((0.6, 0.7), (1.0, 1.0), (0.3, 0.4)):
        np.testing.assert_allclose(amp.mix_amplitude(x, y, beta, lam), _naive_mix(x, y, beta, lam), atol=1e-6)


def test_constant_images_hand_case():
    # A constant image has only a DC term (amplitude = H W value, phase 0): a full swap gives
    # the other constant, a jitter scales it per channel (then clips).
    a = np.full((8, 8, 3), 0.2)
    b = np.full((8, 8, 3), [0.6, 0.1, 0.9])
    np.testing.assert_allclose(amp.mix_amplitude(a, b, 0.3, 1.0), b, atol=1e-6)
    np.testing.assert_allclose(amp.mix_amplitude(a, b, 0.3, 0.5), (a + b) / 2, atol=1e-6)
    out = amp.jitter_amplitude(a, 0.3, np.array([0.5, 2.0, 6.0]))
    np.testing.assert_allclose(out[0, 0], [0.1, 0.4, 1.0], atol=1e-6)  # 1.2 clipped to 1


def test_beta_zero_and_lam_zero_are_identity():
    rng = np.random.default_rng(1)
    x, y = rng.random((12, 10, 3)).astype(np.float32), rng.random((12, 10, 3))
    np.testing.assert_allclose(amp.mix_amplitude(x, y, 0.0, 1.0), x, atol=1e-6)
    np.testing.assert_allclose(amp.mix_amplitude(x, y, 0.5, 0.0), x, atol=1e-6)
    np.testing.assert_allclose(amp.jitter_amplitude(x, 0.0, np.array([2.0, 0.5, 1.5])), x, atol=1e-6)


def test_phase_kept_and_high_frequencies_untouched():
    rng = np.random.default_rng(2)
    x = 0.4 + 0.2 * rng.random((16, 16, 3))  # mid-grey: no clipping
    out = amp.jitter_amplitude(x, 0.25, np.array([0.9, 1.1, 1.05])).astype(np.float64)
    fx, fo = np.fft.fft2(x, axes=(0, 1)), np.fft.fft2(out, axes=(0, 1))
    big = np.abs(fx) > 1e-3
    dphi = np.angle(fo[big] * np.conj(fx[big]))
    assert np.abs(dphi).max() < 1e-3
    m = amp.low_frequency_mask(16, 16, 0.25)
    np.testing.assert_allclose(np.abs(fo)[~m], np.abs(fx)[~m], atol=1e-3)
    ratio = np.abs(fo)[m] / np.abs(fx)[m]  # per channel: the scale inside the window
    np.testing.assert_allclose(ratio.reshape(-1, 3).mean(0), [0.9, 1.1, 1.05], atol=1e-3)


def test_output_clipped_to_unit_range():
    rng = np.random.default_rng(3)
    x = rng.random((16, 16, 3))
    out = amp.jitter_amplitude(x, 1.0, np.array([2.0, 2.0, 0.0]))
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    assert (out[:, :, :2] == 1).any() and (out[:, :, 2] == 0).all()


def test_partners_loop_and_batch_agree():
    u = torch.linspace(0, 0.999, 40, dtype=torch.float64)
    for n in (1, 2, 5):
        for uu in u:
            p = amp.batch_partners(torch.full((n,), float(uu), dtype=torch.float64))
            ref = [amp.partner_index(i, n, float(uu)) for i in range(n)]
            assert p.tolist() == ref
            assert n == 1 or all(j != i for i, j in enumerate(ref))
    # Every other sample is reachable: u in [k/(n-1), (k+1)/(n-1)) picks the k-th other one.
    assert {amp.partner_index(2, 5, float(v)) for v in u} == {0, 1, 3, 4}


@pytest.mark.parametrize("mode", ["swap", "jitter"])
def test_batch_matches_the_per_sample_loop(mode):
    cfg = AugmentConfig(amplitude_prob=0.7, amplitude_beta=0.3, amplitude_mode=mode, amplitude_mix=0.8,
                        amplitude_jitter=0.4)
    g = torch.Generator().manual_seed(4)
    crops = torch.rand(6, 3, 16, 12, generator=g)
    u = torch.rand(6, amp.AMPLITUDE_DRAWS, generator=g, dtype=torch.float64)
    u[0, 0], u[1, 0] = 0.1, 0.9  # one applied, one not, whatever the seed
    out = amp.augment_amplitude_batch(crops, u, cfg)
    partners = amp.batch_partners(u[:, 2])
    for i in range(6):
        img = crops[i].permute(1, 2, 0).numpy()
        other = crops[int(partners[i])].permute(1, 2, 0).numpy()
        ref = amp.augment_amplitude(img, u[i].numpy(), cfg, other)
        np.testing.assert_allclose(out[i].permute(1, 2, 0).numpy(), ref, atol=1e-5)
    assert torch.equal(out[1], crops[1])  # not applied: exactly the input
    assert not torch.allclose(out[0], crops[0], atol=1e-3)
    assert out.dtype == torch.float32 and float(out.min()) >= 0 and float(out.max()) <= 1


def test_batch_off_is_the_input():
    crops = torch.rand(3, 3, 8, 8)
    u = torch.full((3, amp.AMPLITUDE_DRAWS), 0.5, dtype=torch.float64)
    assert amp.augment_amplitude_batch(crops, u, AugmentConfig(amplitude_prob=0.0)) is crops


def test_config_fields_are_checked():
    assert AugmentConfig().amplitude_prob == 0.0  # off by default: existing configs unchanged
    for kw, key in (({"amplitude_prob": 1.5}, "amplitude_prob"), ({"amplitude_beta": -0.1}, "amplitude_beta"),
                    ({"amplitude_mix": 2.0}, "amplitude_mix"),
                    ({"amplitude_jitter": -1.0}, "amplitude_jitter"), ({"amplitude_mode": "mix"}, "amplitude_mode")):
        with pytest.raises(ValueError, match=key):
            AugmentConfig(**kw)


def test_loader_applies_it_after_the_other_augmentations(tiny_data):
    import cv2

    from m3dhmr.data.freihand import FreiHANDDataset, read_jpeg

    off = AugmentConfig()
    on = dataclasses.replace(off, amplitude_prob=1.0, amplitude_beta=0.2, amplitude_mode="swap")
    a = FreiHANDDataset(tiny_data, "training", crop_size=32, augment=off, seed=7)
    b = FreiHANDDataset(tiny_data, "training", crop_size=32, augment=on, seed=7)
    i = 3
    sa, sb = a[i], b[i]
    for k in ("joints2d", "joints3d", "box", "K"):  # same boxes: amplitude draws come last
        assert torch.equal(sa[k], sb[k]), k
    rng = np.random.default_rng([7, 0, i, 0])
    rng.random(8)  # the box (4) and colour (4) draws
    u = rng.random(amp.AMPLITUDE_DRAWS)
    j = amp.partner_index(i, len(a), float(u[2]))
    other = cv2.cvtColor(cv2.resize(read_jpeg(a.image_path(j)), (32, 32), interpolation=cv2.INTER_AREA),
                         cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    ref = amp.augment_amplitude(sa["image"].permute(1, 2, 0).numpy(), u, on, other)
    np.testing.assert_allclose(sb["image"].permute(1, 2, 0).numpy(), ref, atol=1e-6)
    assert not torch.allclose(sa["image"], sb["image"], atol=1e-3)
