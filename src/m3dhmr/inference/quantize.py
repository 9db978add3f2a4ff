"""Static int8 quantisation of the exported network for ONNX Runtime (QDQ, per-channel weights).

The int8 graph has the fp32 export's interface (:mod:`m3dhmr.inference.onnx_export`):
``images (B, 3, S, S)`` float32 RGB in [0, 1] -> ``vertices (B, V, 3)``, ``joints3d (B, 21, 3)``
(root-relative metres) and ``joints2d (B, 21, 2)`` (crop pixels); quantisation happens
inside it, so :class:`~m3dhmr.inference.networks.OnnxNetwork` runs either file unchanged.
``metadata_props`` record ``m3dhmr.precision`` ("int8") and ``m3dhmr.quantization``
(format, types, calibration recipe, the nodes kept in fp32).

How (:func:`quantize_onnx`): ``onnxruntime.quantization.quantize_static`` in QDQ format,
per-channel symmetric int8 weights with ``reduce_range`` (7-bit weights), uint8
activations (asymmetric, MinMax calibration), after ``quant_pre_process``. Only
:data:`INT8_OP_TYPES` of the image backbone are quantised (:func:`int8_nodes`: its
convolutions with their residual Adds, ReLUs and the stem's max-pool, so that whole
ResNet blocks stay in int8 without a Quantize/Dequantize pair around every conv); in fp32
stay the heatmap heads (their logits go through a soft-argmax with beta 20: the 2D joints
and hence the registration), the latent projection and the heatmap re-injection, and the
whole mesh decoder (spiral MatMuls, ``grid_sample`` ROI, gathers: quantising its spiral
MatMuls cost +0.9 mm PA-MPJPE and was not faster).

Why ``reduce_range``: without VNNI, x86's uint8 x int8 kernel (``vpmaddubsw``) adds pairs of
products into int16 and saturates for full 8-bit weights; with 7-bit weights it cannot.
Measured on the packaged model (convolutions only, 200 benchmark images and 200 real
photos): PA-MPJPE +0.20 mm and 0.78 px |int8 - fp32| in 2D without it, +0.04 mm and
0.19 px with it.

Calibration (:class:`CalibrationRecipe`): 256 crops rendered by the package's synthetic
generator (seed 0, training split: the benchmark uses seed 7) cropped around their
joints like the evaluation crops (rendered in ~10 s, calibrated in ~30 s), plus,
optionally, real photos (``photos``: a folder; hands found by the packaged detector and
cropped like :meth:`Predictor.predict_hands
<m3dhmr.inference.predictor.Predictor.predict_hands>`). Adding 160 sign-language photos
(other persons than the held-out ones) changed nothing measurable (+0.023 against +0.035
mm, 0.150 against 0.146 px), so the default is synthetic. The int8 file is cached like
the fp32 one (:func:`cached_int8_onnx`), its key covering the weights, opset, precision,
recipe and onnxruntime version.

Measured (packaged model ``Predictor.from_pretrained(backend="onnxruntime", precision=...)``,
the package's cached fp32 and int8 files; 2-core AMD EPYC, AVX2 + FMA, no AVX-512 / VNNI,
shared with other jobs (load 3-5), onnxruntime 1.32; batch 1, 2 threads, interleaved):

=================================================  ===========  ===================
                                                   fp32         int8
=================================================  ===========  ===================
network ms, median of 820 runs (CPU time)          30.3 (31.2)  19.7 (20.4)
network speed-up: median / CPU time / 1 thread     1            1.54 / 1.53 / 1.56
PA-MPJPE, the 1,000 synthetic benchmark images     14.094 mm    14.099 mm (+0.005)
2D error vs the landmark model, 496 real photos    3.090 px     3.099 px (+0.008)
|int8 - fp32| 2D joints on those photos            -            0.20 px mean, 0.42 p95
=================================================  ===========  ===================

The issue's 1.8x is not reached on this processor. Without VNNI, x86's int8 convolution
kernel is about 1.75x fp32's here (ORT profile, 1 thread: convolutions 30.1 ms fp32 ->
17.3 ms int8), and the ~12 ms the rest of the network takes (the decoder's MatMuls ~6
ms, gathers, element-wise ops, the soft-argmax) stay fp32, which caps the whole at
~1.5x. ONNX Runtime options measured with the int8 file: ``ORT_ENABLE_EXTENDED`` as fast
as ``ORT_ENABLE_ALL`` (1.49x against 1.55x), ``ORT_ENABLE_BASIC`` slower than fp32 (no
QDQ fusion: 0.83x), spinning worker threads slower on the shared machine (0.82x median);
with one thread per session int8 is 1.56x fp32 on one thread. Quantising more was slower
or less accurate: every op (``quantize_static`` defaults) 1.36x and +5.8 mm;
convolutions without ``reduce_range`` +0.20 mm and 0.78 px; the decoder's spiral MatMuls
+0.9 mm and slower. Calibration holds every calibrated tensor of every crop in memory
(ONNX Runtime's MinMax calibrator): the ``m3dhmr bench`` run that quantised peaked at
2.3 GB resident with the 256 default crops; its ``CalibMaxIntermediateOutputs`` option
would cap that but drops the batches it clears (onnxruntime 1.32), so it is not used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from m3dhmr.errors import InputError
from m3dhmr.fileio import atomic_path
from m3dhmr.geometry.camera import project
from m3dhmr.inference import crops, onnx_export
from m3dhmr.inference.images import load_image
from m3dhmr.inference.networks import ONNX_INPUT, ONNX_METADATA_PREFIX, ONNX_OUTPUTS, OnnxNetwork

log = logging.getLogger(__name__)

PRECISIONS: tuple[str, ...] = ("fp32", "int8")
#: Version of the int8 recipe below (bump when what is quantised, or how, changes).
QUANT_FORMAT = 1
#: Operator types quantised (inside the backbone only, see :data:`FP32_NODES`).
INT8_OP_TYPES: tuple[str, ...] = ("Conv", "Add", "Relu", "MaxPool")
#: Node-name patterns kept in fp32 although of an int8 type (module doc says why).
FP32_NODES: tuple[str, ...] = (r"/model/backbone/heatmap", r"/model/backbone/latent/",
                               r"/model/backbone/reinject_heatmaps/")
#: Only nodes under this prefix are quantised: the mesh decoder stays fp32.
INT8_SCOPE = "/model/backbone/"
#: Calibration crops fed per ONNX Runtime call.
CALIBRATION_BATCH = 16
#: Largest accepted mean |int8 - PyTorch| 2D-joint distance in crop pixels (``m3dhmr
#: export-onnx --precision int8``): the packaged model measured 0.3 px on synthetic crops,
#: a tiny random-weight test model 0.1 px; 1 px catches a broken quantisation.
INT8_TOLERANCE_PX = 1.0
#: Seed of the synthetic crops :func:`check_int8` compares on (the calibration uses 0).
CHECK_SEED = 1


def check_precision(precision: str, where: str = "precision") -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a one-line :class:`InputError`."""
    if precision not in PRECISIONS:
        raise InputError(f"{where} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return str(precision)


def check_runtime_precision(precision: str, backend: str, device: str = "cpu") -> str:
    """``precision``, checked (:func:`check_precision`) and able to run with ``backend`` on
    ``device``: int8 needs ONNX Runtime on the CPU (one-line :class:`InputError` otherwise)."""
    if check_precision(precision, "--precision") == "int8":
        if backend != "onnxruntime":
            raise InputError("--precision int8 runs with ONNX Runtime only: use --backend onnxruntime "
                             "(backend=\"onnxruntime\")")
        if str(device) != "cpu":
            raise InputError(f"--precision int8 runs on the cpu (ONNX Runtime's CPU kernels), got --device {device}")
    return str(precision)


@dataclass(frozen=True)
class CalibrationRecipe:
    """What the int8 activations' ranges are measured on.

    synthetic: crops rendered by :mod:`m3dhmr.data.synth` (seed ``seed``, training split),
    cropped around their joints with side ``box_scale`` x their extent (the evaluation crop);
    photos: an optional folder of real photos, of which ``num_photos`` spread over the
    sorted files are used (those where the detector finds a hand).
    """

    synthetic: int = 256
    seed: int = 0
    box_scale: float = 1.5
    photos: str | None = None
    num_photos: int = 128

    def __post_init__(self) -> None:
        if self.synthetic < 0 or self.num_photos < 0:
            raise InputError(f"calibration counts must be >= 0, got {self.synthetic} and {self.num_photos}")
        if self.synthetic == 0 and (self.photos is None or self.num_photos == 0):
            raise InputError("the calibration needs synthetic crops or photos")
        if not self.box_scale > 0:
            raise InputError(f"box_scale must be > 0, got {self.box_scale}")

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.photos is None:
            del d["num_photos"]
        else:
            d["photos"] = str(Path(self.photos).resolve())
        return d


#: What int8 files are calibrated on unless a recipe is given (synthetic crops only: what
#: the package can make anywhere; real photos in it changed nothing measurable, see above).
DEFAULT_RECIPE = CalibrationRecipe()


# ----------------------------------------------------------------------------- calibration crops

def render_synthetic(num: int, seed: int, split: int = 0, jpeg: bool = False) -> Iterator[tuple]:
    """The first ``num`` samples of the synthetic generator's set ``(seed, split)`` (0 training,
    1 evaluation) as ``(rgb (H, W, 3) uint8, K (3, 3), xyz (21, 3) metres, verts (V, 3))``;
    ``jpeg`` decodes each image from its JPEG bytes, as ``m3dhmr synth`` writes it (then
    ``(seed 7, split 1)`` gives the benchmark's images exactly)."""
    # heavy: the synthetic renderer (numba), the calibration data, onnx and onnxruntime load only when used
    from m3dhmr.data.synth import CHUNK
    from m3dhmr.data.synth_compose import render_range
    from m3dhmr.data.synth_encode import encode_images
    from m3dhmr.data.synth_scene import SynthConfig, HandContext

    ctx, cfg = HandContext(), SynthConfig()
    for start in range(0, num, CHUNK):
        for s in render_range(ctx, cfg, seed, split, start, min(start + CHUNK, num)):
            rgb = s.rgb
            if jpeg:
                data = encode_images(s, cfg.jpeg_quality)[0]
                rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            yield rgb, s.K, s.xyz, s.verts


def joints_crop_box(xyz: np.ndarray, K: np.ndarray, box_scale: float = 1.5) -> np.ndarray:
    """(4,) x, y, w, h of the square around the projected joints xyz (21, 3), side ``box_scale``
    x their extent: the evaluation crop of :class:`m3dhmr.data.freihand.FreiHANDDataset`."""
    from m3dhmr.data.augment import joints_box

    cx, cy, side = joints_box(project(np.asarray(xyz, np.float64), np.asarray(K, np.float64)), box_scale, 8.0)
    return np.array([cx - side / 2, cy - side / 2, side, side])


def network_input(image: np.ndarray, box, K: np.ndarray, size: int, left: bool = False) -> np.ndarray:
    """(1, 3, S, S) float32 in [0, 1]: ``image``'s square ``box`` as :meth:`Predictor.prepare
    <m3dhmr.inference.predictor.Predictor.prepare>` makes it."""
    pixels = crops.crop_hand(image, box, K, size).image
    pixels = pixels[:, ::-1] if left else pixels
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32) * np.float32(1 / 255)


def synthetic_inputs(num: int, size: int, seed: int = 0, box_scale: float = 1.5) -> np.ndarray:
    """(num, 3, S, S): rendered training-split hands (:func:`render_synthetic`) cropped around their joints."""
    out = [network_input(rgb, joints_crop_box(xyz, K, box_scale), K, size)
           for rgb, K, xyz, _ in render_synthetic(num, seed)]
    return np.concatenate(out) if out else np.zeros((0, 3, size, size), np.float32)


def photo_paths(folder: str | Path, num: int) -> list[Path]:
    """``num`` photos of ``folder`` spread evenly over its sorted images (every digit of the
    sign-language digits, whose photos are sorted by digit)."""
    from m3dhmr.evaluation.real import list_images

    paths = list_images(Path(folder))
    idx = np.unique(np.linspace(0, len(paths) - 1, min(num, len(paths))).round().astype(int))
    return [paths[i] for i in idx]


def photo_inputs(paths: Sequence[Path], size: int, detector=None, track_margin: float | None = None) -> np.ndarray:
    """(N, 3, S, S): the best hand of each photo (:func:`m3dhmr.data.pseudo_labels.detect_best`),
    cropped like :meth:`Predictor.predict_hands` (left hands flipped); photos without one are skipped."""
    from m3dhmr.data.pseudo_labels import detect_best

    if detector is None:
        from m3dhmr.detect import HandDetector

        detector = HandDetector()
    margin = crops.DEFAULT_TRACK_MARGIN if track_margin is None else track_margin
    out = []
    for p in paths:
        image = load_image(p)
        hand = detect_best(detector, image)
        if hand is not None:
            K = crops.default_intrinsics(*image.shape[:2])
            out.append(network_input(image, crops.square_box(hand.box, margin), K, size, bool(hand.left)))
    return np.concatenate(out) if out else np.zeros((0, 3, size, size), np.float32)


def calibration_images(size: int, recipe: CalibrationRecipe | None = None) -> np.ndarray:
    """(N, 3, S, S) float32 crops of ``recipe`` (default :class:`CalibrationRecipe`)."""
    recipe = recipe or DEFAULT_RECIPE
    parts = [synthetic_inputs(recipe.synthetic, size, recipe.seed, recipe.box_scale)]
    if recipe.photos is not None and recipe.num_photos:
        parts.append(photo_inputs(photo_paths(recipe.photos, recipe.num_photos), size))
        if len(parts[-1]) == 0:
            raise InputError(f"{recipe.photos}: no hand found in the calibration photos")
    return np.concatenate(parts)


# ----------------------------------------------------------------------------- quantisation

@dataclass(frozen=True)
class Int8Report:
    """int8 ONNX Runtime against PyTorch fp32 on ``num`` synthetic hand crops: max abs
    difference per output (metres, crop px) and the mean 2D-joint distance (crop px)."""

    max_abs_diff: dict[str, float]
    mean_joints2d_px: float
    num: int


def check_int8(model, path: str | Path, num: int = 8, seed: int = CHECK_SEED, threads: int | None = None) -> Int8Report:
    """Run ``model`` (PyTorch) and the int8 file ``path`` on ``num`` synthetic crops of seed
    ``seed`` (not the calibration's) -> :class:`Int8Report`."""
    images = synthetic_inputs(num, int(model.cfg.input_size), seed)
    with torch.inference_mode():
        ref = [t.numpy() for t in onnx_export.ExportWrapper(model).cpu().eval()(torch.from_numpy(images))]
    got = OnnxNetwork(path, threads=threads)(images)
    diffs = {name: float(np.abs(r - getattr(got, name)).max()) for name, r in zip(ONNX_OUTPUTS, ref)}
    mean2d = float(np.linalg.norm(ref[2] - got.joints2d, axis=-1).mean())
    return Int8Report(max_abs_diff=diffs, mean_joints2d_px=mean2d, num=num)


def int8_nodes(proto) -> list[str]:
    """Names of the nodes of ModelProto ``proto`` to quantise: :data:`INT8_OP_TYPES` under
    :data:`INT8_SCOPE`, except :data:`FP32_NODES`."""
    keep = re.compile("|".join(FP32_NODES))
    return [n.name for n in proto.graph.node
            if n.op_type in INT8_OP_TYPES and n.name.startswith(INT8_SCOPE) and not keep.match(n.name)]


class _Reader:
    """``onnxruntime.quantization.CalibrationDataReader`` over (N, 3, S, S) images, in batches."""

    def __init__(self, images: np.ndarray, batch: int = CALIBRATION_BATCH) -> None:
        self._batches = iter([{ONNX_INPUT: np.ascontiguousarray(images[i:i + batch], np.float32)}
                              for i in range(0, len(images), batch)])

    def get_next(self):
        return next(self._batches, None)


def quantization_settings() -> dict[str, Any]:
    """The fixed part of the recipe, as recorded in the metadata (``m3dhmr.quantization``)."""
    return {"version": QUANT_FORMAT, "format": "QDQ", "per_channel": True, "reduce_range": True,
            "activations": "uint8 (asymmetric, MinMax calibration)", "weights": "int8 (symmetric, per channel)",
            "op_types": list(INT8_OP_TYPES), "scope": INT8_SCOPE, "fp32_nodes": list(FP32_NODES)}


def quantize_onnx(fp32_path: str | Path, out: str | Path, images: np.ndarray,
                  recipe: CalibrationRecipe | None = None, extra_metadata: dict[str, Any] | None = None) -> Path:
    """Quantise the fp32 export ``fp32_path`` into ``out``, calibrated on ``images`` (N, 3, S, S).

    The file keeps the fp32 export's metadata with ``precision`` "int8" and ``quantization``
    (:func:`quantization_settings` + ``recipe``), plus ``extra_metadata``; it is written to a
    temporary and renamed (:func:`m3dhmr.fileio.atomic_path`).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[1] != 3 or len(images) == 0:
        raise InputError(f"calibration images must have shape (N, 3, S, S) with N >= 1, got {images.shape}")
    meta = onnx_export.read_onnx_metadata(fp32_path)
    if meta.get("precision", "fp32") != "fp32":
        raise InputError(f"{fp32_path}: is a {meta['precision']} model; quantise the fp32 export")
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="m3dhmr-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
        nodes = int8_nodes(onnx.load(str(pre), load_external_data=False))
        if not nodes:
            raise InputError(f"{fp32_path}: no {'/'.join(INT8_OP_TYPES)} node under {INT8_SCOPE} to quantise")
        q = Path(tmp) / "int8.onnx"
        quantize_static(str(pre), str(q), _Reader(images), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(INT8_OP_TYPES), nodes_to_quantize=nodes, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        proto = onnx.load(str(q))
        settings = {**quantization_settings(), "int8_nodes": len(nodes), "calibration_images": int(len(images))}
        if recipe is not None:
            settings["calibration"] = recipe.to_json()
        meta = {**meta, "precision": "int8", "quantization": settings, **(extra_metadata or {})}
        if meta.get("input_size") and meta.get("num_vertices"):
            sizes = onnx_export.axis_sizes(int(meta["input_size"]), int(meta["num_vertices"]))
            onnx_export.describe_graph(proto, sizes, meta)
        else:  # a file exported without metadata: keep its axes, add ours
            del proto.metadata_props[:]
            for key, value in meta.items():
                proto.metadata_props.add(key=ONNX_METADATA_PREFIX + key, value=json.dumps(value))
        with atomic_path(out) as tmp_out:
            onnx.save(proto, str(tmp_out))
    log.info("quantised %s to int8 (%d nodes, %d calibration crops): %s", fp32_path, len(nodes), len(images), out)
    return out


def export_int8(model, path: str | Path, opset: int, *, source: str | None = None,
                recipe: CalibrationRecipe | None = None, images: np.ndarray | None = None,
                extra_metadata: dict[str, Any] | None = None) -> Path:
    """Export ``model`` (fp32, to a temporary) and quantise it into ``path``; calibrated on
    ``images`` (N, 3, S, S) when given, else on ``recipe``'s crops (:func:`calibration_images`)."""
    onnx_export.check_opset(opset)
    if images is None:
        recipe = recipe or DEFAULT_RECIPE
        images = calibration_images(int(model.cfg.input_size), recipe)
    with tempfile.TemporaryDirectory(prefix="m3dhmr-onnx-") as tmp:
        meta = onnx_export.onnx_metadata(model, opset, source)
        fp32 = onnx_export.export_graph(model, Path(tmp) / "fp32.onnx", opset, meta)
        return quantize_onnx(fp32, path, images, recipe, extra_metadata)


def int8_cache_key(model, opset: int, recipe: CalibrationRecipe | None = None) -> str:
    """Hex SHA-256 naming ``model``'s int8 file: the fp32 key
    (:func:`~m3dhmr.inference.onnx_export.onnx_cache_key`), the precision, the recipe and
    :data:`QUANT_FORMAT`, and the onnxruntime version (its quantiser)."""
    import onnxruntime

    recipe = recipe or DEFAULT_RECIPE
    h = hashlib.sha256(onnx_export.onnx_cache_key(model, opset).encode())
    h.update(json.dumps({"precision": "int8", "recipe": recipe.to_json(), "settings": quantization_settings(),
                         "onnxruntime": onnxruntime.__version__}, sort_keys=True).encode())
    return h.hexdigest()


def cached_int8_onnx(model, opset: int, folder: Path, recipe: CalibrationRecipe | None = None) -> Path:
    """``model`` quantised once into ``folder``: ``<key[:32]>.onnx`` (key :func:`int8_cache_key`),
    reused while it parses and records that key. Raises ``OSError`` when ``folder`` cannot be written."""
    recipe = recipe or DEFAULT_RECIPE
    key = int8_cache_key(model, opset, recipe)
    path = Path(folder) / f"{key[:32]}.onnx"
    if path.is_file():
        if onnx_export.cache_entry_ok(path, key):
            log.debug("ONNX int8 cache hit: %s", path)
            return path
        log.warning("ONNX cache file %s is unreadable or stale: quantising the model again", path)
    Path(folder).mkdir(parents=True, exist_ok=True)
    onnx_export.remove_stale_cache_temporaries(Path(folder))
    log.info("quantising the network to int8 into the cache %s (once per model; calibration takes a minute)", path)
    return export_int8(model, path, opset, recipe=recipe, extra_metadata={"cache_key": key})


def export_network(model, path: str | Path, opset: int | None = None, *, source: str | None = None,
                   precision: str = "fp32", recipe: CalibrationRecipe | None = None) -> Path:
    """``model`` exported to ``path`` in ``precision``: fp32
    (:func:`~m3dhmr.inference.onnx_export.export_onnx`) or int8 (:func:`export_int8`,
    calibrated on ``recipe``'s crops)."""
    opset = onnx_export.DEFAULT_OPSET if opset is None else opset
    if check_precision(precision) == "int8":
        return export_int8(model, path, opset, source=source, recipe=recipe)
    return onnx_export.export_onnx(model, path, opset, source=source)


@contextmanager
def cached_network_file(model, opset: int | None = None, cache_dir: str | Path | None = None,
                        precision: str = "fp32", recipe: CalibrationRecipe | None = None) -> Iterator[Path]:
    """Yield ``model``'s cached ONNX file in ``precision`` (a temporary export where the cache
    cannot be written): :func:`~m3dhmr.inference.onnx_export.cached_onnx_file`, whose int8
    twin is :func:`cached_int8_onnx`."""
    opset = onnx_export.DEFAULT_OPSET if opset is None else opset
    if check_precision(precision) == "fp32":
        with onnx_export.cached_onnx_file(model, opset, cache_dir) as path:
            yield path
        return

    def cached(m, o, folder):
        return cached_int8_onnx(m, o, Path(folder) if folder is not None else onnx_export.onnx_cache_dir(), recipe)

    def export(m, path, o):
        return export_int8(m, path, o, recipe=recipe)

    with onnx_export.cached_onnx_file(model, opset, cache_dir, cached=cached, export=export) as path:
        yield path


__all__ = ["CALIBRATION_BATCH", "CHECK_SEED", "DEFAULT_RECIPE", "FP32_NODES", "INT8_OP_TYPES", "INT8_SCOPE",
           "INT8_TOLERANCE_PX", "PRECISIONS", "QUANT_FORMAT", "CalibrationRecipe", "Int8Report",
           "cached_int8_onnx", "cached_network_file", "calibration_images", "check_int8", "check_precision", "check_runtime_precision",
           "export_int8", "export_network", "int8_cache_key", "int8_nodes", "joints_crop_box", "network_input", "photo_inputs",
           "photo_paths", "quantization_settings", "quantize_onnx", "render_synthetic", "synthetic_inputs"]
