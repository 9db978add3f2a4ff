"""ModelConfig: every hyper-parameter of the M3DHMR network, as one frozen dataclass.

Load it strictly from YAML's ``model:`` section with :func:`m3dhmr.config_loader.from_dict`;
unknown keys and bad values are errors that name the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from m3dhmr.errors import InputError

#: Names accepted by ``ModelConfig.conv`` (the classes live in :mod:`m3dhmr.models.dsc`).
CONV_NAMES = ("dsc", "dsconv", "spiral")
BACKBONE_NAMES = ("resnet18", "resnet34")
#: ``backbone_width`` of torchvision's ResNets, the only one with ImageNet weights.
IMAGENET_WIDTH = 64

#: Upper bounds of the sizes that allocate memory when the model is built (the packaged
#: configs use at most 128 px, 256 channels, 16 kernels, spirals of 9, dilation 2 and 5
#: levels): a checkpoint's config asking for more is refused before anything is allocated.
MAX_INPUT_SIZE = 1024
MAX_CHANNELS = 4096
MAX_DSC_KERNELS = 64
MAX_SPIRAL_LENGTH = 64
MAX_DILATION = 16
MAX_LEVELS = 10


@dataclass(frozen=True)
class ModelConfig:
    """The network's hyper-parameters.

    Attributes:
        backbone: first stack's torchvision ResNet ("resnet18" | "resnet34").
        pretrained_backbone: load torchvision's ImageNet weights (``IMAGENET1K_V1``).
        backbone_width: channels of the first stack's ResNet stem; its four stages have
            1, 2, 4 and 8 times as many. 64 is torchvision's ResNet (the paper's, and the
            only width with ImageNet weights); a narrower one (16: 1/16 of the weights)
            makes small experiments and the test suite's training runs cheap.
        input_size: square crop side in pixels; must be a multiple of 32.
        stack2_channels: channels of the second (lighter) stack's encoder stages at
            strides 8, 16, 32 (its decoder mirrors them back to stride 4).
        stack_channels: channels of both stacks' stride-4 feature maps.
        softargmax_beta: heatmaps are turned into landmarks by a soft-argmax of
            ``softmax(beta * heatmap)``; a large beta keeps the MSE-trained
            (peak 1) heatmaps sharp.
        latent_channels: channels C of the encoding features F^e.
        decoder_channels: mesh-decoder channels per level, fine -> coarse (level 0 is
            the full mesh); its length is the number of mesh levels.
        conv: mesh convolution of the decoder: "dsc" (dynamic spiral convolution),
            "dsconv" (MobRecon depth-separable) or "spiral" (SpiralConv++).
        dsc_kernels: K, kernels of each DSC layer.
        roi: add the region-of-interest layer at full resolution.
        roi_spiral_length, roi_dilation: the ROI layer's region-restricted spirals.
        spiral_length, dilation: decoder spirals.
        levels: mesh levels including the full mesh (= len(decoder_channels)).
        factor: each coarser level has about 1/factor the vertices.
        template: hand template for the topology: "open_hand", "mano:PATH" or a folder.
    """

    backbone: Literal["resnet18", "resnet34"] = "resnet18"
    pretrained_backbone: bool = False
    backbone_width: int = 64
    input_size: int = 128
    stack_channels: int = 64
    stack2_channels: tuple[int, int, int] = (128, 128, 256)
    softargmax_beta: float = 20.0
    latent_channels: int = 256
    decoder_channels: tuple[int, ...] = (32, 64, 128, 256)
    conv: Literal["dsc", "dsconv", "spiral"] = "dsc"
    dsc_kernels: int = 8
    roi: bool = True
    roi_spiral_length: int = 9
    roi_dilation: int = 2
    spiral_length: int = 9
    dilation: int = 1
    levels: int = 4
    factor: float = 2.0
    template: str = "open_hand"

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONE_NAMES:
            raise InputError(f"model.backbone: {self.backbone!r} is not one of {list(BACKBONE_NAMES)}")
        if self.conv not in CONV_NAMES:
            raise InputError(f"model.conv: {self.conv!r} is not one of {list(CONV_NAMES)}")
        if self.input_size < 32 or self.input_size % 32:
            raise InputError(f"model.input_size: {self.input_size} must be a positive multiple of 32")
        if self.input_size > MAX_INPUT_SIZE:
            raise InputError(f"model.input_size: {self.input_size} is larger than the maximum {MAX_INPUT_SIZE}")
        bounded = {  # key: (value, maximum)
            "backbone_width": (self.backbone_width, MAX_CHANNELS // 8),
            "stack_channels": (self.stack_channels, MAX_CHANNELS),
            "latent_channels": (self.latent_channels, MAX_CHANNELS),
            "dsc_kernels": (self.dsc_kernels, MAX_DSC_KERNELS),
            "roi_spiral_length": (self.roi_spiral_length, MAX_SPIRAL_LENGTH),
            "roi_dilation": (self.roi_dilation, MAX_DILATION),
            "spiral_length": (self.spiral_length, MAX_SPIRAL_LENGTH),
            "dilation": (self.dilation, MAX_DILATION),
            "levels": (self.levels, MAX_LEVELS),
        }
        for key, (value, maximum) in bounded.items():
            if value < 1:
                raise InputError(f"model.{key}: {value} must be >= 1")
            if value > maximum:
                raise InputError(f"model.{key}: {value} is larger than the maximum {maximum}")
        for key, chans in (("decoder_channels", self.decoder_channels), ("stack2_channels", self.stack2_channels)):
            if any(c < 1 for c in chans):
                raise InputError(f"model.{key}: {list(chans)} must all be >= 1")
            if any(c > MAX_CHANNELS for c in chans):
                raise InputError(f"model.{key}: {list(chans)} must all be <= {MAX_CHANNELS}")
        if len(self.decoder_channels) != self.levels:
            raise InputError(
                f"model.decoder_channels: {len(self.decoder_channels)} entries but model.levels is {self.levels}; "
                "give one channel count per mesh level (fine -> coarse)"
            )
        if self.pretrained_backbone and self.backbone_width != IMAGENET_WIDTH:
            raise InputError(
                f"model.pretrained_backbone: ImageNet weights exist for model.backbone_width {IMAGENET_WIDTH} only, "
                f"not {self.backbone_width}; set model.pretrained_backbone: false or model.backbone_width: {IMAGENET_WIDTH}"
            )
        if not self.factor > 1.0:
            raise InputError(f"model.factor: {self.factor} must be > 1")
        if not self.softargmax_beta > 0.0:
            raise InputError(f"model.softargmax_beta: {self.softargmax_beta} must be > 0")
        if not self.template:
            raise InputError("model.template: must not be empty")
