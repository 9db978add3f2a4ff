"""The fitter's view of a hand model: an articulated, skinned right hand as plain tensors.

:class:`ArticulatedHand` holds what posing needs from the open hand or MANO in one
layout, so the fit (:mod:`m3dhmr.hand.fit`) treats both alike:

    rest(s)   = sigma(s) * (v0 + sum_i s_i B_i)        vertices (V, 3); joints likewise (16, 3)
    R_k       = exp([F_k a_k]_x)                        a_k: (flexion, abduction, twist) in joint k's
                                                        anatomical frame F_k (the root: F = I, world axes)
    W_k = W_parent R_k;  P_k = P_parent + W_parent (J_k - J_parent)      forward kinematics
    x_vk = W_k (v - J_k) + P_k;  vertex = sum_k w_vk x_vk + t            linear blend skinning

``sigma(s) = 1 + s[scale_index]`` for the open hand (its ``scale`` value) and 1 for MANO.
The open hand's other shape values act affinely on the rest hand (each bone's stretch
and thickness are linear in them; see :meth:`m3dhmr.hand.open_hand.OpenHand.shaped_rest`),
so the basis ``B`` is exact, which ``tests/test_articulation.py`` checks. MANO's basis
is its ``shapedirs``; its pose correctives (``posedirs``) are added to the rest vertices.

:func:`pose_hand` poses it; :func:`pose_jacobian` gives the analytic Jacobian of the
posed vertices and joints with respect to (translation, the 48 pose values, shape),
checked against autograd in the tests. Writing it by hand (rather than
``torch.func.jacfwd``, 22 ms for one hand here) is what makes a fit a few milliseconds.

Legend: B batch, V vertices (N: a subset of them), S shape values, P = 3 + 48 + S parameters.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from m3dhmr import conventions as cv
from m3dhmr.hand.kinematics import (batch_rodrigues, influence_skinning, joint_offsets, rodrigues_with_left_jacobian,
                                    skew, so3_left_jacobian, tree_levels, world_transforms)
from m3dhmr.hand.limits import JOINT_KIND_LIMITS, joint_kind
from m3dhmr.hand.mano import MANO_TO_FREIHAND
from m3dhmr.hand.model import HandModel
from m3dhmr.hand.open_hand import SHAPE_RANGES
from m3dhmr.errors import InputError

NUM_KINEMATIC = len(cv.KINEMATIC_JOINTS)


@dataclass(frozen=True, eq=False)
class ArticulatedHand:
    """A hand model's articulation, in the model's own joint order (tensors in one dtype).

    Attributes:
        v0: (V, 3) rest vertices at shape 0. shape_basis: (S, V, 3).
        joints0: (16, 3) rest kinematic joints at shape 0. joint_basis: (S, 16, 3).
        scale_index: the shape value that scales the whole hand (``sigma``), or None.
        weights: (V, 16) skinning weights. parents: the 16 joints' parents (-1 root).
        frames: (16, 3, 3) anatomical frame of each joint (columns flexion, abduction,
            twist axes; identity for the root).
        lower, upper: (16, 3) limits of ``a`` (the root: -inf, inf).
        posedirs: (15 * 9, V, 3) pose correctives (MANO) or None.
        tips: (5,) fingertip vertex ids (thumb .. little).
        freihand: (16,) FreiHAND joint index of each kinematic joint.
        shape_names, shape_halfwidth: names and (S,) typical size of each shape value
            (what the shape prior is measured in).
        convention: the model's :attr:`~m3dhmr.hand.model.HandModel.pose_convention`.
        pose_mean: (48,) added by the model to the pose it is given (MANO's hands_mean).
        subtree: (16, 16) ``subtree[k, j] = 1`` when joint j is k or below it.
        levels: :func:`~m3dhmr.hand.kinematics.tree_levels` of ``parents`` (on the tensors' device).
        influences, influence_weights: (V, K) each vertex's joints with non-zero weight
            (padded with weight 0) and their weights: the same skinning, K = the most
            any vertex has.
        faces: (F, 3) the template's triangles.
    """

    v0: torch.Tensor
    shape_basis: torch.Tensor
    joints0: torch.Tensor
    joint_basis: torch.Tensor
    scale_index: int | None
    weights: torch.Tensor
    parents: tuple[int, ...]
    frames: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    posedirs: torch.Tensor | None
    tips: torch.Tensor
    freihand: torch.Tensor
    shape_names: tuple[str, ...]
    shape_halfwidth: torch.Tensor
    convention: str
    pose_mean: torch.Tensor
    subtree: torch.Tensor
    levels: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    influences: torch.Tensor
    influence_weights: torch.Tensor
    faces: torch.Tensor

    @property
    def num_vertices(self) -> int:
        return int(self.v0.shape[0])

    @property
    def num_shape(self) -> int:
        return int(self.shape_basis.shape[0])

    @property
    def num_params(self) -> int:
        return 3 + 3 * NUM_KINEMATIC + self.num_shape

    def freihand_order(self) -> torch.Tensor:
        """(16,) model joint index of each of :data:`~m3dhmr.conventions.KINEMATIC_JOINTS`."""
        inv = {int(f): k for k, f in enumerate(self.freihand)}
        return torch.as_tensor([inv[j] for j in cv.KINEMATIC_JOINTS], dtype=torch.long)

    def native_pose(self, a: torch.Tensor) -> torch.Tensor:
        """Local values a (B, 16, 3) -> the model's own pose (B, 48), so ``model(native_pose(a))`` poses it."""
        if self.convention == "open_hand":
            return a.reshape(a.shape[0], -1)
        world = torch.einsum("jxy,bjy->bjx", self.frames, a)
        return world.reshape(a.shape[0], -1) - self.pose_mean

    def local_from_native(self, pose: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`native_pose`: (B, 48) -> (B, 16, 3)."""
        p = pose.reshape(pose.shape[0], NUM_KINEMATIC, 3)
        if self.convention == "open_hand":
            return p
        return torch.einsum("jyx,bjy->bjx", self.frames, p + self.pose_mean.reshape(NUM_KINEMATIC, 3))

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> "ArticulatedHand":
        """This hand with its float tensors in ``dtype`` and all on ``device`` (itself when
        nothing changes; converted once per dtype and device, so per-hand caches stay warm)."""
        if (dtype is None or dtype == self.v0.dtype) and (device is None or torch.device(device) == self.v0.device):
            return self
        key = (dtype, None if device is None else str(torch.device(device)))
        known = _CONVERTED.setdefault(self, {})
        if key not in known:
            known[key] = self._convert(dtype, device)
        return known[key]

    def _convert(self, dtype, device) -> "ArticulatedHand":
        def conv(x):
            if not isinstance(x, torch.Tensor):
                return x
            return x.to(device=device, dtype=dtype if x.is_floating_point() else None)
        fields = {f: getattr(self, f) for f in self.__dataclass_fields__}
        fields = {k: conv(v) for k, v in fields.items()}
        if device is not None:
            fields["levels"] = tree_levels(self.parents, torch.device(device))
        return ArticulatedHand(**fields)


_CONVERTED: "weakref.WeakKeyDictionary[ArticulatedHand, dict]" = weakref.WeakKeyDictionary()


def _subtree(parents: tuple[int, ...]) -> torch.Tensor:
    n = len(parents)
    sub = np.zeros((n, n))
    for j in range(n):
        k = j
        while k >= 0:
            sub[k, j] = 1.0
            k = parents[k]
    return torch.as_tensor(sub)


def _limits(freihand: list[int]) -> tuple[np.ndarray, np.ndarray]:
    lower = np.full((NUM_KINEMATIC, 3), -np.inf)
    upper = np.full((NUM_KINEMATIC, 3), np.inf)
    for k, j in enumerate(freihand):
        if j != cv.ROOT_JOINT:
            lower[k], upper[k] = JOINT_KIND_LIMITS[joint_kind(j)]
    return lower, upper


def dorsal_direction(joints: np.ndarray) -> np.ndarray:
    """(3,) unit vector out of the back of a right hand from its (21, 3) joints (FreiHAND order)."""
    w = joints[cv.ROOT_JOINT]
    n = np.cross(joints[17] - w, joints[5] - w)  # little MCP x index MCP: dorsal for a right hand
    return n / np.linalg.norm(n)


_CACHE: "weakref.WeakKeyDictionary[HandModel, dict]" = weakref.WeakKeyDictionary()


def articulated_hand(model: HandModel, dtype: torch.dtype = torch.float64) -> ArticulatedHand:
    """The :class:`ArticulatedHand` of an open hand or MANO model (computed once per model and dtype)."""
    per_model = _CACHE.setdefault(model, {})
    if dtype not in per_model:
        per_model[dtype] = _build(model).to(dtype=dtype)
    return per_model[dtype]


def _build(model: HandModel) -> ArticulatedHand:
    from m3dhmr.hand.build import joint_frames  # deferred: run-time imports never load the offline builder

    convention = getattr(model, "pose_convention", "")
    f64 = torch.float64
    with torch.no_grad():
        if convention == "open_hand":
            v0 = model.vertices_rest.to(f64)
            j0 = model.joints_rest.to(f64)
            S = model.num_shape
            scale_index = model.shape_names.index("scale")
            vb, jb = [], []
            for i in range(S):
                e = torch.zeros(1, S, dtype=model.vertices_rest.dtype)
                if i != scale_index:
                    e[0, i] = 1.0
                v, j = model.shaped_rest(e, 1)
                vb.append(v[0].to(f64) - v0 if i != scale_index else torch.zeros_like(v0))
                jb.append(j[0].to(f64) - j0 if i != scale_index else torch.zeros_like(j0))
            shape_basis, joint_basis = torch.stack(vb), torch.stack(jb)
            freihand = list(cv.KINEMATIC_JOINTS)
            frames = model.frames.to(f64)
            posedirs = None
            pose_mean = torch.zeros(48, dtype=f64)
            halfwidth = torch.as_tensor([SHAPE_RANGES[n][1] for n in model.shape_names], dtype=f64)
        elif convention == "mano":
            v0 = model.v_template.to(f64)
            shape_basis = model.shapedirs.to(f64).permute(2, 0, 1).contiguous()          # (S, V, 3)
            reg = model.j_regressor.to(f64)
            j0 = reg @ v0
            joint_basis = torch.einsum("jv,svx->sjx", reg, shape_basis)
            scale_index = None
            freihand = [MANO_TO_FREIHAND.index(m) for m in range(NUM_KINEMATIC)]
            rest21 = model.template.rest_joints()
            fr = joint_frames(rest21, dorsal=dorsal_direction(rest21))                   # FreiHAND kinematic order
            frames = torch.as_tensor(np.stack([fr[cv.KINEMATIC_JOINTS.index(j)] for j in freihand]), dtype=f64)
            posedirs = model.posedirs.to(f64)
            pose_mean = model.pose_mean.to(f64)
            halfwidth = torch.full((model.num_shape,), 2.0, dtype=f64)  # betas are ~N(0, 1)
        else:
            raise InputError(f"articulation fitting supports the open hand and MANO, not a {type(model).__name__} "
                             f"(pose convention {convention!r})")
        lower, upper = _limits(freihand)
        w = model.weights.to(f64)
        k = max(1, int((w > 0).sum(1).max()))
        influence_weights, influences = torch.topk(w, k, dim=1)
        subtree, levels = _subtree(tuple(model.parents)), tree_levels(tuple(model.parents))
        return ArticulatedHand(
            v0=v0, shape_basis=shape_basis, joints0=j0, joint_basis=joint_basis, scale_index=scale_index,
            weights=model.weights.to(f64), parents=tuple(model.parents), frames=frames,
            lower=torch.as_tensor(lower), upper=torch.as_tensor(upper), posedirs=posedirs,
            tips=model.tip_vertices.clone(), freihand=torch.as_tensor(freihand, dtype=torch.long),
            shape_names=tuple(model.shape_names), shape_halfwidth=halfwidth, convention=convention,
            pose_mean=pose_mean, subtree=subtree, levels=levels, influences=influences,
            influence_weights=influence_weights, faces=torch.as_tensor(model.template.faces, dtype=torch.long))


class Posed(NamedTuple):
    """A posed hand and what its Jacobian reuses.

    vertices: (B, N, 3) posed vertices (the chosen subset, translation included);
    joints: (B, 16, 3) posed kinematic joints (translation included), model order;
    rot: (B, 16, 3, 3) local rotations R_k; world: (B, 16, 3, 3) W_k; positions: (B, 16, 3)
    P_k without the translation; rest_vertices: (B, N, 3) and rest_joints: (B, 16, 3) of
    the shaped (and, for MANO, pose-corrected) rest hand; parts: (B, N, K, 3) ``x_vj`` for
    each vertex's K influences (:attr:`ArticulatedHand.influences`); left_jacobians:
    (B, 16, 3, 3) ``J_l(F_k a_k)`` when asked for (:func:`tangents` reuses them).
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    rot: torch.Tensor
    world: torch.Tensor
    positions: torch.Tensor
    rest_vertices: torch.Tensor
    rest_joints: torch.Tensor
    parts: torch.Tensor
    left_jacobians: torch.Tensor | None = None


class VertexSet(NamedTuple):
    """A hand's per-vertex arrays restricted to some vertices (N of them), made once.

    v0 (N, 3), shape_basis (S, N, 3), weights (N, 16), influences and influence_weights
    (N, K), below (N, K, 16): ``w_vi`` where influence i of v is joint k or below it,
    below_sum (N, 16) its sum over i;
    posedirs (P, N, 3) or None.
    """

    v0: torch.Tensor
    shape_basis: torch.Tensor
    weights: torch.Tensor
    influences: torch.Tensor
    influence_weights: torch.Tensor
    below: torch.Tensor
    posedirs: torch.Tensor | None
    below_sum: torch.Tensor


_VERTEX_SETS: "weakref.WeakKeyDictionary[ArticulatedHand, dict]" = weakref.WeakKeyDictionary()


def vertex_set(hand: ArticulatedHand, vertex_ids: torch.Tensor | None = None) -> VertexSet:
    """The :class:`VertexSet` of ``vertex_ids`` (None: all vertices), cached per hand."""
    key = None if vertex_ids is None else tuple(vertex_ids.tolist())
    per_hand = _VERTEX_SETS.setdefault(hand, {})
    if key not in per_hand:
        if len(per_hand) >= 8:  # a few subsets are in use at a time; drop the oldest
            per_hand.pop(next(iter(per_hand)))
        sel = slice(None) if vertex_ids is None else vertex_ids
        inf, iw = hand.influences[sel], hand.influence_weights[sel]
        below = hand.subtree.T[inf] * iw[..., None]
        per_hand[key] = VertexSet(
            v0=hand.v0[sel], shape_basis=hand.shape_basis[:, sel], weights=hand.weights[sel], influences=inf,
            influence_weights=iw, below=below, posedirs=None if hand.posedirs is None else hand.posedirs[:, sel],
            below_sum=below.sum(1))
    return per_hand[key]


def shaped_rest(hand: ArticulatedHand, shape: torch.Tensor,
                vertex_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rest vertices (B, N, 3) and kinematic joints (B, 16, 3) for shape (B, S)."""
    vs = vertex_set(hand, vertex_ids)
    basis, v0 = vs.shape_basis, vs.v0
    v = v0 + torch.einsum("bs,svx->bvx", shape, basis)
    j = hand.joints0 + torch.einsum("bs,sjx->bjx", shape, hand.joint_basis)
    if hand.scale_index is not None:
        sigma = (1.0 + shape[:, hand.scale_index])[:, None, None]
        v, j = v * sigma, j * sigma
    return v, j


def pose_hand(hand: ArticulatedHand, a: torch.Tensor, shape: torch.Tensor, translation: torch.Tensor,
              vertex_ids: torch.Tensor | None = None, left_jacobians: bool = False) -> Posed:
    """Pose the hand (differentiable in every input).

    Args:
        hand: the model's :class:`ArticulatedHand`.
        a: (B, 16, 3) local values (the root's in world axes), model joint order.
        shape: (B, S). translation: (B, 3) added to every point.
        vertex_ids: (N,) vertices to pose (None: all V).
        left_jacobians: also return the joints' SO(3) left Jacobians (for :func:`tangents`).

    Returns:
        :class:`Posed`.
    """
    phi = torch.einsum("jxy,bjy->bjx", hand.frames, a)
    if left_jacobians:
        rot, jl = rodrigues_with_left_jacobian(phi)
    else:
        rot, jl = batch_rodrigues(phi), None
    rest_v, rest_j = shaped_rest(hand, shape, vertex_ids)
    vs = vertex_set(hand, vertex_ids)
    if hand.posedirs is not None:
        eye = torch.eye(3, dtype=a.dtype, device=a.device)
        feature = (rot[:, 1:] - eye).reshape(a.shape[0], -1)
        rest_v = rest_v + torch.einsum("bp,pvx->bvx", feature, vs.posedirs)
    W, shift = world_transforms(rot, rest_j, hand.levels)
    P = rest_j + shift
    # Only each vertex's influences (the open hand has <= 4 of 16, 2.2 on average), and
    # their parts x_vj = W_j v + (P_j - W_j J_j), which the Jacobian reuses.
    vertices, parts = influence_skinning(rest_v, W, joint_offsets(W, shift, rest_j), vs.influences,
                                         vs.influence_weights)
    vertices = vertices + translation[:, None]
    return Posed(vertices, P + translation[:, None], rot, W, P, rest_v, rest_j, parts, jl)


class Tangents(NamedTuple):
    """What the Jacobians share: D (B, 16, 3, 3) maps a change of ``a_k`` to a world
    rotation of joint k's subtree; U (B, N, 16, 3) the skinned lever arms
    ``sum_{j below k} w_vj x_vj - (sum_{j below k} w_vj) P_k``; shape_v (B, N, 3, S) and
    shape_j (B, 16, 3, S) the posed vertices' and joints' shape derivatives."""

    D: torch.Tensor
    U: torch.Tensor
    shape_v: torch.Tensor
    shape_j: torch.Tensor


def tangents(hand: ArticulatedHand, a: torch.Tensor, shape: torch.Tensor, posed: Posed,
             vertex_ids: torch.Tensor | None = None) -> Tangents:
    """The pieces of :func:`pose_jacobian` (see :class:`Tangents`).

    Rotations: a change ``d`` of ``a_k`` turns joint k's subtree by the world rotation
    ``omega = W_parent J_l(F_k a_k) F_k d`` about ``P_k``, so a point x below it moves by
    ``omega x (x - P_k)``; skinned vertices blend that over their weights on the subtree,
    which is ``omega x U_vk``. Shape: forward-mode through the rest hand and the tree.
    """
    B = posed.vertices.shape[0]
    dtype, dev = a.dtype, a.device
    vs = vertex_set(hand, vertex_ids)
    W, P = posed.world, posed.positions
    parent_world = torch.cat([torch.eye(3, dtype=dtype, device=dev).expand(B, 1, 3, 3),
                              W[:, [max(p, 0) for p in hand.parents[1:]]]], dim=1)  # (B, 16, 3, 3)
    jl = posed.left_jacobians
    if jl is None:
        jl = so3_left_jacobian(torch.einsum("jxy,bjy->bjx", hand.frames, a))
    D = parent_world @ jl @ hand.frames
    # Each vertex's few influences summed per subtree (one GEMM per vertex over the batch).
    U = torch.addcmul(torch.einsum("vik,bvix->bvkx", vs.below, posed.parts), vs.below_sum[None, :, :, None],
                      P[:, None], value=-1.0)
    S = hand.num_shape
    dj = hand.joint_basis.permute(1, 2, 0).expand(B, -1, -1, -1)                    # (B, 16, 3, S)
    sigma = None
    if hand.scale_index is not None:
        if hand.posedirs is not None:  # only MANO has correctives, and it has no scale value
            raise AssertionError("a scale value with pose correctives is not supported")
        sigma = (1.0 + shape[:, hand.scale_index])[:, None, None]
        onehot = torch.zeros(S, dtype=dtype, device=dev)
        onehot[hand.scale_index] = 1.0
        dj = sigma[..., None] * dj + (posed.rest_joints / sigma)[..., None] * onehot
    root = torch.zeros(1, dtype=torch.long, device=dev)
    dP = dj.new_zeros(dj.shape).index_copy(1, root, dj[:, :1])
    for ids, par in hand.levels:
        dP = dP.index_copy(1, ids, dP.index_select(1, par) + torch.einsum(
            "bjxy,bjys->bjxs", W.index_select(1, par), dj.index_select(1, ids) - dj.index_select(1, par)))
    # Blends over all 16 joints are single matrix products with the dense weights.
    w = vs.weights                                                                  # (N, 16)
    blended = torch.einsum("vj,bjxy->bvxy", w, W)                                   # (B, N, 3, 3)
    q = dP - torch.einsum("bjxy,bjys->bjxs", W, dj)
    # blended @ d(rest vertex)/ds: the basis is the same for the batch, so one GEMM per vertex.
    shape_v = torch.einsum("bvxy,svy->bvxs", blended, vs.shape_basis)
    if sigma is not None:
        shape_v = shape_v * sigma[..., None]
        shape_v[..., hand.scale_index] = (blended @ (posed.rest_vertices / sigma)[..., None])[..., 0]
    shape_v = shape_v + torch.einsum("vj,bjxs->bvxs", w, q)
    return Tangents(D, U, shape_v, dP)


def vertex_jacobian(t: Tangents) -> torch.Tensor:
    """(B, N, 3, P) Jacobian of the posed vertices, columns translation (3), a (48), shape (S)."""
    B, N = t.U.shape[:2]
    rot = -(skew(t.U) @ t.D[:, None]).permute(0, 1, 3, 2, 4).reshape(B, N, 3, -1)     # omega x U = -[U]x D d
    eye = torch.eye(3, dtype=t.U.dtype, device=t.U.device).expand(B, N, 3, 3)
    return torch.cat([eye, rot, t.shape_v], dim=-1)


def joint_jacobian(hand: ArticulatedHand, posed: Posed, t: Tangents) -> torch.Tensor:
    """(B, 16, 3, P) Jacobian of the posed kinematic joints: P_i turns with joint k when i is below k."""
    B = posed.joints.shape[0]
    P = posed.positions
    rel = P[:, None, :, :] - P[:, :, None, :]                                       # (B, k, i, 3): P_i - P_k
    sub = hand.subtree.to(P.dtype)
    rot = -(skew(rel) @ t.D[:, :, None]) * sub[None, :, :, None, None]             # (B, k, i, 3, 3)
    rot = rot.permute(0, 2, 3, 1, 4).reshape(B, NUM_KINEMATIC, 3, -1)
    eye = torch.eye(3, dtype=P.dtype, device=P.device).expand(B, NUM_KINEMATIC, 3, 3)
    return torch.cat([eye, rot, t.shape_j], dim=-1)


def pose_jacobian(hand: ArticulatedHand, a: torch.Tensor, shape: torch.Tensor, posed: Posed,
                  vertex_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Jacobians of :func:`pose_hand`'s vertices and joints w.r.t. (translation, a, shape).

    MANO's pose correctives are held fixed within a step (a Gauss-Newton approximation:
    the fit's fixed points with zero residual are unchanged).

    Returns:
        jv: (B, N, 3, P) and jj: (B, 16, 3, P), columns ordered translation (3), a (48), shape (S).
    """
    t = tangents(hand, a, shape, posed, vertex_ids)
    return vertex_jacobian(t), joint_jacobian(hand, posed, t)


_EPS = torch.zeros(3, 3, 3, dtype=torch.float64)
for _i, _j, _k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
    _EPS[_i, _j, _k], _EPS[_i, _k, _j] = 1.0, -1.0


def vertex_normal_equations(t: Tangents, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``J^T J`` (B, P, P) and ``J^T r`` (B, P) of the vertex rows, without forming J.

    J's rotation block is ``-[U_vk]_x D_k``; with ``[a]_x^T [b]_x = (a . b) I - b a^T`` its
    products reduce to the (B, 48, 48) Gram matrix of U over the vertices, one GEMM, where
    forming J costs N x 48 3x3 products and a (B, 3N, P) array (tested equal to
    :func:`vertex_jacobian`'s products).

    Args:
        t: :func:`tangents` of the vertices. residual: (B, N, 3) posed minus target.
    """
    U, D, Js = t.U, t.D, t.shape_v
    B, N = U.shape[:2]
    K = NUM_KINEMATIC
    S = Js.shape[-1]
    eps = _EPS.to(U)
    Uf = U.reshape(B, N, 3 * K)
    G = (Uf.transpose(1, 2) @ Uf).reshape(B, K, 3, K, 3)                            # sum_v U_vk,x U_vl,y
    trace = torch.diagonal(G, dim1=2, dim2=4).sum(-1)                               # (B, K, K)
    eye3 = torch.eye(3, dtype=U.dtype, device=U.device)
    M = trace[:, :, :, None, None] * eye3 - G.permute(0, 1, 3, 4, 2)                # M_kl[x, y]
    rr = torch.einsum("bkxc,bklxy,blyd->bkcld", D, M, D).reshape(B, 3 * K, 3 * K)
    # Every sum over the vertices is one batched matrix product with U^T (B, 48, N).
    Ut = Uf.transpose(1, 2)
    ones = U.new_ones(B, N, 1)
    Usum = (Ut @ ones).reshape(B, K, 3)                                             # (B, K, 3)
    tr = -(skew(Usum) @ D).permute(0, 2, 1, 3).reshape(B, 3, 3 * K)                # translation x rotation
    ts = Js.sum(1)                                                                  # (B, 3, S)
    C = (Ut @ Js.reshape(B, N, 3 * S)).reshape(B, K, 3, 3, S)                       # sum_v U_vk,y Js_v,z,s
    rs = torch.einsum("bkxc,xyz,bkyzs->bkcs", D, eps, C).reshape(B, 3 * K, S)      # D^T sum_v U x Js
    Jf = Js.reshape(B, N * 3, S)
    ss = Jf.transpose(1, 2) @ Jf
    H = torch.cat([
        torch.cat([N * eye3.expand(B, 3, 3), tr, ts], dim=2),
        torch.cat([tr.transpose(1, 2), rr, rs], dim=2),
        torch.cat([ts.transpose(1, 2), rs.transpose(1, 2), ss], dim=2),
    ], dim=1)
    E = (Ut @ residual).reshape(B, K, 3, 3)                                          # sum_v U_vk,y r_v,z
    g_rot = torch.einsum("bkxc,xyz,bkyz->bkc", D, eps, E).reshape(B, 3 * K)
    g_shape = (Jf.transpose(1, 2) @ residual.reshape(B, N * 3, 1))[..., 0]
    g = torch.cat([residual.sum(1), g_rot, g_shape], dim=1)
    return H, g
