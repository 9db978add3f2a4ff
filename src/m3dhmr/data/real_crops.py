"""Training crops of real photos labelled only in 2D (the landmark model's pseudo-labels).

Self-training on real photos (issue 20, item 3): each photo's 21 landmarks (image
pixels, FreiHAND order) become a training sample with the keys of
:data:`m3dhmr.data.freihand.SAMPLE_KEYS`, cropped like a synthetic sample (the box around
the joints with ``AugmentConfig``'s scale, shift and rotation jitter, then colour
jitter), with ``has_3d = False`` and zero 3D targets, so the losses give it only the 2D
terms (:class:`m3dhmr.train.trainer.StepLoss`).

Choices:

- Labels the landmark model is unsure of are dropped (``keep`` False: presence below
  ``data.real_min_presence``, or no hand at all), as are non-finite landmarks.
- Left hands are mirrored to right hands (the image and the landmarks' x), as
  inference does before the network (the network only ever sees right hands).
- Each photo is decoded once into memory as its *region*: the part of the photo any
  training crop can reach (the largest jittered box, rotated), down-sampled when the
  hand is much larger than the crop (at most ``REGION_OVERSAMPLE`` region pixels per
  crop pixel), and mirrored for left hands. The crop keys ``affine``, ``box``, ``K`` and
  ``rot`` refer to that region's pixels, not the photo's: the photos have no 3D
  labels and no camera, so ``K`` is the region's pinhole for a ``DEFAULT_FOV_DEG``
  horizontal field of view of the photo (what ``predict`` assumes), and two views of
  one photo share the region frame (the 2D consistency map between them is exact).
- Randomness: view ``v`` of the sample in stream position ``slot`` of epoch ``e``
  draws from ``default_rng([seed, e, slot, v])`` (a photo used twice in an epoch gets
  two augmentations); which photo sits at a slot is :func:`real_stream_index`. Both
  depend only on the position in the run, so resuming is exact.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from m3dhmr.conventions import NUM_JOINTS
from m3dhmr.data.augment import AugmentConfig, apply_colour, joints_box, sample_box, sample_colour
from m3dhmr.data.freihand import SharedEpoch
from m3dhmr.data.sign_digits import split_by_person
from m3dhmr.geometry.crop import CropBox, apply_affine_np, crop_affine, crop_camera, warp_image
from m3dhmr.errors import InputError
from m3dhmr.inference.images import load_image

log = logging.getLogger(__name__)

#: Field of view (degrees) of the dummy camera of a real photo (``m3dhmr predict``'s default).
DEFAULT_FOV_DEG = 60.0
#: A region keeps at most this many of its pixels per pixel of the most zoomed-in crop.
REGION_OVERSAMPLE = 1.5
#: Image file suffixes taken from a folder of photos.
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


# ----------------------------------------------------------------------------- the real stream


def real_stream_index(num_real: int, seed: int, epoch: int, slots) -> np.ndarray:
    """Which real photo sits at each stream position ``slots`` (int array) of ``epoch``.

    The stream is a run of permutations of ``range(num_real)``, a fresh one for each
    cycle ``slot // num_real``, seeded by ``(seed, epoch, cycle)``: every photo once per
    cycle, in an order that depends only on the position. Returns int64 of ``slots``' shape.
    """
    if num_real < 1:
        raise InputError(f"real_stream_index: need at least one real photo, got {num_real}")
    slots = np.asarray(slots, dtype=np.int64)
    if slots.size and slots.min() < 0:
        raise InputError("real_stream_index: slots must be >= 0")
    out = np.empty(slots.shape, np.int64)
    for cycle in np.unique(slots // num_real):
        perm = np.random.default_rng([seed, epoch, int(cycle), 0x5EA1]).permutation(num_real)
        sel = slots // num_real == cycle
        out[sel] = perm[slots[sel] % num_real]
    return out


def real_batch_slots(per_batch: int, batch: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """This rank's stream positions in global batch ``batch`` (``per_batch`` real samples
    per global batch, dealt to ranks as :func:`m3dhmr.train.distributed.epoch_batches` does)."""
    if per_batch % world_size:
        raise InputError(f"{per_batch} real samples per batch do not divide among {world_size} ranks")
    return list(range(batch * per_batch + rank, (batch + 1) * per_batch, world_size))


def split_counts(batch_size: int, real_fraction: float) -> tuple[int, int]:
    """``(synthetic, real)`` samples per global batch: ``round(batch_size * real_fraction)``
    real, at least one of each (ValueError naming the keys otherwise)."""
    real = int(round(batch_size * real_fraction))
    if real < 1 or real >= batch_size:
        raise InputError(f"train.batch_size={batch_size} x data.real_fraction={real_fraction} gives {real} real "
                         "samples per batch; need at least one real and one synthetic sample")
    return batch_size - real, real


# ----------------------------------------------------------------------------- regions


def region_of(image: np.ndarray, landmarks: np.ndarray, left: bool, cfg: AugmentConfig, crop_size: int,
              fov_deg: float = DEFAULT_FOV_DEG) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The part of a photo that training crops can reach (see the module docstring).

    Args:
        image: (H, W, 3) uint8 RGB photo.
        landmarks: (21, 2) image pixels (pixel centres at integers).
        left: mirror the region (a left hand becomes a right hand).
    Returns:
        region (h, w, 3) uint8 RGB, landmarks (21, 2) float64 in region pixels, K (3, 3)
        float64 of the region (the photo's ``fov_deg`` pinhole, cut, scaled and mirrored).
    """
    H, W = image.shape[:2]
    cx, cy, side = joints_box(landmarks, cfg.base_box_scale, cfg.min_box_px)
    lo, hi = cfg.scale_range
    # Farthest a crop pixel can lie from the base centre: centre shift (up to f * side
    # per axis) plus half the rotated box's diagonal, at the largest scale.
    reach = side * hi * math.sqrt(2.0) * (cfg.shift_fraction + 0.5) + 2.0
    x0, y0 = max(int(math.floor(cx - reach)), 0), max(int(math.floor(cy - reach)), 0)
    x1, y1 = min(int(math.ceil(cx + reach)), W - 1), min(int(math.ceil(cy + reach)), H - 1)
    if x1 < x0 or y1 < y0:
        raise InputError(f"landmarks lie outside the {W}x{H} image (box centre {cx:.1f}, {cy:.1f})")
    region = image[y0:y1 + 1, x0:x1 + 1]
    h, w = region.shape[:2]
    r = min(1.0, REGION_OVERSAMPLE * crop_size / (side * lo))
    sx = sy = 1.0
    if r < 1.0:
        nw, nh = max(1, round(w * r)), max(1, round(h * r))
        sx, sy = nw / w, nh / h
        region = cv2.resize(region, (nw, nh), interpolation=cv2.INTER_AREA)
    # cv2.resize maps pixel centres by p' = (p + 0.5) s - 0.5.
    scale, offset = np.array([sx, sy]), np.array([x0, y0], np.float64)
    pts = (np.asarray(landmarks, np.float64) - offset + 0.5) * scale - 0.5
    f = (W / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    pp = (np.array([(W - 1) / 2.0, (H - 1) / 2.0]) - offset + 0.5) * scale - 0.5
    if left:
        rw = region.shape[1]
        region = region[:, ::-1]
        pts[:, 0] = rw - 1 - pts[:, 0]
        pp[0] = rw - 1 - pp[0]
    K = np.array([[f * sx, 0.0, pp[0]], [0.0, f * sy, pp[1]], [0.0, 0.0, 1.0]])
    return np.ascontiguousarray(region), pts, K


# ----------------------------------------------------------------------------- the dataset


class RealCropDataset(SharedEpoch, Dataset):
    """Real photos with 2D pseudo-labels as training samples (keys of ``SAMPLE_KEYS``).

    Args:
        paths: (N,) photo files.
        landmarks: (N, 21, 2) image pixels, FreiHAND order (NaN where there is no hand).
        keep: (N,) bool: the labels to train on (e.g. ``PseudoLabels.select(min_presence)``).
        left: (N,) bool: left hands (mirrored to right hands).
        crop_size: side S of the crops.
        augment: crop/colour jitter (``enabled`` False: the joints box, no randomness).
        seed: base seed of the draws (see the module docstring).
        two_view: also give a second, independent view (keys suffixed ``_2``).
        num_vertices: V of the zero ``vertices`` target.
        images: optional (N,) decoded (H, W, 3) uint8 RGB photos instead of reading ``paths``.

    Item ``slot`` (0 <= slot; the position in the real stream of the current epoch, see
    :meth:`set_epoch`) is photo ``real_stream_index(len(self), seed, epoch, slot)`` of
    the kept ones; its ``index`` / ``image_index`` are that photo's row in ``paths``.
    """

    def __init__(self, paths, landmarks, keep, left, crop_size: int, augment: AugmentConfig | None = None,
                 seed: int = 0, two_view: bool = False, num_vertices: int = 0, images=None,
                 fov_deg: float = DEFAULT_FOV_DEG) -> None:
        paths = [Path(p) for p in paths]
        n = len(paths)
        landmarks = np.asarray(landmarks, np.float64)
        keep, left = np.asarray(keep, bool).reshape(-1), np.asarray(left, bool).reshape(-1)
        if landmarks.shape != (n, NUM_JOINTS, 2):
            raise InputError(f"landmarks must have shape ({n}, {NUM_JOINTS}, 2) for {n} paths, got {landmarks.shape}")
        if keep.shape != (n,) or left.shape != (n,):
            raise InputError(f"keep {keep.shape} and left {left.shape} must have shape ({n},)")
        if images is not None and len(images) != n:
            raise InputError(f"{len(images)} images for {n} paths")
        if crop_size < 1 or seed < 0 or num_vertices < 0:
            raise InputError(f"crop_size ({crop_size}) must be >= 1, seed ({seed}) and num_vertices "
                             f"({num_vertices}) >= 0")
        usable = keep & np.isfinite(landmarks).all(axis=(1, 2))
        self.rows = np.flatnonzero(usable)
        if len(self.rows) == 0:
            raise InputError(f"no usable real photo among {n}: {int(keep.sum())} kept by the presence threshold, "
                             f"{int(usable.sum())} with finite landmarks")
        self.crop_size, self.seed, self.two_view, self.num_vertices = crop_size, seed, two_view, num_vertices
        self.augment = augment if augment is not None else AugmentConfig(enabled=False)
        self.paths = paths
        self.regions: list[np.ndarray] = []
        joints, Ks = [], []
        for row in self.rows:
            img = images[row] if images is not None else load_image(paths[row])
            reg, pts, K = region_of(np.asarray(img), landmarks[row], bool(left[row]), self.augment, crop_size,
                                    fov_deg)
            self.regions.append(reg)
            joints.append(pts)
            Ks.append(K)
        self.joints, self.K = np.stack(joints), np.stack(Ks)
        self.left = left[self.rows]
        log.info("real photos: %d of %d kept (%d mirrored left hands), %.1f MB of regions", len(self.rows), n,
                 int(self.left.sum()), sum(r.nbytes for r in self.regions) / 1e6)
        SharedEpoch.__init__(self)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, slot: int) -> dict[str, torch.Tensor]:
        return self.item(slot, self.epoch, self.two_view)

    def item(self, slot: int, epoch: int, two_view: bool) -> dict[str, torch.Tensor]:
        """The sample at stream position ``slot`` of ``epoch`` (both views when ``two_view``)."""
        j = int(real_stream_index(len(self), self.seed, epoch, slot))
        out: dict[str, torch.Tensor] = {}
        for view in (0, 1) if two_view else (0,):
            suffix = "_2" if view else ""
            out.update({k + suffix: v for k, v in self._view(j, epoch, int(slot), view).items()})
        row = int(self.rows[j])
        out["has_mask"] = torch.tensor(False)
        out["has_3d"] = torch.tensor(False)
        out["index"] = torch.tensor(row, dtype=torch.int64)
        out["image_index"] = torch.tensor(row, dtype=torch.int64)
        return out

    def _view(self, j: int, epoch: int, slot: int, view: int) -> dict[str, torch.Tensor]:
        cfg, S = self.augment, self.crop_size
        cx, cy, side = joints_box(self.joints[j], cfg.base_box_scale, cfg.min_box_px)
        if cfg.enabled:
            rng = np.random.default_rng([self.seed, epoch, slot, view])
            box = sample_box(cx, cy, side, cfg, rng)
        else:
            rng, box = None, CropBox(cx, cy, side, 0.0)
        affine = crop_affine(box, S)
        Kc, rot = crop_camera(self.K[j], affine)
        crop = warp_image(self.regions[j], affine, S, cfg.border).astype(np.float32) * np.float32(1.0 / 255.0)
        if rng is not None:
            crop = apply_colour(crop, sample_colour(cfg, rng))

        def f32(x) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

        return {
            "image": torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))),
            "joints2d": f32(apply_affine_np(self.joints[j], affine)),
            "joints3d": torch.zeros(NUM_JOINTS, 3),
            "vertices": torch.zeros(self.num_vertices, 3),
            "root": torch.zeros(3),
            "K": f32(Kc),
            "rot": f32(rot),
            "affine": f32(affine),
            "box": f32(box.as_array()),
            "mask": torch.zeros(S, S),
        }

    def collate(self, slots, epoch: int, two_view: bool) -> dict[str, torch.Tensor]:
        """The samples at ``slots`` stacked into a batch (what a DataLoader would give)."""
        items = [self.item(s, epoch, two_view) for s in slots]
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}


# ----------------------------------------------------------------------------- photos and labels


def photo_paths(real_dir: str | Path) -> list[Path]:
    """The training photos of a folder: in the sign-language-digits layout (folders ``0`` ..
    ``9`` in it or in its ``Dataset/``) the training persons only
    (:func:`m3dhmr.data.sign_digits.split_by_person`'s ``"train"`` part, never the held-out
    one), else every image file under the folder (sorted; hidden folders skipped)."""
    root = Path(real_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data.real_dir: folder not found: {root}")
    if any(all((base / str(d)).is_dir() for d in range(10)) for base in (root, root / "Dataset")):
        # folders 0..9: the sign-digits layout
        return [Path(p) for p in split_by_person(root)["train"]]
    for up in root.resolve().parents:
        if all((up / str(d)).is_dir() for d in range(10)):
            raise InputError(f"data.real_dir {root} lies inside the sign-language-digits set {up}: give the set's "
                             "folder, so that only its training persons are used (never the held-out ones)")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not paths:
        raise FileNotFoundError(f"data.real_dir: no photos ({', '.join(PHOTO_SUFFIXES)}) under {root}")
    return paths


__all__ = ["DEFAULT_FOV_DEG", "PHOTO_SUFFIXES", "REGION_OVERSAMPLE", "RealCropDataset", "photo_paths",
           "real_batch_slots", "real_stream_index", "region_of", "split_counts"]
