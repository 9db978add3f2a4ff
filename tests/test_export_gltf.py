"""m3dhmr.export.write_glb, checked by re-reading the file with an independent GLB reader (struct + json).

The reader below knows nothing of pygltflib: it parses the container, turns accessors
into numpy arrays (MAT4 column-major), walks the node tree from TRS, and skins the mesh
with a naive per-vertex loop, which must land on the open hand's posed vertices
expressed in glTF world axes (C @ camera point, C = diag(1, -1, -1)).
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from m3dhmr import conventions as cv
from m3dhmr.export import Rig, write_glb
from m3dhmr.export.rig import CAMERA_TO_Y_UP, MIRROR_X

from rig_helpers import rot_z_deg, two_joint_rig
from test_export_rig import open_hand_case, open_hand_rig, signed_volume

_COMPONENTS = {5120: "<i1", 5121: "<u1", 5122: "<i2", 5123: "<u2", 5125: "<u4", 5126: "<f4"}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


# ----------------------------------------------------------------------------- independent reader

@dataclass
class Glb:
    doc: dict
    bin: bytes
    bin_chunk_length: int

    def accessor(self, index: int) -> np.ndarray:
        """(count, width) array; MAT4 as (count, 4, 4) row-major (the file is column-major)."""
        acc = self.doc["accessors"][index]
        view = self.doc["bufferViews"][acc["bufferView"]]
        dtype = np.dtype(_COMPONENTS[acc["componentType"]])
        width = _WIDTH[acc["type"]]
        stride = view.get("byteStride", dtype.itemsize * width)
        start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        assert start + stride * (acc["count"] - 1) + dtype.itemsize * width <= view.get("byteOffset", 0) + view["byteLength"]
        rows = [np.frombuffer(self.bin, dtype=dtype, count=width, offset=start + i * stride)
                for i in range(acc["count"])]
        data = np.array(rows, dtype=np.float64 if dtype.kind == "f" else np.int64)
        if acc["type"] == "MAT4":
            return data.reshape(-1, 4, 4).transpose(0, 2, 1)               # column-major -> row-major
        return data

    def node_index(self, name: str) -> int:
        return [n.get("name") for n in self.doc["nodes"]].index(name)


def read_glb(path: Path) -> Glb:
    raw = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", raw, 0)
    assert magic == b"glTF" and version == 2 and length == len(raw)
    json_len, json_type = struct.unpack_from("<I4s", raw, 12)
    assert json_type == b"JSON" and json_len % 4 == 0
    doc = json.loads(raw[20:20 + json_len].decode("utf-8"))
    offset = 20 + json_len
    bin_len, bin_type = struct.unpack_from("<I4s", raw, offset)
    assert bin_type == b"BIN\0"
    assert offset + 8 + bin_len == len(raw)
    return Glb(doc=doc, bin=raw[offset + 8:offset + 8 + bin_len], bin_chunk_length=bin_len)


def quat_to_matrix(q) -> np.ndarray:
    x, y, z, w = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def node_local(node: dict) -> np.ndarray:
    if "matrix" in node:
        return np.array(node["matrix"], dtype=np.float64).reshape(4, 4).T
    m = np.eye(4)
    m[:3, :3] = quat_to_matrix(node.get("rotation", [0, 0, 0, 1])) @ np.diag(node.get("scale", [1, 1, 1]))
    m[:3, 3] = node.get("translation", [0, 0, 0])
    return m


def node_globals(glb: Glb, overrides: dict[int, dict] | None = None) -> dict[int, np.ndarray]:
    """Global matrix of every node reachable from the scene, walking parents to children."""
    nodes = [dict(n, **(overrides or {}).get(i, {})) for i, n in enumerate(glb.doc["nodes"])]
    out: dict[int, np.ndarray] = {}

    def walk(i: int, parent: np.ndarray) -> None:
        out[i] = parent @ node_local(nodes[i])
        for c in nodes[i].get("children", []):
            walk(c, out[i])

    for root in glb.doc["scenes"][glb.doc.get("scene", 0)]["nodes"]:
        walk(root, np.eye(4))
    return out


def skin_naive(glb: Glb, globals_: dict[int, np.ndarray]) -> np.ndarray:
    """(V, 3) skinned positions in glTF world: sum of 4 weighted joint matrices per vertex."""
    prim = glb.doc["meshes"][0]["primitives"][0]
    skin = glb.doc["skins"][0]
    pos = glb.accessor(prim["attributes"]["POSITION"])
    joints = glb.accessor(prim["attributes"]["JOINTS_0"])
    weights = glb.accessor(prim["attributes"]["WEIGHTS_0"])
    ibm = glb.accessor(skin["inverseBindMatrices"])
    joint_matrix = [globals_[node] @ ibm[k] for k, node in enumerate(skin["joints"])]
    out = np.zeros_like(pos)
    for v in range(len(pos)):
        p = np.append(pos[v], 1.0)
        for k in range(4):
            out[v] += weights[v, k] * (joint_matrix[int(joints[v, k])] @ p)[:3]
    return out


def animation_overrides(glb: Glb, key: int) -> dict[int, dict]:
    """Node TRS values of animation key ``key`` (every sampler has one key per frame)."""
    anim = glb.doc["animations"][0]
    out: dict[int, dict] = {}
    for ch in anim["channels"]:
        sampler = anim["samplers"][ch["sampler"]]
        out.setdefault(ch["target"]["node"], {})[ch["target"]["path"]] = list(glb.accessor(sampler["output"])[key])
    return out


def faces_of(glb: Glb) -> np.ndarray:
    return glb.accessor(glb.doc["meshes"][0]["primitives"][0]["indices"]).reshape(-1, 3)


def gltf_world(points: np.ndarray) -> np.ndarray:
    """Camera-space points (..., 3) -> glTF world (y up)."""
    return points @ CAMERA_TO_Y_UP.T


# ----------------------------------------------------------------------------- tests

def test_single_pose_reproduces_the_posed_hand(tmp_path):
    case = open_hand_case(1, seed=0)
    path = write_glb(tmp_path / "hand.glb", case.rig, case.transforms)
    assert path == tmp_path / "hand.glb" and sorted(p.name for p in tmp_path.iterdir()) == ["hand.glb"]
    glb = read_glb(path)
    assert "animations" not in glb.doc
    globals_ = node_globals(glb)
    np.testing.assert_allclose(skin_naive(glb, globals_), gltf_world(case.vertices[0]), atol=1e-4)
    joint_pos = np.array([globals_[glb.node_index(n)][:3, 3] for n in cv.JOINT_NAMES])
    np.testing.assert_allclose(joint_pos, gltf_world(case.joints[0]), atol=1e-4)
    assert signed_volume(skin_naive(glb, globals_), faces_of(glb)) > 0.0


def test_layout_camera_node_skeleton_and_skin(tmp_path):
    case = open_hand_case(1, seed=1)
    glb = read_glb(write_glb(tmp_path / "h.glb", case.rig, case.transforms, name="right"))
    doc = glb.doc
    assert doc["asset"]["version"] == "2.0" and len(doc["scenes"]) == 1 and len(doc["buffers"]) == 1
    cam = glb.node_index("m3dhmr_camera")
    np.testing.assert_allclose(doc["nodes"][cam]["rotation"], [1.0, 0.0, 0.0, 0.0])
    assert doc["nodes"][cam]["children"] == [glb.node_index("wrist")]
    mesh_node = glb.node_index("right")
    assert set(doc["scenes"][0]["nodes"]) == {cam, mesh_node}
    assert doc["nodes"][mesh_node]["mesh"] == 0 and doc["nodes"][mesh_node]["skin"] == 0
    skin = doc["skins"][0]
    assert [doc["nodes"][i]["name"] for i in skin["joints"]] == list(cv.JOINT_NAMES)
    assert skin["skeleton"] == glb.node_index("wrist")
    for j, p in enumerate(cv.JOINT_PARENTS):
        node = doc["nodes"][skin["joints"][j]]
        assert "scale" not in node and "matrix" not in node
        kids = [skin["joints"][c] for c, pc in enumerate(cv.JOINT_PARENTS) if pc == j]
        assert node.get("children", []) == kids
    # Inverse bind matrices: inv(rest) read column-major; a row-major file would fail here.
    ibm = glb.accessor(skin["inverseBindMatrices"])
    np.testing.assert_allclose(ibm, np.linalg.inv(case.rig.rest_transforms), atol=1e-6)
    assert np.all(np.abs(ibm[:, 3] - [0, 0, 0, 1]) < 1e-7)


def test_buffers_aligned_and_attributes_valid(tmp_path):
    case = open_hand_case(3, seed=2)
    glb = read_glb(write_glb(tmp_path / "h.glb", case.rig, case.transforms))
    doc = glb.doc
    assert glb.bin_chunk_length % 4 == 0 and doc["buffers"][0]["byteLength"] <= glb.bin_chunk_length
    for view in doc["bufferViews"]:
        assert view.get("byteOffset", 0) % 4 == 0 and view["buffer"] == 0
    prim = doc["meshes"][0]["primitives"][0]
    attrs = prim["attributes"]
    pos_acc = doc["accessors"][attrs["POSITION"]]
    assert pos_acc["componentType"] == 5126 and pos_acc["type"] == "VEC3"
    pos = glb.accessor(attrs["POSITION"])
    np.testing.assert_array_equal(pos_acc["min"], pos.min(axis=0))
    np.testing.assert_array_equal(pos_acc["max"], pos.max(axis=0))
    np.testing.assert_allclose(pos, case.rig.vertices, atol=1e-7)
    assert doc["accessors"][attrs["JOINTS_0"]]["componentType"] == 5123
    assert doc["accessors"][attrs["WEIGHTS_0"]]["componentType"] == 5126
    assert doc["accessors"][prim["indices"]]["componentType"] in (5123, 5125)
    np.testing.assert_array_equal(faces_of(glb), case.rig.faces)
    normals = glb.accessor(attrs["NORMAL"])
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(normals, vertex_normals_naive(case.rig.vertices, case.rig.faces), atol=1e-6)


def vertex_normals_naive(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals, one face at a time (outward for counter-clockwise faces)."""
    n = np.zeros_like(vertices)
    for a, b, c in faces:
        face_n = np.cross(vertices[b] - vertices[a], vertices[c] - vertices[a])   # 2 * area * unit normal
        for v in (a, b, c):
            n[v] += face_n
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def test_normals_point_outwards(tmp_path):
    # Flux of the normals through the surface of a closed mesh: sum of area * n . x = 3 * volume > 0
    # exactly when they point outwards; checked on an octahedron, then on the hand.
    from m3dhmr.export.gltf import vertex_normals

    octa = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1.0]])
    faces = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    assert signed_volume(octa, faces) > 0.0
    np.testing.assert_allclose(vertex_normals(octa, faces), octa, atol=1e-15)
    np.testing.assert_allclose(vertex_normals(octa, faces[:, ::-1]), -octa, atol=1e-15)
    case = open_hand_case(1, seed=0)
    for mirror in (False, True):
        glb = read_glb(write_glb(tmp_path / "h.glb", case.rig, case.transforms, mirror=mirror))
        attrs = glb.doc["meshes"][0]["primitives"][0]["attributes"]
        pos, normals, f = glb.accessor(attrs["POSITION"]), glb.accessor(attrs["NORMAL"]), faces_of(glb)
        tri = pos[f]
        face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        vertex_n = normals[f].sum(axis=1)                                  # the file's normals, per face
        assert np.mean(np.sum(face_n * vertex_n, axis=1) > 0.0) > 0.95
        assert np.sum(face_n * tri.mean(axis=1)) > 0.0                      # 6 * volume: outward


def test_weights_exact_for_four_influences(tmp_path):
    case = open_hand_case(1, seed=0)
    assert (case.rig.weights > 0).sum(axis=1).max() <= 4
    glb = read_glb(write_glb(tmp_path / "h.glb", case.rig, case.transforms))
    attrs = glb.doc["meshes"][0]["primitives"][0]["attributes"]
    joints, weights = glb.accessor(attrs["JOINTS_0"]).astype(int), glb.accessor(attrs["WEIGHTS_0"])
    dense = np.zeros_like(case.rig.weights)
    for v in range(len(dense)):
        for k in range(4):
            dense[v, joints[v, k]] += weights[v, k]
    np.testing.assert_allclose(dense, case.rig.weights, atol=1e-7)
    assert np.all(joints[weights == 0.0] == 0)                              # unused slots point at joint 0


def test_more_than_four_weights_keep_the_largest_renormalised(tmp_path, caplog):
    rig = open_hand_rig()
    w = rig.weights.copy()
    w[0] = 0.0
    w[0, [0, 1, 2, 3, 5]] = [0.3, 0.25, 0.2, 0.15, 0.1]                      # joint 5 (10 %) must go
    rig5 = Rig(vertices=rig.vertices, faces=rig.faces, weights=w, rest_transforms=rig.rest_transforms)
    with caplog.at_level(logging.WARNING, logger="m3dhmr.export.gltf"):
        glb = read_glb(write_glb(tmp_path / "h.glb", rig5, rig.rest_transforms[None]))
    assert "0.1" in caplog.text
    attrs = glb.doc["meshes"][0]["primitives"][0]["attributes"]
    np.testing.assert_array_equal(glb.accessor(attrs["JOINTS_0"])[0], [0, 1, 2, 3])
    np.testing.assert_allclose(glb.accessor(attrs["WEIGHTS_0"])[0], np.array([0.3, 0.25, 0.2, 0.15]) / 0.9,
                               atol=1e-7)


def test_animation_keys_reproduce_every_frame(tmp_path):
    case = open_hand_case(5, seed=3)
    glb = read_glb(write_glb(tmp_path / "anim.glb", case.rig, case.transforms, fps=25.0))
    anims = glb.doc["animations"]
    assert len(anims) == 1 and anims[0]["name"] == "pose"
    channels = anims[0]["channels"]
    skin = glb.doc["skins"][0]
    rot_nodes = {c["target"]["node"] for c in channels if c["target"]["path"] == "rotation"}
    trans_nodes = {c["target"]["node"] for c in channels if c["target"]["path"] == "translation"}
    assert rot_nodes == set(skin["joints"]) and trans_nodes == {glb.node_index("wrist")}
    for s in anims[0]["samplers"]:
        assert s["interpolation"] == "LINEAR"
        times = glb.accessor(s["input"])[:, 0]
        np.testing.assert_allclose(times, np.arange(5) / 25.0, atol=1e-7)
        acc = glb.doc["accessors"][s["input"]]
        assert acc["min"] == [times.min()] and acc["max"] == [times.max()]
    for c in channels:
        if c["target"]["path"] == "rotation":
            q = glb.accessor(anims[0]["samplers"][c["sampler"]]["output"])
            assert q.shape == (5, 4)
            np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-6)
            assert np.all(np.sum(q[1:] * q[:-1], axis=1) >= 0.0)           # sign-continuous
    for k in range(5):
        globals_ = node_globals(glb, animation_overrides(glb, k))
        np.testing.assert_allclose(skin_naive(glb, globals_), gltf_world(case.vertices[k]), atol=1e-4)
    # The static node TRS is frame 0.
    np.testing.assert_allclose(skin_naive(glb, node_globals(glb)), gltf_world(case.vertices[0]), atol=1e-4)


def test_left_hand_is_the_mirror_image_with_proper_rotations(tmp_path):
    case = open_hand_case(2, seed=4)
    glb = read_glb(write_glb(tmp_path / "left.glb", case.rig, case.transforms, mirror=True))
    mirrored = case.vertices @ MIRROR_X
    for k in range(2):
        skinned = skin_naive(glb, node_globals(glb, animation_overrides(glb, k)))
        np.testing.assert_allclose(skinned, gltf_world(mirrored[k]), atol=1e-4)
        assert signed_volume(skinned, faces_of(glb)) > 0.0                  # still outward
    ibm = glb.accessor(glb.doc["skins"][0]["inverseBindMatrices"])
    assert np.all(np.linalg.det(ibm) > 0.0)
    for node in glb.doc["nodes"]:
        if "rotation" in node:
            assert np.linalg.norm(node["rotation"]) == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_array_equal(faces_of(glb), case.rig.faces[:, ::-1])


def test_trimesh_loads_the_file(tmp_path):
    import trimesh

    case = open_hand_case(5, seed=3)
    scene = trimesh.load(write_glb(tmp_path / "anim.glb", case.rig, case.transforms))
    geoms = list(scene.geometry.values()) if hasattr(scene, "geometry") else [scene]
    assert sum(len(g.vertices) for g in geoms) == len(case.rig.vertices)


def _nan_pose(g):
    g = g.copy()
    g[0, 3, 1, 2] = np.nan
    return g


@pytest.mark.parametrize("bad", ["extension", "joints", "nan", "no_frames", "single_matrix", "fps", "rig"])
def test_bad_input_raises_and_leaves_no_file(tmp_path, bad):
    case = open_hand_case(1, seed=0)
    path, g, kwargs, rig = tmp_path / "h.glb", case.transforms, {}, case.rig
    if bad == "extension":
        path = tmp_path / "h.gltf"
    elif bad == "joints":
        g = g[:, :16]
    elif bad == "nan":
        g = _nan_pose(g)
    elif bad == "no_frames":
        g = g[:0]
    elif bad == "single_matrix":
        g = g[0]
    elif bad == "fps":
        kwargs = {"fps": 0.0}
    elif bad == "rig":
        rig = {"vertices": rig.vertices}
    with pytest.raises(ValueError):
        write_glb(path, rig, g, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    import pygltflib

    case = open_hand_case(1, seed=0)
    path = write_glb(tmp_path / "h.glb", case.rig, case.transforms)
    before = path.read_bytes()

    def broken(self, fname):
        Path(fname).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(pygltflib.GLTF2, "save_binary", broken)
    with pytest.raises(OSError, match="disk full"):
        write_glb(path, case.rig, case.transforms, mirror=True)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["h.glb"]


def test_two_joint_rig_with_fewer_joints_than_influences(tmp_path):
    rig = two_joint_rig()
    g = np.stack([rig.rest_transforms, rig.rest_transforms])
    g[1, 1, :3, :3] = rot_z_deg(90.0)
    glb = read_glb(write_glb(tmp_path / "two.glb", rig, g))
    assert [n["name"] for n in glb.doc["nodes"]] == ["m3dhmr_camera", "a", "b", "hand"]
    expected = [[1.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]          # test_export_rig's hand case
    np.testing.assert_allclose(skin_naive(glb, node_globals(glb, animation_overrides(glb, 1))),
                               gltf_world(np.array(expected)), atol=1e-6)
