import cv2
import numpy as np
import pytest

from m3dhmr.data import backgrounds as bg


@pytest.mark.parametrize("kind", bg.PROCEDURAL_KINDS)
def test_procedural_kinds_shape_dtype_determinism(kind):
    a, name = bg.procedural_background(np.random.default_rng(3), 40, kind)
    b, _ = bg.procedural_background(np.random.default_rng(3), 40, kind)
    assert name == kind and a.shape == (40, 40, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert a.std() > 1  # a texture, not a flat colour
    c, _ = bg.procedural_background(np.random.default_rng(4), 40, kind)
    assert not np.array_equal(a, c)


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown background kind"):
        bg.procedural_background(np.random.default_rng(0), 8, "plaid")


def test_two_colour_matches_float_blend():
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 1, (7, 9)).astype(np.float32)
    c = rng.uniform(0, 255, (2, 3))
    out = bg.blend_two_colours(t.copy(), c)
    naive = np.empty((7, 9, 3))
    for y in range(7):
        for x in range(9):
            naive[y, x] = c[0] * (1 - t[y, x]) + c[1] * t[y, x]
    assert np.abs(out - naive).max() <= 1.0 + 1e-9  # 8-bit quantised t: at most one level
    # Hand case: t = 0 / 1 give the two colours exactly (rounded).
    ends = bg.blend_two_colours(np.array([[0.0, 1.0]], np.float32), np.array([[10.2, 20.7, 30.5], [200.0, 0.4, 99.6]]))
    np.testing.assert_array_equal(ends[0], [[10, 21, 31], [200, 0, 100]])


def test_crop_affine_identity_flip_and_scale():
    img = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    A = bg.photo_crop_affine(5, 3, 20, 20, False, False)
    np.testing.assert_array_equal(cv2.warpAffine(img, A, (20, 20)), img[3:23, 5:25])
    A = bg.photo_crop_affine(5, 3, 20, 20, True, True)
    np.testing.assert_array_equal(cv2.warpAffine(img, A, (20, 20)), img[3:23, 5:25][::-1, ::-1])
    # Halving: output pixel u is the centre of source pixels 2u and 2u + 1 (hand-computed).
    A = bg.photo_crop_affine(0, 0, 20, 10, False, False)
    np.testing.assert_allclose(A @ [0.5, 0.5, 1.0], [0.0, 0.0])
    np.testing.assert_allclose(A @ [2.5, 4.5, 1.0], [1.0, 2.0])


def test_recolour_matches_float_reference():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    perm, gain, contrast, brightness = np.array([2, 0, 1]), np.array([0.8, 1.2, 1.1]), 0.7, 25.0
    out = bg.recolour(img, perm, gain, contrast, brightness)
    ref = img[:, :, perm].astype(np.float64) * gain  # the former float implementation
    ref = np.clip((ref - ref.mean()) * contrast + ref.mean() + brightness, 0, 255)
    assert np.abs(out.astype(float) - ref).max() <= 1.0
    # Identity map leaves the image unchanged.
    np.testing.assert_array_equal(bg.recolour(img, np.arange(3), np.ones(3), 1.0, 0.0), img)


def test_photo_background_deterministic_and_varied():
    if not bg.load_photos():
        pytest.skip("no scikit-image sample photos installed")
    a, name = bg.photo_background(np.random.default_rng(5), 48)
    b, _ = bg.photo_background(np.random.default_rng(5), 48)
    assert a.shape == (48, 48, 3) and a.dtype == np.uint8 and name
    np.testing.assert_array_equal(a, b)
    for levels in bg.photo_pyramids():
        for fine, coarse in zip(levels, levels[1:]):
            assert coarse.shape[0] == (fine.shape[0] + 1) // 2
    img, desc = bg.random_background(np.random.default_rng(0), 32, photo_prob=1.0)
    assert desc.startswith("photo:") and img.shape == (32, 32, 3)
    img, desc = bg.random_background(np.random.default_rng(0), 32, photo_prob=0.0)
    assert desc in bg.PROCEDURAL_KINDS


@pytest.fixture()
def photo_dir(tmp_path):
    """Three generated 'photos' (one flat colour each, one PNG) and a file that is no photo."""
    d = tmp_path / "bg"
    d.mkdir()
    colours = {"b_green.jpg": (30, 200, 40), "a_red.png": (210, 40, 30), "c_blue.jpeg": (20, 50, 220)}
    for i, (name, rgb) in enumerate(colours.items()):
        img = np.empty((120 + 40 * i, 200, 3), np.uint8)
        img[...] = rgb[::-1]  # OpenCV writes BGR
        cv2.imwrite(str(d / name), img)
    (d / "SOURCES.json").write_text("{}")
    return d, colours


def test_folder_photos_are_sorted_and_deterministic(photo_dir):
    d, colours = photo_dir
    photos = bg.load_photos(d)
    assert [n for n, _ in photos] == ["a_red", "b_green", "c_blue"]
    assert [p.shape for _, p in photos] == [(160, 200, 3), (120, 200, 3), (200, 200, 3)]  # sorted by name
    np.testing.assert_array_equal(photos[0][1][0, 0], colours["a_red.png"])  # RGB order
    a, name = bg.photo_background(np.random.default_rng(9), 48, d)
    b, _ = bg.photo_background(np.random.default_rng(9), 48, d)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (48, 48, 3) and a.dtype == np.uint8
    # Small colour changes only: a flat photo stays flat and its dominant channel stays dominant.
    rgb = np.array(colours[next(k for k in colours if k.startswith(name))], float)
    assert a.std(axis=(0, 1)).max() < 1.0
    assert int(np.argmax(a[0, 0])) == int(np.argmax(rgb))
    assert np.abs(a[0, 0] - rgb).max() < 90


def test_folder_backgrounds_use_every_photo(photo_dir):
    d, _ = photo_dir
    names = {bg.random_background(np.random.default_rng(s), 32, 1.0, d)[1] for s in range(40)}
    assert names == {"photo:a_red", "photo:b_green", "photo:c_blue"}
    # photo_prob 0: procedural only, the folder is never read.
    _, desc = bg.random_background(np.random.default_rng(0), 32, 0.0, d / "missing")
    assert desc in bg.PROCEDURAL_KINDS


def test_folder_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        bg.load_photos(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no JPEG or PNG"):
        bg.load_photos(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        bg.load_photos(tmp_path / "bad")


def test_synth_config_background_dir(photo_dir, tmp_path):
    from m3dhmr.data.synth import generate
    from m3dhmr.data.synth_scene import SynthConfig

    d, _ = photo_dir
    with pytest.raises(ValueError, match="background_dir"):
        SynthConfig(background_dir="")
    cfg = SynthConfig(size=64, photo_prob=1.0, background_dir=str(d))
    with pytest.raises(FileNotFoundError, match="not a folder"):
        generate(tmp_path / "x", 1, 0, config=SynthConfig(background_dir=str(tmp_path / "nope")), progress=False)
    assert not (tmp_path / "x").exists()  # nothing written
    out = generate(tmp_path / "set", 3, 0, seed=1, config=cfg, progress=False)
    import json

    info = json.loads((out / "synth_info.json").read_text())
    assert info["config"]["background_dir"] == str(d)  # recorded with the set
    params = json.loads((out / "training_params.json").read_text())
    names = {p["background"] for p in params}
    assert names <= {"photo:a_red", "photo:b_green", "photo:c_blue"} and names, names
