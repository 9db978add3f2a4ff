"""Finger states from 3D joints: each finger extended or curled, the thumb out or across.

joints (..., 21, 3) in the package's joint order (:mod:`m3dhmr.conventions`); any unit, any
camera, either hand side (only angles and a ratio along the palm are used):

- the bend of a joint is the angle between the bone into it and the bone out of it
  (0 deg when straight): MCP (wrist->MCP vs MCP->PIP), PIP and DIP; a finger (index to
  little) is "curled" when the sum of its three bends exceeds :data:`CURLED_BEND_DEG`;
- the thumb is "across" when its tip, projected on the line from the index MCP (5) to
  the little MCP (17) (0 at the index MCP, 1 at the little MCP), lies past
  :data:`THUMB_ACROSS`, else "out" (well beyond the index side).

The two thresholds were set once from the real-photo landmark model's 3D landmarks on the
sign-language digits' *training* persons (1,566 photos, :mod:`m3dhmr.data.sign_digits`),
midway between the two states' values: the bend sum of fingers expected extended has
median 14 deg (95th percentile 24), of fingers expected curled median 178 deg (5th
percentile 117), so 90 deg; the thumb tip sits at -0.98 (5th-95th percentile -1.18 to
-0.77) when expected out and at 0.51 (0.01 to 0.90) when expected across, so -0.4. On those
photos the landmark model then agrees with the expected state for 99.6 % of the fingers.
"""

from __future__ import annotations

import numpy as np

from m3dhmr.conventions import FINGER_JOINTS, FINGER_NAMES, NUM_JOINTS
from m3dhmr.errors import InputError

#: A finger whose MCP + PIP + DIP bends exceed this (degrees) is "curled".
CURLED_BEND_DEG = 90.0
#: The thumb is "across" when its tip lies past this fraction of index MCP -> little MCP.
THUMB_ACROSS = -0.4


def bend_angles(joints: np.ndarray) -> np.ndarray:
    """joints (..., 21, 3) -> (..., 5, 3) bends in degrees at each finger's three joints
    after its base (thumb: CMC->MCP->IP; others: MCP, PIP, DIP), 0 = straight."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.shape[-2:] != (NUM_JOINTS, 3):
        raise InputError(f"joints must be (..., 21, 3), got {joints.shape}")
    chains = np.array([(0,) + FINGER_JOINTS[f] for f in FINGER_NAMES])  # (5, 5) wrist + 4 joints
    pts = joints[..., chains, :]  # (..., 5, 5, 3)
    bones = np.diff(pts, axis=-2)  # (..., 5, 4, 3)
    a, b = bones[..., :-1, :], bones[..., 1:, :]
    cos = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def thumb_position(joints: np.ndarray) -> np.ndarray:
    """joints (..., 21, 3) -> (...,) the thumb tip along index MCP -> little MCP (0 at the
    index MCP, 1 at the little MCP; negative beyond the index side)."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.shape[-2:] != (NUM_JOINTS, 3):
        raise InputError(f"joints must be (..., 21, 3), got {joints.shape}")
    axis = joints[..., 17, :] - joints[..., 5, :]
    return ((joints[..., 4, :] - joints[..., 5, :]) * axis).sum(-1) / np.maximum((axis * axis).sum(-1), 1e-12)


def finger_states(joints: np.ndarray) -> np.ndarray:
    """joints (..., 21, 3) -> (..., 5) states: thumb "across"/"out", index..little
    "curled"/"extended" (rules in the module doc)."""
    curled = bend_angles(joints)[..., 1:, :].sum(-1) > CURLED_BEND_DEG  # (..., 4)
    across = thumb_position(joints) > THUMB_ACROSS  # (...,)
    thumb = np.where(across, "across", "out")[..., None]
    fingers = np.where(curled, "curled", "extended")
    return np.concatenate([thumb.astype("<U8"), fingers.astype("<U8")], axis=-1)
