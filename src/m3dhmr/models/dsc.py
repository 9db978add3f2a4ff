"""The DSC step's mesh convolutions (the paper's DSC and the spiral baselines), with one interface.

Every class is built as ``Conv(in_channels, out_channels, spiral_indices)`` with
``spiral_indices (V, S)`` int64 (row v: the vertex v itself, then its rings, as in
eq. 3) and maps ``x (B, V, C_in) -> (B, V, C_out)``. The spirals are a buffer; the
neighbourhood gather is one ``index_select`` on the flattened ``(V*S,)`` index.

- :class:`SpiralConv` (SpiralNet++): flatten the spiral's ``S * C_in`` features, one linear.
- :class:`DSConv` (MobRecon): per-channel spatial weights over the spiral, then a
  point-wise ``C_in -> C_out`` linear.
- :class:`DSC` (M3DHMR eqs 4-6): K depth-separable kernels whose spatial weights,
  channel weights and biases are mixed per vertex by a softmax attention.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from m3dhmr.errors import InputError


def _check_spirals(spiral_indices: Tensor | object) -> Tensor:
    spirals = torch.as_tensor(spiral_indices)
    if spirals.ndim != 2 or spirals.shape[0] < 1 or spirals.shape[1] < 1:
        raise InputError(f"spiral_indices must have shape (V, S), got {tuple(spirals.shape)}")
    if spirals.dtype.is_floating_point or spirals.dtype == torch.bool:
        raise InputError(f"spiral_indices must be integers, got {spirals.dtype}")
    v = spirals.shape[0]
    if int(spirals.min()) < 0 or int(spirals.max()) >= v:
        raise InputError(
            f"spiral_indices (V={v}, S={spirals.shape[1]}) hold values outside 0..{v - 1} "
            f"(min {int(spirals.min())}, max {int(spirals.max())})"
        )
    return spirals.to(torch.long).contiguous()


def init_depth_separable(spatial: Tensor, channel: Tensor, seq_length: int, in_channels: int) -> None:
    """Variance-preserving start for a depth-separable spiral convolution followed by ReLU.

    The spatial weights sum ``S`` neighbours per channel, so they get variance ``1 / S``
    (uniform in ``+-sqrt(3 / S)``); the channel weights mix ``C_in`` channels before a
    ReLU, so they get He's variance ``2 / C_in``. The earlier start (spatial variance
    ``1 / (3 S)``, Xavier channels) shrank the signal about 2.5x per layer: measured on
    the R18 decoder, features of std 0.22 left the last layer at 0.0015, so the mesh
    began as its biases and its loss stayed flat for the first steps
    (``docs/results_synthetic.md``, "decoder initialisation").
    """
    with torch.no_grad():
        a = math.sqrt(3.0 / seq_length)
        spatial.uniform_(-a, a)
        b = math.sqrt(6.0 / in_channels)
        channel.uniform_(-b, b)


class _SpiralBase(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, spiral_indices: Tensor) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise InputError(f"channels must be >= 1, got in={in_channels}, out={out_channels}")
        spirals = _check_spirals(spiral_indices)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_vertices, self.seq_length = spirals.shape
        self.register_buffer("flat_index", spirals.reshape(-1), persistent=False)

    def gather(self, x: Tensor) -> Tensor:
        """Neighbourhood features of every vertex: x (B, V, C_in) -> (B, V, S, C_in).

        Sizes other than B are the layer's constants, so a traced graph (ONNX) carries
        no shape arithmetic, only a dynamic batch axis.
        """
        g = x.index_select(1, self.flat_index)
        return g.view(-1, self.num_vertices, self.seq_length, self.in_channels)

    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 3 or x.shape[1] != self.num_vertices or x.shape[2] != self.in_channels:
            raise InputError(
                f"{type(self).__name__} expects x of shape (B, {self.num_vertices}, {self.in_channels}), "
                f"got {tuple(x.shape)}"
            )

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, V={self.num_vertices}, S={self.seq_length}"


class SpiralConv(_SpiralBase):
    """SpiralNet++ convolution: ``y_v = W [x_{s_1}; ...; x_{s_S}] + b``.

    Shapes: x (B, V, C_in) -> (B, V, C_out); ``layer.weight`` (C_out, S*C_in).
    """

    def __init__(self, in_channels: int, out_channels: int, spiral_indices: Tensor) -> None:
        super().__init__(in_channels, out_channels, spiral_indices)
        self.layer = nn.Linear(in_channels * self.seq_length, out_channels)
        nn.init.xavier_uniform_(self.layer.weight)
        nn.init.zeros_(self.layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return self.layer(self.gather(x).flatten(2))


class DSConv(_SpiralBase):
    """MobRecon's depth-separable spiral convolution.

    ``h_v[c] = sum_s W1[c, s] x_{s}[c] + b1[c]``; ``y_v = W2 h_v + b2``.
    Shapes: x (B, V, C_in) -> (B, V, C_out); ``spatial_weight`` (C_in, S),
    ``spatial_bias`` (C_in,), ``channel.weight`` (C_out, C_in).
    """

    def __init__(self, in_channels: int, out_channels: int, spiral_indices: Tensor) -> None:
        super().__init__(in_channels, out_channels, spiral_indices)
        self.spatial_weight = nn.Parameter(torch.empty(in_channels, self.seq_length))
        self.spatial_bias = nn.Parameter(torch.zeros(in_channels))
        self.channel = nn.Linear(in_channels, out_channels)
        init_depth_separable(self.spatial_weight, self.channel.weight, self.seq_length, in_channels)
        nn.init.zeros_(self.channel.bias)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        h = (self.gather(x) * self.spatial_weight.t()).sum(2) + self.spatial_bias  # (B, V, C_in)
        return self.channel(h)


class DSC(_SpiralBase):
    """Dynamic spiral convolution (eqs 4-6) with K depth-separable kernels.

    Per vertex v, attention ``pi(v) = softmax(f2(relu(f1(x_v))))`` over K kernels
    (f1: C_in -> max(1, C_in // 2), f2: -> K; point-wise on the centre vertex's
    feature). The aggregated kernel is ``W^_j(v) = sum_k pi_k(v) W_j^k`` and likewise the
    biases, and ``DSC(v) = W^_2(v) (W^_1(v) * f(k-disk(v)) + b^_1(v)) + b^_2(v)``.

    Computed without materialising per-vertex (C_out, C_in) matrices, in one of two
    forms with the same result. :meth:`forward_gathered` gathers all S neighbours at
    once, (B, V, S, C_in), and mixes the spatial weights by one GEMM.
    :meth:`forward_by_position` loops over the S positions,
    ``h += x[spiral[:, s]] * (pi @ W_1[s])``, with temporaries of only (B V, C_in).
    Eager CPU uses the loop: the S-times-larger buffers pushed the heap past its
    high-water mark on every call, glibc trimmed it and thousands of page faults
    followed (a third of the decoder's time at batch 1). CUDA, tracing and ONNX export
    use the gathered form (fewer kernels; ONNX Runtime's arena has no such problem and
    runs it about 2x faster than the loop).
    Because ``sum_k pi_k = 1``, the channel step
    ``W^_2 h = [W_2^1 ... W_2^K] [pi_1 h; ...; pi_K h]`` is one GEMM with inner size
    K C_in (cost B V K C_in C_out, below SpiralConv's B V S C_in C_out when K < S).

    Shapes: x (B, V, C_in) -> (B, V, C_out); ``spatial_weight`` (S, K, C_in),
    ``spatial_bias`` (K, C_in), ``channel_weight`` (K, C_in, C_out) (kernel k is
    ``channel_weight[k].T``), ``channel_bias`` (K, C_out).
    """

    def __init__(self, in_channels: int, out_channels: int, spiral_indices: Tensor, kernels: int = 8) -> None:
        super().__init__(in_channels, out_channels, spiral_indices)
        if kernels < 1:
            raise InputError(f"DSC kernels must be >= 1, got {kernels}")
        self.kernels = kernels
        # Column j of the spirals as a contiguous row: the j-th neighbour of every vertex.
        columns = self.flat_index.view(self.num_vertices, self.seq_length).t().contiguous()
        self.register_buffer("spiral_columns", columns, persistent=False)
        hidden = max(1, in_channels // 2)
        self.attention1 = nn.Linear(in_channels, hidden)
        self.attention2 = nn.Linear(hidden, kernels)
        # (S, K, C_in): the loop's per-position weights are contiguous views.
        self.spatial_weight = nn.Parameter(torch.empty(self.seq_length, kernels, in_channels))
        self.spatial_bias = nn.Parameter(torch.zeros(kernels, in_channels))
        self.channel_weight = nn.Parameter(torch.empty(kernels, in_channels, out_channels))
        self.channel_bias = nn.Parameter(torch.zeros(kernels, out_channels))
        # The attention averages the K kernels (weights ~1 / K each at the start): K
        # independent kernels would average to a sqrt(K) times weaker one. So they start
        # as one variance-preserving kernel plus a 10 % spread that lets them diverge.
        with torch.no_grad():
            init_depth_separable(self.spatial_weight[:, :1], self.channel_weight[:1], self.seq_length, in_channels)
            base_s, base_c = self.spatial_weight[:, :1].clone(), self.channel_weight[:1].clone()
            spread = 0.1 * math.sqrt(3.0)  # uniform(-1, 1) * this has std 0.1
            self.spatial_weight.copy_(base_s * (1 + spread * torch.empty_like(self.spatial_weight).uniform_(-1, 1)))
            self.channel_weight.copy_(base_c * (1 + spread * torch.empty_like(self.channel_weight).uniform_(-1, 1)))
        # A small spread so that the kernels' biases differ too.
        nn.init.uniform_(self.spatial_bias, -0.01, 0.01)
        nn.init.uniform_(self.channel_bias, -0.01, 0.01)

    def kernel_weights(self, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Kernel k as a :class:`DSConv`'s: W1 (C_in, S), b1 (C_in,), W2 (C_out, C_in), b2 (C_out,)."""
        return (
            self.spatial_weight[:, k].t(),
            self.spatial_bias[k],
            self.channel_weight[k].t(),
            self.channel_bias[k],
        )

    def attention(self, x: Tensor) -> Tensor:
        """Per-vertex kernel weights: x (B, V, C_in) -> (B, V, K), each row sums to 1."""
        return torch.softmax(self.attention2(torch.relu(self.attention1(x))), dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        if x.device.type == "cpu" and not torch.jit.is_tracing():
            return self.forward_by_position(x)
        return self.forward_gathered(x)

    def forward_gathered(self, x: Tensor) -> Tensor:
        """The DSC with one (B, V, S, C_in) gather: x (B, V, C_in) -> (B, V, C_out).

        Batch-agnostic under tracing (no Python branch on B), so ONNX export keeps a
        dynamic batch axis.
        """
        k, s, c, o = self.kernels, self.seq_length, self.in_channels, self.out_channels
        pi = self.attention(x)  # (B, V, K)
        w1 = (pi @ self.spatial_weight.transpose(0, 1).reshape(k, s * c)).view(-1, self.num_vertices, s, c)
        h = (self.gather(x) * w1).sum(2) + pi @ self.spatial_bias  # (B, V, C_in)
        mixed = (pi.unsqueeze(-1) * h.unsqueeze(-2)).view(-1, self.num_vertices, k * c)  # (B, V, K C_in)
        return mixed @ self.channel_weight.view(k * c, o) + pi @ self.channel_bias

    def forward_by_position(self, x: Tensor) -> Tensor:
        """The same DSC, one spiral position at a time (temporaries (B V, C_in)).

        x (B, V, C_in) -> (B, V, C_out); rows are flattened to B V so that every step is
        one 2D op (per-op dispatch dominates at batch 1).
        """
        b, v, c = x.shape
        k, o, n = self.kernels, self.out_channels, b * v
        xf = x.reshape(n, c)
        pi = self.attention(xf)  # (B V, K)
        cols = self.spiral_columns  # (S, V): rows of xf, offset per sample below
        if b != 1:
            offsets = torch.arange(0, n, v, device=cols.device).view(1, b, 1)
            cols = (cols.unsqueeze(1) + offsets).view(self.seq_length, n)
        h = torch.mm(pi, self.spatial_bias)  # (B V, C_in)
        for idx, w in zip(cols.unbind(0), self.spatial_weight.unbind(0)):
            h.addcmul_(xf.index_select(0, idx), torch.mm(pi, w))
        mixed = (pi.unsqueeze(-1) * h.unsqueeze(-2)).view(n, k * c)  # (B V, K C_in)
        out = torch.addmm(torch.mm(pi, self.channel_bias), mixed, self.channel_weight.view(k * c, o))
        return out.view(b, v, o)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", K={self.kernels}"


#: ``ModelConfig.conv`` name -> class (DSC takes the extra ``kernels`` argument).
MESH_CONVS: dict[str, type[_SpiralBase]] = {"spiral": SpiralConv, "dsconv": DSConv, "dsc": DSC}


def make_mesh_conv(name: str, in_channels: int, out_channels: int, spiral_indices: Tensor, kernels: int = 8) -> nn.Module:
    """The mesh convolution called ``name`` ("spiral" | "dsconv" | "dsc")."""
    if name not in MESH_CONVS:
        raise InputError(f"unknown mesh convolution {name!r}; choose one of {sorted(MESH_CONVS)}")
    if name == "dsc":
        return DSC(in_channels, out_channels, spiral_indices, kernels=kernels)
    return MESH_CONVS[name](in_channels, out_channels, spiral_indices)
