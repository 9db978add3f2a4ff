import numpy as np
import pytest

from m3dhmr.conventions import BONES, NUM_REGIONS, REGION_NAMES
from m3dhmr.mesh import (BONE_REGION, FREIHAND16_JOINT_REGION, MANO_JOINT_REGION, make_regions_connected,
                         region_pieces,
                         regions_from_joint_regressor, regions_from_joints, regions_from_skinning)
from m3dhmr.mesh.regions import point_segment_distance
from mesh_shapes import grid, naive_region_pieces, open_disk, toy_joints, toy_regressor


def test_bone_regions_pinned():
    assert REGION_NAMES[BONE_REGION[BONES.index((0, 1))]] == "palm"      # wrist -> thumb CMC
    assert REGION_NAMES[BONE_REGION[BONES.index((1, 2))]] == "thumb"     # thumb metacarpal
    assert REGION_NAMES[BONE_REGION[BONES.index((0, 5))]] == "palm"
    assert REGION_NAMES[BONE_REGION[BONES.index((5, 6))]] == "index"
    assert REGION_NAMES[BONE_REGION[BONES.index((19, 20))]] == "little"
    assert [REGION_NAMES[r] for r in MANO_JOINT_REGION[1:16:3]] == ["index", "middle", "little", "ring", "thumb"]
    assert [REGION_NAMES[r] for r in FREIHAND16_JOINT_REGION[1:16:3]] == list(REGION_NAMES[1:])


def test_regions_from_skinning_sums_weights_per_region():
    w = np.zeros((3, 16))
    w[0, 0] = 1.0                              # wrist only -> palm
    w[1, [0, 1, 2]] = [0.4, 0.3, 0.3]          # index sum 0.6 beats wrist 0.4
    w[2, [13, 4]] = [0.5, 0.5]                 # tie thumb/middle -> lower label (thumb)
    np.testing.assert_array_equal(regions_from_skinning(w, MANO_JOINT_REGION), [0, 2, 1])


def test_regions_from_skinning_matches_loop():
    w = np.random.default_rng(0).dirichlet(np.ones(16) * 0.3, size=50)
    got = regions_from_skinning(w, MANO_JOINT_REGION)
    for i in range(50):
        sums = [sum(w[i, j] for j in range(16) if MANO_JOINT_REGION[j] == r) for r in range(NUM_REGIONS)]
        assert got[i] == int(np.argmax(sums))


def test_regions_from_skinning_bad_input():
    with pytest.raises(ValueError, match="joint_region must be"):
        regions_from_skinning(np.ones((4, 16)), (0, 1))
    with pytest.raises(ValueError, match="0..5"):
        regions_from_skinning(np.ones((4, 2)), np.array([0, 7]))


def test_point_segment_distance_matches_loop():
    rng = np.random.default_rng(1)
    p, a, b = rng.normal(size=(20, 3)), rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    b[3] = a[3]  # zero-length segment
    d = point_segment_distance(p, a, b)
    for i in range(20):
        for j in range(7):
            ts = np.linspace(0, 1, 20001)
            ref = np.linalg.norm(a[j] + ts[:, None] * (b[j] - a[j]) - p[i], axis=1).min()
            assert d[i, j] == pytest.approx(ref, abs=1e-6)


def test_regions_from_joints_hand_checked():
    j = toy_joints()
    pts = np.array([
        (j[0] + j[9]) / 2,          # on a wrist -> MCP bone: palm
        (j[1] + j[2]) / 2,          # thumb metacarpal: thumb
        (j[6] + j[7]) / 2 + 0.001,  # index middle phalanx
        j[12],                      # middle fingertip
        (j[14] + j[15]) / 2,        # ring
        (j[19] + j[20]) / 2,        # little
    ])
    np.testing.assert_array_equal(regions_from_joints(pts, j), [0, 1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match=r"\(21, 3\)"):
        regions_from_joints(pts, j[:16])


def test_regions_from_joint_regressor_on_toy_hand():
    v, f = open_disk(3)
    reg = toy_regressor(v)
    raw = regions_from_joint_regressor(v, reg)
    np.testing.assert_array_equal(raw, regions_from_joints(v, reg @ v))
    assert set(raw.tolist()) == set(range(6))
    with pytest.raises(ValueError, match=r"\(21, 505\)"):
        regions_from_joint_regressor(v, reg[:, :10])


def test_make_regions_connected_grid():
    v, f = grid(6)  # 7 x 7 vertices, id = 7 i + j
    labels = np.where(v[:, 0] < 3, 0, 1)
    labels[7 * 1 + 1] = 1        # a one-vertex island of 1 inside 0 -> becomes 0
    labels[7 * 5 + 5] = 0        # island of 0 inside 1 -> becomes 1
    labels[[7 * 3 + 6, 7 * 0 + 6]] = 2  # region 2: two one-vertex pieces on the right edge
    out = make_regions_connected(f, labels)
    assert out[8] == 0 and out[40] == 1
    assert (out == 2).sum() == 1 and out[6] == 2 and out[27] == 1  # tie: the piece with the lower vertex stays
    assert all(n == 1 for n in naive_region_pieces(f, out).values())
    np.testing.assert_array_equal(make_regions_connected(f, out), out)  # idempotent


def test_make_regions_connected_keeps_first_vertex_piece_on_tie():
    v, f = grid(6)
    labels = np.where(v[:, 0] < 3, 0, 1)
    labels[[6, 48]] = 2  # two equal one-vertex pieces of region 2 at opposite corners
    out = make_regions_connected(f, labels)
    assert out[6] == 2 and out[48] == 1


def test_make_regions_connected_moves_stray_to_most_shared_neighbour():
    v, f = grid(6)
    labels = np.zeros(49, dtype=np.int64)
    labels[v[:, 1] >= 4] = 1
    labels[[7 * 2 + 0, 7 * 2 + 1]] = 2
    labels[7 * 6 + 6] = 2   # the larger piece of 2 is the pair; this corner stray touches only region 1
    out = make_regions_connected(f, labels)
    assert out[48] == 1 and out[14] == 2 and out[15] == 2


def test_region_pieces_matches_naive_count():
    v, f = grid(6)
    labels = np.where(v[:, 0] < 3, 0, 1)
    labels[[8, 40, 6, 27]] = [1, 0, 2, 2]
    naive = naive_region_pieces(f, labels)
    expected = [naive.get(r, 0) for r in range(6)]
    np.testing.assert_array_equal(region_pieces(f, labels), expected)
    assert expected[:3] == [2, 2, 2]


def test_toy_hand_regions_connected_and_complete():
    v, f = open_disk(3)
    out = make_regions_connected(f, regions_from_joint_regressor(v, toy_regressor(v)))
    assert out.shape == (v.shape[0],) and out.dtype == np.int64
    assert all(n == 1 for n in naive_region_pieces(f, out).values())
    assert set(out.tolist()) == set(range(6))
