"""Vertex adjacency of triangle meshes: edges, boundaries and rotationally ordered 1-rings.

All functions take ``faces (F, 3)`` int64 (counter-clockwise seen from outside) and the
vertex count ``V``; they never look at coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from m3dhmr.mesh.validate import face_array


def _faces(faces: np.ndarray) -> np.ndarray:
    return face_array(faces)


def half_edges(faces: np.ndarray) -> np.ndarray:
    """Directed edges ``a -> b`` of every face, (3F, 2), face ``i``'s at rows ``i, F+i, 2F+i``."""
    f = _faces(faces)
    return np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])


def edges(faces: np.ndarray) -> np.ndarray:
    """Unique undirected edges ``(E, 2)`` int64, each row sorted, rows sorted lexicographically."""
    return np.unique(np.sort(half_edges(faces), axis=1), axis=0)


def boundary_edges(faces: np.ndarray) -> np.ndarray:
    """Edges used by exactly one face, ``(Eb, 2)`` int64 sorted rows (empty for a closed mesh)."""
    und, counts = np.unique(np.sort(half_edges(faces), axis=1), axis=0, return_counts=True)
    return und[counts == 1]


def boundary_vertices(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """Mask ``(V,)`` bool of vertices on an open boundary."""
    mask = np.zeros(num_vertices, dtype=bool)
    mask[boundary_edges(faces).ravel()] = True
    return mask


def vertex_adjacency(faces: np.ndarray, num_vertices: int) -> sp.csr_matrix:
    """Symmetric ``(V, V)`` CSR matrix with 1.0 where two vertices share an edge."""
    e = edges(face_array(faces, num_vertices))
    rows = np.concatenate([e[:, 0], e[:, 1]])
    cols = np.concatenate([e[:, 1], e[:, 0]])
    adj = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(num_vertices, num_vertices))
    adj.sort_indices()
    return adj


@dataclass(frozen=True)
class OneRings:
    """Rotationally ordered 1-rings.

    neighbours[v]: list of v's neighbours, counter-clockwise around v seen from outside
        (the order in which faces wind); an interior vertex's ring starts at its smallest
        neighbour, a boundary vertex's at the end of its fan, so the order is a chain.
    closed: (V,) bool, True where the ring is one closed cycle (interior manifold vertex).
    """

    neighbours: tuple[list[int], ...]
    closed: np.ndarray


def ordered_one_rings(faces: np.ndarray, num_vertices: int) -> OneRings:
    """Each vertex's neighbours in the rotational order given by face winding.

    Face ``(a, b, c)`` says that, going counter-clockwise around ``a``, ``b`` is followed by
    ``c`` (likewise ``c -> a`` around ``b`` and ``a -> b`` around ``c``). Chaining these
    steps gives each ring. Boundary vertices get an open chain from the fan's first to last
    neighbour. A non-manifold (bow-tie) vertex gets its fans one after another, each fan
    starting at its smallest free end. Isolated vertices get an empty ring.
    """
    f = _faces(faces)
    centre = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    frm = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    to = np.concatenate([f[:, 2], f[:, 0], f[:, 1]])
    order = np.lexsort((frm, centre))
    centre, frm, to = centre[order], frm[order], to[order]
    bounds = np.searchsorted(centre, np.arange(num_vertices + 1))
    frm_l, to_l = frm.tolist(), to.tolist()
    rings: list[list[int]] = []
    closed = np.zeros(num_vertices, dtype=bool)
    for v in range(num_vertices):
        lo, hi = int(bounds[v]), int(bounds[v + 1])
        if lo == hi:
            rings.append([])
            continue
        nxt = dict(zip(frm_l[lo:hi], to_l[lo:hi]))
        targets = set(to_l[lo:hi])
        # Fans that start at a boundary come first (sorted), then closed cycles from
        # their smallest vertex: deterministic and independent of face order.
        starts = sorted(n for n in nxt if n not in targets)
        remaining = sorted(set(nxt) | targets)
        ring: list[int] = []
        seen: set[int] = set()
        while True:
            start = next((s for s in starts if s not in seen), None)
            if start is None:
                start = next((s for s in remaining if s not in seen), None)
                if start is None:
                    break
            cur: int | None = start
            while cur is not None and cur not in seen:
                seen.add(cur)
                ring.append(cur)
                cur = nxt.get(cur)
        closed[v] = not starts and len(ring) == len(nxt) and _is_single_cycle(nxt, ring)
        rings.append(ring)
    return OneRings(tuple(rings), closed)


def _is_single_cycle(nxt: dict[int, int], ring: list[int]) -> bool:
    return all(nxt.get(a) == b for a, b in zip(ring, ring[1:] + ring[:1]))
