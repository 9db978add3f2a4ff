"""Batched prediction of a whole data split in FreiHAND's camera frame (what ``pred.json`` holds).

Each sample is cropped with the deterministic evaluation box; the network's root-relative
mesh and 2D joints are registered in the *crop* camera with that sample's crop ``K``
(:func:`m3dhmr.geometry.registration.register_camera_space`), then rotated back to the
original camera: the crop camera is the original one rotated by ``rot`` about its centre
(``x_crop = rot @ x_orig``), so ``x_orig = x_crop @ rot`` for row vectors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from m3dhmr.geometry.crop import crop_to_original

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitPrediction:
    """Predictions for ``N`` samples, in dataset order, metres, original camera frame."""

    xyz: np.ndarray  # (N, 21, 3) float32
    verts: np.ndarray  # (N, V, 3) float32
    success: np.ndarray  # (N,) bool, registration converged
    reprojection_error: np.ndarray  # (N,) float32 pixels (crop)

    def __len__(self) -> int:
        return int(self.xyz.shape[0])


@torch.no_grad()
def predict_split(
    model: torch.nn.Module,
    dataset,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    progress_bar: bool = False,
) -> SplitPrediction:
    """Run ``model`` over every sample of ``dataset`` (a ``FreiHANDDataset`` without augmentation).

    Uses the samples' ``image (3, S, S)``, ``K (3, 3)`` crop intrinsics and ``rot (3, 3)``.
    With several colour versions per annotation (FreiHAND's training split) only the first
    ``num_annotations`` images are predicted: one prediction per annotation, as ``pred.json``.
    """
    from m3dhmr.geometry.registration import register_camera_space

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = int(getattr(dataset, "num_annotations", len(dataset)))
    if n < len(dataset):
        dataset = torch.utils.data.Subset(dataset, range(n))
    if n == 0:
        raise ValueError("predict_split: the split has no samples")
    device = torch.device(device)
    model.eval().to(device)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers, drop_last=False)
    if progress_bar:
        from tqdm import tqdm

        loader = tqdm(loader, desc="predicting", leave=False, dynamic_ncols=True)
    xyz, verts, ok, err = [], [], [], []
    for batch in loader:
        images = batch["image"].to(device)
        out = model(images)
        K, rot = batch["K"].float(), batch["rot"].float()
        # Registration is a small per-sample solve: keep it on CPU in float32.
        reg = register_camera_space(out.joints3d.float().cpu(), out.joints2d.float().cpu(), K,
                                    out.vertices.float().cpu())
        xyz.append(crop_to_original(reg.joints, rot).numpy())
        verts.append(crop_to_original(reg.vertices, rot).numpy())
        ok.append(np.asarray(reg.success, dtype=bool))
        err.append(np.asarray(reg.reprojection_error, dtype=np.float32))
    pred = SplitPrediction(
        xyz=np.concatenate(xyz).astype(np.float32),
        verts=np.concatenate(verts).astype(np.float32),
        success=np.concatenate(ok),
        reprojection_error=np.concatenate(err),
    )
    if len(pred) != n:  # a dataset whose __len__ and iteration disagree
        raise ValueError(f"predict_split: expected {n} predictions, got {len(pred)}")
    failed = int((~pred.success).sum())
    if failed:
        log.warning("registration did not converge for %d of %d samples", failed, n)
    return pred
