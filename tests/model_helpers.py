"""A tiny topology bundle for the model tests, independent of the hand asset.

Levels are icospheres subdivided by midpoints (level 0 finest), so the up-sampling
matrices are exact (originals copied, midpoints averaged). Regions are six longitude
sectors; spirals are breadth-first rings (padded by repeating the centre on tiny
meshes); the ROI spirals run the same BFS restricted to the centre's region.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import scipy.sparse as sp
import trimesh


def _neighbours(faces: np.ndarray, n: int) -> list[list[int]]:
    nb: list[set[int]] = [set() for _ in range(n)]
    for a, b, c in faces:
        nb[a] |= {b, c}
        nb[b] |= {a, c}
        nb[c] |= {a, b}
    return [sorted(s) for s in nb]


def bfs_spirals(faces: np.ndarray, n: int, length: int, allowed: np.ndarray | None = None, dilation: int = 1) -> np.ndarray:
    """(n, length) rings around each vertex; ``allowed[v]`` restricts to a label."""
    nb = _neighbours(faces, n)
    out = np.zeros((n, length), dtype=np.int64)
    for v in range(n):
        seq, seen, frontier = [v], {v}, [v]
        while frontier and len(seq) < 1 + (length - 1) * dilation:
            nxt = []
            for u in frontier:
                for w in nb[u]:
                    if w not in seen and (allowed is None or allowed[w] == allowed[v]):
                        seen.add(w)
                        nxt.append(w)
            seq += nxt
            frontier = nxt
        seq = [seq[0]] + seq[1::dilation]
        seq = (seq + [v] * length)[:length]
        out[v] = seq
    return out


def tiny_topology(levels: int = 3, spiral_length: int = 7, roi_length: int = 5, seed: int = 0) -> SimpleNamespace:
    """A TopologyBundle-like object; level 0 is icosphere(levels - 1) (162 vertices for 3)."""
    rng = np.random.default_rng(seed)
    ico = trimesh.creation.icosphere(subdivisions=0)
    verts = [np.asarray(ico.vertices, dtype=np.float64)]
    faces = [np.asarray(ico.faces, dtype=np.int64)]
    ups = []
    for _ in range(levels - 1):
        v, f = trimesh.remesh.subdivide(verts[0], faces[0])
        nc = verts[0].shape[0]
        # Match each new vertex to the coarse edge whose midpoint it is.
        edges = np.unique(np.sort(faces[0][:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1), axis=0)
        mids = verts[0][edges].mean(1)
        rows, cols, vals = list(range(nc)), list(range(nc)), [1.0] * nc
        for i in range(nc, v.shape[0]):
            e = int(np.argmin(np.linalg.norm(mids - v[i], axis=1)))
            rows += [i, i]
            cols += list(edges[e])
            vals += [0.5, 0.5]
        ups.insert(0, sp.csr_matrix((vals, (rows, cols)), shape=(v.shape[0], nc)))
        verts.insert(0, np.asarray(v))
        faces.insert(0, np.asarray(f, dtype=np.int64))
    spirals = [bfs_spirals(f, v.shape[0], spiral_length) for v, f in zip(verts, faces)]
    v0 = verts[0]
    angle = np.arctan2(v0[:, 1], v0[:, 0])
    regions = np.minimum(((angle + np.pi) / (2 * np.pi) * 6).astype(np.int64), 5)
    roi = bfs_spirals(faces[0], v0.shape[0], roi_length, allowed=regions, dilation=2)
    jreg = np.zeros((21, v0.shape[0]), dtype=np.float32)
    for j in range(21):
        jreg[j, rng.choice(v0.shape[0], 3, replace=False)] = 1.0 / 3.0
    return SimpleNamespace(
        vertices=tuple(v.astype(np.float32) for v in verts),
        faces=tuple(faces),
        spirals=tuple(spirals),
        up=tuple(ups),
        down=(),
        regions=regions,
        roi_spirals=roi,
        joint_regressor=jreg,
    )


def tiny_model_config(**overrides):
    """A ModelConfig small enough for CPU tests (64x64 input, a ResNet-18 a quarter as wide,
    narrow decoder, 3 levels)."""
    from m3dhmr.models import ModelConfig

    base = dict(
        backbone_width=16,
        input_size=64,
        stack_channels=16,
        stack2_channels=(16, 16, 32),
        latent_channels=16,
        decoder_channels=(8, 8, 16),
        levels=3,
        dsc_kernels=4,
        spiral_length=7,
        roi_spiral_length=5,
    )
    base.update(overrides)
    return ModelConfig(**base)
