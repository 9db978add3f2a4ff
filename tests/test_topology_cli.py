import numpy as np
import pytest

from m3dhmr.cli import main
from m3dhmr.mesh import load_bundle, write_mesh
from mesh_shapes import open_disk, toy_regressor


@pytest.fixture()
def files(tmp_path):
    v, f = open_disk(2)
    write_mesh(tmp_path / "hand.ply", v, f)
    np.save(tmp_path / "j.npy", toy_regressor(v))
    return tmp_path, v, f


def test_builds_bundle_and_prints_summary(files, capsys):
    d, v, f = files
    rc = main(["topology", str(d / "hand.ply"), "--joint-regressor", str(d / "j.npy"), "--levels", "3",
               "--spiral-length", "7", "--out", str(d / "b.npz")])
    assert rc == 0
    out = capsys.readouterr().out
    b = load_bundle(d / "b.npz")
    assert b.num_levels == 3 and b.spirals[0].shape == (v.shape[0], 7)
    for l in range(3):
        assert f"{b.vertices[l].shape[0]} vertices" in out and f"{b.faces[l].shape[0]} faces" in out
    assert "spiral length 7" in out
    for name, n in b.region_sizes().items():
        assert f"{name} {n}" in out


def test_regions_file_is_used(files):
    d, v, f = files
    regions = np.where(v[:, 1] > 0.3, 4, 0).astype(np.int64)
    np.save(d / "r.npy", regions)
    assert main(["topology", str(d / "hand.ply"), "--joint-regressor", str(d / "j.npy"), "--regions",
                 str(d / "r.npy"), "--levels", "2", "--out", str(d / "b.npz")]) == 0
    np.testing.assert_array_equal(load_bundle(d / "b.npz").regions, regions)


def test_plain_mesh_without_regressor_or_regions_is_an_error(files, capsys):
    d, _, _ = files
    rc = main(["topology", str(d / "hand.ply"), "--out", str(d / "b.npz")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--regions" in err and "--joint-regressor" in err
    assert not (d / "b.npz").exists()


@pytest.mark.parametrize("args,words", [
    (["missing.ply", "--joint-regressor", "j.npy"], "missing.ply"),
    (["hand.ply", "--joint-regressor", "nope.npy"], "nope.npy"),
    (["hand.ply", "--joint-regressor", "j.npy", "--levels", "0"], "levels"),
])
def test_bad_arguments_give_one_line_errors(files, capsys, args, words):
    d, _, _ = files
    args = [str(d / a) if a.endswith((".ply", ".npy")) else a for a in args]
    assert main(["topology", *args, "--out", str(d / "b.npz")]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_named_template(tmp_path, capsys):
    from m3dhmr import hand
    assert main(["topology", "open_hand", "--levels", "2", "--out", str(tmp_path / "oh.npz")]) == 0
    tpl = hand.load_template("open_hand")
    b = load_bundle(tmp_path / "oh.npz")
    np.testing.assert_array_equal(b.regions, tpl.regions)
    np.testing.assert_array_equal(b.faces[0], tpl.faces)
