"""Packaged weights: manifest, shards, hashes and offline loading (tiny checkpoints), and the
model that ships with the package (its weights load offline and it recovers hands)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from m3dhmr import pretrained as pt
from m3dhmr.train.checkpoint import load_model_from_checkpoint


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_data, tiny_config, tmp_path_factory):
    from m3dhmr.train.config import load_experiment
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
