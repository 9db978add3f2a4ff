"""Region-of-interest layer (paper section 3.3).

A dilated spiral convolution whose spirals (``TopologyBundle.roi_spirals``) never leave
the region (palm, thumb, index, middle, ring, little) of their centre vertex, so each
vertex is refined only from its own region. It refines the full-resolution decoder
features as a residual block: ``y = relu(x + SpiralConv_roi(x))`` (x comes out of a
ReLU, so a layer with small weights starts close to the identity).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from m3dhmr.models.dsc import SpiralConv
from m3dhmr.errors import InputError


def check_roi_spirals(roi_spirals: np.ndarray | Tensor, regions: np.ndarray | Tensor) -> None:
    """Raise ValueError unless every spiral stays inside its centre vertex's region.

    Args:
        roi_spirals: (V, S) int vertex indices.
        regions: (V,) int region label per vertex.
    """
    spirals = torch.as_tensor(np.asarray(roi_spirals)).long()
    labels = torch.as_tensor(np.asarray(regions)).long()
    if spirals.ndim != 2 or labels.ndim != 1 or spirals.shape[0] != labels.shape[0]:
        raise InputError(
            f"roi_spirals (V, S) and regions (V,) disagree: {tuple(spirals.shape)} vs {tuple(labels.shape)}"
        )
    if int(spirals.min()) < 0 or int(spirals.max()) >= labels.shape[0]:
        raise InputError(f"roi_spirals hold indices outside 0..{labels.shape[0] - 1}")
    crossing = labels[spirals] != labels[:, None]
    if bool(crossing.any()):
        bad = int(crossing.any(1).nonzero()[0, 0])
        raise InputError(f"roi_spirals of vertex {bad} leave its region {int(labels[bad])}")


class ROILayer(nn.Module):
    """Residual dilated spiral convolution restricted to hand regions.

    Shapes: x (B, V, C) -> (B, V, C); roi_spirals (V, S_roi); regions (V,).
    """

    def __init__(self, channels: int, roi_spirals: np.ndarray | Tensor, regions: np.ndarray | Tensor) -> None:
        super().__init__()
        check_roi_spirals(roi_spirals, regions)
        self.conv = SpiralConv(channels, channels, torch.as_tensor(np.asarray(roi_spirals)).long())

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x).add_(x).relu_()
