"""``m3dhmr predict``: run a checkpoint on image files, folders and videos.

Per image, in ``OUT/<stem>/``: ``pose2d.jpg`` (2D skeleton on the image), ``overlay.jpg``
(mesh projected on the image), ``front.png`` / ``side.png`` (camera-space mesh seen from
the front and turned 90 degrees, like the paper's figures 1 and 4), ``panel.jpg`` (the
four side by side), ``mesh.obj`` / ``mesh.ply`` (camera space, metres) and
``result.json`` (joints2d px, joints3d and vertices in metres, translation, K, box,
success, left). Per video: ``OUT/<stem>_annotated.mp4`` and ``OUT/<stem>_results.jsonl``
(one JSON object per frame).

Without ``--K`` the intrinsics come from an assumed horizontal field of view (``--fov``,
default 60 degrees; see :mod:`m3dhmr.inference.crops`). A ``--bbox`` (or a box from
``--bbox-json``) is a box around the hand; it is squared and enlarged by
``--box-scale`` (default: the factor that matches the model's training crops) so the
hand fills the crop as in training. Without ``--checkpoint`` the packaged model runs. Without a box
the whole image is the crop.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "run the packaged model (or a checkpoint) on images, folders or videos"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from m3dhmr.inference.crops import DEFAULT_BOX_SCALE, DEFAULT_FOV_DEG

    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders of images, or videos")
    parser.add_argument("--checkpoint", default=None,
                        help="model weights (.safetensors from m3dhmr train); default: the packaged model "
                             "(docs/MODEL_CARD.md)")
    parser.add_argument("--out", required=True, help="output folder")
    box = parser.add_mutually_exclusive_group()
    box.add_argument("--bbox", help="hand box x,y,w,h in pixels (same for every input)")
    box.add_argument("--bbox-json", help='JSON {"file name or stem": [x, y, w, h], ...}')
    parser.add_argument("--box-scale", type=float, default=None,
                        help="enlarge a given hand box by this factor (default: what matches the model's training "
                             f"crops, {DEFAULT_BOX_SCALE} for a model without that record)")
    parser.add_argument("--K", dest="K", help="intrinsics fx,fy,cx,cy in pixels (default: from --fov)")
    parser.add_argument("--fov", type=float, default=DEFAULT_FOV_DEG,
                        help=f"assumed horizontal field of view in degrees without --K (default {DEFAULT_FOV_DEG:g})")
    parser.add_argument("--left", action="store_true", help="the hands are left hands (flip, predict, mirror back)")
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    parser.add_argument("--onnx", help="ONNX model for --backend onnxruntime (default: export the checkpoint)")
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


def write_image(path: Path, rgb, quality: int = 92) -> None:
    """(H, W, 3) uint8 RGB -> jpg/png file, atomically."""
    import cv2

    from m3dhmr.fileio import atomic_write_bytes

    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix, rgb[:, :, ::-1].copy(), params)
    if not ok:
        raise ValueError(f"{path}: OpenCV cannot encode this image format")
    atomic_write_bytes(path, buf.tobytes())


def save_image_outputs(out_dir: Path, image, result, view_size: int = 256) -> list[Path]:
    """Write every per-image output of one prediction into ``out_dir``; returns the paths."""
    import json

    from m3dhmr import viz
    from m3dhmr.fileio import atomic_write_text
    from m3dhmr.mesh.io import write_mesh

    out_dir.mkdir(parents=True, exist_ok=True)
    pose = viz.draw_pose2d(image, result.joints2d)
    overlay = viz.overlay_mesh(image, result.vertices, result.faces, result.K)
    front, side = viz.render_front_side(result.vertices, result.faces, view_size)
    panel = viz.make_panel([pose, overlay, front, side], height=view_size)
    paths = {name: out_dir / name for name in
             ("pose2d.jpg", "overlay.jpg", "front.png", "side.png", "panel.jpg", "mesh.obj", "mesh.ply", "result.json")}
    for name, img in (("pose2d.jpg", pose), ("overlay.jpg", overlay), ("front.png", front), ("side.png", side),
                      ("panel.jpg", panel)):
        write_image(paths[name], img)
    write_mesh(paths["mesh.obj"], result.vertices, result.faces)
    write_mesh(paths["mesh.ply"], result.vertices, result.faces)
    atomic_write_text(paths["result.json"], json.dumps(result.to_json(), indent=1))
    return list(paths.values())


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from m3dhmr.cli import UserError
    from m3dhmr.inference import crops
    from m3dhmr.inference.images import collect_inputs, load_image
    from m3dhmr.inference.predictor import Predictor
    from m3dhmr.inference.video import predict_video

    items = collect_inputs(args.inputs)
    if args.box_scale is not None and (args.box_scale <= 0 or not np.isfinite(args.box_scale)):
        raise UserError(f"--box-scale must be a positive number, got {args.box_scale}")
    if args.view_size < 16:
        raise UserError(f"--view-size must be >= 16, got {args.view_size}")
    K = crops.parse_intrinsics(args.K) if args.K else None
    crops.default_intrinsics(2, 2, args.fov)  # validate --fov before loading anything
    user_box = crops.parse_box(args.bbox) if args.bbox else None
    boxes = crops.load_boxes_json(args.bbox_json) if args.bbox_json else None
    if args.onnx and args.backend != "onnxruntime":
        raise UserError("--onnx needs --backend onnxruntime")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.checkpoint is None:
        predictor = Predictor.from_pretrained(backend=args.backend, onnx_path=args.onnx, device=args.device,
                                              threads=args.threads, fov_deg=args.fov)
    else:
        predictor = Predictor.from_checkpoint(args.checkpoint, backend=args.backend, onnx_path=args.onnx,
                                              device=args.device, threads=args.threads, fov_deg=args.fov)
    box_scale = predictor.box_scale if args.box_scale is None else args.box_scale
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for item, name in zip(items, _output_names(items)):
        box = user_box
        if boxes is not None:
            box = crops.box_for(boxes, item.path)
            if box is None:
                log.warning("%s: no box in %s; using the whole image", item.path, args.bbox_json)
        # The user's box is tight around the hand: square and enlarge it like training crops.
        crop_box = None if box is None else crops.square_box(box, box_scale)
        if item.kind == "video":
            summary = predict_video(predictor, item.path, out / f"{name}_annotated.mp4", out / f"{name}_results.jsonl",
                                    box=crop_box, K=K, left=args.left, smooth=args.smooth,
                                    include_vertices=args.video_vertices)
            print(f"{item.path}: {summary.frames} frames ({summary.successes} registered) -> {summary.video_path}")
            continue
        image = load_image(item.path)
        H, W = image.shape[:2]
        if box is not None:
            crops.validate_box(box, H, W, f"box of {item.path}")
        result = predictor.predict(image, crop_box, K, args.left)
        save_image_outputs(out / name, image, result, args.view_size)
        failed += int(not result.success)
        status = "ok" if result.success else "registration failed (fallback depth)"
        print(f"{item.path}: {status}, wrist at {np.round(result.translation, 3).tolist()} m -> {out / name}")
    if failed:
        log.warning("%d image(s) had a failed registration; their camera-space position is a guess", failed)
    return 0
