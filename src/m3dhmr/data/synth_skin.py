"""Skin of the synthetic hand: tones from very light to very dark (Fitzpatrick I-VI),
palms lighter than backs, creases at the finger joints and across the palm, nails,
veins and blotches.

The mesh (~900 vertices, edges ~6 mm) is too coarse for creases or nail edges per
vertex, so the detail is evaluated per pixel (:func:`skin_material`): each pixel gets
its rest-frame position and palm-facing measure by barycentric interpolation of
per-vertex values, and the creases (distance to planes across each finger and to
polylines across the palm), nail (a region on the dorsal side of the distal phalanx)
and veins (polylines on the back of the hand) are sharp functions of those. No UV
map is needed. Everything template-specific is computed once (:class:`SkinFields`);
a sample draws a fixed number of values (:func:`sample_skin`).

Colours are sRGB albedos; the material image is linear (``albedo ** 2.2``) for the
environment shading of :mod:`m3dhmr.render.shading`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from m3dhmr import conventions as cv
from m3dhmr.errors import InputError
from m3dhmr.render.rasterizer import interpolate1, interpolate3

#: sRGB skin albedos from Fitzpatrick type I (very light) to VI (very dark); a sample
#: interpolates between neighbours.
SKIN_TONES_V4 = np.array([
    [0.97, 0.85, 0.78], [0.94, 0.78, 0.68], [0.88, 0.69, 0.57], [0.78, 0.58, 0.45],
    [0.66, 0.47, 0.34], [0.52, 0.35, 0.25], [0.38, 0.25, 0.18], [0.27, 0.17, 0.12], [0.19, 0.12, 0.085],
])
#: Palm skin has little melanin: palms move towards this (sRGB), darker tones more.
PALM_TARGET = np.array([0.92, 0.72, 0.62])
NAIL_TARGET = np.array([0.96, 0.80, 0.78])
GAMMA = 2.2
#: Finger kinematic chains (FreiHAND joints): base, middle, distal joint, tip.
_CHAINS = [(4 * f + 1, 4 * f + 2, 4 * f + 3, 4 * f + 4) for f in range(5)]
#: Where the finger creases lie, as a fraction from each finger's first to second joint
#: (the palmar digital crease, near the web), and at the next two joints. The thumb's
#: first bone is the thenar eminence: its creases are the MCP's and the IP's.
_BASE_CREASE = 0.35


@dataclass(frozen=True)
class SkinFields:
    """Template constants for the skin detail (rest frame: +x wrist -> middle finger,
    +y dorsal, +z thumb -> little finger).

    finger: (V,) int64, 0 palm, 1-5 thumb..little (dominant skinning bone);
    palmness: (V,) in [-1, 1], rest normal . the palm-side direction of its bones;
    rest: (V, 3) rest positions; planes: (5, 3, 6) crease planes per finger (point,
    unit normal along the finger); distal: (5, 7) distal phalanx (start, unit direction,
    length); palm_lines: (P, 4) palm-crease segments (x0, z0, x1, z1) in the rest x-z plane.
    """

    finger: np.ndarray
    palmness: np.ndarray
    rest: np.ndarray
    planes: np.ndarray
    distal: np.ndarray
    palm_lines: np.ndarray


def _polyline(points: list[np.ndarray]) -> np.ndarray:
    p = np.asarray(points)
    return np.concatenate([p[:-1], p[1:]], 1)


def skin_fields(rest_vertices: np.ndarray, rest_normals: np.ndarray, rest_joints: np.ndarray,
                skinning_weights: np.ndarray, joint_frames: np.ndarray) -> SkinFields:
    """Skin constants of a template: rest vertices / normals (V, 3), joints (21, 3),
    skinning weights (V, 16) over the kinematic joints, joint frames (16, 3, 3) whose
    columns are the (flexion, abduction, twist) axes."""
    J = np.asarray(rest_joints, dtype=np.float64)
    w = np.asarray(skinning_weights, dtype=np.float64)
    frames = np.asarray(joint_frames, dtype=np.float64)
    if w.shape != (len(rest_vertices), len(cv.KINEMATIC_JOINTS)) or frames.shape != (len(cv.KINEMATIC_JOINTS), 3, 3):
        raise InputError(f"skinning weights must be (V, 16) and frames (16, 3, 3), got {w.shape} and {frames.shape}")
    # Palm side of each bone: positive flexion about the first axis moves the twist axis
    # towards flexion x twist (checked on the open hand: -y for every straight finger).
    palmar = np.cross(frames[:, :, 0], frames[:, :, 2])
    palmar[0] = [0.0, -1.0, 0.0]
    palmar /= np.linalg.norm(palmar, axis=1, keepdims=True)
    pv = w @ palmar
    pv /= np.maximum(np.linalg.norm(pv, axis=1, keepdims=True), 1e-9)
    palmness = np.einsum("vc,vc->v", np.asarray(rest_normals, dtype=np.float64), pv)
    k = w.argmax(1)
    finger = np.where(k == 0, 0, (k - 1) // 3 + 1)
    finger[(k == 1)] = 0   # the thumb's metacarpal is the thenar eminence: palm creases there
    planes = np.zeros((5, 3, 6))
    distal = np.zeros((5, 7))
    for f, (a, b, c, t) in enumerate(_CHAINS):
        def plane(p, d):
            return np.concatenate([p, d / np.linalg.norm(d)])
        if f == 0:
            planes[f, 0] = plane(J[b], J[c] - J[a])
            planes[f, 1] = plane(J[c], J[t] - J[b])
            planes[f, 2] = plane(J[c] + 10.0, J[t] - J[b])  # unused third plane: far away
        else:
            planes[f, 0] = plane(J[a] + _BASE_CREASE * (J[b] - J[a]), J[b] - J[a])
            planes[f, 1] = plane(J[b], J[c] - J[a])
            planes[f, 2] = plane(J[c], J[t] - J[b])
        d = J[t] - J[c]
        distal[f] = np.concatenate([J[c], d / np.linalg.norm(d), [np.linalg.norm(d)]])
    xz = J[:, [0, 2]]
    w0, i5, m9, r13, l17 = xz[0], xz[5], xz[9], xz[13], xz[17]
    radial = np.array([0.0, -0.012])
    ulnar = np.array([0.0, 0.014])
    heart = [l17 + 0.25 * (w0 - l17) + ulnar, 0.5 * (r13 + l17) + 0.22 * (w0 - r13), r13 + 0.22 * (w0 - r13),
             0.5 * (m9 + i5) + 0.15 * (w0 - m9)]
    head = [i5 + 0.32 * (w0 - i5) + radial, m9 + 0.42 * (w0 - m9) + 0.3 * radial, r13 + 0.5 * (w0 - r13),
            l17 + 0.55 * (w0 - l17) + 0.5 * ulnar]
    life = [head[0], i5 + 0.55 * (w0 - i5) + 0.6 * radial, w0 + np.array([0.035, -0.004]),
            w0 + np.array([0.008, 0.004])]
    wrist = [np.array([0.0, -0.022]), np.array([0.0, 0.026])]
    lines = np.concatenate([_polyline(x) for x in (heart, head, life, wrist)])
    return SkinFields(finger=finger.astype(np.int64), palmness=palmness, rest=np.asarray(rest_vertices, np.float64),
                      planes=planes, distal=distal, palm_lines=lines)


@dataclass(frozen=True)
class SkinSample:
    """One sample's skin: tone (3,) sRGB base tone; palm (3,) linear palm / back ratio;
    waves (6, 4) blotch plane waves (kx, ky, kz, phase) with amplitudes in amp (6,);
    params (16,) per-pixel detail parameters (see :func:`skin_material`);
    line_jitter (P, 4) palm-crease offsets (m); veins (Nv, 4) dorsal segments (x0, z0, x1, z1)."""

    tone: np.ndarray
    palm: np.ndarray
    waves: np.ndarray
    amp: np.ndarray
    params: np.ndarray
    line_jitter: np.ndarray
    veins: np.ndarray


def _lum(c: np.ndarray) -> float:
    return float(np.asarray(c) @ [0.299, 0.587, 0.114])


def sample_skin(rng: np.random.Generator, num_palm_lines: int) -> SkinSample:
    """Draw one sample's skin (a fixed number of draws for a given template)."""
    t = rng.random() ** 1.15 * (len(SKIN_TONES_V4) - 1)
    i = min(int(t), len(SKIN_TONES_V4) - 2)
    tone = SKIN_TONES_V4[i] * (1 - (t - i)) + SKIN_TONES_V4[i + 1] * (t - i)
    tone = np.clip(tone * rng.normal(1.0, 0.04) * rng.normal(1.0, 0.015, 3), 0.02, 1.0)
    # Darker skin has markedly lighter palms; light skin's palms are pinker, barely lighter.
    dark = 1.0 - _lum(tone) / _lum(SKIN_TONES_V4[0])
    # (The target never lies below the tone: the palm of the lightest skin is lighter and pinker too.)
    target = np.maximum(PALM_TARGET * rng.uniform(0.9, 1.05), tone * [1.15, 1.1, 1.08])
    palm_srgb = tone + (target - tone) * (0.3 + 0.35 * dark) * rng.uniform(0.7, 1.2)
    palm = np.clip(palm_srgb, 0.02, 1.0) ** GAMMA / tone ** GAMMA
    k = rng.normal(0.0, 1.0, (6, 3)) * np.repeat([60.0, 350.0], 3)[:, None]   # rad/m: blotches, mottling
    waves = np.concatenate([k, rng.uniform(0, 2 * np.pi, (6, 1))], 1)
    amp = np.concatenate([np.full(3, rng.uniform(0.02, 0.07)), np.full(3, rng.uniform(0.01, 0.035))]) / 3 ** 0.5
    nail = np.clip(0.45 * tone + 0.55 * NAIL_TARGET * rng.uniform(0.85, 1.02), 0, 1) ** GAMMA
    vis = 1.0 - 0.7 * dark   # creases and veins show less on dark skin
    params = np.array([
        rng.uniform(0.0006, 0.0012),           # 0 finger crease half-width (m)
        rng.uniform(0.25, 0.5) * vis,          # 1 finger crease depth (palm side)
        rng.uniform(0.2, 0.45) * vis,          # 2 palm crease depth
        rng.uniform(0.08, 0.2) * vis,          # 3 dorsal knuckle wrinkle depth
        rng.uniform(0.0005, 0.001),            # 4 palm crease half-width (m)
        *nail,                                 # 5-7 nail colour (linear)
        rng.uniform(0.35, 0.45),               # 8 nail start along the distal phalanx
        rng.uniform(1.5, 3.0),                 # 9 nail specular scale
        rng.uniform(0.0, 0.12) * vis,          # 10 vein depth
        rng.uniform(0.0012, 0.002),            # 11 vein half-width (m)
        rng.uniform(-0.35, -0.1),              # 12 palmness where the palm tone starts
        rng.uniform(0.0, 0.12),                # 13 crease redness
        rng.uniform(0.15, 0.35),               # 14 palmness where the palm tone is full (offset)
        0.0,
    ])
    line_jitter = rng.normal(0.0, 0.0015, (num_palm_lines, 4))
    veins = np.zeros((6, 4))
    for v in range(3):  # three veins from the wrist fanning towards the knuckle gaps, two segments each
        z0 = rng.uniform(-0.012, 0.022)
        z2 = rng.uniform(-0.015, 0.04)
        x1, z1 = rng.uniform(0.025, 0.045), (z0 + z2) / 2 + rng.normal(0, 0.006)
        veins[2 * v] = [0.0, z0, x1, z1]
        veins[2 * v + 1] = [x1, z1, rng.uniform(0.06, 0.075), z2]
    return SkinSample(tone=tone, palm=palm, waves=waves, amp=amp, params=params, line_jitter=line_jitter,
                      veins=veins)


def vertex_albedo(s: SkinSample, positions: np.ndarray) -> np.ndarray:
    """Per-vertex linear albedo (N, 3) at model-space positions (N, 3): the tone with
    low-frequency blotches and finer mottling (sums of the sample's plane waves)."""
    ph = positions @ s.waves[:, :3].T + s.waves[:, 3]
    shade = 1.0 + np.sin(ph) @ s.amp
    return np.clip(s.tone[None] * shade[:, None], 0.0, 1.0) ** GAMMA


@njit(cache=True, nogil=True, inline="always")
def _seg_dist(px, pz, x0, z0, x1, z1):  # pragma: no cover - jitted
    dx, dz = x1 - x0, z1 - z0
    t = ((px - x0) * dx + (pz - z0) * dz) / (dx * dx + dz * dz + 1e-18)
    t = min(max(t, 0.0), 1.0)
    ex, ez = px - x0 - t * dx, pz - z0 - t * dz
    return np.sqrt(ex * ex + ez * ez)


@njit(cache=True, nogil=True, inline="always")
def _smooth(x, a, b):  # pragma: no cover - jitted
    t = min(max((x - a) / (b - a), 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def _material_kernel(face_index, bary, faces, rest, finger, palmness, albedo, spec, palm, planes, distal, lines,
                     veins, p, out):  # pragma: no cover - jitted
    for y in range(face_index.shape[0]):
        for x in range(face_index.shape[1]):
            f = face_index[y, x]
            if f < 0:
                continue
            qx, qy, qz = interpolate3(rest, faces, f, bary, y, x)
            pm = interpolate1(palmness, faces, f, bary, y, x)
            sp = interpolate1(spec, faces, f, bary, y, x)
            r, g, b = interpolate3(albedo, faces, f, bary, y, x)
            fid = finger[faces[f, 0]]
            if fid >= -1:  # skin (not cloth): palm tone by a sharp gate on the palm-facing measure
                gate = _smooth(pm, p[12], p[12] + p[14])
                r *= 1.0 + gate * (palm[0] - 1.0)
                g *= 1.0 + gate * (palm[1] - 1.0)
                b *= 1.0 + gate * (palm[2] - 1.0)
            dark = 0.0
            if fid >= 1:
                i = fid - 1
                palm_side = _smooth(pm, 0.0, 0.5)
                back_side = _smooth(-pm, 0.2, 0.6)
                for c in range(3):
                    d = ((qx - planes[i, c, 0]) * planes[i, c, 3] + (qy - planes[i, c, 1]) * planes[i, c, 4]
                         + (qz - planes[i, c, 2]) * planes[i, c, 5]) / p[0]
                    band = np.exp(-d * d)
                    dark = max(dark, band * (p[1] * palm_side + p[3] * back_side))
                # Nail: dorsal side of the distal phalanx, from a curved cuticle to near the tip.
                u = ((qx - distal[i, 0]) * distal[i, 3] + (qy - distal[i, 1]) * distal[i, 4]
                     + (qz - distal[i, 2]) * distal[i, 5]) / distal[i, 6]
                top = _smooth(-pm, 0.35, 0.55)
                start = p[8] + 0.25 * (1.0 - _smooth(-pm, 0.5, 0.95))
                nail = top * _smooth(u, start, start + 0.06) * (1.0 - _smooth(u, 0.93, 0.99))
                if nail > 0.0:
                    r += nail * (p[5] - r)
                    g += nail * (p[6] - g)
                    b += nail * (p[7] - b)
                    sp *= 1.0 + nail * (p[9] - 1.0)
            elif fid == 0:
                palm_side = _smooth(pm, 0.2, 0.6)
                if palm_side > 0.0:
                    dmin = 1.0
                    for s in range(lines.shape[0]):
                        dmin = min(dmin, _seg_dist(qx, qz, lines[s, 0], lines[s, 1], lines[s, 2], lines[s, 3]))
                    d = dmin / p[4]
                    dark = np.exp(-d * d) * p[2] * palm_side
                back_side = _smooth(-pm, 0.3, 0.7)
                if back_side > 0.0 and p[10] > 0.0:
                    dmin = 1.0
                    for s in range(veins.shape[0]):
                        dmin = min(dmin, _seg_dist(qx, qz, veins[s, 0], veins[s, 1], veins[s, 2], veins[s, 3]))
                    d = dmin / p[11]
                    vein = np.exp(-d * d) * p[10] * back_side
                    r *= 1.0 - vein
                    g *= 1.0 - 0.8 * vein
                    b *= 1.0 - 0.3 * vein
            if dark > 0.0:
                r *= 1.0 - dark * (1.0 - p[13])
                g *= 1.0 - dark
                b *= 1.0 - dark
            out[y, x, 0] = min(r, 1.0)  # a light palm times a bright blotch may pass 1
            out[y, x, 1] = min(g, 1.0)
            out[y, x, 2] = min(b, 1.0)
            out[y, x, 3] = sp


def skin_material(face_index: np.ndarray, bary: np.ndarray, faces: np.ndarray, rest: np.ndarray,
                  finger: np.ndarray, palmness: np.ndarray, albedo: np.ndarray, spec: np.ndarray,
                  fields: SkinFields, s: SkinSample) -> np.ndarray:
    """Per-pixel linear albedo and specular scale (H, W, 4) float32 of a rasterised mesh.

    face_index (H, W), bary (H, W, 3): the rasteriser's fragments; faces (F, 3) the
    rendered faces; per vertex of the rendered mesh (N of them): rest (N, 3) rest-frame
    position (model space for vertices without one, e.g. the forearm), finger (N,) as
    :attr:`SkinFields.finger`, -1 for skin without detail, -2 for cloth (no palm tone);
    palmness (N,); albedo (N, 3) linear; spec (N,) specular scale. Uncovered pixels are 0.
    """
    h, w = face_index.shape
    out = np.zeros((h, w, 4), np.float32)
    lines = np.ascontiguousarray(fields.palm_lines + s.line_jitter)
    _material_kernel(face_index, bary, np.ascontiguousarray(faces, np.int64), np.ascontiguousarray(rest, np.float64),
                     np.ascontiguousarray(finger, np.int64), np.ascontiguousarray(palmness, np.float64),
                     np.ascontiguousarray(albedo, np.float64), np.ascontiguousarray(spec, np.float64), s.palm,
                     fields.planes, fields.distal, lines, s.veins, s.params, out)
    return out
