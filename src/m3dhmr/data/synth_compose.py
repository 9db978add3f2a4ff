"""Rendering and compositing one synthetic sample: the hand rendered inside its box,
blended over a background, held objects and a second hand in front of or behind it (a
z-buffer test between their renders), occluders, then the camera effects of
:mod:`m3dhmr.data.synth_camera` (on uint8 images, OpenCV and small numba kernels; see
:mod:`m3dhmr.data.synth` for the speed goals)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np
from numba import njit

from m3dhmr.data.backgrounds import procedural_background, random_background
from m3dhmr.data.synth_camera import apply_camera, draw_camera
from m3dhmr.data.synth_objects import SceneMesh, grip_object, object_colors, place_other_hand
from m3dhmr.data.synth_forearm import ForearmParams, forearm_mesh, sample_forearm
from m3dhmr.data.synth_scene import (HandContext, RenderedSample, SynthConfig, draw_geometry, environment_from_light,
                                     occluder_spheres, place_hand, sample_environment, sample_light, sample_rng,
                                     sample_vertex_skin)
from m3dhmr.errors import InputError
from m3dhmr.data.synth_skin import GAMMA, SkinSample, sample_skin, skin_material, vertex_albedo
from m3dhmr.geometry.rotations import rotation_to_axis_angle
from m3dhmr.hand.handshapes import GRIPS
from m3dhmr.render.rasterizer import Fragments, rasterize
from m3dhmr.render.shading import (Environment, LightSettings, RenderResult, render_mesh, shade, sphere_occlusion,
                                   vertex_normals)


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


def blend(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray, premultiplied: bool = False) -> None:
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
        blend(img[ry, rx], a, fill)
        np.maximum(cover, layer, out=cover)
        drawn += 1
    return cover, drawn


def _scene_things(ctx: HandContext, cfg: SynthConfig, rng: np.random.Generator, geo: dict[str, Any],
                  verts: np.ndarray, joints: np.ndarray, R: np.ndarray, t: np.ndarray, v_cam: np.ndarray,
                  tone: np.ndarray) -> list[SceneMesh]:
    """The sample's other meshes in camera space (:mod:`m3dhmr.data.synth_objects`): the
    object of a grip handshape (with probability ``cfg.object_prob``) and the second hand
    (when :func:`draw_geometry` drew one). verts (V, 3), joints (21, 3): model output at
    zero global rotation; R, t: the hand's rotation and translation; v_cam (V, 3); tone (3,) skin."""
    things = []
    kind = GRIPS.get(geo.get("pose_source", ""))
    if kind is not None and rng.random() < cfg.object_prob:
        v, f = grip_object(kind, joints, verts, rng, ctx.faces)
        things.append(SceneMesh((v - joints[0]) @ R.T + t, f, object_colors(v, rng), kind))
    other = geo.get("other")
    if other is not None and "verts" in other:
        v = place_other_hand(other["verts"], v_cam, rng)
        # The same person's skin, a little lighter or darker.
        colors = np.broadcast_to(np.clip(tone * rng.normal(1.0, 0.05), 0, 1), v.shape)
        things.append(SceneMesh(v, ctx.faces, colors, "hand"))
    return things


def _render_things(things: list[SceneMesh], K: np.ndarray, size: int,
                   light: LightSettings | Environment) -> tuple[RenderResult | None, tuple[slice, slice]]:
    """Render the meshes ``things`` together inside the box of their projection (like
    :func:`render_hand_box`); (None, box) when there is nothing to render."""
    if not things:
        return None, (slice(0, 0), slice(0, 0))
    offsets = np.cumsum([0] + [len(m.vertices) for m in things[:-1]])
    v = np.concatenate([m.vertices for m in things])
    f = np.concatenate([m.faces + o for m, o in zip(things, offsets)])
    c = np.concatenate([m.colors for m in things])
    return render_hand_box(v, f, K, size, c, light)


def _paint_layer(img: np.ndarray, res: RenderResult, box: tuple[slice, slice], part: np.ndarray) -> None:
    """Blend the pixels ``part`` (h, w) bool of a box render ``res`` into img (H, W, 3) uint8,
    anti-aliased like the hand (the same 3x3 blur of premultiplied colour and alpha)."""
    if not part.any():
        return
    m = part.astype(np.float32)
    alpha = cv2.GaussianBlur(m, (3, 3), 0.6)
    colour = cv2.GaussianBlur(res.rgb * m[:, :, None], (3, 3), 0.6)
    colour *= 255.0
    blend(img[box], alpha, colour, premultiplied=True)


def things_in_front(layer: RenderResult | None, layer_box: tuple[slice, slice], hand: RenderResult | None,
                     hand_box: tuple[slice, slice], size: int) -> np.ndarray:
    """(H, W) bool: pixels where a thing's surface is nearer than the hand's (the z-buffer test
    between the two renders; where the hand is absent its depth is infinite)."""
    front = np.zeros((size, size), bool)
    if layer is None:
        return front
    depth = np.full((size, size), np.inf, np.float32)
    if hand is not None:
        depth[hand_box] = hand.depth
    front[layer_box] = layer.mask & (layer.depth < depth[layer_box])
    return front


def _things_layer(things: list[SceneMesh], K: np.ndarray, size: int, light: LightSettings | Environment,
                  hand: RenderResult | None, hand_box: tuple[slice, slice],
                  cfg: SynthConfig) -> tuple[RenderResult | None, np.ndarray, tuple[slice, slice]]:
    """Render ``things`` (modified in place: a second hand hiding more than
    ``cfg.max_occluded_fraction`` of the hand is dropped); returns the render (or None), the
    (H, W) bool pixels where a thing is in front of the hand, and the render's box."""
    layer, box = _render_things(things, K, size, light)
    front = things_in_front(layer, box, hand, hand_box, size)
    if hand is not None and things and things[-1].kind == "hand":
        covered = front[hand_box][hand.mask].sum() / max(int(hand.mask.sum()), 1)
        if covered > cfg.max_occluded_fraction:
            things.pop()
            layer, box = _render_things(things, K, size, light)
            front = things_in_front(layer, box, hand, hand_box, size)
    return layer, front, box


@dataclass
class Appearance:
    """One sample's hand appearance (:func:`draw_appearance`): tone (3,) sRGB base skin tone;
    light: the hand's (and the scene's) lighting; albedo (V, 3) sRGB per-vertex skin when
    there is no per-pixel skin; skin / forearm: the version-4 draws, or None."""

    tone: np.ndarray
    light: LightSettings | Environment
    albedo: np.ndarray | None = None
    skin: SkinSample | None = None
    forearm: ForearmParams | None = None

    def params(self) -> dict[str, Any]:
        """The JSON-ready ``skin_tone``, ``light`` and ``forearm`` entries of the sample's params."""
        lt = self.light
        if isinstance(lt, LightSettings):
            light = {"direction": list(lt.direction), "ambient": lt.ambient, "diffuse": lt.diffuse,
                     "specular": lt.specular, "shininess": lt.shininess, "color": list(lt.color)}
        else:
            light = {"sh": [list(r) for r in lt.sh], "directions": [list(d) for d in lt.directions],
                     "colors": [list(c) for c in lt.colors], "specular": lt.specular, "shininess": lt.shininess,
                     "wrap": lt.wrap, "exposure": lt.exposure}
        return {"skin_tone": self.tone.tolist(), "light": light,
                "forearm": None if self.forearm is None else self.forearm.to_json()}


def draw_appearance(ctx: HandContext, cfg: SynthConfig, rng: np.random.Generator) -> Appearance:
    """Draw the hand's appearance. With every version-4 switch off this draws exactly
    version 3's skin and light from ``rng``; otherwise one draw of ``rng`` seeds three
    generators (forearm, skin, light), so switching one feature off for an ablation
    leaves the other two features' draws unchanged."""
    v4 = cfg.forearm_prob > 0 or cfg.skin_detail or cfg.shading == "v4"
    if not v4:
        albedo, tone = sample_vertex_skin(ctx, rng)
        return Appearance(tone=tone, light=sample_light(rng), albedo=albedo)
    r_arm, r_skin, r_light = (np.random.default_rng(s) for s in rng.integers(0, 2**63 - 1, 3))
    forearm = sample_forearm(r_arm, cfg.sleeve_prob) if r_arm.random() < cfg.forearm_prob else None
    if cfg.skin_detail:
        skin = sample_skin(r_skin, len(ctx.skin.palm_lines))
        app = Appearance(tone=skin.tone, light=LightSettings(), skin=skin, forearm=forearm)
    else:
        albedo, tone = sample_vertex_skin(ctx, r_skin)
        app = Appearance(tone=tone, light=LightSettings(), albedo=albedo, forearm=forearm)
    app.light = sample_environment(r_light) if cfg.shading == "v4" else sample_light(r_light)
    return app


def render_hand_and_forearm(ctx: HandContext, cfg: SynthConfig, app: Appearance, verts: np.ndarray,
                            joints: np.ndarray, R: np.ndarray, t: np.ndarray,
                            K: np.ndarray) -> tuple[RenderResult | None, tuple[slice, slice], np.ndarray | None]:
    """Render the hand (and its forearm) inside its box. verts (V, 3), joints (21, 3): model
    output at zero global rotation; camera space = R @ (x - wrist) + t. Returns the render
    (hand and forearm; None when off-image), its box, and the box's (h, w) bool pixels
    where the *hand* is visible (the annotation mask: the forearm is not part of it)."""
    root = joints[0]
    faces, n_hand = ctx.faces, len(ctx.faces)
    v_model = verts
    arm = None
    if app.forearm is not None:
        arm = forearm_mesh(verts, root, ctx.wrist, app.forearm)
        v_model = np.concatenate([verts, arm.vertices])
        # The stump's cap lies inside the forearm: drop it, and the tube starts at its loop.
        faces, n_hand = np.concatenate([ctx.wrist.open_faces, arm.faces]), len(ctx.wrist.open_faces)
    v_cam = (v_model - root) @ R.T + t
    env = app.light if isinstance(app.light, Environment) else None
    normals = occlusion = material = None
    albedo = app.albedo
    if arm is not None and albedo is not None:  # per-vertex skin: the arm gets the tone, the sleeve its cloth
        albedo = np.concatenate([albedo, np.where(arm.cloth[:, None], arm.cloth_albedo, app.tone[None])])
    if env is not None or app.skin is not None:
        normals = vertex_normals(v_cam, faces)
    if env is not None and cfg.ao:
        spheres = occluder_spheres(ctx, joints)
        if arm is not None:
            spheres = np.concatenate([spheres, arm.spheres])
        # Only the hand and the arm's first centimetres can be shaded by the proxies.
        near = slice(None) if arm is None else slice(0, len(verts) + int((arm.distance < 0.08).sum()))
        occlusion = np.ones(len(v_cam))
        occlusion[near] = sphere_occlusion(v_cam[near], normals[near], (spheres[:, :3] - root) @ R.T + t,
                                           spheres[:, 3])
    if app.skin is not None:
        sk, fields = app.skin, ctx.skin
        if env is None:  # per-pixel skin needs the environment kernel: version 3's light as one
            env = environment_from_light(app.light)
        rest, finger, palmness = fields.rest, fields.finger, fields.palmness
        lin = vertex_albedo(sk, fields.rest)
        spec = np.ones(len(v_model))
        if arm is not None:
            rest = np.concatenate([rest, arm.vertices])
            finger = np.concatenate([finger, np.where(arm.cloth, -2, -1)])
            # The inner forearm is a little lighter, like a palm in a milder way.
            palmness = np.concatenate([palmness, np.where(arm.cloth, -1.0, 0.35 * arm.ventral)])
            lin = np.concatenate([lin, np.where(arm.cloth[:, None], arm.cloth_albedo ** GAMMA,
                                                vertex_albedo(sk, arm.vertices))])
            spec[len(verts):][arm.cloth] = 0.2  # cloth is matte
        dummy = np.zeros((len(v_model), 3))
        albedo = dummy

        def material(fr: Any) -> np.ndarray:
            return skin_material(fr.face_index, fr.bary, faces, rest, finger, palmness, lin, spec, fields, sk)
    res, box = render_hand_box(v_cam, faces, K, cfg.size, albedo, env if env is not None else app.light,
                               occlusion=occlusion, material=material, normals=normals)
    if res is None:
        return None, box, None
    fi = res.fragments.face_index
    return res, box, (fi >= 0) & (fi < n_hand)


def render_hand_box(v_cam: np.ndarray, faces: np.ndarray, K: np.ndarray, size: int, albedo: np.ndarray,
                    light: LightSettings | Environment, occlusion: np.ndarray | None = None,
                    material: Callable[[Fragments], np.ndarray] | None = None,
                    normals: np.ndarray | None = None) -> tuple[RenderResult | None, tuple[slice, slice]]:
    """Render a camera-space mesh v_cam (V, 3) only inside the box of its projected vertices
    grown by 2 px (clipped to the (size, size) image); returns the render of that box (None
    when the box is empty) and the box's (rows, cols) slices.

    albedo (V, 3) sRGB; light: version 3's :class:`LightSettings` or an
    :class:`Environment` (then optionally ``occlusion`` (V,) and ``material``, a function
    of the box's fragments giving the (h, w, 4) linear albedo and specular scale, see
    :func:`m3dhmr.render.shading.shade`); normals (V, 3) (computed when None).

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
    h, w = int(y1 - y0), int(x1 - x0)
    if not isinstance(light, Environment):
        if occlusion is not None or material is not None:
            raise InputError("occlusion and material need an Environment light")
        return render_mesh(v_cam, faces, K_box, (h, w), colors=albedo, light=light, normals=normals), box
    frags = rasterize(v_cam, faces, K_box, h, w)
    rgb = np.zeros((h, w, 3), np.float32)
    shade(frags, v_cam, faces, albedo, normals=normals, out=rgb, environment=light, occlusion=occlusion,
          material=None if material is None else material(frags))
    return RenderResult(rgb=rgb, mask=frags.mask, depth=frags.depth, fragments=frags), box


def compose_sample(ctx: HandContext, cfg: SynthConfig, rng: np.random.Generator, geo: dict[str, Any],
                   verts: np.ndarray, joints: np.ndarray) -> RenderedSample:
    """Render and composite one sample. verts (V, 3), joints (21, 3): model output at zero
    global rotation; ``geo`` from :func:`draw_geometry`; ``rng`` continues the sample's stream.

    Compositing works on the uint8 image with OpenCV (issue 4: the float32/float64
    full-image version cost ~3x more): the anti-aliased hand is blended only inside its
    box; held objects and a second hand are rendered together and split by a z-buffer test
    against the hand's depth into the part behind the hand (painted before it) and the part
    in front (painted after it, and taken out of the mask); the camera effects
    (:mod:`m3dhmr.data.synth_camera`) apply to the whole image, their noise seeded from
    ``rng`` so it stays a function of the sample's seed.
    """
    size = cfg.size
    root = joints[0]
    R, K = geo["R"], geo["K"]
    v_rr = (verts - root) @ R.T
    t = place_hand(v_rr, K, geo["fill"], geo["centre"], size)
    v_cam = v_rr + t
    xyz = (joints - root) @ R.T + t
    app = draw_appearance(ctx, cfg, rng)
    tone, light = app.tone, app.light
    hand = np.zeros((size, size), bool)
    img, bg_name = random_background(rng, size, cfg.photo_prob, cfg.background_dir)
    img = np.array(img, dtype=np.uint8, order="C", copy=True)
    res, box, hand_part = render_hand_and_forearm(ctx, cfg, app, verts, joints, R, t, K)
    things = _scene_things(ctx, cfg, rng, geo, verts, joints, R, t, v_cam, tone)
    layer, front, layer_box = _things_layer(things, K, size, light, res, box, cfg)
    if layer is not None:  # the things behind the hand first, so the hand's soft edge blends over them
        _paint_layer(img, layer, layer_box, layer.mask & ~front[layer_box])
    if res is not None:
        ry, rx = box
        hand[ry, rx] = hand_part
        # Anti-aliased compositing: blur the premultiplied colour and the alpha with one kernel.
        alpha = cv2.GaussianBlur(res.mask.astype(np.float32), (3, 3), 0.6)
        colour = cv2.GaussianBlur(res.rgb, (3, 3), 0.6)
        colour *= 255.0
        blend(img[ry, rx], alpha, colour, premultiplied=True)
    if layer is not None:  # then the things in front of it
        _paint_layer(img, layer, layer_box, front[layer_box])
    cover, n_occ = _occlude(rng, cfg, img, hand)
    cam = draw_camera(rng, cfg)
    img = apply_camera(img, cam)
    mask = hand & ~front & (cover < 128)
    params = {
        "pose": geo["pose"].tolist(),
        "shape": geo["shape"].tolist(),
        "global_rotation": rotation_to_axis_angle(R).tolist(),
        "translation": t.tolist(),
        "focal": float(K[0, 0]),
        "fill": float(geo["fill"]),
        **app.params(),
        "background": bg_name,
        "occluders": n_occ,
        "occluded_fraction": float(1.0 - mask.sum() / max(hand.sum(), 1)),
        "pose_source": geo.get("pose_source", "joints"),
        "things": [m.kind for m in things],
        "camera": cam.as_params(),
        "jpeg_quality": cam.jpeg_quality,
    }
    return RenderedSample(rgb=img, mask=mask, K=K, xyz=xyz, verts=v_cam, params=params)


def render_range(ctx: HandContext, cfg: SynthConfig, seed: int, split_id: int, start: int,
                 stop: int) -> list[RenderedSample]:
    """Samples ``start..stop-1`` of a split, posed in one batch (stop - start <= CHUNK)."""
    rngs = [sample_rng(seed, split_id, i) for i in range(start, stop)]
    geos = [draw_geometry(ctx, cfg, r) for r in rngs]
    verts, joints = ctx.pose(np.stack([g["pose"] for g in geos]), np.stack([g["shape"] for g in geos]))
    others = [g["other"] for g in geos if g.get("other") is not None]
    if others:  # the second hands, in one batch too
        ov, _ = ctx.pose(np.stack([o["pose"] for o in others]), np.stack([o["shape"] for o in others]))
        for o, v in zip(others, ov):
            o["verts"] = v
    return [compose_sample(ctx, cfg, r, g, v, j) for r, g, v, j in zip(rngs, geos, verts, joints)]
