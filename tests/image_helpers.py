"""Mirroring a box and intrinsics with a horizontally flipped image (left-hand tests)."""

from __future__ import annotations

import numpy as np


def mirror_box(box, width: int) -> np.ndarray:
    """Box x, y, w, h of the horizontally mirrored image (``u -> W - 1 - u``): (4,) -> (4,)."""
    b = np.asarray(box, dtype=np.float64)
    return np.array([width - 1 - b[0] - b[2], b[1], b[2], b[3]])


def mirror_intrinsics(K: np.ndarray, width: int) -> np.ndarray:
    """(3, 3) K of the horizontally mirrored image: ``cx -> W - 1 - cx`` (and the skew's sign flips)."""
    K = np.array(K, dtype=np.float64)
    K[0, 2] = width - 1 - K[0, 2]
    K[0, 1] = -K[0, 1]
    return K
