"""The web app's handlers (m3dhmr.app.handlers) without a browser, its example photos, and
``m3dhmr app`` (the missing-extra message, the wiring from options to the server).

The network is a tiny untrained model (fast; its meshes are noise), the hand detector the
packaged one, the photos the package's rendered examples."""

from __future__ import annotations

import json
import sys

import av
import numpy as np
import pytest
import torch

from m3dhmr import cli
from m3dhmr.app.examples import example_images
from m3dhmr.app.handlers import AppModel, AppSettings, Options
from m3dhmr.errors import InputError
from m3dhmr.inference import crops
from m3dhmr.inference.images import load_image
from m3dhmr.inference.video import write_video

TINY = {"input_size": 64, "stack_channels": 16, "stack2_channels": [16, 16, 32], "latent_channels": 32,
        "decoder_channels": [8, 8, 8, 8], "dsc_kernels": 2}


@pytest.fixture(scope="module")
def tiny_model():
    from m3dhmr.config_loader import from_dict
    from m3dhmr.models import build_model
    from m3dhmr.experiment import ExperimentConfig

    torch.manual_seed(0)
    exp = from_dict(ExperimentConfig, {"model": TINY})
    return build_model(exp.model).eval(), exp


@pytest.fixture(scope="module")
def predictor(tiny_model):
    from m3dhmr.inference.predictor import Predictor

    return Predictor.from_model(tiny_model[0])


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """right_hand, left_hand, two_hands (rendered once for the module)."""
    return dict(zip(("right", "left", "two"), example_images(tmp_path_factory.mktemp("examples"))))


@pytest.fixture
def app(predictor, tmp_path):
    return AppModel(predictor, tmp_path / "work", AppSettings(keep_results=2))


def folders(app):
    return sorted(p.name for p in app.workdir.iterdir())


def test_examples_are_found_with_their_side(examples, tmp_path):
    from m3dhmr.detect import HandDetector

    detector = HandDetector(max_hands=4)
    sides = {k: sorted(h.handedness for h in detector.detect(load_image(p))) for k, p in examples.items()}
    assert sides == {"right": ["right"], "left": ["left"], "two": ["left", "right"]}
    again = example_images(examples["right"].parent)  # cached: not rendered again
    assert [p.stat().st_mtime_ns for p in again] == [p.stat().st_mtime_ns for p in examples.values()]


def test_photo_writes_what_predict_writes_and_the_downloads(app, examples):
    res = app.photo(examples["right"], Options(), name="my photo.png")
    assert [r.handedness for r in res.results] == ["right"]
    assert res.folder.parent == app.workdir and res.overlay.is_file()
    doc = json.loads((res.folder / "result.json").read_text())
    assert doc["image"] == "my photo.png" and len(doc["hands"]) == 1  # the user's name, not the server's path
    assert "articulation" in doc["hands"][0]
    assert [p.name for p in res.downloads] == ["result.json", "hand_0_right.glb", "hand_0_right.obj"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in res.downloads)
    assert res.glbs == [res.folder / "hand_0" / "hand.glb"]
    import pygltflib

    glb = pygltflib.GLTF2().load(str(res.downloads[1]))
    assert glb.skins and len(glb.skins[0].joints) >= 16 and glb.meshes
    row = res.rows()[0]
    assert row[:2] == [0, "right"] and 0 < row[2] <= 1 and row[3] is not None and row[6] is not None
    assert res.summary().startswith("1 hand(s) found")


def test_photo_controls(app, examples):
    two = app.photo(examples["two"], Options(max_hands=2))
    assert sorted(r.handedness for r in two.results) == ["left", "right"]
    assert len(app.photo(examples["two"], Options(max_hands=1)).results) == 1
    forced = app.photo(examples["right"], Options(side="left"))
    assert [r.handedness for r in forced.results] == ["left"]
    assert forced.downloads[1].name == "hand_0_left.glb"
    H, W = load_image(examples["right"]).shape[:2]
    wide = app.photo(examples["right"], Options(fov_deg=90.0))
    np.testing.assert_allclose(wide.results[0].K, crops.default_intrinsics(H, W, 90.0))
    # keep_results=2: the five requests above left two folders
    assert len(folders(app)) == 2


def test_photo_without_hand(app, tmp_path):
    from m3dhmr.inference.outputs import write_image

    path = tmp_path / "wall.png"
    write_image(path, np.full((200, 200, 3), 128, np.uint8))
    res = app.photo(path)
    assert res.results == [] and res.glbs == [] and "No hand found" in res.summary()
    assert [p.name for p in res.downloads] == ["result.json"]


@pytest.mark.parametrize("options", [dict(max_hands=0), dict(max_hands=9), dict(min_score=1.5),
                                     dict(side="both"), dict(fov_deg=0.0)])
def test_bad_options(options):
    with pytest.raises(InputError):
        Options(**options)


def test_bad_photos_leave_nothing(predictor, tmp_path, examples):
    app = AppModel(predictor, tmp_path / "work", AppSettings(max_image_pixels=50_000))
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(InputError, match="notes.jpg: cannot decode") as e:
        app.photo(text)
    assert str(tmp_path) not in str(e.value)
    with pytest.raises(InputError, match="big.png: 320 x 240 pixels is more than this server takes"):
        app.photo(examples["right"], name="big.png")
    with pytest.raises(InputError, match="no photo"):
        app.photo(None)
    with pytest.raises(InputError, match="gone"):
        app.photo(tmp_path / "missing.png")
    assert folders(app) == []


def clip(path, frames, fps=10.0):
    write_video(path, frames, fps=fps)
    return path


def test_video_tracks_and_animates(app, examples, tmp_path):
    frame = load_image(examples["right"])
    path = clip(tmp_path / "clip.mp4", [np.roll(frame, k, axis=1) for k in range(5)])
    seen = []
    res = app.video(path, Options(max_hands=1), progress=lambda done, total: seen.append((done, total)))
    assert res.frames == 5 and res.hands == 1
    assert seen[-1][0] == 5 and [d for d, _ in seen] == sorted(d for d, _ in seen)
    with av.open(str(res.video)) as container:  # the browser plays H.264
        assert container.streams.video[0].codec_context.name == "h264"
    assert [p.name for p in res.downloads] == ["results.jsonl", "hand_0.glb", "hand_0.bvh"]
    assert res.glbs == [res.folder / "hands" / "hand_0" / "hand_anim.glb"]
    assert len((res.folder / "results.jsonl").read_text().splitlines()) == 5
    assert "5 frames, 1 hand track(s)" in res.summary()


def test_bad_videos_leave_nothing(predictor, tmp_path, examples):
    app = AppModel(predictor, tmp_path / "work", AppSettings(max_video_seconds=0.3))
    noise = np.random.default_rng(0).integers(0, 256, size=(5, 120, 160, 3), dtype=np.uint8)
    with pytest.raises(InputError, match="no hand found in its 3 frames"):
        app.video(clip(tmp_path / "empty.mp4", noise[:3]))
    frame = load_image(examples["right"])
    with pytest.raises(InputError, match="lasts 1 s, longer than this server takes"):
        app.video(clip(tmp_path / "long.mp4", [frame] * 10))
    text = tmp_path / "film.mp4"
    text.write_text("not a video")
    with pytest.raises(InputError, match="film.mp4: OpenCV cannot open"):
        app.video(text)
    assert folders(app) == []


def test_app_without_the_extra_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    assert cli.main(["app"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'm3dhmr[app]'" in err and "Gradio" in err


def test_app_command_serves_and_cleans_up(monkeypatch, tmp_path, tiny_model, capsys):
    """Options reach the server; the work folder is gone when it stops."""
    pytest.importorskip("gradio", reason="the app extra (pip install 'm3dhmr[app]') is not installed")
    from m3dhmr.app import ui
    from m3dhmr.train.checkpoint import Progress, save_weights

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))  # ui.build sets it: restored after the test
    ckpt = tmp_path / "tiny.safetensors"
    save_weights(ckpt, tiny_model[0], tiny_model[1], Progress())
    seen = {}

    def fake_launch(demo, model, host, port, allowed=(), block=True):
        seen.update(host=host, port=port, workdir=model.workdir, settings=model.settings, allowed=allowed,
                    exists=model.workdir.is_dir(), queue=demo._queue.default_concurrency_limit)
        return demo

    monkeypatch.setattr(ui, "launch", fake_launch)
    code = cli.main(["app", "--port", "7999", "--checkpoint", str(ckpt), "--max-video-seconds", "5"])
    assert code == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 7999 and seen["exists"] and seen["queue"] == 1
    assert seen["settings"].max_video_seconds == 5 and not seen["workdir"].exists()
    assert "http://127.0.0.1:7999" in capsys.readouterr().out
    assert cli.main(["app", "--port", "0"]) == 2


def test_page_helpers(tmp_path):
    """What the page layer adds: the upload's own name, and refused uploads deleted and remembered."""
    pytest.importorskip("gradio", reason="the app extra (pip install 'm3dhmr[app]') is not installed")
    from m3dhmr.app.ui import RefusedUploads, payload_path

    assert payload_path(None) == (None, None)
    assert payload_path({"path": "/srv/abc/x.png", "orig_name": "my x.png"}) == ("/srv/abc/x.png", "my x.png")
    assert payload_path("/srv/abc/x.png") == ("/srv/abc/x.png", "x.png")
    upload = tmp_path / "hash" / "bad.jpg"
    upload.parent.mkdir()
    upload.write_text("no image")
    refused = RefusedUploads(tmp_path, size=2)
    assert refused.add(str(upload), "message") == "message"
    assert not upload.parent.exists() and refused.get(str(upload)) == "message"
    upload.parent.mkdir()
    upload.write_text("no image")  # uploaded anew: tried again
    assert refused.get(str(upload)) is None
    outside = tmp_path.parent / "elsewhere.jpg"
    outside.write_text("x")
    refused.add(str(outside), "m")  # never deletes outside the app's folder
    assert outside.is_file()
    refused.add("a", "1"), refused.add("b", "2")
    assert len(refused.messages) == 2
