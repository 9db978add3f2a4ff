"""Reading and writing triangle meshes (.ply, .obj), keeping vertex order.

Reading goes through trimesh with ``process=False`` (and ``maintain_order`` for OBJ):
trimesh would otherwise merge duplicate vertices and drop unreferenced ones, renumbering
the vertices that joint regressors and regions index. Writing is done here (binary PLY
with float64 coordinates, OBJ with round-trip float text) so a write/read round trip is
exact; trimesh's PLY exporter stores float32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from m3dhmr.errors import InputError
from m3dhmr.fileio import atomic_path
from m3dhmr.mesh.validate import mesh_arrays

SUFFIXES = (".ply", ".obj")


def _suffix(path: Path) -> str:
    s = path.suffix.lower()
    if s not in SUFFIXES:
        raise InputError(f"{path}: unsupported mesh format {s or '(no suffix)'}; use one of {', '.join(SUFFIXES)}")
    return s


def read_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a triangle mesh.

    Returns:
        vertices (V, 3) float64 and faces (F, 3) int64, in the file's vertex order.
        Polygons with more than three corners are triangulated by trimesh.
    """
    import trimesh  # heavy: trimesh loads only to read a mesh file

    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"mesh file not found: {path}")
    try:
        kwargs = {"maintain_order": True} if suffix == ".obj" else {}
        mesh = trimesh.load(path, file_type=suffix[1:], process=False, force="mesh", **kwargs)
    except Exception as e:  # trimesh raises many types for corrupt files
        raise InputError(f"{path}: could not read mesh ({type(e).__name__}: {e})") from e
    vertices = np.asarray(getattr(mesh, "vertices", np.zeros((0, 3))), dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(getattr(mesh, "faces", np.zeros((0, 3))), dtype=np.int64).reshape(-1, 3)
    if vertices.shape[0] == 0 or faces.shape[0] == 0:
        raise InputError(f"{path}: no triangle mesh in file ({vertices.shape[0]} vertices, {faces.shape[0]} faces)")
    return vertices, faces


def write_mesh(path: str | Path, vertices: np.ndarray, faces: np.ndarray, comment: str | None = None) -> None:
    """Write vertices (V, 3) and faces (F, 3) to ``path`` (.ply binary or .obj), atomically;
    ``comment`` (one line, e.g. the axes) goes into the file's header."""
    path = Path(path)
    suffix = _suffix(path)
    v, f = mesh_arrays(vertices, faces)
    comment = "" if comment is None else " ".join(str(comment).split())
    if not comment.isascii():
        raise InputError(f"mesh comment must be ASCII (PLY headers are), got {comment!r}")
    with atomic_path(path) as tmp:
        if suffix == ".obj":
            tmp.write_text(_obj_text(v, f.astype(np.int64), comment))
        else:
            tmp.write_bytes(_ply_bytes(v, f.astype(np.int64), comment))


def _obj_text(v: np.ndarray, f: np.ndarray, comment: str = "") -> str:
    """OBJ with shortest round-trip float text, so reading it back is exact."""
    lines = ["# written by m3dhmr"] + ([f"# {comment}"] if comment else [])
    lines += [f"v {x!r} {y!r} {z!r}" for x, y, z in v.tolist()]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in f.tolist()]
    return "\n".join(lines) + "\n"


def _ply_bytes(v: np.ndarray, f: np.ndarray, comment: str = "") -> bytes:
    """Binary little-endian PLY with float64 coordinates (trimesh's exporter stores float32)."""
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment written by m3dhmr\n"
        + (f"comment {comment}\n" if comment else "") +
        f"element vertex {v.shape[0]}\nproperty double x\nproperty double y\nproperty double z\n"
        f"element face {f.shape[0]}\nproperty list uchar int vertex_indices\nend_header\n"
    ).encode("ascii")
    rec = np.empty(f.shape[0], dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    rec["n"] = 3
    rec["idx"] = f
    return header + v.astype("<f8").tobytes() + rec.tobytes()
