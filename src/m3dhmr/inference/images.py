"""Reading users' images and videos as 8-bit RGB, and listing the inputs of ``predict``.

Any image OpenCV decodes is accepted: grayscale is replicated to three channels, an
alpha channel is dropped (composited over black would darken anti-aliased hand edges),
16-bit images are scaled to 8 bits (``/ 257``, so 65535 -> 255), float images must be in
[0, 1] (values beyond it by more than :data:`FLOAT_TOLERANCE` are refused rather than clipped:
a float image in 0..255 would otherwise turn white; divide it by 255 first).
An EXIF orientation tag (phone photos) is applied, so the picture is upright (see
:func:`load_image`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from m3dhmr.errors import InputError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".jp2"})
VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})
#: How far a float image may stray outside [0, 1] (interpolation overshoot) and still be
#: clipped; beyond it the image is refused.
FLOAT_TOLERANCE = 0.01


@dataclass(frozen=True)
class InputItem:
    """One input of ``predict``: an image or a video file."""

    path: Path
    kind: Literal["image", "video"]


def to_rgb_uint8(array: np.ndarray, where: str = "image", bgr: bool = True) -> np.ndarray:
    """Convert a decoded image to (H, W, 3) uint8 RGB.

    array: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); uint8, uint16 or float in [0, 1]
    (a ValueError for NaN, inf or values outside [0, 1], e.g. a float image in 0..255).
    ``bgr``: channel order of colour input (OpenCV decodes as BGR).
    """
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(f"{where}: unsupported image shape {a.shape} (expected H x W, H x W x 3 or H x W x 4)")
    if a.dtype == np.uint8:
        pass
    elif a.dtype == np.uint16:
        a = ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise InputError(f"{where}: float image contains NaN or inf")
        lo, hi = float(a.min()), float(a.max())
        if hi > 1.0 + FLOAT_TOLERANCE:
            raise InputError(f"{where}: float image has values up to {hi:g}, but float images must be in [0, 1] "
                             "(divide a 0..255 image by 255)")
        if lo < -FLOAT_TOLERANCE:
            raise InputError(f"{where}: float image has values down to {lo:g}, but float images must be in [0, 1]")
        a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    else:
        raise InputError(f"{where}: unsupported pixel type {a.dtype} (expected 8/16-bit or float)")
    if a.ndim == 2:
        return np.ascontiguousarray(np.repeat(a[:, :, None], 3, axis=2))
    a = a[:, :, :3]
    return np.ascontiguousarray(a[:, :, ::-1] if bgr else a)


#: ``cv2.imdecode`` flags of :func:`load_image`: any depth (16-bit, float) and any colour
#: layout (grayscale stays one channel), with the EXIF orientation applied. OpenCV applies
#: the orientation for every flag except ``IMREAD_UNCHANGED`` (and
#: ``IMREAD_IGNORE_ORIENTATION``); the one thing ``IMREAD_UNCHANGED`` adds is the alpha
#: channel, which :func:`to_rgb_uint8` drops anyway.
IMREAD_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB, upright; errors name the file.

    The EXIF orientation tag (a phone photo stored sideways, tag 6 or 8; mirrored, 2, 4,
    5, 7) is applied by OpenCV itself (:data:`IMREAD_FLAGS`), so no EXIF library (Pillow)
    is needed: a 640 x 480 JPEG tagged 6 loads as 480 wide and 640 high.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)  # also works for non-ASCII paths
    img = cv2.imdecode(data, IMREAD_FLAGS) if data.size else None
    if img is None:
        raise InputError(f"{path}: cannot decode the image (unreadable or not an image)")
    return to_rgb_uint8(img, str(path))


def collect_inputs(paths: list[str | Path]) -> list[InputItem]:
    """Expand ``predict``'s inputs: files by extension, folders to their images (sorted).

    Errors: a missing path, an unknown extension, a folder with no images.
    """
    items: list[InputItem] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise InputError(f"{p}: folder contains no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            items.extend(InputItem(q, "image") for q in found)
        elif p.is_file():
            ext = p.suffix.lower()
            if ext in IMAGE_EXTENSIONS:
                items.append(InputItem(p, "image"))
            elif ext in VIDEO_EXTENSIONS:
                items.append(InputItem(p, "video"))
            else:
                raise InputError(f"{p}: unknown file extension {p.suffix!r}; images: "
                                 f"{', '.join(sorted(IMAGE_EXTENSIONS))}; videos: {', '.join(sorted(VIDEO_EXTENSIONS))}")
        else:
            raise FileNotFoundError(f"input not found: {p}")
    if not items:
        raise InputError("no inputs given")
    return items
