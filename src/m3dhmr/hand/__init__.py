"""Articulated hand models: the package's own open hand and MANO, behind one interface.

See :mod:`m3dhmr.hand.model` (the interface), :mod:`m3dhmr.hand.open_hand`,
:mod:`m3dhmr.hand.mano`, :mod:`m3dhmr.hand.limits` and :mod:`m3dhmr.hand.sampler`.
Note: ``m3dhmr.hand.open_hand`` is the function (the module of the same name is
reachable through ``import m3dhmr.hand.open_hand as ...`` / ``sys.modules``).
"""

from __future__ import annotations

from .template import HandTemplate, load_template
from .model import HandModel, HandOutput
from .open_hand import SHAPE_NAMES, SHAPE_RANGES, open_hand  # noqa: E402  (function shadows the module name)
from .mano import load_mano
from .sampler import sample_poses, sample_shapes

__all__ = ["HandTemplate", "load_template", "HandModel", "HandOutput", "open_hand", "load_mano",
           "sample_poses", "sample_shapes", "SHAPE_NAMES", "SHAPE_RANGES"]
