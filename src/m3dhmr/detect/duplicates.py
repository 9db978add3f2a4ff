"""Two landmark sets on one hand: which hands found in an image are duplicates.

Two palm detections can survive the weighted NMS on one hand (a palm and a false "palm"
on the curled fingers, or the same palm seen in the whole image and in a tile, see
:meth:`m3dhmr.detect.HandDetector.detect_palms`), and each gives a hand after the
landmark model. Three rules, on the 21 landmarks (21, 2) in image pixels:

- :func:`same_hand_landmarks`: MediaPipe's ``HandLandmarksDeduplicationCalculator``: at
  least 10 of the 21 landmarks within 0.2 of the larger hand's baseline (the longest side
  of the wrist, index-MCP, pinky-MCP triangle) of each other, and boxes overlapping by
  IoU > 0.2;
- boxes overlapping by IoU > ``duplicate_iou`` (this package's earlier rule, kept: it is
  how followed tracks that converged are merged);
- :func:`inside`: a hand whose box lies (>= 80 %) inside a hand twice its area or more. On a
  sign-language photo (the hand 270 px in a 960 x 300 picture) a square tile sees the hand as a tight crop, the palm
  detector fires on the curled fingers, and the landmark model draws a second, smaller
  hand there (presence 0.97; 0 of its landmarks near the real hand's, so MediaPipe's rule
  keeps it). Cost: a small hand held in front of a much larger one is dropped.
"""

from __future__ import annotations

import numpy as np

#: MediaPipe's thresholds (``hand_landmarks_deduplication_calculator.cc``).
BASELINE_RATIO, MIN_MATCHED, MIN_IOU = 0.2, 10, 0.2
#: A box this much inside one at least 1 / ``INSIDE_AREA`` times its area is a duplicate.
INSIDE_COVER, INSIDE_AREA = 0.8, 0.5


def landmark_box(landmarks: np.ndarray) -> np.ndarray:
    """(4,) x_min, y_min, x_max, y_max of landmarks (N, 2)."""
    p = np.asarray(landmarks, np.float64)[:, :2]
    return np.r_[p.min(0), p.max(0)]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def baseline(landmarks: np.ndarray) -> float:
    """Longest side of the wrist (0), index MCP (5), pinky MCP (17) triangle, pixels."""
    p = np.asarray(landmarks, np.float64)[:, :2]
    return float(max(np.linalg.norm(p[i] - p[j]) for i, j in ((0, 5), (5, 17), (17, 0))))


def same_hand_landmarks(a: np.ndarray, b: np.ndarray) -> bool:
    """MediaPipe's duplicate test of two (21, 2) landmark sets (see the module doc)."""
    a, b = np.asarray(a, np.float64)[:, :2], np.asarray(b, np.float64)[:, :2]
    threshold = BASELINE_RATIO * max(baseline(a), baseline(b))
    matched = int((np.linalg.norm(a - b, axis=1) < threshold).sum())
    return matched >= MIN_MATCHED and _iou(landmark_box(a), landmark_box(b)) > MIN_IOU


def inside(small: np.ndarray, large: np.ndarray) -> bool:
    """Whether landmarks ``small`` (21, 2) lie in the box of the (much larger) ``large``:
    >= :data:`INSIDE_COVER` of its box covered, and at most :data:`INSIDE_AREA` of its area."""
    s, g = landmark_box(small), landmark_box(large)
    area_s, area_g = (s[2] - s[0]) * (s[3] - s[1]), (g[2] - g[0]) * (g[3] - g[1])
    if area_g <= 0 or area_s > INSIDE_AREA * area_g:
        return False
    w = max(0.0, min(s[2], g[2]) - max(s[0], g[0]))
    h = max(0.0, min(s[3], g[3]) - max(s[1], g[1]))
    return area_s > 0 and w * h >= INSIDE_COVER * area_s


def duplicate(a: np.ndarray, b: np.ndarray, iou: float = 0.5) -> bool:
    """Whether landmarks ``a`` and ``b`` (21, 2) are one hand by any rule of the module doc
    (``iou``: the box-overlap rule's threshold)."""
    return (_iou(landmark_box(a), landmark_box(b)) > iou or same_hand_landmarks(a, b)
            or inside(a, b) or inside(b, a))


def keep_distinct(landmarks: list[np.ndarray], scores: np.ndarray, iou: float = 0.5) -> list[int]:
    """Indices of the hands to keep, highest score first: each hand is dropped when it
    lies :func:`inside` a larger hand of the list, or is a :func:`duplicate` of a kept one."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    candidates = [i for i in order
                  if not any(j != i and inside(landmarks[i], landmarks[j]) for j in order)]
    kept: list[int] = []
    for i in candidates:
        if not any(duplicate(landmarks[i], landmarks[k], iou) for k in kept):
            kept.append(int(i))
    return kept
