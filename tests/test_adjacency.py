import numpy as np

from m3dhmr.mesh import (boundary_edges, boundary_vertices, edges, half_edges, ordered_one_rings,
                         vertex_adjacency)
from mesh_shapes import grid, icosphere, open_disk, tetrahedron


def _naive_edges(f):
    out = set()
    for a, b, c in f.tolist():
        for x, y in ((a, b), (b, c), (c, a)):
            out.add((min(x, y), max(x, y)))
    return sorted(out)


def test_edges_match_naive_loop():
    for v, f in (tetrahedron(), grid(3, 2), icosphere(1), open_disk(2)):
        assert [tuple(e) for e in edges(f).tolist()] == _naive_edges(f)
    assert half_edges(tetrahedron()[1]).shape == (12, 2)


def test_euler_characteristic():
    for (v, f), chi in ((tetrahedron(), 2), (icosphere(2), 2), (grid(4), 1), (open_disk(2), 1)):
        assert v.shape[0] - edges(f).shape[0] + f.shape[0] == chi


def test_boundary_of_grid():
    v, f = grid(2)  # 3 x 3 vertices, only the centre (4) is interior
    expected = np.ones(9, dtype=bool)
    expected[4] = False
    np.testing.assert_array_equal(boundary_vertices(f, 9), expected)
    assert boundary_edges(f).shape == (8, 2)
    assert boundary_edges(icosphere(1)[1]).shape == (0, 2)


def test_vertex_adjacency_symmetric_and_matches_edges():
    v, f = open_disk(2)
    adj = vertex_adjacency(f, v.shape[0])
    assert (adj != adj.T).nnz == 0
    assert adj.nnz == 2 * edges(f).shape[0]
    naive = np.zeros((v.shape[0],) * 2)
    for a, b in _naive_edges(f):
        naive[a, b] = naive[b, a] = 1
    np.testing.assert_array_equal(adj.toarray(), naive)


def _face_set(f):
    s = set()
    for a, b, c in f.tolist():
        s |= {(a, b, c), (b, c, a), (c, a, b)}
    return s


def test_one_rings_follow_face_winding():
    for v, f in (icosphere(2), open_disk(2), grid(3)):
        rings = ordered_one_rings(f, v.shape[0])
        faces = _face_set(f)
        bnd = boundary_vertices(f, v.shape[0])
        adj = vertex_adjacency(f, v.shape[0]).tolil().rows
        for c, ring in enumerate(rings.neighbours):
            assert sorted(ring) == adj[c]
            assert rings.closed[c] == (not bnd[c])
            pairs = list(zip(ring, ring[1:] + ring[:1])) if rings.closed[c] else list(zip(ring, ring[1:]))
            # Consecutive neighbours a, b form the counter-clockwise face (c, a, b).
            assert all((c, a, b) in faces for a, b in pairs)


def test_one_ring_hand_checked_grid():
    v, f = grid(2)
    rings = ordered_one_rings(f, 9)
    assert rings.neighbours[4] == [0, 1, 5, 8, 7, 3]  # counter-clockwise from (0, 0)
    assert rings.neighbours[0] == [1, 4, 3]           # boundary: fan from x-axis to y-axis
    assert rings.neighbours[8] == [7, 4, 5]


def test_isolated_vertex_has_empty_ring():
    v, f = tetrahedron()
    rings = ordered_one_rings(f, 5)
    assert rings.neighbours[4] == [] and not rings.closed[4]
