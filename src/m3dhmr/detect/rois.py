"""Rotated square regions of a hand: from a palm detection, from landmarks, and the crop.

MediaPipe's landmark model looks at a square crop rotated so that the hand points up
(wrist at the bottom). The rules that place that square (the keypoints that set the
rotation, the shift towards the fingers, the enlargement) are MediaPipe graph options;
they are reproduced here as pure functions of pixel coordinates (x right, y down).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

#: Palm detection -> hand region (MediaPipe's palm-to-hand ``RectTransformation``).
PALM_SCALE, PALM_SHIFT_Y = 2.6, -0.5
#: Landmarks -> next frame's hand region (``hand_landmark_landmarks_to_roi``).
TRACK_SCALE, TRACK_SHIFT_Y = 2.0, -0.1
#: The landmarks that bound the tracked region (the fingertips are left out: they move
#: fastest and the enlargement covers them).
TRACK_LANDMARKS: tuple[int, ...] = (0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18)


@dataclass(frozen=True)
class RotatedSquare:
    """A square region: centre (cx, cy) and side in image pixels; ``rotation`` in radians
    (clockwise on screen), the angle that turns the crop's "up" into the hand's direction."""

    cx: float
    cy: float
    side: float
    rotation: float

    def crop_to_image(self, size: int) -> np.ndarray:
        """(2, 3) affine from the pixels of a ``size`` x ``size`` crop to image pixels."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        k = self.side / size
        R = np.array([[c, -s], [s, c]]) * k
        # Pixel centres: crop pixel i covers [i, i + 1) of the unit square scaled to the side.
        t = np.array([self.cx, self.cy]) - R @ np.array([size / 2 - 0.5, size / 2 - 0.5])
        return np.concatenate([R, t[:, None]], axis=1)

    def box(self) -> np.ndarray:
        """(4,) x, y, w, h of the axis-aligned box around the rotated square."""
        c, s = abs(math.cos(self.rotation)), abs(math.sin(self.rotation))
        half = self.side * (c + s) / 2
        return np.array([self.cx - half, self.cy - half, 2 * half, 2 * half])


def normalize_radians(a: float) -> float:
    """The angle in [-pi, pi)."""
    return (a + math.pi) % (2 * math.pi) - math.pi


def hand_rotation(start: np.ndarray, end: np.ndarray) -> float:
    """Rotation that makes the vector ``start -> end`` (pixels) point up in the crop."""
    return normalize_radians(math.pi / 2 - math.atan2(-(end[1] - start[1]), end[0] - start[0]))


def transform(cx: float, cy: float, w: float, h: float, rotation: float, scale: float,
              shift_y: float) -> RotatedSquare:
    """MediaPipe's ``RectTransformation`` (``square_long``): shift the centre by
    ``shift_y`` heights along the rotated y axis, take the longer side, enlarge."""
    cx = cx - h * shift_y * math.sin(rotation)
    cy = cy + h * shift_y * math.cos(rotation)
    return RotatedSquare(cx, cy, max(w, h) * scale, rotation)


def square_from_palm(box: np.ndarray, keypoints: np.ndarray) -> RotatedSquare:
    """Hand region of one palm detection.

    box: (4,) x_min, y_min, x_max, y_max pixels; keypoints: (7, 2) pixels (0: wrist
    centre, 2: middle finger's base), which set the rotation.
    """
    rotation = hand_rotation(keypoints[0], keypoints[2])
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return transform(cx, cy, box[2] - box[0], box[3] - box[1], rotation, PALM_SCALE, PALM_SHIFT_Y)


def square_from_landmarks(landmarks: np.ndarray) -> RotatedSquare:
    """Next frame's hand region from this frame's 21 landmarks (21, 2) pixels.

    The rotation points from the wrist to the mean of the index, middle and ring PIP
    joints (middle weighted half); the extent is measured in the rotated frame.
    """
    p = np.asarray(landmarks, dtype=np.float64)[:, :2]
    end = ((p[6] + p[14]) / 2 + p[10]) / 2
    rotation = hand_rotation(p[0], end)
    sub = p[list(TRACK_LANDMARKS)]
    c, s = math.cos(rotation), math.sin(rotation)
    # Into the crop frame (un-rotate), measure the box, back to the image.
    R = np.array([[c, -s], [s, c]])
    local = sub @ R  # == (R.T @ p.T).T
    lo, hi = local.min(0), local.max(0)
    centre = R @ ((lo + hi) / 2)
    w, h = hi - lo
    return transform(centre[0], centre[1], w, h, rotation, TRACK_SCALE, TRACK_SHIFT_Y)


def crop_square(image: np.ndarray, square: RotatedSquare, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The rotated square of ``image`` (H, W, 3) as (size, size, 3) (black outside the
    image), and its (2, 3) crop -> image affine."""
    A = square.crop_to_image(size)
    crop = cv2.warpAffine(image, A, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return crop, A
