"""Face and vertex normals (:mod:`m3dhmr.geometry.mesh_normals`): naive loop references,
hand-computed cases, degenerate and empty inputs."""

import numpy as np
import pytest
import torch

from m3dhmr.geometry.mesh_normals import face_normals, vertex_normals
from mesh_shapes import icosphere

TRI = np.array([[0.0, 0, 0], [2, 0, 0], [0, 3, 0]])   # counter-clockwise seen from +z, area 3


def face_normals_naive(vertices, faces):
    out = np.zeros((len(faces), 3))
    for f, (a, b, c) in enumerate(faces):
        e1, e2 = vertices[b] - vertices[a], vertices[c] - vertices[a]
        out[f] = [e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]]
    return out


def vertex_normals_naive(vertices, faces):
    fn = face_normals_naive(vertices, faces)
    out = np.zeros_like(vertices)
    for v in range(len(vertices)):
        s = sum((fn[f] for f in range(len(faces)) if v in faces[f]), np.zeros(3))
        n = np.linalg.norm(s)
        out[v] = s / n if n > 0 else 0.0
    return out


def _mesh(seed=0):
    v, f = icosphere(1)
    return v + np.random.default_rng(seed).normal(0, 0.05, v.shape), f


def test_face_normals_hand_computed():
    f = np.array([[0, 1, 2]])
    np.testing.assert_array_equal(face_normals(TRI, f), [[0, 0, 6]])            # length = 2 * area
    np.testing.assert_array_equal(face_normals(TRI, f[:, ::-1].copy()), [[0, 0, -6]])
    np.testing.assert_array_equal(face_normals(TRI, f, unit=True), [[0, 0, 1]])
    t = face_normals(torch.from_numpy(TRI), torch.from_numpy(f), unit=True)
    assert isinstance(t, torch.Tensor)
    np.testing.assert_array_equal(t.numpy(), [[0, 0, 1]])


def test_face_normals_match_the_loop_batched_numpy_and_torch():
    v, f = _mesh()
    batch = np.stack([v, 2 * v[::-1].copy(), v + 1])                           # (B, V, 3)
    ref = np.stack([face_normals_naive(b, f) for b in batch])                   # (B, F, 3)
    np.testing.assert_allclose(face_normals(batch, f), ref, rtol=1e-12, atol=1e-15)
    unit_ref = ref / np.linalg.norm(ref, axis=-1, keepdims=True)
    np.testing.assert_allclose(face_normals(batch, f, unit=True), unit_ref, atol=1e-12)
    tv, tf = torch.from_numpy(batch), torch.from_numpy(f)
    np.testing.assert_allclose(face_normals(tv, tf).numpy(), ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(face_normals(tv, tf, unit=True).numpy(), unit_ref, atol=1e-12)
    np.testing.assert_allclose(face_normals(tv.float(), tf, unit=True).double().numpy(), unit_ref, atol=1e-5)
    # Leading dimensions broadcast: (2, 3, V, 3) -> (2, 3, F, 3).
    assert face_normals(np.stack([batch, batch]), f).shape == (2, 3, len(f), 3)


def test_face_normals_degenerate_empty_and_gradient():
    line = np.array([[0.0, 0, 0], [1, 1, 1], [2, 2, 2]])
    f = np.array([[0, 1, 2]])
    np.testing.assert_array_equal(face_normals(line, f), [[0, 0, 0]])
    np.testing.assert_array_equal(face_normals(line, f, unit=True), [[0, 0, 0]])  # eps clamp: no NaN
    assert face_normals(TRI, np.zeros((0, 3), np.int64)).shape == (0, 3)
    v, f = _mesh()
    x = torch.from_numpy(v[None]).requires_grad_()
    tf = torch.from_numpy(f)
    torch.autograd.gradcheck(lambda y: face_normals(y, tf, unit=True), (x,))


def test_vertex_normals_match_the_loop_and_sphere():
    v, f = _mesh(1)
    np.testing.assert_allclose(vertex_normals(v, f), vertex_normals_naive(v, f), atol=1e-12)
    sums = vertex_normals(v, f, unit=False)
    fn = face_normals_naive(v, f)
    np.testing.assert_allclose(sums[f[0, 0]], fn[(f == f[0, 0]).any(1)].sum(0), atol=1e-15)
    # A fine sphere: the vertex normals are close to the radial directions (uneven areas tilt them).
    s, sf = icosphere(3)
    np.testing.assert_allclose(vertex_normals(s, sf), s / np.linalg.norm(s, axis=1, keepdims=True), atol=2e-2)


def test_vertex_normals_hand_computed_unused_degenerate_and_fallback():
    # Two triangles of a unit square folded 90 degrees along x = 0..1 at y = 0.
    v = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [5, 5, 5]])
    f = np.array([[0, 1, 2], [0, 3, 1]])                                        # normals +z and +y, area 1/2 each
    n = vertex_normals(v, f)
    h = 1 / np.sqrt(2)
    np.testing.assert_allclose(n, [[0, h, h], [0, h, h], [0, 0, 1], [0, 1, 0], [0, 0, 0]], atol=1e-15)
    np.testing.assert_allclose(vertex_normals(v, f, unit=False), [[0, 1, 1], [0, 1, 1], [0, 0, 1], [0, 1, 0],
                                                                   [0, 0, 0]], atol=1e-15)
    fb = vertex_normals(v, f, min_length=1e-20, fallback=(0.0, 0.0, 1.0))
    np.testing.assert_array_equal(fb[4], [0, 0, 1])                             # vertex 4 is in no face
    assert vertex_normals(v, np.zeros((0, 3), np.int64)).tolist() == np.zeros_like(v).tolist()
    assert vertex_normals(v.astype(np.float32), f).dtype == np.float32


def test_vertex_normals_agree_with_the_renderer_to_rounding():
    from m3dhmr.render.shading import vertex_normals as render_normals

    v, f = _mesh(2)
    np.testing.assert_allclose(vertex_normals(v, f), render_normals(v, f), rtol=0, atol=1e-14)


@pytest.mark.parametrize("flip", [False, True])
def test_vertex_normals_point_outwards_on_a_closed_mesh(flip):
    s, sf = icosphere(2)
    sf = sf[:, ::-1].copy() if flip else sf
    assert (np.sign((vertex_normals(s, sf) * s).sum(1)) == (-1 if flip else 1)).all()
