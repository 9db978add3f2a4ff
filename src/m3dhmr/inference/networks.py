"""The network behind a :class:`~m3dhmr.inference.predictor.Predictor`: PyTorch or ONNX Runtime.

Both are callables ``images (B, 3, S, S) float32 numpy -> NetworkOutput``; the ONNX
graph's input and output names and the key prefix of its metadata are here, shared with
the exporter (:mod:`m3dhmr.inference.onnx_export`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from m3dhmr.errors import InputError

Backend = Literal["torch", "onnxruntime"]
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime")
#: ONNX graph input and output names (shared with :mod:`m3dhmr.inference.onnx_export`).
ONNX_INPUT = "images"
ONNX_OUTPUTS = ("vertices", "joints3d", "joints2d")
#: Prefix of the exporter's ``metadata_props`` keys; each value is JSON text.
ONNX_METADATA_PREFIX = "m3dhmr."


def parse_onnx_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """The exporter's entries of an ONNX file's ``metadata_props`` (key -> text), prefix
    removed and values decoded from JSON; ``{}`` for a file exported without them."""
    out: dict[str, Any] = {}
    for key, text in props.items():
        if key.startswith(ONNX_METADATA_PREFIX):
            try:
                out[key[len(ONNX_METADATA_PREFIX):]] = json.loads(text)
            except json.JSONDecodeError:  # edited by hand or another tool: keep the text
                out[key[len(ONNX_METADATA_PREFIX):]] = text
    return out


def check_device(device, backend: str = "torch", where: str = "device") -> str:
    """``device`` ("cpu", "cuda", "cuda:N", "mps") as a string, checked to exist for
    ``backend`` before any model is loaded; a ValueError naming ``where`` otherwise."""
    name = str(device)
    m = re.fullmatch(r"(cpu|cuda|mps)(?::(\d+))?", name)
    if m is None or (m.group(2) is not None and m.group(1) != "cuda"):
        raise InputError(f"{where}: expected cpu, cuda or cuda:N, got {name!r}")
    kind = m.group(1)
    if kind == "cpu":
        return name
    if backend == "onnxruntime":
        import onnxruntime as ort  # heavy: ONNX Runtime loads only for its backend

        if kind != "cuda":
            raise InputError(f"{where} {name}: ONNX Runtime runs on cpu or cuda")
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise InputError(f"{where} {name} with ONNX Runtime needs onnxruntime-gpu "
                             f"(available providers: {ort.get_available_providers()})")
        return name
    if kind == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"{where} {name}: no MPS device is available")
        return name
    if not torch.cuda.is_available():
        raise InputError(f"{where} {name}: no CUDA device is available")
    if m.group(2) is not None and int(m.group(2)) >= torch.cuda.device_count():
        raise InputError(f"{where} {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return name


@dataclass(frozen=True)
class NetworkOutput:
    """Network output as float32 numpy: vertices (B, V, 3) and joints3d (B, 21, 3)
    root-relative metres, joints2d (B, 21, 2) crop pixels."""

    vertices: np.ndarray
    joints3d: np.ndarray
    joints2d: np.ndarray


class TorchNetwork:
    """The PyTorch model as ``images (B, 3, S, S) float32 numpy -> NetworkOutput``."""

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> NetworkOutput:
        out = self.model(torch.from_numpy(images).to(self.device))
        return NetworkOutput(*(t.float().cpu().numpy() for t in (out.vertices, out.joints3d, out.joints2d)))


class OnnxNetwork:
    """An exported ONNX graph run by ONNX Runtime (graph optimisations on).

    ``metadata``: what the exporter recorded (input layout, output units, joint order,
    faces, weights hash...: :func:`m3dhmr.inference.onnx_export.onnx_metadata`), or ``{}``
    for a file exported before it did. ``precision``: "fp32" or "int8" (the metadata's
    ``precision``; "fp32" for a file that does not record one).
    """

    def __init__(self, path: str | Path, threads: int | None = None, device: str = "cpu") -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        # Idle workers sleep instead of spinning: between runs the same cores do the
        # pre-processing and registration (and, in `bench`, the PyTorch backend), which
        # spinning threads slowed by a quarter on 2 cores.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise InputError("--device cuda with --backend onnxruntime needs onnxruntime-gpu "
                                 f"(available providers: {ort.get_available_providers()})")
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            raise InputError(f"{path}: ONNX Runtime cannot load the model ({e})") from e
        names = [o.name for o in self.session.get_outputs()]
        if tuple(names[:3]) != ONNX_OUTPUTS or self.session.get_inputs()[0].name != ONNX_INPUT:
            raise InputError(f"{path}: not an m3dhmr export (input {self.session.get_inputs()[0].name!r}, "
                             f"outputs {names}; expected {ONNX_INPUT!r} -> {list(ONNX_OUTPUTS)})")
        shape = self.session.get_inputs()[0].shape
        self.input_size = shape[-1] if isinstance(shape[-1], int) else None
        # Read from the session, not with the onnx package: no second parse of the file.
        self.metadata = parse_onnx_metadata(self.session.get_modelmeta().custom_metadata_map)
        self.precision = str(self.metadata.get("precision", "fp32"))

    def __call__(self, images: np.ndarray) -> NetworkOutput:
        v, j3, j2 = self.session.run(list(ONNX_OUTPUTS), {ONNX_INPUT: images})
        return NetworkOutput(v, j3, j2)
