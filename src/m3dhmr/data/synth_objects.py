"""Things in the synthetic hand's scene: objects held in the grasp of the grip handshapes
and a second, never annotated hand, as meshes for the hand's z-buffer.

Held objects are simple meshes (cylinder, sphere, flat plate, thin stick like a pen) fitted
to the posed joints of the hand that holds them (:data:`m3dhmr.hand.handshapes.GRIPS`), in
the hand model's frame at zero global rotation, so the caller turns and places them with
the hand's own rotation and translation. They only ever add pixels in front of or behind
the hand: the hand's annotations never depend on them.

Sizes come from the fingers' own loop (e.g. the cylinder's radius is the circle through the
fingers' knuckle, middle and tip points less a finger's half-thickness), so the object
touches the skin instead of cutting through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from m3dhmr.errors import InputError
from m3dhmr.geometry.rotations import random_rotation
from m3dhmr.mesh.validate import vertex_array

#: Half the thickness of a finger at its pad (m): how far an object's surface sits from the bone line.
FINGER_RADIUS = 0.009


@dataclass
class SceneMesh:
    """A mesh of the scene: vertices (N, 3) (model frame or camera space, metres), faces
    (F, 3) int64, colors (N, 3) albedo in [0, 1], and what it is ("cylinder", ..., "hand")."""

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    kind: str


# --------------------------------------------------------------------------- primitives


def cylinder(radius: float, length: float, segments: int = 20, rings: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Closed cylinder along +z centred at the origin: vertices (segments * (rings + 1) + 2, 3),
    faces (F, 3) int64 (side quads split in two, caps as fans around a centre vertex)."""
    if radius <= 0 or length <= 0 or segments < 3 or rings < 1:
        raise InputError(f"cylinder needs radius, length > 0, segments >= 3, rings >= 1; got "
                         f"{radius}, {length}, {segments}, {rings}")
    a = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    z = np.linspace(-length / 2, length / 2, rings + 1)
    ring = np.stack([radius * np.cos(a), radius * np.sin(a)], 1)
    side = np.concatenate([np.column_stack([ring, np.full(segments, zz)]) for zz in z])
    verts = np.concatenate([side, [[0, 0, -length / 2], [0, 0, length / 2]]])
    faces = []
    for r in range(rings):
        for s in range(segments):
            i0, i1 = r * segments + s, r * segments + (s + 1) % segments
            j0, j1 = i0 + segments, i1 + segments
            faces += [(i0, i1, j1), (i0, j1, j0)]
    c0, c1 = len(side), len(side) + 1
    top = rings * segments
    for s in range(segments):
        faces.append((c0, (s + 1) % segments, s))
        faces.append((c1, top + s, top + (s + 1) % segments))
    return verts, np.asarray(faces, dtype=np.int64)


def sphere(radius: float, segments: int = 20, rings: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """UV sphere centred at the origin: vertices (segments * (rings - 1) + 2, 3), faces (F, 3) int64."""
    if radius <= 0 or segments < 3 or rings < 2:
        raise InputError(f"sphere needs radius > 0, segments >= 3, rings >= 2; got {radius}, {segments}, {rings}")
    th = np.linspace(0, np.pi, rings + 1)[1:-1]
    ph = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    st, ct = np.sin(th)[:, None], np.cos(th)[:, None]
    body = np.stack([st * np.cos(ph), st * np.sin(ph), np.broadcast_to(ct, (len(th), segments))], -1).reshape(-1, 3)
    verts = np.concatenate([[[0, 0, 1]], body, [[0, 0, -1]]]) * radius
    faces = []
    for s in range(segments):
        faces.append((0, 1 + s, 1 + (s + 1) % segments))
    for r in range(rings - 2):
        for s in range(segments):
            i0, i1 = 1 + r * segments + s, 1 + r * segments + (s + 1) % segments
            faces += [(i0, i0 + segments, i1 + segments), (i0, i1 + segments, i1)]
    last, base = len(verts) - 1, 1 + (rings - 2) * segments
    for s in range(segments):
        faces.append((last, base + (s + 1) % segments, base + s))
    return verts, np.asarray(faces, dtype=np.int64)


def box(size: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned box of side lengths ``size`` (x, y, z) centred at the origin, 4 vertices per
    side so each side shades flat: vertices (24, 3), faces (12, 3) int64."""
    if min(size) <= 0:
        raise InputError(f"box sides must be > 0, got {size}")
    h = np.asarray(size, dtype=np.float64) / 2
    verts, faces = [], []
    for axis in range(3):
        u, v = (axis + 1) % 3, (axis + 2) % 3
        for sign in (-1.0, 1.0):
            base = len(verts)
            for du, dv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                p = np.zeros(3)
                p[axis], p[u], p[v] = sign * h[axis], du * h[u], dv * h[v]
                verts.append(p)
            faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    return np.asarray(verts), np.asarray(faces, dtype=np.int64)


def _frame(axis: np.ndarray) -> np.ndarray:
    """(3, 3) rotation whose third column is the unit vector along ``axis`` (3,)."""
    z = axis / np.linalg.norm(axis)
    helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def circumcircle(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre (3,) and radius of the circle through three points (3,)."""
    ab, ac = b - a, c - a
    n = np.cross(ab, ac)
    nn = max(float(n @ n), 1e-18)
    centre = a + (np.cross(n, ab) * (ac @ ac) + np.cross(ac, n) * (ab @ ab)) / (2 * nn)
    return centre, float(np.linalg.norm(centre - a))


def fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere through points (N, 3), N >= 4: centre (3,) and radius
    (the linear fit |x|^2 = 2 c.x + d, d = r^2 - |c|^2)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < 4:
        raise InputError(f"fit_sphere needs points of shape (N >= 4, 3), got {points.shape}")
    A = np.column_stack([2 * points, np.ones(len(points))])
    sol = np.linalg.lstsq(A, (points ** 2).sum(1), rcond=None)[0]
    c = sol[:3]
    return c, float(np.sqrt(max(sol[3] + c @ c, 0.0)))


# --------------------------------------------------------------------------- grips


def penetration_depth(points: np.ndarray, vertices: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """(N,) how far each of points (N, 3) lies behind the tangent plane of its nearest hand
    vertex (vertices, normals (V, 3), normals pointing out): > 0 inside the skin. Meaningful
    for points near the surface (a few mm to cm)."""
    points = np.asarray(points, dtype=np.float64)
    d2 = (points ** 2).sum(1)[:, None] + (vertices ** 2).sum(1)[None] - 2.0 * points @ vertices.T
    near = np.argmin(d2, axis=1)
    return -((points - vertices[near]) * normals[near]).sum(1)


def grip_object(kind: str, joints: np.ndarray, vertices: np.ndarray, rng: np.random.Generator,
                faces: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """An object of ``kind`` placed in the grasp of a hand with joints (21, 3) and vertices
    (V, 3) (model frame, FreiHAND order); returns its vertices (N, 3) in that frame and faces
    (F, 3) int64.

    cylinder: axis along the knuckle line (index to little MCP) through the centre of the
    circle through the fingers' mean MCP, PIP and tip; sphere: fitted to the finger and thumb
    pads; both no larger than the distance from their axis / centre to the nearest skin
    vertex, so they touch the skin instead of cutting into it. plate: between the thumb pad
    and the index (flat grip: the index and middle pads; lateral grip: the side of the
    index's middle phalanx), extending away from the palm and moved out of the fingers until
    it cuts less than 2 mm into the skin; stick: a pen through the thumb, index and middle
    pads towards the web of the thumb. ``faces`` (F, 3) of the hand give the skin normals the
    plate's check needs (without them the plate is not moved).
    """
    J = np.asarray(joints, dtype=np.float64)
    V = vertex_array(vertices)
    if J.shape != (21, 3):
        raise InputError(f"joints must have shape (21, 3), got {J.shape}")
    if kind == "cylinder":
        axis = _unit(J[5] - J[17])
        mcp, pip, tip = (J[[k + o for k in (5, 9, 13, 17)]].mean(0) for o in (0, 1, 3))
        centre, r = circumcircle(mcp, pip, tip)
        length = float(np.linalg.norm(J[5] - J[17]) + rng.uniform(0.04, 0.14))
        # Shift along the axis: a bottle or handle sticks out more on one side.
        centre = centre + axis * rng.uniform(-0.3, 0.3) * (length - np.linalg.norm(J[5] - J[17]))
        # The axis where the skin leaves most room (a 7 x 7 search, +-1.5 cm, across the axis).
        F = _frame(axis)
        g = np.linspace(-0.015, 0.015, 7)
        cands = centre + g[:, None, None] * F[:, 0] + g[None, :, None] * F[:, 1]
        rel = V[None, None] - cands[:, :, None]
        along = rel @ axis
        across = np.linalg.norm(rel - along[..., None] * axis, axis=-1)
        across[np.abs(along) > length / 2] = np.inf
        room = across.min(-1)
        room[np.linalg.norm(cands - centre, axis=-1) > 0.015] = -np.inf
        i, j = np.unravel_index(int(np.argmax(room)), room.shape)
        centre = cands[i, j]
        radius = float(np.clip(min(r - FINGER_RADIUS * rng.uniform(0.8, 1.0), room[i, j]), 0.008, 0.045))
        v, f = cylinder(radius, length)
        return v @ _frame(axis).T + centre, f
    if kind == "sphere":
        pads = J[[4, 8, 12, 16, 20, 3, 7, 11, 15, 19]]
        centre, r = fit_sphere(pads)
        # The centre where the skin leaves most room (a 5 x 5 x 5 search, +-1.5 cm).
        g = np.linspace(-0.015, 0.015, 5)
        cands = centre + np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
        room = np.sqrt(((V[None] - cands[:, None]) ** 2).sum(-1)).min(1)
        k = int(np.argmax(room))
        centre = cands[k]
        radius = float(np.clip(min(r - FINGER_RADIUS * rng.uniform(0.9, 1.1), room[k]), 0.012, 0.07))
        v, f = sphere(radius)
        return v + centre, f
    if kind == "plate":
        lateral = np.linalg.norm(J[4] - (J[6] + J[7]) / 2) < np.linalg.norm(J[4] - (J[7] + J[8] + J[11] + J[12]) / 4)
        other = (J[6] + J[7]) / 2 if lateral else (J[7] + J[8] + J[11] + J[12]) / 4
        n = _unit(J[4] - other)
        thick = float(np.clip(np.linalg.norm(J[4] - other) - 2 * FINGER_RADIUS, 0.002, 0.02))
        contact = other + n * (FINGER_RADIUS + thick / 2)
        palm = J[[0, 5, 9, 13, 17]].mean(0)
        out = _unit((contact - palm) - ((contact - palm) @ n) * n)  # in the plate, away from the palm
        side = np.cross(n, out)
        w, h = (rng.uniform(0.02, 0.035), rng.uniform(0.04, 0.07)) if lateral else \
            (rng.uniform(0.05, 0.12), rng.uniform(0.06, 0.15))
        v, f = box((w, h, thick))
        # The plate's near edge sits a little inside the grasp (fingers overlap it by 1.5-3 cm).
        centre = contact + out * (h / 2 - rng.uniform(0.015, 0.03))
        v = v @ np.stack([side, out, n], axis=1).T
        from m3dhmr.render.shading import vertex_normals  # heavy: the renderer imports numba

        normals = vertex_normals(V, faces) if faces is not None else None
        for _ in range(10):  # out of the fingers, 3 mm at a time
            if normals is None or penetration_depth(v + centre, V, normals).max() < 0.002:
                break
            centre = centre + out * 0.003
        return v + centre, f
    if kind == "stick":
        pads = J[[4, 8, 12]].mean(0)
        web = _unit((J[2] + J[5]) / 2 - pads)
        normal = _unit(np.cross(J[5] - J[17], J[9] - J[0]))  # the palm's normal
        radius = float(rng.uniform(0.0035, 0.006))
        length = float(rng.uniform(0.11, 0.16))
        stick_out = float(rng.uniform(0.01, 0.03))
        v0, f = cylinder(radius, length, segments=10, rings=16)
        normals = None
        if faces is not None:
            from m3dhmr.render.shading import vertex_normals

            normals = vertex_normals(V, faces)
        # Towards the web of the thumb, tilted (towards the palm or the back, to either side)
        # as little as makes the pen pass over the skin instead of through it (else the least
        # bad tilt).
        best = (np.inf, None)
        side = _unit(np.cross(normal, web))
        tilts = [(a, b) for a in (0.0, 0.15, -0.15, 0.3, -0.3, 0.5, -0.5) for b in (0.0, 0.2, -0.2, 0.4, -0.4)]
        for a, b in sorted(tilts, key=lambda ab: abs(ab[0]) + abs(ab[1])):
            axis = _unit(web + a * normal + b * side)
            # The writing end sticks out 1-3 cm beyond the pads; the rest runs back over the web.
            centre = pads + axis * (length / 2 - stick_out)
            # Then towards the nearest skin near the pads until the pen rests on it (1 mm gap).
            rel = V - pads
            along = np.clip(rel @ axis, -0.03, 0.03)
            gap = rel - along[:, None] * axis
            dist = np.linalg.norm(gap, axis=1)
            k = int(np.argmin(dist))
            rest = gap[k] / max(dist[k], 1e-9) * max(dist[k] - radius - 0.001, 0.0)
            for move in (1.0, 0.5, 0.0):  # resting on the nearest pad, or less where that cuts another
                v = v0 @ _frame(axis).T + centre + move * rest
                if normals is None:
                    return v, f
                depth = float(penetration_depth(v, V, normals).max())
                if depth < best[0]:
                    best = (depth, v)
                if depth < 0.002:
                    return v, f
        return best[1], f
    raise InputError(f"unknown object kind {kind!r}; expected cylinder, sphere, plate or stick")


def object_colors(vertices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-vertex albedo (N, 3) in [0, 1] for an object's vertices (N, 3): one random colour,
    or two colours in stripes or a checker pattern over the object (half of the time)."""
    c1 = rng.uniform(0.05, 0.95, 3)
    c2 = rng.uniform(0.05, 0.95, 3)
    pattern = int(rng.integers(3))
    freq = rng.uniform(60.0, 250.0)  # rad/m: 2.5-10 cm periods
    direction = _unit(rng.normal(size=3))
    local = vertices - vertices.mean(0)
    if pattern == 0:
        w = np.zeros(len(vertices))
    elif pattern == 1:
        w = (np.sin(local @ direction * freq) > 0).astype(np.float64)
    else:
        w = ((np.floor(local * freq / np.pi).sum(1) % 2) == 0).astype(np.float64)
    return np.clip(c1[None] * (1 - w[:, None]) + c2[None] * w[:, None], 0.0, 1.0)


# --------------------------------------------------------------------------- the second hand


def place_other_hand(verts: np.ndarray, hand_cam: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera-space vertices (V, 3) of a second hand ``verts`` (V, 3) (model frame, any pose)
    near the annotated hand ``hand_cam`` (V', 3) (camera space): a left hand (the model
    mirrored in x) 70 % of the time, any orientation, its centre 40-100 % of the hand's
    half-extent away in the image plane and 2-12 cm in front of (half the time) or behind
    the hand's centre, so that it overlaps part of the hand."""
    v = np.asarray(verts, dtype=np.float64)
    if rng.random() < 0.7:
        v = v * np.array([-1.0, 1.0, 1.0])
    R = random_rotation(rng)
    v = (v - v.mean(0)) @ R.T
    centre = hand_cam.mean(0)
    half = 0.5 * float(np.ptp(hand_cam[:, :2], axis=0).max())
    ang = rng.uniform(0.0, 2 * np.pi)
    dist = rng.uniform(0.4, 1.0) * half
    dz = rng.uniform(0.02, 0.12) * (-1.0 if rng.random() < 0.5 else 1.0)
    # Keep the camera in front of every vertex whatever the draws (a hand 2 cm from the lens is no use).
    dz = max(dz, 0.08 - float(centre[2] + v[:, 2].min()))
    return v + centre + np.array([dist * np.cos(ang), dist * np.sin(ang), dz])
