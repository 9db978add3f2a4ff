"""The real-photo yardstick: its maths against loops and hand-computed cases, the runner
with stand-ins, and the packaged model on a few held-out sign-digit photos (the finger-state
maths: test_finger_states.py)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from m3dhmr.conventions import FINGER_NAMES
from m3dhmr.data.pseudo_labels import PseudoLabels
from m3dhmr.data.sign_digits import EXPECTED_FINGER_STATES
from m3dhmr.evaluation import real as R

SIGN = Path(__file__).resolve().parents[2] / "shared" / "data" / "sign-language-digits"
needs_sign = pytest.mark.skipif(not (SIGN / "Dataset").is_dir(),
                                reason=f"the sign-language-digits photos are not at {SIGN}")


# ---------------------------------------------------------------------- 2D errors, PCK


def test_palm_errors_hand_computed():
    ref = np.zeros((1, 21, 2))
    ref[0, 9] = [0, 10]  # palm = 10 px
    pred = ref.copy()
    pred[0, 5] += [3, 4]  # 5 px = 0.5 palm: counts (<=)
    pred[0, 8] += [6, 8]  # 1 palm
    e = R.palm_errors(pred, ref)
    assert e[0, 5] == pytest.approx(0.5) and e[0, 8] == pytest.approx(1.0) and e[0, 0] == 0
    total, per = R.pck(e)
    assert total == pytest.approx(20 / 21) and per[5] == 1 and per[8] == 0


def test_palm_errors_match_a_loop():
    rng = np.random.default_rng(0)
    ref, pred = rng.normal(size=(2, 5, 21, 2)) * 20
    e = R.palm_errors(pred, ref)
    for n in range(5):
        palm = math.dist(ref[n, 0], ref[n, 9])
        for j in range(21):
            assert e[n, j] == pytest.approx(math.dist(pred[n, j], ref[n, j]) / palm)
    total, per = R.pck(e, 0.7)
    assert total == pytest.approx(sum(e[n, j] <= 0.7 for n in range(5) for j in range(21)) / 105)
    assert per[3] == pytest.approx(sum(e[n, 3] <= 0.7 for n in range(5)) / 5)


def test_palm_errors_bad_input():
    with pytest.raises(ValueError, match=r"\(N, 21, 2\)"):
        R.palm_errors(np.zeros((1, 21, 3)), np.zeros((1, 21, 3)))
    with pytest.raises(ValueError, match="palm length 0"):
        R.palm_errors(np.zeros((1, 21, 2)), np.zeros((1, 21, 2)))


# ---------------------------------------------------------------------- finger-state accuracy


def test_state_accuracy_hand_computed():
    states = np.array([list(EXPECTED_FINGER_STATES[5].as_tuple()),
                       ["out", "curled", "extended", "extended", "curled"]])  # a 0: thumb "any"; 2 of 4 right
    acc, per = R.state_accuracy(states, np.array([5, 0]))
    assert per[5] == 1.0 and per[0] == 0.5 and math.isnan(per[3])
    assert acc == pytest.approx((5 + 2) / 9)


def test_state_accuracy_matches_a_loop():
    rng = np.random.default_rng(2)
    digits = rng.integers(0, 10, 50)
    states = np.where(rng.random((50, 5)) < 0.5, "extended", "curled")
    states[:, 0] = np.where(rng.random(50) < 0.5, "out", "across")
    acc, per = R.state_accuracy(states, digits)
    right = counted = 0
    for s, d in zip(states, digits):
        for f, name in enumerate(FINGER_NAMES):
            e = EXPECTED_FINGER_STATES[int(d)][name]
            if e != "any":
                counted += 1
                right += s[f] == e
    assert acc == pytest.approx(right / counted)


# ---------------------------------------------------------------------- rank correlation


def _spearman_loop(a, b):
    """Pearson correlation of mean ranks, by loops."""
    def ranks(x):
        r = []
        for v in x:
            below = sum(w < v for w in x)
            equal = sum(w == v for w in x)
            r.append(below + (equal + 1) / 2)
        return r

    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    return cov / math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))


def test_spearman():
    assert R.spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 25, 100])) == pytest.approx(1.0)
    # hand-computed: ranks (1, 2, 3) and (2, 1, 3) -> d = (1, 1, 0), 1 - 6 * 2 / (3 * 8) = 0.5
    assert R.spearman(np.array([1.0, 2, 3]), np.array([5.0, 4, 9])) == pytest.approx(0.5)
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 5, 30).astype(float), rng.normal(size=30)  # ties in a
    assert R.spearman(a, b) == pytest.approx(_spearman_loop(a, b))
    assert math.isnan(R.spearman(np.ones(5), b[:5])) and math.isnan(R.spearman(a[:2], b[:2]))
    with pytest.raises(ValueError, match=r"\(N,\)"):
        R.spearman(a, b[:3])


# ---------------------------------------------------------------------- the runner with stand-ins


class _Det:
    """Finds a hand only in images brighter than 100 (then at a fixed place)."""

    def detect(self, image, pad=True):
        if image.mean() < 100:
            return []
        from m3dhmr.detect import DetectedHand
        from m3dhmr.detect.rois import RotatedSquare

        return [DetectedHand(box=np.array([10.0, 10, 20, 20]), landmarks=np.zeros((21, 2)), depth=np.zeros(21),
                             handedness="right", handedness_score=1.0, score=0.9,
                             square=RotatedSquare(20.0, 20.0, 30.0, 0.0))]


class _Pred:
    """Returns the reference + a known offset (per image) as its 2D joints."""

    def __init__(self, ref, offsets):
        self.detector, self.ref, self.offsets, self.calls = _Det(), ref, offsets, 0

    def predict_hands(self, image, hands):
        i = int(image[0, 0, 1])  # the image's index is written in its green channel
        self.calls += 1
        j3 = np.random.default_rng(i).normal(size=(21, 3))
        return [SimpleNamespace(joints2d=self.ref[i] + self.offsets[i], joints3d=j3, reprojection_error=0.5,
                                quality=1.0 - float(self.offsets[i].mean()) / 10)]


def test_runner_counts_missed_hands(tmp_path):
    n = 4
    paths = []
    for i in range(n):
        img = np.full((40, 40, 3), 50 if i == 3 else 200, np.uint8)  # no hand in image 3
        img[..., 1] = i
        p = tmp_path / f"im{i}.png"
        cv2.imwrite(str(p), img[..., ::-1])
        paths.append(p)
    ref = np.zeros((n, 21, 2), np.float32)
    ref[:, 9] = [0, 10]
    presence = np.array([0.9, 0.9, 0.2, 0.9], np.float32)  # the reference is unsure of image 2
    labels = PseudoLabels(tuple(paths), ref, np.zeros((n, 21), np.float32), presence, ("right",) * n)
    offsets = np.zeros((n, 21, 2))
    offsets[0, :, 0] = 2.0   # 0.2 palm everywhere
    offsets[1, :, 0] = 8.0   # 0.8 palm everywhere
    pred = _Pred(ref, offsets)
    r = R.evaluate_real(pred, tmp_path, "heldout", labels=labels)
    assert (r.n_images, r.n_reference, r.n_predicted, r.n_detected) == (4, 3, 3, 2)
    assert r.detected.tolist() == [True, True, False, False]
    assert r.pck_half_palm == pytest.approx(0.5) and r.median_err_palm == pytest.approx(0.5)
    np.testing.assert_allclose(r.image_errors[:2], [0.2, 0.8])
    assert np.isnan(r.image_errors[2:]).all() and r.finger_state_acc is None
    assert r.summary()["detection_rate"] == 0.5
    np.testing.assert_allclose(r.quality[:3], [0.9, 0.6, 1.0])  # image 2 predicted, not scored
    assert r.quality_flags[:2].tolist() == ["good", "good"] and r.quality_flags[3] == ""
    with pytest.raises(ValueError, match="train"):
        R.evaluate_real(pred, tmp_path, "train", labels=labels)


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no images"):
        R.real_photos(tmp_path)
    with pytest.raises(ValueError, match="split"):
        R.real_photos(tmp_path, "test")


# ---------------------------------------------------------------------- the packaged model


@pytest.fixture(scope="module")
def packaged():
    from m3dhmr import Predictor

    return Predictor.from_pretrained()


@needs_sign
def test_packaged_model_on_heldout_photos(packaged, tmp_path_factory):
    cache = tmp_path_factory.mktemp("real") / "labels.npz"
    r = R.evaluate_real(packaged, SIGN, "heldout", limit=20, cache=cache)
    assert r.n_images == 20 and set(r.digits.tolist()) == set(range(10))
    assert r.n_detected >= 18  # measured: 20
    # looser bounds than the packaged model's figures on these 20 photos (PCK 0.99, median
    # 0.057 palm, finger states 0.88; the synthetic-only model before it: 0.82, 0.19, 0.79
    # on all 496, docs/results_real.md, would fail them)
    assert 0.9 <= r.pck_half_palm <= 1.0 and 0.0 < r.median_err_palm < 0.12
    assert r.reference_finger_state_acc >= 0.9
    assert 0.75 <= r.finger_state_acc <= 1.0
    assert np.isfinite(r.joints3d[r.detected]).all()
    # the quality score: every scored hand has one, and it goes with the 2D error
    assert np.isfinite(r.quality[r.detected]).all()
    c = r.quality_correlations()
    assert c["quality_spearman"] > 0.3 and set(c) == {"quality_spearman", "residual_spearman",
                                                      "quality_spearman_fingers"}
    assert (r.wrong_fingers[r.detected] >= 0).all() and (r.wrong_fingers <= 5).all()


@needs_sign
def test_cli_real(tmp_path, capsys):
    from m3dhmr.cli import main

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("5/IMG_1123.JPG", "1/IMG_1119.JPG"):
        (folder / Path(name).name).write_bytes((SIGN / "Dataset" / name).read_bytes())
    assert main(["benchmark", "--real", str(folder), "--limit", "2", "--cache", str(tmp_path / "c.npz")]) == 0
    lines = dict(line.split("=") for line in capsys.readouterr().out.splitlines() if "=" in line)
    assert float(lines["n_images"]) == 2 and float(lines["n_detected"]) == 2
    assert 0 <= float(lines["pck_half_palm"]) <= 1 and "finger_state_acc" not in lines
