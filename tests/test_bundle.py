import dataclasses
import hashlib
import time
import types
from pathlib import Path

import numpy as np
import pytest

from m3dhmr.config_loader import ConfigError, from_dict
from m3dhmr.mesh import (MANO_JOINT_REGION, MeshError, TopologyParams, build_topology, load_bundle,
                         load_or_build_topology, save_bundle)
from m3dhmr.mesh.bundle import default_cache_dir
from mesh_shapes import grid, naive_region_pieces, open_disk, toy_regressor

PARAMS = TopologyParams(levels=3, spiral_length=9, roi_spiral_length=6, roi_dilation=2)


@pytest.fixture(scope="module")
def hand():
    v, f = open_disk(3)
    return v, f, toy_regressor(v)


@pytest.fixture(scope="module")
def bundle(hand):
    return build_topology(*hand, params=PARAMS)


def _equal(a, b):
    assert a.params == b.params and a.key == b.key
    for x, y in zip(a.vertices + a.faces + a.spirals, b.vertices + b.faces + b.spirals, strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a.down + a.up, b.down + b.up, strict=True):
        assert x.shape == y.shape and (x != y).nnz == 0
    for name in ("regions", "roi_spirals", "joint_regressor"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_params_validation_and_yaml_loading():
    assert from_dict(TopologyParams, {"levels": 3, "factor": 3}) == TopologyParams(levels=3, factor=3.0)
    with pytest.raises(ConfigError, match="spiral_lenght"):
        from_dict(TopologyParams, {"spiral_lenght": 9})
    with pytest.raises(ValueError, match="levels"):
        TopologyParams(levels=0)
    with pytest.raises(ValueError, match="factor"):
        TopologyParams(factor=1.0)


def test_bundle_contents(hand, bundle):
    v, f, reg = hand
    b = bundle
    assert b.num_levels == 3
    np.testing.assert_array_equal(b.vertices[0], v.astype(np.float32))
    np.testing.assert_array_equal(b.faces[0], f)
    for l in range(3):
        n = b.vertices[l].shape[0]
        assert b.vertices[l].dtype == np.float32 and b.faces[l].dtype == np.int64
        assert b.spirals[l].shape == (n, 9) and b.spirals[l].dtype == np.int64
        np.testing.assert_array_equal(b.spirals[l][:, 0], np.arange(n))
    for l in range(2):
        assert b.down[l].shape == (b.vertices[l + 1].shape[0], b.vertices[l].shape[0])
        assert b.up[l].shape == b.down[l].shape[::-1]
        np.testing.assert_allclose(np.asarray(b.up[l].sum(1)).ravel(), 1.0, atol=1e-6)
    assert b.regions.shape == (v.shape[0],) and b.regions.dtype == np.int64
    assert set(b.regions.tolist()) == set(range(6))
    assert all(n == 1 for n in naive_region_pieces(f, b.regions).values())
    assert b.roi_spirals.shape == (v.shape[0], 6)
    assert (b.regions[b.roi_spirals] == b.regions[:, None]).all()
    assert b.joint_regressor.dtype == np.float32 and b.joint_regressor.shape == (21, v.shape[0])
    assert sum(b.region_sizes().values()) == v.shape[0] and len(b.key) == 64


def test_regions_given_or_from_skinning(hand, caplog):
    v, f, reg = hand
    given = np.zeros(v.shape[0], dtype=np.int64)
    given[v[:, 1] > 0.5] = 3
    b = build_topology(v, f, reg, PARAMS, regions=given)
    np.testing.assert_array_equal(b.regions, given)
    w = np.zeros((v.shape[0], 16))
    w[:, 0] = 1.0
    w[v[:, 0] > 0.2, 13] = 2.0  # thumb1 in MANO order
    b = build_topology(v, f, reg, PARAMS, skinning_weights=w, joint_region=MANO_JOINT_REGION)
    np.testing.assert_array_equal(b.regions, np.where(v[:, 0] > 0.2, 1, 0))
    with pytest.raises(ValueError, match="joint_region"):
        build_topology(v, f, reg, PARAMS, skinning_weights=w)
    split = np.where(np.abs(v[:, 0]) > 0.3, 5, 0).astype(np.int64)  # region 5 in two pieces
    b = build_topology(v, f, reg, PARAMS, regions=split)
    assert "not connected" in caplog.text
    assert (b.regions[b.roi_spirals] == b.regions[:, None]).all()
    with pytest.raises(ValueError, match="regions values"):
        build_topology(v, f, reg, PARAMS, regions=given + 6)


def test_bad_inputs(hand):
    v, f, reg = hand
    with pytest.raises(ValueError, match=r"joint_regressor must have shape \(21, 505\)"):
        build_topology(v, f, reg[:16], PARAMS)
    bad = v.copy()
    bad[3] = np.nan
    with pytest.raises(MeshError, match="NaN"):
        build_topology(bad, f, reg, PARAMS)
    with pytest.raises(MeshError, match="non-triangle"):
        build_topology(v, np.hstack([f, f[:, :1]]), reg, PARAMS)


def test_save_load_round_trip_and_byte_identical(tmp_path, hand, bundle):
    save_bundle(tmp_path / "a.npz", bundle)
    _equal(load_bundle(tmp_path / "a.npz"), bundle)
    time.sleep(1.1)  # a zip timestamp would differ now
    save_bundle(tmp_path / "b.npz", build_topology(*hand, params=PARAMS))
    digest = [hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in ("a.npz", "b.npz")]
    assert digest[0] == digest[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npz"]
    with np.load(tmp_path / "a.npz", allow_pickle=False) as z:  # plain arrays, no pickles
        assert "spirals_0" in z.files and "up_1_indptr" in z.files


def test_load_bundle_errors(tmp_path, bundle):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_bundle(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        load_bundle(tmp_path / "junk.npz")
    np.savez(tmp_path / "partial.npz", format_version=np.array(1), params=np.array("{}"))
    with pytest.raises(ValueError, match="lacks array"):
        load_bundle(tmp_path / "partial.npz")


def test_load_or_build_caches(tmp_path, hand, bundle):
    v, f, reg = hand
    b1 = load_or_build_topology(v, f, reg, PARAMS, cache_dir=tmp_path)
    _equal(b1, bundle)
    files = list(tmp_path.glob("topology-*.npz"))
    assert len(files) == 1 and bundle.key[:32] in files[0].name
    t0 = time.perf_counter()
    b2 = load_or_build_topology(v, f, reg, PARAMS, cache_dir=tmp_path)
    assert time.perf_counter() - t0 < 1.0
    _equal(b2, bundle)
    # Another parameter or template gives another key and file.
    b3 = load_or_build_topology(v, f, reg, dataclasses.replace(PARAMS, spiral_length=5), cache_dir=tmp_path)
    assert b3.key != bundle.key and b3.spirals[0].shape[1] == 5
    b4 = load_or_build_topology(v * 1.01, f, reg, PARAMS, cache_dir=tmp_path)
    assert b4.key != bundle.key
    assert len(list(tmp_path.glob("topology-*.npz"))) == 3
    # A corrupt cache file is rebuilt, not trusted.
    files[0].write_bytes(b"corrupt")
    _equal(load_or_build_topology(v, f, reg, PARAMS, cache_dir=tmp_path), bundle)
    _equal(load_bundle(files[0]), bundle)


def test_load_or_build_from_template(tmp_path, hand):
    v, f, reg = hand
    regions = np.where(v[:, 1] > 0.5, 2, 0).astype(np.int64)
    tpl = types.SimpleNamespace(vertices=v, faces=f, joint_regressor=reg, regions=regions, skinning_weights=None)
    b = load_or_build_topology(tpl, PARAMS, cache_dir=tmp_path)
    np.testing.assert_array_equal(b.regions, regions)
    assert b.key == build_topology(v, f, reg, PARAMS, regions=regions).key


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("M3DHMR_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "topology"
    monkeypatch.delenv("M3DHMR_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "m3dhmr" / "topology"


def test_flat_grid_with_boundary_builds():
    v, f = grid(12)
    reg = np.zeros((21, v.shape[0]))
    reg[np.arange(21), np.arange(21) * 7] = 1.0
    b = build_topology(v, f, reg, TopologyParams(levels=2))
    assert b.vertices[1].shape[0] < v.shape[0]
    assert (b.regions[b.roi_spirals] == b.regions[:, None]).all()


def test_open_hand_default_bundle_builds():
    # Regression: thin fingers made the 4th level's decimation collapse into a
    # two-face "pillow" (duplicate face) at the decimator's default aggressiveness.
    from m3dhmr.hand import load_template
    from m3dhmr.mesh import TopologyParams, build_topology, check_triangle_mesh

    t = load_template("open_hand")
    b = build_topology(t.vertices, t.faces, t.joint_regressor, TopologyParams(), regions=t.regions)
    assert len(b.vertices) == 4
    for v, f in zip(b.vertices, b.faces):
        check_triangle_mesh(v, f)
    assert [v.shape[0] for v in b.vertices][-1] < 0.2 * t.vertices.shape[0]
