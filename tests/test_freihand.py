import dataclasses
import json
import os
import re
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from freihand_fixture import DOT_JOINT, DOT_RGB, write_fixture
from m3dhmr.data import freihand as fh
from m3dhmr.data import (
    SAMPLE_KEYS,
    VIEW_KEYS,
    AugmentConfig,
    FreiHANDDataset,
    load_annotations,
)
from m3dhmr.geometry.crop import apply_affine, apply_rotation, view_mapping
from m3dhmr.geometry.camera import project

N, V = 4, 30


@pytest.fixture(scope="module")
def four_versions(tmp_path_factory):
    root = tmp_path_factory.mktemp("fh4")
    return root, write_fixture(root, n=N, versions=4, num_vertices=V)


@pytest.fixture(scope="module")
def no_eval_gt(tmp_path_factory):
    root = tmp_path_factory.mktemp("fh_nogt")
    write_fixture(root, n=2, versions=1, num_vertices=V, eval_n=2, eval_gt=False, masks=False)
    return root


@pytest.fixture()
def broken(tmp_path):
    """A fresh one-version copy to break."""
    write_fixture(tmp_path, n=3, versions=1, size=32, num_vertices=10, eval_n=0)
    return tmp_path


def _dot_pixel_is_red(image: torch.Tensor, p: torch.Tensor) -> bool:
    x, y = (int(round(float(v))) for v in p)
    rgb = image[:, y, x].numpy() * 255
    return bool(np.abs(rgb - np.array(DOT_RGB)).max() < 60)


# ----------------------------------------------------------------------------- layout


def test_four_version_layout_maps_images_to_annotations(four_versions):
    root, info = four_versions
    tr = info["training"]
    ds = FreiHANDDataset(root, crop_size=64, use_cache=False)
    assert len(ds) == 4 * N and ds.ann.num_versions == 4 and ds.num_annotations == N
    for i in range(len(ds)):
        s = ds[i]
        a = i % N
        assert int(s["index"]) == a and int(s["image_index"]) == i
        # Whole-image box, same size: identity crop.
        np.testing.assert_allclose(s["affine"].numpy(), [[1, 0, 0], [0, 1, 0]], atol=1e-6)
        np.testing.assert_allclose(s["K"].numpy(), tr.K[a], rtol=1e-6)
        np.testing.assert_allclose(s["root"].numpy(), tr.xyz[a, 0], atol=1e-6)
        np.testing.assert_allclose(s["joints3d"].numpy(), tr.xyz[a] - tr.xyz[a, 0], atol=1e-6)
        np.testing.assert_allclose(s["vertices"].numpy(), tr.verts[a] - tr.xyz[a, 0], atol=1e-6)
        # The image really is annotation a's: its red dot sits under the projected joint.
        assert _dot_pixel_is_red(s["image"], s["joints2d"][DOT_JOINT]), i
        assert bool(s["has_mask"]) and bool(s["has_3d"])
        x, y = (int(round(float(v))) for v in s["joints2d"].mean(0))  # inside the hull = the mask
        assert float(s["mask"][y, x]) == 1.0 and float(s["mask"][0, 0]) == 0.0
    assert set(SAMPLE_KEYS) == set(ds[0])


def test_load_annotations_fields(four_versions):
    root, info = four_versions
    ann = load_annotations(root, "training", num_vertices=V, use_cache=False)
    assert ann.K.dtype == np.float64 and ann.K.shape == (N, 3, 3)
    assert ann.xyz.shape == (N, 21, 3) and ann.xyz.dtype == np.float32
    assert ann.verts.shape == (N, V, 3) and ann.num_vertices == V
    assert ann.scale.shape == (N,) and ann.num_images == 4 * N and ann.num_versions == 4
    assert ann.mask_dir is not None and ann.rgb_dir == root / "training" / "rgb"
    ev = load_annotations(root, "evaluation", use_cache=False)
    assert ev.mask_dir is None and ev.num_versions == 1 and ev.has_3d


def test_augmented_crop_is_consistent(four_versions):
    root, info = four_versions
    ds = FreiHANDDataset(root, crop_size=64, augment=AugmentConfig(), seed=3, use_cache=False)
    tr = info["training"]
    checked = 0
    for i in range(len(ds)):
        s = ds[i]
        a = int(s["index"])
        # Camera: the rotated 3D joints project onto the warped 2D joints.
        reproj = project(s["joints3d"].double() + s["root"].double(), s["K"].double())
        assert (reproj - s["joints2d"].double()).abs().max() < 1e-3
        # 3D: rot applied to the original camera-space points.
        rot = s["rot"].double().numpy()
        np.testing.assert_allclose(s["root"].numpy(), rot @ tr.xyz[a, 0], atol=1e-5)
        np.testing.assert_allclose(s["vertices"].numpy() + s["root"].numpy(), tr.verts[a] @ rot.T, atol=1e-5)
        # Pixels: the red dot is still under its joint after rotation, scale and shift, unless the
        # (random) box left it outside the crop.
        p = s["joints2d"][DOT_JOINT]
        if bool(((p > 2) & (p < 61)).all()):
            assert _dot_is_bright_red(s["image"], p), i
            checked += 1
        assert s["image"].dtype == torch.float32 and 0 <= float(s["image"].min()) <= float(s["image"].max()) <= 1
    assert checked >= len(ds) // 2


def _dot_is_bright_red(image, p):
    """After colour jitter the dot stays the reddest thing: red well above green and blue."""
    x, y = (int(round(float(v))) for v in p)
    r, g, b = image[:, y, x].tolist()
    return r - max(g, b) > 0.3


def test_eval_box_joints_and_two_view_mapping(four_versions):
    root, _ = four_versions
    cfg = AugmentConfig(enabled=False, eval_box="joints", base_box_scale=2.0)
    ds = FreiHANDDataset(root, crop_size=48, augment=cfg, use_cache=False)
    s = ds[1]
    j = s["joints2d"]
    # Joint box (base scale 2): joints span half the crop, centred.
    extent = (j.max(0).values - j.min(0).values).max()
    assert abs(float(extent) - 24.0) < 1e-3
    torch.testing.assert_close((j.max(0).values + j.min(0).values) / 2, torch.full((2,), 23.5))

    ds2 = FreiHANDDataset(root, crop_size=64, augment=AugmentConfig(), two_view=True, use_cache=False)
    batch = next(iter(DataLoader(ds2, batch_size=5, shuffle=False)))
    assert all(k + "_2" in batch for k in VIEW_KEYS)
    assert not torch.allclose(batch["rot"], batch["rot_2"])
    R12, A12 = view_mapping(batch["rot"].double(), batch["affine"].double(),
                            batch["rot_2"].double(), batch["affine_2"].double())
    torch.testing.assert_close(apply_rotation(batch["joints3d"].double(), R12), batch["joints3d_2"].double(),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(apply_rotation(batch["vertices"].double(), R12), batch["vertices_2"].double(),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(apply_rotation(batch["root"][:, None].double(), R12)[:, 0],
                               batch["root_2"].double(), atol=1e-6, rtol=0)
    torch.testing.assert_close(apply_affine(batch["joints2d"].double(), A12), batch["joints2d_2"].double(),
                               atol=1e-3, rtol=0)


def test_unequal_focal_lengths_stay_exact(tmp_path):
    write_fixture(tmp_path, n=3, versions=1, num_vertices=V, eval_n=0, fy_ratio=1.1)
    ds = FreiHANDDataset(tmp_path, crop_size=64, augment=AugmentConfig(), use_cache=False)
    for i in range(len(ds)):
        s = ds[i]
        reproj = project(s["joints3d"].double() + s["root"].double(), s["K"].double())
        assert (reproj - s["joints2d"].double()).abs().max() < 1e-3  # brief: < 0.5 px


def test_evaluation_without_ground_truth(no_eval_gt):
    ann = load_annotations(no_eval_gt, "evaluation", use_cache=False)
    assert not ann.has_3d and ann.xyz is None and ann.verts is None
    ds = FreiHANDDataset(no_eval_gt, "evaluation", crop_size=32, num_vertices=V, use_cache=False)
    s = ds[1]
    assert not bool(s["has_3d"]) and not bool(s["has_mask"])
    assert s["vertices"].shape == (V, 3) and float(s["vertices"].abs().sum()) == 0
    assert float(s["mask"].sum()) == 0 and s["image"].shape == (3, 32, 32)
    with pytest.raises(ValueError, match="evaluation_xyz.json"):
        FreiHANDDataset(no_eval_gt, "evaluation", augment=AugmentConfig(), use_cache=False)
    with pytest.raises(IndexError):
        ds[2]


# ----------------------------------------------------------------------------- randomness


def test_augmentation_reproducible_and_epoch_dependent(four_versions):
    root, _ = four_versions
    mk = lambda seed=0: FreiHANDDataset(root, crop_size=32, augment=AugmentConfig(), seed=seed,  # noqa: E731
                                        two_view=True, use_cache=False)
    a, b = mk(), mk()
    torch.testing.assert_close(a[3], b[3])
    assert not torch.equal(a[3]["affine"], a[3]["affine_2"])  # the two views differ
    a.set_epoch(1)
    assert not torch.equal(a[3]["affine"], b[3]["affine"])
    b.set_epoch(1)
    torch.testing.assert_close(a[3], b[3])
    assert not torch.equal(mk(seed=1)[3]["affine"], mk()[3]["affine"])


def test_workers_do_not_change_samples(four_versions):
    root, _ = four_versions
    ds = FreiHANDDataset(root, crop_size=32, augment=AugmentConfig(), use_cache=False)

    def epochs(loader):
        out = []
        for e in range(2):
            ds.set_epoch(e)
            out.append(torch.cat([b["affine"] for b in loader]))
        return out

    ref = epochs(DataLoader(ds, batch_size=3, num_workers=0))
    par = epochs(DataLoader(ds, batch_size=3, num_workers=2, persistent_workers=True))
    assert not torch.equal(ref[0], ref[1])
    for r, p in zip(ref, par):
        torch.testing.assert_close(r, p)


# ----------------------------------------------------------------------------- cache


def test_annotation_cache(broken, monkeypatch):
    monkeypatch.setattr(fh, "CACHE_MIN_BYTES", 0)
    first = load_annotations(broken, "training")
    cache = broken / ".m3dhmr_cache"
    files = sorted(p.name for p in cache.iterdir())
    assert any(f.startswith("training_verts.json.") for f in files)
    second = load_annotations(broken, "training")
    assert isinstance(second.verts, np.memmap)
    np.testing.assert_array_equal(first.verts, second.verts)
    # Editing the JSON invalidates its cache entry.
    verts = json.loads((broken / "training_verts.json").read_text())
    verts[0][0][0] += 1.0
    (broken / "training_verts.json").write_text(json.dumps(verts))
    third = load_annotations(broken, "training")
    assert third.verts[0, 0, 0] == pytest.approx(first.verts[0, 0, 0] + 1.0)
    assert len(list(cache.glob("training_verts.json.*.npy"))) == 1  # the stale one is gone
    # An unwritable cache folder is not fatal.
    load_annotations(broken, "training", cache_dir=broken / "training_K.json" / "sub")


# ----------------------------------------------------------------------------- errors


def _write(path, obj):
    path.write_text(json.dumps(obj))


def _load(root, **kw):
    return load_annotations(root, "training", use_cache=False, **kw)


def test_missing_files_are_named(broken):
    (broken / "training_xyz.json").unlink()
    with pytest.raises(FileNotFoundError, match="training_xyz.json"):
        _load(broken)
    os.remove(broken / "training_K.json")
    with pytest.raises(FileNotFoundError, match="training_K.json"):
        _load(broken)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        _load(broken / "nowhere")
    with pytest.raises(ValueError, match="split"):
        load_annotations(broken, "train")


def test_unfinished_synthetic_set_is_refused(broken):
    from m3dhmr.data import synth

    assert fh.SYNTH_IN_PROGRESS == synth.IN_PROGRESS
    (broken / synth.IN_PROGRESS).write_text("{}")
    with pytest.raises(ValueError, match="still being written"):
        _load(broken)


def _extra_version(d):
    # The split's images doubled: the loader reads them as a second colour version.
    for i in range(8):
        shutil.copy(d / "training" / "rgb" / f"{i:08d}.jpg", d / "training" / "rgb" / f"{i + 8:08d}.jpg")


def _one_extra_one_missing(d):
    (d / "training" / "rgb" / "00000003.jpg").unlink()
    shutil.copy(d / "training" / "rgb" / "00000000.jpg", d / "training" / "rgb" / "00000008.jpg")


def _mixed_image(d):
    # An evaluation image of another run (here: a training image) under the same name.
    src, dst = d / "training" / "rgb" / "00000001.jpg", d / "evaluation" / "rgb" / "00000001.jpg"
    assert src.stat().st_size != dst.stat().st_size
    shutil.copy(src, dst)


def _mixed_annotations(d):
    # Another run's intrinsics for the same number of samples.
    K = json.loads((d / "training_K.json").read_text())[4:]
    (d / "evaluation_K.json").write_text(json.dumps(K))


@pytest.mark.parametrize("split, edit, problem", [
    ("training", _extra_version, "training/rgb holds 16 images, its manifest says 8"),
    ("training", _one_extra_one_missing, "training/rgb/00000003.jpg is missing"),
    ("evaluation", _mixed_image, "evaluation/rgb/00000001.jpg has"),
    ("evaluation", _mixed_annotations, "evaluation_K.json has"),
])
def test_changed_synthetic_set_is_refused(tiny_data, tmp_path, split, edit, problem):
    """A synthetic set changed after m3dhmr synth wrote it (another run's files mixed in, images
    added or removed) is refused by every loader, naming the folder and what is wrong."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    load_annotations(data, split, use_cache=False)  # as written: fine
    edit(data)
    match = f"synthetic set {data} is incomplete or mixed: {problem}"
    with pytest.raises(ValueError, match=re.escape(match)):
        load_annotations(data, split, use_cache=False)
    with pytest.raises(ValueError, match="incomplete or mixed"):
        FreiHANDDataset(data, split, use_cache=False)
    # The whole set is checked, whichever split is read.
    other = "evaluation" if split == "training" else "training"
    with pytest.raises(ValueError, match="incomplete or mixed"):
        load_annotations(data, other, use_cache=False)


def test_synthetic_set_without_manifest_loads_as_before(tiny_data, tmp_path):
    # Sets written before the manifest existed have none; they are not checked.
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    (data / "synth_manifest.json").unlink()
    _extra_version(data)
    assert load_annotations(data, "training", use_cache=False).num_versions == 2


def test_synthetic_set_without_evaluation_ground_truth(tiny_data, tmp_path):
    # Removing the evaluation split's 3D ground truth (both files), as in FreiHAND's release,
    # leaves a set that loads without ground truth rather than a refused one.
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    for kind in ("xyz", "verts"):
        (data / f"evaluation_{kind}.json").unlink()
    assert load_annotations(data, "training", use_cache=False).has_3d
    assert not load_annotations(data, "evaluation", use_cache=False).has_3d


def test_missing_rgb_folder(broken):
    shutil.rmtree(broken / "training" / "rgb")
    with pytest.raises(FileNotFoundError, match="rgb"):
        _load(broken)


def test_evaluation_verts_without_xyz(tmp_path):
    write_fixture(tmp_path, n=1, size=32, num_vertices=5, eval_n=1)
    (tmp_path / "evaluation_xyz.json").unlink()
    with pytest.raises(FileNotFoundError, match="evaluation_xyz.json.*evaluation_verts.json"):
        load_annotations(tmp_path, "evaluation", use_cache=False)


def test_corrupt_json_is_named(broken):
    text = (broken / "training_verts.json").read_text()
    (broken / "training_verts.json").write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match="training_verts.json.*not valid JSON"):
        _load(broken)


@pytest.mark.parametrize(
    "kind,edit,match",
    [
        ("xyz", lambda x: [j[:20] for j in x], r"training_xyz.json.*N x 21 x 3.*\(3, 20, 3\)"),
        ("xyz", lambda x: [x[0][:20]] + x[1:], r"training_xyz.json.*regular"),
        ("K", lambda x: [k[:2] for k in x], r"training_K.json.*N x 3 x 3"),
        ("verts", lambda x: [[p[:2] for p in v] for v in x], r"training_verts.json.*N x V x 3"),
        ("verts", lambda x: x[:2], r"training_verts.json has 2 samples but .*training_K.json has 3"),
        ("scale", lambda x: x + [0.1], r"training_scale.json has 4 samples"),
        ("verts", lambda x: [v if i != 1 else [[float("nan")] * 3] * len(v) for i, v in enumerate(x)],
         r"training_verts.json.*NaN.*sample index 1"),
        ("K", lambda x: [[[0, 0, 1], [0, 1, 1], [0, 0, 1]]] + x[1:], r"training_K.json.*sample 0.*pinhole"),
    ],
)
def test_bad_annotations_are_named(broken, kind, edit, match):
    path = broken / f"training_{kind}.json"
    _write(path, edit(json.loads(path.read_text())))
    with pytest.raises(ValueError, match=match):
        _load(broken)


def test_vertex_count_mismatch_message(broken):
    with pytest.raises(ValueError, match="training_verts.json has 10 vertices per sample but the model template "
                                         "has 906 .*--template"):
        FreiHANDDataset(broken, num_vertices=906, use_cache=False)


def test_image_counts(broken):
    rgb = broken / "training" / "rgb"
    shutil.copy(rgb / "00000000.jpg", rgb / "00000003.jpg")
    with pytest.raises(ValueError, match=r"rgb has 4 images, not a whole multiple of the 3 annotations"):
        _load(broken)
    (rgb / "00000003.jpg").rename(rgb / "00000007.jpg")
    with pytest.raises(ValueError, match="missing e.g. 00000003.jpg"):
        _load(broken)
    (rgb / "00000007.jpg").unlink()
    (broken / "training" / "mask" / "00000002.jpg").unlink()
    with pytest.raises(ValueError, match="mask has 2 masks but .*training_K.json has 3"):
        _load(broken)


def test_corrupt_images_are_named(broken):
    ds = FreiHANDDataset(broken, crop_size=16, use_cache=False)
    rgb = broken / "training" / "rgb"
    data = (rgb / "00000001.jpg").read_bytes()
    (rgb / "00000001.jpg").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ValueError, match="00000001.jpg.*not a complete JPEG"):
        ds[1]
    (rgb / "00000002.jpg").write_bytes(b"\xff\xd8" + b"garbage" * 10 + b"\xff\xd9")
    with pytest.raises(ValueError, match="00000002.jpg.*could not be decoded"):
        ds[2]
    (rgb / "00000000.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="00000000.jpg"):
        ds[0]
    (broken / "training" / "mask" / "00000001.jpg").write_bytes(b"not a jpeg")
    (rgb / "00000001.jpg").write_bytes(data)
    with pytest.raises(ValueError, match="mask/00000001.jpg"):
        ds[1]


def test_training_boxes_from_masks(tiny_data):
    import cv2

    from m3dhmr.data import augment as aug
    from m3dhmr.experiment import DataConfig

    cfg = AugmentConfig(box_source="mask", base_box_scale=1.3, scale_range=(1.0, 1.0), shift_fraction=0.0,
                        rotation_deg=0.0)
    ds = FreiHANDDataset(tiny_data, crop_size=64, augment=cfg, use_cache=False)
    mask = cv2.imread(str(tiny_data / "training" / "mask" / "00000003.jpg"), cv2.IMREAD_GRAYSCALE)
    cx, cy, side = aug.mask_box(mask, 1.3)
    np.testing.assert_allclose(ds[3]["box"].numpy(), [cx, cy, side, 0.0], atol=1e-4)
    joints = FreiHANDDataset(tiny_data, crop_size=64, augment=dataclasses.replace(cfg, box_source="joints"),
                             use_cache=False)[3]["box"]
    assert not np.allclose(joints.numpy(), [cx, cy, side, 0.0])
    with pytest.raises(ValueError, match="box_source: mask needs data.pipeline: loader"):
        DataConfig(pipeline="memory", augment=cfg)
