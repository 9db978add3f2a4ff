import json
import math

import numpy as np
import pytest

from m3dhmr.geometry.camera import project
from m3dhmr.inference import crops
from image_helpers import mirror_box, mirror_intrinsics


def test_parse_box_and_errors():
    np.testing.assert_allclose(crops.parse_box("10,20,30.5,40"), [10, 20, 30.5, 40])
    np.testing.assert_allclose(crops.parse_box("1 2 3 4"), [1, 2, 3, 4])
    with pytest.raises(ValueError, match="--bbox.*4 numbers"):
        crops.parse_box("1,2,3")
    with pytest.raises(ValueError, match="--bbox"):
        crops.parse_box("a,b,c,d")
    with pytest.raises(ValueError, match="positive.*w=0"):
        crops.parse_box("1,2,0,4")
    with pytest.raises(ValueError, match="NaN"):
        crops.parse_box("1,2,nan,4")


def test_validate_box():
    np.testing.assert_allclose(crops.validate_box([-10, -10, 20, 20], 100, 50), [-10, -10, 20, 20])
    with pytest.raises(ValueError, match="entirely outside the 50x100"):
        crops.validate_box([60, 10, 20, 20], 100, 50)
    with pytest.raises(ValueError, match="entirely outside"):
        crops.validate_box([-30, 10, 20, 20], 100, 50)
    with pytest.raises(ValueError, match="positive"):
        crops.validate_box([10, 10, 0, 0], 100, 50)


def test_square_and_full_box():
    np.testing.assert_allclose(crops.square_box([0, 0, 10, 4]), [0, -3, 10, 10])
    np.testing.assert_allclose(crops.square_box([0, 0, 10, 4], scale=2.0), [-5, -8, 20, 20])
    # 40 wide, 20 high: square of side 40 centred at (19.5, 9.5).
    np.testing.assert_allclose(crops.full_image_box(20, 40), [-0.5, -10.5, 40, 40])


def box_from_points_naive(points, height, width, margin, min_side):
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    side = max(max(xs) - min(xs), max(ys) - min(ys)) * margin
    side = min(max(side, min_side), max(height, width))
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    out = []
    for c, lim in ((cx, width), (cy, height)):
        s = c - side / 2
        if side <= lim:
            if s < -0.5:
                s = -0.5
            if s + side > lim - 0.5:
                s = lim - 0.5 - side
        else:
            s = (lim - 1) / 2 - side / 2
        out.append(s)
    return [out[0], out[1], side, side]


def test_box_from_points_matches_naive():
    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = rng.integers(20, 300, size=2)
        pts = rng.uniform(-20, 320, size=(21, 2)) * rng.uniform(0.05, 1.0)
        got = crops.box_from_points(pts, h, w, margin=1.3, min_side=8)
        if got is None:
            lo, hi = pts.min(0), pts.max(0)
            assert hi[0] < -0.5 or hi[1] < -0.5 or lo[0] > w - 0.5 or lo[1] > h - 0.5
            continue
        np.testing.assert_allclose(got, box_from_points_naive(pts, h, w, 1.3, 8))


def test_box_from_points_hand_case_and_lost():
    pts = np.array([[40.0, 40.0], [60.0, 50.0]])
    np.testing.assert_allclose(crops.box_from_points(pts, 100, 100, margin=2.0), [30, 25, 40, 40])
    # near the border the box is shifted inside the image
    np.testing.assert_allclose(crops.box_from_points(pts - 38, 100, 100, margin=2.0), [-0.5, -0.5, 40, 40])
    assert crops.box_from_points(np.full((21, 2), np.nan), 100, 100) is None
    assert crops.box_from_points(np.full((21, 2), -50.0), 100, 100) is None
    with pytest.raises(ValueError, match=r"\(J, 2\)"):
        crops.box_from_points(np.zeros((21, 3)), 100, 100)


def test_default_intrinsics_fov():
    K = crops.default_intrinsics(480, 640, 60.0)
    assert K[0, 0] == pytest.approx(320 / math.tan(math.radians(30)))
    assert K[0, 0] == K[1, 1]
    np.testing.assert_allclose(K[:2, 2], [319.5, 239.5])
    # A point on the edge of the horizontal field of view projects to the image edge.
    p = np.array([[math.tan(math.radians(30)), 0.0, 1.0]])
    assert project(p, K)[0, 0] == pytest.approx(319.5 + 320)
    with pytest.raises(ValueError, match=r"^--fov: field of view must be in \[1, 170\] degrees, got 0.0$"):
        crops.default_intrinsics(10, 10, 0.0)


def test_default_intrinsics_is_intrinsics_from_fov():
    """The wrapper only supplies the default field of view and names --fov: same K, same limits."""
    from m3dhmr.geometry.camera import intrinsics_from_fov

    np.testing.assert_array_equal(crops.default_intrinsics(48, 64), intrinsics_from_fov(48, 64, crops.DEFAULT_FOV_DEG))
    for fov in (1.0, 170.0):
        np.testing.assert_array_equal(crops.default_intrinsics(48, 64, fov), intrinsics_from_fov(48, 64, fov))
    for fov in (0.5, 175.0, float("nan")):
        with pytest.raises(ValueError, match="field of view") as wrapped:
            crops.default_intrinsics(48, 64, fov)
        with pytest.raises(ValueError, match="field of view") as direct:
            intrinsics_from_fov(48, 64, fov)
        assert str(wrapped.value) == str(direct.value).replace("fov_deg:", "--fov:", 1)
    with pytest.raises(ValueError, match="image size must be positive"):
        crops.default_intrinsics(0, 64)


def test_parse_intrinsics():
    K = crops.parse_intrinsics("500,510,100,90")
    np.testing.assert_allclose(K, [[500, 0, 100], [0, 510, 90], [0, 0, 1]])
    with pytest.raises(ValueError, match="--K"):
        crops.parse_intrinsics("1,2,3")
    with pytest.raises(ValueError, match="positive"):
        crops.parse_intrinsics("-1,2,3,4")
    with pytest.raises(ValueError, match="last row"):
        crops.intrinsics_from_values([[1, 0, 0], [0, 1, 0], [0, 1, 1]])


def test_boxes_json(tmp_path):
    p = tmp_path / "boxes.json"
    p.write_text(json.dumps({"a.jpg": [1, 2, 3, 4], "b": [5, 6, 7, 8]}))
    boxes = crops.load_boxes_json(p)
    np.testing.assert_allclose(crops.box_for(boxes, tmp_path / "a.jpg"), [1, 2, 3, 4])
    np.testing.assert_allclose(crops.box_for(boxes, "dir/b.png"), [5, 6, 7, 8])
    assert crops.box_for(boxes, "c.png") is None
    with pytest.raises(FileNotFoundError, match="missing.json"):
        crops.load_boxes_json(tmp_path / "missing.json")
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        crops.load_boxes_json(p)
    p.write_text(json.dumps({"a.jpg": [1, 2, 0, 4]}))
    with pytest.raises(ValueError, match="a.jpg"):
        crops.load_boxes_json(p)


def test_mirror_box_and_K_consistent_with_projection():
    rng = np.random.default_rng(1)
    W = 37
    K = np.array([[50.0, 0.3, 14.2], [0, 52.0, 11.0], [0, 0, 1]])
    pts = rng.uniform(-0.2, 0.2, size=(10, 3)) + [0, 0, 1.0]
    uv = project(pts, K)
    uv_m = project(pts * [-1, 1, 1], mirror_intrinsics(K, W))
    np.testing.assert_allclose(uv_m[:, 0], W - 1 - uv[:, 0])
    np.testing.assert_allclose(uv_m[:, 1], uv[:, 1])
    b = mirror_box([3, 4, 10, 5], W)
    np.testing.assert_allclose(b, [23, 4, 10, 5])
    np.testing.assert_allclose(mirror_box(b, W), [3, 4, 10, 5])


def test_crop_hand_matches_augment_and_projection():
    from m3dhmr.geometry.crop import apply_affine_np, invert_affine

    rng = np.random.default_rng(2)
    H, W = 60, 80
    image = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    K = crops.default_intrinsics(H, W)
    c = crops.crop_hand(image, [10, 5, 30, 20], K, 16)
    assert c.image.shape == (16, 16, 3) and c.image.dtype == np.uint8
    np.testing.assert_allclose(c.box, [10, -0.0, 30, 30])
    # Points project into the crop where the affine sends their original projection.
    pts = rng.uniform(-0.1, 0.1, size=(5, 3)) + [0, 0, 0.5]
    np.testing.assert_allclose(project(pts, c.K), apply_affine_np(project(pts, K), c.affine), atol=1e-9)
    # The box corners land on the crop's outer pixel edges.
    np.testing.assert_allclose(apply_affine_np(np.array([[10.0, 0.0], [40.0, 30.0]]), c.affine),
                               [[-0.5, -0.5], [15.5, 15.5]], atol=1e-12)
    # Identity crop: the full square image at its own size gives the image back.
    sq = image[:, :H]
    same = crops.crop_hand(sq, crops.full_image_box(H, H), K, H)
    np.testing.assert_array_equal(same.image, sq)
    inv = invert_affine(c.affine)
    p = rng.uniform(0, 16, size=(7, 2))
    np.testing.assert_allclose(apply_affine_np(apply_affine_np(p, inv), c.affine), p, atol=1e-9)


def test_training_crop_scales_hand_case():
    import math

    from m3dhmr.data.augment import AugmentConfig
    from m3dhmr.inference.crops import JOINTS_PER_SILHOUETTE, training_crop_scales

    margin, box = training_crop_scales(AugmentConfig(base_box_scale=1.5, scale_range=(0.9, 1.2)))
    assert margin == pytest.approx(1.5 * math.sqrt(1.08))
    assert box == pytest.approx(margin * JOINTS_PER_SILHOUETTE)
