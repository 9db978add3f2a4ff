"""Checkpoints: model weights in safetensors, training state loadable with ``weights_only=True``.

A run folder holds ``checkpoints/last.safetensors`` (+ ``epoch_XXX.safetensors`` per epoch)
whose metadata carries the experiment config as JSON, the format version and the
progress, and ``checkpoints/last.state.pt`` with the model weights and the optimiser,
scaler, progress and RNG states as tensors and plain containers only.

The state file is the checkpoint that ``--resume`` reads, complete on its own, and it is
written first: each file goes to a temporary file and is renamed (:mod:`m3dhmr.fileio`),
so the previous good state stays until the new one is whole, and a kill (or a full
disk) at any moment leaves a state file that resumes. ``last.safetensors`` is the copy of
the weights for users; a kill between the two files leaves it one checkpoint behind, and
:func:`load_resume_point` rewrites it from the state.

Reading weights back (:func:`read_weights`, :func:`load_weights_into`,
:func:`load_model_from_checkpoint`) is :mod:`m3dhmr.model_io`'s, re-exported here.
"""

from __future__ import annotations

import io
import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from m3dhmr.errors import InputError
from m3dhmr.experiment import ExperimentConfig, experiment_from_json, experiment_to_json
from m3dhmr.fileio import atomic_write_bytes
# The weights file format and its readers live in m3dhmr.model_io (the run-time layer below
# training); the names are re-exported here for users' imports.
from m3dhmr.model_io import (
    FORMAT,
    FORMAT_VERSION,
    check_compatible,
    check_tensor_dtypes,
    dense_state_dict,
    dense_state_dict_shapes,
    load_model_from_checkpoint,
    load_weights_into,
    read_weights,
    safetensors_bytes,
)

log = logging.getLogger(__name__)

LAST_WEIGHTS = "last.safetensors"
LAST_STATE = "last.state.pt"


@dataclass(frozen=True)
class Progress:
    """Where training stands.

    ``epoch_index`` counts epochs over both stages (stage-1 epochs first); ``batch_in_epoch``
    batches of that epoch are done; ``global_step`` optimiser steps are done in all.
    """

    epoch_index: int = 0
    batch_in_epoch: int = 0
    global_step: int = 0
    finished: bool = False


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def epoch_weights_name(epochs_done: int) -> str:
    return f"epoch_{epochs_done:03d}.safetensors"


def save_weights(path: str | Path, model: torch.nn.Module, experiment: ExperimentConfig,
                 progress: Progress) -> None:
    """Write ``model``'s weights with the experiment and progress in the metadata, atomically."""
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "experiment": experiment_to_json(experiment),
        **{k: str(v) for k, v in asdict(progress).items()},
    }
    # Serialised in memory, then written: a full disk is then a plain OSError (ENOSPC), where
    # the libraries' own file writers fail with internal errors.
    atomic_write_bytes(path, safetensors_bytes(dense_state_dict(model), meta))


def progress_from_metadata(meta: dict[str, str]) -> Progress:
    return Progress(
        epoch_index=int(meta.get("epoch_index", 0)),
        batch_in_epoch=int(meta.get("batch_in_epoch", 0)),
        global_step=int(meta.get("global_step", 0)),
        finished=meta.get("finished", "False") == "True",
    )


# ---------------------------------------------------------------- training state


def rng_state() -> dict[str, Any]:
    """torch / CUDA / numpy / python RNG states as tensors and plain containers."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state({
        "bit_generator": "MT19937",
        "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
        "has_gauss": n["has_gauss"],
        "gauss": n["gauss"],
    })
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(path: str | Path, *, experiment: ExperimentConfig, progress: Progress,
                        optimizer: torch.optim.Optimizer, scaler: Any | None = None,
                        extra: dict[str, Any] | None = None, model: torch.nn.Module | None = None) -> None:
    """Write optimiser, scaler, progress and RNG states (and ``model``'s weights, which make
    the file a complete checkpoint) atomically (``weights_only``-loadable).

    ``extra``: more plain entries (ints, strings, tensors) stored at the top level.
    """
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "experiment": experiment_to_json(experiment),
        "progress": asdict(progress),
        **({"model": dense_state_dict(model)} if model is not None else {}),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "rng": rng_state(),
        **(extra or {}),
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getbuffer())


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Read a ``*.state.pt`` file with ``torch.load(weights_only=True)``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training state not found: {path} (cannot --resume without it)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt/unsafe files
        raise InputError(f"{path}: not a loadable training state ({e})") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(f"{path}: not an m3dhmr training state")
    return state


def save_checkpoint(ckdir: str | Path, model: torch.nn.Module, experiment: ExperimentConfig, progress: Progress,
                    optimizer: torch.optim.Optimizer, scaler: Any | None = None,
                    extra: dict[str, Any] | None = None, epoch_file: bool = False) -> None:
    """Write the run's checkpoint into ``ckdir``: the complete state first, then the weights
    (see the module doc for why that order survives a kill at any moment)."""
    ckdir = Path(ckdir)
    save_training_state(ckdir / LAST_STATE, experiment=experiment, progress=progress, optimizer=optimizer,
                        scaler=scaler, extra=extra, model=model)
    save_weights(ckdir / LAST_WEIGHTS, model, experiment, progress)
    if epoch_file:
        save_weights(ckdir / epoch_weights_name(progress.epoch_index), model, experiment, progress)


@dataclass(frozen=True)
class RunFiles:
    """What a run's checkpoint folder holds: the step of its state and weights files
    (None where the file is absent), and whether the weights are of a finished run."""

    state_step: int | None
    weights_step: int | None
    finished: bool

    @property
    def empty(self) -> bool:
        return self.state_step is None and self.weights_step is None

    def describe(self) -> str:
        if self.state_step is not None:
            return f"a run at step {self.state_step}{' (finished)' if self.finished else ''}"
        return f"{LAST_WEIGHTS} of step {self.weights_step}{' (finished)' if self.finished else ''}"


def inspect_run(ckdir: str | Path) -> RunFiles:
    """The steps of ``ckdir``'s checkpoint files, read from their headers (cheap)."""
    ckdir = Path(ckdir)
    state_step = weights_step = None
    finished = False
    if (ckdir / LAST_WEIGHTS).is_file():
        try:
            from safetensors import safe_open  # heavy: safetensors loads on first use

            with safe_open(str(ckdir / LAST_WEIGHTS), framework="pt") as f:
                p = progress_from_metadata(dict(f.metadata() or {}))
            weights_step, finished = p.global_step, p.finished
        except Exception:  # unreadable weights still count as something not to overwrite
            weights_step = -1
    if (ckdir / LAST_STATE).is_file():
        try:
            p = Progress(**load_training_state(ckdir / LAST_STATE)["progress"])
            state_step, finished = p.global_step, p.finished
        except (ValueError, TypeError, KeyError):
            state_step = -1
    return RunFiles(state_step, weights_step, finished)


def load_resume_point(ckdir: str | Path, repair: bool = True
                      ) -> tuple[dict[str, torch.Tensor], dict[str, Any], Progress]:
    """``(weights, training state, progress)`` to resume from ``ckdir``'s complete checkpoint.

    The weights come from the state file; a ``last.safetensors`` left behind by a kill
    between the two files is rewritten to match (``repair``; off for the DDP ranks that
    only read). States written before the weights moved
    into them (format 1 without ``model``) are read with ``last.safetensors``, which
    must then be of the same step.
    """
    ckdir = Path(ckdir)
    state_path, weights_path = ckdir / LAST_STATE, ckdir / LAST_WEIGHTS
    state = load_training_state(state_path)
    progress = Progress(**state["progress"])
    tensors = state.pop("model", None)
    if tensors is None:
        tensors, meta = read_weights(weights_path)
        saved = progress_from_metadata(meta)
        if saved.global_step != progress.global_step:
            raise InputError(f"{ckdir}: {LAST_WEIGHTS} (step {saved.global_step}) and {LAST_STATE} "
                             f"(step {progress.global_step}) disagree, and this older state holds no weights")
        return tensors, state, progress
    check_tensor_dtypes(tensors, str(state_path))
    if repair and inspect_run(ckdir).weights_step != progress.global_step:
        log.warning("%s is not of its state's step %d (killed while checkpointing): rewriting it",
                    weights_path, progress.global_step)
        meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "experiment": state["experiment"],
                **{k: str(v) for k, v in asdict(progress).items()}}
        atomic_write_bytes(weights_path, safetensors_bytes({k: v.contiguous() for k, v in tensors.items()}, meta))
    return tensors, state, progress


__all__ = ["FORMAT", "FORMAT_VERSION", "LAST_STATE", "LAST_WEIGHTS", "Progress", "RunFiles", "check_compatible",
           "check_tensor_dtypes", "checkpoint_dir", "dense_state_dict", "dense_state_dict_shapes",
           "epoch_weights_name", "experiment_from_json", "inspect_run", "load_model_from_checkpoint",
           "load_resume_point", "load_training_state", "load_weights_into", "progress_from_metadata",
           "read_weights", "rng_state", "safetensors_bytes", "save_checkpoint", "save_training_state",
           "save_weights", "set_rng_state"]
