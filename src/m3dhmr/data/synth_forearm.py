"""A forearm for the synthetic hand: a tapered tube grown from a loop of the hand mesh at
the wrist, bare skin or in a sleeve (rendered with the hand, never annotated).

The open hand is closed at the wrist by a rounded stump. :func:`wrist_loop` cuts it at
``x = WRIST_CUT_X`` (rest frame: +x wrist -> middle finger, +y dorsal, +z thumb ->
little finger): the faces wholly on the finger side stay, the rest (the stump's cap)
is dropped from the render, and the boundary of what stays is the loop the tube starts
from. :func:`forearm_mesh` builds the tube per sample from the *posed* loop vertices
(model space, zero global rotation), so its first ring is the hand's own loop (shared
vertex indices: no gap, smooth normals across the wrist), and the sample's global
rotation and translation move hand and forearm together. The forearm axis starts along
-x and turns, over the first few centimetres, to a direction drawn within a moderate
range of wrist flexion and deviation about the wrist joint.

Cross-section: the loop's own shape, blended within 4 cm into an ellipse of the same
extent, growing in thickness (y) and width (z) towards the elbow. A sleeve starts at
the cuff with a step (a visible washer of cloth), is wider, and carries a procedural
cloth pattern (plain, stripes along or across, checks) and soft folds, all functions
of the tube's (distance, angle) coordinates, so the vertex count never changes the
random draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from m3dhmr.geometry.rotations import rot_y, rot_z
from m3dhmr.mesh.adjacency import half_edges
from m3dhmr.errors import InputError

#: Rest-frame x of the cut that separates the hand from its stump (the wrist joint is at 0).
WRIST_CUT_X = -0.010
#: Arc length over which the axis turns from the hand's -x to the forearm direction (m).
BEND_LENGTH = 0.035
#: Arc length over which the loop's shape blends into an ellipse (m).
ROUND_LENGTH = 0.04
#: Ring spacing near the wrist (where the tube bends) and beyond (m).
NEAR_STEP, FAR_STEP, NEAR_END = 0.008, 0.02, 0.04
CLOTH_PATTERNS = ("plain", "along", "across", "checks")


@dataclass(frozen=True)
class WristLoop:
    """loop: (L,) vertex indices of the wrist loop, in the order that makes the tube's
    faces wind like the hand's (outward); open_faces: (F', 3) the hand's faces without
    the stump's cap; cap: (F,) bool, the dropped faces."""

    loop: np.ndarray
    open_faces: np.ndarray
    cap: np.ndarray


def wrist_loop(vertices: np.ndarray, faces: np.ndarray, cut_x: float = WRIST_CUT_X) -> WristLoop:
    """The loop where the forearm meets the hand: vertices (V, 3) rest frame, faces (F, 3).

    Faces with any vertex at ``x < cut_x`` form the cap; the edges used by exactly one
    remaining face form the loop. Raises ValueError unless that is one simple cycle.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise InputError(f"vertices must be (V, 3) and faces (F, 3), got {vertices.shape} and {faces.shape}")
    cap = (vertices[faces, 0] < cut_x).any(1)
    kept = faces[~cap]
    he = half_edges(kept)
    # Boundary half-edges: their reverse is in no kept face.
    key = he[:, 0] * len(vertices) + he[:, 1]
    rev = he[:, 1] * len(vertices) + he[:, 0]
    boundary = he[~np.isin(rev, key)]
    if len(boundary) < 3:
        raise InputError(f"no wrist loop at x = {cut_x}: the cut leaves {len(boundary)} boundary edges")
    # Follow each boundary half-edge backwards (b -> a): the tube's faces then use the loop's
    # edges in the direction opposite to the hand's, i.e. the two surfaces wind alike.
    nxt = dict(zip(boundary[:, 1].tolist(), boundary[:, 0].tolist()))
    if len(nxt) != len(boundary):
        raise InputError(f"the wrist cut at x = {cut_x} is not a simple loop (a vertex repeats)")
    start = int(boundary[:, 1].min())
    loop = [start]
    while (v := nxt[loop[-1]]) != start:
        loop.append(v)
        if len(loop) > len(boundary):
            raise InputError(f"the wrist cut at x = {cut_x} is not a simple loop")
    if len(loop) != len(boundary):
        raise InputError(f"the wrist cut at x = {cut_x} leaves {len(boundary)} boundary edges in more than one loop")
    return WristLoop(loop=np.asarray(loop, dtype=np.int64), open_faces=np.ascontiguousarray(kept), cap=cap)


@dataclass(frozen=True)
class ForearmParams:
    """One sample's forearm. Distances in metres from the wrist loop, angles in radians.

    length: tube length; flexion / deviation: wrist angles (about the hand's z / y axes);
    grow_thick / grow_wide: relative growth of the cross-section's thickness / width at
    the far end; sleeve: whether a sleeve covers the arm from ``cuff`` on, ``sleeve_scale``
    times wider, with ``cloth`` / ``cloth2`` (sRGB) in ``pattern`` (index into
    :data:`CLOTH_PATTERNS`) of spatial frequency ``pattern_freq`` (1/m), and folds of
    relative depth ``folds``; phase (2,): pattern and fold phases.
    """

    length: float
    flexion: float
    deviation: float
    grow_thick: float
    grow_wide: float
    sleeve: bool
    cuff: float
    sleeve_scale: float
    cloth: tuple[float, float, float]
    cloth2: tuple[float, float, float]
    pattern: int
    pattern_freq: float
    folds: float
    phase: tuple[float, float]

    def to_json(self) -> dict:
        """JSON-ready dict (angles in degrees)."""
        return {"length": self.length, "flexion_deg": float(np.degrees(self.flexion)),
                "deviation_deg": float(np.degrees(self.deviation)), "sleeve": self.sleeve,
                "cuff": self.cuff if self.sleeve else None, "cloth": list(self.cloth) if self.sleeve else None,
                "pattern": CLOTH_PATTERNS[self.pattern] if self.sleeve else None}


def sample_forearm(rng: np.random.Generator, sleeve_prob: float) -> ForearmParams:
    """Draw one forearm (a fixed number of draws from ``rng`` whatever the outcome)."""
    length = rng.uniform(0.15, 0.30)
    # Wrist flexion/extension and radial/ulnar deviation, well inside the anatomical range
    # (about -70..80 and -20..30 degrees): most photographed wrists are near neutral.
    flexion = np.clip(rng.normal(0.0, np.radians(18)), -np.radians(50), np.radians(50))
    deviation = np.clip(rng.normal(0.0, np.radians(8)), -np.radians(20), np.radians(20))
    grow_thick, grow_wide = rng.uniform(0.25, 0.75), rng.uniform(0.0, 0.2)
    sleeve = bool(rng.random() < sleeve_prob)
    cuff = rng.uniform(0.0, 0.16)
    sleeve_scale = rng.uniform(1.1, 1.45)
    cloth = rng.uniform(0.05, 0.95, 3) ** rng.uniform(0.7, 1.6)
    cloth2 = np.clip(cloth * rng.uniform(0.3, 1.7, 3), 0.0, 1.0)
    pattern = int(rng.integers(len(CLOTH_PATTERNS)))
    freq = rng.uniform(40.0, 160.0)
    folds = rng.uniform(0.0, 0.08)
    phase = rng.uniform(0.0, 2 * np.pi, 2)
    return ForearmParams(
        length=float(length), flexion=float(flexion), deviation=float(deviation), grow_thick=float(grow_thick),
        grow_wide=float(grow_wide), sleeve=sleeve, cuff=float(cuff), sleeve_scale=float(sleeve_scale),
        cloth=tuple(float(c) for c in cloth), cloth2=tuple(float(c) for c in cloth2), pattern=pattern,
        pattern_freq=float(freq), folds=float(folds), phase=(float(phase[0]), float(phase[1])))


@dataclass(frozen=True)
class ForearmMesh:
    """The tube, to be appended to the hand's V vertices.

    vertices: (M, 3) model space; faces: (Ff, 3) indices into the concatenation
    ``[hand vertices (V), vertices (M)]`` (the first ring is the hand's loop);
    cloth: (M,) bool; cloth_albedo: (M, 3) sRGB (meaningful where ``cloth``);
    ventral: (M,) in [-1, 1], how much the vertex faces the palm side (+1);
    spheres: (S, 4) occluder proxies along the axis (centre, radius) for ambient occlusion;
    distance: (M,) distance of each vertex's ring from the wrist loop.
    """

    vertices: np.ndarray
    faces: np.ndarray
    cloth: np.ndarray
    cloth_albedo: np.ndarray
    ventral: np.ndarray
    spheres: np.ndarray
    distance: np.ndarray


def _smoothstep(x: np.ndarray | float, a: float, b: float) -> np.ndarray:
    t = np.clip((np.asarray(x, dtype=np.float64) - a) / (b - a), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _rings(p: ForearmParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per ring after the loop: distance s (R,), cloth flag (R,), and 'same place as the
    previous ring' flag (R,) (the cuff's duplicated ring, joined to nothing before it)."""
    s = np.concatenate([np.arange(NEAR_STEP, NEAR_END - 1e-9, NEAR_STEP),
                        np.arange(NEAR_END, p.length - 1e-9, FAR_STEP), [p.length]])
    s = s[np.concatenate([[True], np.diff(s) > 1e-3])]
    if not p.sleeve or p.cuff >= p.length:
        return s, np.zeros(len(s), bool), np.zeros(len(s), bool)
    cuff = max(p.cuff, 0.004)  # a ring of skin always stays between the hand's loop and the cuff
    skin = s[s < cuff - 1e-3]
    cloth = s[s > cuff + 0.003]
    s_all = np.concatenate([skin, [cuff, cuff, cuff + 0.002], cloth])
    is_cloth = np.concatenate([np.zeros(len(skin) + 1, bool), np.ones(len(cloth) + 2, bool)])
    restart = np.zeros(len(s_all), bool)
    restart[len(skin) + 1] = True
    return s_all, is_cloth, restart


def _bend(flexion: np.ndarray, deviation: np.ndarray) -> np.ndarray:
    """(R, 3, 3) rotations rot_z(flexion) @ rot_y(deviation) for angle arrays (R,)."""
    return rot_z(flexion) @ rot_y(deviation)


def forearm_mesh(hand_vertices: np.ndarray, pivot: np.ndarray, wl: WristLoop, p: ForearmParams) -> ForearmMesh:
    """The forearm of a posed hand: hand_vertices (V, 3) model space (zero global rotation),
    pivot (3,) the wrist joint; ``wl`` from :func:`wrist_loop` on the same template."""
    hv = np.asarray(hand_vertices, dtype=np.float64)
    pivot = np.asarray(pivot, dtype=np.float64)
    V = len(hv)
    loop_pts = hv[wl.loop]
    L = len(loop_pts)
    c0 = np.array([loop_pts[:, 0].mean(), *(loop_pts[:, 1:].min(0) + loop_pts[:, 1:].max(0)) / 2])
    off = loop_pts[:, 1:] - c0[1:]                                   # (L, 2) (y, z)
    # Twice the loop's resolution beyond the first ring: midpoints pushed out to the mean radius.
    mid = (off + np.roll(off, -1, 0)) / 2
    rad = (np.linalg.norm(off, axis=1) + np.linalg.norm(np.roll(off, -1, 0), axis=1)) / 2
    mid *= (rad / np.maximum(np.linalg.norm(mid, axis=1), 1e-9))[:, None]
    off2 = np.empty((2 * L, 2))
    off2[0::2], off2[1::2] = off, mid
    semi = np.abs(off2).max(0)                                       # ellipse semi-axes (y, z)
    theta = np.arctan2(off2[:, 1] / semi[1], off2[:, 0] / semi[0])
    ellipse = np.stack([semi[0] * np.cos(theta), semi[1] * np.sin(theta)], 1)

    s, is_cloth, restart = _rings(p)
    R = len(s)
    e = _smoothstep(s, 0.0, ROUND_LENGTH)[:, None, None]
    grow = _smoothstep(s, 0.0, 0.18)
    scale = np.stack([1 + p.grow_thick * grow, 1 + p.grow_wide * grow], 1)[:, None, :]   # (R, 1, 2)
    shape = ((1 - e) * off2[None] + e * ellipse[None]) * scale                             # (R, 2L, 2)
    # The sleeve: wider from the cuff's outer ring on, with soft folds around and along.
    wide = is_cloth & ~np.concatenate([restart[1:], [False]]) & ~restart
    fold = 1 + p.folds * np.sin(3 * theta[None] + p.phase[1]) * np.sin(90.0 * s[:, None] + p.phase[0])
    shape *= np.where(wide[:, None], p.sleeve_scale * fold, 1.0)[:, :, None]
    local = np.empty((R, 2 * L, 3))
    local[..., 0] = c0[0] - s[:, None]
    local[..., 1:] = c0[1:] + shape
    b = _smoothstep(s, 0.0, BEND_LENGTH)
    Q = _bend(b * p.flexion, b * p.deviation)                          # (R, 3, 3)
    # Each ring turned about the wrist joint by its share of the bend.
    verts = np.einsum("rij,rkj->rki", Q, local - pivot) + pivot
    # Far end closed by a fan around the last ring's centre (no view into the tube).
    end = verts[-1].mean(0)
    vertices = np.concatenate([verts.reshape(-1, 3), end[None]])

    idx = V + np.arange(R * 2 * L).reshape(R, 2 * L)
    loop = wl.loop
    r0 = idx[0]
    l1 = np.roll(loop, -1)
    faces = [np.stack([loop, l1, r0[1::2]], 1), np.stack([loop, r0[1::2], r0[0::2]], 1),
             np.stack([l1, np.roll(r0[0::2], -1), r0[1::2]], 1)]
    join = np.nonzero(~restart[1:])[0]                             # ring r joins ring r + 1
    a, b2 = idx[join], idx[join + 1]
    a1, b1 = np.roll(a, -1, 1), np.roll(b2, -1, 1)
    faces += [np.stack([a, a1, b1], 2).reshape(-1, 3), np.stack([a, b1, b2], 2).reshape(-1, 3)]
    centre = V + R * 2 * L
    faces.append(np.stack([idx[-1], np.roll(idx[-1], -1), np.full(2 * L, centre)], 1))
    faces = np.concatenate(faces).astype(np.int64)

    cloth = np.concatenate([np.repeat(is_cloth, 2 * L), [bool(is_cloth[-1])]])
    # Cloth pattern from the tube's (s, angle) coordinates.
    u = np.concatenate([np.repeat(s, 2 * L), [s[-1]]])
    ang = np.concatenate([np.tile(theta, R), [0.0]])
    k = p.pattern_freq
    if p.pattern == 1:      # stripes along the arm
        m = np.sin(np.round(k * 0.02) * ang + p.phase[0]) > 0
    elif p.pattern == 2:    # stripes around the arm
        m = np.sin(k * u + p.phase[0]) > 0
    elif p.pattern == 3:    # checks
        m = (np.sin(k * u + p.phase[0]) > 0) ^ (np.sin(np.round(k * 0.02) * ang + p.phase[1]) > 0)
    else:
        m = np.zeros(len(u), bool)
    cloth_albedo = np.where(m[:, None], np.asarray(p.cloth2), np.asarray(p.cloth))
    ventral = np.concatenate([np.tile(-np.cos(theta), R), [0.0]])   # -y (palm side) is ventral
    # Occluder spheres along the first 8 cm of the axis (farther ones never shade the hand).
    ss = np.arange(0.02, min(0.08, p.length) + 1e-9, 0.02)
    r_ax = np.interp(ss, s, (semi[0] * scale[:, 0, 0])) * 0.9
    axis = np.array([c0[0] - ss, np.full_like(ss, c0[1]), np.full_like(ss, c0[2])]).T
    bs = _smoothstep(ss, 0.0, BEND_LENGTH)
    axis = np.einsum("rij,rj->ri", _bend(bs * p.flexion, bs * p.deviation), axis - pivot) + pivot
    spheres = np.concatenate([axis, r_ax[:, None]], 1) if len(ss) else np.zeros((0, 4))
    return ForearmMesh(vertices=vertices, faces=faces, cloth=cloth, cloth_albedo=cloth_albedo, ventral=ventral,
                       spheres=spheres, distance=u)
