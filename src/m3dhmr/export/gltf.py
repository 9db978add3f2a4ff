"""Write a rigged, optionally animated hand as binary glTF 2.0 (.glb) with pygltflib.

Layout of the file (one scene, one binary buffer, every bufferView 4-byte aligned):

- node ``m3dhmr_camera`` (scene root), rotation quaternion (x, y, z, w) = (1, 0, 0, 0),
  180 degrees about x: it turns the package's camera axes (x right, y down, z forward)
  into glTF's (y up, a camera looking down -z), so the hand stands upright in Blender,
  Unity and three.js. Its child is the skeleton: the J joint nodes named
  ``rig.joint_names`` (wrist first), parented as ``rig.parents``, TRS = the local
  transforms of frame 0 (rotation as a unit quaternion, translation, no scale).
- the skinned mesh node (named ``name``), a scene root too: glTF ignores the transform
  of a skinned mesh's node and its parents (only joint transforms move the vertices),
  and the glTF validator warns about skinned meshes under other nodes
  (NODE_SKINNED_MESH_NON_ROOT); at the root the file also displays correctly in
  viewers that wrongly apply the mesh node's parents.
- mesh attributes POSITION (the rest vertices, camera axes, metres), NORMAL,
  JOINTS_0 / WEIGHTS_0; the skin's inverse bind matrices are ``inv(rest_transforms)``,
  so a vertex lands at ``C @ sum_j w_j G_j inv(rest_j) v`` in glTF world, C =
  diag(1, -1, -1) being the camera node's rotation.
- with T > 1 frames, animation ``pose``: per joint node a rotation track (LINEAR, one
  key per frame at t / fps seconds, quaternions sign-continuous), a translation track
  for the root, and one for any other joint whose local translation changes (none
  for a rigid skeleton).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from m3dhmr.export.rig import (Rig, invert_rigid, local_transforms, matrix_to_quaternion_xyzw, prepare_export,
                               sign_continuous_quaternions)
from m3dhmr.fileio import atomic_path
from m3dhmr.geometry import mesh_normals

logger = logging.getLogger(__name__)

CAMERA_NODE_NAME = "m3dhmr_camera"
#: 180 degrees about x (x, y, z, w): camera axes (y down, z forward) -> glTF (y up, z backward).
CAMERA_NODE_ROTATION = (1.0, 0.0, 0.0, 0.0)
#: glTF allows at most 4 influences per vertex in one JOINTS_n / WEIGHTS_n pair.
MAX_INFLUENCES = 4
#: A non-root joint gets a translation track only if its local translation moves more than this (m).
_TRANSLATION_TOL = 1e-9

# glTF componentType codes and bufferView targets.
_FLOAT, _UINT16, _UINT32 = 5126, 5123, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_TYPES = {1: "SCALAR", 3: "VEC3", 4: "VEC4", 16: "MAT4"}


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3), (F, 3) -> (V, 3) unit normals for NORMAL (:func:`m3dhmr.geometry.mesh_normals.vertex_normals`,
    outward for counter-clockwise faces); glTF wants unit length, so a vertex in no face gets (0, 0, 1)."""
    return mesh_normals.vertex_normals(vertices, faces, min_length=1e-20, fallback=(0.0, 0.0, 1.0))


def top_influences(weights: np.ndarray, k: int = MAX_INFLUENCES) -> tuple[np.ndarray, np.ndarray, float]:
    """(V, J) weights -> joints (V, k) int, weights (V, k) summing to 1, and the largest weight dropped.

    Keeps each vertex's k largest weights (in decreasing order) and renormalises them;
    zero-weight slots point at joint 0, as glTF recommends. Exact when no vertex has
    more than k non-zero weights (then the dropped weight is 0).
    """
    V, J = weights.shape
    if J < k:
        weights = np.concatenate([weights, np.zeros((V, k - J))], axis=1)
    order = np.argsort(-weights, axis=1, kind="stable")
    joints = order[:, :k]
    kept = np.take_along_axis(weights, joints, axis=1)
    # Summed from the dropped entries themselves, so it is exactly 0 when they are all 0.
    dropped = float(np.take_along_axis(weights, order[:, k:], axis=1).sum(axis=1).max(initial=0.0))
    kept = kept / kept.sum(axis=1, keepdims=True)
    joints = np.where(kept > 0.0, joints, 0)
    return joints, kept, dropped


class _BinaryBuffer:
    """Collects arrays into one little-endian blob with 4-byte aligned bufferViews."""

    def __init__(self) -> None:
        self.blob = bytearray()
        self.buffer_views: list = []
        self.accessors: list = []

    def add(self, array: np.ndarray, component_type: int, target: int | None = None,
            min_max: bool = False) -> int:
        """Append ``array`` ((N,) or (N, C), or (N, 4, 4) already column-major) -> accessor index."""
        import pygltflib  # heavy: pygltflib loads only to write a .glb

        dtype = {_FLOAT: "<f4", _UINT16: "<u2", _UINT32: "<u4"}[component_type]
        data = np.ascontiguousarray(array, dtype=dtype)
        width = int(np.prod(data.shape[1:])) if data.ndim > 1 else 1
        self.blob.extend(b"\0" * (-len(self.blob) % 4))
        self.buffer_views.append(pygltflib.BufferView(buffer=0, byteOffset=len(self.blob),
                                                      byteLength=data.nbytes, target=target))
        self.blob.extend(data.tobytes())
        flat = data.reshape(data.shape[0], width)
        accessor = pygltflib.Accessor(bufferView=len(self.buffer_views) - 1, componentType=component_type,
                                      count=data.shape[0], type=_TYPES[width])
        if min_max:
            accessor.min = [float(x) for x in flat.min(axis=0)]
            accessor.max = [float(x) for x in flat.max(axis=0)]
        self.accessors.append(accessor)
        return len(self.accessors) - 1

    def finish(self) -> bytes:
        self.blob.extend(b"\0" * (-len(self.blob) % 4))
        return bytes(self.blob)


def write_glb(path: str | Path, rig: Rig, global_transforms: np.ndarray, *, fps: float = 30.0,
              mirror: bool = False, name: str = "hand") -> Path:
    """Write ``rig`` posed (T = 1) or animated (T > 1) by ``global_transforms`` as a .glb file.

    Args:
        path: output path; must end in ``.glb``. Written atomically (a temporary file in
            the same folder, then ``os.replace``): on any error no file is left.
        rig: the rest hand (camera axes, metres).
        global_transforms: (T, J, 4, 4) posed global joint transforms, camera axes.
        fps: frames per second of the animation (key t at t / fps seconds).
        mirror: export a left hand as the mirror image of the right hand (x -> -x, see
            :func:`~m3dhmr.export.rig.mirror_rig`); every rotation in the file stays proper.
        name: name of the mesh node, mesh and skin.

    glTF allows 4 influences per vertex: each vertex keeps its 4 largest weights,
    renormalised. The largest weight dropped is logged (warning); it is 0 for the
    package's open hand, whose vertices have at most 4 non-zero weights.

    Returns:
        ``path`` as a Path.

    Raises:
        ValueError: bad extension, fps, rig type or ``global_transforms``.
    """
    path, rig, g, fps = prepare_export(path, ".glb", rig, global_transforms, fps, mirror)
    gltf = _build_gltf(rig, g, fps, str(name))
    with atomic_path(path) as tmp:
        if not gltf.save_binary(str(tmp)):
            raise RuntimeError(f"pygltflib could not write {path}")
    return path


def _build_gltf(rig: Rig, g: np.ndarray, fps: float, name: str):
    """The pygltflib document (binary blob attached) for a validated rig and (T, J, 4, 4) pose."""
    import pygltflib

    T, J = g.shape[:2]
    buf = _BinaryBuffer()

    joints, weights, dropped = top_influences(rig.weights)
    if dropped > 0.0:
        logger.warning("glTF keeps 4 weights per vertex: up to %.3g of a vertex's weight was dropped "
                       "and the rest renormalised", dropped)
    attributes = pygltflib.Attributes(
        POSITION=buf.add(rig.vertices, _FLOAT, _ARRAY_BUFFER, min_max=True),
        NORMAL=buf.add(vertex_normals(rig.vertices, rig.faces), _FLOAT, _ARRAY_BUFFER),
        JOINTS_0=buf.add(joints, _UINT16, _ARRAY_BUFFER),
        WEIGHTS_0=buf.add(weights, _FLOAT, _ARRAY_BUFFER))
    indices = buf.add(rig.faces.reshape(-1), _UINT32, _ELEMENT_ARRAY_BUFFER)
    # glTF stores matrices column-major: write each transpose row by row.
    ibm = buf.add(np.swapaxes(invert_rigid(rig.rest_transforms), 1, 2), _FLOAT)

    # Node 0: camera axes; nodes 1..J: joints; node J + 1: the skinned mesh.
    local = local_transforms(g, rig.parents)                                 # (T, J, 4, 4)
    quats = sign_continuous_quaternions(matrix_to_quaternion_xyzw(local[..., :3, :3]))  # (T, J, 4)
    nodes = [pygltflib.Node(name=CAMERA_NODE_NAME, rotation=list(CAMERA_NODE_ROTATION), children=[1])]
    for j in range(J):
        nodes.append(pygltflib.Node(name=rig.joint_names[j], rotation=[float(x) for x in quats[0, j]],
                                    translation=[float(x) for x in local[0, j, :3, 3]],
                                    children=[1 + c for c in rig.children(j)] or None))
    mesh_node = J + 1
    nodes.append(pygltflib.Node(name=name, mesh=0, skin=0))
    mesh = pygltflib.Mesh(name=name, primitives=[pygltflib.Primitive(
        attributes=attributes, indices=indices, mode=pygltflib.TRIANGLES)])
    skin = pygltflib.Skin(name=f"{name}_skin", joints=list(range(1, J + 1)), skeleton=1,
                          inverseBindMatrices=ibm)

    animations = []
    if T > 1:
        times = buf.add(np.arange(T) / fps, _FLOAT, min_max=True)             # glTF requires min/max here
        samplers, channels = [], []

        def track(node: int, path: str, values: np.ndarray) -> None:
            samplers.append(pygltflib.AnimationSampler(input=times, output=buf.add(values, _FLOAT),
                                                       interpolation=pygltflib.ANIM_LINEAR))
            channels.append(pygltflib.AnimationChannel(
                sampler=len(samplers) - 1, target=pygltflib.AnimationChannelTarget(node=node, path=path)))

        for j in range(J):
            track(1 + j, "rotation", quats[:, j])
            moves = np.abs(local[:, j, :3, 3] - local[0, j, :3, 3]).max() > _TRANSLATION_TOL
            if j == 0 or moves:
                track(1 + j, "translation", local[:, j, :3, 3])
        animations.append(pygltflib.Animation(name="pose", samplers=samplers, channels=channels))

    blob = buf.finish()
    gltf = pygltflib.GLTF2(
        asset=pygltflib.Asset(version="2.0", generator="m3dhmr"),
        scene=0, scenes=[pygltflib.Scene(name=name, nodes=[0, mesh_node])],
        nodes=nodes, meshes=[mesh], skins=[skin], animations=animations,
        accessors=buf.accessors, bufferViews=buf.buffer_views,
        buffers=[pygltflib.Buffer(byteLength=len(blob))])
    gltf.set_binary_blob(blob)
    return gltf
