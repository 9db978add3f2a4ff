import numpy as np
import pytest
import torch

from m3dhmr.models.roi import ROILayer, check_roi_spirals
from model_helpers import tiny_topology


def test_roi_neighbourhoods_never_cross_regions():
    topo = tiny_topology()
    check_roi_spirals(topo.roi_spirals, topo.regions)
    layer = ROILayer(4, topo.roi_spirals, topo.regions)
    # Perturbing one vertex changes outputs only inside its region.
    x = torch.rand(1, len(topo.regions), 4)
    base = layer(x)
    for v in (0, 40, 100):
        x2 = x.clone()
        x2[0, v] += 5.0
        changed = (layer(x2) - base).abs().sum(-1)[0] > 0
        assert changed[v]
        assert np.all(topo.regions[changed.numpy()] == topo.regions[v])


def test_crossing_spirals_are_rejected():
    regions = np.array([0, 0, 1, 1])
    good = np.array([[0, 1], [1, 0], [2, 3], [3, 2]])
    check_roi_spirals(good, regions)
    bad = good.copy()
    bad[1, 1] = 2
    with pytest.raises(ValueError, match="vertex 1 leave its region 0"):
        ROILayer(3, bad, regions)
    with pytest.raises(ValueError, match="disagree"):
        check_roi_spirals(good, regions[:3])


def test_roi_is_residual_and_matches_hand_computed_case():
    regions = np.array([0, 0])
    layer = ROILayer(1, np.array([[0, 1], [1, 0]]), regions)
    with torch.no_grad():
        layer.conv.layer.weight.copy_(torch.tensor([[1.0, -1.0]]))
        layer.conv.layer.bias.zero_()
    x = torch.tensor([[[2.0], [5.0]]])
    # relu(x + (x_v - x_other)): vertex 0 -> relu(2 - 3) = 0, vertex 1 -> relu(5 + 3) = 8
    torch.testing.assert_close(layer(x), torch.tensor([[[0.0], [8.0]]]))
