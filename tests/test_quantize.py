"""The int8 network (m3dhmr.inference.quantize): export, inference, agreement with fp32,
the cache, and the precision choice on the API and the command lines.

A tiny random-weight model (64-px crops) calibrated on 8 synthetic crops keeps each
quantisation to a few seconds; conftest.py points M3DHMR_CACHE_DIR at a temporary folder.
"""

import types

import cv2
import numpy as np
import onnx
import pytest
import torch

from m3dhmr.errors import InputError
from m3dhmr.inference import quantize
from m3dhmr.inference.networks import OnnxNetwork
from m3dhmr.inference.onnx_export import export_onnx, onnx_cache_dir, onnx_cache_key, read_onnx_metadata
from m3dhmr.inference.predictor import Predictor
from m3dhmr.models import M3DHMR
from model_helpers import tiny_model_config, tiny_topology

#: Bounds of int8 against fp32 on the fixed crops below. 8-bit activations step by ~0.4 %
#: of each tensor's calibrated range and the 7-bit weights by ~0.8 % of each channel's
#: largest weight; through the ~20 quantised layers in series these add up to ~0.1 % of
#: the outputs' range on this model (measured: max |d vertices| 0.07 % of max |vertices|,
#: mean 2D-joint distance 0.12 px of 64). The bounds leave ~10x (3D) and ~4x (2D) margin
#: and still catch a broken quantisation: without reduce_range (int16 saturation on AVX2)
#: the packaged model's errors grew ~7x, a wrong scale gives errors of the outputs' size.
RELATIVE_3D_BOUND = 0.01
MEAN_2D_BOUND_PX = 0.5
SMALL = quantize.CalibrationRecipe(synthetic=8)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return M3DHMR(tiny_model_config(), tiny_topology()).eval()


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("int8")
    fp32 = export_onnx(tiny, folder / "fp32.onnx")
    images = quantize.synthetic_inputs(8, 64, seed=0)
    int8 = quantize.quantize_onnx(fp32, folder / "int8.onnx", images, SMALL)
    return fp32, int8


@pytest.fixture
def small_recipe(monkeypatch):
    """The default recipe made small: what Predictor and export-onnx calibrate on here."""
    monkeypatch.setattr(quantize, "DEFAULT_RECIPE", SMALL)


def test_int8_file_has_the_fp32_interface_and_says_what_it_is(tiny, exported):
    fp32, int8 = exported
    a, b = onnx.load(str(fp32)), onnx.load(str(int8))
    onnx.checker.check_model(b)
    io = lambda m: [(v.name, [(d.dim_param or d.dim_value, d.denotation) for d in v.type.tensor_type.shape.dim])
                    for v in [*m.graph.input, *m.graph.output]]
    assert io(b) == io(a)
    ops = {n.op_type for n in b.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    meta, meta32 = read_onnx_metadata(int8), read_onnx_metadata(fp32)
    assert meta32["precision"] == "fp32" and meta["precision"] == "int8"
    assert {k: v for k, v in meta.items() if k not in ("precision", "quantization")} == \
        {k: v for k, v in meta32.items() if k != "precision"}
    q = meta["quantization"]
    assert q["format"] == "QDQ" and q["per_channel"] and q["reduce_range"] and q["calibration_images"] == 8
    assert q["calibration"] == SMALL.to_json() and q["int8_nodes"] > 0
    assert OnnxNetwork(int8).precision == "int8" and OnnxNetwork(fp32).precision == "fp32"


def _int8_nodes_naive(proto) -> list[str]:
    out = []
    for n in proto.graph.node:
        if n.op_type not in ("Conv", "Add", "Relu", "MaxPool") or not n.name.startswith("/model/backbone/"):
            continue
        part = n.name.split("/")[3]
        if part in ("latent", "reinject_heatmaps") or part.startswith("heatmap"):
            continue
        out.append(n.name)
    return out


def test_int8_nodes_keep_the_stem_heads_and_decoder_in_fp32(exported):
    proto = onnx.load(str(exported[0]))
    nodes = quantize.int8_nodes(proto)
    assert nodes == _int8_nodes_naive(proto) and nodes
    assert not any(n.startswith("/model/decoder") or "heatmap" in n or "/latent/" in n for n in nodes)
    # Hand-made graph: what the patterns select.
    g = types.SimpleNamespace(graph=types.SimpleNamespace(node=[
        types.SimpleNamespace(name=name, op_type=op) for name, op in [
            ("/model/backbone/latent/Conv", "Conv"), ("/model/backbone/layers.0/conv1/Conv", "Conv"),
            ("/model/backbone/layers.0/Add", "Add"), ("/model/backbone/heatmap2/Conv", "Conv"),
            ("/model/backbone/layers.0/Gather", "Gather"), ("/model/decoder/head/Conv", "Conv")]]))
    assert quantize.int8_nodes(g) == ["/model/backbone/layers.0/conv1/Conv", "/model/backbone/layers.0/Add"]


def test_int8_outputs_stay_near_fp32_on_fixed_inputs(tiny, exported):
    fp32, int8 = exported
    x = quantize.synthetic_inputs(8, 64, seed=quantize.CHECK_SEED)  # not the calibration crops
    a, b = OnnxNetwork(fp32)(x), OnnxNetwork(int8)(x)
    for name in ("vertices", "joints3d"):
        ref, got = getattr(a, name), getattr(b, name)
        assert np.abs(got - ref).max() <= RELATIVE_3D_BOUND * np.abs(ref).max(), name
    assert np.linalg.norm(b.joints2d - a.joints2d, axis=-1).mean() <= MEAN_2D_BOUND_PX
    report = quantize.check_int8(tiny, int8)
    assert report.num == 8 and report.mean_joints2d_px <= MEAN_2D_BOUND_PX <= quantize.INT8_TOLERANCE_PX
    # Quantised, not a copy: the outputs differ a little.
    assert np.abs(b.vertices - a.vertices).max() > 0


def test_predictor_runs_int8_from_the_cache_once(tiny, small_recipe, monkeypatch):
    img = np.random.default_rng(0).integers(0, 256, size=(80, 90, 3), dtype=np.uint8)
    p = Predictor.from_model(tiny, backend="onnxruntime", precision="int8")
    assert p.network.precision == "int8"
    key = quantize.int8_cache_key(tiny, 17)
    path = onnx_cache_dir() / f"{key[:32]}.onnx"
    assert read_onnx_metadata(path)["cache_key"] == key and key != onnx_cache_key(tiny, 17)
    assert quantize.int8_cache_key(tiny, 17, quantize.CalibrationRecipe(synthetic=9)) != key
    (r,) = p.predict(img, crop_box=[5, 5, 60, 60])
    (r32,) = Predictor.from_model(tiny, backend="onnxruntime").predict(img, crop_box=[5, 5, 60, 60])
    assert np.isfinite(r.vertices).all()
    assert np.linalg.norm(r.joints2d - r32.joints2d, axis=-1).mean() <= MEAN_2D_BOUND_PX * 60 / 64 * 4

    def forbidden(*a, **k):
        raise AssertionError("quantised again despite the cached file")

    monkeypatch.setattr(quantize, "quantize_onnx", forbidden)
    assert Predictor.from_model(tiny, backend="onnxruntime", precision="int8").network.precision == "int8"


def test_precision_delta_compares_on_the_same_images(tiny, small_recipe):
    from m3dhmr.inference.speed import format_precision_delta, precision_delta

    fp32 = Predictor.from_model(tiny, backend="onnxruntime")
    int8 = Predictor.from_model(tiny, backend="onnxruntime", precision="int8")
    d = precision_delta(fp32, int8, num=2)
    assert d.num_synthetic == 2 and d.num_photos == 0 and d.err2d_source == "synthetic"
    assert d.delta_pa_mpjpe_mm == pytest.approx(d.pa_mpjpe_mm["int8"] - d.pa_mpjpe_mm["fp32"])
    assert abs(d.delta_err2d_px) <= d.diff2d_px + 1e-9  # the triangle inequality, per joint and in the mean
    same = precision_delta(fp32, fp32, num=2)
    assert same.diff2d_px == 0 and same.delta_pa_mpjpe_mm == 0
    lines = format_precision_delta(d)
    assert lines[0].startswith("# ") and lines[-1].startswith("int8_delta_err2d_px=")
    assert any(line.startswith("int8_delta_pa_mpjpe_mm=") for line in lines)


# ----------------------------------------------------------------------------- the precision choice

def test_api_refuses_unknown_precision_and_int8_without_onnxruntime(tiny, exported, tmp_path):
    for bad in ("int4", "INT8", "", None):
        with pytest.raises(InputError, match=r"--precision must be one of fp32, int8, got") as e:
            Predictor.from_model(tiny, backend="onnxruntime", precision=bad)
        assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="precision must be one of fp32, int8, got 'x'"):
        quantize.check_precision("x")
    with pytest.raises(InputError, match="int8 runs with ONNX Runtime only: use --backend onnxruntime"):
        Predictor.from_model(tiny, precision="int8")
    with pytest.raises(InputError, match="int8 runs on the cpu"):
        quantize.check_runtime_precision("int8", "onnxruntime", "cuda")
    with pytest.raises(InputError, match="int8 runs with ONNX Runtime only"):
        Predictor.from_pretrained(precision="int8")  # before any loading
    with pytest.raises(InputError, match="int8 runs with ONNX Runtime only"):
        Predictor.from_checkpoint(tmp_path / "none.safetensors", precision="int8")
    fp32, int8 = exported
    with pytest.raises(InputError, match="fp32.onnx: is a fp32 model, not int8"):
        Predictor.from_model(tiny, backend="onnxruntime", onnx_path=fp32, precision="int8")
    with pytest.raises(InputError, match="int8.onnx: is a int8 model, not fp32"):
        Predictor.from_model(tiny, backend="onnxruntime", onnx_path=int8)
    assert Predictor.from_model(tiny, backend="onnxruntime", onnx_path=int8, precision="int8").network.precision \
        == "int8"
    with pytest.raises(InputError, match="is a int8 model; quantise the fp32 export"):
        quantize.quantize_onnx(int8, tmp_path / "again.onnx", np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(InputError, match=r"calibration images must have shape \(N, 3, S, S\)"):
        quantize.quantize_onnx(fp32, tmp_path / "x.onnx", np.zeros((0, 3, 64, 64), np.float32))
    with pytest.raises(InputError, match="needs synthetic crops or photos"):
        quantize.CalibrationRecipe(synthetic=0)


def _cli(capsys, *args) -> tuple[int, str, str]:
    from m3dhmr.cli import main

    rc = main([*map(str, args)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.fixture
def no_loading(monkeypatch):
    from m3dhmr import model_io, pretrained

    def forbidden(*a, **k):
        raise AssertionError("a model was loaded for a refused option")

    monkeypatch.setattr(pretrained, "load_pretrained", forbidden)
    monkeypatch.setattr(model_io, "load_model_from_checkpoint", forbidden)


@pytest.mark.parametrize("args, message", [
    (["--precision", "int4"], "--precision must be one of fp32, int8, got 'int4'"),
    (["--precision", "fp32", "--calibration-photos", "."], "--calibration-photos needs --precision int8"),
    (["--precision", "int8", "--calibration-photos", "no_such_dir"],
     "--calibration-photos no_such_dir: no such folder"),
])
def test_export_onnx_cli_refuses_bad_precision_options(tmp_path, capsys, no_loading, args, message):
    rc, _, err = _cli(capsys, "export-onnx", "--out", tmp_path / "m.onnx", *args)
    assert rc == 2 and err.strip() == f"m3dhmr export-onnx: error: {message}"


def test_export_onnx_cli_writes_int8(tmp_path, capsys, monkeypatch, small_recipe, tiny):
    from m3dhmr import pretrained

    monkeypatch.setattr(pretrained, "load_pretrained", lambda name, device="cpu", weights_dir=None: (tiny, None))
    out = tmp_path / "m8.onnx"
    rc, stdout, err = _cli(capsys, "export-onnx", "--out", out, "--precision", "int8")
    assert rc == 0, err
    assert float(stdout.split("mean_diff_joints2d_px=")[1].split()[0]) <= MEAN_2D_BOUND_PX
    meta = read_onnx_metadata(out)
    assert meta["precision"] == "int8" and meta["source"] == pretrained.DEFAULT_MODEL
    assert meta["quantization"]["calibration"] == SMALL.to_json()


def test_predict_cli_precision(tmp_path, capsys, no_loading):
    img = tmp_path / "hand.png"
    cv2.imwrite(str(img), np.full((64, 64, 3), 128, np.uint8))
    with pytest.raises(SystemExit) as e:
        _cli(capsys, "predict", img, "--out", tmp_path / "o", "--precision", "int4")
    err = capsys.readouterr().err
    assert e.value.code == 2 and "argument --precision: invalid choice: 'int4'" in err.strip().splitlines()[-1]
    rc, _, err = _cli(capsys, "predict", img, "--out", tmp_path / "o2", "--precision", "int8")
    assert rc == 2 and err.strip().count("\n") == 0
    assert "--precision int8 runs with ONNX Runtime only: use --backend onnxruntime" in err
