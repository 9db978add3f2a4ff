"""The pipeline's output: :class:`PredictionResult`, one hand in one image in camera space.

:class:`~m3dhmr.inference.predictor.Predictor` builds one per hand (its ``finish`` stage);
:meth:`PredictionResult.to_json` is what ``result.json`` and ``results.jsonl`` hold, and
its ``repr`` is the one-line summary a user prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from m3dhmr.inference.quality import HandQuality

if TYPE_CHECKING:  # the fit (torch, the hand models) loads only when articulation is asked for
    from m3dhmr.inference.rigging import HandArticulation


@dataclass(frozen=True, repr=False)
class PredictionResult:
    """One hand in one image; every array is NumPy float64 (faces int64).

    Frames: ``joints3d``, ``vertices`` and ``translation`` are in the camera of ``K``,
    OpenCV axes (x right, y down, z forward), metres (:mod:`m3dhmr.conventions`);
    ``joints2d``, ``hand_box`` and ``crop_box`` are in the image's pixels.

    Attributes:
        joints2d: (21, 2) the network's 2D joints (FreiHAND order).
        joints3d: (21, 3) camera-space joints. vertices: (V, 3) camera-space mesh.
        faces: (F, 3) triangles (winding reversed for a left hand, so normals point out).
        translation: (3,) the camera-space wrist (root-relative + translation = camera space).
        success: the registration succeeded (else the depth is a fallback guess).
        reprojection_error: mean pixel error of the registration, in crop pixels.
        hand_box: (4,) x, y, w, h around the hand: the detector's box around its
            landmarks, the ``hand_box`` the caller gave, or the ``crop_box`` when only
            that was given. The same name and meaning as ``"hand_box"`` in ``result.json``.
        crop_box: (4,) x, y, w, h of the square crop the network saw.
        K: (3, 3) intrinsics used. image_size: (H, W). left: predicted as a left hand.
        score: the detector's hand presence in [0, 1] (None when the caller gave the box).
        articulation: the hand's :class:`~m3dhmr.inference.rigging.HandArticulation`
            (joint rotations, NumPy) when :attr:`Predictor.articulation` is on, else None.
        quality_report: the :class:`~m3dhmr.inference.quality.HandQuality` of this hand
            (agreement with the detector's landmarks when it ran, and the registration
            residual); :attr:`quality` is its score.
    """

    joints2d: np.ndarray
    joints3d: np.ndarray
    vertices: np.ndarray
    faces: np.ndarray
    translation: np.ndarray
    success: bool
    reprojection_error: float
    hand_box: np.ndarray
    crop_box: np.ndarray
    K: np.ndarray
    image_size: tuple[int, int]
    left: bool
    score: float | None = None
    articulation: HandArticulation | None = None
    quality_report: HandQuality | None = None

    @property
    def quality(self) -> float | None:
        """How far to trust this hand, in (0, 1] (:mod:`m3dhmr.inference.quality`)."""
        return None if self.quality_report is None else self.quality_report.score

    @property
    def quality_flag(self) -> str | None:
        """"good", "fair", "poor" or "unchecked" (no landmark check: the caller gave the box)."""
        return None if self.quality_report is None else self.quality_report.flag

    @property
    def handedness(self) -> str:
        """"left" or "right": the hand as predicted (see :attr:`left`)."""
        return "left" if self.left else "right"

    def __repr__(self) -> str:
        # The arrays (2.8 kB of numbers) stay out: what a user checks at a glance.
        x, y, w, h = (round(float(v), 1) for v in self.hand_box)
        parts = [self.handedness, f"hand_box=({x}, {y}, {w}, {h})",
                 f"wrist_m=({', '.join(f'{v:.3f}' for v in self.translation)})",
                 f"vertices={self.vertices.shape[0]}"]
        if self.score is not None:
            parts.append(f"score={self.score:.2f}")
        if self.quality_report is not None:
            parts.append(f"quality={self.quality_report.score:.2f} ({self.quality_report.flag})")
        if not self.success:
            parts.append("registration failed")
        if self.articulation is not None:
            parts.append("articulated")
        return f"PredictionResult({', '.join(parts)})"

    def to_json(self, include_vertices: bool = True) -> dict[str, Any]:
        """Plain data (lists) for ``result.json`` / ``results.jsonl``; metres and pixels.

        The keys are the attributes' names (``hand_box``, ``crop_box``, ...), plus
        ``handedness`` and ``units``; ``vertices`` only with ``include_vertices``."""
        d = {
            "hand_box": np.round(self.hand_box, 3).tolist(),
            "handedness": self.handedness,
            "score": None if self.score is None else round(float(self.score), 4),
            "quality": None if self.quality_report is None else self.quality_report.to_json(),
            "joints2d": np.round(self.joints2d, 3).tolist(),
            "joints3d": np.round(self.joints3d, 6).tolist(),
            "translation": np.round(self.translation, 6).tolist(),
            "K": self.K.tolist(),
            "crop_box": np.round(self.crop_box, 3).tolist(),
            "image_size": list(self.image_size),
            "success": bool(self.success),
            "reprojection_error_px": float(self.reprojection_error),
            "left": bool(self.left),
            "units": {"joints3d": "m", "vertices": "m", "translation": "m", "joints2d": "px",
                      "hand_box": "px", "crop_box": "px", "camera": "opencv (x right, y down, z forward)"},
        }
        if include_vertices:
            d["vertices"] = np.round(self.vertices, 6).tolist()
        if self.articulation is not None:
            d["articulation"] = self.articulation.to_json()
        return d
