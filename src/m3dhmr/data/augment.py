"""Hand crops and their augmentation (paper section 4.2: box scale, rotation, shift, colour).

A crop is a similarity transform of the original image: an in-plane rotation by ``theta``
about the box centre ``c``, a scale ``s = S / side`` and a translation that puts ``c`` at
the crop centre. With the package's pixel convention (pixel centres at integers, an
image of width ``W`` spans ``[-0.5, W - 0.5]``) the crop centre is ``((S-1)/2, (S-1)/2)``:

    q = s R(theta) (p - c) + ((S-1)/2, (S-1)/2)          (affine A, 2x3)

The matching crop *camera* is exact for any intrinsics: with ``K2`` the upper 2x2 of
``K``, the crop maps normalised coordinates ``x_n = (X/Z, Y/Z)`` by ``M = s R(theta) K2``;
its RQ decomposition ``M = U R(phi)`` (``U`` upper triangular, positive diagonal) gives the
crop camera: 3D points rotate about the optical axis by ``R_z(phi)`` and the crop
intrinsics are ``[[U, A @ (cx, cy, 1)], [0, 0, 1]]``. Projecting the rotated points with
them equals warping the original projections with ``A``, to rounding error. When
``fx == fy`` (FreiHAND, our synthetic sets) this is simply ``phi = theta``,
``fx' = s fx``, ``fy' = s fy``, zero skew; otherwise ``phi`` differs from ``theta``
slightly and ``K'`` has a small skew term ``K'[0, 1]`` (the package's projection and
registration use the full matrix). The zero-skew shortcut ``fx' = s fx, fy' = s fy``
would be off by ``s |fx - fy| |sin theta| |x/z|`` pixels: 5 px for a 3 % focal mismatch.

Boxes (documented choices):

- training (``AugmentConfig.enabled``): square box centred on the 2D bounding box of the
  projected joints (always available in training; masks are not used because the
  evaluation split has none and joint boxes are identical for real and synthetic sets),
  side = ``max(width, height) * base_box_scale * scale``, with ``scale`` drawn
  log-uniformly from ``scale_range``, the centre shifted by ``U(-f, f) * side`` in x and y
  (``f = shift_fraction``) and the box rotated by ``U(-r, r)`` degrees.
- evaluation (``enabled`` False or no config): ``eval_box="image"`` (default) crops the
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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch

#: Rec. 601 luma weights (RGB), used for grey levels in contrast and saturation.
LUMA = np.array([0.299, 0.587, 0.114])
#: RGB <-> YIQ: hue rotation is a rotation of the (I, Q) chroma plane.
_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = np.linalg.inv(_RGB2YIQ)


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
    eval_box: Literal["image", "joints"] = "image"
    border: Literal["constant", "replicate"] = "constant"
    min_box_px: float = 8.0  # lower bound on the joint extent (degenerate poses)

    def __post_init__(self) -> None:
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"augment.scale_range must satisfy 0 < low <= high, got {list(self.scale_range)}")
        if not self.base_box_scale > 0:
            raise ValueError(f"augment.base_box_scale must be > 0, got {self.base_box_scale}")
        if not 0 <= self.rotation_deg <= 180:
            raise ValueError(f"augment.rotation_deg must be in [0, 180], got {self.rotation_deg}")
        if not 0 <= self.shift_fraction <= 1:
            raise ValueError(f"augment.shift_fraction must be in [0, 1], got {self.shift_fraction}")
        for name in ("brightness", "contrast", "saturation"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                raise ValueError(f"augment.{name} must be in [0, 1), got {v}")
        if not 0 <= self.hue_deg <= 180:
            raise ValueError(f"augment.hue_deg must be in [0, 180], got {self.hue_deg}")
        if self.eval_box not in ("image", "joints"):
            raise ValueError(f"augment.eval_box must be 'image' or 'joints', got {self.eval_box!r}")
        if self.border not in ("constant", "replicate"):
            raise ValueError(f"augment.border must be 'constant' or 'replicate', got {self.border!r}")
        if not self.min_box_px > 0:
            raise ValueError(f"augment.min_box_px must be > 0, got {self.min_box_px}")


@dataclass(frozen=True)
class CropBox:
    """A square, rotated box in original pixels: centre (x, y), side, rotation (radians)."""

    cx: float
    cy: float
    side: float
    theta: float

    def as_array(self) -> np.ndarray:
        """(4,) float64: cx, cy, side, theta."""
        return np.array([self.cx, self.cy, self.side, self.theta], dtype=np.float64)


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
        raise ValueError(f"joints_box: joints2d must have shape (J, 2), got {j.shape}")
    lo, hi = j.min(axis=0), j.max(axis=0)
    c = 0.5 * (lo + hi)
    extent = max(float((hi - lo).max()), min_extent)
    return float(c[0]), float(c[1]), extent * base_scale


def image_box(width: int, height: int) -> tuple[float, float, float]:
    """The whole image as a square box: (cx, cy, side) with side = max(width, height)."""
    return (width - 1) / 2.0, (height - 1) / 2.0, float(max(width, height))


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


# ----------------------------------------------------------------------------- crop maths


def rotation_z(theta: float) -> np.ndarray:
    """(3, 3) rotation about the optical axis; its top-left 2x2 rotates pixel offsets."""
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def crop_affine(box: CropBox, crop_size: int) -> np.ndarray:
    """(2, 3) affine mapping original pixels to crop pixels: ``q = s R (p - c) + (S-1)/2``."""
    if not box.side > 0:
        raise ValueError(f"crop box side must be > 0, got {box.side}")
    s = crop_size / box.side
    M = s * rotation_z(box.theta)[:2, :2]
    centre = np.full(2, (crop_size - 1) / 2.0)
    t = centre - M @ np.array([box.cx, box.cy])
    return np.concatenate([M, t[:, None]], axis=1)


def crop_camera(K: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact pinhole camera of a similarity crop (see the module docstring).

    Args:
        K: (3, 3) original intrinsics ``[[fx, sk, cx], [0, fy, cy], [0, 0, 1]]``.
        affine: (2, 3) similarity transform from :func:`crop_affine`.
    Returns:
        Kc (3, 3) crop intrinsics and rot (3, 3) original camera -> crop camera rotation
        (about the optical axis), such that ``project(x @ rot.T, Kc) == affine(project(x, K))``.
    """
    M = affine[:, :2] @ K[:2, :2]
    # RQ of a 2x2: the second row of M is d times the second row of R(phi).
    d = math.hypot(M[1, 0], M[1, 1])
    if not d > 0:
        raise ValueError(f"crop_camera: degenerate intrinsics/affine (K={K.tolist()}, affine={affine.tolist()})")
    sn, c = M[1, 0] / d, M[1, 1] / d
    a = M[0, 0] * c - M[0, 1] * sn
    b = M[0, 0] * sn + M[0, 1] * c
    Kc = np.array([[a, b, 0.0], [0.0, d, 0.0], [0.0, 0.0, 1.0]])
    Kc[:2, 2] = affine[:, :2] @ K[:2, 2] + affine[:, 2]
    return Kc, rotation_z(math.atan2(sn, c))


def apply_affine_np(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(..., N, 2) points mapped by a (2, 3) affine: ``p' = A[:, :2] p + A[:, 2]``."""
    return points @ affine[:, :2].T + affine[:, 2]


def warp_image(
    image: np.ndarray, affine: np.ndarray, crop_size: int, border: str = "constant",
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Crop with ``cv2.warpAffine`` (integer pixel centres, matching our convention).

    Args:
        image: (H, W, C) or (H, W) array.
    Returns:
        (S, S, C) or (S, S) array of the same dtype.
    """
    mode = cv2.BORDER_CONSTANT if border == "constant" else cv2.BORDER_REPLICATE
    return cv2.warpAffine(image, affine, (crop_size, crop_size), flags=interpolation, borderMode=mode,
                          borderValue=0)


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
    h = _YIQ2RGB @ np.array([[1, 0, 0], [0, ch, -sh], [0, sh, ch]]) @ _RGB2YIQ
    M = h @ s @ c @ b
    offset = h @ s @ c_off
    return np.concatenate([M, offset[:, None]], axis=1)


def apply_colour(image: np.ndarray, jitter: ColourJitter) -> np.ndarray:
    """Colour-jitter an (H, W, 3) float32 RGB image in [0, 1]; result clipped to [0, 1]."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"apply_colour: image must have shape (H, W, 3), got {image.shape}")
    mean_grey = float(np.asarray(cv2.mean(image)[:3]) @ LUMA) * jitter.brightness  # cv2.mean: no strided pass
    m = colour_matrix(jitter, mean_grey).astype(np.float32)
    out = cv2.transform(image, m)
    return np.clip(out, 0.0, 1.0, out=out)


# ----------------------------------------------------------------------------- two views


def view_mapping(
    rot_1: torch.Tensor, affine_1: torch.Tensor, rot_2: torch.Tensor, affine_2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Transforms taking view 1's predictions to view 2 of the same image.

    Args:
        rot_1, rot_2: (B, 3, 3) original camera -> crop camera rotations.
        affine_1, affine_2: (B, 2, 3) original pixels -> crop pixels.
    Returns:
        R12 (B, 3, 3) with ``v2 = v1 @ R12^T`` (root-relative or camera-space 3D points),
        A12 (B, 2, 3) with ``p2 = A12 @ [p1, 1]`` (crop pixels).
    """
    for name, t, shape in (("rot_1", rot_1, (3, 3)), ("rot_2", rot_2, (3, 3)),
                           ("affine_1", affine_1, (2, 3)), ("affine_2", affine_2, (2, 3))):
        if t.ndim != 3 or tuple(t.shape[1:]) != shape:
            raise ValueError(f"view_mapping: {name} must have shape (B, {shape[0]}, {shape[1]}), got {tuple(t.shape)}")
    R12 = rot_2 @ rot_1.transpose(1, 2)
    M1, t1 = affine_1[:, :, :2], affine_1[:, :, 2:]
    M2, t2 = affine_2[:, :, :2], affine_2[:, :, 2:]
    M12 = M2 @ torch.linalg.inv(M1)
    A12 = torch.cat([M12, t2 - M12 @ t1], dim=2)
    return R12, A12


def apply_rotation(points: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) points rotated by (B, 3, 3) ``R``: ``points @ R^T``."""
    return points @ R.transpose(1, 2)


def apply_affine(points: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """(B, N, 2) points mapped by (B, 2, 3) ``A``: ``points @ A[:, :, :2]^T + A[:, :, 2]``."""
    return points @ A[:, :, :2].transpose(1, 2) + A[:, None, :, 2]
