"""Shading of rasterised meshes: per-vertex normals and colours, ambient + Lambert +
Blinn-Phong specular, one directional light, and the one-call :func:`render_mesh`.

The light is directional and given in camera space as the unit direction *from the
surface towards the light* (OpenCV axes: x right, y down, z forward, so a light
behind the camera shining at the scene has a negative z component). Normals are
interpolated per pixel (Phong shading) and flipped towards the viewer when
``two_sided`` (open meshes show their inside through the opening).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from m3dhmr.render.rasterizer import Fragments, face_normal_at, rasterize


@dataclass(frozen=True)
class LightSettings:
    """One directional light plus ambient light.

    direction: (3,) camera space, surface -> light (normalised when used).
    ambient, diffuse, specular: weights of the three terms; shininess: Blinn-Phong exponent.
    color: (3,) RGB of the light (scales diffuse and specular).
    """

    direction: tuple[float, float, float] = (0.3, -0.5, -1.0)
    ambient: float = 0.35
    diffuse: float = 0.7
    specular: float = 0.15
    shininess: float = 16.0
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if len(self.direction) != 3 or not np.isfinite(self.direction).all() or np.linalg.norm(self.direction) == 0:
            raise ValueError(f"light direction must be a finite non-zero 3-vector, got {self.direction}")
        for name in ("ambient", "diffuse", "specular", "shininess"):
            v = getattr(self, name)
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"light {name} must be finite and >= 0, got {v}")


@dataclass(frozen=True)
class RenderResult:
    """rgb: (H, W, 3) float32 in [0, 1] (background where nothing is drawn);
    mask: (H, W) bool; depth: (H, W) float32 camera z, ``inf`` outside the mask;
    fragments: the rasteriser output the image was shaded from."""

    rgb: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    fragments: Fragments = field(repr=False)

    def rgb_uint8(self) -> np.ndarray:
        """(H, W, 3) uint8 version of :attr:`rgb`."""
        return to_uint8(self.rgb)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) float in [0, 1] -> uint8 (rounded, clipped)."""
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@njit(cache=True, nogil=True, error_model="numpy")
def _vertex_normals_kernel(vertices, faces, out):  # pragma: no cover - jitted
    out[:] = 0.0
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        nx, ny, nz = face_normal_at(vertices, a, b, c)
        for v in (a, b, c):
            out[v, 0] += nx
            out[v, 1] += ny
            out[v, 2] += nz
    for v in range(out.shape[0]):
        n = np.sqrt(out[v, 0] ** 2 + out[v, 1] ** 2 + out[v, 2] ** 2)
        if n > 0.0:
            out[v, 0] /= n
            out[v, 1] /= n
            out[v, 2] /= n


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals: vertices (V, 3), faces (F, 3) -> (V, 3) float64.

    The face normal ``(b - a) x (c - a)`` has length 2 * area, so summing them weights by
    area. Vertices used by no face (or only degenerate faces) get a zero normal.
    """
    vertices = np.ascontiguousarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape (V, 3), got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"faces must be an integer array of shape (F, 3), got {faces.dtype} {faces.shape}")
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"faces index vertices outside 0..{len(vertices) - 1}")
    out = np.empty_like(vertices)
    _vertex_normals_kernel(vertices, np.ascontiguousarray(faces, dtype=np.int64), out)
    return out


def _vertex_colors(colors, num_vertices: int) -> np.ndarray:
    if colors is None:
        return np.full((num_vertices, 3), 0.8)
    colors = np.asarray(colors, dtype=np.float64)
    if colors.shape == (3,):
        return np.ascontiguousarray(np.broadcast_to(colors, (num_vertices, 3)))
    if colors.shape != (num_vertices, 3):
        raise ValueError(f"colors must have shape (3,) or (V, 3) = ({num_vertices}, 3), got {colors.shape}")
    return colors


@njit(cache=True, nogil=True, error_model="numpy")
def _shade_kernel(face_index, bary, vertices, faces, normals, albedo, light, two_sided, alpha, out):  # pragma: no cover
    # light = (lx, ly, lz, ambient, diffuse, specular, shininess, r, g, b), direction unit.
    lx, ly, lz = light[0], light[1], light[2]
    ambient, diffuse, specular, shininess = light[3], light[4], light[5], light[6]
    for y in range(face_index.shape[0]):
        for x in range(face_index.shape[1]):
            f = face_index[y, x]
            if f < 0:
                continue
            nx = ny = nz = px = py = pz = 0.0
            cr = cg = cb = 0.0
            for k in range(3):
                v = faces[f, k]
                w = bary[y, x, k]
                nx += w * normals[v, 0]
                ny += w * normals[v, 1]
                nz += w * normals[v, 2]
                px += w * vertices[v, 0]
                py += w * vertices[v, 1]
                pz += w * vertices[v, 2]
                cr += w * albedo[v, 0]
                cg += w * albedo[v, 1]
                cb += w * albedo[v, 2]
            nn = np.sqrt(nx * nx + ny * ny + nz * nz) + 1e-12
            nx, ny, nz = nx / nn, ny / nn, nz / nn
            pn = np.sqrt(px * px + py * py + pz * pz) + 1e-12
            vx, vy, vz = -px / pn, -py / pn, -pz / pn  # towards the camera centre
            if two_sided and nx * vx + ny * vy + nz * vz < 0.0:
                nx, ny, nz = -nx, -ny, -nz
            lam = max(nx * lx + ny * ly + nz * lz, 0.0)
            spec = 0.0
            if lam > 0.0 and specular > 0.0:  # no highlight on the side away from the light
                hx, hy, hz = lx + vx, ly + vy, lz + vz
                hn = np.sqrt(hx * hx + hy * hy + hz * hz) + 1e-12
                nh = (nx * hx + ny * hy + nz * hz) / hn
                if nh > 0.0:
                    spec = specular * np.exp(shininess * np.log(nh))
            r = min(max(cr * (ambient + diffuse * lam * light[7]) + spec * light[7], 0.0), 1.0)
            g = min(max(cg * (ambient + diffuse * lam * light[8]) + spec * light[8], 0.0), 1.0)
            b = min(max(cb * (ambient + diffuse * lam * light[9]) + spec * light[9], 0.0), 1.0)
            if alpha == 1.0:
                out[y, x, 0] = r
                out[y, x, 1] = g
                out[y, x, 2] = b
            else:
                out[y, x, 0] = alpha * r + (1.0 - alpha) * out[y, x, 0]
                out[y, x, 1] = alpha * g + (1.0 - alpha) * out[y, x, 1]
                out[y, x, 2] = alpha * b + (1.0 - alpha) * out[y, x, 2]


def shade(
    fragments: Fragments,
    vertices: np.ndarray,
    faces: np.ndarray,
    colors: np.ndarray | None = None,
    light: LightSettings = LightSettings(),
    normals: np.ndarray | None = None,
    two_sided: bool = True,
    out: np.ndarray | None = None,
    alpha: float = 1.0,
) -> np.ndarray:
    """Shade the covered pixels of ``fragments`` into an image.

    vertices: (V, 3) camera space; faces: (F, 3); colors: (V, 3) or (3,) albedo in
    [0, 1] (default light grey); normals: (V, 3) unit vertex normals (computed when
    None); out: (H, W, 3) float32 image drawn over in place (default black);
    alpha: opacity of the mesh. Returns the (H, W, 3) float32 image, values in [0, 1]
    where covered: ``albedo * (ambient + diffuse * max(n.l, 0)) + specular * max(n.h, 0)^shininess``.
    """
    vertices = np.ascontiguousarray(vertices, dtype=np.float64)
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    albedo = _vertex_colors(colors, len(vertices))
    if normals is None:
        normals = vertex_normals(vertices, faces)
    elif np.shape(normals) != vertices.shape:
        raise ValueError(f"normals must have shape {vertices.shape}, got {np.shape(normals)}")
    height, width = fragments.face_index.shape
    if out is None:
        out = np.zeros((height, width, 3), dtype=np.float32)
    elif out.shape != (height, width, 3) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape ({height}, {width}, 3), got {out.dtype} {out.shape}")
    l_dir = np.asarray(light.direction, dtype=np.float64)
    l_dir = l_dir / np.linalg.norm(l_dir)
    params = np.array([*l_dir, light.ambient, light.diffuse, light.specular, light.shininess, *light.color])
    _shade_kernel(fragments.face_index, fragments.bary, vertices, faces, np.asarray(normals, dtype=np.float64),
                  albedo, params, bool(two_sided), float(alpha), out)
    return out


def _as_size(size) -> tuple[int, int]:
    if np.isscalar(size):
        return int(size), int(size)
    if len(size) != 2:
        raise ValueError(f"size must be an int or (height, width), got {size}")
    return int(size[0]), int(size[1])


def render_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    K: np.ndarray,
    size: int | tuple[int, int],
    colors: np.ndarray | None = None,
    light: LightSettings = LightSettings(),
    background: np.ndarray | None = None,
    cull_backfaces: bool = False,
    alpha: float = 1.0,
    normals: np.ndarray | None = None,
) -> RenderResult:
    """Rasterise and shade a camera-space mesh, optionally over an image.

    vertices: (V, 3) camera space; faces: (F, 3); K: (3, 3); size: S or (H, W);
    colors: (V, 3) or (3,) albedo in [0, 1]; background: (H, W, 3) uint8 or float in
    [0, 1] (default black), e.g. the input image for a prediction overlay;
    alpha: opacity of the mesh over the background; normals: (V, 3) unit vertex
    normals (computed when None). Both sides are shaded unless
    ``cull_backfaces`` (closed meshes).
    """
    height, width = _as_size(size)
    frags = rasterize(vertices, faces, K, height, width, cull_backfaces=cull_backfaces)
    if background is None:
        rgb = np.zeros((height, width, 3), dtype=np.float32)
    else:
        background = np.asarray(background)
        if background.shape != (height, width, 3):
            raise ValueError(f"background must have shape ({height}, {width}, 3), got {background.shape}")
        rgb = (background.astype(np.float32) / 255.0 if background.dtype == np.uint8
               else background.astype(np.float32, copy=True))
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    shade(frags, vertices, faces, colors, light, normals=normals, two_sided=not cull_backfaces, out=rgb, alpha=alpha)
    return RenderResult(rgb=rgb, mask=frags.mask, depth=frags.depth, fragments=frags)
