"""Hand boxes and intrinsics for users' own images: parsing, validation, squaring, default K.

Box convention
    ``(x, y, w, h)`` in pixels, ``(x, y)`` the top-left corner, in the package's pixel
    frame (pixel centres at integers, so a ``W x H`` image spans ``[-0.5, W - 0.5]``;
    see :mod:`m3dhmr.conventions`). Mirroring an image (``u -> W - 1 - u``) maps a box
    to ``(W - 1 - x - w, y, w, h)``.

Default intrinsics
    Users rarely know their camera, so without ``--K`` the focal length comes from an
    assumed **horizontal field of view of 60 degrees** (``fx = fy = (W / 2) / tan(30 deg)
    ~ 0.87 W``), square pixels, principal point at the image centre ``((W-1)/2, (H-1)/2)``.
    60 deg sits in the middle of phone main cameras (~65-75 deg) and webcams (~55-78 deg);
    FreiHAND's 224-px crops have ~20-40 deg, so ``--fov`` should be lowered for crops
    cut out of larger pictures. A wrong focal length scales the recovered depth (and
    thus the camera-space position) but not the root-relative hand shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m3dhmr.geometry.camera import intrinsics_from_fov
from m3dhmr.geometry.crop import CropBox, crop_affine, crop_camera, warp_image
from m3dhmr.errors import InputError
from m3dhmr.fileio import read_json

#: Assumed horizontal field of view (degrees) when the user gives no intrinsics.
DEFAULT_FOV_DEG: float = 60.0
#: Side of the square crop around predicted landmarks, as a multiple of their extent,
#: for a model whose training crops are unknown. A model's own value is
#: :func:`training_crop_scales` of its training config (the Predictor uses that).
DEFAULT_TRACK_MARGIN: float = 2.0
#: A user's box (tight around the hand) is squared and enlarged by this factor, for a
#: model whose training crops are unknown (see :func:`training_crop_scales`).
DEFAULT_BOX_SCALE: float = 1.7
#: The joints' extent as a fraction of the hand silhouette's (fingertip joints sit at
#: the tips, the wrist joint inside the wrist; measured on the synthetic sets).
JOINTS_PER_SILHOUETTE: float = 0.87


def training_crop_scales(augment) -> tuple[float, float]:
    """``(track_margin, box_scale)`` that reproduce a model's typical training crop.

    The training box is the joints' extent times ``base_box_scale`` times a log-uniform
    factor in ``scale_range`` (geometric mean ``sqrt(lo * hi)``): that product is the
    margin around tracked landmarks; a user's box around the visible hand is about
    ``extent / JOINTS_PER_SILHOUETTE``, hence ``box_scale = margin * JOINTS_PER_SILHOUETTE``.

    Args:
        augment: an :class:`m3dhmr.data.augment.AugmentConfig`.
    """
    lo, hi = augment.scale_range
    margin = float(augment.base_box_scale) * math.sqrt(lo * hi)
    return margin, margin * JOINTS_PER_SILHOUETTE


def _as_box(box, where: str = "box") -> np.ndarray:
    try:
        b = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise InputError(f"{where}: expected four numbers x,y,w,h, got {box!r}") from e
    if b.shape != (4,):
        raise InputError(f"{where}: expected four numbers x,y,w,h, got {b.size}")
    if not np.all(np.isfinite(b)):
        raise InputError(f"{where}: box {b.tolist()} contains NaN or inf")
    if b[2] <= 0 or b[3] <= 0:
        raise InputError(f"{where}: box width and height must be positive, got w={b[2]:g}, h={b[3]:g}")
    return b


def _four_numbers(text: str, names: str, where: str) -> list[float]:
    """``"a,b,c,d"`` (commas or spaces) -> four floats; errors name ``where`` and ``names``."""
    parts = [p for p in str(text).replace(" ", ",").split(",") if p]
    try:
        values = [float(p) for p in parts]
    except ValueError as e:
        raise InputError(f"{where}: expected {names} numbers, got {text!r}") from e
    if len(values) != 4:
        raise InputError(f"{where}: expected 4 numbers {names}, got {len(values)} in {text!r}")
    return values


def parse_box(text: str, where: str = "--bbox") -> np.ndarray:
    """``"x,y,w,h"`` -> (4,) float64; errors name ``where``."""
    return _as_box(_four_numbers(text, "x,y,w,h", where), where)


def validate_box(box, height: int, width: int, where: str = "box") -> np.ndarray:
    """Check a box against an ``H x W`` image: positive size and some overlap with it.

    A box partly outside the image is fine (the crop pads with black); one entirely
    outside is an error, as is a zero or negative width/height. Returns (4,) float64.
    """
    b = _as_box(box, where)
    x0, y0, x1, y1 = b[0], b[1], b[0] + b[2], b[1] + b[3]
    if x1 <= -0.5 or y1 <= -0.5 or x0 >= width - 0.5 or y0 >= height - 0.5:
        raise InputError(f"{where}: box x,y,w,h={b.tolist()} lies entirely outside the "
                         f"{width}x{height} image")
    return b


def square_box(box, scale: float = 1.0) -> np.ndarray:
    """Square box with the same centre, side ``max(w, h) * scale``: (4,) -> (4,)."""
    b = _as_box(box)
    side = max(b[2], b[3]) * float(scale)
    cx, cy = b[0] + b[2] / 2, b[1] + b[3] / 2
    return np.array([cx - side / 2, cy - side / 2, side, side])


def full_image_box(height: int, width: int) -> np.ndarray:
    """The whole image squared about its centre: side ``max(H, W)``, (4,) float64."""
    return square_box([-0.5, -0.5, float(width), float(height)])


def box_from_points(points: np.ndarray, height: int, width: int,
                    margin: float = DEFAULT_TRACK_MARGIN, min_side: float = 16.0) -> np.ndarray | None:
    """Square box around 2D landmarks, for tracking a hand from frame to frame.

    points: (J, 2) pixels. The box is centred on the landmarks' bounding box, its side is
    ``margin`` times the larger extent (at least ``min_side`` px, at most ``max(H, W)``),
    and it is shifted to lie inside the image where it fits. Returns ``None`` when the
    landmarks are not finite or lie entirely outside the image (tracking lost).
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or len(p) == 0:
        raise InputError(f"box_from_points: points must have shape (J, 2), got {p.shape}")
    if not np.all(np.isfinite(p)):
        return None
    lo, hi = p.min(axis=0), p.max(axis=0)
    if hi[0] < -0.5 or hi[1] < -0.5 or lo[0] > width - 0.5 or lo[1] > height - 0.5:
        return None
    side = min(max(float((hi - lo).max()) * margin, min_side), float(max(height, width)))
    c = (lo + hi) / 2
    # Clamp: keep the box inside the image along each axis where the side allows it.
    lims = (width, height)
    start = []
    for axis in range(2):
        s = c[axis] - side / 2
        if side <= lims[axis]:
            s = min(max(s, -0.5), lims[axis] - 0.5 - side)
        else:  # side longer than the image along this axis: centre on the image
            s = (lims[axis] - 1) / 2 - side / 2
        start.append(s)
    return np.array([start[0], start[1], side, side])


def default_intrinsics(height: int, width: int, fov_deg: float = DEFAULT_FOV_DEG) -> np.ndarray:
    """(3, 3) K for an ``H x W`` image assuming a horizontal field of view (default
    :data:`DEFAULT_FOV_DEG`): :func:`~m3dhmr.geometry.camera.intrinsics_from_fov`, whose
    errors (the field of view's limits) name ``--fov``."""
    return intrinsics_from_fov(height, width, fov_deg, where="--fov")


def intrinsics_from_values(values, where: str = "--K") -> np.ndarray:
    """``(fx, fy, cx, cy)`` or a 3x3 nested list -> (3, 3) K; errors name ``where``."""
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InputError(f"{where}: expected fx,fy,cx,cy or a 3x3 matrix, got {values!r}") from e
    if a.shape == (4,):
        fx, fy, cx, cy = a
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    elif a.shape == (3, 3):
        K = a.copy()
    else:
        raise InputError(f"{where}: expected fx,fy,cx,cy or a 3x3 matrix, got shape {a.shape}")
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(f"{where}: focal lengths must be positive and finite, got {K[:2, :].tolist()}")
    if not np.allclose(K[2], [0.0, 0.0, 1.0]):
        raise InputError(f"{where}: last row of K must be 0,0,1, got {K[2].tolist()}")
    return K


#: Plausible intrinsics for an image of long side S: focal lengths within
#: [S / 100, 1000 S] (fields of view from ~178 degrees down to ~0.06), principal point
#: at most 10 image sizes outside the image (crops of bigger pictures have it outside).
FOCAL_RANGE: tuple[float, float] = (0.01, 1000.0)
PRINCIPAL_POINT_RANGE: float = 10.0


def check_intrinsics(K: np.ndarray, height: int, width: int, where: str = "K") -> np.ndarray:
    """Check a (3, 3) K (from :func:`intrinsics_from_values`) against an ``H x W`` image:
    finite, positive focal lengths a plausible multiple of the image size, principal
    point near the image (see :data:`FOCAL_RANGE`); errors name ``where``. Returns K.

    Extreme values pass the parsing yet leave the registration nothing finite to work with."""
    K = np.asarray(K, dtype=np.float64)
    size = float(max(height, width))
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    lo, hi = FOCAL_RANGE[0] * size, FOCAL_RANGE[1] * size
    if not (np.all(np.isfinite(K)) and lo <= fx <= hi and lo <= fy <= hi):
        raise InputError(f"{where}: focal lengths fx={fx:g}, fy={fy:g} px are implausible for a {width}x{height} "
                         f"image (expected {lo:g} to {hi:g} px)")
    r = PRINCIPAL_POINT_RANGE
    if not (-r * width <= cx <= (r + 1) * width and -r * height <= cy <= (r + 1) * height):
        raise InputError(f"{where}: principal point cx={cx:g}, cy={cy:g} lies more than {r:g} image sizes "
                         f"outside the {width}x{height} image")
    return K


def parse_intrinsics(text: str, where: str = "--K") -> np.ndarray:
    """``"fx,fy,cx,cy"`` -> (3, 3) K."""
    return intrinsics_from_values(_four_numbers(text, "fx,fy,cx,cy", where), where)


def load_boxes_json(path: str | Path) -> dict[str, np.ndarray]:
    """Boxes per input file from JSON ``{"name-or-path": [x, y, w, h], ...}``.

    Keys are matched by file name, stem or full path (see :func:`box_for`).
    """
    path = Path(path)
    data = read_json(path, "--bbox-json")
    if not isinstance(data, dict):
        raise InputError(f"--bbox-json {path}: expected an object mapping file names to [x, y, w, h]")
    return {str(k): _as_box(v, f"--bbox-json {path} [{k!r}]") for k, v in data.items()}


def box_for(boxes: dict[str, np.ndarray], path: str | Path) -> np.ndarray | None:
    """The box for ``path`` in a :func:`load_boxes_json` table (full path, name, then stem)."""
    p = Path(path)
    for key in (str(p), p.name, p.stem):
        if key in boxes:
            return boxes[key]
    return None


@dataclass(frozen=True)
class HandCrop:
    """A square, unrotated crop of an image, made with the training crop maths.

    image: (S, S, 3) uint8 RGB; affine: (2, 3) original pixels -> crop pixels;
    K: (3, 3) crop intrinsics (the crop camera has the original camera's axes);
    box: (4,) the square box x, y, w, h that was cropped, in original pixels.
    """

    image: np.ndarray
    affine: np.ndarray
    K: np.ndarray
    box: np.ndarray


def crop_hand(image: np.ndarray, box, K: np.ndarray, size: int) -> HandCrop:
    """Cut the square ``box`` (x, y, w, h; squared about its centre if needed) out of
    ``image`` (H, W, 3) and resize it to ``size`` x ``size``, padding with black.

    Uses :mod:`m3dhmr.geometry.crop` (:func:`crop_affine`, :func:`crop_camera`,
    :func:`warp_image`) with no rotation, so inference crops equal evaluation crops
    (and the crop camera keeps the original camera's axes).
    """
    b = square_box(box)
    cb = CropBox(cx=b[0] + b[2] / 2, cy=b[1] + b[3] / 2, side=b[2], theta=0.0)
    A = crop_affine(cb, int(size))
    Kc, rot = crop_camera(np.asarray(K, dtype=np.float64), A)
    # An unrotated crop of an upper-triangular K needs no camera rotation.
    assert np.allclose(rot, np.eye(3)), rot
    return HandCrop(image=warp_image(image, A, int(size)), affine=A, K=Kc, box=b)
