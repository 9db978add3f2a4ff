import logging

import numpy as np
import pytest

from m3dhmr.mesh import MeshError, check_triangle_mesh
from mesh_shapes import grid, icosphere, open_disk, tetrahedron


@pytest.mark.parametrize("mesh", [tetrahedron(), grid(3), icosphere(1), open_disk(2)])
def test_valid_meshes_pass(mesh):
    check_triangle_mesh(*mesh)


def _raises(v, f, *words, **kw):
    with pytest.raises(MeshError) as e:
        check_triangle_mesh(v, f, **kw)
    for w in words:
        assert w in str(e.value), str(e.value)
    return str(e.value)


def test_non_triangle_faces():
    v, _ = grid(1)
    _raises(v, np.array([[0, 1, 3, 2]]), "non-triangle", "(1, 4)")


def test_out_of_range_and_negative_indices():
    v, f = tetrahedron()
    bad = f.copy()
    bad[2, 1] = 7
    _raises(v, bad, "out of range", "face 2")
    bad = f.copy()
    bad[0, 0] = -1
    _raises(v, bad, "out of range", "face 0")


def test_non_manifold_edge():
    # Three triangles hinged on edge (0, 1).
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]], dtype=float)
    f = np.array([[0, 1, 2], [1, 0, 3], [0, 1, 4]])
    msg = _raises(v, f, "non-manifold edge")
    assert "[0, 1]" in msg


def test_inconsistent_orientation():
    v, f = grid(1)
    f = f.copy()
    f[1] = f[1, ::-1]
    _raises(v, f, "inconsistent face orientation")


def test_degenerate_and_duplicate_faces():
    v, f = grid(2)
    _raises(v, np.vstack([f, [[0, 0, 1]]]), "degenerate")
    _raises(v, np.vstack([f, f[3:4, [1, 2, 0]]]), "duplicate faces")


def test_empty_mesh():
    _raises(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), "empty mesh")
    v, _ = tetrahedron()
    _raises(v, np.zeros((0, 3), dtype=np.int64), "empty mesh")


def test_nan_and_inf_coordinates():
    v, f = tetrahedron()
    v = v.copy()
    v[2, 1] = np.nan
    _raises(v, f, "NaN", "[2]")
    v[2, 1] = np.inf
    _raises(v, f, "NaN/inf")


def test_bad_shapes_and_dtypes():
    v, f = tetrahedron()
    _raises(v[:, :2], f, "vertices", "(4, 2)")
    _raises(v, f.astype(float), "integer")


def test_unreferenced_vertices(caplog):
    v, f = tetrahedron()
    v = np.vstack([v, [[5.0, 5.0, 5.0]]])
    _raises(v, f, "unreferenced", "[4]")
    with caplog.at_level(logging.WARNING):
        check_triangle_mesh(v, f, unreferenced="warn")
    assert "unreferenced" in caplog.text
    check_triangle_mesh(v, f, unreferenced="ignore")


def test_name_appears_in_message():
    v, f = tetrahedron()
    _raises(v, f[:, :2], "hand.ply", name="hand.ply")


def test_mesh_arrays_convert_and_refuse_in_one_line():
    from m3dhmr.mesh.validate import face_array, mesh_arrays, vertex_array

    v, f = tetrahedron()
    v32, f32 = np.asarray(v, np.float32), np.asarray(f, np.int32)
    got_v, got_f = mesh_arrays(v32, f32)
    assert got_v.dtype == np.float64 and got_v.flags.c_contiguous and got_f.dtype == np.int64
    np.testing.assert_array_equal(got_v, v32)
    np.testing.assert_array_equal(got_f, f32)
    same = np.ascontiguousarray(v, np.float64)
    assert vertex_array(same) is same  # no copy when it is already what callers need
    assert vertex_array(np.zeros((0, 3))).shape == (0, 3)
    cases = [
        (lambda: vertex_array(np.zeros((4, 2))), r"^vertices must have shape \(V, 3\), got \(4, 2\)$"),
        (lambda: vertex_array(np.zeros((0, 3)), "hand", nonempty=True), r"^hand: vertices must have shape \(V, 3\) with V > 0"),
        (lambda: face_array(np.zeros((2, 3))), r"^faces must be an integer array of shape \(F, 3\), got float64 \(2, 3\)$"),
        (lambda: face_array(np.zeros((2, 4), int)), r"faces must be an integer array of shape \(F, 3\)"),
        (lambda: mesh_arrays(v, np.array([[0, 1, 4]])), r"^faces index vertices outside 0\.\.3$"),
        (lambda: mesh_arrays(v, np.array([[0, -1, 2]]), "m.ply"), r"^m\.ply: faces index vertices outside 0\.\.3$"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
