import numpy as np
import pytest

from m3dhmr.mesh import region_spiral_indices, spiral_indices, vertex_adjacency
from m3dhmr.mesh.regions import make_regions_connected
from mesh_shapes import grid, icosphere, open_disk, tetrahedron


def _bfs_rings(adj, v, allowed=None):
    """Naive breadth-first rings of v (sets), inside ``allowed`` if given."""
    ok = (lambda u: True) if allowed is None else (lambda u: allowed[u] == allowed[v])
    seen, rings, frontier = {v}, [{v}], {v}
    while True:
        nxt = {w for u in frontier for w in adj[u] if w not in seen and ok(w)}
        if not nxt:
            return rings
        seen |= nxt
        rings.append(nxt)
        frontier = nxt


@pytest.mark.parametrize("mesh", [icosphere(2), open_disk(2), grid(5, 4)])
def test_rings_match_breadth_first_reference(mesh):
    v, f = mesh
    n = v.shape[0]
    adj = vertex_adjacency(f, n).tolil().rows
    length = 40
    s = spiral_indices(f, n, length)
    assert s.shape == (n, length) and s.dtype == np.int64
    for c in range(n):
        pos = 0
        for ring in _bfs_rings(adj, c):
            take = min(len(ring), length - pos)
            got = s[c, pos:pos + take]
            assert set(got.tolist()) <= ring and len(set(got.tolist())) == take
            pos += take
            if pos == length:
                break


def test_tetrahedron_hand_checked():
    _, f = tetrahedron()
    s = spiral_indices(f, 4, 9)
    # Ring of 0 counter-clockwise from its smallest neighbour: 1 -> 3 -> 2; then the
    # documented fallback repeats the sequence.
    np.testing.assert_array_equal(s[0], [0, 1, 3, 2, 0, 1, 3, 2, 0])
    assert all(sorted(row[:4].tolist()) == [0, 1, 2, 3] for row in s)


def test_grid_hand_checked():
    _, f = grid(2)
    s = spiral_indices(f, 9, 9)
    np.testing.assert_array_equal(s[4, :7], [4, 0, 1, 5, 8, 7, 3])
    # Corner: ring 1 from the x-axis to the y-axis, ring 2 likewise.
    np.testing.assert_array_equal(s[0], [0, 1, 4, 3, 2, 5, 8, 7, 6])


def test_dilation_takes_every_dth_element():
    v, f = icosphere(2)
    full = spiral_indices(f, v.shape[0], 27)
    np.testing.assert_array_equal(spiral_indices(f, v.shape[0], 9, dilation=3), full[:, ::3])
    np.testing.assert_array_equal(spiral_indices(f, v.shape[0], 9, dilation=1), full[:, :9])


def test_icosphere_rings_are_rotationally_consistent():
    v, f = icosphere(2)
    n = v.shape[0]
    adj = vertex_adjacency(f, n).tolil().rows
    faces = {tuple(np.roll(t, k)) for t in f.tolist() for k in range(3)}
    s = spiral_indices(f, n, 1 + 6 + 12)
    for c in range(n):
        k = len(adj[c])
        ring1 = s[c, 1:1 + k].tolist()
        ring2 = s[c, 1 + k:1 + k + 2 * k].tolist()  # a valence-k vertex has 2k second neighbours here
        assert all((c, a, b) in faces for a, b in zip(ring1, ring1[1:] + ring1[:1]))
        if len(ring2) == 2 * k:
            assert all(b in adj[a] for a, b in zip(ring2, ring2[1:] + ring2[:1]))


def test_restricted_spirals_never_leave_their_set():
    v, f = open_disk(2)
    n = v.shape[0]
    mask = v[:, 0] > 0.1
    s = spiral_indices(f, n, 9, dilation=2, allowed=mask)
    assert (mask[s] == mask[:, None]).all()
    idx = np.flatnonzero(mask)
    np.testing.assert_array_equal(spiral_indices(f, n, 9, dilation=2, allowed=idx), s)
    # Restricted rings equal the naive BFS restricted to the set.
    adj = vertex_adjacency(f, n).tolil().rows
    for c in idx[:40]:
        rings = _bfs_rings(adj, c, mask)
        ring1 = rings[1] if len(rings) > 1 else set()
        full = spiral_indices(f, n, 1 + len(ring1), allowed=mask)[c]
        assert set(full[1:].tolist()) == ring1 or not ring1


def test_region_spirals_small_regions_fall_back_inside():
    v, f = grid(4)
    labels = np.zeros(v.shape[0], dtype=np.int64)
    labels[[0, 1, 5]] = 1   # a three-vertex region
    labels[24] = 2          # a one-vertex region
    s = region_spiral_indices(f, labels, 9, dilation=2)
    assert (labels[s] == labels[:, None]).all()
    np.testing.assert_array_equal(s[24], [24] * 9)
    assert set(s[0].tolist()) == {0, 1, 5}


def test_region_spirals_on_connected_regions_of_disk():
    v, f = open_disk(2)
    raw = (np.arctan2(v[:, 1], v[:, 0]) * 3 // np.pi).astype(np.int64) % 6
    labels = make_regions_connected(f, raw)
    s = region_spiral_indices(f, labels, 9, dilation=2)
    assert (labels[s] == labels[:, None]).all()
    np.testing.assert_array_equal(s[:, 0], np.arange(v.shape[0]))


def test_bad_arguments():
    v, f = tetrahedron()
    with pytest.raises(ValueError, match="outside"):
        spiral_indices(f, 3, 9)
    with pytest.raises(ValueError, match="length"):
        spiral_indices(f, 4, 0)
    with pytest.raises(ValueError, match="allowed mask"):
        spiral_indices(f, 4, 9, allowed=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="allowed indices"):
        spiral_indices(f, 4, 9, allowed=np.array([0, 9]))
    with pytest.raises(ValueError, match=r"\(F, 3\)"):
        spiral_indices(f[:, :2], 4, 9)
