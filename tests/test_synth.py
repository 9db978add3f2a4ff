import json

import cv2
import numpy as np
import pytest

from m3dhmr.data import synth
from m3dhmr.data.synth import generate, is_complete
from m3dhmr.data.synth_scene import SynthConfig
from m3dhmr.data import synth_compose
from m3dhmr.fileio import LOCK_NAME, FolderInUseError, FolderLock

CFG = SynthConfig(size=96)
FREIHAND_FILES = [f"{s}_{k}.json" for s in ("training", "evaluation") for k in ("K", "xyz", "verts", "scale")]


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "set"
    generate(out, 6, 3, seed=3, workers=1, config=CFG, progress=False)
    return out


def _load(out, name):
    return json.loads((out / name).read_text())


def test_layout_is_freihand(tiny_set):
    out = tiny_set
    names = {p.name for p in out.iterdir()}
    assert set(FREIHAND_FILES) <= names
    assert {"training_params.json", "evaluation_params.json", "template.ply", "j_reg.npy", "regions.npy",
            "synth_info.json", "synth_manifest.json", "training", "evaluation"} <= names
    # No marker or temporary file left; the lock file stays (removing it would race with a new holder).
    assert not any(n.startswith(".") for n in names - {LOCK_NAME})
    assert sorted(p.name for p in (out / "training" / "rgb").iterdir()) == [f"{i:08d}.jpg" for i in range(6)]
    assert sorted(p.name for p in (out / "training" / "mask").iterdir()) == [f"{i:08d}.jpg" for i in range(6)]
    assert sorted(p.name for p in (out / "evaluation" / "rgb").iterdir()) == [f"{i:08d}.jpg" for i in range(3)]
    assert not (out / "evaluation" / "mask").exists()  # FreiHAND has no evaluation masks
    j_reg = np.load(out / "j_reg.npy")
    num_v = j_reg.shape[1]
    assert j_reg.shape == (21, num_v) and np.load(out / "regions.npy").shape == (num_v,)
    for split, n in (("training", 6), ("evaluation", 3)):
        K = np.array(_load(out, f"{split}_K.json"))
        xyz = np.array(_load(out, f"{split}_xyz.json"))
        verts = np.array(_load(out, f"{split}_verts.json"))
        scale = np.array(_load(out, f"{split}_scale.json"))
        params = _load(out, f"{split}_params.json")
        assert K.shape == (n, 3, 3) and xyz.shape == (n, 21, 3) and verts.shape == (n, num_v, 3)
        assert scale.shape == (n,) and len(params) == n
        np.testing.assert_allclose(scale, np.linalg.norm(xyz[:, 9] - xyz[:, 10], axis=1), atol=2e-6)
        assert np.all(verts[..., 2] > 0.05) and np.all(scale > 0.005) and np.all(scale < 0.08)
        np.testing.assert_allclose(K[:, 2], [[0, 0, 1]] * n)
        assert np.all((K[:, 0, 0] >= 400 * 96 / 224) & (K[:, 0, 0] <= 700 * 96 / 224))
        assert len(params[0]["pose"]) == 48 and len(params[0]["global_rotation"]) == 3
        img = cv2.imread(str(out / split / "rgb" / "00000000.jpg"), cv2.IMREAD_UNCHANGED)
        assert img.shape == (96, 96, 3)
    mask = cv2.imread(str(out / "training" / "mask" / "00000000.jpg"), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (96, 96) and (mask > 127).sum() > 100
    info = _load(out, "synth_info.json")
    assert info["train"] == 6 and info["eval"] == 3 and info["size"] == 96 and info["seed"] == 3
    assert is_complete(out)
    manifest = _load(out, "synth_manifest.json")
    assert manifest["seed"] == 3 and manifest["counts"] == {"training": 6, "evaluation": 3}
    assert manifest["folders"]["training/mask"] == [
        (out / "training" / "mask" / f"{i:08d}.jpg").stat().st_size for i in range(6)]
    assert set(manifest["files"]) == set(FREIHAND_FILES) | {
        "training_params.json", "evaluation_params.json", "template.ply", "j_reg.npy", "regions.npy",
        "synth_info.json"}


def test_meshes_are_the_recorded_pose_and_shape(tiny_set):
    """Every mesh is the hand model at its params' pose and shape, turned and placed as recorded
    (the generator once cast poses to the model's first buffer, the integer faces, which
    truncated every pose and shape value to an integer)."""
    import torch

    from m3dhmr.hand import load_open_hand
    from m3dhmr.hand.kinematics import batch_rodrigues

    model = load_open_hand(torch.float64)
    for split in ("training", "evaluation"):
        verts = np.array(_load(tiny_set, f"{split}_verts.json"))
        xyz = np.array(_load(tiny_set, f"{split}_xyz.json"))
        params = _load(tiny_set, f"{split}_params.json")
        pose = torch.tensor([p["pose"] for p in params])
        shape = torch.tensor([p["shape"] for p in params])
        assert (pose[:, 3:].abs() > 1e-3).any(1).all() and (shape.abs() > 1e-3).any(1).all()
        out = model(pose, shape)
        R = batch_rodrigues(torch.tensor([p["global_rotation"] for p in params])).numpy()
        t = np.array([p["translation"] for p in params])
        root = out.joints[:, :1].numpy()
        np.testing.assert_allclose(np.einsum("bxy,bvy->bvx", R, out.vertices.numpy() - root) + t[:, None], verts,
                                   atol=2e-6)
        np.testing.assert_allclose(np.einsum("bxy,bvy->bvx", R, out.joints.numpy() - root) + t[:, None], xyz,
                                   atol=2e-6)


def _project(xyz, K):
    p = xyz @ np.swapaxes(K, -1, -2)
    return p[..., :2] / p[..., 2:]


def test_projected_joints_land_inside_mask(tmp_path):
    # Without occluders, objects or a second hand every joint lies inside the hand, so its projection is inside the
    # silhouette (1 px tolerance for JPEG and the anti-aliased edge).
    out = tmp_path / "s"
    generate(out, 8, 0, seed=5, config=SynthConfig(size=96, occluder_prob=0.0, object_prob=0.0, other_hand_prob=0.0),
             progress=False)
    xyz = np.array(_load(out, "training_xyz.json"))
    uv = _project(xyz, np.array(_load(out, "training_K.json")))
    inside = []
    for i in range(8):
        mask = cv2.imread(str(out / "training" / "mask" / f"{i:08d}.jpg"), cv2.IMREAD_GRAYSCALE) > 127
        mask = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        x, y = np.round(uv[i]).astype(int).T
        ok = (x >= 0) & (x < 96) & (y >= 0) & (y < 96)
        assert ok.all()  # the hand is placed fully inside the image
        inside.append(mask[y, x])
    assert np.mean(inside) >= 0.95


def test_same_seed_identical_for_any_worker_count(tmp_path):
    n_train = synth.CHUNK + 3  # two chunks, so two workers both get work
    a, b = tmp_path / "a", tmp_path / "b"
    generate(a, n_train, 2, seed=11, workers=1, config=CFG, progress=False)
    generate(b, n_train, 2, seed=11, workers=2, config=CFG, progress=False)
    for name in FREIHAND_FILES + ["training_params.json", "evaluation_params.json"]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for rel in ("training/rgb/00000000.jpg", f"training/rgb/{n_train - 1:08d}.jpg",
                f"training/mask/{n_train - 1:08d}.jpg", "evaluation/rgb/00000001.jpg"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    c = tmp_path / "c"
    generate(c, 2, 1, seed=12, config=CFG, progress=False)
    assert (c / "training_xyz.json").read_bytes() != (a / "training_xyz.json").read_bytes()[: len(
        (c / "training_xyz.json").read_bytes())]


def test_killed_run_never_looks_complete(tmp_path, monkeypatch):
    out = tmp_path / "s"
    calls = {"n": 0}
    real = synth_compose.compose_sample

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(synth_compose, "compose_sample", failing)  # render_range looks it up there
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate(out, 6, 2, seed=0, config=CFG, progress=False)
    names = {p.name for p in out.iterdir()}
    assert not any(n.endswith(".json") and not n.startswith(".") for n in names), names
    assert not is_complete(out)
    assert not list(out.glob(".*.tmp-*"))  # temporary annotation files were removed
    monkeypatch.setattr(synth_compose, "compose_sample", real)
    # The interrupted folder is recognised as ours: no --overwrite needed.
    generate(out, 2, 1, seed=0, config=CFG, progress=False)
    assert is_complete(out)
    assert len(list((out / "training" / "rgb").iterdir())) == 2


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="--train must be a non-negative integer"):
        generate(tmp_path / "x", -1, 1, config=CFG)
    with pytest.raises(ValueError, match="both 0"):
        generate(tmp_path / "x", 0, 0, config=CFG)
    with pytest.raises(ValueError, match="--workers"):
        generate(tmp_path / "x", 1, 1, workers=0, config=CFG)
    with pytest.raises(ValueError, match="size must be at least 64"):
        SynthConfig(size=32)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="--overwrite"):
        generate(foreign, 1, 1, config=CFG)
    assert not (foreign / "training").exists()
    generate(foreign, 1, 1, config=CFG, overwrite=True, progress=False)
    assert is_complete(foreign) and (foreign / "notes.txt").read_text() == "keep me"
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(ValueError, match="not a folder"):
        generate(afile, 1, 1, config=CFG)


def test_cli_reports_bad_input(tmp_path, capsys):
    from m3dhmr.cli import main

    assert main(["synth", "--out", str(tmp_path / "o"), "--train", "-2", "--eval", "1"]) == 2
    assert "--train must be a non-negative integer" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "o"), "--train", "1", "--eval", "1", "--size", "16"]) == 2
    assert "size must be at least 64" in capsys.readouterr().err


def test_single_worker_run_restores_thread_settings(tmp_path):
    import torch

    before = torch.get_num_threads(), cv2.getNumThreads()
    generate(tmp_path / "s", 1, 0, config=CFG, progress=False)
    assert (torch.get_num_threads(), cv2.getNumThreads()) == before


def _die(task):
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def test_dead_worker_is_an_error_not_a_hang(tmp_path, monkeypatch):
    # A worker killed by the OS (out of memory, a crash in a native library) must end
    # the run with an error; a bare multiprocessing.Pool would wait for it forever.
    from m3dhmr.data import synth

    monkeypatch.setattr(synth, "_work", _die)
    with pytest.raises(synth.WorkerDied):
        synth.generate(tmp_path / "set", 4, 2, seed=0, workers=2, progress=False)
    assert not synth.is_complete(tmp_path / "set")


def test_forked_workers_survive_a_parent_opencv_thread_pool(tmp_path):
    # Regression: with OpenCV's thread pool started in the parent (as any cv2 call with
    # threads > 1 does), forked workers hung in their first OpenCV call. Run in a child
    # process so that a regression fails on the timeout instead of hanging the suite.
    import subprocess
    import sys

    code = (
        "import cv2, numpy as np\n"
        "cv2.setNumThreads(2)\n"
        "cv2.resize(np.zeros((1500, 1500, 3), np.uint8), (700, 700))\n"
        "from m3dhmr.data.synth import generate, is_complete\n"
        f"generate({str(tmp_path / 'set')!r}, 8, 2, seed=0, workers=2, progress=False)\n"
        f"assert is_complete({str(tmp_path / 'set')!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=180)


def test_cli_set_configures_the_generator_strictly(tmp_path, capsys):
    from m3dhmr.cli import main

    out = tmp_path / "o"
    assert main(["synth", "--out", str(out), "--train", "1", "--eval", "0", "--size", "64", "--no-progress",
                 "--set", "object_prob=0", "exposure_range=[1, 1]", "--set", "jpeg_quality_range=[70, 70]"]) == 0
    info = _load(out, "synth_info.json")
    assert info["version"] == synth.SYNTH_VERSION == 4
    cfg = info["config"]
    assert cfg["object_prob"] == 0.0 and cfg["exposure_range"] == [1.0, 1.0] and cfg["size"] == 64
    assert _load(out, "training_params.json")[0]["jpeg_quality"] == 70
    assert main(["synth", "--out", str(tmp_path / "p"), "--train", "1", "--eval", "0", "--set", "objet_prob=0"]) == 2
    assert "unknown config key(s) objet_prob" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "p"), "--train", "1", "--eval", "0", "--set", "noise_prob=2"]) == 2
    assert "noise_prob must be a number in [0, 1]" in capsys.readouterr().err


# ----------------------------------------------------------------------------- one run per folder, manifest


def _snapshot(out):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != LOCK_NAME}


@pytest.fixture()
def small_set(tmp_path):
    return generate(tmp_path / "set", 2, 1, seed=0, config=CFG, progress=False)


def test_second_run_into_a_folder_in_use_is_refused(small_set):
    # Two runs into one folder once mixed into a set that claimed to be the first one, complete.
    before = _snapshot(small_set)
    with FolderLock(small_set, "m3dhmr synth"):
        with pytest.raises(FolderInUseError, match="in use by another process"):
            generate(small_set, 3, 1, seed=1, config=CFG, progress=False)
    assert _snapshot(small_set) == before
    assert is_complete(small_set)


def test_concurrent_cli_run_fails_with_one_line_and_leaves_the_set(small_set):
    import subprocess
    import sys

    from m3dhmr.data.freihand import load_annotations

    before = _snapshot(small_set)
    with FolderLock(small_set, "m3dhmr synth"):  # the first run, still writing
        r = subprocess.run([sys.executable, "-m", "m3dhmr", "synth", "--out", str(small_set), "--train", "3",
                            "--eval", "1", "--seed", "1", "--size", "96", "--no-progress"],
                           capture_output=True, text=True, timeout=300)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"m3dhmr synth: error: {small_set} is in use by another process"), lines
    assert _snapshot(small_set) == before
    assert is_complete(small_set)
    assert load_annotations(small_set, "training", use_cache=False).num_images == 2
    assert load_annotations(small_set, "evaluation", use_cache=False).num_images == 1


def test_leftovers_of_a_killed_run_do_not_make_the_folder_foreign(tmp_path):
    # A run killed before it wrote its in-progress marker leaves the lock file and temporaries.
    out = tmp_path / "s"
    out.mkdir()
    (out / LOCK_NAME).write_text("")
    (out / ".synth_in_progress.tmp-abc123").write_text("{")
    generate(out, 1, 1, seed=0, config=CFG, progress=False)
    assert is_complete(out)
    assert not list(out.rglob(".*.tmp-*"))


def test_is_complete_checks_the_manifest(small_set):
    assert is_complete(small_set)
    (small_set / "training" / "rgb" / "00000002.jpg").write_bytes((small_set / "training" / "rgb" /
                                                                   "00000000.jpg").read_bytes())
    assert not is_complete(small_set)


# ----------------------------------------------------------------------------- bounds and outputs


def test_image_size_is_bounded(tmp_path, capsys):
    from m3dhmr.cli import main
    from m3dhmr.data.synth_scene import MAX_SIZE

    assert MAX_SIZE == 2048 and SynthConfig(size=MAX_SIZE).size == MAX_SIZE
    with pytest.raises(ValueError, match="size must be at most 2048 pixels, got 2049"):
        SynthConfig(size=2049)
    assert main(["synth", "--out", str(tmp_path / "o"), "--train", "1", "--eval", "1", "--size", "100000"]) == 2
    assert "size must be at most 2048 pixels" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _one_error_line(capsys):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_bad_output_folder_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    import os

    from m3dhmr.cli import main

    def never(*args, **kwargs):
        raise AssertionError("heavy work started before the output was checked")

    monkeypatch.setattr(synth, "warm_up", never)
    afile = tmp_path / "file"
    afile.write_text("")
    args = ["--train", "1", "--eval", "1", "--size", "64", "--no-progress"]
    assert main(["synth", "--out", str(afile / "sub"), *args]) == 2
    assert f"{afile} is a file, not a folder" in _one_error_line(capsys)
    assert main(["synth", "--out", str(afile), *args]) == 2
    assert "not a folder" in _one_error_line(capsys)
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    real_access = os.access
    # root ignores permission bits: make os.access answer as for another user
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if os.fspath(p).startswith(str(locked))
                        else real_access(p, mode, **kw))
    try:
        assert main(["synth", "--out", str(locked / "set"), *args]) == 2
        line = _one_error_line(capsys)
    finally:
        locked.chmod(0o700)
    assert str(locked / "set") in line and ("not writable" in line or "cannot create" in line), line
