"""Real photos with 2D pseudo-labels as training samples: crop maths, mirroring, dropping, the stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from m3dhmr.data.augment import AugmentConfig
from m3dhmr.data.freihand import SAMPLE_KEYS, VIEW_KEYS
from m3dhmr.data.real_crops import (
    RealCropDataset,
    photo_paths,
    real_batch_slots,
    real_stream_index,
    region_of,
    split_counts,
)

SIGN_DIGITS = Path(__file__).resolve().parents[2] / "shared" / "data" / "sign-language-digits"
NO_JITTER = dict(brightness=0.0, contrast=0.0, saturation=0.0, hue_deg=0.0)


def _dotted(h: int, w: int, landmarks: np.ndarray, r: int) -> np.ndarray:
    """A black (h, w, 3) image with a (2r+1)-px square of a distinct colour at each landmark."""
    img = np.zeros((h, w, 3), np.uint8)
    for j, (x, y) in enumerate(np.round(landmarks).astype(int)):
        img[y - r:y + r + 1, x - r:x + r + 1] = _colour(j)
    return img


def _colour(j: int) -> np.ndarray:
    return np.array([40 + 10 * j, 250 - 10 * j, 30 + (97 * j) % 200], np.uint8)


def _landmarks(rng, n: int, lo: float, hi: float) -> np.ndarray:
    """(n, 21, 2) landmarks spread so that their dots do not overlap (a 3 x 7 grid, jittered)."""
    gx, gy = np.meshgrid(np.linspace(0, 1, 7), np.linspace(0, 1, 3))
    grid = np.stack([gx.ravel(), gy.ravel()], -1)
    return np.stack([lo + (hi - lo) * grid + rng.uniform(-1, 1, (21, 2)) for _ in range(n)])


def test_crop_hand_case_without_jitter():
    """Landmarks spanning (50..90, 60..80), base scale 2: box centre (70, 70), side 80;
    S = 100 -> s = 1.25, q = 1.25 (p - c) + 49.5 (the region is the whole photo, not resampled)."""
    lm = np.zeros((1, 21, 2))
    lm[0, :, 0] = np.linspace(50, 90, 21)
    lm[0, :, 1] = np.linspace(60, 80, 21)
    img = np.full((150, 160, 3), 200, np.uint8)
    cfg = AugmentConfig(enabled=False, base_box_scale=2.0)
    ds = RealCropDataset(["a.jpg"], lm, [True], [False], crop_size=100, augment=cfg, images=[img])
    item = ds[0]
    want = 1.25 * (lm[0] - 70.0) + 49.5
    np.testing.assert_allclose(item["joints2d"].numpy(), want, atol=1e-4)
    assert item["joints2d"][0].tolist() == pytest.approx([24.5, 37.0])
    assert item["box"].tolist() == pytest.approx([70.0, 70.0, 80.0, 0.0])  # region = the image here
    # The box reaches outside the 150 x 160 photo? No: 30..110 lies inside, so the crop is all grey 200.
    assert torch.allclose(item["image"], torch.full_like(item["image"], 200 / 255), atol=1e-6)


@pytest.mark.parametrize("left", [False, True])
def test_crop_puts_landmarks_on_their_pixels(left):
    """Under random scale, shift and rotation (and mirroring), each landmark's crop pixel
    shows the colour painted at that landmark in the photo."""
    rng = np.random.default_rng(1)
    lm = _landmarks(rng, 3, 60.0, 140.0)
    imgs = [_dotted(200, 220, l, 3) for l in lm]
    cfg = AugmentConfig(rotation_deg=90.0, shift_fraction=0.1, **NO_JITTER)
    ds = RealCropDataset(["a", "b", "c"], lm, [True] * 3, [left] * 3, crop_size=96, augment=cfg, images=imgs,
                         seed=5)
    for slot in range(6):
        item = ds.item(slot, epoch=2, two_view=True)
        for sfx in ("", "_2"):
            j2d, crop = item["joints2d" + sfx].numpy(), item["image" + sfx].numpy()
            photo = int(item["index"])
            for j in range(21):
                x, y = np.round(j2d[j]).astype(int)
                assert 0 <= x < 96 and 0 <= y < 96
                np.testing.assert_allclose(crop[:, y, x] * 255, _colour(j), atol=3, err_msg=f"{photo} {j}")
        # The second view's landmarks are the first's under the two views' map (shared region frame).
        from m3dhmr.geometry.crop import view_mapping, apply_affine

        _, a12 = view_mapping(item["rot"][None], item["affine"][None], item["rot_2"][None], item["affine_2"][None])
        torch.testing.assert_close(apply_affine(item["joints2d"][None], a12)[0], item["joints2d_2"], atol=1e-3, rtol=0)


def test_large_photo_is_downsampled_and_still_aligned():
    """A hand 900 px across in a 1600 x 1200 photo: the region keeps about 1.5 pixels per
    crop pixel (not the photo's 20), and the dots still land on their landmarks."""
    rng = np.random.default_rng(2)
    lm = _landmarks(rng, 1, 300.0, 1200.0)
    lm[0, :, 1] = 200 + (lm[0, :, 1] - 300) * 0.6
    img = _dotted(1200, 1600, lm[0], 50)
    cfg = AugmentConfig(rotation_deg=45.0, **NO_JITTER)
    region, pts, K = region_of(img, lm[0], False, cfg, 64)
    side = 900.0 * cfg.base_box_scale
    assert max(region.shape[:2]) < 4.0 * 64 * 1.35 / 0.8 * 1.5  # bounded by the crop size, not the photo
    r = 1.5 * 64 / (side * 0.8)  # REGION_OVERSAMPLE x crop size / smallest box side
    assert K[0, 0] == pytest.approx((1600 / 2) / np.tan(np.radians(30)) * r, rel=0.01)
    ds = RealCropDataset(["big"], lm, [True], [False], crop_size=64, augment=cfg, images=[img])
    item = ds.item(0, 0, False)
    for j in range(21):
        x, y = np.round(item["joints2d"][j].numpy()).astype(int)
        np.testing.assert_allclose(item["image"][:, y, x].numpy() * 255, _colour(j), atol=6)


def test_left_hand_is_the_mirror_of_a_right_hand():
    """left=True on a photo equals left=False on the photo mirrored by hand (x -> W-1-x)."""
    rng = np.random.default_rng(3)
    lm = _landmarks(rng, 1, 40.0, 110.0)
    img = rng.integers(0, 256, (130, 150, 3), dtype=np.uint8)
    mirrored_img = np.ascontiguousarray(img[:, ::-1])
    mirrored_lm = lm.copy()
    mirrored_lm[..., 0] = 149 - lm[..., 0]
    cfg = AugmentConfig(enabled=False)
    a = RealCropDataset(["x"], lm, [True], [True], crop_size=48, augment=cfg, images=[img])[0]
    b = RealCropDataset(["x"], mirrored_lm, [True], [False], crop_size=48, augment=cfg, images=[mirrored_img])[0]
    torch.testing.assert_close(a["joints2d"], b["joints2d"], atol=1e-4, rtol=0)
    torch.testing.assert_close(a["image"], b["image"], atol=1.5 / 255, rtol=0)
    # And it is not the unmirrored crop.
    c = RealCropDataset(["x"], lm, [True], [False], crop_size=48, augment=cfg, images=[img])[0]
    assert (a["joints2d"] - c["joints2d"]).abs().max() > 5


def test_unsure_and_missing_labels_are_dropped():
    rng = np.random.default_rng(4)
    lm = _landmarks(rng, 5, 20.0, 60.0)
    lm[3] = np.nan  # no hand
    keep = np.array([True, False, True, True, True])  # photo 1 below the presence threshold
    imgs = [np.zeros((80, 80, 3), np.uint8)] * 5
    ds = RealCropDataset([f"p{i}" for i in range(5)], lm, keep, np.zeros(5, bool), crop_size=32, images=imgs)
    assert len(ds) == 3 and ds.rows.tolist() == [0, 2, 4]
    assert sorted(int(ds.item(s, 0, False)["index"]) for s in range(3)) == [0, 2, 4]
    with pytest.raises(ValueError, match="no usable real photo"):
        RealCropDataset(["a", "b"], lm[:2], [False, False], [False, False], crop_size=32, images=imgs[:2])
    with pytest.raises(ValueError, match="landmarks must have shape"):
        RealCropDataset(["a"], lm[:2], [True], [False], crop_size=32, images=imgs[:1])


def test_items_have_the_training_keys_and_no_3d():
    rng = np.random.default_rng(5)
    lm = _landmarks(rng, 2, 20.0, 60.0)
    ds = RealCropDataset(["a", "b"], lm, [True, True], [False, True], crop_size=32, num_vertices=7, two_view=True,
                         images=[np.zeros((80, 90, 3), np.uint8)] * 2)
    item = ds[1]
    want = set(SAMPLE_KEYS) | {k + "_2" for k in VIEW_KEYS}
    assert set(item) == want
    assert item["has_3d"].item() is False and item["has_mask"].item() is False
    assert item["vertices"].shape == (7, 3) and not item["vertices"].any() and not item["joints3d"].any()
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    # Same position, same sample; another epoch or slot, another augmentation.
    again = ds.item(1, 0, True)
    assert all(torch.equal(item[k], again[k]) for k in item)
    assert not torch.equal(ds.item(1, 1, True)["joints2d"], item["joints2d"])
    assert not torch.equal(ds.item(2, 0, True)["joints2d"], ds.item(0, 0, True)["joints2d"])  # each slot its own draws
    batch = ds.collate([0, 1, 2], 0, False)
    assert batch["image"].shape == (3, 3, 32, 32) and batch["has_3d"].tolist() == [False] * 3


def test_real_stream_against_a_loop():
    n, seed, epoch = 5, 7, 3
    slots = np.arange(23)
    got = real_stream_index(n, seed, epoch, slots)
    want = []
    for s in slots:  # naive: the permutation of the slot's cycle, recomputed every time
        perm = np.random.default_rng([seed, epoch, int(s) // n, 0x5EA1]).permutation(n)
        want.append(perm[s % n])
    assert got.tolist() == want
    for c in range(4):  # every photo once per cycle
        assert sorted(got[c * n:(c + 1) * n].tolist()) == list(range(n))
    assert real_stream_index(n, seed, epoch + 1, slots).tolist() != want
    assert real_stream_index(n, seed, epoch, [12, 3]).tolist() == [want[12], want[3]]


def test_batch_slots_and_counts_hand_cases():
    assert real_batch_slots(4, 0) == [0, 1, 2, 3] and real_batch_slots(4, 2) == [8, 9, 10, 11]
    assert real_batch_slots(4, 1, rank=1, world_size=2) == [5, 7]
    assert split_counts(32, 0.25) == (24, 8) and split_counts(4, 0.5) == (2, 2) and split_counts(16, 0.1) == (14, 2)
    with pytest.raises(ValueError, match="real_fraction"):
        split_counts(4, 0.1)  # round(0.4) = 0 real
    with pytest.raises(ValueError, match="divide"):
        real_batch_slots(3, 0, 0, 2)


def test_photo_paths_of_a_plain_folder(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / ".hidden").mkdir()
    for name in ("a/x.JPG", "b.png", "notes.txt", ".hidden/y.jpg"):
        (tmp_path / name).write_bytes(b"")
    assert photo_paths(tmp_path) == [tmp_path / "a" / "x.JPG", tmp_path / "b.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no photos"):
        photo_paths(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="not found"):
        photo_paths(tmp_path / "missing")


@pytest.mark.skipif(not SIGN_DIGITS.is_dir(), reason=f"the real photos are not here ({SIGN_DIGITS})")
def test_sign_digits_training_persons_with_the_landmark_model(tmp_path):
    """The set's folder gives its training persons only; a few of them, pseudo-labelled by
    the packaged landmark model, give crops whose joints lie inside the crop."""
    from m3dhmr.data.pseudo_labels import pseudo_labels
    from m3dhmr.data.sign_digits import split_by_person

    paths = photo_paths(SIGN_DIGITS)
    split = split_by_person(SIGN_DIGITS)
    assert paths == split["train"] and not set(paths) & set(split["heldout"])
    with pytest.raises(ValueError, match="held-out"):
        photo_paths(SIGN_DIGITS / "Dataset" / "3")
    labels = pseudo_labels(paths[::400], cache=tmp_path / "labels.npz")
    keep = labels.select(0.9)
    assert keep.sum() >= 3
    left = np.array([h == "left" for h in labels.handedness])
    ds = RealCropDataset(labels.paths, labels.landmarks, keep, left, crop_size=64, augment=AugmentConfig())
    for s in range(len(ds)):
        j = ds.item(s, 0, False)["joints2d"]
        assert bool(((j > -1) & (j < 64)).all())
