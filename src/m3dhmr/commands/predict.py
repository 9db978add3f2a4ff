"""``m3dhmr predict``: find and reconstruct the hands in image files, folders and videos.

Without a box, the packaged hand detector (:mod:`m3dhmr.detect`) finds every hand
(``--max-hands``, ``--min-score``) with its handedness; left hands are flipped,
predicted and mirrored back (``--left`` / ``--right`` force one side for every hand).
``--bbox`` (or a box from ``--bbox-json``) is a box around one hand instead: it is
squared and enlarged by ``--box-scale`` (default: the factor that matches the model's
training crops), the same as ``Predictor.predict(image, hand_box=...)``.
``--whole-image`` takes each image as the crop (images that are hand crops already).

Per image, in ``OUT/<stem>/``: ``result.json`` (the image's size and K, and a ``hands``
list: per hand ``box`` x, y, w, h around it, ``handedness``, ``score``, ``joints2d``
px, ``joints3d`` and ``vertices`` in metres, ``translation``, the registration fields),
``overlay.jpg`` (every hand's mesh, skeleton and label on the image), and one folder
``hand_<i>/`` per hand: ``pose2d.jpg``, ``overlay.jpg``, ``front.png`` / ``side.png``
(the camera-space mesh seen from the front and turned 90 degrees, like the paper's
figures 1 and 4), ``panel.jpg`` (the four side by side), ``mesh.obj`` / ``mesh.ply``
(camera space, metres). Per video: ``OUT/<stem>_annotated.mp4`` and
``OUT/<stem>_results.jsonl`` (one JSON object per frame, each hand with a stable ``id``).

``--articulation`` fits the hand model's joint rotations to each hand
(:mod:`m3dhmr.inference.articulation`): ``hand_<i>/pose.json`` (per joint rotations as
axis-angle, quaternion and matrix, anatomical angles, shape, fit error) and
``hand_<i>/hand.glb`` (a rigged hand posed like the prediction; Blender, Unity and
browsers open it); for a video ``OUT/<stem>_hands/hand_<id>/`` with ``hand_anim.glb``
(one key per frame), ``hand.bvh`` and ``pose.json``.

Without ``--K`` the intrinsics come from an assumed horizontal field of view (``--fov``,
default 60 degrees; see :mod:`m3dhmr.inference.crops`). Without ``--checkpoint`` the
packaged model runs.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from m3dhmr.inference.crops import DEFAULT_BOX_SCALE, DEFAULT_FOV_DEG

    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders of images, or videos")
    parser.add_argument("--checkpoint", default=None,
                        help="model weights (.safetensors from m3dhmr train); default: the packaged model "
                             "(docs/MODEL_CARD.md)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--template", default=None,
                        help="hand template of --checkpoint's model (open_hand, mano:/path/MANO_RIGHT.pkl or a "
                             "folder), when not the one it was trained with at this path")
    box = parser.add_mutually_exclusive_group()
    box.add_argument("--bbox", help="hand box x,y,w,h in pixels (same for every input)")
    box.add_argument("--bbox-json", help='JSON {"file name or stem": [x, y, w, h], ...}')
    parser.add_argument("--box-scale", type=float, default=None,
                        help="enlarge a given hand box by this factor (default: what matches the model's training "
                             f"crops, {DEFAULT_BOX_SCALE} for a model without that record)")
    parser.add_argument("--K", dest="K", help="intrinsics fx,fy,cx,cy in pixels (default: from --fov)")
    parser.add_argument("--fov", type=float, default=DEFAULT_FOV_DEG,
                        help=f"assumed horizontal field of view in degrees without --K (default {DEFAULT_FOV_DEG:g})")
    box.add_argument("--whole-image", action="store_true",
                     help="each image is the crop (inputs that are hand crops already): no detection")
    side = parser.add_mutually_exclusive_group()
    side.add_argument("--left", action="store_true", help="every hand is a left hand (default: the detector's call)")
    side.add_argument("--right", action="store_true", help="every hand is a right hand")
    parser.add_argument("--max-hands", type=int, default=4, help="most hands per image or frame (default 4)")
    parser.add_argument("--min-score", type=float, default=0.5,
                        help="hand presence threshold of the detector in [0, 1] (default 0.5)")
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    parser.add_argument("--onnx", help="ONNX model for --backend onnxruntime (default: export the checkpoint)")
    parser.add_argument("--articulation", action="store_true",
                        help="fit joint rotations: pose.json and a rigged hand.glb per hand; for videos "
                             "OUT/<stem>_hands/hand_<id>/ with hand_anim.glb, hand.bvh and pose.json")
    parser.add_argument("--smooth", action="store_true", help="videos: One-Euro smoothing of joints and root")
    parser.add_argument("--video-vertices", action="store_true",
                        help="videos: also write every frame's vertices to the JSON lines")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch and ONNX Runtime)")
    parser.add_argument("--view-size", type=int, default=256, help="side of the front/side renders in pixels")


def _output_names(items) -> list[str]:
    """A unique output stem per input (``a``, ``a_2``, ... when stems repeat)."""
    seen: dict[str, int] = {}
    names = []
    for it in items:
        stem = it.path.stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from m3dhmr.cli import UserError
    from m3dhmr.detect import HandDetector
    from m3dhmr.inference import crops
    from m3dhmr.inference.images import collect_inputs, load_image
    from m3dhmr.inference.outputs import save_image_outputs
    from m3dhmr.inference.predictor import Predictor
    from m3dhmr.inference.video import predict_video

    items = collect_inputs(args.inputs)
    if args.box_scale is not None and (args.box_scale <= 0 or not np.isfinite(args.box_scale)):
        raise UserError(f"--box-scale must be a positive number, got {args.box_scale}")
    if args.view_size < 16:
        raise UserError(f"--view-size must be >= 16, got {args.view_size}")
    if args.max_hands < 1:
        raise UserError(f"--max-hands must be >= 1, got {args.max_hands}")
    if not 0.0 <= args.min_score <= 1.0:
        raise UserError(f"--min-score must be in [0, 1], got {args.min_score}")
    K = crops.parse_intrinsics(args.K) if args.K else None
    crops.default_intrinsics(2, 2, args.fov)  # validate --fov before loading anything
    user_box = crops.parse_box(args.bbox) if args.bbox else None
    boxes = crops.load_boxes_json(args.bbox_json) if args.bbox_json else None
    if args.onnx and args.backend != "onnxruntime":
        raise UserError("--onnx needs --backend onnxruntime")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.checkpoint is None and args.template is not None:
        raise UserError("--template applies to --checkpoint; the packaged model carries its own")
    if args.checkpoint is None:
        predictor = Predictor.from_pretrained(backend=args.backend, onnx_path=args.onnx, device=args.device,
                                              threads=args.threads, fov_deg=args.fov)
    else:
        predictor = Predictor.from_checkpoint(args.checkpoint, backend=args.backend, onnx_path=args.onnx,
                                              device=args.device, threads=args.threads, fov_deg=args.fov,
                                              template=args.template)
    if args.box_scale is not None:
        predictor.box_scale = float(args.box_scale)
    if user_box is None and not args.whole_image:  # some input will need the detector
        predictor.detector = HandDetector(max_hands=args.max_hands, min_presence=args.min_score)
    articulator = None
    if args.articulation:
        from m3dhmr.inference.articulation import Articulator

        articulator = Articulator(predictor.template)
    left = True if args.left else False if args.right else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = empty = poor = 0
    for item, name in zip(items, _output_names(items)):
        box = user_box
        if boxes is not None:
            box = crops.box_for(boxes, item.path)
            if box is None:
                log.warning("%s: no box in %s; finding the hands instead", item.path, args.bbox_json)
        if item.kind == "video":
            summary = predict_video(predictor, item.path, out / f"{name}_annotated.mp4", out / f"{name}_results.jsonl",
                                    hand_box=box, whole_frame=args.whole_image, K=K, left=left, smooth=args.smooth,
                                    include_vertices=args.video_vertices, articulator=articulator,
                                    articulation_dir=out / f"{name}_hands" if articulator else None)
            print(f"{item.path}: {summary.frames} frames, {summary.hands} hand track(s), "
                  f"{summary.successes} hand(s) registered -> {summary.video_path}")
            continue
        image = load_image(item.path)
        H, W = image.shape[:2]
        if box is not None:
            crops.validate_box(box, H, W, f"box of {item.path}")
            results = [predictor.predict(image, K=K, left=bool(left), hand_box=box)]
        elif args.whole_image:
            results = [predictor.predict(image, crops.full_image_box(H, W), K, bool(left))]
        else:
            results = predictor.predict(image, K=K, left=left)
        if articulator is not None:
            results = articulator.attach(results)
        K_used = results[0].K if results else (
            crops.default_intrinsics(H, W, predictor.fov_deg) if K is None else K)
        save_image_outputs(out / name, item.path, image, results, K_used, args.view_size)
        if not results:
            empty += 1
            print(f"{item.path}: no hand found (give --bbox, lower --min-score, or --whole-image for a hand crop) "
                  f"-> {out / name}")
            continue
        failed += sum(not r.success for r in results)
        poor += sum(r.quality_flag == "poor" for r in results)
        desc = "; ".join(f"{r.handedness} hand {_status(r)}, wrist at {np.round(r.translation, 3).tolist()} m"
                         for r in results)
        print(f"{item.path}: {len(results)} hand(s): {desc} -> {out / name}")
    if failed:
        log.warning("%d hand(s) had a failed registration; their camera-space position is a guess", failed)
    if poor:
        log.warning("%d hand(s) of poor quality: the mesh disagrees with the landmark model (see \"quality\" in "
                    "result.json); do not trust them", poor)
    if empty:
        log.warning("%d image(s) with no hand found", empty)
    return 0


def _status(result) -> str:
    """The per-hand word: its quality (never "ok" for a poor hand), or the failed registration."""
    if not result.success:
        return "registration failed (fallback depth), poor"
    if result.quality_report is None:
        return "ok"
    return result.quality_report.describe()
