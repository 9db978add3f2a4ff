"""Hand crops and their augmentation (paper section 4.2: box scale, rotation, shift, colour).

The crop maths (similarity crops, the exact crop camera, two-view maps) live in
:mod:`m3dhmr.geometry.crop`, shared with inference.

Boxes (documented choices):

- training (``AugmentConfig.enabled``): square box centred on the 2D bounding box of the
  projected joints (always available in training; masks are not used because the
  evaluation split has none and joint boxes are identical for real and synthetic sets),
  side = ``max(width, height) * base_box_scale * scale``, with ``scale`` drawn
  log-uniformly from ``scale_range``, the centre shifted by ``U(-f, f) * side`` in x and y
  (``f = shift_fraction``) and the box rotated by ``U(-r, r)`` degrees.
- evaluation (``enabled`` False or no config): ``eval_box="centre"`` crops a centred
  square ``eval_centre_fraction`` of the shorter side (MobRecon's 130 of 224 px);
  ``eval_box="image"`` (default) crops the
  whole image, because FreiHAND's images are already hand-centred 224 x 224 crops and the
  evaluation split may have no ground truth to build a box from; ``"joints"`` uses the
  training box without randomness.
- ``base_box_scale = 2.1`` makes the training box match the evaluation box: the hands fill
  40-70 % of a FreiHAND-style image (``m3dhmr.data.synth``'s ``fill_range``, median 0.55)
  and the joints' extent is about 0.87 of the silhouette's (fingertip joints sit at the
  tips, the wrist joint inside the wrist), so the whole image is ``1 / (0.55 * 0.87) ~ 2.1``
  joint extents, from ``1 / (0.7 * 0.87) ~ 1.64`` to ``1 / (0.4 * 0.87) ~ 2.87``; the default
  log-uniform scale range (0.8, 1.35) gives training boxes of 1.68-2.84 joint extents.
  The centre shift (``U(-0.1, 0.1)`` of the box side) covers the hand's offset from the
  image centre in the evaluation images (synth: up to 8 % of the image).
- rotation +-90 degrees as in MobRecon (hands appear in every orientation in the wild);
  no flip (right hands only).
- colour jitter (brightness, contrast, saturation, hue) is one 3x3 colour matrix plus an
  offset per sample, applied to the 128 x 128 crop with ``cv2.transform``.
- amplitude-spectrum augmentation (off unless ``amplitude_prob > 0``): after the colour
  jitter, :mod:`m3dhmr.data.amplitude` swaps or jitters the crop's low-frequency Fourier
  amplitude and keeps its phase; its draws come after the box and colour draws, so turning
  it on leaves every other augmentation of a sample as it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from m3dhmr.geometry.crop import CropBox
from m3dhmr.errors import InputError

#: Rec. 601 luma weights (RGB), used for grey levels in contrast and saturation.
LUMA = np.array([0.299, 0.587, 0.114])
#: RGB <-> YIQ (3, 3) matrices: hue rotation is a rotation of the (I, Q) chroma plane (also
#: the batched pipeline's, :mod:`m3dhmr.data.batched`).
RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
YIQ2RGB = np.linalg.inv(RGB2YIQ)


@dataclass(frozen=True)
class AugmentConfig:
    """Crop box and augmentation settings (see the module docstring for the choices).

    ``enabled`` False keeps only the deterministic evaluation crop (``eval_box``), so one
    config describes both the training and the evaluation crops.
    """

    enabled: bool = True
    base_box_scale: float = 2.1  # training box side = joint extent x this
    scale_range: tuple[float, float] = (0.8, 1.35)  # log-uniform box scale factor
    rotation_deg: float = 90.0  # box rotation ~ U(-r, r) degrees
    shift_fraction: float = 0.1  # box centre shift ~ U(-f, f) x box side, per axis
    brightness: float = 0.3  # factor ~ U(1 - b, 1 + b)
    contrast: float = 0.3  # factor ~ U(1 - c, 1 + c) about the crop's mean grey
    saturation: float = 0.3  # factor ~ U(1 - s, 1 + s)
    hue_deg: float = 10.0  # chroma rotation ~ U(-h, h) degrees
    eval_box: Literal["image", "joints", "centre"] = "image"
    # Training boxes around the joints, or around the hand's mask where the sample has one
    # (MobRecon: the tight mask box x 1.3 +- 0.2; samples without a mask use the joints).
    box_source: Literal["joints", "mask"] = "joints"
    # eval_box "centre": a centred square this fraction of the image's shorter side
    # (MobRecon evaluates FreiHAND on the 130-px centre of the 224-px image).
    eval_centre_fraction: float = 130.0 / 224.0
    border: Literal["constant", "replicate"] = "constant"
    min_box_px: float = 8.0  # lower bound on the joint extent (degenerate poses)
    # Amplitude-spectrum augmentation (m3dhmr.data.amplitude; off by default): with this
    # probability per view, the crop's low-frequency Fourier amplitude (box of half-size
    # beta x side / 2) is mixed towards another image's ("swap", ratio ~ U(0, amplitude_mix))
    # or scaled per channel ("jitter", by 1 + U(-amplitude_jitter, amplitude_jitter)); its
    # phase is kept.
    amplitude_prob: float = 0.0
    amplitude_beta: float = 0.1
    amplitude_mode: Literal["swap", "jitter"] = "swap"
    amplitude_mix: float = 1.0
    amplitude_jitter: float = 0.3

    def __post_init__(self) -> None:
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise InputError(f"augment.scale_range must satisfy 0 < low <= high, got {list(self.scale_range)}")
        if not self.base_box_scale > 0:
            raise InputError(f"augment.base_box_scale must be > 0, got {self.base_box_scale}")
        if not 0 <= self.rotation_deg <= 180:
            raise InputError(f"augment.rotation_deg must be in [0, 180], got {self.rotation_deg}")
        if not 0 <= self.shift_fraction <= 1:
            raise InputError(f"augment.shift_fraction must be in [0, 1], got {self.shift_fraction}")
        for name in ("brightness", "contrast", "saturation"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                raise InputError(f"augment.{name} must be in [0, 1), got {v}")
        if not 0 <= self.hue_deg <= 180:
            raise InputError(f"augment.hue_deg must be in [0, 180], got {self.hue_deg}")
        if self.eval_box not in ("image", "joints", "centre"):
            raise InputError(f"augment.eval_box must be 'image', 'joints' or 'centre', got {self.eval_box!r}")
        if self.box_source not in ("joints", "mask"):
            raise InputError(f"augment.box_source must be 'joints' or 'mask', got {self.box_source!r}")
        if not 0 < self.eval_centre_fraction <= 4:
            raise InputError(f"augment.eval_centre_fraction must be in (0, 4], got {self.eval_centre_fraction}")
        if self.border not in ("constant", "replicate"):
            raise InputError(f"augment.border must be 'constant' or 'replicate', got {self.border!r}")
        if not self.min_box_px > 0:
            raise InputError(f"augment.min_box_px must be > 0, got {self.min_box_px}")
        for name in ("amplitude_prob", "amplitude_beta", "amplitude_mix", "amplitude_jitter"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise InputError(f"augment.{name} must be a number in [0, 1], got {v!r}")
        if self.amplitude_mode not in ("swap", "jitter"):
            raise InputError(f"augment.amplitude_mode must be 'swap' or 'jitter', got {self.amplitude_mode!r}")


@dataclass(frozen=True)
class ColourJitter:
    """A per-sample colour transform ``rgb' = M @ rgb + offset`` on [0, 1] RGB."""

    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue_rad: float = 0.0


# ----------------------------------------------------------------------------- boxes


def joints_box(joints2d: np.ndarray, base_scale: float, min_extent: float = 1.0) -> tuple[float, float, float]:
    """Square box around 2D joints: centre of their bounding box, side = max extent x scale.

    Args:
        joints2d: (J, 2) pixels.
    Returns:
        (cx, cy, side) in pixels.
    """
    j = np.asarray(joints2d, dtype=np.float64)
    if j.ndim != 2 or j.shape[1] != 2 or len(j) == 0:
        raise InputError(f"joints_box: joints2d must have shape (J, 2), got {j.shape}")
    lo, hi = j.min(axis=0), j.max(axis=0)
    c = 0.5 * (lo + hi)
    extent = max(float((hi - lo).max()), min_extent)
    return float(c[0]), float(c[1]), extent * base_scale


def image_box(width: int, height: int) -> tuple[float, float, float]:
    """The whole image as a square box: (cx, cy, side) with side = max(width, height)."""
    return (width - 1) / 2.0, (height - 1) / 2.0, float(max(width, height))


def mask_box(mask: np.ndarray, base_scale: float, min_extent: float = 1.0) -> tuple[float, float, float] | None:
    """Square box around a (H, W) mask's pixels above 127: centre of their bounding box,
    side = larger extent x scale; None for an empty mask."""
    ys, xs = np.nonzero(np.asarray(mask) > 127)
    if len(xs) == 0:
        return None
    lo, hi = np.array([xs.min(), ys.min()], float) - 0.5, np.array([xs.max(), ys.max()], float) + 0.5
    c = (lo + hi) / 2
    return float(c[0]), float(c[1]), max(float((hi - lo).max()), min_extent) * base_scale


def centre_box(width: int, height: int, fraction: float) -> tuple[float, float, float]:
    """A centred square box: (cx, cy, side) with side = fraction * min(width, height)."""
    return (width - 1) / 2.0, (height - 1) / 2.0, float(fraction * min(width, height))


def sample_box(
    cx: float, cy: float, side: float, cfg: AugmentConfig, rng: np.random.Generator
) -> CropBox:
    """Randomly scale, shift and rotate a base box (draw order fixed for reproducibility)."""
    lo, hi = cfg.scale_range
    scale = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    side = side * scale
    shift = rng.uniform(-cfg.shift_fraction, cfg.shift_fraction, size=2) * side
    theta = math.radians(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    return CropBox(cx + float(shift[0]), cy + float(shift[1]), side, theta)


def sample_colour(cfg: AugmentConfig, rng: np.random.Generator) -> ColourJitter:
    """Random colour jitter factors (draw order fixed for reproducibility)."""
    u = rng.uniform(-1.0, 1.0, size=4)
    return ColourJitter(
        brightness=1.0 + cfg.brightness * float(u[0]),
        contrast=1.0 + cfg.contrast * float(u[1]),
        saturation=1.0 + cfg.saturation * float(u[2]),
        hue_rad=math.radians(cfg.hue_deg) * float(u[3]),
    )


def colour_matrix(jitter: ColourJitter, mean_grey: float) -> np.ndarray:
    """(3, 4) colour transform ``[M | offset]`` on [0, 1] RGB (brightness, contrast, saturation, hue).

    Applied in that order; contrast pulls towards ``mean_grey`` (the crop's mean luma after
    brightness), saturation towards each pixel's own luma, hue rotates the YIQ chroma plane.
    """
    eye = np.eye(3)
    grey = np.outer(np.ones(3), LUMA)  # rgb -> (luma, luma, luma)
    b = jitter.brightness * eye
    c, c_off = jitter.contrast * eye, (1.0 - jitter.contrast) * mean_grey * np.ones(3)
    s = jitter.saturation * eye + (1.0 - jitter.saturation) * grey
    ch, sh = math.cos(jitter.hue_rad), math.sin(jitter.hue_rad)
    h = YIQ2RGB @ np.array([[1, 0, 0], [0, ch, -sh], [0, sh, ch]]) @ RGB2YIQ
    M = h @ s @ c @ b
    offset = h @ s @ c_off
    return np.concatenate([M, offset[:, None]], axis=1)


def apply_colour(image: np.ndarray, jitter: ColourJitter) -> np.ndarray:
    """Colour-jitter an (H, W, 3) float32 RGB image in [0, 1]; result clipped to [0, 1]."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"apply_colour: image must have shape (H, W, 3), got {image.shape}")
    mean_grey = float(np.asarray(cv2.mean(image)[:3]) @ LUMA) * jitter.brightness  # cv2.mean: no strided pass
    m = colour_matrix(jitter, mean_grey).astype(np.float32)
    out = cv2.transform(image, m)
    return np.clip(out, 0.0, 1.0, out=out)
