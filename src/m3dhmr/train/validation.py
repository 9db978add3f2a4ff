"""Scoring a model on an evaluation split while it trains (the learning curve).

The FreiHAND metrics are invariant to a similarity transform of the prediction
(Procrustes with scale), so the root-relative prediction in the crop camera is scored
against the root-relative ground truth in the same frame: no camera registration is
needed, and the numbers equal what ``m3dhmr eval`` reports for PA-MPJPE, PA-MPVPE and
the aligned F-scores. The 2D error is the mean joint distance in *original image* pixels
(crop pixels times ``box side / crop size``), so it does not depend on the input size.

Stage 1 trains the first stack only: its rows carry the first stack's 2D error and no
mesh metrics (an untrained decoder's mesh would only add noise to the curve).
"""

from __future__ import annotations

import csv
import io
import math
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from m3dhmr.errors import InputError
from m3dhmr.fileio import atomic_write_text
from m3dhmr.metrics import freihand_metrics

#: Columns of ``RUN/eval_metrics.csv``, in order.
CSV_COLUMNS = ("step", "stage", "epoch", "pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15", "mpjpe_rr_mm", "err2d_px",
               "num_samples", "seconds")
#: Metrics that also go to TensorBoard (under ``eval/``).
LOGGED = ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15", "mpjpe_rr_mm", "err2d_px")
CSV_NAME = "eval_metrics.csv"


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, dataset, *, stage: int = 2, batch_size: int = 64,
                   device: str | torch.device = "cpu", amp_dtype: torch.dtype | None = None,
                   num_workers: int = 0, channels_last: bool = False) -> dict[str, float]:
    """Score ``model`` on every sample of ``dataset`` (an un-augmented ``FreiHANDDataset`` with GT).

    Args:
        model: an :class:`m3dhmr.models.M3DHMR`; its train/eval mode is restored afterwards.
        dataset: yields ``image (3, S, S)``, ``joints2d (21, 2)``, ``joints3d (21, 3)``,
            ``vertices (V, 3)`` and ``box (4,)`` per sample (``SAMPLE_KEYS``).
        stage: 1 scores the first stack's landmarks only; 2 the whole network.
    Returns:
        ``{"pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15", "mpjpe_rr_mm", "err2d_px", "num_samples"}``
        (``mpjpe_rr_mm``: joint error with only the wrists aligned, so it also scores the
        orientation); the mesh metrics are NaN for stage 1.
    """
    if len(dataset) == 0:
        raise InputError("evaluate_model: the evaluation set is empty")
    was_training = model.training
    model.eval()
    device = torch.device(device)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    err2d, xyz, verts, gt_xyz, gt_verts = [], [], [], [], []
    try:
        for batch in loader:
            images = batch["image"].to(device)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            ctx = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
            with ctx:
                out = model.forward_stack1(images) if stage == 1 else model(images)
            j2d = out.joints2d.float().cpu()
            crop_px = (j2d - batch["joints2d"]).norm(dim=-1).mean(-1)  # (B,)
            scale = batch["box"][:, 2] / images.shape[-1]  # original pixels per crop pixel
            err2d.append((crop_px * scale).numpy())
            if stage != 1:
                xyz.append(out.joints3d.float().cpu().numpy())
                verts.append(out.vertices.float().cpu().numpy())
                gt_xyz.append(batch["joints3d"].numpy())
                gt_verts.append(batch["vertices"].numpy())
    finally:
        model.train(was_training)
    result = {"err2d_px": float(np.concatenate(err2d).mean()), "num_samples": int(sum(len(e) for e in err2d))}
    if stage == 1:
        return {"pa_mpjpe_mm": math.nan, "pa_mpvpe_mm": math.nan, "f5": math.nan, "f15": math.nan,
                "mpjpe_rr_mm": math.nan, **result}
    pred_xyz, pred_verts = np.concatenate(xyz).astype(np.float64), np.concatenate(verts).astype(np.float64)
    if not (np.isfinite(pred_xyz).all() and np.isfinite(pred_verts).all()):
        raise FloatingPointError("evaluate_model: the model predicted NaN or infinite vertices")
    m = freihand_metrics(pred_xyz, pred_verts, np.concatenate(gt_xyz).astype(np.float64),
                         np.concatenate(gt_verts).astype(np.float64)).summary
    return {k: float(m[k]) for k in ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15", "mpjpe_rr_mm")} | result


class MetricsLog:
    """``RUN/eval_metrics.csv``: one row per evaluation, rewritten atomically after each.

    On resume the rows of steps after the checkpoint's step are dropped (they belong to
    the part of the run that is being redone), so the file always matches the weights.
    """

    def __init__(self, run_dir: str | Path, resume_step: int = 0) -> None:
        self.path = Path(run_dir) / CSV_NAME
        self.rows: list[dict[str, str]] = []
        if resume_step > 0 and self.path.is_file():
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames is not None and tuple(reader.fieldnames) == CSV_COLUMNS:
                    self.rows = [r for r in reader if int(r["step"]) <= resume_step]

    def add(self, row: dict[str, float | int]) -> None:
        missing = [c for c in CSV_COLUMNS if c not in row]
        if missing:
            raise InputError(f"MetricsLog.add: row lacks {missing}")
        self.rows.append({c: _fmt(row[c]) for c in CSV_COLUMNS})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())


def _fmt(v: float | int) -> str:
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return "" if math.isnan(v) else f"{v:.6g}"


def read_metrics_csv(path: str | Path) -> list[dict[str, float]]:
    """The rows of an ``eval_metrics.csv`` as floats (empty cells -> NaN)."""
    with open(path, newline="") as f:
        return [{k: (float(v) if v != "" else math.nan) for k, v in r.items()} for r in csv.DictReader(f)]


__all__ = ["CSV_COLUMNS", "CSV_NAME", "MetricsLog", "evaluate_model", "read_metrics_csv"]
