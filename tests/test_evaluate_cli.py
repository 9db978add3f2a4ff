"""``m3dhmr eval``: checkpoint -> pred.json + metrics.json, scoring a pred.json, clear input errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from m3dhmr.cli import main

SUMMARY_KEYS = {"pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15", "auc_pa_joints", "auc_pa_verts", "mpjpe_rr_mm",
                "root_error_mm", "num_samples"}


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_config, tmp_path_factory):
    """A checkpoint of the tiny model (freshly initialised: the plumbing, not the accuracy, is tested)."""
    from m3dhmr.models import build_model
    from m3dhmr.train import checkpoint as ck
    from m3dhmr.experiment import load_experiment

    cfg = load_experiment(tiny_config)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "last.safetensors"
    ck.save_weights(path, build_model(cfg.model), cfg, ck.Progress(global_step=1))
    return path


def test_crop_frame_ground_truth_maps_back_to_the_annotation(tiny_data):
    """Rotated training crops: (joints3d + root) in the crop frame, mapped back, is the annotation."""
    from m3dhmr.data.augment import AugmentConfig
    from m3dhmr.data.freihand import FreiHANDDataset

    ds = FreiHANDDataset(tiny_data, "training", crop_size=64, augment=AugmentConfig(rotation_deg=90.0), seed=1)
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    assert not torch.allclose(batch["rot"], torch.eye(3).expand(4, 3, 3))
    cam_crop = batch["joints3d"] + batch["root"][:, None]
    back = (cam_crop @ batch["rot"]).numpy()  # x_crop = rot @ x_orig, rows: x_orig = x_crop @ rot
    np.testing.assert_allclose(back, np.asarray(ds.ann.xyz)[batch["index"].numpy()], atol=1e-5)


def test_eval_checkpoint_writes_pred_and_metrics(tiny_checkpoint, tiny_data, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["eval", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_data), "--out", str(out),
               "--batch-size", "3", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    xyz, verts = json.loads((out / "pred.json").read_text())
    assert np.asarray(xyz).shape == (4, 21, 3)
    nv = np.asarray(json.loads((tiny_data / "evaluation_verts.json").read_text())).shape[1]
    assert np.asarray(verts).shape == (4, nv, 3)
    # Registered in front of the camera (an untrained model's outlier joints may not be).
    assert np.all(np.median(np.asarray(xyz)[:, :, 2], axis=1) > 0)
    metrics = json.loads((out / "metrics.json").read_text())
    assert SUMMARY_KEYS <= set(metrics) and metrics["num_samples"] == 4
    assert list(out.glob("*.csv"))
    # Scoring the written file again gives the same numbers.
    out2 = tmp_path / "rescored"
    assert main(["eval", "--pred", str(out / "pred.json"), "--data", str(tiny_data), "--out", str(out2)]) == 0
    again = json.loads((out2 / "metrics.json").read_text())
    for k in SUMMARY_KEYS:
        assert again[k] == pytest.approx(metrics[k], rel=1e-5, abs=1e-6)


def test_eval_scores_ground_truth_as_perfect(tiny_data, tmp_path):
    pred = tmp_path / "gt_pred.json"
    xyz = json.loads((tiny_data / "evaluation_xyz.json").read_text())
    verts = json.loads((tiny_data / "evaluation_verts.json").read_text())
    pred.write_text(json.dumps([xyz, verts]))
    assert main(["eval", "--pred", str(pred), "--data", str(tiny_data), "--out", str(tmp_path / "o")]) == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["pa_mpjpe_mm"] < 1e-2 and m["root_error_mm"] < 1e-2 and m["f5"] == pytest.approx(1.0)


def test_pred_file_with_wrong_sample_count(tiny_data, tmp_path, capsys):
    pred = tmp_path / "short.json"
    xyz = json.loads((tiny_data / "evaluation_xyz.json").read_text())[:3]
    verts = json.loads((tiny_data / "evaluation_verts.json").read_text())[:3]
    pred.write_text(json.dumps([xyz, verts]))
    rc = main(["eval", "--pred", str(pred), "--data", str(tiny_data), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "3" in err and "4" in err and "Traceback" not in err


def test_checkpoint_of_another_configuration(tiny_checkpoint, tiny_config, tiny_data, tmp_path, capsys):
    other = tmp_path / "other.yaml"
    other.write_text(tiny_config.read_text().replace("decoder_channels: [8, 8, 16, 16]",
                                                     "decoder_channels: [8, 8, 16, 32]"))
    rc = main(["eval", "--checkpoint", str(tiny_checkpoint), "--config", str(other), "--data", str(tiny_data),
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "does not match the model configuration" in err and "decoder" in err


def test_wrong_data_layout_and_missing_files(tiny_checkpoint, tmp_path, capsys):
    bad = tmp_path / "flat"
    bad.mkdir()
    (bad / "00000000.jpg").write_bytes(b"")
    rc = main(["eval", "--checkpoint", str(tiny_checkpoint), "--data", str(bad), "--out", str(tmp_path / "o")])
    assert rc == 2 and "evaluation_K.json" in capsys.readouterr().err
    rc = main(["eval", "--checkpoint", str(tmp_path / "none.safetensors"), "--data", str(bad),
               "--out", str(tmp_path / "o")])
    assert rc == 2 and "none.safetensors" in capsys.readouterr().err


def _gt_pred(tiny_data, path, scale_entry=None):
    """The ground truth as a pred.json; ``scale_entry=(list, sample, joint, axis, value)`` sets one coordinate."""
    xyz = json.loads((tiny_data / "evaluation_xyz.json").read_text())
    verts = json.loads((tiny_data / "evaluation_verts.json").read_text())
    if scale_entry is not None:
        which, i, j, k, value = scale_entry
        (xyz if which == "xyz" else verts)[i][j][k] = value
    path.write_text(json.dumps([xyz, verts]))
    return path


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    return err


def _no_model_loading(monkeypatch):
    """Loading a model fails the test: the checks under test must come first."""
    from m3dhmr import model_io

    def forbidden(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(model_io, "load_model_from_checkpoint", forbidden)


@pytest.mark.parametrize("which", ["xyz", "verts"])
def test_eval_pred_with_absurd_values_is_refused_and_writes_nothing(tiny_data, tmp_path, capsys, which):
    pred = _gt_pred(tiny_data, tmp_path / "huge.json", (which, 2, 5, 1, 1e300))
    out = tmp_path / "o"
    rc = main(["eval", "--pred", str(pred), "--data", str(tiny_data), "--out", str(out)])
    err = _one_line_error(capsys)
    assert rc == 2 and "huge.json" in err and f"{which}_list sample 2" in err and "1e+300" in err
    assert not (out / "metrics.json").exists()


def test_eval_metrics_json_is_strict_json(tiny_data, tmp_path):
    """Whatever is scored, metrics.json parses with a strict parser (no NaN / Infinity)."""
    pred = _gt_pred(tiny_data, tmp_path / "far.json", ("verts", 0, 0, 2, 99.0))  # far, but allowed
    assert main(["eval", "--pred", str(pred), "--data", str(tiny_data), "--out", str(tmp_path / "o")]) == 0

    def strict(token):
        raise AssertionError(f"non-standard JSON constant {token}")

    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text(), parse_constant=strict)
    assert metrics["num_samples"] == 4


@pytest.mark.parametrize("mode", ["pred", "checkpoint"])
@pytest.mark.parametrize("where", ["is_a_file", "under_a_file"])
def test_eval_bad_out_is_one_line_before_loading(tiny_checkpoint, tiny_data, tmp_path, capsys, monkeypatch,
                                                 mode, where):
    _no_model_loading(monkeypatch)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    out = blocker if where == "is_a_file" else blocker / "eval"
    source = (["--pred", str(_gt_pred(tiny_data, tmp_path / "p.json"))] if mode == "pred"
              else ["--checkpoint", str(tiny_checkpoint), "--device", "cpu"])
    rc = main(["eval", *source, "--data", str(tiny_data), "--out", str(out)])
    err = _one_line_error(capsys)
    assert rc == 2 and "--out" in err and "is a file, not a folder" in err
    assert blocker.read_text() == "a file"


@pytest.mark.parametrize("device, message", [("banana", "expected cpu, cuda or cuda:N, got 'banana'"),
                                             ("cuda", "no CUDA device is available"),
                                             ("cuda:0", "no CUDA device is available")])
def test_eval_bad_device_is_one_line_before_loading(tiny_checkpoint, tiny_data, tmp_path, capsys, monkeypatch,
                                                    device, message):
    _no_model_loading(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this machine may have a GPU
    out = tmp_path / "o"
    rc = main(["eval", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_data), "--out", str(out),
               "--device", device])
    err = _one_line_error(capsys)
    assert rc == 2 and "--device" in err and message in err
    assert not out.exists()  # nothing created either


def test_eval_pred_with_another_vertex_count_names_the_file(tiny_data, tmp_path, capsys):
    xyz = json.loads((tiny_data / "evaluation_xyz.json").read_text())
    verts = [v[:10] for v in json.loads((tiny_data / "evaluation_verts.json").read_text())]
    pred = tmp_path / "few_verts.json"
    pred.write_text(json.dumps([xyz, verts]))
    rc = main(["eval", "--pred", str(pred), "--data", str(tiny_data), "--out", str(tmp_path / "o")])
    err = _one_line_error(capsys)
    assert rc == 2 and "few_verts.json" in err and "10 vertices" in err


# ----------------------------------------------------------------------------- m3dhmr benchmark

def _no_benchmark_work(monkeypatch):
    from m3dhmr.evaluation import benchmark

    def forbidden(*a, **k):
        raise AssertionError("the benchmark was rendered or scored before the arguments were checked")

    monkeypatch.setattr(benchmark, "score_benchmark", forbidden)
    monkeypatch.setattr(benchmark, "ensure_benchmark", forbidden)


@pytest.mark.parametrize("device, message", [("banana", "expected cpu, cuda or cuda:N, got 'banana'"),
                                             ("cuda", "--device cuda: no CUDA device is available")])
def test_benchmark_bad_device_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, device, message):
    _no_benchmark_work(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    data = tmp_path / "bench"
    rc = main(["benchmark", "--data", str(data), "--num", "2", "--device", device])
    err = _one_line_error(capsys)
    assert rc == 2 and message in err and not data.exists()


@pytest.mark.parametrize("where", ["out_is_a_file", "out_under_a_file", "data_is_a_file", "default_out_under_a_file"])
def test_benchmark_bad_out_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, where):
    _no_benchmark_work(monkeypatch)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    data, out = tmp_path / "bench", None
    if where == "out_is_a_file":
        out = blocker
    elif where == "out_under_a_file":
        out = blocker / "scores"
    elif where == "data_is_a_file":
        data = blocker
    else:
        data = blocker / "bench"  # its default --out, DATA/scores, is under a file too
    rc = main(["benchmark", "--data", str(data), "--num", "2", "--device", "cpu",
               *(["--out", str(out)] if out is not None else [])])
    err = _one_line_error(capsys)
    assert rc == 2 and f"{blocker} is a file, not a folder" in err
    assert blocker.read_text() == "a file"


def test_benchmark_default_out_is_not_created_in_an_unrendered_data_folder(tmp_path, monkeypatch):
    """The rendering wants an empty --data folder: DATA/scores is only created once it is rendered."""
    from m3dhmr.commands.synth_benchmark import check_paths

    data = tmp_path / "bench"
    check_paths(data, None)
    assert not data.exists()
    check_paths(data, tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere").is_dir() and not data.exists()
    data.mkdir()
    (data / "synth_info.json").write_text("{}")
    check_paths(data, None)
    assert (data / "scores").is_dir()
