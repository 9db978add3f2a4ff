"""A :class:`~m3dhmr.export.rig.Rig` and its pose from a :class:`~m3dhmr.hand.fit.HandFit`.

The rig is the fitted hand's own rest shape (its shape values applied), skinned with
the model's weights; joint nodes rest in the joints' anatomical frames (flexion,
abduction and twist axes as the node's x, y, z), at the shaped rest joints; the tips
rest in their parent's frame and carry no weight. Posed, node j's global transform is
the forward-kinematics motion of its joint composed with its rest transform, so
skinning the rig (:func:`~m3dhmr.export.rig.skin`) gives the fitted mesh exactly for
the open hand. MANO's pose correctives are not linear blend skinning: a single pose
bakes them into the rest mesh (exact again); an animation keeps one rest mesh, so its
frames miss the correctives (not measured here: MANO itself cannot ship).

Legend: T frames, V vertices, J = 21 joints.
"""

from __future__ import annotations

import numpy as np
import torch

from m3dhmr import conventions as cv
from m3dhmr.errors import InputError
from m3dhmr.export.rig import Rig
from m3dhmr.hand.articulation import pose_hand
from m3dhmr.hand.fit import HandFit
from m3dhmr.hand.kinematics import joint_offsets


def _rig_arrays(fit: HandFit, index: int, bake_correctives: bool) -> tuple[Rig, np.ndarray]:
    hand = fit.hand.to(dtype=torch.float64)
    a = fit.local[index:index + 1].to(torch.float64)
    shape = fit.shape[index:index + 1].to(torch.float64)
    t = fit.translation[index:index + 1].to(torch.float64)
    posed = pose_hand(hand, a, shape, t)
    rest_v = posed.rest_vertices[0]
    if hand.posedirs is not None and not bake_correctives:
        rest_v = pose_hand(hand, torch.zeros_like(a), shape, t).rest_vertices[0]
    frames = hand.frames.numpy()
    fh = hand.freihand.numpy()
    rest_j = posed.rest_joints[0].numpy()
    rest = np.tile(np.eye(4), (cv.NUM_JOINTS, 1, 1))
    weights = np.zeros((hand.num_vertices, cv.NUM_JOINTS))
    weights[:, fh] = hand.weights.numpy()
    rest[fh, :3, :3] = frames
    rest[fh, :3, 3] = rest_j
    model_of = {int(f): k for k, f in enumerate(fh)}
    tips = hand.tips.numpy()
    for tip, vid in zip(cv.TIP_JOINTS, tips):
        parent = model_of[cv.JOINT_PARENTS[tip]]
        rest[tip, :3, :3] = frames[parent]
        rest[tip, :3, 3] = rest_v[vid].numpy()
    # Row-normalise once more: float64 asset weights can be off by ~1e-16 per row.
    weights /= weights.sum(1, keepdims=True)
    rig = Rig(vertices=rest_v.numpy(), faces=hand.faces.numpy(), weights=weights, rest_transforms=rest)
    return rig, _global_transforms(hand, fit, index, rest)


def _global_transforms(hand, fit: HandFit, index: int, rest: np.ndarray) -> np.ndarray:
    """(21, 4, 4) posed global node transforms of hand ``index`` (camera space, translation included)."""
    h64 = hand.to(dtype=torch.float64)
    a = fit.local[index:index + 1].to(torch.float64)
    shape = fit.shape[index:index + 1].to(torch.float64)
    t = fit.translation[index:index + 1].to(torch.float64)
    posed = pose_hand(h64, a, shape, t, vertex_ids=h64.tips)
    W = posed.world[0].numpy()
    motion = np.tile(np.eye(4), (len(W), 1, 1))                         # rest -> posed, per kinematic joint
    motion[:, :3, :3] = W
    shift = posed.positions - posed.rest_joints
    motion[:, :3, 3] = (joint_offsets(posed.world, shift, posed.rest_joints)[0] + t[0]).numpy()
    fh = h64.freihand.numpy()
    model_of = {int(f): k for k, f in enumerate(fh)}
    out = np.empty((cv.NUM_JOINTS, 4, 4))
    for j in range(cv.NUM_JOINTS):
        k = model_of[j] if j in model_of else model_of[cv.JOINT_PARENTS[j]]
        out[j] = motion[k] @ rest[j]
    return out


def fit_rig(fit: HandFit, index: int = 0, bake_correctives: bool = True) -> tuple[Rig, np.ndarray]:
    """The rig of hand ``index`` and its pose: (Rig, global transforms (1, 21, 4, 4)).

    ``bake_correctives``: MANO's pose correctives of this pose go into the rest mesh,
    so the posed rig is the fitted mesh (the open hand has none).
    """
    if not 0 <= index < len(fit):
        raise IndexError(f"hand {index} of a fit of {len(fit)}")
    rig, g = _rig_arrays(fit, index, bake_correctives)
    return rig, g[None]


def fit_animation(fit: HandFit) -> tuple[Rig, np.ndarray]:
    """One rig for every hand of ``fit`` (frames of a video): (Rig, (T, 21, 4, 4)).

    The frames must share their shape values (fit them with
    ``fit_hand(..., shape=...)``), since a rig has one rest mesh.
    """
    if len(fit) == 0:
        raise InputError("an animation needs at least one frame")
    if not torch.allclose(fit.shape, fit.shape[:1].expand_as(fit.shape), atol=1e-6):
        raise InputError("the frames' shapes differ: fit them with one shape (fit_hand(..., shape=...)) "
                         "to animate one rig")
    rig, g0 = _rig_arrays(fit, 0, bake_correctives=False)
    frames = [g0] + [_global_transforms(fit.hand, fit, i, rig.rest_transforms) for i in range(1, len(fit))]
    return rig, np.stack(frames)
