"""``m3dhmr benchmark``: the synthetic benchmark (:mod:`m3dhmr.evaluation.benchmark`),
rendered once and scored next to two constant baselines; with ``--real DIR``, the
real-photo yardstick (:mod:`m3dhmr.evaluation.real`) on a folder of photos instead. The
last lines are ``name=value`` pairs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from m3dhmr.errors import UserError
from m3dhmr.evaluation.benchmark import BENCHMARK_SEED, BENCHMARK_SIZE, SUMMARY_KEYS
from m3dhmr.fileio import check_creatable_folder, check_output_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, default=None, help="weights to score (default: the packaged model)")
    parser.add_argument("--data", type=Path, default=Path("outputs/benchmark"),
                        help="where the benchmark is rendered (default: outputs/benchmark; reused when it holds "
                             "--num images; one folder holds one size)")
    parser.add_argument("--num", type=int, default=BENCHMARK_SIZE,
                        help=f"score the first NUM samples (default: all {BENCHMARK_SIZE})")
    parser.add_argument("--out", type=Path, default=None, help="folder for pred.json and metrics (default: DATA/scores)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument("--workers", type=int, default=2, help="processes that render the images")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="images per network batch (default 32; lower it if memory runs out)")
    real = parser.add_argument_group("real photos (instead of the synthetic benchmark)")
    real.add_argument("--real", type=Path, default=None, metavar="DIR",
                      help="score against the real-photo landmark model on the photos in DIR (the sign-language "
                           "digits set: its held-out persons, plus finger-state accuracy)")
    real.add_argument("--split", choices=("heldout", "train", "all"), default="heldout",
                      help="which persons of the sign-language digits (default: heldout)")
    real.add_argument("--limit", type=int, default=None, help="score at most N photos (spread over the split)")
    real.add_argument("--cache", type=Path, default=None,
                      help="pseudo-label cache file (default: .m3dhmr_pseudo_labels.npz beside the photos)")


def resolve_device(device: str) -> str:
    """``--device``: "auto" -> CUDA when present, else CPU; checked to exist (one-line ValueError)."""
    # heavy: torch and the renderer load when the command runs, so m3dhmr --help stays fast
    import torch

    from m3dhmr.inference.networks import check_device

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return check_device(device, where="--device")


def check_paths(data: Path, out: Path | None) -> None:
    """``--data`` and ``--out`` (default DATA/scores), checked before rendering or loading.

    ``--out`` is created (:func:`m3dhmr.fileio.check_output_folder`) unless it lies in a
    ``--data`` folder not rendered yet, which must stay empty until it is rendered.
    """
    from m3dhmr.data.synth import INFO_FILE

    out = out if out is not None else data / "scores"
    check_creatable_folder(data, "--data", writable=False)  # a rendered benchmark may be read-only
    check_creatable_folder(out, "--out")
    if (data / INFO_FILE).is_file() or not out.resolve().is_relative_to(data.resolve()):
        check_output_folder(out, "--out")


def run(args: argparse.Namespace) -> int:
    from m3dhmr.evaluation.benchmark import score_benchmark  # looked up when called: tests replace it

    if args.real is not None:
        return run_real(args)
    if not 1 <= args.num <= BENCHMARK_SIZE:
        raise UserError(f"--num must be in 1..{BENCHMARK_SIZE}, got {args.num}")
    if args.workers < 1 or args.batch_size < 1:
        raise UserError("--workers and --batch-size must be >= 1")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise FileNotFoundError(f"--checkpoint: file not found: {args.checkpoint}")
    device = resolve_device(args.device)
    check_paths(args.data, args.out)
    r = score_benchmark(args.data, args.num, args.checkpoint, args.out, device, args.batch_size, args.workers)
    rows = {"model": r["model"], "mean_pose": r["mean_pose"], "rest_hand": r["rest_hand"]}
    print(f"\nsynthetic benchmark: {r['num_samples']} images (seed {BENCHMARK_SEED}), {r['scored']}")
    print(f"{'':12s} {'PA-MPJPE':>9s} {'PA-MPVPE':>9s} {'F@5':>6s} {'F@15':>6s} {'MPJPE (root-rel.)':>18s}")
    for label, s in (("model", r["model"]), ("mean pose", r["mean_pose"]), ("rest hand", r["rest_hand"])):
        print(f"{label:12s} {s['pa_mpjpe_mm']:8.2f}  {s['pa_mpvpe_mm']:8.2f}  {s['f5']:6.3f} {s['f15']:6.3f} "
              f"{s['mpjpe_rr_mm']:14.1f} mm")
    print(f"registration converged for {100 * r['registration_success']:.1f} % (root error "
          f"{r['model']['root_error_mm']:.1f} mm); files in {r['out']}")
    for label, s in rows.items():
        for k in SUMMARY_KEYS:
            print(f"{label}_{k}={s[k]:.4f}")
    return 0


def run_real(args: argparse.Namespace) -> int:
    from m3dhmr.evaluation.real import evaluate_real
    from m3dhmr.inference.networks import check_device
    from m3dhmr.inference.predictor import Predictor

    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    device = check_device("cpu" if args.device == "auto" else args.device, where="--device")
    predictor = (Predictor.from_pretrained(device=device) if args.checkpoint is None
                 else Predictor.from_checkpoint(args.checkpoint, device=device))
    r = evaluate_real(predictor, args.real, args.split, args.limit, args.cache, progress=True)
    print(f"\nreal photos: {args.real} ({r.n_images} images); a hand found by both models in {r.n_detected} "
          f"(reference {r.n_reference}, network's crop {r.n_predicted})")
    print(f"2D joints vs the landmark model: PCK@0.5 palm {r.pck_half_palm:.3f}, median {r.median_err_palm:.3f} palm")
    if r.finger_state_acc is not None:
        print(f"finger states: network {r.finger_state_acc:.3f}, landmark model {r.reference_finger_state_acc:.3f}")
    for k, v in r.summary().items():
        print(f"{k}={v:.4f}")
    return 0
