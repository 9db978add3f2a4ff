"""The package's conventions (:mod:`m3dhmr.conventions`) as the functions that use them
behave: changing any of them breaks data compatibility, so each is pinned through what it
does to a point, a hand or an annotation, not by restating the constant."""

import json

import numpy as np
import pytest

from m3dhmr import conventions as c
from m3dhmr.geometry.camera import intrinsics_from_fov, project


def test_a_point_projects_in_opencv_axes():
    """OpenCV camera: x right, y down, z forward; pixel centres at integer coordinates."""
    K = intrinsics_from_fov(5, 7, 90.0)  # a 7 x 5 image: f = 3.5 px, principal point (3, 2)
    pts = np.array([[0.0, 0.0, 1.0],     # on the optical axis: the centre of the middle pixel
                    [0.1, 0.0, 1.0],     # +x: to the right
                    [0.0, 0.1, 1.0],     # +y: down the image
                    [0.1, 0.1, 2.0]])    # twice as far (z forward): half as far from the centre
    uv = project(pts, K)
    np.testing.assert_allclose(uv, [[3.0, 2.0], [3.35, 2.0], [3.0, 2.35], [3.175, 2.175]], atol=1e-12)
    # In front of the camera is z > 0: a point behind it lands mirrored through the centre.
    np.testing.assert_allclose(project(np.array([[0.1, 0.1, -1.0]]), K), [[2.65, 1.65]], atol=1e-12)
    assert c.CAMERA_CONVENTION == "opencv" and "x right, y down, z forward" in c.CAMERA_AXES_TEXT


class _FixedNetwork:
    """Stands for the network: the same right-hand prediction for any crop, remembering its input."""

    def __init__(self, out):
        self.out, self.inputs = out, []

    def __call__(self, images):
        self.inputs.append(images.copy())
        return self.out


def test_a_left_hand_keeps_the_joint_order_mirrored():
    """A left hand is predicted as the right hand of the flipped crop and mirrored back joint
    by joint: joint k of the left hand is the mirror image of joint k (the same joint in the
    FreiHAND order), never another joint (unlike a body, mirroring swaps no joints)."""
    from m3dhmr.inference.crops import default_intrinsics, full_image_box
    from m3dhmr.inference.networks import NetworkOutput
    from m3dhmr.inference.predictor import Predictor

    S = 64
    rng = np.random.default_rng(0)
    j3 = np.concatenate([np.zeros((1, 3)), rng.uniform(-0.08, 0.08, (20, 3))])  # root-relative, all distinct
    K = default_intrinsics(S, S, 60.0)
    uv = project(j3 + [0.0, 0.0, 0.6], K)  # the crop is the whole S x S image: crop pixels = image pixels
    out = NetworkOutput(vertices=j3[None].astype(np.float32), joints3d=j3[None].astype(np.float32),
                        joints2d=uv[None].astype(np.float32))
    net = _FixedNetwork(out)
    predictor = Predictor(net, np.array([[0, 1, 2]]), S)
    image = rng.integers(0, 256, (S, S, 3), dtype=np.uint8)
    box = full_image_box(S, S)
    [right] = predictor.predict(image, crop_box=box, K=K)
    [left] = predictor.predict(image, crop_box=box, K=K, left=True)
    np.testing.assert_array_equal(net.inputs[1], net.inputs[0][..., ::-1])  # the left hand's crop is flipped
    assert left.left and not right.left
    np.testing.assert_allclose(left.joints3d, right.joints3d * [-1.0, 1.0, 1.0], atol=1e-5)
    np.testing.assert_allclose(left.joints2d, np.c_[S - 1 - right.joints2d[:, 0], right.joints2d[:, 1]], atol=1e-3)
    # The right hand is where the network put it (so the comparison above is joint to joint).
    np.testing.assert_allclose(right.joints2d, uv, atol=1e-3)


def test_mano_joints_come_out_in_freihand_order():
    """The MANO regressor in FreiHAND order: wrist; thumb, index, middle, ring, little, each
    base to tip; the tips are FreiHAND's fingertip vertices."""
    from m3dhmr.hand.mano import freihand_regressor

    V = c.MANO_NUM_VERTICES
    mano_rows = np.zeros((16, V))
    mano_rows[np.arange(16), 100 + np.arange(16)] = 1.0  # MANO joint m sits on vertex 100 + m
    vertex_id = np.arange(V, dtype=np.float64)
    source = freihand_regressor(mano_rows, V) @ vertex_id  # (21,) which vertex each joint reads
    # MANO's own order: wrist, index 1-3, middle 1-3, little 1-3, ring 1-3, thumb 1-3.
    mano = {"thumb": (13, 14, 15), "index": (1, 2, 3), "middle": (4, 5, 6), "ring": (10, 11, 12),
            "little": (7, 8, 9)}
    tips = {"thumb": 744, "index": 320, "middle": 443, "ring": 555, "little": 672}
    want = {0: 100}
    for finger, joints in mano.items():
        ids = c.FINGER_JOINTS[finger]
        want.update({j: 100 + m for j, m in zip(ids[:3], joints)})
        want[ids[3]] = tips[finger]
        assert [c.JOINT_NAMES[j] for j in ids] == [f"{finger}_{n}" for n in
                                                   (("cmc", "mcp", "ip") if finger == "thumb" else
                                                    ("mcp", "pip", "dip")) + ("tip",)]
    assert c.JOINT_NAMES[0] == "wrist" and c.FINGER_NAMES == tuple(mano)
    np.testing.assert_array_equal(source, [want[j] for j in range(c.NUM_JOINTS)])


def test_freihand_scale_is_the_middle_finger_bone(tiny_data):
    """training_scale.json is |xyz[9] - xyz[10]| (middle MCP to PIP) as in FreiHAND, and each
    bone of the skeleton joins a joint to its parent: short, never zero."""
    xyz = np.array(json.loads((tiny_data / "training_xyz.json").read_text()))
    scale = np.array(json.loads((tiny_data / "training_scale.json").read_text()))
    np.testing.assert_allclose(scale, np.linalg.norm(xyz[:, 9] - xyz[:, 10], axis=1), atol=2e-6)
    assert (c.JOINT_NAMES[9], c.JOINT_NAMES[10]) == ("middle_mcp", "middle_pip")
    bones = np.linalg.norm(xyz[:, [b for _, b in c.BONES]] - xyz[:, [p for p, _ in c.BONES]], axis=-1)
    assert bones.shape == (len(xyz), 20) and (bones > 0.005).all() and (bones < 0.12).all()
    # Parents: the wrist is the root, each finger's base hangs from it, then a chain to the tip.
    assert c.JOINT_PARENTS[c.ROOT_JOINT] == -1
    for finger, ids in c.FINGER_JOINTS.items():
        assert [c.JOINT_PARENTS[j] for j in ids] == [0, *ids[:3]], finger
    assert c.TIP_JOINTS == tuple(ids[3] for ids in c.FINGER_JOINTS.values())


def test_regions_follow_the_fingers():
    assert c.REGION_NAMES == ("palm",) + c.FINGER_NAMES and c.NUM_REGIONS == 6 and c.PALM == 0
    assert c.finger_of_joint(0) == c.PALM
    for r, finger in enumerate(c.FINGER_NAMES, start=1):
        assert {c.finger_of_joint(j) for j in c.FINGER_JOINTS[finger]} == {r}
    with pytest.raises(ValueError, match="joint index 21"):
        c.finger_of_joint(21)


def test_units_metres_in_data_millimetres_in_reports():
    """Camera-space metres go in; the metrics report millimetres (x MM_PER_M) about the wrist."""
    from m3dhmr.metrics import freihand_metrics

    rng = np.random.default_rng(1)
    gt_xyz, gt_verts = rng.normal(0, 0.05, (2, 21, 3)) + [0, 0, 0.5], rng.normal(0, 0.05, (2, 30, 3)) + [0, 0, 0.5]
    moved = [0.01, -0.02, 0.0]  # the whole hand 1 cm right, 2 cm up
    m = freihand_metrics(gt_xyz + moved, gt_verts + moved, gt_xyz, gt_verts).summary
    assert m["root_error_mm"] == pytest.approx(np.hypot(10.0, 20.0))  # the wrist, joint ROOT_JOINT
    assert m["mpjpe_rr_mm"] == pytest.approx(0.0, abs=1e-9) and m["pa_mpjpe_mm"] == pytest.approx(0.0, abs=1e-3)
