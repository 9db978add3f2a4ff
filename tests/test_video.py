import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch

from m3dhmr.inference import crops
from m3dhmr.inference.one_euro import OneEuroConfig, OneEuroFilter
from m3dhmr.inference.predictor import Predictor
from m3dhmr.inference.result import PredictionResult
from m3dhmr.inference.video import (HandTracker, SmoothingConfig, TemporalSmoother, VideoReader, predict_video,
                                    write_video)
from m3dhmr.models import M3DHMR
from model_helpers import tiny_model_config, tiny_topology


def clip(n=5, h=48, w=64):
    frames = []
    for i in range(n):
        f = np.full((h, w, 3), 40, np.uint8)
        cv2.circle(f, (16 + 6 * i, 24), 10, (230, 170, 140), -1)
        frames.append(f)
    return frames


@pytest.mark.parametrize("ext", [".mp4", ".avi"])
def test_video_round_trip(tmp_path, ext):
    frames = clip()
    path = tmp_path / f"c{ext}"
    assert write_video(path, frames, fps=12.0) == 5
    with VideoReader(path) as r:
        got = list(r)
        assert r.info.fps == pytest.approx(12.0)
        assert (r.info.width, r.info.height) == (64, 48)
    assert len(got) == 5 and got[0].shape == (48, 64, 3)
    # Lossy codecs: compare loosely; RGB order is preserved (the blob is reddish).
    assert np.abs(got[2].astype(int) - frames[2]).mean() < 12
    assert got[2][24, 28, 0] > got[2][24, 28, 2]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        VideoReader(tmp_path / "missing.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="bad.mp4"):
        VideoReader(tmp_path / "bad.mp4")
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "e.mp4", [])


def test_tracker_follows_landmarks_and_falls_back():
    tr = HandTracker(100, 120)
    np.testing.assert_allclose(tr.box, crops.full_image_box(100, 120))
    j = np.stack([np.linspace(40, 60, 21), np.linspace(30, 40, 21)], axis=1)
    assert tr.update(j, True)
    np.testing.assert_allclose(tr.box, crops.box_from_points(j, 100, 120, crops.DEFAULT_TRACK_MARGIN))
    assert not tr.update(j, False)  # registration failed: back to the initial box
    np.testing.assert_allclose(tr.box, crops.full_image_box(100, 120))
    tr2 = HandTracker(100, 120, initial_box=np.array([1.0, 2, 30, 30]))
    tr2.update(j, True)
    assert not tr2.update(j + 500, True)  # landmarks left the frame
    np.testing.assert_allclose(tr2.box, [1, 2, 30, 30])


def fake_result(rng, success=True):
    t = rng.normal(size=3) * 0.01 + [0, 0, 0.5]
    v = rng.normal(size=(10, 3)) * 0.05
    return PredictionResult(joints2d=rng.normal(size=(21, 2)) * 3 + 50, joints3d=rng.normal(size=(21, 3)) * 0.05 + t,
                            vertices=v + t, faces=np.array([[0, 1, 2]]), translation=t, success=success,
                            reprojection_error=1.0, hand_box=np.zeros(4), crop_box=np.zeros(4), K=np.eye(3),
                            image_size=(100, 100), left=False)


def test_smoother_matches_separate_filters_and_resets():
    rng = np.random.default_rng(0)
    cfg = SmoothingConfig(pixels=OneEuroConfig(0.5, 0.1), metres=OneEuroConfig(0.7, 5.0))
    sm = TemporalSmoother(cfg)
    ref = {k: OneEuroFilter(c) for k, c in (("j2", cfg.pixels), ("t", cfg.metres), ("j", cfg.metres),
                                            ("v", cfg.metres))}
    for i in range(6):
        r = fake_result(rng)
        out = sm(r, i / 30)
        tr = ref["t"](r.translation, i / 30)
        np.testing.assert_allclose(out.translation, tr)
        np.testing.assert_allclose(out.joints2d, ref["j2"](r.joints2d, i / 30))
        np.testing.assert_allclose(out.joints3d, ref["j"](r.joints3d - r.translation, i / 30) + tr)
        np.testing.assert_allclose(out.vertices, ref["v"](r.vertices - r.translation, i / 30) + tr)
    failed = fake_result(rng, success=False)
    assert sm(failed, 1.0) is failed
    r = fake_result(rng)
    np.testing.assert_allclose(sm(r, 0.0).joints2d, r.joints2d)  # restarted: first sample passes through


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return Predictor.from_model(M3DHMR(tiny_model_config(), tiny_topology()).eval())


class Recording:
    """Wraps the real predictor to record the boxes it was asked to crop."""

    def __init__(self, predictor):
        self.predictor, self.boxes = predictor, []

    def predict(self, image, *, crop_box=None, K=None, left=None, **kwargs):
        self.boxes.append(np.array(crop_box))
        results = self.predictor.predict(image, crop_box=crop_box, K=K, left=left, **kwargs)
        return [dataclasses.replace(r, success=True) for r in results]  # random weights: pretend registration worked


@pytest.mark.parametrize("smooth", [False, True])
def test_predict_video_round_trip(tmp_path, predictor, smooth):
    src = tmp_path / "in.mp4"
    write_video(src, clip(), fps=10.0)
    rec = Recording(predictor)
    s = predict_video(rec, src, tmp_path / "out.mp4", tmp_path / "out.jsonl", whole_frame=True, smooth=smooth)
    assert s.frames == 5 and s.successes == 5 and s.hands == 1
    with VideoReader(tmp_path / "out.mp4") as r:
        assert len(list(r)) == 5 and (r.info.width, r.info.height) == (64, 48)
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [d["frame"] for d in lines] == list(range(5))
    assert lines[1]["time_s"] == pytest.approx(0.1)
    hands = [d["hands"] for d in lines]
    assert all(len(h) == 1 and h[0]["id"] == 0 for h in hands)
    assert np.array(hands[0][0]["joints3d"]).shape == (21, 3) and "vertices" not in hands[0][0]
    assert [h[0]["tracked"] for h in hands] == [False, True, True, True, True]
    # First frame: the whole frame; then the box around the previous frame's landmarks.
    np.testing.assert_allclose(rec.boxes[0], crops.full_image_box(48, 64))
    expected = crops.box_from_points(np.array(hands[0][0]["joints2d"]), 48, 64)
    if not smooth:  # smoothing changes the written landmarks, not the tracking input
        np.testing.assert_allclose(rec.boxes[1], expected, atol=1e-2)


def test_predict_video_bad_box(tmp_path, predictor):
    src = tmp_path / "in.avi"
    write_video(src, clip(2), fps=10.0)
    with pytest.raises(ValueError, match="entirely outside"):
        predict_video(predictor, src, tmp_path / "o.mp4", tmp_path / "o.jsonl", crop_box=np.array([500.0, 0, 10, 10]))
    with pytest.raises(ValueError, match="entirely outside"):
        predict_video(predictor, src, tmp_path / "o.mp4", tmp_path / "o.jsonl",
                      hand_box=np.array([500.0, 0, 10, 10]))
    with pytest.raises(ValueError, match="at most one"):
        predict_video(predictor, src, tmp_path / "o.mp4", tmp_path / "o.jsonl", crop_box=np.ones(4), whole_frame=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.avi"]  # nothing half-written


def _two_hand_clip(root, n=8):
    """Two rendered hands (a right one, and a mirrored one: left) moving towards each other."""
    from m3dhmr.inference.images import load_image

    a = load_image(root / "training" / "rgb" / "00000007.jpg")
    b = load_image(root / "training" / "rgb" / "00000002.jpg")[:, ::-1]
    frames = []
    for i in range(n):
        c = np.full((300, 520, 3), 90, np.uint8)
        c[40:264, 10 + 4 * i:234 + 4 * i] = a
        c[60:284, 286 - 4 * i:510 - 4 * i] = b
        frames.append(c)
    return frames


def test_two_hands_keep_their_ids(tmp_path, predictor, tiny_data):
    write_video(tmp_path / "two.mp4", _two_hand_clip(tiny_data), fps=10.0)
    s = predict_video(predictor, tmp_path / "two.mp4", tmp_path / "o.mp4", tmp_path / "o.jsonl", smooth=True)
    assert s.frames == 8 and s.hands == 2
    lines = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    first = [h["id"] for h in sorted(lines[0]["hands"], key=lambda h: h["hand_box"][0])]
    assert sorted(first) == [0, 1]
    for d in lines:
        by_x = sorted(d["hands"], key=lambda h: h["hand_box"][0])
        assert [h["id"] for h in by_x] == first, d["frame"]  # each hand keeps its id
        assert [h["handedness"] for h in by_x] == ["right", "left"]
    assert [h["tracked"] for h in lines[0]["hands"]] == [False, False]
    assert all(h["tracked"] for d in lines[1:] for h in d["hands"])  # followed, not re-detected
    # The boxes follow the motion: 4 px a frame towards each other (columns: left, right hand in the frame).
    # Frame 0's box is the detection's, which differs from the followed landmarks' box by a few px
    # (either way, even on the uncompressed frames): the steady motion is checked from frame 1 on.
    x = np.array([[next(h["hand_box"][0] for h in d["hands"] if h["id"] == i) for i in first] for d in lines])
    assert np.all(np.diff(x[1:, 0]) > 0) and np.all(np.diff(x[1:, 1]) < 0)
    assert x[-1, 0] > x[0, 0] + 8 and x[-1, 1] < x[0, 1] - 8


def test_multi_hand_tracker_redetects_after_a_loss(tiny_data):
    from m3dhmr.detect import HandDetector
    from m3dhmr.inference.video import MultiHandTracker

    frames = _two_hand_clip(tiny_data, 3)
    tr = MultiHandTracker(HandDetector(max_hands=2), redetect_every=100)
    assert [h.id for h in tr.update(frames[0])] == [0, 1]
    blank = np.full_like(frames[0], 90)
    assert tr.update(blank) == []  # both lost; detection finds nothing
    found = tr.update(frames[2])
    assert [h.id for h in found] == [2, 3]  # found again: new ids
    assert not any(h.followed for h in found) and all(h.followed for h in tr.update(frames[2]))
    with pytest.raises(ValueError, match="redetect_every"):
        MultiHandTracker(None, redetect_every=0)


class CountingDetector:
    """A stand-in detector: one hand at a fixed place; counts its landmark-model runs."""

    max_hands = 2

    def __init__(self):
        from m3dhmr.detect import hands as H

        g = np.stack(np.meshgrid(np.linspace(0, 1, 7), np.linspace(0, 1, 3)), -1).reshape(-1, 2)
        self.hand = H.hand_from_points(40 + 30 * g, H.DetectedHand(np.zeros(4), np.zeros((21, 2)), np.zeros(21),
                                                                  "right", 0.9, 0.95, None))
        self.hand = dataclasses.replace(self.hand, depth=np.zeros(21))  # as the landmark model gives
        self.tracked = self.detected = 0

    def detect(self, frame, known=None):
        self.detected += 1
        return [] if known else [self.hand]

    def track(self, frame, previous):
        self.tracked += len(previous)
        return [self.hand for _ in previous]


def _result_at(hand, success=True, shift=0.0):
    return dataclasses.replace(fake_result(np.random.default_rng(0), success), joints2d=hand.landmarks + shift)


def test_multi_hand_tracker_landmarks_every_n_frames():
    from m3dhmr.inference.video import MultiHandTracker

    frame = np.zeros((120, 160, 3), np.uint8)
    det = CountingDetector()
    tr = MultiHandTracker(det, redetect_every=100, landmarks_every=3)
    sources = []
    for f in range(8):
        [tracked] = tr.update(frame)
        hand = tracked.hand
        sources.append(np.isnan(hand.depth).all())  # placed by the network's joints
        tr.feedback([_result_at(hand, shift=2.0)])
    # Frame 0 detected; the landmark model on frames 3 and 6; the network's joints between.
    assert sources == [False, True, True, False, True, True, False, True]
    assert det.tracked == 2 and det.detected == 1
    # Constant velocity: the network's joints moved 2 px a frame, the next crop leads by 2 px.
    hand = tr.update(frame)[0].hand
    assert np.isnan(hand.depth).all()
    tr.feedback([_result_at(hand, success=False)])  # untrusted: the landmark model next frame
    hand = tr.update(frame)[0].hand
    assert not np.isnan(hand.depth).any() and det.tracked == 3
    hand = tr.update(frame)[0].hand  # no feedback given: the landmark model again
    assert not np.isnan(hand.depth).any() and det.tracked == 4
    with pytest.raises(ValueError, match="feedback: 0 results for 1 hands"):
        tr.feedback([])
    with pytest.raises(ValueError, match="landmarks_every"):
        MultiHandTracker(det, landmarks_every=0)


def test_multi_hand_tracker_default_runs_the_landmark_model_every_frame():
    from m3dhmr.inference.video import MultiHandTracker

    det = CountingDetector()
    tr = MultiHandTracker(det, redetect_every=100)
    for _ in range(4):
        [tracked] = tr.update(np.zeros((120, 160, 3), np.uint8))
        hand = tracked.hand
        tr.feedback([_result_at(hand)])
        assert not np.isnan(hand.depth).any()
    assert det.tracked == 3
