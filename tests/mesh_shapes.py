"""Small meshes for the topology tests (tetrahedron, flat grid, icosphere, open disk, toy hand),
and a naive count of the connected pieces of each region label."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from m3dhmr.mesh import edges


def tetrahedron() -> tuple[np.ndarray, np.ndarray]:
    """Regular-ish tetrahedron, faces counter-clockwise seen from outside."""
    v = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], dtype=np.int64)
    return v, f


def grid(n: int, m: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flat (n+1) x (m+1) grid in the z=0 plane, vertex id ``i * (m + 1) + j`` at (j, i),
    each cell split along its (i, j)-(i+1, j+1) diagonal; normals +z."""
    m = n if m is None else m
    jj, ii = np.meshgrid(np.arange(m + 1), np.arange(n + 1))
    v = np.stack([jj.ravel(), ii.ravel(), np.zeros(jj.size)], axis=1).astype(np.float64)
    faces = []
    for i in range(n):
        for j in range(m):
            a, b = i * (m + 1) + j, i * (m + 1) + j + 1
            c, d = (i + 1) * (m + 1) + j + 1, (i + 1) * (m + 1) + j
            faces += [[a, b, c], [a, c, d]]
    return v, np.array(faces, dtype=np.int64)


def icosphere(subdivisions: int = 2) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    m = trimesh.creation.icosphere(subdivisions)
    return np.asarray(m.vertices, dtype=np.float64), np.asarray(m.faces, dtype=np.int64)


def compact(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    used = np.unique(f)
    remap = np.full(v.shape[0], -1, dtype=np.int64)
    remap[used] = np.arange(used.size)
    return v[used], remap[f]


def open_disk(subdivisions: int = 3, cut: float = -0.5) -> tuple[np.ndarray, np.ndarray]:
    """An elongated icosphere with its bottom cap cut off: one boundary loop, Euler
    characteristic 1, like MANO's hand open at the wrist."""
    v, f = icosphere(subdivisions)
    v = v * np.array([0.6, 1.5, 0.3])
    keep = v[f].mean(axis=1)[:, 1] > cut * 1.5
    return compact(v, f[keep])


def toy_joints() -> np.ndarray:
    """21 joints (FreiHAND order) spread over :func:`open_disk`'s extent: the wrist at the
    open end, five fingers fanning out towards the closed end."""
    j = np.zeros((21, 3))
    j[0] = [0.0, -0.7, 0.0]
    xs = [-0.5, -0.25, 0.0, 0.2, 0.4]
    for k, x in enumerate(xs):
        base = np.array([x, -0.4 if k == 0 else 0.2, 0.0])
        tip = np.array([x * 1.2, 0.0 if k == 0 else 1.4, 0.0])
        for s in range(4):
            j[1 + 4 * k + s] = base + (tip - base) * s / 3.0
    return j


def toy_regressor(vertices: np.ndarray) -> np.ndarray:
    """(21, V) regressor whose joints are :func:`toy_joints` exactly (affine weights on the
    four vertices around each joint, by least squares)."""
    joints = toy_joints()
    reg = np.zeros((21, vertices.shape[0]))
    for k, p in enumerate(joints):
        near = np.argsort(((vertices - p) ** 2).sum(1), kind="stable")[:8]
        a = np.vstack([vertices[near].T, np.ones(near.size)])  # (4, 8)
        w = np.linalg.lstsq(a, np.append(p, 1.0), rcond=None)[0]
        reg[k, near] = w
    return reg


def naive_region_pieces(f: np.ndarray, labels: np.ndarray) -> dict[int, int]:
    """Number of connected pieces of each label of (V,) ``labels`` on the mesh faces (F, 3)
    (naive: one graph per label; the reference of :func:`m3dhmr.mesh.region_pieces`)."""
    e = edges(f)
    out = {}
    for r in np.unique(labels):
        keep = (labels[e[:, 0]] == r) & (labels[e[:, 1]] == r)
        idx = np.flatnonzero(labels == r)
        g = sp.csr_matrix((np.ones(keep.sum()), (e[keep, 0], e[keep, 1])), shape=(labels.size,) * 2)
        _, comp = connected_components(g, directed=False)
        out[int(r)] = len(set(comp[idx].tolist()))
    return out
