"""``m3dhmr benchmark``: the benchmark set is rendered once, reused, and never replaces other data."""

import json

import pytest

from m3dhmr.evaluation.benchmark import BENCHMARK_SEED, ensure_benchmark


def test_renders_once_and_reuses(tmp_path):
    data = ensure_benchmark(tmp_path / "b", 3, workers=1)
    info = json.loads((data / "synth_info.json").read_text())
    assert (info["seed"], info["train"], info["eval"]) == (BENCHMARK_SEED, 0, 3)
    stamp = (data / "evaluation_xyz.json").stat().st_mtime_ns
    assert ensure_benchmark(data, 3) == data and (data / "evaluation_xyz.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="holds the first 3 benchmark images, not 5"):
        ensure_benchmark(data, 5)
    # A render of an older generator (version 2 rendered hands at rest) is refused, and the
    # demo, whose folders these are, renders its own again.
    from m3dhmr.commands.demo import rendered_by_older_generator

    assert not rendered_by_older_generator(data)
    info["version"] = 2
    (data / "synth_info.json").write_text(json.dumps(info))
    assert rendered_by_older_generator(data)
    with pytest.raises(ValueError, match="generator version 2.*delete the folder"):
        ensure_benchmark(data, 3)


def test_a_changed_benchmark_is_rendered_again(tmp_path, capsys):
    # The folder only caches the benchmark: a set changed after rendering (another run's image
    # under the same name) is rendered again instead of being scored.
    from m3dhmr.data.synth import is_complete

    data = ensure_benchmark(tmp_path / "b", 2, workers=1)
    rgb = data / "evaluation" / "rgb"
    good = (rgb / "00000001.jpg").read_bytes()
    (rgb / "00000001.jpg").write_bytes((rgb / "00000000.jpg").read_bytes())
    assert not is_complete(data)
    assert ensure_benchmark(data, 2, workers=1) == data
    assert "incomplete or mixed: evaluation/rgb/00000001.jpg" in capsys.readouterr().out
    assert is_complete(data) and (rgb / "00000001.jpg").read_bytes() == good


def test_refuses_other_data(tmp_path, tiny_data):
    with pytest.raises(ValueError, match="another synthetic set"):
        ensure_benchmark(tiny_data, 3)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "training_K.json").write_text("[]")
    with pytest.raises(ValueError, match="not empty"):
        ensure_benchmark(other, 3)
    assert (other / "training_K.json").read_text() == "[]"


def test_cli_scores_a_checkpoint_next_to_both_baselines(tmp_path, tiny_data, tiny_config, capsys):
    from m3dhmr.cli import main
    from m3dhmr.experiment import load_experiment
    from m3dhmr.train.trainer import train

    run = tmp_path / "run"
    train(load_experiment(tiny_config), tiny_data, run, max_steps=1, progress_bar=False)
    rc = main(["benchmark", "--checkpoint", str(run / "checkpoints" / "last.safetensors"), "--data",
               str(tmp_path / "bench"), "--num", "4", "--workers", "1"])
    out = capsys.readouterr().out
    assert rc == 0 and "rest hand" in out and "mean pose" in out
    scores = json.loads((tmp_path / "bench" / "scores" / "benchmark.json").read_text())
    assert set(scores) >= {"model", "mean_pose", "rest_hand"} and scores["num_samples"] == 4
    last = out.strip().splitlines()[-1]
    assert last.startswith("rest_hand_mpjpe_rr_mm=")
