"""Synthetic training and evaluation data in FreiHAND's exact on-disk layout.

Each sample: a random shape and natural pose from the hand model's sampler, a random
global rotation (mostly palm or back towards the camera, as in FreiHAND, sometimes any
rotation), a pinhole camera (focal 400-700 px at 224 px, principal point within a few
pixels of the centre), the hand placed so that its 2D box fills 40-70 % of the image
near the centre, a skin tone with per-vertex texture noise, one directional light
(ambient + Lambert + Blinn-Phong), a background (procedural texture or a recoloured
crop of a photo from the scikit-image wheel), random occluding shapes, blur, noise
and JPEG compression. Right hands only, like FreiHAND.

Version 4's scene and camera (each behind a :class:`SynthConfig` field, so an ablation can
switch it off with ``m3dhmr synth --set``): half the poses are drawn around a library of
real handshapes (:mod:`m3dhmr.hand.handshapes`: gestures, the ten sign-language digits,
grips; ``handshape_prob``); a grip holds its object (cylinder, sphere, plate, pen;
``object_prob``) and sometimes a second, never annotated hand passes in front of or behind
the hand (``other_hand_prob``), both in the hand's z-buffer (:mod:`m3dhmr.data.synth_objects`);
the whole image then goes through exposure, white balance and a tone curve, lens softness,
defocus, motion blur and signal-dependent sensor noise, and is written at a JPEG quality
drawn per sample (:mod:`m3dhmr.data.synth_camera`; masks stay at ``jpeg_quality``).

Modules: :mod:`m3dhmr.data.synth_scene` (sampling ranges, pose, orientation, camera,
placement, skin, light), :mod:`m3dhmr.data.synth_compose` (rendering and compositing
one sample), :mod:`m3dhmr.data.synth_encode` (annotation JSON and JPEG bytes), and this
one (the set on disk: workers, completeness).

Written files (``{split}`` = ``training`` / ``evaluation``)::

    training/rgb/%08d.jpg, training/mask/%08d.jpg, evaluation/rgb/%08d.jpg
    {split}_K.json, {split}_xyz.json, {split}_verts.json, {split}_scale.json  (FreiHAND's)
    {split}_params.json   per sample: pose (48, global part zero), shape, global_rotation
                          (axis-angle), translation, focal, light, skin tone, background, ...
                          camera space = global_rotation @ (model vertices - model wrist) + translation
    template.ply, j_reg.npy, regions.npy    the template the set was made with
    synth_info.json                         seed, counts, size, version, template name
    synth_manifest.json                     every file above with its size, counts, seed (written last;
                                            :mod:`m3dhmr.data.synth_manifest`)
    .m3dhmr.lock                            the folder's lock (:class:`m3dhmr.fileio.FolderLock`; stays)

Masks are the hand's *visible* silhouette: pixels covered by an occluding shape, a held
object or the second hand in front of the hand are excluded (FreiHAND's masks are the hand's silhouette too). Evaluation has no masks,
as in FreiHAND.

Determinism: sample ``i`` of split ``s`` draws everything from its own generator,
``np.random.SeedSequence([seed, s, i])``; hands are posed in batches of the fixed
:data:`CHUNK` indices, whatever the number of workers, so the same seed gives
byte-identical annotation JSONs and images for any ``--workers``.

Speed (issue 4; goal: FreiHAND's 32,560 training samples in < 5 min on 2 cores): the
hand is rendered only inside its projected box (:func:`render_hand_box`); compositing,
occluders, blur and noise work on the uint8 image with OpenCV and small numba kernels;
backgrounds are one ``warpAffine`` + one ``cv2.transform`` from a per-process photo
pyramid; the vertex JSON is formatted by a numba kernel; hands are posed 32 at a time;
every worker uses one thread and inherits the compiled kernels from the parent (fork).
``benchmarks/synth_speed.py`` measures it. What realism costs (version 4, measured on this
project's shared 2-core Intel Xeon (AVX-512, 2026-12-02), load ~1.2, back to back with
version 3's code): 76-79 images per CPU second against version 3's 132-152 (x0.55), end to end with 2 workers 144-154
images/s; of version 4's ~7.2 ms of rendering and compositing per sample, held objects and
the second hand take ~0.5 ms and the camera effects ~0.3 ms (the sensor noise reads a
window of a fixed per-process normal field instead of drawing fresh normals: 0.5 instead
of 1.4 ms), the forearm, per-pixel skin and shading most of the rest.

Completeness: a run holds the folder's :class:`~m3dhmr.fileio.FolderLock` from before it
cleans a previous set until it is done, so a second run into the same folder fails at
once instead of mixing its files into the first's. It removes a killed run's temporary
files, writes ``.synth_in_progress`` and deletes any previous annotation JSONs,
``synth_info.json`` and manifest; images are written as they are made; the annotation
JSONs are streamed into hidden temporary files and renamed into place only after every
image exists; ``synth_info.json`` and then the manifest are written last and the
in-progress marker removed. A killed or failed run therefore leaves no annotation JSON
(which the loader requires) and no ``synth_info.json``; the marker lets the next run
recognise the folder as ours and replace it. The loader checks a set against its
manifest (file sizes and image counts), so one changed afterwards is refused.
"""

from __future__ import annotations

import logging
import multiprocessing
import shutil
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from m3dhmr.data.backgrounds import load_photos, photo_pyramids
from m3dhmr.data.synth_compose import blend, render_range
from m3dhmr.data.synth_encode import encode_annotations, encode_images, json_rows
from m3dhmr.data.synth_manifest import MANIFEST_FILE, check_synthetic_set, write_manifest
from m3dhmr.data.synth_scene import HandContext, SynthConfig, projected_box
from m3dhmr.fileio import (LOCK_NAME, TEMP_GLOB, FolderLock, atomic_path, atomic_write_json, check_output_folder,
                           remove_stale_temporaries)
from m3dhmr.errors import InputError
from m3dhmr.hand import load_template
from m3dhmr.mesh.io import write_mesh
from m3dhmr.render.shading import render_mesh

log = logging.getLogger(__name__)

# 2: faster compositing (uint8, OpenCV), lighter skin tones, brighter light.
# 3: the hands are posed as recorded (version 2 and before cast pose and shape values to
#    the model's integer faces buffer: nearly every rendered hand was the rest hand).
# 4: real handshapes (hand/handshapes.py) beside joint-by-joint poses, held objects and a second hand
#    in the hand's z-buffer, camera effects (exposure, white balance, tone curve, defocus, motion
#    blur, signal-dependent noise, JPEG quality per sample); SynthConfig fields switch each off.
SYNTH_VERSION = 4
#: Samples posed together; fixed so that batching never depends on the worker count.
CHUNK = 32
SPLITS: tuple[tuple[str, int], ...] = (("training", 0), ("evaluation", 1))
ANNOTATION_KEYS: tuple[str, ...] = ("K", "xyz", "verts", "scale", "params")
INFO_FILE = "synth_info.json"
IN_PROGRESS = ".synth_in_progress"
TEMPLATE_FILES = ("template.ply", "j_reg.npy", "regions.npy")


# --------------------------------------------------------------------------- workers

_STATE: dict[str, Any] = {}


def warm_up() -> None:
    """Compile (or load from numba's disk cache) every jitted kernel of the pipeline on tiny
    inputs. :func:`generate` calls it in the parent before forking, so forked workers
    inherit the compiled code instead of each paying ~1 s to load it."""
    tri = np.array([[-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [0.0, 1.0, 1.0]])
    K = np.array([[2.0, 0.0, 1.5], [0.0, 2.0, 1.5], [0.0, 0.0, 1.0]])
    render_mesh(tri, np.array([[0, 1, 2]]), K, 4, colors=np.full((3, 3), 0.5))
    json_rows(tri)
    projected_box(tri, 0.0, 0.0, 1.0)
    img = np.zeros((4, 4, 3), np.uint8)
    blend(img, np.ones((4, 4), np.float32), np.ones((4, 4, 3), np.float32), premultiplied=True)
    blend(img, np.ones((4, 4), np.float32), np.ones(3, np.float32))


def _init_worker(out: str, seed: int, cfg: SynthConfig) -> None:
    # One thread per worker: the workers are the parallelism (and OpenCV's / torch's pools
    # would oversubscribe the cores).
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    warm_up()
    _STATE.update(out=Path(out), seed=seed, cfg=cfg, ctx=HandContext())


def _work(task: tuple[str, int, int, int]) -> tuple[str, int, list[dict[str, str]], list[tuple[int, int]]]:
    """Render, write the images of, and encode the annotations of one chunk; returns the
    split, the chunk's first index, its annotations and the (rgb, mask) bytes per image."""
    split, split_id, start, stop = task
    out, cfg = _STATE["out"], _STATE["cfg"]
    samples = render_range(_STATE["ctx"], cfg, _STATE["seed"], split_id, start, stop)
    entries, sizes = [], []
    # Images are written directly, not through fileio's temp-file-and-rename (3x slower per
    # file here): a half-written image can only exist in a set whose annotation JSONs do not
    # exist yet, i.e. one that never looks complete (module docstring).
    for i, s in zip(range(start, stop), samples):
        rgb, mask = encode_images(s, cfg.jpeg_quality)
        (out / split / "rgb" / f"{i:08d}.jpg").write_bytes(rgb)
        if split == "training":
            (out / split / "mask" / f"{i:08d}.jpg").write_bytes(mask)
        entries.append(encode_annotations(s))
        sizes.append((len(rgb), len(mask)))
    return split, start, entries, sizes


# --------------------------------------------------------------------------- the set


def _output_entries(out: Path) -> list[Path]:
    names = [MANIFEST_FILE, INFO_FILE] + [f"{s}_{k}.json" for s, _ in SPLITS for k in ANNOTATION_KEYS]
    names += [f"{s}_mano.json" for s, _ in SPLITS] + list(TEMPLATE_FILES)
    return [out / n for n in names]


def _set_files() -> list[str]:
    """The set's files besides its images (relative paths), as listed in its manifest."""
    return [f"{s}_{k}.json" for s, _ in SPLITS for k in ANNOTATION_KEYS] + list(TEMPLATE_FILES) + [INFO_FILE]


def check_replaceable(out: Path, overwrite: bool) -> None:
    """``ValueError`` unless ``out`` may be written: it is empty (but for a lock file or a
    killed run's temporaries), a previous synthetic set (``synth_info.json`` or the
    in-progress marker), or ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    if not out.is_dir():
        return
    others = (p for p in out.iterdir() if p.name != LOCK_NAME and not p.match(TEMP_GLOB))
    ours = (out / INFO_FILE).is_file() or (out / IN_PROGRESS).is_file()
    if next(others, None) is not None and not ours and not overwrite:
        raise InputError(f"--out {out} is not empty and is not a synthetic set made by m3dhmr synth "
                         f"(no {INFO_FILE}); pass --overwrite to replace its FreiHAND-layout files")


def prepare_output(out: Path, overwrite: bool) -> None:
    """Check ``out`` may be written (:func:`check_replaceable`) and remove a previous set's
    files and a killed run's temporaries from it; call it holding the folder's lock.

    Only the files of the FreiHAND layout, ours and the loader's cache are removed.
    """
    check_replaceable(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    # Safe only under the lock: no live writer owns a temporary here.
    remove_stale_temporaries(out, recursive=True)
    # Completion markers first, so an interrupted clean never looks complete either.
    for p in _output_entries(out):
        p.unlink(missing_ok=True)
    for d in ("training", "evaluation", ".m3dhmr_cache"):
        shutil.rmtree(out / d, ignore_errors=True)


def _write_template(out: Path, template: Any) -> None:
    write_mesh(out / "template.ply", np.asarray(template.vertices), np.asarray(template.faces))
    for name, arr in (("j_reg.npy", template.joint_regressor), ("regions.npy", template.regions)):
        with atomic_path(out / name) as tmp:
            np.save(tmp, np.asarray(arr))


def generate(out: str | Path, num_train: int, num_eval: int, seed: int = 0, workers: int = 1,
             config: SynthConfig = SynthConfig(), overwrite: bool = False, progress: bool = True,
             start_method: str | None = None) -> Path:
    """Write a synthetic set of ``num_train`` training and ``num_eval`` evaluation samples
    to ``out`` (layout and guarantees in the module docstring); returns ``out``.
    ``start_method``: multiprocessing start method of the workers (default fork where
    available, else spawn)."""
    for name, v in (("--train", num_train), ("--eval", num_eval), ("--seed", seed)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise InputError(f"{name} must be a non-negative integer, got {v!r}")
    if num_train + num_eval == 0:
        raise InputError("--train and --eval are both 0: nothing to generate")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InputError(f"--workers must be a positive integer, got {workers!r}")
    out = Path(out)
    # The output is checked (a foreign folder, a file in the way, an unwritable parent) before
    # the template or any worker is loaded, so a bad --out is one clear line, not a traceback.
    check_replaceable(out, overwrite)
    if config.background_dir is not None:
        load_photos(config.background_dir)  # a missing or empty folder fails before anything is written
    check_output_folder(out)
    # One run per folder: two runs mixed their images and annotations into a set that looked complete.
    with FolderLock(out, "m3dhmr synth"):
        return _generate_locked(out, num_train, num_eval, seed, workers, config, overwrite, progress, start_method)


def _generate_locked(out: Path, num_train: int, num_eval: int, seed: int, workers: int, config: SynthConfig,
                     overwrite: bool, progress: bool, start_method: str | None) -> Path:
    prepare_output(out, overwrite)
    atomic_write_json(out / IN_PROGRESS, {"seed": int(seed), "train": int(num_train), "eval": int(num_eval)})
    counts = {"training": int(num_train), "evaluation": int(num_eval)}
    for split, _ in SPLITS:
        (out / split / "rgb").mkdir(parents=True, exist_ok=True)
    (out / "training" / "mask").mkdir(parents=True, exist_ok=True)
    tasks = [(split, sid, a, min(a + CHUNK, counts[split])) for split, sid in SPLITS
             for a in range(0, counts[split], CHUNK)]
    workers = min(int(workers), max(len(tasks), 1))
    template = load_template("open_hand")
    _write_template(out, template)

    with ExitStack() as stack:
        files: dict[tuple[str, str], Any] = {}
        for split, _ in SPLITS:
            for key in ANNOTATION_KEYS:
                tmp = stack.enter_context(atomic_path(out / f"{split}_{key}.json"))
                fh = stack.enter_context(open(tmp, "w", encoding="utf-8"))
                fh.write("[")
                files[split, key] = fh
        written = dict.fromkeys(counts, 0)
        sizes = {"training/rgb": [0] * counts["training"], "training/mask": [0] * counts["training"],
                 "evaluation/rgb": [0] * counts["evaluation"]}
        bar = stack.enter_context(tqdm(total=num_train + num_eval, unit="img", disable=not progress,
                                       desc="synth", dynamic_ncols=True))
        if workers == 1:
            # The work runs in this process: restore the caller's thread settings afterwards.
            threads = torch.get_num_threads(), cv2.getNumThreads()
            stack.callback(torch.set_num_threads, threads[0])
            stack.callback(cv2.setNumThreads, threads[1])
            stack.callback(_STATE.clear)
            _init_worker(str(out), int(seed), config)
            results = map(_work, tasks)
        else:
            # fork starts workers in milliseconds (spawn re-imports torch: ~30 s per worker on a
            # loaded 2-core machine); the parent has run no torch op here, and workers use one
            # thread, so no OpenMP pool is inherited half-initialised.
            method = start_method or ("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
            if method == "fork":
                # numba kernels and photo pyramids only (no torch op, no thread pool): the
                # forked workers inherit them instead of each loading them again. OpenCV
                # must stay single-threaded here: a forked child of a process whose OpenCV
                # thread pool has started hangs in its first OpenCV call.
                stack.callback(cv2.setNumThreads, cv2.getNumThreads())
                cv2.setNumThreads(1)
                warm_up()
                photo_pyramids(config.background_dir)
            pool = stack.enter_context(multiprocessing.get_context(method).Pool(
                workers, initializer=_init_worker, initargs=(str(out), int(seed), config)))
            results = _watched(pool.imap(_work, tasks, chunksize=1), pool)
        for split, start, entries, chunk_sizes in results:
            for e in entries:
                sep = ", " if written[split] else ""
                for key in ANNOTATION_KEYS:
                    files[split, key].write(sep + e[key])
                written[split] += 1
            for i, (rgb, mask) in enumerate(chunk_sizes, start):
                sizes[f"{split}/rgb"][i] = rgb
                if split == "training":
                    sizes["training/mask"][i] = mask
            bar.update(len(entries))
        for fh in files.values():
            fh.write("]")
    info = {"version": SYNTH_VERSION, "seed": int(seed), "train": counts["training"], "eval": counts["evaluation"],
            "size": config.size, "template": getattr(template, "name", "open_hand"),
            "num_vertices": int(len(template.vertices)), "config": asdict(config)}
    atomic_write_json(out / INFO_FILE, info, indent=1)
    # The manifest lists the sizes this run wrote, so files another process changed fail the check.
    write_manifest(out, seed, counts, sizes, _set_files())
    (out / IN_PROGRESS).unlink(missing_ok=True)
    log.info("wrote %d training and %d evaluation samples to %s", num_train, num_eval, out)
    return out


class WorkerDied(RuntimeError):
    """A synthesis worker process ended without finishing its chunk."""


def _watched(results: Any, pool: Any) -> Any:
    """Yield ``pool.imap`` results in order; raise :class:`WorkerDied` if a worker is lost.

    multiprocessing.Pool quietly replaces a worker the OS killed (out of memory, a crash
    in a native library) and then waits forever for the lost chunk; polling with a
    timeout and comparing the worker pids turns that hang into an error.
    """
    pids = {p.pid for p in pool._pool}  # noqa: SLF001 - Pool exposes no public worker list
    while True:
        try:
            yield results.next(timeout=2.0)
        except StopIteration:
            return
        except multiprocessing.TimeoutError:
            if {p.pid for p in pool._pool} != pids:  # noqa: SLF001
                raise WorkerDied("a synth worker process died (killed by the OS?); nothing was "
                                 "marked complete, rerun to replace the partial set") from None


def is_complete(out: str | Path) -> bool:
    """True when ``out`` holds a finished synthetic set (``synth_info.json`` present, no marker)
    whose files match its manifest (sets from before the manifest: not checked)."""
    out = Path(out)
    if not (out / INFO_FILE).is_file() or (out / IN_PROGRESS).exists():
        return False
    try:
        check_synthetic_set(out)
    except ValueError as e:
        log.info("%s", e)
        return False
    return True
