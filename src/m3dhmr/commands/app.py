"""``m3dhmr app``: a local web page to try the model on photos and clips.

Photo tab: upload a photo or take a webcam snapshot; every hand found with its side and
score, the mesh and 2D joints over the photo, a 3D viewer of each hand's rigged, posed
``.glb``, the quality score and the downloads (``result.json``, ``.glb``, ``.obj``). Video
tab: a short clip in, the annotated H.264 video and an animated ``.glb`` and ``.bvh`` per
hand id out. Needs the ``app`` extra (``pip install 'm3dhmr[app]'``, Gradio).

The server listens on 127.0.0.1 (this computer only) unless ``--host`` says otherwise,
sends no telemetry and fetches nothing from the network. The network and the hand
detector are loaded once; requests run one at a time. Uploads and results stay in a
temporary folder that is removed when the server stops (Ctrl+C).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile

from m3dhmr.app import INSTALL_HINT
from m3dhmr.errors import UserError
from m3dhmr.hardware import torch_threads


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # heavy: the app modules (torch, cv2) load only when this command is used, not on import
    from m3dhmr.app.handlers import AppSettings

    d = AppSettings()
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this computer only; 0.0.0.0 opens it to the "
                             "network, without any login)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--checkpoint", default=None,
                        help="model weights (.safetensors from m3dhmr train); default: the packaged model")
    parser.add_argument("--template", default=None, help="hand template of --checkpoint's model, as for predict")
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                        help="run the network with PyTorch (default) or ONNX Runtime")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of the network (default: PyTorch's); 1 is faster on a machine busy with "
                             "other work")
    parser.add_argument("--max-video-seconds", type=float, default=d.max_video_seconds,
                        help=f"longest clip accepted (default {d.max_video_seconds:g} s)")
    parser.add_argument("--max-megapixels", type=float, default=d.max_image_pixels / 1e6,
                        help=f"largest photo accepted (default {d.max_image_pixels / 1e6:g} megapixels)")
    parser.add_argument("--max-upload-mb", type=int, default=d.max_upload_mb,
                        help=f"largest upload accepted (default {d.max_upload_mb} MB)")


def run(args: argparse.Namespace) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError as e:
        raise UserError(f"the web app needs Gradio, which is not installed: {INSTALL_HINT}") from e
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port must be in [1, 65535], got {args.port}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if args.max_video_seconds <= 0 or args.max_megapixels <= 0 or args.max_upload_mb <= 0:
        raise UserError("--max-video-seconds, --max-megapixels and --max-upload-mb must be > 0")
    if args.checkpoint is None and args.template is not None:
        raise UserError("--template applies to --checkpoint; the packaged model carries its own")

    with torch_threads(args.threads):
        _serve(args)
    return 0


def _serve(args: argparse.Namespace) -> None:
    """Load the model, build the page and serve it until Ctrl+C (``run`` checked the options)."""
    # heavy: gradio, torch and the model load only when the app is started
    from m3dhmr.app import ui
    from m3dhmr.app.examples import example_images
    from m3dhmr.app.handlers import AppModel, AppSettings
    from m3dhmr.inference.images import load_image
    from m3dhmr.inference.predictor import Predictor

    if args.checkpoint is None:
        predictor = Predictor.from_pretrained(backend=args.backend, threads=args.threads)
    else:
        predictor = Predictor.from_checkpoint(args.checkpoint, backend=args.backend, threads=args.threads,
                                              template=args.template)
    settings = AppSettings(max_image_pixels=int(args.max_megapixels * 1e6), max_video_seconds=args.max_video_seconds,
                           max_upload_mb=args.max_upload_mb)
    workdir = tempfile.mkdtemp(prefix="m3dhmr-app-")
    try:
        model = AppModel(predictor, workdir, settings)
        examples = example_images()
        model.warm_up(load_image(examples[0]))
        demo = ui.build(model, examples)
        where = "this computer only" if args.host in ("127.0.0.1", "localhost", "::1") else \
            "open to the network, without a login"
        print(f"m3dhmr app: http://{args.host}:{args.port} ({where}); Ctrl+C stops it", flush=True)
        ui.launch(demo, model, args.host, args.port, allowed=[examples[0].parent])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
