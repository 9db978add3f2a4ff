"""Natural poses and shapes for the open hand (what the synthetic data draws from).

Pose kinds (flexion/abduction/twist per joint, see :mod:`m3dhmr.hand.limits`):
``open``, ``relaxed``, ``fist``, ``point``, ``pinch``, ``grasp``; ``mixture`` blends two
kinds with a random weight. Every sample gets per-finger curl jitter and Gaussian noise,
then is clamped to the limits, so it always respects them. The global rotation (first
three values) is zero: callers choose the view. :func:`sample_natural_pose` draws either
such a pose or one around a real handshape of :mod:`m3dhmr.hand.handshapes`.
"""

from __future__ import annotations

import numpy as np

from m3dhmr import conventions as cv
from m3dhmr.errors import InputError
from m3dhmr.hand.handshapes import sample_handshapes
from m3dhmr.hand.limits import clamp_pose
from m3dhmr.hand.open_hand import SHAPE_NAMES, SHAPE_RANGES

KINDS: tuple[str, ...] = ("open", "relaxed", "fist", "point", "pinch", "grasp")
ALL_KINDS: tuple[str, ...] = KINDS + ("mixture",)

# Per finger (flexion of its 3 joints); thumb: CMC, MCP, IP (flexion, abduction).
_CURL = {
    "open": (0.05, 0.05, 0.05), "relaxed": (0.35, 0.45, 0.25), "fist": (1.45, 1.75, 1.00),
    "grasp": (0.85, 1.00, 0.60), "pinch_index": (0.75, 0.90, 0.45),
}
_THUMB = {  # (cmc flexion, cmc abduction, cmc twist, mcp flexion, ip flexion)
    "open": (0.0, 0.0, 0.0, 0.05, 0.05), "relaxed": (0.15, 0.15, 0.0, 0.20, 0.25),
    "fist": (0.60, 0.30, 0.0, 0.75, 0.80), "grasp": (0.40, 0.70, 0.0, 0.30, 0.40),
    # Tip to tip with the index (found by a grid search over the thumb: tips ~4 mm apart).
    "pinch": (0.70, 0.20, -0.40, -0.10, 0.10),
}
#: Abduction of the MCPs (index, middle, ring, little) when the fingers spread.
_SPREAD = (0.15, 0.0, -0.12, -0.25)
_NOISE = (0.12, 0.05, 0.04)    # std of (flexion, abduction, twist) noise, radians


def _kind_pose(kind: str, spread: float) -> np.ndarray:
    """(16, 3) mean local pose of ``kind``; row 0 (global) is zero."""
    p = np.zeros((len(cv.KINEMATIC_JOINTS), 3))
    curls = {f: "open" for f in cv.FINGER_NAMES[1:]}
    thumb = "open"
    if kind in ("relaxed", "fist", "grasp"):
        curls = {f: kind for f in curls}
        thumb = kind
    elif kind == "point":
        curls = {f: "fist" for f in curls}
        curls["index"] = "open"
        thumb = "fist"
    elif kind == "pinch":
        curls = {"index": "pinch_index", "middle": "relaxed", "ring": "relaxed", "little": "relaxed"}
        thumb = "pinch"
    elif kind != "open":
        raise InputError(f"unknown pose kind {kind!r}; expected one of {', '.join(ALL_KINDS)}")
    for i, f in enumerate(cv.FINGER_NAMES[1:]):
        for k, j in enumerate(cv.FINGER_JOINTS[f][:3]):
            p[cv.KINEMATIC_JOINTS.index(j), 0] = _CURL[curls[f]][k]
        # Fingers spread less when curled.
        p[cv.KINEMATIC_JOINTS.index(cv.FINGER_JOINTS[f][0]), 1] = spread * _SPREAD[i] * (1.0 - _CURL[curls[f]][0] / 1.6)
    cmc, mcp, ip = (cv.KINEMATIC_JOINTS.index(j) for j in cv.FINGER_JOINTS["thumb"][:3])
    t = _THUMB[thumb]
    p[cmc, 0], p[cmc, 1], p[cmc, 2], p[mcp, 0], p[ip, 0] = t
    return p


def sample_poses(n: int, rng: np.random.Generator, kind: str | None = None) -> np.ndarray:
    """Natural open-hand poses.

    Args:
        n: number of poses.
        rng: the random generator (all randomness comes from it).
        kind: one of :data:`ALL_KINDS`, or None for a random kind per sample.

    Returns:
        (n, 48) float64 poses inside the limits, global rotation zero.
    """
    if n < 0:
        raise InputError(f"n must be >= 0, got {n}")
    if kind is not None and kind not in ALL_KINDS:
        raise InputError(f"unknown pose kind {kind!r}; expected one of {', '.join(ALL_KINDS)}")
    out = np.zeros((n, len(cv.KINEMATIC_JOINTS), 3))
    for i in range(n):
        k = kind if kind is not None else ALL_KINDS[rng.integers(len(ALL_KINDS))]
        spread = rng.uniform(0.0, 1.5)
        if k == "mixture":
            a, b = rng.choice(len(KINDS), size=2, replace=False)
            w = rng.uniform()
            p = (1 - w) * _kind_pose(KINDS[a], spread) + w * _kind_pose(KINDS[b], spread)
        else:
            p = _kind_pose(k, spread)
        # Each finger curls a bit more or less as a whole, then joint-level noise.
        curl = rng.normal(1.0, 0.12, size=5)
        for f, c in zip(cv.FINGER_NAMES, curl):
            rows = [cv.KINEMATIC_JOINTS.index(j) for j in cv.FINGER_JOINTS[f][:3]]
            p[rows, 0] *= c
        p[1:] += rng.normal(0.0, 1.0, size=(len(cv.KINEMATIC_JOINTS) - 1, 3)) * np.asarray(_NOISE)
        out[i] = p
    out[:, 0] = 0.0
    return clamp_pose(out.reshape(n, 3 * len(cv.KINEMATIC_JOINTS)))


def sample_natural_pose(rng: np.random.Generator, handshape_prob: float = 0.5) -> tuple[np.ndarray, str]:
    """One pose: with probability ``handshape_prob`` around a random handshape of the library
    (:func:`m3dhmr.hand.handshapes.sample_handshapes`), else from :func:`sample_poses`.

    Returns the (48,) float64 pose (inside the limits, global rotation zero) and its source:
    the handshape's name, or ``"joints"`` for a joint-by-joint pose.
    """
    if not 0.0 <= handshape_prob <= 1.0:
        raise InputError(f"handshape_prob must be in [0, 1], got {handshape_prob}")
    if rng.random() < handshape_prob:
        poses, names = sample_handshapes(1, rng)
        return poses[0], names[0]
    return sample_poses(1, rng)[0], "joints"


def sample_shapes(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 9) open-hand shapes, uniform within :data:`m3dhmr.hand.open_hand.SHAPE_RANGES`."""
    if n < 0:
        raise InputError(f"n must be >= 0, got {n}")
    lo = np.array([SHAPE_RANGES[k][0] for k in SHAPE_NAMES])
    hi = np.array([SHAPE_RANGES[k][1] for k in SHAPE_NAMES])
    return rng.uniform(lo, hi, size=(n, len(SHAPE_NAMES)))
