"""The packaged hand detector on rendered hands: found, boxed, left told from right."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from m3dhmr.detect import HandDetector
from m3dhmr.detect import hands as H
from m3dhmr.detect.anchors import box_iou
from m3dhmr.inference.images import load_image

# Samples of the tiny synthetic set (seed 0) whose hands the detector calls with a
# clear margin (it is a real-photo model; on our renders it finds ~80 % of the hands and
# its handedness is right ~75 % of the time).
RIGHT, OTHER = 7, 2


@pytest.fixture(scope="module")
def detector():
    return HandDetector(max_hands=4)


def _sample(root, i):
    img = load_image(root / "training" / "rgb" / f"{i:08d}.jpg")
    xyz = np.array(json.loads((root / "training_xyz.json").read_text())[i])
    K = np.array(json.loads((root / "training_K.json").read_text())[i])
    uv = xyz @ K.T
    return img, uv[:, :2] / uv[:, 2:]


def _xyxy(b):
    return np.r_[b[:2], b[:2] + b[2:]]


@pytest.fixture(scope="module")
def two_hands(tiny_data):
    """A 640 x 300 picture: a right hand at (20, 40) and a left hand (a mirrored right
    hand) at (380, 60), each 224 px, with their true joints in picture pixels."""
    a, ja = _sample(tiny_data, RIGHT)
    b, jb = _sample(tiny_data, OTHER)
    canvas = np.full((300, 640, 3), 90, np.uint8)
    canvas[40:264, 20:244] = a
    canvas[60:284, 380:604] = b[:, ::-1]
    truth_right = ja + [20, 40]
    truth_left = np.stack([223 - jb[:, 0], jb[:, 1]], 1) + [380, 60]
    return canvas, truth_right, truth_left


def _truth_box(j):
    lo, hi = j.min(0), j.max(0)
    return np.r_[lo, hi - lo]


def test_two_hands_found_boxed_and_told_apart(detector, two_hands):
    canvas, tr, tl = two_hands
    found = detector.detect(canvas)
    assert len(found) == 2
    found = sorted(found, key=lambda h: h.box[0])
    for hand, truth, side in zip(found, (tr, tl), ("right", "left")):
        iou = box_iou(_xyxy(hand.box)[None], _xyxy(_truth_box(truth))[None])[0, 0]
        assert iou >= 0.5, (side, iou)
        assert hand.handedness == side
        assert hand.score >= 0.5 and 0.5 <= hand.handedness_score <= 1.0
        # Within 15 % of the hand's extent on average (~11-17 px on these 75-115-px hands):
        # the detector is a real-photo model, and rendered hands are off its domain.
        extent = float(np.ptp(truth, axis=0).max())
        assert np.linalg.norm(hand.landmarks - truth, axis=1).mean() < 0.15 * extent
        assert hand.landmarks.shape == (21, 2) and hand.depth.shape == (21,) and hand.depth[0] == 0.0


def test_max_hands_keeps_the_most_certain(two_hands):
    canvas, _, _ = two_hands
    one = HandDetector(max_hands=1).detect(canvas)
    assert len(one) == 1


def test_no_hand_is_an_empty_list(detector):
    rng = np.random.default_rng(0)
    assert detector.detect(np.full((240, 320, 3), 128, np.uint8)) == []
    assert detector.detect(rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)) == []


def test_tracking_follows_a_moving_hand_and_loses_it(detector, two_hands):
    canvas, tr, _ = two_hands
    first = sorted(detector.detect(canvas), key=lambda h: h.box[0])[0]
    moved = np.roll(canvas, 6, axis=1)
    followed = detector.track(moved, [first])[0]
    assert followed is not None and followed.handedness == "right"
    assert np.linalg.norm(followed.landmarks - (tr + [6, 0]), axis=1).mean() < 10.0
    assert detector.track(np.full_like(canvas, 128), [first]) == [None]


def test_pad_view_and_shift_match_a_loop():
    img = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    padded, p = H.pad_view(img, 0.5)
    assert p == 5 and padded.shape == (20, 22, 3)
    for y in range(20):  # naive edge padding
        for x in range(22):
            assert (padded[y, x] == img[min(max(y - p, 0), 9), min(max(x - p, 0), 11)]).all()
    assert H.pad_view(img, 0.0) == (img, 0)
    sq = H.rois.RotatedSquare(11.0, 10.0, 112.0, 0.3)
    hand = H.DetectedHand(box=np.array([3.0, 4.0, 10.0, 10.0]), landmarks=np.arange(42.0).reshape(21, 2),
                          depth=np.zeros(21), handedness="right", handedness_score=0.9, score=0.8, square=sq)
    moved = H.shift_hand(hand, -p, -p)
    np.testing.assert_allclose(moved.landmarks, hand.landmarks - p)
    np.testing.assert_allclose(moved.box, [-2, -1, 10, 10])
    assert (moved.square.cx, moved.square.cy, moved.square.side, moved.square.rotation) == (6.0, 5.0, 112.0, 0.3)


SIGN_PHOTO = Path(__file__).resolve().parents[2] / "shared/data/sign-language-digits/Dataset/7/IMG_5050.JPG"


@pytest.mark.skipif(not SIGN_PHOTO.is_file(), reason="needs ../shared/data/sign-language-digits")
def test_tight_crop_found_in_the_padded_view():
    # A 100-px photo filled by hand and forearm: the palm detector misses it as it is.
    image = load_image(SIGN_PHOTO)
    assert HandDetector(pad_fraction=0.0).detect(image) == []
    assert HandDetector().detect(image, pad=False) == []  # the caller pads itself
    hands = HandDetector().detect(image)
    assert len(hands) == 1 and hands[0].score > 0.9
    # Back in the photo's pixels: the hand's landmarks lie inside the 100 x 100 photo.
    lm = hands[0].landmarks
    assert (lm > -5).all() and (lm < 105).all() and np.ptp(lm[:, 1]) > 40
    assert hands[0].square.cx < 100 and hands[0].square.cy < 100


def test_image_checks(detector):
    with pytest.raises(ValueError, match="too small"):
        detector.detect(np.zeros((20, 300, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        detector.detect(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        detector.detect(np.zeros((64, 64, 3), np.float32))
    # Huge and thin: letterboxed to a sliver, no hand, no crash.
    assert detector.detect(np.full((40, 8200, 3), 100, np.uint8)) == []


def test_model_files_are_checked(tmp_path):
    for name in H.MODEL_FILES:
        assert H.model_path(name).is_file()
    shutil.copy(H.MODEL_DIR / "hand_detector.tflite", tmp_path / "hand_detector.tflite")
    with open(tmp_path / "hand_detector.tflite", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="hand_detector.tflite.*SHA-256"):
        H.model_path("hand_detector.tflite", tmp_path)
    with pytest.raises(FileNotFoundError, match="hand_landmarks_detector.tflite"):
        H.model_path("hand_landmarks_detector.tflite", tmp_path)
    with pytest.raises(ValueError, match="unknown detector model"):
        H.model_path("face.tflite")


def test_bad_settings():
    with pytest.raises(ValueError, match="max_hands"):
        HandDetector(max_hands=0)
    with pytest.raises(ValueError, match="min_presence"):
        HandDetector(min_presence=1.5)
    with pytest.raises(ValueError, match="pad_fraction"):
        HandDetector(pad_fraction=-0.1)
