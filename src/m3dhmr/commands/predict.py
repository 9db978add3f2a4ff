"""``m3dhmr predict``: find and reconstruct the hands in image files, folders and videos.

Without a box, the packaged hand detector (:mod:`m3dhmr.detect`) finds every hand
(``--max-hands``, ``--min-score``) with its handedness; left hands are flipped,
predicted and mirrored back (``--left`` / ``--right`` force one side for every hand).
``--bbox`` (or a box from ``--bbox-json``) is a box around one hand instead (``x,y,w,h``
or four numbers, negative ones too: ``--bbox -5 10 100 100``): it is squared and enlarged
by ``--box-scale`` (default: the factor that matches the model's training crops), the
same as ``Predictor.predict(image, hand_box=...)``.
``--whole-image`` takes each image as the crop (images that are hand crops already).

Per image, in ``OUT/<stem>/`` (``<stem>_2``, ... where names would collide): ``result.json``
(the image's size and K, ``overlay_scale``, ``axes``, and a ``hands`` list: per hand
``hand_box`` x, y, w, h around it, ``crop_box``, ``handedness``, ``score``, ``quality``,
``joints2d`` px of the image, ``joints3d`` and ``vertices`` in metres (OpenCV camera axes),
``translation``, the registration fields: :meth:`PredictionResult.to_json`), ``overlay.jpg`` (every
hand's mesh, skeleton and label on the image, downscaled to 2,048 px a side at most, as
are the per-hand pictures), and one folder ``hand_<i>/`` per hand: ``pose2d.jpg``,
``overlay.jpg``, ``front.png`` / ``side.png`` (the camera-space mesh seen from the front
and turned 90 degrees, like the paper's figures 1 and 4), ``panel.jpg`` (the four side by side), ``mesh.obj`` / ``mesh.ply``
(metres, in the camera's OpenCV axes, or y-up with ``--mesh-axes y-up``; the header says
which). Per video: ``OUT/<stem>_annotated.mp4`` and
``OUT/<stem>_results.jsonl`` (one JSON object per frame, each hand with a stable ``id``;
undecodable frames are skipped and counted). ``OUT/summary.json`` lists every input with
its status (``ok`` or ``failed`` and why).

One bad input does not stop the others: each failure is reported on one line and the
exit status is 1 if any input failed. Each image's folder is written under a temporary
name and renamed into place when complete (replacing an earlier run's), and ``OUT`` is
locked for the run (a second ``predict`` into it refuses); temporaries left by a killed
run are removed. On a terminal, progress bars (inputs, a video's frames) show the ETA;
``--quiet`` prints only failures, warnings and the summary line.

``--articulation`` fits the hand model's joint rotations to each hand
(:mod:`m3dhmr.inference.rigging`): ``hand_<i>/pose.json`` (per joint rotations as
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
import errno
import json
import logging
import re
import sys
from pathlib import Path

from m3dhmr.errors import InputError, UserError
from m3dhmr.fileio import (FolderLock, atomic_write_text, check_output_folder, os_error_message,
                           remove_stale_temporaries)
from m3dhmr.hardware import torch_threads

log = logging.getLogger(__name__)

#: Largest --view-size (the renders' buffers grow with its square).
MAX_VIEW_SIZE = 4096
SUMMARY_NAME = "summary.json"


class _BoxAction(argparse.Action):
    """``--bbox x,y,w,h`` or ``--bbox x y w h``: takes up to four numbers; what follows
    them (``--bbox 1,2,3,4 photo.jpg``) is an input. Parsed and checked in :func:`run`."""

    def __call__(self, parser, namespace, values, option_string=None):
        taken, count = 1, _count_numbers(values[0])
        while taken < len(values) and count < 4 and _count_numbers(values[taken]):
            count += _count_numbers(values[taken])
            taken += 1
        setattr(namespace, self.dest, ",".join(values[:taken]))
        rest = list(values[taken:])
        if getattr(namespace, "inputs", None):  # the inputs came before --bbox
            namespace.inputs = [*namespace.inputs, *rest]
        else:
            namespace.inputs_after_bbox = rest


def _count_numbers(text: str) -> int:
    """How many numbers ``text`` holds (comma- or space-separated); 0 if it is not numbers."""
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    try:
        [float(p) for p in parts]
    except ValueError:
        return 0
    return len(parts)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # heavy: the inference modules (torch, cv2) load only when this command is used, not on import
    from m3dhmr.inference.crops import DEFAULT_BOX_SCALE, DEFAULT_FOV_DEG
    from m3dhmr.inference.outputs import MAX_PICTURE_SIDE

    # argparse takes "-5,10,100,100" for an option (only "-5" or "-.5" count as numbers):
    # any "-<digit>..." is a value here, since no option of this command looks like one.
    if hasattr(parser, "_negative_number_matcher"):
        parser._negative_number_matcher = re.compile(r"-\.?\d")
    # "*", not "+": inputs after a --bbox come through the box's action (inputs_after_bbox).
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders of images, or videos")
    parser.set_defaults(inputs_after_bbox=[])
    parser.add_argument("--checkpoint", default=None,
                        help="model weights (.safetensors from m3dhmr train); default: the packaged model, a "
                             "ResNet-18 M3DHMR trained on the package's synthetic hands and fine-tuned on real "
                             "photos (its model card: docs/MODEL_CARD.md in the source repository)")
    parser.add_argument("--out", required=True,
                        help="output folder (locked while predict runs; summary.json lists every input)")
    parser.add_argument("--template", default=None,
                        help="hand template of --checkpoint's model (open_hand, mano:/path/MANO_RIGHT.pkl or a "
                             "folder), when not the one it was trained with at this path")
    box = parser.add_mutually_exclusive_group()
    box.add_argument("--bbox", nargs="+", action=_BoxAction, metavar="X,Y,W,H",
                     help="hand box x,y,w,h in pixels (same for every input); also four numbers: "
                          "--bbox -5 10 100 100")
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
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                        help="run the network with PyTorch (default) or ONNX Runtime (faster on CPUs)")
    parser.add_argument("--onnx", help="ONNX model for --backend onnxruntime (default: export the checkpoint)")
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                        help="network precision: fp32 (default) or int8 (with --backend onnxruntime on the cpu: "
                             "quantised once into the ONNX cache, about a minute; faster on CPUs)")
    parser.add_argument("--articulation", action="store_true",
                        help="fit joint rotations: pose.json and a rigged hand.glb per hand; for videos "
                             "OUT/<stem>_hands/hand_<id>/ with hand_anim.glb, hand.bvh and pose.json")
    parser.add_argument("--smooth", action="store_true", help="videos: One-Euro smoothing of joints and root")
    parser.add_argument("--landmarks-every", type=int, default=1, metavar="N",
                        help="videos without a box: run the landmark model on a followed hand every N frames and "
                             "place it by the network's own joints in between (faster; default 1: every frame, "
                             "N=3 cost +7%% 2D error in benchmarks/hand_finding.py)")
    parser.add_argument("--video-vertices", action="store_true",
                        help="videos: also write every frame's vertices to the JSON lines")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch and ONNX Runtime)")
    parser.add_argument("--mesh-axes", choices=("camera", "y-up"), default="camera",
                        help="axes of mesh.obj/mesh.ply: camera (OpenCV: x right, y down, z forward, as in "
                             "result.json; default) or y-up (turned 180 degrees about x, upright in Blender; "
                             ".glb/.bvh are always y-up)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars and no line per input: only failures, warnings and the summary line")
    parser.add_argument("--view-size", type=int, default=256,
                        help=f"side of the front/side renders in pixels (16 to {MAX_VIEW_SIZE}; overlays of "
                             f"images over {MAX_PICTURE_SIDE} px are drawn downscaled to {MAX_PICTURE_SIDE} px, "
                             "result.json keeps the image's pixels)")


def _output_entries(name: str, kind: str) -> set[str]:
    """What an input named ``name`` writes in --out (case-folded: some file systems ignore case)."""
    names = {name} if kind == "image" else {f"{name}_annotated.mp4", f"{name}_results.jsonl", f"{name}_hands"}
    return {n.casefold() for n in names}


def output_names(items) -> list[str]:
    """A unique output name per input, decided before any is written: each stem goes to
    its first input, and a repeated stem gets the first free ``<stem>_<k>`` (k >= 2) that
    is no other input's stem nor given name (``d1/x.jpg d2/x.jpg x_2.jpg`` -> x, x_3, x_2)."""
    names: list[str | None] = [None] * len(items)
    taken = {SUMMARY_NAME.casefold()}
    for i, it in enumerate(items):
        entries = _output_entries(it.path.stem, it.kind)
        if not entries & taken:
            names[i] = it.path.stem
            taken |= entries
    for i, it in enumerate(items):
        k = 2
        while names[i] is None:
            name = f"{it.path.stem}_{k}"
            entries = _output_entries(name, it.kind)
            if not entries & taken:
                names[i] = name
                taken |= entries
            k += 1
    return names  # type: ignore[return-value]


def _check_options(args: argparse.Namespace) -> None:
    """Every option that can be checked without the model, so that a typo costs no loading."""
    import numpy as np

    from m3dhmr.inference.networks import check_device

    if args.box_scale is not None and (args.box_scale <= 0 or not np.isfinite(args.box_scale)):
        raise UserError(f"--box-scale must be a positive number, got {args.box_scale}")
    if not 16 <= args.view_size <= MAX_VIEW_SIZE:
        raise UserError(f"--view-size must be in [16, {MAX_VIEW_SIZE}], got {args.view_size}")
    if args.landmarks_every < 1:
        raise UserError(f"--landmarks-every must be >= 1, got {args.landmarks_every}")
    if args.max_hands < 1:
        raise UserError(f"--max-hands must be >= 1, got {args.max_hands}")
    if not 0.0 <= args.min_score <= 1.0:
        raise UserError(f"--min-score must be in [0, 1], got {args.min_score}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if args.onnx and args.backend != "onnxruntime":
        raise UserError("--onnx needs --backend onnxruntime")
    if args.checkpoint is None and args.template is not None:
        raise UserError("--template applies to --checkpoint; the packaged model carries its own")
    check_device(args.device, args.backend, "--device")


def run(args: argparse.Namespace) -> int:
    import cv2

    from m3dhmr.detect import HandDetector
    from m3dhmr.inference import crops
    from m3dhmr.inference.images import collect_inputs
    from m3dhmr.inference.predictor import Predictor

    inputs = [*args.inputs_after_bbox, *(args.inputs or [])]
    if not inputs:
        raise UserError("no INPUT given (image files, folders of images, or videos)")
    _check_options(args)
    K = crops.parse_intrinsics(args.K) if args.K else None
    crops.default_intrinsics(2, 2, args.fov)  # validate --fov before loading anything
    user_box = crops.parse_box(args.bbox) if args.bbox else None
    boxes = crops.load_boxes_json(args.bbox_json) if args.bbox_json else None
    items = collect_inputs(inputs)
    if args.quiet:
        logging.getLogger("m3dhmr").setLevel(logging.WARNING)
    out = check_output_folder(args.out)
    names = output_names(items)
    with FolderLock(out, "m3dhmr predict"), torch_threads(args.threads):
        for p in remove_stale_temporaries(out, recursive=True):
            log.info("removed %s, left by an earlier run that did not finish", p)
        (out / SUMMARY_NAME).unlink(missing_ok=True)  # never a summary of another run
        if args.checkpoint is None:
            predictor = Predictor.from_pretrained(backend=args.backend, onnx_path=args.onnx, device=args.device,
                                                  threads=args.threads, fov_deg=args.fov, precision=args.precision)
        else:
            predictor = Predictor.from_checkpoint(args.checkpoint, backend=args.backend, onnx_path=args.onnx,
                                                  device=args.device, threads=args.threads, fov_deg=args.fov,
                                                  template=args.template, precision=args.precision)
        if args.box_scale is not None:
            predictor.box_scale = float(args.box_scale)
        if user_box is None and not args.whole_image:  # some input will need the detector
            predictor.detector = HandDetector(max_hands=args.max_hands, min_presence=args.min_score)
        articulator = None
        if args.articulation:
            from m3dhmr.inference.rigging import Articulator

            articulator = Articulator(predictor.template)
        job = _Job(args, predictor, articulator, out, K, user_box, boxes)
        entries = []
        # One bar over the inputs when there are several; a video draws its own over its frames.
        bar = _progress(args, total=len(items), unit="input", desc="predict") if len(items) > 1 else None
        job.bar = bar
        for item, name in zip(items, names):
            entry = {"input": str(item.path), "kind": item.kind, "status": "ok", "reason": None}
            try:
                entry.update(job.video(item, name) if item.kind == "video" else job.image(item, name))
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    raise  # nothing else will fit either: one line from the CLI, exit 1
                entry.update(status="failed", reason=_reason(os_error_message(e), item.path))
            except (InputError, cv2.error) as e:  # this input's problem, not the program's
                entry.update(status="failed", reason=_reason(str(e), item.path))
            except MemoryError:
                entry.update(status="failed", reason="not enough memory for this input")
            if entry["status"] == "failed":
                job.say(f"{item.path}: {entry['reason']}", sys.stderr)
            entries.append(entry)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        job.warn()
        failed = sum(e["status"] == "failed" for e in entries)
        counts = {"inputs": len(entries), "ok": len(entries) - failed, "failed": failed}
        atomic_write_text(out / SUMMARY_NAME, json.dumps({"counts": counts, "inputs": entries}, indent=1))
    print(f"{counts['inputs']} input(s): {counts['ok']} ok, {counts['failed']} failed -> {out / SUMMARY_NAME}")
    return 1 if failed else 0


def _reason(message: str, path: Path) -> str:
    """One line, without the input's path when the message starts with it."""
    message = " ".join(message.split())
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _progress(args: argparse.Namespace, **kwargs):
    """A tqdm bar on stderr with ETA; drawn only on a terminal, never with --quiet."""
    from tqdm import tqdm

    return tqdm(disable=True if args.quiet else None, dynamic_ncols=True, leave=False, file=sys.stderr, **kwargs)


class _Job:
    """One input at a time, with the options and counters of the run."""

    def __init__(self, args, predictor, articulator, out: Path, K, user_box, boxes) -> None:
        self.args, self.predictor, self.articulator, self.out = args, predictor, articulator, out
        self.K, self.user_box, self.boxes = K, user_box, boxes
        self.left = True if args.left else False if args.right else None
        self.failed = self.empty = self.poor = 0
        self.bar = None  # the inputs' progress bar, which lines are printed above

    def say(self, line: str, file=None) -> None:
        """One line about an input (stdout; failures to stderr even with --quiet), above the bar."""
        from tqdm import tqdm

        file = sys.stdout if file is None else file
        if self.args.quiet and file is sys.stdout:
            return
        if self.bar is not None and not self.bar.disable:
            tqdm.write(line, file=file)
        else:
            print(line, file=file, flush=True)

    def box(self, path: Path):
        from m3dhmr.inference import crops

        if self.boxes is None:
            return self.user_box
        box = crops.box_for(self.boxes, path)
        if box is None:
            log.warning("%s: no box in %s; finding the hands instead", path, self.args.bbox_json)
        return box

    def video(self, item, name: str) -> dict:
        from m3dhmr.inference import crops
        from m3dhmr.inference.outputs import staged_folder
        from m3dhmr.inference.video import VideoReader, predict_video

        args, out = self.args, self.out
        if self.K is not None:
            with VideoReader(item.path) as reader:
                H, W = reader.info.height, reader.info.width
            if H > 0 and W > 0:
                crops.check_intrinsics(self.K, H, W, "--K")
        kwargs = dict(hand_box=self.box(item.path), whole_frame=args.whole_image, K=self.K, left=self.left,
                      smooth=args.smooth, include_vertices=args.video_vertices, landmarks_every=args.landmarks_every)
        files = [f"{name}_annotated.mp4", f"{name}_results.jsonl"]
        frames = _progress(args, unit="frame", desc=item.path.name)
        kwargs["progress"] = _frame_counter(frames)
        try:
            if self.articulator is None:
                summary = predict_video(self.predictor, item.path, out / files[0], out / files[1], **kwargs)
            else:
                with staged_folder(out / f"{name}_hands") as hands_dir:
                    summary = predict_video(self.predictor, item.path, out / files[0], out / files[1], **kwargs,
                                            articulator=self.articulator, articulation_dir=hands_dir)
                files.append(f"{name}_hands")
        finally:
            frames.close()
        bad = f", {summary.bad_frames} undecodable frame(s) skipped" if summary.bad_frames else ""
        self.say(f"{item.path}: {summary.frames} frames{bad}, {summary.hands} hand track(s), "
                 f"{summary.successes} hand(s) registered -> {summary.video_path}")
        return {"outputs": files, "frames": summary.frames, "bad_frames": summary.bad_frames,
                "hand_tracks": summary.hands}

    def image(self, item, name: str) -> dict:
        import numpy as np

        from m3dhmr.inference import crops
        from m3dhmr.inference.images import load_image
        from m3dhmr.inference.outputs import save_image_outputs, staged_folder

        args, predictor, K, left = self.args, self.predictor, self.K, self.left
        image = load_image(item.path)
        H, W = image.shape[:2]
        if K is not None:
            crops.check_intrinsics(K, H, W, "--K")
        box = self.box(item.path)
        if box is not None:
            crops.validate_box(box, H, W, f"box of {item.path}")
            results = predictor.predict(image, K=K, left=bool(left), hand_box=box)
        elif args.whole_image:
            results = predictor.predict(image, crop_box=crops.full_image_box(H, W), K=K, left=bool(left))
        else:
            results = predictor.predict(image, K=K, left=left, color_order="rgb")  # load_image gives RGB
        if self.articulator is not None:
            results = self.articulator.attach(results)
        K_used = results[0].K if results else (
            crops.default_intrinsics(H, W, predictor.fov_deg) if K is None else K)
        folder = self.out / name
        with staged_folder(folder) as tmp:
            save_image_outputs(tmp, item.path, image, results, K_used, args.view_size, mesh_axes=args.mesh_axes)
        entry = {"outputs": [name], "hands": len(results)}
        if not results:
            self.empty += 1
            self.say(f"{item.path}: no hand found (give --bbox, lower --min-score, or --whole-image for a hand "
                     f"crop) -> {folder}")
            return entry
        self.failed += sum(not r.success for r in results)
        self.poor += sum(r.quality_flag == "poor" for r in results)
        desc = "; ".join(f"{r.handedness} hand {_status(r)}, wrist at {np.round(r.translation, 3).tolist()} m"
                         for r in results)
        self.say(f"{item.path}: {len(results)} hand(s): {desc} -> {folder}")
        return entry

    def warn(self) -> None:
        if self.failed:
            log.warning("%d hand(s) had a failed registration; their camera-space position is a guess", self.failed)
        if self.poor:
            log.warning("%d hand(s) of poor quality: the mesh disagrees with the landmark model (see \"quality\" in "
                        "result.json); do not trust them", self.poor)
        if self.empty:
            log.warning("%d image(s) with no hand found", self.empty)


def _frame_counter(bar):
    """predict_video's ``progress(done, total)`` callback, moving ``bar`` to ``done`` frames."""

    def progress(done: int, total: int | None) -> None:
        if total and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    return progress


def _status(result) -> str:
    """The per-hand word: its quality (never "ok" for a poor hand), or the failed registration."""
    if not result.success:
        return "registration failed (fallback depth), poor"
    if result.quality_report is None:
        return "ok"
    return result.quality_report.describe()
