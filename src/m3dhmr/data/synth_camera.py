"""Camera effects of the synthetic images: exposure and white balance, a tone curve, lens
softness, defocus, motion blur and sensor noise, applied to the whole (H, W, 3) uint8
image (background, hand and objects alike). JPEG quality is drawn per sample too
(:func:`draw_camera`) and used by :mod:`m3dhmr.data.synth_encode`.

Everything works on uint8 images with OpenCV (speed: :mod:`m3dhmr.data.synth`): exposure,
white balance and the tone curve are one per-channel lookup table (decode sRGB to linear
light, scale, encode with the sample's gamma); blurs are ``cv2.filter2D`` with a normalised
kernel; the noise's standard deviation depends on the signal (shot noise, variance
proportional to the linear intensity, plus read noise), its normals a window of a fixed
per-process field at an offset drawn from the sample's seed, so the image stays a
function of the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from m3dhmr.errors import InputError

#: Gamma of the sRGB-like encoding the synthetic images are made in.
BASE_GAMMA = 2.2


@dataclass(frozen=True)
class CameraDraw:
    """One sample's camera effects; neutral values mean "off".

    gains (3,) per-channel linear gain (exposure x white balance); gamma: encoding gamma of
    the output tone curve; gaussian_sigma (px); defocus_radius (px, disc kernel);
    motion_length (px) and motion_angle (radians, image x towards y); shot (variance of the
    shot noise per unit of linear intensity, in 0-1 units) and read (std of the read noise,
    0-1 units); noise_seed; jpeg_quality (1-100).
    """

    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    gamma: float = BASE_GAMMA
    gaussian_sigma: float = 0.0
    defocus_radius: float = 0.0
    motion_length: float = 0.0
    motion_angle: float = 0.0
    shot: float = 0.0
    read: float = 0.0
    noise_seed: int = 0
    jpeg_quality: int = 90

    def as_params(self) -> dict:
        """JSON-ready record of the draw (written into a sample's params)."""
        return {"gains": [float(g) for g in self.gains], "gamma": float(self.gamma),
                "gaussian_sigma": float(self.gaussian_sigma), "defocus_radius": float(self.defocus_radius),
                "motion_length": float(self.motion_length), "motion_angle": float(self.motion_angle),
                "shot_noise": float(self.shot), "read_noise": float(self.read), "jpeg_quality": int(self.jpeg_quality)}


def draw_camera(rng: np.random.Generator, cfg) -> CameraDraw:
    """Draw the camera effects of one sample from ``cfg`` (a :class:`m3dhmr.data.synth_scene.SynthConfig`).

    Always draws the same number of values in the same order (whatever is switched off), so
    switching one effect off changes no other draw of the sample.
    """
    s = cfg.size / 224.0
    u = rng.random(5)                       # on/off of gaussian, defocus, motion, noise, colour
    exposure = float(np.exp(rng.uniform(np.log(cfg.exposure_range[0]), np.log(cfg.exposure_range[1]))))
    wb = np.exp(rng.normal(0.0, cfg.white_balance_std, 2))  # red and blue relative to green
    gamma = float(rng.uniform(*cfg.gamma_range))
    sigma = float(rng.uniform(0.3, 1.2)) * s
    # At least the kernels' smallest sizes at any image size.
    radius = max(float(rng.uniform(1.0, max(cfg.defocus_max, 1.0))) * s, 0.5)
    length = max(float(rng.uniform(2.0, max(cfg.motion_blur_max, 2.0))) * s, 1.0)
    angle = float(rng.uniform(0.0, np.pi))
    shot = float(rng.uniform(*cfg.shot_noise_range))
    read = float(rng.uniform(*cfg.read_noise_range))
    seed = int(rng.integers(2**31 - 1))
    quality = int(rng.integers(cfg.jpeg_quality_range[0], cfg.jpeg_quality_range[1] + 1))
    colour = u[4] < cfg.color_prob
    return CameraDraw(
        gains=(exposure * wb[0], exposure, exposure * wb[1]) if colour else (1.0, 1.0, 1.0),
        gamma=gamma if colour else BASE_GAMMA,
        gaussian_sigma=sigma if u[0] < cfg.blur_prob else 0.0,
        defocus_radius=radius if u[1] < cfg.defocus_prob else 0.0,
        motion_length=length if u[2] < cfg.motion_blur_prob else 0.0,
        motion_angle=angle,
        shot=shot if u[3] < cfg.noise_prob else 0.0,
        read=read if u[3] < cfg.noise_prob else 0.0,
        noise_seed=seed,
        jpeg_quality=quality,
    )


# --------------------------------------------------------------------------- kernels


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """(k, k) float32 kernel of a linear motion of ``length`` px (>= 1) at ``angle`` (radians,
    from image x towards image y), centred, summing to 1: each pixel's weight is the part of
    the segment inside its cell (16 samples per pixel of length, each given to its nearest
    pixel), so a horizontal motion of 3 px is exactly [1/3, 1/3, 1/3]."""
    if length < 1.0:
        raise InputError(f"motion blur length must be >= 1 px, got {length}")
    k = 2 * int(np.ceil(length / 2)) + 1
    c = (k - 1) // 2
    n = int(np.ceil(length * 16))
    t = (np.arange(n) + 0.5) * (length / n) - length / 2
    xs = np.clip(np.round(c + t * np.cos(angle)).astype(int), 0, k - 1)
    ys = np.clip(np.round(c + t * np.sin(angle)).astype(int), 0, k - 1)
    ker = np.bincount(ys * k + xs, minlength=k * k).reshape(k, k).astype(np.float64)
    return (ker / ker.sum()).astype(np.float32)


def disc_kernel(radius: float) -> np.ndarray:
    """(k, k) float32 defocus kernel: a disc of ``radius`` px (>= 0.5), anti-aliased by 4x4
    supersampling of each pixel's coverage, summing to 1."""
    if radius < 0.5:
        raise InputError(f"defocus radius must be >= 0.5 px, got {radius}")
    h = int(np.ceil(radius))
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    g = np.arange(-h, h + 1)
    yy = g[:, None, None, None] + sub[None, None, :, None]
    xx = g[None, :, None, None] + sub[None, None, None, :]
    ker = ((xx ** 2 + yy ** 2) <= radius ** 2).mean(axis=(2, 3))
    return (ker / ker.sum()).astype(np.float32)


def tone_lut(gains: tuple[float, float, float], gamma: float) -> np.ndarray:
    """(256, 1, 3) uint8 lookup table: decode each channel with :data:`BASE_GAMMA`, multiply by
    its gain, clip to 1, encode with ``gamma`` (exposure, white balance and the tone curve)."""
    x = (np.arange(256, dtype=np.float64) / 255.0)[:, None] ** BASE_GAMMA
    y = np.clip(x * np.asarray(gains, dtype=np.float64)[None], 0.0, 1.0) ** (1.0 / gamma)
    return np.round(y * 255.0).astype(np.uint8).reshape(256, 1, 3)


def noise_sigma_lut(shot: float, read: float) -> np.ndarray:
    """(256,) float32: the noise std (in 0-255 units of the encoded image) for each encoded value.

    In linear light the variance is ``shot * lin + read ** 2``; carried to the encoded value
    by the tone curve's slope (d enc / d lin = enc / (gamma * lin)), which gives the familiar
    larger noise in the shadows of a gamma-encoded image without a float round trip."""
    enc = np.arange(256, dtype=np.float64) / 255.0
    lin = enc ** BASE_GAMMA
    std_lin = np.sqrt(shot * lin + read ** 2)
    # At enc -> 0 the slope grows without bound; hold it at its value at enc = 1e-3.
    slope = enc / (BASE_GAMMA * np.maximum(lin, 1e-3 ** BASE_GAMMA))
    slope[0] = 1.0 / (BASE_GAMMA * 1e-3 ** (BASE_GAMMA - 1))
    return (np.minimum(std_lin * slope, 0.1) * 255.0).astype(np.float32)


def apply_camera(img: np.ndarray, cam: CameraDraw) -> np.ndarray:
    """Apply ``cam`` to img (H, W, 3) uint8; returns a new (H, W, 3) uint8 image (``img`` is
    not modified). Order as in a camera: exposure/white balance/tone curve, then lens
    softness, defocus and motion, then sensor noise."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise InputError(f"expected an (H, W, 3) uint8 image, got {img.dtype} {img.shape}")
    out = img
    if cam.gains != (1.0, 1.0, 1.0) or cam.gamma != BASE_GAMMA:
        out = cv2.LUT(out, tone_lut(cam.gains, cam.gamma))
    if cam.gaussian_sigma > 0:
        out = cv2.GaussianBlur(out, (0, 0), cam.gaussian_sigma)
    if cam.defocus_radius > 0:
        out = cv2.filter2D(out, -1, disc_kernel(cam.defocus_radius), borderType=cv2.BORDER_REFLECT)
    if cam.motion_length > 0:
        out = cv2.filter2D(out, -1, motion_kernel(cam.motion_length, cam.motion_angle),
                           borderType=cv2.BORDER_REFLECT)
    if cam.shot > 0 or cam.read > 0:
        h, w = out.shape[:2]
        field = _noise_field(max(h, w))
        # A window of the per-process noise field at an offset drawn from the sample's seed:
        # independent enough between samples, and a fifth of the cost of fresh normals.
        oy, ox = np.random.default_rng(cam.noise_seed).integers(0, len(field) - np.array([h, w]) + 1)
        n = cv2.multiply(field[oy: oy + h, ox: ox + w], cv2.LUT(out, noise_sigma_lut(cam.shot, cam.read)))
        out = cv2.add(out, n, dtype=cv2.CV_8U)
    return out if out is not img else img.copy()


_FIELDS: dict[int, np.ndarray] = {}


def _noise_field(side: int) -> np.ndarray:
    """(N, N, 3) float32 standard normal noise, N = max(2 * side, 512), made once per process
    from a fixed seed (so every worker has the same field and a sample's noise depends only on
    its own seed)."""
    n = max(2 * side, 512)
    if n not in _FIELDS:
        _FIELDS[n] = np.random.default_rng(20).standard_normal((n, n, 3), dtype=np.float32)
    return _FIELDS[n]
