"""The synthetic forearm (:mod:`m3dhmr.data.synth_forearm`): the wrist loop, a tube without
gaps that winds like the hand, rendered with the hand but never part of its annotations."""

from dataclasses import replace

import numpy as np
import pytest

from m3dhmr.data import synth_compose, synth_forearm, synth_scene
from m3dhmr.mesh.adjacency import boundary_edges, half_edges


@pytest.fixture(scope="module")
def ctx():
    return synth_scene.HandContext()


def _params(**kw):
    p = synth_forearm.sample_forearm(np.random.default_rng(0), 0.0)
    return replace(p, **{"flexion": 0.0, "deviation": 0.0, "sleeve": False, **kw})


def _cube():
    v = np.array([[x, y, z] for x in (0.0, 1.0) for y in (0.0, 1.0) for z in (0.0, 1.0)])
    import trimesh

    return v, np.asarray(trimesh.convex.convex_hull(v).faces, dtype=np.int64)


def test_wrist_loop_hand_computed_cube():
    # Cut at x = 0.5: only the two triangles of the x = 1 face keep all vertices at x >= 0.5,
    # so the loop is that face's four corners (vertices 4..7) and ten faces are the cap.
    v, f = _cube()
    wl = synth_forearm.wrist_loop(v, f, cut_x=0.5)
    assert sorted(wl.loop.tolist()) == [4, 5, 6, 7]
    assert wl.cap.sum() == 10 and len(wl.open_faces) == 2
    with pytest.raises(ValueError, match="no wrist loop"):
        synth_forearm.wrist_loop(v, f, cut_x=2.0)


def test_wrist_loop_of_the_open_hand(ctx):
    wl = ctx.wrist
    v = ctx.rest_vertices
    assert len(wl.loop) >= 8 and len(set(wl.loop.tolist())) == len(wl.loop)
    assert (v[wl.loop, 0] >= synth_forearm.WRIST_CUT_X).all()
    # Consecutive loop vertices are mesh edges, and the loop is exactly the kept part's boundary.
    und = {tuple(sorted(e)) for e in half_edges(ctx.faces).tolist()}
    assert all(tuple(sorted((a, b))) in und for a, b in zip(wl.loop, np.roll(wl.loop, -1)))
    assert {tuple(e) for e in boundary_edges(wl.open_faces).tolist()} == {
        tuple(sorted((int(a), int(b)))) for a, b in zip(wl.loop, np.roll(wl.loop, -1))}


@pytest.mark.parametrize("flexion", [0.0, 0.6])
def test_forearm_closes_the_hand_without_gap_and_winds_outwards(ctx, flexion):
    p = _params(flexion=flexion, deviation=0.2)
    fm = synth_forearm.forearm_mesh(ctx.rest_vertices, ctx.rest_joints[0], ctx.wrist, p)
    V = len(ctx.rest_vertices)
    faces = np.concatenate([ctx.wrist.open_faces, fm.faces])
    # The first ring IS the hand's loop (shared indices): hand + tube is one closed surface,
    # every directed edge used once (consistent winding) and positive volume (outwards).
    assert len(boundary_edges(faces)) == 0
    he = half_edges(faces)
    assert len(np.unique(he, axis=0)) == len(he)
    ring0 = np.unique(fm.faces[(fm.faces < V).any(1)][fm.faces[(fm.faces < V).any(1)] < V])
    assert sorted(ring0.tolist()) == sorted(ctx.wrist.loop.tolist())
    verts = np.concatenate([ctx.rest_vertices, fm.vertices])
    tri = verts[faces]
    vol = np.einsum("fi,fi->f", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6
    assert vol > 0
    # Length and direction: the far end lies ~length from the loop, along -x turned by the
    # wrist angles (hand-computed for the axis: R_z(flex) R_y(dev) (-1, 0, 0)).
    end = fm.vertices[-1]
    d = synth_scene.rot_z(flexion) @ synth_scene.rot_y(0.2) @ np.array([-1.0, 0, 0])
    axis = end - ctx.rest_joints[0]
    assert np.degrees(np.arccos(axis @ d / np.linalg.norm(axis))) < 5.0
    assert np.linalg.norm(axis) == pytest.approx(p.length, abs=0.03)


def test_sleeve_has_a_cuff_and_cloth(ctx):
    p = _params(sleeve=True, cuff=0.06, length=0.2, sleeve_scale=1.3)
    fm = synth_forearm.forearm_mesh(ctx.rest_vertices, ctx.rest_joints[0], ctx.wrist, p)
    x = fm.vertices[:, 0]
    assert fm.cloth.any() and (~fm.cloth).any()
    # Cloth only beyond the cuff, skin only before it (distance along -x from the loop).
    loop_x = ctx.rest_vertices[ctx.wrist.loop, 0].mean()
    assert (loop_x - x[fm.cloth]).min() == pytest.approx(0.06, abs=1e-6)
    assert (loop_x - x[~fm.cloth]).max() == pytest.approx(0.06, abs=1e-6)
    # The cuff: the arm's last ring, the sleeve's copy of it, and 2 mm on a ring 1.3x wider.
    at = np.abs(loop_x - x - 0.06) < 1e-6
    out = np.abs(loop_x - x - 0.062) < 1e-6
    assert (at & fm.cloth).sum() == (at & ~fm.cloth).sum() == out.sum()
    c = fm.vertices[at, 1:].mean(0)
    r_in = np.linalg.norm(fm.vertices[at & ~fm.cloth, 1:] - c, axis=1)
    r_out = np.linalg.norm(fm.vertices[out, 1:] - c, axis=1)
    np.testing.assert_allclose(r_out.mean() / r_in.mean(), 1.3, rtol=0.1)


def _sample(ctx, forearm_prob, seed=3):
    cfg = synth_scene.SynthConfig(size=96, forearm_prob=forearm_prob, occluder_prob=0.0)
    rng = synth_scene.sample_rng(seed, 0, 0)
    g = synth_scene.draw_geometry(ctx, cfg, rng)
    v, j = ctx.pose(g["pose"][None], g["shape"][None])
    return synth_compose.compose_sample(ctx, cfg, rng, g, v[0], j[0])


def test_annotations_do_not_change_and_the_forearm_is_drawn(ctx):
    for seed in (3, 4):
        a, b = _sample(ctx, 1.0, seed), _sample(ctx, 0.0, seed)
        assert a.params["forearm"] is not None and b.params["forearm"] is None
        np.testing.assert_array_equal(a.xyz, b.xyz)
        np.testing.assert_array_equal(a.verts, b.verts)
        np.testing.assert_array_equal(a.K, b.K)
        # The mask is the visible hand only: the forearm can hide hand pixels, never add any.
        assert not (a.mask & ~b.mask).any()
        assert a.mask.sum() > 0.6 * b.mask.sum()
        # Pixels away from the hand change: the forearm is drawn there.
        near = np.zeros_like(b.mask)
        ys, xs = np.nonzero(b.mask)
        near[max(ys.min() - 3, 0):ys.max() + 4, max(xs.min() - 3, 0):xs.max() + 4] = True
        changed = np.abs(a.rgb.astype(int) - b.rgb.astype(int)).sum(2) > 30
        assert (changed & ~near).sum() > 20


def test_forearm_hides_only_what_lies_behind_it(ctx):
    cfg = synth_scene.SynthConfig(size=128)
    for seed in range(4):
        rng = synth_scene.sample_rng(seed, 0, 7)
        g = synth_scene.draw_geometry(ctx, cfg, rng)
        # Forearm towards the camera: it passes in front of part of the hand.
        g["R"] = synth_scene.rot_y(np.pi / 2 + 0.4 * seed) @ ctx.back_R
        v, j = ctx.pose(g["pose"][None], g["shape"][None])
        v, j = v[0], j[0]
        v_rr = (v - j[0]) @ g["R"].T
        t = synth_scene.place_hand(v_rr, g["K"], g["fill"], g["centre"], 128)
        app = synth_compose.draw_appearance(ctx, replace(cfg, forearm_prob=1.0), rng)
        with_arm = synth_compose.render_hand_and_forearm(ctx, cfg, app, v, j, g["R"], t, g["K"])
        bare = synth_compose.render_hand_and_forearm(ctx, cfg, replace(app, forearm=None), v, j, g["R"], t, g["K"])
        (ra, box_a, hand_a), (rb, box_b, hand_b) = with_arm, bare
        full_a = np.zeros((128, 128), bool)
        full_b = np.zeros((128, 128), bool)
        depth_a = np.full((128, 128), np.inf, np.float32)
        depth_b = np.full((128, 128), np.inf, np.float32)
        full_a[box_a], full_b[box_b] = hand_a, hand_b
        depth_a[box_a], depth_b[box_b] = ra.depth, rb.depth
        fi_b = np.full((128, 128), -1)
        fi_b[box_b] = rb.fragments.face_index
        cap = np.zeros(128 * 128, bool)
        cap[fi_b.ravel() >= 0] = ctx.wrist.cap[fi_b.ravel()[fi_b.ravel() >= 0]]
        hidden = full_b & ~full_a & ~cap.reshape(128, 128)
        # Every hand pixel the forearm hides is one where the forearm is nearer the camera.
        assert (depth_a[hidden] < depth_b[hidden]).all()
        # Where the hand stays visible its depth is untouched.
        np.testing.assert_array_equal(depth_a[full_a], depth_b[full_a])
