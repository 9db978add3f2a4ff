import csv
import json

import cv2
import numpy as np
import pytest

from m3dhmr.evaluation.scoring import (read_prediction_file, score_prediction_file, score_predictions, write_metrics,
                               write_prediction_file)
from m3dhmr.metrics import PER_SAMPLE_KEYS, SUMMARY_KEYS, freihand_metrics

N, V = 4, 30


def _make_set(root, split="evaluation", with_gt=True, seed=0):
    rng = np.random.default_rng(seed)
    K = np.tile(np.array([[300.0, 0, 112], [0, 300.0, 112], [0, 0, 1]]), (N, 1, 1))
    xyz = rng.normal(size=(N, 21, 3)) * 0.03 + [0, 0, 0.6]
    verts = rng.normal(size=(N, V, 3)) * 0.03 + [0, 0, 0.6]
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{split}_K.json").write_text(json.dumps(K.tolist()))
    if with_gt:
        (root / f"{split}_xyz.json").write_text(json.dumps(xyz.tolist()))
        (root / f"{split}_verts.json").write_text(json.dumps(verts.tolist()))
    (root / split / "rgb").mkdir(parents=True)
    for i in range(N):
        cv2.imwrite(str(root / split / "rgb" / f"{i:08d}.jpg"), np.zeros((8, 8, 3), np.uint8))
    # float32 round trip, as the data loader stores annotations
    return xyz.astype(np.float32).astype(np.float64), verts.astype(np.float32).astype(np.float64)


def test_round_trip_and_scoring(tmp_path):
    gt_xyz, gt_verts = _make_set(tmp_path / "data")
    rng = np.random.default_rng(1)
    xyz = gt_xyz + rng.normal(size=gt_xyz.shape) * 0.01
    verts = gt_verts + rng.normal(size=gt_verts.shape) * 0.005
    p = write_prediction_file(tmp_path / "out" / "pred.json", xyz, verts)
    data = json.loads(p.read_text())
    assert len(data) == 2 and np.array(data[0]).shape == (N, 21, 3) and np.array(data[1]).shape == (N, V, 3)
    rx, rv = read_prediction_file(p)
    np.testing.assert_array_equal(rx, xyz)
    np.testing.assert_array_equal(rv, verts)

    res = score_predictions(rx, rv, tmp_path / "data", "evaluation")
    ref = freihand_metrics(xyz, verts, gt_xyz, gt_verts)
    assert res.summary == pytest.approx(ref.summary, rel=1e-6)
    assert score_prediction_file(p, tmp_path / "data").summary == pytest.approx(ref.summary, rel=1e-6)

    paths = write_metrics(tmp_path / "out", res)
    assert [q.name for q in paths] == ["metrics.json", "per_sample_metrics.csv"]
    m = json.loads(paths[0].read_text())
    assert list(m) == list(SUMMARY_KEYS) and m["num_samples"] == N
    rows = list(csv.DictReader(paths[1].open()))
    assert list(rows[0]) == ["index", *PER_SAMPLE_KEYS] and len(rows) == N
    assert float(rows[2]["pa_mpjpe_mm"]) == res.pa_mpjpe_mm[2]
    assert sorted(q.name for q in (tmp_path / "out").iterdir()) == ["metrics.json", "per_sample_metrics.csv",
                                                                   "pred.json"]


def test_prediction_file_errors(tmp_path):
    p = tmp_path / "pred.json"
    with pytest.raises(FileNotFoundError, match="pred.json"):
        read_prediction_file(p)
    p.write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_prediction_file(p)
    p.write_text(json.dumps([[], [], []]))
    with pytest.raises(ValueError, match="2-element list.*3 items"):
        read_prediction_file(p)
    p.write_text(json.dumps([np.zeros((2, 20, 3)).tolist(), np.zeros((2, 5, 3)).tolist()]))
    with pytest.raises(ValueError, match=r"xyz_list.*N x 21 x 3.*\(2, 20, 3\)"):
        read_prediction_file(p)
    p.write_text(json.dumps([np.zeros((2, 21, 3)).tolist(), np.zeros((3, 5, 3)).tolist()]))
    with pytest.raises(ValueError, match="2 samples but verts_list has 3"):
        read_prediction_file(p)
    p.write_text(json.dumps([np.zeros((1, 21, 3)).tolist(), [[[0, 0, 0], [0, 0]]]]))
    with pytest.raises(ValueError, match="verts_list is not a regular"):
        read_prediction_file(p)
    bad = np.zeros((2, 21, 3))
    bad[1, 3, 0] = np.nan
    p.write_text(json.dumps([bad.tolist(), np.zeros((2, 5, 3)).tolist()]))
    with pytest.raises(ValueError, match="sample 1 contains NaN"):
        read_prediction_file(p)


def test_scoring_errors(tmp_path):
    gt_xyz, gt_verts = _make_set(tmp_path / "data")
    with pytest.raises(ValueError, match=f"3 samples but the evaluation split.*has {N}"):
        score_predictions(gt_xyz[:3], gt_verts[:3], tmp_path / "data")
    with pytest.raises(ValueError, match=f"10 vertices.*has {V}"):
        score_predictions(gt_xyz, gt_verts[:, :10], tmp_path / "data")
    p = write_prediction_file(tmp_path / "pred.json", gt_xyz[:3], gt_verts[:3])
    with pytest.raises(ValueError, match="pred.json.*3 samples"):
        score_prediction_file(p, tmp_path / "data")
    _make_set(tmp_path / "nogt", with_gt=False)
    with pytest.raises(FileNotFoundError, match="evaluation_xyz.json"):
        score_predictions(gt_xyz, gt_verts, tmp_path / "nogt")
    with pytest.raises(FileNotFoundError):
        score_predictions(gt_xyz, gt_verts, tmp_path / "missing")


def test_constant_baselines_hand_case_and_loop():
    import numpy as np

    from m3dhmr.evaluation.scoring import constant_prediction, mean_pose_prediction

    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(5, 21, 3))
    verts = rng.normal(size=(5, 7, 3))
    tgt = rng.normal(size=(3, 21, 3))
    pj, pv = mean_pose_prediction(xyz, verts, tgt)
    for n in range(3):  # naive loop: the mean of root-relative hands, moved to each target root
        mj = sum(xyz[i] - xyz[i, 0] for i in range(5)) / 5
        mv = sum(verts[i] - xyz[i, 0] for i in range(5)) / 5
        np.testing.assert_allclose(pj[n], mj + tgt[n, 0], atol=1e-12)
        np.testing.assert_allclose(pv[n], mv + tgt[n, 0], atol=1e-12)
    # A constant hand: two vertices, the wrist regressed from the first one.
    v = np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 3.0]])
    jreg = np.zeros((21, 2))
    jreg[:, 0] = 1.0
    cj, cv = constant_prediction(v, jreg, tgt)
    np.testing.assert_allclose(cv[1], [[0, 0, 0], [1, 0, 0]] + tgt[1, 0])
    np.testing.assert_allclose(cj[2], np.zeros((21, 3)) + tgt[2, 0])
    with pytest.raises(ValueError, match="joint_regressor"):
        constant_prediction(v, jreg[:, :1], tgt)


def test_absurd_predictions_are_refused(tmp_path):
    p = tmp_path / "pred.json"
    xyz, verts = np.zeros((3, 21, 3)), np.zeros((3, 5, 3))
    verts[1, 4, 2] = 1e300  # finite, but no hand is 1e300 m away (the metrics would overflow)
    p.write_text(json.dumps([xyz.tolist(), verts.tolist()]))
    with pytest.raises(ValueError, match=r"pred.json: verts_list sample 1 has a coordinate of 1e\+300 m"):
        read_prediction_file(p)
    verts[1, 4, 2] = -101.0
    xyz[2, 0, 0] = 1e6
    p.write_text(json.dumps([xyz.tolist(), verts.tolist()]))
    with pytest.raises(ValueError, match="xyz_list sample 2 .*within 100 m"):
        read_prediction_file(p)
    xyz[2, 0, 0] = 0.0
    p.write_text(json.dumps([xyz.tolist(), verts.tolist()]))
    with pytest.raises(ValueError, match="verts_list sample 1"):
        read_prediction_file(p)
    p.write_text("[[[[1e999, 0, 0]]], []]")  # JSON's overflow is infinity: refused as such
    with pytest.raises(ValueError, match="pred.json"):
        read_prediction_file(p)


def test_metrics_json_is_strict_json_even_for_non_finite_metrics(tmp_path):
    gt_xyz, gt_verts = _make_set(tmp_path / "data")
    res = score_predictions(gt_xyz, gt_verts, tmp_path / "data", "evaluation")
    res.summary["pa_mpjpe_mm"] = float("inf")
    res.summary["f5"] = float("nan")
    paths = write_metrics(tmp_path / "out", res)

    def strict(token):
        raise AssertionError(f"non-standard JSON constant {token}")

    m = json.loads(paths[0].read_text(), parse_constant=strict)
    assert m["pa_mpjpe_mm"] is None and m["f5"] is None and m["num_samples"] == N
    assert list(m) == list(SUMMARY_KEYS)
