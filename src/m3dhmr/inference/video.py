"""Videos: frame reading and writing, a box that follows the hand, One-Euro smoothing.

Tracking: the crop box of frame ``t + 1`` is the square around frame ``t``'s predicted
2D landmarks, ``margin`` times their extent (the training crops' proportion, see
:data:`m3dhmr.inference.crops.DEFAULT_TRACK_MARGIN`), shifted inside the frame. When the
hand is lost (registration failed, or the landmarks left the frame) the next frame
falls back to the initial box (the user's box, or the whole frame) and the smoothing
filters restart.

Smoothing (optional): One-Euro filters (:mod:`m3dhmr.inference.one_euro`) on the 2D
joints (pixels), the root-relative 3D joints and vertices, and the root translation
(metres), with per-unit settings in :class:`SmoothingConfig`; timestamps come from the
video's frame rate.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from m3dhmr.fileio import atomic_path
from m3dhmr.inference import crops
from m3dhmr.inference.images import to_rgb_uint8
from m3dhmr.inference.one_euro import OneEuroConfig, OneEuroFilter

log = logging.getLogger(__name__)

#: Frame rate assumed when a video does not report one.
DEFAULT_FPS = 30.0


@dataclass(frozen=True)
class SmoothingConfig:
    """One-Euro settings for pixel signals and metre signals (beta is unit-dependent:
    a hand moving at ~0.5 m/s moves ~300 px/s in a 640-px frame, hence ~1000x apart)."""

    pixels: OneEuroConfig = field(default_factory=lambda: OneEuroConfig(min_cutoff=1.0, beta=0.02))
    metres: OneEuroConfig = field(default_factory=lambda: OneEuroConfig(min_cutoff=1.0, beta=20.0))


@dataclass(frozen=True)
class VideoInfo:
    """fps (frames per second, :data:`DEFAULT_FPS` if unknown), frame_count (as reported
    by the container; may be 0 or approximate), width and height in pixels."""

    fps: float
    frame_count: int
    width: int
    height: int


class VideoReader:
    """Frames of a video file as (H, W, 3) uint8 RGB; errors name the file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video not found: {self.path}")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise ValueError(f"{self.path}: OpenCV cannot open the video (unsupported codec or not a video)")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.info = VideoInfo(
            fps=fps if np.isfinite(fps) and fps > 0 else DEFAULT_FPS,
            frame_count=int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0),
            width=int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
            height=int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0),
        )

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            ok, frame = self._cap.read()
            if not ok or frame is None:
                return
            yield to_rgb_uint8(frame, f"{self.path} frame")

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_writer(path: Path, fps: float, width: int, height: int) -> cv2.VideoWriter:
    """A ``cv2.VideoWriter`` for ``path``: mp4v for .mp4/.m4v/.mov, MJPG otherwise."""
    fourcc = "mp4v" if path.suffix.lower() in (".mp4", ".m4v", ".mov") else "MJPG"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (int(width), int(height)))
    if not writer.isOpened():
        raise ValueError(f"{path}: OpenCV cannot write a {fourcc} video here (codec missing?)")
    return writer


def write_video(path: str | Path, frames, fps: float = DEFAULT_FPS) -> int:
    """Write (H, W, 3) uint8 RGB frames to ``path`` atomically; returns the frame count."""
    path = Path(path)
    n = 0
    writer = None
    with atomic_path(path) as tmp:
        try:
            for frame in frames:
                if writer is None:
                    writer = open_writer(tmp, fps, frame.shape[1], frame.shape[0])
                writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
                n += 1
        finally:
            if writer is not None:
                writer.release()
        if n == 0:
            raise ValueError(f"{path}: no frames to write")
    return n


class HandTracker:
    """The crop box of the next frame: around the last landmarks, else the initial box.

    initial_box: (4,) x, y, w, h crop box or None (the whole frame).
    """

    def __init__(self, height: int, width: int, initial_box: np.ndarray | None = None,
                 margin: float = crops.DEFAULT_TRACK_MARGIN) -> None:
        self.height, self.width, self.margin = int(height), int(width), float(margin)
        self.initial_box = crops.full_image_box(height, width) if initial_box is None else np.asarray(initial_box)
        self.box = self.initial_box.copy()
        self.tracking = False

    def update(self, joints2d: np.ndarray | None, success: bool) -> bool:
        """Feed frame ``t``'s landmarks (21, 2) (image px) and success; returns whether tracked."""
        box = crops.box_from_points(joints2d, self.height, self.width, self.margin) if (
            success and joints2d is not None) else None
        self.tracking = box is not None
        self.box = box if box is not None else self.initial_box.copy()
        return self.tracking


class TemporalSmoother:
    """One-Euro smoothing of a :class:`~m3dhmr.inference.predictor.PredictionResult` stream."""

    def __init__(self, config: SmoothingConfig = SmoothingConfig()) -> None:
        self.config = config
        self._f = {
            "joints2d": OneEuroFilter(config.pixels),
            "joints_rr": OneEuroFilter(config.metres),
            "vertices_rr": OneEuroFilter(config.metres),
            "translation": OneEuroFilter(config.metres),
        }

    def reset(self) -> None:
        for f in self._f.values():
            f.reset()

    def __call__(self, result, t: float):
        """Smoothed copy of ``result`` at time ``t`` (s); a failed result resets and passes through."""
        if not result.success:
            self.reset()
            return result
        tr = self._f["translation"](result.translation, t)
        j_rr = self._f["joints_rr"](result.joints3d - result.translation, t)
        v_rr = self._f["vertices_rr"](result.vertices - result.translation, t)
        j2 = self._f["joints2d"](result.joints2d, t)
        return dataclasses.replace(result, joints2d=j2, joints3d=j_rr + tr, vertices=v_rr + tr, translation=tr)


@dataclass(frozen=True)
class VideoSummary:
    """What :func:`predict_video` did: frames processed, frames where the hand was
    registered, the annotated video and the JSON-lines file written."""

    frames: int
    successes: int
    video_path: Path
    jsonl_path: Path
    info: VideoInfo


def predict_video(predictor, path: str | Path, video_out: str | Path, jsonl_out: str | Path, *,
                  box: np.ndarray | None = None, K: np.ndarray | None = None, left: bool = False,
                  smooth: bool = False, smoothing: SmoothingConfig = SmoothingConfig(),
                  include_vertices: bool = False,
                  annotate: Callable[[np.ndarray, object], np.ndarray] | None = None) -> VideoSummary:
    """Run ``predictor`` on every frame of a video with a tracked box.

    box: (4,) initial crop box (x, y, w, h) or None (the whole frame); K: (3, 3) or None
    (from the predictor's field of view). Writes ``video_out`` (each frame annotated by
    ``annotate(frame, result)``, default: mesh overlay + 2D pose) and ``jsonl_out`` (one
    JSON object per frame: index, time, tracked flag and the result), both atomically.
    """
    from m3dhmr import viz

    if annotate is None:
        def annotate(frame, res):
            return viz.draw_pose2d(viz.overlay_mesh(frame, res.vertices, res.faces, res.K), res.joints2d)

    video_out, jsonl_out = Path(video_out), Path(jsonl_out)
    smoother = TemporalSmoother(smoothing) if smooth else None
    n = ok = 0
    with VideoReader(path) as reader, atomic_path(video_out) as tmp_video, atomic_path(jsonl_out) as tmp_jsonl:
        info = reader.info
        writer = None
        tracker = None
        try:
            with open(tmp_jsonl, "w") as lines:
                for frame in reader:
                    H, W = frame.shape[:2]
                    if tracker is None:
                        init = None if box is None else crops.validate_box(box, H, W, "--bbox")
                        tracker = HandTracker(H, W, init, margin=getattr(predictor, "track_margin",
                                                                         crops.DEFAULT_TRACK_MARGIN))
                        writer = open_writer(tmp_video, info.fps, W, H)
                    t = n / info.fps
                    tracked = tracker.tracking
                    res = predictor.predict(frame, tracker.box, K, left)
                    tracker.update(res.joints2d, res.success)
                    if smoother is not None:
                        res = smoother(res, t)
                    ok += int(res.success)
                    writer.write(np.ascontiguousarray(annotate(frame, res)[:, :, ::-1]))
                    lines.write(json.dumps({"frame": n, "time_s": round(t, 6), "tracked_box": tracked,
                                            **res.to_json(include_vertices=include_vertices)}) + "\n")
                    n += 1
        finally:
            if writer is not None:
                writer.release()
        if n == 0:
            raise ValueError(f"{path}: the video has no readable frames")
    log.info("%s: %d frames, hand registered in %d", path, n, ok)
    return VideoSummary(frames=n, successes=ok, video_path=video_out, jsonl_path=jsonl_out, info=info)
