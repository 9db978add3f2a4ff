"""``m3dhmr predict`` / ``export-onnx`` / ``bench`` end to end on a tiny random checkpoint."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from m3dhmr import cli
from m3dhmr import conventions as cv
from m3dhmr.config import from_dict
from m3dhmr.inference import crops
from m3dhmr.inference.video import VideoReader, write_video
from m3dhmr.mesh.io import read_mesh
from m3dhmr.train.checkpoint import Progress, save_weights
from m3dhmr.train.config import ExperimentConfig
from image_helpers import mirror_box, mirror_intrinsics

TINY = {"input_size": 64, "stack_channels": 16, "stack2_channels": [16, 16, 32], "latent_channels": 32,
        "decoder_channels": [8, 8, 8, 8], "dsc_kernels": 2}
HAND_OUTPUTS = ("pose2d.jpg", "overlay.jpg", "front.png", "side.png", "panel.jpg", "mesh.obj", "mesh.ply")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from m3dhmr.models import build_model

    exp = from_dict(ExperimentConfig, {"model": TINY})
    torch.manual_seed(0)
    model = build_model(exp.model)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_weights(path, model, exp, Progress())
    return path, model


def hand_image(model, size=(96, 128), seed=0):
    """The template hand rendered over a noisy background with the default 60 deg camera."""
    from m3dhmr.hand import load_template
    from m3dhmr.render import render_mesh

    H, W = size
    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur(rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8), (9, 9), 0)
    K = crops.default_intrinsics(H, W)
    t = load_template("open_hand")
    verts = t.vertices - t.vertices.mean(0) + [0.02, 0.0, 0.45]
    return render_mesh(verts, t.faces, K, (H, W), colors=np.array([0.9, 0.7, 0.6]), background=bg).rgb_uint8()


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_predict_images_folder_and_formats(tmp_path, checkpoint, capsys):
    ckpt, model = checkpoint
    img = hand_image(model)
    d = tmp_path / "in"
    d.mkdir()
    cv2.imwrite(str(d / "rgb.jpg"), img[:, :, ::-1])
    cv2.imwrite(str(d / "gray.png"), cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))
    cv2.imwrite(str(d / "rgba.png"), np.concatenate([img[:, :, ::-1], np.full(img.shape[:2] + (1,), 255, np.uint8)], 2))
    cv2.imwrite(str(d / "deep.png"), img[:, :, ::-1].astype(np.uint16) * 257)
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "predict", d, "--checkpoint", ckpt, "--out", out, "--view-size", 64,
                                "--whole-image")
    assert code == 0, err
    V, F = model.num_vertices, int(model.faces.shape[0])
    for stem in ("rgb", "gray", "rgba", "deep"):
        for name in HAND_OUTPUTS:
            assert (out / stem / "hand_0" / name).is_file(), (stem, name)
        doc = json.loads((out / stem / "result.json").read_text())
        assert doc["image_size"] == [96, 128] and np.array(doc["K"]).shape == (3, 3) and len(doc["hands"]) == 1
        r = doc["hands"][0]
        assert np.array(r["joints2d"]).shape == (21, 2) and np.array(r["joints3d"]).shape == (21, 3)
        assert np.array(r["vertices"]).shape == (V, 3) and np.array(r["K"]).shape == (3, 3)
        assert len(r["translation"]) == 3 and len(r["box"]) == 4 and r["left"] is False
        assert r["handedness"] == "right" and r["score"] is None
        np.testing.assert_allclose(r["crop_box"], crops.full_image_box(96, 128), atol=1e-3)
        assert isinstance(r["success"], bool)
        v, f = read_mesh(out / stem / "hand_0" / "mesh.ply")
        assert v.shape == (V, 3) and f.shape == (F, 3)
        np.testing.assert_allclose(v, r["vertices"], atol=1e-6)
        assert read_mesh(out / stem / "hand_0" / "mesh.obj")[0].shape == (V, 3)
        assert cv2.imread(str(out / stem / "overlay.jpg")).shape == (96, 128, 3)
        assert cv2.imread(str(out / stem / "hand_0" / "front.png")).shape == (64, 64, 3)
    # 16-bit and RGBA inputs convert to the same 8-bit image: identical predictions.
    a = json.loads((out / "deep" / "result.json").read_text())["hands"][0]
    b = json.loads((out / "rgba" / "result.json").read_text())["hands"][0]
    np.testing.assert_allclose(a["joints2d"], b["joints2d"])
    assert not list(out.rglob(".*tmp*"))


def test_predict_left_mirrors_right(tmp_path, capsys, tiny_data):
    """The packaged model on a rendered right hand and its mirror image (a left hand):
    the predictions mirror each other, placement in camera space included."""
    img = cv2.imread(str(tiny_data / "training" / "rgb" / "00000007.jpg"))
    H, W = img.shape[:2]
    cv2.imwrite(str(tmp_path / "r.png"), img)
    cv2.imwrite(str(tmp_path / "l.png"), img[:, ::-1])
    K = np.array(json.loads((tiny_data / "training_K.json").read_text())[7])
    uv = np.array(json.loads((tiny_data / "training_xyz.json").read_text())[7]) @ K.T
    uv = uv[:, :2] / uv[:, 2:]
    box = np.r_[uv.min(0), uv.max(0) - uv.min(0)]
    Km = mirror_intrinsics(K, W)
    args = ["--out", tmp_path / "o", "--view-size", 32]
    k = lambda K: f"{K[0, 0]},{K[1, 1]},{K[0, 2]},{K[1, 2]}"
    assert run_cli(capsys, "predict", tmp_path / "r.png", "--bbox", ",".join(map(str, box)), "--K", k(K), *args)[0] == 0
    bm = mirror_box(box, W)
    assert run_cli(capsys, "predict", tmp_path / "l.png", "--bbox", ",".join(map(str, bm)), "--K", k(Km), "--left",
                   *args)[0] == 0
    r = json.loads((tmp_path / "o" / "r" / "result.json").read_text())["hands"][0]
    l = json.loads((tmp_path / "o" / "l" / "result.json").read_text())["hands"][0]
    assert l["left"] is True and l["handedness"] == "left" and r["handedness"] == "right"
    assert r["success"] and l["success"]
    np.testing.assert_allclose(r["box"], box, atol=1e-3)  # the box around the hand, as given
    j2r, j2l = np.array(r["joints2d"]), np.array(l["joints2d"])
    np.testing.assert_allclose(j2l[:, 0], W - 1 - j2r[:, 0], atol=0.05)
    np.testing.assert_allclose(j2l[:, 1], j2r[:, 1], atol=0.05)
    flip = np.array([-1.0, 1.0, 1.0])
    j3r, j3l = np.array(r["joints3d"]), np.array(l["joints3d"])
    np.testing.assert_allclose(j3l - j3l[:1], (j3r - j3r[:1]) * flip, atol=1e-4)
    np.testing.assert_allclose(j3l, j3r * flip, atol=1e-4)  # camera-space placement mirrors too
    # The left mesh's faces are reversed so that it stays outward-facing.
    _, fr = read_mesh(tmp_path / "o" / "r" / "hand_0" / "mesh.ply")
    _, fl = read_mesh(tmp_path / "o" / "l" / "hand_0" / "mesh.ply")
    np.testing.assert_array_equal(fl, fr[:, ::-1])


def test_predict_video_round_trip(tmp_path, checkpoint, capsys):
    ckpt, model = checkpoint
    frames = [np.roll(hand_image(model, seed=2), 4 * i, axis=1) for i in range(5)]
    write_video(tmp_path / "clip.mp4", frames, fps=10.0)
    code, stdout, err = run_cli(capsys, "predict", tmp_path / "clip.mp4", "--checkpoint", ckpt, "--out",
                                tmp_path / "o", "--smooth", "--whole-image")
    assert code == 0, err
    with VideoReader(tmp_path / "o" / "clip_annotated.mp4") as r:
        got = list(r)
    assert len(got) == 5 and got[0].shape == frames[0].shape
    lines = (tmp_path / "o" / "clip_results.jsonl").read_text().splitlines()
    assert len(lines) == 5 and [json.loads(x)["frame"] for x in lines] == list(range(5))
    assert all(len(json.loads(x)["hands"]) == 1 for x in lines)


@pytest.mark.parametrize("make, extra, message", [
    (lambda p: p.joinpath("x.jpg").write_bytes(b"garbage"), [], "cannot decode"),
    (lambda p: p.joinpath("x.txt").write_text("hi"), [], "unknown file extension"),
    (lambda p: None, [], "input not found"),
    (lambda p: cv2.imwrite(str(p / "x.png"), np.zeros((20, 30, 3), np.uint8)), ["--bbox", "100,100,10,10"],
     "entirely outside the 30x20 image"),
    (lambda p: cv2.imwrite(str(p / "x.png"), np.zeros((20, 30, 3), np.uint8)), ["--bbox", "1,1,0,10"], "positive"),
    (lambda p: cv2.imwrite(str(p / "x.png"), np.zeros((20, 30, 3), np.uint8)), ["--K", "1,2"], "--K"),
    (lambda p: cv2.imwrite(str(p / "x.png"), np.zeros((20, 30, 3), np.uint8)), ["--fov", "0"], "--fov"),
    (lambda p: cv2.imwrite(str(p / "x.png"), np.zeros((20, 30, 3), np.uint8)), ["--onnx", "m.onnx"],
     "--onnx needs --backend onnxruntime"),
    (lambda p: cv2.imwrite(str(p / "x.png"), np.zeros((20, 30, 3), np.uint8)), [], "too small to find hands"),
])
def test_bad_inputs_give_one_line_errors(tmp_path, checkpoint, capsys, make, extra, message):
    ckpt, _ = checkpoint
    make(tmp_path)
    name = next((p.name for p in tmp_path.iterdir()), "x.png")
    code, _, err = run_cli(capsys, "predict", tmp_path / name, "--checkpoint", ckpt, "--out", tmp_path / "o", *extra)
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_predict_finds_every_hand_without_a_box(tmp_path, checkpoint, capsys, tiny_data):
    ckpt, model = checkpoint
    a = cv2.imread(str(tiny_data / "training" / "rgb" / "00000007.jpg"))
    b = cv2.imread(str(tiny_data / "training" / "rgb" / "00000002.jpg"))[:, ::-1]
    canvas = np.full((300, 520, 3), 90, np.uint8)
    canvas[40:264, 10:234] = a
    canvas[60:284, 286:510] = b
    cv2.imwrite(str(tmp_path / "two.png"), canvas)
    cv2.imwrite(str(tmp_path / "empty.png"), np.full((200, 240, 3), 128, np.uint8))
    out = tmp_path / "o"
    code, stdout, err = run_cli(capsys, "predict", tmp_path / "two.png", tmp_path / "empty.png", "--checkpoint", ckpt,
                                "--out", out, "--view-size", 32)
    assert code == 0, err
    doc = json.loads((out / "two" / "result.json").read_text())
    hands = doc["hands"]
    assert len(hands) == 2 and sorted(h["handedness"] for h in hands) == ["left", "right"]
    for i, h in enumerate(hands):
        assert 0.5 <= h["score"] <= 1 and len(h["box"]) == 4 and np.array(h["joints3d"]).shape == (21, 3)
        assert h["left"] == (h["handedness"] == "left")
        for name in HAND_OUTPUTS:
            assert (out / "two" / f"hand_{i}" / name).is_file()
    assert cv2.imread(str(out / "two" / "overlay.jpg")).shape == (300, 520, 3)
    assert "2 hand(s)" in stdout and "no hand found" in stdout
    assert json.loads((out / "empty" / "result.json").read_text())["hands"] == []
    # --max-hands 1 keeps one; --right forces the side of every hand.
    code, _, err = run_cli(capsys, "predict", tmp_path / "two.png", "--checkpoint", ckpt, "--out", tmp_path / "o1",
                           "--view-size", 32, "--max-hands", "1", "--right")
    assert code == 0, err
    hands = json.loads((tmp_path / "o1" / "two" / "result.json").read_text())["hands"]
    assert len(hands) == 1 and hands[0]["handedness"] == "right"
    for bad, message in ((["--max-hands", "0"], "--max-hands"), (["--min-score", "2"], "--min-score")):
        code, _, err = run_cli(capsys, "predict", tmp_path / "two.png", "--checkpoint", ckpt, "--out", out, *bad)
        assert code == 2 and message in err, err
    with pytest.raises(SystemExit):  # argparse: mutually exclusive
        run_cli(capsys, "predict", tmp_path / "two.png", "--checkpoint", ckpt, "--out", out, "--left", "--right")
    assert "not allowed with" in capsys.readouterr().err


def test_huge_and_16_bit_images_without_a_box(tmp_path, checkpoint, capsys):
    ckpt, _ = checkpoint
    cv2.imwrite(str(tmp_path / "wide.png"), np.full((40, 8200, 3), 100, np.uint8))  # > 8k px: letterboxed, searched
    cv2.imwrite(str(tmp_path / "deep.png"), np.full((64, 80), 30000, np.uint16))  # 16-bit grayscale
    code, stdout, err = run_cli(capsys, "predict", tmp_path / "wide.png", tmp_path / "deep.png", "--checkpoint", ckpt,
                                "--out", tmp_path / "o")
    assert code == 0, err
    assert stdout.count("no hand found") == 2
    for stem, size in (("wide", [40, 8200]), ("deep", [64, 80])):
        doc = json.loads((tmp_path / "o" / stem / "result.json").read_text())
        assert doc["hands"] == [] and doc["image_size"] == size


def test_missing_and_broken_checkpoint(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((20, 30, 3), np.uint8))
    code, _, err = run_cli(capsys, "predict", tmp_path / "x.png", "--checkpoint", tmp_path / "no.safetensors",
                           "--out", tmp_path / "o")
    assert code == 2 and "checkpoint not found" in err
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 64)
    code, _, err = run_cli(capsys, "predict", tmp_path / "x.png", "--checkpoint", tmp_path / "bad.safetensors",
                           "--out", tmp_path / "o")
    assert code == 2 and "bad.safetensors" in err and "Traceback" not in err


def test_export_onnx_then_predict_and_bench(tmp_path, checkpoint, capsys):
    ckpt, model = checkpoint
    onnx_path = tmp_path / "m.onnx"
    code, out, err = run_cli(capsys, "export-onnx", ckpt, "--out", onnx_path)
    assert code == 0, err
    diff = float(dict(line.split("=") for line in out.splitlines() if "=" in line)["max_abs_diff"])
    assert onnx_path.is_file() and diff <= 1e-4
    assert run_cli(capsys, "export-onnx", ckpt, "--out", tmp_path / "m2.onnx", "--opset", "13")[0] == 2

    cv2.imwrite(str(tmp_path / "h.png"), hand_image(model, seed=3)[:, :, ::-1])
    for backend in ("torch", "onnxruntime"):
        extra = ["--onnx", onnx_path] if backend == "onnxruntime" else []
        code, _, err = run_cli(capsys, "predict", tmp_path / "h.png", "--checkpoint", ckpt, "--out",
                               tmp_path / backend, "--backend", backend, "--view-size", 32, "--whole-image", *extra)
        assert code == 0, err
    a = json.loads((tmp_path / "torch" / "h" / "result.json").read_text())["hands"][0]
    b = json.loads((tmp_path / "onnxruntime" / "h" / "result.json").read_text())["hands"][0]
    np.testing.assert_allclose(b["joints2d"], a["joints2d"], atol=1e-2)
    np.testing.assert_allclose(np.array(b["vertices"]) - b["translation"], np.array(a["vertices"]) - a["translation"],
                               atol=1e-4)

    code, out, err = run_cli(capsys, "bench", "--checkpoint", ckpt, "--onnx", onnx_path, "--seconds", "0.05",
                             "--threads", "1")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[-2].startswith("fps_end_to_end_whole_image_detect=")
    assert lines[-1].startswith("fps_end_to_end_whole_image_track=")
    whole = dict(line.split("=") for line in lines if "whole_image" in line or line.startswith("ms_detection"))
    assert {"ms_detection_detect", "ms_detection_track", "ms_end_to_end_whole_image_detect"} <= set(whole)
    assert all(float(v) > 0 for v in whole.values())
    code, out, err = run_cli(capsys, "bench", "--checkpoint", ckpt, "--onnx", onnx_path, "--seconds", "0.05",
                             "--threads", "1", "--no-detection")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[-2].startswith("fps_end_to_end_torch=") and lines[-1].startswith("fps_end_to_end_onnxruntime=")
    values = dict(line.split("=") for line in lines if "=" in line and not line.startswith("#"))
    for backend in ("torch", "onnxruntime"):
        for stage in ("preprocess", "network", "registration"):
            assert float(values[f"ms_{stage}_{backend}"]) > 0
        assert float(values[f"fps_end_to_end_{backend}"]) > 0


def test_template_option_applies_to_checkpoints(tmp_path, checkpoint, capsys):
    ckpt, model = checkpoint
    cv2.imwrite(str(tmp_path / "h.png"), hand_image(model)[:, :, ::-1])
    code, _, err = run_cli(capsys, "predict", tmp_path / "h.png", "--checkpoint", ckpt, "--out", tmp_path / "o",
                           "--whole-image", "--view-size", 32, "--template", "open_hand")
    assert code == 0, err
    code, _, err = run_cli(capsys, "predict", tmp_path / "h.png", "--checkpoint", ckpt, "--out", tmp_path / "o",
                           "--template", tmp_path / "no_such_template")
    assert code == 2 and "no_such_template" in err
    code, _, err = run_cli(capsys, "predict", tmp_path / "h.png", "--out", tmp_path / "o", "--template", "open_hand")
    assert code == 2 and "--template applies to --checkpoint" in err


def test_predict_articulation_left_mirrors_right(tmp_path, capsys, tiny_data):
    """--articulation: pose.json and hand.glb per hand; a left hand (the mirror image of a
    right one) is fitted as that right hand, so its angles are the right hand's."""
    import trimesh

    img = cv2.imread(str(tiny_data / "training" / "rgb" / "00000003.jpg"))
    H, W = img.shape[:2]
    cv2.imwrite(str(tmp_path / "r.png"), img)
    cv2.imwrite(str(tmp_path / "l.png"), img[:, ::-1])
    K = np.array(json.loads((tiny_data / "training_K.json").read_text())[3])
    uv = np.array(json.loads((tiny_data / "training_xyz.json").read_text())[3]) @ K.T
    uv = uv[:, :2] / uv[:, 2:]
    box = np.r_[uv.min(0), uv.max(0) - uv.min(0)]
    k = lambda K: f"{K[0, 0]},{K[1, 1]},{K[0, 2]},{K[1, 2]}"
    args = ["--out", tmp_path / "o", "--view-size", 32, "--articulation"]
    assert run_cli(capsys, "predict", tmp_path / "r.png", "--bbox", ",".join(map(str, box)), "--K", k(K), *args)[0] == 0
    assert run_cli(capsys, "predict", tmp_path / "l.png", "--bbox", ",".join(map(str, mirror_box(box, W))),
                   "--K", k(mirror_intrinsics(K, W)), "--left", *args)[0] == 0
    poses = {}
    for side in ("r", "l"):
        folder = tmp_path / "o" / side / "hand_0"
        poses[side] = json.loads((folder / "pose.json").read_text())
        scene = trimesh.load(folder / "hand.glb")
        assert len(scene.geometry) == 1
        hand = json.loads((tmp_path / "o" / side / "result.json").read_text())["hands"][0]
        assert hand["articulation"]["fit_error_mm_mean"] == poses[side]["fit_error_mm_mean"]
    r, l = poses["r"], poses["l"]
    assert r["mirrored"] is False and l["mirrored"] is True and l["handedness"] == "left"
    assert list(r["joints"]) == [cv.JOINT_NAMES[j] for j in cv.KINEMATIC_JOINTS]
    for name, jr in r["joints"].items():
        np.testing.assert_allclose(l["joints"][name]["axis_angle"], jr["axis_angle"], atol=2e-3)
    # A network's mesh is not exactly an articulated hand: a few millimetres remain.
    assert 0.0 < r["fit_error_mm_mean"] < 15.0
    assert r["poor_fit"] == (r["fit_error_mm_mean"] > 5.0 or r["fit_error_mm_max"] > 20.0)


def test_predict_video_articulation(tmp_path, checkpoint, capsys):
    ckpt, model = checkpoint
    frames = [np.roll(hand_image(model, seed=2), 4 * i, axis=1) for i in range(4)]
    write_video(tmp_path / "clip.mp4", frames, fps=10.0)
    code, _, err = run_cli(capsys, "predict", tmp_path / "clip.mp4", "--checkpoint", ckpt, "--out",
                           tmp_path / "o", "--smooth", "--whole-image", "--articulation")
    assert code == 0, err
    folder = tmp_path / "o" / "clip_hands" / "hand_0"
    bvh = (folder / "hand.bvh").read_text()
    assert "Frames: 4" in bvh and "Frame Time: 0.100000" in bvh
    pose = json.loads((folder / "pose.json").read_text())
    assert pose["fps"] == 10.0 and [f["frame"] for f in pose["frames"]] == [0, 1, 2, 3]
    # One rig for the clip: every frame has the same shape values.
    assert len({json.dumps(f["shape"]) for f in pose["frames"]}) == 1
    assert (folder / "hand_anim.glb").stat().st_size > 10_000


SIGN = Path(__file__).resolve().parents[2] / "shared" / "data" / "sign-language-digits"


@pytest.mark.skipif(not (SIGN / "Dataset").is_dir(), reason=f"the sign-language-digits photos are not at {SIGN}")
def test_predict_prints_quality_not_ok(tmp_path, checkpoint, capsys, caplog):
    """A real photo (a hand the detector finds) through a tiny untrained model: a poor hand,
    said so on its line and in result.json; a given box has no landmark check."""
    ckpt, _ = checkpoint
    photo = tmp_path / "five.jpg"
    photo.write_bytes((SIGN / "Dataset" / "5" / "IMG_1123.JPG").read_bytes())
    big = tmp_path / "five_big.png"  # the detector needs some room around a 100-px close-up
    cv2.imwrite(str(big), cv2.copyMakeBorder(cv2.imread(str(photo)), 50, 50, 50, 50, cv2.BORDER_REPLICATE))
    code, stdout, err = run_cli(capsys, "predict", big, "--checkpoint", ckpt, "--out", tmp_path / "o",
                                "--view-size", 32)
    assert code == 0, err
    q = json.loads((tmp_path / "o" / "five_big" / "result.json").read_text())["hands"][0]["quality"]
    assert q["flag"] == "poor" and q["landmark_error_palm"] > 0.5 and 0 <= q["finger_disagreement"] <= 5
    line = next(s for s in stdout.splitlines() if "hand(s)" in s)
    assert " ok," not in line and "poor (quality" in line and "poor quality" in caplog.text
    code, stdout, err = run_cli(capsys, "predict", big, "--checkpoint", ckpt, "--out", tmp_path / "b",
                                "--bbox", "50,50,100,100", "--view-size", 32)
    assert code == 0, err
    q = json.loads((tmp_path / "b" / "five_big" / "result.json").read_text())["hands"][0]["quality"]
    assert q["landmark_error_palm"] is None and q["flag"] in ("unchecked", "poor")
