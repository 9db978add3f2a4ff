"""The per-user ONNX cache (:func:`m3dhmr.inference.onnx_export.cached_onnx`): one export
per model, reused across runs, never a half file, a temporary export when unwritable."""

import copy
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from m3dhmr.errors import InputError
from m3dhmr.inference import onnx_export
from m3dhmr.inference.networks import OnnxNetwork
from m3dhmr.inference.onnx_export import (PARITY_TOLERANCE, cached_onnx, cached_onnx_file, check_parity,
                                          onnx_cache_dir, onnx_cache_key, read_onnx_metadata)
from m3dhmr.models import M3DHMR
from model_helpers import tiny_model_config, tiny_topology


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return M3DHMR(tiny_model_config(), tiny_topology()).eval()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Every test's cache is its own tmp folder: nothing is written under the home folder."""
    monkeypatch.setenv("M3DHMR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


@pytest.fixture
def exports(monkeypatch) -> list[Path]:
    """The paths exported (every export, cached or temporary, goes through ``export_graph``)."""
    done: list[Path] = []
    real = onnx_export.export_graph

    def counting(model, path, opset, meta):
        done.append(Path(path))
        return real(model, path, opset, meta)

    monkeypatch.setattr(onnx_export, "export_graph", counting)
    return done


def test_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("M3DHMR_CACHE_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert onnx_cache_dir() == tmp_path / "m" / "onnx"
    monkeypatch.delenv("M3DHMR_CACHE_DIR")
    assert onnx_cache_dir() == tmp_path / "xdg" / "m3dhmr" / "onnx"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # the XDG spec says: ignore it
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert onnx_cache_dir() == tmp_path / "home" / ".cache" / "m3dhmr" / "onnx"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert onnx_cache_dir() == tmp_path / "home" / ".cache" / "m3dhmr" / "onnx"


def test_second_call_reuses_the_export(model, cache, exports):
    path = cached_onnx(model)
    assert path.parent == cache and path.suffix == ".onnx" and exports == [path]
    assert read_onnx_metadata(path)["cache_key"] == onnx_cache_key(model)
    assert check_parity(model, path).worst <= PARITY_TOLERANCE
    mtime = path.stat().st_mtime_ns
    assert cached_onnx(model) == path
    assert exports == [path] and path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in cache.iterdir()) == [path.name]  # no temporary left


def test_key_follows_weights_topology_config_and_opset(model):
    key = onnx_cache_key(model)
    assert onnx_cache_key(copy.deepcopy(model)) == key  # equal models share an export
    assert onnx_cache_key(model, opset=18) != key
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.parameters()).view(-1)[0] += 1e-3
    assert onnx_cache_key(other) != key
    other = copy.deepcopy(model)
    other.rest_vertices.add_(1e-3)  # a non-persistent (template) buffer: not in the state_dict
    assert onnx_cache_key(other) != key
    with pytest.raises(InputError, match="opset >= 16"):
        cached_onnx(model, opset=13)


@pytest.mark.parametrize("damage", ["truncated", "junk", "empty", "another_model"])
def test_a_damaged_cache_file_is_replaced(model, cache, exports, caplog, damage):
    path = cached_onnx(model)
    good = path.read_bytes()
    if damage == "truncated":  # what a non-atomic writer killed mid-way would leave
        path.write_bytes(good[: len(good) // 2])
    elif damage == "junk":
        path.write_bytes(b"not an onnx file")
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        torch.manual_seed(1)
        onnx_export.export_onnx(M3DHMR(tiny_model_config(), tiny_topology()), path)
    exports.clear()
    with caplog.at_level(logging.WARNING, logger="m3dhmr.inference.onnx_export"):
        assert cached_onnx(model) == path
    assert exports == [path] and "unreadable or stale" in caplog.text
    assert read_onnx_metadata(path)["cache_key"] == onnx_cache_key(model)
    assert check_parity(model, path).worst <= PARITY_TOLERANCE


def test_a_killed_export_leaves_no_half_file(model, cache, monkeypatch, exports):
    real = onnx_export.describe_graph

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_export, "describe_graph", killed)  # after the tracer wrote its temporary
    with pytest.raises(KeyboardInterrupt):
        cached_onnx(model)
    assert list(cache.iterdir()) == []
    monkeypatch.setattr(onnx_export, "describe_graph", real)
    assert cached_onnx(model).is_file() and len(exports) == 2


def test_old_temporaries_of_killed_runs_are_removed(model, cache):
    cache.mkdir(parents=True)
    old = cache / ".abc.onnx.tmp-old.onnx"
    fresh = cache / ".abc.onnx.tmp-live.onnx"  # another process may be writing it now
    for p in (old, fresh):
        p.write_bytes(b"partial")
    hours_ago = time.time() - 2 * onnx_export.STALE_TEMPORARY_S
    os.utime(old, (hours_ago, hours_ago))
    cached_onnx(model)
    assert not old.exists() and fresh.exists()


def test_unwritable_cache_falls_back_to_a_temporary_export(model, tmp_path, monkeypatch, caplog, exports):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should be")  # unwritable even for root
    monkeypatch.setenv("M3DHMR_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(OSError):
        cached_onnx(model)
    with caplog.at_level(logging.WARNING, logger="m3dhmr.inference.onnx_export"), cached_onnx_file(model) as path:
        assert path.is_file() and blocker not in path.parents
        net = OnnxNetwork(path)
    assert not path.exists() and not path.parent.exists()  # removed once the session holds the graph
    assert "cannot write the ONNX cache" in caplog.text and "M3DHMR_CACHE_DIR" in caplog.text
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    assert net(x).vertices.shape == (1, model.num_vertices, 3)
    assert blocker.read_text().startswith("a file")


def test_cached_onnx_file_uses_the_cache(model, cache, exports):
    with cached_onnx_file(model) as path:
        assert path.parent == cache
    with cached_onnx_file(model) as again:
        assert again == path and path.is_file()
    assert exports == [path]


def test_predictor_exports_once_per_model(model, cache, exports):
    # Predictor.from_model(backend="onnxruntime") without onnx_path exported on every call.
    from m3dhmr.inference.predictor import Predictor

    a = Predictor.from_model(model, backend="onnxruntime")
    b = Predictor.from_model(model, backend="onnxruntime")
    assert len(exports) == 1 and exports[0].parent == cache
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    np.testing.assert_array_equal(a.run_network(x).vertices, b.run_network(x).vertices)
