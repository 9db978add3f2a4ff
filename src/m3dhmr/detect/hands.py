"""Finding hands in whole images: MediaPipe's palm detector and hand landmarker.

The two models (Google's MediaPipe Hands, Apache-2.0; provenance and hashes in
``m3dhmr/detect/models/README.md``) ship inside the package and run on LiteRT
(``ai-edge-litert``, Google's standalone TensorFlow Lite runtime wheel, which sends no
usage data). The graph around them (anchors, weighted NMS, rotated hand regions) is in
:mod:`m3dhmr.detect.anchors` and :mod:`m3dhmr.detect.rois`.

Road of one image (H, W, 3) uint8 RGB:

1. letterbox to 192 x 192 (and square tiles of a wide image) -> palm detector -> palms
   (box, 7 keypoints, score);
2. each palm -> a rotated square around the whole hand (:func:`rois.square_from_palm`)
   -> 224 x 224 crop -> landmark model -> 21 landmarks, hand presence, handedness;
3. duplicates (two palms on one hand) are merged (:mod:`m3dhmr.detect.duplicates`: MediaPipe's
   landmark rule, box overlap, a hand drawn inside a larger one), the best ``max_hands`` kept;
4. when no hand is found, the image edge-padded by ``pad_fraction`` of its short side is
   searched the same way (tight crops: see :data:`PAD_FRACTION`).

In videos, :meth:`HandDetector.track` skips step 1 for hands seen in the previous frame:
their landmarks give the next square (:func:`rois.square_from_landmarks`).

Runtime settings (measured on a 2-core AMD EPYC, AVX2+FMA, shared with other jobs at the
time, so medians of interleaved runs; one interpreter per setting, a random input,
``invoke`` timed side by side): LiteRT's default XNNPACK delegate is 3x faster than its
built-in kernels (palm detector 20.7 vs 61.6 ms, landmark model 17.1 vs 60.9 ms under
that load); 2 threads were no faster than 1 (24.6 vs 20.7 ms and 19.2 vs 17.1 ms median
under load; best-case 11.8 vs 12.0 and 9.4 vs 10.7 ms); XNNPACK's "latest features" gave
the same outputs and time; the CompiledModel API with XNNPACK the same time as the
Interpreter, its fp16 inference flag 2x slower (no native fp16 on AVX2) and the
landmarks off by 0.15 px; YNNPACK is not in the wheel. No int8 variant of either model
ships. Hence XNNPACK, 1 thread (``threads``). The cheaper path is to run the models less
often: :class:`m3dhmr.inference.video.MultiHandTracker` (``landmarks_every``).

Handedness is reported for the image as given (not mirrored), as the person's left or
right hand; MediaPipe's own labels assume a mirrored selfie image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

import m3dhmr.detect.anchors as anc
import m3dhmr.detect.duplicates as dup
import m3dhmr.detect.rois as rois
from m3dhmr.fileio import sha256_file
from m3dhmr.errors import InputError

log = logging.getLogger(__name__)

MODEL_DIR = Path(__file__).resolve().parent / "models"
#: The packaged model files: name -> (bytes, SHA-256); checked before a file is used.
MODEL_FILES: dict[str, tuple[int, str]] = {
    "hand_detector.tflite": (2_339_878, "945f713bc23570bd4ed60f848c401dc8eaf95713183d43ba14cf12e467d27a7d"),
    "hand_landmarks_detector.tflite": (5_478_949,
                                       "6acda74af3fbf40e68265c20c7394b2bad81a16a481dcd79ad7a081887c3d6b9"),
}
DETECTOR_SIZE = 192
LANDMARK_SIZE = 224
#: Images longer than this times their short side are also searched in square tiles.
TILE_ASPECT = 1.5
#: At most this many tiles per image (one palm-detector run each): square tiles up to an
#: aspect ratio of (MAX_TILES + 1) / 2 = 4.5, longer tiles beyond (see :func:`tile_views`).
MAX_TILES = 8
#: Edge padding of the second look at an image where no hand was found, as a fraction of
#: its short side. The palm detector was trained on hands inside a scene and misses hands
#: in tight crops where hand and forearm fill the frame: measured on 104 sign-language digit
#: photos (100 x 100 px, every 20th file) a hand in 87 % of them as they are, 79 % upscaled
#: x2, 99 % edge-padded by 25 %, 100 % by 50 %, 99 % by 100 %, 89 % padded by 50 % with a
#: constant grey (edge padding continues the background and the forearm).
PAD_FRACTION = 0.5
#: Images with a side below this are rejected: the detector sees a hand as >= ~20 px.
MIN_IMAGE_SIDE = 32

Handedness = Literal["left", "right"]


@dataclass(frozen=True)
class DetectedHand:
    """One hand found in an image (pixels of that image, x right, y down).

    box: (4,) x, y, w, h tight around the 21 landmarks; landmarks: (21, 2) in the
    package's joint order (:mod:`m3dhmr.conventions`, the same as MediaPipe's);
    depth: (21,) landmark depth relative to the wrist, in the landmark crop's pixels
    (MediaPipe's z; smaller is nearer); handedness: "left" or "right" hand of the person;
    handedness_score: its probability in [0.5, 1]; score: the landmark model's hand
    presence in [0, 1]; square: the rotated region the landmarks were read from.
    """

    box: np.ndarray
    landmarks: np.ndarray
    depth: np.ndarray
    handedness: Handedness
    handedness_score: float
    score: float
    square: rois.RotatedSquare

    @property
    def left(self) -> bool:
        return self.handedness == "left"

def model_path(name: str, model_dir: Path = MODEL_DIR) -> Path:
    """Path of a packaged model file, after checking its size and SHA-256."""
    if name not in MODEL_FILES:
        raise InputError(f"unknown detector model {name!r}; packaged: {sorted(MODEL_FILES)}")
    path = Path(model_dir) / name
    size, digest = MODEL_FILES[name]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the packaged hand detector model is missing; reinstall m3dhmr")
    if path.stat().st_size != size or sha256_file(path) != digest:
        raise InputError(f"{path}: size or SHA-256 does not match the pinned hash (damaged file); reinstall m3dhmr")
    return path


def _interpreter(path: Path, threads: int | None):
    # heavy: LiteRT loads with the first detector, so importing this module stays light
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise ImportError("hand detection needs LiteRT: pip install ai-edge-litert") from e
    with _native_stderr_silenced():  # LiteRT prints an INFO line per interpreter to the C stderr
        it = Interpreter(model_path=str(path), num_threads=threads or 1)
        it.allocate_tensors()
    return it


@contextlib.contextmanager
def _native_stderr_silenced():
    """Send file descriptor 2 to /dev/null for the block (Python errors still raise)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. captured): nothing to hide
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def check_image(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB of at least :data:`MIN_IMAGE_SIDE` px, else a ValueError saying why."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"image must be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape} "
                         "(m3dhmr.load_image converts grayscale, RGBA and 16-bit files)")
    if min(image.shape[:2]) < MIN_IMAGE_SIDE:
        raise InputError(f"image of {image.shape[1]} x {image.shape[0]} px is too small to find hands in "
                         f"(at least {MIN_IMAGE_SIDE} px a side)")
    return image


class HandDetector:
    """Finds hands, their 21 landmarks and handedness in RGB images.

    Args:
        max_hands: most hands returned per image (highest presence first).
        min_detection_score: palm detector score threshold.
        min_presence: landmark model hand-presence threshold (below it, no hand; in
            tracking, the hand is lost).
        threads: CPU threads of each model (default 1: the models take ~5-8 ms each).
        tiles: also look at square tiles of wide or tall images (see :meth:`detect_palms`).
        pad_fraction: where no hand is found, look again at the image edge-padded by this
            fraction of its short side (:data:`PAD_FRACTION`; 0: never).
    """

    def __init__(self, max_hands: int = 4, min_detection_score: float = 0.5, min_presence: float = 0.5,
                 threads: int | None = None, nms_iou: float = 0.3, duplicate_iou: float = 0.5,
                 tiles: bool = True, pad_fraction: float = PAD_FRACTION) -> None:
        if max_hands < 1:
            raise InputError(f"max_hands must be >= 1, got {max_hands}")
        for name, v in (("min_detection_score", min_detection_score), ("min_presence", min_presence)):
            if not 0.0 <= v <= 1.0:
                raise InputError(f"{name} must be in [0, 1], got {v}")
        self.max_hands = int(max_hands)
        self.min_detection_score = float(min_detection_score)
        self.min_presence = float(min_presence)
        self.nms_iou, self.duplicate_iou = float(nms_iou), float(duplicate_iou)
        self.tiles = bool(tiles)
        if not 0.0 <= pad_fraction <= 2.0:
            raise InputError(f"pad_fraction must be in [0, 2], got {pad_fraction}")
        self.pad_fraction = float(pad_fraction)
        self._palm = _interpreter(model_path("hand_detector.tflite"), threads)
        self._hand = _interpreter(model_path("hand_landmarks_detector.tflite"), threads)
        self._anchors = anc.ssd_anchor_centres()
        self._palm_in = self._palm.get_input_details()[0]["index"]
        outs = {tuple(d["shape"][1:]): d["index"] for d in self._palm.get_output_details()}
        self._palm_boxes, self._palm_scores = outs[(len(self._anchors), 18)], outs[(len(self._anchors), 1)]
        self._hand_in = self._hand.get_input_details()[0]["index"]
        # Outputs by name: Identity (63 landmarks), _1 presence, _2 handedness, _3 world landmarks.
        byname = {d["name"]: d["index"] for d in self._hand.get_output_details()}
        self._hand_out = [byname[n] for n in ("Identity", "Identity_1", "Identity_2")]

    # ------------------------------------------------------------------ stages

    def detect_palms(self, image: np.ndarray) -> anc.Detections:
        """Palms in ``image`` (after NMS), as :class:`~m3dhmr.detect.anchors.Detections`
        in image pixels (boxes x_min, y_min, x_max, y_max; keypoints (N, 7, 2)).

        The detector sees the whole image letterboxed to 192 px, where a hand in a wide
        photo shrinks to ~25 px and is missed; so an image longer than :data:`TILE_ASPECT` times its
        short side is also seen as overlapping square tiles of the short side (``tiles``;
        at most :data:`MAX_TILES`, :func:`tile_views`), and the palms of all views are
        merged by the same weighted NMS.
        """
        image = check_image(image)
        H, W = image.shape[:2]
        views = [(0, 0, W, H)] + (tile_views(H, W) if self.tiles else [])
        found = [self.palms_in_view(image[y:y + h, x:x + w], x, y) for x, y, w, h in views]
        det = anc.Detections(np.concatenate([d.boxes for d in found]), np.concatenate([d.keypoints for d in found]),
                             np.concatenate([d.scores for d in found]))
        return anc.weighted_nms(det, self.nms_iou, max_detections=2 * self.max_hands)

    def palms_in_view(self, view: np.ndarray, x0: int, y0: int) -> anc.Detections:
        """Palms of one view ``(h, w, 3)`` uint8 RGB, a region of the image whose top-left
        corner is at ``(x0, y0)``: the palm detector's raw detections (before NMS) in image
        pixels. :meth:`detect_palms` runs it on the whole image and each tile."""
        H, W = view.shape[:2]
        s = DETECTOR_SIZE / max(H, W)
        w, h = max(1, round(W * s)), max(1, round(H * s))
        small = cv2.resize(np.ascontiguousarray(view), (w, h), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        px, py = (DETECTOR_SIZE - w) // 2, (DETECTOR_SIZE - h) // 2
        canvas = np.zeros((DETECTOR_SIZE, DETECTOR_SIZE, 3), np.float32)
        canvas[py:py + h, px:px + w] = small * np.float32(1 / 255)
        self._palm.set_tensor(self._palm_in, canvas[None])
        self._palm.invoke()
        raw_boxes = self._palm.get_tensor(self._palm_boxes)[0]
        raw_scores = self._palm.get_tensor(self._palm_scores)[0]
        det = anc.decode_boxes(raw_boxes, raw_scores, self._anchors, DETECTOR_SIZE, self.min_detection_score)
        det = anc.weighted_nms(det, self.nms_iou, max_detections=2 * self.max_hands)
        # Detector input (normalised, letterboxed) -> continuous view coordinates -> image pixel centres.
        pad, scale, origin = np.array([px, py], float), np.array([W / w, H / h]), np.array([x0, y0], float)

        def to_px(xy):
            return (xy * DETECTOR_SIZE - pad) * scale + origin - 0.5

        boxes = np.concatenate([to_px(det.boxes[:, :2]), to_px(det.boxes[:, 2:])], axis=1)
        return anc.Detections(boxes, to_px(det.keypoints), det.scores)

    def landmarks(self, image: np.ndarray, square: rois.RotatedSquare) -> DetectedHand:
        """Run the landmark model on the rotated ``square`` of ``image``."""
        H, W = image.shape[:2]
        # Downscale first when the square is much larger than the crop (bilinear warps alias).
        f = square.side / (2 * LANDMARK_SIZE)
        src, sq = image, square
        if f > 1:
            src = cv2.resize(image, (max(1, round(W / f)), max(1, round(H / f))), interpolation=cv2.INTER_AREA)
            sq = rois.RotatedSquare((square.cx + 0.5) / f - 0.5, (square.cy + 0.5) / f - 0.5, square.side / f,
                                    square.rotation)
        crop, _ = rois.crop_square(src, sq, LANDMARK_SIZE)
        A = square.crop_to_image(LANDMARK_SIZE)
        self._hand.set_tensor(self._hand_in, (crop.astype(np.float32) * np.float32(1 / 255))[None])
        self._hand.invoke()
        lm, presence, handed = (self._hand.get_tensor(i).reshape(-1) for i in self._hand_out)
        lm = lm.reshape(21, 3).astype(np.float64)
        pts = (lm[:, :2] - 0.5) @ A[:, :2].T + A[:, 2]
        # P(right hand) for the image as given (MediaPipe's labels assume a mirrored selfie
        # image; measured on rendered right hands and their mirror images).
        p_right = float(presence_to_prob(handed[0]))
        handedness: Handedness = "right" if p_right >= 0.5 else "left"
        lo, hi = pts.min(0), pts.max(0)
        return DetectedHand(box=np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]]), landmarks=pts,
                            depth=lm[:, 2] - lm[0, 2], handedness=handedness,
                            handedness_score=max(p_right, 1 - p_right), score=float(presence_to_prob(presence[0])),
                            square=square)

    # ------------------------------------------------------------------ whole images and videos

    def detect(self, image: np.ndarray, pad: bool = True, known=None) -> list[DetectedHand]:
        """Every hand in ``image`` (H, W, 3) uint8 RGB, highest presence first (at most
        ``max_hands``; an empty list when there is none). ``pad=False`` skips the second
        look at the padded image (for callers that pad themselves).

        ``known``: (4,) x, y, w, h boxes of hands the caller follows already (a tracker's);
        a palm whose centre lies in one is not given to the landmark model (it would find
        the known hand again), and the padded second look is skipped when a palm was."""
        known = [np.asarray(b, np.float64) for b in (known or [])]
        hands, skipped = self._detect_view(image, known)
        hands = self.keep_hands(hands)
        if hands or skipped or not pad or self.pad_fraction <= 0:
            return hands
        padded, p = pad_view(image, self.pad_fraction)
        known = [np.r_[b[:2] + p, b[2:]] for b in known]
        return [shift_hand(h, -p, -p) for h in self.keep_hands(self._detect_view(padded, known)[0])]

    def _detect_view(self, image: np.ndarray, known: list[np.ndarray]) -> tuple[list[DetectedHand], int]:
        """Hands of the palms found in ``image`` outside the ``known`` boxes, and how many palms were in them."""
        palms = self.detect_palms(image)
        centres = (palms.boxes[:, :2] + palms.boxes[:, 2:]) / 2
        new = [i for i in range(len(palms))
               if not any(((c := centres[i]) >= b[:2]).all() and (c <= b[:2] + b[2:]).all() for b in known)]
        return ([self.landmarks(image, rois.square_from_palm(palms.boxes[i], palms.keypoints[i])) for i in new],
                len(palms) - len(new))

    def track(self, image: np.ndarray, previous: list[DetectedHand]) -> list[DetectedHand | None]:
        """Each hand of the previous frame, followed into ``image`` from its landmarks
        (None where it is lost: presence below ``min_presence``)."""
        image = check_image(image)
        out: list[DetectedHand | None] = []
        for hand in previous:
            new = self.landmarks(image, rois.square_from_landmarks(hand.landmarks))
            out.append(new if new.score >= self.min_presence else None)
        return out

    def keep_hands(self, hands: list[DetectedHand]) -> list[DetectedHand]:
        """Hands above ``min_presence``, duplicates removed (:mod:`m3dhmr.detect.duplicates`),
        at most ``max_hands``, highest presence first."""
        hands = [h for h in hands if h.score >= self.min_presence]
        keep = dup.keep_distinct([h.landmarks for h in hands], np.array([h.score for h in hands]),
                                 self.duplicate_iou)
        return [hands[i] for i in keep[:self.max_hands]]


def tile_views(height: int, width: int, max_tiles: int = MAX_TILES) -> list[tuple[int, int, int, int]]:
    """The tiles (x, y, w, h) an image of ``height x width`` px is searched in besides the whole image.

    None when its long side is at most :data:`TILE_ASPECT` times the short one. Else
    ``n = ceil((long - short) / (short / 2)) + 1`` square tiles of the short side, spread
    evenly from end to end: neighbours overlap by half a tile, so anything up to half a
    tile long lies whole in one of them. When ``n`` would exceed ``max_tiles`` (an image
    longer than ``(max_tiles + 1) / 2`` times its short side; a 40 x 8,200 strip would
    take 409 tiles), ``max_tiles`` longer tiles, ``ceil(2 long / (max_tiles + 1))`` px along
    the long side, cover it the same way instead: half a tile is then more than half the
    short side, so whatever half a square tile holds whole, one of them does too, seen
    ``(max_tiles + 1) / 2`` times larger than in the whole image (smaller than in a square
    tile), and the detection time stays bounded for any aspect ratio. Such images are
    searched, not rejected: a hand in a thin strip can still be found.
    """
    if max_tiles < 1:
        raise InputError(f"max_tiles must be >= 1, got {max_tiles}")
    short, long_ = min(height, width), max(height, width)
    if long_ <= TILE_ASPECT * short:
        return []
    n, side = math.ceil((long_ - short) / (short / 2)) + 1, short
    if n > max_tiles:
        n, side = max_tiles, min(long_, math.ceil(2 * long_ / (max_tiles + 1)))
    starts = np.linspace(0, long_ - side, n).round().astype(int)
    return [(int(s), 0, side, short) if width > height else (0, int(s), short, side) for s in starts]


def hand_from_points(points: np.ndarray, previous: DetectedHand) -> DetectedHand:
    """A hand placed by 21 points (21, 2) image px from elsewhere (a network's 2D joints,
    the package's joint order), not by the landmark model: its box and next square come
    from ``points``, handedness and score from ``previous``; ``depth`` is NaN (unknown),
    which tells :mod:`m3dhmr.inference.quality` that no landmark model checked it."""
    p = np.asarray(points, np.float64)[:, :2]
    if p.shape != (21, 2) or not np.isfinite(p).all():
        raise InputError(f"points must be (21, 2) finite image pixels, got {p.shape}")
    lo, hi = p.min(0), p.max(0)
    return DetectedHand(box=np.r_[lo, hi - lo], landmarks=p.copy(), depth=np.full(21, np.nan),
                        handedness=previous.handedness, handedness_score=previous.handedness_score,
                        score=previous.score, square=rois.square_from_landmarks(p))


def pad_view(image: np.ndarray, fraction: float = PAD_FRACTION) -> tuple[np.ndarray, int]:
    """image (H, W, 3) edge-padded by ``round(fraction * min(H, W))`` px on each side -> (padded, pad)."""
    p = int(round(fraction * min(image.shape[:2])))
    if p <= 0:
        return image, 0
    return np.pad(image, ((p, p), (p, p), (0, 0)), mode="edge"), p


def shift_hand(hand: DetectedHand, dx: float, dy: float) -> DetectedHand:
    """``hand`` moved by (dx, dy) image pixels (box, landmarks, square)."""
    d = np.array([dx, dy])
    box = hand.box.copy()
    box[:2] += d
    square = dataclasses.replace(hand.square, cx=hand.square.cx + dx, cy=hand.square.cy + dy)
    return dataclasses.replace(hand, box=box, landmarks=hand.landmarks + d, square=square)


def presence_to_prob(x: float) -> float:
    """The landmark model's presence and handedness outputs are probabilities already
    (the model ends in a sigmoid); clipped to [0, 1] against rounding."""
    return min(max(float(x), 0.0), 1.0)


def box_iou_xywh(a, b) -> float:
    """Intersection over union of two x, y, w, h boxes."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(anc.box_iou(np.r_[a[:2], a[:2] + a[2:]][None], np.r_[b[:2], b[:2] + b[2:]][None])[0, 0])
