"""Packaged weights: manifest, shards, hashes and offline loading (tiny checkpoints), and the
model that ships with the package (its weights load offline and it recovers hands)."""

from __future__ import annotations

import json

import pytest
import torch

from m3dhmr import pretrained as pt
from m3dhmr.model_io import load_model_from_checkpoint


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_data, tiny_config, tmp_path_factory):
    from m3dhmr.experiment import load_experiment
    from m3dhmr.train.trainer import train

    run = tmp_path_factory.mktemp("pt") / "run"
    train(load_experiment(tiny_config), tiny_data, run, max_steps=1, progress_bar=False)
    return run / "checkpoints" / "last.safetensors"


@pytest.fixture()
def packaged(tiny_checkpoint, tmp_path):
    path = pt.package_weights(tiny_checkpoint, "tiny", tmp_path, metadata={"note": "test"}, shard_bytes=200_000)
    return tmp_path, path


def test_package_shards_and_round_trip(tiny_checkpoint, packaged):
    folder, manifest = packaged
    info = pt.read_manifest("tiny", folder)
    assert len(info.files) > 1 and info.metadata["note"] == "test" and info.dtype == "float16"
    for f in info.files:
        size = (folder / f["file"]).stat().st_size
        assert size == f["bytes"] and len(f["sha256"]) == 64
    assert pt.available_models(folder) == ["tiny"]
    model, cfg = pt.load_pretrained("tiny", weights_dir=folder)
    ref, ref_cfg = load_model_from_checkpoint(tiny_checkpoint)
    assert cfg == ref_cfg
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = model(x), ref(x)
    # float16 storage: the mesh moves by far less than a millimetre.
    assert float((a.vertices - b.vertices).abs().max()) < 1e-3
    assert float((a.joints2d - b.joints2d).abs().max()) < 0.5


def test_repackaging_removes_stale_shards(tiny_checkpoint, packaged):
    folder, _ = packaged
    before = len(list(folder.glob("tiny-*.safetensors")))
    pt.package_weights(tiny_checkpoint, "tiny", folder)  # 15 MiB shards: fewer files
    files = sorted(p.name for p in folder.glob("tiny-*.safetensors"))
    assert files == sorted(f["file"] for f in pt.read_manifest("tiny", folder).files) and len(files) < before
    assert all((folder / f).stat().st_size <= pt.SHARD_BYTES for f in files)
    pt.load_pretrained("tiny", weights_dir=folder)


def test_corrupt_missing_and_unknown_weights_are_clear(packaged):
    folder, manifest = packaged
    info = pt.read_manifest("tiny", folder)
    first = folder / info.files[0]["file"]
    data = bytearray(first.read_bytes())
    data[-1] ^= 0xFF
    first.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        pt.load_pretrained("tiny", weights_dir=folder)
    first.unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        pt.load_pretrained("tiny", weights_dir=folder)
    with pytest.raises(FileNotFoundError, match="no packaged model 'nope'"):
        pt.load_pretrained("nope", weights_dir=folder)
    manifest.write_text(json.dumps({"format": 1, "name": "tiny"}))
    with pytest.raises(ValueError, match="not a valid m3dhmr weights manifest"):
        pt.read_manifest("tiny", folder)


def test_package_rejects_a_foreign_file(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="not an m3dhmr checkpoint"):
        pt.package_weights(tmp_path / "x.safetensors", "x", tmp_path / "out")


# ----------------------------------------------------------------------------- the shipped model


@pytest.fixture(scope="module")
def benchmark_subset(tmp_path_factory):
    """The first 48 images of the synthetic benchmark (seed 7, no training set uses it)."""
    from m3dhmr.evaluation.benchmark import BENCHMARK_SEED
    from m3dhmr.data.synth import generate

    from conftest import PACKAGED_MODEL_LOOK

    # Rendered with generator version 4's realism off (conftest.PACKAGED_MODEL_LOOK): this
    # test pins the weights on clear hands, not the hard cases.
    return generate(tmp_path_factory.mktemp("bench") / "data", 0, 48, seed=BENCHMARK_SEED, workers=1,
                    config=PACKAGED_MODEL_LOOK, progress=False)


def test_the_packaged_model_loads_offline_and_recovers_hands(benchmark_subset):
    """Not a smoke test: a missing, corrupt or untrained weight file fails the bound."""
    import dataclasses

    import numpy as np

    from m3dhmr.data.freihand import FreiHANDDataset
    from m3dhmr.evaluation.scoring import constant_prediction, mean_pose_prediction, score_predictions
    from m3dhmr.hand import load_template
    from m3dhmr.evaluation.predict_split import predict_split

    info = pt.read_manifest()
    assert info.name == pt.DEFAULT_MODEL and info.licence == "Apache-2.0"
    model, cfg = pt.load_pretrained()
    assert (cfg.model.backbone, cfg.model.input_size, cfg.model.conv, cfg.model.dsc_kernels, cfg.model.roi) == \
        ("resnet18", 128, "dsc", 8, True)  # M3DHMR-R18 as the paper builds it
    ds = FreiHANDDataset(benchmark_subset, "evaluation", crop_size=128,
                         augment=dataclasses.replace(cfg.data.augment, enabled=False), num_vertices=model.num_vertices)
    pred = predict_split(model, ds, batch_size=16)
    s = score_predictions(pred.xyz, pred.verts, benchmark_subset, "evaluation").summary
    ann = ds.ann
    mean = score_predictions(*mean_pose_prediction(np.asarray(ann.xyz), np.asarray(ann.verts), np.asarray(ann.xyz)),
                             benchmark_subset, "evaluation").summary
    t = load_template("open_hand")
    rest = score_predictions(*constant_prediction(t.vertices, t.joint_regressor, np.asarray(ann.xyz)),
                             benchmark_subset, "evaluation").summary
    # Measured on these 48 images: PA-MPJPE 9.0 mm, F@15 0.972, root-relative MPJPE 22.6 mm
    # (rest hand 9.2 / 0.944 / 152 mm, mean pose 19.2 mm PA-MPJPE; on all 1,000 images the
    # model scores 7.95 against the rest hand's 10.46: docs/MODEL_CARD.md).
    assert s["pa_mpjpe_mm"] < 12.0 and s["pa_mpjpe_mm"] < 0.6 * mean["pa_mpjpe_mm"], (s, mean)
    assert s["f15"] > 0.95 and s["f15"] > rest["f15"], (s, rest)
    # The orientation and pose of each hand, which no constant knows.
    assert s["mpjpe_rr_mm"] < 0.25 * rest["mpjpe_rr_mm"], (s, rest)
    assert pred.success.mean() >= 0.9


def test_cli_runs_the_packaged_model_without_a_checkpoint(benchmark_subset, tmp_path, capsys):
    from m3dhmr.cli import main

    img = benchmark_subset / "evaluation" / "rgb" / "00000003.jpg"
    assert main(["predict", str(img), "--out", str(tmp_path / "p"), "--bbox", "40,40,140,140"]) == 0
    res = json.loads((tmp_path / "p" / "00000003" / "result.json").read_text())["hands"][0]
    assert len(res["vertices"]) == 900 and res["success"]
    assert main(["eval", "--data", str(benchmark_subset), "--out", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    assert "packaged model" in out and (tmp_path / "e" / "metrics.json").is_file()


def test_predictor_from_pretrained_uses_the_training_crop_scale():
    from m3dhmr.inference.crops import training_crop_scales
    from m3dhmr.inference.predictor import Predictor

    p = Predictor.from_pretrained()
    _, cfg = pt.load_pretrained()
    margin, box_scale = training_crop_scales(cfg.data.augment)
    assert p.track_margin == pytest.approx(margin) and p.box_scale == pytest.approx(box_scale)
    assert 1.4 < margin < 1.7  # the tight crops of configs/synthetic_r18.yaml


def test_shards_are_readable_by_everyone(packaged):
    import os
    import stat

    folder, _ = packaged
    for f in pt.read_manifest("tiny", folder).files:
        mode = os.stat(folder / f["file"]).st_mode
        assert mode & stat.S_IROTH, oct(mode)
