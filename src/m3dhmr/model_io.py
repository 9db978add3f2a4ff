"""Model weights I/O: the checkpoint format, read, checked and loaded into a model.

The run-time half of a checkpoint: a ``.safetensors`` file whose metadata names the format
(:data:`FORMAT`, :data:`FORMAT_VERSION`) and carries the experiment config as JSON. The
Predictor, the evaluation, the packaged models (:mod:`m3dhmr.pretrained`) and training all
read weights through this module; writing a run's checkpoints (weights with the training
progress, optimiser and RNG state) is training's part, :mod:`m3dhmr.train.checkpoint`.

A top-level module, not ``m3dhmr/models/weights.py``: it reads the whole experiment config
(:mod:`m3dhmr.experiment`, whose data and loss sections come from ``m3dhmr.data`` and
``m3dhmr.losses``), so it sits above them, where the network package does not; and not
``m3dhmr/weights.py``, which would sit beside ``m3dhmr/weights/``, the folder of packaged
models that :mod:`m3dhmr.pretrained` reads.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from m3dhmr.errors import InputError
from m3dhmr.experiment import ExperimentConfig, experiment_from_json
from m3dhmr.models import build_model

FORMAT = "m3dhmr-checkpoint"
FORMAT_VERSION = 1


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


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    # deferred: safetensors loads on first use, by the functions that read or write weights
    from safetensors.torch import save

    return save(tensors, metadata=metadata)


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
        raise InputError(f"{path}: not a readable safetensors checkpoint ({e})") from e
    if meta.get("format") != FORMAT:
        raise InputError(f"{path}: not an m3dhmr checkpoint (metadata format={meta.get('format')!r})")
    if int(meta.get("format_version", "-1")) > FORMAT_VERSION:
        raise InputError(f"{path}: checkpoint format version {meta['format_version']} is newer than "
                         f"this package's {FORMAT_VERSION}; upgrade m3dhmr")
    return tensors, meta


def check_tensor_dtypes(tensors: dict[str, torch.Tensor], where: str) -> None:
    """Raise ``ValueError`` for tensors of a kind no model holds (complex, bool, ...)."""
    odd = sorted(k for k, v in tensors.items() if v.dtype not in _STORED_DTYPES)
    if odd:
        raise InputError(f"{where}: {len(odd)} tensor(s) of an unexpected type, e.g. {odd[0]} "
                         f"({tensors[odd[0]].dtype})")


_STORED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64, torch.int32)


def check_compatible(model: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Raise ``ValueError`` naming the tensors a checkpoint lacks, has extra, or has in another
    shape or kind (an integer tensor for a float parameter would be cast silently)."""
    model_tensors = dense_state_dict_shapes(model)
    expected = {k: tuple(v.shape) for k, v in model_tensors.items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    shapes = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    kinds = sorted(k for k in set(expected) & set(got)
                   if model_tensors[k].is_floating_point() != tensors[k].is_floating_point())
    if kinds:
        k = kinds[0]
        raise InputError(f"{where}: {len(kinds)} tensor(s) of another kind than the model's, e.g. {k}: "
                         f"checkpoint {tensors[k].dtype}, model {model_tensors[k].dtype}")
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
    raise InputError(f"{where}: checkpoint does not match the model configuration (another template, "
                     f"vertex count or architecture?): " + "; ".join(parts))


def dense_state_dict_shapes(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if v.layout == torch.strided}


def load_weights_into(model: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Copy checkpoint tensors into ``model`` after :func:`check_compatible`."""
    check_compatible(model, tensors, where)
    bad = next((k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise InputError(f"{where}: tensor {bad} holds NaN or infinite values (a diverged or damaged checkpoint)")
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
    tensors, meta = read_weights(path)
    cfg = experiment or experiment_from_json(meta.get("experiment", "null"), where=str(path))
    if template is not None:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, template=str(template)))
    model = build_model(cfg.model)
    load_weights_into(model, tensors, str(path))
    model.to(device).eval()
    return model, cfg


__all__ = ["FORMAT", "FORMAT_VERSION", "check_compatible", "check_tensor_dtypes", "dense_state_dict",
           "dense_state_dict_shapes", "load_model_from_checkpoint", "load_weights_into", "read_weights",
           "safetensors_bytes"]
