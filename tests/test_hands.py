"""The packaged hand detector on rendered hands: found, boxed, left told from right."""

from __future__ import annotations

import json
import math
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
    # Huge and thin: letterboxed to a sliver, no hand, no crash, and a bounded number of
    # palm-detector runs (8 tiles and the whole image, for the image and its padded view).
    looks = []
    real_palms_in = detector.palms_in_view
    detector.palms_in_view = lambda view, x0, y0: (looks.append(view.shape[:2]), real_palms_in(view, x0, y0))[1]
    try:
        assert detector.detect(np.full((40, 8200, 3), 100, np.uint8)) == []
    finally:
        del detector.palms_in_view
    assert len(looks) == 2 * (1 + H.MAX_TILES), len(looks)


def _naive_square_tiles(h, w):
    """The square tiles of the short side, half-overlapping, evenly from end to end (a loop)."""
    short, long_ = min(h, w), max(h, w)
    n = 1
    while (long_ - short) / n > short / 2:  # fewest gaps no longer than half a tile
        n += 1
    starts = [round(k * (long_ - short) / n) for k in range(n + 1)]
    return [(s, 0, short, short) if w > h else (0, s, short, short) for s in starts]


@pytest.mark.parametrize("h, w", [(300, 960), (100, 151), (100, 450), (451, 100), (100, 451), (40, 8200),
                                  (8200, 40), (33, 100_000)])
def test_tiles_are_bounded_and_cover_the_image(h, w):
    views = H.tile_views(h, w)
    short, long_ = min(h, w), max(h, w)
    assert 1 <= len(views) <= H.MAX_TILES
    if long_ <= (H.MAX_TILES + 1) / 2 * short:  # square tiles of the short side, as many as that takes
        assert views == _naive_square_tiles(h, w)
    along = [(x, x + tw) if w > h else (y, y + th) for x, y, tw, th in views]
    for x, y, tw, th in views:  # inside the image, the whole short side
        assert 0 <= x and x + tw <= w and 0 <= y and y + th <= h and min(tw, th) == short
    assert along[0][0] == 0 and along[-1][1] == long_
    # Neighbours overlap by half a tile (to a pixel of rounding), at least half the short
    # side: anything that long (a hand) lies whole in one tile.
    half = along[0][1] // 2 - 1
    assert half >= short // 2 - 1
    for a in range(0, long_ - half + 1, max(1, (long_ - half) // 997)):
        assert any(lo <= a and a + half <= hi for lo, hi in along), a
    assert H.tile_views(100, 150) == [] and H.tile_views(150, 100) == []  # up to TILE_ASPECT: the whole image only
    with pytest.raises(ValueError, match="max_tiles"):
        H.tile_views(40, 8200, max_tiles=0)


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


def _hand(landmarks, score=0.9, side="right"):
    lm = np.asarray(landmarks, float)
    lo, hi = lm.min(0), lm.max(0)
    return H.DetectedHand(box=np.r_[lo, hi - lo], landmarks=lm, depth=np.zeros(21), handedness=side,
                          handedness_score=0.9, score=score, square=H.rois.square_from_landmarks(lm))


def _grid_hand(x, y, size):
    """21 points spread over a box of ``size`` (a side, or w, h) at (x, y)."""
    g = np.stack(np.meshgrid(np.linspace(0, 1, 7), np.linspace(0, 1, 3)), -1).reshape(-1, 2)[::-1]
    return np.array([x, y]) + g * np.asarray(size, float)


def same_hand_naive(a, b):
    """MediaPipe's HandDuplicatesFinder test, written as its C++ loops."""
    def base(p):
        return max(math.dist(p[0], p[5]), math.dist(p[5], p[17]), math.dist(p[17], p[0]))
    thr = 0.2 * max(base(a), base(b))
    matched = sum(math.dist(a[i], b[i]) < thr for i in range(21))
    ba = [min(a[:, 0]), min(a[:, 1]), max(a[:, 0]), max(a[:, 1])]
    bb = [min(b[:, 0]), min(b[:, 1]), max(b[:, 0]), max(b[:, 1])]
    iw = max(0, min(ba[2], bb[2]) - max(ba[0], bb[0]))
    ih = max(0, min(ba[3], bb[3]) - max(ba[1], bb[1]))
    union = (ba[2] - ba[0]) * (ba[3] - ba[1]) + (bb[2] - bb[0]) * (bb[3] - bb[1]) - iw * ih
    return matched >= 10 and iw * ih / union > 0.2


def test_same_hand_landmarks_matches_mediapipes_loops():
    from m3dhmr.detect import duplicates as D

    rng = np.random.default_rng(0)
    a = _grid_hand(100, 100, 80)
    for _ in range(200):
        b = a + rng.normal(scale=rng.uniform(1, 30), size=a.shape) + rng.uniform(-40, 40, 2)
        assert D.same_hand_landmarks(a, b) == same_hand_naive(a, b)
    assert D.same_hand_landmarks(a, a + 3.0)  # tiny shift: every landmark matches
    assert not D.same_hand_landmarks(a, a + 200.0)  # far apart
    assert D.baseline(np.zeros((21, 2))) == 0.0


def test_keep_drops_a_hand_drawn_inside_a_larger_one(detector):
    # The sign-language duplicate in miniature: a hand 113 x 168 px and a second, smaller
    # "hand" on its fingers (83 x 67 px, box IoU 0.29, no landmark near the big hand's).
    big = _hand(_grid_hand(106, 87, (113, 168)), 0.99)
    small = _hand(_grid_hand(128, 87, (83, 67)), 0.97, "left")
    assert H.box_iou_xywh(big.box, small.box) < 0.5  # the old rule kept both
    for order in ([big, small], [small, big]):
        assert detector.keep_hands(order) == [big]
    far = _hand(_grid_hand(400, 50, 90), 0.95)
    assert detector.keep_hands([small, far, big]) == [big, far]  # distinct hands stay, by presence


def test_detect_skips_palms_of_known_hands(detector, two_hands):
    canvas, _, _ = two_hands
    found = sorted(detector.detect(canvas), key=lambda h: h.box[0])
    again = detector.detect(canvas, known=[found[0].box])
    assert len(again) == 1 and abs(again[0].box[0] - found[1].box[0]) < 2
    assert detector.detect(canvas, known=[h.box for h in found]) == []


def test_hand_from_points_keeps_side_and_score():
    prev = _hand(_grid_hand(10, 10, 50), 0.8, "left")
    pts = _grid_hand(30, 40, 60)
    h = H.hand_from_points(pts, prev)
    np.testing.assert_allclose(h.box, [30, 40, 60, 60])
    assert (h.handedness, h.score) == ("left", 0.8) and np.isnan(h.depth).all()
    assert h.square == H.rois.square_from_landmarks(pts)
    with pytest.raises(ValueError, match="21, 2"):
        H.hand_from_points(np.zeros((20, 2)), prev)


@pytest.mark.skipif(not SIGN_PHOTO.is_file(), reason="needs ../shared/data/sign-language-digits")
def test_sign_photo_in_a_wide_picture_is_found_once():
    # A 270-px hand in a 960 x 300 picture: a square tile sees it as a tight crop and the
    # palm detector fires on its curled fingers too; before, that gave a second hand.
    import cv2

    image = load_image(SIGN_PHOTO.parents[1] / "0" / "IMG_5950.JPG")
    canvas = np.full((300, 960, 3), 128, np.uint8)
    canvas[24:294, 10:280] = cv2.resize(image, (270, 270))[:, ::-1]
    hands = HandDetector().detect(canvas)
    assert len(hands) == 1 and hands[0].box[2] > 100 and hands[0].box[3] > 140
