"""Shading of rasterised meshes: per-vertex normals and colours, ambient + Lambert +
Blinn-Phong specular, one directional light, and the one-call :func:`render_mesh`.

Optional, richer terms (off by default, so :class:`LightSettings` renders as before):
an :class:`Environment` (order-2 spherical-harmonic environment light plus several
directional lights with wrapped Lambert and Blinn-Phong, shaded in linear light and
written as sRGB), per-vertex ambient occlusion from sphere proxies
(:func:`sphere_occlusion`), and a per-pixel material image (albedo and specular scale,
e.g. procedural skin detail).

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

from m3dhmr.render.rasterizer import Fragments, face_normal_at, interpolate1, interpolate3, rasterize
from m3dhmr.errors import InputError
from m3dhmr.mesh.validate import mesh_arrays


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
            raise InputError(f"light direction must be a finite non-zero 3-vector, got {self.direction}")
        for name in ("ambient", "diffuse", "specular", "shininess"):
            v = getattr(self, name)
            if not np.isfinite(v) or v < 0:
                raise InputError(f"light {name} must be finite and >= 0, got {v}")


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
    The compiled twin of :func:`m3dhmr.geometry.mesh_normals.vertex_normals`, kept for the
    render path: ~15x faster (``benchmarks/kernel_choices.py``), and it sums each vertex's
    faces in face order (the NumPy one goes corner by corner), so the two agree to the last
    bits, not bit for bit; the synthetic sets were rendered with this one.
    """
    vertices, faces = mesh_arrays(vertices, faces)
    out = np.empty_like(vertices)
    _vertex_normals_kernel(vertices, np.ascontiguousarray(faces), out)
    return out


def _vertex_colors(colors, num_vertices: int) -> np.ndarray:
    if colors is None:
        return np.full((num_vertices, 3), 0.8)
    colors = np.asarray(colors, dtype=np.float64)
    if colors.shape == (3,):
        return np.ascontiguousarray(np.broadcast_to(colors, (num_vertices, 3)))
    if colors.shape != (num_vertices, 3):
        raise InputError(f"colors must have shape (3,) or (V, 3) = ({num_vertices}, 3), got {colors.shape}")
    return colors


@njit(cache=True, nogil=True, inline="always")
def _view_frame(normals, vertices, faces, f, bary, y, x, two_sided):  # pragma: no cover - jitted
    """The surface seen at pixel (y, x) of face ``f``: its unit interpolated normal (turned to
    the camera when ``two_sided``) and the unit direction from it towards the camera centre,
    as (nx, ny, nz, vx, vy, vz)."""
    nx, ny, nz = interpolate3(normals, faces, f, bary, y, x)
    px, py, pz = interpolate3(vertices, faces, f, bary, y, x)
    nn = np.sqrt(nx * nx + ny * ny + nz * nz) + 1e-12
    nx, ny, nz = nx / nn, ny / nn, nz / nn
    pn = np.sqrt(px * px + py * py + pz * pz) + 1e-12
    vx, vy, vz = -px / pn, -py / pn, -pz / pn  # towards the camera centre
    if two_sided and nx * vx + ny * vy + nz * vz < 0.0:
        nx, ny, nz = -nx, -ny, -nz
    return nx, ny, nz, vx, vy, vz


@njit(cache=True, nogil=True, inline="always")
def _half_cos(nx, ny, nz, lx, ly, lz, vx, vy, vz):  # pragma: no cover - jitted
    """Blinn-Phong's n.h: the cosine between the unit normal and the half vector of the
    light direction l and the view direction v (both unit)."""
    hx, hy, hz = lx + vx, ly + vy, lz + vz
    hn = np.sqrt(hx * hx + hy * hy + hz * hz) + 1e-12
    return (nx * hx + ny * hy + nz * hz) / hn


@njit(cache=True, nogil=True, inline="always")
def _put(out, y, x, r, g, b, alpha):  # pragma: no cover - jitted
    """Write colour (r, g, b) at pixel (y, x) of ``out``, over what is there with opacity ``alpha``."""
    if alpha == 1.0:
        out[y, x, 0] = r
        out[y, x, 1] = g
        out[y, x, 2] = b
    else:
        out[y, x, 0] = alpha * r + (1.0 - alpha) * out[y, x, 0]
        out[y, x, 1] = alpha * g + (1.0 - alpha) * out[y, x, 1]
        out[y, x, 2] = alpha * b + (1.0 - alpha) * out[y, x, 2]


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
            nx, ny, nz, vx, vy, vz = _view_frame(normals, vertices, faces, f, bary, y, x, two_sided)
            cr, cg, cb = interpolate3(albedo, faces, f, bary, y, x)
            lam = max(nx * lx + ny * ly + nz * lz, 0.0)
            spec = 0.0
            if lam > 0.0 and specular > 0.0:  # no highlight on the side away from the light
                nh = _half_cos(nx, ny, nz, lx, ly, lz, vx, vy, vz)
                if nh > 0.0:
                    spec = specular * np.exp(shininess * np.log(nh))
            r = min(max(cr * (ambient + diffuse * lam * light[7]) + spec * light[7], 0.0), 1.0)
            g = min(max(cg * (ambient + diffuse * lam * light[8]) + spec * light[8], 0.0), 1.0)
            b = min(max(cb * (ambient + diffuse * lam * light[9]) + spec * light[9], 0.0), 1.0)
            _put(out, y, x, r, g, b, alpha)


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
    environment: Environment | None = None,
    occlusion: np.ndarray | None = None,
    material: np.ndarray | None = None,
) -> np.ndarray:
    """Shade the covered pixels of ``fragments`` into an image.

    vertices: (V, 3) camera space; faces: (F, 3); colors: (V, 3) or (3,) albedo in
    [0, 1] (default light grey); normals: (V, 3) unit vertex normals (computed when
    None); out: (H, W, 3) float32 image drawn over in place (default black);
    alpha: opacity of the mesh. Returns the (H, W, 3) float32 image, values in [0, 1]
    where covered: ``albedo * (ambient + diffuse * max(n.l, 0)) + specular * max(n.h, 0)^shininess``.

    With an ``environment`` the richer path replaces ``light``: ``colors`` (sRGB) or
    ``material`` (H, W, 4) float32 (linear albedo and a specular scale per pixel) lit by
    the environment's SH and directional lights, optionally darkened by ``occlusion``
    (V,) in [0, 1] (interpolated per pixel); see :class:`Environment`.
    """
    vertices = np.ascontiguousarray(vertices, dtype=np.float64)
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    albedo = _vertex_colors(colors, len(vertices))
    if normals is None:
        normals = vertex_normals(vertices, faces)
    elif np.shape(normals) != vertices.shape:
        raise InputError(f"normals must have shape {vertices.shape}, got {np.shape(normals)}")
    height, width = fragments.face_index.shape
    if out is None:
        out = np.zeros((height, width, 3), dtype=np.float32)
    elif out.shape != (height, width, 3) or out.dtype != np.float32:
        raise InputError(f"out must be float32 of shape ({height}, {width}, 3), got {out.dtype} {out.shape}")
    if environment is not None:
        _shade_environment(fragments, vertices, faces, albedo, np.asarray(normals, dtype=np.float64), environment,
                           occlusion, material, two_sided, alpha, out)
        return out
    if occlusion is not None or material is not None:
        raise InputError("occlusion and material need an environment (the LightSettings path has neither)")
    l_dir = np.asarray(light.direction, dtype=np.float64)
    l_dir = l_dir / np.linalg.norm(l_dir)
    params = np.array([*l_dir, light.ambient, light.diffuse, light.specular, light.shininess, *light.color])
    _shade_kernel(fragments.face_index, fragments.bary, vertices, faces, np.asarray(normals, dtype=np.float64),
                  albedo, params, bool(two_sided), float(alpha), out)
    return out


# --------------------------------------------------------------------------- environment light

#: Real spherical-harmonic basis constants, order 2 (index l * (l + 1) + m).
_SH_C0, _SH_C1, _SH_C2, _SH_C3, _SH_C4 = 0.282095, 0.488603, 1.092548, 0.315392, 0.546274
#: Lambertian convolution divided by pi (Ramamoorthi & Hanrahan 2001): A_l / pi for l = 0, 1, 2.
SH_LAMBERT = np.array([1.0, 2.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0, 0.25, 0.25, 0.25, 0.25, 0.25])
#: sRGB is approximated by a pure 2.2 power (the exact piecewise curve costs more and
#: makes no visible difference for the synthetic renders).
GAMMA = 2.2


def sh_basis(directions: np.ndarray) -> np.ndarray:
    """Real SH basis up to order 2: unit directions (N, 3) -> (N, 9), columns
    Y00, Y1-1 (y), Y10 (z), Y11 (x), Y2-2 (xy), Y2-1 (yz), Y20, Y21 (xz), Y22."""
    d = np.asarray(directions, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] != 3:
        raise InputError(f"directions must have shape (N, 3), got {d.shape}")
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    return np.stack([np.full_like(x, _SH_C0), _SH_C1 * y, _SH_C1 * z, _SH_C1 * x, _SH_C2 * x * y,
                     _SH_C2 * y * z, _SH_C3 * (3 * z * z - 1), _SH_C2 * x * z, _SH_C4 * (x * x - y * y)], 1)


def sh_diffuse(coeffs: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Diffuse light ``E(n) / pi`` (N, 3) of an environment whose *radiance* has SH
    coefficients ``coeffs`` (9, 3), for unit normals (N, 3): a white Lambertian surface
    under that environment has exactly this radiance (a constant radiance c gives c)."""
    coeffs = np.asarray(coeffs, dtype=np.float64)
    if coeffs.shape != (9, 3):
        raise InputError(f"SH coefficients must have shape (9, 3), got {coeffs.shape}")
    return sh_basis(normals) @ (SH_LAMBERT[:, None] * coeffs)


def sh_project_directional(direction: np.ndarray, color: np.ndarray) -> np.ndarray:
    """(9, 3) SH radiance coefficients of a distant light of irradiance ``color`` (3,)
    arriving from unit ``direction`` (3,) (surface -> light): the delta ``color * Y(d)``."""
    d = np.asarray(direction, dtype=np.float64)
    return sh_basis(d[None] / np.linalg.norm(d))[0][:, None] * np.asarray(color, dtype=np.float64)[None]


@dataclass(frozen=True)
class Environment:
    """Lighting of the richer shading path (camera space, linear light).

    sh: (9, 3) SH coefficients of the environment radiance (see :func:`sh_diffuse`);
    directions: (L, 3) surface -> light, normalised when used; colors: (L, 3) irradiance
    of each directional light; specular: Blinn-Phong weight (times the light colour);
    shininess: exponent; wrap: wrapped Lambert ``max(n.l + wrap, 0) / (1 + wrap)`` (a
    softer terminator, as light scattered under skin gives); exposure: scales the result.
    Colours are converted from sRGB to linear with :data:`GAMMA`, shaded, and converted
    back; occlusion (when given) darkens the environment fully and the directional lights
    by its square root (a soft stand-in for self-shadowing).
    """

    # Default: a uniform white environment of radiance 1 (L00 = 1 / Y00), i.e. the albedo itself.
    sh: tuple[tuple[float, float, float], ...] = ((3.544908, 3.544908, 3.544908),) + ((0.0, 0.0, 0.0),) * 8
    directions: tuple[tuple[float, float, float], ...] = ()
    colors: tuple[tuple[float, float, float], ...] = ()
    specular: float = 0.0
    shininess: float = 16.0
    wrap: float = 0.0
    exposure: float = 1.0

    def __post_init__(self) -> None:
        sh = np.asarray(self.sh, dtype=np.float64)
        if sh.shape != (9, 3) or not np.isfinite(sh).all():
            raise InputError(f"environment sh must be 9 finite RGB triples, got shape {sh.shape}")
        d, c = np.asarray(self.directions, dtype=np.float64), np.asarray(self.colors, dtype=np.float64)
        if len(d) != len(c) or (len(d) and (d.shape[1:] != (3,) or c.shape[1:] != (3,))):
            raise InputError(f"environment directions and colors must both be (L, 3), got {d.shape} and {c.shape}")
        if len(d) and (not np.isfinite(d).all() or (np.linalg.norm(d, axis=1) == 0).any()):
            raise InputError(f"environment directions must be finite and non-zero, got {self.directions}")
        if len(c) and (not np.isfinite(c).all() or (c < 0).any()):
            raise InputError(f"environment colors must be finite and >= 0, got {self.colors}")
        for name in ("specular", "shininess", "wrap", "exposure"):
            v = getattr(self, name)
            if not np.isfinite(v) or v < 0:
                raise InputError(f"environment {name} must be finite and >= 0, got {v}")

    def packed(self) -> tuple[np.ndarray, np.ndarray]:
        """(9, 3) SH pre-multiplied by the Lambert constants, and (L, 6) unit direction + colour."""
        sh = SH_LAMBERT[:, None] * np.asarray(self.sh, dtype=np.float64)
        d = np.asarray(self.directions, dtype=np.float64).reshape(-1, 3)
        d = d / np.linalg.norm(d, axis=1, keepdims=True) if len(d) else d
        return sh, np.ascontiguousarray(np.concatenate([d, np.asarray(self.colors, np.float64).reshape(-1, 3)], 1))


#: Linear -> sRGB table over sqrt(linear) (see :func:`_env_kernel`).
_SRGB_LUT = (np.arange(1025) / 1024.0) ** (2.0 / GAMMA)


@njit(cache=True, nogil=True, inline="always")
def _to_srgb(x, lut, n):  # pragma: no cover - jitted
    t = np.sqrt(min(max(x, 0.0), 1.0)) * n
    i = min(int(t), n - 1)
    return lut[i] + (t - i) * (lut[i + 1] - lut[i])


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def _env_kernel(face_index, bary, vertices, faces, normals, albedo, material, occlusion, sh, lights, params,
                two_sided, alpha, out, lut):  # pragma: no cover - jitted
    # params = (specular, shininess, wrap, exposure); albedo: (V, 3) *linear*; material:
    # (H, W, 4) linear albedo + specular scale, or (0, 0, 4) to use the per-vertex albedo.
    # Linear -> sRGB through the table lut[i] = (i / n) ** (2 / 2.2) of sqrt(x): smooth
    # in sqrt(x), so linear interpolation is accurate; a pow per channel cost 3x more.
    specular, shininess, wrap, exposure = params[0], params[1], params[2], params[3]
    use_material = material.shape[0] > 0
    use_ao = occlusion.shape[0] > 0
    n_lut = lut.shape[0] - 1
    for y in range(face_index.shape[0]):
        for x in range(face_index.shape[1]):
            f = face_index[y, x]
            if f < 0:
                continue
            nx, ny, nz, vx, vy, vz = _view_frame(normals, vertices, faces, f, bary, y, x, two_sided)
            ao = interpolate1(occlusion, faces, f, bary, y, x) if use_ao else 1.0
            if use_material:
                cr, cg, cb = material[y, x, 0], material[y, x, 1], material[y, x, 2]
                ks = specular * material[y, x, 3]
            else:
                cr, cg, cb = interpolate3(albedo, faces, f, bary, y, x)
                ks = specular
            # Order-2 SH basis at n (same order as sh_basis).
            b1, b2, b3 = 0.488603 * ny, 0.488603 * nz, 0.488603 * nx
            b4, b5 = 1.092548 * nx * ny, 1.092548 * ny * nz
            b6 = 0.315392 * (3.0 * nz * nz - 1.0)
            b7, b8 = 1.092548 * nx * nz, 0.546274 * (nx * nx - ny * ny)
            er = eg = eb = 0.0
            for c in range(3):
                e = (0.282095 * sh[0, c] + b1 * sh[1, c] + b2 * sh[2, c] + b3 * sh[3, c] + b4 * sh[4, c]
                     + b5 * sh[5, c] + b6 * sh[6, c] + b7 * sh[7, c] + b8 * sh[8, c])
                e = max(e, 0.0) * ao
                if c == 0:
                    er = e
                elif c == 1:
                    eg = e
                else:
                    eb = e
            sr = sg = sb = 0.0
            soft = np.sqrt(ao)
            for i in range(lights.shape[0]):
                lx, ly, lz = lights[i, 0], lights[i, 1], lights[i, 2]
                nl = nx * lx + ny * ly + nz * lz
                lam = max(nl + wrap, 0.0) / (1.0 + wrap) * soft
                er += lam * lights[i, 3]
                eg += lam * lights[i, 4]
                eb += lam * lights[i, 5]
                if nl > 0.0 and ks > 0.0:
                    nh = _half_cos(nx, ny, nz, lx, ly, lz, vx, vy, vz)
                    if nh > 0.0:
                        s = ks * np.exp(shininess * np.log(nh)) * soft
                        sr += s * lights[i, 3]
                        sg += s * lights[i, 4]
                        sb += s * lights[i, 5]
            r = _to_srgb(exposure * (cr * er + sr), lut, n_lut)
            g = _to_srgb(exposure * (cg * eg + sg), lut, n_lut)
            b = _to_srgb(exposure * (cb * eb + sb), lut, n_lut)
            _put(out, y, x, r, g, b, alpha)


# --------------------------------------------------------------------------- ambient occlusion


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def _sphere_occlusion_kernel(points, normals, centres, radii, out):  # pragma: no cover - jitted
    for i in range(points.shape[0]):
        keep = 1.0
        for s in range(centres.shape[0]):
            dx = centres[s, 0] - points[i, 0]
            dy = centres[s, 1] - points[i, 1]
            dz = centres[s, 2] - points[i, 2]
            d2 = dx * dx + dy * dy + dz * dz
            r2 = radii[s] * radii[s]
            if d2 <= r2:
                continue  # the point's own (or an overlapping) proxy: below its horizon
            cos = (normals[i, 0] * dx + normals[i, 1] * dy + normals[i, 2] * dz) / np.sqrt(d2)
            if cos > 0.0:
                keep *= 1.0 - min(r2 / d2 * cos, 1.0)
        out[i] = keep


def sphere_occlusion(points: np.ndarray, normals: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Ambient visibility (N,) in [0, 1] of surface points (N, 3) with unit normals (N, 3)
    among occluding spheres centres (S, 3), radii (S,): 1 = open sky, 0 = fully blocked.

    A sphere of radius r whose centre lies at distance d in direction w covers the
    cosine-weighted fraction ``(r / d)^2 * (n.w)`` of the hemisphere around n (exact when
    the sphere is wholly above the horizon); spheres below the horizon or containing the
    point count zero, and the spheres combine as independent blockers,
    ``prod(1 - fraction)``. With a body approximated by spheres along its bones this is a
    cheap per-pose occlusion: a straight finger never shadows itself, a bent one darkens
    the inside of the bend, and neighbouring fingers darken the gaps between them.
    """
    points = np.ascontiguousarray(points, dtype=np.float64)
    normals = np.ascontiguousarray(normals, dtype=np.float64)
    centres = np.ascontiguousarray(centres, dtype=np.float64).reshape(-1, 3)
    radii = np.ascontiguousarray(radii, dtype=np.float64).reshape(-1)
    if points.ndim != 2 or points.shape[1] != 3 or normals.shape != points.shape:
        raise InputError(f"points and normals must both be (N, 3), got {points.shape} and {normals.shape}")
    if len(radii) != len(centres) or (radii < 0).any():
        raise InputError(f"radii must be (S,) = ({len(centres)},) and >= 0, got {radii.shape}")
    out = np.empty(len(points))
    _sphere_occlusion_kernel(points, normals, centres, radii, out)
    return out


def _shade_environment(fragments: Fragments, vertices: np.ndarray, faces: np.ndarray, albedo: np.ndarray,
                       normals: np.ndarray, env: Environment, occlusion: np.ndarray | None,
                       material: np.ndarray | None, two_sided: bool, alpha: float, out: np.ndarray) -> None:
    height, width = fragments.face_index.shape
    if occlusion is None:
        occlusion = np.zeros(0)
    else:
        occlusion = np.ascontiguousarray(occlusion, dtype=np.float64)
        if occlusion.shape != (len(vertices),):
            raise InputError(f"occlusion must have shape ({len(vertices)},), got {occlusion.shape}")
    if material is None:
        material = np.zeros((0, 0, 4), np.float32)
    elif material.shape != (height, width, 4):
        raise InputError(f"material must have shape ({height}, {width}, 4), got {material.shape}")
    sh, lights = env.packed()
    params = np.array([env.specular, env.shininess, env.wrap, env.exposure])
    # Per-vertex sRGB albedo -> linear once per vertex (not per pixel).
    linear = np.ascontiguousarray(albedo ** GAMMA) if material.shape[0] == 0 else albedo
    _env_kernel(fragments.face_index, fragments.bary, vertices, faces, normals, linear,
                np.ascontiguousarray(material, dtype=np.float32), occlusion, sh, lights, params, bool(two_sided),
                float(alpha), out, _SRGB_LUT)


def _as_size(size) -> tuple[int, int]:
    if np.isscalar(size):
        return int(size), int(size)
    if len(size) != 2:
        raise InputError(f"size must be an int or (height, width), got {size}")
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
    environment: Environment | None = None,
    occlusion: np.ndarray | None = None,
) -> RenderResult:
    """Rasterise and shade a camera-space mesh, optionally over an image.

    vertices: (V, 3) camera space; faces: (F, 3); K: (3, 3); size: S or (H, W);
    colors: (V, 3) or (3,) albedo in [0, 1]; background: (H, W, 3) uint8 or float in
    [0, 1] (default black), e.g. the input image for a prediction overlay;
    alpha: opacity of the mesh over the background; normals: (V, 3) unit vertex
    normals (computed when None). Both sides are shaded unless
    ``cull_backfaces`` (closed meshes). ``environment`` / ``occlusion``: the richer
    lighting of :func:`shade` (``light`` is then unused).
    """
    height, width = _as_size(size)
    frags = rasterize(vertices, faces, K, height, width, cull_backfaces=cull_backfaces)
    if background is None:
        rgb = np.zeros((height, width, 3), dtype=np.float32)
    else:
        background = np.asarray(background)
        if background.shape != (height, width, 3):
            raise InputError(f"background must have shape ({height}, {width}, 3), got {background.shape}")
        rgb = (background.astype(np.float32) / 255.0 if background.dtype == np.uint8
               else background.astype(np.float32, copy=True))
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1], got {alpha}")
    shade(frags, vertices, faces, colors, light, normals=normals, two_sided=not cull_backfaces, out=rgb, alpha=alpha,
          environment=environment, occlusion=occlusion)
    return RenderResult(rgb=rgb, mask=frags.mask, depth=frags.depth, fragments=frags)
