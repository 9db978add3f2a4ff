"""Stack-ResNet18/34: a two-stack hourglass (Newell et al.) on torchvision's ResNets.

Stack 1: the ResNet encoder (strides 4..32) and a top-down decoder with skip
connections back to stride 4 -> features ``f1 (B, C_s, H/4, W/4)`` and 21 heatmaps;
landmarks by soft-argmax. Stack 2 (lighter: one BasicBlock per stage): its input is
``f1 + conv(f1) + conv(heatmaps1)`` (Newell's re-injection), an encoder to stride 32
and a decoder back to stride 4 -> the encoding features ``F^e (B, C, H/4, W/4)`` (1x1
projection) and its own 21 heatmaps whose soft-argmax gives the landmarks ``L^p``.

Landmarks are in crop pixels (pixel centres at integers, image spans [-0.5, W-0.5]):
heatmap cell (i, j) at stride s has its centre at ``((j + 0.5) s - 0.5, (i + 0.5) s - 0.5)``.
Images enter as RGB in [0, 1]; ImageNet normalisation happens inside (so it is
part of any ONNX export).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import ResNet18_Weights, ResNet34_Weights, resnet18, resnet34
from torchvision.models.resnet import BasicBlock

from m3dhmr.conventions import IMAGENET_MEAN, IMAGENET_STD, NUM_JOINTS
from m3dhmr.errors import InputError
from m3dhmr.fileio import os_error_message

log = logging.getLogger(__name__)

_RESNETS = {
    "resnet18": (resnet18, ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (resnet34, ResNet34_Weights.IMAGENET1K_V1),
}
#: BasicBlocks per stage of each ResNet (He et al., Table 1).
_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
#: Stem width of torchvision's ResNets.
TORCHVISION_WIDTH = 64
#: Seconds before an attempted weight download is given up (offline machines).
DOWNLOAD_TIMEOUT_S = 20.0


def imagenet_weights_path(name: str) -> Path:
    """Where torch.hub keeps torchvision's ImageNet weights for ``name``."""
    url = _RESNETS[name][1].url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def load_imagenet_state_dict(name: str) -> dict[str, Tensor]:
    """torchvision's ``IMAGENET1K_V1`` state dict for ``name`` ("resnet18" | "resnet34").

    Reads torch.hub's cache; when the file is absent, tries one download with a
    timeout. A failed download, or a cached file that cannot be read, is a one-line
    ValueError saying what to do (place the file by hand, or switch
    ``model.pretrained_backbone`` off).
    """
    if name not in _RESNETS:
        raise InputError(f"unknown backbone {name!r}; choose one of {sorted(_RESNETS)}")
    path = imagenet_weights_path(name)
    url = _RESNETS[name][1].url
    if not path.is_file():
        log.info("downloading %s ImageNet weights to %s", name, path)
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), progress=False)
        # URLError and socket errors are OSErrors; torch.hub raises RuntimeError on a bad
        # hash, http.client HTTPException on a cut connection.
        except (OSError, RuntimeError, HTTPException) as e:
            raise InputError(
                f"model.pretrained_backbone: downloading the {name} ImageNet weights (IMAGENET1K_V1) failed "
                f"({_download_cause(e)}); set model.pretrained_backbone: false, or fetch {url} elsewhere and "
                f"put it in torch's hub cache {path.parent} as {path.name}"
            ) from e
        finally:
            socket.setdefaulttimeout(old)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise InputError(f"model.pretrained_backbone: cannot read {path} ({_download_cause(e)}); "
                         "delete it and retry") from e


def _download_cause(e: BaseException) -> str:
    """The cause of a failed download or read in a few words, on one line."""
    if isinstance(e, URLError):
        cause = str(e.reason)
    elif isinstance(e, OSError) and e.errno is not None:
        cause = os_error_message(e)
    else:
        cause = str(e) or type(e).__name__
    cause = " ".join(cause.split())
    return cause if len(cause) <= 160 else cause[:157] + "..."


def soft_argmax(heatmaps: Tensor, stride: float, beta: float) -> Tensor:
    """Expected pixel position under ``softmax(beta * heatmap)``.

    Args:
        heatmaps: (B, J, h, w).
        stride: crop pixels per heatmap cell.
        beta: inverse temperature.
    Returns:
        (B, J, 2) (x, y) in crop pixels.
    """
    b, j, h, w = heatmaps.shape
    prob = torch.softmax(heatmaps.reshape(b, j, h * w) * beta, dim=-1).view(b, j, h, w)
    xs = (torch.arange(w, dtype=heatmaps.dtype, device=heatmaps.device) + 0.5) * stride - 0.5
    ys = (torch.arange(h, dtype=heatmaps.dtype, device=heatmaps.device) + 0.5) * stride - 0.5
    x = (prob.sum(2) * xs).sum(-1)
    y = (prob.sum(3) * ys).sum(-1)
    return torch.stack([x, y], dim=-1)


def resnet_encoder(name: str, width: int) -> tuple[nn.Sequential, nn.ModuleList]:
    """``name``'s stem and four stages at stem width ``width``: ``(stem, layers)``.

    Width 64 is torchvision's network itself (built by torchvision, so that its
    initialisation and its ImageNet weights' names are torchvision's). Another width
    builds the same layout from torchvision's ``BasicBlock`` with ``width * (1, 2, 4, 8)``
    channels: torchvision's ``ResNet`` fixes its widths, hence this builder. Its
    initialisation follows torchvision's (Kaiming normal, fan-out, for the convolutions;
    batch norms at 1 and 0). The parameter names are the same in both cases.

    Shapes: the stem maps (B, 3, H, W) -> (B, width, H/4, W/4); stage i outputs
    (B, width * 2**i, H / 2**(i + 2), W / 2**(i + 2)).
    """
    if width == TORCHVISION_WIDTH:
        net = _RESNETS[name][0](weights=None)
        return (nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool),
                nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4]))
    stem = nn.Sequential(nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(width),
                         nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1))
    layers, cin = nn.ModuleList(), width
    for i, n in enumerate(_BLOCKS[name]):
        c, stride = width * 2**i, 1 if i == 0 else 2
        down = None
        if stride != 1 or cin != c:
            down = nn.Sequential(nn.Conv2d(cin, c, 1, stride=stride, bias=False), nn.BatchNorm2d(c))
        layers.append(nn.Sequential(BasicBlock(cin, c, stride, down), *(BasicBlock(c, c) for _ in range(n - 1))))
        cin = c
    for m in [*stem.modules(), *layers.modules()]:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return stem, layers


def _conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class TopDown(nn.Module):
    """Hourglass decoder: from the coarsest map, repeatedly project, up-sample x2,
    add the skip and fuse with a 3x3 conv.

    Shapes: skips fine -> coarse ``[(B, c_0, H, W), (B, c_1, H/2, W/2), ...]`` ->
    (B, out_channels, H, W).
    """

    def __init__(self, skip_channels: list[int], out_channels: int) -> None:
        super().__init__()
        targets = list(skip_channels[:-1])
        targets[0] = out_channels
        self.project = nn.ModuleList()
        self.fuse = nn.ModuleList()
        self.skip = nn.ModuleList()
        cin = skip_channels[-1]
        for i in range(len(skip_channels) - 2, -1, -1):
            cout = targets[i]
            self.project.append(nn.Conv2d(cin, cout, 1, bias=False))
            # A 1x1 lateral only where the skip's width differs from the target.
            self.skip.append(nn.Identity() if skip_channels[i] == cout else nn.Conv2d(skip_channels[i], cout, 1, bias=False))
            self.fuse.append(_conv_bn_relu(cout, cout))
            cin = cout

    def forward(self, skips: list[Tensor]) -> Tensor:
        x = skips[-1]
        for n, (project, skip, fuse) in enumerate(zip(self.project, self.skip, self.fuse)):
            s = skips[len(skips) - 2 - n]
            x = F.interpolate(project(x), size=s.shape[-2:], mode="nearest")
            x = fuse(x + skip(s))
        return x


@dataclass
class Stack1Output:
    """First stack: ``heatmaps (B, 21, H/4, W/4)``, ``joints2d (B, 21, 2)`` crop pixels,
    ``features (B, C_s, H/4, W/4)``."""

    heatmaps: Tensor
    joints2d: Tensor
    features: Tensor


@dataclass
class BackboneOutput:
    """Both stacks: ``features`` = F^e (B, C, H/4, W/4); ``joints2d`` = L^p (B, 21, 2) crop
    pixels; ``heatmaps2`` (B, 21, H/4, W/4); ``stack1`` the first stack's output."""

    features: Tensor
    joints2d: Tensor
    heatmaps2: Tensor
    stack1: Stack1Output


class StackResNet(nn.Module):
    """Two-stack hourglass backbone; see the module docstring.

    Shapes: images (B, 3, H, W) RGB in [0, 1], H and W multiples of 32 ->
    :class:`BackboneOutput`.
    """

    stride = 4

    def __init__(
        self,
        name: str = "resnet18",
        pretrained: bool = False,
        width: int = TORCHVISION_WIDTH,
        stack_channels: int = 64,
        stack2_channels: tuple[int, int, int] = (128, 128, 256),
        latent_channels: int = 256,
        softargmax_beta: float = 20.0,
        num_joints: int = NUM_JOINTS,
    ) -> None:
        super().__init__()
        if name not in _RESNETS:
            raise InputError(f"unknown backbone {name!r}; choose one of {sorted(_RESNETS)}")
        if pretrained and width != TORCHVISION_WIDTH:
            raise InputError(f"ImageNet weights exist for backbone width {TORCHVISION_WIDTH} only, not {width}")
        # Stack 1: the ResNet without its classifier.
        self.stem, self.layers = resnet_encoder(name, width)
        if pretrained:
            self._load_imagenet(name)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.beta = softargmax_beta
        self.decoder1 = TopDown([width * 2**i for i in range(4)], stack_channels)
        self.heatmap1 = nn.Conv2d(stack_channels, num_joints, 1)
        # Re-injection into stack 2 (Newell et al.): features and heatmaps, both 1x1.
        self.reinject_features = nn.Conv2d(stack_channels, stack_channels, 1)
        self.reinject_heatmaps = nn.Conv2d(num_joints, stack_channels, 1)
        # Stack 2: one BasicBlock per stage, strides 8, 16, 32.
        blocks, cin = [], stack_channels
        for c in stack2_channels:
            down = nn.Sequential(nn.Conv2d(cin, c, 1, stride=2, bias=False), nn.BatchNorm2d(c))
            blocks.append(BasicBlock(cin, c, stride=2, downsample=down))
            cin = c
        self.encoder2 = nn.ModuleList(blocks)
        self.decoder2 = TopDown([stack_channels, *stack2_channels], stack_channels)
        self.heatmap2 = nn.Conv2d(stack_channels, num_joints, 1)
        self.latent = nn.Conv2d(stack_channels, latent_channels, 1)

    def _load_imagenet(self, name: str) -> None:
        """torchvision's ImageNet weights into the stem and stages (its classifier dropped)."""
        names = {"conv1": "stem.0", "bn1": "stem.1", **{f"layer{i + 1}": f"layers.{i}" for i in range(4)}}
        state = {}
        for key, value in load_imagenet_state_dict(name).items():
            head, _, rest = key.partition(".")
            if head in names:
                state[f"{names[head]}.{rest}"] = value
        encoder = nn.ModuleDict({"stem": self.stem, "layers": self.layers})
        encoder.load_state_dict(state)

    def _check(self, images: Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] % 32 or images.shape[3] % 32:
            raise InputError(
                f"images must have shape (B, 3, H, W) with H, W multiples of 32, got {tuple(images.shape)}"
            )

    def forward_stack1(self, images: Tensor) -> Stack1Output:
        """images (B, 3, H, W) in [0, 1] -> :class:`Stack1Output`."""
        self._check(images)
        x = self.stem((images - self.mean) / self.std)
        skips = []
        for layer in self.layers:
            x = layer(x)
            skips.append(x)
        f1 = self.decoder1(skips)
        heatmaps = self.heatmap1(f1)
        return Stack1Output(heatmaps, soft_argmax(heatmaps, self.stride, self.beta), f1)

    def forward(self, images: Tensor) -> BackboneOutput:
        s1 = self.forward_stack1(images)
        x = s1.features + self.reinject_features(s1.features) + self.reinject_heatmaps(s1.heatmaps)
        skips = [x]
        for block in self.encoder2:
            x = block(x)
            skips.append(x)
        f2 = self.decoder2(skips)
        heatmaps2 = self.heatmap2(f2)
        return BackboneOutput(
            features=self.latent(f2),
            joints2d=soft_argmax(heatmaps2, self.stride, self.beta),
            heatmaps2=heatmaps2,
            stack1=s1,
        )
