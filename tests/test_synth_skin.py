"""Procedural skin of the synthetic hand (:mod:`m3dhmr.data.synth_skin`)."""

import numpy as np
import pytest

from m3dhmr.data import synth_scene, synth_skin


@pytest.fixture(scope="module")
def ctx():
    return synth_scene.HandContext()


def _per_face(ctx, s, fields=None):
    """Material at every face centroid of the rest hand: (F, 4)."""
    fields = fields or ctx.skin
    F = len(ctx.faces)
    fi = np.arange(F, dtype=np.int32)[None]
    bary = np.full((1, F, 3), 1 / 3, np.float32)
    lin = synth_skin.vertex_albedo(s, fields.rest)
    out = synth_skin.skin_material(fi, bary, ctx.faces, fields.rest, fields.finger, fields.palmness, lin,
                                   np.ones(len(fields.rest)), fields, s)
    return out[0]


def test_tones_cover_fitzpatrick_and_albedo_in_range(ctx):
    rng = np.random.default_rng(0)
    skins = [synth_skin.sample_skin(rng, len(ctx.skin.palm_lines)) for _ in range(300)]
    lum = np.array([s.tone @ [0.299, 0.587, 0.114] for s in skins])
    assert lum.max() > 0.85 and lum.min() < 0.2      # type I to the darkest type VI
    assert np.all([(s.tone[0] > s.tone[1] > s.tone[2]) for s in skins])
    for s in skins[:20]:
        a = synth_skin.vertex_albedo(s, ctx.rest_vertices)
        m = _per_face(ctx, s)
        assert a.min() >= 0 and a.max() <= 1 and m[:, :3].min() >= 0 and m[:, :3].max() <= 1


def test_palm_lighter_than_back_for_light_and_dark_skin(ctx):
    n = np.cross(*(lambda t: (t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]))(ctx.rest_vertices[ctx.faces]))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    palm, back = n[:, 1] < -0.8, n[:, 1] > 0.8     # rest frame: +y is the back of the hand
    for seed in range(6):
        s = synth_skin.sample_skin(np.random.default_rng(seed), len(ctx.skin.palm_lines))
        lum = _per_face(ctx, s)[:, :3] @ [0.299, 0.587, 0.114]
        assert lum[palm].mean() > 1.03 * lum[back].mean()


def test_nails_on_the_dorsal_tip_of_every_finger(ctx):
    s = synth_skin.sample_skin(np.random.default_rng(1), len(ctx.skin.palm_lines))
    s.params[5:8] = (0.0, 1.0, 0.0)             # a marker colour for the nails
    s.params[10] = 0.0
    m = _per_face(ctx, s)
    nail = (m[:, 1] > 0.5) & (m[:, 0] < 0.3)
    cen = ctx.rest_vertices[ctx.faces].mean(1)
    finger = ctx.skin.finger[ctx.faces[:, 0]]
    for f in range(1, 6):
        on = nail & (finger == f)
        assert on.sum() >= 2, f"finger {f} has no nail"
        dip, tip = ctx.rest_joints[4 * f - 1], ctx.rest_joints[4 * f]
        u = (cen[on] - dip) @ (tip - dip) / np.sum((tip - dip) ** 2)
        assert u.min() > 0.3 and u.max() < 1.0   # on the distal phalanx, towards the tip
    assert ctx.skin.palmness[ctx.faces[nail]].mean() < -0.4   # the back of the finger


def test_crease_hand_computed():
    # One triangle lying on the index finger's PIP crease plane, fully palm-facing:
    # albedo (linear) times 1 - depth (green/blue; red keeps the redness share).
    rest = np.array([[0.128, -0.01, -0.03], [0.128, -0.01, -0.02], [0.128, -0.012, -0.025]])
    fields = synth_skin.SkinFields(
        finger=np.array([2, 2, 2]), palmness=np.ones(3), rest=rest,
        planes=np.tile(np.array([0.128, 0, 0, 1.0, 0, 0]), (5, 3, 1)), distal=np.tile(
            np.array([0.5, 0, 0, 1.0, 0, 0, 0.02]), (5, 1)), palm_lines=np.zeros((1, 4)))
    s = synth_skin.sample_skin(np.random.default_rng(0), 1)
    s.params[:] = 0.0
    s.params[0], s.params[1], s.params[13], s.params[12], s.params[14] = 0.001, 0.4, 0.1, 5.0, 1.0
    alb = np.full((3, 3), 0.5)
    out = synth_skin.skin_material(np.zeros((1, 1), np.int32), np.full((1, 1, 3), 1 / 3, np.float32),
                                   np.array([[0, 1, 2]]), rest, fields.finger, fields.palmness, alb, np.ones(3),
                                   fields, s)
    np.testing.assert_allclose(out[0, 0], [0.5 * (1 - 0.4 * 0.9), 0.5 * 0.6, 0.5 * 0.6, 1.0], rtol=1e-5)


def test_same_seed_same_skin(ctx):
    a, b, c = (synth_skin.sample_skin(np.random.default_rng(s), 9) for s in (5, 5, 6))
    for k in ("tone", "palm", "waves", "amp", "params", "line_jitter", "veins"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert not np.array_equal(a.params, c.params)
