"""The web app's work, without the page: one uploaded photo or clip in, files and a summary out.

:class:`AppModel` holds what a server loads once (the :class:`~m3dhmr.inference.predictor.Predictor`
with its hand detector, and the articulation fit) and a work folder. :meth:`AppModel.photo`
and :meth:`AppModel.video` call the Python API (``Predictor.predict``,
:func:`~m3dhmr.inference.outputs.save_image_outputs`,
:func:`~m3dhmr.inference.video.predict_video`): the files are those ``m3dhmr predict
--articulation`` writes. Nothing here imports Gradio (:mod:`m3dhmr.app.ui` lays the page out),
so the handlers are tested without a browser.

A bad input (not an image, too many pixels, a clip too long or without a hand) raises
:class:`~m3dhmr.errors.InputError` with a message for the page, and the request's folder is
removed. A request that succeeds keeps its folder, which the page downloads from, until
:attr:`AppSettings.keep_results` newer ones exist.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from m3dhmr.detect import HandDetector
from m3dhmr.errors import InputError
from m3dhmr.inference import crops
from m3dhmr.inference.crops import DEFAULT_FOV_DEG
from m3dhmr.inference.images import load_image
from m3dhmr.inference.outputs import save_image_outputs
from m3dhmr.inference.rigging import Articulator
from m3dhmr.inference.video import VideoReader, predict_video

#: Most hands the page shows (one 3D viewer each).
MAX_HANDS = 4
SIDES = ("auto", "left", "right")


@dataclass(frozen=True)
class AppSettings:
    """Limits of one server (``m3dhmr app``'s options).

    max_image_pixels: larger photos are refused (a 50-megapixel phone photo still passes).
    max_video_seconds: longer clips are refused (every frame runs the network).
    max_upload_mb: larger uploads are refused by the server before they reach a handler.
    keep_results: successful requests whose files stay on disk for the page (older ones go).
    """

    max_image_pixels: int = 60_000_000
    max_video_seconds: float = 20.0
    max_upload_mb: int = 200
    keep_results: int = 8


@dataclass(frozen=True)
class Options:
    """The page's controls: most hands to find, the detector's presence threshold in [0, 1],
    the hand side (``"auto"``: the detector's call) and the camera's horizontal field of view."""

    max_hands: int = 2
    min_score: float = 0.5
    side: str = "auto"
    fov_deg: float = DEFAULT_FOV_DEG

    def __post_init__(self) -> None:
        if not 1 <= int(self.max_hands) <= MAX_HANDS:
            raise InputError(f"the number of hands must be in [1, {MAX_HANDS}], got {self.max_hands}")
        if not 0.0 <= float(self.min_score) <= 1.0:
            raise InputError(f"the detection threshold must be in [0, 1], got {self.min_score}")
        if self.side not in SIDES:
            raise InputError(f"the hand side must be one of {list(SIDES)}, got {self.side!r}")
        if not 10.0 <= float(self.fov_deg) <= 150.0:
            raise InputError(f"the field of view must be in [10, 150] degrees, got {self.fov_deg}")

    @property
    def left(self) -> bool | None:
        """``Predictor.predict``'s ``left``: None (the detector's call), True or False."""
        return {"auto": None, "left": True, "right": False}[self.side]


@dataclass(frozen=True)
class PhotoResult:
    """One photo's outputs: ``folder`` (``result.json``, ``overlay.jpg``, ``hand_<i>/`` as
    ``m3dhmr predict`` writes them), the predictions, each hand's posed ``hand.glb`` and the
    files offered for download (``result.json``, ``hand_<i>_<side>.glb`` / ``.obj``)."""

    folder: Path
    overlay: Path
    results: list
    glbs: list[Path]
    downloads: list[Path]

    def rows(self) -> list[list]:
        """One table row per hand: index, side, detector score, quality score and flag,
        wrist position (m, camera axes), articulation fit error (mm)."""
        rows = []
        for i, r in enumerate(self.results):
            art = r.articulation
            rows.append([i, r.handedness, _round(r.score), _round(r.quality), r.quality_flag or "",
                         ", ".join(f"{v:.3f}" for v in r.translation),
                         None if art is None else round(art.error_mean_mm, 1)])
        return rows

    def summary(self) -> str:
        if not self.results:
            return ("No hand found. Lower the detection threshold, or try a photo where the whole hand "
                    "is visible with some room around it.")
        hands = "; ".join(f"hand {i}: {r.handedness}, quality {_round(r.quality)} ({r.quality_flag})"
                          for i, r in enumerate(self.results))
        return f"{len(self.results)} hand(s) found. {hands}."


@dataclass(frozen=True)
class VideoResult:
    """One clip's outputs: the annotated H.264 ``video``, ``results.jsonl`` (one line per
    frame), each hand id's animated ``.glb`` (``glbs``, for the viewers) and the downloads
    (the JSON lines, ``hand_<id>.glb`` and ``hand_<id>.bvh``)."""

    folder: Path
    video: Path
    glbs: list[Path]
    downloads: list[Path]
    frames: int
    hands: int
    registered: int

    def summary(self) -> str:
        return (f"{self.frames} frames, {self.hands} hand track(s), {self.registered} hand(s) registered; "
                f"one animated .glb and .bvh per hand id.")


def _round(x, digits: int = 2):
    return None if x is None else round(float(x), digits)


def _link(src: Path, dst: Path) -> Path:
    """``dst`` as a second name of ``src`` (a copy where links are not allowed)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) read from the file's header (no decoding), None where Pillow cannot
    tell (the OpenCV decoder then decides); a decompression bomb counts as huge."""
    try:
        from PIL import Image  # optional: imported where used, as Pillow may be missing
    except ImportError:  # Pillow comes with Gradio; without it the decoded size is checked
        return None
    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except Image.DecompressionBombError:
        return 2 ** 20, 2 ** 20
    except Exception:  # not an image Pillow knows: load_image says what is wrong
        return None


class AppModel:
    """What a server loads once, and its request handlers (one request at a time).

    Args:
        predictor: the :class:`~m3dhmr.inference.predictor.Predictor` (network and detector).
        workdir: where the requests' folders go (made if missing; the server removes it at exit).
        settings: the limits (:class:`AppSettings`).
    """

    def __init__(self, predictor, workdir: str | Path, settings: AppSettings = AppSettings()) -> None:
        self.predictor = predictor
        self.settings = settings
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.articulator = Articulator(predictor.template)
        self._kept: deque[Path] = deque()

    # ------------------------------------------------------------------ folders

    @contextmanager
    def _request(self) -> Iterator[Path]:
        """A new folder for one request: kept when the request succeeds (the oldest kept
        ones beyond :attr:`AppSettings.keep_results` are removed), removed when it fails."""
        folder = self.workdir / f"request-{uuid.uuid4().hex[:12]}"
        folder.mkdir()
        try:
            yield folder
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._kept.append(folder)
        while len(self._kept) > max(1, self.settings.keep_results):
            shutil.rmtree(self._kept.popleft(), ignore_errors=True)

    def _use(self, options: Options) -> None:
        """The detector with ``options``' number of hands and threshold (rebuilt only on a change)."""
        det = self.predictor.detector
        if (det.max_hands, det.min_presence) != (int(options.max_hands), float(options.min_score)):
            self.predictor.detector = HandDetector(max_hands=int(options.max_hands),
                                                   min_presence=float(options.min_score))

    def _check_size(self, size: tuple[int, int] | None, name: str) -> None:
        limit = self.settings.max_image_pixels
        if size is not None and size[0] * size[1] > limit:
            raise InputError(f"{name}: {size[0]} x {size[1]} pixels is more than this server takes "
                             f"({limit / 1e6:g} megapixels); scale the photo down")

    # ------------------------------------------------------------------ handlers

    def warm_up(self, image: np.ndarray) -> None:
        """One prediction and fit, so that the first user's request does not pay for them."""
        self.articulator.attach(self.predictor.predict(image, color_order="rgb"))

    def photo(self, path: str | Path | None, options: Options = Options(), name: str | None = None) -> PhotoResult:
        """Every hand in the photo at ``path`` (``name``: what messages and ``result.json``
        call it, default the file's name) -> :class:`PhotoResult`."""
        if path is None:
            raise InputError("no photo: upload one, take a webcam snapshot or click an example")
        path = Path(path)
        name = name or path.name
        self._check_size(image_size(path), name)
        with _named(path, name):
            image = load_image(path)
        H, W = image.shape[:2]
        self._check_size((W, H), name)
        self._use(options)
        K = crops.default_intrinsics(H, W, float(options.fov_deg))
        with _named(path, name):
            results = self.predictor.predict(image, K=K, left=options.left, color_order="rgb")
        results = self.articulator.attach(results)
        with self._request() as folder:
            save_image_outputs(folder, name, image, results, K)
            glbs, downloads = [], [folder / "result.json"]
            for i, r in enumerate(results):
                hand = folder / f"hand_{i}"
                glbs.append(hand / "hand.glb")
                downloads += [_link(hand / "hand.glb", folder / f"hand_{i}_{r.handedness}.glb"),
                              _link(hand / "mesh.obj", folder / f"hand_{i}_{r.handedness}.obj")]
        return PhotoResult(folder=folder, overlay=folder / "overlay.jpg", results=results, glbs=glbs,
                           downloads=downloads)

    def video(self, path: str | Path | None, options: Options = Options(), name: str | None = None,
              progress: Callable[[int, int | None], None] | None = None) -> VideoResult:
        """Every hand through the clip at ``path``, followed by id -> :class:`VideoResult`.

        ``progress(frames_done, frames_total)`` as :func:`~m3dhmr.inference.video.predict_video`'s."""
        if path is None:
            raise InputError("no clip: upload a short video")
        path = Path(path)
        name = name or path.name
        with _named(path, name), VideoReader(path) as reader:
            info = reader.info
        limit = self.settings.max_video_seconds
        seconds = info.frame_count / info.fps
        if seconds > limit:
            raise InputError(f"{name}: the clip lasts {seconds:.0f} s, longer than this server takes ({limit:g} s); "
                             "cut it shorter")
        max_frames = int(np.ceil(limit * info.fps))

        def step(done: int, total: int | None) -> None:  # the container may not know its length
            if done > max_frames:
                raise InputError(f"{name}: the clip lasts more than {limit:g} s, longer than this server takes; "
                                 "cut it shorter")
            if progress is not None:
                progress(done, total)

        self._use(options)
        K = crops.default_intrinsics(info.height, info.width, float(options.fov_deg)) \
            if info.height > 0 and info.width > 0 else None
        with self._request() as folder, _named(path, name):
            summary = predict_video(self.predictor, path, folder / "annotated.mp4", folder / "results.jsonl",
                                    K=K, left=options.left, smooth=True, articulator=self.articulator,
                                    articulation_dir=folder / "hands", progress=step)
            if summary.hands == 0:
                raise InputError(f"{name}: no hand found in its {summary.frames} frames (lower the detection "
                                 "threshold, or film the whole hand with some room around it)")
            glbs, downloads = [], [folder / "results.jsonl"]
            for hand in sorted((folder / "hands").glob("hand_*"), key=lambda p: int(p.name.split("_")[1])):
                glbs.append(hand / "hand_anim.glb")
                downloads += [_link(hand / "hand_anim.glb", folder / f"{hand.name}.glb"),
                              _link(hand / "hand.bvh", folder / f"{hand.name}.bvh")]
        return VideoResult(folder=folder, video=folder / "annotated.mp4", glbs=glbs, downloads=downloads,
                           frames=summary.frames, hands=summary.hands, registered=summary.successes)


@contextmanager
def _named(path: Path, name: str) -> Iterator[None]:
    """Input errors raised inside name the upload as the user knows it, not the server's
    temporary path."""
    try:
        yield
    except InputError as e:
        raise InputError(str(e).replace(str(path), name)) from None
    except FileNotFoundError as e:
        raise InputError(f"{name}: the upload is gone from the server; upload it again") from e
