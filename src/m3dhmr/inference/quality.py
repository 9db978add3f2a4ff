"""A per-hand quality score: when not to trust a prediction.

Three checks of one predicted hand, each independent of ground truth:

- ``landmark_error``: the network's 2D joints (the projection of its own 3D joints) against
  the real-photo landmark model's 21 landmarks (:class:`m3dhmr.detect.DetectedHand`, when
  the detector found or tracked the hand), mean distance in palms (wrist to middle MCP of
  the landmarks);
- ``finger_disagreement``: how many of the five fingers are in another state
  (:func:`m3dhmr.geometry.finger_states.finger_states`: extended / curled, thumb out / across)
  in the network's 3D joints than in the landmark model's 3D landmarks (x, y and its depth);
- ``residual``: the registration's mean reprojection error (3D joints against the
  network's 2D joints) as a fraction of the crop side.

Score ``exp(-(landmark_error / 0.5 + finger_disagreement / 2 + residual / 0.08))`` in
(0, 1]: half a palm off, or two fingers in another state, each cost a factor e. Flags:
"good" (score >= 0.5), "fair" (>= 0.2), "poor" (below, or a failed registration). Without
landmarks (the caller gave a box) only the residual is known: the score is its term
alone and the flag "unchecked" (or "poor" below 0.2).

Measured on the sign-language digits' 496 held-out photos (``benchmarks/real_photos.py``,
December 2026). With the packaged model fine-tuned on real photos: Spearman correlation of
the score with the image's mean 2D error against the landmark model 0.70
(``quality_spearman``; partly by construction, as that error's reference is the same
landmark model), with the number of fingers whose state contradicts the digit's handshape
0.74 (``quality_spearman_fingers``: the digit, not the landmark model, is the truth
there); the residual alone, which needs no landmarks, 0.47 with the 2D error
(``residual_spearman``); 3 % of the hands flagged "poor". With the synthetic-only model
before it, whose errors were larger and more varied: 0.84, 0.87 and 0.59, 40 % "poor".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from m3dhmr.conventions import NUM_JOINTS
from m3dhmr.detect.hands import LANDMARK_SIZE
from m3dhmr.errors import InputError
from m3dhmr.geometry.finger_states import finger_states

#: Palms of mean landmark error that cost a factor e.
LANDMARK_SCALE = 0.5
#: Fingers in another state that cost a factor e.
FINGER_SCALE = 2.0
#: Residual (fraction of the crop side) that costs a factor e.
RESIDUAL_SCALE = 0.08
GOOD, FAIR = 0.5, 0.2

QualityFlag = Literal["good", "fair", "poor", "unchecked"]


@dataclass(frozen=True)
class HandQuality:
    """score in (0, 1]; flag; landmark_error in palms and finger_disagreement in 0..5 (None
    without the landmark model's landmarks); residual: registration error / crop side."""

    score: float
    flag: QualityFlag
    landmark_error: float | None
    finger_disagreement: int | None
    residual: float

    def to_json(self) -> dict:
        return {"score": round(self.score, 4), "flag": self.flag,
                "landmark_error_palm": None if self.landmark_error is None else round(self.landmark_error, 4),
                "finger_disagreement": self.finger_disagreement, "residual": round(self.residual, 5)}

    def describe(self) -> str:
        """One line for people, e.g. ``poor (quality 0.08: 0.61 palm from the landmark model, 2 fingers differ)``."""
        parts = []
        if self.landmark_error is not None:
            parts.append(f"{self.landmark_error:.2f} palm from the landmark model")
            parts.append(f"{self.finger_disagreement} finger{'s' if self.finger_disagreement != 1 else ''} differ"
                         f"{'s' if self.finger_disagreement == 1 else ''}")
        else:
            parts.append("no landmark check")
        return f"{self.flag} (quality {self.score:.2f}: {', '.join(parts)})"


def landmarks_3d(hand) -> np.ndarray:
    """A :class:`m3dhmr.detect.DetectedHand`'s landmarks as (21, 3) image pixels: x, y and
    MediaPipe's depth (relative to the wrist, in its 224-px crop's pixels) scaled like x and y."""
    depth = np.asarray(hand.depth, np.float64) * (hand.square.side / LANDMARK_SIZE)
    return np.concatenate([np.asarray(hand.landmarks, np.float64), depth[:, None]], axis=1)


def hand_quality(joints2d: np.ndarray, joints3d: np.ndarray, reprojection_error: float, crop_side: float,
                 success: bool = True, landmarks3d: np.ndarray | None = None) -> HandQuality:
    """joints2d (21, 2) image px and joints3d (21, 3) of the prediction; reprojection_error
    in crop px and the crop's side ``crop_side`` px; landmarks3d (21, 3) from
    :func:`landmarks_3d` or None -> :class:`HandQuality` (see the module doc)."""
    joints2d, joints3d = np.asarray(joints2d, np.float64), np.asarray(joints3d, np.float64)
    if joints2d.shape != (NUM_JOINTS, 2) or joints3d.shape != (NUM_JOINTS, 3):
        raise InputError(f"joints2d must be (21, 2) and joints3d (21, 3), got {joints2d.shape}, {joints3d.shape}")
    if crop_side <= 0:
        raise InputError(f"crop_side must be > 0, got {crop_side}")
    residual = float(reprojection_error) / float(crop_side)
    cost = residual / RESIDUAL_SCALE
    lm_err = disagree = None
    if landmarks3d is not None:
        ref = np.asarray(landmarks3d, np.float64)
        if ref.shape != (NUM_JOINTS, 3):
            raise InputError(f"landmarks3d must be (21, 3), got {ref.shape}")
        palm = float(np.linalg.norm(ref[9, :2] - ref[0, :2]))
        if palm > 0 and np.isfinite(ref).all():
            lm_err = float(np.linalg.norm(joints2d - ref[:, :2], axis=1).mean() / palm)
            disagree = int((finger_states(joints3d) != finger_states(ref)).sum())
            cost += lm_err / LANDMARK_SCALE + disagree / FINGER_SCALE
    score = math.exp(-cost) if np.isfinite(cost) else 0.0
    if not success or score < FAIR:
        flag: QualityFlag = "poor"
    elif lm_err is None:
        flag = "unchecked"
    else:
        flag = "good" if score >= GOOD else "fair"
    return HandQuality(score=score, flag=flag, landmark_error=lm_err, finger_disagreement=disagree, residual=residual)
