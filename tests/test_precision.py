"""train.amp: auto picks bf16 on a CPU only with AMX (m3dhmr.train.precision)."""

from __future__ import annotations

import logging

import pytest
import torch

import m3dhmr.train.precision as precision
from m3dhmr.train.precision import resolve_amp

CPU = torch.device("cpu")


@pytest.fixture
def amx(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) AMX-BF16."""
    def set_amx(value: bool) -> None:
        monkeypatch.setattr(precision, "cpu_has_amx_bf16", lambda: value)
    return set_amx


def test_auto_on_cpu_follows_amx(amx):
    amx(True)
    assert resolve_amp("auto", CPU) is torch.bfloat16
    amx(False)
    assert resolve_amp("auto", CPU) is None


def test_explicit_choices_on_cpu(amx, caplog):
    amx(False)
    assert resolve_amp("off", CPU) is None
    with caplog.at_level(logging.WARNING):
        assert resolve_amp("bf16", CPU) is torch.bfloat16  # honoured, but the user is told it is slow
    assert "without AMX" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert resolve_amp("fp16", CPU) is None  # fp16 autocast is CUDA-only
    assert "fp16" in caplog.text
    amx(True)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert resolve_amp("bf16", CPU) is torch.bfloat16
    assert caplog.text == ""


def test_unknown_choice_is_an_error():
    with pytest.raises(ValueError, match="train.amp"):
        resolve_amp("bfloat16", CPU)


def test_the_packaged_configs_use_auto():
    from m3dhmr.experiment import load_experiment, packaged_configs

    for name in packaged_configs():
        assert load_experiment(name).train.amp == "auto", name
