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
