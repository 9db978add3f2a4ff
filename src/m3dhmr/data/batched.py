"""Training crops made a whole batch at a time, as tensors on the training device.

The per-sample loader (:class:`m3dhmr.data.freihand.FreiHANDDataset`) decodes a JPEG,
warps it with OpenCV and jitters its colours in a worker process for every sample of
every epoch. Here the split is decoded **once** into a ``uint8`` array (cached on disk
as ``.npy``, kept on the GPU when it fits), and each batch is cropped by one
``grid_sample`` with per-sample affine grids and colour-jittered by one batched 3x3
colour matrix (and, when on, one batched FFT for the amplitude-spectrum augmentation of
:mod:`m3dhmr.data.amplitude`), on the device that trains. No worker processes and no host round trip,
so the input pipeline stops being the bottleneck on a GPU, and on a 2-core CPU the
cores that decoded JPEGs train instead.

The crops are the same as the loader's (:mod:`m3dhmr.data.augment` documents the box,
the crop camera and the colour model; the crop maths and projection are
:mod:`m3dhmr.geometry`'s, called on (B, ...) tensors; the box and colour functions below
are batched twins of the loader's, pinned to them by tests): the same box distribution,
the exact crop camera, and labels (crop-pixel joints, root-relative 3D in the crop camera
frame) under the loader's keys.
Random draws come from a CPU generator seeded by ``(seed, epoch, batch)``, so a batch
is a function of where it sits in the run: resumption is exact, whatever the device.
Bilinear sampling of ``uint8`` pixels in float gives crops within one grey level of
OpenCV's (which rounds to ``uint8`` in between).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from m3dhmr.conventions import ROOT_JOINT
from m3dhmr.data.amplitude import AMPLITUDE_DRAWS, augment_amplitude_batch
from m3dhmr.data.augment import LUMA, AugmentConfig, RGB2YIQ, YIQ2RGB
from m3dhmr.data.freihand import default_cache_dir, load_annotations, read_jpeg
from m3dhmr.errors import InputError
from m3dhmr.fileio import atomic_path
from m3dhmr.geometry.camera import project
from m3dhmr.geometry.crop import apply_affine, apply_rotation, crop_affine, crop_camera

log = logging.getLogger(__name__)

#: Random numbers drawn per sample and view: box scale, shift x, shift y, rotation,
#: brightness, contrast, saturation, hue (the loader's order). The amplitude augmentation's
#: :data:`m3dhmr.data.amplitude.AMPLITUDE_DRAWS` come after them from the same generator
#: (a second block, drawn only when it is on), so turning it on changes no other draw.
DRAWS_PER_VIEW = 8


# ----------------------------------------------------------------------------- the split in memory


@dataclass
class InMemorySplit:
    """One split, decoded once.

    Attributes:
        images: (N_img, H, W, 3) uint8 RGB (on ``device``, or CPU memory when it does not fit).
        K: (N, 3, 3) float32 intrinsics. xyz: (N, 21, 3) and verts: (N, V, 3) float32
            camera-space metres. Image ``i`` belongs to annotation ``i % N``.
    """

    images: Tensor
    K: Tensor
    xyz: Tensor
    verts: Tensor

    @property
    def num_images(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_annotations(self) -> int:
        return int(self.K.shape[0])

    def __len__(self) -> int:
        return self.num_images


def decode_split(root: str | Path, split: str = "training", cache_dir: str | Path | None = None,
                 num_vertices: int | None = None, progress: bool = False) -> tuple[np.ndarray, object]:
    """All images of a split as one (N_img, H, W, 3) uint8 RGB array, and its annotations.

    The array is cached as ``.npy`` next to the annotation cache and memory-mapped on
    later calls; its name holds a digest of every image's name, size and modification
    time (:func:`images_digest`), so replacing any image, not only the first or the last,
    decodes the split again.
    Images must all have one size (FreiHAND's are 224 x 224); a file of another size or
    a corrupt one is named in the error.
    """
    root = Path(root)
    ann = load_annotations(root, split, num_vertices=num_vertices, cache_dir=cache_dir)
    if not ann.has_3d:
        raise InputError(f"{root}: the {split} split has no 3D ground truth; it cannot be trained on")
    first = read_jpeg(ann.rgb_dir / "00000000.jpg")
    h, w = first.shape[:2]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(root)
    path = cache / f"{split}_rgb_uint8.{ann.num_images}x{h}x{w}.{images_digest(ann.rgb_dir, ann.num_images)}.npy"
    if path.is_file():
        arr = np.load(path, mmap_mode="r")
        if arr.shape == (ann.num_images, h, w, 3) and arr.dtype == np.uint8:
            return arr, ann
        log.warning("ignoring %s: shape %s does not match the split", path, arr.shape)
    log.info("decoding %d images of %s/%s into %s (%.1f GB; done once)", ann.num_images, root, split, path,
             ann.num_images * h * w * 3 / 1e9)
    cache.mkdir(parents=True, exist_ok=True)
    for old in cache.glob(f"{split}_rgb_uint8.*.npy"):
        old.unlink(missing_ok=True)
    iterator = range(ann.num_images)
    if progress:
        iterator = tqdm(iterator, desc="decoding", unit="img", dynamic_ncols=True)
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(ann.num_images, h, w, 3))
        for i in iterator:
            img = first if i == 0 else read_jpeg(ann.rgb_dir / f"{i:08d}.jpg")
            if img.shape[:2] != (h, w):
                raise InputError(f"{ann.rgb_dir / f'{i:08d}.jpg'} is {img.shape[1]}x{img.shape[0]} but "
                                 f"00000000.jpg is {w}x{h}; the in-memory pipeline needs one image size "
                                 "(use data.pipeline: loader)")
            cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=out[i])
        out.flush()
        del out
    return np.load(path, mmap_mode="r"), ann


def images_digest(folder: Path, num_images: int) -> str:
    """16 hex digits of a hash of ``(name, size, mtime_ns)`` of images ``0..num_images-1``
    in ``folder``: one ``stat`` per image, cheap beside decoding them."""
    h = hashlib.sha1()
    for i in range(num_images):
        name = f"{i:08d}.jpg"
        st = os.stat(folder / name)
        h.update(f"{name} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def load_split(root: str | Path, split: str = "training", device: str | torch.device = "cpu",
               num_vertices: int | None = None, cache_dir: str | Path | None = None,
               progress: bool = False) -> InMemorySplit:
    """:func:`decode_split`, moved to ``device`` (images stay in CPU memory if the GPU lacks room)."""
    device = torch.device(device)
    arr, ann = decode_split(root, split, cache_dir=cache_dir, num_vertices=num_vertices, progress=progress)
    images = torch.from_numpy(np.array(arr))  # a private, writable copy in memory
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if images.numel() < 0.5 * free:
            images = images.to(device)
        else:
            log.warning("the %s split (%.1f GB) does not fit the GPU's free memory; kept in pinned host memory",
                        split, images.numel() / 1e9)
            images = images.pin_memory()

    def f32(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.array(a, dtype=np.float32)).to(device)

    return InMemorySplit(images=images, K=f32(ann.K), xyz=f32(ann.xyz), verts=f32(ann.verts))


# ----------------------------------------------------------------------------- batched crop maths


def draw_uniforms(seed: int, epoch: int, batch: int, n: int, views: int, extra: int = 0) -> Tensor:
    """(views, n, DRAWS_PER_VIEW + extra) U(0, 1) float64 numbers, a function of ``(seed, epoch,
    batch)`` only; the first DRAWS_PER_VIEW columns do not depend on ``extra`` (drawn first)."""
    g = torch.Generator(device="cpu")
    # A 63-bit mix of the three counters (distinct triples give distinct streams in practice).
    g.manual_seed((seed * 1_000_003 + epoch) * 1_000_033 + batch & (2**63 - 1))
    u = torch.rand((views, n, DRAWS_PER_VIEW), generator=g, dtype=torch.float64)
    if extra:
        u = torch.cat([u, torch.rand((views, n, extra), generator=g, dtype=torch.float64)], dim=-1)
    return u


def joints_boxes(joints2d: Tensor, base_scale: float, min_extent: float = 1.0) -> Tensor:
    """Batched :func:`m3dhmr.data.augment.joints_box`: (B, J, 2) pixels -> (B, 3) cx, cy, side."""
    lo, hi = joints2d.amin(dim=1), joints2d.amax(dim=1)
    c = 0.5 * (lo + hi)
    extent = (hi - lo).amax(dim=-1).clamp_min(min_extent)
    return torch.cat([c, (extent * base_scale).unsqueeze(-1)], dim=-1)


def sample_boxes(base: Tensor, u: Tensor, cfg: AugmentConfig) -> Tensor:
    """Batched :func:`m3dhmr.data.augment.sample_box`: base (B, 3), u (B, >=4) U(0,1) -> (B, 4) cx, cy, side, theta."""
    lo, hi = cfg.scale_range
    scale = torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u[:, 0])
    side = base[:, 2] * scale
    f, r = cfg.shift_fraction, math.radians(cfg.rotation_deg)
    cx = base[:, 0] + (2 * u[:, 1] - 1) * f * side
    cy = base[:, 1] + (2 * u[:, 2] - 1) * f * side
    theta = (2 * u[:, 3] - 1) * r
    return torch.stack([cx, cy, side, theta], dim=-1)


def warp_images(images: Tensor, affine: Tensor, crop_size: int) -> Tensor:
    """Crop a batch like ``cv2.warpAffine`` (bilinear, black border, integer pixel centres).

    Args:
        images: (B, H, W, 3) uint8 (or float) RGB.
        affine: (B, 2, 3) original pixels -> crop pixels.
    Returns:
        (B, 3, S, S) float32 in [0, 1].
    """
    b, h, w, _ = images.shape
    dev = images.device
    A = affine.to(dev, torch.float64)
    Minv = torch.linalg.inv(A[:, :, :2])  # (B, 2, 2): crop -> original pixels
    # One affine map from normalised crop coordinates (align_corners=False) to normalised
    # image coordinates: crop q = (S/2) x + (S-1)/2, p = Minv (q - t), x' = (2p + 1) / size - 1.
    to_in = torch.tensor([2.0 / w, 2.0 / h], device=dev, dtype=torch.float64)
    lin = to_in[None, :, None] * Minv * (crop_size / 2.0)
    off = to_in * (Minv @ ((crop_size - 1) / 2.0 - A[:, :, 2:])).squeeze(-1) + torch.tensor(
        [1.0 / w - 1.0, 1.0 / h - 1.0], device=dev, dtype=torch.float64)
    theta = torch.cat([lin, off.unsqueeze(-1)], dim=-1).to(torch.float32)
    grid = F.affine_grid(theta, [b, 3, crop_size, crop_size], align_corners=False)
    src = images.permute(0, 3, 1, 2).to(torch.float32)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.mul_(1.0 / 255.0)


def colour_matrices(u: Tensor, mean_grey: Tensor, cfg: AugmentConfig) -> tuple[Tensor, Tensor]:
    """Batched :func:`m3dhmr.data.augment.colour_matrix`.

    Args:
        u: (B, 4) U(0, 1) draws for brightness, contrast, saturation, hue.
        mean_grey: (B,) each crop's mean luma *before* brightness.
    Returns:
        M (B, 3, 3) and offset (B, 3): ``rgb' = M rgb + offset``.
    """
    v = 2 * u - 1
    dt, dev = u.dtype, u.device
    br = 1 + cfg.brightness * v[:, 0]
    ct = 1 + cfg.contrast * v[:, 1]
    sat = 1 + cfg.saturation * v[:, 2]
    hue = math.radians(cfg.hue_deg) * v[:, 3]
    eye = torch.eye(3, dtype=dt, device=dev)
    luma = torch.as_tensor(LUMA, dtype=dt, device=dev)
    grey = torch.ones(3, 1, dtype=dt, device=dev) * luma[None, :]
    s = sat[:, None, None] * eye + (1 - sat)[:, None, None] * grey
    c_off = ((1 - ct) * mean_grey * br)[:, None] * torch.ones(3, dtype=dt, device=dev)
    ch, sh = torch.cos(hue), torch.sin(hue)
    z, o = torch.zeros_like(ch), torch.ones_like(ch)
    rot = torch.stack([torch.stack([o, z, z], -1), torch.stack([z, ch, -sh], -1), torch.stack([z, sh, ch], -1)], -2)
    h = torch.as_tensor(YIQ2RGB, dtype=dt, device=dev) @ rot @ torch.as_tensor(RGB2YIQ, dtype=dt, device=dev)
    M = h @ s * (ct * br)[:, None, None]
    offset = (h @ s @ c_off.unsqueeze(-1)).squeeze(-1)
    return M, offset


def jitter_colours(crops: Tensor, u: Tensor, cfg: AugmentConfig) -> Tensor:
    """Colour-jitter (B, 3, S, S) crops in [0, 1] with (B, 4) draws; clipped to [0, 1]."""
    luma = torch.as_tensor(LUMA, dtype=crops.dtype, device=crops.device)
    mean_grey = (crops.mean(dim=(2, 3)) @ luma).to(u.dtype)
    M, off = colour_matrices(u, mean_grey, cfg)
    out = torch.einsum("bij,bjhw->bihw", M.to(crops.dtype), crops) + off.to(crops.dtype)[:, :, None, None]
    return out.clamp_(0.0, 1.0)


# ----------------------------------------------------------------------------- batches


def make_views(split: InMemorySplit, image_index: Tensor, cfg: AugmentConfig, crop_size: int,
               u: Tensor | None) -> dict[str, Tensor]:
    """One view of a batch: crops and labels under :data:`m3dhmr.data.freihand.SAMPLE_KEYS`' names.

    Args:
        image_index: (B,) int64 image indices.
        u: (B, DRAWS_PER_VIEW) U(0, 1) draws (plus AMPLITUDE_DRAWS more when
            ``cfg.amplitude_prob > 0``), or None for the deterministic evaluation box
            (``cfg.eval_box``: the joints box without randomness, or the whole image).
    """
    dev = split.K.device
    idx = image_index.to(dev)
    a = idx % split.num_annotations
    K, xyz, verts = split.K[a].double(), split.xyz[a].double(), split.verts[a].double()
    j2d_orig = project(xyz, K)
    if u is None:
        if cfg.eval_box in ("image", "centre"):
            h, w = split.images.shape[1:3]
            side = float(max(w, h)) if cfg.eval_box == "image" else cfg.eval_centre_fraction * min(w, h)
            base = torch.tensor([(w - 1) / 2, (h - 1) / 2, side], dtype=torch.float64, device=dev)
            boxes = torch.cat([base.expand(len(idx), 3), torch.zeros(len(idx), 1, dtype=torch.float64, device=dev)], -1)
        else:
            base = joints_boxes(j2d_orig, cfg.base_box_scale, cfg.min_box_px)
            boxes = torch.cat([base, torch.zeros_like(base[:, :1])], -1)
    else:
        u = u.to(dev)
        boxes = sample_boxes(joints_boxes(j2d_orig, cfg.base_box_scale, cfg.min_box_px), u[:, :4], cfg)
    affine = crop_affine(boxes, crop_size)
    Kc, rot = crop_camera(K, affine)
    crops = warp_images(split.images[idx.to(split.images.device)].to(dev, non_blocking=True), affine, crop_size)
    if u is not None:
        crops = jitter_colours(crops, u[:, 4:8], cfg)
        if cfg.amplitude_prob > 0:
            if u.shape[1] < DRAWS_PER_VIEW + AMPLITUDE_DRAWS:
                raise InputError(f"make_views: amplitude augmentation needs {DRAWS_PER_VIEW + AMPLITUDE_DRAWS} "
                                 f"draws per sample, got {u.shape[1]}")
            # Swap partners: other crops of this batch (after their colour jitter).
            crops = augment_amplitude_batch(crops, u[:, DRAWS_PER_VIEW:DRAWS_PER_VIEW + AMPLITUDE_DRAWS], cfg)
    xyz_c = apply_rotation(xyz, rot)
    root = xyz_c[:, ROOT_JOINT]
    j2d = apply_affine(j2d_orig, affine)
    f = torch.float32
    return {
        "image": crops.contiguous(),
        "joints2d": j2d.to(f),
        "joints3d": (xyz_c - root[:, None]).to(f),
        "vertices": (apply_rotation(verts, rot) - root[:, None]).to(f),
        "root": root.to(f),
        "K": Kc.to(f),
        "rot": rot.to(f),
        "affine": affine.to(f),
        "box": boxes.to(f),
    }


def make_batch(split: InMemorySplit, image_index: Tensor | list[int], cfg: AugmentConfig, crop_size: int, *,
               seed: int, epoch: int, batch: int, two_view: bool = False) -> dict[str, Tensor]:
    """A training batch (augmented when ``cfg.enabled``), keys as the loader's (``_2`` for view 2).

    The draws depend only on ``(seed, epoch, batch)`` and the batch size, so the same
    position in a run gives the same batch on any device.
    """
    image_index = torch.as_tensor(image_index, dtype=torch.int64)
    if image_index.ndim != 1 or len(image_index) == 0:
        raise InputError(f"make_batch: image_index must be a non-empty (B,) tensor, got {tuple(image_index.shape)}")
    if int(image_index.min()) < 0 or int(image_index.max()) >= split.num_images:
        raise IndexError(f"make_batch: image indices must lie in 0..{split.num_images - 1}")
    views = 2 if two_view else 1
    extra = AMPLITUDE_DRAWS if cfg.amplitude_prob > 0 else 0
    u = draw_uniforms(seed, epoch, batch, len(image_index), views, extra) if cfg.enabled else None
    out: dict[str, Tensor] = {}
    for v in range(views):
        sample = make_views(split, image_index, cfg, crop_size, None if u is None else u[v])
        out.update({(k + "_2" if v else k): t for k, t in sample.items()})
    dev = split.K.device
    out["has_3d"] = torch.ones(len(image_index), dtype=torch.bool, device=dev)
    out["index"] = (image_index % split.num_annotations).to(dev)
    out["image_index"] = image_index.to(dev)
    return out


__all__ = [
    "DRAWS_PER_VIEW", "InMemorySplit", "colour_matrices", "decode_split", "draw_uniforms", "images_digest",
    "jitter_colours", "joints_boxes", "load_split", "make_batch", "make_views", "sample_boxes", "warp_images",
]
