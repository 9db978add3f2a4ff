import cv2
import numpy as np
import pytest

from m3dhmr.inference.images import collect_inputs, load_image, to_rgb_uint8


def test_formats_convert(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(9, 7, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "c.png"), rgb[:, :, ::-1])
    np.testing.assert_array_equal(load_image(tmp_path / "c.png"), rgb)
    gray = rgb[:, :, 0]
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    np.testing.assert_array_equal(load_image(tmp_path / "g.png"), np.repeat(gray[:, :, None], 3, 2))
    rgba = np.concatenate([rgb[:, :, ::-1], np.full((9, 7, 1), 7, np.uint8)], axis=2)
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), rgb)
    deep = rgb.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "d.png"), deep[:, :, ::-1])
    np.testing.assert_array_equal(load_image(tmp_path / "d.png"), rgb)


def test_to_rgb_uint8_cases():
    assert to_rgb_uint8(np.full((2, 2), 65535, np.uint16))[0, 0, 0] == 255
    assert to_rgb_uint8(np.full((2, 2), 128, np.uint16))[0, 0, 0] == 0  # 128/257 rounds to 0
    assert to_rgb_uint8(np.full((2, 2, 1), 0.5, np.float32))[0, 0, 0] == 128
    np.testing.assert_array_equal(to_rgb_uint8(np.array([[[1, 2, 3]]], np.uint8)), [[[3, 2, 1]]])
    with pytest.raises(ValueError, match="shape"):
        to_rgb_uint8(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="pixel type"):
        to_rgb_uint8(np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="NaN"):
        to_rgb_uint8(np.full((2, 2), np.nan))


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "bad.jpg").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="bad.jpg.*cannot decode"):
        load_image(tmp_path / "bad.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="cannot decode"):
        load_image(tmp_path / "empty.png")


def test_collect_inputs(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for n in ("b.png", "a.JPG", "notes.txt"):
        (d / n).write_bytes(b"x")
    (tmp_path / "clip.mp4").write_bytes(b"x")
    items = collect_inputs([d, tmp_path / "clip.mp4"])
    assert [(i.path.name, i.kind) for i in items] == [("a.JPG", "image"), ("b.png", "image"), ("clip.mp4", "video")]
    with pytest.raises(ValueError, match="unknown file extension '.txt'"):
        collect_inputs([d / "notes.txt"])
    with pytest.raises(FileNotFoundError, match="missing"):
        collect_inputs([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        collect_inputs([tmp_path / "empty"])


def test_float_images_outside_0_1_are_refused(tmp_path):
    """A float image in 0..255 used to be clipped to white; within [0, 1] (and rounding
    overshoot) it converts as documented."""
    with pytest.raises(ValueError, match=r"values up to 200.*\[0, 1\].*divide a 0..255 image by 255"):
        to_rgb_uint8(np.full((2, 2, 3), 200.0, np.float32))
    with pytest.raises(ValueError, match="down to -0.5"):
        to_rgb_uint8(np.full((2, 2), -0.5))
    with pytest.raises(ValueError, match="NaN or inf"):
        to_rgb_uint8(np.array([[0.5, np.inf]]))
    np.testing.assert_array_equal(to_rgb_uint8(np.array([[1.004, -0.004]]), bgr=False)[0, :, 0], [255, 0])
    cv2.imwrite(str(tmp_path / "f.tiff"), np.full((4, 5, 3), 120.0, np.float32))  # a float TIFF in 0..255
    with pytest.raises(ValueError, match=r"f.tiff: float image has values up to 120"):
        load_image(tmp_path / "f.tiff")
    cv2.imwrite(str(tmp_path / "g.tiff"), np.full((4, 5, 3), 0.5, np.float32))
    assert load_image(tmp_path / "g.tiff")[0, 0, 0] == 128
