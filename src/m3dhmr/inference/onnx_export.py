"""Export the network (image -> vertices, joints3d, joints2d) to ONNX, describe it, cache it.

The registration (a few 3x3 solves) stays in torch after the network: it is cheap,
and exporting its data-dependent outlier rounds would gain nothing.

Exporter choice: ``torch.onnx.export(..., dynamo=False)`` (the TorchScript tracer). With
torch 2.14 (and 2.11) it exports the whole model, including ``grid_sample`` (opset >= 16)
and the spiral gathers, with a dynamic batch axis through ``dynamic_axes``; the graph is
one file (no external data). Measured parity with PyTorch: ~1e-5 crop px on the 2D
joints, < 1e-6 m on the vertices (tests/test_onnx_export.py, ``m3dhmr export-onnx``).

What the file says about itself, so that it can be used without this package:

- axes: the batch axis is the one dynamic axis (``dim_param`` "batch"); every other axis
  keeps its fixed size and every axis is named in its ``denotation``
  (:data:`ONNX_AXES`). The tracer alone named the vertex axis ``Subvertices_dim_1``.
- ``metadata_props``: keys ``m3dhmr.<field>`` with JSON values (:func:`onnx_metadata`):
  input layout and range, output shapes, units and frames, joint order, faces, template,
  package version, opset, a hash of the weights and the ``precision`` ("fp32", or "int8"
  with its ``quantization``: :mod:`m3dhmr.inference.quantize`). :func:`read_onnx_metadata`
  reads them back; :attr:`OnnxNetwork.metadata <m3dhmr.inference.networks.OnnxNetwork>` too.

:func:`cached_onnx` keeps one export per model in a per-user cache, so running a model
with ONNX Runtime exports it once, not on every run; ``precision="int8"`` keeps the
quantised file there too (calibrated once, :func:`m3dhmr.inference.quantize.cached_int8_onnx`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import m3dhmr
from m3dhmr.conventions import JOINT_NAMES, METRES, NUM_JOINTS, ROOT_JOINT
from m3dhmr.errors import InputError
from m3dhmr.fileio import TEMP_GLOB, atomic_path, os_error_message
from m3dhmr.inference.networks import (ONNX_INPUT, ONNX_METADATA_PREFIX, ONNX_OUTPUTS, OnnxNetwork,
                                       parse_onnx_metadata)

log = logging.getLogger(__name__)

#: grid_sample (the ROI-aligned sampling of the decoder) needs opset 16.
MIN_OPSET = 16
DEFAULT_OPSET = 17
#: Largest accepted |ONNX Runtime - PyTorch| difference (issue 7).
PARITY_TOLERANCE = 1e-4
#: Version of the ``m3dhmr.*`` metadata layout (bump when a field changes meaning).
METADATA_FORMAT = 1
#: Name of each axis of the graph's input and outputs (written as ONNX dimension denotations).
ONNX_AXES: dict[str, tuple[str, ...]] = {
    ONNX_INPUT: ("batch", "channels", "height", "width"),
    "vertices": ("batch", "vertices", "xyz"),
    "joints3d": ("batch", "joints", "xyz"),
    "joints2d": ("batch", "joints", "uv"),
}
#: Environment variable naming the cache root (its ``onnx`` subfolder holds the exports).
CACHE_ENV = "M3DHMR_CACHE_DIR"
#: A temporary in the cache older than this is a killed run's leftover (an export takes seconds).
STALE_TEMPORARY_S = 3600.0


class ExportWrapper(nn.Module):
    """``images (B, 3, S, S) -> (vertices (B, V, 3), joints3d (B, 21, 3), joints2d (B, 21, 2))``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(images)
        return out.vertices, out.joints3d, out.joints2d


@dataclass(frozen=True)
class ParityReport:
    """Max |ONNX Runtime - PyTorch| per output on a random batch, and the batch size used."""

    max_abs_diff: dict[str, float]
    batch: int

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values())


# ----------------------------------------------------------------------------- hashes and metadata

def tensors_sha256(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """Hex SHA-256 of named tensors, in name order, over each name, dtype, shape and raw bytes."""
    h = hashlib.sha256()
    for name, t in sorted(named, key=lambda kv: kv[0]):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        # Raw bytes through a uint8 view: works for every dtype (bfloat16 has no numpy type).
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def weights_sha256(model: nn.Module) -> str:
    """Hash of ``model.state_dict()`` (:func:`tensors_sha256`): equal for equal weights."""
    return tensors_sha256(model.state_dict().items())


def onnx_metadata(model: nn.Module, opset: int = DEFAULT_OPSET, source: str | None = None) -> dict[str, Any]:
    """What an fp32 export of ``model`` records about itself: field -> JSON-serialisable value.

    Stored as ``metadata_props`` ``m3dhmr.<field>`` = JSON text. ``source`` (the packaged
    model's name or the checkpoint's file name) is recorded when given. ``precision`` is
    "fp32" (an int8 file says "int8": :func:`m3dhmr.inference.quantize.quantize_onnx`).
    """
    size = int(model.cfg.input_size)
    nv = int(model.num_vertices)
    shapes = axis_sizes(size, nv)
    axes3d = "OpenCV camera axes: x right, y down, z forward"
    meta: dict[str, Any] = {
        "format": METADATA_FORMAT,
        "package_version": m3dhmr.__version__,
        "opset": int(opset),
        "input": {"name": ONNX_INPUT, "shape": shapes[ONNX_INPUT], "axes": ONNX_AXES[ONNX_INPUT],
                  "layout": "NCHW", "colour": "RGB", "dtype": "float32", "range": [0.0, 1.0],
                  "note": "a square hand crop; ImageNet normalisation is inside the graph"},
        "input_size": size,
        "outputs": {
            "vertices": {"shape": shapes["vertices"], "axes": ONNX_AXES["vertices"], "dtype": "float32",
                         "units": METRES, "frame": f"root-relative (joint {ROOT_JOINT}, the wrist, at the origin), "
                                                   f"{axes3d}"},
            "joints3d": {"shape": shapes["joints3d"], "axes": ONNX_AXES["joints3d"], "dtype": "float32",
                         "units": METRES, "frame": f"root-relative (joint {ROOT_JOINT}, the wrist, at the origin), "
                                                   f"{axes3d}; joint_regressor @ vertices"},
            "joints2d": {"shape": shapes["joints2d"], "axes": ONNX_AXES["joints2d"], "dtype": "float32",
                         "units": "px", "frame": f"pixels of the {size} x {size} input crop, x right, y down, "
                                                 "pixel centres at integers"},
        },
        "num_joints": NUM_JOINTS,
        "joint_names": list(JOINT_NAMES),
        "hand": "right",
        "left_hands": f"run the horizontally mirrored crop, then negate x of vertices and joints3d, map "
                      f"joints2d x to {size - 1} - x and reverse the faces' winding",
        "num_vertices": nv,
        "faces": model.faces.detach().cpu().numpy().astype(int).tolist(),
        "template": str(getattr(model.cfg, "template", "")),
        "weights_sha256": weights_sha256(model),
        "precision": "fp32",
    }
    if source is not None:
        meta["source"] = str(source)
    return meta


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The ``m3dhmr.*`` metadata of ONNX file ``path`` as a dict (see :func:`onnx_metadata`);
    ``{}`` for a file exported without it."""
    import onnx  # heavy: onnx loads on first use, so the PyTorch backend never needs it

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and onnx's own errors for bad files
        raise InputError(f"{path}: not a readable ONNX file ({e})") from e
    return parse_onnx_metadata({p.key: p.value for p in proto.metadata_props})


def axis_sizes(size: int, num_vertices: int) -> dict[str, list[int | str]]:
    """Shape of the input and each output, "batch" for the dynamic axis."""
    return {ONNX_INPUT: ["batch", 3, size, size], "vertices": ["batch", num_vertices, 3],
            "joints3d": ["batch", NUM_JOINTS, 3], "joints2d": ["batch", NUM_JOINTS, 2]}


def describe_graph(proto, shapes: dict[str, list[int | str]], meta: dict[str, Any]) -> None:
    """Name the axes and write the metadata into the ModelProto ``proto`` (in place)."""
    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(shapes[value.name]):  # the model's forward changed: a bug, not an input
            raise RuntimeError(f"ONNX {value.name!r} has {len(dims)} axes, expected {shapes[value.name]}")
        for dim, name, size in zip(dims, ONNX_AXES[value.name], shapes[value.name]):
            # dim_value and dim_param are a oneof: setting one clears the other, which
            # replaces the tracer's symbolic vertex axis by the fixed vertex count.
            if isinstance(size, int):
                dim.dim_value = size
            else:
                dim.dim_param = size
            dim.denotation = name
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=ONNX_METADATA_PREFIX + key, value=json.dumps(value))
    proto.doc_string = (f"m3dhmr hand mesh network: images (batch, 3, {shapes[ONNX_INPUT][-1]}, "
                        f"{shapes[ONNX_INPUT][-1]}) RGB in [0, 1] -> vertices, joints3d (root-relative metres, "
                        "OpenCV axes), joints2d (crop pixels); see metadata_props m3dhmr.*")


# ----------------------------------------------------------------------------- export and parity

def export_onnx(model: nn.Module, path: str | Path, opset: int = DEFAULT_OPSET, *,
                source: str | None = None) -> Path:
    """Write ``model`` (an :class:`m3dhmr.models.M3DHMR`) to ``path``.

    Graph: ``images (batch, 3, S, S)`` float32 RGB in [0, 1] -> ``vertices (batch, V, 3)``,
    ``joints3d (batch, 21, 3)`` (root-relative metres, OpenCV axes) and ``joints2d (batch,
    21, 2)`` (crop pixels); batch is dynamic, every axis named (:data:`ONNX_AXES`); the
    metadata of :func:`onnx_metadata` is in ``metadata_props``. The file is written to a
    temporary name and renamed (:mod:`m3dhmr.fileio`), so a failed or killed export leaves
    no file under ``path``.

    The int8 graph builds on this one: :func:`m3dhmr.inference.quantize.export_network`.
    """
    check_opset(opset)
    return export_graph(model, path, opset, onnx_metadata(model, opset, source))


def check_opset(opset: int) -> None:
    if opset < MIN_OPSET:
        raise InputError(f"--opset {opset}: grid_sample needs opset >= {MIN_OPSET}")


def export_graph(model: nn.Module, path: str | Path, opset: int, meta: dict[str, Any]) -> Path:
    import onnx

    path = Path(path)
    shapes = axis_sizes(int(model.cfg.input_size), int(model.num_vertices))
    wrapper = ExportWrapper(model).cpu().eval()
    dummy = torch.rand(2, 3, shapes[ONNX_INPUT][-1], shapes[ONNX_INPUT][-1])
    axes = {ONNX_INPUT: {0: "batch"}, **{name: {0: "batch"} for name in ONNX_OUTPUTS}}
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python constants are expected
        torch.onnx.export(wrapper, (dummy,), str(tmp), input_names=[ONNX_INPUT], output_names=list(ONNX_OUTPUTS),
                          dynamic_axes=axes, opset_version=int(opset), dynamo=False, do_constant_folding=True)
        # The tracer cannot name axes or add metadata: edit its file before the rename.
        proto = onnx.load(str(tmp))
        describe_graph(proto, shapes, meta)
        onnx.save(proto, str(tmp))
    log.info("exported ONNX opset %d to %s", opset, path)
    return path


def check_parity(model: nn.Module, path: str | Path, batch: int = 2, seed: int = 0,
                 threads: int | None = None) -> ParityReport:
    """Run PyTorch and ONNX Runtime on the same random batch (B, 3, S, S); max abs difference per output."""
    size = int(model.cfg.input_size)
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, size, size, generator=g)
    with torch.inference_mode():
        ref = ExportWrapper(model).cpu().eval()(images)
    got = OnnxNetwork(path, threads=threads)(images.numpy())
    diffs = {name: float(np.abs(r.numpy() - getattr(got, name)).max()) for name, r in zip(ONNX_OUTPUTS, ref)}
    return ParityReport(max_abs_diff=diffs, batch=batch)


# ----------------------------------------------------------------------------- per-user cache

def onnx_cache_dir() -> Path:
    """``$M3DHMR_CACHE_DIR/onnx``, else ``$XDG_CACHE_HOME/m3dhmr/onnx``, else ``~/.cache/m3dhmr/onnx``."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root) / "onnx"
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec ignores a relative XDG_CACHE_HOME.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "m3dhmr" / "onnx"


def onnx_cache_key(model: nn.Module, opset: int = DEFAULT_OPSET) -> str:
    """Hex SHA-256 naming ``model``'s export: every parameter and buffer (the non-persistent
    topology buffers too: a changed template folder changes the graph), the model config,
    the opset, the metadata format and the versions of m3dhmr, torch and onnx."""
    import onnx

    h = hashlib.sha256()
    h.update(tensors_sha256([*model.named_parameters(), *model.named_buffers()]).encode())
    h.update(json.dumps(dataclasses.asdict(model.cfg), sort_keys=True, default=str).encode())
    h.update(f"opset={int(opset)} format={METADATA_FORMAT} m3dhmr={m3dhmr.__version__} "
             f"torch={torch.__version__} onnx={onnx.__version__}".encode())
    return h.hexdigest()


def cache_entry_ok(path: Path, key: str) -> bool:
    """Whether ``path`` parses and is the export for ``key``. A truncated file fails to
    parse or lacks ``metadata_props``, which protobuf writes after the graph."""
    try:
        meta = read_onnx_metadata(path)
    except (OSError, InputError):
        return False
    return meta.get("cache_key") == key


def remove_stale_cache_temporaries(folder: Path) -> None:
    """Remove export temporaries that killed runs left (old enough that no live run owns them)."""
    now = time.time()
    for p in folder.glob(TEMP_GLOB):
        try:
            if p.is_file() and now - p.stat().st_mtime > STALE_TEMPORARY_S:
                p.unlink()
        except OSError:  # another process removed it first, or no permission: harmless
            pass


def cached_onnx(model: nn.Module, opset: int = DEFAULT_OPSET, cache_dir: str | Path | None = None) -> Path:
    """``model`` exported once into the per-user cache: ``<cache_dir>/<key[:32]>.onnx``
    (its int8 twin: :func:`m3dhmr.inference.quantize.cached_int8_onnx`).

    ``cache_dir`` defaults to :func:`onnx_cache_dir`; the key is :func:`onnx_cache_key`.
    A cached file is reused when it parses and records that key; otherwise (missing,
    truncated, from another model) it is exported again. The export is written to a
    temporary and renamed, so a concurrent or killed run never leaves a half file under
    the final name. Raises ``OSError`` when the folder cannot be written
    (:func:`cached_onnx_file` falls back to a temporary export then).
    """
    check_opset(opset)
    folder = Path(cache_dir) if cache_dir is not None else onnx_cache_dir()
    key = onnx_cache_key(model, opset)
    path = folder / f"{key[:32]}.onnx"
    if path.is_file():
        if cache_entry_ok(path, key):
            log.debug("ONNX cache hit: %s", path)
            return path
        log.warning("ONNX cache file %s is unreadable or stale: exporting the model again", path)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_cache_temporaries(folder)
    log.info("exporting the network for ONNX Runtime into the cache %s (once per model)", path)
    return export_graph(model, path, opset, {**onnx_metadata(model, opset), "cache_key": key})


@contextmanager
def cached_onnx_file(model: nn.Module, opset: int = DEFAULT_OPSET, cache_dir: str | Path | None = None, *,
                     cached: Callable[..., Path] | None = None,
                     export: Callable[..., Path] | None = None) -> Iterator[Path]:
    """Yield :func:`cached_onnx`'s file; when the cache cannot be written (read-only home,
    full disk), log a warning and yield a temporary export, removed on exit. An ONNX
    Runtime session holds the graph in memory, so load the file inside the ``with``.

    ``cached(model, opset, cache_dir)`` and ``export(model, path, opset)`` replace
    :func:`cached_onnx` and :func:`export_onnx` (the int8 files:
    :func:`m3dhmr.inference.quantize.cached_network_file`)."""
    cached = cached_onnx if cached is None else cached
    export = export_onnx if export is None else export
    try:
        path = cached(model, opset, cache_dir)
    except OSError as e:
        log.warning("cannot write the ONNX cache (%s); exporting to a temporary file for this run "
                    "(set %s to a writable folder to keep the export)", os_error_message(e), CACHE_ENV)
        path = None
    if path is not None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="m3dhmr-onnx-") as tmpdir:
        yield export(model, Path(tmpdir) / "model.onnx", opset)


__all__ = ["CACHE_ENV", "DEFAULT_OPSET", "MIN_OPSET", "ONNX_AXES", "PARITY_TOLERANCE", "ExportWrapper",
           "ParityReport", "cached_onnx", "cached_onnx_file", "check_parity", "export_onnx", "onnx_cache_dir",
           "onnx_cache_key", "onnx_metadata", "read_onnx_metadata", "tensors_sha256", "weights_sha256"]
