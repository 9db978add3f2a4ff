"""Articulated hand models: the package's own open hand and MANO, behind one interface.

See :mod:`m3dhmr.hand.model` (the interface), :mod:`m3dhmr.hand.open_hand`,
:mod:`m3dhmr.hand.mano`, :mod:`m3dhmr.hand.limits`, :mod:`m3dhmr.hand.sampler`, and the
articulation fit (:mod:`m3dhmr.hand.articulation`, :mod:`m3dhmr.hand.fit`).
"""

from __future__ import annotations

from m3dhmr.hand.fit import FitSettings, HandFit, fit_hand
from m3dhmr.hand.load import load_hand_model, load_template
from m3dhmr.hand.mano import load_mano
from m3dhmr.hand.model import HandModel, HandOutput
from m3dhmr.hand.open_hand import SHAPE_NAMES, SHAPE_RANGES, load_open_hand
from m3dhmr.hand.sampler import sample_poses, sample_shapes
from m3dhmr.hand.template import HandTemplate

__all__ = ["HandTemplate", "load_template", "load_hand_model", "fit_hand", "FitSettings", "HandFit", "HandModel", "HandOutput", "load_open_hand", "load_mano",
           "sample_poses", "sample_shapes", "SHAPE_NAMES", "SHAPE_RANGES"]
