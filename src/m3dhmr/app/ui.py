"""The web page (Gradio) over :class:`~m3dhmr.app.handlers.AppModel`; nothing is computed here.

Offline and private by default: Gradio's analytics and version check are off
(``analytics_enabled=False`` and ``GRADIO_ANALYTICS_ENABLED``), the default theme's fonts
are served by the server itself, no share link, and the server listens on 127.0.0.1
unless told otherwise. Requests run one at a time (the queue's concurrency is 1), on a
network and detector loaded once. Uploads and results live in the app's work folder
(``GRADIO_TEMP_DIR``), removed when the server stops.
"""

from __future__ import annotations

import os
from pathlib import Path

from m3dhmr.app.handlers import MAX_HANDS, SIDES, AppModel, Options
from m3dhmr.errors import InputError
from m3dhmr.inference.crops import DEFAULT_FOV_DEG

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before Gradio is imported: no telemetry, no version check
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402

TITLE = "m3dhmr: 3D hand meshes from a photo"
INTRO = ("Upload a photo (or take a webcam snapshot, or click an example): every hand found is reconstructed "
         "as a 3D mesh in the camera's space, with its joint rotations fitted to a rigged hand. Nothing leaves "
         "this computer.")
HEADERS = ["hand", "side", "detector score", "quality", "flag", "wrist x, y, z (m)", "rig fit error (mm)"]


def payload_path(payload) -> tuple[str | None, str | None]:
    """(path on the server, the user's file name) of an upload as the page sends it."""
    if payload is None:
        return None, None
    if isinstance(payload, dict):
        path = payload.get("path")
        return path, payload.get("orig_name") or (Path(path).name if path else None)
    return str(payload), Path(str(payload)).name


def _failed(message: str, what: str) -> str:
    return f"**Could not use this {what}.** {message}"


def _viewers(glbs: list, results: list | None = None) -> list:
    """The :data:`MAX_HANDS` viewers' updates: one per .glb, the rest hidden."""
    out = []
    for i in range(MAX_HANDS):
        if i < len(glbs):
            label = f"hand {i}" + (f" ({results[i].handedness})" if results else "")
            out.append(gr.Model3D(value=str(glbs[i]), label=label, visible=True))
        else:
            out.append(gr.Model3D(value=None, visible="hidden"))
    return out


class RefusedUploads:
    """Refused uploads: each is deleted at once (it lives in the app's work folder) and its
    message remembered, since the page may send the same upload again after it is gone (a
    picture the browser cannot show fires a second change event). The same file uploaded
    anew is tried again (other settings may help)."""

    def __init__(self, workdir: Path, size: int = 32) -> None:
        self.workdir, self.size = workdir.resolve(), size
        self.messages: dict[str, str] = {}

    def add(self, path: str, message: str) -> str:
        """Delete the upload at ``path`` (only inside the work folder), remember its message
        (the ``size`` latest are kept) and return the message."""
        if Path(path).resolve().is_relative_to(self.workdir):
            Path(path).unlink(missing_ok=True)
            try:
                Path(path).parent.rmdir()
            except OSError:
                pass
        self.messages[path] = message
        while len(self.messages) > self.size:
            del self.messages[next(iter(self.messages))]
        return message

    def get(self, path: str) -> str | None:
        """The message of an upload refused and gone, else None."""
        return None if Path(path).exists() else self.messages.get(path)


def _viewer_row(tab: str) -> list:
    """A row of :data:`MAX_HANDS` hidden 3D viewers for the tab ``tab`` ("photo" or "video");
    call inside the page's ``gr.Blocks``."""
    with gr.Row():
        return [gr.Model3D(visible="hidden", elem_id=f"{tab}-hand-{i}", height=360, clear_color=(0.95, 0.95, 0.95, 1.0),
                           interactive=False) for i in range(MAX_HANDS)]


def build(model: AppModel, examples: list[Path] = ()) -> gr.Blocks:
    """The page: a Photo tab and a Video tab sharing the controls.

    Sets ``GRADIO_TEMP_DIR`` to ``model.workdir`` (uploads go there, and results there are
    served without a copy), so build one app per process."""
    os.environ["GRADIO_TEMP_DIR"] = str(model.workdir)
    refused = RefusedUploads(model.workdir)

    def options(max_hands, min_score, side, fov) -> Options | str:
        """The settings, or the message saying which one is wrong."""
        try:
            return Options(max_hands=int(max_hands), min_score=float(min_score), side=str(side), fov_deg=float(fov))
        except (InputError, TypeError, ValueError) as e:
            return f"**Bad setting.** {e}"

    def run_photo(payload, max_hands, min_score, side, fov):
        path, name = payload_path(payload)
        opts = options(max_hands, min_score, side, fov)
        empty = [None, None, None]
        if path is None:
            return ["Upload a photo, take a webcam snapshot or click an example.", *empty, *_viewers([])]
        if isinstance(opts, str) or refused.get(path):
            return [opts if isinstance(opts, str) else refused.get(path), *empty, *_viewers([])]
        try:
            res = model.photo(path, opts, name=name)
        except (InputError, MemoryError) as e:
            message = "not enough memory for this photo" if isinstance(e, MemoryError) else str(e)
            return [refused.add(path, _failed(message, "photo")), *empty, *_viewers([])]
        return [res.summary(), str(res.overlay), res.rows(), [str(p) for p in res.downloads],
                *_viewers(res.glbs, res.results)]

    def run_video(payload, max_hands, min_score, side, fov, progress=gr.Progress()):
        path, name = payload_path(payload)
        opts = options(max_hands, min_score, side, fov)
        if path is None:
            return ["Upload a short clip.", None, None, *_viewers([])]
        if isinstance(opts, str) or refused.get(path):
            return [opts if isinstance(opts, str) else refused.get(path), None, None, *_viewers([])]
        progress(0, desc="starting")
        try:
            res = model.video(path, opts, name=name,
                              progress=lambda done, total: progress((done, total), desc="frames", unit="frames"))
        except (InputError, MemoryError) as e:
            message = "not enough memory for this clip" if isinstance(e, MemoryError) else str(e)
            return [refused.add(path, _failed(message, "clip")), None, None, *_viewers([])]
        return [res.summary(), str(res.video), [str(p) for p in res.downloads], *_viewers(res.glbs)]

    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        with gr.Accordion("Settings", open=False):
            with gr.Row():
                max_hands = gr.Slider(1, MAX_HANDS, value=2, step=1, label="most hands")
                min_score = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="detection threshold")
                side = gr.Radio(list(SIDES), value="auto", label="hand side (auto: the detector's call)")
                fov = gr.Slider(20, 120, value=DEFAULT_FOV_DEG, step=1,
                                label="camera's horizontal field of view (degrees)")
        controls = [max_hands, min_score, side, fov]
        with gr.Tab("Photo"):
            with gr.Row():
                with gr.Column():
                    photo = gr.Image(sources=["upload", "webcam", "clipboard"], type="filepath", label="photo",
                                     elem_id="photo-input")
                    photo_run = gr.Button("Find hands", variant="primary")
                    if examples:
                        gr.Examples([[str(p)] for p in examples], inputs=[photo],
                                    label="examples (rendered by m3dhmr)")
                with gr.Column():
                    photo_status = gr.Markdown(elem_id="photo-status")
                    overlay = gr.Image(label="mesh and 2D joints over the photo", interactive=False,
                                       elem_id="photo-overlay", buttons=["download", "fullscreen"])
                    table = gr.Dataframe(headers=HEADERS, interactive=False, elem_id="photo-hands")
                    photo_files = gr.File(label="downloads: result.json, .glb and .obj per hand",
                                          file_count="multiple", interactive=False, elem_id="photo-files")
            photo_viewers = _viewer_row("photo")
        with gr.Tab("Video"):
            with gr.Row():
                with gr.Column():
                    clip = gr.Video(sources=["upload"], label="clip", elem_id="video-input")
                    video_run = gr.Button("Track hands", variant="primary")
                with gr.Column():
                    video_status = gr.Markdown(elem_id="video-status")
                    annotated = gr.Video(label="annotated", interactive=False, elem_id="video-annotated")
                    video_files = gr.File(label="downloads: results.jsonl, animated .glb and .bvh per hand id",
                                          file_count="multiple", interactive=False, elem_id="video-files")
            video_viewers = _viewer_row("video")
        # One concurrency group for every event: one request at a time, whichever tab sent it.
        queued = dict(preprocess=False, concurrency_limit=1, concurrency_id="m3dhmr")
        photo_out = [photo_status, overlay, table, photo_files, *photo_viewers]
        for event in (photo.change, photo_run.click):
            event(run_photo, [photo, *controls], photo_out, **queued)
        video_out = [video_status, annotated, video_files, *video_viewers]
        for event in (clip.upload, video_run.click):
            event(run_video, [clip, *controls], video_out, **queued)
    demo.queue(default_concurrency_limit=1, max_size=32)
    return demo


def launch(demo: gr.Blocks, model: AppModel, host: str = "127.0.0.1", port: int = 7860,
           allowed: list[Path] = (), block: bool = True) -> gr.Blocks:
    """Serve ``demo`` at ``host:port`` (one request at a time); ``block`` False returns at once
    (tests: ``demo.close()`` stops it)."""
    demo.launch(server_name=host, server_port=port, share=False, inbrowser=False, quiet=True,
                max_file_size=f"{model.settings.max_upload_mb}mb", allowed_paths=[str(p) for p in allowed],
                prevent_thread_lock=not block, show_error=False, ssr_mode=False, pwa=False, mcp_server=False)
    return demo
