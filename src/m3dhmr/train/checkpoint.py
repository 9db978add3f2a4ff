"""Checkpoints: model weights in safetensors, training state loadable with ``weights_only=True``.

A run folder holds ``checkpoints/last.safetensors`` (+ ``epoch_XXX.safetensors`` per epoch)
whose metadata carries the experiment config as JSON, the format version and the
progress, and ``checkpoints/last.state.pt`` with the optimiser, scaler, progress and RNG
states as tensors and plain containers only. Both are written to a temporary file and
renamed (:mod:`m3dhmr.fileio`), so a killed run never leaves a broken checkpoint.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from m3dhmr.fileio import atomic_path
from m3dhmr.train.config import ExperimentConfig, experiment_from_json, experiment_to_json

log = logging.getLogger(__name__)

FORMAT = "m3dhmr-checkpoint"
FORMAT_VERSION = 1
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


def dense_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state as dense, contiguous, unshared CPU tensors (what safetensors stores).

    Sparse buffers (topology matrices) are rebuilt from the config and are not stored.
    """
    out = {}
    for k, v in model.state_dict().items():
        if v.layout != torch.strided:
            continue
        out[k] = v.detach().to("cpu", copy=True).contiguous()
    return out


def save_weights(path: str | Path, model: torch.nn.Module, experiment: ExperimentConfig,
                 progress: Progress) -> None:
    """Write ``model``'s weights with the experiment and progress in the metadata, atomically."""
    from safetensors.torch import save_file

    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "experiment": experiment_to_json(experiment),
        **{k: str(v) for k, v in asdict(progress).items()},
    }
    with atomic_path(path) as tmp:
        save_file(dense_state_dict(model), str(tmp), metadata=meta)


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a weights file; errors name the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable safetensors checkpoint ({e})") from e
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not an m3dhmr checkpoint (metadata format={meta.get('format')!r})")
    if int(meta.get("format_version", "-1")) > FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format version {meta['format_version']} is newer than "
                         f"this package's {FORMAT_VERSION}; upgrade m3dhmr")
    return tensors, meta


def progress_from_metadata(meta: dict[str, str]) -> Progress:
    return Progress(
        epoch_index=int(meta.get("epoch_index", 0)),
        batch_in_epoch=int(meta.get("batch_in_epoch", 0)),
        global_step=int(meta.get("global_step", 0)),
        finished=meta.get("finished", "False") == "True",
    )


def check_compatible(model: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Raise ``ValueError`` naming the tensors a checkpoint lacks, has extra, or has in another shape."""
    expected = {k: tuple(v.shape) for k, v in dense_state_dict_shapes(model).items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    shapes = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    if not (missing or extra or shapes):
        return

    def few(keys: list[str], fmt) -> str:
        shown = ", ".join(fmt(k) for k in keys[:4])
        return shown + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")

    parts = []
    if shapes:
        parts.append(f"{len(shapes)} tensor(s) of another shape: "
                     + few(shapes, lambda k: f"{k} checkpoint {list(got[k])} vs model {list(expected[k])}"))
    if missing:
        parts.append(f"{len(missing)} model tensor(s) missing from the checkpoint: " + few(missing, str))
    if extra:
        parts.append(f"{len(extra)} checkpoint tensor(s) the model lacks: " + few(extra, str))
    raise ValueError(f"{where}: checkpoint does not match the model configuration (another template, "
                     f"vertex count or architecture?): " + "; ".join(parts))


def dense_state_dict_shapes(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if v.layout == torch.strided}


def load_weights_into(model: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Copy checkpoint tensors into ``model`` after :func:`check_compatible`."""
    check_compatible(model, tensors, where)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    # Only non-stored (sparse) buffers may be missing; check_compatible covered the rest.
    assert not unexpected, unexpected


def load_model_from_checkpoint(
    path: str | Path,
    device: str | torch.device = "cpu",
    experiment: ExperimentConfig | None = None,
    template: str | None = None,
):
    """Build the model a checkpoint was trained with and load its weights.

    ``experiment`` overrides the config stored in the checkpoint (its model section must
    produce the same tensor names and shapes, else a ``ValueError`` names the mismatches);
    ``template`` replaces its ``model.template`` (e.g. a MANO pickle now at another path).
    Returns ``(model in eval mode on device, ExperimentConfig)``.
    """
    import dataclasses

    from m3dhmr.models import build_model

    tensors, meta = read_weights(path)
    cfg = experiment or experiment_from_json(meta.get("experiment", "null"), where=str(path))
    if template is not None:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, template=str(template)))
    model = build_model(cfg.model)
    load_weights_into(model, tensors, str(path))
    model.to(device).eval()
    return model, cfg


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
                        extra: dict[str, Any] | None = None) -> None:
    """Write optimiser, scaler, progress and RNG states atomically (``weights_only``-loadable).

    ``extra``: more plain entries (ints, strings, tensors) stored at the top level.
    """
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "experiment": experiment_to_json(experiment),
        "progress": asdict(progress),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "rng": rng_state(),
        **(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Read a ``*.state.pt`` file with ``torch.load(weights_only=True)``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training state not found: {path} (cannot --resume without it)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt/unsafe files
        raise ValueError(f"{path}: not a loadable training state ({e})") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not an m3dhmr training state")
    return state
