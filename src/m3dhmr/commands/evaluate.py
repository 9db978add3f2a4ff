"""``m3dhmr eval``: predict a split from a checkpoint, or score an existing ``pred.json``.

``--checkpoint CKPT``: crops every sample of the split with the evaluation box, runs the
network, registers each mesh in the crop camera with that sample's crop ``K``, rotates it
back to the original camera and writes FreiHAND's ``pred.json`` (``[xyz_list, verts_list]``,
metres). ``--pred FILE``: scores that file instead (what the FreiHAND server used to do).
Either way, with ground truth in the split, ``metrics.json`` and a per-sample CSV follow.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from m3dhmr.errors import InputError, UserError
from m3dhmr.fileio import check_output_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", type=Path,
                     help="weights (RUN/checkpoints/last.safetensors); without it and --pred: the packaged model")
    src.add_argument("--pred", type=Path, help="an existing pred.json to score")
    parser.add_argument("--data", type=Path, required=True, help="data folder in FreiHAND's layout")
    parser.add_argument("--split", default="evaluation", choices=("evaluation", "training"),
                        help="which part of --data to score (default: evaluation, FreiHAND's test split)")
    parser.add_argument("--out", type=Path, required=True, help="folder for pred.json, metrics.json, per_sample.csv")
    parser.add_argument("--config", type=Path, default=None,
                        help="experiment YAML to build the model from (default: the one stored in the checkpoint)")
    parser.add_argument("--template", default=None,
                        help="hand template of --checkpoint's model (open_hand, mano:/path/MANO_RIGHT.pkl or a "
                             "folder), when not the one it was trained with at this path")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="images per network batch (default 32; lower it if memory runs out)")
    parser.add_argument("--workers", type=int, default=0, help="data loader processes")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")


def run(args: argparse.Namespace) -> int:
    # heavy: torch, the data set and the model load when the command runs, so m3dhmr --help stays fast
    import torch

    from m3dhmr.data.freihand import FreiHANDDataset, load_annotations
    from m3dhmr.evaluation.scoring import read_prediction_file, score_predictions, write_metrics, write_prediction_file
    from m3dhmr.inference.networks import check_device

    log = logging.getLogger("m3dhmr.eval")
    # Every argument is checked before a model or data set is loaded.
    if args.batch_size < 1 or args.workers < 0:
        raise UserError("--batch-size must be >= 1 and --workers >= 0")
    device = "cpu"
    if args.pred is None:  # --pred only scores a file: no device involved
        device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
        check_device(device, where="--device")
    for option, path in (("--pred", args.pred), ("--checkpoint", args.checkpoint)):
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"{option}: file not found: {path}")
    if not args.data.is_dir():
        raise FileNotFoundError(f"--data: folder not found: {args.data}")
    if args.pred is None and args.checkpoint is None and (args.config is not None or args.template is not None):
        raise UserError("--config and --template apply to --checkpoint; the packaged model carries its own")
    experiment = None
    if args.pred is None and args.config is not None:
        from m3dhmr.experiment import load_experiment

        experiment = load_experiment(args.config)
    out = check_output_folder(args.out, "--out")
    pred_path = out / "pred.json"

    if args.pred is None:
        from m3dhmr.evaluation.predict_split import predict_split
        from m3dhmr.model_io import load_model_from_checkpoint

        if args.checkpoint is None:
            from m3dhmr.pretrained import DEFAULT_MODEL, load_pretrained

            model, cfg = load_pretrained(DEFAULT_MODEL, device=device)
            print(f"scoring the packaged model {DEFAULT_MODEL} (model card: docs/MODEL_CARD.md in the source repository)")
        else:
            model, cfg = load_model_from_checkpoint(args.checkpoint, device=device, experiment=experiment,
                                                    template=args.template)
        # The evaluation box without randomness (the config's eval_box choice is kept).
        augment = dataclasses.replace(cfg.data.augment, enabled=False)
        dataset = FreiHANDDataset(args.data, args.split, crop_size=cfg.model.input_size, augment=augment,
                                  two_view=False, seed=cfg.train.seed, num_vertices=model.num_vertices)
        pred = predict_split(model, dataset, batch_size=args.batch_size, device=device,
                             num_workers=args.workers, progress_bar=True)
        write_prediction_file(pred_path, pred.xyz, pred.verts)
        ok = float(pred.success.mean())
        print(f"wrote {pred_path} ({len(pred)} samples; registration converged for {100 * ok:.1f} %, "
              f"mean reprojection error {float(pred.reprojection_error.mean()):.2f} px)")
        has_gt = dataset.ann.has_3d
        pred_xyz, pred_verts = pred.xyz, pred.verts
    else:
        ann = load_annotations(args.data, args.split)
        pred_xyz, pred_verts = read_prediction_file(args.pred)
        if len(pred_xyz) != ann.num_annotations:
            raise InputError(f"{args.pred} holds {len(pred_xyz)} samples but {args.data} has "
                             f"{ann.num_annotations} {args.split} samples")
        has_gt = ann.has_3d

    if not has_gt:
        if args.pred is not None:  # scoring is all this call was asked to do
            raise UserError(f"{args.data} has no {args.split}_xyz.json/{args.split}_verts.json: no ground truth "
                            f"to score {args.pred} against")
        log.warning("%s has no %s_xyz.json/%s_verts.json: %s written, nothing to score against", args.data,
                    args.split, args.split, pred_path)
        return 0
    try:
        result = score_predictions(pred_xyz, pred_verts, args.data, args.split)
    except ValueError as e:  # counts that differ from the split's: name the file scored
        raise InputError(f"{args.pred}: {e}" if args.pred is not None else str(e)) from None
    paths = write_metrics(out, result)
    s = result.summary
    print(f"PA-MPJPE {s['pa_mpjpe_mm']:.2f} mm, PA-MPVPE {s['pa_mpvpe_mm']:.2f} mm, F@5 {s['f5']:.3f}, "
          f"F@15 {s['f15']:.3f}, root error {s['root_error_mm']:.1f} mm over {s['num_samples']} samples")
    print("metrics: " + ", ".join(str(p) for p in paths))
    return 0
