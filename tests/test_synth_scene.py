"""One sample's scene (:mod:`m3dhmr.data.synth_scene`): orientations, placement, skin."""

import numpy as np
import pytest

from m3dhmr.data import synth_scene


def _project(xyz, K):
    p = xyz @ np.swapaxes(K, -1, -2)
    return p[..., :2] / p[..., 2:]


def test_canonical_rotations_and_placement():
    rng = np.random.default_rng(0)
    joints = rng.normal(0, 0.01, (21, 3))
    joints[0], joints[5], joints[9], joints[17] = [0, 0, 0], [0.03, 0.09, 0], [0, 0.1, 0], [-0.03, 0.08, 0]
    E = synth_scene.hand_frame(joints)
    np.testing.assert_allclose(E.T @ E, np.eye(3), atol=1e-12)
    assert np.linalg.det(E) == pytest.approx(1.0)
    # Fingers along +y, index at +x: the right palm faces -z... hand-computed: across x up = x x y = +z.
    np.testing.assert_allclose(E[:, 2], [0, 0, 1], atol=1e-12)
    palm_R, back_R = synth_scene.canonical_rotations(joints)
    np.testing.assert_allclose(palm_R @ E[:, 2], [0, 0, -1], atol=1e-12)  # palm normal towards the camera
    np.testing.assert_allclose(back_R @ E[:, 2], [0, 0, 1], atol=1e-12)
    for R in (palm_R, back_R):
        np.testing.assert_allclose(R @ E[:, 1], [0, -1, 0], atol=1e-12)  # fingers up the image
        assert np.linalg.det(R) == pytest.approx(1.0)
    verts = rng.normal(0, 0.05, (200, 3))
    K = np.array([[500.0, 0, 111.5], [0, 500.0, 112.0], [0, 0, 1]])
    t = synth_scene.place_hand(verts, K, 0.5, np.array([100.0, 120.0]), 224)
    uv = _project(verts + t, K)
    lo, hi = uv.min(0), uv.max(0)
    np.testing.assert_allclose((lo + hi) / 2, [100, 120], atol=0.5)
    assert np.ptp(uv, axis=0).max() == pytest.approx(0.5 * 224, rel=0.02)


def test_projected_box_matches_numpy():
    v = np.random.default_rng(2).normal(0, 0.05, (30, 3))
    box = synth_scene.projected_box(v, 0.01, -0.02, 0.5)
    uv = (v[:, :2] + [0.01, -0.02]) / (v[:, 2:] + 0.5)
    np.testing.assert_allclose(box, [*uv.min(0), *uv.max(0)], rtol=1e-14)


def test_skin_tones_span_light_to_dark_and_light_is_bright():
    ctx = synth_scene.HandContext()
    rng = np.random.default_rng(0)
    tones = np.array([synth_scene.sample_vertex_skin(ctx, rng)[1] for _ in range(400)])
    lum = tones @ [0.299, 0.587, 0.114]
    assert lum.max() > 0.8 and lum.min() < 0.3  # both ends of SKIN_TONES occur
    assert 0.45 < np.mean(lum > 0.6) < 0.8      # lighter tones somewhat more often
    # Hue stays skin-like: red > green > blue for every tone.
    assert np.all((tones[:, 0] > tones[:, 1]) & (tones[:, 1] > tones[:, 2]))
    # Lighting facing the camera: ambient + diffuse * n.l with n = (0, 0, -1) averages ~1.
    lights = [synth_scene.sample_light(rng) for _ in range(200)]
    gain = [lt.ambient + lt.diffuse * max(-lt.direction[2], 0.0) for lt in lights]
    assert 0.9 < np.mean(gain) < 1.2
