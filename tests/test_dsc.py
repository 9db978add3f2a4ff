import pytest
import torch

from m3dhmr.models.dsc import DSC, MESH_CONVS, DSConv, SpiralConv, make_mesh_conv

torch.manual_seed(0)


def random_spirals(v=11, s=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    sp = torch.randint(0, v, (v, s), generator=g)
    sp[:, 0] = torch.arange(v)
    return sp


def spiral_naive(conv, x):
    b, v, c = x.shape
    sp = conv.flat_index.view(v, -1)
    out = torch.zeros(b, v, conv.out_channels, dtype=x.dtype)
    for i in range(b):
        for j in range(v):
            feat = torch.cat([x[i, int(n)] for n in sp[j]])
            out[i, j] = conv.layer.weight @ feat + conv.layer.bias
    return out


def dsconv_naive(conv, x):
    b, v, c = x.shape
    sp = conv.flat_index.view(v, -1)
    out = torch.zeros(b, v, conv.out_channels, dtype=x.dtype)
    for i in range(b):
        for j in range(v):
            h = torch.zeros(c, dtype=x.dtype)
            for s, n in enumerate(sp[j]):
                h += conv.spatial_weight[:, s] * x[i, int(n)]
            h += conv.spatial_bias
            out[i, j] = conv.channel.weight @ h + conv.channel.bias
    return out


def dsc_naive(conv, x):
    """Eqs 4-6 literally: per vertex, aggregate the K kernels' weights and biases."""
    b, v, c = x.shape
    sp = conv.flat_index.view(v, -1)
    out = torch.zeros(b, v, conv.out_channels, dtype=x.dtype)
    for i in range(b):
        for j in range(v):
            a = torch.relu(conv.attention1.weight @ x[i, j] + conv.attention1.bias)
            pi = torch.softmax(conv.attention2.weight @ a + conv.attention2.bias, 0)
            w1 = sum(pi[k] * conv.kernel_weights(k)[0] for k in range(conv.kernels))  # (C_in, S)
            b1 = sum(pi[k] * conv.kernel_weights(k)[1] for k in range(conv.kernels))
            w2 = sum(pi[k] * conv.kernel_weights(k)[2] for k in range(conv.kernels))  # (C_out, C_in)
            b2 = sum(pi[k] * conv.kernel_weights(k)[3] for k in range(conv.kernels))
            disk = torch.stack([x[i, int(n)] for n in sp[j]], 1)  # (C_in, S)
            out[i, j] = w2 @ ((w1 * disk).sum(1) + b1) + b2
    return out


@pytest.mark.parametrize("batch", [1, 3])
def test_spiralconv_matches_loop(batch):
    conv = SpiralConv(4, 6, random_spirals()).double()
    x = torch.randn(batch, 11, 4, dtype=torch.float64)
    torch.testing.assert_close(conv(x), spiral_naive(conv, x))


@pytest.mark.parametrize("batch", [1, 3])
def test_dsconv_matches_loop(batch):
    conv = DSConv(4, 6, random_spirals()).double()
    with torch.no_grad():
        conv.spatial_bias.normal_()
    x = torch.randn(batch, 11, 4, dtype=torch.float64)
    torch.testing.assert_close(conv(x), dsconv_naive(conv, x))


@pytest.mark.parametrize("kernels,cin,cout", [(1, 4, 6), (3, 4, 6), (8, 6, 3), (2, 1, 2)])
def test_dsc_matches_eqs_4_to_6(kernels, cin, cout):
    conv = DSC(cin, cout, random_spirals(), kernels=kernels).double()
    with torch.no_grad():
        conv.spatial_bias.normal_()
        conv.channel_bias.normal_()
        conv.attention2.weight.mul_(5)  # non-uniform attention
    x = torch.randn(2, 11, cin, dtype=torch.float64)
    torch.testing.assert_close(conv(x), dsc_naive(conv, x))


@pytest.mark.parametrize("batch", [1, 3])
def test_dsc_forms_agree_in_values_and_gradients(batch):
    # Eager CPU runs the per-position loop; CUDA and tracing (ONNX export) the gathered form.
    conv = DSC(5, 4, random_spirals(s=6), kernels=3).double()
    with torch.no_grad():
        conv.spatial_bias.normal_()
        conv.channel_bias.normal_()
        conv.attention2.weight.mul_(5)
    x = torch.randn(batch, 11, 5, dtype=torch.float64)
    results = []
    for form in (conv.forward_by_position, conv.forward_gathered):
        conv.zero_grad()
        xr = x.clone().requires_grad_(True)
        y = form(xr)
        y.pow(2).sum().backward()
        results.append((y.detach(), xr.grad, *(p.grad.clone() for p in conv.parameters())))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(conv(x), results[0][0])
    assert conv(x[:0]).shape == (0, 11, 4)  # an empty batch
    traced = torch.jit.trace(conv, x)
    assert "addcmul" not in str(traced.graph)  # the gathered form
    torch.testing.assert_close(traced(x), results[0][0])


def test_dsc_with_one_kernel_equals_dsconv():
    sp = random_spirals()
    dsc = DSC(4, 6, sp, kernels=1)
    ds = DSConv(4, 6, sp)
    with torch.no_grad():
        w1, b1, w2, b2 = dsc.kernel_weights(0)
        ds.spatial_weight.copy_(w1)
        ds.spatial_bias.copy_(b1 + 0.3)
        dsc.spatial_bias.add_(0.3)
        ds.channel.weight.copy_(w2)
        ds.channel.bias.copy_(b2)
    x = torch.randn(4, 11, 4)
    torch.testing.assert_close(dsc(x), ds(x))


def test_attention_sums_to_one_and_varies_per_vertex():
    dsc = DSC(8, 4, random_spirals(), kernels=5)
    with torch.no_grad():
        dsc.attention2.weight.mul_(10)
    pi = dsc.attention(torch.randn(2, 11, 8))
    assert pi.shape == (2, 11, 5)
    assert (pi >= 0).all()
    torch.testing.assert_close(pi.sum(-1), torch.ones(2, 11))
    assert pi.std(1).max() > 1e-3


def test_hand_computed_spiral_case():
    # Two vertices, spiral of length 2: vertex 0 sees (0, 1), vertex 1 sees (1, 0).
    sp = torch.tensor([[0, 1], [1, 0]])
    conv = SpiralConv(1, 1, sp)
    with torch.no_grad():
        conv.layer.weight.copy_(torch.tensor([[2.0, 3.0]]))
        conv.layer.bias.fill_(1.0)
    x = torch.tensor([[[1.0], [10.0]]])
    torch.testing.assert_close(conv(x), torch.tensor([[[2 + 30 + 1.0], [20 + 3 + 1.0]]]))
    ds = DSConv(1, 1, sp)
    with torch.no_grad():
        ds.spatial_weight.copy_(torch.tensor([[2.0, 3.0]]))
        ds.spatial_bias.fill_(1.0)
        ds.channel.weight.fill_(0.5)
        ds.channel.bias.fill_(-1.0)
    torch.testing.assert_close(ds(x), torch.tensor([[[0.5 * 33 - 1], [0.5 * 24 - 1]]]))


@pytest.mark.parametrize("name", sorted(MESH_CONVS))
def test_gradients_reach_every_parameter(name):
    conv = make_mesh_conv(name, 4, 3, random_spirals(), kernels=3)
    x = torch.randn(2, 11, 4, requires_grad=True)
    conv(x).square().sum().backward()
    for n, p in conv.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n
    assert x.grad is not None


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="shape"):
        SpiralConv(2, 2, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="outside"):
        DSConv(2, 2, torch.tensor([[0, 5], [1, 0]]))
    with pytest.raises(ValueError, match="integers"):
        DSC(2, 2, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="unknown mesh convolution"):
        make_mesh_conv("gcn", 2, 2, random_spirals())
    conv = SpiralConv(4, 2, random_spirals())
    with pytest.raises(ValueError, match=r"\(B, 11, 4\)"):
        conv(torch.randn(1, 10, 4))


@pytest.mark.parametrize("name", ["dsc", "dsconv"])
def test_start_keeps_the_signal_through_conv_and_relu(name):
    """He-style start: a stack of layers + ReLU neither fades nor explodes (the old start
    lost ~2.5x per layer, 8x for DSC whose attention averaged K independent kernels)."""
    torch.manual_seed(0)
    v, s, c = 300, 9, 64
    spirals = torch.randint(0, v, (v, s))
    spirals[:, 0] = torch.arange(v)
    x = torch.randn(4, v, c)
    h = x
    for _ in range(4):
        h = torch.relu(make_mesh_conv(name, c, c, spirals, kernels=8)(h))
    rms = float(h.pow(2).mean().sqrt())
    assert 0.3 < rms < 3.0, rms


def test_dsc_kernels_start_close_but_distinct():
    torch.manual_seed(0)
    conv = DSC(16, 8, torch.arange(20).view(10, 2).repeat(1, 2)[:, :3] % 10, kernels=4)
    w = conv.spatial_weight  # (S, K, C_in)
    rel = (w - w[:, :1]).abs().max() / w[:, :1].abs().max()
    assert 0 < float(rel) < 0.4


@pytest.mark.parametrize("form", ["forward_by_position", "forward_gathered"])
def test_dsc_gradcheck_float64(form):
    """Analytic gradients of both DSC forms against finite differences, for the input and
    every parameter (attention, spatial and channel weights and biases)."""
    torch.manual_seed(0)
    conv = DSC(3, 2, random_spirals(s=4), kernels=2).double()
    with torch.no_grad():
        conv.spatial_bias.normal_()
        conv.channel_bias.normal_()

    class Form(torch.nn.Module):  # forward = the chosen form, so functional_call can swap parameters
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x):
            return getattr(self.conv, form)(x)

    wrapper = Form()
    names = [f"conv.{n}" for n, _ in conv.named_parameters()]
    x = torch.randn(2, 11, 3, dtype=torch.float64, requires_grad=True)
    params = tuple(p.detach().clone().requires_grad_(True) for p in conv.parameters())

    def fn(x, *ps):
        return torch.func.functional_call(wrapper, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-6)
