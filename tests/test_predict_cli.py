"""``m3dhmr predict`` / ``export-onnx`` / ``bench`` end to end on a tiny random checkpoint."""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from m3dhmr import cli
from m3dhmr import conventions as cv
from m3dhmr.config_loader import from_dict
from m3dhmr.inference import crops
from m3dhmr.inference.video import VideoReader, write_video
from m3dhmr.mesh.io import read_mesh
from m3dhmr.train.checkpoint import Progress, save_weights
from m3dhmr.experiment import ExperimentConfig
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
        assert len(r["translation"]) == 3 and len(r["hand_box"]) == 4 and r["left"] is False
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
    np.testing.assert_allclose(r["hand_box"], box, atol=1e-3)  # the box around the hand, as given
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


@pytest.mark.parametrize("make, extra, message, status", [
    # Options and missing inputs stop the run before any work (2); a bad input is that
    # input's failure, reported on its line (1).
    (lambda p: p.joinpath("x.jpg").write_bytes(b"garbage"), [], "cannot decode", 1),
    (lambda p: p.joinpath("x.txt").write_text("hi"), [], "unknown file extension", 2),
    (lambda p: None, [], "input not found", 2),
    (lambda p: cv2.imwrite(str(p / "x.png"), np.zeros((20, 30, 3), np.uint8)), ["--bbox", "100,100,10,10"],
     "entirely outside the 30x20 image", 1),
    (lambda p: cv2.imwrite(str(p / "x.png"), np.zeros((20, 30, 3), np.uint8)), ["--bbox", "1,1,0,10"], "positive", 2),
    (lambda p: cv2.imwrite(str(p / "x.png"), np.zeros((20, 30, 3), np.uint8)), ["--K", "1,2"], "--K", 2),
    (lambda p: cv2.imwrite(str(p / "x.png"), np.zeros((20, 30, 3), np.uint8)), ["--fov", "0"], "--fov", 2),
    (lambda p: cv2.imwrite(str(p / "x.png"), np.zeros((20, 30, 3), np.uint8)), ["--onnx", "m.onnx"],
     "--onnx needs --backend onnxruntime", 2),
    (lambda p: cv2.imwrite(str(p / "x.png"), np.zeros((20, 30, 3), np.uint8)), [], "too small to find hands", 1),
])
def test_bad_inputs_give_one_line_errors(tmp_path, checkpoint, capsys, make, extra, message, status):
    ckpt, _ = checkpoint
    make(tmp_path)
    name = next((p.name for p in tmp_path.iterdir()), "x.png")
    code, _, err = run_cli(capsys, "predict", tmp_path / name, "--checkpoint", ckpt, "--out", tmp_path / "o", *extra)
    assert code == status
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
        assert 0.5 <= h["score"] <= 1 and len(h["hand_box"]) == 4 and np.array(h["joints3d"]).shape == (21, 3)
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
    fastest = next(line for line in lines if line.startswith("ms_hand_detect_")).split("=")[0][len("ms_hand_detect_"):]
    assert lines[-4:-2] == [s for s in lines if s.startswith("fps_end_to_end_whole_image_detect=")] + [
        f"fps_whole_image_detect_{fastest}={lines[-3].split('=')[1]}"]
    assert lines[-2].startswith("fps_end_to_end_whole_image_track=")
    assert lines[-1] == f"fps_whole_image_track_{fastest}={lines[-2].split('=')[1]}"
    from m3dhmr.hardware import cpu_summary

    assert f"# cpu: {cpu_summary()}" in lines  # the processor beside every figure
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


# ----------------------------------------------------------------------------- robustness (issue 21)


def small_image(path, model, seed=0):
    cv2.imwrite(str(path), hand_image(model, size=(48, 64), seed=seed)[:, :, ::-1])
    return path


def test_one_bad_input_does_not_stop_the_batch(tmp_path, checkpoint, capsys):
    ckpt, model = checkpoint
    d = tmp_path / "in"
    d.mkdir()
    small_image(d / "a_good.jpg", model)
    (d / "b_text.jpg").write_text("not a picture")
    small_image(d / "c_good.jpg", model, seed=1)
    out = tmp_path / "o"
    code, stdout, err = run_cli(capsys, "predict", d, "--checkpoint", ckpt, "--out", out, "--whole-image",
                                "--view-size", 16)
    assert code == 1
    assert (out / "a_good" / "result.json").is_file() and (out / "c_good" / "result.json").is_file()
    assert not (out / "b_text").exists()
    assert err.strip().splitlines() == [f"{d / 'b_text.jpg'}: cannot decode the image (unreadable or not an image)"]
    assert stdout.strip().splitlines()[-1] == f"3 input(s): 2 ok, 1 failed -> {out / 'summary.json'}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"inputs": 3, "ok": 2, "failed": 1}
    assert [(e["input"], e["status"]) for e in summary["inputs"]] == [
        (str(d / "a_good.jpg"), "ok"), (str(d / "b_text.jpg"), "failed"), (str(d / "c_good.jpg"), "ok")]
    assert "cannot decode" in summary["inputs"][1]["reason"] and summary["inputs"][0]["reason"] is None
    assert summary["inputs"][0]["outputs"] == ["a_good"] and summary["inputs"][0]["hands"] == 1


def test_output_names_are_unique_and_decided_up_front():
    from m3dhmr.commands.predict import output_names
    from m3dhmr.inference.images import InputItem

    items = [InputItem(Path(p), k) for p, k in (("d1/x.jpg", "image"), ("d2/x.jpg", "image"), ("x_2.jpg", "image"),
                                                  ("X.png", "image"), ("v/clip.mp4", "video"),
                                                  ("clip.jpg", "image"), ("clip_hands.jpg", "image"),
                                                  ("w/clip.avi", "video"))]
    # x_2 belongs to x_2.jpg; names differing in case only would collide on macOS and
    # Windows; a video writes clip_annotated.mp4, clip_results.jsonl and clip_hands/.
    assert output_names(items) == ["x", "x_3", "x_2", "X_4", "clip", "clip", "clip_hands_2", "clip_2"]


def test_reruns_replace_folders_and_collisions_keep_every_result(tmp_path, checkpoint, capsys):
    ckpt, model = checkpoint
    for sub, seed in (("d1", 0), ("d2", 1)):
        (tmp_path / sub).mkdir()
        small_image(tmp_path / sub / "x.jpg", model, seed)
    small_image(tmp_path / "x_2.jpg", model, 2)
    out = tmp_path / "o"
    # An earlier run's folder with a hand this run will not have, and what a killed run left.
    (out / "x" / "hand_5").mkdir(parents=True)
    (out / "x" / "hand_5" / "mesh.obj").write_text("stale")
    (out / ".x_2.tmp-k1ll3d").mkdir()
    (out / ".x_2.tmp-k1ll3d" / "result.json").write_text("{}")
    (out / ".clip_annotated.mp4.tmp-abc.mp4").write_bytes(b"half")
    inputs = [tmp_path / "d1" / "x.jpg", tmp_path / "d2" / "x.jpg", tmp_path / "x_2.jpg"]
    code, _, err = run_cli(capsys, "predict", *inputs, "--checkpoint", ckpt, "--out", out, "--whole-image",
                           "--view-size", 16)
    assert code == 0, err
    for name, path in zip(("x", "x_3", "x_2"), inputs):
        assert json.loads((out / name / "result.json").read_text())["image"] == str(path)
    assert sorted(p.name for p in (out / "x").iterdir()) == ["hand_0", "overlay.jpg", "result.json"]
    assert not list(out.rglob(".*.tmp-*"))
    assert sorted(p.name for p in out.iterdir()) == [".m3dhmr.lock", "summary.json", "x", "x_2", "x_3"]


def test_predict_locks_its_output_folder(tmp_path, checkpoint, capsys, monkeypatch):
    """A second predict into a folder in use refuses in one line and writes nothing; the
    lock is held while predict writes (checked from inside its writing) and released after."""
    import subprocess
    import sys

    from m3dhmr.fileio import FolderInUseError, FolderLock
    from m3dhmr.inference import outputs

    ckpt, model = checkpoint
    img = small_image(tmp_path / "h.jpg", model)
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "m3dhmr", "predict", str(img), "--checkpoint", str(ckpt), "--out", str(out),
           "--whole-image", "--view-size", "16"]
    with FolderLock(out, "another m3dhmr predict"):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "is in use by another process" in lines[0] and "another m3dhmr predict" in lines[0]
    assert [p.name for p in out.iterdir()] == [".m3dhmr.lock"]

    seen = []
    save = outputs.save_image_outputs

    def save_and_try_the_lock(*a, **k):
        with pytest.raises(FolderInUseError):
            FolderLock(out).acquire()
        seen.append(True)
        return save(*a, **k)

    monkeypatch.setattr(outputs, "save_image_outputs", save_and_try_the_lock)
    code, _, err = run_cli(capsys, "predict", img, "--checkpoint", ckpt, "--out", out, "--whole-image",
                           "--view-size", 16)
    assert code == 0 and seen == [True], err
    FolderLock(out).acquire().release()  # free again


def _avi_chunks(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of each video frame's data in an AVI file's movi list."""
    pos = data.index(b"movi") + 4
    chunks = []
    while pos + 8 <= len(data) and data[pos:pos + 4] != b"idx1":
        size = int.from_bytes(data[pos + 4:pos + 8], "little")
        if data[pos + 2:pos + 4] == b"dc":
            chunks.append((pos + 8, size))
        pos += 8 + size + (size & 1)
    return chunks


def test_corrupt_video_frame_is_skipped_and_counted(tmp_path, checkpoint, capsys, caplog):
    """An MJPG .avi whose third frame's JPEG bytes are zeroed: OpenCV fails that frame and
    decodes the next; the frames after it are predicted and the skip is reported."""
    ckpt, model = checkpoint
    writer = cv2.VideoWriter(str(tmp_path / "raw.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(5):
        writer.write(np.roll(hand_image(model, size=(48, 64), seed=2), 3 * i, axis=1)[:, :, ::-1].copy())
    writer.release()
    data = bytearray((tmp_path / "raw.avi").read_bytes())
    chunks = _avi_chunks(bytes(data))
    assert len(chunks) == 5
    start, size = chunks[2]
    data[start:start + size] = bytes(size)
    (tmp_path / "clip.avi").write_bytes(bytes(data))
    out = tmp_path / "o"
    code, stdout, err = run_cli(capsys, "predict", tmp_path / "clip.avi", "--checkpoint", ckpt, "--out", out,
                                "--whole-image")
    assert code == 0, err
    lines = [json.loads(x) for x in (out / "clip_results.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == [0, 1, 3, 4]
    np.testing.assert_allclose([x["time_s"] for x in lines], [0.0, 0.1, 0.3, 0.4])
    assert "1 undecodable frame(s) skipped" in stdout and "could not be decoded" in caplog.text
    entry = json.loads((out / "summary.json").read_text())["inputs"][0]
    assert entry["status"] == "ok" and entry["frames"] == 4 and entry["bad_frames"] == 1
    with VideoReader(out / "clip_annotated.mp4") as r:  # the picture is held, the timing kept
        assert len(list(r)) == 5


def test_video_reader_skips_a_bounded_run_of_bad_frames(tmp_path, monkeypatch):
    """A fake capture: failed reads before the reported count are skipped and counted when a
    frame follows; a run longer than MAX_BAD_FRAMES_IN_A_ROW ends the video (not counted)."""
    from m3dhmr.inference import video

    script = [True, False, False, True] + [False] * 200 + [True]
    frame = np.zeros((4, 4, 3), np.uint8)
    opened = []

    class FakeCapture:
        def __init__(self, path):
            self.reads = 0
            opened.append(self)

        def isOpened(self):
            return True

        def get(self, prop):
            return {cv2.CAP_PROP_FRAME_COUNT: 300.0, cv2.CAP_PROP_FPS: 10.0}.get(prop, 4.0)

        def read(self):
            ok = script[self.reads] if self.reads < len(script) else False
            self.reads += 1
            return ok, frame.copy() if ok else None

        def release(self):
            pass

    (tmp_path / "v.avi").write_bytes(b"x")
    monkeypatch.setattr(video.cv2, "VideoCapture", FakeCapture)
    with video.VideoReader(tmp_path / "v.avi") as r:
        assert [i for i, _ in r.frames()] == [0, 3]
        assert r.bad_frames == 2 and opened[-1].reads == 4 + video.MAX_BAD_FRAMES_IN_A_ROW + 1
    script[:] = [True, False, True]  # without a frame count, the first failure ends it as before
    monkeypatch.setattr(FakeCapture, "get", lambda self, prop: 0.0)
    with video.VideoReader(tmp_path / "v.avi") as r:
        assert len(list(r)) == 1 and r.bad_frames == 0


@pytest.mark.parametrize("extra", [["--whole-image"], ["--bbox", "0,0,1,1"], []])
def test_tiny_images_are_refused_on_every_path(tmp_path, checkpoint, capsys, extra):
    ckpt, _ = checkpoint
    cv2.imwrite(str(tmp_path / "dot.png"), np.full((1, 1, 3), 200, np.uint8))
    code, stdout, err = run_cli(capsys, "predict", tmp_path / "dot.png", "--checkpoint", ckpt, "--out",
                                tmp_path / "o", *extra)
    assert code == 1 and "hand(s)" not in stdout  # was: "1 hand(s): right hand ok"
    assert err.strip() == (f"{tmp_path / 'dot.png'}: image of 1 x 1 px is too small to find hands in "
                           "(at least 32 px a side)")
    assert not (tmp_path / "o" / "dot").exists()


@pytest.mark.parametrize("option", [["--K", "500,500,1e300,10"], ["--K", "1e-9,1e-9,30,20"]])
def test_implausible_intrinsics_are_an_input_error(tmp_path, checkpoint, capsys, option):
    ckpt, model = checkpoint
    img = small_image(tmp_path / "h.jpg", model)
    code, _, err = run_cli(capsys, "predict", img, "--checkpoint", ckpt, "--out", tmp_path / "o", "--whole-image",
                           *option)
    assert code == 1 and err.startswith(f"{img}: --K: ") and len(err.strip().splitlines()) == 1, err
    assert ("principal point" in err) if "1e300" in option[1] else ("focal lengths" in err)
    assert not (tmp_path / "o" / "h").exists()  # not an empty hand_0/ as before


def test_out_is_checked_before_the_model_loads(tmp_path, capsys):
    """A bad --out is one line and comes before the (missing) checkpoint is even looked at."""
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((40, 40, 3), np.uint8))
    (tmp_path / "file").write_text("")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        code, _, err = run_cli(capsys, "predict", tmp_path / "x.png", "--checkpoint", tmp_path / "no.safetensors",
                               "--out", out)
        assert code == 2 and "is a file, not a folder" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_out_is_one_line(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((40, 40, 3), np.uint8))
    (tmp_path / "ro").mkdir(mode=0o500)
    code, _, err = run_cli(capsys, "predict", tmp_path / "x.png", "--checkpoint", tmp_path / "no.safetensors",
                           "--out", tmp_path / "ro" / "o")
    assert code == 2 and "--out" in err and len(err.strip().splitlines()) == 1, err


def test_write_errors_fail_one_input_and_a_full_disk_stops_the_batch(tmp_path, checkpoint, capsys, monkeypatch):
    import errno

    from m3dhmr.inference import outputs

    ckpt, model = checkpoint
    imgs = [small_image(tmp_path / f"{n}.jpg", model) for n in ("a", "b")]
    write = outputs.write_image
    error = {}

    def failing_write(path, rgb, quality=92):
        if ".a.tmp-" in str(path):
            raise OSError(error["errno"], os.strerror(error["errno"]), str(path))
        return write(path, rgb, quality)

    monkeypatch.setattr(outputs, "write_image", failing_write)
    args = ["--checkpoint", ckpt, "--whole-image", "--view-size", 16]
    error["errno"] = errno.EIO  # one input's problem: the others go on
    code, _, err = run_cli(capsys, "predict", *imgs, "--out", tmp_path / "o1", *args)
    assert code == 1 and err.startswith(f"{imgs[0]}: ") and "input/output error" in err, err
    assert len(err.strip().splitlines()) == 1 and (tmp_path / "o1" / "b" / "result.json").is_file()
    assert not (tmp_path / "o1" / "a").exists() and not list((tmp_path / "o1").rglob(".*.tmp-*"))
    error["errno"] = errno.ENOSPC  # nothing else would fit: stop with one line
    code, _, err = run_cli(capsys, "predict", *imgs, "--out", tmp_path / "o2", *args)
    assert code == 1 and "no space left on device" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o2" / "b").exists() and not list((tmp_path / "o2").rglob(".*.tmp-*"))


@pytest.mark.parametrize("option, message", [
    (["--device", "banana"], "--device: expected cpu, cuda or cuda:N, got 'banana'"),
    (["--threads", "-3"], "--threads must be >= 1, got -3"),
    (["--view-size", "5000"], "--view-size must be in [16, 4096], got 5000"),
    (["--view-size", "8"], "--view-size must be in [16, 4096], got 8"),
    (["--device", "cuda"], "--device cuda: no CUDA device is available"),
    (["--landmarks-every", "0"], "--landmarks-every must be >= 1, got 0"),
])
def test_bad_options_are_one_line_before_loading(tmp_path, capsys, option, message):
    if option == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((40, 40, 3), np.uint8))
    code, _, err = run_cli(capsys, "predict", tmp_path / "x.png", "--checkpoint", tmp_path / "no.safetensors",
                           "--out", tmp_path / "o", *option)
    assert code == 2 and err.strip() == f"m3dhmr predict: error: {message}"


@pytest.mark.parametrize("argv, box, inputs", [
    (["--bbox", "-5", "10", "100", "100", "a.jpg"], "-5,10,100,100", ["a.jpg"]),
    (["a.jpg", "--bbox", "-5", "10", "100", "100"], "-5,10,100,100", ["a.jpg"]),
    (["--bbox", "-5,10,100,100", "a.jpg", "b.jpg"], "-5,10,100,100", ["a.jpg", "b.jpg"]),
    (["--bbox=-5,10,100,100", "a.jpg"], "-5,10,100,100", ["a.jpg"]),
    (["a.jpg", "--bbox", "1,2,3,4", "b.jpg"], "1,2,3,4", ["a.jpg", "b.jpg"]),
    (["--bbox", "-.5", "-1e1", "3", "4", "a.jpg"], "-.5,-1e1,3,4", ["a.jpg"]),
])
def test_bbox_takes_negative_numbers(argv, box, inputs):
    args = cli.build_parser("predict").parse_args(["predict", *argv, "--out", "o"])
    assert args.bbox == box and [*args.inputs_after_bbox, *args.inputs] == inputs


def test_inputs_are_required_also_after_a_box(tmp_path, capsys):
    code, _, err = run_cli(capsys, "predict", "--bbox", "1,2,3,4", "--out", tmp_path / "o")
    assert code == 2 and "no INPUT given" in err and not (tmp_path / "o").exists()


def test_negative_bbox_end_to_end(tmp_path, checkpoint, capsys):
    ckpt, model = checkpoint
    img = small_image(tmp_path / "h.jpg", model)
    code, _, err = run_cli(capsys, "predict", "--bbox", "-5", "2", "40", "40", img, "--checkpoint", ckpt, "--out",
                           tmp_path / "o", "--view-size", 16)
    assert code == 0, err
    assert json.loads((tmp_path / "o" / "h" / "result.json").read_text())["hands"][0]["hand_box"] == [-5, 2, 40, 40]


def test_big_photo_overlays_are_downscaled(tmp_path, checkpoint, capsys):
    """A 2,600 x 3,200 photo: overlays at 2,048 px a side, result.json in the photo's pixels
    (the same joints as a run that draws at full size)."""
    from m3dhmr.inference.outputs import downscale_view

    ckpt, model = checkpoint
    big = cv2.resize(hand_image(model, size=(48, 64), seed=4), (3200, 2600), interpolation=cv2.INTER_LINEAR)
    cv2.imwrite(str(tmp_path / "big.png"), big[:, :, ::-1])
    code, _, err = run_cli(capsys, "predict", tmp_path / "big.png", "--checkpoint", ckpt, "--out", tmp_path / "o",
                           "--whole-image", "--view-size", 16)
    assert code == 0, err
    doc = json.loads((tmp_path / "o" / "big" / "result.json").read_text())
    assert doc["image_size"] == [2600, 3200] and doc["overlay_scale"] == 0.64
    assert cv2.imread(str(tmp_path / "o" / "big" / "overlay.jpg")).shape == (1664, 2048, 3)
    assert cv2.imread(str(tmp_path / "o" / "big" / "hand_0" / "pose2d.jpg")).shape == (1664, 2048, 3)
    hand = doc["hands"][0]
    j2 = np.array(hand["joints2d"])
    assert np.ptp(j2[:, 0]) > 200  # the photo's pixels, not the overlay's
    # The drawn copy: joints, box and K follow the pixel-centre convention.
    from m3dhmr.inference.result import PredictionResult

    r = PredictionResult(joints2d=j2, joints3d=np.array(hand["joints3d"]), vertices=np.array(hand["vertices"]),
                         faces=model.faces.numpy(), translation=np.array(hand["translation"]), success=True,
                         reprojection_error=0.0, hand_box=np.array(hand["hand_box"]),
                         crop_box=np.array(hand["crop_box"]), K=np.array(hand["K"]),
                         image_size=(2600, 3200), left=False)
    view, (small,), scale = downscale_view(big, [r])
    assert view.shape == (1664, 2048, 3) and scale == 0.64
    np.testing.assert_allclose(small.joints2d, (j2 + 0.5) * 0.64 - 0.5)
    from m3dhmr.geometry.camera import project

    np.testing.assert_allclose(project(r.joints3d, small.K), (project(r.joints3d, r.K) + 0.5) * 0.64 - 0.5,
                               atol=1e-6)
    for name in ("crop_box", "hand_box"):
        b = getattr(r, name)
        np.testing.assert_allclose(getattr(small, name), [(b[0] + 0.5) * 0.64 - 0.5, (b[1] + 0.5) * 0.64 - 0.5,
                                                          b[2] * 0.64, b[3] * 0.64])
    assert downscale_view(big[:100, :200], [r])[2] == 1.0


# ----------------------------------------------------------------------------- first hour (issue 22)


def test_mesh_axes_are_stated_and_y_up_on_request(tmp_path, checkpoint, capsys):
    """mesh.obj/ply were camera axes (y down: upside down in Blender) and nothing said so."""
    ckpt, model = checkpoint
    img = small_image(tmp_path / "h.png", model)
    for axes in ("camera", "y-up"):
        code, _, err = run_cli(capsys, "predict", img, "--checkpoint", ckpt, "--out", tmp_path / axes,
                               "--whole-image", "--view-size", 16, "--mesh-axes", axes)
        assert code == 0, err
    doc = json.loads((tmp_path / "y-up" / "h" / "result.json").read_text())
    cam = np.array(doc["hands"][0]["vertices"])
    assert "y up" in doc["axes"]["mesh.obj/mesh.ply"] and "y down" in doc["axes"]["result.json"]
    for axes, expected in (("camera", cam), ("y-up", cam * [1.0, -1.0, -1.0])):
        for name in ("mesh.obj", "mesh.ply"):
            path = tmp_path / axes / "h" / "hand_0" / name
            v, f = read_mesh(path)
            np.testing.assert_allclose(v, expected, atol=1e-6)
            head = path.read_bytes()[:400].decode("ascii", "replace")
            assert ("y up" if axes == "y-up" else "y down") in head, head
    # A rotation, not a mirror: the winding stays outward (the same faces in both files).
    np.testing.assert_array_equal(read_mesh(tmp_path / "camera" / "h" / "hand_0" / "mesh.ply")[1],
                                  read_mesh(tmp_path / "y-up" / "h" / "hand_0" / "mesh.ply")[1])


def test_quiet_prints_only_the_summary_and_failures(tmp_path, checkpoint, capsys):
    ckpt, model = checkpoint
    good = small_image(tmp_path / "good.png", model)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    code, stdout, err = run_cli(capsys, "predict", good, bad, "--checkpoint", ckpt, "--out", tmp_path / "o",
                                "--whole-image", "--view-size", 16, "--quiet")
    assert code == 1
    assert stdout.splitlines() == [f"2 input(s): 1 ok, 1 failed -> {tmp_path / 'o' / 'summary.json'}"]
    assert "bad.png" in err and "good.png" not in err


class _Bar:
    """Records what predict does with its tqdm bars."""

    made: list = []

    def __init__(self, total=None, disable=None, **kwargs):
        self.total, self.n, self.disable, self.kwargs = total, 0, False, kwargs
        self.closed = False
        _Bar.made.append(self)

    def update(self, k=1):
        self.n += k

    def close(self):
        self.closed = True

    @staticmethod
    def write(line, file=None):
        print(line, file=file)


def test_progress_bars_count_inputs_and_frames(tmp_path, checkpoint, capsys, caplog, monkeypatch):
    """A folder and a video drew nothing for a minute; the video's summary line came twice."""
    import logging

    import tqdm

    ckpt, model = checkpoint
    small_image(tmp_path / "a.png", model)
    write_video(tmp_path / "v.avi", [hand_image(model, size=(48, 64), seed=s) for s in range(5)], fps=10.0)
    monkeypatch.setattr(tqdm, "tqdm", _Bar)
    _Bar.made = []
    caplog.set_level(logging.INFO)
    code, stdout, err = run_cli(capsys, "predict", tmp_path / "a.png", tmp_path / "v.avi", "--checkpoint", ckpt,
                                "--out", tmp_path / "o", "--whole-image", "--view-size", 16)
    assert code == 0, err
    inputs = [b for b in _Bar.made if b.kwargs.get("unit") == "input"]
    frames = [b for b in _Bar.made if b.kwargs.get("unit") == "frame"]
    assert len(inputs) == 1 and inputs[0].total == 2 and inputs[0].n == 2 and inputs[0].closed
    assert len(frames) == 1 and frames[0].n == 5 and frames[0].closed
    said = stdout + caplog.text
    assert said.count("hand track(s)") == 1, said  # the video's summary, once
