"""The README's and model card's pictures of the packaged model.

    .venv/bin/python scripts/make_model_figures.py [--run RUN --data DATA] [--bench outputs/benchmark]

- ``docs/images/predictions.jpg``: benchmark images (seed 7, never trained on) predicted
  by the packaged model with a detector-like box from the ground truth: the input with
  its 2D pose, the mesh over the image, and front and side renders of the mesh.
- ``docs/images/whole_photo.jpg``: two benchmark images pasted into one 520 x 300
  picture, the second mirrored into a left hand, predicted with no box: the packaged
  hand detector finds both and tells left from right (``Predictor.predict(image)``).
- ``docs/images/packaged_learning_curve.png`` (with ``--run``): the training run's
  ``eval_metrics.csv``, with a constant rest hand dashed for reference.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=None, help="training run folder with eval_metrics.csv")
    ap.add_argument("--data", type=Path, default=None, help="the run's data set (for the rest-hand line)")
    ap.add_argument("--bench", type=Path, default=REPO / "outputs" / "benchmark")
    ap.add_argument("--images", type=int, nargs="+", default=[0, 3, 5, 8, 13, 21])
    ap.add_argument("--pair", type=int, nargs=2, default=[0, 2], help="benchmark images of the whole photo")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = ap.parse_args()

    from m3dhmr import viz
    from m3dhmr.evaluation.detector_boxes import detector_boxes
    from m3dhmr.inference.outputs import write_image
    from m3dhmr.evaluation.benchmark import ensure_benchmark
    from m3dhmr.inference.images import load_image
    from m3dhmr.inference.predictor import Predictor

    bench = ensure_benchmark(args.bench, 1000)
    names = [f"{i:08d}.jpg" for i in args.images]
    boxes = detector_boxes(bench, "evaluation", names)
    predictor = Predictor.from_pretrained()
    rows = []
    for name in names:
        image = load_image(bench / "evaluation" / "rgb" / name)
        [res] = predictor.predict(image, hand_box=boxes[name])
        pose = viz.draw_pose2d(image, res.joints2d)
        overlay = viz.overlay_mesh(image, res.vertices, res.faces, res.K)
        front, side = viz.render_front_side(res.vertices, res.faces, 224)
        rows.append(viz.make_panel([image, pose, overlay, front, side], height=224))
    w = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, w - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    path = args.out / "predictions.jpg"
    write_image(path, np.ascontiguousarray(np.concatenate(rows, axis=0)), quality=88)
    print(f"wrote {path}")

    a = load_image(bench / "evaluation" / "rgb" / f"{args.pair[0]:08d}.jpg")
    b = load_image(bench / "evaluation" / "rgb" / f"{args.pair[1]:08d}.jpg")[:, ::-1]
    canvas = np.full((300, 520, 3), 90, np.uint8)
    canvas[40:264, 10:234] = a
    canvas[60:284, 286:510] = b
    hands = predictor.predict(canvas)
    path = args.out / "whole_photo.jpg"
    write_image(path, np.concatenate([canvas, np.full((300, 4, 3), 255, np.uint8), viz.draw_hands(canvas, hands)], 1),
                quality=90)
    print(f"wrote {path}: " + ", ".join(f"{h.handedness} ({h.score:.2f})" for h in hands))
    if args.run is not None:
        from m3dhmr.evaluation.scoring import constant_prediction
        from m3dhmr.data.freihand import load_annotations
        from m3dhmr.hand import load_template
        from m3dhmr.metrics import freihand_metrics
        from m3dhmr.experiment import load_experiment
        from m3dhmr.train.validation import CSV_NAME, read_metrics_csv

        cfg = load_experiment(args.run / "config.yaml")
        rows_csv = read_metrics_csv(args.run / CSV_NAME)
        baseline = None
        if args.data is not None:  # the set the run was scored on: its rest-hand score, dashed
            n = int(rows_csv[-1]["num_samples"])
            ann = load_annotations(args.data, cfg.data.eval_split)
            t = load_template(cfg.model.template)
            xyz, verts = np.asarray(ann.xyz[:n], float), np.asarray(ann.verts[:n], float)
            baseline = freihand_metrics(*constant_prediction(t.vertices, t.joint_regressor, xyz), xyz, verts).summary
        curve = args.out / "packaged_learning_curve.png"
        viz.plot_learning_curve(rows_csv, curve, title="packaged model, stage 2, on its set's evaluation split"
                                + ("; dashed: a constant rest hand" if baseline else ""), baseline=baseline)
        print(f"wrote {curve}")


if __name__ == "__main__":
    main()
