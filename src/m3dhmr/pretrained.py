"""Weights that ship inside the package, loaded with no network access.

A packaged model is a manifest ``m3dhmr/weights/<name>.json`` beside its safetensors
shards (each at most 15 MiB, so every file stays small enough for any package index).
The manifest pins each shard's size and SHA-256, stores the experiment config the
weights were trained with, and names the licence; :func:`load_pretrained` checks all
three before building the model, so a truncated, edited or missing file is an error
that names it, never a half-loaded network. Tensors are stored as float16 (half the
size; the model runs in float32, and the error this adds is far below the model's:
``docs/MODEL_CARD.md``) and integer buffers as they are.

:func:`package_weights` writes a manifest and shards from a training checkpoint
(``scripts/package_weights.py`` calls it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from m3dhmr.fileio import atomic_write_bytes, atomic_write_json, sha256_file
from m3dhmr.errors import InputError

log = logging.getLogger(__name__)

#: Folder of the packaged manifests and shards.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: The model ``Predictor.from_pretrained()``, ``m3dhmr predict`` and ``m3dhmr eval`` use by default.
DEFAULT_MODEL = "m3dhmr_r18_synthetic"
#: Largest shard written by :func:`package_weights`.
SHARD_BYTES = 15 * 2**20
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class PretrainedInfo:
    """A packaged model's manifest: ``name``, ``experiment`` (config JSON text),
    ``files`` (list of ``{"file", "bytes", "sha256"}``), ``dtype``, ``licence`` and free-form ``metadata``."""

    name: str
    experiment: str
    files: tuple[dict[str, Any], ...]
    dtype: str
    licence: str
    metadata: dict[str, Any]


def available_models(weights_dir: Path = WEIGHTS_DIR) -> list[str]:
    """Names of the packaged models (manifests in ``weights_dir``)."""
    return sorted(p.stem for p in weights_dir.glob("*.json"))


def read_manifest(name: str = DEFAULT_MODEL, weights_dir: Path = WEIGHTS_DIR) -> PretrainedInfo:
    """The manifest of packaged model ``name`` (ValueError naming the file when it is malformed)."""
    path = Path(weights_dir) / f"{name}.json"
    if not path.is_file():
        have = available_models(weights_dir)
        raise FileNotFoundError(f"no packaged model {name!r} ({path} not found); packaged models: {have or 'none'}. "
                                "Reinstall m3dhmr, or pass --checkpoint with your own weights")
    try:
        d = json.loads(path.read_text())
        if d.get("format") != MANIFEST_FORMAT:
            raise InputError(f"manifest format {d.get('format')!r}, expected {MANIFEST_FORMAT}")
        files = tuple({"file": str(f["file"]), "bytes": int(f["bytes"]), "sha256": str(f["sha256"])}
                      for f in d["files"])
        if not files:
            raise InputError("no weight files listed")
        return PretrainedInfo(name=str(d["name"]), experiment=json.dumps(d["experiment"]), files=files,
                              dtype=str(d["dtype"]), licence=str(d["licence"]), metadata=dict(d.get("metadata", {})))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise InputError(f"{path}: not a valid m3dhmr weights manifest ({e})") from None


def read_pretrained_tensors(name: str = DEFAULT_MODEL, weights_dir: Path = WEIGHTS_DIR,
                            ) -> tuple[dict[str, torch.Tensor], PretrainedInfo]:
    """All tensors of a packaged model (floats as float32), after checking sizes and hashes."""
    # heavy: safetensors and the model modules (torchvision) load on first use; listing models needs neither
    from safetensors.torch import load_file

    info = read_manifest(name, weights_dir)
    tensors: dict[str, torch.Tensor] = {}
    for f in info.files:
        path = Path(weights_dir) / f["file"]
        if not path.is_file():
            raise FileNotFoundError(f"packaged weights {path} are missing (listed in {name}.json); reinstall m3dhmr")
        size = path.stat().st_size
        if size != f["bytes"] or sha256_file(path) != f["sha256"]:
            raise InputError(f"packaged weights {path} are corrupt ({size} bytes, expected {f['bytes']} with "
                             f"SHA-256 {f['sha256'][:16]}...); reinstall m3dhmr")
        for k, v in load_file(str(path)).items():
            if k in tensors:
                raise InputError(f"{path}: tensor {k!r} appears in two shards")
            tensors[k] = v.float() if v.is_floating_point() else v
    return tensors, info


def load_pretrained(name: str = DEFAULT_MODEL, device: str | torch.device = "cpu",
                    weights_dir: Path = WEIGHTS_DIR):
    """Build packaged model ``name`` and load its weights: ``(model in eval mode, ExperimentConfig)``.

    No network access: the topology is built from the package's own template and the
    weights come from ``weights_dir``.
    """
    from m3dhmr.experiment import experiment_from_json
    from m3dhmr.model_io import load_weights_into
    from m3dhmr.models import build_model

    tensors, info = read_pretrained_tensors(name, weights_dir)
    cfg = experiment_from_json(info.experiment, where=f"{name}.json")
    model = build_model(cfg.model)
    load_weights_into(model, tensors, f"packaged model {name}")
    return model.to(device).eval(), cfg


def package_weights(checkpoint: str | Path, name: str, out_dir: str | Path = WEIGHTS_DIR, *,
                    metadata: dict[str, Any] | None = None, licence: str = "Apache-2.0",
                    shard_bytes: int = SHARD_BYTES) -> Path:
    """Write ``out_dir/<name>.json`` and its float16 shards from a training checkpoint; returns the manifest.

    Tensors are assigned to shards in name order, a new shard starting before one would
    pass ``shard_bytes`` (a single larger tensor gets a shard of its own). Every file is
    written atomically, shards before the manifest, and shards of an earlier version of
    ``name`` are removed once the new manifest is in place.
    """
    from m3dhmr.model_io import read_weights, safetensors_bytes

    tensors, meta = read_weights(checkpoint)
    if "experiment" not in meta:
        raise InputError(f"{checkpoint}: no experiment config in its metadata (not an m3dhmr checkpoint)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k in sorted(tensors):
        v = tensors[k].half() if tensors[k].is_floating_point() else tensors[k]
        if not torch.isfinite(v.float()).all():
            raise InputError(f"{checkpoint}: tensor {k!r} is not finite in float16")
        nbytes = v.numel() * v.element_size()
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = v.contiguous()
        size += nbytes
    files = []
    for i, shard in enumerate(shards):
        fname = f"{name}-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        # In memory, then written: a full disk is a plain OSError (see train.checkpoint.save_weights).
        atomic_write_bytes(out_dir / fname, safetensors_bytes(shard, {"name": name}))
        files.append({"file": fname, "bytes": (out_dir / fname).stat().st_size, "sha256": sha256_file(out_dir / fname)})
    manifest = {
        "format": MANIFEST_FORMAT,
        "name": name,
        "dtype": "float16",
        "licence": licence,
        "files": files,
        "experiment": json.loads(meta["experiment"]),
        "metadata": {"global_step": int(meta.get("global_step", -1)), **(metadata or {})},
    }
    path = out_dir / f"{name}.json"
    atomic_write_json(path, manifest)
    keep = {f["file"] for f in files}
    for old in out_dir.glob(f"{name}-*-of-*.safetensors"):
        if old.name not in keep:
            old.unlink()
    return path


__all__ = ["DEFAULT_MODEL", "PretrainedInfo", "WEIGHTS_DIR", "available_models", "load_pretrained",
           "package_weights", "read_manifest", "read_pretrained_tensors"]
