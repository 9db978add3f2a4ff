"""Videos: frame reading and writing, hands followed from frame to frame, One-Euro smoothing.

Two ways to follow hands:

- Without a box (the default of ``m3dhmr predict``), :class:`MultiHandTracker`: the
  packaged detector (:mod:`m3dhmr.detect`) finds the hands on the first frame; each
  hand is then followed from its previous landmarks (MediaPipe's landmark model on the
  region they give, no palm detection), with a stable ``id``. Detection runs again when
  a hand is lost and, while fewer than ``max_hands`` are followed, every
  ``redetect_every`` frames, so that hands entering the picture are found.
- With a box (or the whole frame), :class:`HandTracker`, one hand: the crop box of
  frame ``t + 1`` is the square around frame ``t``'s predicted 2D landmarks, ``margin``
  times their extent (the training crops' proportion, see
  :data:`m3dhmr.inference.crops.DEFAULT_TRACK_MARGIN`), shifted inside the frame; when
  the hand is lost (registration failed, or the landmarks left the frame) the next
  frame falls back to the initial box.

Smoothing (optional): One-Euro filters (:mod:`m3dhmr.inference.one_euro`) per hand on
the 2D joints (pixels), the root-relative 3D joints and vertices, and the root
translation (metres), with per-unit settings in :class:`SmoothingConfig`; timestamps
come from the video's frame rate; a hand's filters restart when it is lost.

Reading: frames come out upright (a phone video's rotation metadata applied, see
:class:`VideoReader`). Writing (:func:`open_writer`): .mp4/.m4v/.mov as H.264 in yuv420p,
which browsers play, with PyAV (its wheel bundles FFmpeg with libx264); where PyAV cannot,
OpenCV's MPEG-4 part 2 (mp4v), with a warning; .avi as MJPG.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import cv2
import numpy as np

from m3dhmr import viz
from m3dhmr.detect import duplicates as dup
from m3dhmr.detect.hands import box_iou_xywh, hand_from_points
from m3dhmr.fileio import atomic_path
from m3dhmr.inference import crops
from m3dhmr.inference.images import to_rgb_uint8
from m3dhmr.inference.one_euro import OneEuroConfig, OneEuroFilter
from m3dhmr.errors import InputError

log = logging.getLogger(__name__)

#: Frame rate assumed when a video does not report one.
DEFAULT_FPS = 30.0
#: Undecodable frames in a row that :class:`VideoReader` skips before the reported frame
#: count; more, and the video is taken to end there.
MAX_BAD_FRAMES_IN_A_ROW = 50
#: Extensions written as H.264 by :class:`H264Writer`, and the container of each.
H264_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov"}
#: libx264 settings: constant quality 18 (the drawn lines stay sharp; ~5 kB a 720p frame)
#: and preset veryfast (about twice medium's speed, measured: ~55 frames/s at 720p on two
#: cores, so encoding stays a small part of a frame's time).
X264_OPTIONS = {"crf": "18", "preset": "veryfast"}


@dataclass(frozen=True)
class SmoothingConfig:
    """One-Euro settings for pixel signals and metre signals (beta is unit-dependent:
    a hand moving at ~0.5 m/s moves ~300 px/s in a 640-px frame, hence ~1000x apart)."""

    pixels: OneEuroConfig = field(default_factory=lambda: OneEuroConfig(min_cutoff=1.0, beta=0.02))
    metres: OneEuroConfig = field(default_factory=lambda: OneEuroConfig(min_cutoff=1.0, beta=20.0))


@dataclass(frozen=True)
class VideoInfo:
    """fps (frames per second, :data:`DEFAULT_FPS` if unknown), frame_count (as reported
    by the container; may be 0 or approximate), width and height in pixels of the frames
    as :class:`VideoReader` gives them (upright)."""

    fps: float
    frame_count: int
    width: int
    height: int


class VideoReader:
    """Frames of a video file as (H, W, 3) uint8 RGB, upright; errors name the file.

    Upright: a phone video stores the picture as the sensor saw it, with the rotation to
    show it at in the container (a display matrix). OpenCV's FFmpeg backend applies it
    (``CAP_PROP_ORIENTATION_AUTO``, on by default) and then reports the upright width and
    height; where a backend reports the angle (``CAP_PROP_ORIENTATION_META``) without
    applying it, the reader turns the frames itself and swaps :attr:`info`'s width and
    height to match.

    A frame that fails to decode before the container's frame count is reached (a
    corrupt frame mid-video) is skipped, not taken as the end: :attr:`bad_frames` counts
    those followed by a readable frame (see :meth:`frames`).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video not found: {self.path}")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise InputError(f"{self.path}: OpenCV cannot open the video (unsupported codec or not a video)")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._rotate = _rotation_to_apply(self._cap)
        width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        if self._rotate in (cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE):
            width, height = height, width
        self.info = VideoInfo(
            fps=fps if np.isfinite(fps) and fps > 0 else DEFAULT_FPS,
            frame_count=max(int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0),
            width=width,
            height=height,
        )
        self.bad_frames = 0

    @property
    def frame_count(self) -> int | None:
        """The number of frames the container reports (may be approximate), None if unknown."""
        return self.info.frame_count or None

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, frame)`` of every readable frame; ``index`` counts skipped frames too,
        so it stays the frame's position (and time) in the video."""
        index = failed = 0
        while True:
            ok, frame = self._cap.read()
            if ok and frame is not None:
                self.bad_frames += failed  # the failures were mid-video: a frame followed
                failed = 0
                if self._rotate is not None:
                    frame = cv2.rotate(frame, self._rotate)
                yield index, to_rgb_uint8(frame, f"{self.path} frame {index}")
            else:
                # Without a frame count (0) a failed read is the end, as before.
                if index >= self.info.frame_count or failed >= MAX_BAD_FRAMES_IN_A_ROW:
                    return
                failed += 1
            index += 1

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, frame in self.frames():
            yield frame

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _rotation_to_apply(cap) -> int | None:
    """The ``cv2.rotate`` code that turns ``cap``'s frames upright, or None (upright
    already, or the backend rotates them itself). ``CAP_PROP_ORIENTATION_META`` is the
    clockwise angle to turn the stored picture by."""
    if cap.get(cv2.CAP_PROP_ORIENTATION_AUTO) > 0:
        return None
    angle = cap.get(cv2.CAP_PROP_ORIENTATION_META)
    angle = int(round(angle)) % 360 if np.isfinite(angle) else 0
    return {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}.get(angle)


class H264Writer:
    """An H.264 (yuv420p) .mp4/.m4v/.mov writer with PyAV, used like ``cv2.VideoWriter``:
    :meth:`write` takes (H, W, 3) uint8 BGR frames of the size given, :meth:`release` ends.

    The container is chosen from ``path``'s suffix (:data:`H264_CONTAINERS`). yuv420p needs
    an even width and height: an odd one is padded by repeating the last column or row, so
    the video is 1 px wider or higher than the frames (no pixel lost, coordinates kept).
    The moov index is put first (``+faststart``), so a browser starts playing at once; the
    colours are tagged BT.601 limited range, which is what the conversion writes.
    Raises ``ImportError`` without PyAV, PyAV's errors when it has no H.264 encoder.
    """

    def __init__(self, path: str | Path, fps: float, width: int, height: int) -> None:
        import av  # heavy: PyAV loads only to write a video

        path = Path(path)
        self.width, self.height = int(width), int(height)
        self._container = av.open(str(path), "w", format=H264_CONTAINERS[path.suffix.lower()],
                                  container_options={"movflags": "+faststart"})
        try:
            self._stream = self._add_h264_stream(Fraction(float(fps)).limit_denominator(1001))
            self._stream.width, self._stream.height = self.width + self.width % 2, self.height + self.height % 2
            self._stream.pix_fmt = "yuv420p"
            ctx = self._stream.codec_context
            ctx.colorspace = ctx.color_primaries = ctx.color_trc = 6  # SMPTE 170M (BT.601 525)
            ctx.color_range = 1  # limited ("tv") range
            self._container.start_encoding()  # opens the encoder now: a failure shows here, not mid-video
        except BaseException:
            self._container.close()
            raise
        self._av = av
        self._open = True

    def _add_h264_stream(self, rate: Fraction):
        try:
            stream = self._container.add_stream("libx264", rate=rate)
        except Exception:  # a build without libx264: whatever H.264 encoder it has (OpenH264, ...)
            return self._container.add_stream("h264", rate=rate)
        stream.options = dict(X264_OPTIONS)
        return stream

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoWriter's name
        return self._open

    def write(self, frame: np.ndarray) -> None:
        """Encode one (H, W, 3) uint8 BGR frame."""
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise InputError(f"frame of shape {frame.shape} ({frame.dtype}); this writer takes "
                             f"({self.height}, {self.width}, 3) uint8")
        if self.width % 2 or self.height % 2:
            frame = cv2.copyMakeBorder(frame, 0, self.height % 2, 0, self.width % 2, cv2.BORDER_REPLICATE)
        picture = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")
        self._container.mux(self._stream.encode(picture))

    def release(self) -> None:
        """Flush the encoder and close the file (again: nothing)."""
        if self._open:
            self._open = False
            try:
                self._container.mux(self._stream.encode(None))
            finally:
                self._container.close()


_warned_mp4v = False


def open_writer(path: str | Path, fps: float, width: int, height: int):
    """A video writer for ``path`` with ``write(bgr_frame)`` and ``release()``.

    .mp4/.m4v/.mov: an :class:`H264Writer`; where PyAV is missing or cannot open an H.264
    encoder, a ``cv2.VideoWriter`` with MPEG-4 part 2 (mp4v), which browsers do not play
    (a warning, once). Other extensions (.avi): a ``cv2.VideoWriter`` with MJPG. The format
    follows the suffix, which :func:`m3dhmr.fileio.atomic_path`'s temporaries keep.
    """
    global _warned_mp4v
    path = Path(path)
    if path.suffix.lower() in H264_CONTAINERS:
        try:
            return H264Writer(path, fps, width, height)
        except Exception as e:  # noqa: BLE001 - any failure to open H.264: mp4v still gives a video
            if not _warned_mp4v:
                _warned_mp4v = True
                hint = " (pip install av)" if isinstance(e, ImportError) else ""
                log.warning("cannot write H.264 (%s: %s); writing %s videos as MPEG-4 part 2 (mp4v), which browsers "
                            "do not play%s", type(e).__name__, e, path.suffix, hint)
        fourcc = "mp4v"
    else:
        fourcc = "MJPG"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (int(width), int(height)))
    if not writer.isOpened():
        raise InputError(f"{path}: OpenCV cannot write a {fourcc} video here (codec missing?)")
    return writer


def write_video(path: str | Path, frames, fps: float = DEFAULT_FPS) -> int:
    """Write (H, W, 3) uint8 RGB frames to ``path`` atomically (.mp4: H.264, see
    :func:`open_writer`); returns the frame count."""
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
            raise InputError(f"{path}: no frames to write")
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
    """One-Euro smoothing of a :class:`~m3dhmr.inference.result.PredictionResult` stream."""

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


class TrackedHand(NamedTuple):
    """One hand :meth:`MultiHandTracker.update` gives: its track ``id``, the
    :class:`~m3dhmr.detect.hands.DetectedHand` placing it in the frame, and whether it was
    ``followed`` from the previous frame (not a new detection)."""

    id: int
    hand: object
    followed: bool


class MultiHandTracker:
    """Hands followed through a video with stable ids (see the module docstring).

    detector: a :class:`m3dhmr.detect.HandDetector` (its ``max_hands`` caps the tracks);
    redetect_every: while fewer than ``max_hands`` hands are followed, the palm detector
    looks for new ones every this many frames (and on any frame after a hand is lost);
    match_iou: a detection overlapping a followed hand by more than this is that hand;
    landmarks_every: the landmark model places a followed hand at least every this many
    frames. 1 (the default): every frame, MediaPipe's way. N > 1: in between, the hand's
    region comes from the network's 2D joints on the previous frame, which the caller
    gives back with :meth:`feedback` (no landmark model: ~6 ms saved per hand and frame on
    a 2-core EPYC); a hand whose result was not trusted (registration failed, quality
    "poor", joints leaving the frame), or that got no feedback, has the landmark model on
    the next frame. Those hands carry NaN ``depth`` (:func:`m3dhmr.detect.hands.hand_from_points`).
    """

    def __init__(self, detector, redetect_every: int = 10, match_iou: float = 0.3, landmarks_every: int = 1) -> None:
        if redetect_every < 1:
            raise InputError(f"redetect_every must be >= 1, got {redetect_every}")
        if landmarks_every < 1:
            raise InputError(f"landmarks_every must be >= 1, got {landmarks_every}")
        self.detector = detector
        self.redetect_every, self.match_iou = int(redetect_every), float(match_iou)
        self.landmarks_every = int(landmarks_every)
        self.tracks: list[_Track] = []
        self.next_id = 0
        self._since_detect = 0
        self._shape: tuple[int, int] = (0, 0)
        self._last: list[_Track] = []

    def update(self, frame: np.ndarray) -> list[TrackedHand]:
        """Hands in ``frame``, oldest id first (see :class:`TrackedHand`)."""
        self._shape = frame.shape[:2]
        lost = False
        followed_ids: set[int] = set()
        if self.tracks:
            by_net = [t for t in self.tracks if t.carried_by_network(self.landmarks_every)]
            by_model = [t for t in self.tracks if t not in by_net]
            found = dict(zip(map(id, by_model), self.detector.track(frame, [t.hand for t in by_model])))
            kept = []
            for t in self.tracks:
                if t in by_net:
                    t.observe(hand_from_points(t.predicted_joints(), t.hand), landmark_model=False)
                else:
                    h = found[id(t)]
                    if h is None:
                        lost = True
                        continue
                    t.observe(h, landmark_model=True)
                if any(dup.duplicate(t.hand.landmarks, k.hand.landmarks) for k in kept):
                    continue  # two tracks converged onto one hand: the older one stays
                kept.append(t)
                followed_ids.add(t.id)
            self.tracks = kept
        self._since_detect += 1
        room = len(self.tracks) < self.detector.max_hands
        if not self.tracks or lost or (room and self._since_detect >= self.redetect_every):
            self._since_detect = 0
            for d in self.detector.detect(frame, known=[t.hand.box for t in self.tracks]):
                if len(self.tracks) >= self.detector.max_hands:
                    break
                if any(box_iou_xywh(d.box, t.hand.box) > self.match_iou or dup.duplicate(d.landmarks, t.hand.landmarks)
                       for t in self.tracks):
                    continue
                track = _Track(self.next_id)
                track.observe(d, landmark_model=True)
                self.tracks.append(track)
                self.next_id += 1
        self._last = list(self.tracks)
        return [TrackedHand(t.id, t.hand, t.id in followed_ids) for t in self.tracks]

    def feedback(self, results) -> None:
        """The network's results for the hands :meth:`update` just returned, same order
        (:class:`~m3dhmr.inference.result.PredictionResult`; None for a hand not
        predicted). With ``landmarks_every`` > 1, a trusted result's ``joints2d`` place
        the hand on the next frame; otherwise (or with 1) nothing is kept."""
        results = list(results)
        if len(results) != len(self._last):
            raise InputError(f"feedback: {len(results)} results for {len(self._last)} hands")
        for t, r in zip(self._last, results):
            ok = self.landmarks_every > 1 and trusted(r, *self._shape)
            t.previous_joints2d = t.joints2d if ok else None
            t.joints2d = np.asarray(r.joints2d, np.float64) if ok else None
            t.fed = ok


def trusted(result, height: int, width: int) -> bool:
    """Whether a result's 2D joints can place its hand on the next frame: registration
    succeeded, quality not "poor", joints finite and their box centre in the frame
    with at least 3/4 of the joints inside it."""
    if result is None or not result.success or getattr(result, "quality_flag", None) == "poor":
        return False
    j = np.asarray(result.joints2d, np.float64)
    if j.shape != (21, 2) or not np.isfinite(j).all():
        return False
    inside = (j[:, 0] >= 0) & (j[:, 0] < width) & (j[:, 1] >= 0) & (j[:, 1] < height)
    c = (j.min(0) + j.max(0)) / 2
    return bool(inside.mean() >= 0.75 and 0 <= c[0] < width and 0 <= c[1] < height)


class _Track:
    """One followed hand; its handedness is the running mean over the track (one
    frame's call can flip on a hand seen edge-on). ``joints2d``, ``previous_joints2d``:
    the network's trusted joints (21, 2) on the last two frames
    (:meth:`MultiHandTracker.feedback`) or None; ``since_landmarks``: frames since the
    landmark model last placed it."""

    def __init__(self, track_id: int) -> None:
        self.id = track_id
        self.hand = None
        self._p_right = 0.0
        self._n = 0
        self.joints2d: np.ndarray | None = None
        self.previous_joints2d: np.ndarray | None = None
        self.fed = False  # joints2d are this frame's (fed back since the last observe)
        self.since_landmarks = 0

    def carried_by_network(self, landmarks_every: int) -> bool:
        return self.fed and self.joints2d is not None and self.since_landmarks + 1 < landmarks_every

    def predicted_joints(self) -> np.ndarray:
        """The network's last joints moved on by their centroid's last step (constant
        velocity: the crop leads a moving hand instead of trailing it by a frame)."""
        if self.previous_joints2d is None:
            return self.joints2d
        return self.joints2d + (self.joints2d.mean(0) - self.previous_joints2d.mean(0))

    def observe(self, hand, landmark_model: bool = True) -> None:
        self.fed = False
        self.since_landmarks = 0 if landmark_model else self.since_landmarks + 1
        if not landmark_model:  # handedness comes from the previous hand: no new vote
            self.hand = hand
            return
        p = hand.handedness_score if hand.handedness == "right" else 1.0 - hand.handedness_score
        self._p_right += p
        self._n += 1
        mean = self._p_right / self._n
        side = "right" if mean >= 0.5 else "left"
        self.hand = dataclasses.replace(hand, handedness=side, handedness_score=max(mean, 1 - mean))


@dataclass(frozen=True)
class VideoSummary:
    """What :func:`predict_video` did: frames processed, hands registered (summed over
    frames), distinct hands followed (track ids), the annotated video and the JSON-lines
    file, and the undecodable frames skipped mid-video (:attr:`VideoReader.bad_frames`)."""

    frames: int
    successes: int
    hands: int
    video_path: Path
    jsonl_path: Path
    info: VideoInfo
    bad_frames: int = 0


@dataclass(frozen=True, eq=False)
class VideoOptions:
    """How :func:`predict_video` finds and predicts the hands and what it writes (the
    keyword arguments of the same names, documented there)."""

    hand_box: np.ndarray | None = None
    crop_box: np.ndarray | None = None
    whole_frame: bool = False
    K: np.ndarray | None = None
    left: bool | None = None
    smooth: bool = False
    smoothing: SmoothingConfig = SmoothingConfig()
    include_vertices: bool = False
    redetect_every: int = 10
    landmarks_every: int = 1

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.hand_box, self.crop_box)) + bool(self.whole_frame) > 1:
            raise InputError("give at most one of hand_box, crop_box and whole_frame")

    @property
    def one_hand(self) -> bool:
        """One hand followed from a box (:class:`HandTracker`), not hands found by the detector."""
        return self.hand_box is not None or self.crop_box is not None or self.whole_frame


@dataclass(frozen=True)
class FrameHands:
    """The hands of one frame, in the same order: ``ids`` (track ids), ``tracked`` (followed
    from the previous frame) and ``results``
    (:class:`~m3dhmr.inference.result.PredictionResult`)."""

    ids: list[int]
    tracked: list[bool]
    results: list


def predict_video(predictor, path: str | Path, video_out: str | Path, jsonl_out: str | Path, *,
                  hand_box: np.ndarray | None = None, crop_box: np.ndarray | None = None, whole_frame: bool = False,
                  K: np.ndarray | None = None, left: bool | None = None,
                  smooth: bool = False, smoothing: SmoothingConfig = SmoothingConfig(),
                  include_vertices: bool = False, redetect_every: int = 10, landmarks_every: int = 1,
                  annotate: Callable[[np.ndarray, list], np.ndarray] | None = None,
                  articulator=None, articulation_dir: str | Path | None = None,
                  progress: Callable[[int, int | None], None] | None = None) -> VideoSummary:
    """Run ``predictor`` (a :class:`~m3dhmr.inference.predictor.Predictor`) on every frame.

    Hands: found and followed by :class:`MultiHandTracker` with the predictor's
    detector (default), or one hand from a box: ``hand_box`` (4,) x, y, w, h around the
    hand in the first frame (enlarged like :meth:`Predictor.predict`'s), ``crop_box`` (4,)
    the first crop itself, or ``whole_frame`` (the whole frame as the first crop),
    followed by :class:`HandTracker`. K: (3, 3) or None (from the predictor's field of
    view); ``left``: force the hand side (None: the detector's call; right with a box).
    ``redetect_every`` and ``landmarks_every``: :class:`MultiHandTracker`'s (the landmark
    model every frame by default; N > 1 lets the network's joints carry the hands between).

    Writes ``video_out`` (each frame annotated by ``annotate(frame, results)``, default:
    every hand's mesh, skeleton, box and id) and ``jsonl_out`` (one JSON object per frame:
    ``frame``, ``time_s`` and ``hands``, each with its ``id``, ``tracked`` and the
    result), both atomically. A corrupt frame is skipped with a warning (no JSON line;
    the annotated video repeats the previous picture so it keeps the input's timing).

    ``articulator`` (:class:`m3dhmr.inference.rigging.Articulator`) with
    ``articulation_dir``: each hand id's meshes (smoothed with ``smooth``; where the
    registration failed, at its fallback depth) are fitted after the last frame and written as
    ``articulation_dir/hand_<id>/hand_anim.glb``, ``hand.bvh`` and ``pose.json``
    (:class:`~m3dhmr.inference.rigging.TrackAnimation`).

    ``progress(frames_done, frames_total)``, if given, is called after each frame (for a
    progress bar): ``frames_done`` counts the frames read so far, skipped undecodable ones
    included (the position in the video); ``frames_total`` is the container's frame count
    (:attr:`VideoReader.frame_count`, never below ``frames_done``), None when unknown.
    """
    options = VideoOptions(hand_box=hand_box, crop_box=crop_box, whole_frame=whole_frame, K=K, left=left,
                           smooth=smooth, smoothing=smoothing, include_vertices=include_vertices,
                           redetect_every=redetect_every, landmarks_every=landmarks_every)
    if (articulator is None) != (articulation_dir is None):
        raise InputError("articulator and articulation_dir go together")
    video_out, jsonl_out = Path(video_out), Path(jsonl_out)
    with VideoReader(path) as reader, atomic_path(video_out) as tmp_video, atomic_path(jsonl_out) as tmp_jsonl:
        run = _VideoRun(predictor, options, reader.info.fps, annotate, articulator)
        last = _write_frames(run, reader, tmp_video, tmp_jsonl, progress)
        if run.frames == 0:
            raise InputError(f"{path}: the video has no readable frames")
    if reader.bad_frames:
        log.warning("%s: %d frame(s) could not be decoded and were skipped", path, reader.bad_frames)
    for i, track in sorted(run.animations.items()):
        track.write(Path(articulation_dir) / f"hand_{i}", last + 1)
    # debug: m3dhmr predict prints this summary itself (once), callers have the VideoSummary.
    log.debug("%s: %d frames, %d hand track(s), %d hand(s) registered", path, run.frames, len(run.ids),
              run.successes)
    return VideoSummary(frames=run.frames, successes=run.successes, hands=len(run.ids), video_path=video_out,
                        jsonl_path=jsonl_out, info=reader.info, bad_frames=reader.bad_frames)


def _write_frames(run: "_VideoRun", reader: VideoReader, video_path: Path, jsonl_path: Path,
                  progress: Callable[[int, int | None], None] | None) -> int:
    """Predict every readable frame of ``reader``; write the annotated pictures to
    ``video_path`` (a skipped frame repeats the previous picture) and one JSON line per
    frame to ``jsonl_path``. Returns the last frame's index (-1: none)."""
    fps = reader.info.fps
    writer = None
    picture, last = None, -1
    try:
        with open(jsonl_path, "w") as lines:
            for index, frame in reader.frames():
                if picture is not None:
                    for _ in range(index - last - 1):  # skipped frames: keep the timing
                        writer.write(np.ascontiguousarray(picture[:, :, ::-1]))
                last = index
                if writer is None:
                    run.start(*frame.shape[:2])  # the tracker first: a bad box fails before the writer opens
                    writer = open_writer(video_path, fps, frame.shape[1], frame.shape[0])
                t = index / fps
                hands = run.hands(frame, index, t)
                picture = run.picture(frame, hands)
                writer.write(np.ascontiguousarray(picture[:, :, ::-1]))
                lines.write(json.dumps(_frame_record(index, t, hands, run.options.include_vertices)) + "\n")
                if progress is not None:
                    total = reader.frame_count
                    progress(index + 1, None if total is None else max(total, index + 1))
    finally:
        if writer is not None:
            writer.release()
    return last


def _frame_record(index: int, t: float, hands: FrameHands, include_vertices: bool) -> dict:
    """A frame's JSON line: ``frame``, ``time_s`` and each hand's ``id``, ``tracked`` and result."""
    return {"frame": index, "time_s": round(t, 6), "hands": [
        {"id": i, "tracked": bool(tr), **r.to_json(include_vertices=include_vertices)}
        for i, tr, r in zip(hands.ids, hands.tracked, hands.results)]}


class _VideoRun:
    """One :func:`predict_video` call's state over the frames: the tracker (made on the
    first frame, :meth:`start`), each hand id's smoother and animation, and the counts."""

    def __init__(self, predictor, options: VideoOptions, fps: float, annotate, articulator) -> None:
        self.predictor, self.options, self.fps = predictor, options, fps
        self.annotate, self.articulator = annotate, articulator
        self.tracker: HandTracker | MultiHandTracker | None = None
        self.smoothers: dict[int, TemporalSmoother] = {}
        self.animations: dict = {}  # hand id -> TrackAnimation
        self.ids: set[int] = set()
        self.frames = self.successes = 0

    def start(self, height: int, width: int) -> None:
        """The tracker, for frames of ``height`` x ``width`` (boxes checked against them)."""
        options, predictor = self.options, self.predictor
        if not options.one_hand:
            self.tracker = MultiHandTracker(predictor.detector, redetect_every=options.redetect_every,
                                            landmarks_every=options.landmarks_every)
            return
        if options.hand_box is not None:
            init = crops.square_box(crops.validate_box(options.hand_box, height, width, "--bbox"), predictor.box_scale)
        elif options.crop_box is not None:
            init = crops.validate_box(options.crop_box, height, width, "crop_box")
        else:
            init = None
        self.tracker = HandTracker(height, width, init,
                                   margin=getattr(predictor, "track_margin", crops.DEFAULT_TRACK_MARGIN))

    def hands(self, frame: np.ndarray, index: int, t: float) -> FrameHands:
        """Frame ``index`` (at ``t`` s)'s hands: followed, predicted, smoothed if asked,
        added to their animations and counted."""
        hands = self._predict(frame)
        hands = self._smooth(hands, t)
        self.ids.update(hands.ids)
        if self.articulator is not None:
            from m3dhmr.inference.rigging import TrackAnimation  # heavy: the hand models load only if asked

            for i, r in zip(hands.ids, hands.results):
                self.animations.setdefault(i, TrackAnimation(self.articulator, self.fps)).add(index, r)
        self.successes += sum(r.success for r in hands.results)
        self.frames += 1
        return hands

    def _predict(self, frame: np.ndarray) -> FrameHands:
        """Follow the hands into ``frame`` and run the network on them."""
        options, predictor, tracker = self.options, self.predictor, self.tracker
        if options.one_hand:
            tracked = [tracker.tracking]
            results = predictor.predict(frame, crop_box=tracker.box, K=options.K, left=bool(options.left))
            tracker.update(results[0].joints2d, results[0].success)
            return FrameHands(ids=[0], tracked=tracked, results=results)
        hands = tracker.update(frame)
        results = predictor.predict_hands(frame, options.K, options.left, hands=[h.hand for h in hands])
        tracker.feedback(results)
        return FrameHands(ids=[h.id for h in hands], tracked=[h.followed for h in hands], results=results)

    def _smooth(self, hands: FrameHands, t: float) -> FrameHands:
        """``hands`` with each id's results smoothed (``options.smooth``); lost ids' filters dropped."""
        for dead in set(self.smoothers) - set(hands.ids):
            del self.smoothers[dead]  # lost: a returning id would restart anyway
        if not self.options.smooth:
            return hands
        results = [self.smoothers.setdefault(i, TemporalSmoother(self.options.smoothing))(r, t)
                   for i, r in zip(hands.ids, hands.results)]
        return dataclasses.replace(hands, results=results)

    def picture(self, frame: np.ndarray, hands: FrameHands) -> np.ndarray:
        """The annotated frame (H, W, 3) RGB: ``annotate``'s, or every hand drawn with its id."""
        if self.annotate is not None:
            return self.annotate(frame, hands.results)
        return viz.draw_hands(frame, hands.results, hands.ids)
