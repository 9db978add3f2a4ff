"""Spiral sequences (SpiralNet++, the paper's eq. 3), optionally restricted to vertex sets.

A spiral of vertex ``v`` is ``v``, then its 1-ring, 2-ring, ... each ring listed in one
rotational direction (counter-clockwise seen from outside, from the face winding), cut
to ``length * dilation`` and then every ``dilation``-th element kept.

Ring ``k+1`` is built by walking ring ``k`` in order; for each of its vertices ``u`` the
not-yet-visited neighbours are appended in ``u``'s rotational order, starting just after
an already visited neighbour. On a regular patch this continues the spiral around the
centre in the same direction as ring 1.

Fallback when the rings run out (a tiny mesh or region, fewer than ``length * dilation``
vertices reachable from ``v`` inside its set): the sequence found so far (centre first,
then the rings) is repeated cyclically. It is deterministic and never adds a vertex from
outside the set, because rings only ever step along edges inside the set.
"""

from __future__ import annotations

import numpy as np

from m3dhmr.errors import InputError
from m3dhmr.mesh.adjacency import ordered_one_rings
from m3dhmr.mesh.validate import face_array


def _partition(allowed: np.ndarray | None, num_vertices: int) -> np.ndarray | None:
    """``allowed`` (mask or index array) -> labels (V,) int64 with 1 inside, 0 outside."""
    if allowed is None:
        return None
    a = np.asarray(allowed)
    if a.dtype == bool:
        if a.shape != (num_vertices,):
            raise InputError(f"allowed mask must have shape ({num_vertices},), got {a.shape}")
        return a.astype(np.int64)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise InputError(f"allowed must be a (V,) bool mask or a 1-D integer index array, got "
                         f"dtype {a.dtype} shape {a.shape}")
    if a.size and (a.min() < 0 or a.max() >= num_vertices):
        raise InputError(f"allowed indices must lie in 0..{num_vertices - 1}")
    labels = np.zeros(num_vertices, dtype=np.int64)
    labels[a] = 1
    return labels


def _check(faces: np.ndarray, num_vertices: int, length: int, dilation: int) -> np.ndarray:
    if num_vertices < 1:
        raise InputError(f"num_vertices must be >= 1, got {num_vertices}")
    f = face_array(faces, num_vertices)
    if length < 1 or dilation < 1:
        raise InputError(f"spiral length and dilation must be >= 1, got length={length}, dilation={dilation}")
    return f


def spiral_indices(faces: np.ndarray, num_vertices: int, length: int, dilation: int = 1,
                   allowed: np.ndarray | None = None) -> np.ndarray:
    """Spiral sequence of every vertex.

    Args:
        faces: (F, 3) int, consistently oriented (see :func:`check_triangle_mesh`).
        num_vertices: V.
        length: S, entries per spiral (the vertex itself included).
        dilation: d; a spiral of length ``S * d`` is built and every d-th entry kept.
        allowed: optional (V,) bool mask or index array. Rings then move only along edges
            between allowed vertices, so an allowed vertex's spiral never leaves the set;
            a vertex outside it gets a spiral that stays in the complement (the mask
            splits the mesh into two sets and no spiral crosses between them).

    Returns:
        (V, S) int64; row ``v`` starts with ``v``.
    """
    f = _check(faces, num_vertices, length, dilation)
    return _spirals(f, num_vertices, length, dilation, _partition(allowed, num_vertices))


def region_spiral_indices(faces: np.ndarray, labels: np.ndarray, length: int,
                          dilation: int = 1) -> np.ndarray:
    """Spirals that never leave their vertex's region (the ROI layer's spirals).

    Args:
        faces: (F, 3) int.
        labels: (V,) int region label per vertex.
        length, dilation: as in :func:`spiral_indices`.

    Returns:
        (V, S) int64; every entry of row ``v`` has label ``labels[v]``.
    """
    lab = np.asarray(labels)
    if lab.ndim != 1 or not np.issubdtype(lab.dtype, np.integer):
        raise InputError(f"labels must be a 1-D integer array (V,), got dtype {lab.dtype} shape {lab.shape}")
    f = _check(faces, lab.shape[0], length, dilation)
    return _spirals(f, lab.shape[0], length, dilation, lab.astype(np.int64))


def _spirals(faces: np.ndarray, num_vertices: int, length: int, dilation: int,
             labels: np.ndarray | None) -> np.ndarray:
    one = ordered_one_rings(faces, num_vertices)
    rings = list(one.neighbours)
    if labels is not None:
        lab = labels.tolist()
        # Keep each ring's rotational order, drop neighbours from other sets.
        rings = [[u for u in r if lab[u] == lab[v]] for v, r in enumerate(rings)]
    closed = one.closed.tolist()
    n = length * dilation
    out = np.empty((num_vertices, n), dtype=np.int64)
    for v in range(num_vertices):
        out[v] = _one_spiral(v, rings, closed, n)
    return out[:, ::dilation].copy()


def _one_spiral(v: int, rings: list[list[int]], closed: list[bool], n: int) -> list[int]:
    seq = [v]
    visited = {v}
    ring = [u for u in rings[v] if u not in visited]
    visited.update(ring)
    seq.extend(ring)
    while len(seq) < n and ring:
        new: list[int] = []
        for u in ring:
            nb = rings[u]
            k = len(nb)
            start = 0
            if closed[u] and k:
                # Start just after a visited neighbour so the arc of new vertices (which
                # lies between u's predecessor and successor in the ring) stays in one piece.
                for i in range(k):
                    if nb[i] in visited and nb[(i + 1) % k] not in visited:
                        start = (i + 1) % k
                        break
            for j in range(k):
                w = nb[(start + j) % k]
                if w not in visited:
                    visited.add(w)
                    new.append(w)
        seq.extend(new)
        ring = new
    if len(seq) < n:
        reps = -(-n // len(seq))
        seq = seq * reps
    return seq[:n]
