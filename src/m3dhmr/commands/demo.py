"""``m3dhmr demo``: the main job on built-in data, no downloads.

1. Renders the first ``--bench`` images of the synthetic benchmark and scores the
   packaged model on them next to the mean-pose baseline (``m3dhmr benchmark``).
2. Predicts ``--predict`` of those images with the packaged model (2D pose, mesh
   overlay, front and side renders, meshes, JSON) and puts their panels in one picture.
3. Trains a small model from random weights on a freshly rendered set
   (``configs/demo_cpu.yaml``, a few minutes on 2 CPU cores), with its learning curve on
   the set's evaluation split (CSV, TensorBoard and a PNG), then scores it on the same
   benchmark images.

Each step is the code of its own command (``benchmark``, ``predict``, ``synth``,
``train``). A second run reuses the rendered sets and a finished training run
(``--fresh`` redoes everything).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import m3dhmr
from m3dhmr.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder (default: outputs/demo)")
    parser.add_argument("--config", default="demo_cpu",
                        help="config of the model trained from scratch: a YAML or a packaged config's name "
                             "(default: demo_cpu, configs/demo_cpu.yaml)")
    parser.add_argument("--bench", type=int, default=300, help="benchmark images to score (default: 300)")
    parser.add_argument("--train", type=int, default=3000, help="synthetic training samples (default: 3000)")
    parser.add_argument("--eval", type=int, default=200, help="their evaluation samples (default: 200)")
    parser.add_argument("--max-steps", type=int, default=None, help="cap on training steps (default: the config's)")
    parser.add_argument("--predict", type=int, default=6, help="benchmark images to visualise (default: 6)")
    parser.add_argument("--workers", type=int, default=2, help="synthesis worker processes (default: 2)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the training set (the benchmark's is fixed)")
    parser.add_argument("--fresh", action="store_true", help="redo every step even if its output exists")


def _step(title: str) -> float:
    print(f"\n=== {title} ===", flush=True)
    return time.perf_counter()


def run(args: argparse.Namespace) -> int:
    """The demo's four steps (see the module docstring) and their summary; returns the exit code."""
    # heavy: each step imports what it needs (torch, cv2, ...) when it runs, so m3dhmr --help stays fast
    from m3dhmr.experiment import load_experiment, resolve_config

    config = resolve_config(args.config)
    _check_arguments(args)
    experiment = load_experiment(config)
    out: Path = args.out
    bench, data, run_dir = out / "benchmark", out / "data", out / "run"
    _discard_old_renders(bench, data, run_dir)
    timings: dict[str, float] = {}

    t = _step(f"1/4 the packaged model on {args.bench} synthetic benchmark images, next to the mean pose")
    packaged = _score(args, bench, out / "benchmark_packaged")
    timings["benchmark_s"] = time.perf_counter() - t

    t = _step(f"2/4 predicting {args.predict} benchmark images with the packaged model")
    shown = _predict_examples(bench, args.predict, out)
    timings["predict_s"] = time.perf_counter() - t

    t = _step(f"3/4 training {config.name} from random weights on {args.train} synthetic images")
    ckpt = _train_demo_model(args, experiment, data, run_dir)
    curve = _plot_curve(run_dir, out / "learning_curve.png", packaged["rest_hand"])
    timings["train_s"] = time.perf_counter() - t

    t = _step("4/4 the demo's own model on the same benchmark images")
    trained = _score(args, bench, out / "benchmark_demo_model", checkpoint=ckpt)
    timings["benchmark_demo_s"] = time.perf_counter() - t

    _report(args, packaged, trained, shown, run_dir, curve, ckpt, timings)
    return 0


def _check_arguments(args: argparse.Namespace) -> None:
    """One-line errors for sizes out of range and a training seed that is the benchmark's."""
    from m3dhmr.evaluation.benchmark import BENCHMARK_SEED

    if args.train < 1 or args.eval < 1 or args.predict < 0 or not 1 <= args.bench <= 1000:
        raise UserError("--train and --eval must be >= 1, --predict >= 0 and --bench in 1..1000")
    if args.seed == BENCHMARK_SEED:
        raise UserError(f"--seed {BENCHMARK_SEED} is the benchmark's seed; train on another")


def _discard_old_renders(bench: Path, data: Path, run_dir: Path) -> None:
    """Remove sets rendered by an older generator (version 2 and before rendered hands at
    rest): they are the demo's own, rendered again rather than scored or trained on (and
    the run trained on the old training set goes with it)."""
    for folder in (bench, data):
        if rendered_by_older_generator(folder):
            print(f"{folder} was rendered by an older synthetic-data generator; rendering it again")
            shutil.rmtree(folder)
            if folder == data and run_dir.exists():
                shutil.rmtree(run_dir)   # trained on the old set


def _score(args: argparse.Namespace, bench: Path, out: Path, checkpoint: Path | None = None) -> dict:
    """The benchmark's scores of the packaged model (or ``checkpoint``) and both baselines."""
    from m3dhmr.evaluation.benchmark import score_benchmark

    return score_benchmark(bench, args.bench, checkpoint=checkpoint, out=out, workers=args.workers)


@dataclass(frozen=True)
class _Shown:
    """What step 2 wrote: the predictions folder, its gallery and the whole picture's folder (or None)."""

    predictions: Path
    gallery: Path | None
    whole: Path | None


def _predict_examples(bench: Path, count: int, out: Path) -> _Shown:
    """Predict the first ``count`` benchmark images from detector-like boxes (every output
    of ``m3dhmr predict``, panels in one gallery), then a picture of two of them with no box."""
    from m3dhmr.evaluation.detector_boxes import detector_boxes
    from m3dhmr.inference.outputs import save_image_outputs

    pred_dir = out / "predictions"
    gallery = whole = None
    images = sorted((bench / "evaluation" / "rgb").glob("*.jpg"))[:count]
    if images:
        predictor = m3dhmr.Predictor.from_pretrained()
        boxes = detector_boxes(bench, "evaluation", [p.name for p in images])
        for path in images:
            image = m3dhmr.load_image(path)
            [result] = predictor.predict(image, hand_box=boxes[path.name])
            save_image_outputs(pred_dir / path.stem, path, image, [result], result.K)
            print(f"{path}: {result.handedness} hand, wrist at {[round(float(x), 3) for x in result.translation]} m")
        gallery = _gallery(pred_dir, [p.stem for p in images], out / "predictions.jpg")
        if len(images) >= 3:
            whole = _predict_whole_picture(predictor, images[0], images[2], out / "whole_photo")
    return _Shown(pred_dir, gallery, whole)


def _predict_whole_picture(predictor, first: Path, second: Path, folder: Path) -> Path:
    """A whole picture with two hands (``second`` mirrored into a left hand), no box: the
    packaged detector finds them and tells left from right. Returns ``folder``."""
    import numpy as np

    from m3dhmr.inference.crops import default_intrinsics
    from m3dhmr.inference.outputs import save_image_outputs

    a, b = m3dhmr.load_image(first), m3dhmr.load_image(second)[:, ::-1]
    canvas = np.full((300, 520, 3), 90, np.uint8)
    canvas[40:40 + a.shape[0], 10:10 + a.shape[1]] = a
    canvas[60:60 + b.shape[0], 286:286 + b.shape[1]] = b
    hands = predictor.predict(canvas)
    save_image_outputs(folder, "two hands", canvas, hands, hands[0].K if hands else default_intrinsics(300, 520))
    print(f"whole picture, no box: {len(hands)} hand(s) found: "
          + ", ".join(f"{h.handedness} ({h.score:.2f})" for h in hands) + f" -> {folder / 'overlay.jpg'}")
    return folder


def _train_demo_model(args: argparse.Namespace, experiment, data: Path, run_dir: Path) -> Path:
    """Render the training set (unless there) and train on it (resuming an unfinished run);
    returns the checkpoint."""
    from m3dhmr.data.synth import generate
    from m3dhmr.train.trainer import train

    if args.fresh or not (data / "synth_info.json").is_file():
        generate(data, args.train, args.eval, seed=args.seed, workers=args.workers, overwrite=True, progress=False)
    else:
        print(f"reusing {data}")
    ckpt = run_dir / "checkpoints" / "last.safetensors"
    # resume is a no-op for a finished run and completes an interrupted one.
    train(experiment, data, run_dir, resume=not args.fresh and ckpt.parent.is_dir(), overwrite=args.fresh,
          max_steps=args.max_steps, progress_bar=False)
    return ckpt


def _report(args: argparse.Namespace, packaged: dict, trained: dict, shown: _Shown, run_dir: Path, curve: Path,
            ckpt: Path, timings: dict[str, float]) -> None:
    """The closing table: both models and both baselines on the benchmark, and where everything is."""
    from m3dhmr.evaluation.benchmark import BENCHMARK_SEED

    def fmt(s: dict) -> str:
        return (f"PA-MPJPE {s['pa_mpjpe_mm']:6.2f} mm  PA-MPVPE {s['pa_mpvpe_mm']:6.2f} mm  "
                f"F@5 {s['f5']:.3f}  F@15 {s['f15']:.3f}")

    print("\n=== done ===")
    print(f"benchmark ({args.bench} images, seed {BENCHMARK_SEED}):")
    print(f"  packaged model   {fmt(packaged['model'])}")
    print(f"  demo model       {fmt(trained['model'])}   (trained here from scratch)")
    print(f"  rest hand        {fmt(packaged['rest_hand'])}   (one constant open hand: the stronger trivial baseline)")
    print(f"  mean pose        {fmt(packaged['mean_pose'])}   (the mean camera-frame pose: a blob)")
    print(f"predictions        {shown.predictions}" + (f"  (all panels: {shown.gallery})" if shown.gallery else ""))
    if shown.whole is not None:
        print(f"whole picture      {shown.whole / 'overlay.jpg'}  (hands found by the packaged detector)")
    print(f"learning curve     {curve}  (CSV: {run_dir / 'eval_metrics.csv'}; "
          f"TensorBoard: tensorboard --logdir {run_dir / 'tb'})")
    print(f"demo checkpoint    {ckpt}")
    print("timings            " + ", ".join(f"{k}={v:.0f}" for k, v in timings.items()))


def rendered_by_older_generator(folder: Path) -> bool:
    """Whether ``folder`` holds a synthetic set from an older generator version
    (:data:`m3dhmr.data.synth.SYNTH_VERSION`); False when it holds none."""
    from m3dhmr.data.synth import INFO_FILE, SYNTH_VERSION

    info = folder / INFO_FILE
    return info.is_file() and json.loads(info.read_text()).get("version") != SYNTH_VERSION


def _gallery(pred_dir: Path, stems: list[str], path: Path) -> Path | None:
    """Stack the per-image panels (input pose, overlay, front, side) into one JPEG."""
    import cv2
    import numpy as np

    from m3dhmr.inference.outputs import write_image

    rows = []
    for s in stems:
        p = pred_dir / s / "hand_0" / "panel.jpg"
        if p.is_file():
            rows.append(cv2.imread(str(p))[:, :, ::-1])
    if not rows:
        return None
    w = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, w - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    write_image(path, np.ascontiguousarray(np.concatenate(rows, axis=0)))
    return path


def _plot_curve(run_dir: Path, path: Path, baseline: dict) -> Path:
    from m3dhmr.train.validation import CSV_NAME, read_metrics_csv
    from m3dhmr.viz import plot_learning_curve

    rows = read_metrics_csv(run_dir / CSV_NAME)
    plot_learning_curve(rows, path, title="demo model on its set's evaluation split; dashed: a constant rest hand",
                        baseline={k: baseline[k] for k in ("pa_mpjpe_mm", "pa_mpvpe_mm")})
    return path
