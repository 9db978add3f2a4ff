"""Inference on users' images and videos: crops, prediction, tracking, ONNX export, speed.

Heavy modules (torch, onnxruntime) are imported by the submodules that need them::

    from m3dhmr.inference.predictor import Predictor     # also m3dhmr.Predictor
    p = Predictor.from_checkpoint("run/checkpoints/last.safetensors")
    hands = p.predict(load_image("hand.jpg"))        # list of PredictionResult, camera space
"""

from m3dhmr.inference.crops import DEFAULT_BOX_SCALE, DEFAULT_FOV_DEG, DEFAULT_TRACK_MARGIN
from m3dhmr.inference.images import load_image
from m3dhmr.inference.one_euro import OneEuroConfig, OneEuroFilter

__all__ = ["DEFAULT_BOX_SCALE", "DEFAULT_FOV_DEG", "DEFAULT_TRACK_MARGIN", "OneEuroConfig", "OneEuroFilter",
           "load_image"]
