import pytest
import scipy.sparse as sp
import torch

from m3dhmr.models.decoder import MeshDecoder, Upsample, padded_sparse, sample_features
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


def test_sample_features_pixel_convention():
    # A 4x4 feature map at stride 4 covers a 16x16 crop; cell (i, j) centre = 4j + 1.5.
    f = torch.arange(16.0).view(1, 1, 4, 4)
    pts = torch.tensor([[[1.5, 1.5], [5.5, 9.5], [3.5, 1.5], [-10.0, 100.0]]])
    out = sample_features(f, pts, stride=4.0)
    # centre of (0,0) -> 0; centre of (2,1) -> 9; halfway between (0,0) and (0,1) -> 0.5;
    # outside -> border value of (3,0) = 12.
    torch.testing.assert_close(out[0, :, 0], torch.tensor([0.0, 9.0, 0.5, 12.0]))


def test_sample_features_matches_naive_bilinear():
    f = torch.randn(2, 3, 5, 6)
    pts = torch.rand(2, 4, 2) * torch.tensor([6 * 4 - 1.0, 5 * 4 - 1.0])
    out = sample_features(f, pts, stride=4.0)
    for b in range(2):
        for j in range(4):
            # cell coordinates, centres at integers
            cx, cy = (pts[b, j, 0] + 0.5) / 4 - 0.5, (pts[b, j, 1] + 0.5) / 4 - 0.5
            cx, cy = cx.clamp(0, 5), cy.clamp(0, 4)
            x0, y0 = int(cx.floor().clamp(max=4)), int(cy.floor().clamp(max=3))
            ax, ay = cx - x0, cy - y0
            ref = ((1 - ax) * (1 - ay) * f[b, :, y0, x0] + ax * (1 - ay) * f[b, :, y0, x0 + 1]
                   + (1 - ax) * ay * f[b, :, y0 + 1, x0] + ax * ay * f[b, :, y0 + 1, x0 + 1])
            torch.testing.assert_close(out[b, j], ref)


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
