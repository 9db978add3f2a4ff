"""Pinhole camera maths (OpenCV convention, see :mod:`m3dhmr.conventions`).

Every function accepts numpy arrays or torch tensors (not mixed) and broadcasts the
leading dimensions, so ``points (B, N, 3)`` with ``K (B, 3, 3)`` or ``K (3, 3)`` both work.

Depth handling: :func:`project` divides by the depth as it is. Points with ``z < 0``
(behind the camera) project mirrored through the centre of projection and ``z == 0``
gives inf/nan, exactly like the pinhole formula; pass ``min_depth`` to clamp the depth
instead (finite values and gradients, e.g. in a loss). Callers that need to know
which points are visible test ``points[..., 2] > 0`` themselves.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import torch
from m3dhmr.errors import InputError

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def _check(name: str, x: Array, last: tuple[int, ...]) -> None:
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise TypeError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")
    if tuple(x.shape[x.ndim - len(last):]) != last or x.ndim < len(last):
        want = "(..., " + ", ".join(str(d) for d in last) + ")"
        raise InputError(f"{name}: expected shape {want}, got {tuple(x.shape)}")


def swap_last_axes(x: Array) -> Array:
    """(..., M, N) -> (..., N, M): the matrix transpose of a numpy array or torch tensor,
    so row vectors can be multiplied by batched matrices as ``points @ swap_last_axes(K)``."""
    return x.transpose(-1, -2) if isinstance(x, torch.Tensor) else np.swapaxes(x, -1, -2)


def project(points: Array, K: Array, min_depth: float | None = None) -> Array:
    """Project camera-space points to pixels.

    Args:
        points: (..., N, 3) camera-space points in metres.
        K: (..., 3, 3) intrinsics (last row ``[0, 0, 1]``), broadcast against ``points``.
        min_depth: if given, depths below it are clamped to it before dividing.

    Returns:
        (..., N, 2) pixel coordinates ``(u, v)``.
    """
    _check("points", points, (3,))
    _check("K", K, (3, 3))
    p = points @ swap_last_axes(K)                 # (..., N, 3): rows are K @ x
    z = p[..., 2:3]
    if min_depth is not None:
        z = z.clamp(min=min_depth) if isinstance(z, torch.Tensor) else np.maximum(z, min_depth)
    return p[..., :2] / z


def intrinsics_from_fov(height: int, width: int, fov_deg: float, where: str = "fov_deg") -> np.ndarray:
    """(3, 3) pinhole K of an ``H x W`` image with horizontal field of view ``fov_deg``:
    ``fx = fy = (W / 2) / tan(fov / 2)``, principal point ``((W-1)/2, (H-1)/2)``.

    The package's one check of an assumed field of view: it must be in [1, 170]
    degrees (focal lengths from ~W / 23 to ~57 W); the error names ``where`` (e.g. ``--fov``)."""
    if height < 1 or width < 1:
        raise InputError(f"image size must be positive, got {width}x{height}")
    if not (math.isfinite(fov_deg) and 1.0 <= fov_deg <= 170.0):
        raise InputError(f"{where}: field of view must be in [1, 170] degrees, got {fov_deg}")
    f = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
