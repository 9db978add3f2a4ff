"""SSD anchors, box decoding and weighted non-maximum suppression for the palm detector.

MediaPipe's palm detector (:mod:`m3dhmr.detect.hands`) regresses, for each of 2,016
fixed anchors on its 192 x 192 input, a box and 7 palm keypoints, plus one score logit.
Its anchors, decoding and the "weighted" NMS (overlapping boxes are averaged, weighted
by score, instead of dropped) are MediaPipe graph calculators, not part of the model
file, and no Python library we depend on implements them: they are written here in
NumPy, each against a naive loop reference in ``tests/test_anchors.py``.

Coordinates are normalised to the detector input: x, y in [0, 1] (x right, y down).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from m3dhmr.errors import InputError


@dataclass(frozen=True)
class AnchorConfig:
    """MediaPipe ``SsdAnchorsCalculator`` options of the 192-px palm detector.

    Layers with the same stride share one feature map; each layer contributes
    ``2 * len(aspect_ratios)`` anchors per cell (its scale and the interpolated scale).
    With ``fixed_anchor_size`` every anchor is 1 x 1, so only the centres matter.
    """

    input_size: int = 192
    num_layers: int = 4
    strides: tuple[int, ...] = (8, 16, 16, 16)
    aspect_ratios: tuple[float, ...] = (1.0,)
    anchor_offset: float = 0.5


def ssd_anchor_centres(cfg: AnchorConfig = AnchorConfig()) -> np.ndarray:
    """(A, 2) anchor centres (x, y), normalised; A = 2,016 for the default config.

    Order: feature maps by stride (consecutive layers of one stride merged), cells
    row-major (y, then x), then the anchors of a cell, as the model's outputs are laid out.
    """
    if len(cfg.strides) != cfg.num_layers:
        raise InputError(f"AnchorConfig: {cfg.num_layers} layers but {len(cfg.strides)} strides")
    out = []
    layer = 0
    while layer < cfg.num_layers:
        stride = cfg.strides[layer]
        last = layer
        while last < cfg.num_layers and cfg.strides[last] == stride:
            last += 1
        per_cell = (last - layer) * 2 * len(cfg.aspect_ratios)
        n = int(np.ceil(cfg.input_size / stride))
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        centres = np.stack([(xs + cfg.anchor_offset) / n, (ys + cfg.anchor_offset) / n], axis=-1).reshape(-1, 2)
        out.append(np.repeat(centres, per_cell, axis=0))
        layer = last
    return np.concatenate(out).astype(np.float64)


@dataclass(frozen=True)
class Detections:
    """Decoded detections. boxes: (N, 4) x_min, y_min, x_max, y_max; keypoints: (N, 7, 2)
    x, y; scores: (N,) in [0, 1]; all normalised to the detector input."""

    boxes: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, index) -> "Detections":
        return Detections(self.boxes[index], self.keypoints[index], self.scores[index])


def decode_boxes(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, input_size: int,
                 min_score: float = 0.5, clip: float = 100.0) -> Detections:
    """Decode the detector's outputs, keeping anchors scoring at least ``min_score``.

    raw_boxes: (A, 4 + 2 * K) per anchor: centre offset x, y, width, height, then K
    keypoint offsets x, y, all in input pixels relative to the anchor centre;
    raw_scores: (A,) or (A, 1) logits (clipped to +-``clip`` before the sigmoid);
    anchors: (A, 2) centres from :func:`ssd_anchor_centres`.
    """
    raw_boxes = np.asarray(raw_boxes, dtype=np.float64)
    raw_scores = np.asarray(raw_scores, dtype=np.float64).reshape(-1)
    A = len(anchors)
    if raw_boxes.ndim != 2 or raw_boxes.shape[0] != A or raw_boxes.shape[1] < 4 or raw_boxes.shape[1] % 2:
        raise InputError(f"raw_boxes must have shape ({A}, 4 + 2K), got {raw_boxes.shape}")
    if raw_scores.shape != (A,):
        raise InputError(f"raw_scores must have {A} values, got {raw_scores.shape}")
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores, -clip, clip)))
    keep = np.flatnonzero(scores >= min_score)
    r = raw_boxes[keep] / float(input_size)
    a = anchors[keep]
    centre = a + r[:, 0:2]
    half = r[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = r[:, 4:].reshape(len(keep), (raw_boxes.shape[1] - 4) // 2, 2) + a[:, None, :]
    return Detections(boxes, keypoints, scores[keep])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) intersection over union of boxes a (N, 4) and b (M, 4), x_min, y_min, x_max, y_max."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=-1)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=-1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def weighted_nms(det: Detections, iou_threshold: float = 0.3, max_detections: int | None = None) -> Detections:
    """MediaPipe's weighted non-maximum suppression.

    Repeatedly takes the highest-scoring remaining detection and every remaining one that
    overlaps it by more than ``iou_threshold``; the cluster becomes one detection whose box
    and keypoints are the score-weighted mean of the cluster's and whose score is the
    top one. Output sorted by score (highest first), at most ``max_detections``.
    """
    if len(det) == 0:
        return det
    order = np.argsort(-det.scores, kind="stable")
    remaining = order
    boxes, kps, scores = [], [], []
    while remaining.size and (max_detections is None or len(scores) < max_detections):
        top = remaining[0]
        iou = box_iou(det.boxes[top][None], det.boxes[remaining])[0]
        cluster = remaining[iou > iou_threshold]
        if top not in cluster:  # a zero-area top box overlaps nothing, not even itself
            cluster = np.concatenate([[top], cluster])
        w = det.scores[cluster]
        boxes.append((det.boxes[cluster] * w[:, None]).sum(0) / w.sum())
        kps.append((det.keypoints[cluster] * w[:, None, None]).sum(0) / w.sum())
        scores.append(det.scores[top])
        remaining = remaining[~np.isin(remaining, cluster)]
    return Detections(np.array(boxes).reshape(-1, 4), np.array(kps).reshape(len(scores), -1, 2), np.array(scores))
