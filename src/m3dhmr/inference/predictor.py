"""From a user's image (+ optional box and intrinsics) to a camera-space hand mesh.

Pipeline (each stage is a method, so :mod:`m3dhmr.inference.speed` can time them):

1. :meth:`Predictor.prepare`: square crop of the box (the whole image without one) with
   the training crop maths (:func:`m3dhmr.inference.crops.crop_hand`), resized to the
   model's ``input_size``, as RGB float in [0, 1] ``(1, 3, S, S)``; for a left hand the
   crop is flipped horizontally.
2. :meth:`Predictor.run_network`: the network (PyTorch or ONNX Runtime) -> root-relative
   vertices and joints (metres) and 2D joints (crop pixels).
3. :meth:`Predictor.finish`: left hands are mirrored back (``x -> -x`` in 3D,
   ``u -> S - 1 - u`` in the crop, faces' winding reversed), the translation is solved
   with the crop intrinsics by
   :func:`m3dhmr.geometry.registration_numpy.register_camera_space_numpy` (the NumPy
   twin of the batched torch solver: one sample at a time, torch's per-op overhead
   would cost ~15 ms a frame), and the 2D joints are mapped back to image pixels.

Left hands: the network only knows right hands. The flipped crop of a left hand looks
like a right hand seen by the mirrored crop camera (``cx -> S - 1 - cx``); mirroring the
prediction back gives the left hand in the original crop camera, so registering it
with the unflipped crop ``K`` is exact.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from m3dhmr.detect import HandDetector
from m3dhmr.detect.hands import MIN_IMAGE_SIDE
from m3dhmr.errors import InputError
from m3dhmr.geometry.crop import apply_affine_np, invert_affine
from m3dhmr.geometry.registration_numpy import register_camera_space_numpy
from m3dhmr.inference import crops
from m3dhmr.inference.networks import BACKENDS, Backend, NetworkOutput, OnnxNetwork, TorchNetwork, check_device
from m3dhmr.inference.quality import hand_quality, landmarks_3d
from m3dhmr.inference.quantize import cached_network_file, check_runtime_precision
from m3dhmr.inference.result import PredictionResult

log = logging.getLogger(__name__)

#: Images with more pixels are searched for hands on a copy downscaled to about this many
#: (the palm detector sees a 192-px letterbox anyway): on a 12,000 x 9,000 photo without a
#: hand the search at full size took 10 s and 1.4 GB more memory (an edge-padded copy), on
#: the copy 2.6 s and 0.3 GB (2 cores). The network's crops still come from the full image.
DETECT_MAX_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class PreparedInput:
    """A prepared crop: images (1, 3, S, S) float32 RGB in [0, 1] (flipped when ``left``),
    the :class:`~m3dhmr.inference.crops.HandCrop` (unflipped), the image's (3, 3) K and size."""

    images: np.ndarray
    crop: crops.HandCrop
    K: np.ndarray
    image_size: tuple[int, int]
    left: bool


def _check_image(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB of at least the detector's minimum side, whatever the path (a
    1 x 1 image with a box would otherwise give a confident hand)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        hint = (" (float images in [0, 1]: m3dhmr.inference.images.to_rgb_uint8(image, bgr=False))"
                if np.issubdtype(image.dtype, np.floating) else "")
        raise InputError(f"image must be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape} "
                         f"(use m3dhmr.inference.images.load_image to convert files){hint}")
    if min(image.shape[:2]) < MIN_IMAGE_SIDE:
        raise InputError(f"image of {image.shape[1]} x {image.shape[0]} px is too small to find hands in "
                         f"(at least {MIN_IMAGE_SIDE} px a side)")
    return image


class ColorOrderWarning(UserWarning):
    """An image given as RGB looks like OpenCV's BGR (see :meth:`Predictor.predict`)."""


COLOR_ORDERS = (None, "rgb", "bgr")
#: Median red minus blue (0..255) at a found hand's landmarks below which the image is
#: taken for BGR. Skin is redder than blue in every tone and light: on 104 sign-language
#: photos the median was 42 to 74 in RGB and -41 to -74 in BGR.
BGR_RED_MINUS_BLUE = -15.0

_BGR_HINT = ("it looks like OpenCV's BGR order (cv2.imread): pass color_order=\"bgr\" or convert it with "
             "cv2.cvtColor(image, cv2.COLOR_BGR2RGB); color_order=\"rgb\" silences this check")


def _to_rgb(image: np.ndarray, color_order: str | None) -> np.ndarray:
    """The checked (H, W, 3) uint8 image in RGB order (a copy with the channels swapped for "bgr")."""
    if color_order not in COLOR_ORDERS:
        raise InputError(f"color_order must be None, 'rgb' or 'bgr', got {color_order!r}")
    image = _check_image(image)
    return np.ascontiguousarray(image[:, :, ::-1]) if color_order == "bgr" else image


def _intrinsics(K, height: int, width: int, fov_deg: float) -> np.ndarray:
    """(3, 3) K for an ``H x W`` image: the given one, checked, or the default from ``fov_deg``."""
    if K is None:
        return crops.default_intrinsics(height, width, fov_deg)
    return crops.check_intrinsics(crops.intrinsics_from_values(K, "K"), height, width, "K")


def _scale_hand(hand, sx: float, sy: float):
    """A :class:`m3dhmr.detect.DetectedHand` found in an image resized by (sx, sy), in the
    original image's pixels (pixel centres at integers: ``u -> (u + 0.5) / sx - 0.5``)."""
    s = np.array([sx, sy])
    box = np.concatenate([(hand.box[:2] + 0.5) / s - 0.5, hand.box[2:] / s])
    sq = hand.square
    square = dataclasses.replace(sq, cx=(sq.cx + 0.5) / sx - 0.5, cy=(sq.cy + 0.5) / sy - 0.5,
                                 side=sq.side / (0.5 * (sx + sy)))
    # depth is in the landmark crop's pixels (relative to square.side): unchanged.
    return dataclasses.replace(hand, box=box, landmarks=(hand.landmarks + 0.5) / s - 0.5, square=square)


class Predictor:
    """Runs a trained network on users' images.

    Args:
        network: a callable ``images (B, 3, S, S) float32 -> NetworkOutput``
            (:class:`TorchNetwork` or :class:`OnnxNetwork`).
        faces: (F, 3) right-hand mesh faces.
        input_size: crop side S the network expects.
        fov_deg: horizontal field of view assumed when no K is given
            (:data:`m3dhmr.inference.crops.DEFAULT_FOV_DEG`).
    """

    def __init__(self, network, faces: np.ndarray, input_size: int,
                 fov_deg: float = crops.DEFAULT_FOV_DEG, backend: Backend = "torch",
                 box_scale: float = crops.DEFAULT_BOX_SCALE,
                 track_margin: float = crops.DEFAULT_TRACK_MARGIN, template: str = "open_hand") -> None:
        self.network = network
        self.template = str(template)  # the network's hand template: what articulation fits
        self._articulator = None
        self.faces = np.asarray(faces, dtype=np.int64)
        self.input_size = int(input_size)
        self.fov_deg = float(fov_deg)
        self.backend = backend
        # How a tight hand box and tracked landmarks become crops like the training ones.
        self.box_scale = float(box_scale)
        self.track_margin = float(track_margin)
        self._detector = None
        if not (self.box_scale > 0 and self.track_margin > 0):
            raise InputError(f"box_scale and track_margin must be > 0, got {box_scale}, {track_margin}")
        crops.default_intrinsics(2, 2, self.fov_deg)  # validates the field of view early

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, backend: Backend = "torch", onnx_path: str | Path | None = None,
                        device: str = "cpu", threads: int | None = None,
                        fov_deg: float = crops.DEFAULT_FOV_DEG, template: str | None = None,
                        precision: str = "fp32") -> "Predictor":
        """Load a checkpoint; with ``backend="onnxruntime"`` the network runs from ``onnx_path``
        (exported once into the per-user ONNX cache when None:
        :func:`m3dhmr.inference.onnx_export.cached_onnx`); ``template`` replaces the
        hand template the checkpoint names (see :func:`m3dhmr.hand.load_template`);
        ``precision`` "fp32" or "int8" (see :meth:`from_model`)."""
        # heavy: model_io and pretrained build models (torchvision); looked up when called, tests replace them
        from m3dhmr.model_io import load_model_from_checkpoint

        if backend not in BACKENDS:
            raise InputError(f"--backend must be one of {list(BACKENDS)}, got {backend!r}")
        check_runtime_precision(precision, backend, device)
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
        model, exp = load_model_from_checkpoint(checkpoint, "cpu" if backend == "onnxruntime" else device,
                                                template=template)
        return cls.from_model(model, backend=backend, onnx_path=onnx_path, device=device, threads=threads,
                              fov_deg=fov_deg, augment=exp.data.augment, precision=precision)

    @classmethod
    def from_pretrained(cls, name: str | None = None, backend: Backend = "torch",
                        onnx_path: str | Path | None = None, device: str = "cpu", threads: int | None = None,
                        fov_deg: float = crops.DEFAULT_FOV_DEG, precision: str = "fp32") -> "Predictor":
        """The model that ships with the package (:data:`m3dhmr.pretrained.DEFAULT_MODEL`
        unless ``name`` is given), loaded offline; see ``docs/MODEL_CARD.md`` for what it is.
        ``precision`` "fp32" or "int8" (see :meth:`from_model`)."""
        from m3dhmr.pretrained import DEFAULT_MODEL, load_pretrained

        if backend not in BACKENDS:
            raise InputError(f"--backend must be one of {list(BACKENDS)}, got {backend!r}")
        check_runtime_precision(precision, backend, device)
        model, exp = load_pretrained(name or DEFAULT_MODEL, "cpu" if backend == "onnxruntime" else device)
        return cls.from_model(model, backend=backend, onnx_path=onnx_path, device=device, threads=threads,
                              fov_deg=fov_deg, augment=exp.data.augment, precision=precision)

    @classmethod
    def from_model(cls, model: torch.nn.Module, backend: Backend = "torch", onnx_path: str | Path | None = None,
                   device: str = "cpu", threads: int | None = None,
                   fov_deg: float = crops.DEFAULT_FOV_DEG, augment=None, precision: str = "fp32") -> "Predictor":
        """Wrap an :class:`m3dhmr.models.M3DHMR` (see :meth:`from_checkpoint`); ``augment``, the
        model's training :class:`~m3dhmr.data.augment.AugmentConfig`, sets the box enlargement
        and tracking margin (:func:`m3dhmr.inference.crops.training_crop_scales`).

        ``precision="int8"`` runs the statically quantised network
        (:mod:`m3dhmr.inference.quantize`; made once per model into the ONNX cache, about a
        minute of calibration) and needs ``backend="onnxruntime"`` on the CPU: the choice
        of backend stays the caller's, so asking for int8 with PyTorch is an error, not a
        silent switch. A given ``onnx_path`` must record that precision (files without a
        record count as fp32)."""
        if backend not in BACKENDS:
            raise InputError(f"--backend must be one of {list(BACKENDS)}, got {backend!r}")
        check_runtime_precision(precision, backend, device)
        check_device(device, backend)
        size = int(model.cfg.input_size)
        faces = model.faces.cpu().numpy()
        if backend == "torch":
            network = TorchNetwork(model, device)
        else:
            if onnx_path is None:
                # Exported once per model into the per-user cache (M3DHMR_CACHE_DIR); where
                # that cannot be written, a temporary export that may go once the session
                # holds the graph in memory.
                with cached_network_file(model.cpu(), precision=precision) as path:
                    network = OnnxNetwork(path, threads=threads, device=device)
            else:
                network = OnnxNetwork(onnx_path, threads=threads, device=device)
                if network.precision != precision:
                    raise InputError(f"{onnx_path}: is a {network.precision} model, not {precision} (export it with "
                                     f"m3dhmr export-onnx --precision {precision}, or ask for {network.precision})")
            if network.input_size is not None and network.input_size != size:
                raise InputError(f"{onnx_path}: ONNX input is {network.input_size} px but the checkpoint's "
                                 f"model.input_size is {size}; export this checkpoint again")
        margin, box_scale = (crops.DEFAULT_TRACK_MARGIN, crops.DEFAULT_BOX_SCALE) if augment is None \
            else crops.training_crop_scales(augment)
        return cls(network, faces, size, fov_deg=fov_deg, backend=backend, box_scale=box_scale, track_margin=margin,
                   template=getattr(model.cfg, "template", "open_hand"))

    # ------------------------------------------------------------------ stages

    def prepare(self, image: np.ndarray, crop_box=None, K: np.ndarray | None = None,
                left: bool = False) -> PreparedInput:
        """Crop ``image`` (H, W, 3) uint8 RGB to the square ``crop_box`` (x, y, w, h; squared
        about its centre, not enlarged; default: the whole image) -> :class:`PreparedInput`."""
        image = _check_image(image)
        H, W = image.shape[:2]
        K = _intrinsics(K, H, W, self.fov_deg)
        box = crops.full_image_box(H, W) if crop_box is None else crops.validate_box(crop_box, H, W, "crop_box")
        crop = crops.crop_hand(image, box, K, self.input_size)
        pixels = crop.image[:, ::-1] if left else crop.image
        images = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32) * np.float32(1 / 255)
        return PreparedInput(images=images, crop=crop, K=K, image_size=(H, W), left=bool(left))

    def run_network(self, images: np.ndarray) -> NetworkOutput:
        """images (B, 3, S, S) float32 in [0, 1] -> :class:`NetworkOutput`."""
        if images.ndim != 4 or images.shape[1:] != (3, self.input_size, self.input_size):
            raise InputError(f"images must have shape (B, 3, {self.input_size}, {self.input_size}), got {images.shape}")
        out = self.network(images)
        for name in ("vertices", "joints3d", "joints2d"):
            if not np.all(np.isfinite(getattr(out, name))):
                raise InputError(f"the network returned NaN or inf {name} (broken checkpoint?)")
        return out

    def finish(self, prepared: PreparedInput, net: NetworkOutput, index: int = 0, *, hand_box=None,
               score: float | None = None, hand=None) -> PredictionResult:
        """Mirror back (left hands), register in camera space, map 2D joints to the image.

        ``hand_box`` and ``score`` are passed through to the result (see :class:`PredictionResult`);
        ``hand``, the :class:`m3dhmr.detect.DetectedHand` the crop came from, lets the quality
        score compare the prediction with its landmarks (:mod:`m3dhmr.inference.quality`)."""
        v = net.vertices[index].astype(np.float64)
        j3 = net.joints3d[index].astype(np.float64)
        j2 = net.joints2d[index].astype(np.float64)
        faces = self.faces
        if prepared.left:
            v = v * [-1.0, 1.0, 1.0]
            j3 = j3 * [-1.0, 1.0, 1.0]
            j2 = np.stack([self.input_size - 1 - j2[:, 0], j2[:, 1]], axis=1)
            faces = faces[:, ::-1].copy()  # mirroring turns the winding inside out
        reg = register_camera_space_numpy(j3[None], j2[None], prepared.crop.K[None], v[None])
        joints2d = apply_affine_np(j2, invert_affine(prepared.crop.affine))
        # The network's own joints against the detector's landmarks (never refined towards them).
        quality = hand_quality(joints2d, reg.joints[0],
                               float(reg.reprojection_error[0]), float(self.input_size), bool(reg.success[0]),
                               None if hand is None else landmarks_3d(hand))
        return PredictionResult(
            joints2d=joints2d,
            joints3d=reg.joints[0],
            vertices=reg.vertices[0],
            faces=faces,
            translation=reg.translation[0],
            success=bool(reg.success[0]),
            reprojection_error=float(reg.reprojection_error[0]),
            hand_box=np.asarray(prepared.crop.box if hand_box is None else hand_box, dtype=np.float64),
            crop_box=np.asarray(prepared.crop.box, dtype=np.float64),
            K=prepared.K,
            image_size=prepared.image_size,
            left=prepared.left,
            score=None if score is None else float(score),
            quality_report=quality,
        )

    @property
    def detector(self):
        """The :class:`m3dhmr.detect.HandDetector` that finds hands when no box is given
        (built on first use; assign one to change its thresholds or ``max_hands``)."""
        if self._detector is None:
            self._detector = HandDetector()
        return self._detector

    @detector.setter
    def detector(self, detector) -> None:
        self._detector = detector

    @property
    def articulation(self) -> bool:
        """Whether every result carries its fitted articulation (:attr:`PredictionResult.articulation`).

        Setting it True loads the template's hand model (:func:`m3dhmr.hand.load_hand_model`):
        the open hand, or MANO for a MANO-topology network; a template folder has none."""
        return self._articulator is not None

    @articulation.setter
    def articulation(self, on: bool) -> None:
        from m3dhmr.inference.rigging import Articulator  # heavy: the hand models (scipy.sparse) load only if asked

        self._articulator = Articulator(self.template) if on else None

    def _articulate(self, results: list[PredictionResult]) -> list[PredictionResult]:
        return results if self._articulator is None else self._articulator.attach(results)

    def predict(self, image: np.ndarray, *, hand_box=None, crop_box=None, K: np.ndarray | None = None,
                left: bool | None = None, color_order: str | None = None) -> list[PredictionResult]:
        """The hands in ``image``, always as a list of :class:`PredictionResult`.

        image: (H, W, 3) uint8 in RGB order (``color_order="bgr"`` for ``cv2.imread``'s);
        K: (3, 3) or (fx, fy, cx, cy) or None (from :attr:`fov_deg`).

        - No box: every hand the :attr:`detector` finds (highest presence first; empty
          when there is none), each cropped around its landmarks like the training crops
          and predicted as the detector's handedness unless ``left`` forces one.
        - ``hand_box`` (4,) x, y, w, h tight around the visible hand (a detector's or a
          user's box): squared and enlarged by :attr:`box_scale`, so the crop frames the
          hand as the model's training crops did -> one result.
        - ``crop_box`` (4,) x, y, w, h: the crop itself, squared about its centre but not
          enlarged (:func:`m3dhmr.inference.crops.full_image_box` for an image that is a
          hand crop already) -> one result.

        ``left``: True/False forces the hand side (flip, predict, mirror back); None takes
        the detector's handedness, or a right hand for a given box.

        ``color_order`` None (the default) takes the image for RGB but checks it when the
        detector runs: a :class:`ColorOrderWarning` when the found hands are bluer than
        skin ever is, or when no hand is found but the channel-swapped copy has one (an
        OpenCV BGR array passed as RGB finds fewer hands and worse meshes); "rgb" skips
        the check.
        """
        if hand_box is None and crop_box is None:
            return self.predict_hands(image, K, left, color_order=color_order)
        image = _to_rgb(image, color_order)
        if hand_box is not None and crop_box is not None:
            raise InputError("give either hand_box (around the hand) or crop_box (the crop itself), not both")
        crop = crops.square_box(hand_box, self.box_scale) if hand_box is not None else crop_box
        prepared = self.prepare(image, crop, K, bool(left))
        return self._articulate([self.finish(prepared, self.run_network(prepared.images), hand_box=hand_box)])

    def __repr__(self) -> str:
        return (f"Predictor(backend={self.backend!r}, template={self.template!r}, input_size={self.input_size}, "
                f"fov_deg={self.fov_deg:g}, box_scale={self.box_scale:g}, articulation={self.articulation})")

    def _check_color_order(self, image: np.ndarray, hands: list) -> None:
        """Warn (:class:`ColorOrderWarning`) when ``image``, taken for RGB, looks BGR: the
        found hands are bluer than skin (:data:`BGR_RED_MINUS_BLUE`), or none was found but
        the channel-swapped copy has one (a second detector pass, only for images without
        a hand: ``predict(cv2.imread(path))`` missed a third of the sign-language photos)."""
        if hands:
            H, W = image.shape[:2]
            lm = np.concatenate([np.asarray(h.landmarks) for h in hands])
            x, y = (np.clip(np.round(lm[:, k]), 0, n - 1).astype(int) for k, n in ((0, W), (1, H)))
            px = image[y, x].astype(np.float64)
            if np.median(px[:, 0] - px[:, 2]) < BGR_RED_MINUS_BLUE:
                warnings.warn(f"the hands found are bluer than skin: {_BGR_HINT}", ColorOrderWarning, stacklevel=4)
        elif self._detect(np.ascontiguousarray(image[:, :, ::-1])):
            warnings.warn(f"no hand found, but the image with red and blue swapped has one: {_BGR_HINT}",
                          ColorOrderWarning, stacklevel=4)

    def _detect(self, image: np.ndarray) -> list:
        """The :attr:`detector`'s hands in ``image``; a huge image is searched on a downscaled
        copy (:data:`DETECT_MAX_PIXELS`), the hands mapped back to its pixels."""
        H, W = image.shape[:2]
        s = (DETECT_MAX_PIXELS / (H * W)) ** 0.5
        if s >= 1:
            return self.detector.detect(image)
        w, h = max(1, round(W * s)), max(1, round(H * s))
        small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        return [_scale_hand(hand, w / W, h / H) for hand in self.detector.detect(small)]

    def predict_batch(self, images, hand_boxes, K: np.ndarray | None = None, left: bool = False,
                      batch_size: int = 32, color_order: str | None = None) -> list[PredictionResult]:
        """One hand per image, the network run on ``batch_size`` crops at a time.

        images: sequence of (H, W, 3) uint8 RGB (sizes may differ; ``color_order`` as in
        :meth:`predict`); hand_boxes: one (4,) x, y, w, h box around the hand per image
        (``hand_box`` of :meth:`predict`); K: one (3, 3) for all images or None (each
        image's from ``fov_deg``); left: every hand's side -> one result per image.
        """
        images = [_to_rgb(im, color_order) for im in images]
        hand_boxes = list(hand_boxes)
        if len(images) != len(hand_boxes):
            raise InputError(f"predict_batch: {len(images)} images but {len(hand_boxes)} hand boxes")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        out: list[PredictionResult] = []
        for start in range(0, len(images), batch_size):
            chunk = range(start, min(start + batch_size, len(images)))
            prepared = [self.prepare(images[i], crops.square_box(hand_boxes[i], self.box_scale), K, left)
                        for i in chunk]
            net = self.run_network(np.concatenate([p.images for p in prepared]))
            out += self._articulate([self.finish(p, net, k, hand_box=hand_boxes[i])
                                     for k, (p, i) in enumerate(zip(prepared, chunk))])
        return out

    def predict_hands(self, image: np.ndarray, K: np.ndarray | None = None, left: bool | None = None,
                      hands=None, color_order: str | None = None) -> list[PredictionResult]:
        """Predict every hand in ``image``: those the :attr:`detector` finds, or the given
        ``hands`` (:class:`m3dhmr.detect.DetectedHand` list, e.g. tracked ones), in one
        network batch. See :meth:`predict` for ``K``, ``left`` and ``color_order``."""
        image = _to_rgb(image, color_order)
        if K is not None:  # a bad K is an error even when no hand is found
            K = _intrinsics(K, *image.shape[:2], self.fov_deg)
        if hands is None:
            hands = self._detect(image)
            if color_order is None:
                self._check_color_order(image, hands)
        if not hands:
            return []
        prepared = [self.prepare(image, crops.square_box(h.box, self.track_margin), K,
                                 h.left if left is None else bool(left)) for h in hands]
        net = self.run_network(np.concatenate([p.images for p in prepared]))
        return self._articulate([self.finish(p, net, i, hand_box=h.box, score=h.score, hand=h)
                                 for i, (p, h) in enumerate(zip(prepared, hands))])
