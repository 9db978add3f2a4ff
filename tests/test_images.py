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
    cv2.imwrite(str(tmp_path / "dg.png"), deep[:, :, 0])  # 16-bit grayscale, and 16-bit with alpha
    np.testing.assert_array_equal(load_image(tmp_path / "dg.png"), np.repeat(gray[:, :, None], 3, 2))
    cv2.imwrite(str(tmp_path / "da.png"), np.concatenate([deep[:, :, ::-1], np.full((9, 7, 1), 9, np.uint16)], 2))
    np.testing.assert_array_equal(load_image(tmp_path / "da.png"), rgb)


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


#: EXIF orientation tag -> what makes the stored (H, W, C) pixels upright (the tag's meaning).
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # upside down
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # mirrored about the main diagonal
    6: lambda a: np.rot90(a, -1),  # stored 90 degrees anticlockwise (a phone held upright): turn clockwise
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),  # mirrored about the other diagonal
    8: lambda a: np.rot90(a, 1),  # turn anticlockwise
}


def _pattern(h=48, w=80):
    """An asymmetric picture: red top-left, green top-right, blue bottom-left (16-px blocks, JPEG-stable)."""
    a = np.full((h, w, 3), 128, np.uint8)
    a[:16, :16] = (255, 0, 0)
    a[:16, -16:] = (0, 255, 0)
    a[-16:, :16] = (0, 0, 255)
    return a


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation):
    """A JPEG tagged with each EXIF orientation loads upright: the stored pixels turned or
    mirrored as the tag says (was: every tag ignored, phone photos sideways)."""
    Image = pytest.importorskip("PIL.Image")
    from PIL import ImageOps

    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    Image.fromarray(_pattern()).save(path, quality=95, exif=exif)
    stored = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)[:, :, ::-1]  # as stored, tag ignored
    assert stored.shape == (48, 80, 3)
    got = load_image(path)
    np.testing.assert_array_equal(got, UPRIGHT[orientation](stored))
    assert got.shape == ((80, 48, 3) if orientation >= 5 else (48, 80, 3))
    # The same as Pillow's reading of the tag (another decoder: up to rounding).
    with Image.open(path) as im:
        ref = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert ref.shape == got.shape and np.abs(ref.astype(int) - got).max() <= 8
    # And the picture itself: the red block where the upright pattern has it.
    expected = UPRIGHT[orientation](_pattern())
    assert np.abs(expected.astype(int) - got).mean() < 3


def test_phone_photo_and_grayscale_photo_load_upright(tmp_path):
    """The issue's case: 640 x 480 pixels tagged 6 are a 480-wide, 640-high photo; a
    grayscale JPEG's tag is applied too and it stays replicated to three channels."""
    Image = pytest.importorskip("PIL.Image")

    exif = Image.Exif()
    exif[0x0112] = 6
    photo = cv2.resize(_pattern(), (640, 480), interpolation=cv2.INTER_NEAREST)
    Image.fromarray(photo).save(tmp_path / "phone.jpg", quality=95, exif=exif)
    got = load_image(tmp_path / "phone.jpg")
    assert got.shape == (640, 480, 3)
    assert got[50, 430, 0] > 200 and got[50, 430, 2] < 60  # red: top-left turned to top-right
    Image.fromarray(photo[:, :, 2]).save(tmp_path / "gray.jpg", quality=95, exif=exif)
    g = load_image(tmp_path / "gray.jpg")
    assert g.shape == (640, 480, 3) and np.array_equal(g[..., 0], g[..., 2])
    # The blue channel: 255 in the blue block (bottom-left, now top-left), 0 in the red
    # (now top-right) and green (now bottom-right) ones, 128 elsewhere.
    assert g[50, 50, 0] > 200 and g[50, 430, 0] < 60 and g[590, 430, 0] < 60 and 100 < g[590, 50, 0] < 160
