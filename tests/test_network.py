import pytest
import torch

from m3dhmr.conventions import VERTEX_NORMALISATION_M
from m3dhmr.models import ModelConfig, build_model
from model_helpers import tiny_model_config, tiny_topology

TOPO = tiny_topology()


@pytest.mark.parametrize(
    "overrides",
    [dict(), dict(roi=False), dict(conv="spiral", roi=False), dict(conv="spiral"), dict(conv="dsconv", roi=False),
     dict(dsc_kernels=1), dict(backbone="resnet34")],
    ids=["m3dhmr", "wo_roi", "baseline", "wo_dsc", "dsconv", "k1", "r34"],
)
def test_every_parameter_gets_a_gradient(overrides):
    torch.manual_seed(0)
    model = build_model(tiny_model_config(**overrides), TOPO)
    out = model(torch.rand(2, 3, 64, 64))
    loss = out.vertices.square().mean() + out.joints2d.mean() + out.heatmaps.square().mean() + out.joints2d_stack1.mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    for value in (out.vertices, out.joints3d, out.joints2d, out.heatmaps):
        assert torch.isfinite(value).all()


@pytest.mark.parametrize("batch", [1, 4])
def test_output_shapes_and_units(batch):
    model = build_model(tiny_model_config(), TOPO).eval()
    with torch.no_grad():
        out = model(torch.rand(batch, 3, 64, 64))
        raw = model.decoder(*(lambda o: (o.features, o.joints2d))(model.backbone(torch.rand(1, 3, 64, 64))))
    assert out.vertices.shape == (batch, 162, 3)
    assert out.joints3d.shape == (batch, 21, 3)
    assert out.joints2d.shape == (batch, 21, 2) and out.joints2d_stack1.shape == (batch, 21, 2)
    assert out.heatmaps.shape == (batch, 21, 16, 16)
    assert out.image_size == (64, 64)
    assert model.faces.shape == (320, 3) and model.faces.dtype == torch.int64
    # root-relative: the regressed wrist is at the origin; joints = regressor @ vertices
    torch.testing.assert_close(out.joints3d[:, 0], torch.zeros(batch, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.joints3d, model.joint_regressor @ out.vertices)
    assert raw.shape == (1, 162, 3)


def test_metres_are_decoder_output_plus_rest_times_normalisation():
    model = build_model(tiny_model_config(roi=False), TOPO).eval()
    x = torch.rand(1, 3, 64, 64)
    rest = torch.as_tensor(TOPO.vertices[0], dtype=torch.float32)
    rest_rr = (rest - model.joint_regressor[0] @ rest) / VERTEX_NORMALISATION_M
    torch.testing.assert_close(model.rest_vertices, rest_rr)
    with torch.no_grad():
        bo = model.backbone(x)
        raw = (model.decoder(bo.features, bo.joints2d) + rest_rr) * VERTEX_NORMALISATION_M
        expected = raw - (model.joint_regressor[0] @ raw).unsqueeze(1)
        torch.testing.assert_close(model(x).vertices, expected)


def test_stack1_forward():
    model = build_model(tiny_model_config(), TOPO)
    s1 = model.forward_stack1(torch.rand(3, 3, 64, 64))
    assert s1.heatmaps.shape == (3, 21, 16, 16) and s1.joints2d.shape == (3, 21, 2)


def test_topology_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="3 mesh levels but model.levels is 4"):
        build_model(ModelConfig(input_size=64), TOPO)


def test_real_topology_builder_feeds_the_network(tmp_path):
    from m3dhmr import mesh
    import trimesh
    import numpy as np

    sphere = trimesh.creation.icosphere(subdivisions=3)
    v = np.asarray(sphere.vertices)
    jreg = np.zeros((21, len(v)))
    for j in range(21):
        jreg[j, [j, j + 30, j + 60]] = 1 / 3
    regions = np.minimum(((np.arctan2(v[:, 1], v[:, 0]) + np.pi) / (2 * np.pi) * 6).astype(int), 5)
    cfg = tiny_model_config()
    from m3dhmr.models.network import topology_params

    topo = mesh.build_topology(v, np.asarray(sphere.faces), jreg, topology_params(cfg), regions=regions)
    model = build_model(cfg, topo)
    out = model(torch.rand(1, 3, 64, 64))
    assert out.vertices.shape == (1, len(v), 3) and torch.isfinite(out.vertices).all()


def test_zero_decoder_output_gives_the_rest_template():
    # The decoder predicts offsets from the rest hand: a zeroed head returns the template
    # (root-relative), so training never starts from a collapsed mesh.
    model = build_model(tiny_model_config(roi=False), TOPO).eval()
    with torch.no_grad():
        for p in model.decoder.head.parameters():
            p.zero_()
        v = model(torch.rand(2, 3, 64, 64)).vertices
    rest = torch.as_tensor(TOPO.vertices[0], dtype=torch.float32)
    expected = rest - model.joint_regressor[0] @ rest
    torch.testing.assert_close(v, expected.expand(2, -1, -1), atol=1e-6, rtol=1e-5)
