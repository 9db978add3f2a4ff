"""Forward kinematics and linear blend skinning as pure, batched, differentiable torch functions.

Rotations follow :mod:`m3dhmr.conventions`: axis-angle vectors in radians, 3x3 matrices
acting on column vectors. A kinematic tree is a tuple ``parents`` with ``parents[j] < j``
and ``-1`` for the root. Rotations are *relative* to the parent and expressed in
world-aligned axes at rest (the MANO / SMPL convention): the rest pose is all identities.

Legend: B batch, J joints of the tree (16 for a hand), V vertices.
"""

from __future__ import annotations

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


def forward_kinematics(
    rot: torch.Tensor, rest_joints: torch.Tensor, parents: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose a kinematic tree.

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
    for j, p in enumerate(parents):
        if (j == 0) != (p < 0) or p >= j:
            raise InputError(f"parents must list the root first (-1) and parents before children; joint {j} has {p}")

    # World rotation of each joint's frame and its displacement from rest, down the tree.
    # Tracking displacements (not positions) makes the rest pose exact: every term is 0.
    eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
    world_rot = [rot[:, 0]]
    shift = [torch.zeros_like(rest_joints[:, 0])]
    for j in range(1, num_joints):
        p = parents[j]
        bone = rest_joints[:, j] - rest_joints[:, p]                      # (B, 3)
        shift.append(shift[p] + torch.einsum("bxy,by->bx", world_rot[p] - eye, bone))
        world_rot.append(world_rot[p] @ rot[:, j])
    posed_rot = torch.stack(world_rot, dim=1)                             # (B, J, 3, 3)
    displacement = torch.stack(shift, dim=1)                              # (B, J, 3)
    posed_joints = rest_joints + displacement
    # x -> R (x - rest_j) + posed_j = x + (R - I) x + t with t = displacement - (R - I) rest_j.
    translation = displacement - torch.einsum("bjxy,bjy->bjx", posed_rot - eye, rest_joints)
    bottom = torch.zeros(rot.shape[:2] + (1, 4), dtype=rot.dtype, device=rot.device)
    bottom[..., 0, 3] = 1.0
    transforms = torch.cat([torch.cat([posed_rot, translation[..., None]], dim=-1), bottom], dim=-2)
    return posed_joints, transforms


def linear_blend_skinning(vertices: torch.Tensor, weights: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
    """Move vertices by a weighted blend of joint transforms.

    Args:
        vertices: (B, V, 3) rest vertices (or (V, 3), shared by the batch).
        weights: (V, J) skinning weights, rows summing to 1.
        transforms: (B, J, 4, 4) transforms from :func:`forward_kinematics`.

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
