import numpy as np
import pytest

from m3dhmr.render.rasterizer import rasterize
from m3dhmr.render.shading import LightSettings, render_mesh, shade, to_uint8, vertex_normals

K = np.array([[40.0, 0.0, 15.5], [0.0, 40.0, 11.5], [0.0, 0.0, 1.0]])


def _sphere():
    import trimesh

    m = trimesh.creation.icosphere(2, radius=0.1)
    return np.asarray(m.vertices) + [0.02, -0.01, 0.5], np.asarray(m.faces, dtype=np.int64)


def vertex_normals_naive(v, f):
    out = np.zeros_like(v)
    for a, b, c in f:
        n = np.cross(v[b] - v[a], v[c] - v[a])
        for i in (a, b, c):
            out[i] += n
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def shade_naive(frags, v, f, colors, light, normals, two_sided=True):
    h, w = frags.mask.shape
    out = np.zeros((h, w, 3))
    l_dir = np.array(light.direction) / np.linalg.norm(light.direction)
    for y in range(h):
        for x in range(w):
            fi = frags.face_index[y, x]
            if fi < 0:
                continue
            b = frags.bary[y, x].astype(np.float64)
            n = sum(b[k] * normals[f[fi, k]] for k in range(3))
            n /= np.linalg.norm(n)
            p = sum(b[k] * v[f[fi, k]] for k in range(3))
            view = -p / np.linalg.norm(p)
            if two_sided and n @ view < 0:
                n = -n
            lam = max(n @ l_dir, 0.0)
            hv = (l_dir + view) / np.linalg.norm(l_dir + view)
            spec = max(n @ hv, 0.0) ** light.shininess if lam > 0 else 0.0
            alb = sum(b[k] * colors[f[fi, k]] for k in range(3))
            out[y, x] = np.clip(alb * (light.ambient + light.diffuse * lam) + light.specular * spec, 0, 1)
    return out


def test_vertex_normals_vs_naive_and_tiny_case():
    v, f = _sphere()
    np.testing.assert_allclose(vertex_normals(v, f), vertex_normals_naive(v, f), atol=1e-12)
    tri = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 5, 5]])
    n = vertex_normals(tri, np.array([[0, 1, 2]]))
    np.testing.assert_allclose(n, [[0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, 0]])  # unused vertex: zero


def test_shade_matches_naive_loop():
    v, f = _sphere()
    rng = np.random.default_rng(0)
    colors = rng.uniform(0.2, 0.9, (len(v), 3))
    light = LightSettings(direction=(0.5, -0.3, -1.0), ambient=0.3, diffuse=0.6, specular=0.4, shininess=12.0)
    frags = rasterize(v, f, K, 24, 32)
    normals = vertex_normals(v, f)
    out = shade(frags, v, f, colors, light, normals=normals)
    ref = shade_naive(frags, v, f, colors, light, normals)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert np.all(out[~frags.mask] == 0)


def test_flat_triangle_hand_computed_and_two_sided():
    # Triangle facing the camera (normal -z), light from the camera (0, 0, -1):
    # n.l = 1 everywhere; at the principal point v = l so n.h = 1 too.
    Kc = np.array([[10.0, 0, 4.0], [0, 10.0, 4.0], [0, 0, 1.0]])
    v = np.array([[-1.0, -1.0, 1.0], [0.0, 1.0, 1.0], [1.0, -1.0, 1.0]])
    f = np.array([[0, 1, 2]])
    light = LightSettings(direction=(0, 0, -1), ambient=0.2, diffuse=0.5, specular=0.1, shininess=8)
    r = render_mesh(v, f, Kc, 9, colors=(0.5, 0.4, 0.2), light=light)
    np.testing.assert_allclose(r.rgb[4, 4], np.array([0.5, 0.4, 0.2]) * 0.7 + 0.1, atol=1e-6)
    assert r.mask[4, 4] and r.depth[4, 4] == pytest.approx(1.0)
    # Reversed winding: two-sided shading flips the normal -> same colour.
    r2 = render_mesh(v, f[:, ::-1], Kc, 9, colors=(0.5, 0.4, 0.2), light=light)
    both = r.mask & r2.mask  # pixel centres exactly on an edge may round either way
    assert both.sum() >= 0.95 * r.mask.sum()
    np.testing.assert_allclose(r2.rgb[both], r.rgb[both], atol=1e-6)
    # One-sided: the normal faces away from the light, ambient only.
    frags = rasterize(v, f[:, ::-1], Kc, 9, 9)
    one = shade(frags, v, f[:, ::-1], (0.5, 0.4, 0.2), light, two_sided=False)
    np.testing.assert_allclose(one[4, 4], np.array([0.5, 0.4, 0.2]) * 0.2, atol=1e-6)


def test_render_over_background_alpha_and_uint8():
    v, f = _sphere()
    bg = np.full((24, 32, 3), 200, dtype=np.uint8)
    r = render_mesh(v, f, K, (24, 32), colors=(1.0, 0.0, 0.0), background=bg, alpha=0.5)
    assert r.rgb.dtype == np.float32 and r.rgb.shape == (24, 32, 3)
    np.testing.assert_allclose(r.rgb[~r.mask], 200 / 255, atol=1e-6)
    full = render_mesh(v, f, K, (24, 32), colors=(1.0, 0.0, 0.0))
    np.testing.assert_allclose(r.rgb[r.mask], 0.5 * full.rgb[r.mask] + 0.5 * 200 / 255, atol=1e-6)
    u8 = r.rgb_uint8()
    assert u8.dtype == np.uint8 and u8[0, 0, 0] == 200
    np.testing.assert_array_equal(to_uint8(np.array([[-1.0, 0.5, 2.0]])), [[0, 128, 255]])


def test_bad_inputs():
    v, f = _sphere()
    with pytest.raises(ValueError, match="colors"):
        render_mesh(v, f, K, 8, colors=np.ones((3, 3)))
    with pytest.raises(ValueError, match="background"):
        render_mesh(v, f, K, 8, background=np.zeros((9, 8, 3)))
    with pytest.raises(ValueError, match="alpha"):
        render_mesh(v, f, K, 8, alpha=2.0)
    with pytest.raises(ValueError, match="direction"):
        LightSettings(direction=(0, 0, 0))
    with pytest.raises(ValueError, match="ambient"):
        LightSettings(ambient=-1)


def test_vertex_normals_bad_inputs_and_empty():
    v, f = _sphere()
    with pytest.raises(ValueError, match=r"\(V, 3\)"):
        vertex_normals(v[:, :2], f)
    with pytest.raises(ValueError, match="outside"):
        vertex_normals(v, f + len(v))
    with pytest.raises(ValueError, match="integer"):
        vertex_normals(v, f.astype(float))
    np.testing.assert_array_equal(vertex_normals(v, np.zeros((0, 3), np.int64)), np.zeros_like(v))
