"""End-to-end speed of :class:`~m3dhmr.inference.predictor.Predictor`, per stage and backend.

Stages of one frame at batch 1 (decoding excluded: a synthetic image is reused):

- ``preprocess``: square crop of the box + resize to the model's input size + float
  conversion (:meth:`Predictor.prepare`);
- ``network``: PyTorch or ONNX Runtime (:meth:`Predictor.run_network`);
- ``registration``: camera-space translation and mapping back to image pixels
  (:meth:`Predictor.finish`).

Whole images (:func:`run_whole_image_bench`): the packaged hand detector finds the hand
in a 640 x 480 frame (``detection``: palm detector + landmark model), then the same
three stages run on its crop (``hand``); ``detect`` runs the palm detector on every
frame, ``track`` follows the hand from the previous frame's landmarks (landmark model
only), as videos do.

int8 against fp32 (:func:`precision_delta`): the accuracy the quantised network
(:mod:`m3dhmr.inference.quantize`) gives up, on the same synthetic benchmark images and
real photos.

Backends take turns in blocks of a few frames, so a load spike on a shared machine hits
all of them alike and their ratio stays meaningful. The first frame of each turn is run
but not timed: the other backend's idle worker threads are still spinning down then
(libgomp's, for PyTorch), which cost ONNX Runtime about 2 ms a frame when the backends
alternated every frame. Timed frames thus show each backend as a user running only that
one would see it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from m3dhmr.errors import InputError
from m3dhmr.geometry.camera import project
from m3dhmr.geometry.procrustes import align_w_scale_batch
from m3dhmr.inference import crops
from m3dhmr.inference.images import load_image

STAGES: tuple[str, ...] = ("preprocess", "network", "registration")


@dataclass(frozen=True)
class BenchResult:
    """Timings of one backend: frames timed, mean and median milliseconds per stage and
    end to end (``ms_mean["total"]``), and end-to-end frames per second (1000 / mean total)."""

    backend: str
    frames: int
    ms_mean: dict[str, float]
    ms_median: dict[str, float]

    @property
    def fps(self) -> float:
        return 1000.0 / self.ms_mean["total"]


def synthetic_frame(size: int = 224, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A (size, size, 3) uint8 RGB image with a skin-coloured blob and its (4,) box x, y, w, h."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8), (7, 7), 0)
    c = size // 2
    cv2.ellipse(img, (c, c), (size // 5, size // 4), 20, 0, 360, (224, 172, 140), -1)
    box = np.array([c - size * 0.3, c - size * 0.3, size * 0.6, size * 0.6])
    return img, box


def time_frame(predictor, image: np.ndarray, box: np.ndarray) -> dict[str, float]:
    """Milliseconds of each stage (and ``total``) for one frame."""
    t0 = time.perf_counter()
    prep = predictor.prepare(image, box)
    t1 = time.perf_counter()
    net = predictor.run_network(prep.images)
    t2 = time.perf_counter()
    predictor.finish(prep, net)
    t3 = time.perf_counter()
    return {"preprocess": 1e3 * (t1 - t0), "network": 1e3 * (t2 - t1), "registration": 1e3 * (t3 - t2),
            "total": 1e3 * (t3 - t0)}


def run_bench(predictors: dict[str, object], seconds: float = 10.0, warmup: int = 5, min_frames: int = 5,
              image_size: int = 224, block: int = 8) -> dict[str, BenchResult]:
    """Time each named predictor, in turns of ``block`` timed frames, for about ``seconds`` in all."""
    if not predictors:
        raise InputError("run_bench: no backends to time")
    if not seconds > 0:
        raise InputError(f"--seconds must be > 0, got {seconds}")
    if block < 1:
        raise InputError(f"run_bench: block must be >= 1, got {block}")
    image, box = synthetic_frame(image_size)
    for p in predictors.values():
        for _ in range(warmup):
            time_frame(p, image, box)
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in predictors}
    start = time.perf_counter()
    while True:
        for name, p in predictors.items():
            time_frame(p, image, box)  # untimed: the previous backend's threads wind down
            samples[name].extend(time_frame(p, image, box) for _ in range(block))
        n = len(next(iter(samples.values())))
        if n >= min_frames and time.perf_counter() - start >= seconds:
            break
    out = {}
    for name, rows in samples.items():
        keys = (*STAGES, "total")
        out[name] = BenchResult(
            backend=name,
            frames=len(rows),
            ms_mean={k: float(np.mean([r[k] for r in rows])) for k in keys},
            ms_median={k: float(np.median([r[k] for r in rows])) for k in keys},
        )
    return out


def network_gflop(model, input_size: int) -> float:
    """Floating-point operations of one ``(1, 3, S, S)`` crop through ``model`` in GFLOP, as
    ``torch.utils.flop_counter`` counts them (a multiply-add is 2; convolutions and matrix
    products only, which are nearly all of this network's work).

    Divided by a backend's network time it gives the rate that backend reached: what says
    whether a processor has speed left to give (the packaged model: 2.26 GFLOP a crop, of
    which 0.42 in the mesh decoder).
    """
    # deferred: torch loads only where a model is measured (this module's top stays light)
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, input_size, input_size, device=next(model.parameters()).device))
    return counter.get_total_flops() / 1e9


def format_results(results: dict[str, BenchResult], gflop: float | None = None) -> list[str]:
    """``name=value`` lines: ``fps_end_to_end_<backend>``, ``ms_<stage>_<backend>`` (means),
    and with ``gflop`` (:func:`network_gflop`) ``gflops_network_<backend>``, the rate the
    network reached (GFLOP over its median time)."""
    lines = []
    for name, r in results.items():
        lines.append(f"frames_{name}={r.frames}")
        for k in STAGES:
            lines.append(f"ms_{k}_{name}={r.ms_mean[k]:.3f}")
        lines.append(f"ms_end_to_end_{name}={r.ms_mean['total']:.3f}")
        lines.append(f"ms_end_to_end_median_{name}={r.ms_median['total']:.3f}")
        if gflop is not None and r.ms_median["network"] > 0:
            lines.append(f"gflops_network_{name}={gflop / (r.ms_median['network'] / 1000.0):.1f}")
    for name, r in results.items():
        lines.append(f"fps_end_to_end_{name}={r.fps:.2f}")
    return lines


WHOLE_IMAGE_MODES: tuple[str, ...] = ("detect", "track")


def whole_image_frame(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    """(height, width, 3) uint8 RGB: the open hand, palm to the camera, fingers up, 0.5 m
    away, rendered over a blurred noise background (the detector finds it)."""
    # heavy: the renderer (numba) loads only to draw a whole test frame
    from m3dhmr.hand import load_template
    from m3dhmr.render import render_mesh

    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8), (31, 31), 0)
    t = load_template("open_hand")
    # Rest frame (fingers +x, back of the hand +y, thumb -z) -> camera: fingers up, palm to the camera.
    R = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    v = t.vertices @ R.T
    v = v - v.mean(0) + [0.05, 0.0, 0.5]
    K = crops.default_intrinsics(height, width)
    return render_mesh(v, t.faces, K, (height, width), colors=np.array([0.85, 0.65, 0.55]),
                       background=bg).rgb_uint8()


def time_whole_frame(predictor, image: np.ndarray, previous=None) -> tuple[dict[str, float], list]:
    """Milliseconds of ``detection``, ``hand`` (crop, network, registration of every hand)
    and ``total`` for one frame; ``previous``: hands to follow instead of detecting."""
    det = predictor.detector
    t0 = time.perf_counter()
    if previous is None:
        hands = det.detect(image)
    else:
        hands = [h for h in det.track(image, previous) if h is not None]
    t1 = time.perf_counter()
    predictor.predict_hands(image, hands=hands)
    t2 = time.perf_counter()
    return {"detection": 1e3 * (t1 - t0), "hand": 1e3 * (t2 - t1), "total": 1e3 * (t2 - t0)}, hands


def run_whole_image_bench(predictor, seconds: float = 10.0, warmup: int = 3, min_frames: int = 5,
                          block: int = 8, image: np.ndarray | None = None) -> dict[str, BenchResult]:
    """Time whole frames with detection on every frame (``detect``) and with tracking
    (``track``), in turns of ``block`` frames, for about ``seconds`` in all."""
    if not seconds > 0:
        raise InputError(f"--seconds must be > 0, got {seconds}")
    image = whole_image_frame() if image is None else image
    _, first = time_whole_frame(predictor, image)
    if not first:
        raise InputError("run_whole_image_bench: the detector finds no hand in the frame")
    for _ in range(warmup):
        time_whole_frame(predictor, image)
        time_whole_frame(predictor, image, first)
    samples: dict[str, list[dict[str, float]]] = {m: [] for m in WHOLE_IMAGE_MODES}
    start = time.perf_counter()
    while True:
        samples["detect"].extend(time_whole_frame(predictor, image)[0] for _ in range(block))
        prev = first
        for _ in range(block):
            t, hands = time_whole_frame(predictor, image, prev)
            prev = hands or first  # a lost hand would end the track; the static frame never loses it
            samples["track"].append(t)
        if len(samples["track"]) >= min_frames and time.perf_counter() - start >= seconds:
            break
    keys = ("detection", "hand", "total")
    return {m: BenchResult(backend=m, frames=len(rows),
                           ms_mean={k: float(np.mean([r[k] for r in rows])) for k in keys},
                           ms_median={k: float(np.median([r[k] for r in rows])) for k in keys})
            for m, rows in samples.items()}


def format_whole_image_results(results: dict[str, BenchResult], backend: str) -> list[str]:
    """``name=value`` lines: ``ms_detection_<mode>``, ``ms_hand_<mode>``,
    ``ms_end_to_end_whole_image_<mode>``, ``fps_end_to_end_whole_image_<mode>`` and the same
    FPS named after the predictor timed, ``fps_whole_image_<mode>_<backend>`` (e.g.
    ``fps_whole_image_track_int8``)."""
    lines = []
    for m, r in results.items():
        lines.append(f"frames_whole_image_{m}={r.frames}")
        lines.append(f"ms_detection_{m}={r.ms_mean['detection']:.3f}")
        lines.append(f"ms_hand_{m}_{backend}={r.ms_mean['hand']:.3f}")
        lines.append(f"ms_end_to_end_whole_image_{m}={r.ms_mean['total']:.3f}")
    for m, r in results.items():
        lines.append(f"fps_end_to_end_whole_image_{m}={r.fps:.2f}")
        lines.append(f"fps_whole_image_{m}_{backend}={r.fps:.2f}")
    return lines


# ----------------------------------------------------------------------------- int8 against fp32

@dataclass(frozen=True)
class PrecisionDelta:
    """Accuracy of an int8 predictor next to its fp32 twin on the same inputs.

    pa_mpjpe_mm: {"fp32", "int8"} mean PA-MPJPE (mm) on ``num_synthetic`` synthetic benchmark
    images (seed 7, evaluation split, as ``m3dhmr benchmark`` renders them); err2d_px:
    {"fp32", "int8"} mean 2D-joint error (image px) against the reference 2D joints: the
    hand landmark model's on ``num_photos`` real photos when ``photos`` was given, else the
    synthetic images' true joints; diff2d_px: mean |int8 - fp32| 2D-joint distance on those
    images (an upper bound of the change in error against any reference)."""

    pa_mpjpe_mm: dict[str, float]
    err2d_px: dict[str, float]
    diff2d_px: float
    num_synthetic: int
    num_photos: int
    err2d_source: str

    @property
    def delta_pa_mpjpe_mm(self) -> float:
        return self.pa_mpjpe_mm["int8"] - self.pa_mpjpe_mm["fp32"]

    @property
    def delta_err2d_px(self) -> float:
        return self.err2d_px["int8"] - self.err2d_px["fp32"]


def precision_delta(fp32, int8, num: int = 100, photos=None, box_scale: float = 1.5) -> PrecisionDelta:
    """Compare predictors ``fp32`` and ``int8`` (:class:`~m3dhmr.inference.predictor.Predictor`)
    on the first ``num`` synthetic benchmark images (rendered in memory, crops around the true
    joints as the benchmark makes them, ``box_scale``) and, when ``photos`` (a folder; the
    sign-language digits' held-out persons for that set) is given, on ``num`` of its photos,
    each predictor on the detector's best hand of each."""
    # deferred: the accuracy check's modules (renderer, data, evaluation) load only for --precision both
    from m3dhmr.evaluation.benchmark import BENCHMARK_SEED
    from m3dhmr.inference.quantize import joints_crop_box, render_synthetic

    if num < 1:
        raise InputError(f"the accuracy check needs >= 1 image, got {num}")
    names = ("fp32", "int8")
    joints3d: dict[str, list] = {n: [] for n in names}
    joints2d: dict[str, list] = {n: [] for n in names}
    gt3d, gt2d = [], []
    for rgb, K, xyz, _ in render_synthetic(num, BENCHMARK_SEED, split=1, jpeg=True):
        for name, p in zip(names, (fp32, int8)):
            (r,) = p.predict(rgb, crop_box=joints_crop_box(xyz, K, box_scale), K=K, color_order="rgb")
            joints3d[name].append(r.joints3d)
            joints2d[name].append(r.joints2d)
        gt3d.append(xyz)
        gt2d.append(project(np.asarray(xyz, np.float64), np.asarray(K, np.float64)))
    gt = np.asarray(gt3d, np.float64)
    pa = {n: float(np.linalg.norm(align_w_scale_batch(gt, np.asarray(joints3d[n])) - gt, axis=-1).mean() * 1e3)
          for n in names}
    ref2d, source, n_photos = np.asarray(gt2d), "synthetic", 0
    if photos is not None:
        ref2d, joints2d, n_photos = _photo_joints(fp32, int8, photos, num)
        source = "photos"
    j = {n: np.asarray(joints2d[n], np.float64) for n in names}
    err = {n: float(np.linalg.norm(j[n] - ref2d, axis=-1).mean()) for n in names}
    diff = float(np.linalg.norm(j["int8"] - j["fp32"], axis=-1).mean())
    return PrecisionDelta(pa_mpjpe_mm=pa, err2d_px=err, diff2d_px=diff, num_synthetic=num, num_photos=n_photos,
                          err2d_source=source)


def _photo_joints(fp32, int8, folder, num: int):
    """Reference landmarks (N, 21, 2) and each predictor's 2D joints on up to ``num`` photos
    of ``folder`` where the detector finds a hand."""
    from m3dhmr.data.pseudo_labels import detect_best
    from m3dhmr.evaluation.real import real_photos

    paths, _ = real_photos(folder, "heldout")
    idx = np.unique(np.linspace(0, len(paths) - 1, min(num, len(paths))).round().astype(int))
    ref, joints2d = [], {"fp32": [], "int8": []}
    for i in idx:
        image = load_image(paths[i])
        hand = detect_best(fp32.detector, image)
        if hand is None:
            continue
        ref.append(np.asarray(hand.landmarks, np.float64))
        for name, p in (("fp32", fp32), ("int8", int8)):
            joints2d[name].append(p.predict_hands(image, hands=[hand], color_order="rgb")[0].joints2d)
    if not ref:
        raise InputError(f"{folder}: the detector finds no hand in the photos")
    return np.asarray(ref), joints2d, len(ref)


def format_precision_delta(d: PrecisionDelta) -> list[str]:
    """A ``#`` line saying what was compared, then ``name=value`` lines, ``int8_delta_err2d_px`` last."""
    ref = (f"the landmark model's joints on {d.num_photos} real photos" if d.err2d_source == "photos"
           else "the true joints of the synthetic images")
    return [f"# int8 vs fp32 on the same inputs: PA-MPJPE on {d.num_synthetic} synthetic benchmark images; "
            f"2D error (image px) against {ref}",
            f"pa_mpjpe_mm_fp32={d.pa_mpjpe_mm['fp32']:.4f}", f"pa_mpjpe_mm_int8={d.pa_mpjpe_mm['int8']:.4f}",
            f"err2d_px_fp32={d.err2d_px['fp32']:.4f}", f"err2d_px_int8={d.err2d_px['int8']:.4f}",
            f"int8_diff2d_px={d.diff2d_px:.4f}", f"int8_delta_pa_mpjpe_mm={d.delta_pa_mpjpe_mm:.4f}",
            f"int8_delta_err2d_px={d.delta_err2d_px:.4f}"]
