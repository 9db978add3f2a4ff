"""Random backgrounds for synthetic hand images: procedural textures and natural photos.

By default the photos are the sample images that ship inside the scikit-image wheel
(``skimage/data/*.png|jpg``: astronaut, coffee, cat, rocket, motorcycle, bricks,
grass, ...). They are read straight from the installed package folder with OpenCV,
never through ``skimage.data``'s fetchers (some of which download with pooch), so
this works offline; they are decoded once per process and cached, with a 2x image
pyramid so that a crop is always resampled from a level at most 2x larger than the
output (one bilinear ``warpAffine`` for crop + flip + resize, no aliasing to speak of).

With ``SynthConfig.background_dir`` (issue 20) the photos are instead every JPEG/PNG of
that folder (``scripts/fetch_backgrounds.py`` fills one with a few hundred openly licensed
real photos; training data only, never shipped), sorted by file name so that a seed gives
the same set for the same folder; they are decoded once per process (at most
:data:`FOLDER_PHOTO_SIDE` px on the long side) with the same pyramids, and their crops get
only small colour changes (no channel swaps: real photos should keep plausible colours).

Speed (issue 4): every function works on uint8 images with single OpenCV passes
(``warpAffine``, ``transform``, ``LUT``) instead of float64 full-image temporaries.
"""

from __future__ import annotations

import importlib.util
import logging
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from m3dhmr.errors import InputError

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
#: Long side of a background-folder photo in memory: its crops start at 0.3 of the short
#: side, so 768 x 512 keeps a 224-px crop within 1.5x upsampling (~1.2 MB per photo).
FOLDER_PHOTO_SIDE = 768
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def _skimage_data_dir() -> Path | None:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load_photos(folder: str | Path | None = None) -> tuple[tuple[str, np.ndarray], ...]:
    """(name, (H, W, 3) uint8 RGB) per photo, cached per process: the scikit-image photos of
    :data:`PHOTO_FILES` when ``folder`` is None, else every JPEG/PNG in ``folder`` sorted by
    file name (name = file stem). A missing folder is a FileNotFoundError, a folder without
    photos or with an unreadable one a ValueError naming it."""
    return _skimage_photos() if folder is None else _folder_photos(_folder_key(folder))


def _folder_key(folder: str | Path) -> str:
    return str(Path(folder).expanduser().resolve())


@lru_cache(maxsize=1)
def _skimage_photos() -> tuple[tuple[str, np.ndarray], ...]:
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


@lru_cache(maxsize=2)
def _folder_photos(folder: str) -> tuple[tuple[str, np.ndarray], ...]:
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"background_dir {folder} is not a folder (fill one with "
                                "scripts/fetch_backgrounds.py --out DIR)")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"background_dir {folder} has no JPEG or PNG photos")
    photos = []
    for path in files:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise InputError(f"background_dir: cannot decode {path}")
        s = FOLDER_PHOTO_SIDE / max(img.shape[:2])
        if s < 1:
            img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        photos.append((path.stem, np.ascontiguousarray(img[:, :, ::-1])))
    log.info("loaded %d background photos from %s", len(photos), folder)
    return tuple(photos)


def photo_pyramids(folder: str | Path | None = None) -> tuple[tuple[np.ndarray, ...], ...]:
    """Per photo of :func:`load_photos`: levels 0, 1, ... each half the size of the previous
    (down to 64 px), built once per process."""
    return _pyramids(None if folder is None else _folder_key(folder))


@lru_cache(maxsize=2)
def _pyramids(folder: str | None) -> tuple[tuple[np.ndarray, ...], ...]:
    out = []
    for _, img in load_photos(folder):
        levels = [img]
        while min(levels[-1].shape[:2]) >= 128:
            levels.append(cv2.pyrDown(levels[-1]))
        out.append(tuple(levels))
    return tuple(out)


def _random_colors(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(0, 255, (n, 3))


def _blend_lut(c0: np.ndarray, c1: np.ndarray) -> np.ndarray:
    """(1, 256, 3) uint8 table: entry i = c0 + (c1 - c0) * i / 255, rounded."""
    t = np.arange(256, dtype=np.float64)[:, None] / 255.0
    return np.clip(c0 * (1.0 - t) + c1 * t + 0.5, 0, 255).astype(np.uint8)[None]


def blend_two_colours(t: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Blend two colours c (2, 3) by t (S, S) float32 in [0, 1] -> (S, S, 3) uint8.
    t is quantised to 8 bits and mapped through a 256-entry table (one ``cv2.LUT``):
    at most one grey level from the exact blend, ~10x cheaper than float arithmetic."""
    q = np.empty(t.shape, np.uint8)
    np.multiply(t, 255.0, out=t)
    np.add(t, 0.5, out=t)
    q[...] = t  # unsafe cast truncates: t was already rounded up by 0.5
    return cv2.LUT(cv2.merge([q, q, q]), _blend_lut(c[0], c[1]))


def procedural_background(rng: np.random.Generator, size: int, kind: str | None = None) -> tuple[np.ndarray, str]:
    """A (size, size, 3) uint8 RGB texture of ``kind`` (random when None) and its name."""
    kind = kind or PROCEDURAL_KINDS[rng.integers(len(PROCEDURAL_KINDS))]
    if kind not in PROCEDURAL_KINDS:
        raise InputError(f"unknown background kind {kind!r}; expected one of {PROCEDURAL_KINDS}")
    # Coordinates in [0, 1): 1-D rows/columns broadcast into the (S, S) maps, never an mgrid.
    r = (np.arange(size, dtype=np.float32) / np.float32(size))
    xx, yy = r[None, :], r[:, None]
    if kind == "noise":
        # Smooth value noise: upsample a coarse random grid, plus a finer grey octave.
        coarse = rng.uniform(0, 255, (int(rng.integers(2, 10)), int(rng.integers(2, 10)), 3)).astype(np.float32)
        fine = rng.uniform(-40, 40, (int(rng.integers(16, 64)),) * 2).astype(np.float32)
        img = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
        fine = cv2.resize(fine, (size, size), interpolation=cv2.INTER_LINEAR)
        img += cv2.merge([fine, fine, fine])
        out = np.empty((size, size, 3), np.uint8)
        np.clip(img, 0, 255, out=img)
        out[...] = img  # truncating cast, as the former astype
        return out, kind
    c = _random_colors(rng, 2)
    if kind == "gradient":
        a = rng.uniform(0, 2 * np.pi)
        t = np.float32(np.cos(a)) * xx + np.float32(np.sin(a)) * yy
        lo, hi = float(t.min()), float(t.max())
        t = (t - np.float32(lo)) * np.float32(1.0 / max(hi - lo, 1e-6))
    elif kind == "stripes":
        a = rng.uniform(0, np.pi)
        freq = rng.uniform(2, 20) * 2 * np.pi
        phase = rng.uniform(0, 2 * np.pi)
        t = np.float32(freq * np.cos(a)) * xx + np.float32(freq * np.sin(a)) * yy + np.float32(phase)
        np.sin(t, out=t)
        if rng.random() < 0.5:
            t = (t > 0).astype(np.float32)  # hard-edged stripes
        else:
            t = t * np.float32(0.5) + np.float32(0.5)
    else:  # checker
        cell = rng.uniform(0.05, 0.3)
        a = rng.uniform(0, np.pi / 2)
        u = np.floor(np.float32(np.cos(a) / cell) * xx + np.float32(np.sin(a) / cell) * yy)
        v = np.floor(np.float32(-np.sin(a) / cell) * xx + np.float32(np.cos(a) / cell) * yy)
        t = np.mod(u + v, np.float32(2.0))
    return blend_two_colours(np.ascontiguousarray(t, dtype=np.float32), c), kind


def photo_crop_affine(x0: float, y0: float, side: float, size: int, flip_x: bool, flip_y: bool) -> np.ndarray:
    """(2, 3) ``warpAffine`` matrix (source pixel centres -> output pixel centres) taking the
    square crop whose top-left corner is (x0, y0) and side ``side`` (edge coordinates: pixel
    j spans [j, j + 1)) onto (size, size), mirrored as asked."""
    s = size / side
    # Output pixel u spans source [x0 + u / s, x0 + (u + 1) / s): u = s (x + 0.5 - x0) - 0.5.
    a = np.array([[s, 0.0, (0.5 - x0) * s - 0.5], [0.0, s, (0.5 - y0) * s - 0.5]])
    if flip_x:
        a[0] = -a[0]
        a[0, 2] += size - 1
    if flip_y:
        a[1] = -a[1]
        a[1, 2] += size - 1
    return a


def photo_background(rng: np.random.Generator, size: int,
                     folder: str | Path | None = None) -> tuple[np.ndarray, str] | None:
    """A random crop of a random photo (of ``folder``, or the scikit-image photos when None),
    resized to (size, size, 3) uint8 RGB, flipped and recoloured; None when no photo is
    available. Folder photos get smaller colour changes (see the module docstring)."""
    photos = load_photos(folder)
    if not photos:
        return None
    k = int(rng.integers(len(photos)))
    name, img = photos[k]
    h, w = img.shape[:2]
    side = int(rng.uniform(0.3, 1.0) * min(h, w))
    y0 = int(rng.integers(0, h - side + 1))
    x0 = int(rng.integers(0, w - side + 1))
    flip_x = rng.random() < 0.5
    flip_y = rng.random() < 0.2
    # Pyramid level whose crop is at most 2x the output: bilinear sampling then sees every
    # source pixel (no aliasing), and the cost depends only on the output size.
    levels = photo_pyramids(folder)[k]
    lev = 0
    while lev + 1 < len(levels) and side / 2 ** (lev + 1) >= size:
        lev += 1
    f = 2.0 ** -lev
    A = photo_crop_affine(x0 * f, y0 * f, side * f, size, flip_x, flip_y)  # edge coordinates scale by f
    out = cv2.warpAffine(levels[lev], A, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if folder is not None:
        # Real photos: white balance, contrast and exposure nudged, colours kept plausible.
        gain = rng.uniform(0.85, 1.15, 3)
        contrast = rng.uniform(0.75, 1.1)
        brightness = rng.uniform(-25, 25)
        return recolour(out, np.arange(3), gain, contrast, brightness), name
    perm = rng.permutation(3) if rng.random() < 0.3 else np.arange(3)
    gain = rng.uniform(0.7, 1.3, 3)
    contrast = rng.uniform(0.6, 1.2)
    brightness = rng.uniform(-40, 40)
    return recolour(out, perm, gain, contrast, brightness), name


def recolour(img: np.ndarray, perm: np.ndarray, gain: np.ndarray, contrast: float, brightness: float) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W, 3) uint8: channel permutation (out[c] = in[perm[c]]),
    per-channel gain (3,), contrast about the image mean, brightness offset, clipped.

    All four are one affine colour map ``M x + b``, applied in one saturating pass by
    ``cv2.transform`` (the float version made four full-image temporaries)."""
    G = np.asarray(gain, dtype=np.float64)[:, None] * np.eye(3)[np.asarray(perm)]
    mean = float((G @ np.array(cv2.mean(img)[:3])).mean())  # mean of the gained image
    M = np.concatenate([contrast * G, np.full((3, 1), (1 - contrast) * mean + brightness)], axis=1)
    return cv2.transform(img, M)


def random_background(rng: np.random.Generator, size: int, photo_prob: float = 0.6,
                      folder: str | Path | None = None) -> tuple[np.ndarray, str]:
    """(size, size, 3) uint8 RGB background and a short description ("photo:coffee", "checker");
    photos from ``folder`` (``SynthConfig.background_dir``) or, when None, scikit-image's."""
    if rng.random() < photo_prob:
        res = photo_background(rng, size, folder)
        if res is not None:
            return res[0], f"photo:{res[1]}"
    return procedural_background(rng, size)
