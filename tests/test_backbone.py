from urllib.error import URLError

import pytest
import torch
from torchvision.models import resnet18

from m3dhmr.models import backbone as bb
from m3dhmr.models.backbone import StackResNet, soft_argmax


def small(**kw):
    return StackResNet("resnet18", stack_channels=8, stack2_channels=(8, 8, 16), latent_channels=12, **kw)


@pytest.mark.parametrize("batch", [1, 4])
def test_shapes(batch):
    net = small().eval()
    out = net(torch.rand(batch, 3, 64, 64))
    assert out.features.shape == (batch, 12, 16, 16)
    assert out.joints2d.shape == (batch, 21, 2)
    assert out.heatmaps2.shape == (batch, 21, 16, 16)
    assert out.stack1.heatmaps.shape == (batch, 21, 16, 16)
    assert out.stack1.joints2d.shape == (batch, 21, 2)
    s1 = net.forward_stack1(torch.rand(batch, 3, 64, 64))
    assert s1.features.shape == (batch, 8, 16, 16)


def test_soft_argmax_matches_naive_and_pixel_convention():
    hm = torch.randn(2, 3, 4, 5)
    out = soft_argmax(hm, stride=4.0, beta=2.0)
    for b in range(2):
        for j in range(3):
            p = torch.softmax(2.0 * hm[b, j].flatten(), 0).view(4, 5)
            x = sum(p[i, k] * ((k + 0.5) * 4 - 0.5) for i in range(4) for k in range(5))
            y = sum(p[i, k] * ((i + 0.5) * 4 - 0.5) for i in range(4) for k in range(5))
            torch.testing.assert_close(out[b, j], torch.stack([x, y]))
    # A sharp peak at cell (row 1, col 3) -> crop pixel (3.5*4-0.5, 1.5*4-0.5) = (13.5, 5.5).
    peak = torch.zeros(1, 1, 4, 5)
    peak[0, 0, 1, 3] = 100.0
    torch.testing.assert_close(soft_argmax(peak, 4.0, 1.0)[0, 0], torch.tensor([13.5, 5.5]))


def test_normalisation_inside_and_bad_input():
    net = small().eval()
    assert torch.allclose(net.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    # The network normalises its [0, 1] input itself: feeding the ImageNet mean colour is
    # feeding zeros to the stem, and changing the buffers changes the output.
    x = torch.rand(2, 3, 64, 64)
    mean_image = net.mean.expand(1, 3, 64, 64)
    with torch.no_grad():
        stem_in = []
        h = net.stem.register_forward_hook(lambda m, inp, out: stem_in.append(inp[0]))
        net.forward_stack1(mean_image)
        h.remove()
        assert torch.allclose(stem_in[0], torch.zeros_like(stem_in[0]), atol=1e-6)
        a = net.forward_stack1(x).heatmaps
        net.mean.add_(0.1)
        b = net.forward_stack1(x).heatmaps
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.rand(1, 3, 60, 64))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.rand(1, 1, 64, 64))


def test_pretrained_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*a, **k):
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ValueError) as info:
        small(pretrained=True)
    msg = str(info.value)
    # One line: which weights, that (and why) the download failed, and the two ways out.
    assert "\n" not in msg
    assert "resnet18 ImageNet weights (IMAGENET1K_V1) failed (no network)" in msg
    assert "model.pretrained_backbone: false" in msg
    assert f"{tmp_path / 'checkpoints'} as resnet18-f37072fd.pth" in msg


@pytest.mark.parametrize("error", [OSError(101, "Network is unreachable"), TimeoutError("timed out"),
                                   RuntimeError('invalid hash value (expected "f37072fd")')])
def test_pretrained_download_failures_are_one_line_value_errors(monkeypatch, tmp_path, error):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def fail(*a, **k):
        raise error

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)
    with pytest.raises(ValueError, match="downloading the resnet34 ImageNet weights .* failed") as info:
        bb.load_imagenet_state_dict("resnet34")
    assert "\n" not in str(info.value)


def test_pretrained_backbone_offline_through_the_cli_is_one_line(monkeypatch, tmp_path, capsys):
    """``model.pretrained_backbone: true`` on an offline machine: one error line, no traceback."""
    from m3dhmr.cli import main

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file",
                        lambda *a, **k: (_ for _ in ()).throw(URLError("no network")))
    cfg = tmp_path / "pretrained.yaml"
    cfg.write_text("model:\n  pretrained_backbone: true\n")
    rc = main(["bench", "--config", str(cfg), "--backend", "torch", "--seconds", "0.01", "--no-detection"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.strip().count("\n") == 0 and "no network" in err and "pretrained_backbone: false" in err


def test_pretrained_loads_from_hub_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    ref = resnet18(weights=None)
    path = bb.imagenet_weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), path)
    net = small(pretrained=True)
    torch.testing.assert_close(net.stem[0].weight, ref.conv1.weight)
    torch.testing.assert_close(net.layers[3][1].conv2.weight, ref.layer4[1].conv2.weight)


@pytest.mark.parametrize("name", ["resnet18", "resnet34"])
def test_a_narrow_encoder_is_torchvisions_layout_scaled(name):
    """Width 16: the same parameter names as torchvision's network, every channel count a
    quarter of it (the RGB input's 3 stays), and stages at strides 4..32."""
    wide = {k: v.shape for k, v in nn_state(*bb.resnet_encoder(name, 64)).items()}
    narrow = {k: v.shape for k, v in nn_state(*bb.resnet_encoder(name, 16)).items()}
    assert narrow.keys() == wide.keys()
    for key, shape in wide.items():
        if key.endswith("num_batches_tracked"):
            continue
        want = tuple(d if (key == "stem.0.weight" and i == 1) or i > 1 else d // 4 for i, d in enumerate(shape))
        assert tuple(narrow[key]) == want, key
    stem, layers = bb.resnet_encoder(name, 16)
    x = stem(torch.rand(2, 3, 64, 64))
    assert x.shape == (2, 16, 16, 16)
    for i, layer in enumerate(layers):
        x = layer(x)
        assert x.shape == (2, 16 * 2**i, 16 // 2**i, 16 // 2**i)


def nn_state(stem, layers):
    return torch.nn.ModuleDict({"stem": stem, "layers": layers}).state_dict()


def test_a_narrow_encoder_is_initialised_like_torchvisions():
    """Kaiming normal with fan-out for convolutions (std sqrt(2 / fan_out)), batch norms at 1 and 0."""
    torch.manual_seed(0)
    stem, layers = bb.resnet_encoder("resnet18", 16)
    w = layers[3][0].conv1.weight  # (128, 64, 3, 3): fan-out 128 * 9
    assert abs(w.std().item() / (2 / (128 * 9)) ** 0.5 - 1) < 0.05
    bn = layers[2][1].bn2
    assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(bn.bias, torch.zeros_like(bn.bias))


def test_a_narrow_backbone_runs_and_has_no_imagenet_weights():
    from m3dhmr.models.model_config import ModelConfig

    net = small(width=16).eval()
    out = net(torch.rand(1, 3, 64, 64))
    assert out.joints2d.shape == (1, 21, 2)
    wide = sum(p.numel() for p in small().parameters())
    assert sum(p.numel() for p in net.parameters()) < wide / 10
    with pytest.raises(ValueError, match="width 64 only, not 16"):
        small(width=16, pretrained=True)
    with pytest.raises(ValueError, match="model.pretrained_backbone: ImageNet weights exist for model.backbone_width"):
        ModelConfig(backbone_width=16, pretrained_backbone=True)
    with pytest.raises(ValueError, match="model.backbone_width: 0 must be >= 1"):
        ModelConfig(backbone_width=0)
