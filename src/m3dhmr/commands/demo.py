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
import time
from pathlib import Path

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


def detector_boxes(data: Path, split: str, names: list[str]) -> dict[str, list[float]]:
    """Hand boxes like a detector's (tight around the visible hand) from the ground-truth joints.

    The joints' box is widened by ``1 / JOINTS_PER_SILHOUETTE`` about its centre, the size of
    the silhouette's box; the Predictor then enlarges it as the model's training crops were.
    """
    import numpy as np

    from m3dhmr.data.freihand import load_annotations
    from m3dhmr.geometry.camera import project
    from m3dhmr.inference.crops import JOINTS_PER_SILHOUETTE

    ann = load_annotations(data, split)
    boxes = {}
    for name in names:
        i = int(Path(name).stem)
        j = project(np.asarray(ann.xyz[i], np.float64), ann.K[i])
        lo, hi = j.min(0), j.max(0)
        c, half = (lo + hi) / 2, (hi - lo) / 2 / JOINTS_PER_SILHOUETTE
        boxes[Path(name).name] = [float(c[0] - half[0]), float(c[1] - half[1]), float(2 * half[0]), float(2 * half[1])]
    return boxes


def run(args: argparse.Namespace) -> int:
    import m3dhmr
    from m3dhmr.cli import UserError
    from m3dhmr.data.synth import generate
    from m3dhmr.evaluation.benchmark import score_benchmark
    from m3dhmr.experiment import load_experiment, resolve_config
    from m3dhmr.inference.crops import default_intrinsics
    from m3dhmr.inference.outputs import save_image_outputs
    from m3dhmr.train.trainer import train

    config = resolve_config(args.config)
    if args.train < 1 or args.eval < 1 or args.predict < 0 or not 1 <= args.bench <= 1000:
        raise UserError("--train and --eval must be >= 1, --predict >= 0 and --bench in 1..1000")
    if args.seed == 7:
        raise UserError("--seed 7 is the benchmark's seed; train on another")
    experiment = load_experiment(config)
    out: Path = args.out
    bench, data, run_dir = out / "benchmark", out / "data", out / "run"
    pred_dir = out / "predictions"
    timings: dict[str, float] = {}

    # Sets rendered by an older generator (version 2 and before rendered hands at rest) are
    # the demo's own: render them again rather than score or train on them.
    for folder in (bench, data):
        if _old_render(folder):
            print(f"{folder} was rendered by an older synthetic-data generator; rendering it again")
            import shutil

            shutil.rmtree(folder)
            if folder == data and run_dir.exists():
                shutil.rmtree(run_dir)   # trained on the old set

    t = _step(f"1/4 the packaged model on {args.bench} synthetic benchmark images, next to the mean pose")
    packaged = score_benchmark(bench, args.bench, out=out / "benchmark_packaged", workers=args.workers)
    timings["benchmark_s"] = time.perf_counter() - t

    t = _step(f"2/4 predicting {args.predict} benchmark images with the packaged model")
    gallery = None
    images = sorted((bench / "evaluation" / "rgb").glob("*.jpg"))[: args.predict]
    if images:
        predictor = m3dhmr.Predictor.from_pretrained()
        boxes = detector_boxes(bench, "evaluation", [p.name for p in images])
        for path in images:
            image = m3dhmr.load_image(path)
            [result] = predictor.predict(image, hand_box=boxes[path.name])
            save_image_outputs(pred_dir / path.stem, path, image, [result], result.K)
            print(f"{path}: {result.handedness} hand, wrist at {[round(float(x), 3) for x in result.translation]} m")
        gallery = _gallery(pred_dir, [p.stem for p in images], out / "predictions.jpg")
    whole = None
    if len(images) >= 3:
        # A whole picture with two hands (the second mirrored into a left hand), no box:
        # the packaged detector finds them and tells left from right.
        import numpy as np

        a, b = m3dhmr.load_image(images[0]), m3dhmr.load_image(images[2])[:, ::-1]
        canvas = np.full((300, 520, 3), 90, np.uint8)
        canvas[40:40 + a.shape[0], 10:10 + a.shape[1]] = a
        canvas[60:60 + b.shape[0], 286:286 + b.shape[1]] = b
        hands = predictor.predict(canvas)
        whole = out / "whole_photo"
        save_image_outputs(whole, "two hands", canvas, hands, hands[0].K if hands else default_intrinsics(300, 520))
        print(f"whole picture, no box: {len(hands)} hand(s) found: "
              + ", ".join(f"{h.handedness} ({h.score:.2f})" for h in hands) + f" -> {whole / 'overlay.jpg'}")
    timings["predict_s"] = time.perf_counter() - t

    t = _step(f"3/4 training {config.name} from random weights on {args.train} synthetic images")
    if args.fresh or not (data / "synth_info.json").is_file():
        generate(data, args.train, args.eval, seed=args.seed, workers=args.workers, overwrite=True, progress=False)
    else:
        print(f"reusing {data}")
    ckpt = run_dir / "checkpoints" / "last.safetensors"
    # resume is a no-op for a finished run and completes an interrupted one.
    train(experiment, data, run_dir, resume=not args.fresh and ckpt.parent.is_dir(), overwrite=args.fresh,
          max_steps=args.max_steps, progress_bar=False)
    curve = _plot_curve(run_dir, out / "learning_curve.png", packaged["rest_hand"])
    timings["train_s"] = time.perf_counter() - t

    t = _step("4/4 the demo's own model on the same benchmark images")
    trained = score_benchmark(bench, args.bench, checkpoint=ckpt, out=out / "benchmark_demo_model",
                              workers=args.workers)
    timings["benchmark_demo_s"] = time.perf_counter() - t

    def fmt(s: dict) -> str:
        return (f"PA-MPJPE {s['pa_mpjpe_mm']:6.2f} mm  PA-MPVPE {s['pa_mpvpe_mm']:6.2f} mm  "
                f"F@5 {s['f5']:.3f}  F@15 {s['f15']:.3f}")

    print("\n=== done ===")
    print(f"benchmark ({args.bench} images, seed 7):")
    print(f"  packaged model   {fmt(packaged['model'])}")
    print(f"  demo model       {fmt(trained['model'])}   (trained here from scratch)")
    print(f"  rest hand        {fmt(packaged['rest_hand'])}   (one constant open hand: the stronger trivial baseline)")
    print(f"  mean pose        {fmt(packaged['mean_pose'])}   (the mean camera-frame pose: a blob)")
    print(f"predictions        {pred_dir}" + (f"  (all panels: {gallery})" if gallery else ""))
    if whole is not None:
        print(f"whole picture      {whole / 'overlay.jpg'}  (hands found by the packaged detector)")
    print(f"learning curve     {curve}  (CSV: {run_dir / 'eval_metrics.csv'}; "
          f"TensorBoard: tensorboard --logdir {run_dir / 'tb'})")
    print(f"demo checkpoint    {ckpt}")
    print("timings            " + ", ".join(f"{k}={v:.0f}" for k, v in timings.items()))
    return 0


def _old_render(folder: Path) -> bool:
    """Whether ``folder`` holds a synthetic set from an older generator version."""
    import json

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
