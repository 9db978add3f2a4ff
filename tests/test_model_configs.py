"""Every YAML in configs/ loads strictly as an ExperimentConfig: every key written reaches
the config, and a misspelt key is an error."""

from pathlib import Path

import pytest
import torch
import yaml

from m3dhmr.config_loader import ConfigError, from_dict
from m3dhmr.models import ModelConfig, build_model
from model_helpers import tiny_topology

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
EXPECTED = {"m3dhmr_r18", "m3dhmr_r34", "spiralconv_r18", "dsconv_r18", "wo_dsc_r18", "wo_roi_r18",
            "dsc_k2_r18", "dsc_k4_r18", "dsc_k8_r18", "dsc_k16_r18", "synthetic_cpu"}


def test_all_expected_configs_exist():
    assert EXPECTED <= {p.stem for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_strictly(path):
    text = path.read_text()
    assert text.startswith("#"), f"{path.name} needs a header comment naming its paper table/row"
    data = yaml.safe_load(text)
    assert set(data) <= {"model", "loss", "train", "data"}
    from m3dhmr.experiment import ExperimentConfig

    exp = from_dict(ExperimentConfig, data)
    # Every key written in the file reached the config (nothing silently ignored).
    for section, values in data.items():
        for key, value in (values or {}).items():
            got = getattr(getattr(exp, section), key)
            if isinstance(value, dict):
                for k2, v2 in value.items():
                    assert _same(getattr(got, k2), v2), (path.name, section, key, k2)
            else:
                assert _same(got, value), (path.name, section, key)
    # A misspelt key is an error naming it.
    bad = dict(data, model={**data["model"], "dsc_kernel": 8})
    with pytest.raises(ConfigError, match="dsc_kernel"):
        from_dict(ExperimentConfig, bad)


def _same(got, written) -> bool:
    if isinstance(written, list):
        return list(got) == written
    return got == written


def test_paper_rows_differ_where_they_should():
    load = lambda name: from_dict(ModelConfig, yaml.safe_load((CONFIGS[0].parent / f"{name}.yaml").read_text())["model"])
    assert (load("m3dhmr_r18").conv, load("m3dhmr_r18").roi, load("m3dhmr_r18").dsc_kernels) == ("dsc", True, 8)
    assert load("m3dhmr_r34").backbone == "resnet34"
    assert (load("spiralconv_r18").conv, load("spiralconv_r18").roi) == ("spiral", False)
    assert (load("wo_dsc_r18").conv, load("wo_dsc_r18").roi) == ("spiral", True)
    assert (load("wo_roi_r18").conv, load("wo_roi_r18").roi) == ("dsc", False)
    assert load("dsconv_r18").conv == "dsconv"
    assert [load(f"dsc_k{k}_r18").dsc_kernels for k in (2, 4, 8, 16)] == [2, 4, 8, 16]


def test_synthetic_cpu_builds_and_runs():
    data = yaml.safe_load((CONFIGS[0].parent / "synthetic_cpu.yaml").read_text())
    cfg = from_dict(ModelConfig, data["model"])
    model = build_model(cfg, tiny_topology(levels=cfg.levels))
    out = model(torch.rand(2, 3, cfg.input_size, cfg.input_size))
    assert torch.isfinite(out.vertices).all()


def test_bad_model_values_are_clear_errors():
    with pytest.raises(ConfigError, match="model.conv"):
        from_dict(ModelConfig, {"conv": "gcn"}, "model")
    with pytest.raises(ConfigError, match="unknown config key"):
        from_dict(ModelConfig, {"kernels": 8}, "model")
    with pytest.raises(ConfigError, match="decoder_channels"):
        from_dict(ModelConfig, {"levels": 3}, "model")
    with pytest.raises(ConfigError, match="input_size"):
        from_dict(ModelConfig, {"input_size": 100}, "model")
    with pytest.raises(ConfigError, match="dsc_kernels"):
        from_dict(ModelConfig, {"dsc_kernels": 0}, "model")


@pytest.mark.parametrize("key, value", [
    ("input_size", 32 * 1024),
    ("stack_channels", 100_000),
    ("latent_channels", 100_000),
    ("stack2_channels", [16, 16, 1_000_000]),
    ("dsc_kernels", 10_000),
    ("spiral_length", 10_000),
    ("roi_spiral_length", 10_000),
    ("dilation", 1_000),
    ("roi_dilation", 1_000),
])
def test_sizes_that_allocate_memory_are_bounded(key, value):
    """A hostile checkpoint's config cannot ask for gigabytes when the model is built."""
    with pytest.raises(ConfigError, match=f"model.{key}: .*(maximum|<=)"):
        from_dict(ModelConfig, {key: value}, "model")


def test_too_many_levels_and_huge_decoder_channels_are_refused():
    with pytest.raises(ConfigError, match="model.levels: 1000 is larger than the maximum"):
        from_dict(ModelConfig, {"levels": 1000, "decoder_channels": [8] * 1000}, "model")
    with pytest.raises(ConfigError, match="model.decoder_channels: .*<= 4096"):
        from_dict(ModelConfig, {"decoder_channels": [32, 64, 128, 10**9]}, "model")


def test_checkpoint_config_asking_for_too_much_is_refused_before_building():
    import json

    from m3dhmr.experiment import ExperimentConfig, experiment_from_json

    good = json.dumps({"model": {"input_size": 1024, "latent_channels": 4096}})
    assert experiment_from_json(good).model.input_size == 1024  # the bounds themselves are allowed
    bad = json.dumps({"model": {"input_size": 65536}})
    with pytest.raises(ConfigError, match="checkpoint: .*model.input_size: 65536 is larger than the maximum 1024"):
        experiment_from_json(bad)
    assert ExperimentConfig().model.input_size <= 1024
