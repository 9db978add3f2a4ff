"""Synthetic 2D-3D registration cases shared by test_registration (torch) and
test_registration_numpy (the NumPy port): hand-sized joints seen by crop-like cameras,
and outliers added to their projections."""

import numpy as np
import torch

from m3dhmr.geometry.camera import project


def hand_cases(B, seed=0, dtype=torch.float64):
    """Root-relative hand-sized joints (B, 21, 3), translations with tz in [0.3, 1], crop-like K."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(B, 21, 3, generator=g, dtype=dtype) * 0.035
    X = X - X[:, :1]
    t = torch.stack([(torch.rand(B, generator=g, dtype=dtype) - 0.5) * 0.2,
                     (torch.rand(B, generator=g, dtype=dtype) - 0.5) * 0.2,
                     0.3 + 0.7 * torch.rand(B, generator=g, dtype=dtype)], -1)
    f = 300 + 400 * torch.rand(B, generator=g, dtype=dtype)
    K = torch.zeros(B, 3, 3, dtype=dtype)
    K[:, 0, 0], K[:, 1, 1] = f, f * 1.02
    K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = 64.0, 60.0, 1.0
    uv = project(X + t[:, None], K)
    return X, t, K, uv


def with_outliers(uv, n_out, seed=1):
    """uv (B, J, 2) with ``n_out`` random joints per sample moved 30-80 px in a random
    direction; returns the moved uv and the (B, J) bool mask of the moved joints."""
    g = torch.Generator().manual_seed(seed)
    B, J, _ = uv.shape
    idx = torch.argsort(torch.rand(B, J, generator=g), dim=1)[:, :n_out]
    mask = torch.zeros(B, J, dtype=torch.bool).scatter_(1, idx, True)
    ang = torch.rand(B, J, generator=g, dtype=uv.dtype) * 2 * np.pi
    mag = 30 + 50 * torch.rand(B, J, generator=g, dtype=uv.dtype)
    off = torch.stack([ang.cos(), ang.sin()], -1) * mag[..., None]
    return torch.where(mask[..., None], uv + off, uv), mask
