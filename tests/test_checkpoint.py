"""Checkpoint files: safetensors weights + metadata, weights_only training state, RNG, config checks."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from m3dhmr.config_loader import from_dict
from m3dhmr.train import checkpoint as ck
from m3dhmr.experiment import ExperimentConfig

TINY_MODEL = {"input_size": 64, "stack_channels": 16, "stack2_channels": [16, 16, 32], "latent_channels": 32,
              "decoder_channels": [8, 8, 16, 16], "dsc_kernels": 2}


def tiny_experiment(**model) -> ExperimentConfig:
    return from_dict(ExperimentConfig, {"model": {**TINY_MODEL, **model}, "train": {"batch_size": 2}})


class Net(torch.nn.Module):
    def __init__(self, hidden: int = 3) -> None:
        super().__init__()
        self.a = torch.nn.Linear(2, hidden)
        self.bn = torch.nn.BatchNorm1d(hidden)
        self.b = torch.nn.Linear(hidden, 1)


def test_weights_round_trip_with_metadata(tmp_path):
    torch.manual_seed(0)
    net, cfg = Net(), tiny_experiment()
    path = tmp_path / "c" / "w.safetensors"
    ck.save_weights(path, net, cfg, ck.Progress(epoch_index=2, batch_in_epoch=1, global_step=7))
    tensors, meta = ck.read_weights(path)
    assert meta["format"] == ck.FORMAT and int(meta["format_version"]) == ck.FORMAT_VERSION
    assert ck.progress_from_metadata(meta) == ck.Progress(2, 1, 7, False)
    assert ck.experiment_from_json(meta["experiment"], where=str(path)) == cfg
    assert tensors.keys() == net.state_dict().keys()  # BatchNorm buffers included
    other = Net()
    ck.load_weights_into(other, tensors, str(path))
    for k, v in net.state_dict().items():
        assert torch.equal(other.state_dict()[k], v)
    assert [p.name for p in path.parent.iterdir()] == ["w.safetensors"]  # no temporary left


def test_old_import_paths_are_re_exports():
    """Weights I/O moved below training; train.checkpoint's old names still work."""
    from m3dhmr import experiment, model_io

    for name in model_io.__all__:
        assert getattr(ck, name) is getattr(model_io, name), name
    assert ck.experiment_from_json is experiment.experiment_from_json


def test_mismatch_names_the_tensors(tmp_path):
    path = tmp_path / "w.safetensors"
    ck.save_weights(path, Net(hidden=3), tiny_experiment(), ck.Progress())
    tensors, _ = ck.read_weights(path)
    with pytest.raises(ValueError, match=r"a\.weight checkpoint \[3, 2\] vs model \[4, 2\]"):
        ck.load_weights_into(Net(hidden=4), tensors, str(path))
    tensors.pop("b.bias")
    tensors["c.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as e:
        ck.check_compatible(Net(hidden=3), tensors, str(path))
    assert "missing from the checkpoint: b.bias" in str(e.value) and "model lacks: c.weight" in str(e.value)


def test_unreadable_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        ck.read_weights(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="junk.safetensors"):
        ck.read_weights(junk)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="not an m3dhmr checkpoint"):
        ck.read_weights(foreign)


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    ck.save_weights(path, Net(), tiny_experiment(), ck.Progress(global_step=1))
    before = path.read_bytes()

    import errno
    from pathlib import Path

    real_write_bytes = Path.write_bytes

    def broken(self, data):
        real_write_bytes(self, bytes(data)[:4])
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", broken)
    with pytest.raises(OSError, match="No space left"):
        ck.save_weights(path, Net(), tiny_experiment(), ck.Progress(global_step=2))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_training_state_is_weights_only_and_restores_rng(tmp_path):
    torch.manual_seed(1)
    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    net.train()
    for _ in range(2):
        opt.zero_grad()
        net.b(net.bn(net.a(torch.randn(4, 2)))).sum().backward()
        opt.step()
    random.seed(5)
    np.random.seed(6)
    path = tmp_path / "last.state.pt"
    ck.save_training_state(path, experiment=tiny_experiment(), progress=ck.Progress(1, 2, 3), optimizer=opt,
                           extra={"optimizer_stage": 2})
    expect = (torch.rand(3), np.random.rand(3), random.random())
    raw = torch.load(path, weights_only=True)  # plain containers and tensors only
    assert raw["progress"] == {"epoch_index": 1, "batch_in_epoch": 2, "global_step": 3, "finished": False}
    assert raw["optimizer_stage"] == 2
    state = ck.load_training_state(path)
    ck.set_rng_state(state["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expect[0], got[0]) and np.array_equal(expect[1], got[1]) and expect[2] == got[2]
    opt2 = torch.optim.Adam(Net().parameters(), lr=0.1)
    opt2.load_state_dict(state["optimizer"])
    for a, b in zip(opt.state.values(), opt2.state.values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])


def test_training_state_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="resume"):
        ck.load_training_state(tmp_path / "last.state.pt")
    bad = tmp_path / "bad.state.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.state.pt"):
        ck.load_training_state(bad)
    other = tmp_path / "other.state.pt"
    torch.save({"format": "something-else"}, other)
    with pytest.raises(ValueError, match="not an m3dhmr training state"):
        ck.load_training_state(other)


def test_load_model_from_checkpoint_and_config_mismatch(tmp_path):
    from m3dhmr.models import build_model

    cfg = tiny_experiment()
    torch.manual_seed(0)
    model = build_model(cfg.model)
    path = tmp_path / "last.safetensors"
    ck.save_weights(path, model, cfg, ck.Progress(global_step=4))
    loaded, cfg2 = ck.load_model_from_checkpoint(path)
    assert cfg2 == cfg and not loaded.training
    x = torch.rand(1, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x).vertices, loaded(x).vertices)
    # The same weights with another architecture: a clear error naming tensors.
    other = tiny_experiment(decoder_channels=[8, 8, 16, 32])
    with pytest.raises(ValueError, match="does not match the model configuration.*decoder"):
        ck.load_model_from_checkpoint(path, experiment=other)


# ---------------------------------------------------------------- one complete checkpoint, kinds, repair


def _save_pair(ckdir, net, step, epoch_file=False):
    cfg = tiny_experiment()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    ck.save_checkpoint(ckdir, net, cfg, ck.Progress(0, step, step), opt, epoch_file=epoch_file)


def test_state_file_is_a_complete_checkpoint_and_repairs_stale_weights(tmp_path):
    net = Net()
    _save_pair(tmp_path, net, 3)
    assert ck.inspect_run(tmp_path) == ck.RunFiles(3, 3, False)
    with torch.no_grad():
        net.a.weight.add_(1.0)
    # A kill between the two files: the state of step 5 is written, the weights are still of step 3.
    ck.save_training_state(tmp_path / ck.LAST_STATE, experiment=tiny_experiment(), progress=ck.Progress(0, 5, 5),
                           optimizer=torch.optim.SGD(net.parameters(), lr=0.1), model=net)
    assert ck.inspect_run(tmp_path) == ck.RunFiles(5, 3, False)
    tensors, state, progress = ck.load_resume_point(tmp_path)
    assert progress.global_step == 5 and "model" not in state
    torch.testing.assert_close(tensors["a.weight"], net.a.weight.detach())
    # last.safetensors now matches the state again (what users and eval read).
    got, meta = ck.read_weights(tmp_path / ck.LAST_WEIGHTS)
    assert ck.progress_from_metadata(meta).global_step == 5
    torch.testing.assert_close(got["a.weight"], net.a.weight.detach())
    assert ck.inspect_run(tmp_path) == ck.RunFiles(5, 5, False)


def test_older_state_without_weights_needs_matching_weights(tmp_path):
    net = Net()
    _save_pair(tmp_path, net, 3)
    state = torch.load(tmp_path / ck.LAST_STATE, weights_only=True)
    del state["model"]
    state["progress"]["global_step"] = 4
    torch.save(state, tmp_path / ck.LAST_STATE)
    with pytest.raises(ValueError, match=r"\(step 3\) and last.state.pt \(step 4\) disagree"):
        ck.load_resume_point(tmp_path)
    state["progress"]["global_step"] = 3
    torch.save(state, tmp_path / ck.LAST_STATE)
    assert ck.load_resume_point(tmp_path)[2].global_step == 3


def test_inspect_run_describes_what_is_there(tmp_path):
    assert ck.inspect_run(tmp_path / "nothing").empty
    _save_pair(tmp_path, Net(), 2)
    (tmp_path / ck.LAST_STATE).unlink()
    files = ck.inspect_run(tmp_path)
    assert files == ck.RunFiles(None, 2, False) and files.describe() == "last.safetensors of step 2"
    (tmp_path / ck.LAST_STATE).write_bytes(b"garbage")
    assert ck.inspect_run(tmp_path).state_step == -1  # unreadable, but still something not to overwrite


def test_integer_tensor_for_a_float_parameter_is_refused():
    net = Net()
    tensors = ck.dense_state_dict(net)
    tensors["a.weight"] = tensors["a.weight"].round().to(torch.int64)
    with pytest.raises(ValueError, match=r"another kind than the model's, e\.g\. a\.weight: checkpoint torch\.int64"):
        ck.load_weights_into(Net(), tensors, "x.safetensors")
    tensors = ck.dense_state_dict(net)
    tensors["bn.num_batches_tracked"] = tensors["bn.num_batches_tracked"].float()
    with pytest.raises(ValueError, match="num_batches_tracked"):
        ck.load_weights_into(Net(), tensors, "x.safetensors")
    # float16 weights (the packaged model's) load into float32 parameters.
    half = {k: v.half() if v.is_floating_point() else v for k, v in ck.dense_state_dict(net).items()}
    ck.load_weights_into(Net(), half, "half.safetensors")


def test_non_finite_weights_are_refused():
    tensors = ck.dense_state_dict(Net())
    tensors["b.bias"][0] = float("nan")
    with pytest.raises(ValueError, match="b.bias holds NaN or infinite"):
        ck.load_weights_into(Net(), tensors, "x.safetensors")
    with pytest.raises(ValueError, match="unexpected type"):
        ck.check_tensor_dtypes({"w": torch.zeros(2, dtype=torch.complex64)}, "x")


def test_weights_files_get_the_usual_permissions(tmp_path):
    import os

    _save_pair(tmp_path, Net(), 1, epoch_file=True)
    umask = os.umask(0)
    os.umask(umask)
    for p in tmp_path.iterdir():
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, p.name
