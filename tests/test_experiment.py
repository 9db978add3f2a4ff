"""Experiment configs: defaults are the paper's recipe, strict loading, repository configs load."""

from __future__ import annotations

from pathlib import Path

import pytest

from m3dhmr.config_loader import ConfigError, from_dict
from m3dhmr.experiment import (
    DataConfig,
    ExperimentConfig,
    TrainConfig,
    experiment_from_json,
    experiment_to_json,
    load_experiment,
)
from m3dhmr.train.trainer import epoch_plan, learning_rate

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_the_papers_recipe():
    t = TrainConfig()
    assert (t.batch_size, t.epochs, t.lr, t.lr_milestones, t.lr_factor) == (32, 38, 1e-3, (30,), 0.1)
    cfg = ExperimentConfig()
    assert learning_rate(cfg, 2, 29) == pytest.approx(1e-3)
    assert learning_rate(cfg, 2, 30) == pytest.approx(1e-4)
    assert learning_rate(cfg, 2, 37) == pytest.approx(1e-4)
    plan = epoch_plan(cfg)
    assert len(plan) == t.stage1_epochs + 38 and plan[0] == (1, 0) and plan[-1] == (2, 37)


def test_learning_rate_hand_case():
    cfg = from_dict(ExperimentConfig, {"train": {"lr": 0.5, "lr_milestones": [1, 3], "lr_factor": 0.5,
                                                 "stage1_lr": 2.0, "stage1_lr_milestones": [2]}})
    assert [learning_rate(cfg, 2, e) for e in range(5)] == [0.5, 0.25, 0.25, 0.125, 0.125]
    assert [learning_rate(cfg, 1, e) for e in range(4)] == [2.0, 2.0, 1.0, 1.0]


def test_unknown_and_bad_keys_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="train.batchsize"):
        from_dict(ExperimentConfig, {"train": {"batchsize": 4}})
    with pytest.raises(ConfigError, match="batch_size"):
        from_dict(ExperimentConfig, {"train": {"batch_size": 0}})
    with pytest.raises(ConfigError, match="lr_milestones"):
        from_dict(ExperimentConfig, {"train": {"lr_milestones": [5, 2]}})
    with pytest.raises(ConfigError, match="num_workers"):
        from_dict(ExperimentConfig, {"data": {"num_workers": -1}})
    with pytest.raises(ConfigError, match="unknown"):
        from_dict(ExperimentConfig, {"optimizer": {}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=str(bad)):
        load_experiment(bad)
    with pytest.raises(FileNotFoundError):
        load_experiment(tmp_path / "missing.yaml")


def test_json_round_trip():
    cfg = from_dict(ExperimentConfig, {"train": {"batch_size": 8, "epochs": 3}, "data": {"two_view": False}})
    assert experiment_from_json(experiment_to_json(cfg)) == cfg
    with pytest.raises(ConfigError, match="ckpt.safetensors"):
        experiment_from_json("{not json", where="ckpt.safetensors")
    assert DataConfig().train_split == "training"


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_repository_configs_load(path):
    cfg = load_experiment(path)
    assert cfg.train.batch_size >= 1


def test_tiny_config_loads(tiny_config):
    cfg = load_experiment(tiny_config)
    assert cfg.model.input_size == 64 and len(epoch_plan(cfg)) == 3


def test_real_photo_keys_load_and_reject_bad_values():
    cfg = from_dict(ExperimentConfig, {"data": {"real_dir": "photos", "real_fraction": 0.5, "real_min_presence": 0.8,
                                                "real_weight": 2.0, "real_pseudo_cache": "labels.npz"}})
    d = cfg.data
    assert (d.real_dir, d.real_fraction, d.real_min_presence, d.real_weight, d.real_pseudo_cache) == \
        ("photos", 0.5, 0.8, 2.0, "labels.npz")
    assert experiment_from_json(experiment_to_json(cfg)) == cfg
    assert DataConfig().real_dir is None  # synthetic only unless asked
    for key, value in (("real_fraction", 0.0), ("real_fraction", 1.0), ("real_fraction", -0.2),
                       ("real_min_presence", 1.5), ("real_min_presence", -0.1), ("real_weight", -1.0),
                       ("real_weight", float("inf")), ("real_weight", float("nan")), ("real_dir", " "),
                       ("real_pseudo_cache", "")):
        with pytest.raises((ValueError, ConfigError), match=f"data.{key}"):
            from_dict(ExperimentConfig, {"data": {key: value}})
    with pytest.raises(ConfigError, match="real_fractoin"):
        from_dict(ExperimentConfig, {"data": {"real_fractoin": 0.5}})
