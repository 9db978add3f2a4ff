"""The package's own articulated right hand (built by :mod:`m3dhmr.hand.build`, shipped as an asset).

Rest frame (metres): wrist joint at the origin, +x along the middle finger, +y out of
the back of the hand, +z from the thumb side to the little finger side. The surface is
closed at the wrist (a rounded stump), one connected edge-manifold piece of ~900 vertices.

Pose (48): ``pose[0:3]`` is the global rotation about the wrist in world axes; then one
triple per finger joint in FreiHAND order without the tips (thumb CMC, MCP, IP, index
MCP, PIP, DIP, middle ..., ring ..., little ...), each ``(flexion, abduction, twist)``
in that joint's anatomical frame (see :mod:`m3dhmr.hand.limits`).

Shape (9, named by :data:`SHAPE_NAMES`, ranges in :data:`SHAPE_RANGES`): relative
changes applied to the rest hand before posing; 0 is the template. ``scale`` scales the
whole hand about the wrist; ``palm_length``/``palm_width`` stretch the palm along x/z;
``<finger>_length`` stretches that finger's three bones; ``thickness`` scales the
palm's y and every finger across its axis. Each bone's change is an affine map of its
rest frame; vertices follow by their skinning weights, joints follow the chain exactly.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from m3dhmr import conventions as cv
from m3dhmr.hand.kinematics import batch_rodrigues, forward_kinematics, linear_blend_skinning
from m3dhmr.hand.model import HandModel, HandOutput
from m3dhmr.hand.template import HandTemplate

#: The built open hand (``python -m m3dhmr.hand.build`` writes it; it ships with the package).
ASSET_PATH = Path(__file__).resolve().parent / "assets" / "open_hand.safetensors"

SHAPE_NAMES: tuple[str, ...] = (
    "scale", "palm_length", "palm_width",
    "thumb_length", "index_length", "middle_length", "ring_length", "little_length",
    "thickness",
)
#: Documented range of each shape value (relative change; 0.1 = 10 % larger).
#: ``scale`` in [-0.12, 0.12] gives wrist-to-middle-tip 0.163-0.207 m around 0.185 m.
SHAPE_RANGES: dict[str, tuple[float, float]] = {
    "scale": (-0.12, 0.12),
    "palm_length": (-0.08, 0.08),
    "palm_width": (-0.08, 0.08),
    "thumb_length": (-0.08, 0.08),
    "index_length": (-0.08, 0.08),
    "middle_length": (-0.08, 0.08),
    "ring_length": (-0.08, 0.08),
    "little_length": (-0.08, 0.08),
    "thickness": (-0.15, 0.15),
}


class OpenHandAsset:
    """The arrays of the shipped asset (numpy) and its :class:`HandTemplate`."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays
        self.template = HandTemplate(
            vertices=arrays["vertices"], faces=arrays["faces"], joint_regressor=arrays["joint_regressor"],
            regions=arrays["regions"], skinning_weights=arrays["skinning_weights"], name="open_hand")


@lru_cache(maxsize=1)
def load_open_hand_asset() -> OpenHandAsset:
    """Read ``hand/assets/open_hand.safetensors`` once per process."""
    from safetensors.numpy import load_file  # heavy: safetensors loads on first use

    if not ASSET_PATH.is_file():
        raise FileNotFoundError(f"open hand asset missing: {ASSET_PATH} (rebuild with scripts/build_open_hand.py)")
    return OpenHandAsset(load_file(str(ASSET_PATH)))


class OpenHand(HandModel):
    """The open hand as a :class:`HandModel`; buffers are made in ``dtype`` from the float64 asset."""

    pose_convention = "open_hand"

    def __init__(self, asset: OpenHandAsset | None = None, dtype: torch.dtype = torch.float32):
        asset = asset or load_open_hand_asset()
        super().__init__(asset.template, SHAPE_NAMES)
        a = asset.arrays
        rest = a["rest_joints"]
        kin = list(cv.KINEMATIC_JOINTS)
        child = [j + 1 for j in kin]      # FreiHAND order: a non-tip joint's child is the next index
        dirs = rest[child] - rest[kin]
        dirs[0] = 0.0                      # the wrist owns the palm, not a bone
        dirs[1:] /= np.linalg.norm(dirs[1:], axis=1, keepdims=True)
        f32 = dtype
        self.register_buffer("vertices_rest", torch.tensor(a["vertices"], dtype=f32), persistent=False)
        self.register_buffer("weights", torch.tensor(a["skinning_weights"], dtype=f32), persistent=False)
        self.register_buffer("joints_rest", torch.tensor(rest[kin], dtype=f32), persistent=False)
        self.register_buffer("frames", torch.tensor(a["joint_frames"], dtype=f32), persistent=False)
        self.register_buffer("bone_dirs", torch.tensor(dirs, dtype=f32), persistent=False)
        self.register_buffer("tip_vertices", torch.tensor(a["tip_vertices"], dtype=torch.long), persistent=False)
        self.parents = cv.KINEMATIC_PARENTS
        # Which shape value stretches each kinematic joint's bone (-1: the wrist's palm).
        length_index = [-1] + [SHAPE_NAMES.index(f"{cv.FINGER_NAMES[cv.finger_of_joint(j) - 1]}_length")
                               for j in kin[1:]]
        self.register_buffer("length_index", torch.as_tensor(length_index, dtype=torch.long), persistent=False)

    def shaped_rest(self, shape: torch.Tensor | None, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rest vertices (B, V, 3) and kinematic joints (B, 16, 3) for shape (B, 9) or None."""
        v, j = self.vertices_rest, self.joints_rest
        if shape is None:
            return v.expand(batch, -1, -1), j.expand(batch, -1, -1)
        B = shape.shape[0]
        eye = torch.eye(3, dtype=v.dtype, device=v.device)
        s = {n: shape[:, i] for i, n in enumerate(SHAPE_NAMES)}
        # Per-bone linear part A (B, 16, 3, 3): fingers stretch along d and thicken across it.
        d = self.bone_dirs                                                   # (16, 3)
        along = torch.einsum("jx,jy->jxy", d, d)                             # (16, 3, 3)
        across = eye - along
        stretch = 1.0 + shape[:, self.length_index.clamp(min=0)]            # (B, 16)
        a = (stretch[..., None, None] * along + (1.0 + s["thickness"])[:, None, None, None] * across)
        palm = torch.diag_embed(torch.stack([1.0 + s["palm_length"], 1.0 + s["thickness"], 1.0 + s["palm_width"]], -1))
        a = torch.cat([palm[:, None], a[:, 1:]], dim=1)
        # New joints down the chain: child = new parent + A_parent (child - parent).
        new = [j[0].expand(B, 3)]
        for k in range(1, len(self.parents)):
            p = self.parents[k]
            new.append(new[p] + torch.einsum("bxy,y->bx", a[:, p], j[k] - j[p]))
        new_j = torch.stack(new, dim=1)                                      # (B, 16, 3)
        # Affine map of each bone's neighbourhood: x -> new_j + A (x - j).
        t = new_j - torch.einsum("bjxy,jy->bjx", a, j)
        bottom = torch.zeros(B, len(self.parents), 1, 4, dtype=v.dtype, device=v.device)
        bottom[..., 3] = 1.0
        m = torch.cat([torch.cat([a, t[..., None]], dim=-1), bottom], dim=-2)
        new_v = linear_blend_skinning(v, self.weights, m)
        k = (1.0 + s["scale"])[:, None, None]
        return new_v * k, new_j * k

    def _forward(self, pose: torch.Tensor, shape: torch.Tensor | None) -> HandOutput:
        B = pose.shape[0]
        pose = pose.to(self.vertices_rest.dtype).reshape(B, len(self.parents), 3)
        if shape is not None:
            shape = shape.to(self.vertices_rest.dtype)
        # A local axis-angle a in frame F is the world axis-angle F a (exactly 0 at rest).
        world_aa = torch.einsum("jxy,bjy->bjx", self.frames, pose)
        rot = batch_rodrigues(world_aa)                                      # (B, 16, 3, 3)
        v_rest, j_rest = self.shaped_rest(shape, B)
        joints16, transforms = forward_kinematics(rot, j_rest, self.parents)
        vertices = linear_blend_skinning(v_rest, self.weights, transforms)
        joints = vertices.new_zeros(B, cv.NUM_JOINTS, 3)
        joints[:, list(cv.KINEMATIC_JOINTS)] = joints16
        joints[:, list(cv.TIP_JOINTS)] = vertices[:, self.tip_vertices]
        return HandOutput(vertices=vertices, joints=joints)


def load_open_hand(dtype: torch.dtype = torch.float32) -> OpenHand:
    """The package's own hand model, buffers in ``dtype`` (use torch.float64 for exact geometry)."""
    return OpenHand(dtype=dtype)
