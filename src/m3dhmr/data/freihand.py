"""FreiHAND's on-disk layout, read the same way for the real set and our synthetic sets.

Layout (``split`` is ``training`` or ``evaluation``)::

    ROOT/{split}_K.json         N x 3 x 3 intrinsics (pixels)
    ROOT/{split}_xyz.json       N x 21 x 3 joints, camera space, metres   (optional for evaluation)
    ROOT/{split}_verts.json     N x V x 3 vertices, camera space, metres  (optional for evaluation)
    ROOT/{split}_scale.json     N scales |xyz[9] - xyz[10]|               (optional)
    ROOT/{split}/rgb/%08d.jpg   N x versions images; image i -> annotation i % N
    ROOT/{split}/mask/%08d.jpg  N masks, one per annotation               (optional)

The real training set has 4 colour versions (130,240 images for 32,560 annotations); ours
has one. The number of versions is ``images / annotations`` and must be whole. ``V`` is
read from the verts file (778 for MANO, our open hand has its own count).

Caching: parsing ``training_verts.json`` (about 1 GB of text for the real set) takes
minutes, so each annotation file larger than :data:`CACHE_MIN_BYTES` is converted once to
a ``.npy`` array (validated, float32 for xyz/verts, float64 for K/scale) in ``cache_dir``
(default ``ROOT/.m3dhmr_cache``, or ``~/.cache/m3dhmr/freihand/<hash of ROOT>`` when ROOT is
read-only). The cache file name holds the JSON's size and modification time, so an edited
JSON is re-parsed; later loads memory-map the array.

Synthetic sets: a folder with ``synth_manifest.json`` (written by ``m3dhmr synth``) is
checked against it first (:mod:`m3dhmr.data.synth_manifest`: every file's size and the
image counts), so a set changed or mixed after it was written is refused; real FreiHAND
folders and sets from before the manifest have none and load unchecked.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from m3dhmr.conventions import NUM_JOINTS, ROOT_JOINT
from m3dhmr.data.augment import (
    AugmentConfig,
    apply_colour,
    centre_box,
    image_box,
    joints_box,
    mask_box,
    sample_box,
    sample_colour,
)
from m3dhmr.errors import InputError
from m3dhmr.data.amplitude import AMPLITUDE_DRAWS, augment_amplitude, partner_index
from m3dhmr.data.synth_manifest import check_synthetic_set
from m3dhmr.geometry.crop import CropBox, apply_affine_np, crop_affine, crop_camera, warp_image
from m3dhmr.fileio import atomic_path, read_json
from m3dhmr.geometry.camera import project

log = logging.getLogger(__name__)

SPLITS = ("training", "evaluation")
#: Annotation files above this size are cached as .npy beside the set.
CACHE_MIN_BYTES = 8 * 1024 * 1024
_IMAGE_NAME = re.compile(r"^(\d{8})\.jpg$")
#: Marker of a synthetic set still being written (``m3dhmr.data.synth.IN_PROGRESS``).
SYNTH_IN_PROGRESS = ".synth_in_progress"

#: Keys of a sample from :class:`FreiHANDDataset` (S = crop size, V = vertices). In
#: two-view mode every per-view key also appears with the suffix ``_2``.
SAMPLE_KEYS: dict[str, str] = {
    "image": "(3, S, S) float32 RGB in [0, 1]",
    "joints2d": "(21, 2) float32 crop pixels (pixel centres at integers); zeros without 3D ground truth",
    "joints3d": "(21, 3) float32 root-relative (wrist) metres in the crop camera frame; zeros without GT",
    "vertices": "(V, 3) float32 root-relative (wrist joint) metres in the crop camera frame; zeros without GT "
                "(V = num_vertices, or 0 when unknown)",
    "root": "(3,) float32 camera-space wrist in the crop camera frame (metres); zeros without GT",
    "K": "(3, 3) float32 crop intrinsics (pixels)",
    "rot": "(3, 3) float32 original camera -> crop camera rotation (about the optical axis)",
    "affine": "(2, 3) float32 original pixels -> crop pixels",
    "box": "(4,) float32 crop box in original pixels: centre x, centre y, side, rotation (radians)",
    "mask": "(S, S) float32 in {0, 1}: hand mask in the crop; zeros when the split has no masks",
    "has_mask": "() bool",
    "has_3d": "() bool: joints and vertices are ground truth",
    "index": "() int64 annotation index",
    "image_index": "() int64 image index (annotation index + version x N)",
}
#: Keys that are duplicated with the suffix ``_2`` in two-view mode.
VIEW_KEYS: tuple[str, ...] = ("image", "joints2d", "joints3d", "vertices", "root", "K", "rot", "affine",
                              "box", "mask")


@dataclass(frozen=True)
class FreiHANDAnnotations:
    """Annotations of one split, validated.

    Attributes:
        K: (N, 3, 3) float64 intrinsics.
        xyz: (N, 21, 3) float32 camera-space joints (metres) or None.
        verts: (N, V, 3) float32 camera-space vertices (metres) or None.
        scale: (N,) float64 or None.
        num_images: number of images in ``rgb_dir`` (N x num_versions).
        num_versions: images per annotation.
        rgb_dir: folder of ``%08d.jpg`` images.
        mask_dir: folder of N ``%08d.jpg`` masks, or None.
    """

    K: np.ndarray
    xyz: np.ndarray | None
    verts: np.ndarray | None
    scale: np.ndarray | None
    num_images: int
    num_versions: int
    rgb_dir: Path
    mask_dir: Path | None

    @property
    def num_annotations(self) -> int:
        return int(self.K.shape[0])

    @property
    def num_vertices(self) -> int | None:
        return None if self.verts is None else int(self.verts.shape[1])

    @property
    def has_3d(self) -> bool:
        return self.xyz is not None and self.verts is not None


# ----------------------------------------------------------------------------- loading


def default_cache_dir(root: Path) -> Path:
    """The decoded-array cache folder of the FreiHAND set at ``root``: ``root/.m3dhmr_cache``
    where it can be written, else a per-set folder (named by the hash of ``root``) under
    ``~/.cache/m3dhmr/freihand``."""
    local = root / ".m3dhmr_cache"
    if os.access(root, os.W_OK) or (local.is_dir() and os.access(local, os.W_OK)):
        return local
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    return Path.home() / ".cache" / "m3dhmr" / "freihand" / digest


def _parse_json_array(path: Path, dtype: type) -> np.ndarray:
    data = read_json(path)
    try:
        return np.asarray(data, dtype=dtype)
    except (ValueError, TypeError) as e:
        raise InputError(f"{path}: entries do not form a regular numeric array ({e})") from e


def _check_shape(arr: np.ndarray, path: Path, tail: tuple[int | None, ...], what: str) -> None:
    ok = arr.ndim == 1 + len(tail) and all(t is None or a == t for a, t in zip(arr.shape[1:], tail))
    if not ok:
        want = "N x " + " x ".join("V" if t is None else str(t) for t in tail) if tail else "N"
        raise InputError(f"{path}: expected {what} of shape {want}, got array of shape {arr.shape}")
    if tail and None in tail and arr.shape[0] > 0 and arr.shape[1] == 0:
        raise InputError(f"{path}: {what} has 0 vertices per sample")
    if not np.isfinite(arr).all():
        bad = np.unique(np.nonzero(~np.isfinite(arr.reshape(len(arr), -1)))[0])
        raise InputError(f"{path}: {what} contains NaN/inf (first bad sample index {int(bad[0])}, "
                         f"{len(bad)} bad samples)")


def _load_array(path: Path, dtype: type, tail: tuple[int | None, ...], what: str,
                cache_dir: Path | None) -> np.ndarray:
    """Parse, validate and (for big files) cache one annotation JSON."""
    st = path.stat()
    cache_file = None
    if cache_dir is not None and st.st_size >= CACHE_MIN_BYTES:
        cache_file = cache_dir / f"{path.name}.{st.st_size}.{st.st_mtime_ns}.npy"
        if cache_file.is_file():
            try:
                arr = np.load(cache_file, mmap_mode="r")
                if arr.dtype == dtype:
                    _check_shape(arr, path, tail, what)
                    log.debug("loaded %s from cache %s", path, cache_file)
                    return arr
            except (OSError, ValueError) as e:  # corrupt cache: rebuild it
                log.warning("ignoring unreadable cache %s (%s)", cache_file, e)
    if st.st_size >= CACHE_MIN_BYTES:
        log.info("parsing %s (%.0f MB), done once per file version", path, st.st_size / 2**20)
    arr = _parse_json_array(path, dtype)
    _check_shape(arr, path, tail, what)
    if cache_file is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            for old in cache_dir.glob(f"{path.name}.*.npy"):
                old.unlink(missing_ok=True)
            with atomic_path(cache_file) as tmp:
                np.save(tmp, arr)
        except OSError as e:
            log.warning("could not write annotation cache %s (%s); continuing without it", cache_file, e)
    return arr


def _count_images(folder: Path) -> int:
    """Number of ``%08d.jpg`` files in ``folder``; they must be numbered 0..n-1 (one scan)."""
    indices = []
    with os.scandir(folder) as it:
        for entry in it:
            m = _IMAGE_NAME.match(entry.name)
            if m:
                indices.append(int(m.group(1)))
    n = len(indices)
    if n and max(indices) != n - 1:
        missing = sorted(set(range(max(indices) + 1)) - set(indices))
        raise InputError(f"{folder}: images must be numbered 00000000.jpg..{n - 1:08d}.jpg; "
                         f"found {n} files up to {max(indices):08d}.jpg, missing e.g. {missing[0]:08d}.jpg")
    return n


def load_annotations(
    root: str | Path, split: str = "training", num_vertices: int | None = None,
    cache_dir: str | Path | None = None, use_cache: bool = True,
) -> FreiHANDAnnotations:
    """Read and check one split of a FreiHAND-layout folder (real or synthetic).

    Args:
        root: the set's folder (holding ``{split}_K.json`` and ``{split}/rgb``).
        split: ``"training"`` or ``"evaluation"``.
        num_vertices: the model template's vertex count, checked against the verts file.
        cache_dir: where big annotation files are cached as .npy (see the module docstring).
        use_cache: False parses the JSON every time and writes no cache.
    Raises:
        FileNotFoundError: a required file or folder is missing (named).
        ValueError: corrupt JSON, wrong shapes, NaN, or counts that disagree (files named); a
            synthetic set whose files disagree with its manifest.
    """
    root = Path(root)
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}")
    if not root.is_dir():
        raise FileNotFoundError(f"data set folder not found: {root}")
    if (root / SYNTH_IN_PROGRESS).exists():
        raise InputError(f"{root} is a synthetic set still being written (or interrupted): "
                         f"{root / SYNTH_IN_PROGRESS} exists; rerun m3dhmr synth")
    check_synthetic_set(root)
    cache = (Path(cache_dir) if cache_dir is not None else default_cache_dir(root)) if use_cache else None

    def file(kind: str) -> Path:
        return root / f"{split}_{kind}.json"

    k_path = file("K")
    if not k_path.is_file():
        raise FileNotFoundError(f"{k_path} not found (is {root} a FreiHAND-layout folder?)")
    required_3d = split == "training"
    for kind in ("xyz", "verts"):
        if required_3d and not file(kind).is_file():
            raise FileNotFoundError(f"{file(kind)} not found (the training split needs 3D annotations)")
    if file("xyz").is_file() != file("verts").is_file():
        present, absent = ("xyz", "verts") if file("xyz").is_file() else ("verts", "xyz")
        raise FileNotFoundError(f"{file(absent)} not found but {file(present)} exists; "
                                "3D ground truth needs both")
    rgb_dir = root / split / "rgb"
    if not rgb_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {rgb_dir}")

    K = _load_array(k_path, np.float64, (3, 3), "intrinsics", cache)
    n = len(K)
    if n == 0:
        raise InputError(f"{k_path}: no samples")
    xyz = verts = scale = None
    if file("xyz").is_file():
        xyz = _load_array(file("xyz"), np.float32, (NUM_JOINTS, 3), "joints", cache)
        verts = _load_array(file("verts"), np.float32, (None, 3), "vertices", cache)
    if file("scale").is_file():
        scale = _load_array(file("scale"), np.float64, (), "scales", cache)
    for kind, arr in (("xyz", xyz), ("verts", verts), ("scale", scale)):
        if arr is not None and len(arr) != n:
            raise InputError(f"{file(kind)} has {len(arr)} samples but {k_path} has {n}")
    if verts is not None and num_vertices is not None and verts.shape[1] != num_vertices:
        hint = (" (FreiHAND's meshes are MANO's: train with --template mano:/path/MANO_RIGHT.pkl, or a template "
                "folder from `m3dhmr template`)" if verts.shape[1] == 778 else
                " (train with the template the set was made with: --template, or model.template in the YAML)")
        raise InputError(f"{file('verts')} has {verts.shape[1]} vertices per sample but the model template "
                         f"has {num_vertices}{hint}")
    bad_k = ~((K[:, 0, 0] > 0) & (K[:, 1, 1] > 0) & (K[:, 1, 0] == 0)
              & np.all(np.isclose(K[:, 2], [0.0, 0.0, 1.0]), axis=1))
    if np.any(bad_k):
        raise InputError(f"{k_path}: sample {int(np.argmax(bad_k))} is not a pinhole matrix "
                         "[[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0")

    num_images = _count_images(rgb_dir)
    if num_images == 0 or num_images % n:
        raise InputError(f"{rgb_dir} has {num_images} images, not a whole multiple of the {n} annotations "
                         f"in {k_path}")
    mask_dir: Path | None = root / split / "mask"
    if mask_dir.is_dir():
        num_masks = _count_images(mask_dir)
        if num_masks != n:
            raise InputError(f"{mask_dir} has {num_masks} masks but {k_path} has {n} annotations")
    else:
        mask_dir = None
    return FreiHANDAnnotations(K=np.asarray(K), xyz=xyz, verts=verts, scale=scale, num_images=num_images,
                               num_versions=num_images // n, rgb_dir=rgb_dir, mask_dir=mask_dir)


def read_jpeg(path: Path, grey: bool = False) -> np.ndarray:
    """Decode a JPEG (BGR (H, W, 3) or grey (H, W) uint8); a missing or corrupt file names itself.

    A truncated JPEG still decodes in OpenCV (grey bottom rows, one warning), so the end
    marker is checked first.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {path}") from None
    # EOI marker FF D9 at the end (a few padding bytes after it are tolerated).
    if len(data) < 4 or data[:2] != b"\xff\xd8" or b"\xff\xd9" not in data[-16:]:
        raise InputError(f"{path}: not a complete JPEG file ({len(data)} bytes)")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"{path}: JPEG could not be decoded")
    return img


# ----------------------------------------------------------------------------- dataset


class SharedEpoch:
    """The epoch a dataset draws its augmentation stream from, in shared memory so that
    :meth:`set_epoch` reaches persistent DataLoader workers too."""

    def __init__(self) -> None:
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch`` (call before iterating each epoch)."""
        if epoch < 0:
            raise InputError(f"epoch must be >= 0, got {epoch}")
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())


class FreiHANDDataset(SharedEpoch, Dataset):
    """Cropped, optionally augmented samples of a FreiHAND-layout split (keys: :data:`SAMPLE_KEYS`).

    Args:
        root: the set's folder.
        split: ``"training"`` or ``"evaluation"``.
        crop_size: side S of the square crop (pixels).
        augment: crop/augmentation settings; None = no randomness, whole-image box.
            ``AugmentConfig(enabled=False, eval_box=...)`` picks the evaluation box.
        two_view: also return a second, independent augmentation (keys suffixed ``_2``).
        seed: base seed; each sample's randomness is ``default_rng([seed, epoch, index, view])``,
            independent of worker processes and reproducible on resume (call :meth:`set_epoch`).
        num_vertices: the model template's vertex count, checked against the verts file.
        cache_dir, use_cache: passed to :func:`load_annotations`.
    """

    def __init__(
        self, root: str | Path, split: str = "training", crop_size: int = 128,
        augment: AugmentConfig | None = None, two_view: bool = False, seed: int = 0,
        num_vertices: int | None = None, cache_dir: str | Path | None = None, use_cache: bool = True,
    ) -> None:
        if crop_size < 1:
            raise InputError(f"crop_size must be >= 1, got {crop_size}")
        if seed < 0:
            raise InputError(f"seed must be >= 0, got {seed}")
        self.ann = load_annotations(root, split, num_vertices=num_vertices, cache_dir=cache_dir,
                                    use_cache=use_cache)
        self.root, self.split = Path(root), split
        self.crop_size = crop_size
        self.augment = augment if augment is not None else AugmentConfig(enabled=False)
        self.two_view = two_view
        self.seed = seed
        self.num_vertices = self.ann.num_vertices if self.ann.num_vertices is not None else (num_vertices or 0)
        needs_joints = self.augment.enabled or self.augment.eval_box == "joints"
        if needs_joints and not self.ann.has_3d:
            raise InputError(f"{root}: the {split} split has no {split}_xyz.json, so crops cannot be placed "
                             "from joints; use augment=None or AugmentConfig(enabled=False, eval_box='image')")
        SharedEpoch.__init__(self)

    # -- sizes

    def __len__(self) -> int:
        return self.ann.num_images

    @property
    def num_annotations(self) -> int:
        return self.ann.num_annotations

    def annotation_index(self, image_index: int) -> int:
        """Annotation of an image: ``image_index % N`` (FreiHAND's colour versions)."""
        return image_index % self.ann.num_annotations

    def image_path(self, image_index: int) -> Path:
        return self.ann.rgb_dir / f"{image_index:08d}.jpg"

    def joints2d(self, annotation_index: int) -> np.ndarray | None:
        """(21, 2) ground-truth joints projected into the original image, or None without GT."""
        a = int(annotation_index)
        return project(np.asarray(self.ann.xyz[a], np.float64), self.ann.K[a]) if self.ann.has_3d else None

    # -- samples

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        n_img = len(self)
        if not -n_img <= i < n_img:
            raise IndexError(f"image index {i} out of range for {n_img} images")
        i = int(i) % n_img
        a = self.annotation_index(i)
        image = read_jpeg(self.image_path(i))
        mask = read_jpeg(self.ann.mask_dir / f"{a:08d}.jpg", grey=True) if self.ann.mask_dir else None
        if mask is not None and mask.shape != image.shape[:2]:
            raise InputError(f"{self.ann.mask_dir / f'{a:08d}.jpg'}: mask is {mask.shape[1]}x{mask.shape[0]} "
                             f"but {self.image_path(i)} is {image.shape[1]}x{image.shape[0]}")
        K = self.ann.K[a]
        joints2d = self.joints2d(a)
        out: dict[str, torch.Tensor] = {}
        views = (0, 1) if self.two_view else (0,)
        for view in views:
            sample = self._view(image, mask, K, a, joints2d, i, view)
            suffix = "_2" if view == 1 else ""
            out.update({k + suffix: v for k, v in sample.items()})
        out["has_mask"] = torch.tensor(mask is not None)
        out["has_3d"] = torch.tensor(self.ann.has_3d)
        out["index"] = torch.tensor(a, dtype=torch.int64)
        out["image_index"] = torch.tensor(i, dtype=torch.int64)
        return out

    def crop_box(self, image: np.ndarray, joints2d: np.ndarray | None, rng: np.random.Generator | None = None,
                 mask: np.ndarray | None = None) -> CropBox:
        """The crop box of an image (H, W[, 3]): with ``rng``, a random training box (around the
        mask or the joints (21, 2) px, see ``augment.box_source``); without, the evaluation box
        (``augment.eval_box``: the whole image, the centre, or the joints)."""
        cfg = self.augment
        if rng is None:
            if cfg.eval_box == "image":
                cx, cy, side = image_box(image.shape[1], image.shape[0])
            elif cfg.eval_box == "centre":
                cx, cy, side = centre_box(image.shape[1], image.shape[0], cfg.eval_centre_fraction)
            else:
                cx, cy, side = joints_box(joints2d, cfg.base_box_scale, cfg.min_box_px)
            return CropBox(cx, cy, side, 0.0)
        base = mask_box(mask, cfg.base_box_scale, cfg.min_box_px) \
            if cfg.box_source == "mask" and mask is not None else None
        cx, cy, side = base if base is not None else joints_box(joints2d, cfg.base_box_scale, cfg.min_box_px)
        return sample_box(cx, cy, side, cfg, rng)

    def _view(self, image: np.ndarray, mask: np.ndarray | None, K: np.ndarray, a: int,
              joints2d: np.ndarray | None, i: int, view: int) -> dict[str, torch.Tensor]:
        cfg, S = self.augment, self.crop_size
        rng = np.random.default_rng([self.seed, self.epoch, i, view]) if cfg.enabled else None
        box = self.crop_box(image, joints2d, rng, mask)
        affine = crop_affine(box, S)
        Kc, rot = crop_camera(K, affine)

        crop = warp_image(image, affine, S, cfg.border)
        crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) * np.float32(1.0 / 255.0)
        if rng is not None:
            crop = apply_colour(crop, sample_colour(cfg, rng))
            if cfg.amplitude_prob > 0:
                crop = self._amplitude(crop, rng.random(AMPLITUDE_DRAWS), i)
        if mask is not None:
            # Bilinear then threshold: smoother edges than nearest, and JPEG ringing removed.
            m = (warp_image(mask, affine, S, "constant") > 127).astype(np.float32)
        else:
            m = np.zeros((S, S), np.float32)

        if self.ann.has_3d:
            xyz = np.asarray(self.ann.xyz[a], np.float64) @ rot.T
            root = xyz[ROOT_JOINT]
            j3d = xyz - root
            verts = np.asarray(self.ann.verts[a], np.float64) @ rot.T - root
            j2d = apply_affine_np(joints2d, affine)
        else:
            root = np.zeros(3)
            j3d = np.zeros((NUM_JOINTS, 3))
            verts = np.zeros((self.num_vertices, 3))
            j2d = np.zeros((NUM_JOINTS, 2))

        def f32(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

        return {
            "image": torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))),
            "joints2d": f32(j2d),
            "joints3d": f32(j3d),
            "vertices": f32(verts),
            "root": f32(root),
            "K": f32(Kc),
            "rot": f32(rot),
            "affine": f32(affine),
            "box": f32(box.as_array()),
            "mask": torch.from_numpy(m),
        }

    def _amplitude(self, crop: np.ndarray, u: np.ndarray, i: int) -> np.ndarray:
        """Amplitude-spectrum augmentation of an (S, S, 3) crop (:mod:`m3dhmr.data.amplitude`);
        the swap partner is another image of the split (from ``u[2]``), resized whole to the crop."""
        other = None
        if self.augment.amplitude_mode == "swap" and u[0] < self.augment.amplitude_prob:
            j = partner_index(i, len(self), float(u[2]))
            img = cv2.resize(read_jpeg(self.image_path(j)), crop.shape[1::-1], interpolation=cv2.INTER_AREA)
            other = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) * np.float32(1.0 / 255.0)
        return augment_amplitude(crop, u, self.augment, other)


def no_augment(cfg: AugmentConfig | None) -> AugmentConfig:
    """The evaluation version of ``cfg``: same boxes, no randomness."""
    return replace(cfg, enabled=False) if cfg is not None else AugmentConfig(enabled=False)
