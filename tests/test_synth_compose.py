"""Rendering and compositing one sample (:mod:`m3dhmr.data.synth_compose`)."""

import numpy as np

from m3dhmr.data.synth_scene import SynthConfig
from m3dhmr.data import synth_compose
from m3dhmr.data import synth_scene


def test_blend_matches_naive_loop():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    alpha = rng.uniform(0, 1, (5, 6)).astype(np.float32)
    alpha[0] = 0.0
    colour = rng.uniform(0, 255, (5, 6, 3)).astype(np.float32)
    naive = img.astype(np.float64).copy()
    for y in range(5):
        for x in range(6):
            naive[y, x] = img[y, x] * (1 - alpha[y, x]) + alpha[y, x] * colour[y, x]
    out = img.copy()
    synth_compose.blend(out, alpha, colour)
    assert np.abs(out - naive).max() <= 0.5 + 1e-3  # rounded
    np.testing.assert_array_equal(out[0], img[0])  # alpha 0: untouched
    pre = img.copy()
    synth_compose.blend(pre, alpha, alpha[:, :, None] * colour, premultiplied=True)
    assert np.abs(pre.astype(int) - out).max() <= 1
    solid = img.copy()  # a (3,) colour broadcasts; hand case: alpha 1 gives the colour
    synth_compose.blend(solid, np.ones((5, 6), np.float32), np.array([10.4, 20.6, 255.0], np.float32))
    assert (solid == [10, 21, 255]).all()


def test_box_render_equals_full_render():
    from m3dhmr.render import LightSettings, render_mesh

    ctx = synth_scene.HandContext()
    cfg = SynthConfig(size=96)
    rng = synth_scene.sample_rng(0, 0, 0)
    g = synth_scene.draw_geometry(ctx, cfg, rng)
    v, j = ctx.pose(g["pose"][None], g["shape"][None])
    v_rr = (v[0] - j[0, 0]) @ g["R"].T
    v_cam = v_rr + synth_scene.place_hand(v_rr, g["K"], g["fill"], g["centre"], 96)
    albedo = np.full((len(v_cam), 3), 0.7)
    res, (ry, rx) = synth_compose.render_hand_box(v_cam, ctx.faces, g["K"], 96, albedo, LightSettings())
    full = render_mesh(v_cam, ctx.faces, g["K"], 96, colors=albedo)
    assert full.mask.sum() > 100 and not full.mask[~np.pad(np.ones(res.mask.shape, bool), (
        (ry.start, 96 - ry.stop), (rx.start, 96 - rx.stop)))].any()  # nothing outside the box
    # A 2 px empty border on every side the image does not clip (the blur's reach).
    assert not res.mask[:2].any() and not res.mask[-2:].any() and not res.mask[:, :2].any()
    same = (res.mask == full.mask[ry, rx]).mean()
    assert same >= 0.999  # only pixel centres exactly on an edge may differ (shifted K)
    both = res.mask & full.mask[ry, rx]
    np.testing.assert_allclose(res.rgb[both], full.rgb[ry, rx][both], atol=1e-4)


def test_compose_is_a_function_of_the_sample_seed():
    # Noise comes from cv2.randn seeded by the sample's generator: same seed, same image.
    ctx = synth_scene.HandContext()
    cfg = SynthConfig(size=96, noise_prob=1.0, blur_prob=1.0, occluder_prob=1.0, motion_blur_prob=1.0,
                      defocus_prob=1.0, handshape_prob=1.0, object_prob=1.0, other_hand_prob=1.0)
    outs = []
    for _ in range(2):
        rng = synth_scene.sample_rng(4, 0, 1)
        g = synth_scene.draw_geometry(ctx, cfg, rng)
        v, j = ctx.pose(g["pose"][None], g["shape"][None])
        outs.append(synth_compose.compose_sample(ctx, cfg, rng, g, v[0], j[0]))
    np.testing.assert_array_equal(outs[0].rgb, outs[1].rgb)
    np.testing.assert_array_equal(outs[0].mask, outs[1].mask)
    cam = outs[0].params["camera"]
    assert cam["shot_noise"] > 0 and cam["motion_length"] > 0 and outs[0].rgb.dtype == np.uint8
    assert outs[0].params["jpeg_quality"] == cam["jpeg_quality"]


def test_appearance_switched_off_draws_exactly_version_3():
    from dataclasses import replace

    ctx = synth_scene.HandContext()
    v3 = replace(SynthConfig(size=96), forearm_prob=0.0, skin_detail=False, shading="v3", ao=False)
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    app = synth_compose.draw_appearance(ctx, v3, a)
    albedo, tone = synth_scene.sample_vertex_skin(ctx, b)
    light = synth_scene.sample_light(b)
    np.testing.assert_array_equal(app.albedo, albedo)
    np.testing.assert_array_equal(app.tone, tone)
    assert app.light == light and app.forearm is None and app.skin is None
    assert a.random() == b.random()  # the stream continues where version 3's did


def test_ablations_leave_the_other_features_draws_alone():
    from dataclasses import replace

    from m3dhmr.render.shading import Environment

    ctx = synth_scene.HandContext()
    cfg = SynthConfig(size=96, forearm_prob=1.0)
    full = synth_compose.draw_appearance(ctx, cfg, np.random.default_rng(3))
    assert full.forearm is not None and full.skin is not None and isinstance(full.light, Environment)
    no_arm = synth_compose.draw_appearance(ctx, replace(cfg, forearm_prob=0.0), np.random.default_rng(3))
    np.testing.assert_array_equal(no_arm.skin.params, full.skin.params)
    assert no_arm.light == full.light and no_arm.forearm is None
    flat = synth_compose.draw_appearance(ctx, replace(cfg, skin_detail=False), np.random.default_rng(3))
    assert flat.forearm == full.forearm and flat.light == full.light and flat.skin is None
    # Every v4 combination renders, with the hand mask inside the render's coverage.
    rng = synth_scene.sample_rng(0, 0, 5)
    g = synth_scene.draw_geometry(ctx, cfg, rng)
    v, j = ctx.pose(g["pose"][None], g["shape"][None])
    for c in (cfg, replace(cfg, shading="v3"), replace(cfg, ao=False), replace(cfg, skin_detail=False)):
        s = synth_compose.compose_sample(ctx, c, synth_scene.sample_rng(0, 0, 5), g, v[0], j[0])
        assert s.mask.sum() > 100 and s.params["forearm"] is not None
