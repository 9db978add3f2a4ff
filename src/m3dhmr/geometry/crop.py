"""Crop maths: similarity crops of an image, their exact pinhole camera, two-view maps.

Used alike by training (:mod:`m3dhmr.data.augment`, :mod:`m3dhmr.data.freihand`,
:mod:`m3dhmr.losses`) and inference (:mod:`m3dhmr.inference.crops`).

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

:func:`crop_affine`, :func:`crop_camera`, :func:`apply_affine` and :func:`apply_rotation`
take one box / camera as NumPy arrays (the per-sample loader and inference) or a batch with
leading dimensions (...,) as NumPy arrays or torch tensors (:mod:`m3dhmr.data.batched`), like
:func:`m3dhmr.geometry.camera.project`. One box's scalar maths (cos, hypot, atan2) uses
:mod:`math`, a batch's the array library's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from m3dhmr.errors import InputError
from m3dhmr.geometry.camera import Array, swap_last_axes
from m3dhmr.geometry.rotations import rot_z


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


def _is_batch(x) -> bool:
    """True for a torch tensor or a NumPy array with dimensions (a batch); False for a scalar."""
    return isinstance(x, torch.Tensor) or np.ndim(x) > 0


def _hypot(x, y):
    if isinstance(x, torch.Tensor):
        return torch.hypot(x, y)
    return np.hypot(x, y) if _is_batch(x) else math.hypot(x, y)


def _atan2(y, x):
    if isinstance(y, torch.Tensor):
        return torch.atan2(y, x)
    return np.arctan2(y, x) if _is_batch(y) else math.atan2(y, x)


def crop_affine(box: CropBox | Array, crop_size: int) -> Array:
    """Affine mapping original pixels to crop pixels: ``q = s R (p - c) + (S-1)/2``.

    Args:
        box: a :class:`CropBox`, or (..., 4) boxes ``(cx, cy, side, theta)`` (NumPy or torch).
        crop_size: S, the crop's side in pixels.
    Returns:
        (2, 3) float64 for a :class:`CropBox`, else (..., 2, 3) of the boxes' type.
    """
    b = box.as_array() if isinstance(box, CropBox) else box
    side = b[..., 2]
    if not bool((side > 0).all()):
        raise InputError(f"crop box side must be > 0, got {box.side if isinstance(box, CropBox) else side}")
    s = crop_size / side
    M = rot_z(b[..., 3])[..., :2, :2] * s[..., None, None]                      # (..., 2, 2)
    t = (crop_size - 1) / 2.0 - (M @ b[..., :2, None])[..., 0]                 # (..., 2)
    parts = [M, t[..., None]]
    return torch.cat(parts, -1) if isinstance(M, torch.Tensor) else np.concatenate(parts, -1)


def crop_camera(K: Array, affine: Array) -> tuple[Array, Array]:
    """The exact pinhole camera of a similarity crop (see the module docstring).

    Args:
        K: (..., 3, 3) original intrinsics ``[[fx, sk, cx], [0, fy, cy], [0, 0, 1]]``.
        affine: (..., 2, 3) similarity transform from :func:`crop_affine` (same type as K).
    Returns:
        Kc (..., 3, 3) crop intrinsics and rot (..., 3, 3) original camera -> crop camera
        rotation (about the optical axis), such that
        ``project(x @ rot.T, Kc) == apply_affine(project(x, K), affine)``.
    """
    M = affine[..., :2] @ K[..., :2, :2]                                        # (..., 2, 2)
    # RQ of a 2x2: the second row of M is d times the second row of R(phi).
    d = _hypot(M[..., 1, 0], M[..., 1, 1])
    if not bool((d > 0).all() if isinstance(d, torch.Tensor) else np.all(d > 0)):
        where = "" if _is_batch(d) else f" (K={K.tolist()}, affine={affine.tolist()})"
        raise InputError(f"crop_camera: degenerate intrinsics/affine{where}")
    sn, c = M[..., 1, 0] / d, M[..., 1, 1] / d
    a = M[..., 0, 0] * c - M[..., 0, 1] * sn
    b = M[..., 0, 0] * sn + M[..., 0, 1] * c
    pp = (affine[..., :2] @ K[..., :2, 2:])[..., 0] + affine[..., 2]            # (..., 2) principal point
    if _is_batch(a):
        xp = torch if isinstance(a, torch.Tensor) else np
        z, o = xp.zeros_like(a), xp.ones_like(a)
        Kc = xp.stack([xp.stack([a, b, pp[..., 0]], -1), xp.stack([z, d, pp[..., 1]], -1),
                       xp.stack([z, z, o], -1)], -2)
    else:
        Kc = np.array([[a, b, pp[0]], [0.0, d, pp[1]], [0.0, 0.0, 1.0]])
    return Kc, rot_z(_atan2(sn, c))


def apply_affine(points: Array, A: Array) -> Array:
    """(..., N, 2) points mapped by (..., 2, 3) affines ``A`` (broadcast; NumPy or torch):
    ``p' = A[:, :2] p + A[:, 2]``, i.e. ``points @ A[..., :2]^T + A[..., 2]``."""
    return points @ swap_last_axes(A[..., :2]) + A[..., None, :, 2]


#: The NumPy spelling of :func:`apply_affine` (the same function; the name is kept for its callers).
apply_affine_np = apply_affine


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


def invert_affine(A: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine, as (2, 3)."""
    M = np.linalg.inv(A[:, :2])
    return np.concatenate([M, -(M @ A[:, 2])[:, None]], axis=1)


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
            raise InputError(f"view_mapping: {name} must have shape (B, {shape[0]}, {shape[1]}), got {tuple(t.shape)}")
    R12 = rot_2 @ rot_1.transpose(1, 2)
    row = affine_1.new_tensor([0.0, 0.0, 1.0]).expand(affine_1.shape[0], 1, 3)
    H1, H2 = torch.cat([affine_1, row], dim=1), torch.cat([affine_2, row], dim=1)
    return R12, (H2 @ torch.linalg.inv(H1))[:, :2]


def apply_rotation(points: Array, R: Array) -> Array:
    """(..., N, 3) points rotated by (..., 3, 3) ``R`` (broadcast; NumPy or torch): ``points @ R^T``."""
    return points @ swap_last_axes(R)
