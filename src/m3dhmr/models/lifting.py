"""Lifting: 2D pose features to the coarsest mesh level (paper eqs 1-2).

``F^p = F^e(L^p)``: the encoding features F^e (B, C, h, w) bilinearly sampled at the
second stack's 2D landmarks L^p (B, J, 2) -> (B, J, C); then ``F^m = M F^p`` with the
learnable matrix M (V_{L-1}, J) -> (B, V_{L-1}, C), the input of the first mesh
convolution (:mod:`m3dhmr.models.decoder` holds M as its ``lift`` parameter).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def sample_features(features: Tensor, points: Tensor, stride: float = 4.0) -> Tensor:
    """Bilinear features at crop-pixel positions (eq. 1).

    The feature map covers the crop exactly (its cells tile ``[-0.5, W_img - 0.5]``),
    so with ``align_corners=False`` the normalised coordinate is
    ``(p + 0.5) / W_img * 2 - 1``; outside the crop the border value is used.

    Args:
        features: (B, C, h, w) at stride ``W_img / w``.
        points: (B, J, 2) (x, y) crop pixels.
        stride: crop pixels per feature cell.
    Returns:
        (B, J, C).
    """
    b, c, h, w = features.shape
    size = points.new_tensor([w * stride, h * stride])
    grid = ((points + 0.5) / size * 2.0 - 1.0).unsqueeze(2)  # (B, J, 1, 2)
    out = F.grid_sample(features, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.squeeze(-1).transpose(1, 2)


def lifting_init(num_coarse: int, num_joints: int) -> Tensor:
    """(V_{L-1}, J) initial M: uniform with variance 1 / J, so the lifted features keep the
    pose features' scale and differ from vertex to vertex (a start at 1 / J everywhere
    gave every coarse vertex the same mean feature)."""
    a = math.sqrt(3.0 / num_joints)
    return torch.empty(num_coarse, num_joints).uniform_(-a, a)


def lift(matrix: Tensor, features: Tensor, joints2d: Tensor, stride: float = 4.0) -> Tensor:
    """``M F^e(L^p)``: matrix (V, J), features (B, C, h, w), joints2d (B, J, 2) crop
    pixels -> (B, V, C)."""
    return matrix @ sample_features(features, joints2d, stride)
