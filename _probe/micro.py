import torch, time, sys, numpy as np
sys.path.insert(0, 'src')
from m3dhmr.models.meshconv import DSC, SpiralConv
torch.set_num_threads(int(sys.argv[1]))
d = np.load('_probe/topo.npz')
sp = torch.as_tensor(d['spiral0'])
dsc = DSC(64, 32, sp, 8); spc = SpiralConv(64, 32, sp)
x = torch.randn(1, sp.shape[0], 64)
def v_bmm(self, x):
    b, v, c = x.shape
    k, s, o = self.kernels, self.seq_length, self.out_channels
    pi = self.attention(x)
    g = x.index_select(1, self.flat_index).view(b, v, s, c)
    spatial = torch.cat([self.spatial_weight.view(k, s * c), self.spatial_bias], dim=1)
    w1 = pi @ spatial
    h = (g * w1[..., : s * c].view(b, v, s, c)).sum(2) + w1[..., s * c :]
    z = torch.addmm(self.channel_bias.view(k * o), h.reshape(b * v, c), self.channel_weight.view(c, k * o))
    return torch.bmm(pi.reshape(b * v, 1, k), z.view(b * v, k, o)).view(b, v, o)
def v_mulsum(self, x):
    b, v, c = x.shape
    k, s, o = self.kernels, self.seq_length, self.out_channels
    pi = self.attention(x)
    g = x.index_select(1, self.flat_index).view(b, v, s, c)
    spatial = torch.cat([self.spatial_weight.view(k, s * c), self.spatial_bias], dim=1)
    w1 = pi @ spatial
    h = (g * w1[..., : s * c].view(b, v, s, c)).sum(2) + w1[..., s * c :]
    z = torch.addmm(self.channel_bias.view(k * o), h.reshape(b * v, c), self.channel_weight.view(c, k * o))
    return (z.view(b, v, k, o) * pi.unsqueeze(-1)).sum(2)
def v_premix(self, x):
    b, v, c = x.shape
    k, s, o = self.kernels, self.seq_length, self.out_channels
    pi = self.attention(x)
    g = x.index_select(1, self.flat_index).view(b, v, s, c)
    spatial = torch.cat([self.spatial_weight.view(k, s * c), self.spatial_bias], dim=1)
    w1 = pi @ spatial
    h = (g * w1[..., : s * c].view(b, v, s, c)).sum(2) + w1[..., s * c :]
    mixed = (pi.unsqueeze(-1) * h.unsqueeze(-2)).view(b, v, k * c)
    w2 = self.channel_weight.permute(1, 0, 2).reshape(k * c, o)
    return mixed @ w2 + pi @ self.channel_bias
def v_einsum_dw(self, x):
    # per-kernel depthwise outputs then mix
    b, v, c = x.shape
    k, s, o = self.kernels, self.seq_length, self.out_channels
    pi = self.attention(x)
    g = x.index_select(1, self.flat_index).view(b, v, s, c)
    dw = torch.einsum('bvsc,ksc->bvkc', g, self.spatial_weight) + self.spatial_bias
    h = (dw * pi.unsqueeze(-1)).sum(2)
    z = torch.addmm(self.channel_bias.view(k * o), h.reshape(b * v, c), self.channel_weight.view(c, k * o))
    return (z.view(b, v, k, o) * pi.unsqueeze(-1)).sum(2)
fs = {'bmm': v_bmm, 'mulsum': v_mulsum, 'premix': v_premix, 'einsum_dw': v_einsum_dw}
with torch.inference_mode():
    ref = v_bmm(dsc, x)
    for n, f in fs.items(): print(n, (f(dsc, x) - ref).abs().max().item())
    res = {n: [] for n in fs}; res['spiral'] = []
    for rep in range(200):
        for n, f in fs.items():
            t = time.perf_counter(); f(dsc, x); res[n].append(time.perf_counter() - t)
        t = time.perf_counter(); spc(x); res['spiral'].append(time.perf_counter() - t)
    for n, r in res.items(): print(f"{n:10s} {np.median(r)*1e6:8.1f} us")
