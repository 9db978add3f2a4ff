import numpy as np
import pytest

from m3dhmr.mesh import read_mesh, write_mesh
from mesh_shapes import icosphere


def _shuffled():
    v, f = icosphere(1)
    perm = np.random.default_rng(0).permutation(v.shape[0])
    inv = np.argsort(perm)
    return v[perm] * 0.1234567890123, inv[f]


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".PLY"])
def test_round_trip_keeps_vertex_order_exactly(tmp_path, suffix):
    v, f = _shuffled()
    path = tmp_path / f"mesh{suffix}"
    write_mesh(path, v, f)
    v2, f2 = read_mesh(path)
    assert v2.dtype == np.float64 and f2.dtype == np.int64
    np.testing.assert_array_equal(v2, v)
    np.testing.assert_array_equal(f2, f)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp file left


def test_unreferenced_vertex_is_kept(tmp_path):
    v, f = _shuffled()
    v = np.vstack([v, [[9.0, 9.0, 9.0]]])
    write_mesh(tmp_path / "m.ply", v, f)
    v2, _ = read_mesh(tmp_path / "m.ply")
    np.testing.assert_array_equal(v2, v)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ply"):
        read_mesh(tmp_path / "nope.ply")


@pytest.mark.parametrize("name,content", [("bad.ply", b"garbage\x00\x01"), ("bad.obj", b"nothing here\n"),
                                          ("empty.ply", b"")])
def test_corrupt_file(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=name):
        read_mesh(tmp_path / name)


def test_unsupported_suffix(tmp_path):
    with pytest.raises(ValueError, match="unsupported mesh format .stl"):
        read_mesh(tmp_path / "m.stl")
    with pytest.raises(ValueError, match="unsupported"):
        write_mesh(tmp_path / "m.stl", *icosphere(0))


def test_write_rejects_bad_arrays(tmp_path):
    v, f = icosphere(0)
    with pytest.raises(ValueError, match=r"\(V, 3\)"):
        write_mesh(tmp_path / "m.ply", v[:, :2], f)
    with pytest.raises(ValueError, match="outside"):
        write_mesh(tmp_path / "m.ply", v, f + 100)
