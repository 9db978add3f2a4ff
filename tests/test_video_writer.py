"""Video files in and out (m3dhmr.inference.video): H.264 .mp4 with the mp4v fallback,
upright frames from rotated (phone) videos, and predict_video's progress callback."""

import logging
import sys

import cv2
import numpy as np
import pytest
import torch

from m3dhmr.inference import video
from m3dhmr.inference.video import VideoReader, open_writer, predict_video, write_video

try:
    import av  # noqa: F401 - the H.264 writer's library (a dependency; the fallback is tested without it)

    HAS_AV = True
except ImportError:
    HAS_AV = False


def pattern_clip(n=4, h=48, w=64):
    """Frames with an asymmetric picture (red top-left, green top-right, blue bottom-left;
    16-px blocks, which survive compression) and a moving grey square."""
    frames = []
    for i in range(n):
        f = np.full((h, w, 3), 90, np.uint8)
        f[:16, :16] = (230, 30, 30)
        f[:16, -16:] = (30, 200, 30)
        f[-16:, :16] = (30, 30, 230)
        f[24:40, 20 + 4 * i:36 + 4 * i] = 200
        frames.append(f)
    return frames


def fourcc(path) -> str:
    cap = cv2.VideoCapture(str(path))
    try:
        return int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("ascii", "replace").lower()
    finally:
        cap.release()


def read_all(path):
    with VideoReader(path) as r:
        return list(r), r.info


def test_mp4_is_h264_yuv420p_and_round_trips(tmp_path):
    """.mp4 was MPEG-4 part 2 (mp4v), which browsers do not play; now H.264 in yuv420p,
    with the index first (plays while loading), written atomically (the temporary keeps .mp4)."""
    av = pytest.importorskip("av")
    frames = pattern_clip()
    path = tmp_path / "c.mp4"
    assert write_video(path, frames, fps=12.0) == 4
    assert fourcc(path) == "h264"
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert (s.codec_context.name, s.codec_context.pix_fmt) == ("h264", "yuv420p")
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # +faststart
    got, info = read_all(path)
    assert len(got) == 4 and (info.width, info.height) == (64, 48) and info.fps == pytest.approx(12.0)
    for a, b in zip(got, frames):
        assert np.abs(a.astype(int) - b).mean() < 6
    assert got[0][8, 8, 0] > 180 and got[0][8, 8, 2] < 80  # RGB order kept: red is red
    assert [p.name for p in tmp_path.iterdir()] == ["c.mp4"]  # no temporary left


def test_odd_sizes_are_padded_by_repeating_the_edge(tmp_path):
    """yuv420p needs even sizes: a 63 x 47 picture becomes 64 x 48, the last column and row repeated."""
    pytest.importorskip("av")
    frames = [f[:47, :63] for f in pattern_clip(2)]
    write_video(tmp_path / "odd.mp4", frames, fps=10.0)
    got, info = read_all(tmp_path / "odd.mp4")
    assert (info.width, info.height) == (64, 48) and got[0].shape == (48, 64, 3)
    assert np.abs(got[1][:47, :63].astype(int) - frames[1]).mean() < 6
    np.testing.assert_allclose(got[1][:47, 63], got[1][:47, 62], atol=12)
    np.testing.assert_allclose(got[1][47, :63], got[1][46, :63], atol=12)


def test_h264_writer_refuses_frames_of_another_size(tmp_path):
    pytest.importorskip("av")
    w = open_writer(tmp_path / "x.mp4", 10.0, 64, 48)
    with pytest.raises(ValueError, match=r"\(32, 64, 3\).*\(48, 64, 3\) uint8"):
        w.write(np.zeros((32, 64, 3), np.uint8))
    w.release()
    w.release()  # twice: nothing


def test_avi_stays_mjpg(tmp_path):
    write_video(tmp_path / "c.avi", pattern_clip(2), fps=10.0)
    assert fourcc(tmp_path / "c.avi") == "mjpg"


@pytest.mark.parametrize("how", ["not installed", "fails to open"])
def test_mp4v_fallback_warns_once(tmp_path, monkeypatch, caplog, how):
    """Without PyAV, or when its H.264 encoder does not open, .mp4 is still written (OpenCV's
    mp4v) and a warning says so, once per process."""
    if how == "not installed":
        monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    else:
        def fail(*args, **kwargs):
            raise RuntimeError("no H.264 encoder here")

        monkeypatch.setattr(video, "H264Writer", fail)
    monkeypatch.setattr(video, "_warned_mp4v", False)
    frames = pattern_clip(3)
    with caplog.at_level(logging.WARNING, logger="m3dhmr.inference.video"):
        write_video(tmp_path / "a.mp4", frames, fps=10.0)
        write_video(tmp_path / "b.mp4", frames, fps=10.0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "mp4v" in warnings[0] and "browsers" in warnings[0]
    assert ("pip install av" in warnings[0]) == (how == "not installed")
    assert fourcc(tmp_path / "a.mp4") in ("mp4v", "fmp4")
    got, info = read_all(tmp_path / "b.mp4")
    assert len(got) == 3 and (info.width, info.height) == (64, 48)
    assert np.abs(got[1].astype(int) - frames[1]).mean() < 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]


# --- Rotated (phone) videos -------------------------------------------------------------


def rotated_video(tmp_path, degrees, frames):
    """An H.264 .mp4 whose display matrix says: show the stored frames turned ``degrees``
    anticlockwise (what a phone held upright records)."""
    av = pytest.importorskip("av")
    path = tmp_path / f"rot{degrees}.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        if not hasattr(s, "set_display_rotation"):
            pytest.skip("this PyAV cannot write a display matrix")
        s.set_display_rotation(degrees)
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode(None))
    return path


class CaptureWithoutAutoRotation:
    """A cv2.VideoCapture on a backend that reports the rotation but does not apply it
    (``CAP_PROP_ORIENTATION_AUTO`` off), as some OpenCV builds and backends do."""

    open_capture = cv2.VideoCapture  # the real one: the test patches cv2.VideoCapture with this class

    def __init__(self, path):
        self._cap = self.open_capture(path)
        self._cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)

    def __getattr__(self, name):
        return getattr(self._cap, name)


@pytest.mark.parametrize("backend", ["opencv rotates", "reader rotates"])
@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_videos_come_out_upright(tmp_path, monkeypatch, degrees, backend):
    """Frames come out as the phone showed them, and ``info``'s width and height are the
    upright frames' (was: sideways frames where the backend does not rotate)."""
    frames = pattern_clip(3)
    path = rotated_video(tmp_path, degrees, frames)
    if backend == "reader rotates":
        cap = CaptureWithoutAutoRotation(str(path))
        stored = (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        meta = cap.get(cv2.CAP_PROP_ORIENTATION_META)
        cap.release()
        if stored != (64, 48) or meta == 0:
            pytest.skip("this OpenCV cannot switch auto-rotation off or does not report the angle")
        monkeypatch.setattr(video.cv2, "VideoCapture", CaptureWithoutAutoRotation)
    got, info = read_all(path)
    upright = [np.rot90(f, degrees // 90) for f in frames]
    assert len(got) == 3 and got[0].shape == upright[0].shape
    assert (info.height, info.width) == upright[0].shape[:2]
    for a, b in zip(got, upright):
        assert np.abs(a.astype(int) - b).mean() < 6


# --- Progress ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def predictor():
    from m3dhmr.inference.predictor import Predictor
    from m3dhmr.models import M3DHMR
    from model_helpers import tiny_model_config, tiny_topology

    torch.manual_seed(0)
    return Predictor.from_model(M3DHMR(tiny_model_config(), tiny_topology()).eval())


def test_progress_is_called_once_per_frame(tmp_path, predictor, monkeypatch):
    """``progress(done, total)`` after each frame, for the command line's bar and ETA; the
    total is the container's frame count (None when it does not know it)."""
    src = tmp_path / "in.mp4"
    write_video(src, pattern_clip(5), fps=10.0)
    with VideoReader(src) as r:
        assert r.frame_count == 5
    calls = []
    s = predict_video(predictor, src, tmp_path / "out.mp4", tmp_path / "out.jsonl", whole_frame=True,
                      progress=lambda done, total: calls.append((done, total)))
    assert s.frames == 5 and calls == [(i, 5) for i in range(1, 6)]
    if HAS_AV:
        assert fourcc(tmp_path / "out.mp4") == "h264"  # the atomic temporary kept the .mp4 suffix
    monkeypatch.setattr(VideoReader, "frame_count", property(lambda self: None))
    calls.clear()
    predict_video(predictor, src, tmp_path / "out.mp4", tmp_path / "out.jsonl", whole_frame=True,
                  progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, None) for i in range(1, 6)]
