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


# --------------------------------------------------------------------------- environment light, occlusion

from m3dhmr.render.shading import (Environment, sh_basis, sh_diffuse, sh_project_directional,  # noqa: E402
                                   sphere_occlusion)


def _random_env(rng):
    sh = rng.normal(0.0, 0.3, (9, 3))
    sh[0] = 2.5
    return Environment(sh=tuple(map(tuple, sh)), directions=((0.3, -0.5, -1.0), (-1.0, 0.2, 0.1)),
                       colors=((0.8, 0.7, 0.6), (0.2, 0.3, 0.4)), specular=0.3, shininess=12.0, wrap=0.3,
                       exposure=0.9)


def shade_env_naive(frags, v, f, colors, env, normals, occlusion=None, material=None):
    h, w = frags.mask.shape
    out = np.zeros((h, w, 3))
    sh = np.asarray(env.sh)
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
            if n @ view < 0:
                n = -n
            ao = 1.0 if occlusion is None else sum(b[k] * occlusion[f[fi, k]] for k in range(3))
            if material is None:
                alb, ks = sum(b[k] * colors[f[fi, k]] ** 2.2 for k in range(3)), env.specular
            else:
                alb, ks = material[y, x, :3].astype(np.float64), env.specular * material[y, x, 3]
            e = np.maximum(sh_diffuse(sh, n[None])[0], 0) * ao
            spec = np.zeros(3)
            for d, c in zip(env.directions, env.colors):
                d = np.array(d) / np.linalg.norm(d)
                nl = n @ d
                e = e + max(nl + env.wrap, 0) / (1 + env.wrap) * np.sqrt(ao) * np.array(c)
                hv = (d + view) / np.linalg.norm(d + view)
                if nl > 0 and n @ hv > 0:
                    spec += ks * (n @ hv) ** env.shininess * np.sqrt(ao) * np.array(c)
            out[y, x] = np.clip(env.exposure * (alb * e + spec), 0, 1) ** (1 / 2.2)
    return out


def test_sh_constant_environment_is_the_albedo_and_linear_band_hand_computed():
    n = np.random.default_rng(0).normal(size=(50, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    c = np.array([0.2, 0.5, 1.5])
    const = np.zeros((9, 3))
    const[0] = c / 0.282095                     # radiance c in every direction
    np.testing.assert_allclose(sh_diffuse(const, n), np.broadcast_to(c, (50, 3)), rtol=1e-6)
    # Radiance (u . w): the cosine-weighted hemisphere integral over pi is exactly 2/3 (u . n)
    # (a linear radiance lies in the l = 1 band, which order-2 SH holds exactly).
    u = np.array([0.0, -1.0, 0.0])
    lin = np.zeros((9, 3))
    lin[[3, 1, 2]] = u[:, None] * (4 * np.pi / 3 * 0.488603)
    np.testing.assert_allclose(sh_diffuse(lin, n), np.repeat((2 / 3 * n @ u)[:, None], 3, 1), atol=1e-5)
    # A distant light projected to SH, evaluated at its own direction: sum_l (2l + 1) / (4 pi)
    # (the addition theorem), for any direction length.
    d = sh_project_directional(np.array([0, 0, -2.0]), np.ones(3))
    np.testing.assert_allclose(sh_basis(np.array([[0, 0, -1.0]]))[0] @ d[:, 0], (1 + 3 + 5) / (4 * np.pi), rtol=1e-4)
    # Rendered: a uniform environment of radiance 1, no lights, leaves the albedo unchanged.
    v, f = _sphere()
    r = render_mesh(v, f, K, (24, 32), colors=(0.6, 0.4, 0.2), environment=Environment())
    np.testing.assert_allclose(r.rgb[r.mask], np.broadcast_to([0.6, 0.4, 0.2], (r.mask.sum(), 3)), atol=2e-3)


def test_environment_shading_matches_naive_loop():
    v, f = _sphere()
    rng = np.random.default_rng(1)
    colors = rng.uniform(0.2, 0.9, (len(v), 3))
    env = _random_env(rng)
    frags = rasterize(v, f, K, 24, 32)
    normals = vertex_normals(v, f)
    occ = rng.uniform(0.3, 1.0, len(v))
    out = shade(frags, v, f, colors, normals=normals, environment=env, occlusion=occ)
    ref = shade_env_naive(frags, v, f, colors, env, normals, occ)
    np.testing.assert_allclose(out[frags.mask], ref[frags.mask], atol=3e-3)  # the sRGB table: < 1/255
    mat = rng.uniform(0.0, 1.0, (24, 32, 4)).astype(np.float32)
    out = shade(frags, v, f, colors, normals=normals, environment=env, material=mat)
    ref = shade_env_naive(frags, v, f, colors, env, normals, material=mat)
    np.testing.assert_allclose(out[frags.mask], ref[frags.mask], atol=3e-3)
    with pytest.raises(ValueError, match="environment"):
        shade(frags, v, f, colors, occlusion=occ)
    with pytest.raises(ValueError, match="sh"):
        Environment(sh=((1.0, 1.0, 1.0),))
    with pytest.raises(ValueError, match="directions and colors"):
        Environment(directions=((0, 0, 1.0),))


def sphere_occlusion_naive(p, n, c, r):
    out = np.ones(len(p))
    for i in range(len(p)):
        for s in range(len(c)):
            w = c[s] - p[i]
            d = np.linalg.norm(w)
            if d <= r[s]:
                continue
            cos = n[i] @ w / d
            if cos > 0:
                out[i] *= 1 - min(r[s] ** 2 / d ** 2 * cos, 1)
    return out


def test_sphere_occlusion_naive_and_hand_computed():
    rng = np.random.default_rng(2)
    p = rng.normal(size=(40, 3))
    n = rng.normal(size=(40, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    c, r = rng.normal(size=(7, 3)), rng.uniform(0.1, 0.6, 7)
    ao = sphere_occlusion(p, n, c, r)
    np.testing.assert_allclose(ao, sphere_occlusion_naive(p, n, c, r), rtol=1e-10)
    assert ao.min() >= 0 and ao.max() <= 1
    # A sphere of radius 1 straight above at distance 2 covers (1/2)^2 of the cosine-weighted sky;
    # the same sphere below the horizon, or around the point, covers nothing.
    one = sphere_occlusion(np.zeros((3, 3)), np.array([[0, 0, 1.0], [0, 0, -1.0], [0, 0, 1.0]]),
                           np.array([[0, 0, 2.0]]), np.array([1.0]))
    np.testing.assert_allclose(one, [0.75, 1.0, 0.75])
    assert sphere_occlusion(np.zeros((1, 3)), np.array([[0, 0, 1.0]]), np.zeros((1, 3)), np.ones(1))[0] == 1.0


def test_hand_occlusion_darker_between_fingers_than_on_the_back():
    from m3dhmr.data import synth_scene

    ctx = synth_scene.HandContext()
    v = ctx.rest_vertices
    n = vertex_normals(v, ctx.faces)
    s = synth_scene.occluder_spheres(ctx, ctx.rest_joints)
    ao = sphere_occlusion(v, n, s[:, :3], s[:, 3])
    back = (ctx.skin.finger == 0) & (n[:, 1] > 0.9)             # back of the palm (+y dorsal)
    # Sides of the middle and ring fingers' first phalanges face a neighbouring finger.
    fing = np.isin(ctx.skin.finger, (3, 4)) & (np.abs(n[:, 2]) > 0.8) & (v[:, 0] < 0.13)
    assert back.sum() > 10 and fing.sum() > 5
    assert ao[back].mean() > 0.97
    assert ao[fing].mean() < ao[back].mean() - 0.1
