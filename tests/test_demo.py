"""``m3dhmr demo`` end to end at a tiny size: every step runs and every promised file exists."""

import pytest

from conftest import TINY_EXPERIMENT_YAML


@pytest.mark.slow
def test_demo_runs_every_step(tmp_path, capsys):
    from m3dhmr.cli import main

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_EXPERIMENT_YAML.replace("  log_every: 1\n", "  log_every: 1\n  eval_every: 2\n  eval_samples: 2\n"))
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--config", str(cfg), "--bench", "6", "--train", "8", "--eval", "2",
               "--predict", "3", "--workers", "1", "--max-steps", "4"])
    text = capsys.readouterr().out
    assert rc == 0, text
    for f in ("benchmark_packaged/benchmark.json", "benchmark_demo_model/benchmark.json", "predictions.jpg",
              "learning_curve.png", "run/eval_metrics.csv", "predictions/00000000/hand_0/panel.jpg",
              "predictions/00000001/hand_0/mesh.obj", "whole_photo/result.json", "whole_photo/overlay.jpg"):
        assert (out / f).is_file(), f
    assert "packaged model" in text and "rest hand" in text and "learning curve" in text
