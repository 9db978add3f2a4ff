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

from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def _check(name: str, x: Array, last: tuple[int, ...]) -> None:
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise TypeError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")
    if tuple(x.shape[x.ndim - len(last):]) != last or x.ndim < len(last):
        want = "(..., " + ", ".join(str(d) for d in last) + ")"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(x.shape)}")


def _transpose(x: Array) -> Array:
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
    p = points @ _transpose(K)                   # (..., N, 3): rows are K @ x
    z = p[..., 2:3]
    if min_depth is not None:
        z = z.clamp(min=min_depth) if isinstance(z, torch.Tensor) else np.maximum(z, min_depth)
    return p[..., :2] / z


def unproject(uv: Array, depth: Array, K: Array) -> Array:
    """Back-project pixels at given depths (inverse of :func:`project` for ``z > 0``).

    Args:
        uv: (..., N, 2) pixel coordinates.
        depth: (..., N) camera-space z of each point, metres.
        K: (..., 3, 3) intrinsics ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]``.

    Returns:
        (..., N, 3) camera-space points.
    """
    _check("uv", uv, (2,))
    _check("K", K, (3, 3))
    fx, s, cx = K[..., 0, 0, None], K[..., 0, 1, None], K[..., 0, 2, None]   # (..., 1)
    fy, cy = K[..., 1, 1, None], K[..., 1, 2, None]
    yn = (uv[..., 1] - cy) / fy                              # (..., N) normalised coords
    xn = (uv[..., 0] - cx - s * yn) / fx
    if isinstance(uv, torch.Tensor):
        return torch.stack([xn * depth, yn * depth, depth.expand_as(xn)], dim=-1)
    return np.stack([xn * depth, yn * depth, np.broadcast_to(depth, xn.shape)], axis=-1)


def crop_intrinsics(K: Array, box: Array, size: int | tuple[int, int]) -> Array:
    """Intrinsics of an axis-aligned crop resized to ``size`` pixels.

    The box is ``(x0, y0, w, h)`` in the continuous pixel frame of the conventions
    (pixel centres at integers, so the full image spans ``[-0.5, W - 0.5]``): its left
    edge ``x0`` maps to ``-0.5`` and its right edge ``x0 + w`` to ``size_w - 0.5``.

    Args:
        K: (..., 3, 3) original intrinsics.
        box: (..., 4) crop box ``(x0, y0, w, h)`` in original pixels.
        size: output ``S`` or ``(S_w, S_h)`` in pixels.

    Returns:
        (..., 3, 3) crop intrinsics; ``project(x, K_crop)`` equals the crop-space
        pixel position of ``project(x, K)``.
    """
    _check("K", K, (3, 3))
    _check("box", box, (4,))
    sw, sh = (size, size) if isinstance(size, int) else size
    ax = sw / box[..., 2]                                    # (...,) pixel scale
    ay = sh / box[..., 3]
    bx = -box[..., 0] * ax - 0.5                             # u' = ax * u + bx
    by = -box[..., 1] * ay - 0.5
    if isinstance(K, torch.Tensor):
        zeros, ones = torch.zeros_like(ax), torch.ones_like(ax)
        A = torch.stack([torch.stack([ax, zeros, bx], -1), torch.stack([zeros, ay, by], -1),
                         torch.stack([zeros, zeros, ones], -1)], -2)
    else:
        zeros, ones = np.zeros_like(ax), np.ones_like(ax)
        A = np.stack([np.stack([ax, zeros, bx], -1), np.stack([zeros, ay, by], -1),
                      np.stack([zeros, zeros, ones], -1)], -2)
    return A @ K
