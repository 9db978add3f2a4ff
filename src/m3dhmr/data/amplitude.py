"""Amplitude-spectrum augmentation of training crops (issue 20: synthetic-to-real).

An image's Fourier amplitude carries most of its low-level "style" (overall colour,
illumination, contrast of the coarse structure), its phase most of its content (edges,
shapes; Oppenheim & Lim 1981). Domain-adaptation work on synthetic hands and scenes (FDA,
Yang & Soatto 2020; amplitude mix in FACT, Xu et al. 2021) changes the *low-frequency*
amplitude of a training image and keeps its phase, so the network sees the same hand under
many styles without its labels moving. Two modes (``AugmentConfig.amplitude_mode``):

- ``"swap"``: within the low-frequency window, the amplitude becomes
  ``(1 - lam) A_x + lam A_y`` with ``A_y`` another image's amplitude and
  ``lam = amplitude_mix * u`` (``lam = 1`` is FDA's full swap);
- ``"jitter"``: within the window, each channel's amplitude is scaled by
  ``1 + amplitude_jitter * (2 u_c - 1)``.

The window is the box of signed integer frequencies ``|k_y| <= floor(beta H / 2)`` and
``|k_x| <= floor(beta W / 2)`` (``beta = amplitude_beta``; ``beta = 0`` selects nothing, a
small beta only the mean colour, ``beta = 1`` every frequency). It is symmetric under
``k -> -k``, so a real image stays real; the result is clipped to [0, 1].

Each view draws :data:`AMPLITUDE_DRAWS` uniforms: apply (``u0 < amplitude_prob``), the mix
ratio or the red scale (``u1``), the partner or the green scale (``u2``), the blue scale
(``u3``). The per-sample loader (NumPy, :func:`augment_amplitude`) swaps with another image
of the split (drawn from ``u2``), the batched pipeline (torch, :func:`augment_amplitude_batch`)
with another crop of the same batch (:func:`batch_partners`); for the same images and draws
the two give the same result (tests pin them to each other and to a naive loop).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from m3dhmr.errors import InputError

#: Uniform draws per sample and view (see the module docstring).
AMPLITUDE_DRAWS = 4
AMPLITUDE_MODES = ("swap", "jitter")


def window_half_sizes(h: int, w: int, beta: float) -> tuple[int, int]:
    """Half-sizes ``(b_y, b_x)`` of the low-frequency box, or ``(-1, -1)`` (empty) for beta 0."""
    if not 0.0 <= beta <= 1.0:
        raise InputError(f"amplitude beta must be in [0, 1], got {beta}")
    if beta == 0:
        return -1, -1
    return int(math.floor(beta * h / 2)), int(math.floor(beta * w / 2))


def low_frequency_mask(h: int, w: int, beta: float) -> np.ndarray:
    """(H, W) bool: the low-frequency box in NumPy's (unshifted) FFT layout."""
    by, bx = window_half_sizes(h, w, beta)
    ky = np.abs(np.round(np.fft.fftfreq(h) * h))
    kx = np.abs(np.round(np.fft.fftfreq(w) * w))
    return (ky[:, None] <= by) & (kx[None, :] <= bx)


def _check_image(image: np.ndarray, what: str) -> None:
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"{what} must have shape (H, W, 3), got {image.shape}")


def mix_amplitude(image: np.ndarray, other: np.ndarray, beta: float, lam: float) -> np.ndarray:
    """Mix an (H, W, 3) float image's low-frequency amplitude towards ``other``'s (H, W, 3):
    ``(1 - lam) A_image + lam A_other`` inside the window, phase kept; float32 in [0, 1]."""
    _check_image(image, "mix_amplitude: image")
    if other.shape != image.shape:
        raise InputError(f"mix_amplitude: other has shape {other.shape}, image {image.shape}")
    f = np.fft.fft2(np.asarray(image, np.float64), axes=(0, 1))
    a_other = np.abs(np.fft.fft2(np.asarray(other, np.float64), axes=(0, 1)))
    m = low_frequency_mask(image.shape[0], image.shape[1], beta)[:, :, None]
    amp = np.abs(f)
    amp = np.where(m, (1.0 - lam) * amp + lam * a_other, amp)
    return _back(amp, np.angle(f))


def jitter_amplitude(image: np.ndarray, beta: float, scales: np.ndarray) -> np.ndarray:
    """Scale an (H, W, 3) float image's low-frequency amplitude per channel by ``scales`` (3,),
    phase kept; float32 in [0, 1]."""
    _check_image(image, "jitter_amplitude: image")
    f = np.fft.fft2(np.asarray(image, np.float64), axes=(0, 1))
    m = low_frequency_mask(image.shape[0], image.shape[1], beta)[:, :, None]
    amp = np.abs(f)
    amp = np.where(m, amp * np.asarray(scales, np.float64)[None, None, :], amp)
    return _back(amp, np.angle(f))


def _back(amp: np.ndarray, phase: np.ndarray) -> np.ndarray:
    out = np.fft.ifft2(amp * np.exp(1j * phase), axes=(0, 1)).real
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def partner_index(i: int, n: int, u: float) -> int:
    """Another index than ``i`` among ``n``, uniform from ``u`` in [0, 1) (``i`` itself when n is 1)."""
    if n <= 1:
        return i
    j = min(int(u * (n - 1)), n - 2)
    return j + (j >= i)


def augment_amplitude(image: np.ndarray, u: np.ndarray, cfg, other: np.ndarray | None = None) -> np.ndarray:
    """The loader's amplitude augmentation of one (H, W, 3) float32 RGB crop in [0, 1].

    Args:
        u: (AMPLITUDE_DRAWS,) uniforms (module docstring).
        cfg: an :class:`m3dhmr.data.augment.AugmentConfig` (``amplitude_*`` fields).
        other: (H, W, 3) the partner image for ``"swap"`` (unused by ``"jitter"``).
    Returns:
        (H, W, 3) float32: the input unchanged when ``u[0] >= amplitude_prob``.
    """
    if not u[0] < cfg.amplitude_prob:
        return image
    if cfg.amplitude_mode == "swap":
        if other is None:
            raise InputError("augment_amplitude: the swap mode needs the other image")
        return mix_amplitude(image, other, cfg.amplitude_beta, cfg.amplitude_mix * float(u[1]))
    return jitter_amplitude(image, cfg.amplitude_beta, 1.0 + cfg.amplitude_jitter * (2.0 * np.asarray(u[1:4]) - 1.0))


# ----------------------------------------------------------------------------- batched (torch)


def low_frequency_mask_torch(h: int, w: int, beta: float, device: torch.device | str = "cpu") -> Tensor:
    """(H, W) bool on ``device``: :func:`low_frequency_mask` for torch's FFT layout (the same)."""
    return torch.from_numpy(low_frequency_mask(h, w, beta)).to(device)


def batch_partners(u: Tensor) -> Tensor:
    """(B,) int64 partner of each sample within its batch, from (B,) uniforms: another sample,
    uniformly (:func:`partner_index`), itself in a batch of one."""
    n = u.shape[0]
    if n <= 1:
        return torch.zeros(n, dtype=torch.int64, device=u.device)
    i = torch.arange(n, device=u.device)
    j = (u * (n - 1)).long().clamp_(max=n - 2)
    return j + (j >= i).long()


def augment_amplitude_batch(crops: Tensor, u: Tensor, cfg) -> Tensor:
    """Batched :func:`augment_amplitude` (swap partners: :func:`batch_partners`, other crops of
    the batch before augmentation).

    Args:
        crops: (B, 3, S, S) float in [0, 1].
        u: (B, AMPLITUDE_DRAWS) uniforms.
    Returns:
        (B, 3, S, S) float32 in [0, 1]; samples with ``u0 >= amplitude_prob`` unchanged.
    """
    b, _, h, w = crops.shape
    apply = (u[:, 0] < cfg.amplitude_prob).to(crops.device)
    if not bool(apply.any()):
        return crops
    dev = crops.device
    x = crops.to(torch.float32)
    # float32 FFTs (8x cheaper than float64 on a CPU): within 1e-5 of the float64 loop.
    rows = torch.nonzero(apply).squeeze(1)
    ud = u.to(dev, torch.float64)[rows]
    f = torch.fft.rfft2(x[rows])
    amp, phase = f.abs(), f.angle()
    m = _rfft_mask(h, w, cfg.amplitude_beta, dev)[None, None]
    if cfg.amplitude_mode == "swap":
        lam = (cfg.amplitude_mix * ud[:, 1]).to(torch.float32)[:, None, None, None]
        other = torch.fft.rfft2(x[batch_partners(u.to(dev, torch.float64)[:, 2])[rows]]).abs()
        target = (1.0 - lam) * amp + lam * other
    else:
        target = amp * (1.0 + cfg.amplitude_jitter * (2.0 * ud[:, 1:4] - 1.0)).to(torch.float32)[:, :, None, None]
    new = torch.where(m, target, amp)
    out = x.clone()  # samples left alone keep their exact values
    out[rows] = torch.fft.irfft2(torch.polar(new, phase), s=(h, w)).clamp_(0.0, 1.0)
    return out


def _rfft_mask(h: int, w: int, beta: float, device: torch.device | str) -> Tensor:
    """(H, W // 2 + 1) bool: the low-frequency box in ``torch.fft.rfft2``'s half spectrum
    (the box is symmetric, so the half holds all of it)."""
    return low_frequency_mask_torch(h, w, beta, device)[:, : w // 2 + 1]


__all__ = [
    "AMPLITUDE_DRAWS", "AMPLITUDE_MODES", "augment_amplitude", "augment_amplitude_batch", "batch_partners",
    "jitter_amplitude", "low_frequency_mask", "low_frequency_mask_torch", "mix_amplitude", "partner_index",
    "window_half_sizes",
]
