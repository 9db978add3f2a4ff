"""Deterministic construction of the open hand asset from anatomical proportions.

Run ``python scripts/build_open_hand.py`` (or :func:`main`) to rewrite
``m3dhmr/hand/assets/open_hand.safetensors``; running it again reproduces the file
bit for bit (no randomness, fixed iteration counts, safetensors has no timestamps).

Rest frame (metres, right hand, roughly flat like MANO's template):
    origin at the wrist joint; +x from the wrist along the middle finger; +y out of the
    back of the hand (dorsal); +z across the palm from the thumb side to the little
    finger side (so the thumb points towards -z).

Recipe:
    1. A 21-joint skeleton from bone lengths and finger directions (:func:`design_skeleton`).
    2. An implicit surface: a rounded slab (palm and a short wrist stub) smoothly united
       with one chain of tapered capsules ("round cones") per finger; fingers blend
       only with the palm, never with each other (:func:`hand_sdf`).
    3. Marching cubes on a 1.2 mm grid (evaluated exactly only in a narrow band), largest
       component, quadric decimation to ~900 vertices, then rounds of Delaunay edge flips
       and tangential relaxation projected back onto the implicit surface, for
       well-shaped triangles (min angle ~20 deg) (:func:`build_mesh`).
    4. Skinning weights from the distance to each bone's primitive, smoothed over the
       mesh; a sparse non-negative joint regressor (a ring of vertices per internal
       joint; fingertips are single vertices) whose output at rest IS the skeleton;
       region labels from the skinning weights.

The surface is closed at the wrist (a rounded stump), so it has no boundary.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from m3dhmr import conventions as cv
from m3dhmr.fileio import atomic_write_bytes
from m3dhmr.geometry.mesh_normals import vertex_normals
from m3dhmr.hand.open_hand import ASSET_PATH
from m3dhmr.mesh.regions import FREIHAND16_JOINT_REGION, make_regions_connected, regions_from_skinning

log = logging.getLogger(__name__)

ASSET_VERSION = "1"
KINEMATIC_JOINTS, KINEMATIC_PARENTS = cv.KINEMATIC_JOINTS, cv.KINEMATIC_PARENTS

GRID_SPACING = 0.0012
TARGET_VERTICES = 900
RELAX_ITERATIONS = 8
RELAX_ROUNDS = 3
FAR = 0.02                   # > every blend width: the grid is exact near the surface


@dataclass(frozen=True)
class Finger:
    """Anatomy of one finger: base joint, direction, bone lengths and radii (metres)."""

    base: tuple[float, float, float]     # MCP (CMC for the thumb) position
    directions: tuple[tuple[float, float, float], ...]  # 3 bone directions (normalised later)
    lengths: tuple[float, float, float]  # base->2nd, 2nd->3rd, 3rd->tip surface
    radii: tuple[float, float, float, float]  # at the 3 joints and at the tip's end sphere
    roll: float = 0.0                    # nail rotation about the finger axis (radians, towards -z)


def _dir(angle_z: float, pitch: float = 0.0) -> tuple[float, float, float]:
    """Unit direction in the rest frame: ``angle_z`` spreads towards +z, ``pitch`` bends to -y."""
    return (np.cos(angle_z) * np.cos(pitch), -np.sin(pitch), np.sin(angle_z) * np.cos(pitch))


# Adult proportions (about a 50th-percentile hand: wrist to middle tip ~0.185 m).
FINGERS: dict[str, Finger] = {
    "thumb": Finger(base=(0.021, -0.009, -0.020),
                    directions=(_dir(-0.78, 0.30), _dir(-0.62, 0.22), _dir(-0.52, 0.15)),
                    lengths=(0.044, 0.032, 0.0245), radii=(0.0150, 0.0112, 0.0100, 0.0084), roll=0.85),
    "index": Finger(base=(0.088, 0.0, -0.025), directions=(_dir(-0.11),) * 3,
                    lengths=(0.040, 0.0245, 0.0205), radii=(0.0100, 0.0090, 0.0080, 0.0068)),
    "middle": Finger(base=(0.092, 0.0, 0.0), directions=(_dir(0.0),) * 3,
                     lengths=(0.0445, 0.0275, 0.0215), radii=(0.0102, 0.0093, 0.0082, 0.0070)),
    "ring": Finger(base=(0.087, 0.0, 0.0225), directions=(_dir(0.12),) * 3,
                   lengths=(0.041, 0.026, 0.021), radii=(0.0096, 0.0087, 0.0076, 0.0066)),
    "little": Finger(base=(0.078, 0.0, 0.0430), directions=(_dir(0.26),) * 3,
                     lengths=(0.032, 0.0195, 0.0190), radii=(0.0086, 0.0077, 0.0068, 0.0060)),
}

#: Palm (and wrist stub) outline in the x-z plane, convex, counter-clockwise seen from +y.
PALM_POLYGON = np.array([
    (-0.022, -0.016), (0.030, -0.021), (0.082, -0.020), (0.087, 0.000),
    (0.083, 0.022), (0.072, 0.036), (0.030, 0.031), (-0.022, 0.018),
])
PALM_CENTRE_Y = -0.002       # the palmar pads make the palm thicker below the joints
PALM_HALF_CORE = 0.0040      # flat core half-thickness
PALM_ROUND = 0.0105          # rounding radius (adds to outline and thickness)
BLEND_FINGER = 0.008         # smooth-union width finger/palm
BLEND_THUMB = 0.016          # wider: the thenar eminence
BLEND_PHALANX = 0.003        # rounds the creases between phalanges


def design_skeleton() -> tuple[np.ndarray, np.ndarray]:
    """The designed skeleton.

    Returns:
        joints: (21, 3) rest joints, FreiHAND order; tips on the surface (end sphere).
        radii: (21,) primitive radius at each joint (tips: the end sphere's radius).
    """
    joints = np.zeros((cv.NUM_JOINTS, 3))
    radii = np.zeros(cv.NUM_JOINTS)
    for name, f in FINGERS.items():
        ids = cv.FINGER_JOINTS[name]
        p = np.asarray(f.base, dtype=np.float64)
        joints[ids[0]] = p
        for k in range(3):
            d = np.asarray(f.directions[k], dtype=np.float64)
            d = d / np.linalg.norm(d)
            p = p + f.lengths[k] * d
            joints[ids[k + 1]] = p
        radii[list(ids)] = f.radii
    radii[0] = PALM_HALF_CORE + PALM_ROUND
    return joints, radii


def joint_frames(joints: np.ndarray, dorsal: np.ndarray | None = None) -> np.ndarray:
    """Local frames of the 16 kinematic joints (columns: flexion, abduction, twist axes).

    Args:
        joints: (21, 3) rest joints.
        dorsal: (3,) direction out of the back of the hand; default +y (the open hand's
            rest frame). Other hands (MANO) pass their own.

    Returns:
        (16, 3, 3) rotations ``[a_flex, a_abd, a_twist]``: twist is the bone direction
        (joint -> child), abduction the dorsal normal (rolled for the thumb), flexion
        ``a_abd x a_twist`` so a positive flexion curls the finger towards the palm.
        The wrist's frame is the identity (global rotation in world axes).
    """
    frames = np.tile(np.eye(3), (len(KINEMATIC_JOINTS), 1, 1))
    up = np.array([0.0, 1.0, 0.0]) if dorsal is None else np.asarray(dorsal, dtype=np.float64)
    up = up / np.linalg.norm(up)
    for name, f in FINGERS.items():
        ids = cv.FINGER_JOINTS[name]
        for k in range(3):
            d = joints[ids[k + 1]] - joints[ids[k]]
            d = d / np.linalg.norm(d)
            n = up - (up @ d) * d
            n = n / np.linalg.norm(n)
            # Roll the dorsal normal about the bone towards -z (the thumb's nail faces sideways).
            n = np.cos(f.roll) * n - np.sin(f.roll) * np.cross(d, n)
            flex = np.cross(n, d)
            frames[KINEMATIC_JOINTS.index(ids[k])] = np.stack([flex, n, d], axis=1)
    return frames


# ---------------------------------------------------------------------------- implicit surface
def _sd_round_cone(p: np.ndarray, a: np.ndarray, b: np.ndarray, r1: float, r2: float) -> np.ndarray:
    """Signed distance (N,) from points p (N, 3) to a capsule tapering from (a, r1) to (b, r2)."""
    ba = b - a
    l2 = ba @ ba
    rr = r1 - r2
    a2 = l2 - rr * rr
    il2 = 1.0 / l2
    pa = p - a
    y = pa @ ba
    z = y - l2
    q = pa * l2 - y[:, None] * ba
    x2 = (q * q).sum(1)
    y2 = y * y * l2
    z2 = z * z * l2
    k = np.sign(rr) * rr * rr * x2
    out = (np.sqrt(x2 * a2 * il2) + y * rr) * il2 - r1
    near_b = np.sign(z) * a2 * z2 > k
    near_a = np.sign(y) * a2 * y2 < k
    out = np.where(near_a, np.sqrt(x2 + y2) * il2 - r1, out)
    return np.where(near_b, np.sqrt(x2 + z2) * il2 - r2, out)


def _sd_polygon(xz: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Signed distance (N,) in the plane from points (N, 2) to a convex polygon (P, 2)."""
    dist = np.full(len(xz), np.inf)
    inside = np.ones(len(xz), dtype=bool)
    for i in range(len(poly)):
        a, b = poly[i], poly[(i + 1) % len(poly)]
        e = b - a
        w = xz - a
        t = np.clip((w @ e) / (e @ e), 0.0, 1.0)
        dist = np.minimum(dist, np.linalg.norm(w - t[:, None] * e, axis=1))
        inside &= (e[0] * w[:, 1] - e[1] * w[:, 0]) >= 0.0   # left of every CCW edge
    return np.where(inside, -dist, dist)


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum of two distance fields, blend width k."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


def primitive_sdfs(p: np.ndarray, joints: np.ndarray, radii: np.ndarray, far: float = np.inf) -> np.ndarray:
    """Distance (N, 16) from points p (N, 3) to each kinematic joint's primitive.

    Column 0 (wrist) is the palm slab; column k is the bone leaving kinematic joint k.
    Points further than ``far`` from a primitive's bounding box get ``far`` (saves time on
    a grid; the zero set is unchanged when ``far`` exceeds the blend widths).
    """
    out = np.full((len(p), len(KINEMATIC_JOINTS)), far)
    # x-z polygon in the palm plane, rounded: the 2D/height trick of a rounded extrusion.
    lo = np.array([PALM_POLYGON[:, 0].min(), PALM_CENTRE_Y - PALM_HALF_CORE, PALM_POLYGON[:, 1].min()]) - PALM_ROUND
    hi = np.array([PALM_POLYGON[:, 0].max(), PALM_CENTRE_Y + PALM_HALF_CORE, PALM_POLYGON[:, 1].max()]) + PALM_ROUND
    sel = _in_box(p, lo, hi, far)
    q = p[sel]
    d2 = _sd_polygon(q[:, [0, 2]], PALM_POLYGON)
    dy = np.abs(q[:, 1] - PALM_CENTRE_Y) - PALM_HALF_CORE
    w = np.stack([d2, dy], axis=1)
    out[sel, 0] = np.minimum(w.max(1), 0.0) + np.linalg.norm(np.maximum(w, 0.0), axis=1) - PALM_ROUND
    for name in cv.FINGER_NAMES:
        ids = cv.FINGER_JOINTS[name]
        for k in range(3):
            a, b = joints[ids[k]], joints[ids[k + 1]]
            r1, r2 = radii[ids[k]], radii[ids[k + 1]]
            if k == 2:  # the distal bone ends at its tip sphere's centre
                d = (b - a) / np.linalg.norm(b - a)
                b = b - r2 * d
            r = max(r1, r2)
            sel = _in_box(p, np.minimum(a, b) - r, np.maximum(a, b) + r, far)
            out[sel, KINEMATIC_JOINTS.index(ids[k])] = _sd_round_cone(p[sel], a, b, r1, r2)
    return np.minimum(out, far)


def _in_box(p: np.ndarray, lo: np.ndarray, hi: np.ndarray, margin: float) -> np.ndarray:
    if not np.isfinite(margin):
        return np.ones(len(p), dtype=bool)
    return np.all((p >= lo - margin) & (p <= hi + margin), axis=1)


def hand_sdf(p: np.ndarray, joints: np.ndarray, radii: np.ndarray, far: float = np.inf) -> np.ndarray:
    """Implicit surface (N,) of the whole hand: negative inside, ~distance near the surface."""
    prim = primitive_sdfs(p, joints, radii, far)
    palm = prim[:, 0]
    total = palm
    for i, name in enumerate(cv.FINGER_NAMES):
        cols = [KINEMATIC_JOINTS.index(j) for j in cv.FINGER_JOINTS[name][:3]]
        finger = _smin(_smin(prim[:, cols[0]], prim[:, cols[1]], BLEND_PHALANX), prim[:, cols[2]], BLEND_PHALANX)
        blended = _smin(palm, finger, BLEND_THUMB if i == 0 else BLEND_FINGER)
        total = np.minimum(total, blended)
    return total


# ---------------------------------------------------------------------------- meshing
def _sdf_gradient(p: np.ndarray, joints: np.ndarray, radii: np.ndarray, h: float = 1e-5) -> np.ndarray:
    g = np.empty_like(p)
    for i in range(3):
        e = np.zeros(3)
        e[i] = h
        g[:, i] = (hand_sdf(p + e, joints, radii) - hand_sdf(p - e, joints, radii)) / (2 * h)
    return g


def _project(p: np.ndarray, joints: np.ndarray, radii: np.ndarray, steps: int = 3) -> np.ndarray:
    for _ in range(steps):
        g = _sdf_gradient(p, joints, radii)
        p = p - (hand_sdf(p, joints, radii) / np.maximum((g * g).sum(1), 1e-12))[:, None] * g
    return p


def _neighbours(faces: np.ndarray, n: int):
    i = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 1], faces[:, 2], faces[:, 0]])
    j = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0], faces[:, 0], faces[:, 1], faces[:, 2]])
    adj = sp.csr_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    adj.data[:] = 1.0
    deg = np.asarray(adj.sum(1)).ravel()
    return sp.diags(1.0 / deg) @ adj


def build_mesh(joints: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mesh the implicit hand: (vertices (V, 3) float64, faces (F, 3) int64), outward normals."""
    # heavy: the meshing and fitting libraries (scikit-image, fast-simplification, scipy.optimize) load only here
    import fast_simplification
    from skimage import measure

    probe = np.concatenate([joints - radii[:, None] - 0.012, joints + radii[:, None] + 0.012,
                            [[-0.05, -0.03, -0.04], [0.0, 0.03, 0.06]]])
    lo, hi = probe.min(0), probe.max(0)
    shape = np.ceil((hi - lo) / GRID_SPACING).astype(int) + 1
    axes = [lo[i] + GRID_SPACING * np.arange(shape[i]) for i in range(3)]
    field = _narrow_band_field(axes, joints, radii)
    verts, faces, _, _ = measure.marching_cubes(field, level=0.0, spacing=(GRID_SPACING,) * 3)
    verts = verts + lo
    faces = faces.astype(np.int64)
    # skimage orients faces by the gradient (towards increasing field = outside); make sure.
    verts, faces = _largest_component(verts, faces)
    target_faces = 2 * TARGET_VERTICES - 4   # closed genus-0 surface: F = 2V - 4
    verts, faces = fast_simplification.simplify(verts, faces.astype(np.int32), target_count=target_faces, agg=5.0)
    verts = np.asarray(verts, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    verts, faces = _largest_component(verts, faces)
    verts, faces = _relax(verts, faces, joints, radii)
    # Outward orientation: the signed volume must be positive.
    vol = np.einsum("fi,fi->f", verts[faces[:, 0]], np.cross(verts[faces[:, 1]], verts[faces[:, 2]])).sum()
    if vol < 0:
        faces = faces[:, ::-1].copy()
    return verts, faces


def _narrow_band_field(axes: list[np.ndarray], joints: np.ndarray, radii: np.ndarray, step: int = 4) -> np.ndarray:
    """The implicit field on the grid ``axes``, evaluated exactly only near the surface.

    A grid ``step`` times coarser finds the band; elsewhere the field keeps the coarse
    sign (distance fields are 1-Lipschitz, so a coarse value beyond the cell diagonal
    cannot hide a surface) and marching cubes sees no crossing there.
    """
    def points(ax):
        return np.stack(np.meshgrid(*ax, indexing="ij"), axis=-1).reshape(-1, 3)

    coarse_axes = [a[::step] for a in axes]
    coarse = hand_sdf(points(coarse_axes), joints, radii, far=FAR).reshape([len(a) for a in coarse_axes])
    idx = np.meshgrid(*[np.minimum((np.arange(len(a)) + step // 2) // step, len(c) - 1)
                        for a, c in zip(axes, coarse_axes)], indexing="ij")
    near = coarse[tuple(idx)]
    band = np.abs(near) < 1.5 * step * GRID_SPACING * np.sqrt(3.0)
    field = np.where(near > 0, FAR, -FAR)
    field[band] = hand_sdf(points(axes).reshape(field.shape + (3,))[band], joints, radii, far=FAR)
    return field


def _largest_component(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(v)
    adj = sp.coo_matrix((np.ones(len(f) * 3), (f.ravel(), np.roll(f, 1, axis=1).ravel())), shape=(n, n))
    _, labels = connected_components(adj, directed=False)
    keep_label = np.bincount(labels[f[:, 0]]).argmax()
    keep_faces = f[labels[f[:, 0]] == keep_label]
    used = np.unique(keep_faces)
    remap = np.full(n, -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return v[used], remap[keep_faces]


def _relax(v: np.ndarray, f: np.ndarray, joints: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rounder triangles: Delaunay edge flips, then tangential Laplacian relaxation projected
    back on the implicit surface, a few rounds."""
    for _ in range(RELAX_ROUNDS):
        f = _flip_edges(v, f)
        avg = _neighbours(f, len(v))
        for _ in range(RELAX_ITERATIONS):
            n = vertex_normals(v, f)
            delta = avg @ v - v
            delta -= (delta * n).sum(1, keepdims=True) * n    # move along the surface only
            v = _project(v + 0.5 * delta, joints, radii)
    return v, f


def _angle(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """Angle at a of triangle (a, b, c)."""
    u, w = b - a, c - a
    return float(np.arccos(np.clip(u @ w / (np.linalg.norm(u) * np.linalg.norm(w)), -1.0, 1.0)))


def _flip_edges(v: np.ndarray, f: np.ndarray, passes: int = 4) -> np.ndarray:
    """Flip edges whose opposite angles sum above pi (intrinsic Delaunay), keeping the surface
    shape (no flips across creases sharper than ~35 deg), manifoldness and valence >= 4."""
    f = f.copy()
    for _ in range(passes):
        owner: dict[tuple[int, int], int] = {}          # directed edge -> face
        for fi, tri in enumerate(f.tolist()):
            for k in range(3):
                owner[(tri[k], tri[(k + 1) % 3])] = fi
        valence = np.bincount(f.ravel(), minlength=len(v))
        touched = np.zeros(len(f), dtype=bool)
        flips = 0
        for (x, y), f1 in sorted(owner.items()):
            if x > y or (y, x) not in owner:
                continue
            f2 = owner[(y, x)]
            if touched[f1] or touched[f2] or valence[x] <= 4 or valence[y] <= 4:
                continue
            p = int(next(c for c in f[f1] if c != x and c != y))
            q = int(next(c for c in f[f2] if c != x and c != y))
            if (p, q) in owner or (q, p) in owner or p == q:
                continue
            if _angle(v[p], v[x], v[y]) + _angle(v[q], v[x], v[y]) <= np.pi + 1e-9:
                continue
            n1 = np.cross(v[y] - v[x], v[p] - v[x])
            n2 = np.cross(v[x] - v[y], v[q] - v[y])
            m1 = np.cross(v[q] - v[x], v[p] - v[x])
            m2 = np.cross(v[y] - v[q], v[p] - v[q])
            unit = [a / np.linalg.norm(a) for a in (n1, n2, m1, m2)]
            if unit[0] @ unit[1] < 0.82 or min(unit[2] @ unit[0], unit[3] @ unit[1], unit[2] @ unit[3]) < 0.82:
                continue
            # (x, y, p) and (y, x, q) become (x, q, p) and (q, y, p): same orientation.
            f[f1], f[f2] = (x, q, p), (q, y, p)
            touched[[f1, f2]] = True
            valence[[x, y]] -= 1
            valence[[p, q]] += 1
            flips += 1
        if flips == 0:
            break
    return f


# ---------------------------------------------------------------------------- rigging
SKIN_TEMPERATURE = 0.0018     # metres of primitive distance per e-fold of weight
SKIN_SMOOTHING = 4            # Laplacian smoothing passes over the mesh
SKIN_CUTOFF = 0.01            # weights below this are dropped (then rows renormalised)
REGRESSOR_RING = 20           # vertices per internal joint's regressor


def skinning_weights(v: np.ndarray, f: np.ndarray, joints: np.ndarray, radii: np.ndarray,
                     tip_vertices: np.ndarray) -> np.ndarray:
    """(V, 16) skinning weights: soft-min over the bone primitives, smoothed, rows sum to 1."""
    d = primitive_sdfs(v, joints, radii)
    w = np.exp(-(d - d.min(1, keepdims=True)) / SKIN_TEMPERATURE)
    w /= w.sum(1, keepdims=True)
    avg = _neighbours(f, len(v))
    for _ in range(SKIN_SMOOTHING):
        w = 0.5 * w + 0.5 * (avg @ w)
    w[w < SKIN_CUTOFF] = 0.0
    w /= w.sum(1, keepdims=True)
    # Fingertip joints are these vertices: rigid on the distal bone keeps tip bones rigid.
    for name, t in zip(cv.FINGER_NAMES, tip_vertices):
        w[t] = 0.0
        w[t, KINEMATIC_JOINTS.index(cv.FINGER_JOINTS[name][2])] = 1.0
    return w


def joint_regressor(v: np.ndarray, joints: np.ndarray, tip_vertices: np.ndarray) -> np.ndarray:
    """(21, V) non-negative regressor, rows sum to 1; internal joints from a ring of vertices.

    For each internal joint the ``REGRESSOR_RING`` nearest vertices get weights from a
    non-negative least-squares fit of ``sum_v r_v x_v = joint``, ``sum_v r_v = 1`` with a
    small pull towards uniform weights (a well-spread ring, not 3 vertices).
    """
    from scipy.optimize import nnls

    reg = np.zeros((cv.NUM_JOINTS, len(v)))
    for j in range(cv.NUM_JOINTS):
        if j in cv.TIP_JOINTS:
            reg[j, tip_vertices[cv.TIP_JOINTS.index(j)]] = 1.0
            continue
        order = np.argsort(np.linalg.norm(v - joints[j], axis=1), kind="stable")
        # Grow the ring until the joint lies inside its hull (the fit is then exact).
        for k in (REGRESSOR_RING, 2 * REGRESSOR_RING, 4 * REGRESSOR_RING, 8 * REGRESSOR_RING):
            ring = order[:k]
            c, lam = 1e3, 1e-4
            a = np.concatenate([c * (v[ring] - joints[j]).T, c * np.ones((1, k)), np.sqrt(lam) * np.eye(k)])
            b = np.concatenate([np.zeros(3), [c], np.full(k, np.sqrt(lam) / k)])
            r, _ = nnls(a, b, maxiter=100 * k)
            r = r / r.sum()
            if np.linalg.norm(r @ v[ring] - joints[j]) < 1e-6:
                break
        else:
            raise RuntimeError(f"joint {j} is outside the hull of its {k} nearest vertices")
        reg[j, ring] = r
    return reg


def regions_from_weights(weights: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V,) region labels (conventions.REGION_NAMES) from the skinning weights, each region connected."""
    return make_regions_connected(faces, regions_from_skinning(weights, FREIHAND16_JOINT_REGION))


def build_open_hand() -> dict[str, np.ndarray]:
    """Build every array of the asset (deterministic).

    Returns:
        dict with vertices (V, 3), faces (F, 3) int64, skinning_weights (V, 16),
        rest_joints (21, 3), joint_regressor (21, V), regions (V,) int64,
        joint_frames (16, 3, 3), tip_vertices (5,) int64, radii (21,).
    """
    design, radii = design_skeleton()
    verts, faces = build_mesh(design, radii)
    tips = np.array([int(np.argmin(np.linalg.norm(verts - design[t], axis=1))) for t in cv.TIP_JOINTS])
    weights = skinning_weights(verts, faces, design, radii, tips)
    reg = joint_regressor(verts, design, tips)
    rest = reg @ verts        # by definition: the regressor's output at rest is the skeleton
    drift = np.linalg.norm(rest - design, axis=1)
    log.info("regressed skeleton moved the design by at most %.2e m (tips %.2e m)",
             drift[list(KINEMATIC_JOINTS)].max(), drift[list(cv.TIP_JOINTS)].max())
    return {
        "vertices": verts,
        "faces": faces,
        "skinning_weights": weights,
        "rest_joints": rest,
        "joint_regressor": reg,
        "regions": regions_from_weights(weights, faces),
        "joint_frames": joint_frames(rest),
        "tip_vertices": tips.astype(np.int64),
        "radii": radii,
    }


def asset_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Serialise the asset (safetensors: sorted keys, no timestamps, so bytes are reproducible)."""
    from safetensors.numpy import save  # heavy: safetensors loads only to write the asset

    return save({k: np.ascontiguousarray(v) for k, v in arrays.items()},
                # One metadata key: safetensors writes a multi-key map in hash order.
                metadata={"open_hand": f"version {ASSET_VERSION}; metres; wrist at origin; "
                                       "x wrist->middle finger, y dorsal, z thumb->little"})


def main(out: str | Path = ASSET_PATH) -> str:
    """Build and write the asset; returns its sha256."""
    data = asset_bytes(build_open_hand())
    atomic_write_bytes(out, data)
    digest = hashlib.sha256(data).hexdigest()
    log.info("wrote %s (%d bytes, sha256 %s)", out, len(data), digest)
    return digest
