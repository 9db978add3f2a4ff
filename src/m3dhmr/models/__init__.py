"""The M3DHMR network: Stack-ResNet backbone, spiral mesh convolutions, ROI layer, decoder."""

from m3dhmr.models.model_config import ModelConfig
from m3dhmr.models.dsc import DSC, MESH_CONVS, DSConv, SpiralConv, make_mesh_conv
from m3dhmr.models.network import M3DHMR, ModelOutput, build_model

__all__ = [
    "DSC",
    "DSConv",
    "M3DHMR",
    "MESH_CONVS",
    "ModelConfig",
    "ModelOutput",
    "SpiralConv",
    "build_model",
    "make_mesh_conv",
]
