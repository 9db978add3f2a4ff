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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from m3dhmr.errors import InputError


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


def rotation_z(theta: float) -> np.ndarray:
    """(3, 3) rotation about the optical axis; its top-left 2x2 rotates pixel offsets."""
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def crop_affine(box: CropBox, crop_size: int) -> np.ndarray:
    """(2, 3) affine mapping original pixels to crop pixels: ``q = s R (p - c) + (S-1)/2``."""
    if not box.side > 0:
        raise InputError(f"crop box side must be > 0, got {box.side}")
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
        raise InputError(f"crop_camera: degenerate intrinsics/affine (K={K.tolist()}, affine={affine.tolist()})")
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


def apply_rotation(points: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) points rotated by (B, 3, 3) ``R``: ``points @ R^T``."""
    return points @ R.transpose(1, 2)


def apply_affine(points: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """(B, N, 2) points mapped by (B, 2, 3) ``A``: ``points @ A[:, :, :2]^T + A[:, :, 2]``."""
    return points @ A[:, :, :2].transpose(1, 2) + A[:, None, :, 2]
