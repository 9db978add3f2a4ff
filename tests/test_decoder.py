import pytest
import scipy.sparse as sp
import torch

from m3dhmr.models.decoder import MeshDecoder, Upsample, padded_sparse
from model_helpers import tiny_topology


def test_upsample_matches_dense_matmul():
    m = sp.random(9, 5, density=0.3, random_state=1, format="lil")
    m[3] = 0  # an empty row
    m = m.tocsr()
    up = Upsample(m)
    x = torch.randn(2, 5, 4)
    ref = torch.from_numpy(m.toarray()).float() @ x
    torch.testing.assert_close(up(x), ref)
    idx, w = padded_sparse(sp.csr_matrix([[0.0, 2.0], [1.0, 3.0]]))
    assert idx.tolist() == [[1, 0], [0, 1]] and w.tolist() == [[2.0, 0.0], [1.0, 3.0]]
    with pytest.raises(ValueError, match=r"\(B, 5, C\)"):
        up(torch.randn(1, 4, 4))


@pytest.mark.parametrize("conv", ["dsc", "dsconv", "spiral"])
@pytest.mark.parametrize("roi", [True, False])
def test_decoder_shapes_and_gradients(conv, roi):
    topo = tiny_topology()
    dec = MeshDecoder(topo.spirals, topo.up, (4, 6, 8), latent_channels=5, conv=conv, kernels=3,
                      roi_spirals=topo.roi_spirals if roi else None, regions=topo.regions if roi else None)
    assert (dec.roi is not None) == roi
    for b in (1, 4):
        feats = torch.randn(b, 5, 8, 8)
        pts = torch.rand(b, 21, 2) * 31
        out = dec(feats, pts)
        assert out.shape == (b, 162, 3) and torch.isfinite(out).all()
    out.square().sum().backward()
    for n, p in dec.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n


def test_decoder_rejects_inconsistent_topology():
    topo = tiny_topology()
    with pytest.raises(ValueError, match="one channel count"):
        MeshDecoder(topo.spirals, topo.up, (4, 6), latent_channels=5)
    with pytest.raises(ValueError, match=r"up\[0\] has shape"):
        MeshDecoder(topo.spirals, (topo.up[1], topo.up[0]), (4, 6, 8), latent_channels=5)
    with pytest.raises(ValueError, match="needs regions"):
        MeshDecoder(topo.spirals, topo.up, (4, 6, 8), latent_channels=5, roi_spirals=topo.roi_spirals)
