import numpy as np
import onnx
import pytest
import torch

from m3dhmr.errors import InputError
from m3dhmr.inference.onnx_export import (PARITY_TOLERANCE, ExportWrapper, check_parity, export_onnx,
                                          read_onnx_metadata, tensors_sha256, weights_sha256)
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


def _axes(value) -> list[tuple[str | int, str]]:
    """(dim_param or dim_value, denotation) of each axis of a graph input or output."""
    return [(d.dim_param or d.dim_value, d.denotation) for d in value.type.tensor_type.shape.dim]


def test_every_axis_is_named_and_only_batch_is_dynamic(exported):
    # The tracer alone called the vertex axis "Subvertices_dim_1" (a symbolic size).
    model, path = exported
    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    V = model.num_vertices
    assert {v.name: _axes(v) for v in [*m.graph.input, *m.graph.output]} == {
        "images": [("batch", "batch"), (3, "channels"), (64, "height"), (64, "width")],
        "vertices": [("batch", "batch"), (V, "vertices"), (3, "xyz")],
        "joints3d": [("batch", "batch"), (21, "joints"), (3, "xyz")],
        "joints2d": [("batch", "batch"), (21, "joints"), (2, "uv")],
    }
    assert [o.shape for o in OnnxNetwork(path).session.get_outputs()] == [["batch", V, 3], ["batch", 21, 3],
                                                                          ["batch", 21, 2]]


def test_metadata_describes_the_graph(exported):
    import m3dhmr
    from m3dhmr.conventions import JOINT_NAMES

    model, path = exported
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props and all(k.startswith("m3dhmr.") for k in props)
    meta = read_onnx_metadata(path)
    V = model.num_vertices
    assert {k: v for k, v in meta["input"].items() if k != "note"} == {
        "name": "images", "shape": ["batch", 3, 64, 64], "axes": ["batch", "channels", "height", "width"],
        "layout": "NCHW", "colour": "RGB", "dtype": "float32", "range": [0.0, 1.0]}
    assert meta["input_size"] == 64
    out = meta["outputs"]
    assert list(out) == ["vertices", "joints3d", "joints2d"]
    assert [out[k]["shape"] for k in out] == [["batch", V, 3], ["batch", 21, 3], ["batch", 21, 2]]
    assert [out[k]["units"] for k in out] == ["m", "m", "px"]
    for k in ("vertices", "joints3d"):
        assert "root-relative" in out[k]["frame"] and "x right, y down, z forward" in out[k]["frame"]
    assert "input crop" in out["joints2d"]["frame"]
    assert meta["joint_names"] == list(JOINT_NAMES) and meta["num_joints"] == 21
    assert meta["faces"] == model.faces.tolist() and meta["num_vertices"] == V and meta["hand"] == "right"
    assert meta["template"] == model.cfg.template
    assert meta["package_version"] == m3dhmr.__version__ and meta["opset"] == 17 and meta["format"] == 1
    assert meta["weights_sha256"] == weights_sha256(model)
    assert meta["precision"] == "fp32"  # an int8 file says "int8" (tests/test_quantize.py)
    assert "source" not in meta
    # The runtime reads the same dict from its session.
    assert OnnxNetwork(path).metadata == meta


def test_weights_hash():
    import hashlib

    t = torch.tensor([1.0, 2.0])
    ref = hashlib.sha256(b"w|torch.float32|(2,)|" + np.array([1.0, 2.0], np.float32).tobytes()).hexdigest()
    assert tensors_sha256([("w", t)]) == ref
    assert tensors_sha256([("b", t[:1]), ("a", t)]) == tensors_sha256([("a", t), ("b", t[:1])])  # name order
    assert tensors_sha256([("w", t.double())]) != ref and tensors_sha256([("v", t)]) != ref
    assert tensors_sha256([("w", torch.tensor(3.0, dtype=torch.bfloat16))])  # no numpy dtype: still hashed
    torch.manual_seed(1)
    a = M3DHMR(tiny_model_config(), tiny_topology())
    b = M3DHMR(tiny_model_config(), tiny_topology())
    b.load_state_dict(a.state_dict())
    assert weights_sha256(a) == weights_sha256(b)
    with torch.no_grad():
        next(b.parameters()).view(-1)[0] += 1e-3
    assert weights_sha256(a) != weights_sha256(b)


def test_file_without_metadata_still_runs(exported, tmp_path):
    model, path = exported
    m = onnx.load(str(path))
    del m.metadata_props[:]
    old = tmp_path / "old.onnx"
    onnx.save(m, str(old))
    assert read_onnx_metadata(old) == {}
    net = OnnxNetwork(old)
    assert net.metadata == {} and net.input_size == 64
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    np.testing.assert_allclose(net(x).vertices, OnnxNetwork(path)(x).vertices)
    Predictor.from_model(model, backend="onnxruntime", onnx_path=old)
    # Other tools' entries are not ours; a value that is not JSON comes back as text.
    m.metadata_props.add(key="author", value="someone")
    m.metadata_props.add(key="m3dhmr.note", value="not json")
    onnx.save(m, str(old))
    assert read_onnx_metadata(old) == {"note": "not json"}


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
    (a,) = Predictor.from_model(model, backend="torch").predict(img, crop_box=[5, 5, 40, 40])
    (b,) = Predictor.from_model(model, backend="onnxruntime", onnx_path=path).predict(img, crop_box=[5, 5, 40, 40])
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
    with pytest.raises(FileNotFoundError, match="ONNX model not found"):
        read_onnx_metadata(tmp_path / "nope.onnx")
    with pytest.raises(InputError, match="junk.onnx: not a readable ONNX file"):
        read_onnx_metadata(tmp_path / "junk.onnx")
    other = M3DHMR(tiny_model_config(input_size=96), tiny_topology())
    with pytest.raises(ValueError, match="ONNX input is 64 px but the checkpoint's model.input_size is 96"):
        Predictor.from_model(other, backend="onnxruntime", onnx_path=path)


# ----------------------------------------------------------------------------- m3dhmr export-onnx

@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_config, tmp_path_factory):
    from m3dhmr.models import build_model
    from m3dhmr.train import checkpoint as ck
    from m3dhmr.experiment import load_experiment

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
    from m3dhmr import model_io

    def forbidden(*a, **k):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(model_io, "load_model_from_checkpoint", forbidden)
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


# ----------------------------------------------------------------------------- export-onnx and the packaged model

@pytest.fixture
def no_loading(monkeypatch):
    from m3dhmr import model_io, pretrained

    def forbidden(*a, **k):
        raise AssertionError("a model was loaded for a CKPT that is refused")

    monkeypatch.setattr(pretrained, "load_pretrained", forbidden)
    monkeypatch.setattr(model_io, "load_model_from_checkpoint", forbidden)


def _packaged_shard() -> str:
    from m3dhmr.pretrained import read_manifest

    return read_manifest().files[0]["file"]


@pytest.mark.parametrize("ckpt, expected", [
    # Every way of naming the packaged model but its name failed with an unrelated error.
    ("{weights}/{name}.json", "is a file of the packaged model {name}, not a checkpoint; give its name ({name}) "
                              "or omit CKPT to export the packaged model {name}"),
    ("{weights}/{shard}", "is a file of the packaged model {name}, not a checkpoint; give its name ({name})"),
    ("{name}.json", "is a file of the packaged model {name}, not a checkpoint"),  # not here: named all the same
    ("{weights}", "is the packaged weights folder, not a checkpoint; give a packaged model name ({name}) "
                  "or omit CKPT"),
    ("{tmp}", "is a folder; expected a .safetensors checkpoint from m3dhmr train or a packaged model name "
              "({name}); omit CKPT to export the packaged model {name}"),
    ("{tmp}/other.json", "is a .json file; expected a .safetensors checkpoint"),
    ("{tmp}/none.safetensors", "checkpoint not found and not a packaged model name; expected a .safetensors "
                               "checkpoint from m3dhmr train or a packaged model name ({name})"),
    ("no_such_model", "checkpoint not found and not a packaged model name"),
])
def test_cli_refuses_what_is_not_a_checkpoint_or_a_name(tmp_path, capsys, no_loading, ckpt, expected):
    from m3dhmr.pretrained import DEFAULT_MODEL, WEIGHTS_DIR

    (tmp_path / "other.json").write_text("{}")
    fields = dict(weights=WEIGHTS_DIR, name=DEFAULT_MODEL, shard=_packaged_shard(), tmp=tmp_path)
    ckpt = ckpt.format(**fields)
    rc, err = _cli_error(capsys, ckpt, "--out", tmp_path / "m.onnx")
    assert rc == 2 and err.startswith(f"m3dhmr export-onnx: error: CKPT {ckpt}: {expected.format(**fields)}"), err
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("name_it", [False, True])
def test_cli_exports_the_packaged_model_without_ckpt_or_by_name(tmp_path, capsys, monkeypatch, name_it):
    from m3dhmr import pretrained
    from m3dhmr.cli import main

    loaded = []

    def tiny_pretrained(name=pretrained.DEFAULT_MODEL, device="cpu", weights_dir=None):
        loaded.append(name)
        torch.manual_seed(0)
        return M3DHMR(tiny_model_config(), tiny_topology()).eval(), None

    monkeypatch.setattr(pretrained, "load_pretrained", tiny_pretrained)
    out = tmp_path / "m.onnx"
    rc = main(["export-onnx", *([pretrained.DEFAULT_MODEL] if name_it else []), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert loaded == [pretrained.DEFAULT_MODEL]
    assert float(captured.out.split("max_abs_diff=")[1].split()[0]) <= PARITY_TOLERANCE
    assert read_onnx_metadata(out)["source"] == pretrained.DEFAULT_MODEL


def test_cli_records_the_checkpoint_name(tiny_checkpoint, tmp_path, capsys):
    from m3dhmr.cli import main

    out = tmp_path / "m.onnx"
    assert main(["export-onnx", str(tiny_checkpoint), "--out", str(out)]) == 0, capsys.readouterr().err
    meta = read_onnx_metadata(out)
    assert meta["source"] == tiny_checkpoint.name and meta["input_size"] == 64  # the file's name, not its folder


@pytest.mark.slow
def test_cli_exports_the_real_packaged_model(tmp_path, capsys, monkeypatch):
    from m3dhmr.cli import main
    from m3dhmr.pretrained import DEFAULT_MODEL, read_pretrained_tensors

    monkeypatch.setenv("M3DHMR_CACHE_DIR", str(tmp_path / "cache"))  # its topology is built here
    out = tmp_path / "packaged.onnx"
    rc = main(["export-onnx", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert float(captured.out.split("max_abs_diff=")[1].split()[0]) <= PARITY_TOLERANCE
    meta = read_onnx_metadata(out)
    assert meta["source"] == DEFAULT_MODEL and meta["template"] == "open_hand"
    # The hash identifies the packaged weights without building the model.
    assert meta["weights_sha256"] == tensors_sha256(read_pretrained_tensors(DEFAULT_MODEL)[0].items())
    assert len(meta["faces"]) > 1000 and meta["outputs"]["vertices"]["shape"] == ["batch", meta["num_vertices"], 3]


# ----------------------------------------------------------------------------- m3dhmr bench (times this export)
