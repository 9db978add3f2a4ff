import numpy as np
import pytest

from m3dhmr.mesh import (MeshError, build_hierarchy, check_triangle_mesh, closest_point_barycentric, decimate,
                         upsampling_matrix)
from mesh_shapes import icosphere, open_disk, tetrahedron


def _closest_on_segment(p, a, b):
    ab = b - a
    t = 0.0 if ab @ ab == 0 else np.clip((p - a) @ ab / (ab @ ab), 0.0, 1.0)
    return a + t * ab


def _closest_naive(p, tri):
    """Loop reference: in-plane projection if inside, else the best of the three edges."""
    a, b, c = tri
    n = np.cross(b - a, c - a)
    if n @ n > 1e-20:
        q = p - ((p - a) @ n) / (n @ n) * n
        m = np.stack([b - a, c - a], axis=1)
        uv = np.linalg.lstsq(m, q - a, rcond=None)[0]
        if uv.min() >= 0 and uv.sum() <= 1:
            return q
    cands = [_closest_on_segment(p, a, b), _closest_on_segment(p, b, c), _closest_on_segment(p, c, a)]
    return min(cands, key=lambda x: np.sum((x - p) ** 2))


def test_closest_point_matches_naive_loop():
    rng = np.random.default_rng(0)
    tris = rng.normal(size=(40, 3, 3))
    tris[5] = [[0, 0, 0], [1, 0, 0], [2, 0, 0]]  # degenerate (collinear) triangle
    pts = rng.normal(size=(60, 3)) * 1.5
    tri, bary, dist = closest_point_barycentric(pts, tris)
    assert (bary >= 0).all()
    np.testing.assert_allclose(bary.sum(1), 1.0, atol=1e-12)
    for i, p in enumerate(pts):
        d_naive = [np.linalg.norm(_closest_naive(p, t) - p) for t in tris]
        assert dist[i] == pytest.approx(min(d_naive), abs=1e-9)
        assert np.linalg.norm(bary[i] @ tris[tri[i]] - p) == pytest.approx(dist[i], abs=1e-12)


def test_closest_point_hand_checked():
    tri = np.array([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]])
    pts = np.array([[0.25, 0.25, 2.0], [-1.0, -1.0, 0.0], [2.0, 0.0, 0.0], [0.5, -1.0, 0.0], [1.0, 1.0, 0.0]])
    _, bary, dist = closest_point_barycentric(pts, tri)
    np.testing.assert_allclose(bary, [[0.5, 0.25, 0.25], [1, 0, 0], [0, 1, 0], [0.5, 0.5, 0], [0, 0.5, 0.5]],
                               atol=1e-12)
    np.testing.assert_allclose(dist, [2.0, np.sqrt(2), 1.0, 1.0, np.sqrt(0.5)])


@pytest.mark.parametrize("mesh", [icosphere(3), open_disk(3)])
def test_hierarchy_levels_and_matrices(mesh):
    v, f = mesh
    h = build_hierarchy(v, f, levels=4, factor=2.0)
    assert len(h.vertices) == 4 and len(h.up) == len(h.down) == 3
    for l in range(3):
        vf, vc = h.vertices[l], h.vertices[l + 1]
        check_triangle_mesh(vc, h.faces[l + 1])
        assert 0.4 < vc.shape[0] / vf.shape[0] < 0.6
        up, down = h.up[l], h.down[l]
        assert up.shape == (vf.shape[0], vc.shape[0]) and down.shape == (vc.shape[0], vf.shape[0])
        assert up.data.min() >= 0
        np.testing.assert_allclose(np.asarray(up.sum(1)).ravel(), 1.0, atol=1e-12)
        np.testing.assert_array_equal(vc, vf[h.source[l]])
        # Up-sampling the coarse level's own vertices reproduces the fine vertices under them.
        np.testing.assert_allclose((up @ vc)[h.source[l]], vf[h.source[l]], atol=1e-12)
        np.testing.assert_allclose((down @ up).toarray(), np.eye(vc.shape[0]), atol=1e-12)
        np.testing.assert_array_equal(down @ vf, vc)
        # Every fine vertex lands near its original place (coarse surface approximates it).
        err = np.linalg.norm(up @ vc - vf, axis=1)
        assert err.max() < 0.25 * np.ptp(vf, axis=0).max()


def test_upsampling_hand_checked():
    coarse_v = np.array([[0.0, 0, 0], [2, 0, 0], [0, 2, 0]])
    coarse_f = np.array([[0, 1, 2]])
    fine = np.array([[0.0, 0, 0], [1, 0, 0], [0.5, 0.5, 1.0]])
    up = upsampling_matrix(fine, coarse_v, coarse_f).toarray()
    np.testing.assert_allclose(up, [[1, 0, 0], [0.5, 0.5, 0], [0.5, 0.25, 0.25]])


def test_decimate_too_small_is_an_error():
    v, f = tetrahedron()
    with pytest.raises(MeshError, match="cannot decimate a 4-vertex mesh"):
        decimate(v, f, 2)


def test_single_level_and_bad_arguments():
    v, f = icosphere(1)
    h = build_hierarchy(v, f, levels=1)
    assert len(h.vertices) == 1 and h.up == () and h.down == ()
    with pytest.raises(ValueError, match="factor"):
        build_hierarchy(v, f, levels=2, factor=1.0)
    with pytest.raises(MeshError, match="non-manifold"):
        build_hierarchy(np.vstack([v, [[0, 0, 3.0]]]), np.vstack([f, [[f[0, 0], f[0, 1], len(v)]]]), levels=2)


def test_read_only_inputs_are_accepted():
    v, f = icosphere(2)
    v.setflags(write=False)
    f.setflags(write=False)
    cv, cf, src = decimate(v, f, 80)
    check_triangle_mesh(cv, cf)
    np.testing.assert_array_equal(cv, v[src])
