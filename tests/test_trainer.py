"""End-to-end training on a tiny synthetic set: both stages, checkpoints, TensorBoard, exact resume."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from m3dhmr.train import checkpoint as ck
from m3dhmr.experiment import load_experiment
from m3dhmr.train.trainer import merge_views, second_view, stage_loss_weights, train


def _weights(run) -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoints" / "last.safetensors")


def _initial(cfg) -> dict[str, torch.Tensor]:
    from m3dhmr.models import build_model

    torch.manual_seed(cfg.train.seed)
    return ck.dense_state_dict(build_model(cfg.model))


@pytest.fixture(scope="module")
def full_run(tiny_data, tiny_config, tmp_path_factory):
    """The uninterrupted reference run: 2 stage-1 steps + 4 stage-2 steps."""
    cfg = load_experiment(tiny_config)
    run = tmp_path_factory.mktemp("full") / "run"
    result = train(cfg, tiny_data, run, progress_bar=False)
    return cfg, run, result


def test_end_to_end_writes_checkpoints_and_logs(full_run):
    cfg, run, result = full_run
    assert result.steps_run == 6 and result.progress == ck.Progress(3, 0, 6, finished=True)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["epoch_001.safetensors", "epoch_002.safetensors", "epoch_003.safetensors",
                     "last.safetensors", "last.state.pt"]
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert load_experiment(run / "config.yaml") == cfg
    assert all(torch.isfinite(torch.tensor(v)) for v in result.last_losses.values())
    # Stage 2 reports the paper's terms, including two-view consistency.
    assert result.last_losses["mesh"] > 0 and result.last_losses["con3d"] > 0 and result.last_losses["con2d"] > 0
    meta = ck.read_weights(run / "checkpoints" / "epoch_001.safetensors")[1]
    assert ck.progress_from_metadata(meta).global_step == 2


def test_stage1_trains_only_the_first_stack(full_run):
    cfg, run, _ = full_run
    init = _initial(cfg)
    after1 = load_file(run / "checkpoints" / "epoch_001.safetensors")
    after_all = _weights(run)
    changed1 = {k for k, v in init.items() if v.is_floating_point() and not torch.equal(v, after1[k])}
    # The first stack: stem, ResNet layers, its decoder and heatmap head (forward_stack1).
    stack1 = ("backbone.stem.", "backbone.layers.", "backbone.decoder1.", "backbone.heatmap1.")
    assert changed1 and all(k.startswith(stack1) for k in changed1), sorted(changed1 - {
        k for k in changed1 if k.startswith(stack1)})[:5]
    for part in stack1:
        assert any(k.startswith(part) for k in changed1), part
    # Stage 2 then trains the second stack and the mesh decoder too.
    changed2 = {k for k, v in init.items() if v.is_floating_point() and not torch.equal(after1[k], after_all[k])}
    for part in ("backbone.encoder2.", "backbone.decoder2.", "backbone.heatmap2.", "backbone.latent.",
                 "decoder.lift", "decoder.convs.", "decoder.head."):
        assert any(k.startswith(part) for k in changed2), part


def test_stage1_scope_stacks_2d_trains_the_second_stacks_2d_path(tiny_data, tiny_config, tmp_path):
    """stage1_scope: stacks_2d (the paper's "first stack and first layer of the second
    stack"): stage 1 also trains the second stack up to its landmarks, never the latent
    projection or the mesh decoder, on both stacks' heatmaps and landmarks."""
    cfg = load_experiment(tiny_config)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=0, stage1_scope="stacks_2d"))
    w1 = stage_loss_weights(cfg, 1)
    assert (w1.heatmap, w1.pose2d_stack1, w1.heatmap2, w1.pose2d, w1.mesh) == (1, 1, 1, 1, 0)
    run = tmp_path / "run"
    result = train(cfg, tiny_data, run, progress_bar=False)
    assert result.last_losses["heatmap2"] > 0 and result.last_losses["pose2d"] > 0
    init, after = _initial(cfg), _weights(run)
    changed = {k for k, v in init.items() if v.is_floating_point() and not torch.equal(v, after[k])}
    for part in ("backbone.layers.", "backbone.heatmap1.", "backbone.reinject_features.", "backbone.encoder2.0.",
                 "backbone.decoder2.", "backbone.heatmap2."):
        assert any(k.startswith(part) for k in changed), part
    assert not any(k.startswith(("backbone.latent.", "decoder.")) for k in changed)
    with pytest.raises(ValueError, match="stage1_scope"):
        dataclasses.replace(cfg.train, stage1_scope="stack2")


def test_resume_reaches_the_same_weights(full_run, tiny_data, tmp_path):
    """3 steps, stop (mid stage-2 epoch), resume with another num_workers: same weights as 6 straight."""
    cfg, ref_run, _ = full_run
    run = tmp_path / "run"
    r1 = train(cfg, tiny_data, run, max_steps=3, progress_bar=False)
    assert r1.progress == ck.Progress(1, 1, 3)  # stopped inside the first stage-2 epoch
    cfg_w = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, num_workers=1))
    r2 = train(cfg_w, tiny_data, run, resume=True, progress_bar=False)
    assert r2.steps_run == 3 and r2.progress.finished
    ref, got = _weights(ref_run), _weights(run)
    assert ref.keys() == got.keys()
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=0, atol=1e-6, msg=k)
    s_ref = ck.load_training_state(ref_run / "checkpoints" / ck.LAST_STATE)["optimizer"]["state"]
    s_got = ck.load_training_state(run / "checkpoints" / ck.LAST_STATE)["optimizer"]["state"]
    for i in s_ref:
        torch.testing.assert_close(s_got[i]["exp_avg"], s_ref[i]["exp_avg"], rtol=0, atol=1e-6)
    # Resuming a finished run does nothing.
    r3 = train(cfg, tiny_data, run, resume=True, progress_bar=False)
    assert r3.steps_run == 0


def test_checkpoint_every_steps_resumes_to_the_same_weights(full_run, tiny_data, tmp_path, monkeypatch):
    """train.checkpoint_every: 3 writes the checkpoint at step 3 (inside an epoch) and at the
    end (6), not at each epoch end (2, 4); a run killed at step 5 resumes from step 3 and reaches the
    weights of the uninterrupted run (checkpointed at each epoch end). The checkpoints on disk
    after kills at chosen steps tell which steps were written."""
    from m3dhmr.train import trainer as tr

    cfg, ref_run, _ = full_run
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, checkpoint_every=3,
                                                             keep_epoch_checkpoints=False))
    real_forward = tr.StepLoss.forward

    def train_killed(run, at_call: int, **kw):
        """train(), killed in the forward pass of its ``at_call``-th step."""
        calls = []

        def forward(self, batch):
            calls.append(1)
            if len(calls) == at_call:
                raise _Crash(f"killed at call {at_call}")
            return real_forward(self, batch)

        with monkeypatch.context() as m:
            m.setattr(tr.StepLoss, "forward", forward)
            with pytest.raises(_Crash):
                train(cfg, tiny_data, run, progress_bar=False, **kw)

    def written(run):
        return ck.inspect_run(run / "checkpoints").state_step

    train_killed(tmp_path / "early", at_call=3)
    assert written(tmp_path / "early") is None  # nothing at the first epoch end (step 2)
    run = tmp_path / "run"
    train_killed(run, at_call=5)
    assert written(run) == 3  # step 3, inside an epoch; not the epoch end at 4
    train_killed(run, at_call=3, resume=True)  # steps 4 and 5 taken again, killed in step 6
    assert written(run) == 3  # neither 4 (an epoch end) nor 5
    r = train(cfg, tiny_data, run, resume=True, progress_bar=False)
    assert r.steps_run == 3 and r.progress == ck.Progress(3, 0, 6, finished=True) and written(run) == 6
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.safetensors", "last.state.pt"]
    ref, got = _weights(ref_run), _weights(run)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=0, atol=1e-6, msg=k)


@pytest.mark.parametrize("every, keep, due", [
    (0, True, [2, 4, 5, 6]),   # the default: each epoch end (and where a run stops)
    (0, False, [2, 4, 5, 6]),
    (3, False, [3, 5, 6]),     # every 3 steps (inside an epoch too), and where training ends or stops
    (3, True, [2, 3, 4, 5, 6]),  # keep_epoch_checkpoints: each epoch end as well, for its epoch file
    (100, False, [5, 6]),
])
def test_when_checkpoints_are_due(every, keep, due):
    """Epochs of two steps ending at 2, 4 and 6; the run stops (max_steps) at step 5."""
    from m3dhmr.experiment import TrainConfig
    from m3dhmr.train.trainer import checkpoint_due

    t = TrainConfig(checkpoint_every=every, keep_epoch_checkpoints=keep)
    got = [s for s in range(1, 7) if checkpoint_due(t, s, epoch_done=s % 2 == 0, last=s in (5, 6))]
    assert got == due
    with pytest.raises(ValueError, match="train.checkpoint_every"):
        TrainConfig(checkpoint_every=-1)


def test_resume_with_another_model_is_an_error(full_run, tiny_data, tmp_path):
    cfg, ref_run, _ = full_run
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(ref_run, run)
    other = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, decoder_channels=(8, 8, 16, 32)))
    with pytest.raises(ValueError, match="another model section"):
        train(other, tiny_data, run, resume=True, progress_bar=False)


def test_wrong_data_layout_is_a_clear_error(tiny_config, tmp_path, capsys):
    from m3dhmr.cli import main

    bad = tmp_path / "not_freihand"
    (bad / "training" / "images").mkdir(parents=True)
    rc = main(["train", "--config", str(tiny_config), "--data", str(bad), "--out", str(tmp_path / "r"),
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "training_K.json" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # a failed call writes nothing
    rc = main(["train", "--config", str(tiny_config), "--data", str(tmp_path / "missing"), "--out",
               str(tmp_path / "r")])
    assert rc == 2 and "missing" in capsys.readouterr().err


def test_two_view_losses_hand_case():
    """merge_views averages the supervised terms of both views and keeps consistency from view 1."""
    from m3dhmr.losses import TERMS, LossTerms, LossWeights

    def terms(base):
        vals = {n: torch.tensor(float(base + i)) for i, n in enumerate(TERMS)}
        return LossTerms(total=torch.tensor(0.0), **vals)

    w = LossWeights()
    m = merge_views(terms(0), terms(10), w)
    assert m.mesh.item() == 5.0 and m.pose2d.item() == 6.0  # (0 + 10) / 2, (1 + 11) / 2
    assert m.con3d.item() == 4.0 and m.con2d.item() == 5.0  # view 1's
    assert m.total.item() == pytest.approx(5 + 6 + 7 + 8 + 4 + 5)  # heatmap/pose2d_stack1 weigh 0
    b = {"image": torch.zeros(1), "image_2": torch.ones(1), "index": torch.tensor([3])}
    assert second_view(b)["image"].item() == 1.0 and second_view(b)["index"].item() == 3


def test_stage1_weights(tiny_config):
    cfg = load_experiment(tiny_config)
    w1 = stage_loss_weights(cfg, 1)
    assert (w1.mesh, w1.pose2d, w1.con3d, w1.heatmap, w1.pose2d_stack1) == (0, 0, 0, 1, 1)
    assert stage_loss_weights(cfg, 2) == cfg.loss


def _memory_cfg(cfg, **train_kw):
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, pipeline="memory"),
                               train=dataclasses.replace(cfg.train, **train_kw))


@pytest.fixture(scope="module")
def memory_run(full_run, tiny_data, tmp_path_factory):
    """The in-memory pipeline (the GPU path) on CPU, with channels_last and a learning curve,
    in full precision (bf16 autocast on a CPU without bf16 units is ~20x slower: it has
    its own smoke test, test_memory_pipeline_trains_in_bf16)."""
    cfg = _memory_cfg(full_run[0], amp="off", channels_last=True, eval_every=2, eval_samples=3)
    run = tmp_path_factory.mktemp("mem") / "run"
    return cfg, run, train(cfg, tiny_data, run, progress_bar=False)


def test_memory_pipeline_trains_with_a_learning_curve(memory_run):
    from m3dhmr.train.validation import CSV_NAME, read_metrics_csv

    cfg, run, result = memory_run
    assert result.steps_run == 6 and result.progress.finished
    assert all(torch.isfinite(torch.tensor(v)) for v in result.last_losses.values())
    rows = read_metrics_csv(run / CSV_NAME)
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert [r["stage"] for r in rows] == [1, 2, 2]
    # Stage 1 scores the first stack's 2D only; stage 2 every metric.
    assert rows[0]["err2d_px"] > 0 and rows[0]["pa_mpjpe_mm"] != rows[0]["pa_mpjpe_mm"]
    for r in rows[1:]:
        assert r["num_samples"] == 3 and 0 < r["pa_mpjpe_mm"] < 200 and 0 <= r["f5"] <= r["f15"] <= 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    assert {"eval/pa_mpjpe_mm", "eval/err2d_px", "eval/f5"} <= set(acc.Tags()["scalars"])


def test_memory_pipeline_resumes_exactly(memory_run, tiny_data, tmp_path):
    from m3dhmr.train.validation import CSV_NAME, read_metrics_csv

    cfg, ref_run, _ = memory_run
    run = tmp_path / "run"
    train(cfg, tiny_data, run, max_steps=3, progress_bar=False)
    r2 = train(cfg, tiny_data, run, resume=True, progress_bar=False)
    assert r2.steps_run == 3 and r2.progress.finished
    ref, got = _weights(ref_run), _weights(run)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=0, atol=1e-6, msg=k)
    # The curve holds each step once, also the step the first call stopped at (3).
    assert [r["step"] for r in read_metrics_csv(run / CSV_NAME)] == [2, 3, 4, 6]


def test_memory_pipeline_trains_in_bf16(full_run, tiny_data, tmp_path, monkeypatch):
    """One stage-2 step of the in-memory pipeline under bf16 autocast with channels_last: the
    network runs in bf16, the losses in float32, and the step gives finite losses and a checkpoint."""
    from m3dhmr.models.network import M3DHMR
    from m3dhmr.train import trainer as tr

    cfg = _memory_cfg(full_run[0], amp="bf16", channels_last=True, stage1_epochs=0, epochs=1, batch_size=2)

    def float_dtypes(out):
        return {v.dtype for v in (getattr(out, f.name) for f in dataclasses.fields(out))
                if torch.is_tensor(v) and v.is_floating_point()}

    network, loss_inputs = [], []  # the dtypes of the network's outputs, and of what the losses get

    def on_forward(module, args, out):
        if isinstance(module, M3DHMR):
            network.append(float_dtypes(out))

    real_compute_losses = tr.compute_losses  # what StepLoss calls

    def compute_losses(pred, *a, **kw):
        loss_inputs.append(float_dtypes(pred))
        return real_compute_losses(pred, *a, **kw)

    monkeypatch.setattr(tr, "compute_losses", compute_losses)
    hook = torch.nn.modules.module.register_module_forward_hook(on_forward)
    try:
        result = train(cfg, tiny_data, tmp_path / "run", max_steps=1, progress_bar=False)
    finally:
        hook.remove()
    assert result.steps_run == 1 and torch.bfloat16 in network[0] and loss_inputs
    assert all(d == {torch.float32} for d in loss_inputs)
    assert result.last_losses["mesh"] > 0 and result.last_losses["con3d"] > 0
    assert all(torch.isfinite(torch.tensor(v)) for v in result.last_losses.values())
    assert ck.inspect_run(tmp_path / "run" / "checkpoints").state_step == 1
    assert all(v.dtype == torch.float32 for v in _weights(tmp_path / "run").values() if v.is_floating_point())


def test_no_learning_curve_without_ground_truth(full_run, tiny_data, tmp_path, caplog):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    for kind in ("xyz", "verts"):
        (data / f"evaluation_{kind}.json").unlink()
    cfg = dataclasses.replace(full_run[0], train=dataclasses.replace(full_run[0].train, eval_every=1))
    train(cfg, data, tmp_path / "run", max_steps=1, progress_bar=False)
    assert "no ground truth" in caplog.text and not (tmp_path / "run" / "eval_metrics.csv").exists()


def test_init_from_copies_only_the_chosen_tensors(full_run, tiny_data, tmp_path):
    cfg, ref_run, _ = full_run
    src = ref_run / "checkpoints" / "last.safetensors"
    trained = _weights(ref_run)
    init_cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, init_from=str(src), init_from_prefixes=("backbone.",), stage1_epochs=0, epochs=1))
    run = tmp_path / "ft"
    from m3dhmr.models import build_model
    from m3dhmr.train.trainer import init_weights_from

    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model)
    fresh = ck.dense_state_dict(model)
    n = init_weights_from(model, str(src), ("backbone.",))
    got = ck.dense_state_dict(model)
    assert n > 0
    for k in got:
        want = trained[k] if k.startswith("backbone.") else fresh[k]
        assert torch.equal(got[k], want), k
    r = train(init_cfg, tiny_data, run, max_steps=1, progress_bar=False)
    assert r.steps_run == 1
    with pytest.raises(ValueError, match="no tensors start with"):
        init_weights_from(model, str(src), ("nothing.",))


@pytest.mark.parametrize("pipeline", ["loader", "memory"])
def test_train_samples_limits_training_to_the_first_samples(tiny_data, tiny_config, tmp_path, pipeline):
    cfg = load_experiment(tiny_config)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, train_samples=4, pipeline=pipeline,
                                                            num_workers=0))
    result = train(cfg, tiny_data, tmp_path / "run", progress_bar=False)
    seen = result.sample_indices
    # 3 epochs of one 4-sample batch each, all from samples 0-3 of the 8.
    assert sorted(seen) == sorted([0, 1, 2, 3] * 3)
    assert result.steps_run == 3


def test_train_samples_must_not_be_negative():
    from m3dhmr.experiment import DataConfig

    with pytest.raises(ValueError, match="data.train_samples"):
        DataConfig(train_samples=-1)


def test_freeze_prefixes_keep_the_backbone_as_loaded(tiny_data, tiny_config, tmp_path):
    cfg = load_experiment(tiny_config)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, stage1_epochs=0, epochs=1,
                                                             freeze_prefixes=("backbone.",)))
    before = _initial(cfg)
    train(cfg, tiny_data, tmp_path / "run", progress_bar=False)
    after = _weights(tmp_path / "run")
    backbone = [k for k in before if k.startswith("backbone.")]
    assert any("running_mean" in k for k in backbone)  # BatchNorm statistics are checked too
    for k in backbone:
        assert torch.equal(before[k], after[k]), k
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    with pytest.raises(ValueError, match="leave nothing to train"):
        frozen_all = dataclasses.replace(cfg.train, freeze_prefixes=("backbone.", "decoder."))
        train(dataclasses.replace(cfg, train=frozen_all), tiny_data, tmp_path / "r2", progress_bar=False)
    with pytest.raises(ValueError, match="no parameter name starts so"):
        bad = dataclasses.replace(cfg.train, freeze_prefixes=("nothing.",))
        train(dataclasses.replace(cfg, train=bad), tiny_data, tmp_path / "r3", progress_bar=False)


def test_set_overrides_are_strict_and_typed(tiny_config):
    from m3dhmr.config_loader import ConfigError

    cfg = load_experiment(tiny_config, ["train.batch_size=2", "model.pretrained_backbone=false", "train.amp=off",
                                        "train.lr_milestones=[0]", "data.augment.rotation_deg=10"])
    assert cfg.train.batch_size == 2 and cfg.model.pretrained_backbone is False and cfg.train.amp == "off"
    assert cfg.train.lr_milestones == (0,) and cfg.data.augment.rotation_deg == 10.0
    with pytest.raises(ConfigError, match="batch_sizee"):
        load_experiment(tiny_config, ["train.batch_sizee=2"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_experiment(tiny_config, ["train.batch_size"])
    with pytest.raises(ConfigError, match="batch_size"):
        load_experiment(tiny_config, ["train.batch_size=0"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_experiment(tiny_config, ["train.batch_size.x=1"])


def test_train_cli_set_and_template(tiny_data, tiny_config, tmp_path, capsys):
    from m3dhmr.cli import main

    run = tmp_path / "run"
    assert main(["train", "--config", str(tiny_config), "--data", str(tiny_data), "--out", str(run), "--no-progress",
                 "--max-steps", "1", "--set", "train.batch_size=2", "--template", "open_hand"]) == 0
    import yaml

    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["batch_size"] == 2 and saved["model"]["template"] == "open_hand"
    assert main(["train", "--config", str(tiny_config), "--data", str(tiny_data), "--out", str(run),
                 "--set", "model.nope=1"]) == 2
    assert "model.nope" in capsys.readouterr().err


def test_consistency_terms_start_at_the_configured_epoch(tiny_config):
    cfg = load_experiment(tiny_config, ["train.consistency_start_epoch=1"])
    early, late = stage_loss_weights(cfg, 2, 0), stage_loss_weights(cfg, 2, 1)
    assert (early.con3d, early.con2d) == (0.0, 0.0) and early.mesh == cfg.loss.mesh
    assert (late.con3d, late.con2d) == (cfg.loss.con3d, cfg.loss.con2d)
    assert stage_loss_weights(load_experiment(tiny_config), 2, 0) == load_experiment(tiny_config).loss


# ----------------------------------------------------------------------------- real photos (self-training)


@pytest.fixture
def fake_real_labels(tiny_data, monkeypatch):
    """The tiny set's own images stand for real photos, their projected joints for the landmark
    model's pseudo-labels (no detector run): photo 6 is unsure (presence 0.5), photo 7 has
    no hand, every other one is a "left" hand."""
    import numpy as np

    import m3dhmr.data.pseudo_labels as pl
    from m3dhmr.data.freihand import FreiHANDDataset

    ds = FreiHANDDataset(tiny_data, "training")
    paths = tuple(ds.image_path(i) for i in range(8))
    lm = np.stack([ds.joints2d(i) for i in range(8)]).astype(np.float32)
    lm[7] = np.nan
    presence = np.array([1, 1, 1, 1, 1, 1, 0.5, 0], np.float32)
    calls = []

    def fake(paths_arg, cache=None, progress=False):
        calls.append([Path(p) for p in paths_arg])
        return pl.PseudoLabels(paths=paths, landmarks=lm, depth=np.zeros((8, 21), np.float32), presence=presence,
                               handedness=("left", "right") * 3 + ("right", None))

    monkeypatch.setattr(pl, "pseudo_labels", fake)
    return tiny_data / "training" / "rgb", calls


def _real_cfg(tiny_config, real_dir, pipeline: str):
    return load_experiment(tiny_config, [f"data.real_dir={real_dir}", "data.real_fraction=0.5",
                                         f"data.pipeline={pipeline}", "train.epochs=1"])


@pytest.mark.parametrize("pipeline", ["loader", "memory"])
def test_real_photos_train_and_resume_exactly(fake_real_labels, tiny_data, tiny_config, tmp_path, pipeline):
    """Batches of 2 synthetic + 2 real samples: 4 steps per epoch; real 2D terms logged apart;
    3 steps, stop, resume to 5 = 5 straight (the real stream is keyed by the position)."""
    real_dir, calls = fake_real_labels
    cfg = _real_cfg(tiny_config, real_dir, pipeline)
    ref = train(cfg, tiny_data, tmp_path / "ref", max_steps=5, progress_bar=False)
    assert calls[0] == sorted(real_dir.glob("*.jpg"))
    assert ref.steps_run == 5 and ref.progress == ck.Progress(1, 1, 5)
    losses = ref.last_losses
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert losses["real_pose2d"] > 0 and losses["real_con2d"] > 0 and losses["mesh"] > 0
    assert not any(k.startswith("real_") and k[5:] in ("mesh", "normal", "edge", "con3d") for k in losses)
    # Only synthetic indices are reported: the first epoch is a permutation of the 8.
    assert sorted(ref.sample_indices[:8]) == list(range(8)) and len(ref.sample_indices) == 10
    run = tmp_path / "run"
    train(cfg, tiny_data, run, max_steps=3, progress_bar=False)
    r2 = train(cfg, tiny_data, run, resume=True, max_steps=5, progress_bar=False)
    assert r2.steps_run == 2
    want, got = _weights(tmp_path / "ref"), _weights(run)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6, msg=k)


def _mixed_batch(tiny_data, real_dir, cfg, two_view: bool):
    """2 synthetic samples (the loader's) followed by 2 real ones, as the trainer mixes them."""
    import numpy as np

    from m3dhmr.data.freihand import FreiHANDDataset
    from m3dhmr.data.real_crops import RealCropDataset

    syn = FreiHANDDataset(tiny_data, "training", crop_size=64, augment=cfg.data.augment, two_view=two_view, seed=1)
    paths = [real_dir / f"{i:08d}.jpg" for i in range(4, 8)]
    lm = np.stack([syn.joints2d(i) for i in range(4, 8)])
    real = RealCropDataset(paths, lm, [True] * 4, [False, True, False, True], 64, cfg.data.augment,
                           num_vertices=syn.num_vertices)
    items = [syn[0], syn[1]]
    r = real.collate([0, 1], 0, two_view)
    batch = {k: torch.cat([torch.stack([it[k] for it in items]), r[k]]) for k in items[0]}
    return {**batch, "num_real": 2}


@pytest.mark.parametrize("two_view", [False, True])
def test_real_samples_never_reach_the_3d_terms(fake_real_labels, tiny_data, tiny_config, two_view):
    """The real rows' dummy 3D targets change nothing; the synthetic terms equal those of the
    synthetic rows alone, the real 2D terms those of the real rows alone (a naive reference)."""
    from m3dhmr.losses import compute_losses
    from m3dhmr.models import build_model
    from m3dhmr.train.trainer import StepLoss

    real_dir, _ = fake_real_labels
    cfg = _real_cfg(tiny_config, real_dir, "loader")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, real_weight=0.5))
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()  # eval: each sample's output is its own
    step = StepLoss(model, 2, cfg, two_view, None)
    batch = _mixed_batch(tiny_data, real_dir, cfg, two_view)
    with torch.no_grad():
        terms = step(batch)
        poisoned = {k: v.clone() for k, v in batch.items() if torch.is_tensor(v)}
        for k in ("vertices", "joints3d", "root", "vertices_2", "joints3d_2", "root_2"):
            if k in poisoned:
                poisoned[k][2:] = 5.0
        same = step({**poisoned, "num_real": 2})
        for k, v in terms.as_dict().items():
            assert same.as_dict()[k] == v, k
        # The synthetic rows alone (no num_real) give the same synthetic terms.
        syn_only = step({k: v[:2] if torch.is_tensor(v) else v for k, v in batch.items() if k != "num_real"})
        for k in ("mesh", "normal", "edge", "pose2d", "con3d", "con2d"):
            torch.testing.assert_close(getattr(terms, k), getattr(syn_only, k), msg=k)
        # The real 2D terms, by hand: L1 of the second stack's landmarks / crop size, both views averaged.
        views = [("image", "joints2d")] + ([("image_2", "joints2d_2")] if two_view else [])
        l1 = [((model(batch[i][2:]).joints2d - batch[j][2:]) / 64).abs().mean() for i, j in views]
        torch.testing.assert_close(terms.extra["real_pose2d"], torch.stack(l1).mean())
        total = terms.total - syn_only.total
        want = 0.5 * (terms.extra["real_pose2d"] + (terms.extra["real_con2d"] if two_view else 0))
        torch.testing.assert_close(total, want)
        assert "real_mesh" not in terms.extra and "real_con3d" not in terms.extra
        # A leak would show: the synthetic rows' vertices do move the mesh term.
        moved = {k: v.clone() for k, v in batch.items() if torch.is_tensor(v)}
        moved["vertices"][:2] += 0.01
        assert step({**moved, "num_real": 2}).mesh != terms.mesh
        # compute_losses itself keeps has_3d=False rows out of the 3D terms too.
        out = model(batch["image"])
        full = compute_losses(out, batch, model.faces, cfg.loss)
        masked = compute_losses(out, poisoned, model.faces, cfg.loss)
        assert full.mesh == masked.mesh and full.normal == masked.normal


def test_stage1_trains_real_photos_on_heatmaps(fake_real_labels, tiny_config, tiny_data):
    from m3dhmr.models import build_model
    from m3dhmr.train.trainer import StepLoss

    real_dir, _ = fake_real_labels
    cfg = _real_cfg(tiny_config, real_dir, "loader")
    step = StepLoss(build_model(cfg.model), 1, cfg, False, None)
    terms = step(_mixed_batch(tiny_data, real_dir, cfg, False))
    assert set(terms.extra) == {"real_heatmap", "real_pose2d_stack1", "real_total"}
    assert terms.extra["real_heatmap"] > 0 and terms.extra["real_pose2d_stack1"] > 0


def test_real_fraction_must_leave_both_kinds(fake_real_labels, tiny_data, tiny_config, tmp_path):
    real_dir, _ = fake_real_labels
    cfg = load_experiment(tiny_config, [f"data.real_dir={real_dir}", "data.real_fraction=0.1"])
    with pytest.raises(ValueError, match="real_fraction"):
        train(cfg, tiny_data, tmp_path / "r", max_steps=1, progress_bar=False)


# ---------------------------------------------------------------- nothing lost: kills, refusals, bad values


class _Crash(Exception):
    """Stands for a kill (or a full disk) at one write step of a checkpoint."""


def _crash_at(monkeypatch, point: str):
    """Make the step-4 checkpoint fail at ``point``: while writing a file (half of it
    written) or at its rename."""
    import os

    from m3dhmr import fileio

    real_replace, real_write = os.replace, ck.atomic_write_bytes
    names = {"state": ck.LAST_STATE, "weights": ck.LAST_WEIGHTS}
    target, step = point.split()

    def replace(src, dst):
        if step == "rename" and Path(dst).name == names[target]:
            raise _Crash(point)
        return real_replace(src, dst)

    def write(path, data):
        if step == "write" and Path(path).name == names[target]:
            with fileio.atomic_path(path) as tmp:
                tmp.write_bytes(bytes(data)[: len(data) // 2])
                raise _Crash(point)
        return real_write(path, data)

    monkeypatch.setattr(fileio.os, "replace", replace)
    monkeypatch.setattr(ck, "atomic_write_bytes", write)


@pytest.mark.parametrize("point", ["state write", "state rename", "weights write", "weights rename"])
def test_a_crash_at_any_checkpoint_write_resumes_to_the_same_weights(full_run, tiny_data, tmp_path, monkeypatch,
                                                                     point):
    cfg, ref_run, _ = full_run
    run = tmp_path / "run"
    train(cfg, tiny_data, run, max_steps=3, progress_bar=False)
    with monkeypatch.context() as m:
        _crash_at(m, point)
        with pytest.raises(_Crash):
            train(cfg, tiny_data, run, resume=True, max_steps=4, progress_bar=False)
    files = ck.inspect_run(run / "checkpoints")
    # Either the previous (step 3) or the new (step 4) state, never a stuck pair.
    assert files.state_step == (3 if point.startswith("state") else 4), files
    r = train(cfg, tiny_data, run, resume=True, progress_bar=False)
    assert r.progress.finished and r.progress.global_step == 6
    ref, got = _weights(ref_run), _weights(run)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=0, atol=1e-6, msg=k)
    assert not list((run / "checkpoints").glob(".*tmp*"))


def test_a_run_is_never_overwritten_unasked(full_run, tiny_data, tmp_path):
    import shutil

    cfg, ref_run, _ = full_run
    run = tmp_path / "run"
    shutil.copytree(ref_run, run)
    before = (run / "checkpoints" / "last.safetensors").read_bytes()
    with pytest.raises(ValueError, match=r"already holds a run at step 6 \(finished\): pass --resume .* --overwrite"):
        train(cfg, tiny_data, run, progress_bar=False)
    (run / "checkpoints" / ck.LAST_STATE).unlink()
    with pytest.raises(ValueError, match=r"holds last.safetensors of step 6 \(finished\) but no last.state.pt"):
        train(cfg, tiny_data, run, resume=True, progress_bar=False)
    assert (run / "checkpoints" / "last.safetensors").read_bytes() == before
    # Asked: a new run, and none of the old run's files left to mix with it.
    r = train(cfg, tiny_data, run, overwrite=True, max_steps=1, progress_bar=False)
    assert r.progress.global_step == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.safetensors", "last.state.pt"]


def test_a_failed_call_leaves_the_run_untouched(full_run, tiny_data, tiny_config, tmp_path, capsys):
    import shutil

    from m3dhmr.cli import main

    _, ref_run, _ = full_run
    run = tmp_path / "run"
    shutil.copytree(ref_run, run)
    config_before = (run / "config.yaml").read_text()
    rc = main(["train", "--config", str(tiny_config), "--data", str(tiny_data), "--out", str(run), "--resume",
               "--set", "train.batch_size=1000", "train.epochs=4", "--no-progress"])
    assert rc == 2 and "fewer than one batch" in capsys.readouterr().err
    assert (run / "config.yaml").read_text() == config_before
    rc = main(["train", "--config", str(tiny_config), "--data", str(tiny_data), "--out", str(run), "--resume",
               "--overwrite"])
    assert rc == 2 and "exclude each other" in capsys.readouterr().err


def test_non_finite_settings_and_losses_are_one_line_errors(tiny_data, tiny_config, tmp_path, capsys, monkeypatch):
    from m3dhmr.cli import main

    for bad in ("train.lr=.inf", "train.lr=.nan", "loss.mesh=-.inf"):
        rc = main(["train", "--config", str(tiny_config), "--data", str(tiny_data), "--out", str(tmp_path / "r"),
                   "--set", bad])
        err = capsys.readouterr().err
        assert rc == 2 and "expected a finite number" in err and bad.split("=")[0] in err, err
    assert not (tmp_path / "r").exists()
    # A loss that diverges all the same: one line with the step, the last checkpoint kept.
    from m3dhmr.train import trainer as tr

    real_forward = tr.StepLoss.forward

    def diverge(self, batch):
        terms = real_forward(self, batch)
        return dataclasses.replace(terms, total=terms.total * float("nan"))

    monkeypatch.setattr(tr.StepLoss, "forward", diverge)
    rc = main(["train", "--config", str(tiny_config), "--data", str(tiny_data), "--out", str(tmp_path / "r2"),
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "the loss became nan by step 1" in err and "Traceback" not in err


def test_a_second_training_process_on_one_run_is_refused(tiny_data, tiny_config, tmp_path):
    from m3dhmr.fileio import FolderInUseError, FolderLock

    run = tmp_path / "run"
    with FolderLock(run, "another m3dhmr train"):
        with pytest.raises(FolderInUseError, match="another m3dhmr train"):
            train(load_experiment(tiny_config), tiny_data, run, max_steps=1, progress_bar=False)
    assert not (run / "checkpoints").exists()


def _reference_run(cmd: list[str], run: Path, ref: Path) -> None:
    """The uninterrupted run as a fresh process too: an in-process reference would inherit
    settings earlier tests changed (torch's thread count alters float sums)."""
    import subprocess

    cmd = [str(ref) if c == str(run) else c for c in cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_sigkill_at_random_moments_always_resumes(tiny_data, tiny_config, tmp_path):
    """A real process killed with SIGKILL at random moments (seeded), then resumed each time:
    every resume starts, stale temporaries are cleaned, and the end matches an unkilled run."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    overrides = ["train.epochs=6", "train.lr_milestones=[4]", "train.keep_epoch_checkpoints=false"]
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "m3dhmr", "train", "--config", str(tiny_config), "--data", str(tiny_data),
           "--out", str(run), "--no-progress", "--set", *overrides]
    ref = tmp_path / "ref"
    _reference_run(cmd, run, ref)
    rng = random.Random(0)
    kills = 0
    for i in range(4):
        proc = subprocess.Popen(cmd + (["--resume"] if i else []), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while not (run / "config.yaml").is_file() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        _, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, -signal.SIGKILL), err
        if proc.returncode == 0:
            break
    assert kills >= 1
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not list(run.rglob(".*.tmp-*"))
    want, got = _weights(ref), _weights(run)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6, msg=k)


def test_bad_out_and_device_are_one_line_before_any_work(tiny_config, tmp_path, capsys):
    from m3dhmr.cli import main

    f = tmp_path / "file"
    f.write_text("x")
    for out, device, want in ((f, "cpu", "is a file, not a folder"), (f / "run", "cpu", "is a file, not a folder"),
                              (tmp_path / "r", "banana", "--device: expected cpu, cuda"),
                              (tmp_path / "r", "cuda:7" if not torch.cuda.is_available() else "cuda:999",
                               "--device cuda")):
        rc = main(["train", "--config", str(tiny_config), "--data", str(tmp_path), "--out", str(out),
                   "--device", device])
        err = capsys.readouterr().err
        assert rc == 2 and want in err and "Traceback" not in err, err
    assert not (tmp_path / "r").exists()


_DISK_FULL_DRIVER = r"""
import json, subprocess, sys
from pathlib import Path
mnt, size, cmd = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=True)
full = subprocess.run(cmd + ["--max-steps", "4"], capture_output=True, text=True)
from m3dhmr.train import checkpoint as ck
files = ck.inspect_run(mnt / "run" / "checkpoints")
temps = [str(p) for p in (mnt / "run").rglob(".*.tmp-*")]
subprocess.run(["mount", "-o", "remount,size=512m", str(mnt)], check=True)
again = subprocess.run(cmd + ["--resume"], capture_output=True, text=True)
from safetensors.torch import load_file
import torch
w = load_file(str(mnt / "run" / "checkpoints" / "last.safetensors"))
torch.save(w, sys.argv[4])
print(json.dumps({"rc": full.returncode, "err": full.stderr, "state_step": files.state_step, "temps": temps,
                  "rc2": again.returncode, "err2": again.stderr}))
"""


def test_a_full_disk_is_one_line_and_the_run_resumes(tiny_data, tiny_config, tmp_path):
    """Training into a small tmpfs (in a private mount namespace) that holds the first
    checkpoint but not the second: one line naming the cause, no temporaries left, and the
    run resumes (once there is space) to the weights of an uninterrupted run."""
    import json
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux's unshare to mount a small tmpfs")
    probe = subprocess.run(["unshare", "-Urm", "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tmp_path)],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {probe.stderr.strip()}")
    # Size it from a run on the normal disk: room for step 2's checkpoint, not for step 4's too.
    sizing = tmp_path / "sizing"
    train(load_experiment(tiny_config), tiny_data, sizing, max_steps=2, progress_bar=False)
    used = sum(p.stat().st_size for p in sizing.rglob("*") if p.is_file())
    state = (sizing / "checkpoints" / ck.LAST_STATE).stat().st_size
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cmd = [sys.executable, "-m", "m3dhmr", "train", "--config", str(tiny_config), "--data", str(tiny_data),
           "--out", str(mnt / "run"), "--no-progress"]
    weights = tmp_path / "final.pt"
    out = subprocess.run(["unshare", "-Urm", sys.executable, "-c", _DISK_FULL_DRIVER, str(mnt),
                          str(used + state // 2), json.dumps(cmd), str(weights)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["rc"] == 1, r["err"]
    last = r["err"].strip().splitlines()[-1]
    assert last.startswith("m3dhmr train: error:") and "no space left on device" in last, r["err"]
    assert "Traceback" not in r["err"], r["err"]
    assert r["temps"] == [] and r["state_step"] in (2, 4)
    assert r["rc2"] == 0, r["err2"]
    _reference_run(cmd, mnt / "run", tmp_path / "ref")
    got, ref = torch.load(weights, weights_only=True), _weights(tmp_path / "ref")
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=0, atol=1e-6, msg=k)
