"""Prediction of a whole data split in FreiHAND's camera frame (what ``pred.json`` holds).

The same road as a user's image: each sample's evaluation box (the dataset's
``crop_box``: the whole image, its centre or the joints, ``augment.eval_box``) goes
through the :class:`~m3dhmr.inference.predictor.Predictor`'s stages, its crop
(:func:`m3dhmr.inference.crops.crop_hand`), one batched network call per
``batch_size`` samples, and its registration in camera space
(:func:`m3dhmr.geometry.registration_numpy.register_camera_space_numpy`) with that
sample's K. The crop is unrotated, so the registered hand is in the original camera's
frame already.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from m3dhmr.errors import InputError

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
    """Predict every annotation of ``dataset`` (a ``FreiHANDDataset`` without augmentation).

    With several colour versions per annotation (FreiHAND's training split) only the first
    ``num_annotations`` images are predicted: one prediction per annotation, as ``pred.json``.
    ``num_workers`` threads decode the images (OpenCV releases the GIL).
    """
    # heavy: the inference modules (cv2, ONNX Runtime wrappers) load when called
    from m3dhmr.inference.images import load_image
    from m3dhmr.inference.predictor import Predictor

    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise InputError(f"num_workers must be >= 0, got {num_workers}")
    n = int(getattr(dataset, "num_annotations", len(dataset)))
    if n == 0:
        raise InputError("predict_split: the split has no samples")
    if dataset.augment.enabled:
        raise InputError("predict_split: the dataset augments its crops; pass augment.enabled = false")
    predictor = Predictor.from_model(model, device=str(device))
    if predictor.input_size != dataset.crop_size:
        raise InputError(f"predict_split: the model takes {predictor.input_size}-px crops, the dataset makes "
                         f"{dataset.crop_size}-px ones")

    def prepare(i: int):
        image = load_image(dataset.image_path(i))
        box = dataset.crop_box(image, dataset.joints2d(i))
        square = (box.cx - box.side / 2, box.cy - box.side / 2, box.side, box.side)
        return predictor.prepare(image, square, dataset.ann.K[i])

    starts = range(0, n, batch_size)
    if progress_bar:
        starts = tqdm(starts, desc="predicting", leave=False, dynamic_ncols=True)
    xyz, verts, ok, err = [], [], [], []
    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        for start in starts:
            prepared = list(pool.map(prepare, range(start, min(start + batch_size, n))))
            net = predictor.run_network(np.concatenate([p.images for p in prepared]))
            for k, p in enumerate(prepared):
                r = predictor.finish(p, net, k)
                xyz.append(r.joints3d)
                verts.append(r.vertices)
                ok.append(r.success)
                err.append(r.reprojection_error)
    pred = SplitPrediction(
        xyz=np.stack(xyz).astype(np.float32),
        verts=np.stack(verts).astype(np.float32),
        success=np.asarray(ok, dtype=bool),
        reprojection_error=np.asarray(err, dtype=np.float32),
    )
    failed = int((~pred.success).sum())
    if failed:
        log.warning("registration did not converge for %d of %d samples", failed, n)
    return pred
