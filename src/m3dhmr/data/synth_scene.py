"""One synthetic sample's scene: the sampling ranges, the hand's pose, orientation,
camera and placement, its skin and light (:mod:`m3dhmr.data.synth` writes the sets)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numba import njit

from m3dhmr.data.synth_forearm import wrist_loop
from m3dhmr.data.synth_skin import skin_fields
from m3dhmr.errors import InputError
from m3dhmr.geometry.rotations import random_rotation, rot_x, rot_y, rot_z
from m3dhmr.hand import load_open_hand, sample_poses, sample_shapes
from m3dhmr.hand.open_hand import load_open_hand_asset
from m3dhmr.hand.sampler import sample_natural_pose
from m3dhmr.render.shading import (SH_LAMBERT, Environment, LightSettings, sh_basis, sh_project_directional,
                                   vertex_normals)

#: Smallest image side a set can have.
MIN_SIZE = 64
#: Largest image side: a 2048 px set already takes 84x the memory and time of FreiHAND's 224 px.
MAX_SIZE = 2048

#: Hand shading models of :class:`SynthConfig` (``shading``).
SHADINGS = ("v3", "v4")

#: Version 3's skin albedos (sRGB, 0-1) from light to dark (version 4's, down to very dark
#: skin: :data:`m3dhmr.data.synth_skin.SKIN_TONES_V4`); a sample interpolates between neighbours
#: (see :func:`sample_vertex_skin`: lighter tones are drawn somewhat more often, every tone occurs).
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
    # Photo backgrounds: random crops of the JPEG/PNG photos in this folder (issue 20; fill it
    # with scripts/fetch_backgrounds.py, training only) instead of scikit-image's 16 photos.
    background_dir: str | None = None
    occluder_prob: float = 0.3
    max_occluded_fraction: float = 0.4
    # Pose (version 4): around a real handshape of m3dhmr.hand.handshapes with this probability,
    # else joint by joint (m3dhmr.hand.sampler.sample_poses).
    handshape_prob: float = 0.5
    # Things in the scene (m3dhmr.data.synth_objects): the grips' objects held with this
    # probability; a second, never annotated hand in front of or behind the hand.
    object_prob: float = 0.7
    other_hand_prob: float = 0.15
    # Camera effects (m3dhmr.data.synth_camera), each switched off by its probability 0 (or a
    # neutral range): lens softness (Gaussian), defocus (disc radius, px at 224), motion blur
    # (length, px at 224), sensor noise (shot variance per unit linear intensity, read std),
    # exposure (linear gain) x white balance (std of log red/blue gains) + tone curve (gamma).
    blur_prob: float = 0.3
    defocus_prob: float = 0.2
    defocus_max: float = 3.0
    motion_blur_prob: float = 0.2
    motion_blur_max: float = 10.0
    noise_prob: float = 0.6
    shot_noise_range: tuple[float, float] = (0.0002, 0.004)
    read_noise_range: tuple[float, float] = (0.0005, 0.004)
    color_prob: float = 0.8
    exposure_range: tuple[float, float] = (0.6, 1.5)
    white_balance_std: float = 0.08
    gamma_range: tuple[float, float] = (1.9, 2.5)
    jpeg_quality_range: tuple[int, int] = (40, 95)  # images, drawn per sample
    jpeg_quality: int = 90                          # masks
    # Hand appearance (version 4; each switch off = version 3's, for ablations): a forearm
    # (m3dhmr.data.synth_forearm) with this probability, in a sleeve with sleeve_prob;
    # skin_detail: per-pixel skin (m3dhmr.data.synth_skin: palm tone, creases, nails, veins,
    # Fitzpatrick I-VI tones) instead of one tone with per-vertex noise; shading "v4":
    # SH environment + key/fill lights with specular, in linear light ("v3": one light,
    # ambient + Lambert + Blinn-Phong on sRGB albedo); ao: per-pose ambient occlusion
    # from sphere proxies of the bones (v4 shading only).
    forearm_prob: float = 0.95
    sleeve_prob: float = 0.5
    skin_detail: bool = True
    shading: str = "v4"
    ao: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer)):
            raise InputError(f"size must be a whole number of pixels, got {self.size!r}")
        if not MIN_SIZE <= self.size <= MAX_SIZE:
            which = f"at least {MIN_SIZE}" if self.size < MIN_SIZE else f"at most {MAX_SIZE}"
            raise InputError(f"size must be {which} pixels, got {self.size}")
        for name in ("focal_range", "fill_range"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise InputError(f"{name} must satisfy 0 < low <= high, got {(lo, hi)}")
        if self.fill_range[1] / 2 + self.center_jitter >= 0.5:
            raise InputError("fill_range[1] / 2 + center_jitter must stay below 0.5 (hand inside the image)")
        if not 1 <= self.jpeg_quality <= 100:
            raise InputError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        for name in ("photo_prob", "occluder_prob", "max_occluded_fraction", "frontal_prob", "handshape_prob",
                     "object_prob", "other_hand_prob", "blur_prob", "defocus_prob", "motion_blur_prob",
                     "noise_prob", "color_prob"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise InputError(f"{name} must be a number in [0, 1], got {v!r}")
        for name, low, high in (("shot_noise_range", 0.0, 0.1), ("read_noise_range", 0.0, 0.2),
                                ("exposure_range", 1e-3, 100.0), ("gamma_range", 0.5, 5.0),
                                ("jpeg_quality_range", 1, 100)):
            v = getattr(self, name)
            if len(v) != 2 or not low <= v[0] <= v[1] <= high:
                raise InputError(f"{name} must be (low, high) with {low} <= low <= high <= {high}, got {v!r}")
        if any(isinstance(q, bool) or not isinstance(q, (int, np.integer)) for q in self.jpeg_quality_range):
            raise InputError(f"jpeg_quality_range must hold integers, got {self.jpeg_quality_range!r}")
        for name in ("forearm_prob", "sleeve_prob"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise InputError(f"{name} must be a number in [0, 1], got {v!r}")
        for name in ("skin_detail", "ao"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.background_dir is not None and (not isinstance(self.background_dir, str) or not self.background_dir):
            raise InputError(f"background_dir must be a folder path or null, got {self.background_dir!r}")
        if self.shading not in SHADINGS:
            raise InputError(f"shading must be one of {SHADINGS}, got {self.shading!r}")
        for name in ("defocus_max", "motion_blur_max", "white_balance_std"):
            if not 0.0 <= getattr(self, name) <= 50.0:
                raise InputError(f"{name} must be in [0, 50], got {getattr(self, name)!r}")


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


class HandContext:
    """The hand model and per-template constants, built once per process."""

    def __init__(self) -> None:
        self.model = load_open_hand()
        self.model.eval()
        self.template = self.model.template
        self.num_shape = int(self.model.num_shape)
        # The first floating buffer: the first buffer of all is the integer faces, and
        # casting poses to it truncated every pose and shape value to an integer.
        self.dtype = next(b.dtype for b in self.model.buffers() if b.is_floating_point())
        self.faces = np.ascontiguousarray(np.asarray(self.template.faces, dtype=np.int64))
        rest_v, rest_j = self.pose(np.zeros((1, 48)), np.zeros((1, self.num_shape)))
        self.rest_vertices, self.rest_joints = rest_v[0], rest_j[0]
        self.palm_R, self.back_R = canonical_rotations(self.rest_joints)
        # Palm-side skin is lighter: weight = how much the rest-pose normal faces the palm.
        palm_normal = hand_frame(self.rest_joints)[:, 2]
        n = vertex_normals(self.rest_vertices, self.faces)
        self.palm_weight = np.clip(n @ palm_normal, 0.0, 1.0)
        # Version 4's appearance: the loop the forearm grows from, the skin's per-vertex
        # fields, and the bone radii of the ambient-occlusion proxies.
        asset = load_open_hand_asset().arrays
        self.wrist = wrist_loop(self.rest_vertices, self.faces)
        self.skin = skin_fields(self.rest_vertices, n, self.rest_joints, np.asarray(self.template.skinning_weights),
                                asset["joint_frames"])
        self.radii = np.asarray(asset["radii"], dtype=np.float64)
        self.rest_palm_length = float(np.linalg.norm(self.rest_joints[9] - self.rest_joints[0]))

    def pose(self, poses: np.ndarray, shapes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """poses (B, 48), shapes (B, num_shape) -> vertices (B, V, 3), joints (B, 21, 3) float64."""
        with torch.no_grad():
            out = self.model(torch.as_tensor(poses, dtype=self.dtype), torch.as_tensor(shapes, dtype=self.dtype))
        return out.vertices.double().numpy(), out.joints.double().numpy()


def draw_geometry(ctx: HandContext, cfg: SynthConfig, rng: np.random.Generator) -> dict[str, Any]:
    """Draw one sample's geometry from ``rng`` (the first draws of its stream): pose (48,)
    and shape (num_shape,), rotation R (3, 3) model -> camera, intrinsics K (3, 3), the box
    ``fill`` and ``centre`` (2,) px that :func:`place_hand` fits, ``pose_source`` (handshape
    name or "joints") and ``other``: a second hand's pose and shape, or None."""
    pose, pose_source = sample_natural_pose(rng, cfg.handshape_prob)
    shape = np.asarray(sample_shapes(1, rng), dtype=np.float64)[0]
    if rng.random() < cfg.frontal_prob:
        base = ctx.palm_R if rng.random() < 0.5 else ctx.back_R
        inplane = rng.uniform(-np.pi, np.pi) if rng.random() < 0.5 else rng.normal(0.0, np.radians(45))
        tilt = np.radians(cfg.tilt_std_deg)
        R = rot_z(inplane) @ rot_x(rng.normal(0.0, tilt)) @ rot_y(rng.normal(0.0, tilt)) @ base
    else:
        R = random_rotation(rng)
    s = cfg.size / 224.0
    focal = rng.uniform(*cfg.focal_range) * s
    c0 = (cfg.size - 1) / 2.0
    cx, cy = c0 + rng.uniform(-1, 1, 2) * cfg.principal_jitter * s
    fill = rng.uniform(*cfg.fill_range)
    centre = c0 + rng.uniform(-1, 1, 2) * cfg.center_jitter * cfg.size
    K = np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])
    # A second hand (posed with the sample's batch in render_range, placed in compose_sample).
    other = None
    if rng.random() < cfg.other_hand_prob:
        other = dict(pose=np.asarray(sample_poses(1, rng), dtype=np.float64)[0],
                     shape=np.asarray(sample_shapes(1, rng), dtype=np.float64)[0])
    return dict(pose=pose, shape=shape, R=R, K=K, fill=fill, centre=centre, pose_source=pose_source, other=other)


@njit(cache=True, nogil=True, error_model="numpy")
def projected_box(v, tx, ty, tz):  # pragma: no cover - jitted
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


def place_hand(verts_rr: np.ndarray, K: np.ndarray, fill: float, centre: np.ndarray, size: int) -> np.ndarray:
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
        lo_hi = projected_box(verts_rr, t[0], t[1], t[2])
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


def sample_vertex_skin(ctx: HandContext, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Version 3's skin (``SynthConfig.skin_detail`` off): per-vertex albedo (V, 3) sRGB and the
    base tone (3,), drawn from ``rng``."""
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


def sample_light(rng: np.random.Generator) -> LightSettings:
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


#: Bones (FreiHAND parent joint, child joint) that carry occluder spheres: every finger bone,
#: the thumb's metacarpal included.
_AO_BONES = np.array([(a, a + 1) for f in range(5) for a in range(4 * f + 1, 4 * f + 4)])
_AO_T = np.array([1 / 6, 0.5, 5 / 6])                # 3 spheres per bone: spacing ~ the radius
_AO_PALM_T = np.array([0.3, 0.6, 0.85])              # along wrist -> each finger's base


def occluder_spheres(ctx: HandContext, joints: np.ndarray) -> np.ndarray:
    """(S, 4) sphere proxies (centre, radius) of a posed hand's volume from its joints
    (21, 3): 3 per finger bone with the template's radii, 3 per wrist -> knuckle line for
    the palm (radius = the palm's half thickness), all scaled with the hand's size."""
    k = float(np.linalg.norm(joints[9] - joints[0])) / ctx.rest_palm_length
    a, b = _AO_BONES[:, 0], _AO_BONES[:, 1]
    centres = joints[a][:, None] + _AO_T[None, :, None] * (joints[b] - joints[a])[:, None]
    radii = (ctx.radii[a][:, None] * (1 - _AO_T) + ctx.radii[b][:, None] * _AO_T) * k
    knuckles = joints[[5, 9, 13, 17]]
    palm = joints[0] + _AO_PALM_T[None, :, None] * (knuckles - joints[0])[:, None]
    palm_r = np.full(palm.shape[:2], 0.9 * ctx.radii[0] * k)
    return np.concatenate([np.concatenate([centres.reshape(-1, 3), palm.reshape(-1, 3)]),
                           np.concatenate([radii.ravel(), palm_r.ravel()])[:, None]], 1)


def sample_environment(rng: np.random.Generator) -> Environment:
    """Version 4's lighting: a sky-to-ground gradient from roughly above (camera -y, rolled
    and pitched), warm or cool, a broad window-like light, a key light (mostly from the
    camera side and above, with specular) and sometimes a fill or rim light; exposed so
    that a surface facing the camera gets 0.7-1.3 of its albedo (linear light)."""
    up = rot_z(rng.normal(0.0, np.radians(20))) @ rot_x(rng.normal(0.0, np.radians(20))) @ np.array([0.0, -1.0, 0.0])
    temp = rng.normal(0.0, 0.08)
    sky = np.array([1 - temp, 1.0, 1 + temp]) * rng.uniform(0.3, 0.8)
    ground = sky * rng.uniform(0.15, 0.6) * np.array([1.1, 1.0, 0.85])
    sh = np.zeros((9, 3))
    sh[0] = (sky + ground) / 2 / 0.282095
    # A radiance linear in (up . w) projects onto the l = 1 band: coefficient u_i * 4 pi / 3 * Y1 constant.
    sh[[3, 1, 2]] = up[:, None] * ((sky - ground) / 2)[None] * (4 * np.pi / 3 * 0.488603)
    window = np.array([rng.uniform(-1, 1), rng.uniform(-1, 0.2), -rng.uniform(0.0, 1.0)])
    wtemp = rng.normal(0.0, 0.1)
    sh += sh_project_directional(window, np.array([1 + wtemp, 1.0, 1 - wtemp]) * rng.uniform(0.0, 0.8))
    key = np.array([rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 0.4), -rng.uniform(0.3, 1.5)])
    ktemp = rng.normal(0.0, 0.08)
    dirs = [key / np.linalg.norm(key)]
    cols = [np.array([1 + ktemp, 1.0, 1 - ktemp]) * rng.uniform(0.4, 1.1)]
    fill = rng.normal(0.0, 1.0, 3)
    fill_on = rng.random() < 0.5
    fill_col = np.clip(rng.normal(1.0, 0.1, 3), 0.5, 1.5) * rng.uniform(0.1, 0.5)
    if fill_on:
        dirs.append(fill / max(np.linalg.norm(fill), 1e-9))
        cols.append(fill_col)
    wrap = float(rng.uniform(0.1, 0.5))
    # Exposure from normals spread around the camera direction.
    n = np.array([[0, 0, -1.0], [0.5, 0, -0.87], [-0.5, 0, -0.87], [0, 0.5, -0.87], [0, -0.5, -0.87]])
    e = sh_basis(n) @ (SH_LAMBERT[:, None] * sh)
    for d, c in zip(dirs, cols):
        e += np.maximum(n @ d + wrap, 0)[:, None] / (1 + wrap) * c[None]
    exposure = rng.uniform(0.7, 1.3) / max(float(e.mean(0) @ [0.299, 0.587, 0.114]), 1e-3)
    return Environment(sh=tuple(tuple(float(x) for x in r) for r in sh),
                       directions=tuple(tuple(float(x) for x in d) for d in dirs),
                       colors=tuple(tuple(float(x) for x in c) for c in cols),
                       specular=float(rng.uniform(0.04, 0.25)), shininess=float(rng.uniform(8, 40)), wrap=wrap,
                       exposure=float(exposure))


def environment_from_light(light: LightSettings) -> Environment:
    """Version 3's one light as an :class:`Environment` (ambient as a uniform environment),
    for per-pixel skin under the old light (the old kernel has no per-pixel albedo)."""
    sh = np.zeros((9, 3))
    sh[0] = light.ambient / 0.282095
    return Environment(sh=tuple(tuple(float(x) for x in r) for r in sh), directions=(light.direction,),
                       colors=(tuple(float(light.diffuse * c) for c in light.color),), specular=light.specular,
                       shininess=light.shininess)
