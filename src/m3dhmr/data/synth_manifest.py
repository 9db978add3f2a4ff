"""The manifest of a synthetic set: the exact files a finished ``m3dhmr synth`` run wrote.

``synth_manifest.json`` is written (atomically) after every other file of the set; the
loaders (:func:`m3dhmr.data.freihand.load_annotations`) check a set against it before
reading, so a set that was changed afterwards (images added, removed or replaced by
another run, annotation files swapped) is refused instead of being trained or scored
on silently. Only sizes are compared (one ``stat`` per file: ~0.2 s for 30,000 images),
not contents. Layout::

    {"format": "m3dhmr synthetic set", "version": 1, "seed": 0,
     "counts": {"training": N, "evaluation": M},
     "folders": {"training/rgb": [bytes of 00000000.jpg, ...],   # N sizes, image i at index i
                 "training/mask": [...], "evaluation/rgb": [...]},
     "files": {"training_K.json": bytes, ..., "template.ply": bytes, "synth_info.json": bytes}}

A folder holds exactly the listed ``%08d.jpg`` images (other names are ignored, as by
the loader); files not listed (the loader's cache, the lock file) are not checked. One
exception: the evaluation split's 3D ground truth (``evaluation_xyz.json`` and
``evaluation_verts.json``) may be removed together, as in FreiHAND's official release;
the split then loads without ground truth, which the loader reports. Sets written
before the manifest existed have none and load as before.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from m3dhmr.errors import InputError
from m3dhmr.fileio import atomic_write_json

log = logging.getLogger(__name__)

MANIFEST_FILE = "synth_manifest.json"
FORMAT = "m3dhmr synthetic set"
MANIFEST_VERSION = 1
_IMAGE_NAME = re.compile(r"^(\d{8})\.jpg$")
#: Listed files that may be missing together (the split is then read without ground truth).
OPTIONAL_TOGETHER = ("evaluation_xyz.json", "evaluation_verts.json")


class IncompleteSetError(InputError):
    """A synthetic set's files disagree with its manifest."""


def write_manifest(root: str | Path, seed: int, counts: dict[str, int], folders: dict[str, list[int]],
                   files: list[str]) -> dict[str, Any]:
    """Write ``root/synth_manifest.json`` and return it.

    Args:
        counts: samples per split.
        folders: image folder (relative to ``root``) -> the size in bytes of each
            ``%08d.jpg`` this run wrote into it, image ``i`` at index ``i``.
        files: other files (relative to ``root``) the set consists of; their sizes are read here.
    """
    root = Path(root)
    manifest = {"format": FORMAT, "version": MANIFEST_VERSION, "seed": int(seed),
                "counts": {k: int(v) for k, v in counts.items()},
                "folders": {k: [int(s) for s in v] for k, v in folders.items()},
                "files": {name: (root / name).stat().st_size for name in files}}
    atomic_write_json(root / MANIFEST_FILE, manifest)
    return manifest


def _read(root: Path) -> dict[str, Any]:
    path = root / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise IncompleteSetError(f"synthetic set {root}: cannot read its manifest {path} ({e}); "
                                 "re-run m3dhmr synth") from e
    ok = (isinstance(manifest, dict) and manifest.get("format") == FORMAT
          and isinstance(manifest.get("folders"), dict) and isinstance(manifest.get("files"), dict))
    if not ok:
        raise IncompleteSetError(f"synthetic set {root}: {path} is not an m3dhmr synthetic-set manifest; "
                                 "re-run m3dhmr synth")
    if manifest.get("version") != MANIFEST_VERSION:
        raise IncompleteSetError(f"synthetic set {root}: manifest version {manifest.get('version')!r} is not "
                                 f"{MANIFEST_VERSION} (written by another m3dhmr version); re-run m3dhmr synth")
    return manifest


def _image_sizes(folder: Path) -> dict[int, int]:
    """Index -> size of every ``%08d.jpg`` in ``folder`` (one scandir, one stat per image)."""
    sizes = {}
    with os.scandir(folder) as it:
        for entry in it:
            m = _IMAGE_NAME.match(entry.name)
            if m:
                sizes[int(m.group(1))] = entry.stat().st_size
    return sizes


def _problem(root: Path, manifest: dict[str, Any]) -> str | None:
    """What is wrong with the set in words, or None."""
    stripped = all(not (root / name).exists() for name in OPTIONAL_TOGETHER)
    for name, size in manifest["files"].items():
        path = root / name
        if stripped and name in OPTIONAL_TOGETHER:
            continue
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, its manifest says {size}"
    for rel, sizes in manifest["folders"].items():
        folder = root / rel
        if not folder.is_dir():
            return f"{rel} is missing"
        found = _image_sizes(folder)
        if len(found) != len(sizes):
            return f"{rel} holds {len(found)} images, its manifest says {len(sizes)}"
        for i, size in enumerate(sizes):
            if i not in found:
                return f"{rel}/{i:08d}.jpg is missing"
            if found[i] != size:
                return f"{rel}/{i:08d}.jpg has {found[i]} bytes, its manifest says {size}"
    return None


def check_synthetic_set(root: str | Path) -> dict[str, Any] | None:
    """Check a folder that has a synthetic-set manifest against it; return the manifest,
    or None for a folder without one (real FreiHAND, or a set from before the manifest).

    Raises:
        IncompleteSetError: (a ``ValueError``) naming the folder and the first disagreement.
    """
    root = Path(root)
    if not (root / MANIFEST_FILE).is_file():
        if (root / "synth_info.json").is_file():
            log.debug("%s: synthetic set without %s (written before it existed); not checked", root, MANIFEST_FILE)
        return None
    manifest = _read(root)
    problem = _problem(root, manifest)
    if problem is not None:
        raise IncompleteSetError(f"synthetic set {root} is incomplete or mixed: {problem}; re-run m3dhmr synth")
    return manifest
