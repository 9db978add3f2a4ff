"""Validation of triangle meshes: every later step (spirals, decimation, regions) assumes
an edge-manifold, consistently oriented triangle mesh, so problems are caught here with
a message that names them instead of surfacing as a wrong spiral much later.
"""

from __future__ import annotations

import logging

import numpy as np
from m3dhmr.errors import InputError

log = logging.getLogger(__name__)


class MeshError(InputError):
    """A mesh is not a valid edge-manifold, consistently oriented triangle mesh."""


def vertex_array(vertices: np.ndarray, name: str | None = None, nonempty: bool = False) -> np.ndarray:
    """``vertices`` as a C-contiguous float64 ``(V, 3)`` array (no copy when it is one), or
    a one-line :class:`InputError` (``name``, when given, starts the message).

    ``nonempty``: refuse ``V == 0`` too. Values are not checked (callers that need finite
    coordinates say so in their own words).
    """
    v = np.ascontiguousarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or (nonempty and v.shape[0] == 0):
        more = " with V > 0" if nonempty else ""
        raise InputError(f"{_prefix(name)}vertices must have shape (V, 3){more}, got {v.shape}")
    return v


def face_array(faces: np.ndarray, num_vertices: int | None = None, name: str | None = None) -> np.ndarray:
    """``faces`` as an int64 ``(F, 3)`` array, or a one-line :class:`InputError`: not
    integers, not triangles, or (with ``num_vertices``) an index outside ``0..V-1``."""
    f = np.asarray(faces)
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise InputError(f"{_prefix(name)}faces must be an integer array of shape (F, 3), got {f.dtype} {f.shape}")
    if num_vertices is not None and f.size and (f.min() < 0 or f.max() >= num_vertices):
        raise InputError(f"{_prefix(name)}faces index vertices outside 0..{num_vertices - 1}")
    return f.astype(np.int64, copy=False)


def mesh_arrays(vertices: np.ndarray, faces: np.ndarray, name: str | None = None,
                nonempty: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """:func:`vertex_array` and :func:`face_array` (indices checked against V) of one mesh:
    ``(V, 3)`` float64, ``(F, 3)`` int64. The cheap checks every mesh function needs;
    :func:`check_triangle_mesh` is the full one (manifold, orientation, ...)."""
    v = vertex_array(vertices, name, nonempty)
    return v, face_array(faces, len(v), name)


def _prefix(name: str | None) -> str:
    return f"{name}: " if name else ""


def _examples(rows: np.ndarray, n: int = 3) -> str:
    return ", ".join(str(r.tolist()) for r in rows[:n])


def check_triangle_mesh(vertices: np.ndarray, faces: np.ndarray, name: str = "mesh",
                        unreferenced: str = "error") -> None:
    """Raise :class:`MeshError` unless ``(vertices, faces)`` is a usable triangle mesh.

    Args:
        vertices: (V, 3) finite coordinates.
        faces: (F, 3) integer vertex indices, counter-clockwise seen from outside.
        name: what to call the mesh in error messages (e.g. a file name).
        unreferenced: ``"error"`` (default), ``"warn"`` or ``"ignore"`` for vertices no
            face uses; they have no neighbours, so spirals through them are meaningless.

    Checks, in order: shapes and dtypes, empty mesh, NaN/inf coordinates, indices out of
    range, degenerate faces (a repeated vertex), duplicate faces (same vertex set),
    non-manifold edges (an edge in more than two faces), inconsistent orientation (two
    faces traversing a shared edge in the same direction), unreferenced vertices.
    Open boundaries (edges in one face) are allowed: MANO is open at the wrist.
    """
    if unreferenced not in ("error", "warn", "ignore"):
        raise InputError(f"unreferenced must be 'error', 'warn' or 'ignore', got {unreferenced!r}")
    v = np.asarray(vertices)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise MeshError(f"{name}: vertices must have shape (V, 3), got {v.shape}")
    if f.ndim != 2 or (f.shape[1] != 3 and f.size > 0):
        raise MeshError(f"{name}: non-triangle faces: faces must have shape (F, 3), got {f.shape}")
    if v.shape[0] == 0 or f.shape[0] == 0:
        raise MeshError(f"{name}: empty mesh ({v.shape[0]} vertices, {f.shape[0]} faces)")
    if not np.issubdtype(v.dtype, np.number) or np.issubdtype(v.dtype, np.complexfloating):
        raise MeshError(f"{name}: vertices must be real numbers, got dtype {v.dtype}")
    if not np.issubdtype(f.dtype, np.integer):
        raise MeshError(f"{name}: faces must be integer indices, got dtype {f.dtype}")
    bad = ~np.isfinite(v).all(axis=1)
    if bad.any():
        idx = np.flatnonzero(bad)
        raise MeshError(f"{name}: {idx.size} vertices have NaN/inf coordinates (first: {idx[:5].tolist()})")
    nv = v.shape[0]
    out = (f < 0) | (f >= nv)
    if out.any():
        rows = np.flatnonzero(out.any(axis=1))
        raise MeshError(f"{name}: {rows.size} faces have vertex indices out of range 0..{nv - 1} "
                        f"(e.g. face {rows[0]} = {f[rows[0]].tolist()})")
    f = f.astype(np.int64)
    degenerate = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2])
    if degenerate.any():
        rows = np.flatnonzero(degenerate)
        raise MeshError(f"{name}: {rows.size} degenerate faces with a repeated vertex "
                        f"(e.g. face {rows[0]} = {f[rows[0]].tolist()})")
    sorted_faces = np.sort(f, axis=1)
    uniq, counts = np.unique(sorted_faces, axis=0, return_counts=True)
    if (counts > 1).any():
        raise MeshError(f"{name}: {(counts > 1).sum()} duplicate faces (same three vertices), "
                        f"e.g. {_examples(uniq[counts > 1])}")
    # Half-edges a->b of every face; an undirected edge may carry at most two faces, and
    # consistent orientation means its two faces traverse it in opposite directions.
    half = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    und = np.sort(half, axis=1)
    uedges, ucounts = np.unique(und, axis=0, return_counts=True)
    if (ucounts > 2).any():
        raise MeshError(f"{name}: {(ucounts > 2).sum()} non-manifold edges shared by more than two faces, "
                        f"e.g. {_examples(uedges[ucounts > 2])}")
    hedges, hcounts = np.unique(half, axis=0, return_counts=True)
    if (hcounts > 1).any():
        raise MeshError(f"{name}: inconsistent face orientation: {(hcounts > 1).sum()} edges are traversed "
                        f"in the same direction by both of their faces, e.g. {_examples(hedges[hcounts > 1])}")
    used = np.zeros(nv, dtype=bool)
    used[f.ravel()] = True
    if not used.all() and unreferenced != "ignore":
        idx = np.flatnonzero(~used)
        msg = f"{name}: {idx.size} unreferenced vertices not used by any face (first: {idx[:5].tolist()})"
        if unreferenced == "error":
            raise MeshError(msg)
        log.warning(msg)
