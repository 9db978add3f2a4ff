"""The M3DHMR network: Stack-ResNet backbone + spiral mesh decoder (+ ROI layer).

Output units: the decoder predicts vertices divided by
:data:`m3dhmr.conventions.VERTEX_NORMALISATION_M` (0.2 m, as in CMR/MobRecon); the
network adds the rest template (a fixed buffer, in the same units), multiplies by it
and subtracts the regressed wrist (row 0 of the joint regressor), so ``vertices`` are
root-relative metres by construction and ``joints3d = joint_regressor @ vertices`` has
its wrist at the origin.

Why the template is added: the decoder's output starts near zero, and a collapsed mesh
is a trap for the normal loss (eq. 7), whose unit edge directions have gradients that
grow like 1 / |edge|: training from a near-zero mesh kept it collapsed (mesh loss flat).
Starting from the rest hand gives the normal and edge terms well-defined edges from the
first step; the decoder learns the offset, so expressiveness is unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from m3dhmr.conventions import NUM_JOINTS, ROOT_JOINT, VERTEX_NORMALISATION_M
from m3dhmr.hand import load_template
from m3dhmr.mesh import TopologyParams, load_or_build_topology
from m3dhmr.models.backbone import Stack1Output, StackResNet
from m3dhmr.models.model_config import ModelConfig
from m3dhmr.models.decoder import MeshDecoder
from m3dhmr.errors import InputError

log = logging.getLogger(__name__)


@dataclass
class ModelOutput:
    """What :meth:`M3DHMR.forward` returns.

    Attributes:
        vertices: (B, V, 3) root-relative metres.
        joints3d: (B, 21, 3) root-relative metres, ``joint_regressor @ vertices``.
        joints2d: (B, 21, 2) crop pixels, second stack (L^p).
        heatmaps: (B, 21, H/4, W/4) first stack's heatmaps.
        heatmaps2: (B, 21, H/4, W/4) second stack's heatmaps (their soft-argmax is ``joints2d``).
        joints2d_stack1: (B, 21, 2) crop pixels, first stack.
        image_size: (H, W) of the input crop in pixels.
    """

    vertices: Tensor
    joints3d: Tensor
    joints2d: Tensor
    heatmaps: Tensor
    joints2d_stack1: Tensor
    image_size: tuple[int, int]
    heatmaps2: Tensor | None = None


@dataclass
class TwoStackOutput:
    """What :meth:`M3DHMR.forward_2d` returns: :class:`ModelOutput`'s 2D fields, no mesh."""

    joints2d: Tensor
    heatmaps: Tensor
    heatmaps2: Tensor
    joints2d_stack1: Tensor
    image_size: tuple[int, int]


class M3DHMR(nn.Module):
    """Monocular 3D hand mesh recovery network.

    Args:
        cfg: the model's hyper-parameters.
        topology: a :class:`m3dhmr.mesh.TopologyBundle` (or any object with its
            ``spirals``, ``up``, ``faces``, ``roi_spirals``, ``regions`` and
            ``joint_regressor`` fields) whose level count matches ``cfg.levels``.
    Shapes: images (B, 3, H, W) RGB in [0, 1] -> :class:`ModelOutput`;
    ``faces`` buffer (F, 3) int64; ``joint_regressor`` buffer (21, V).
    """

    def __init__(self, cfg: ModelConfig, topology: Any) -> None:
        super().__init__()
        self.cfg = cfg
        spirals = list(topology.spirals)
        if len(spirals) != cfg.levels:
            raise InputError(
                f"topology has {len(spirals)} mesh levels but model.levels is {cfg.levels}; "
                "rebuild the topology with the model's parameters"
            )
        v0 = np.asarray(spirals[0]).shape[0]
        jreg = np.asarray(topology.joint_regressor, dtype=np.float32)
        if jreg.shape != (NUM_JOINTS, v0):
            raise InputError(f"joint_regressor has shape {jreg.shape}, expected ({NUM_JOINTS}, {v0})")
        faces = np.asarray(topology.faces[0], dtype=np.int64)
        if faces.ndim != 2 or faces.shape[1] != 3 or faces.size == 0 or faces.max() >= v0 or faces.min() < 0:
            raise InputError(f"topology faces[0] must be (F, 3) indices into {v0} vertices, got {faces.shape}")
        self.backbone = StackResNet(
            cfg.backbone,
            pretrained=cfg.pretrained_backbone,
            width=cfg.backbone_width,
            stack_channels=cfg.stack_channels,
            stack2_channels=cfg.stack2_channels,
            latent_channels=cfg.latent_channels,
            softargmax_beta=cfg.softargmax_beta,
        )
        self.decoder = MeshDecoder(
            spirals,
            list(topology.up),
            cfg.decoder_channels,
            cfg.latent_channels,
            num_joints=NUM_JOINTS,
            conv=cfg.conv,
            kernels=cfg.dsc_kernels,
            roi_spirals=topology.roi_spirals if cfg.roi else None,
            regions=topology.regions if cfg.roi else None,
            stride=StackResNet.stride,
        )
        self.register_buffer("faces", torch.from_numpy(faces), persistent=False)
        self.register_buffer("joint_regressor", torch.from_numpy(jreg), persistent=False)
        rest = np.asarray(topology.vertices[0], dtype=np.float64)
        if rest.shape != (v0, 3) or not np.isfinite(rest).all():
            raise InputError(f"topology vertices[0] must be finite ({v0}, 3), got {rest.shape}")
        rest = (rest - jreg[ROOT_JOINT].astype(np.float64) @ rest) / VERTEX_NORMALISATION_M
        self.register_buffer("rest_vertices", torch.from_numpy(rest.astype(np.float32)), persistent=False)

    @property
    def num_vertices(self) -> int:
        return int(self.joint_regressor.shape[1])

    def forward_stack1(self, images: Tensor) -> Stack1Output:
        """First stack only (its pretraining): images (B, 3, H, W) -> heatmaps, landmarks."""
        return self.backbone.forward_stack1(images)

    def forward_2d(self, images: Tensor) -> "TwoStackOutput":
        """Both stacks' 2D outputs, no mesh (stage-1 pretraining with ``stage1_scope: stacks_2d``)."""
        out = self.backbone(images)
        return TwoStackOutput(joints2d=out.joints2d, heatmaps=out.stack1.heatmaps, heatmaps2=out.heatmaps2,
                              joints2d_stack1=out.stack1.joints2d, image_size=tuple(images.shape[-2:]))

    def forward(self, images: Tensor) -> ModelOutput:
        """images (B, 3, H, W) RGB in [0, 1] -> :class:`ModelOutput`."""
        out = self.backbone(images)
        v = (self.decoder(out.features, out.joints2d) + self.rest_vertices) * VERTEX_NORMALISATION_M  # (B, V, 3)
        root = self.joint_regressor[ROOT_JOINT] @ v  # (B, 3)
        v = v - root.unsqueeze(1)
        return ModelOutput(
            vertices=v,
            joints3d=self.joint_regressor @ v,
            joints2d=out.joints2d,
            heatmaps=out.stack1.heatmaps,
            heatmaps2=out.heatmaps2,
            joints2d_stack1=out.stack1.joints2d,
            image_size=(int(images.shape[2]), int(images.shape[3])),
        )


def topology_params(cfg: ModelConfig) -> Any:
    """The :class:`m3dhmr.mesh.TopologyParams` matching ``cfg``."""
    return TopologyParams(
        levels=cfg.levels,
        factor=cfg.factor,
        spiral_length=cfg.spiral_length,
        dilation=cfg.dilation,
        roi_spiral_length=cfg.roi_spiral_length,
        roi_dilation=cfg.roi_dilation,
    )


def build_model(cfg: ModelConfig, topology: Any = None, cache_dir: str | None = None) -> M3DHMR:
    """The network for ``cfg``.

    Without ``topology`` the template ``cfg.template`` is loaded and its topology
    built (or read from the on-disk cache) with the parameters of ``cfg``.
    """
    if topology is None:
        template = load_template(cfg.template)
        topology = load_or_build_topology(template, params=topology_params(cfg), cache_dir=cache_dir)
    return M3DHMR(cfg, topology)
