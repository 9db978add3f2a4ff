"""Palm-detector anchors, decoding and weighted NMS against naive loops and hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from m3dhmr.detect import anchors as anc


def _naive_anchors(cfg: anc.AnchorConfig) -> np.ndarray:
    out = []
    layer = 0
    while layer < cfg.num_layers:
        same = [i for i in range(layer, cfg.num_layers) if cfg.strides[i] == cfg.strides[layer]]
        n = -(-cfg.input_size // cfg.strides[layer])
        for y in range(n):
            for x in range(n):
                for _ in range(len(same) * 2 * len(cfg.aspect_ratios)):
                    out.append(((x + cfg.anchor_offset) / n, (y + cfg.anchor_offset) / n))
        layer = same[-1] + 1
    return np.array(out)


def test_anchor_count_and_layout_match_the_model():
    a = anc.ssd_anchor_centres()
    assert a.shape == (2016, 2)  # 24 x 24 x 2 + 12 x 12 x 6: the detector's output length
    np.testing.assert_array_equal(a, _naive_anchors(anc.AnchorConfig()))
    np.testing.assert_allclose(a[0], [0.5 / 24, 0.5 / 24])
    np.testing.assert_allclose(a[1], a[0])  # two anchors per cell in the stride-8 map
    np.testing.assert_allclose(a[2], [1.5 / 24, 0.5 / 24])
    np.testing.assert_allclose(a[1152], [0.5 / 12, 0.5 / 12])  # first stride-16 cell
    np.testing.assert_allclose(a[-1], [11.5 / 12, 11.5 / 12])


def test_anchor_config_mismatch_is_an_error():
    with pytest.raises(ValueError, match="strides"):
        anc.ssd_anchor_centres(anc.AnchorConfig(num_layers=3))


def _naive_decode(raw_boxes, raw_scores, anchors, size, min_score):
    boxes, kps, scores = [], [], []
    for i in range(len(anchors)):
        s = 1 / (1 + np.exp(-min(max(raw_scores[i], -100.0), 100.0)))
        if s < min_score:
            continue
        ax, ay = anchors[i]
        cx, cy = raw_boxes[i, 0] / size + ax, raw_boxes[i, 1] / size + ay
        w, h = raw_boxes[i, 2] / size, raw_boxes[i, 3] / size
        boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        kps.append([[raw_boxes[i, 4 + 2 * k] / size + ax, raw_boxes[i, 5 + 2 * k] / size + ay] for k in range(7)])
        scores.append(s)
    return np.array(boxes), np.array(kps), np.array(scores)


def test_decode_matches_a_naive_loop():
    rng = np.random.default_rng(0)
    a = anc.ssd_anchor_centres()
    raw = rng.normal(0, 20, (len(a), 18))
    logits = rng.normal(-1, 2, len(a))
    det = anc.decode_boxes(raw, logits[:, None], a, 192, min_score=0.6)
    b, k, s = _naive_decode(raw, logits, a, 192, 0.6)
    assert 0 < len(det) < len(a)
    np.testing.assert_allclose(det.boxes, b)
    np.testing.assert_allclose(det.keypoints, k)
    np.testing.assert_allclose(det.scores, s)


def test_decode_hand_computed_case_and_empty_output():
    a = np.array([[0.25, 0.5], [0.75, 0.5]])
    raw = np.zeros((2, 18))
    raw[0, :4] = [19.2, -19.2, 96.0, 48.0]  # centre +0.1, -0.1; size 0.5 x 0.25 of the input
    raw[0, 4:6] = [0.0, 96.0]  # keypoint 0 half the input below the anchor
    det = anc.decode_boxes(raw, np.array([10.0, -10.0]), a, 192, min_score=0.5)
    assert len(det) == 1
    np.testing.assert_allclose(det.boxes[0], [0.35 - 0.25, 0.4 - 0.125, 0.35 + 0.25, 0.4 + 0.125])
    np.testing.assert_allclose(det.keypoints[0, 0], [0.25, 1.0])
    np.testing.assert_allclose(det.scores, [1 / (1 + np.exp(-10.0))])
    none = anc.decode_boxes(raw, np.array([-10.0, -10.0]), a, 192)
    assert len(none) == 0 and none.keypoints.shape == (0, 7, 2)
    with pytest.raises(ValueError, match="raw_boxes"):
        anc.decode_boxes(raw[:, :17], np.zeros(2), a, 192)


def _naive_iou(p, q):
    ix = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
    iy = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
    union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


def test_box_iou_matches_a_naive_loop_and_a_hand_case():
    rng = np.random.default_rng(1)
    lo = rng.uniform(0, 1, (6, 2))
    a = np.concatenate([lo, lo + rng.uniform(0.05, 0.5, (6, 2))], 1)
    lo = rng.uniform(0, 1, (5, 2))
    b = np.concatenate([lo, lo + rng.uniform(0.05, 0.5, (5, 2))], 1)
    naive = np.array([[_naive_iou(p, q) for q in b] for p in a])
    np.testing.assert_allclose(anc.box_iou(a, b), naive)
    # Two unit squares overlapping by half: 0.5 / 1.5.
    assert anc.box_iou(np.array([[0, 0, 1, 1]]), np.array([[0.5, 0, 1.5, 1]]))[0, 0] == pytest.approx(1 / 3)


def _naive_weighted_nms(boxes, kps, scores, thr):
    idx = sorted(range(len(scores)), key=lambda i: -scores[i])
    out = []
    while idx:
        top = idx[0]
        cluster = [i for i in idx if _naive_iou(boxes[top], boxes[i]) > thr]
        w = np.array([scores[i] for i in cluster])
        out.append((sum(boxes[i] * scores[i] for i in cluster) / w.sum(),
                    sum(kps[i] * scores[i] for i in cluster) / w.sum(), scores[top]))
        idx = [i for i in idx if i not in cluster]
    return out


def test_weighted_nms_matches_a_naive_loop():
    rng = np.random.default_rng(2)
    centres = rng.uniform(0.2, 0.8, (3, 2))
    lo = np.repeat(centres, 8, 0) + rng.normal(0, 0.03, (24, 2))
    boxes = np.concatenate([lo - 0.1, lo + 0.1], 1)
    det = anc.Detections(boxes, rng.uniform(0, 1, (24, 7, 2)), rng.uniform(0.5, 1, 24))
    got = anc.weighted_nms(det, 0.3)
    ref = _naive_weighted_nms(det.boxes, det.keypoints, det.scores, 0.3)
    assert len(got) == len(ref)
    for i, (b, k, s) in enumerate(ref):
        np.testing.assert_allclose(got.boxes[i], b)
        np.testing.assert_allclose(got.keypoints[i], k)
        assert got.scores[i] == s
    assert len(anc.weighted_nms(det, 0.3, max_detections=1)) == 1


def test_weighted_nms_averages_a_hand_made_cluster():
    boxes = np.array([[0, 0, 1, 1], [0.1, 0, 1.1, 1], [5, 5, 6, 6]], float)
    kps = np.zeros((3, 7, 2))
    kps[1] += 1.0
    det = anc.Detections(boxes, kps, np.array([0.9, 0.3, 0.6]))
    out = anc.weighted_nms(det, 0.3)
    np.testing.assert_allclose(out.scores, [0.9, 0.6])
    np.testing.assert_allclose(out.boxes[0], [0.025, 0, 1.025, 1])  # (0.9 * 0 + 0.3 * 0.1) / 1.2
    np.testing.assert_allclose(out.keypoints[0], 0.25)
    np.testing.assert_allclose(out.boxes[1], boxes[2])
    assert len(anc.weighted_nms(det.select(np.array([], int)), 0.3)) == 0
