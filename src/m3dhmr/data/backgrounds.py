"""Random backgrounds for synthetic hand images: procedural textures and natural photos.

The photos are the sample images that ship inside the scikit-image wheel
(``skimage/data/*.png|jpg``: astronaut, coffee, cat, rocket, motorcycle, bricks,
grass, ...). They are read straight from the installed package folder with OpenCV,
never through ``skimage.data``'s fetchers (some of which download with pooch), so
this works offline; they are decoded once per process and cached.
"""

from __future__ import annotations

import importlib.util
import logging
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

#: Photos inside the scikit-image wheel that make plausible backgrounds (the binary
#: masks, charts and microscopy-like images of ``skimage/data`` are left out).
PHOTO_FILES: tuple[str, ...] = (
    "astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png",
    "motorcycle_right.png", "camera.png", "coins.png", "brick.png", "grass.png", "gravel.png",
    "moon.png", "text.png", "hubble_deep_field.jpg", "color.png", "clock_motion.png",
)
PROCEDURAL_KINDS: tuple[str, ...] = ("noise", "gradient", "stripes", "checker")
_MAX_PHOTO_SIDE = 512  # downscale once: crops of a 224 image never need more


def _skimage_data_dir() -> Path | None:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@lru_cache(maxsize=1)
def load_photos() -> tuple[tuple[str, np.ndarray], ...]:
    """(name, (H, W, 3) uint8 RGB) for every available photo in :data:`PHOTO_FILES`, cached."""
    folder = _skimage_data_dir()
    photos = []
    for name in PHOTO_FILES:
        path = None if folder is None else folder / name
        img = None if path is None or not path.is_file() else cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            continue
        s = _MAX_PHOTO_SIDE / max(img.shape[:2])
        if s < 1:
            img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        photos.append((name.rsplit(".", 1)[0], np.ascontiguousarray(img[:, :, ::-1])))
    if not photos:
        log.warning("no scikit-image sample photos found; backgrounds will be procedural only")
    return tuple(photos)


def _random_colors(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(0, 255, (n, 3))


def procedural_background(rng: np.random.Generator, size: int, kind: str | None = None) -> tuple[np.ndarray, str]:
    """A (size, size, 3) uint8 RGB texture of ``kind`` (random when None) and its name."""
    kind = kind or PROCEDURAL_KINDS[rng.integers(len(PROCEDURAL_KINDS))]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == "noise":
        # Smooth value noise: upsample a coarse random grid, plus a finer octave.
        coarse = rng.uniform(0, 255, (int(rng.integers(2, 10)), int(rng.integers(2, 10)), 3)).astype(np.float32)
        img = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
        fine = rng.uniform(-40, 40, (int(rng.integers(16, 64)),) * 2 + (1,)).astype(np.float32)
        img += cv2.resize(fine, (size, size), interpolation=cv2.INTER_LINEAR)[:, :, None]
    elif kind == "gradient":
        c = _random_colors(rng, 2).astype(np.float32)
        a = rng.uniform(0, 2 * np.pi)
        t = np.cos(a) * xx + np.sin(a) * yy
        t = ((t - t.min()) / max(t.max() - t.min(), 1e-6))[:, :, None]
        img = c[0] * (1 - t) + c[1] * t
    elif kind == "stripes":
        c = _random_colors(rng, 2).astype(np.float32)
        a = rng.uniform(0, np.pi)
        freq = rng.uniform(2, 20) * 2 * np.pi
        t = 0.5 + 0.5 * np.sin(freq * (np.cos(a) * xx + np.sin(a) * yy) + rng.uniform(0, 2 * np.pi))
        if rng.random() < 0.5:
            t = (t > 0.5).astype(np.float32)  # hard-edged stripes
        t = t[:, :, None]
        img = c[0] * (1 - t) + c[1] * t
    elif kind == "checker":
        c = _random_colors(rng, 2).astype(np.float32)
        cell = rng.uniform(0.05, 0.3)
        a = rng.uniform(0, np.pi / 2)
        u = (np.cos(a) * xx + np.sin(a) * yy) / cell
        v = (-np.sin(a) * xx + np.cos(a) * yy) / cell
        t = ((np.floor(u) + np.floor(v)) % 2)[:, :, None]
        img = c[0] * (1 - t) + c[1] * t
    else:
        raise ValueError(f"unknown background kind {kind!r}; expected one of {PROCEDURAL_KINDS}")
    return np.clip(img, 0, 255).astype(np.uint8), kind


def photo_background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str] | None:
    """A random crop of a random photo, resized to (size, size, 3) uint8 RGB, flipped and
    recoloured; None when no photo is available."""
    photos = load_photos()
    if not photos:
        return None
    name, img = photos[rng.integers(len(photos))]
    h, w = img.shape[:2]
    side = int(rng.uniform(0.3, 1.0) * min(h, w))
    y0 = int(rng.integers(0, h - side + 1))
    x0 = int(rng.integers(0, w - side + 1))
    crop = img[y0:y0 + side, x0:x0 + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.2:
        crop = crop[::-1]
    out = cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    # Recolour: channel permutation (sometimes), per-channel gain, contrast and brightness.
    if rng.random() < 0.3:
        out = out[:, :, rng.permutation(3)]
    out *= rng.uniform(0.7, 1.3, 3).astype(np.float32)
    mean = out.mean()
    out = (out - mean) * rng.uniform(0.6, 1.2) + mean + rng.uniform(-40, 40)
    return np.clip(out, 0, 255).astype(np.uint8), name


def random_background(rng: np.random.Generator, size: int, photo_prob: float = 0.6) -> tuple[np.ndarray, str]:
    """(size, size, 3) uint8 RGB background and a short description ("photo:coffee", "checker")."""
    if rng.random() < photo_prob:
        res = photo_background(rng, size)
        if res is not None:
            return res[0], f"photo:{res[1]}"
    return procedural_background(rng, size)
