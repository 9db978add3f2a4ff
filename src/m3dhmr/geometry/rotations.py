"""Rotation matrices (3, 3) and axis-angle (x right, y down, z forward: see
:mod:`m3dhmr.conventions`). ``x_new = R @ x``.

:func:`rot_x`, :func:`rot_y` and :func:`rot_z` take one angle (a Python or NumPy scalar:
a (3, 3) NumPy float64 matrix, cosines from :mod:`math`) or a batch of angles (...,) as a
NumPy array or torch tensor (a (..., 3, 3) stack of the same type, dtype and device).
"""

from __future__ import annotations

import math
from typing import Union

import numpy as np
import torch
from m3dhmr.errors import InputError

Angle = Union[float, np.ndarray, torch.Tensor]


def _axis_rotation(a: Angle, axis: int) -> np.ndarray | torch.Tensor:
    """Rotation(s) by ``a`` radians about coordinate axis ``axis`` (0 = x, 1 = y, 2 = z)."""
    if isinstance(a, torch.Tensor):
        c, s = torch.cos(a), torch.sin(a)
        z, o, stack = torch.zeros_like(c), torch.ones_like(c), torch.stack
    elif isinstance(a, np.ndarray) and a.ndim > 0:
        c, s = np.cos(a), np.sin(a)
        z, o, stack = np.zeros_like(c), np.ones_like(c), np.stack
    else:
        c, s = math.cos(a), math.sin(a)
        z, o, stack = 0.0, 1.0, None
    rows = (((o, z, z), (z, c, -s), (z, s, c)),
            ((c, z, s), (z, o, z), (-s, z, c)),
            ((c, -s, z), (s, c, z), (z, z, o)))[axis]
    if stack is None:
        return np.array(rows, dtype=np.float64)
    return stack([stack(r, -1) for r in rows], -2)


def rot_x(a: Angle) -> np.ndarray | torch.Tensor:
    """Rotation by ``a`` radians about the x axis: (3, 3), or (..., 3, 3) for angles (...,)."""
    return _axis_rotation(a, 0)


def rot_y(a: Angle) -> np.ndarray | torch.Tensor:
    """Rotation by ``a`` radians about the y axis: (3, 3), or (..., 3, 3) for angles (...,)."""
    return _axis_rotation(a, 1)


def rot_z(a: Angle) -> np.ndarray | torch.Tensor:
    """Rotation by ``a`` radians about the z (optical) axis: (3, 3), or (..., 3, 3) for
    angles (...,); its top-left 2x2 rotates pixel offsets (x right, y down)."""
    return _axis_rotation(a, 2)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation drawn uniformly from SO(3) (a normalised Gaussian quaternion)."""
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def rotation_to_axis_angle(R: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix -> (3,) axis-angle vector (radians, angle in [0, pi]).

    Closed form through the unit quaternion, taking its largest component first
    (Shepperd's method: stable at every angle, including 0 and pi); ~20x cheaper than
    ``scipy.spatial.transform.Rotation.from_matrix(R).as_rotvec()``, which it matches.
    """
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3):
        raise InputError(f"R must have shape (3, 3), got {R.shape}")
    tr = R[0, 0] + R[1, 1] + R[2, 2]
    k = int(np.argmax((R[0, 0], R[1, 1], R[2, 2], tr)))
    if k == 3:
        w, x, y, z = 1 + tr, R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]
    else:
        i, j, m = k, (k + 1) % 3, (k + 2) % 3
        q = np.empty(3)
        q[i] = 1 + 2 * R[i, i] - tr
        q[j] = R[j, i] + R[i, j]
        q[m] = R[m, i] + R[i, m]
        w, (x, y, z) = R[m, j] - R[j, m], q
    v = np.array([x, y, z])
    if w < 0:  # the quaternion with w >= 0 gives the angle in [0, pi]
        w, v = -w, -v
    n = math.sqrt(w * w + v @ v)
    w, v = w / n, v / n
    s_half = math.sqrt(float(v @ v))
    angle = 2.0 * math.atan2(s_half, w)
    # angle / sin(angle / 2) -> 2 as the angle -> 0 (series avoids 0 / 0).
    scale = angle / s_half if s_half > 1e-8 else 2.0 + angle * angle / 12.0
    return v * scale
