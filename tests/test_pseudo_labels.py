"""Pseudo-labels from the landmark model: the two views, the cache and its invalidation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from m3dhmr.data import pseudo_labels as pl
from m3dhmr.detect import DetectedHand
from m3dhmr.detect import hands as H
from m3dhmr.detect.rois import RotatedSquare

SIGN = Path(__file__).resolve().parents[2] / "shared" / "data" / "sign-language-digits"


class FakeDetector:
    """Counts calls; 'finds' one hand whose landmarks encode the image's mean colour, only in
    images at least ``min_side`` px (so the padded view can be told from the plain one)."""

    def __init__(self, min_side: int = 0):
        self.calls = 0
        self.min_side = min_side

    def detect(self, image, pad=True):
        self.calls += 1
        assert not pad, "detect_best pads itself; the detector's own retry would look twice"
        H_, W_ = image.shape[:2]
        if min(H_, W_) < self.min_side:
            return []
        lm = np.stack([np.full(21, image.mean()), np.arange(21.0)], axis=1)
        sq = RotatedSquare(W_ / 2, H_ / 2, 112.0, 0.0)
        return [DetectedHand(box=np.array([0.0, 0.0, 10.0, 10.0]), landmarks=lm, depth=np.arange(21.0),
                             handedness="right", handedness_score=0.9, score=0.8, square=sq)]


def _images(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"im{i}.png"
        cv2.imwrite(str(p), np.full((40, 40, 3), 10 * (i + 1), np.uint8))
        out.append(p)
    return out


def test_select_hand_computed():
    lm = np.zeros((3, 21, 2), np.float32)
    lm[2] = np.nan
    labels = pl.PseudoLabels(paths=(Path("a"), Path("b"), Path("c")), landmarks=lm,
                             depth=np.zeros((3, 21), np.float32), presence=np.array([0.9, 0.3, 0.0], np.float32),
                             handedness=("right", "left", None))
    assert labels.select(0.5).tolist() == [True, False, False]
    assert labels.select(0.2).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="min_presence"):
        labels.select(1.5)
    with pytest.raises(ValueError, match="landmarks"):
        pl.PseudoLabels(paths=(Path("a"),), landmarks=lm, depth=np.zeros((1, 21)), presence=np.zeros(1),
                        handedness=(None,))


def test_detect_best_uses_the_padded_view():
    img = np.full((40, 40, 3), 50, np.uint8)
    det = FakeDetector(min_side=50)  # only the padded view (80 px) has a "hand"
    hand = pl.detect_best(det, img)
    assert det.calls == 2 and hand is not None
    np.testing.assert_allclose(hand.landmarks[:, 1], np.arange(21.0) - 20)  # back in the image's pixels
    assert pl.detect_best(FakeDetector(min_side=100), img) is None


def test_cache_reuse_and_invalidation(tmp_path, monkeypatch):
    paths = _images(tmp_path / "imgs", 3)
    cache = tmp_path / "c.npz"
    det = FakeDetector()
    first = pl.pseudo_labels(paths, cache=cache, detector=det)
    assert det.calls == 6  # two views of each image
    np.testing.assert_allclose(first.landmarks[:, 0, 0], [10, 20, 30])
    np.testing.assert_allclose(first.depth[0], np.arange(21.0) * 112 / 224)  # crop px -> image px
    assert first.presence.tolist() == pytest.approx([0.8] * 3) and first.handedness == ("right",) * 3
    assert cache.is_file() and cache.with_suffix(".json").is_file()
    assert [p.name for p in cache.parent.iterdir() if ".tmp-" in p.name] == []  # atomic: no leftovers

    det.calls = 0
    again = pl.pseudo_labels(paths, cache=cache, detector=det)
    assert det.calls == 0
    np.testing.assert_array_equal(again.landmarks, first.landmarks)

    # a changed image: only it is recomputed, with its new content
    cv2.imwrite(str(paths[1]), np.full((40, 40, 3), 200, np.uint8))
    changed = pl.pseudo_labels(paths, cache=cache, detector=det)
    assert det.calls == 2
    np.testing.assert_allclose(changed.landmarks[:, 0, 0], [10, 200, 30])

    # changed landmark models (their pinned hashes): everything is recomputed
    det.calls = 0
    files = {k: (size, "0" * 64) for k, (size, _) in H.MODEL_FILES.items()}
    monkeypatch.setattr(H, "MODEL_FILES", files)
    pl.pseudo_labels(paths, cache=cache, detector=det)
    assert det.calls == 6


def test_damaged_cache_is_recomputed(tmp_path):
    paths = _images(tmp_path / "imgs", 1)
    cache = tmp_path / "c.npz"
    cache.write_bytes(b"not a zip")
    det = FakeDetector()
    labels = pl.pseudo_labels(paths, cache=cache, detector=det)
    assert det.calls == 2 and labels.select().tolist() == [True]


def test_no_hand_is_nan(tmp_path):
    paths = _images(tmp_path / "imgs", 2)
    labels = pl.pseudo_labels(paths, cache=tmp_path / "c.npz", detector=FakeDetector(min_side=1000))
    assert np.isnan(labels.landmarks).all() and labels.presence.tolist() == [0, 0]
    assert labels.handedness == (None, None) and not labels.select(0.0).any()


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="no image"):
        pl.pseudo_labels([])
    with pytest.raises(FileNotFoundError, match="missing.png"):
        pl.pseudo_labels([tmp_path / "missing.png"])


def test_default_cache_place(tmp_path, monkeypatch):
    paths = _images(tmp_path / "a", 1) + _images(tmp_path / "b", 1)
    assert pl.default_cache(paths) == tmp_path.resolve() / pl.CACHE_NAME
    monkeypatch.setattr(pl.os, "access", lambda *a: False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    place = pl.default_cache(paths)
    assert place.parent == tmp_path / "home" / ".cache" / "m3dhmr" / "pseudo_labels"


@pytest.mark.skipif(not (SIGN / "Dataset").is_dir(), reason=f"the sign-language-digits photos are not at {SIGN}")
def test_real_photos_found(tmp_path):
    paths = [SIGN / "Dataset" / str(d) / name for d, name in ((0, "IMG_1118.JPG"), (1, "IMG_1119.JPG"),
                                                             (5, "IMG_1123.JPG"), (9, "IMG_1127.JPG"))]
    labels = pl.pseudo_labels(paths, cache=tmp_path / "c.npz")
    assert labels.select(0.5).all()
    assert labels.handedness == ("right",) * 4
    # every landmark near the 100 x 100 photo, the hand spanning a good part of it
    assert np.nanmin(labels.landmarks) > -15 and np.nanmax(labels.landmarks) < 115
    span = np.ptp(labels.landmarks, axis=1).max(axis=1)
    assert (span > 30).all()
    # the open hand (5): fingertips above (smaller y than) the wrist
    assert (labels.landmarks[2, [8, 12, 16, 20], 1] < labels.landmarks[2, 0, 1] - 20).all()
