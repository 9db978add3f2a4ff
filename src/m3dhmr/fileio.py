"""Safe file writing: atomic writes, folder locks, leftovers of killed runs, OS errors.

- :func:`atomic_path` writes to a temporary file in the target folder, then renames it,
  so a killed process never leaves a half-written file under the final name.
- :class:`FolderLock` makes one process at a time the writer of a folder (two runs into
  one output folder would silently mix their files).
- :func:`remove_stale_temporaries` removes the temporaries a killed run left behind;
  call it only while holding the folder's lock, so no live writer's file is taken.
- :func:`os_error_message` turns an ``OSError`` into one line naming the path and cause.
- :func:`read_json` reads a JSON file the user gave, with one-line errors.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from m3dhmr.errors import InputError

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt
else:
    import fcntl


@contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    ``suffix`` (default: ``path``'s own suffix) lets libraries that choose a format by
    extension (OpenCV, trimesh, numpy) write the temporary file correctly.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Hidden name, same folder (same filesystem, so the rename is atomic); the
    # suffix is kept so extension-sniffing writers pick the right format.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=path.suffix if suffix is None else suffix,
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give the final file the permissions a plain open() would,
    # after writing, since some writers (safetensors) replace the file they are given.
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = None) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent))


def read_json(path: str | Path, label: str | None = None) -> Any:
    """The JSON document in ``path``. A missing file is a ``FileNotFoundError``
    ("LABEL: file not found: PATH"), one that is not UTF-8 JSON a one-line
    :class:`InputError` ("LABEL PATH: not valid JSON (why)"); ``label`` is what the user
    called the file (an option such as ``--bbox-json``), if anything."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{label + ': ' if label else ''}file not found: {path}")
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{label + ' ' if label else ''}{path}: not valid JSON ({e})") from None


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (packaged weights and models pin it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: Name pattern of :func:`atomic_path`'s temporaries (hidden, ``.tmp-`` in the middle).
TEMP_GLOB = ".*.tmp-*"
LOCK_NAME = ".m3dhmr.lock"


class FolderInUseError(RuntimeError):
    """Another process holds a folder's :class:`FolderLock`."""


class FolderLock:
    """An exclusive, non-blocking lock on a folder (``.m3dhmr.lock`` inside it).

    The lock is an OS file lock (``flock``; ``msvcrt.locking`` on Windows), so the OS
    releases it when the holder dies, also by ``kill -9``: a stale lock file never blocks
    the next run. The lock file stays (removing it would race with a new holder) and
    records the holder's pid and command for the error message.

        with FolderLock(out, "m3dhmr synth"):
            ...
    """

    def __init__(self, folder: str | Path, what: str = "m3dhmr") -> None:
        self.folder = Path(folder)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> "FolderLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            _lock_fd(fd)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK, errno.EDEADLK):
                raise
            holder = ""
            try:
                holder = path.read_text(encoding="utf-8", errors="replace").strip()
            except OSError:
                pass
            raise FolderInUseError(f"{self.folder} is in use by another process"
                                   f"{f' ({holder})' if holder else ''}; wait for it to finish or use "
                                   "another output folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}: {self.what}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            finally:
                os.close(self._fd)  # closing the descriptor releases the lock
                self._fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _lock_fd(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def remove_stale_temporaries(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Remove :func:`atomic_path` temporaries (files and folders) in ``folder`` that a killed
    run left; returns what was removed. Hold the folder's :class:`FolderLock` while calling."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = folder.rglob(TEMP_GLOB) if recursive else folder.glob(TEMP_GLOB)
    removed = []
    for p in sorted(found, key=lambda q: len(q.parts), reverse=True):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def os_error_message(e: OSError, path: str | Path | None = None) -> str:
    """One line for an ``OSError``: the path it concerns and the cause in words
    (``no space left on device``, ``permission denied``, ...)."""
    where = path if path is not None else (e.filename if e.filename is not None else None)
    cause = os.strerror(e.errno).lower() if e.errno is not None else str(e)
    if e.errno == errno.ENOSPC:
        cause = "no space left on device"
    elif e.errno is None and e.strerror:
        cause = e.strerror
    return f"{where}: {cause}" if where is not None else cause


def check_output_folder(path: str | Path, option: str = "--out") -> Path:
    """Check early (before any heavy work) that ``path`` is, or can be made, a writable folder;
    ``ValueError`` naming the option and the cause otherwise. Creates the folder."""
    path = Path(path)
    check_creatable_folder(path, option)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{option} {path}: cannot create the folder ({os_error_message(e)})") from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: the folder is not writable")
    return path


def check_creatable_folder(path: str | Path, option: str = "--out", writable: bool = True) -> None:
    """``ValueError`` when ``path`` or a folder above it is a file, or (``writable``) the
    nearest existing folder is not writable; creates nothing (for commands that must leave
    no trace when they fail later)."""
    path = Path(path)
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{option} {path}: {parent} is a file, not a folder")
            if writable and not os.access(parent, os.W_OK | os.X_OK):
                raise InputError(f"{option} {path}: {parent} is not writable")
            return
