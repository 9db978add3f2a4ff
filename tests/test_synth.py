import json

import cv2
import numpy as np
import pytest

from m3dhmr.data import synth
from m3dhmr.data.synth import generate, is_complete
from m3dhmr.data.synth_scene import SynthConfig
from m3dhmr.geometry import rotations
from m3dhmr.data import synth_compose
from m3dhmr.data import synth_encode
from m3dhmr.data import synth_scene

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
            "synth_info.json", "training", "evaluation"} <= names
    assert not any(n.startswith(".") for n in names)  # no marker or temporary file left
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


def _project(xyz, K):
    p = xyz @ np.swapaxes(K, -1, -2)
    return p[..., :2] / p[..., 2:]


def test_projected_joints_land_inside_mask(tmp_path):
    # Without occluders every joint lies inside the hand, so its projection is inside the
    # silhouette (1 px tolerance for JPEG and the anti-aliased edge).
    out = tmp_path / "s"
    generate(out, 8, 0, seed=5, config=SynthConfig(size=96, occluder_prob=0.0), progress=False)
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


def test_canonical_rotations_and_placement():
    rng = np.random.default_rng(0)
    joints = rng.normal(0, 0.01, (21, 3))
    joints[0], joints[5], joints[9], joints[17] = [0, 0, 0], [0.03, 0.09, 0], [0, 0.1, 0], [-0.03, 0.08, 0]
    E = synth_scene.hand_frame(joints)
    np.testing.assert_allclose(E.T @ E, np.eye(3), atol=1e-12)
    assert np.linalg.det(E) == pytest.approx(1.0)
    # Fingers along +y, index at +x: the right palm faces -z... hand-computed: across x up = x x y = +z.
    np.testing.assert_allclose(E[:, 2], [0, 0, 1], atol=1e-12)
    palm_R, back_R = synth_scene.canonical_rotations(joints)
    np.testing.assert_allclose(palm_R @ E[:, 2], [0, 0, -1], atol=1e-12)  # palm normal towards the camera
    np.testing.assert_allclose(back_R @ E[:, 2], [0, 0, 1], atol=1e-12)
    for R in (palm_R, back_R):
        np.testing.assert_allclose(R @ E[:, 1], [0, -1, 0], atol=1e-12)  # fingers up the image
        assert np.linalg.det(R) == pytest.approx(1.0)
    verts = rng.normal(0, 0.05, (200, 3))
    K = np.array([[500.0, 0, 111.5], [0, 500.0, 112.0], [0, 0, 1]])
    t = synth_scene._place(verts, K, 0.5, np.array([100.0, 120.0]), 224)
    uv = _project(verts + t, K)
    lo, hi = uv.min(0), uv.max(0)
    np.testing.assert_allclose((lo + hi) / 2, [100, 120], atol=0.5)
    assert np.ptp(uv, axis=0).max() == pytest.approx(0.5 * 224, rel=0.02)


def test_row_formatting_matches_json():
    a = np.array([[0.1234564, -2.0, 1e-9], [3.5, 0.0, -0.0000004]])
    parsed = json.loads(synth_encode._rows(a))
    np.testing.assert_allclose(parsed, a, atol=5.1e-7)
    assert synth_encode._rows(np.zeros((0, 3))) == "[]"
    for i in range(2):  # the naive reference: json.dumps of the rounded rows
        np.testing.assert_allclose(parsed[i], json.loads(json.dumps(np.round(a[i], 6).tolist())), atol=1e-12)


def test_rows_kernel_matches_percent_format():
    rng = np.random.default_rng(1)

    def naive(a):  # the former formatter, on values rounded like np.round
        return "[" + ", ".join("[%.6f, %.6f, %.6f]" % tuple(r) for r in np.round(a, 6)) + "]"

    for a in (rng.normal(0, 0.1, (50, 3)), rng.normal(0, 300, (7, 3)), np.array([[1.0, -2.5, 0.0]])):
        assert synth_encode._rows(a) == naive(a)
    # Hand cases: tiny negatives print without a sign; huge values fall back to "%.6f".
    assert synth_encode._rows(np.array([[-4e-7, 12.0000004, -1.25]])) == "[[0.000000, 12.000000, -1.250000]]"
    assert synth_encode._rows(np.array([[1e13, 0.5, 2.0]])) == "[[10000000000000.000000, 0.500000, 2.000000]]"
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        synth_encode._rows(np.zeros((2, 2)))


def test_rotation_to_axis_angle_matches_scipy():
    from scipy.spatial.transform import Rotation

    mats = list(Rotation.random(50, random_state=0).as_matrix())
    for angle in (0.0, 1e-9, 1e-4, np.pi / 2, np.pi - 1e-7, np.pi):
        for axis in ([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 2, -2]):
            mats.append(Rotation.from_rotvec(np.array(axis) / np.linalg.norm(axis) * angle).as_matrix())
    for R in mats:
        rv = rotations.rotation_to_axis_angle(R)
        assert np.linalg.norm(rv) <= np.pi + 1e-12
        np.testing.assert_allclose(Rotation.from_rotvec(rv).as_matrix(), R, atol=1e-12)
    # Hand case: 90 degrees about z.
    np.testing.assert_allclose(rotations.rotation_to_axis_angle(rotations.rot_z(np.pi / 2)), [0, 0, np.pi / 2], atol=1e-15)


def test_projected_box_matches_numpy():
    v = np.random.default_rng(2).normal(0, 0.05, (30, 3))
    box = synth_scene._projected_box(v, 0.01, -0.02, 0.5)
    uv = (v[:, :2] + [0.01, -0.02]) / (v[:, 2:] + 0.5)
    np.testing.assert_allclose(box, [*uv.min(0), *uv.max(0)], rtol=1e-14)


def test_blend_matches_naive_loop():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    alpha = rng.uniform(0, 1, (5, 6)).astype(np.float32)
    alpha[0] = 0.0
    colour = rng.uniform(0, 255, (5, 6, 3)).astype(np.float32)
    naive = img.astype(np.float64).copy()
    for y in range(5):
        for x in range(6):
            naive[y, x] = img[y, x] * (1 - alpha[y, x]) + alpha[y, x] * colour[y, x]
    out = img.copy()
    synth_compose._blend(out, alpha, colour)
    assert np.abs(out - naive).max() <= 0.5 + 1e-3  # rounded
    np.testing.assert_array_equal(out[0], img[0])  # alpha 0: untouched
    pre = img.copy()
    synth_compose._blend(pre, alpha, alpha[:, :, None] * colour, premultiplied=True)
    assert np.abs(pre.astype(int) - out).max() <= 1
    solid = img.copy()  # a (3,) colour broadcasts; hand case: alpha 1 gives the colour
    synth_compose._blend(solid, np.ones((5, 6), np.float32), np.array([10.4, 20.6, 255.0], np.float32))
    assert (solid == [10, 21, 255]).all()


def test_box_render_equals_full_render():
    from m3dhmr.render import LightSettings, render_mesh

    ctx = synth_scene._HandContext()
    cfg = SynthConfig(size=96)
    rng = synth_scene.sample_rng(0, 0, 0)
    g = synth_scene._draw_geometry(ctx, cfg, rng)
    v, j = ctx.pose(g["pose"][None], g["shape"][None])
    v_rr = (v[0] - j[0, 0]) @ g["R"].T
    v_cam = v_rr + synth_scene._place(v_rr, g["K"], g["fill"], g["centre"], 96)
    albedo = np.full((len(v_cam), 3), 0.7)
    res, (ry, rx) = synth_compose.render_hand_box(v_cam, ctx.faces, g["K"], 96, albedo, LightSettings())
    full = render_mesh(v_cam, ctx.faces, g["K"], 96, colors=albedo)
    assert full.mask.sum() > 100 and not full.mask[~np.pad(np.ones(res.mask.shape, bool), (
        (ry.start, 96 - ry.stop), (rx.start, 96 - rx.stop)))].any()  # nothing outside the box
    # A 2 px empty border on every side the image does not clip (the blur's reach).
    assert not res.mask[:2].any() and not res.mask[-2:].any() and not res.mask[:, :2].any()
    same = (res.mask == full.mask[ry, rx]).mean()
    assert same >= 0.999  # only pixel centres exactly on an edge may differ (shifted K)
    both = res.mask & full.mask[ry, rx]
    np.testing.assert_allclose(res.rgb[both], full.rgb[ry, rx][both], atol=1e-4)


def test_compose_is_a_function_of_the_sample_seed():
    # Noise comes from cv2.randn seeded by the sample's generator: same seed, same image.
    ctx = synth_scene._HandContext()
    cfg = SynthConfig(size=96, noise_prob=1.0, blur_prob=1.0, occluder_prob=1.0)
    outs = []
    for _ in range(2):
        rng = synth_scene.sample_rng(4, 0, 1)
        g = synth_scene._draw_geometry(ctx, cfg, rng)
        v, j = ctx.pose(g["pose"][None], g["shape"][None])
        outs.append(synth_compose.compose_sample(ctx, cfg, rng, g, v[0], j[0]))
    np.testing.assert_array_equal(outs[0].rgb, outs[1].rgb)
    np.testing.assert_array_equal(outs[0].mask, outs[1].mask)
    assert outs[0].params["noise_sigma"] > 0 and outs[0].rgb.dtype == np.uint8


def test_single_worker_run_restores_thread_settings(tmp_path):
    import torch

    before = torch.get_num_threads(), cv2.getNumThreads()
    generate(tmp_path / "s", 1, 0, config=CFG, progress=False)
    assert (torch.get_num_threads(), cv2.getNumThreads()) == before


def test_skin_tones_span_light_to_dark_and_light_is_bright():
    ctx = synth_scene._HandContext()
    rng = np.random.default_rng(0)
    tones = np.array([synth_scene._skin(ctx, rng)[1] for _ in range(400)])
    lum = tones @ [0.299, 0.587, 0.114]
    assert lum.max() > 0.8 and lum.min() < 0.3  # both ends of SKIN_TONES occur
    assert 0.45 < np.mean(lum > 0.6) < 0.8      # lighter tones somewhat more often
    # Hue stays skin-like: red > green > blue for every tone.
    assert np.all((tones[:, 0] > tones[:, 1]) & (tones[:, 1] > tones[:, 2]))
    # Lighting facing the camera: ambient + diffuse * n.l with n = (0, 0, -1) averages ~1.
    lights = [synth_scene._light(rng) for _ in range(200)]
    gain = [lt.ambient + lt.diffuse * max(-lt.direction[2], 0.0) for lt in lights]
    assert 0.9 < np.mean(gain) < 1.2


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
