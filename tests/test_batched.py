"""The batched in-memory crops against the per-sample loader's maths (naive loop references)."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from m3dhmr.data import amplitude as amp
from m3dhmr.data import augment as aug
from m3dhmr.data.amplitude import AMPLITUDE_DRAWS
from m3dhmr.geometry import crop
from m3dhmr.data.batched import (
    colour_matrices,
    decode_split,
    draw_uniforms,
    jitter_colours,
    joints_boxes,
    load_split,
    make_batch,
    make_views,
    sample_boxes,
    warp_images,
)
from m3dhmr.data.freihand import FreiHANDDataset


def _boxes(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(60, 160, n), rng.uniform(60, 160, n), rng.uniform(50, 200, n),
                     rng.uniform(-math.pi / 2, math.pi / 2, n)], -1)


def test_warp_matches_opencv_within_a_grey_level():
    rng = np.random.default_rng(1)
    img = (rng.random((96, 112, 3)) * 255).astype(np.uint8)
    img = np.ascontiguousarray(np.repeat(np.repeat(img[::4, ::4], 4, 0), 4, 1)[:96, :112])  # some smooth areas
    boxes = _boxes(4, seed=2) * np.array([0.6, 0.6, 0.6, 1.0])
    A = crop.crop_affine(torch.from_numpy(boxes), 48)
    ours = warp_images(torch.from_numpy(np.stack([img] * 4)), A, 48).numpy()
    for i in range(4):
        ref = crop.warp_image(img, A[i].numpy(), 48).astype(np.float32) / 255.0
        diff = np.abs(ours[i].transpose(1, 2, 0) - ref)
        assert diff.max() <= 1.0 / 255.0 + 1e-5, diff.max()


def test_warp_identity_hand_case():
    img = torch.arange(4 * 4 * 3, dtype=torch.uint8).view(1, 4, 4, 3)
    A = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]])
    out = warp_images(img, A, 4)
    torch.testing.assert_close(out[0], img[0].permute(2, 0, 1).float() / 255.0)


def test_colour_matrices_match_the_loop():
    cfg = aug.AugmentConfig(brightness=0.4, contrast=0.3, saturation=0.5, hue_deg=20.0)
    u = torch.rand(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    grey = torch.rand(5, dtype=torch.float64)
    M, off = colour_matrices(u, grey, cfg)
    for i in range(5):
        v = (2 * u[i] - 1).numpy()
        jit = aug.ColourJitter(1 + 0.4 * v[0], 1 + 0.3 * v[1], 1 + 0.5 * v[2], math.radians(20.0) * v[3])
        ref = aug.colour_matrix(jit, float(grey[i]) * jit.brightness)
        np.testing.assert_allclose(M[i].numpy(), ref[:, :3], atol=1e-12)
        np.testing.assert_allclose(off[i].numpy(), ref[:, 3], atol=1e-12)


def test_jitter_colours_matches_apply_colour():
    cfg = aug.AugmentConfig()
    crops = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    u = torch.rand(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ours = jitter_colours(crops.clone(), u, cfg)
    for i in range(3):
        v = (2 * u[i] - 1).numpy()
        jit = aug.ColourJitter(1 + cfg.brightness * v[0], 1 + cfg.contrast * v[1], 1 + cfg.saturation * v[2],
                               math.radians(cfg.hue_deg) * v[3])
        ref = aug.apply_colour(crops[i].permute(1, 2, 0).numpy().copy(), jit)
        np.testing.assert_allclose(ours[i].permute(1, 2, 0).numpy(), ref, atol=1e-5)


def test_boxes_hand_case_and_loop():
    j = torch.tensor([[[10.0, 20.0], [30.0, 60.0], [20.0, 40.0]]], dtype=torch.float64)
    base = joints_boxes(j, 1.5)
    torch.testing.assert_close(base, torch.tensor([[20.0, 40.0, 60.0]], dtype=torch.float64))
    cfg = aug.AugmentConfig(scale_range=(0.8, 1.25), shift_fraction=0.1, rotation_deg=90.0)
    # Mid-range draws: the geometric-mean scale, no shift, no rotation.
    b = sample_boxes(base, torch.full((1, 4), 0.5, dtype=torch.float64), cfg)
    torch.testing.assert_close(b, torch.tensor([[20.0, 40.0, 60.0, 0.0]], dtype=torch.float64))
    b = sample_boxes(base, torch.tensor([[1.0, 1.0, 0.0, 1.0]], dtype=torch.float64), cfg)
    torch.testing.assert_close(b, torch.tensor([[20.0 + 7.5, 40.0 - 7.5, 75.0, math.pi / 2]], dtype=torch.float64))


def test_draws_depend_only_on_position():
    a = draw_uniforms(3, 1, 7, 4, 2)
    assert torch.equal(a, draw_uniforms(3, 1, 7, 4, 2))
    assert not torch.equal(a, draw_uniforms(3, 1, 8, 4, 2))
    assert not torch.equal(a, draw_uniforms(3, 2, 7, 4, 2))
    assert a.shape == (2, 4, 8) and float(a.min()) >= 0 and float(a.max()) < 1


@pytest.fixture(scope="module")
def split(tiny_data, tmp_path_factory):
    return load_split(tiny_data, "training", cache_dir=tmp_path_factory.mktemp("u8cache"))


def test_decode_split_caches_and_matches_the_jpegs(tiny_data, tmp_path):
    arr, ann = decode_split(tiny_data, "training", cache_dir=tmp_path)
    assert arr.shape == (ann.num_images, 224, 224, 3) and arr.dtype == np.uint8
    files = list(tmp_path.glob("training_rgb_uint8.*.npy"))
    assert len(files) == 1
    import cv2

    ref = cv2.cvtColor(cv2.imread(str(ann.rgb_dir / "00000003.jpg")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(arr[3], ref)
    again, _ = decode_split(tiny_data, "training", cache_dir=tmp_path)
    assert isinstance(again, np.memmap)


def test_decode_split_names_a_wrong_sized_image(tiny_data, tmp_path):
    import shutil

    import cv2

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    (data / "synth_manifest.json").unlink()  # else the loader refuses the changed set before decoding
    img = cv2.imread(str(data / "training" / "rgb" / "00000002.jpg"))
    cv2.imwrite(str(data / "training" / "rgb" / "00000002.jpg"), img[:100, :120])
    with pytest.raises(ValueError, match="00000002.jpg is 120x100"):
        decode_split(data, "training", cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.npy"))  # nothing half-written


def test_decode_cache_notices_a_replaced_middle_image(tmp_path):
    """The cache was keyed on the first and last images' times only: a replaced image in between
    was trained on with its old pixels."""
    import os

    import cv2

    from freihand_fixture import write_fixture

    data = tmp_path / "data"
    write_fixture(data, n=5, versions=1, eval_n=0)
    cache = tmp_path / "cache"
    arr, _ = decode_split(data, "training", cache_dir=cache)
    old = np.array(arr[2])
    path = data / "training" / "rgb" / "00000002.jpg"
    st = os.stat(path)
    new = np.full_like(old, 17)
    new[10:30, 5:25] = (200, 40, 90)
    cv2.imwrite(str(path), cv2.cvtColor(new, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))  # older: the newest time is unchanged
    again, _ = decode_split(data, "training", cache_dir=cache)
    ref = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(again[2], ref)
    assert np.abs(ref.astype(int) - old).mean() > 20
    np.testing.assert_array_equal(again[1], arr[1])
    assert len(list(cache.glob("training_rgb_uint8.*.npy"))) == 1  # the stale array is gone


@pytest.mark.parametrize("eval_box", ["joints", "centre", "image"])
def test_eval_batch_matches_the_loader(tiny_data, split, eval_box):
    cfg = aug.AugmentConfig(enabled=False, eval_box=eval_box, base_box_scale=1.5, eval_centre_fraction=0.6)
    ds = FreiHANDDataset(tiny_data, "training", crop_size=64, augment=cfg)
    batch = make_batch(split, [0, 5, 2], cfg, 64, seed=0, epoch=0, batch=0)
    for row, i in enumerate([0, 5, 2]):
        s = ds[i]
        for k in ("joints2d", "joints3d", "vertices", "root", "K", "rot", "affine", "box"):
            torch.testing.assert_close(batch[k][row], s[k], atol=2e-4, rtol=1e-5, msg=k)
        diff = (batch["image"][row] - s["image"]).abs()
        assert float(diff.max()) <= 1.0 / 255.0 + 1e-5
    assert batch["has_3d"].all() and batch["index"].tolist() == [0, 5, 2]


def test_training_batches_are_consistent_and_reproducible(split):
    cfg = aug.AugmentConfig()
    b1 = make_batch(split, [1, 2, 3, 4], cfg, 64, seed=5, epoch=2, batch=3, two_view=True)
    b2 = make_batch(split, [1, 2, 3, 4], cfg, 64, seed=5, epoch=2, batch=3, two_view=True)
    for k in b1:
        assert torch.equal(b1[k], b2[k]), k
    assert not torch.equal(b1["image"], b1["image_2"])
    # Labels follow the crop: projecting the crop-camera joints with the crop K gives joints2d.
    for sfx in ("", "_2"):
        cam = b1["joints3d" + sfx] + b1["root" + sfx][:, None]
        p = cam @ b1["K" + sfx].transpose(1, 2)
        torch.testing.assert_close(p[..., :2] / p[..., 2:], b1["joints2d" + sfx], atol=1e-3, rtol=1e-4)
    assert b1["image"].shape == (4, 3, 64, 64) and 0 <= float(b1["image"].min()) and float(b1["image"].max()) <= 1


def test_bad_indices_are_clear(split):
    with pytest.raises(IndexError, match="image indices"):
        make_batch(split, [0, 99], aug.AugmentConfig(), 64, seed=0, epoch=0, batch=0)
    with pytest.raises(ValueError, match="non-empty"):
        make_batch(split, [], aug.AugmentConfig(), 64, seed=0, epoch=0, batch=0)


def test_memory_pipeline_config_is_checked():
    from m3dhmr.experiment import DataConfig

    assert DataConfig(pipeline="memory").pipeline == "memory"
    with pytest.raises(ValueError, match="data.pipeline"):
        dataclasses.replace(DataConfig(), pipeline="gpu")


def test_amplitude_draws_come_after_the_others():
    a = draw_uniforms(3, 1, 7, 4, 2)
    b = draw_uniforms(3, 1, 7, 4, 2, extra=AMPLITUDE_DRAWS)
    assert b.shape == (2, 4, 8 + AMPLITUDE_DRAWS)
    assert torch.equal(b[..., :8], a)  # turning the augmentation on changes no other draw
    assert torch.equal(b, draw_uniforms(3, 1, 7, 4, 2, extra=AMPLITUDE_DRAWS))


@pytest.mark.parametrize("mode", ["swap", "jitter"])
def test_amplitude_batches_are_exact_and_pinned_to_the_loop(split, mode):
    off = aug.AugmentConfig()
    on = dataclasses.replace(off, amplitude_prob=0.6, amplitude_beta=0.2, amplitude_mode=mode)
    idx = [1, 2, 3, 4, 6]
    b_off = make_batch(split, idx, off, 32, seed=5, epoch=2, batch=3)
    b_on = make_batch(split, idx, on, 32, seed=5, epoch=2, batch=3)
    again = make_batch(split, idx, on, 32, seed=5, epoch=2, batch=3)
    assert all(torch.equal(b_on[k], again[k]) for k in b_on)  # resume-exact
    for k in ("joints2d", "joints3d", "box", "K", "affine"):
        assert torch.equal(b_off[k], b_on[k]), k  # only the pixels change
    u = draw_uniforms(5, 2, 3, len(idx), 1, extra=AMPLITUDE_DRAWS)[0, :, 8:]
    partners = amp.batch_partners(u[:, 2])
    applied = 0
    for r in range(len(idx)):
        img = b_off["image"][r].permute(1, 2, 0).numpy()
        other = b_off["image"][int(partners[r])].permute(1, 2, 0).numpy()
        ref = amp.augment_amplitude(img, u[r].numpy(), on, other)
        np.testing.assert_allclose(b_on["image"][r].permute(1, 2, 0).numpy(), ref, atol=1e-5)
        applied += bool(u[r, 0] < on.amplitude_prob)
    assert 0 < applied < len(idx)  # this seed applies it to some samples only


def test_amplitude_needs_its_draws(split):
    on = aug.AugmentConfig(amplitude_prob=1.0)
    u = torch.rand(2, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="amplitude augmentation needs 12 draws"):
        make_views(split, torch.tensor([0, 1]), on, 32, u)
