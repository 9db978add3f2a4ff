"""Articulation from a predicted mesh: joint rotations, shape and translation of a hand model.

:func:`fit_hand` finds, for each mesh of a batch, the global rotation, the 15 finger
joints' rotations (inside the anatomical limits of :mod:`m3dhmr.hand.limits`), the
shape values and the translation under which the open hand or MANO reproduces the given
vertices (and joints), in three steps:

1. **Closed-form start from the joints.** The palm (wrist and the five finger bases,
   which move rigidly with the wrist) gives the global rotation and, for the open hand,
   the scale (Umeyama). Then down the tree, one depth at a time, each joint gets the
   smallest rotation that turns its rest bone onto the predicted bone (no twist),
   clamped to its limits.
2. **Levenberg-Marquardt** on vertices + joints: residuals are the mean squared vertex
   distance over a fixed, evenly spread subset of vertices and the joints', plus a
   pose prior (towards the rest pose; stronger on twist, which a round finger barely
   shows) and a shape prior; the Jacobian is analytic
   (:func:`m3dhmr.hand.articulation.pose_jacobian`); after each step the joint values
   are clamped to their limits (projected LM); a step is kept per hand only when it
   lowers that hand's cost.
3. **Errors** on every vertex: mean and max distance (mm) to the given mesh, and a
   ``poor`` flag above :attr:`FitSettings.poor_mean_mm` / :attr:`FitSettings.poor_max_mm`.

What a mesh cannot tell: a finger's twist about its own axis when the finger is straight
(the open hand's fingers are nearly round, so twist is held near the prior and the
limits), and a joint's rotation when its bone and everything below it are hidden
from the vertices' motion (never, for a complete mesh). ``benchmarks/fit_speed.py``
measures angles per component.

Legend: B batch, V vertices, S shape values.
"""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass, fields

import numpy as np
import torch

from m3dhmr import conventions as cv
from m3dhmr.errors import InputError
from m3dhmr.hand.articulation import (ArticulatedHand, NUM_KINEMATIC, Posed, Tangents, articulated_hand,
                                      joint_jacobian, pose_hand, shaped_rest, tangents, vertex_jacobian,
                                      vertex_normal_equations)
from m3dhmr.hand.kinematics import (batch_rodrigues, matrix_to_axis_angle, matrix_to_quaternion,
                                    quaternion_to_axis_angle, quaternion_to_xyzw)
from m3dhmr.hand.model import HandModel

PALM_JOINTS = (0, 1, 5, 9, 13, 17)   # wrist and the five finger bases: rigid with the wrist


@dataclass(frozen=True)
class FitSettings:
    """Settings of :func:`fit_hand` (distances in metres, angles in radians).

    iterations: Levenberg-Marquardt iterations (each one Jacobian and one trial step).
    max_vertices: vertices in the fit's residual (a fixed farthest-point subset, tips
        always in); 0 uses all. Errors are always measured on all vertices.
    joint_weight: weight of the mean squared joint distance next to the vertices'.
    pose_prior: metres of RMS vertex error one radian of a finger value away from 0
        weighs as much as (always on; small, so a clean mesh is matched to ~0.05 mm).
    twist_prior: the same for twist values (a straight finger shows little twist).
    shape_prior: the same per shape value at its typical size.
    adaptive_prior: after half the iterations the priors grow with each hand's
        residual: the maximum a-posteriori weights for Gaussian vertex noise of the
        residual's size and a pose spread of :attr:`pose_spread` (flexion, abduction,
        twist; radians) and shape spread of one typical size. Clean meshes keep the small
        fixed priors; noisy ones are held nearer the rest pose where they cannot tell.
    poor_mean_mm, poor_max_mm: a fit is flagged ``poor`` above either.
    dtype: of the fit's arithmetic; float32 is ~2x faster than float64 on a CPU and its
        round-off (~1e-4 mm) far below the fit's errors.
    tolerance: the iterations stop early (after the adaptive prior is set) once no
        hand's cost falls by more than this fraction in an iteration.
    shape_bound: shape values stay within this many typical sizes of 0 (the open hand's
        documented range x 2; MANO's betas +-4), so that a mesh that is not a hand (a
        point, a hand at twice real size) is a poor fit, not a shrunken one.
    """

    iterations: int = 5
    max_vertices: int = 192
    joint_weight: float = 0.1
    pose_prior: float = 3e-5
    twist_prior: float = 3e-4
    shape_prior: float = 1e-4
    adaptive_prior: bool = True
    pose_spread: tuple[float, float, float] = (1.0, 0.25, 0.08)
    poor_mean_mm: float = 5.0
    poor_max_mm: float = 20.0
    dtype: torch.dtype = torch.float32
    tolerance: float = 1e-3
    shape_bound: float = 2.0

    def __post_init__(self) -> None:
        for name in ("iterations", "max_vertices"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InputError(f"FitSettings.{name} must be an integer >= 0, got {v!r}")
        if not isinstance(self.dtype, torch.dtype) or not self.dtype.is_floating_point:
            raise InputError(f"FitSettings.dtype must be a floating torch dtype, got {self.dtype!r}")
        if not isinstance(self.adaptive_prior, bool):
            raise InputError(f"FitSettings.adaptive_prior must be True or False, got {self.adaptive_prior!r}")
        if not self.shape_bound > 0:
            raise InputError(f"FitSettings.shape_bound must be > 0, got {self.shape_bound!r}")
        if len(self.pose_spread) != 3 or not all(np.isfinite(v) and v > 0 for v in self.pose_spread):
            raise InputError(f"FitSettings.pose_spread must be 3 positive radians, got {self.pose_spread!r}")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("pose_spread", "adaptive_prior", "dtype"):
                continue
            if not np.isfinite(v) or v < 0:
                raise InputError(f"FitSettings.{f.name} must be finite and >= 0, got {v!r}")


@dataclass(frozen=True, eq=False)
class HandFit:
    """The articulation of a batch of hands (torch tensors; joints in FreiHAND order).

    Attributes:
        pose: (B, 48) the model's own pose values (open hand: anatomical; MANO: its
            native axis-angle layout), so ``model(pose, shape).vertices + translation``
            is :attr:`vertices`.
        shape: (B, S) shape values (:attr:`shape_names`). translation: (B, 3) metres.
        rotations: (B, 16, 3, 3) rotation of each of
            :data:`~m3dhmr.conventions.KINEMATIC_JOINTS` relative to its parent, in the
            rest hand's axes (the MANO / SMPL convention; the wrist's is the global one).
        axis_angle: (B, 16, 3) the same as axis-angle (radians).
        quaternion: (B, 16, 4) the same as unit quaternions (x, y, z, w), w >= 0.
        anatomical: (B, 16, 3) (flexion, abduction, twist) in each joint's anatomical
            frame (what the limits bound); row 0 is the global rotation in world axes.
        vertices: (B, V, 3) fitted mesh. joints: (B, 21, 3) fitted joints.
        error_mean_mm, error_max_mm: (B,) vertex distances to the given mesh (mm).
        joint_error_mm: (B,) mean joint distance to the given (or regressed) joints (mm).
        poor: (B,) bool, the fit missed by more than the settings allow.
        hand: the :class:`~m3dhmr.hand.articulation.ArticulatedHand` fitted.
        local: (B, 16, 3) the fitted values in the model's joint order.
    """

    pose: torch.Tensor
    shape: torch.Tensor
    translation: torch.Tensor
    rotations: torch.Tensor
    axis_angle: torch.Tensor
    quaternion: torch.Tensor
    anatomical: torch.Tensor
    vertices: torch.Tensor
    joints: torch.Tensor
    error_mean_mm: torch.Tensor
    error_max_mm: torch.Tensor
    joint_error_mm: torch.Tensor
    poor: torch.Tensor
    hand: ArticulatedHand
    local: torch.Tensor

    @property
    def shape_names(self) -> tuple[str, ...]:
        return self.hand.shape_names

    def __len__(self) -> int:
        return int(self.pose.shape[0])

    def take(self, i: int) -> "HandFit":
        """Hand ``i`` alone, as a fit of batch 1."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"hand {i} of a fit of {len(self)}")
        sl = slice(i, i + 1) if i != -1 else slice(-1, None)
        return HandFit(**{f.name: (getattr(self, f.name)[sl] if f.name != "hand" else self.hand)
                          for f in fields(self)})

    def to_json(self, i: int) -> dict:
        """Hand ``i`` as plain data (``pose.json``): per joint name, its rotation three ways."""
        joints = {}
        for k, j in enumerate(cv.KINEMATIC_JOINTS):
            flex, abd, twist = (float(x) for x in self.anatomical[i, k])
            entry = {
                "axis_angle": [float(x) for x in self.axis_angle[i, k]],
                "quaternion_xyzw": [float(x) for x in self.quaternion[i, k]],
                "matrix": [[float(x) for x in row] for row in self.rotations[i, k]],
            }
            if j != cv.ROOT_JOINT:
                entry["anatomical"] = {"flexion": flex, "abduction": abd, "twist": twist}
            joints[cv.JOINT_NAMES[j]] = entry
        return {
            "model": self.hand.convention,
            "rotation_convention": "each joint relative to its parent, in the rest hand's axes "
                                   "(MANO/SMPL); the wrist's is the global rotation in camera axes; "
                                   "anatomical: radians about the joint's flexion, abduction and twist axes",
            "joints": joints,
            # The model's own 48 values: the open hand's anatomical triples, or MANO's axis-angle
            # layout (zero pose = the flat hand unless the model adds hands_mean).
            "pose": [float(x) for x in self.pose[i]],
            "pose_layout": self.hand.convention if self.hand.convention != "mano" else (
                "mano, flat_hand_mean=" + str(bool((self.hand.pose_mean == 0).all()))),
            "shape": {n: float(x) for n, x in zip(self.shape_names, self.shape[i])},
            "translation": [float(x) for x in self.translation[i]],
            "fit_error_mm_mean": float(self.error_mean_mm[i]),
            "fit_error_mm_max": float(self.error_max_mm[i]),
            "joint_error_mm_mean": float(self.joint_error_mm[i]),
            "poor_fit": bool(self.poor[i]),
        }


def fit_vertex_subset(hand: ArticulatedHand, count: int) -> torch.Tensor:
    """(N,) vertex ids: ``count`` farthest-point samples of the rest mesh, the 5 tips last.

    Computed once per hand and count (farthest-point order is deterministic: it starts at
    vertex 0)."""
    cached = _SUBSETS.setdefault(hand, {}).get(count)
    if cached is not None:
        return cached
    v = hand.v0.detach().cpu().numpy()
    tips = hand.tips.cpu().numpy()
    n = len(v)
    if count <= 0 or count >= n:
        chosen = np.setdiff1d(np.arange(n), tips)
    else:
        chosen = [0]
        d = np.linalg.norm(v - v[0], axis=1)
        d[tips] = -1.0
        for _ in range(count - 1):
            k = int(np.argmax(d))
            chosen.append(k)
            d = np.minimum(d, np.linalg.norm(v - v[k], axis=1))
            d[tips] = -1.0
        chosen = np.sort(np.asarray(chosen))
    ids = torch.as_tensor(np.concatenate([chosen, tips]), dtype=torch.long, device=hand.v0.device)
    _SUBSETS[hand][count] = ids
    return ids


_SUBSETS: "weakref.WeakKeyDictionary[ArticulatedHand, dict[int, torch.Tensor]]" = weakref.WeakKeyDictionary()


def _umeyama_rotation(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation (B, 3, 3) and scale (B,) minimising |s R src + t - dst| for (B, N, 3) point sets."""
    sc = src - src.mean(1, keepdim=True)
    dc = dst - dst.mean(1, keepdim=True)
    cov = dc.transpose(1, 2) @ sc                                      # (B, 3, 3)
    u, sv, vt = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(u @ vt))
    fix = torch.ones_like(sv)
    fix[:, 2] = d
    rot = u @ torch.diag_embed(fix) @ vt
    scale = (sv * fix).sum(1) / (sc * sc).sum((1, 2)).clamp_min(1e-12)
    return rot, scale


def _rest21(hand: ArticulatedHand, shape: torch.Tensor) -> torch.Tensor:
    """(B, 21, 3) rest joints (kinematic joints and fingertip vertices) for shape (B, S)."""
    v, j = shaped_rest(hand, shape, hand.tips)
    out = j.new_zeros(j.shape[0], cv.NUM_JOINTS, 3)
    out[:, hand.freihand] = j
    out[:, list(cv.TIP_JOINTS)] = v
    return out


def initial_guess(hand: ArticulatedHand, joints: torch.Tensor, shape: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Closed-form start from (B, 21, 3) joints: a (B, 16, 3), shape (B, S), translation (B, 3).

    ``shape`` given: kept; else zeros with the open hand's scale from the palm's size.
    """
    B = joints.shape[0]
    dev = joints.device
    fixed_shape = shape is not None
    shape = joints.new_zeros(B, hand.num_shape) if shape is None else shape.clone()
    rest = _rest21(hand, shape)
    palm = list(PALM_JOINTS)
    rot0, scale = _umeyama_rotation(rest[:, palm] - rest[:, :1], joints[:, palm] - joints[:, :1])
    if hand.scale_index is not None and not fixed_shape:
        hw = float(hand.shape_halfwidth[hand.scale_index])
        sigma = 1.0 + (scale - 1.0).clamp(-1.5 * hw, 1.5 * hw)
        shape[:, hand.scale_index] = sigma - 1.0
        rest = rest * sigma[:, None, None]      # the rest hand at shape 0, scaled (about the origin)
    a = joints.new_zeros(B, NUM_KINEMATIC, 3)
    a[:, 0] = matrix_to_axis_angle(rot0)
    # The root turns about its rest position, which the translation then moves.
    translation = joints[:, 0] - rest[:, 0]
    W = joints.new_zeros(B, NUM_KINEMATIC, 3, 3)
    W[:, 0] = rot0
    fh = hand.freihand.to(dev)
    last = len(hand.levels) - 1
    for level, (ids, par) in enumerate(hand.levels):
        j = fh[ids]
        bone = rest[:, j + 1] - rest[:, j]                               # FreiHAND: a joint's child is the next index
        target = joints[:, j + 1] - joints[:, j]
        wp = W[:, par]                                                  # (B, n, 3, 3)
        u = torch.einsum("bnxy,bny->bnx", wp, bone)
        u = u / torch.linalg.vector_norm(u, dim=-1, keepdim=True).clamp_min(1e-12)
        d = target / torch.linalg.vector_norm(target, dim=-1, keepdim=True).clamp_min(1e-12)
        axis = torch.cross(u, d, dim=-1)
        sin = torch.linalg.vector_norm(axis, dim=-1, keepdim=True)
        cos = (u * d).sum(-1, keepdim=True)
        omega = axis / sin.clamp_min(1e-12) * torch.atan2(sin, cos)     # world rotation taking u to d
        local = torch.einsum("nyx,bnzy,bnz->bnx", hand.frames[ids], wp, omega)   # F^T W_p^T omega
        local = torch.maximum(torch.minimum(local, hand.upper[ids]), hand.lower[ids])
        a[:, ids] = local
        if level < last:  # the deepest joints have no children to place
            W[:, ids] = wp @ batch_rodrigues(torch.einsum("nxy,bny->bnx", hand.frames[ids], local))
    return a, shape, translation


def _check_inputs(hand: ArticulatedHand, vertices, joints):
    if not isinstance(vertices, torch.Tensor):
        vertices = torch.as_tensor(np.asarray(vertices, dtype=np.float64))
    if vertices.dim() == 2:
        raise InputError(f"vertices must be a batch (B, {hand.num_vertices}, 3); got one mesh {tuple(vertices.shape)} "
                         f"(add a batch dimension)")
    if vertices.dim() != 3 or vertices.shape[2] != 3:
        raise InputError(f"vertices must have shape (B, V, 3), got {tuple(vertices.shape)}")
    if vertices.shape[0] == 0:
        raise InputError("vertices: empty batch (B = 0), nothing to fit")
    if vertices.shape[1] != hand.num_vertices:
        raise InputError(f"vertices have {vertices.shape[1]} vertices per mesh but the {hand.convention} template "
                         f"has {hand.num_vertices}: fit with the template the meshes were predicted in (--template)")
    bad = ~torch.isfinite(vertices).reshape(vertices.shape[0], -1).all(1)
    if bad.any():
        raise InputError(f"vertices contain NaN/inf (meshes {bad.nonzero().flatten().tolist()[:10]})")
    _check_magnitude("vertices", vertices)
    if joints is not None:
        if not isinstance(joints, torch.Tensor):
            joints = torch.as_tensor(np.asarray(joints, dtype=np.float64))
        if joints.shape != (vertices.shape[0], cv.NUM_JOINTS, 3):
            raise InputError(f"joints must have shape ({vertices.shape[0]}, {cv.NUM_JOINTS}, 3), got {tuple(joints.shape)}")
        if not torch.isfinite(joints).all():
            raise InputError("joints contain NaN/inf")
        _check_magnitude("joints", joints)
    return vertices, joints


#: Largest coordinate (metres, absolute) :func:`fit_hand` accepts: far beyond any camera,
#: small enough that the fit's squares and SVDs cannot overflow (1e300 did).
MAX_ABS_COORD_M = 1e4


def _check_magnitude(name: str, x: torch.Tensor) -> None:
    """ValueError naming the meshes of ``x (B, P, 3)`` with a coordinate beyond :data:`MAX_ABS_COORD_M`."""
    big = (x.abs() > MAX_ABS_COORD_M).reshape(x.shape[0], -1).any(1)
    if big.any():
        worst = float(x.abs().max())
        raise InputError(f"{name} have coordinates up to {worst:.3g}, beyond {MAX_ABS_COORD_M:g} m: they must be "
                         f"in metres (meshes {big.nonzero().flatten().tolist()[:10]})")


def fit_hand(model: HandModel | ArticulatedHand, vertices: torch.Tensor, joints: torch.Tensor | None = None, *,
             settings: FitSettings | None = None, shape: torch.Tensor | None = None,
             init: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
             joint_regressor: np.ndarray | torch.Tensor | None = None) -> HandFit:
    """Fit a hand model's articulation to meshes in its topology.

    Args:
        model: the open hand (:func:`~m3dhmr.hand.load_open_hand`) or MANO
            (:func:`~m3dhmr.hand.load_mano`), or its
            :func:`~m3dhmr.hand.articulation.articulated_hand`.
        vertices: (B, V, 3) right-hand meshes, metres (mirror a left hand's x first).
        joints: (B, 21, 3) their joints, FreiHAND order; None regresses them from the
            vertices with ``joint_regressor`` (default: the model template's).
        settings: :class:`FitSettings`.
        shape: (B, S) known shape values to keep fixed (e.g. one hand across a video).
        init: (a (B, 16, 3), shape (B, S), translation (B, 3)) to start from instead of
            the closed-form start (e.g. the previous frame's fit).

    Returns:
        :class:`HandFit`. Runs in ``settings.dtype`` on the vertices' device; no autograd.
    """
    settings = settings or FitSettings()
    if isinstance(model, ArticulatedHand):
        hand = model
        regressor_source = joint_regressor
    else:
        hand = articulated_hand(model)
        regressor_source = model.template.joint_regressor if joint_regressor is None else joint_regressor
    vertices, joints = _check_inputs(hand, vertices, joints)
    dev = vertices.device
    dtype = settings.dtype
    hand = hand.to(dtype=dtype, device=dev)
    target_v = vertices.to(dtype)
    if joints is None:
        if regressor_source is None:
            raise InputError("joints not given and no joint_regressor to regress them from the vertices")
        reg = torch.as_tensor(np.asarray(regressor_source) if not isinstance(regressor_source, torch.Tensor)
                              else regressor_source, dtype=dtype, device=dev)
        target_j = torch.einsum("jv,bvx->bjx", reg, target_v)
    else:
        target_j = joints.to(device=dev, dtype=dtype)
    if shape is not None:
        shape = torch.as_tensor(shape, dtype=dtype, device=dev)
        if shape.shape != (target_v.shape[0], hand.num_shape):
            raise InputError(f"shape must have shape ({target_v.shape[0]}, {hand.num_shape}), got {tuple(shape.shape)}")
    with torch.no_grad():
        return _fit(hand, target_v, target_j, settings, shape, init)


def _fit(hand: ArticulatedHand, target_v: torch.Tensor, target_j: torch.Tensor, settings: FitSettings,
         fixed_shape: torch.Tensor | None, init) -> HandFit:
    """The module docstring's steps: the start, projected LM, the errors of the result."""
    a, shape, t = _start(hand, target_j, fixed_shape, init)
    problem = _problem(hand, target_v, target_j, settings, fixed_shape)
    x = pack_params(a, shape, t)
    prior = problem.base.expand(x.shape[0], -1)
    current = problem.evaluate(x, prior)
    x = _levenberg_marquardt(problem, current, prior, settings)
    return _result(hand, x, target_v, target_j, settings)


#: The fit's parameter vector per hand, ``x = [translation (3), a (16 x 3), shape (S)]``:
#: where each part lies. ``PARAM_ROTATIONS`` holds every kinematic joint's three values
#: (the global rotation first), ``PARAM_FINGERS`` the 15 finger joints' alone (what the
#: pose priors weigh; the translation and the global rotation are free).
PARAM_TRANSLATION = slice(0, 3)
PARAM_ROTATIONS = slice(PARAM_TRANSLATION.stop, PARAM_TRANSLATION.stop + 3 * NUM_KINEMATIC)
PARAM_FINGERS = slice(PARAM_ROTATIONS.start + 3, PARAM_ROTATIONS.stop)
PARAM_SHAPE = slice(PARAM_ROTATIONS.stop, None)


def pack_params(a: torch.Tensor, shape: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The fit's parameter vectors (B, 3 + 48 + S) (see :data:`PARAM_TRANSLATION`) from
    joint values a (B, 16, 3), shape (B, S) and translation (B, 3)."""
    return torch.cat([t, a.reshape(a.shape[0], -1), shape], dim=1)


def unpack_params(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(a (B, 16, 3), shape (B, S), translation (B, 3)) of parameter vectors x (B, P): views of x."""
    return x[:, PARAM_ROTATIONS].reshape(x.shape[0], NUM_KINEMATIC, 3), x[:, PARAM_SHAPE], x[:, PARAM_TRANSLATION]


def _start(hand: ArticulatedHand, target_j: torch.Tensor, fixed_shape: torch.Tensor | None, init
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(a, shape, translation) to start from: ``init`` (checked) or :func:`initial_guess`;
    a fixed shape replaces init's."""
    if init is None:
        return initial_guess(hand, target_j, fixed_shape)
    B, dev, dtype = target_j.shape[0], target_j.device, target_j.dtype
    want = ((B, NUM_KINEMATIC, 3), (B, hand.num_shape), (B, 3))
    if not isinstance(init, (tuple, list)) or len(init) != 3:
        raise InputError("init must be (a (B, 16, 3), shape (B, S), translation (B, 3))")
    got = [tuple(torch.as_tensor(x).shape) for x in init]
    if got != [tuple(w) for w in want]:
        raise InputError(f"init: expected shapes {[tuple(w) for w in want]} (a, shape, translation), got {got}")
    a, shape, t = (torch.as_tensor(x).to(device=dev, dtype=dtype).clone() for x in init)
    if not all(torch.isfinite(x).all() for x in (a, shape, t)):
        raise InputError("init contains NaN/inf")
    if fixed_shape is not None:
        shape = fixed_shape.clone()
    return a, shape, t


@dataclass(frozen=True)
class _Iterate:
    """One point of the LM iteration per hand: parameters x (B, P), residuals r (B, R),
    cost (B,), and the posed hand with the joint values a (B, 16, 3) and shape (B, S) it came from."""

    x: torch.Tensor
    r: torch.Tensor
    cost: torch.Tensor
    posed: Posed
    a: torch.Tensor
    shape: torch.Tensor

    def where(self, better: torch.Tensor, old: "_Iterate") -> "_Iterate":
        """This iterate for the hands where ``better`` (B,), ``old`` for the others."""
        if bool(better.all()):  # the usual case: no per-hand choice to make
            return self
        if not bool(better.any()):
            return old
        keep = better[:, None]
        return _Iterate(x=torch.where(keep, self.x, old.x), r=torch.where(keep, self.r, old.r),
                        cost=torch.where(better, self.cost, old.cost),
                        posed=_posed_where(better, self.posed, old.posed),
                        a=torch.where(better[:, None, None], self.a, old.a),
                        shape=torch.where(keep, self.shape, old.shape))


@dataclass(frozen=True)
class _Problem:
    """What the LM iteration fits: the residual's targets and weights, the priors and bounds.

    ids (N,) the vertex subset and tv (B, N, 3) its targets; kin_targets (B, 16, 3) the
    kinematic joints' targets (model order), tip_targets (B, 5, 3) the fingertips';
    wv, wj the vertex and joint residual weights; base (P,) the fixed prior weights and
    inv_spread (P,) the adaptive prior's 1 / spread per parameter (0: none); free (P,)
    the parameters fitted (a fixed shape is not); lower, upper (P,) their bounds.
    """

    hand: ArticulatedHand
    ids: torch.Tensor
    tv: torch.Tensor
    kin_targets: torch.Tensor
    tip_targets: torch.Tensor
    wv: float
    wj: float
    base: torch.Tensor
    inv_spread: torch.Tensor
    free: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor

    @property
    def num_vertex_residuals(self) -> int:
        return 3 * len(self.ids)

    def evaluate(self, x: torch.Tensor, prior: torch.Tensor) -> _Iterate:
        """Residuals at x (B, P) with prior weights (B, P): the subset's vertices, the
        joints (kinematic, then tips) and the priors, in that order."""
        B, n_tip = x.shape[0], len(cv.TIP_JOINTS)
        a, shape, t = unpack_params(x)
        posed = pose_hand(self.hand, a, shape, t, self.ids, left_jacobians=True)
        rv = (posed.vertices - self.tv) * self.wv                             # (B, N, 3)
        rj = torch.cat([posed.joints - self.kin_targets, posed.vertices[:, -n_tip:] - self.tip_targets], 1) * self.wj
        rp = x * prior
        r = torch.cat([rv.reshape(B, -1), rj.reshape(B, -1), rp], dim=1)
        return _Iterate(x, r, (r * r).sum(1), posed, a, shape)


def _problem(hand: ArticulatedHand, target_v: torch.Tensor, target_j: torch.Tensor, settings: FitSettings,
             fixed_shape: torch.Tensor | None) -> _Problem:
    """The residual's targets and weights, prior weights and parameter bounds of a fit."""
    dev, dtype = target_v.device, target_v.dtype
    ids = fit_vertex_subset(hand, settings.max_vertices).to(dev)
    n_params = hand.num_params
    halfwidth = hand.shape_halfwidth.to(dev)
    # Prior weights per parameter (translation and global rotation free; fixed shape frozen).
    base = torch.zeros(n_params, dtype=dtype, device=dev)
    fw = torch.full((NUM_KINEMATIC - 1, 3), settings.pose_prior, dtype=dtype, device=dev)
    fw[:, 2] = settings.twist_prior
    base[PARAM_FINGERS] = fw.reshape(-1)
    base[PARAM_SHAPE] = settings.shape_prior / halfwidth
    # Spread of each parameter for the adaptive prior (0: none, translation and global rotation).
    inv_spread = torch.zeros(n_params, dtype=dtype, device=dev)
    inv_spread[PARAM_FINGERS] = (1.0 / torch.as_tensor(settings.pose_spread, dtype=dtype, device=dev)
                                 ).repeat(NUM_KINEMATIC - 1)
    inv_spread[PARAM_SHAPE] = 1.0 / halfwidth
    free = torch.ones(n_params, dtype=torch.bool, device=dev)
    if fixed_shape is not None:
        free[PARAM_SHAPE] = False
    shape_limit = settings.shape_bound * halfwidth
    unbounded = torch.full((PARAM_TRANSLATION.stop,), torch.inf, dtype=dtype, device=dev)
    return _Problem(
        hand=hand, ids=ids, tv=target_v[:, ids], kin_targets=target_j[:, hand.freihand.to(dev)],
        tip_targets=target_j[:, list(cv.TIP_JOINTS)], wv=1.0 / np.sqrt(len(ids)),
        wj=np.sqrt(settings.joint_weight / cv.NUM_JOINTS), base=base, inv_spread=inv_spread, free=free,
        lower=torch.cat([-unbounded, hand.lower.reshape(-1).to(dev), -shape_limit]),
        upper=torch.cat([unbounded, hand.upper.reshape(-1).to(dev), shape_limit]))


def _adaptive_prior(problem: _Problem, current: _Iterate) -> tuple[torch.Tensor, _Iterate]:
    """MAP prior weights (B, P) for vertex noise of the current residual's size,
    sigma / (sqrt(N) * spread), and the iterate re-scored with them."""
    rv = current.r[:, :problem.num_vertex_residuals]
    sigma = torch.sqrt((rv * rv).sum(1) / 3.0)                   # per-coordinate RMS (wv = 1/sqrt(N))
    prior = torch.sqrt(problem.base * problem.base + (sigma[:, None] * problem.wv * problem.inv_spread) ** 2)
    r = torch.cat([current.r[:, :-len(problem.base)], current.x * prior], dim=1)
    return prior, dataclasses.replace(current, r=r, cost=(r * r).sum(1))


def _lm_step(problem: _Problem, current: _Iterate, prior: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """The damped Gauss-Newton step (B, P) at ``current`` (damping mu (B,)): analytic
    normal equations of the vertex, joint and prior residuals, solved by Cholesky."""
    hand, x, r, wv, wj = problem.hand, current.x, current.r, problem.wv, problem.wj
    B, n_params, nv = x.shape[0], x.shape[1], problem.num_vertex_residuals
    eye = torch.eye(n_params, dtype=x.dtype, device=x.device)
    tg = tangents(hand, current.a, current.shape, current.posed, problem.ids)
    H, g = vertex_normal_equations(tg, r[:, :nv].reshape(B, -1, 3) / wv)
    H, g = H * (wv * wv), g * (wv * wv)
    jrows = torch.cat([joint_jacobian(hand, current.posed, tg), vertex_jacobian(_tips(tg, len(cv.TIP_JOINTS)))], 1)
    jrows = jrows.reshape(B, -1, n_params) * wj
    rj = r[:, nv:nv + jrows.shape[1]]
    H = H + jrows.transpose(1, 2) @ jrows + torch.diag_embed(prior * prior)
    g = g + (jrows.transpose(1, 2) @ rj[..., None])[..., 0] + prior * prior * x
    H = torch.where(problem.free[:, None] & problem.free[None, :], H, eye)
    g = g * problem.free
    diag = torch.diagonal(H, dim1=1, dim2=2)
    damped = H + (mu[:, None] * diag.clamp_min(1e-12))[:, None, :] * eye
    # H is J^T J plus positive damping and priors: symmetric positive definite.
    chol, info = torch.linalg.cholesky_ex(damped)
    step = torch.cholesky_solve(g[..., None], chol)[..., 0]
    if bool((info != 0).any()):     # numerically indefinite (degenerate input): LU instead
        step = torch.linalg.solve(damped, g[..., None])[..., 0]
    return step


def _levenberg_marquardt(problem: _Problem, current: _Iterate, prior: torch.Tensor, settings: FitSettings
                         ) -> torch.Tensor:
    """Projected LM from ``current``: each step is clamped to the bounds and kept per hand
    only where it lowers that hand's cost. Returns the final parameters (B, P)."""
    B, dtype, dev = current.x.shape[0], current.x.dtype, current.x.device
    mu = torch.full((B,), 1e-3, dtype=dtype, device=dev)
    active = torch.ones(B, dtype=torch.bool, device=dev)
    for it in range(settings.iterations):
        if settings.adaptive_prior and it == settings.iterations // 2 and it > 0:
            prior, current = _adaptive_prior(problem, current)
        step = _lm_step(problem, current, prior, mu)
        x_new = torch.maximum(torch.minimum(current.x - step, problem.upper), problem.lower)
        trial = problem.evaluate(x_new, prior)
        cost_before = current.cost
        better = (trial.cost < current.cost) & active
        mu = torch.where(better, mu / 3.0, mu * 4.0).clamp(1e-9, 1e6)
        gain = (current.cost - trial.cost) / current.cost.clamp_min(1e-30)
        current = trial.where(better, current)
        # A hand is done once a step lowers its cost by less than settings.tolerance (relative)
        # with the adaptive prior in place; each hand decides alone, so a hand's fit does
        # not depend on the batch it is in. The loop ends when every hand is done.
        if it >= settings.iterations // 2:   # (a rejected step keeps the hand going, with more damping)
            active = active & ~((trial.cost <= cost_before) & (gain < settings.tolerance))
            if not bool(active.any()):
                break
    return current.x


def _tips(t: Tangents, n: int) -> Tangents:
    """The tangents of the last n vertices of the subset (the fingertips)."""
    return Tangents(t.D, t.U[:, -n:], t.shape_v[:, -n:], t.shape_j)


def _posed_where(mask: torch.Tensor, new, old):
    """Per-hand choice between two :class:`~m3dhmr.hand.articulation.Posed` (mask (B,) True: new)."""
    return type(new)(*(torch.where(mask.reshape((-1,) + (1,) * (n.dim() - 1)), n, o) for n, o in zip(new, old)))


def _result(hand: ArticulatedHand, x: torch.Tensor, target_v: torch.Tensor, target_j: torch.Tensor,
            settings: FitSettings) -> HandFit:
    B = x.shape[0]
    a, shape, t = unpack_params(x)
    posed = pose_hand(hand, a, shape, t)
    joints = posed.vertices.new_zeros(B, cv.NUM_JOINTS, 3)
    joints[:, hand.freihand] = posed.joints
    joints[:, list(cv.TIP_JOINTS)] = posed.vertices[:, hand.tips]
    dist = torch.linalg.vector_norm(posed.vertices - target_v, dim=-1) * cv.MM_PER_M
    jdist = torch.linalg.vector_norm(joints - target_j, dim=-1) * cv.MM_PER_M
    mean, worst = dist.mean(1), dist.amax(1)
    order = hand.freihand_order().to(x.device)
    rot = posed.rot[:, order]
    q = matrix_to_quaternion(rot)
    return HandFit(
        pose=hand.native_pose(a), shape=shape, translation=t, rotations=rot,
        axis_angle=quaternion_to_axis_angle(q), quaternion=quaternion_to_xyzw(q),
        anatomical=a[:, order], vertices=posed.vertices, joints=joints, error_mean_mm=mean,
        error_max_mm=worst, joint_error_mm=jdist.mean(1),
        poor=(mean > settings.poor_mean_mm) | (worst > settings.poor_max_mm), hand=hand, local=a)
