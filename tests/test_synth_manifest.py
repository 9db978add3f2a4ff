"""A synthetic set's manifest: written by ``m3dhmr synth``, checked by the loaders (no rendering here)."""

import json

import pytest

from m3dhmr.data.synth_manifest import MANIFEST_FILE, IncompleteSetError, check_synthetic_set, write_manifest

FILES = ["training_K.json", "evaluation_K.json", "evaluation_xyz.json", "evaluation_verts.json", "synth_info.json"]


def _image(root, rel, i, nbytes):
    (root / rel).mkdir(parents=True, exist_ok=True)
    (root / rel / f"{i:08d}.jpg").write_bytes(b"x" * nbytes)


@pytest.fixture()
def toy_set(tmp_path):
    """3 training images (with masks) and 1 evaluation image of known sizes, and its manifest."""
    sizes = {"training/rgb": [10, 11, 12], "training/mask": [5, 6, 7], "evaluation/rgb": [20]}
    for rel, s in sizes.items():
        for i, n in enumerate(s):
            _image(tmp_path, rel, i, n)
    for k, name in enumerate(FILES):
        (tmp_path / name).write_text("[" + "0," * k + "0]")
    write_manifest(tmp_path, 4, {"training": 3, "evaluation": 1}, sizes, FILES)
    return tmp_path


def test_manifest_records_sizes_counts_and_seed(toy_set):
    m = check_synthetic_set(toy_set)
    assert m["seed"] == 4 and m["counts"] == {"training": 3, "evaluation": 1}
    assert m["folders"]["training/rgb"] == [10, 11, 12]
    assert m["files"]["evaluation_K.json"] == (toy_set / "evaluation_K.json").stat().st_size
    # Unlisted files (the loader's cache, the lock, other names in an image folder) are not checked.
    (toy_set / ".m3dhmr_cache").mkdir()
    (toy_set / ".m3dhmr.lock").write_text("")
    (toy_set / "training" / "rgb" / "notes.txt").write_text("x")
    assert check_synthetic_set(toy_set) is not None


def test_no_manifest_is_not_checked(tmp_path):
    # Real FreiHAND folders and sets written before the manifest existed.
    assert check_synthetic_set(tmp_path) is None
    (tmp_path / "synth_info.json").write_text("{}")
    assert check_synthetic_set(tmp_path) is None


@pytest.mark.parametrize("edit, problem", [
    (lambda r: _image(r, "training/rgb", 3, 13), "training/rgb holds 4 images, its manifest says 3"),
    (lambda r: (r / "training/mask/00000001.jpg").unlink(), "training/mask holds 2 images, its manifest says 3"),
    (lambda r: ((r / "training/rgb/00000002.jpg").unlink(), _image(r, "training/rgb", 3, 12)),
     "training/rgb/00000002.jpg is missing"),
    (lambda r: _image(r, "evaluation/rgb", 0, 21), "evaluation/rgb/00000000.jpg has 21 bytes, its manifest says 20"),
    (lambda r: (r / "training_K.json").write_text("[1, 2]"), "training_K.json has 6 bytes, its manifest says 3"),
    (lambda r: (r / "synth_info.json").unlink(), "synth_info.json is missing"),
    (lambda r: (r / "evaluation_xyz.json").unlink(), "evaluation_xyz.json is missing"),
    (lambda r: __import__("shutil").rmtree(r / "evaluation"), "evaluation/rgb is missing"),
])
def test_changed_set_is_refused_naming_folder_and_problem(toy_set, edit, problem):
    edit(toy_set)
    with pytest.raises(IncompleteSetError) as e:
        check_synthetic_set(toy_set)
    assert str(e.value) == f"synthetic set {toy_set} is incomplete or mixed: {problem}; re-run m3dhmr synth"
    assert isinstance(e.value, ValueError)  # the command line prints it as one line


def test_evaluation_ground_truth_may_be_removed_as_a_pair(toy_set):
    # As in FreiHAND's official release: the split then loads without ground truth.
    for name in ("evaluation_xyz.json", "evaluation_verts.json"):
        (toy_set / name).unlink()
    assert check_synthetic_set(toy_set) is not None


@pytest.mark.parametrize("text, match", [
    ("{not json", "cannot read its manifest"),
    (json.dumps({"format": "something else", "folders": {}, "files": {}}), "not an m3dhmr synthetic-set manifest"),
    (json.dumps([1, 2]), "not an m3dhmr synthetic-set manifest"),
    (json.dumps({"format": "m3dhmr synthetic set", "version": 99, "folders": {}, "files": {}}), "version 99"),
])
def test_unreadable_manifest_is_refused(tmp_path, text, match):
    (tmp_path / MANIFEST_FILE).write_text(text)
    with pytest.raises(IncompleteSetError, match=match):
        check_synthetic_set(tmp_path)
