import numpy as np
import onnx
import pytest
import torch

from m3dhmr.inference.onnx_export import PARITY_TOLERANCE, ExportWrapper, check_parity, export_onnx
from m3dhmr.inference.networks import OnnxNetwork
from m3dhmr.inference.predictor import Predictor
from m3dhmr.models import M3DHMR
from model_helpers import tiny_model_config, tiny_topology


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = M3DHMR(tiny_model_config(), tiny_topology()).eval()
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(model, path, opset=17)
    return model, path


def test_graph_has_dynamic_batch_and_named_io(exported):
    _, path = exported
    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    assert [i.name for i in m.graph.input] == ["images"]
    assert [o.name for o in m.graph.output] == ["vertices", "joints3d", "joints2d"]
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 64, 64]
    assert not any(p.name.startswith(".model.onnx.tmp") for p in path.parent.iterdir())


def test_onnxruntime_matches_pytorch(exported):
    model, path = exported
    report = check_parity(model, path, batch=2)
    assert set(report.max_abs_diff) == {"vertices", "joints3d", "joints2d"}
    assert report.worst <= PARITY_TOLERANCE, report
    # Other batch sizes run through the same graph.
    net = OnnxNetwork(path)
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = ExportWrapper(model)(x)
    out = net(x.numpy())
    for r, got in zip(ref, (out.vertices, out.joints3d, out.joints2d)):
        assert got.shape == tuple(r.shape)
        np.testing.assert_allclose(got, r.numpy(), atol=PARITY_TOLERANCE)


def test_predictor_backends_agree(exported):
    model, path = exported
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(50, 70, 3), dtype=np.uint8)
    a = Predictor.from_model(model, backend="torch").predict(img, [5, 5, 40, 40])
    b = Predictor.from_model(model, backend="onnxruntime", onnx_path=path).predict(img, [5, 5, 40, 40])
    np.testing.assert_allclose(b.joints2d, a.joints2d, atol=1e-3)  # crop px 1e-4 x box/crop scale
    np.testing.assert_allclose(b.vertices - b.translation, a.vertices - a.translation, atol=PARITY_TOLERANCE)
    assert b.success == a.success


def test_errors(exported, tmp_path):
    model, path = exported
    with pytest.raises(ValueError, match="opset >= 16"):
        export_onnx(model, tmp_path / "m.onnx", opset=13)
    with pytest.raises(FileNotFoundError, match="ONNX model not found"):
        OnnxNetwork(tmp_path / "nope.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.onnx.*cannot load"):
        OnnxNetwork(tmp_path / "junk.onnx")
    other = M3DHMR(tiny_model_config(input_size=96), tiny_topology())
    with pytest.raises(ValueError, match="ONNX input is 64 px but the checkpoint's model.input_size is 96"):
        Predictor.from_model(other, backend="onnxruntime", onnx_path=path)


# ----------------------------------------------------------------------------- m3dhmr export-onnx

@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_config, tmp_path_factory):
    from m3dhmr.models import build_model
    from m3dhmr.train import checkpoint as ck
    from m3dhmr.train.config import load_experiment

    cfg = load_experiment(tiny_config)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "last.safetensors"
    ck.save_weights(path, build_model(cfg.model), cfg, ck.Progress(global_step=1))
    return path


def _cli_error(capsys, *args) -> tuple[int, str]:
    from m3dhmr.cli import main

    rc = main(["export-onnx", *map(str, args)])
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    assert err.startswith("m3dhmr export-onnx: error: "), err
    return rc, err


@pytest.mark.parametrize("where", ["is_a_folder", "under_a_file"])
def test_cli_bad_out_is_one_line_before_loading(tiny_checkpoint, tmp_path, capsys, monkeypatch, where):
    from m3dhmr.train import checkpoint

    def forbidden(*a, **k):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(checkpoint, "load_model_from_checkpoint", forbidden)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    if where == "is_a_folder":
        out = tmp_path / "folder.onnx"
        out.mkdir()
        expected = "is a folder"
    else:
        out = blocker / "sub" / "m.onnx"
        expected = f"{blocker} is a file, not a folder"
    rc, err = _cli_error(capsys, tiny_checkpoint, "--out", out)
    assert rc == 2 and "--out" in err and expected in err
    assert blocker.read_text() == "a file"
    rc, err = _cli_error(capsys, tmp_path / "none.safetensors", "--out", tmp_path / "m.onnx")
    assert rc == 2 and "none.safetensors" in err


def test_cli_full_disk_is_one_line_and_leaves_nothing(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    import errno

    # Where torch's (TorchScript) exporter writes the file; private, so skip if it moved.
    onnx_proto_utils = pytest.importorskip("torch.onnx._internal.torchscript_exporter.onnx_proto_utils")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx_proto_utils, "_export_file", full)
    out = tmp_path / "o" / "m.onnx"
    rc, err = _cli_error(capsys, tiny_checkpoint, "--out", out)
    assert rc == 1 and "no space left on device" in err
    assert list(out.parent.iterdir()) == []  # no model, no temporary


# ----------------------------------------------------------------------------- m3dhmr bench (times this export)

@pytest.mark.parametrize("option, message", [
    (["--threads", "-3"], "--threads must be >= 1, got -3"),
    (["--seconds", "inf"], "--seconds must be a finite number > 0, got inf"),
    (["--seconds", "nan"], "--seconds must be a finite number > 0, got nan"),
    (["--image-size", "100000"], "--image-size must be in [16, 4096], got 100000"),
    (["--onnx", "missing.onnx"], "--onnx: file not found: missing.onnx"),
])
def test_bench_bad_options_are_one_line_before_building(capsys, monkeypatch, option, message):
    import m3dhmr.models
    from m3dhmr.cli import main

    def forbidden(*a, **k):
        raise AssertionError("the model was built before the options were checked")

    monkeypatch.setattr(m3dhmr.models, "build_model", forbidden)
    rc = main(["bench", *option])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip() == f"m3dhmr bench: error: {message}"
