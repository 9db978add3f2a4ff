import numpy as np
import pytest
import torch

from m3dhmr import conventions as cv
from m3dhmr.hand import HandOutput, SHAPE_NAMES, SHAPE_RANGES, load_template, load_open_hand
from m3dhmr.conventions import KINEMATIC_JOINTS
from m3dhmr.hand.build import asset_bytes, build_open_hand
from m3dhmr.hand.open_hand import ASSET_PATH
from m3dhmr.mesh.adjacency import edges


@pytest.fixture(scope="module")
def hand():
    return load_open_hand(torch.float64)


@pytest.fixture(scope="module")
def template():
    return load_template("open_hand")


def bone_lengths(joints: torch.Tensor) -> torch.Tensor:
    """(B, 20) lengths of conventions.BONES."""
    return torch.stack([(joints[:, c] - joints[:, p]).norm(dim=-1) for p, c in cv.BONES], dim=1)


def test_rest_pose_is_template_exactly(hand, template):
    for shape in (None, torch.zeros(3, hand.num_shape, dtype=torch.float64)):
        out = hand(torch.zeros(3, 48, dtype=torch.float64), shape)
        assert isinstance(out, HandOutput)
        assert out.vertices.shape == (3, template.num_vertices, 3) and out.joints.shape == (3, 21, 3)
        assert torch.equal(out.vertices[1], torch.tensor(template.vertices))
        # The regressor's output at rest is the skeleton the model poses.
        np.testing.assert_allclose(out.joints[0].numpy(), template.rest_joints(), rtol=0, atol=1e-15)
    h32 = load_open_hand()
    v32 = h32(torch.zeros(1, 48)).vertices[0]
    assert v32.dtype == torch.float32 and torch.equal(v32, torch.tensor(template.vertices, dtype=torch.float32))


def test_interface(hand, template):
    assert hand.num_shape == len(hand.shape_names) == 9 and hand.shape_names == SHAPE_NAMES
    assert set(SHAPE_RANGES) == set(SHAPE_NAMES)
    assert torch.equal(hand.faces, torch.tensor(template.faces))
    assert hand.template is template or np.array_equal(hand.template.vertices, template.vertices)
    with pytest.raises(ValueError, match=r"\(B, 48\)"):
        hand(torch.zeros(2, 45))
    with pytest.raises(ValueError, match="scale"):
        hand(torch.zeros(2, 48), torch.zeros(2, 3))


def test_bone_lengths_preserved_under_any_pose(hand):
    g = torch.Generator().manual_seed(0)
    shape = (torch.rand(6, 9, generator=g, dtype=torch.float64) - 0.5) * 0.2
    rest = hand(torch.zeros(6, 48, dtype=torch.float64), shape)
    pose = torch.randn(6, 48, generator=g, dtype=torch.float64) * 1.5   # far beyond the limits too
    posed = hand(pose, shape)
    torch.testing.assert_close(bone_lengths(posed.joints), bone_lengths(rest.joints), rtol=0, atol=1e-12)
    # The wrist stays put (no translation); a rigid global rotation keeps every distance.
    assert torch.equal(posed.joints[:, 0], rest.joints[:, 0])
    glob = torch.zeros(6, 48, dtype=torch.float64)
    glob[:, :3] = torch.randn(6, 3, generator=g, dtype=torch.float64)
    turned = hand(glob, shape).vertices
    torch.testing.assert_close(torch.cdist(turned, turned), torch.cdist(rest.vertices, rest.vertices))


def test_flexion_curls_towards_palm(hand):
    # Positive flexion of the index MCP moves the index tip to -y (the palm side).
    pose = torch.zeros(1, 48, dtype=torch.float64)
    k = KINEMATIC_JOINTS.index(cv.FINGER_JOINTS["index"][0])
    pose[0, 3 * k] = 1.2
    j0, j1 = hand(torch.zeros(1, 48, dtype=torch.float64)).joints, hand(pose).joints
    assert j1[0, 8, 1] < j0[0, 8, 1] - 0.03
    torch.testing.assert_close(j1[0, 12], j0[0, 12])     # other fingers untouched


def test_shape_parameters(hand):
    z = torch.zeros(1, 48, dtype=torch.float64)
    rest = hand(z).joints
    s = torch.zeros(1, 9, dtype=torch.float64)
    s[0, SHAPE_NAMES.index("scale")] = 0.1
    torch.testing.assert_close(hand(z, s).joints, rest * 1.1)
    s = torch.zeros(1, 9, dtype=torch.float64)
    s[0, SHAPE_NAMES.index("index_length")] = 0.1
    b0, b1 = bone_lengths(rest), bone_lengths(hand(z, s).joints)
    index_bones = [i for i, (p, c) in enumerate(cv.BONES) if c in (6, 7)]
    torch.testing.assert_close(b1[0, index_bones], 1.1 * b0[0, index_bones])
    other = [i for i, (p, c) in enumerate(cv.BONES) if cv.finger_of_joint(c) != 2]
    torch.testing.assert_close(b1[0, other], b0[0, other])
    s = torch.zeros(1, 9, dtype=torch.float64)
    s[0, SHAPE_NAMES.index("palm_width")] = 0.1
    w0 = rest[0, 17, 2] - rest[0, 5, 2]
    torch.testing.assert_close(hand(z, s).joints[0, 17, 2] - hand(z, s).joints[0, 5, 2], 1.1 * w0)


def test_gradcheck_and_finite_gradients_at_rest(hand):
    proj = torch.randn(hand.num_vertices * 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def f(pose, shape):
        out = hand(pose, shape)
        return out.vertices.reshape(1, -1) @ proj, out.joints[:, [4, 8, 12]]

    pose = (torch.randn(1, 48, dtype=torch.float64) * 0.3).requires_grad_()
    shape = (torch.randn(1, 9, dtype=torch.float64) * 0.05).requires_grad_()
    assert torch.autograd.gradcheck(f, (pose, shape))
    pose0 = torch.zeros(2, 48, requires_grad=True)
    shape0 = torch.zeros(2, 9, requires_grad=True)
    out = load_open_hand()(pose0, shape0)
    (out.vertices.square().sum() + out.joints.sum()).backward()
    assert torch.isfinite(pose0.grad).all() and torch.isfinite(shape0.grad).all()
    assert pose0.grad.abs().sum() > 0 and shape0.grad.abs().sum() > 0


def test_mesh_is_one_edge_manifold_piece(template):
    import trimesh

    v, f = template.vertices, template.faces
    assert 800 <= len(v) <= 1000
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.body_count == 1
    assert mesh.euler_number == 2 and mesh.volume > 0          # closed at the wrist, outward normals
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(e, axis=0, return_counts=True)
    assert (counts == 2).all()                                  # every edge in exactly two faces
    assert len(np.unique(f)) == len(v)
    # Well-shaped triangles: few slivers, no degenerate ones.
    min_angle = np.degrees(mesh.face_angles.min(axis=1))
    assert min_angle.min() > 15.0 and np.mean(min_angle < 25.0) < 0.02
    assert len(edges(f)) == len(f) * 3 // 2


def test_rest_proportions_are_human(template):
    j = template.rest_joints()
    length = np.linalg.norm(j[12] - j[0])
    assert 0.16 <= length <= 0.21
    knuckles = np.linalg.norm(j[17] - j[5])
    assert 0.05 <= knuckles <= 0.08
    finger = {n: sum(np.linalg.norm(j[b] - j[a]) for a, b in zip(ids[:-1], ids[1:]))
              for n, ids in cv.FINGER_JOINTS.items()}
    assert finger["middle"] > finger["index"] > finger["little"] and finger["ring"] > finger["little"]
    assert 0.075 <= finger["middle"] <= 0.1
    v = template.vertices
    extent = v.max(0) - v.min(0)
    assert 0.015 <= (v[:, 1].max() - v[:, 1].min()) <= 0.06 and extent[0] > 0.18
    # Right hand, palm down, fingers along +x: the thumb is on the -z side of the index.
    assert j[4, 2] < j[8, 2] < j[12, 2] < j[16, 2] < j[20, 2]
    assert (j[[8, 12, 16, 20], 0] > 0.14).all() and np.abs(j[0]).max() < 1e-6


def test_rigging(template):
    w, reg = template.skinning_weights, template.joint_regressor
    assert w.shape == (template.num_vertices, 16) and (w >= 0).all()
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-12)
    assert (reg >= 0).all()
    np.testing.assert_allclose(reg.sum(1), 1.0, atol=1e-12)
    # Fingertips are single surface vertices; internal joints use a ring of several.
    tips = reg[list(cv.TIP_JOINTS)]
    assert ((tips > 0).sum(1) == 1).all()
    assert ((reg[list(KINEMATIC_JOINTS)] > 1e-6).sum(1) >= 4).all()
    # Each region is present and one connected piece.
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    e = edges(template.faces)
    for r in range(cv.NUM_REGIONS):
        keep = (template.regions[e[:, 0]] == r) & (template.regions[e[:, 1]] == r)
        members = np.flatnonzero(template.regions == r)
        assert len(members) > 20
        g = coo_matrix((np.ones(keep.sum()), (e[keep, 0], e[keep, 1])), shape=(len(w),) * 2)
        _, lab = connected_components(g, directed=False)
        assert len(np.unique(lab[members])) == 1
    # Smooth across joints: neighbouring vertices' weights differ by much less than 1.
    jumps = np.abs(w[e[:, 0]] - w[e[:, 1]]).max(1)
    assert np.quantile(jumps, 0.99) < 0.6


def test_asset_small_and_rebuild_reproduces_it():
    """The build reproduces the shipped asset: integer arrays exactly, floats to float64
    rounding (numpy/BLAS versions change the last bits; measured 1e-14 with numpy 2.4)."""
    from safetensors.numpy import load_file

    data = ASSET_PATH.read_bytes()
    assert len(data) < 1_000_000
    shipped = load_file(str(ASSET_PATH))
    rebuilt = build_open_hand()
    assert set(shipped) == set(rebuilt)
    for k, v in shipped.items():
        got = np.asarray(rebuilt[k])
        assert got.shape == v.shape and got.dtype == v.dtype, k
        if np.issubdtype(v.dtype, np.floating):
            np.testing.assert_allclose(got, v, rtol=0, atol=1e-12, err_msg=k)
        else:
            np.testing.assert_array_equal(got, v, err_msg=k)
    # Serialisation is deterministic: the shipped arrays serialise to the shipped file.
    assert asset_bytes(shipped) == data
