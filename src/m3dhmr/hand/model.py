"""The interface every hand model presents (the open hand and MANO), so callers cannot tell them apart.

Pose: ``(B, 48)`` = global rotation (3, axis-angle about the wrist, world axes) then 15
finger joints x 3 axis-angle values; what the 15 triples mean is the model's own
(:attr:`HandModel.pose_convention`): the open hand uses anatomical joint frames
(flexion, abduction, twist; see :mod:`m3dhmr.hand.limits`), MANO its native layout.
Shape: ``(B, num_shape)`` named by :attr:`HandModel.shape_names`; ``None`` means zeros.
No global translation: callers add it. Rest pose with zero shape gives the template.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from m3dhmr import conventions as cv
from m3dhmr.errors import InputError
from m3dhmr.hand.template import HandTemplate

POSE_DIM = 48


@dataclass(frozen=True)
class HandOutput:
    """Posed hand: vertices (B, V, 3) and joints (B, 21, 3) in FreiHAND order, metres."""

    vertices: torch.Tensor
    joints: torch.Tensor


class HandModel(torch.nn.Module):
    """Common base: holds the template and faces; subclasses implement :meth:`_forward`."""

    pose_convention: str = ""

    def __init__(self, template: HandTemplate, shape_names: tuple[str, ...]):
        super().__init__()
        self.template = template
        self.shape_names = tuple(shape_names)
        self.register_buffer("faces", torch.tensor(template.faces, dtype=torch.long), persistent=False)

    @property
    def num_shape(self) -> int:
        return len(self.shape_names)

    @property
    def num_vertices(self) -> int:
        return self.template.num_vertices

    def forward(self, pose: torch.Tensor, shape: torch.Tensor | None = None) -> HandOutput:
        """Pose (B, 48) and shape (B, num_shape) or None -> HandOutput(vertices (B, V, 3), joints (B, 21, 3))."""
        if not isinstance(pose, torch.Tensor) or pose.dim() != 2 or pose.shape[1] != POSE_DIM:
            raise InputError(f"pose must be a tensor of shape (B, {POSE_DIM}), got "
                             f"{tuple(pose.shape) if isinstance(pose, torch.Tensor) else type(pose).__name__}")
        if shape is not None and (not isinstance(shape, torch.Tensor) or shape.shape != (pose.shape[0], self.num_shape)):
            got = tuple(shape.shape) if isinstance(shape, torch.Tensor) else type(shape).__name__
            raise InputError(f"shape must be a tensor of shape ({pose.shape[0]}, {self.num_shape}) "
                             f"({', '.join(self.shape_names)}), got {got}")
        out = self._forward(pose, shape)
        assert out.joints.shape[1:] == (cv.NUM_JOINTS, 3)
        return out

    def _forward(self, pose: torch.Tensor, shape: torch.Tensor | None) -> HandOutput:
        raise NotImplementedError
