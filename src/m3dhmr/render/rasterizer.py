"""CPU z-buffer rasteriser for triangle meshes seen by a pinhole camera.

Why our own: the wheel-only options do not fit. pyrender / moderngl / vispy need an
OpenGL context (EGL or OSMesa system libraries, a display, or a GPU driver), which is
the install failure users of hand-mesh projects report most; pytorch3d and nvdiffrast
ship no CPU wheels for current torch (they compile from source); open3d's offscreen
renderer also needs EGL/OSMesa and is a 400 MB wheel. A triangle rasteriser is ~80
lines with numba, renders a 224 x 224 hand in well under a millisecond and needs no
context at all.

Conventions (see :mod:`m3dhmr.conventions`): camera-space vertices, OpenCV pinhole
``K``, pixel centres at integer coordinates. A pixel is covered when its centre lies
inside (or on an edge of) the projected triangle; the nearest covering triangle wins
(ties keep the lower face index, so results are deterministic).

Near plane: triangles with any vertex at ``z <= near`` are skipped, not clipped. For
the hand renders of this package (the whole hand is 0.2 m across, in front of the
camera) no triangle ever comes near the plane; a partly-behind triangle would need
clipping to be exact, so it is dropped rather than drawn wrong.

Backfaces: meshes open at the wrist (MANO, the open hand) show their inside through
the opening, so by default both sides are rendered. ``cull_backfaces=True`` (closed
meshes) drops triangles whose outward normal (right-handed winding) points away
from the camera; this is decided in 3D, ``dot(n, centroid) >= 0``, not from the 2D
winding (which the y-down image axis flips).

Triangles partly outside the image are clipped to it by their pixel bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit
from m3dhmr.errors import InputError
from m3dhmr.mesh.validate import mesh_arrays


@dataclass(frozen=True)
class Fragments:
    """Per-pixel rasterisation result for an image of ``(H, W)`` pixels.

    face_index: (H, W) int32, the visible face, -1 where no face covers the pixel.
    bary: (H, W, 3) float32 perspective-correct barycentric weights of that face's
        three vertices (zero outside the mask).
    depth: (H, W) float32 camera-space z of the visible surface, ``inf`` outside.
    mask: (H, W) bool, ``face_index >= 0``.
    """

    face_index: np.ndarray
    bary: np.ndarray
    depth: np.ndarray
    mask: np.ndarray


@njit(cache=True, nogil=True, inline="always")
def face_normal_at(vertices, a, b, c):  # pragma: no cover - jitted
    """Unnormalised outward normal ``(b - a) x (c - a)`` of one triangle, as (nx, ny, nz): the
    scalar form, for compiled loops, of :func:`m3dhmr.geometry.mesh_normals.face_normals`."""
    e1x = vertices[b, 0] - vertices[a, 0]
    e1y = vertices[b, 1] - vertices[a, 1]
    e1z = vertices[b, 2] - vertices[a, 2]
    e2x = vertices[c, 0] - vertices[a, 0]
    e2y = vertices[c, 1] - vertices[a, 1]
    e2z = vertices[c, 2] - vertices[a, 2]
    return e1y * e2z - e1z * e2y, e1z * e2x - e1x * e2z, e1x * e2y - e1y * e2x


@njit(cache=True, nogil=True, inline="always")
def interpolate3(values, faces, f, bary, y, x):  # pragma: no cover - jitted
    """A per-vertex attribute ``values`` (V, 3) at pixel (y, x) covered by face ``f``, as
    (a, b, c): ``sum_k bary[y, x, k] * values[faces[f, k]]`` summed in corner order (the
    compiled shaders' and skin material's interpolation, for their per-pixel loops)."""
    a = b = c = 0.0
    for k in range(3):
        v = faces[f, k]
        w = bary[y, x, k]
        a += w * values[v, 0]
        b += w * values[v, 1]
        c += w * values[v, 2]
    return a, b, c


@njit(cache=True, nogil=True, inline="always")
def interpolate1(values, faces, f, bary, y, x):  # pragma: no cover - jitted
    """A per-vertex scalar ``values`` (V,) at pixel (y, x) covered by face ``f``: the one-channel
    twin of :func:`interpolate3`."""
    a = 0.0
    for k in range(3):
        a += bary[y, x, k] * values[faces[f, k]]
    return a


@njit(cache=True, nogil=True, error_model="numpy")
def _raster_kernel(vertices, faces, K, near, cull, height, width, face_index, bary, zbuf):  # pragma: no cover - jitted
    # Projection, near-plane and backface tests are done here too: the numpy version of
    # those few (V,)- and (F,)-sized steps cost more than the rasterisation itself.
    nv = vertices.shape[0]
    px = np.empty(nv)
    py = np.empty(nv)
    iz = np.empty(nv)
    for i in range(nv):
        z = vertices[i, 2]
        zs = z if z > near else 1.0  # skipped vertices: placeholder depth, never used
        iz[i] = 1.0 / zs
        px[i] = (K[0, 0] * vertices[i, 0] + K[0, 1] * vertices[i, 1]) * iz[i] + K[0, 2]
        py[i] = K[1, 1] * vertices[i, 1] * iz[i] + K[1, 2]
    for f in range(faces.shape[0]):
        a = faces[f, 0]
        b = faces[f, 1]
        c = faces[f, 2]
        if vertices[a, 2] <= near or vertices[b, 2] <= near or vertices[c, 2] <= near:
            continue
        if cull:
            # Back face: outward normal (b - a) x (c - a) points away from the camera,
            # i.e. dot(n, centroid) >= 0 (decided in 3D, not from the 2D winding).
            nx, ny, nz = face_normal_at(vertices, a, b, c)
            d = (nx * (vertices[a, 0] + vertices[b, 0] + vertices[c, 0])
                 + ny * (vertices[a, 1] + vertices[b, 1] + vertices[c, 1])
                 + nz * (vertices[a, 2] + vertices[b, 2] + vertices[c, 2]))
            if d >= 0.0:
                continue
        x0, y0, x1, y1, x2, y2 = px[a], py[a], px[b], py[b], px[c], py[c]
        area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
        if abs(area) < 1e-12:
            continue
        inv_area = 1.0 / area
        xmin = max(int(np.ceil(min(x0, x1, x2))), 0)
        xmax = min(int(np.floor(max(x0, x1, x2))), width - 1)
        ymin = max(int(np.ceil(min(y0, y1, y2))), 0)
        ymax = min(int(np.floor(max(y0, y1, y2))), height - 1)
        iz0 = iz[a]
        iz1 = iz[b]
        iz2 = iz[c]
        for y in range(ymin, ymax + 1):
            for x in range(xmin, xmax + 1):
                # Screen-space barycentrics (signed areas), sign-normalised by area.
                w0 = ((x1 - x) * (y2 - y) - (y1 - y) * (x2 - x)) * inv_area
                w1 = ((x2 - x) * (y0 - y) - (y2 - y) * (x0 - x)) * inv_area
                w2 = 1.0 - w0 - w1
                if w0 < 0.0 or w1 < 0.0 or w2 < 0.0:
                    continue
                # 1/z is affine in screen space: exact depth and perspective-correct weights.
                izp = w0 * iz0 + w1 * iz1 + w2 * iz2
                d = 1.0 / izp
                if d < zbuf[y, x]:
                    zbuf[y, x] = d
                    face_index[y, x] = f
                    bary[y, x, 0] = w0 * iz0 * d
                    bary[y, x, 1] = w1 * iz1 * d
                    bary[y, x, 2] = w2 * iz2 * d


def _check_inputs(vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, height: int, width: int):
    vertices, faces = mesh_arrays(vertices, faces)
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise InputError(f"K must have shape (3, 3), got {K.shape}")
    if not np.all(np.isfinite(vertices)):
        raise InputError("vertices contain NaN or inf")
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(f"K must be finite with positive focal lengths, got fx={K[0, 0]}, fy={K[1, 1]}")
    if int(height) < 1 or int(width) < 1:
        raise InputError(f"image size must be positive, got height={height}, width={width}")
    return vertices, np.ascontiguousarray(faces), np.ascontiguousarray(K)


def rasterize(
    vertices: np.ndarray,
    faces: np.ndarray,
    K: np.ndarray,
    height: int,
    width: int,
    cull_backfaces: bool = False,
    near: float = 1e-3,
) -> Fragments:
    """Rasterise a camera-space mesh.

    vertices: (V, 3) camera space (metres, z forward); faces: (F, 3) integer;
    K: (3, 3) pinhole intrinsics; ``height``/``width`` in pixels.
    Returns :class:`Fragments` with (H, W) maps. See the module docstring for the
    near-plane and backface rules.
    """
    vertices, faces, K = _check_inputs(vertices, faces, K, height, width)
    height, width = int(height), int(width)
    face_index = np.full((height, width), -1, dtype=np.int32)
    bary = np.zeros((height, width, 3), dtype=np.float32)
    zbuf = np.full((height, width), np.inf, dtype=np.float32)
    if len(faces):
        _raster_kernel(vertices, faces, K, float(near), bool(cull_backfaces), height, width, face_index, bary, zbuf)
    return Fragments(face_index=face_index, bary=bary, depth=zbuf, mask=face_index >= 0)
