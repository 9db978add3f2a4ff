"""Forward kinematics and linear blend skinning as pure, batched, differentiable torch functions.

Rotations follow :mod:`m3dhmr.conventions`: axis-angle vectors in radians, 3x3 matrices
acting on column vectors. A kinematic tree is a tuple ``parents`` with ``parents[j] < j``
and ``-1`` for the root. Rotations are *relative* to the parent and expressed in
world-aligned axes at rest (the MANO / SMPL convention): the rest pose is all identities.

Legend: B batch, J joints of the tree (16 for a hand), V vertices (N: a subset of them),
K influences per vertex.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import torch
from m3dhmr.errors import InputError

# Below this squared angle the Taylor series is used (its error ~theta^6 / 5040 is
# far below float64 round-off there), so the map and its gradient are finite at 0.
_SMALL_ANGLE_SQ = 1e-6


def _check_last(x: torch.Tensor, name: str, tail: tuple[int, ...]) -> None:
    if x.shape[-len(tail):] != tail:
        raise InputError(f"{name} must end in shape {tail}, got {tuple(x.shape)}")


def batch_rodrigues(aa: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from axis-angle vectors.

    Args:
        aa: (..., 3) axis-angle vectors, radians (usually (B, 3)).

    Returns:
        (..., 3, 3) rotation matrices ``R = I + A K + B K^2`` with ``K = [aa]_x``,
        ``A = sin(t)/t``, ``B = (1 - cos t)/t^2``; exactly the identity at ``aa = 0``
        and differentiable everywhere (Taylor series near 0, no division by 0).
    """
    _check_last(aa, "aa", (3,))
    theta_sq = (aa * aa).sum(-1)
    small = theta_sq < _SMALL_ANGLE_SQ
    # A safe angle in the unused branch keeps torch.where's gradient free of NaN.
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta_sq), theta_sq))
    a = torch.where(small, 1.0 - theta_sq / 6.0 + theta_sq * theta_sq / 120.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta_sq / 24.0 + theta_sq * theta_sq / 720.0,
                    (1.0 - torch.cos(theta)) / (theta * theta))
    x, y, z = aa.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(aa.shape[:-1] + (3, 3))
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(k)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


@lru_cache(maxsize=32)
def tree_levels(parents: tuple[int, ...], device: torch.device | None = None
                ) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """The joints of a kinematic tree grouped by depth, so posing walks it one depth at a time.

    Args:
        parents: length-J parent indices, ``-1`` for the root (joint 0), ``parents[j] < j``.
        device: where the index tensors live (None: the CPU).

    Returns:
        per depth 1, 2, ...: ``(ids, their parents)``, two (n,) long tensors. Cached per
        ``(parents, device)``: the tree is checked and grouped once, not on every pose.
    """
    parents = tuple(int(p) for p in parents)
    for j, p in enumerate(parents):
        if (j == 0) != (p < 0) or p >= j:
            raise InputError(f"parents must list the root first (-1) and parents before children; joint {j} has {p}")
    depth = [0] * len(parents)
    for j in range(1, len(parents)):
        depth[j] = depth[parents[j]] + 1
    levels = []
    for d in range(1, max(depth, default=0) + 1):
        ids = [j for j in range(len(parents)) if depth[j] == d]
        levels.append((torch.as_tensor(ids, dtype=torch.long, device=device),
                       torch.as_tensor([parents[j] for j in ids], dtype=torch.long, device=device)))
    return tuple(levels)


def world_transforms(rot: torch.Tensor, rest_joints: torch.Tensor,
                     levels: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward kinematics: each joint's world rotation and displacement, one tree depth at a time.

    ``W_j = W_parent R_j`` and posed joints ``P_j = P_parent + W_parent (J_j - J_parent)``,
    the root turning about its rest position. The displacement ``P - J`` is what is
    accumulated (``(W_parent - I)`` times each bone), so the rest pose is exact: every
    term is 0.

    Args:
        rot: (B, J, 3, 3) rotation of each joint relative to its parent (world-aligned
            axes at rest); ``rot[:, 0]`` is the global rotation about the root.
        rest_joints: (B, J, 3) joint positions at rest.
        levels: :func:`tree_levels` of the tree, on ``rot``'s device.

    Returns:
        world: (B, J, 3, 3) rotations ``W`` and displacement: (B, J, 3) ``P - J``.
    """
    eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
    world = rot                                        # the root's entry is final; the others are set below
    shift = torch.zeros_like(rest_joints)
    for ids, par in levels:
        wp = world.index_select(1, par)                                              # (B, n, 3, 3)
        bone = rest_joints.index_select(1, ids) - rest_joints.index_select(1, par)   # (B, n, 3)
        shift = shift.index_copy(1, ids, shift.index_select(1, par) + torch.einsum("bjxy,bjy->bjx", wp - eye, bone))
        world = world.index_copy(1, ids, wp @ rot.index_select(1, ids))
    return world, shift


def joint_offsets(world: torch.Tensor, displacement: torch.Tensor, rest_joints: torch.Tensor) -> torch.Tensor:
    """Translations ``t_j = P_j - W_j J_j`` of the rigid motions ``x -> W_j x + t_j`` that take
    joint j's rest frame to its posed one, formed as ``(P_j - J_j) - (W_j - I) J_j`` so
    they are exactly 0 at the rest pose.

    Args:
        world: (B, J, 3, 3) and displacement: (B, J, 3) from :func:`world_transforms`.
        rest_joints: (B, J, 3).

    Returns:
        (B, J, 3).
    """
    eye = torch.eye(3, dtype=world.dtype, device=world.device)
    return displacement - torch.einsum("bjxy,bjy->bjx", world - eye, rest_joints)


def forward_kinematics(
    rot: torch.Tensor, rest_joints: torch.Tensor, parents: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose a kinematic tree (:func:`world_transforms`) and give each joint's 4x4 motion.

    Args:
        rot: (B, J, 3, 3) rotation of each joint relative to its parent (world-aligned
            axes at rest); ``rot[:, 0]`` is the global rotation about the root.
        rest_joints: (B, J, 3) joint positions at rest.
        parents: length-J parent indices, ``-1`` for the root, ``parents[j] < j``.

    Returns:
        posed_joints: (B, J, 3) joint positions after posing (the root stays put).
        transforms: (B, J, 4, 4) skinning transforms: the rigid motion of each joint's
            frame from rest to posed, so a rest point ``x`` attached to joint j moves to
            ``transforms[:, j] @ [x, 1]``.
    """
    _check_last(rot, "rot", (3, 3))
    _check_last(rest_joints, "rest_joints", (3,))
    if rot.dim() != 4 or rest_joints.dim() != 3 or rot.shape[:2] != rest_joints.shape[:2]:
        raise InputError(f"rot (B, J, 3, 3) and rest_joints (B, J, 3) disagree: "
                         f"{tuple(rot.shape)} vs {tuple(rest_joints.shape)}")
    num_joints = rot.shape[1]
    if len(parents) != num_joints:
        raise InputError(f"parents has {len(parents)} entries for {num_joints} joints")
    world, displacement = world_transforms(rot, rest_joints, tree_levels(tuple(parents), rot.device))
    posed_joints = rest_joints + displacement
    translation = joint_offsets(world, displacement, rest_joints)
    bottom = torch.zeros(rot.shape[:2] + (1, 4), dtype=rot.dtype, device=rot.device)
    bottom[..., 0, 3] = 1.0
    transforms = torch.cat([torch.cat([world, translation[..., None]], dim=-1), bottom], dim=-2)
    return posed_joints, transforms


def linear_blend_skinning(vertices: torch.Tensor, weights: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
    """Move vertices by a weighted blend of joint transforms (dense weights).

    Args:
        vertices: (B, V, 3) rest vertices (or (V, 3), shared by the batch).
        weights: (V, J) skinning weights, rows summing to 1.
        transforms: (B, J, 4, 4) transforms from :func:`forward_kinematics` (or any affine maps).

    Returns:
        (B, V, 3) skinned vertices ``sum_j w_vj (R_j v + t_j)``.
    """
    _check_last(transforms, "transforms", (4, 4))
    if vertices.dim() == 2:
        vertices = vertices.expand(transforms.shape[0], -1, -1)
    _check_last(vertices, "vertices", (3,))
    if weights.dim() != 2 or weights.shape[0] != vertices.shape[1] or weights.shape[1] != transforms.shape[1]:
        raise InputError(f"weights must be (V, J) = ({vertices.shape[1]}, {transforms.shape[1]}), "
                         f"got {tuple(weights.shape)}")
    # v + sum_j w_vj ((R_j - I) v + t_j): the same blend, but exactly v when every R_j = I, t_j = 0.
    eye = torch.eye(3, dtype=transforms.dtype, device=transforms.device)
    motion = torch.cat([transforms[:, :, :3, :3] - eye, transforms[:, :, :3, 3:]], dim=-1)   # (B, J, 3, 4)
    blended = torch.einsum("vj,bjxy->bvxy", weights, motion)                                  # (B, V, 3, 4)
    return vertices + torch.einsum("bvxy,bvy->bvx", blended[..., :3], vertices) + blended[..., 3]


def influence_skinning(vertices: torch.Tensor, world: torch.Tensor, offsets: torch.Tensor, influences: torch.Tensor,
                       influence_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear blend skinning over each vertex's few influences, keeping the per-joint parts.

    The same blend as :func:`linear_blend_skinning`, for a caller that also needs
    ``x_vi = W_j v + t_j`` per influence (the fit's analytic Jacobian does); without
    that need the dense blend is the faster one (2.4-3.4x at batch 64 in
    ``benchmarks/kernel_choices.py``).

    Args:
        vertices: (B, N, 3) rest vertices.
        world: (B, J, 3, 3) and offsets: (B, J, 3): the motions ``x -> W_j x + t_j``
            (:func:`world_transforms`, :func:`joint_offsets`).
        influences: (N, K) joint ids of each vertex's influences (padding: any id, weight 0).
        influence_weights: (N, K) their weights.

    Returns:
        vertices: (B, N, 3) ``sum_i w_vi x_vi`` and parts: (B, N, K, 3) the ``x_vi``.
    """
    B, N = vertices.shape[:2]
    J = world.shape[1]
    # Every joint's W_j v in one matrix product, then each vertex's influences picked
    # out (3x faster than gathering a 3x3 W per influence).
    turned = torch.matmul(vertices, world.reshape(B, 3 * J, 3).transpose(1, 2)).reshape(B, N, J, 3)   # (B, N, J, 3)
    idx = influences[None, :, :, None].expand(B, N, influences.shape[1], 3)
    parts = torch.gather(turned, 2, idx) + torch.gather(offsets[:, None].expand_as(turned), 2, idx)
    return torch.einsum("vi,bvix->bvx", influence_weights, parts), parts


def skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) vectors -> (..., 3, 3) cross-product matrices ``[v]_x`` (``[v]_x w = v x w``)."""
    _check_last(v, "v", (3,))
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(v.shape[:-1] + (3, 3))


def so3_left_jacobian(aa: torch.Tensor) -> torch.Tensor:
    """Left Jacobian of SO(3)'s exponential map: ``exp(aa + d) ~ exp(J_l(aa) d) exp(aa)``.

    Args:
        aa: (..., 3) axis-angle vectors, radians.

    Returns:
        (..., 3, 3) ``I + (1 - cos t)/t^2 K + (t - sin t)/t^3 K^2`` with ``K = [aa]_x``
        (Taylor series near 0, so it is the identity at 0 and differentiable there).
        A small world-frame rotation ``J_l(aa) d`` is what a change ``d`` of the
        axis-angle vector does to the rotation; the fit's Jacobian uses it.
    """
    _check_last(aa, "aa", (3,))
    theta_sq = (aa * aa).sum(-1)
    small = theta_sq < _SMALL_ANGLE_SQ
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta_sq), theta_sq))
    b = torch.where(small, 0.5 - theta_sq / 24.0 + theta_sq * theta_sq / 720.0,
                    (1.0 - torch.cos(theta)) / (theta * theta))
    c = torch.where(small, 1.0 / 6.0 - theta_sq / 120.0 + theta_sq * theta_sq / 5040.0,
                    (theta - torch.sin(theta)) / (theta * theta * theta))
    k = skew(aa)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(k)
    return eye + b[..., None, None] * k + c[..., None, None] * (k @ k)


def rodrigues_with_left_jacobian(aa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(batch_rodrigues(aa), so3_left_jacobian(aa))`` sharing their terms (the fit needs both).

    Args:
        aa: (..., 3) axis-angle vectors, radians.

    Returns:
        (..., 3, 3) rotations and (..., 3, 3) left Jacobians.
    """
    _check_last(aa, "aa", (3,))
    theta_sq = (aa * aa).sum(-1)
    small = theta_sq < _SMALL_ANGLE_SQ
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta_sq), theta_sq))
    sin, cos = torch.sin(theta), torch.cos(theta)
    t2 = theta_sq * theta_sq
    a = torch.where(small, 1.0 - theta_sq / 6.0 + t2 / 120.0, sin / theta)
    b = torch.where(small, 0.5 - theta_sq / 24.0 + t2 / 720.0, (1.0 - cos) / (theta * theta))
    c = torch.where(small, 1.0 / 6.0 - theta_sq / 120.0 + t2 / 5040.0, (theta - sin) / (theta * theta * theta))
    k = skew(aa)
    kk = k @ k
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device)
    b = b[..., None, None]
    return eye + a[..., None, None] * k + b * kk, eye + b * k + c[..., None, None] * kk


def matrix_to_axis_angle(rot: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotations -> (..., 3) axis-angle vectors, angle in [0, pi].

    Through the unit quaternion with the largest-component branch (Shepperd), so it is
    stable at 0 and near pi; the torch twin of
    :func:`m3dhmr.geometry.rotations.rotation_to_axis_angle` (tested against it).
    """
    return quaternion_to_axis_angle(matrix_to_quaternion(rot))


def quaternion_to_axis_angle(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) unit quaternions (w, x, y, z), w >= 0 -> (..., 3) axis-angle, angle in [0, pi]."""
    w, v = q[..., 0], q[..., 1:]
    s = torch.linalg.vector_norm(v, dim=-1)
    angle = 2.0 * torch.atan2(s, w)
    small = s < 1e-8
    scale = torch.where(small, 2.0 + angle * angle / 12.0, angle / torch.where(small, torch.ones_like(s), s))
    return v * scale[..., None]


def matrix_to_quaternion(rot: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotations -> (..., 4) unit quaternions ``(w, x, y, z)`` with ``w >= 0``.

    Every candidate of Shepperd's method is formed and the one from the largest diagonal
    term kept (vectorised, no branch per element); see :func:`quaternion_to_xyzw` for
    the glTF / SciPy order.
    """
    _check_last(rot, "rot", (3, 3))
    m = rot
    r00, r11, r22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    tr = r00 + r11 + r22
    cands = torch.stack([
        torch.stack([1 + tr, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + r00 - r11 - r22, m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 - r00 + r11 - r22, m[..., 1, 2] + m[..., 2, 1]], -1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], 1 - r00 - r11 + r22], -1),
    ], dim=-2)                                                             # (..., 4, 4)
    pick = torch.stack([tr, r00, r11, r22], -1).argmax(-1)                # (...,)
    q = torch.gather(cands, -2, pick[..., None, None].expand(pick.shape + (1, 4))).squeeze(-2)
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_to_xyzw(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) ``(w, x, y, z)`` -> ``(x, y, z, w)`` (glTF's and SciPy's order)."""
    return torch.cat([q[..., 1:], q[..., :1]], dim=-1)
