"""m3dhmr.export.rig: the Rig, local transforms, mirroring, LBS, quaternions and BVH Euler angles.

``open_hand_case`` (also used by test_export_gltf / test_export_bvh) builds a Rig from the
open hand and posed global transforms by the open hand's own FK, so ``skin`` must
reproduce the open hand's posed vertices: an end-to-end check of the transform maths.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pytest
import torch

from m3dhmr import conventions as cv
from m3dhmr.export.rig import (MIRROR_X, Rig, as_global_transforms, invert_rigid, local_transforms,
                               matrix_to_euler_zxy_degrees, matrix_to_quaternion_xyzw, mirror_rig,
                               mirror_transforms, sign_continuous_quaternions, skin)

from rig_helpers import rot_x_deg, rot_y_deg, rot_z_deg, two_joint_rig


# ----------------------------------------------------------------------------- shared fixture

@dataclass(frozen=True)
class HandCase:
    rig: Rig
    transforms: np.ndarray   # (T, 21, 4, 4) posed global transforms, camera space
    vertices: np.ndarray     # (T, V, 3) the open hand's posed vertices, same placement
    joints: np.ndarray       # (T, 21, 3) the open hand's posed joints


@lru_cache(maxsize=1)
def _open_hand():
    from m3dhmr.hand import load_open_hand

    return load_open_hand(torch.float64)


def open_hand_rig(m=None) -> Rig:
    """The open hand as a Rig: kinematic joint j rests at [[frame_j, rest_j]], a tip at [[frame of its parent, tip]]."""
    m = m or _open_hand()
    rest21 = m.template.rest_joints()
    frames = m.frames.numpy()
    kin = list(cv.KINEMATIC_JOINTS)
    rest = np.tile(np.eye(4), (cv.NUM_JOINTS, 1, 1))
    for j in range(cv.NUM_JOINTS):
        k = kin.index(j if j in kin else cv.JOINT_PARENTS[j])
        rest[j, :3, :3] = frames[k]
        rest[j, :3, 3] = rest21[j]
    weights = np.zeros((m.num_vertices, cv.NUM_JOINTS))
    weights[:, kin] = m.weights.numpy()
    return Rig(vertices=m.vertices_rest.numpy(), faces=np.asarray(m.template.faces), weights=weights,
               rest_transforms=rest)


@lru_cache(maxsize=8)
def open_hand_case(num_frames: int = 1, seed: int = 0) -> HandCase:
    """T = num_frames random poses of the open hand, randomly turned, at a random place around z = 0.5 m."""
    from m3dhmr.hand import sample_poses
    from m3dhmr.hand.kinematics import batch_rodrigues, forward_kinematics

    m = _open_hand()
    rig = open_hand_rig(m)
    rng = np.random.default_rng(seed)
    pose = sample_poses(num_frames, rng)
    pose[:, :3] = rng.normal(scale=1.0, size=(num_frames, 3))               # any global rotation
    pose = torch.as_tensor(pose)
    T = num_frames
    rot = batch_rodrigues(torch.einsum("jxy,bjy->bjx", m.frames, pose.reshape(T, 16, 3)))
    _, motion = forward_kinematics(rot, m.joints_rest.expand(T, -1, -1), m.parents)
    motion = motion.numpy()                                                 # (T, 16, 4, 4) rest -> posed
    kin = list(cv.KINEMATIC_JOINTS)
    g = np.empty((T, cv.NUM_JOINTS, 4, 4))
    for j in range(cv.NUM_JOINTS):
        k = kin.index(j if j in kin else cv.JOINT_PARENTS[j])
        g[:, j] = motion[:, k] @ rig.rest_transforms[j]
    shift = np.array([0.03, -0.02, 0.5]) + rng.uniform(-0.02, 0.02, size=(T, 3))
    g[:, :, :3, 3] += shift[:, None]
    out = _open_hand()(pose)
    return HandCase(rig=rig, transforms=g, vertices=out.vertices.numpy() + shift[:, None],
                    joints=out.joints.numpy() + shift[:, None])


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """(V, 3), (F, 3) -> volume enclosed, positive for outward (counter-clockwise) faces."""
    v = vertices[faces]
    return float(np.einsum("fi,fi->f", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6.0)


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.random(n, random_state=rng).as_matrix()


def random_transforms(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    n = int(np.prod(shape))
    g = np.tile(np.eye(4), (n, 1, 1))
    g[:, :3, :3] = random_rotations(n, rng)
    g[:, :3, 3] = rng.normal(size=(n, 3))
    return g.reshape(shape + (4, 4))


# ----------------------------------------------------------------------------- Rig

def test_open_hand_rig_is_valid_and_read_only():
    rig = open_hand_rig()
    assert rig.num_joints == 21 and rig.joint_names == cv.JOINT_NAMES and rig.parents == cv.JOINT_PARENTS
    assert rig.vertices.dtype == np.float64 and rig.faces.dtype == np.int64
    assert np.all(rig.weights[:, list(cv.TIP_JOINTS)] == 0.0)
    assert signed_volume(rig.vertices, rig.faces) > 0.0
    with pytest.raises(ValueError):
        rig.vertices[0, 0] = 1.0
    assert rig.children(0) == (1, 5, 9, 13, 17) and rig.children(4) == ()


def _rig_fields() -> dict:
    r = open_hand_rig()
    return dict(vertices=r.vertices.copy(), faces=r.faces.copy(), weights=r.weights.copy(),
                rest_transforms=r.rest_transforms.copy())


def _bad(field: str):
    def make(f: dict) -> dict:
        if field == "vertices_shape":
            f["vertices"] = f["vertices"][:, :2]
        elif field == "vertices_nan":
            f["vertices"][3, 1] = np.nan
        elif field == "faces_range":
            f["faces"][0, 0] = len(f["vertices"])
        elif field == "faces_float":
            f["faces"] = f["faces"].astype(float)
        elif field == "weights_shape":
            f["weights"] = f["weights"][:, :16]
        elif field == "weights_sum":
            f["weights"][0] *= 1.01
        elif field == "weights_negative":
            f["weights"][0, :2] = [1.5, -0.5]
        elif field == "rest_shape":
            f["rest_transforms"] = f["rest_transforms"][:20]
        elif field == "rest_improper":
            f["rest_transforms"][3, :3, :3] = f["rest_transforms"][3, :3, :3] @ MIRROR_X
        elif field == "rest_not_orthonormal":
            f["rest_transforms"][3, :3, :3] *= 1.01
        elif field == "rest_bottom_row":
            f["rest_transforms"][3, 3, 0] = 0.1
        elif field == "rest_inf":
            f["rest_transforms"][0, 0, 3] = np.inf
        elif field == "parents_order":
            p = list(cv.JOINT_PARENTS)
            p[2] = 3
            f["parents"] = tuple(p)
        elif field == "parents_root":
            f["parents"] = (0,) + cv.JOINT_PARENTS[1:]
        elif field == "parents_length":
            f["parents"] = cv.JOINT_PARENTS[:20]
        elif field == "names_duplicate":
            f["joint_names"] = ("wrist",) * 21
        return f
    return make


_BAD_FIELDS = {
    "vertices_shape": "vertices", "vertices_nan": "vertices", "faces_range": "faces", "faces_float": "faces",
    "weights_shape": "weights", "weights_sum": "weights", "weights_negative": "weights",
    "rest_shape": "rest_transforms", "rest_improper": "rest_transforms",
    "rest_not_orthonormal": "rest_transforms", "rest_bottom_row": "rest_transforms",
    "rest_inf": "rest_transforms", "parents_order": "parents", "parents_root": "parents",
    "parents_length": "parents", "names_duplicate": "joint_names",
}


@pytest.mark.parametrize("case", sorted(_BAD_FIELDS))
def test_rig_rejects_bad_fields_naming_them(case):
    with pytest.raises(ValueError, match=_BAD_FIELDS[case]):
        Rig(**_bad(case)(_rig_fields()))


@pytest.mark.parametrize("bad", ["shape", "empty", "nan", "improper", "bottom"])
def test_as_global_transforms_rejects_bad_poses(bad):
    g = open_hand_case(2).transforms.copy()
    if bad == "shape":
        g = g[:, :20]
    elif bad == "empty":
        g = g[:0]
    elif bad == "nan":
        g[1, 4, 0, 0] = np.nan
    elif bad == "improper":
        g[0, 2, :3, :3] = -g[0, 2, :3, :3]
    elif bad == "bottom":
        g[0, 2, 3, 3] = 2.0
    with pytest.raises(ValueError, match="global_transforms"):
        as_global_transforms(g)
    if len(g):
        with pytest.raises(ValueError, match="global_transforms"):
            as_global_transforms(g[0])                                      # (21, 4, 4): T missing


# ----------------------------------------------------------------------------- transforms

def test_invert_rigid_matches_linalg_inv():
    g = random_transforms((3, 5), np.random.default_rng(1))
    np.testing.assert_allclose(invert_rigid(g), np.linalg.inv(g), atol=1e-12)


def local_transforms_naive(g: np.ndarray, parents) -> np.ndarray:
    out = np.empty_like(g)
    for t in range(g.shape[0]):
        for j, p in enumerate(parents):
            out[t, j] = g[t, j] if p < 0 else np.linalg.inv(g[t, p]) @ g[t, j]
    return out


def test_local_transforms_match_naive_and_recompose():
    g = random_transforms((4, 21), np.random.default_rng(2))
    local = local_transforms(g, cv.JOINT_PARENTS)
    np.testing.assert_allclose(local, local_transforms_naive(g, cv.JOINT_PARENTS), atol=1e-12)
    np.testing.assert_array_equal(local[:, 0], g[:, 0])
    rebuilt = local.copy()
    for j, p in enumerate(cv.JOINT_PARENTS):
        if p >= 0:
            rebuilt[:, j] = rebuilt[:, p] @ local[:, j]
    np.testing.assert_allclose(rebuilt, g, atol=1e-12)


def test_local_transforms_hand_case_and_bad_shape():
    g = np.tile(np.eye(4), (1, 2, 1, 1))
    g[0, 0, :3, :3] = rot_z_deg(90.0)
    g[0, 0, :3, 3] = [1.0, 0.0, 0.0]
    g[0, 1, :3, :3] = rot_z_deg(90.0)
    g[0, 1, :3, 3] = [1.0, 2.0, 0.0]                                        # 2 along the parent's x (world y)
    local = local_transforms(g, (-1, 0))
    np.testing.assert_allclose(local[0, 1], np.array([[1, 0, 0, 2], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]),
                               atol=1e-15)
    with pytest.raises(ValueError, match="global_transforms"):
        local_transforms(g, cv.JOINT_PARENTS)


# ----------------------------------------------------------------------------- skinning

def skin_naive(rig: Rig, g: np.ndarray) -> np.ndarray:
    out = np.zeros((g.shape[0],) + rig.vertices.shape)
    for t in range(g.shape[0]):
        for v in range(rig.vertices.shape[0]):
            p = np.append(rig.vertices[v], 1.0)
            for j in range(rig.num_joints):
                if rig.weights[v, j] != 0.0:
                    out[t, v] += rig.weights[v, j] * (g[t, j] @ np.linalg.inv(rig.rest_transforms[j]) @ p)[:3]
    return out


def test_skin_two_joint_hand_case():
    rig = two_joint_rig()
    g = np.stack([rig.rest_transforms, rig.rest_transforms])               # frame 0: rest
    g[1, 1, :3, :3] = rot_z_deg(90.0)                                          # frame 1: b turns 90 deg about z
    out = skin(rig, g)
    np.testing.assert_allclose(out[0], rig.vertices, atol=1e-15)
    # b maps (2, 0, 0) -> (1, 1, 0) and (2, 1, 0) -> (0, 1, 0); a leaves everything at rest.
    np.testing.assert_allclose(out[1], [[1.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]], atol=1e-15)


def test_skin_matches_naive_loop():
    case = open_hand_case(2, seed=3)
    np.testing.assert_allclose(skin(case.rig, case.transforms), skin_naive(case.rig, case.transforms), atol=1e-12)


def test_skin_reproduces_the_open_hand():
    case = open_hand_case(4, seed=0)
    np.testing.assert_allclose(skin(case.rig, case.transforms), case.vertices, atol=1e-9)
    np.testing.assert_allclose(case.transforms[:, :, :3, 3], case.joints, atol=1e-9)


def test_skin_rest_pose_is_the_rest_mesh_and_rejects_bad_poses():
    rig = open_hand_rig()
    np.testing.assert_allclose(skin(rig, rig.rest_transforms[None])[0], rig.vertices, atol=1e-13)
    with pytest.raises(ValueError, match="global_transforms"):
        skin(rig, rig.rest_transforms)


# ----------------------------------------------------------------------------- mirroring

def test_mirror_skins_to_the_mirror_image_with_proper_rotations():
    case = open_hand_case(3, seed=4)
    left = mirror_rig(case.rig)
    g = mirror_transforms(case.transforms)
    np.testing.assert_allclose(skin(left, g), case.vertices * [-1.0, 1.0, 1.0], atol=1e-12)
    assert np.all(np.abs(np.linalg.det(g[..., :3, :3]) - 1.0) < 1e-12)
    assert np.all(np.abs(np.linalg.det(left.rest_transforms[:, :3, :3]) - 1.0) < 1e-12)
    np.testing.assert_allclose(left.vertices, case.rig.vertices * [-1.0, 1.0, 1.0])
    np.testing.assert_array_equal(left.weights, case.rig.weights)


def test_mirror_keeps_faces_outward_and_is_an_involution():
    rig = open_hand_rig()
    left = mirror_rig(rig)
    assert signed_volume(left.vertices, left.faces) == pytest.approx(signed_volume(rig.vertices, rig.faces))
    # Without the winding flip the mirrored mesh would be inside out.
    assert signed_volume(left.vertices, rig.faces) < 0.0
    twice = mirror_rig(left)
    np.testing.assert_array_equal(twice.vertices, rig.vertices)
    np.testing.assert_array_equal(twice.faces, rig.faces)
    np.testing.assert_allclose(twice.rest_transforms, rig.rest_transforms, atol=0)
    g = random_transforms((5,), np.random.default_rng(5))
    np.testing.assert_allclose(mirror_transforms(mirror_transforms(g)), g, atol=0)


# ----------------------------------------------------------------------------- rotations

def quaternion_to_matrix_naive(q: np.ndarray) -> np.ndarray:
    """(4,) x, y, z, w -> (3, 3), the textbook formula."""
    x, y, z, w = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def test_quaternion_hand_cases():
    s = np.sqrt(0.5)
    np.testing.assert_allclose(matrix_to_quaternion_xyzw(rot_z_deg(90.0)), [0.0, 0.0, s, s], atol=1e-15)
    np.testing.assert_allclose(matrix_to_quaternion_xyzw(np.eye(3)), [0.0, 0.0, 0.0, 1.0], atol=1e-15)
    # 180 degrees about x: the glTF camera node's rotation, diag(1, -1, -1).
    np.testing.assert_allclose(matrix_to_quaternion_xyzw(np.diag([1.0, -1.0, -1.0])), [1.0, 0.0, 0.0, 0.0],
                               atol=1e-15)


def test_quaternions_rebuild_rotations_batched():
    r = random_rotations(24, np.random.default_rng(6)).reshape(2, 3, 4, 3, 3)
    q = matrix_to_quaternion_xyzw(r)
    assert q.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-15)
    assert np.all(q[..., 3] >= 0.0)
    for idx in np.ndindex(q.shape[:-1]):
        np.testing.assert_allclose(quaternion_to_matrix_naive(q[idx]), r[idx], atol=1e-12)
    assert matrix_to_quaternion_xyzw(np.zeros((0, 3, 3))).shape == (0, 4)
    with pytest.raises(ValueError, match="rotation"):
        matrix_to_quaternion_xyzw(np.eye(4))


def test_sign_continuous_quaternions():
    # Frame 1 is the far sign of a small turn; frame 2 is far from frame 1 once that is flipped.
    q = np.array([[[0.0, 0.0, 0.0, 1.0]], [[0.0, 0.0, -0.1, -0.99]], [[0.0, 0.0, -0.2, -0.98]]])
    out = sign_continuous_quaternions(q)
    np.testing.assert_allclose(out, [[[0, 0, 0, 1.0]], [[0, 0, 0.1, 0.99]], [[0, 0, 0.2, 0.98]]])
    assert np.all(np.sum(out[1:] * out[:-1], axis=-1) >= 0.0)


def test_euler_zxy_hand_cases():
    np.testing.assert_allclose(matrix_to_euler_zxy_degrees(rot_z_deg(30.0)), [30.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(matrix_to_euler_zxy_degrees(rot_x_deg(-40.0)), [0.0, -40.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(matrix_to_euler_zxy_degrees(rot_y_deg(50.0)), [0.0, 0.0, 50.0], atol=1e-12)
    r = rot_z_deg(10.0) @ rot_x_deg(20.0) @ rot_y_deg(30.0)
    np.testing.assert_allclose(matrix_to_euler_zxy_degrees(r), [10.0, 20.0, 30.0], atol=1e-12)


def test_euler_zxy_rebuilds_rotations_including_gimbal_lock():
    rng = np.random.default_rng(7)
    r = np.concatenate([random_rotations(50, rng),
                        (rot_z_deg(25.0) @ rot_x_deg(90.0) @ rot_y_deg(-15.0))[None],
                        (rot_z_deg(-5.0) @ rot_x_deg(-90.0) @ rot_y_deg(40.0))[None],
                        (rot_z_deg(5.0) @ rot_x_deg(89.9999) @ rot_y_deg(40.0))[None]])
    angles = matrix_to_euler_zxy_degrees(r.reshape(53, 1, 3, 3))
    assert angles.shape == (53, 1, 3)
    for i in range(53):
        z, x, y = angles[i, 0]
        np.testing.assert_allclose(rot_z_deg(z) @ rot_x_deg(x) @ rot_y_deg(y), r[i], atol=1e-9)
