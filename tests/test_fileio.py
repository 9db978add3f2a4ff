import json

import pytest

from m3dhmr.fileio import atomic_path, atomic_write_json


def test_atomic_write_json(tmp_path):
    p = tmp_path / "sub" / "a.json"
    atomic_write_json(p, {"x": 1})
    assert json.loads(p.read_text()) == {"x": 1}
    assert [q.name for q in p.parent.iterdir()] == ["a.json"]


def test_failed_write_leaves_nothing(tmp_path):
    p = tmp_path / "b.json"
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_old(tmp_path):
    p = tmp_path / "c.json"
    atomic_write_json(p, [1])
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError
    assert json.loads(p.read_text()) == [1]


def test_permissions_follow_umask(tmp_path):
    import os

    p = tmp_path / "d.json"
    atomic_write_json(p, 1)
    umask = os.umask(0)
    os.umask(umask)
    assert (p.stat().st_mode & 0o777) == (0o666 & ~umask)
