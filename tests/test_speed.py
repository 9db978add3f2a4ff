"""Per-stage speed of the Predictor (:mod:`m3dhmr.inference.speed`); the command is in test_bench_cli.py."""

import numpy as np
import pytest
import torch

from m3dhmr.inference.predictor import Predictor
from m3dhmr.inference.speed import STAGES, BenchResult, format_results, run_bench, synthetic_frame, time_frame
from m3dhmr.models import M3DHMR
from model_helpers import tiny_model_config, tiny_topology


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return Predictor.from_model(M3DHMR(tiny_model_config(), tiny_topology()).eval())


def test_synthetic_frame():
    img, box = synthetic_frame(224)
    assert img.shape == (224, 224, 3) and img.dtype == np.uint8
    np.testing.assert_allclose(box, [44.8, 44.8, 134.4, 134.4])


def test_time_frame_stages_add_up(predictor):
    img, box = synthetic_frame(96)
    t = time_frame(predictor, img, box)
    assert set(t) == {*STAGES, "total"}
    assert all(v > 0 for v in t.values())
    assert sum(t[s] for s in STAGES) == pytest.approx(t["total"], rel=0.05)


def test_run_bench_interleaves_and_formats(predictor):
    res = run_bench({"a": predictor, "b": predictor}, seconds=0.01, warmup=1, min_frames=3, image_size=96, block=2)
    assert res["a"].frames == res["b"].frames == 4  # two turns of two timed frames
    lines = format_results(res)
    values = dict(line.split("=") for line in lines)
    for name in ("a", "b"):
        for s in STAGES:
            assert float(values[f"ms_{s}_{name}"]) == pytest.approx(res[name].ms_mean[s], abs=1e-3)
        assert float(values[f"fps_end_to_end_{name}"]) == pytest.approx(1000 / res[name].ms_mean["total"], abs=0.01)
    assert lines[-1].startswith("fps_end_to_end_b=") and lines[-2].startswith("fps_end_to_end_a=")


def test_bench_result_and_errors(predictor):
    r = BenchResult("x", 2, {"total": 20.0}, {"total": 20.0})
    assert r.fps == 50.0
    with pytest.raises(ValueError, match="no backends"):
        run_bench({})
    with pytest.raises(ValueError, match="--seconds"):
        run_bench({"a": predictor}, seconds=0)
    with pytest.raises(ValueError, match="block"):
        run_bench({"a": predictor}, block=0)


def test_format_results_of_both_precisions():
    r = {"fp32": BenchResult("fp32", 2, {k: 10.0 for k in (*STAGES, "total")}, {"total": 10.0}),
         "int8": BenchResult("int8", 2, {k: 5.0 for k in (*STAGES, "total")}, {"total": 5.0})}
    lines = format_results(r)
    assert lines[-2:] == ["fps_end_to_end_fp32=100.00", "fps_end_to_end_int8=200.00"]


def test_network_gflop_by_hand_and_the_rate_line():
    """A 3x3 convolution 3 -> 4 channels on 8 x 8 (padding 1) is 2 * 4 * 8 * 8 * 3 * 9 flops,
    then a linear 256 -> 10 is 2 * 256 * 10; ReLU and flatten count nothing."""
    from m3dhmr.inference.speed import network_gflop

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(256, 10))
    want = (2 * 4 * 8 * 8 * 3 * 9 + 2 * 256 * 10) / 1e9
    assert network_gflop(net, 8) == pytest.approx(want, rel=1e-12)
    r = BenchResult("x", 3, {**dict.fromkeys(STAGES, 1.0), "total": 3.0},
                    {"preprocess": 1.0, "network": 4.0, "registration": 1.0, "total": 6.0})
    values = dict(line.split("=") for line in format_results({"x": r}, gflop=2.0))
    assert values["gflops_network_x"] == "500.0"  # 2 GFLOP in 4 ms
    assert "gflops_network_x" not in dict(line.split("=") for line in format_results({"x": r}))
