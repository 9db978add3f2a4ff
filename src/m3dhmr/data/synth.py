"""Synthetic training and evaluation data in FreiHAND's exact on-disk layout.

Each sample: a random shape and natural pose from the hand model's sampler, a random
global rotation (mostly palm or back towards the camera, as in FreiHAND, sometimes any
rotation), a pinhole camera (focal 400-700 px at 224 px, principal point within a few
pixels of the centre), the hand placed so that its 2D box fills 40-70 % of the image
near the centre, a skin tone with per-vertex texture noise, one directional light
(ambient + Lambert + Blinn-Phong), a background (procedural texture or a recoloured
crop of a photo from the scikit-image wheel), random occluding shapes, blur, noise
and JPEG compression. Right hands only, like FreiHAND.

Written files (``{split}`` = ``training`` / ``evaluation``)::

    training/rgb/%08d.jpg, training/mask/%08d.jpg, evaluation/rgb/%08d.jpg
    {split}_K.json, {split}_xyz.json, {split}_verts.json, {split}_scale.json  (FreiHAND's)
    {split}_params.json   per sample: pose (48, global part zero), shape, global_rotation
                          (axis-angle), translation, focal, light, skin tone, background, ...
                          camera space = global_rotation @ (model vertices - model wrist) + translation
    template.ply, j_reg.npy, regions.npy    the template the set was made with
    synth_info.json                         seed, counts, size, version, template name (written last)

Masks are the hand's *visible* silhouette: pixels covered by an occluding shape are
excluded (FreiHAND's masks are the hand's silhouette too). Evaluation has no masks,
as in FreiHAND.

Determinism: sample ``i`` of split ``s`` draws everything from its own generator,
``np.random.SeedSequence([seed, s, i])``; hands are posed in batches of the fixed
:data:`CHUNK` indices, whatever the number of workers, so the same seed gives
byte-identical annotation JSONs and images for any ``--workers``.

Speed (issue 4; goal: FreiHAND's 32,560 training samples in < 5 min on 2 cores): the
hand is rendered only inside its projected box (:func:`render_hand_box`); compositing,
occluders, blur and noise work on the uint8 image with OpenCV and small numba kernels;
backgrounds are one ``warpAffine`` + one ``cv2.transform`` from a per-process photo
pyramid; the vertex JSON is formatted by a numba kernel; hands are posed 32 at a time;
every worker uses one thread and inherits the compiled kernels from the parent (fork).
``benchmarks/synth_speed.py`` measures it.

Completeness: a run first writes ``.synth_in_progress`` and deletes any previous
annotation JSONs and ``synth_info.json``; images are written as they are made; the
annotation JSONs are streamed into hidden temporary files and renamed into place only
after every image exists; ``synth_info.json`` is written last and the in-progress
marker removed. A killed or failed run therefore leaves no annotation JSON (which the
loader requires) and no ``synth_info.json``; the marker lets the next run recognise the
folder as ours and replace it.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import shutil
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numba import njit

from m3dhmr.conventions import SCALE_BONE
from m3dhmr.data.backgrounds import _photo_pyramids, procedural_background, random_background
from m3dhmr.fileio import atomic_path, atomic_write_json
from m3dhmr.render.shading import LightSettings, RenderResult, render_mesh, vertex_normals

log = logging.getLogger(__name__)

SYNTH_VERSION = 2  # 2: faster compositing (uint8, OpenCV), lighter skin tones, brighter light
#: Samples posed together; fixed so that batching never depends on the worker count.
CHUNK = 32
SPLITS: tuple[tuple[str, int], ...] = (("training", 0), ("evaluation", 1))
ANNOTATION_KEYS: tuple[str, ...] = ("K", "xyz", "verts", "scale", "params")
INFO_FILE = "synth_info.json"
IN_PROGRESS = ".synth_in_progress"
TEMPLATE_FILES = ("template.ply", "j_reg.npy", "regions.npy")
MIN_SIZE = 64

#: Skin albedos (sRGB, 0-1) from light to dark; a sample interpolates between neighbours
#: (see :func:`_skin`: lighter tones are drawn somewhat more often, every tone occurs).
SKIN_TONES = np.array([
    [0.98, 0.84, 0.75], [0.95, 0.78, 0.67], [0.91, 0.72, 0.60], [0.84, 0.64, 0.51],
    [0.74, 0.54, 0.41], [0.60, 0.42, 0.31], [0.46, 0.31, 0.23], [0.33, 0.22, 0.16],
])


@dataclass(frozen=True)
class SynthConfig:
    """Sampling ranges of the synthetic set (pixel quantities are for a 224 image and
    scale with ``size``)."""

    size: int = 224
    focal_range: tuple[float, float] = (400.0, 700.0)
    principal_jitter: float = 3.0
    fill_range: tuple[float, float] = (0.4, 0.7)   # larger side of the hand box / image side
    center_jitter: float = 0.08                     # box centre offset, fraction of the image
    frontal_prob: float = 0.85                      # else a uniformly random rotation
    tilt_std_deg: float = 30.0
    photo_prob: float = 0.6
    occluder_prob: float = 0.3
    max_occluded_fraction: float = 0.4
    blur_prob: float = 0.5
    noise_prob: float = 0.5
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.size < MIN_SIZE:
            raise ValueError(f"size must be at least {MIN_SIZE} pixels, got {self.size}")
        for name in ("focal_range", "fill_range"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must satisfy 0 < low <= high, got {(lo, hi)}")
        if self.fill_range[1] / 2 + self.center_jitter >= 0.5:
            raise ValueError("fill_range[1] / 2 + center_jitter must stay below 0.5 (hand inside the image)")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")


@dataclass
class RenderedSample:
    """One sample before encoding: rgb (H, W, 3) uint8 RGB; mask (H, W) bool (visible hand);
    K (3, 3); xyz (21, 3) and verts (V, 3) camera space, metres; params (JSON-ready dict)."""

    rgb: np.ndarray
    mask: np.ndarray
    K: np.ndarray
    xyz: np.ndarray
    verts: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)


def sample_rng(seed: int, split_id: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` of split ``split_id`` (0 training, 1 evaluation)."""
    return np.random.default_rng(np.random.SeedSequence([seed, split_id, index]))


# --------------------------------------------------------------------------- geometry


def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def rotation_to_axis_angle(R: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix -> (3,) axis-angle vector (radians, angle in [0, pi]).

    Closed form through the unit quaternion, taking its largest component first
    (Shepperd's method: stable at every angle, including 0 and pi); ~20x cheaper than
    ``scipy.spatial.transform.Rotation.from_matrix(R).as_rotvec()``, which it matches.
    """
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3):
        raise ValueError(f"R must have shape (3, 3), got {R.shape}")
    tr = R[0, 0] + R[1, 1] + R[2, 2]
    k = int(np.argmax((R[0, 0], R[1, 1], R[2, 2], tr)))
    if k == 3:
        w, x, y, z = 1 + tr, R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]
    else:
        i, j, m = k, (k + 1) % 3, (k + 2) % 3
        q = np.empty(3)
        q[i] = 1 + 2 * R[i, i] - tr
        q[j] = R[j, i] + R[i, j]
        q[m] = R[m, i] + R[i, m]
        w, (x, y, z) = R[m, j] - R[j, m], q
    v = np.array([x, y, z])
    if w < 0:  # the quaternion with w >= 0 gives the angle in [0, pi]
        w, v = -w, -v
    n = math.sqrt(w * w + v @ v)
    w, v = w / n, v / n
    s_half = math.sqrt(float(v @ v))
    angle = 2.0 * math.atan2(s_half, w)
    # angle / sin(angle / 2) -> 2 as the angle -> 0 (series avoids 0 / 0).
    scale = angle / s_half if s_half > 1e-8 else 2.0 + angle * angle / 12.0
    return v * scale


def hand_frame(joints: np.ndarray) -> np.ndarray:
    """(21, 3) right-hand joints -> (3, 3) rotation whose columns are (thumb-ward,
    wrist->middle finger, palm normal pointing out of the palm)."""
    up = joints[9] - joints[0]
    up /= np.linalg.norm(up)
    across = joints[5] - joints[17]  # little -> index knuckle: thumb-ward
    palm = np.cross(across, up)
    palm /= np.linalg.norm(palm)
    side = np.cross(up, palm)
    return np.stack([side, up, palm], axis=1)


def canonical_rotations(rest_joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotations (model -> camera) showing the palm, resp. the back, to the camera with
    the fingers pointing up the image (camera -y)."""
    E = hand_frame(rest_joints)
    # Targets of (thumb-ward, finger, palm normal): palm towards the camera means the
    # palm normal is -z; fingers up is -y; then thumb-ward = up x palm.
    out = []
    for palm_z in (-1.0, 1.0):
        up, palm = np.array([0.0, -1.0, 0.0]), np.array([0.0, 0.0, palm_z])
        T = np.stack([np.cross(up, palm), up, palm], axis=1)
        out.append(T @ E.T)
    return out[0], out[1]


# --------------------------------------------------------------------------- hand context


class _HandContext:
    """The hand model and per-template constants, built once per process."""

    def __init__(self) -> None:
        import torch

        from m3dhmr.hand import load_open_hand

        self.model = load_open_hand()
        self.model.eval()
        self.template = self.model.template
        self.num_shape = int(self.model.num_shape)
        self.dtype = next(iter(self.model.buffers()), torch.zeros((), dtype=torch.float32)).dtype
        self.faces = np.ascontiguousarray(np.asarray(self.template.faces, dtype=np.int64))
        rest_v, rest_j = self.pose(np.zeros((1, 48)), np.zeros((1, self.num_shape)))
        self.rest_vertices, self.rest_joints = rest_v[0], rest_j[0]
        self.palm_R, self.back_R = canonical_rotations(self.rest_joints)
        # Palm-side skin is lighter: weight = how much the rest-pose normal faces the palm.
        palm_normal = hand_frame(self.rest_joints)[:, 2]
        n = vertex_normals(self.rest_vertices, self.faces)
        self.palm_weight = np.clip(n @ palm_normal, 0.0, 1.0)

    def pose(self, poses: np.ndarray, shapes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """poses (B, 48), shapes (B, num_shape) -> vertices (B, V, 3), joints (B, 21, 3) float64."""
        import torch

        with torch.no_grad():
            out = self.model(torch.as_tensor(poses, dtype=self.dtype), torch.as_tensor(shapes, dtype=self.dtype))
        return out.vertices.double().numpy(), out.joints.double().numpy()


# --------------------------------------------------------------------------- one sample


def _draw_geometry(ctx: _HandContext, cfg: SynthConfig, rng: np.random.Generator) -> dict[str, Any]:
    from m3dhmr.hand import sample_poses, sample_shapes

    pose = np.asarray(sample_poses(1, rng), dtype=np.float64)[0]
    shape = np.asarray(sample_shapes(1, rng), dtype=np.float64)[0]
    if rng.random() < cfg.frontal_prob:
        base = ctx.palm_R if rng.random() < 0.5 else ctx.back_R
        inplane = rng.uniform(-np.pi, np.pi) if rng.random() < 0.5 else rng.normal(0.0, np.radians(45))
        tilt = np.radians(cfg.tilt_std_deg)
        R = _rot_z(inplane) @ _rot_x(rng.normal(0.0, tilt)) @ _rot_y(rng.normal(0.0, tilt)) @ base
    else:
        R = _random_rotation(rng)
    s = cfg.size / 224.0
    focal = rng.uniform(*cfg.focal_range) * s
    c0 = (cfg.size - 1) / 2.0
    cx, cy = c0 + rng.uniform(-1, 1, 2) * cfg.principal_jitter * s
    fill = rng.uniform(*cfg.fill_range)
    centre = c0 + rng.uniform(-1, 1, 2) * cfg.center_jitter * cfg.size
    K = np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])
    return dict(pose=pose, shape=shape, R=R, K=K, fill=fill, centre=centre)


@njit(cache=True, nogil=True, error_model="numpy")
def _projected_box(v, tx, ty, tz):  # pragma: no cover - jitted
    """(4,) min x, min y, max x, max y of the normalised projections (x + tx, y + ty) / (z + tz)
    of v (V, 3): one pass instead of six (V,)-sized numpy temporaries."""
    out = np.array([np.inf, np.inf, -np.inf, -np.inf])
    for i in range(v.shape[0]):
        iz = 1.0 / (v[i, 2] + tz)
        x = (v[i, 0] + tx) * iz
        y = (v[i, 1] + ty) * iz
        out[0] = min(out[0], x)
        out[1] = min(out[1], y)
        out[2] = max(out[2], x)
        out[3] = max(out[3], y)
    return out


def _place(verts_rr: np.ndarray, K: np.ndarray, fill: float, centre: np.ndarray, size: int) -> np.ndarray:
    """Translation putting root-relative camera-oriented vertices (V, 3) so that their 2D
    box has larger side ``fill * size`` and centre ``centre`` (2,)."""
    f = float(K[0, 0])
    c = K[:2, 2]
    verts_rr = np.ascontiguousarray(verts_rr, dtype=np.float64)
    lo, hi = verts_rr[:, :2].min(0), verts_rr[:, :2].max(0)
    mid = (lo + hi) / 2
    target = fill * size
    z = f * float((hi - lo).max()) / target  # weak-perspective first guess

    def box(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo_hi = _projected_box(verts_rr, t[0], t[1], t[2])
        return lo_hi[:2] * f + c, lo_hi[2:] * f + c

    for _ in range(2):  # refine with the true projection (near-perspective: converges fast)
        t = np.array([*((centre - c) * z / f - mid), z])
        blo, bhi = box(t)
        z *= float((bhi - blo).max()) / target
    t = np.array([*((centre - c) * z / f - mid), z])
    # Re-centre the projected box exactly (shifting x/y does not change the size much).
    blo, bhi = box(t)
    t[:2] += (centre - (blo + bhi) / 2) * z / f
    return t


def _skin(ctx: _HandContext, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-vertex albedo (V, 3) and the base tone (3,)."""
    # u ** 1.4 puts ~60 % of the samples in the lighter half of SKIN_TONES (FreiHAND's
    # subjects are mostly light-skinned) while the darkest tones keep ~1 in 8.
    t = rng.random() ** 1.4 * (len(SKIN_TONES) - 1)
    i = min(int(t), len(SKIN_TONES) - 2)
    tone = SKIN_TONES[i] * (1 - (t - i)) + SKIN_TONES[i + 1] * (t - i)
    # Brightness jitter, and a smaller per-channel one (3 % per channel turned pale tones yellow).
    tone = np.clip(tone * rng.normal(1.0, 0.04) * rng.normal(1.0, 0.015, 3), 0, 1)
    rest = ctx.rest_vertices
    # Low-frequency blotches (sum of random plane waves over the rest shape) + fine noise.
    k = rng.normal(0.0, 60.0, (3, 3))  # rad/m
    phase = rng.uniform(0, 2 * np.pi, 3)
    blotch = np.sin(rest @ k.T + phase).sum(1) / 3.0
    shade = 1.0 + rng.uniform(0.02, 0.08) * blotch + rng.normal(0.0, 0.025, len(rest))
    palm = ctx.palm_weight[:, None] * np.array([0.10, 0.05, 0.05]) * rng.uniform(0.5, 1.5)
    albedo = np.clip(tone[None] * shade[:, None] * (1 + palm), 0, 1)
    return albedo, tone


def _light(rng: np.random.Generator) -> LightSettings:
    """Mostly frontal key light and a strong ambient term: ambient + diffuse * n.l is ~0.8-1.2
    on the side facing the camera, ~1.0 on average (the former 0.4-0.6 ambient with any direction left most
    hands dim and brownish: the shading is applied to sRGB albedo, without gamma)."""
    d = np.array([rng.uniform(-0.8, 0.8), rng.uniform(-0.9, 0.3), -rng.uniform(0.6, 1.5)])
    warm = rng.normal(0.0, 0.04)
    return LightSettings(
        direction=tuple(float(x) for x in d / np.linalg.norm(d)),
        ambient=float(rng.uniform(0.6, 0.75)),
        diffuse=float(rng.uniform(0.35, 0.55)),
        specular=float(rng.uniform(0.03, 0.15)),
        shininess=float(rng.uniform(5, 30)),
        color=(float(1 + warm), 1.0, float(1 - warm)),
    )


def _bbox(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """(rows, cols) slices of the box of a (H, W) uint8/bool mask grown by ``margin``, or None."""
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8) if mask.dtype == bool else mask)
    if w == 0:
        return None
    H, W = mask.shape
    return slice(max(y - margin, 0), min(y + h + margin, H)), slice(max(x - margin, 0), min(x + w + margin, W))


@njit(cache=True, nogil=True, error_model="numpy")
def _blend_kernel(img, alpha, colour, premultiplied):  # pragma: no cover - jitted
    for y in range(img.shape[0]):
        for x in range(img.shape[1]):
            a = alpha[y, x]
            if a <= 0.0:
                continue
            for c in range(3):
                col = colour[y, x, c] if premultiplied else a * colour[y, x, c]
                v = img[y, x, c] * (1.0 - a) + col + 0.5
                img[y, x, c] = np.uint8(min(v, 255.0))  # v >= 0.5: truncation rounds


def _blend(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray, premultiplied: bool = False) -> None:
    """img (h, w, 3) uint8 <- round(img * (1 - alpha) + alpha * colour) in place;
    alpha (h, w) float32 in [0, 1]; colour (3,) or (h, w, 3) float32, 0-255, already
    multiplied by alpha when ``premultiplied``. Pixels with alpha 0 are not touched."""
    colour = np.asarray(colour, dtype=np.float32)
    if colour.ndim == 1:
        colour = np.broadcast_to(colour, img.shape)
    _blend_kernel(img, np.asarray(alpha, dtype=np.float32), colour, bool(premultiplied))


def _occlude(rng: np.random.Generator, cfg: SynthConfig, img: np.ndarray, hand: np.ndarray) -> tuple[np.ndarray, int]:
    """Draw 0-2 shapes over ``img`` (H, W, 3) uint8 near the hand; returns the (H, W) uint8
    occluder coverage (0-255, anti-aliased) and the number of shapes drawn."""
    size = img.shape[0]
    cover = np.zeros((size, size), np.uint8)
    if rng.random() >= cfg.occluder_prob:
        return cover, 0
    ys, xs = np.nonzero(hand)
    box = max(np.ptp(ys), np.ptp(xs), 1) if len(ys) else size // 2
    hand_px = max(len(ys), 1)
    drawn = 0
    for _ in range(int(rng.integers(1, 3))):
        j = int(rng.integers(len(ys))) if len(ys) else 0
        cx = (xs[j] if len(xs) else size // 2) + rng.normal(0, 0.15 * box)
        cy = (ys[j] if len(ys) else size // 2) + rng.normal(0, 0.15 * box)
        r = rng.uniform(0.1, 0.3) * box
        layer = np.zeros((size, size), np.uint8)
        centre = (int(round(cx * 16)), int(round(cy * 16)))  # 4 fractional bits for sub-pixel shapes
        if rng.random() < 0.5:
            axes = (int(r * 16), int(r * rng.uniform(0.3, 1.0) * 16))
            cv2.ellipse(layer, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_AA, 4)
        else:
            n = int(rng.integers(3, 7))
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            rad = r * rng.uniform(0.5, 1.0, n)
            pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
            cv2.fillPoly(layer, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
        textured = rng.random() < 0.5
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        # Texture only as large as the shape's box (a full-size one was most of the cost).
        region = _bbox(layer, 0)
        tex = None
        if textured:
            side = 2 if region is None else max(region[0].stop - region[0].start, region[1].stop - region[1].start, 2)
            tex = procedural_background(rng, max(side, 2))[0]
        covered = ((np.maximum(cover, layer) >= 128) & hand).sum() / hand_px
        if covered > cfg.max_occluded_fraction or region is None:
            continue  # would hide too much of the hand (or is off-image); the draws above are still consumed
        ry, rx = region
        a = layer[ry, rx].astype(np.float32) * np.float32(1 / 255)
        fill = colour if tex is None else tex[: ry.stop - ry.start, : rx.stop - rx.start].astype(np.float32)
        _blend(img[ry, rx], a, fill)
        np.maximum(cover, layer, out=cover)
        drawn += 1
    return cover, drawn


def render_hand_box(v_cam: np.ndarray, faces: np.ndarray, K: np.ndarray, size: int, albedo: np.ndarray,
                    light: LightSettings) -> tuple[RenderResult | None, tuple[slice, slice]]:
    """Render a camera-space mesh v_cam (V, 3) only inside the box of its projected vertices
    grown by 2 px (clipped to the (size, size) image); returns the render of that box (None
    when the box is empty) and the box's (rows, cols) slices.

    Shifting the principal point by the box corner gives the same pixels as a full-image
    render at a fraction of the buffers (the hand covers ~10 % of the image). The 2 px of
    empty border are the reach of the 3x3 anti-aliasing blur of :func:`compose_sample`
    (and make the crop's reflected border irrelevant), so compositing inside the box
    equals compositing the full image.
    """
    uv = v_cam[:, :2] / v_cam[:, 2:] * K[[0, 1], [0, 1]] + K[:2, 2]
    uv[:, 0] += v_cam[:, 1] / v_cam[:, 2] * K[0, 1]  # skew (zero for the synthetic cameras)
    x0, y0 = np.maximum(np.floor(uv.min(0)).astype(int) - 2, 0)
    x1, y1 = np.minimum(np.ceil(uv.max(0)).astype(int) + 3, size)
    box = slice(int(y0), int(max(y1, y0))), slice(int(x0), int(max(x1, x0)))
    if x1 <= x0 or y1 <= y0:
        return None, box
    K_box = np.array(K, dtype=np.float64)
    K_box[0, 2] -= x0
    K_box[1, 2] -= y0
    return render_mesh(v_cam, faces, K_box, (int(y1 - y0), int(x1 - x0)), colors=albedo, light=light), box


def compose_sample(ctx: _HandContext, cfg: SynthConfig, rng: np.random.Generator, geo: dict[str, Any],
                   verts: np.ndarray, joints: np.ndarray) -> RenderedSample:
    """Render and composite one sample. verts (V, 3), joints (21, 3): model output at zero
    global rotation; ``geo`` from :func:`_draw_geometry`; ``rng`` continues the sample's stream.

    Compositing works on the uint8 image with OpenCV (issue 4: the float32/float64
    full-image version cost ~3x more): the anti-aliased hand is blended only inside its
    box, blur is ``cv2.GaussianBlur`` on uint8, noise is ``cv2.randn`` seeded from ``rng``
    (so it stays a function of the sample's seed) added with saturation.
    """
    size = cfg.size
    root = joints[0]
    R, K = geo["R"], geo["K"]
    v_rr = (verts - root) @ R.T
    t = _place(v_rr, K, geo["fill"], geo["centre"], size)
    v_cam = v_rr + t
    xyz = (joints - root) @ R.T + t
    albedo, tone = _skin(ctx, rng)
    light = _light(rng)
    hand = np.zeros((size, size), bool)
    img, bg_name = random_background(rng, size, cfg.photo_prob)
    img = np.array(img, dtype=np.uint8, order="C", copy=True)
    res, box = render_hand_box(v_cam, ctx.faces, K, size, albedo, light)
    if res is not None:
        ry, rx = box
        hand[ry, rx] = res.mask
        # Anti-aliased compositing: blur the premultiplied colour and the alpha with one kernel.
        alpha = cv2.GaussianBlur(res.mask.astype(np.float32), (3, 3), 0.6)
        colour = cv2.GaussianBlur(res.rgb, (3, 3), 0.6)
        colour *= 255.0
        _blend(img[ry, rx], alpha, colour, premultiplied=True)
    cover, n_occ = _occlude(rng, cfg, img, hand)
    blur = float(rng.uniform(0.3, 1.2)) if rng.random() < cfg.blur_prob else 0.0
    if blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    noise = float(rng.uniform(0.005, 0.03)) if rng.random() < cfg.noise_prob else 0.0
    if noise > 0:
        cv2.setRNGSeed(int(rng.integers(2**31 - 1)))
        n = np.empty(img.shape, np.int16)
        cv2.randn(n.reshape(size, -1), 0.0, noise * 255.0)  # one channel view: randn fills channel 0 only
        img = cv2.add(img, n, dtype=cv2.CV_8U)
    mask = hand & (cover < 128)
    params = {
        "pose": geo["pose"].tolist(),
        "shape": geo["shape"].tolist(),
        "global_rotation": rotation_to_axis_angle(R).tolist(),
        "translation": t.tolist(),
        "focal": float(K[0, 0]),
        "fill": float(geo["fill"]),
        "skin_tone": tone.tolist(),
        "light": {"direction": list(light.direction), "ambient": light.ambient, "diffuse": light.diffuse,
                  "specular": light.specular, "shininess": light.shininess, "color": list(light.color)},
        "background": bg_name,
        "occluders": n_occ,
        "occluded_fraction": float(1.0 - mask.sum() / max(hand.sum(), 1)),
        "blur_sigma": blur,
        "noise_sigma": noise,
        "jpeg_quality": cfg.jpeg_quality,
    }
    return RenderedSample(rgb=img, mask=mask, K=K, xyz=xyz, verts=v_cam, params=params)


def render_range(ctx: _HandContext, cfg: SynthConfig, seed: int, split_id: int, start: int,
                 stop: int) -> list[RenderedSample]:
    """Samples ``start..stop-1`` of a split, posed in one batch (stop - start <= CHUNK)."""
    rngs = [sample_rng(seed, split_id, i) for i in range(start, stop)]
    geos = [_draw_geometry(ctx, cfg, r) for r in rngs]
    verts, joints = ctx.pose(np.stack([g["pose"] for g in geos]), np.stack([g["shape"] for g in geos]))
    return [compose_sample(ctx, cfg, r, g, v, j) for r, g, v, j in zip(rngs, geos, verts, joints)]


# --------------------------------------------------------------------------- encoding


@njit(cache=True, nogil=True)
def _rows_kernel(a, out):  # pragma: no cover - jitted
    """Write (N, 3) float64 ``a`` (finite, |a| < 1e12) as ``[[x, y, z], ...]`` with 6
    decimals into the uint8 buffer ``out``; returns the number of bytes written."""
    k = 0
    out[k] = 91  # "["
    k += 1
    digits = np.empty(20, np.uint8)
    for i in range(a.shape[0]):
        if i > 0:
            out[k] = 44  # ","
            out[k + 1] = 32
            k += 2
        out[k] = 91
        k += 1
        for j in range(3):
            if j > 0:
                out[k] = 44
                out[k + 1] = 32
                k += 2
            v = a[i, j]
            q = np.int64(np.rint(abs(v) * 1e6))
            if v < 0 and q > 0:
                out[k] = 45  # "-"
                k += 1
            ip = q // 1000000
            fp = q - ip * 1000000
            nd = 0
            while True:
                digits[nd] = 48 + ip % 10
                ip //= 10
                nd += 1
                if ip == 0:
                    break
            for d in range(nd - 1, -1, -1):
                out[k] = digits[d]
                k += 1
            out[k] = 46  # "."
            for d in range(6, 0, -1):
                out[k + d] = 48 + fp % 10
                fp //= 10
            k += 7
        out[k] = 93  # "]"
        k += 1
    out[k] = 93
    return k + 1


def _rows(a: np.ndarray) -> str:
    """(N, 3) array -> JSON text ``[[x, y, z], ...]`` with 6 decimals (1 micrometre).

    Formatted by a small numba kernel: ~30x faster than ``%``-formatting, which was the
    largest per-sample cost left after the rendering was sped up (issue 4). Values are
    rounded half to even at the 6th decimal like ``np.round(a, 6)``; non-finite or huge
    (>= 1e12) values fall back to ``"%.6f"``.
    """
    a = np.ascontiguousarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"expected an (N, 3) array, got shape {a.shape}")
    if len(a) == 0:
        return "[]"
    if not np.isfinite(a).all() or np.abs(a).max() >= 1e12:  # int64 micrometres
        return "[" + ", ".join(["[%.6f, %.6f, %.6f]"] * len(a)) % tuple(a.ravel().tolist()) + "]"
    buf = np.empty(len(a) * 3 * (1 + 16 + 1 + 6 + 4) + 2, np.uint8)  # worst case per value + brackets
    n = _rows_kernel(a, buf)
    return buf[:n].tobytes().decode("ascii")


def encode_annotations(s: RenderedSample) -> dict[str, str]:
    """JSON text of one sample's entry in each annotation file (keys of ANNOTATION_KEYS)."""
    xyz = np.round(s.xyz, 6)
    i, j = SCALE_BONE
    return {
        "K": _rows(s.K),
        "xyz": _rows(xyz),
        "verts": _rows(s.verts),
        "scale": "%.7f" % float(np.linalg.norm(xyz[i] - xyz[j])),
        "params": json.dumps(s.params, sort_keys=True),
    }


def _encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV failure
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


# --------------------------------------------------------------------------- workers

_STATE: dict[str, Any] = {}


def warm_up() -> None:
    """Compile (or load from numba's disk cache) every jitted kernel of the pipeline on tiny
    inputs. :func:`generate` calls it in the parent before forking, so forked workers
    inherit the compiled code instead of each paying ~1 s to load it."""
    tri = np.array([[-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [0.0, 1.0, 1.0]])
    K = np.array([[2.0, 0.0, 1.5], [0.0, 2.0, 1.5], [0.0, 0.0, 1.0]])
    render_mesh(tri, np.array([[0, 1, 2]]), K, 4, colors=np.full((3, 3), 0.5))
    _rows(tri)
    _projected_box(tri, 0.0, 0.0, 1.0)
    img = np.zeros((4, 4, 3), np.uint8)
    _blend(img, np.ones((4, 4), np.float32), np.ones((4, 4, 3), np.float32), premultiplied=True)
    _blend(img, np.ones((4, 4), np.float32), np.ones(3, np.float32))


def _init_worker(out: str, seed: int, cfg: SynthConfig) -> None:
    import torch

    # One thread per worker: the workers are the parallelism (and OpenCV's / torch's pools
    # would oversubscribe the cores).
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    warm_up()
    _STATE.update(out=Path(out), seed=seed, cfg=cfg, ctx=_HandContext())


def _work(task: tuple[str, int, int, int]) -> tuple[str, int, list[dict[str, str]]]:
    """Render, write the images of, and encode the annotations of one chunk."""
    split, split_id, start, stop = task
    out, cfg = _STATE["out"], _STATE["cfg"]
    samples = render_range(_STATE["ctx"], cfg, _STATE["seed"], split_id, start, stop)
    entries = []
    # Images are written directly, not through fileio's temp-file-and-rename (3x slower per
    # file here): a half-written image can only exist in a set whose annotation JSONs do not
    # exist yet, i.e. one that never looks complete (module docstring).
    for i, s in zip(range(start, stop), samples):
        (out / split / "rgb" / f"{i:08d}.jpg").write_bytes(_encode_jpeg(s.rgb[:, :, ::-1], cfg.jpeg_quality))
        if split == "training":
            (out / split / "mask" / f"{i:08d}.jpg").write_bytes(
                _encode_jpeg(s.mask.astype(np.uint8) * 255, cfg.jpeg_quality))
        entries.append(encode_annotations(s))
    return split, stop - start, entries


# --------------------------------------------------------------------------- the set


def _output_entries(out: Path) -> list[Path]:
    names = [INFO_FILE] + [f"{s}_{k}.json" for s, _ in SPLITS for k in ANNOTATION_KEYS]
    names += [f"{s}_mano.json" for s, _ in SPLITS] + list(TEMPLATE_FILES)
    return [out / n for n in names]


def prepare_output(out: Path, overwrite: bool) -> None:
    """Check ``out`` may be written and remove a previous set's files from it.

    A non-empty folder is replaced only when it is a previous synthetic set (it has
    ``synth_info.json`` or the in-progress marker) or ``overwrite``; only the files of
    the FreiHAND layout, ours and the loader's cache are removed.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        ours = (out / INFO_FILE).is_file() or (out / IN_PROGRESS).is_file()
        if not ours and not overwrite:
            raise ValueError(f"--out {out} is not empty and is not a synthetic set made by m3dhmr synth "
                             f"(no {INFO_FILE}); pass --overwrite to replace its FreiHAND-layout files")
        # Completion markers first, so an interrupted clean never looks complete either.
        for p in _output_entries(out):
            p.unlink(missing_ok=True)
        for p in out.glob(".*.tmp-*"):
            p.unlink(missing_ok=True)
        for d in ("training", "evaluation", ".m3dhmr_cache"):
            shutil.rmtree(out / d, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def _write_template(out: Path, template: Any) -> None:
    from m3dhmr.mesh.io import write_mesh

    write_mesh(out / "template.ply", np.asarray(template.vertices), np.asarray(template.faces))
    for name, arr in (("j_reg.npy", template.joint_regressor), ("regions.npy", template.regions)):
        with atomic_path(out / name) as tmp:
            np.save(tmp, np.asarray(arr))


def generate(out: str | Path, num_train: int, num_eval: int, seed: int = 0, workers: int = 1,
             config: SynthConfig = SynthConfig(), overwrite: bool = False, progress: bool = True,
             start_method: str | None = None) -> Path:
    """Write a synthetic set of ``num_train`` training and ``num_eval`` evaluation samples
    to ``out`` (layout and guarantees in the module docstring); returns ``out``.
    ``start_method``: multiprocessing start method of the workers (default fork where
    available, else spawn)."""
    for name, v in (("--train", num_train), ("--eval", num_eval), ("--seed", seed)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    if num_train + num_eval == 0:
        raise ValueError("--train and --eval are both 0: nothing to generate")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"--workers must be a positive integer, got {workers!r}")
    out = Path(out)
    prepare_output(out, overwrite)
    atomic_write_json(out / IN_PROGRESS, {"seed": int(seed), "train": int(num_train), "eval": int(num_eval)})
    counts = {"training": int(num_train), "evaluation": int(num_eval)}
    for split, _ in SPLITS:
        (out / split / "rgb").mkdir(parents=True, exist_ok=True)
    (out / "training" / "mask").mkdir(parents=True, exist_ok=True)
    tasks = [(split, sid, a, min(a + CHUNK, counts[split])) for split, sid in SPLITS
             for a in range(0, counts[split], CHUNK)]
    workers = min(int(workers), max(len(tasks), 1))
    from tqdm import tqdm

    from m3dhmr.hand import load_template

    template = load_template("open_hand")
    _write_template(out, template)

    with ExitStack() as stack:
        files: dict[tuple[str, str], Any] = {}
        for split, _ in SPLITS:
            for key in ANNOTATION_KEYS:
                tmp = stack.enter_context(atomic_path(out / f"{split}_{key}.json"))
                fh = stack.enter_context(open(tmp, "w", encoding="utf-8"))
                fh.write("[")
                files[split, key] = fh
        written = dict.fromkeys(counts, 0)
        bar = stack.enter_context(tqdm(total=num_train + num_eval, unit="img", disable=not progress,
                                       desc="synth", dynamic_ncols=True))
        if workers == 1:
            import torch

            # The work runs in this process: restore the caller's thread settings afterwards.
            threads = torch.get_num_threads(), cv2.getNumThreads()
            stack.callback(torch.set_num_threads, threads[0])
            stack.callback(cv2.setNumThreads, threads[1])
            stack.callback(_STATE.clear)
            _init_worker(str(out), int(seed), config)
            results = map(_work, tasks)
        else:
            # fork starts workers in milliseconds (spawn re-imports torch: ~30 s per worker on a
            # loaded 2-core machine); the parent has run no torch op here, and workers use one
            # thread, so no OpenMP pool is inherited half-initialised.
            method = start_method or ("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
            if method == "fork":
                # numba kernels and photo pyramids only (no torch op, no thread pool): the
                # forked workers inherit them instead of each loading them again. OpenCV
                # must stay single-threaded here: a forked child of a process whose OpenCV
                # thread pool has started hangs in its first OpenCV call.
                stack.callback(cv2.setNumThreads, cv2.getNumThreads())
                cv2.setNumThreads(1)
                warm_up()
                _photo_pyramids()
            pool = stack.enter_context(multiprocessing.get_context(method).Pool(
                workers, initializer=_init_worker, initargs=(str(out), int(seed), config)))
            results = _watched(pool.imap(_work, tasks, chunksize=1), pool)
        for split, n, entries in results:
            for e in entries:
                sep = ", " if written[split] else ""
                for key in ANNOTATION_KEYS:
                    files[split, key].write(sep + e[key])
                written[split] += 1
            bar.update(n)
        for fh in files.values():
            fh.write("]")
    info = {"version": SYNTH_VERSION, "seed": int(seed), "train": counts["training"], "eval": counts["evaluation"],
            "size": config.size, "template": getattr(template, "name", "open_hand"),
            "num_vertices": int(len(template.vertices)), "config": asdict(config)}
    atomic_write_json(out / INFO_FILE, info, indent=1)
    (out / IN_PROGRESS).unlink(missing_ok=True)
    log.info("wrote %d training and %d evaluation samples to %s", num_train, num_eval, out)
    return out


class WorkerDied(RuntimeError):
    """A synthesis worker process ended without finishing its chunk."""


def _watched(results: Any, pool: Any) -> Any:
    """Yield ``pool.imap`` results in order; raise :class:`WorkerDied` if a worker is lost.

    multiprocessing.Pool quietly replaces a worker the OS killed (out of memory, a crash
    in a native library) and then waits forever for the lost chunk; polling with a
    timeout and comparing the worker pids turns that hang into an error.
    """
    pids = {p.pid for p in pool._pool}  # noqa: SLF001 - Pool exposes no public worker list
    while True:
        try:
            yield results.next(timeout=2.0)
        except StopIteration:
            return
        except multiprocessing.TimeoutError:
            if {p.pid for p in pool._pool} != pids:  # noqa: SLF001
                raise WorkerDied("a synth worker process died (killed by the OS?); nothing was "
                                 "marked complete, rerun to replace the partial set") from None


def is_complete(out: str | Path) -> bool:
    """True when ``out`` holds a finished synthetic set (``synth_info.json`` present, no marker)."""
    out = Path(out)
    return (out / INFO_FILE).is_file() and not (out / IN_PROGRESS).exists()
