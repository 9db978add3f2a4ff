"""A skinned hand rig and the pure transform maths the exporters share (numpy, float64).

Transforms are 4x4 rigid matrices acting on column vectors, ``x_world = G @ [x, 1]``
(see :mod:`m3dhmr.conventions`). Metres and camera axes (x right, y down, z forward)
throughout; the exporters change axes only when they write a file.

A pose, or an animation of T frames, is ``global_transforms`` (T, J, 4, 4): the posed
GLOBAL transform of each joint's node (T = 1 for a single pose). By definition of
linear blend skinning, frame t moves a rest vertex v to
``sum_j weights[v, j] * (G_tj @ inv(rest_transforms[j])) @ [v, 1]`` (:func:`skin`).

Legend: T frames, J joints (21), V vertices, F faces.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m3dhmr import conventions as cv
from m3dhmr.errors import InputError

#: Mirror of the x axis: a left hand is the right hand seen through ``x -> -x``.
MIRROR_X = np.diag([-1.0, 1.0, 1.0])
#: Camera axes (x right, y down, z forward) to Y-up axes (x right, y up, z backward,
#: i.e. glTF / BVH / Blender's importers): 180 degrees about x, a proper rotation.
CAMERA_TO_Y_UP = np.diag([1.0, -1.0, -1.0])

_RIG_TOL = 1e-6
#: Looser than the rig's: poses often come from float32 networks and chained products.
_POSE_TOL = 1e-5


def _homogeneous(a: np.ndarray) -> np.ndarray:
    """(3, 3) linear map -> (4, 4) transform."""
    out = np.eye(4)
    out[:3, :3] = a
    return out


def _check_transforms(g: np.ndarray, name: str, tol: float) -> None:
    """Raise ValueError unless every (..., 4, 4) in ``g`` is finite and rigid with det +1."""
    if not np.all(np.isfinite(g)):
        raise InputError(f"{name} must be finite (found NaN or inf)")
    bottom = np.broadcast_to(np.array([0.0, 0.0, 0.0, 1.0]), g.shape[:-2] + (4,))
    if g.size and np.abs(g[..., 3, :] - bottom).max() > tol:
        raise InputError(f"{name} must have bottom row [0, 0, 0, 1]")
    r = g[..., :3, :3]
    if g.size and np.abs(r @ np.swapaxes(r, -1, -2) - np.eye(3)).max() > tol:
        raise InputError(f"{name}: rotation parts must be orthonormal (R R^T = I within {tol:g})")
    if g.size and np.abs(np.linalg.det(r) - 1.0).max() > tol:
        raise InputError(f"{name}: rotation parts must be proper (det +1 within {tol:g}), "
                         f"min det {np.linalg.det(r).min():.6g}")


@dataclass(frozen=True, eq=False)
class Rig:
    """A skinned right hand at rest plus its skeleton (metres, camera axes: x right, y down, z forward).

    Attributes:
        vertices: (V, 3) rest (bind-pose) vertices.
        faces: (F, 3) int triangles, outward (counter-clockwise seen from outside).
        weights: (V, J) skinning weights over the joints in ``joint_names`` order; rows
            sum to 1 (the package's hands give the tips (4, 8, 12, 16, 20) no weight).
        rest_transforms: (J, 4, 4) rest GLOBAL transform of each joint's node: rotation =
            the joint's frame (proper, det +1), translation = its rest position.
        joint_names: J names, default :data:`m3dhmr.conventions.JOINT_NAMES`.
        parents: J parent indices, -1 for the root (first), parents before children.

    Arrays are stored as read-only float64 (faces int64) copies.
    """

    vertices: np.ndarray
    faces: np.ndarray
    weights: np.ndarray
    rest_transforms: np.ndarray
    joint_names: tuple[str, ...] = cv.JOINT_NAMES
    parents: tuple[int, ...] = cv.JOINT_PARENTS

    def __post_init__(self) -> None:
        names = tuple(self.joint_names)
        parents = tuple(int(p) for p in self.parents)
        J = len(names)
        if J < 1 or len(set(names)) != J or not all(isinstance(n, str) and n for n in names):
            raise InputError(f"joint_names must be {J if J else 'at least 1'} distinct non-empty strings, got {names}")
        if len(parents) != J:
            raise InputError(f"parents has {len(parents)} entries for {J} joint_names")
        for j, p in enumerate(parents):
            if (j == 0) != (p == -1) or p >= j or p < -1:
                raise InputError(f"parents must list the root first (-1) and parents before children; "
                                 f"joint {j} ({names[j]}) has parent {p}")
        v = np.array(self.vertices, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] < 1:
            raise InputError(f"vertices must be (V, 3) with V >= 1, got {v.shape}")
        if not np.all(np.isfinite(v)):
            raise InputError("vertices must be finite (found NaN or inf)")
        f_in = np.asarray(self.faces)
        if f_in.ndim != 2 or f_in.shape[1] != 3 or f_in.shape[0] < 1:
            raise InputError(f"faces must be (F, 3) with F >= 1, got {f_in.shape}")
        if not np.issubdtype(f_in.dtype, np.integer):
            raise InputError(f"faces must be integers, got dtype {f_in.dtype}")
        f = f_in.astype(np.int64)
        if f.min() < 0 or f.max() >= v.shape[0]:
            raise InputError(f"faces index vertices 0..{v.shape[0] - 1}, got range {f.min()}..{f.max()}")
        w = np.array(self.weights, dtype=np.float64)
        if w.shape != (v.shape[0], J):
            raise InputError(f"weights must be (V, J) = ({v.shape[0]}, {J}), got {w.shape}")
        if not np.all(np.isfinite(w)) or w.min() < 0.0:
            raise InputError("weights must be finite and non-negative")
        row_err = np.abs(w.sum(axis=1) - 1.0).max()
        if row_err > _RIG_TOL:
            raise InputError(f"weights rows must sum to 1 within {_RIG_TOL:g}, worst is off by {row_err:.3g}")
        g = np.array(self.rest_transforms, dtype=np.float64)
        if g.shape != (J, 4, 4):
            raise InputError(f"rest_transforms must be (J, 4, 4) = ({J}, 4, 4), got {g.shape}")
        _check_transforms(g, "rest_transforms", _RIG_TOL)
        for name, value in (("vertices", v), ("faces", f), ("weights", w), ("rest_transforms", g)):
            value.flags.writeable = False
            object.__setattr__(self, name, value)
        object.__setattr__(self, "joint_names", names)
        object.__setattr__(self, "parents", parents)

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def children(self, j: int) -> tuple[int, ...]:
        """Indices of joint ``j``'s children, in index order."""
        return tuple(c for c, p in enumerate(self.parents) if p == j)


def as_global_transforms(global_transforms: np.ndarray, num_joints: int = cv.NUM_JOINTS) -> np.ndarray:
    """Validate a pose or animation and return it as float64 (T, J, 4, 4).

    Raises ValueError unless the shape is (T, J, 4, 4) with T >= 1, every value is
    finite and every transform is rigid with a proper rotation (det +1 within 1e-5).
    """
    g = np.array(global_transforms, dtype=np.float64)
    if g.ndim != 4 or g.shape[0] < 1 or g.shape[1:] != (num_joints, 4, 4):
        raise InputError(f"global_transforms must be (T, {num_joints}, 4, 4) with T >= 1, got {g.shape}")
    _check_transforms(g, "global_transforms", _POSE_TOL)
    return g


def invert_rigid(g: np.ndarray) -> np.ndarray:
    """(..., 4, 4) rigid transforms -> their inverses ``[[R^T, -R^T t], [0, 1]]`` (exact, no LU)."""
    r_t = np.swapaxes(g[..., :3, :3], -1, -2)
    out = np.zeros_like(g)
    out[..., :3, :3] = r_t
    out[..., :3, 3] = -np.einsum("...xy,...y->...x", r_t, g[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def local_transforms(global_transforms: np.ndarray, parents: tuple[int, ...] | list[int]) -> np.ndarray:
    """(..., J, 4, 4) global transforms -> (..., J, 4, 4) local ones ``inv(G_parent) @ G_j`` (root: G_root)."""
    g = np.asarray(global_transforms, dtype=np.float64)
    if g.ndim < 3 or g.shape[-3:] != (len(parents), 4, 4):
        raise InputError(f"global_transforms must be (..., {len(parents)}, 4, 4), got {g.shape}")
    p = np.asarray(parents)
    out = g.copy()
    child = np.flatnonzero(p >= 0)
    out[..., child, :, :] = invert_rigid(g[..., p[child], :, :]) @ g[..., child, :, :]
    return out


def conjugate_transforms(global_transforms: np.ndarray, a: np.ndarray) -> np.ndarray:
    """(..., 4, 4) transforms G -> A4 @ G @ A4^T for an orthogonal (3, 3) ``a``: G expressed in new axes ``x' = a x``."""
    a4 = _homogeneous(np.asarray(a, dtype=np.float64))
    return a4 @ np.asarray(global_transforms, dtype=np.float64) @ a4.T


def mirror_transforms(global_transforms: np.ndarray) -> np.ndarray:
    """(..., 4, 4) -> (..., 4, 4) ``M4 @ G @ M4`` with M4 = diag(-1, 1, 1, 1).

    The rotation part ``M R M`` keeps det +1 (two reflections), and a point attached to
    the mirrored frame lands on the mirror image of where it lands with the original.
    """
    return conjugate_transforms(global_transforms, MIRROR_X)


def mirror_rig(rig: Rig) -> Rig:
    """The left hand as the mirror image (x -> -x) of the right-hand ``rig``.

    Vertices have x negated, each face's winding is reversed (a reflection turns
    counter-clockwise into clockwise, so reversing keeps normals pointing outwards),
    rest transforms become ``M4 @ G @ M4`` (still proper rotations); weights, names
    and parents are unchanged. ``skin(mirror_rig(r), mirror_transforms(G))`` is
    exactly ``skin(r, G)`` with x negated.
    """
    return Rig(vertices=rig.vertices @ MIRROR_X, faces=rig.faces[:, ::-1].copy(), weights=rig.weights,
               rest_transforms=mirror_transforms(rig.rest_transforms),
               joint_names=rig.joint_names, parents=rig.parents)


def skin(rig: Rig, global_transforms: np.ndarray) -> np.ndarray:
    """Linear blend skinning of ``rig`` by a pose or animation.

    Args:
        rig: the rest hand.
        global_transforms: (T, J, 4, 4) posed global joint transforms.

    Returns:
        (T, V, 3) ``v_t = sum_j w_vj (G_tj @ inv(rest_j)) @ [v, 1]``.
    """
    g = as_global_transforms(global_transforms, rig.num_joints)
    motion = (g @ invert_rigid(rig.rest_transforms))[..., :3, :]             # (T, J, 3, 4)
    blended = np.einsum("vj,tjxy->tvxy", rig.weights, motion)               # (T, V, 3, 4)
    return np.einsum("tvxy,vy->tvx", blended[..., :3], rig.vertices) + blended[..., 3]


def _as_rotations(r: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    r = np.asarray(r, dtype=np.float64)
    if r.ndim < 2 or r.shape[-2:] != (3, 3):
        raise InputError(f"rotation matrices must be (..., 3, 3), got {r.shape}")
    return r.reshape(-1, 3, 3), r.shape[:-2]


def matrix_to_quaternion_xyzw(r: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (x, y, z, w) with w >= 0.

    Scalar-last is glTF's order. Slightly non-orthonormal input is projected onto the
    nearest rotation (scipy's ``Rotation.from_matrix``).
    """
    from scipy.spatial.transform import Rotation  # heavy: scipy.spatial loads only for these conversions

    flat, batch = _as_rotations(r)
    if flat.shape[0] == 0:
        return np.zeros(batch + (4,))
    q = Rotation.from_matrix(flat).as_quat()
    q *= np.where(q[:, 3:] < 0.0, -1.0, 1.0)                                  # one canonical sign
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).reshape(batch + (4,))


def sign_continuous_quaternions(q: np.ndarray) -> np.ndarray:
    """(T, ..., 4) quaternion tracks -> the same rotations with signs flipped so that
    consecutive frames have a non-negative dot product (LINEAR / slerp interpolation
    then takes the short way instead of spinning through 360 degrees)."""
    q = np.array(q, dtype=np.float64)
    for t in range(1, q.shape[0]):
        flip = np.sum(q[t] * q[t - 1], axis=-1, keepdims=True) < 0.0
        q[t] = np.where(flip, -q[t], q[t])
    return q


def matrix_to_euler_zxy_degrees(r: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations -> (..., 3) angles (z, x, y) in degrees with R = Rz(z) @ Rx(x) @ Ry(y).

    This is what the BVH channels ``Zrotation Xrotation Yrotation`` mean (intrinsic
    rotations, applied in the listed order). At gimbal lock (x = +-90 degrees) y is set
    to 0 and z carries the whole remaining angle, so R is still rebuilt exactly.
    """
    from scipy.spatial.transform import Rotation

    flat, batch = _as_rotations(r)
    if flat.shape[0] == 0:
        return np.zeros(batch + (3,))
    with warnings.catch_warnings():
        # The gimbal-lock warning is harmless here: the angles still rebuild R.
        warnings.simplefilter("ignore", UserWarning)
        angles = Rotation.from_matrix(flat).as_euler("ZXY", degrees=True)
    return angles.reshape(batch + (3,))


def prepare_export(path, suffix: str, rig: "Rig", global_transforms: np.ndarray, fps: float,
                   mirror: bool) -> tuple[Path, "Rig", np.ndarray, float]:
    """The checks and the mirroring every writer does first: (path, rig, (T, J, 4, 4) transforms, fps).

    Raises:
        ValueError: ``path`` not ending in ``suffix``, a non-:class:`Rig`, a bad fps or bad transforms.
    """
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise InputError(f"path must end in {suffix}, got {str(path)!r}")
    if not isinstance(rig, Rig):
        raise InputError(f"rig must be an m3dhmr.export.Rig, got {type(rig).__name__}")
    fps = float(fps)
    if not math.isfinite(fps) or fps <= 0.0:
        raise InputError(f"fps must be finite and > 0, got {fps}")
    g = as_global_transforms(global_transforms, rig.num_joints)
    if mirror:
        rig, g = mirror_rig(rig), mirror_transforms(g)
    return path, rig, g, fps
