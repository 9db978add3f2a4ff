"""PredictionResult on hand-built values: its one-line repr, ``to_json`` (result.json's keys,
units and rounding) and the quality shortcuts. The Predictor's results are checked against
the pipeline in test_predictor.py."""

import json

import numpy as np
import pytest

import m3dhmr
from m3dhmr.inference.quality import HandQuality
from m3dhmr.inference.result import PredictionResult


def make_result(**changes) -> PredictionResult:
    rng = np.random.default_rng(0)
    fields = dict(joints2d=rng.uniform(0, 100, (21, 2)), joints3d=rng.normal(size=(21, 3)) * 0.05 + [0, 0, 0.5],
                  vertices=rng.normal(size=(7, 3)) * 0.05 + [0, 0, 0.5], faces=np.array([[0, 1, 2], [2, 3, 4]]),
                  translation=np.array([0.01, -0.02, 0.5]), success=True, reprojection_error=1.25,
                  hand_box=np.array([10.0, 20.0, 30.0, 40.0]), crop_box=np.array([5.0, 15.0, 40.0, 40.0]),
                  K=np.array([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]]), image_size=(80, 100), left=False)
    fields.update(changes)
    return PredictionResult(**fields)


def test_top_level_name_is_this_class():
    assert m3dhmr.PredictionResult is PredictionResult


def test_repr_is_one_short_line_without_arrays():
    r = make_result(hand_box=np.array([10.04, 20.0, 30.0, 40.0]))
    assert repr(r) == "PredictionResult(right, hand_box=(10.0, 20.0, 30.0, 40.0), wrist_m=(0.010, -0.020, 0.500), " \
                      "vertices=7)"
    q = HandQuality(score=0.734, flag="good", landmark_error=0.1, finger_disagreement=0, residual=0.01)
    text = repr(make_result(left=True, score=0.987, quality_report=q, success=False))
    assert text.startswith("PredictionResult(left, ") and "\n" not in text
    assert text.endswith("score=0.99, quality=0.73 (good), registration failed)")


def test_quality_shortcuts():
    r = make_result()
    assert r.quality is None and r.quality_flag is None and r.handedness == "right"
    q = HandQuality(score=0.2, flag="poor", landmark_error=None, finger_disagreement=None, residual=0.3)
    r = make_result(quality_report=q, left=True)
    assert r.quality == 0.2 and r.quality_flag == "poor" and r.handedness == "left"


def test_to_json_keys_units_and_rounding():
    q = HandQuality(score=0.51234567, flag="fair", landmark_error=None, finger_disagreement=None, residual=0.02)
    r = make_result(score=0.123456, quality_report=q, joints3d=np.full((21, 3), 0.1234567))
    d = r.to_json()
    assert set(d) == {"hand_box", "handedness", "score", "quality", "joints2d", "joints3d", "translation", "K",
                      "crop_box", "image_size", "success", "reprojection_error_px", "left", "units", "vertices"}
    assert d["handedness"] == "right" and d["left"] is False and d["success"] is True
    assert d["score"] == 0.1235 and d["quality"] == q.to_json() and d["image_size"] == [80, 100]
    assert d["joints3d"][0] == [0.123457] * 3 and d["reprojection_error_px"] == 1.25
    assert d["units"]["joints3d"] == "m" and d["units"]["joints2d"] == "px"
    assert np.asarray(d["vertices"]).shape == (7, 3) and np.asarray(d["K"]).shape == (3, 3)
    json.dumps(d)  # plain data only
    assert "vertices" not in r.to_json(include_vertices=False)
    assert "articulation" not in d


@pytest.mark.parametrize("score", [None, 0.5])
def test_score_is_optional(score):
    assert make_result(score=score).to_json()["score"] == score
