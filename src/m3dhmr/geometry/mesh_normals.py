"""Normals of triangle meshes: per face (NumPy or torch, batched) and per vertex (NumPy).

Faces are wound counter-clockwise seen from outside (right-hand rule), so the face normal
``(b - a) x (c - a)`` points outwards; its length is twice the triangle's area. A vertex
normal is the sum of its faces' normals (so weighted by area), normalised.

The renderer keeps its own compiled per-vertex loop
(:func:`m3dhmr.render.shading.vertex_normals`): it is ~15x faster on the render path
(``benchmarks/kernel_choices.py``) and sums each vertex's faces in face order, where
:func:`vertex_normals` sums them corner by corner (the order the glTF export and the asset
builder were written with); the two agree to rounding (last bits), not bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch

from m3dhmr.geometry.camera import Array


def face_normals(vertices: Array, faces: Array, unit: bool = False, eps: float = 1e-12) -> Array:
    """Face normals ``(b - a) x (c - a)``.

    Args:
        vertices: (..., V, 3) NumPy array or torch tensor (e.g. (B, V, 3) or (V, 3)).
        faces: (F, 3) integer vertex indices (a torch tensor with torch vertices).
        unit: divide each normal by its length, clamped below at ``eps`` (degenerate faces
            keep a near-zero normal instead of NaN); else the length is twice the area.
    Returns:
        (..., F, 3) of the vertices' type and dtype.
    """
    a = vertices[..., faces[:, 0], :]
    b = vertices[..., faces[:, 1], :]
    c = vertices[..., faces[:, 2], :]
    if isinstance(vertices, torch.Tensor):
        n = torch.linalg.cross(b - a, c - a, dim=-1)
        return n / n.norm(dim=-1, keepdim=True).clamp_min(eps) if unit else n
    n = np.cross(b - a, c - a)
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), eps) if unit else n


def vertex_normals(vertices: np.ndarray, faces: np.ndarray, unit: bool = True, min_length: float = 0.0,
                   fallback: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Area-weighted vertex normals: the sum of the incident faces' :func:`face_normals`.

    Args:
        vertices: (V, 3) NumPy array (its dtype is kept).
        faces: (F, 3) integer vertex indices.
        unit: normalise the sums; else return them (length = twice the incident area,
            for a flat neighbourhood).
        min_length: with ``unit``, sums no longer than this (vertices in no face, or only
            in degenerate ones) get ``fallback`` instead.
    Returns:
        (V, 3).
    """
    fn = face_normals(vertices, faces)                                          # (F, 3)
    n = np.zeros_like(vertices)
    for k in range(3):                                                          # corner by corner
        np.add.at(n, faces[:, k], fn)
    if not unit:
        return n
    length = np.linalg.norm(n, axis=1, keepdims=True)                           # (V, 1)
    ok = length > min_length
    out = np.divide(n, np.maximum(length, min_length), out=np.zeros_like(n), where=ok)
    return np.where(ok, out, np.asarray(fallback, dtype=n.dtype))
