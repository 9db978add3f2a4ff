"""Anatomical joint limits of the open hand, in its pose convention.

Local frame of each finger joint (built from the rest skeleton by
:func:`m3dhmr.hand.build.joint_frames`), whose axes are the three axis-angle components:

    component 0  flexion    axis ``dorsal x bone``; positive curls the finger towards the palm
    component 1  abduction  axis = the joint's dorsal normal; positive turns the bone towards
                            the thumb side (radial); for the thumb the frame is rolled 0.85 rad
                            about its axis so its "dorsal" is the nail's normal
    component 2  twist      axis = the bone (joint -> child); positive turns the nail towards
                            the little-finger side (ulnar)

For a rotation about one axis the component is the angle; for mixed rotations the
limits bound the axis-angle components (a box), which is what the sampler and the
network see. The global rotation (the first 3 pose values) has no limits.
Angles in radians. Sources: standard goniometry ranges (MCP flexion ~90 deg, PIP
~110 deg, DIP ~80 deg, small hyperextension), narrowed for twist and side bending.
"""

from __future__ import annotations

import numpy as np
import torch

from m3dhmr import conventions as cv
from m3dhmr.errors import InputError

#: (lower, upper) per component (flexion, abduction, twist) for each joint kind.
JOINT_KIND_LIMITS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "mcp": ((-0.35, -0.35, -0.20), (1.60, 0.35, 0.20)),
    "pip": ((-0.10, -0.10, -0.10), (1.90, 0.10, 0.10)),
    "dip": ((-0.20, -0.10, -0.10), (1.40, 0.10, 0.10)),
    "thumb_cmc": ((-0.50, -0.50, -0.50), (0.90, 0.80, 0.50)),
    "thumb_mcp": ((-0.20, -0.20, -0.30), (1.00, 0.20, 0.30)),
    "thumb_ip": ((-0.35, -0.10, -0.10), (1.40, 0.10, 0.10)),
}


def joint_kind(j: int) -> str:
    """Kind of FreiHAND joint ``j`` (a non-tip finger joint): 'mcp', 'pip', 'dip' or 'thumb_*'."""
    if j == 0 or j in cv.TIP_JOINTS or not 0 < j < cv.NUM_JOINTS:
        raise InputError(f"joint {j} has no limits (only non-tip finger joints rotate locally)")
    k = (j - 1) % 4
    if cv.finger_of_joint(j) == 1:
        return ("thumb_cmc", "thumb_mcp", "thumb_ip")[k]
    return ("mcp", "pip", "dip")[k]


def pose_limits() -> tuple[np.ndarray, np.ndarray]:
    """(lower (48,), upper (48,)) float64; the global rotation's entries are -inf/+inf."""
    lower = np.full((len(cv.KINEMATIC_JOINTS), 3), -np.inf)
    upper = np.full((len(cv.KINEMATIC_JOINTS), 3), np.inf)
    for k, j in enumerate(cv.KINEMATIC_JOINTS[1:], start=1):
        lo, hi = JOINT_KIND_LIMITS[joint_kind(j)]
        lower[k], upper[k] = lo, hi
    return lower.reshape(-1), upper.reshape(-1)


def _as_pose(pose):
    if pose.ndim != 2 or pose.shape[1] != 48:
        raise InputError(f"pose must have shape (N, 48), got {tuple(pose.shape)}")


def within_limits(pose: np.ndarray, atol: float = 1e-9) -> np.ndarray:
    """(N,) bool: every finger component of pose (N, 48) inside its limits (+- atol)."""
    pose = np.asarray(pose, dtype=np.float64)
    _as_pose(pose)
    lo, hi = pose_limits()
    return np.all((pose >= lo - atol) & (pose <= hi + atol), axis=1)


def clamp_pose(pose):
    """Clamp pose (N, 48) to the limits; numpy array or torch tensor (differentiable inside)."""
    _as_pose(pose)
    lo, hi = pose_limits()
    if isinstance(pose, torch.Tensor):
        return torch.clamp(pose, torch.as_tensor(lo, dtype=pose.dtype, device=pose.device),
                           torch.as_tensor(hi, dtype=pose.dtype, device=pose.device))
    return np.clip(pose, lo, hi)
