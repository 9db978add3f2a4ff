"""Annotation text of synthetic samples (:mod:`m3dhmr.data.synth_encode`)."""

import json

import numpy as np
import pytest

from m3dhmr.data import synth_encode


def test_row_formatting_matches_json():
    a = np.array([[0.1234564, -2.0, 1e-9], [3.5, 0.0, -0.0000004]])
    parsed = json.loads(synth_encode.json_rows(a))
    np.testing.assert_allclose(parsed, a, atol=5.1e-7)
    assert synth_encode.json_rows(np.zeros((0, 3))) == "[]"
    for i in range(2):  # the naive reference: json.dumps of the rounded rows
        np.testing.assert_allclose(parsed[i], json.loads(json.dumps(np.round(a[i], 6).tolist())), atol=1e-12)


def test_rows_kernel_matches_percent_format():
    rng = np.random.default_rng(1)

    def naive(a):  # the former formatter, on values rounded like np.round
        return "[" + ", ".join("[%.6f, %.6f, %.6f]" % tuple(r) for r in np.round(a, 6)) + "]"

    for a in (rng.normal(0, 0.1, (50, 3)), rng.normal(0, 300, (7, 3)), np.array([[1.0, -2.5, 0.0]])):
        assert synth_encode.json_rows(a) == naive(a)
    # Hand cases: tiny negatives print without a sign; huge values fall back to "%.6f".
    assert synth_encode.json_rows(np.array([[-4e-7, 12.0000004, -1.25]])) == "[[0.000000, 12.000000, -1.250000]]"
    assert synth_encode.json_rows(np.array([[1e13, 0.5, 2.0]])) == "[[10000000000000.000000, 0.500000, 2.000000]]"
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        synth_encode.json_rows(np.zeros((2, 2)))


def test_images_are_encoded_at_the_sample_quality():
    import cv2

    from m3dhmr.data.synth_scene import RenderedSample

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[10:40, 20:50] = True
    sizes = []
    for q in (40, 95):
        s = RenderedSample(rgb=rgb, mask=mask, K=np.eye(3), xyz=np.zeros((21, 3)), verts=np.zeros((5, 3)),
                           params={"jpeg_quality": q})
        a, m = synth_encode.encode_images(s, 90)
        assert a == cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])[1].tobytes()
        assert m == cv2.imencode(".jpg", mask.astype(np.uint8) * 255, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        sizes.append(len(a))
    assert sizes[0] < sizes[1]
    with pytest.raises(ValueError, match="jpeg_quality"):
        synth_encode.encode_images(RenderedSample(rgb=rgb, mask=mask, K=np.eye(3), xyz=np.zeros((21, 3)),
                                                  verts=np.zeros((5, 3)), params={"jpeg_quality": 0}), 90)
