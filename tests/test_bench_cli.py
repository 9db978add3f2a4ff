"""``m3dhmr bench``: which runs are timed, and option errors before any model is built."""

import pytest


def test_timed_runs_name_the_fps_lines():
    from m3dhmr.commands.bench import timed_runs

    assert timed_runs(None, "fp32") == {"torch": ("torch", "fp32"), "onnxruntime": ("onnxruntime", "fp32")}
    assert timed_runs("torch", "fp32") == {"torch": ("torch", "fp32")}
    assert timed_runs(None, "int8") == timed_runs("onnxruntime", "int8") == {"int8": ("onnxruntime", "int8")}
    assert timed_runs(None, "both") == {"fp32": ("onnxruntime", "fp32"), "int8": ("onnxruntime", "int8")}


@pytest.mark.parametrize("option, message", [
    (["--threads", "-3"], "--threads must be >= 1, got -3"),
    (["--seconds", "inf"], "--seconds must be a finite number > 0, got inf"),
    (["--seconds", "nan"], "--seconds must be a finite number > 0, got nan"),
    (["--image-size", "100000"], "--image-size must be in [16, 4096], got 100000"),
    (["--onnx", "missing.onnx"], "--onnx: file not found: missing.onnx"),
    (["--precision", "int4"], "--precision must be one of fp32, int8, both, got 'int4'"),
    (["--precision", "int8", "--backend", "torch"],
     "--precision int8 times ONNX Runtime: use --backend onnxruntime or leave it out"),
    (["--precision", "both", "--backend", "both"],
     "--precision both times ONNX Runtime: use --backend onnxruntime or leave it out"),
    (["--precision", "both", "--accuracy-images", "0"], "--accuracy-images must be >= 1, got 0"),
    (["--precision", "both", "--photos", "no_such_dir"], "--photos no_such_dir: no such folder"),
])
def test_bench_bad_options_are_one_line_before_building(capsys, monkeypatch, option, message):
    import m3dhmr.models
    from m3dhmr.cli import main

    def forbidden(*a, **k):
        raise AssertionError("the model was built before the options were checked")

    monkeypatch.setattr(m3dhmr.models, "build_model", forbidden)
    rc = main(["bench", *option])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip() == f"m3dhmr bench: error: {message}"
