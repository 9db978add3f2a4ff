"""Held objects and the second hand (:mod:`m3dhmr.data.synth_objects`) and their compositing
in the hand's z-buffer (:mod:`m3dhmr.data.synth_compose`)."""

from collections import Counter

import numpy as np
import pytest
import torch

from m3dhmr.data import synth_compose, synth_objects, synth_scene
from m3dhmr.data.synth_scene import SynthConfig
from m3dhmr.hand import load_open_hand
from m3dhmr.hand.handshapes import GRIPS, sample_handshapes
from m3dhmr.render.shading import RenderResult, vertex_normals


def _edges_shared_twice(faces):
    e = Counter(tuple(sorted(p)) for f in faces for p in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0])))
    return set(e.values()) == {2}


def test_primitives_are_closed_with_the_asked_size():
    v, f = synth_objects.cylinder(0.02, 0.1, segments=12, rings=3)
    assert _edges_shared_twice(f) and v.shape == (12 * 4 + 2, 3)
    np.testing.assert_allclose(np.linalg.norm(v[:-2, :2], axis=1), 0.02)
    assert v[:, 2].min() == pytest.approx(-0.05) and v[:, 2].max() == pytest.approx(0.05)
    v, f = synth_objects.sphere(0.03, segments=10, rings=6)
    assert _edges_shared_twice(f)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 0.03)
    v, f = synth_objects.box((0.01, 0.02, 0.03))
    assert f.shape == (12, 3) and np.allclose(np.ptp(v, axis=0), [0.01, 0.02, 0.03])
    # Every face's normal points out of the box (consistent winding), hand-checked by centroids.
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    assert np.all(np.abs((n * v[f].mean(1)).sum(1)) > 0)
    with pytest.raises(ValueError, match="radius"):
        synth_objects.cylinder(-1.0, 0.1)


def test_fits_hand_cases():
    c, r = synth_objects.circumcircle(np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([-1.0, 0, 0]))
    np.testing.assert_allclose(c, 0, atol=1e-12)
    assert r == pytest.approx(1.0)
    pts = np.array([[1, 2, 3 + 0.5], [1, 2, 3 - 0.5], [1.5, 2, 3], [1, 2.5, 3], [0.5, 2, 3]])
    c, r = synth_objects.fit_sphere(pts)
    np.testing.assert_allclose(c, [1, 2, 3], atol=1e-12)
    assert r == pytest.approx(0.5)
    # Penetration: a point 2 mm below a flat patch's surface is 2 mm deep; 3 mm above is -3 mm.
    V = np.array([[0.0, 0, 0], [0.01, 0, 0], [0, 0.01, 0]])
    N = np.array([[0.0, 0, 1]] * 3)
    np.testing.assert_allclose(synth_objects.penetration_depth(np.array([[0.001, 0.001, -0.002],
                                                                         [0, 0, 0.003]]), V, N), [0.002, -0.003])


@pytest.fixture(scope="module")
def model():
    return load_open_hand(torch.float64)


@pytest.mark.parametrize("name", sorted(GRIPS))
def test_grip_objects_touch_without_cutting_into_the_hand(model, name):
    """Object vertices near the skin (within 2 cm) lie at most 3 mm behind the nearest skin
    vertex's tangent plane (the skin is soft and the mesh coarse, so 3 mm, not 0; 5 mm for a
    pen), and the
    object touches the hand (nearest vertices within 8 mm; a plate's vertices are only its
    corners): it is held."""
    faces = np.asarray(model.template.faces, dtype=np.int64)
    for seed in range(4):
        rng = np.random.default_rng(seed)
        pose, _ = sample_handshapes(1, rng, name=name)
        out = model(torch.tensor(pose), torch.zeros(1, 9, dtype=torch.float64))
        V, J = out.vertices[0].numpy(), out.joints[0].numpy()
        ov, of = synth_objects.grip_object(GRIPS[name], J, V, rng, faces)
        assert of.max() < len(ov) and np.isfinite(ov).all()
        d = np.sqrt(((ov[:, None] - V[None]) ** 2).sum(-1)).min(1)
        depth = synth_objects.penetration_depth(ov, V, vertex_normals(V, faces))
        # A pen is squeezed between three soft pads: 5 mm there.
        assert depth[d < 0.02].max() < (0.005 if GRIPS[name] == "stick" else 0.003), (name, seed, depth.max())
        assert d.min() < 0.008, (name, seed, d.min())


def test_object_colours_are_in_range_and_seeded():
    v = synth_objects.sphere(0.03)[0]
    a = synth_objects.object_colors(v, np.random.default_rng(2))
    np.testing.assert_array_equal(a, synth_objects.object_colors(v, np.random.default_rng(2)))
    assert a.shape == v.shape and a.min() >= 0 and a.max() <= 1


def test_other_hand_overlaps_and_stays_in_front_of_the_camera():
    rng = np.random.default_rng(0)
    hand = rng.normal(0, 0.03, (500, 3)) + [0, 0, 0.4]
    other = rng.normal(0, 0.03, (500, 3))
    for seed in range(20):
        v = synth_objects.place_other_hand(other, hand, np.random.default_rng(seed))
        assert v[:, 2].min() > 0.07
        shift = v.mean(0) - hand.mean(0)
        half = 0.5 * np.ptp(hand[:, :2], axis=0).max()
        assert np.linalg.norm(shift[:2]) <= half + 1e-9 and 0.02 - 1e-9 <= abs(shift[2]) <= 0.4


def _result(depth):
    depth = np.asarray(depth, np.float32)
    mask = np.isfinite(depth)
    return RenderResult(rgb=np.zeros((*depth.shape, 3), np.float32), mask=mask, depth=depth, fragments=None)


def test_things_in_front_matches_a_naive_depth_test():
    rng = np.random.default_rng(1)
    size = 12
    hand_d = np.where(rng.random((6, 7)) < 0.6, rng.uniform(0.3, 0.5, (6, 7)), np.inf)
    thing_d = np.where(rng.random((8, 9)) < 0.6, rng.uniform(0.3, 0.5, (8, 9)), np.inf)
    hbox, tbox = (slice(2, 8), slice(1, 8)), (slice(4, 12), slice(3, 12))
    front = synth_compose.things_in_front(_result(thing_d), tbox, _result(hand_d), hbox, size)
    naive = np.zeros((size, size), bool)
    for y in range(size):
        for x in range(size):
            h = hand_d[y - 2, x - 1] if 2 <= y < 8 and 1 <= x < 8 else np.inf
            t = thing_d[y - 4, x - 3] if 4 <= y < 12 and 3 <= x < 12 else np.inf
            naive[y, x] = np.isfinite(t) and t < h
    np.testing.assert_array_equal(front, naive)
    # Hand case: a thing at 0.3 m over a hand at 0.4 m is in front, at 0.5 m it is not.
    one = synth_compose.things_in_front(_result([[0.3, 0.5]]), (slice(0, 1), slice(0, 2)),
                                         _result([[0.4, 0.4]]), (slice(0, 1), slice(0, 2)), 2)
    assert one[0].tolist() == [True, False]


def _compose(cfg, seed, index):
    ctx = _compose.ctx
    rng = synth_scene.sample_rng(seed, 0, index)
    g = synth_scene.draw_geometry(ctx, cfg, rng)
    v, j = ctx.pose(g["pose"][None], g["shape"][None])
    if g["other"] is not None:
        g["other"]["verts"] = ctx.pose(g["other"]["pose"][None], g["other"]["shape"][None])[0][0]
    return synth_compose.compose_sample(ctx, cfg, rng, g, v[0], j[0])


def test_objects_never_change_annotations_and_only_hide_the_hand_where_nearer():
    _compose.ctx = synth_scene.HandContext()
    base = dict(size=96, handshape_prob=1.0, occluder_prob=0.0, other_hand_prob=1.0)
    on, off = SynthConfig(**base, object_prob=1.0), SynthConfig(**{**base, "other_hand_prob": 0.0}, object_prob=0.0)
    seen_object = seen_hidden = 0
    for index in range(12):
        a, b = _compose(on, 3, index), _compose(off, 3, index)
        np.testing.assert_array_equal(a.xyz, b.xyz)
        np.testing.assert_array_equal(a.verts, b.verts)
        np.testing.assert_array_equal(a.K, b.K)
        assert not (a.mask & ~b.mask).any()  # things only ever remove hand pixels
        seen_object += any(k != "hand" for k in a.params["things"])
        hidden = b.mask & ~a.mask
        seen_hidden += hidden.any()
        if hidden.any():
            # Where the hand was hidden a thing is nearer: recompute its depth against the hand's.
            v_cam, K = a.verts, a.K
            res, box = synth_compose.render_hand_box(v_cam, _compose.ctx.faces, K, 96, np.full((len(v_cam), 3), .5),
                                                     synth_scene.LightSettings())
            hand_depth = np.full((96, 96), np.inf, np.float32)
            hand_depth[box] = res.depth
            assert np.isfinite(hand_depth[hidden]).all()
        assert b.params["things"] == []
    assert seen_object >= 2 and seen_hidden >= 2
