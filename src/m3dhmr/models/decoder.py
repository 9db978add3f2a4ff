"""The 3D mesh decoder: F^e and L^p -> root-relative mesh vertices.

1.-2. Lifting (:mod:`m3dhmr.models.lifting`): pose features sampled at the landmarks
   (eq. 1) and lifted to the coarsest mesh level by the learnable matrix M (eq. 2),
   held here as ``lift`` (V_{L-1}, J).
3. Per level, coarse -> fine: up-sample with the topology's ``up`` matrices (not on
   the coarsest level), a mesh convolution and ReLU.
4. The ROI layer at full resolution (when enabled), then a SpiralConv head to 3D.

Up-sampling matrices have a few non-zeros per row, so they are stored padded
(``(V_l, P)`` indices and weights) and applied as P gathers and a weighted sum: no
sparse kernels (ONNX-friendly) and much cheaper than a dense (V_l, V_{l+1}) matmul.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from m3dhmr.models.lifting import lift, lifting_init
from m3dhmr.models.dsc import SpiralConv, make_mesh_conv
from m3dhmr.models.roi import ROILayer
from m3dhmr.errors import InputError


def padded_sparse(matrix: sp.spmatrix | np.ndarray) -> tuple[Tensor, Tensor]:
    """A sparse (R, N) matrix as padded rows: indices (R, P) int64 and weights (R, P).

    Padding entries point at column 0 with weight 0.
    """
    m = sp.csr_matrix(matrix)
    m.eliminate_zeros()
    counts = np.diff(m.indptr)
    p = max(1, int(counts.max()) if counts.size else 1)
    idx = np.zeros((m.shape[0], p), dtype=np.int64)
    wts = np.zeros((m.shape[0], p), dtype=np.float32)
    rows = np.repeat(np.arange(m.shape[0]), counts)
    slot = np.arange(m.nnz) - np.repeat(m.indptr[:-1], counts)
    idx[rows, slot] = m.indices
    wts[rows, slot] = m.data
    return torch.from_numpy(idx), torch.from_numpy(wts)


class Upsample(nn.Module):
    """Apply a sparse (V_out, V_in) matrix to vertex features.

    Row i of the matrix has at most P non-zeros (3 for barycentric up-sampling), so
    ``y = sum_p w_p * x[idx_p]`` over the P padded columns: P gathers of (B, V_out, C),
    no sparse kernel and no shape arithmetic in a traced (ONNX) graph.

    Shapes: x (B, V_in, C) -> (B, V_out, C).
    """

    def __init__(self, matrix: sp.spmatrix | np.ndarray) -> None:
        super().__init__()
        idx, wts = padded_sparse(matrix)
        self.num_in = int(sp.csr_matrix(matrix).shape[1])
        self.num_out, self.width = idx.shape
        self.register_buffer("index", idx.t().contiguous(), persistent=False)  # (P, V_out)
        self.register_buffer("weight", wts.t().unsqueeze(-1).contiguous(), persistent=False)  # (P, V_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[1] != self.num_in:
            raise InputError(f"Upsample expects (B, {self.num_in}, C), got {tuple(x.shape)}")
        y = x.index_select(1, self.index[0]) * self.weight[0]
        for p in range(1, self.width):
            y = y + x.index_select(1, self.index[p]) * self.weight[p]
        return y


class MeshDecoder(nn.Module):
    """Decoder from (F^e, L^p) to normalised root-relative vertices (see module docstring).

    Args:
        spirals: per level, fine -> coarse, (V_l, S) indices.
        up: per level l < L-1, the (V_l, V_{l+1}) up-sampling matrix.
        channels: per level, fine -> coarse, output channels of the level's conv.
        latent_channels: C of F^e.
        conv: "dsc" | "dsconv" | "spiral".
        roi_spirals, regions: (V_0, S_roi) and (V_0,), or None for no ROI layer.
        stride: crop pixels per cell of F^e.
    Shapes: features (B, C, h, w), joints2d (B, J, 2) crop pixels -> (B, V_0, 3),
    in units of ``VERTEX_NORMALISATION_M`` (the network multiplies by it).
    """

    def __init__(
        self,
        spirals: Sequence[np.ndarray | Tensor],
        up: Sequence[sp.spmatrix | np.ndarray],
        channels: Sequence[int],
        latent_channels: int,
        num_joints: int = 21,
        conv: str = "dsc",
        kernels: int = 8,
        roi_spirals: np.ndarray | Tensor | None = None,
        regions: np.ndarray | Tensor | None = None,
        stride: float = 4.0,
    ) -> None:
        super().__init__()
        self.stride = stride
        levels = len(spirals)
        if len(channels) != levels or len(up) != levels - 1:
            raise InputError(
                f"decoder needs one channel count and spiral table per level and levels-1 up matrices; "
                f"got {len(channels)} channels, {len(spirals)} spiral tables, {len(up)} up matrices"
            )
        spirals_t = [torch.as_tensor(np.asarray(s)).long() for s in spirals]
        for l in range(levels - 1):
            shape = sp.csr_matrix(up[l]).shape
            want = (spirals_t[l].shape[0], spirals_t[l + 1].shape[0])
            if shape != want:
                raise InputError(f"up[{l}] has shape {shape}, expected (V_{l}, V_{l + 1}) = {want}")
        self.num_vertices = spirals_t[0].shape[0]
        coarse = spirals_t[-1].shape[0]
        self.lift = nn.Parameter(lifting_init(coarse, num_joints))
        self.convs = nn.ModuleList()
        self.ups = nn.ModuleList()
        cin = latent_channels
        for l in range(levels - 1, -1, -1):
            self.convs.append(make_mesh_conv(conv, cin, channels[l], spirals_t[l], kernels=kernels))
            cin = channels[l]
            if l > 0:
                self.ups.append(Upsample(up[l - 1]))
        self.roi = None
        if roi_spirals is not None:
            if regions is None:
                raise InputError("the ROI layer needs regions (V_0,) with roi_spirals")
            if np.asarray(roi_spirals).shape[0] != self.num_vertices:
                raise InputError(
                    f"roi_spirals has {np.asarray(roi_spirals).shape[0]} rows, the full mesh {self.num_vertices} vertices"
                )
            self.roi = ROILayer(channels[0], roi_spirals, regions)
        self.head = SpiralConv(channels[0], 3, spirals_t[0])
        # The hidden layers keep their inputs' scale (dsc.init_depth_separable); the
        # head starts 10x smaller so the first mesh is the rest template plus offsets of
        # a few millimetres, not a crumpled one.
        with torch.no_grad():
            self.head.layer.weight.mul_(0.1)

    def forward(self, features: Tensor, joints2d: Tensor) -> Tensor:
        x = lift(self.lift, features, joints2d, self.stride)  # (B, V_{L-1}, C)
        for i, conv in enumerate(self.convs):
            if i > 0:
                x = self.ups[i - 1](x)
            x = torch.relu(conv(x))
        if self.roi is not None:
            x = self.roi(x)
        return self.head(x)
