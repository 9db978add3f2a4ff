import numpy as np
import pytest

from m3dhmr.geometry.mesh_normals import face_normals
from m3dhmr.render.rasterizer import rasterize

K = np.array([[40.0, 0.0, 15.5], [0.0, 40.0, 11.5], [0.0, 0.0, 1.0]])


def _sphere(radius=0.1, z=0.5, subdivisions=2):
    import trimesh

    m = trimesh.creation.icosphere(subdivisions, radius=radius)
    return np.asarray(m.vertices) + [0.02, -0.01, z], np.asarray(m.faces, dtype=np.int64)


def rasterize_naive(vertices, faces, K, h, w):
    """Loop over pixels and faces: point-in-triangle on pixel centres, nearest wins."""
    p = vertices @ K.T
    uv = p[:, :2] / p[:, 2:]
    face_index = np.full((h, w), -1)
    depth = np.full((h, w), np.inf)
    for y in range(h):
        for x in range(w):
            for f, (a, b, c) in enumerate(faces):
                (x0, y0), (x1, y1), (x2, y2) = uv[a], uv[b], uv[c]
                area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
                if area == 0:
                    continue
                w0 = ((x1 - x) * (y2 - y) - (y1 - y) * (x2 - x)) / area
                w1 = ((x2 - x) * (y0 - y) - (y2 - y) * (x0 - x)) / area
                w2 = 1 - w0 - w1
                if min(w0, w1, w2) < 0:
                    continue
                d = 1.0 / (w0 / vertices[a, 2] + w1 / vertices[b, 2] + w2 / vertices[c, 2])
                if d < depth[y, x]:
                    depth[y, x], face_index[y, x] = d, f
    return face_index, depth


def test_matches_naive_reference_silhouette_and_faces():
    v, f = _sphere(subdivisions=1)  # 80 faces: the pure-Python reference stays fast
    h, w = 24, 32
    fi_ref, depth_ref = rasterize_naive(v, f, K, h, w)
    frags = rasterize(v, f, K, h, w)
    ref_mask = fi_ref >= 0
    iou = (frags.mask & ref_mask).sum() / (frags.mask | ref_mask).sum()
    assert iou >= 0.98
    assert ref_mask.sum() > 100  # the test image is actually covered
    same_face = (frags.face_index == fi_ref)[ref_mask].mean()
    assert same_face >= 0.98
    both = frags.mask & ref_mask
    np.testing.assert_allclose(frags.depth[both], depth_ref[both], rtol=1e-5)
    assert np.all(np.isinf(frags.depth[~frags.mask]))
    assert np.all(frags.bary[~frags.mask] == 0)


def test_zbuffer_picks_nearer_triangle_hand_computed():
    # Two triangles covering the principal point (15.5, 11.5 -> pixel (15, 11) centre offset 0.5),
    # the far one at z=2, the near one at z=1; both orders must give the near one.
    Kc = np.array([[10.0, 0, 4.0], [0, 10.0, 4.0], [0, 0, 1.0]])
    near = np.array([[-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [0.0, 1.0, 1.0]])
    far = near * 2.0  # same projection, twice as far
    v = np.concatenate([far, near])
    for faces, expect in (([[0, 1, 2], [3, 4, 5]], 1), ([[3, 4, 5], [0, 1, 2]], 0)):
        fr = rasterize(v, np.array(faces), Kc, 9, 9)
        assert fr.face_index[4, 4] == expect
        assert fr.depth[4, 4] == pytest.approx(1.0)
        # Pixel (4, 4) is the principal point: x=y=0 on the plane z=1 -> weights (1/4, 1/4, 1/2).
        np.testing.assert_allclose(fr.bary[4, 4], [0.25, 0.25, 0.5], atol=1e-6)


def test_perspective_correct_barycentrics_reproject_to_pixel_centre():
    # A tilted triangle: interpolating the 3D vertices with the weights must give a
    # point on the triangle that projects exactly onto each covered pixel centre.
    v = np.array([[-0.3, -0.2, 0.6], [0.4, -0.1, 1.2], [0.0, 0.3, 0.9]])
    f = np.array([[0, 1, 2]])
    fr = rasterize(v, f, K, 24, 32)
    ys, xs = np.nonzero(fr.mask)
    assert len(ys) > 20
    p = fr.bary[ys, xs] @ v
    uv = (p @ K.T)[:, :2] / p[:, 2:]
    np.testing.assert_allclose(uv, np.stack([xs, ys], 1), atol=1e-3)
    np.testing.assert_allclose(fr.depth[ys, xs], p[:, 2], rtol=1e-5)


def test_near_plane_partial_outside_and_backfaces():
    f = np.array([[0, 1, 2]])
    big = np.array([[-10.0, -10.0, 1.0], [10.0, -10.0, 1.0], [0.0, 10.0, 1.0]])
    assert rasterize(big, f, K, 24, 32).mask.all()  # larger than the image: clipped to it
    behind = big.copy()
    behind[0, 2] = -0.5
    assert not rasterize(behind, f, K, 24, 32).mask.any()  # crosses the near plane: skipped
    # big's normal (b-a)x(c-a) points to +z, away from the camera: a back face.
    assert face_normals(big, f)[0, 2] > 0
    assert not rasterize(big, f, K, 24, 32, cull_backfaces=True).mask.any()
    assert rasterize(big, f[:, ::-1], K, 24, 32, cull_backfaces=True).mask.all()


def test_empty_and_bad_inputs():
    fr = rasterize(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), K, 4, 5)
    assert fr.face_index.shape == (4, 5) and not fr.mask.any()
    v, f = _sphere()
    with pytest.raises(ValueError, match=r"vertices must have shape \(V, 3\)"):
        rasterize(v[:, :2], f, K, 8, 8)
    with pytest.raises(ValueError, match="faces"):
        rasterize(v, f.astype(float), K, 8, 8)
    with pytest.raises(ValueError, match="outside"):
        rasterize(v, f + len(v), K, 8, 8)
    with pytest.raises(ValueError, match="K must have shape"):
        rasterize(v, f, K[:2], 8, 8)
    bad = v.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rasterize(bad, f, K, 8, 8)
    with pytest.raises(ValueError, match="size"):
        rasterize(v, f, K, 0, 8)
