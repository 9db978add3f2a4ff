"""2D reference landmarks of real photos from the packaged real-photo landmark model.

The landmark model (MediaPipe's palm detector + hand landmarker, :mod:`m3dhmr.detect.hands`)
was trained on real photos; its landmarks are the reference of the real-photo yardstick
(:mod:`m3dhmr.evaluation.real`) and the pseudo-labels of self-training. They are computed once
per image and cached.

One hand per image: the highest-presence hand of two views of the image,

- the image as it is, and
- the image edge-padded by :data:`~m3dhmr.detect.hands.PAD_FRACTION` of its short side on
  every side (why, with measurements: that constant's note).

Unlike :meth:`m3dhmr.detect.HandDetector.detect`, which looks at the padded view only where
the image as it is has no hand, both views are always run and the more confident hand is
kept: a reference should be the landmark model's best. The view as it is keeps large
photos (where padding would shrink a hand in the detector's 192-px input) working.

Cache: one ``.npz`` (+ a readable ``.json`` of its meta) holding every image seen, keyed on
the SHA-256 of the file's bytes (a changed image is a new key; the stale entry is never
read) and stamped with the landmark models' pinned hashes
(:data:`m3dhmr.detect.hands.MODEL_FILES`) and the view settings (any change discards the
whole cache). Written atomically. Default place: ``.m3dhmr_pseudo_labels.npz`` in the
images' common folder, or under ``~/.cache/m3dhmr/pseudo_labels/`` when that folder is
read-only.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from m3dhmr.conventions import NUM_JOINTS
from m3dhmr.detect import HandDetector
from m3dhmr.detect import hands as detect_hands
from m3dhmr.detect.hands import PAD_FRACTION, pad_view, shift_hand
from m3dhmr.errors import InputError
from m3dhmr.fileio import atomic_path, atomic_write_json, sha256_file
from m3dhmr.inference.images import load_image
from m3dhmr.inference.quality import landmarks_3d

log = logging.getLogger(__name__)

CACHE_NAME = ".m3dhmr_pseudo_labels.npz"
#: Bumped when what is stored changes meaning (discards old caches).
CACHE_VERSION = 1
#: Presence below which the landmark model finds no hand (:class:`m3dhmr.detect.HandDetector`'s default).
DEFAULT_MIN_PRESENCE = 0.5


@dataclass(frozen=True)
class PseudoLabels:
    """Reference landmarks of N images (one hand each).

    paths: (N,) the images; landmarks: (N, 21, 2) float32 image pixels (x right, y down),
    FreiHAND joint order, NaN where no hand was found; depth: (N, 21) float32 the landmark
    model's depth relative to the wrist, in image pixels (MediaPipe's z, smaller is nearer,
    scaled from its 224-px crop like x and y), NaN where none; presence: (N,) float32 the
    landmark model's hand presence in [0, 1], 0 where no hand; handedness: (N,) "left" /
    "right" (the person's hand) or None.
    """

    paths: tuple[Path, ...]
    landmarks: np.ndarray
    depth: np.ndarray
    presence: np.ndarray
    handedness: tuple[str | None, ...]

    def __post_init__(self) -> None:
        n = len(self.paths)
        for name, shape in (("landmarks", (n, NUM_JOINTS, 2)), ("depth", (n, NUM_JOINTS)), ("presence", (n,))):
            if getattr(self, name).shape != shape:
                raise InputError(f"PseudoLabels.{name} must have shape {shape}, got {getattr(self, name).shape}")
        if len(self.handedness) != n:
            raise InputError(f"PseudoLabels.handedness has {len(self.handedness)} entries for {n} paths")

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, min_presence: float = DEFAULT_MIN_PRESENCE) -> np.ndarray:
        """(N,) bool: a hand with presence >= ``min_presence`` and finite landmarks."""
        if not 0.0 <= min_presence <= 1.0:
            raise InputError(f"min_presence must be in [0, 1], got {min_presence}")
        finite = np.isfinite(self.landmarks).all(axis=(1, 2))
        return finite & (self.presence >= min_presence) & (self.presence > 0)


def detect_best(detector, image: np.ndarray, pad_fraction: float = PAD_FRACTION):
    """The highest-presence hand of ``image`` (H, W, 3) uint8 RGB as it is and edge-padded
    (see the module doc), in the image's pixels; None when neither view has one.

    ``detector``: a :class:`m3dhmr.detect.HandDetector` (or anything with its ``detect``);
    its own padded retry is switched off here, since both views are looked at anyway."""
    best = None
    views = [(image, 0)] + ([pad_view(image, pad_fraction)] if pad_fraction > 0 else [])
    for view, p in views:
        hands = detector.detect(view, pad=False)
        if hands:
            h = max(hands, key=lambda h: h.score)
            if best is None or h.score > best.score:
                best = shift_hand(h, -p, -p) if p else h
    return best


def model_key() -> dict[str, Any]:
    """What the cached landmarks depend on besides the image: model hashes, views, version."""
    return {"version": CACHE_VERSION, "pad_fraction": PAD_FRACTION,
            "models": {name: digest for name, (_, digest) in sorted(detect_hands.MODEL_FILES.items())}}


def default_cache(paths: Sequence[Path]) -> Path:
    """``.m3dhmr_pseudo_labels.npz`` in the images' common folder, or a user cache file when
    that folder is not writable."""
    common = Path(os.path.commonpath([str(Path(p).resolve().parent) for p in paths]))
    if os.access(common, os.W_OK):
        return common / CACHE_NAME
    tag = hashlib.sha256(str(common).encode()).hexdigest()[:16]
    return Path.home() / ".cache" / "m3dhmr" / "pseudo_labels" / f"{common.name}-{tag}.npz"


def _empty() -> dict[str, np.ndarray]:
    return {"keys": np.zeros(0, "U64"), "landmarks": np.zeros((0, NUM_JOINTS, 2), np.float32),
            "depth": np.zeros((0, NUM_JOINTS), np.float32), "presence": np.zeros(0, np.float32),
            "handedness": np.zeros(0, "U5")}


def _load_cache(cache: Path) -> dict[str, np.ndarray]:
    """The cached arrays, or empty ones when the file is missing, unreadable or stale."""
    if not cache.is_file():
        return _empty()
    try:
        with np.load(cache, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            data = {k: z[k] for k in _empty()}
    except (OSError, ValueError, KeyError) as e:
        log.warning("%s: unreadable pseudo-label cache (%s); recomputing", cache, e)
        return _empty()
    if meta != model_key():
        log.info("%s: landmark models or settings changed; recomputing every pseudo-label", cache)
        return _empty()
    return data


def _save_cache(cache: Path, data: dict[str, np.ndarray]) -> None:
    meta = model_key()
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.array(json.dumps(meta)), **data)
    with atomic_path(cache) as tmp:
        tmp.write_bytes(buf.getvalue())
    detected = int((data["presence"] >= DEFAULT_MIN_PRESENCE).sum())
    atomic_write_json(cache.with_suffix(".json"), {**meta, "entries": int(len(data["keys"])),
                                                   "presence_ge_0.5": detected,
                                                   "arrays": {"landmarks": "(N, 21, 2) image px",
                                                              "depth": "(N, 21) image px, relative to wrist",
                                                              "presence": "(N,)", "keys": "(N,) sha256 of file"}},
                      indent=1)


def _label_one(detector, path: Path) -> tuple[np.ndarray, np.ndarray, float, str]:
    hand = detect_best(detector, load_image(path))
    if hand is None:
        return np.full((NUM_JOINTS, 2), np.nan), np.full(NUM_JOINTS, np.nan), 0.0, ""
    # MediaPipe's z is in its crop's pixels; landmarks_3d scales it like x and y.
    return hand.landmarks, landmarks_3d(hand)[:, 2], float(hand.score), hand.handedness


def pseudo_labels(paths: Sequence[Path | str], cache: Path | str | None = None, progress: bool = False,
                  detector=None) -> PseudoLabels:
    """Reference landmarks of each image in ``paths`` (N files), from the cache where the
    file's bytes and the models are unchanged, else computed and added to the cache.

    cache: the ``.npz`` (default :func:`default_cache`); progress: log every 100 images;
    detector: the :class:`m3dhmr.detect.HandDetector` to use (default: one that keeps any
    presence, so :meth:`PseudoLabels.select` can choose the threshold).
    """
    paths = tuple(Path(p) for p in paths)
    if not paths:
        raise InputError("pseudo_labels: no image paths given")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"{p}: image not found")
    cache = default_cache(paths) if cache is None else Path(cache)
    data = _load_cache(cache)
    index = {k: i for i, k in enumerate(data["keys"].tolist())}
    keys = [sha256_file(p) for p in paths]
    missing = sorted({k: p for k, p in zip(keys, paths) if k not in index}.items())
    if missing:
        if detector is None:
            detector = HandDetector(max_hands=2, min_presence=0.0, pad_fraction=0.0)  # both views below
        log.info("pseudo-labels: %d of %d images not cached in %s; running the landmark model",
                 len(missing), len(paths), cache)
        new = {k: [] for k in _empty()}
        for i, (key, path) in enumerate(missing):
            lm, depth, presence, side = _label_one(detector, path)
            for name, v in (("keys", key), ("landmarks", lm), ("depth", depth), ("presence", presence),
                            ("handedness", side)):
                new[name].append(v)
            if progress and (i + 1) % 100 == 0:
                log.info("pseudo-labels: %d / %d", i + 1, len(missing))
        data = {name: np.concatenate([data[name], np.asarray(new[name], dtype=data[name].dtype)])
                for name in data}
        try:
            _save_cache(cache, data)
        except OSError as e:  # a read-only place: the labels are still returned
            log.warning("%s: could not write the pseudo-label cache (%s)", cache, e)
        index = {k: i for i, k in enumerate(data["keys"].tolist())}
    rows = np.array([index[k] for k in keys], dtype=np.int64)
    return PseudoLabels(paths=paths, landmarks=data["landmarks"][rows].astype(np.float32),
                        depth=data["depth"][rows].astype(np.float32),
                        presence=data["presence"][rows].astype(np.float32),
                        handedness=tuple(s or None for s in data["handedness"][rows].tolist()))
