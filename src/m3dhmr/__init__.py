"""m3dhmr: monocular 3D hand mesh recovery (M3DHMR), installable with pip alone.

The few names a user needs::

    import m3dhmr
    import numpy as np
    import torch

    predictor = m3dhmr.Predictor.from_pretrained()      # the packaged model, offline
    hands = predictor.predict(m3dhmr.load_image("hand.jpg"))   # every hand found
    hands[0].vertices, hands[0].joints3d, hands[0].handedness     # NumPy, metres, camera axes
    meshes = torch.as_tensor(np.stack([h.vertices for h in hands]))   # (B, V, 3), any meshes of the hand
    fit = m3dhmr.fit_hand(m3dhmr.load_hand_model("open_hand"), meshes)  # their joint rotations

Names are imported on first use, so ``import m3dhmr`` stays light (no torch).

Dimension legend used in every docstring (see :mod:`m3dhmr.conventions`):
B batch, V vertices, F faces, J joints (21), S spiral length, K DSC kernels,
C channels, H/W image height/width.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> module that defines it.
_EXPORTS: dict[str, str] = {
    "Predictor": "m3dhmr.inference.predictor",
    "PredictionResult": "m3dhmr.inference.result",
    "ColorOrderWarning": "m3dhmr.inference.predictor",
    "InputError": "m3dhmr.errors",
    "load_image": "m3dhmr.inference.images",
    "HandDetector": "m3dhmr.detect.hands",
    "DetectedHand": "m3dhmr.detect.hands",
    "ModelConfig": "m3dhmr.models.model_config",
    "build_model": "m3dhmr.models.network",
    "available_models": "m3dhmr.pretrained",
    "fit_hand": "m3dhmr.hand.fit",
    "HandFit": "m3dhmr.hand.fit",
    "load_hand_model": "m3dhmr.hand.load",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from m3dhmr.detect.hands import DetectedHand, HandDetector
    from m3dhmr.errors import InputError
    from m3dhmr.hand.fit import HandFit, fit_hand
    from m3dhmr.hand.load import load_hand_model
    from m3dhmr.inference.images import load_image
    from m3dhmr.inference.predictor import ColorOrderWarning, Predictor
    from m3dhmr.inference.result import PredictionResult
    from m3dhmr.models.model_config import ModelConfig
    from m3dhmr.models.network import build_model
    from m3dhmr.pretrained import available_models


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'm3dhmr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return list(__all__)
