"""Export the network (image -> vertices, joints3d, joints2d) to ONNX and check it.

The registration (a few 3x3 solves) stays in torch after the network: it is cheap,
and exporting its data-dependent outlier rounds would gain nothing.

Exporter choice: ``torch.onnx.export(..., dynamo=False)`` (the TorchScript tracer). With
torch 2.14 (and 2.11) it exports the whole model, including ``grid_sample`` (opset >= 16)
and the spiral gathers, with a dynamic batch axis through ``dynamic_axes``; the graph is
one file (no external data). Measured parity with PyTorch: ~1e-5 crop px on the 2D
joints, < 1e-6 m on the vertices (tests/test_onnx_export.py, ``m3dhmr export-onnx``).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from m3dhmr.fileio import atomic_path
from m3dhmr.inference.networks import ONNX_INPUT, ONNX_OUTPUTS, OnnxNetwork

log = logging.getLogger(__name__)

#: grid_sample (the ROI-aligned sampling of the decoder) needs opset 16.
MIN_OPSET = 16
DEFAULT_OPSET = 17
#: Largest accepted |ONNX Runtime - PyTorch| difference (issue 7).
PARITY_TOLERANCE = 1e-4


class ExportWrapper(nn.Module):
    """``images (B, 3, S, S) -> (vertices (B, V, 3), joints3d (B, 21, 3), joints2d (B, 21, 2))``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(images)
        return out.vertices, out.joints3d, out.joints2d


@dataclass(frozen=True)
class ParityReport:
    """Max |ONNX Runtime - PyTorch| per output on a random batch, and the batch size used."""

    max_abs_diff: dict[str, float]
    batch: int

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values())


def export_onnx(model: nn.Module, path: str | Path, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``model`` (an :class:`m3dhmr.models.M3DHMR`) to ``path`` with a dynamic batch axis.

    The file is written to a temporary name and renamed (:mod:`m3dhmr.fileio`).
    """
    if opset < MIN_OPSET:
        raise ValueError(f"--opset {opset}: grid_sample needs opset >= {MIN_OPSET}")
    path = Path(path)
    size = int(model.cfg.input_size)
    wrapper = ExportWrapper(model).cpu().eval()
    dummy = torch.rand(2, 3, size, size)
    axes = {ONNX_INPUT: {0: "batch"}, **{name: {0: "batch"} for name in ONNX_OUTPUTS}}
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python constants are expected
        torch.onnx.export(wrapper, (dummy,), str(tmp), input_names=[ONNX_INPUT], output_names=list(ONNX_OUTPUTS),
                          dynamic_axes=axes, opset_version=int(opset), dynamo=False, do_constant_folding=True)
    log.info("exported ONNX opset %d to %s", opset, path)
    return path


def check_parity(model: nn.Module, path: str | Path, batch: int = 2, seed: int = 0,
                 threads: int | None = None) -> ParityReport:
    """Run PyTorch and ONNX Runtime on the same random batch; max abs difference per output."""
    size = int(model.cfg.input_size)
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, size, size, generator=g)
    with torch.inference_mode():
        ref = ExportWrapper(model).cpu().eval()(images)
    got = OnnxNetwork(path, threads=threads)(images.numpy())
    diffs = {name: float(np.abs(r.numpy() - getattr(got, name)).max()) for name, r in zip(ONNX_OUTPUTS, ref)}
    return ParityReport(max_abs_diff=diffs, batch=batch)
