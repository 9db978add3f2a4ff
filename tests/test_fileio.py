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


# ---------------------------------------------------------------- folder locks, leftovers, OS errors

import errno
import os
import subprocess
import sys
import textwrap

from m3dhmr.fileio import (FolderInUseError, FolderLock, check_output_folder, os_error_message,
                           remove_stale_temporaries)

_HOLDER = textwrap.dedent("""
    import sys, time
    from m3dhmr.fileio import FolderLock
    lock = FolderLock(sys.argv[1], "holder test").acquire()
    print("locked", flush=True)
    time.sleep(60)
""")


def _start_holder(folder):
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_folder_lock_excludes_another_process_and_dies_with_it(tmp_path):
    proc = _start_holder(tmp_path)
    try:
        with pytest.raises(FolderInUseError, match=rf"in use by another process \(pid {proc.pid}: holder test\)"):
            FolderLock(tmp_path, "second").acquire()
    finally:
        proc.kill()  # SIGKILL: no clean-up code runs in the holder
        proc.wait()
    with FolderLock(tmp_path, "after the kill"):  # the OS released the dead holder's lock
        assert "after the kill" in (tmp_path / ".m3dhmr.lock").read_text()
    with FolderLock(tmp_path):  # released on exit, so it can be taken again
        pass


def test_folder_lock_in_one_process_is_exclusive_too(tmp_path):
    with FolderLock(tmp_path):
        with pytest.raises(FolderInUseError):
            FolderLock(tmp_path).acquire()


def test_remove_stale_temporaries(tmp_path):
    keep = [tmp_path / "a.json", tmp_path / "sub" / "b.jpg"]
    stale = [tmp_path / ".a.json.tmp-x1y2.json", tmp_path / "sub" / ".b.jpg.tmp-zz.jpg"]
    for p in keep + stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    (tmp_path / ".out.tmp-dir").mkdir()
    (tmp_path / ".out.tmp-dir" / "mesh.obj").write_text("x")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([stale[0], tmp_path / ".out.tmp-dir"])
    assert stale[1].exists()
    assert remove_stale_temporaries(tmp_path, recursive=True) == [stale[1]]
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_os_error_message():
    assert os_error_message(OSError(errno.ENOSPC, "No space", "/d/x.bin")) == "/d/x.bin: no space left on device"
    assert os_error_message(PermissionError(errno.EACCES, "x", "/r")) == "/r: permission denied"
    assert os_error_message(OSError(errno.EROFS, "x"), "/m") == "/m: read-only file system"


def test_check_output_folder(tmp_path):
    assert check_output_folder(tmp_path / "new" / "deep").is_dir()
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(ValueError, match="--out .*file.txt is a file, not a folder"):
        check_output_folder(f)
    with pytest.raises(ValueError, match="--views .*file.txt is a file, not a folder"):
        check_output_folder(f / "under", "--views")


def test_check_creatable_folder_creates_nothing(tmp_path):
    from m3dhmr.fileio import check_creatable_folder

    check_creatable_folder(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="--data .*f is a file, not a folder"):
        check_creatable_folder(tmp_path / "f" / "g", "--data", writable=False)


def test_read_json_names_the_file_and_the_option(tmp_path):
    import pytest

    from m3dhmr.fileio import read_json

    good = tmp_path / "a.json"
    good.write_text('{"x": [1, 2]}')
    assert read_json(good) == {"x": [1, 2]}
    with pytest.raises(FileNotFoundError, match=r"^--boxes: file not found: .*missing\.json$"):
        read_json(tmp_path / "missing.json", "--boxes")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"^--boxes .*bad\.json: not valid JSON \(Expecting"):
        read_json(bad, "--boxes")
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'"\xe9"')
    with pytest.raises(ValueError, match=r"^.*latin\.json: not valid JSON"):
        read_json(latin)
