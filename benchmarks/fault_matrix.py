"""Fault matrix (issue 21, "Nothing lost, nothing half-done"): replay the audit's hostile and
careless cases and classify each outcome.

    .venv/bin/python benchmarks/fault_matrix.py [--work DIR] [--only SUBSTRING ...] [--list] [--seed 0]

The script builds its own tiny inputs (an 8 + 4 image synthetic set, a tiny experiment, a
few images cut from the set, a short MJPG .avi with one frame's bytes zeroed, tiny training
runs and doctored checkpoints), then runs every case, in-process through
``m3dhmr.cli.main`` (stdout, stderr and logging captured) where it can, and as a
subprocess (``python -m m3dhmr``) where a case needs a process of its own (SIGKILL,
two processes on one folder, a proxy that refuses the ImageNet download, a heap limit
for the cases that ask for huge sizes, so that a version without bounds fails instead of
taking the machine).

Each case ends in one of three classes, printed as ``[class] name: detail``:

- ``clear``: the command refused (exit status != 0), the last line of stderr is one line
  ``m3dhmr CMD: error: ...`` (or a per-input failure line ``INPUT: ...`` of a predict
  batch) holding the expected words, no "Traceback" anywhere, and what must stay
  untouched is untouched (an existing run byte for byte, nothing created).
- ``handled``: the right outcome happened (the batch went past a bad file, a killed run
  resumed, names did not collide, a stale temporary was removed, ...).
- ``defect``: anything else, with why (exit status, the last lines of stderr). A case
  whose own set-up fails counts as a defect too: nothing is assumed to work.

The last line printed is ``cases=N clear=N handled=N defects=N``; the exit status is 1
when defects > 0. About 2-4 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2 shared cores: one thread per process

CLEAR, HANDLED, DEFECT = "clear", "handled", "defect"
LOCK_NAME = ".m3dhmr.lock"
TEMP_GLOB = ".*.tmp-*"

#: The tests' tiny experiment (tests/conftest.py) without per-epoch weight files: ResNet18 at
#: 64 px, narrow decoder, batch 4, 1 stage-1 epoch + 2 stage-2 epochs over 8 images = 6 steps.
TINY_EXPERIMENT_YAML = """\
model:
  backbone: resnet18
  backbone_width: 16
  input_size: 64
  stack_channels: 16
  stack2_channels: [16, 16, 32]
  latent_channels: 32
  decoder_channels: [8, 8, 16, 16]
  dsc_kernels: 2
train:
  batch_size: 4
  stage1_epochs: 1
  epochs: 2
  lr_milestones: [1]
  seed: 3
  log_every: 1
  keep_epoch_checkpoints: false
data:
  num_workers: 0
  augment:
    rotation_deg: 30.0
"""
FINAL_STEP = 6


# ============================================================================ outcomes and verdicts


@dataclass
class Outcome:
    """What one command did: exit status (None when an exception escaped ``main``), its
    stdout and stderr (with the escaped exception's traceback appended), wall time."""

    rc: int | None
    out: str
    err: str
    seconds: float = 0.0

    def lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.strip()]

    def tail(self, n: int = 3) -> str:
        lines = self.lines()
        return " | ".join(short(ln, 240) for ln in lines[-n:]) if lines else "(stderr empty)"


@dataclass
class Verdict:
    kind: str
    detail: str


@dataclass
class Case:
    name: str
    item: int  # the numbered defect it replays
    fn: Callable[["Context"], Verdict]
    about: str


class Defect(Exception):
    """Raised by a case's checks: the case is a defect, for the reason given."""


class _Kill(BaseException):
    """Stands for a SIGKILL at one write step of a checkpoint: no handler catches it (run_cli
    lets it through), no clean-up of the half-written temporary."""


def why(o: Outcome | None) -> str:
    return "" if o is None else f" [rc={o.rc}; stderr ends: {o.tail()}]"


def expect(cond: bool, reason: str, o: Outcome | None = None) -> None:
    if not cond:
        raise Defect(reason + why(o))


def expect_refusal(o: Outcome, cmd: str, *fragments: str, per_input: str | Path | None = None) -> str:
    """The refusal rules of a ``clear`` case (module doc); returns stderr's last line,
    raises :class:`Defect` naming the first rule broken. ``per_input``: the input whose
    failure line (``INPUT: ...``) may end stderr instead of ``m3dhmr CMD: error: ...``."""
    if o.rc is None:
        raise Defect("an exception escaped m3dhmr.cli.main (a traceback for the user)" + why(o))
    if o.rc == 0:
        raise Defect("accepted (exit status 0) instead of refused" + why(o))
    if "Traceback" in o.err or "Traceback" in o.out:
        raise Defect("a traceback was printed" + why(o))
    lines = o.lines()
    if not lines:
        raise Defect("refused without a word on stderr" + why(o))
    last = lines[-1].strip()
    prefixes = [f"m3dhmr {cmd}: error: "] + ([f"{per_input}: "] if per_input is not None else [])
    if not any(last.startswith(p) for p in prefixes):
        raise Defect(f"stderr's last line is not '{prefixes[0]}...'" + why(o))
    missing = [f for f in fragments if f not in last]
    if missing:
        raise Defect(f"the error line lacks {missing}" + why(o))
    return last


#: The work folder, shown as $WORK in details (set by :class:`Context`).
_WORK: list[str] = []


def short(text: str, n: int = 220) -> str:
    """One line of at most ``n`` characters, the work folder written $WORK."""
    text = " ".join(text.split())
    for w in _WORK:
        text = text.replace(w, "$WORK")
    return text if len(text) <= n else text[: n - 3] + "..."


# ============================================================================ running commands


class CurrentStderrHandler(logging.Handler):
    """Logging to whatever ``sys.stderr`` is at the time (so redirect_stderr captures it),
    formatted like the CLI's own ``basicConfig``."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # pragma: no cover
            self.handleError(record)


@contextlib.contextmanager
def log_capture():
    """Route logging (INFO and up) through :class:`CurrentStderrHandler` for the duration;
    the CLI's own ``basicConfig`` is then a no-op because the root logger has a handler.
    Removed afterwards, so that a test session that imports this script is not changed."""
    root = logging.getLogger()
    if any(isinstance(h, CurrentStderrHandler) for h in root.handlers):  # nested
        yield
        return
    handler, level = CurrentStderrHandler(), root.level
    root.addHandler(handler)
    if level > logging.INFO or level == logging.NOTSET:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


class Captured:
    out: str = ""
    err: str = ""


@contextlib.contextmanager
def captured():
    """Capture stdout, stderr and logging of code run in this process, and what native
    libraries (FFmpeg, OpenCV) write to file descriptor 2, which comes first in ``err``."""
    holder = Captured()
    out, err = io.StringIO(), io.StringIO()
    native = tempfile.TemporaryFile()
    for stream in (sys.stdout, sys.stderr, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = None
    with contextlib.suppress(OSError):
        saved = os.dup(2)
        os.dup2(native.fileno(), 2)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), log_capture():
            yield holder
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
        native.seek(0)
        text = native.read().decode("utf-8", "replace")
        native.close()
        holder.out, holder.err = out.getvalue(), text + err.getvalue()


def run_cli(argv: Iterable[object]) -> Outcome:
    """``m3dhmr.cli.main(argv)`` in this process, stdout and stderr (logging too) captured.
    An exception escaping ``main`` is what a user would see as a traceback: it is appended
    to stderr and ``rc`` is None."""
    from m3dhmr import cli

    t0 = time.perf_counter()
    rc: int | None
    with captured() as cap:
        try:
            rc = cli.main([str(a) for a in argv])
        except SystemExit as e:  # argparse
            rc = e.code if isinstance(e.code, int) else 2
        except (KeyboardInterrupt, _Kill):
            raise
        except BaseException:  # noqa: BLE001 - what escapes main is the finding
            rc = None
            sys.stderr.write(traceback.format_exc())
    return Outcome(rc, cap.out, cap.err, time.perf_counter() - t0)


def m3dhmr_cmd(argv: Iterable[object]) -> list[str]:
    return [sys.executable, "-m", "m3dhmr", *map(str, argv)]


#: Heap limit (GiB) of the subprocesses of cases that ask for huge sizes: a version that
#: does not bound them fails with a MemoryError (a defect) instead of taking the machine.
MEMORY_LIMIT_GB = 3


def _limit_memory(gb: float) -> Callable[[], None] | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return None

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (int(gb * 2**30), int(gb * 2**30)))

    return limit


def run_sub(argv: list[str], env: dict[str, str] | None = None, timeout: float = 300,
            memory_gb: float | None = None) -> Outcome:
    """A command as a subprocess (``argv`` complete, e.g. from :func:`m3dhmr_cmd`);
    ``memory_gb``: its heap limit (``RLIMIT_DATA``, Linux; none where unsupported)."""
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       env=None if env is None else {**os.environ, **env},
                       preexec_fn=None if memory_gb is None else _limit_memory(memory_gb))
    return Outcome(p.returncode, p.stdout, p.stderr, time.perf_counter() - t0)


# ============================================================================ files


def _digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (the lock file aside) with its mode and content digest."""
    if not root.exists():
        return {}
    if root.is_file():
        return {".": f"{root.stat().st_mode & 0o777:o}:{_digest(root)}"}
    state = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.name == LOCK_NAME:
            continue
        state[rel] = "dir" if p.is_dir() else f"{p.stat().st_mode & 0o777:o}:{_digest(p)}"
    return state


def changes(before: dict[str, str], after: dict[str, str]) -> str:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    parts = [f"{what}: {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}"
             for what, names in (("added", added), ("removed", removed), ("changed", changed)) if names]
    return "; ".join(parts)


def expect_untouched(before: dict[str, str], root: Path, o: Outcome | None = None, what: str = "") -> None:
    diff = changes(before, snapshot(root))
    expect(not diff, f"{what or root.name} was modified ({diff})", o)


def temporaries(root: Path) -> list[Path]:
    return sorted(root.rglob(TEMP_GLOB)) if root.exists() else []


def strict_json(text: str):
    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


# ============================================================================ the inputs


class SetupError(RuntimeError):
    pass


class Context:
    """The work folder and the tiny inputs, each built on first use (``--only`` builds
    only what the chosen cases need) and shared by the cases that only read it."""

    def __init__(self, work: Path, seed: int = 0, keep: bool = False) -> None:
        self.work = Path(work)
        _WORK[:] = [str(self.work)]
        for sub in ("shared", "cases"):  # a reused --work: start from nothing
            shutil.rmtree(self.work / sub, ignore_errors=True)
        self.seed = seed
        self.keep = keep
        self._cache: dict[str, object] = {}
        self.gpu = _cuda_available()

    def _once(self, key: str, build: Callable[[], object]):
        if key not in self._cache:
            try:
                with captured():
                    self._cache[key] = build()
            except Exception as e:  # remembered: the next case that needs it fails the same way
                self._cache[key] = SetupError(f"set-up of {key} failed: {type(e).__name__}: {short(str(e), 300)}")
        value = self._cache[key]
        if isinstance(value, SetupError):
            raise value
        return value

    # --- folders
    def case_dir(self, name: str) -> Path:
        d = self.work / "cases" / name
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        return d

    def done(self, name: str) -> None:
        if not self.keep:
            shutil.rmtree(self.work / "cases" / name, ignore_errors=True)

    # --- shared inputs
    @property
    def config(self) -> Path:
        def build():
            p = self.work / "shared" / "tiny.yaml"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(TINY_EXPERIMENT_YAML)
            return p

        return self._once("config", build)

    @property
    def data(self) -> Path:
        def build():
            from m3dhmr.data.synth import generate
            from m3dhmr.data.synth_scene import SynthConfig

            # The tests' "packaged model look": unoccluded hands the packaged model recovers.
            look = SynthConfig(forearm_prob=0.0, skin_detail=False, shading="v3", ao=False, handshape_prob=0.0,
                               object_prob=0.0, other_hand_prob=0.0, defocus_prob=0.0, motion_blur_prob=0.0,
                               color_prob=0.0, jpeg_quality_range=(90, 90))
            return generate(self.work / "shared" / "data", 8, 4, seed=0, workers=1, config=look, progress=False)

        return self._once("data", build)

    @property
    def plain_image(self) -> Path:
        """A 64 x 64 noise picture: enough for option checks (no synthetic set needed)."""

        def build():
            import cv2
            import numpy as np

            p = self.work / "shared" / "plain.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(p), np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
            return p

        return self._once("plain_image", build)

    def hand_image(self, index: int = 7) -> Path:
        """A training image of the synthetic set (224 x 224, one right hand)."""
        return self.data / "training" / "rgb" / f"{index:08d}.jpg"

    def _train(self, out: Path, *extra: str) -> Path:
        o = run_cli(["train", "--config", self.config, "--data", self.data, "--out", out, "--no-progress", *extra])
        if o.rc != 0:
            raise SetupError(f"tiny training failed{why(o)}")
        return out

    @property
    def finished_run(self) -> Path:
        """An uninterrupted 6-step run, trained under umask 022 (the reference weights)."""

        def build():
            old = os.umask(0o022)
            try:
                return self._train(self.work / "shared" / "finished_run")
            finally:
                os.umask(old)

        return self._once("finished_run", build)

    @property
    def step3_run(self) -> Path:
        """A run stopped after 3 of its 6 steps (``--max-steps 3``): one to resume."""
        return self._once("step3_run", lambda: self._train(self.work / "shared" / "step3_run", "--max-steps", "3"))

    def copy_run(self, src: Path, dst: Path) -> Path:
        shutil.copytree(src, dst)
        return dst

    @property
    def checkpoint(self) -> Path:
        return self.finished_run / "checkpoints" / "last.safetensors"

    @property
    def int64_checkpoint(self) -> Path:
        """The finished run's weights with one float tensor stored as int64 (same metadata)."""

        def build():
            import torch
            from safetensors import safe_open
            from safetensors.torch import load_file, save_file

            with safe_open(str(self.checkpoint), framework="pt") as f:
                meta = dict(f.metadata())
            tensors = load_file(str(self.checkpoint))
            key = next(k for k, v in tensors.items() if v.is_floating_point() and v.ndim >= 2)
            tensors[key] = (tensors[key] * 100).round().to(torch.int64)
            p = self.work / "shared" / "int64.safetensors"
            save_file(tensors, str(p), metadata=meta)
            return p

        return self._once("int64_checkpoint", build)

    @property
    def huge_checkpoint(self) -> Path:
        """The finished run's weights whose stored experiment asks for model.input_size 100000."""

        def build():
            from safetensors import safe_open
            from safetensors.torch import load_file, save_file

            with safe_open(str(self.checkpoint), framework="pt") as f:
                meta = dict(f.metadata())
            exp = json.loads(meta["experiment"])
            exp["model"]["input_size"] = 100000
            meta["experiment"] = json.dumps(exp)
            p = self.work / "shared" / "huge_input.safetensors"
            save_file(load_file(str(self.checkpoint)), str(p), metadata=meta)
            return p

        return self._once("huge_checkpoint", build)

    def gt_pred(self, path: Path, split: str = "evaluation", edit: tuple | None = None) -> Path:
        """The split's ground truth as a pred.json; ``edit=(list, sample, point, axis, value)``."""
        xyz = json.loads((self.data / f"{split}_xyz.json").read_text())
        verts = json.loads((self.data / f"{split}_verts.json").read_text())
        if edit is not None:
            which, i, j, k, value = edit
            (xyz if which == "xyz" else verts)[i][j][k] = value
        path.write_text(json.dumps([xyz, verts]))
        return path

    def verts_json(self, path: Path, value: float | None = None) -> Path:
        """One mesh of the set as a fit input (VERTS.json); ``value`` replaces one coordinate."""
        mesh = json.loads((self.data / "training_verts.json").read_text())[0]
        if value is not None:
            mesh[0][0] = value
        path.write_text(json.dumps([mesh]))
        return path

    @property
    def video(self) -> Path:
        """A 5-frame MJPG .avi of a moving hand whose third frame's JPEG bytes are zeroed."""

        def build():
            import cv2
            import numpy as np

            d = self.work / "shared"
            img = cv2.resize(cv2.imread(str(self.hand_image(7))), (112, 112), interpolation=cv2.INTER_AREA)
            writer = cv2.VideoWriter(str(d / "raw.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (112, 112))
            for i in range(5):
                writer.write(np.ascontiguousarray(np.roll(img, 3 * i, axis=1)))
            writer.release()
            data = bytearray((d / "raw.avi").read_bytes())
            chunks = _avi_chunks(bytes(data))
            if len(chunks) != 5:
                raise SetupError(f"expected 5 frames in the .avi, found {len(chunks)}")
            start, size = chunks[2]
            data[start:start + size] = bytes(size)
            (d / "clip.avi").write_bytes(bytes(data))
            return d / "clip.avi"

        return self._once("video", build)

    @property
    def predictor(self):
        def build():
            import m3dhmr

            return m3dhmr.Predictor.from_pretrained()

        return self._once("predictor", build)


def _avi_chunks(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of each video frame's data in an AVI file's movi list."""
    pos = data.index(b"movi") + 4
    chunks = []
    while pos + 8 <= len(data) and data[pos:pos + 4] != b"idx1":
        size = int.from_bytes(data[pos + 4:pos + 8], "little")
        if data[pos + 2:pos + 4] == b"dc":
            chunks.append((pos + 8, size))
        pos += 8 + size + (size & 1)
    return chunks


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover
        return False


# ============================================================================ the cases

CASES: list[Case] = []


def case(name: str, item: int):
    """Register ``fn(ctx, ws) -> Verdict`` as a case (``ws``: its own empty folder)."""

    def register(fn):
        about = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else name

        def run(ctx: Context) -> Verdict:
            ws = ctx.case_dir(name)
            try:
                return fn(ctx, ws)
            finally:
                ctx.done(name)

        CASES.append(Case(name, item, run, about))
        return fn

    return register


def train_args(ctx: Context, out: Path, *extra: object) -> list[object]:
    return ["train", "--config", ctx.config, "--data", ctx.data, "--out", out, "--no-progress", *extra]


@dataclass
class RunState:
    """Steps of a run's ``last.state.pt`` and ``last.safetensors`` (None: absent, -1:
    unreadable), read as documented in :mod:`m3dhmr.train.checkpoint`."""

    state_step: int | None
    weights_step: int | None
    finished: bool


def run_state(run: Path) -> RunState:
    ckdir = run / "checkpoints"
    state_step = weights_step = None
    finished = False
    if (ckdir / "last.safetensors").is_file():
        try:
            from safetensors import safe_open

            with safe_open(str(ckdir / "last.safetensors"), framework="pt") as f:
                meta = dict(f.metadata() or {})
            weights_step, finished = int(meta.get("global_step", -1)), meta.get("finished") == "True"
        except Exception:
            weights_step = -1
    if (ckdir / "last.state.pt").is_file():
        try:
            import torch

            progress = torch.load(ckdir / "last.state.pt", map_location="cpu", weights_only=True)["progress"]
            state_step, finished = int(progress["global_step"]), bool(progress["finished"])
        except Exception:
            state_step = -1
    return RunState(state_step, weights_step, finished)


def max_weight_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    wa, wb = load_file(str(a)), load_file(str(b))
    if set(wa) != set(wb):
        return float("inf")
    return max(float((wa[k].double() - wb[k].double()).abs().max()) if wa[k].numel() else 0.0 for k in wa)


def expect_resumes_to_the_end(ctx: Context, run: Path, what: str) -> str:
    """``train --resume`` finishes the run at step 6, with no temporaries, on the weights of
    the uninterrupted run; returns a short description."""
    o = run_cli(train_args(ctx, run, "--resume"))
    expect(o.rc == 0, f"{what}: --resume failed", o)
    files = run_state(run)
    expect(files.state_step == FINAL_STEP and files.weights_step == FINAL_STEP and files.finished,
           f"{what}: after --resume the run is {files}", o)
    left = temporaries(run)
    expect(not left, f"{what}: temporaries left after --resume: {[p.name for p in left]}")
    diff = max_weight_diff(run / "checkpoints" / "last.safetensors", ctx.checkpoint)
    expect(diff <= 1e-6, f"{what}: resumed weights differ from the uninterrupted run's by {diff:.3g}")
    return f"resumed to step {FINAL_STEP}, weights = uninterrupted run's (max diff {diff:.1g})"


# ----------------------------------------------------------------------------- 1: checkpoints


@contextlib.contextmanager
def crash_at(target: str, step: str, kind: str = "kill"):
    """Make the next checkpoint fail at ``target`` ("state" | "weights") ``step``
    ("write": a half-written temporary left behind, as by a kill; "rename": at its rename).
    ``kind="disk-full"``: the write fails with ENOSPC instead (an OSError the CLI reports)."""
    from m3dhmr import fileio
    from m3dhmr.train import checkpoint as ck

    name = {"state": ck.LAST_STATE, "weights": ck.LAST_WEIGHTS}[target]
    real_write, real_replace = ck.atomic_write_bytes, os.replace
    fired = []

    def write(path, data):
        path = Path(path)
        if step == "write" and path.name == name and not fired:
            fired.append(True)
            if kind == "disk-full":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            (path.parent / f".{path.name}.tmp-killed{path.suffix}").write_bytes(bytes(data)[: len(data) // 2])
            raise _Kill(f"{target} {step}")
        return real_write(path, data)

    def replace(src, dst, *a, **k):
        if step == "rename" and Path(dst).name == name and not fired:
            fired.append(True)
            raise _Kill(f"{target} {step}")
        return real_replace(src, dst, *a, **k)

    ck.atomic_write_bytes = write
    fileio.os.replace = replace
    try:
        yield fired
    finally:
        ck.atomic_write_bytes = real_write
        fileio.os.replace = real_replace


def _crash_case(ctx: Context, ws: Path, target: str, step: str) -> Verdict:
    run = ctx.copy_run(ctx.step3_run, ws / "run")
    killed = None
    with crash_at(target, step) as fired:
        try:
            o = run_cli(train_args(ctx, run, "--resume", "--max-steps", "4"))
        except _Kill as e:  # escapes run_cli (not an Exception), as a kill would end the process
            killed = str(e)
    expect(killed is not None and fired, f"the injected kill at {target} {step} never fired"
           + ("" if killed else why(o)))
    files = run_state(run)
    expect(files.state_step in (3, 4), f"after the kill the state is at step {files.state_step}: neither the "
                                       "previous (3) nor the new (4) checkpoint")
    return Verdict(HANDLED, f"killed at the step-4 {target} {step}: state at step {files.state_step}; "
                            + expect_resumes_to_the_end(ctx, run, "after the kill"))


@case("kill-while-writing-state", 1)
def _(ctx, ws):
    """a kill while the state file is written (half a temporary left): --resume works"""
    return _crash_case(ctx, ws, "state", "write")


@case("kill-between-state-and-weights", 1)
def _(ctx, ws):
    """a kill after the state was written, while the weights are written: --resume works"""
    return _crash_case(ctx, ws, "weights", "write")


@case("kill-at-weights-rename", 1)
def _(ctx, ws):
    """a kill at the rename of the weights file: --resume works"""
    return _crash_case(ctx, ws, "weights", "rename")


@case("disk-full-at-weights", 1)
def _(ctx, ws):
    """a full disk while the weights are written: one line, then --resume works"""
    run = ctx.copy_run(ctx.step3_run, ws / "run")
    with crash_at("weights", "write", kind="disk-full"):
        o = run_cli(train_args(ctx, run, "--resume", "--max-steps", "4"))
    expect_refusal(o, "train", "no space left on device")
    expect(not temporaries(run), f"temporaries left: {[p.name for p in temporaries(run)]}")
    return Verdict(HANDLED, "one line 'no space left on device'; " + expect_resumes_to_the_end(ctx, run, "disk full"))


@case("sigkill-at-random-moments", 1)
def _(ctx, ws):
    """a real training process SIGKILLed at random (seeded) moments, resumed each time"""
    run = ws / "run"
    cmd = m3dhmr_cmd(train_args(ctx, run, "--set", "train.epochs=4"))
    rng = random.Random(ctx.seed)
    kills, moments = 0, []
    for i in range(4):
        proc = subprocess.Popen(cmd + (["--resume"] if i else []), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while not (run / "config.yaml").is_file() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        wait = rng.uniform(0.0, 1.5)
        time.sleep(wait)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
            moments.append(f"{wait:.2f}")
        _, err = proc.communicate(timeout=300)
        expect(proc.returncode in (0, -signal.SIGKILL), f"launch {i} failed on its own",
               Outcome(proc.returncode, "", err))
        if proc.returncode == 0:
            break
    o = run_sub(cmd + ["--resume"])
    expect(o.rc == 0, f"--resume after {kills} kill(s) failed", o)
    files = run_state(run)
    expect(files.finished and files.state_step == files.weights_step == 10, f"the resumed run ended as {files}", o)
    left = temporaries(run)
    expect(not left, f"temporaries left: {[str(p.relative_to(run)) for p in left]}")
    if kills == 0:
        return Verdict(DEFECT, "the run finished before any kill (the case tested nothing); use another --seed")
    return Verdict(HANDLED, f"{kills} SIGKILL(s) at {', '.join(moments)} s after start; resumed to step 10 "
                            "(finished), no temporaries")


# ----------------------------------------------------------------------------- 2, 3: never overwrite a run


@case("resume-weights-without-state", 2)
def _(ctx, ws):
    """--resume with last.safetensors present but last.state.pt missing is refused"""
    run = ctx.copy_run(ctx.finished_run, ws / "run")
    (run / "checkpoints" / "last.state.pt").unlink()
    before = snapshot(run)
    o = run_cli(train_args(ctx, run, "--resume"))
    last = expect_refusal(o, "train", "last.state.pt")
    expect_untouched(before, run, o, "the run")
    return Verdict(CLEAR, f"{short(last)}; the weights byte-identical")


@case("train-into-a-run-unasked", 2)
def _(ctx, ws):
    """train into a folder holding a run, without --resume or --overwrite, is refused"""
    run = ctx.copy_run(ctx.finished_run, ws / "run")
    before = snapshot(run)
    o = run_cli(train_args(ctx, run, "--max-steps", "1"))
    last = expect_refusal(o, "train", "--resume", "--overwrite")
    expect_untouched(before, run, o, "the run")
    return Verdict(CLEAR, f"{short(last)}; the run byte-identical")


@case("train-into-a-run-with-overwrite", 2)
def _(ctx, ws):
    """--overwrite starts a new run and leaves none of the old run's files"""
    run = ctx.copy_run(ctx.finished_run, ws / "run")
    o = run_cli(train_args(ctx, run, "--overwrite", "--max-steps", "1"))
    expect(o.rc == 0, "--overwrite failed", o)
    files = run_state(run)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    expect(files.state_step == 1 and names == ["last.safetensors", "last.state.pt"],
           f"after --overwrite: {files}, checkpoints/ = {names}")
    return Verdict(HANDLED, "a new run at step 1; checkpoints/ holds only its last.* pair")


@case("failed-train-keeps-config", 3)
def _(ctx, ws):
    """a failing train --resume (train.batch_size=1000) leaves config.yaml and the run untouched"""
    run = ctx.copy_run(ctx.finished_run, ws / "run")
    before = snapshot(run)
    o = run_cli(train_args(ctx, run, "--resume", "--set", "train.batch_size=1000", "train.epochs=4"))
    last = expect_refusal(o, "train", "fewer than one batch")
    expect_untouched(before, run, o, "the run (config.yaml included)")
    return Verdict(CLEAR, f"{short(last)}; config.yaml byte-identical")


@case("resume-and-overwrite-together", 3)
def _(ctx, ws):
    """--resume with --overwrite is refused before anything is touched"""
    run = ctx.copy_run(ctx.finished_run, ws / "run")
    before = snapshot(run)
    o = run_cli(train_args(ctx, run, "--resume", "--overwrite"))
    last = expect_refusal(o, "train", "exclude each other")
    expect_untouched(before, run, o, "the run")
    return Verdict(CLEAR, short(last))


# ----------------------------------------------------------------------------- 4: synthetic sets


@case("synth-into-a-locked-folder", 4)
def _(ctx, ws):
    """synth into a folder another process holds (FolderLock) is refused; nothing written"""
    from m3dhmr.fileio import FolderLock

    folder = ws / "set"
    with FolderLock(folder, "the fault matrix"):
        o = run_cli(["synth", "--out", folder, "--train", 4, "--eval", 2, "--no-progress"])
    last = expect_refusal(o, "synth", "in use")
    names = sorted(p.name for p in folder.iterdir())
    expect(names == [LOCK_NAME], f"the locked folder now holds {names}", o)
    return Verdict(CLEAR, short(last))


@case("synth-two-processes-one-folder", 4)
def _(ctx, ws):
    """two synth processes into one folder at once: one refused, never a mixed set"""
    from m3dhmr.data.freihand import load_annotations

    folder = ws / "set"
    runs = {0: (24, 4), 1: (8, 2)}  # seed: counts; A (seed 0) is the longer job

    def cmd(seed):
        n, m = runs[seed]
        return m3dhmr_cmd(["synth", "--out", folder, "--train", n, "--eval", m, "--seed", seed, "--size", 96,
                           "--no-progress"])

    oa, ob, b_inside_a = _two_processes(cmd(0), cmd(1))
    how = _one_writer(oa, ob, b_inside_a, "synth")
    info = json.loads((folder / "synth_info.json").read_text())
    seed = info.get("seed")
    expect(seed in runs, f"synth_info.json names seed {seed!r}")
    n_train = load_annotations(folder, "training").num_annotations
    n_eval = load_annotations(folder, "evaluation").num_annotations
    expect((n_train, n_eval) == runs[seed], f"the set of seed {seed} holds {n_train} + {n_eval} samples, "
                                            f"expected {runs[seed]}: a mixed set")
    return Verdict(HANDLED, f"{how}; seed {seed}'s set complete ({n_train} + {n_eval}) and consistent")


def _changed_set(ctx: Context, ws: Path) -> Path:
    copy = ws / "data"
    shutil.copytree(ctx.data, copy, ignore=shutil.ignore_patterns(".m3dhmr_cache", LOCK_NAME))
    return copy


@case("set-with-an-added-image", 4)
def _(ctx, ws):
    """a synthetic set with an image added after writing is refused by m3dhmr eval"""
    data = _changed_set(ctx, ws)
    shutil.copy(data / "evaluation" / "rgb" / "00000000.jpg", data / "evaluation" / "rgb" / "00000004.jpg")
    pred = ctx.gt_pred(ws / "pred.json")
    o = run_cli(["eval", "--pred", pred, "--data", data, "--out", ws / "o"])
    last = expect_refusal(o, "eval", "incomplete or mixed")
    expect(not (ws / "o" / "metrics.json").exists(), "metrics.json written for a mixed set", o)
    return Verdict(CLEAR, short(last))


@case("set-with-a-deleted-image", 4)
def _(ctx, ws):
    """a synthetic set with a training image deleted after writing is refused by m3dhmr train"""
    data = _changed_set(ctx, ws)
    (data / "training" / "rgb" / "00000005.jpg").unlink()
    o = run_cli(["train", "--config", ctx.config, "--data", data, "--out", ws / "run", "--no-progress",
                 "--max-steps", "1"])
    last = expect_refusal(o, "train", "incomplete or mixed")
    expect(not (ws / "run" / "checkpoints").exists(), "a run was started on a changed set", o)
    return Verdict(CLEAR, short(last))


# ----------------------------------------------------------------------------- 5, 6: predict batches and names


def predict_args(*inputs: object, out: Path, extra: Iterable[object] = ("--whole-image",)) -> list[object]:
    return ["predict", *inputs, "--out", out, "--view-size", 32, *extra]


@case("predict-batch-with-a-bad-file", 5)
def _(ctx, ws):
    """a folder a_good.jpg, b_text.jpg (text), c_good.jpg: a and c written, exit 1, summary lists all"""
    d = ws / "in"
    d.mkdir()
    shutil.copy(ctx.hand_image(7), d / "a_good.jpg")
    (d / "b_text.jpg").write_text("not a picture")
    shutil.copy(ctx.hand_image(2), d / "c_good.jpg")
    out = ws / "o"
    o = run_cli(predict_args(d, out=out))
    expect(o.rc == 1, "expected exit status 1 (one input failed)", o)
    expect("Traceback" not in o.err, "a traceback was printed", o)
    lines = o.lines()
    expect(any(ln.startswith(f"{d / 'b_text.jpg'}: ") for ln in lines), "no failure line for b_text.jpg", o)
    written = [s for s in ("a_good", "c_good") if (out / s / "result.json").is_file()]
    expect(written == ["a_good", "c_good"] and not (out / "b_text").exists(),
           f"written: {written}, b_text exists: {(out / 'b_text').exists()}", o)
    summary = json.loads((out / "summary.json").read_text())
    listed = [(Path(e["input"]).name, e["status"]) for e in summary["inputs"]]
    expect(listed == [("a_good.jpg", "ok"), ("b_text.jpg", "failed"), ("c_good.jpg", "ok")],
           f"summary.json lists {listed}")
    return Verdict(HANDLED, f"a_good and c_good written, exit 1, summary.json: {listed}")


@case("predict-name-collisions", 6)
def _(ctx, ws):
    """predict d1/x.jpg d2/x.jpg x_2.jpg: three distinct result folders"""
    for sub, index in (("d1", 7), ("d2", 2)):
        (ws / sub).mkdir()
        shutil.copy(ctx.hand_image(index), ws / sub / "x.jpg")
    shutil.copy(ctx.hand_image(3), ws / "x_2.jpg")
    inputs = [ws / "d1" / "x.jpg", ws / "d2" / "x.jpg", ws / "x_2.jpg"]
    out = ws / "o"
    o = run_cli(predict_args(*inputs, out=out))
    expect(o.rc == 0, "predict failed", o)
    seen = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        seen[folder.name] = json.loads((folder / "result.json").read_text())["image"]
    expect(sorted(seen.values()) == sorted(map(str, inputs)) and len(seen) == 3,
           f"result folders {seen} do not hold each input once")
    return Verdict(HANDLED, "three folders: " + ", ".join(f"{k} <- {Path(v).relative_to(ws)}"
                                                         for k, v in sorted(seen.items())))


@case("predict-rerun-leaves-no-stale-hands", 6)
def _(ctx, ws):
    """a rerun into one --out leaves no hand_<i> folder that its result.json does not list"""
    img = shutil.copy(ctx.hand_image(7), ws / "x.jpg")
    out = ws / "o"
    o = run_cli(predict_args(img, out=out))
    expect(o.rc == 0, "first run failed", o)
    (out / "x" / "hand_5").mkdir()
    (out / "x" / "hand_5" / "mesh.obj").write_text("stale")
    o = run_cli(predict_args(img, out=out))
    expect(o.rc == 0, "rerun failed", o)
    hands = len(json.loads((out / "x" / "result.json").read_text())["hands"])
    folders = sorted(p.name for p in (out / "x").iterdir() if p.is_dir())
    expect(folders == [f"hand_{i}" for i in range(hands)], f"{hands} hand(s) in result.json but folders {folders}")
    return Verdict(HANDLED, f"after the rerun x/ holds {folders} for {hands} hand(s); stale hand_5 gone")


@case("predict-into-a-locked-out", 6)
def _(ctx, ws):
    """predict into an --out another process holds is refused; nothing written"""
    from m3dhmr.fileio import FolderLock

    out = ws / "o"
    with FolderLock(out, "another m3dhmr predict"):
        o = run_cli(predict_args(ctx.plain_image, out=out))
    last = expect_refusal(o, "predict", "in use")
    names = sorted(p.name for p in out.iterdir())
    expect(names == [LOCK_NAME], f"--out now holds {names}", o)
    return Verdict(CLEAR, short(last))


def _two_processes(cmd_a: list[str], cmd_b: list[str]) -> tuple[Outcome, Outcome, bool]:
    """Start A (the longer job) and B together; ``(A, B, B finished while A was still running)``."""
    a = subprocess.Popen(cmd_a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(cmd_b, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b_out, b_err = b.communicate(timeout=300)
    b_inside_a = a.poll() is None
    a_out, a_err = a.communicate(timeout=300)
    return Outcome(a.returncode, a_out, a_err), Outcome(b.returncode, b_out, b_err), b_inside_a


def _one_writer(oa: Outcome, ob: Outcome, b_inside_a: bool, cmd: str) -> str:
    """Exactly one of two processes on one folder may write it at a time: the other is
    refused ('in use'), or (both exit 0) B ran after A had finished. Returns how."""
    for o in (oa, ob):
        if o.rc != 0:
            expect_refusal(o, cmd, "in use")
    expect(oa.rc == 0 or ob.rc == 0, "neither process succeeded", oa)
    expect(not (oa.rc == 0 and ob.rc == 0 and b_inside_a),
           "both processes wrote into one folder at the same time (no lock)", ob)
    if oa.rc != 0 or ob.rc != 0:
        return f"the {'first' if oa.rc != 0 else 'second'} refused ('in use')"
    return "they ran one after the other"


@case("predict-two-processes-one-out", 6)
def _(ctx, ws):
    """two predict processes into one --out at once: one refused, never mixed results"""
    import numpy as np

    from m3dhmr.mesh.io import read_mesh

    # A: twelve pictures, h.jpg among them; B: another picture also named h.jpg. Started
    # together, B (one picture) would finish well inside A's run.
    (ws / "A").mkdir()
    (ws / "B").mkdir()
    for k in range(12):
        shutil.copy(ctx.hand_image(k % 8), ws / "A" / ("h.jpg" if k == 0 else f"a{k}.jpg"))
    shutil.copy(ctx.hand_image(2), ws / "B" / "h.jpg")
    out = ws / "o"
    oa, ob, b_inside_a = _two_processes(m3dhmr_cmd(predict_args(ws / "A", out=out)),
                                        m3dhmr_cmd(predict_args(ws / "B" / "h.jpg", out=out)))
    how = _one_writer(oa, ob, b_inside_a, "predict")
    doc = json.loads((out / "h" / "result.json").read_text())
    v, _ = read_mesh(out / "h" / "hand_0" / "mesh.ply")
    expect(np.allclose(v, np.array(doc["hands"][0]["vertices"]), atol=1e-5),
           f"h/result.json ({doc['image']}) and h/hand_0/mesh.ply come from different runs")
    winner = ws / ("B" if ob.rc == 0 else "A") / "h.jpg"  # both ok: B ran last
    expect(doc["image"] == str(winner), f"h/ holds {doc['image']}'s result, expected {winner}'s")
    files = sorted(p.name for p in out.iterdir() if p.is_dir())
    return Verdict(HANDLED, f"{how}; h/ consistent ({winner.parent.name}/h.jpg's), {len(files)} result folder(s)")


# ----------------------------------------------------------------------------- 7: image cache


@case("image-cache-sees-a-replaced-middle-image", 7)
def _(ctx, ws):
    """load_split, replace a middle training image (new pixels, new mtime), reload: new pixels"""
    import cv2
    import numpy as np

    from m3dhmr.data.batched import load_split

    data = _changed_set(ctx, ws)
    # A FreiHAND-layout set without a synthetic-set manifest (as the real FreiHAND): the
    # manifest would refuse a replaced image of another size before the cache is reached.
    (data / "synth_manifest.json").unlink(missing_ok=True)
    cache = ws / "cache"
    with captured():
        first = load_split(data, "training", cache_dir=cache).images[3].numpy().copy()
    path = data / "training" / "rgb" / "00000003.jpg"
    cv2.imwrite(str(path), 255 - cv2.imread(str(path)))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    want = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    with captured():
        got = load_split(data, "training", cache_dir=cache).images[3].numpy()
    expect(not np.array_equal(first, want), "the replacement image equals the old one (case broken)")
    expect(np.array_equal(got, want), "the reloaded split still holds the old pixels of image 3 "
                                      f"(max diff to the new file {int(np.abs(got.astype(int) - want).max())})")
    return Verdict(HANDLED, "image 3 replaced after loading: the reload decodes its new pixels")


# ----------------------------------------------------------------------------- 8: video


@case("video-with-a-corrupt-middle-frame", 8)
def _(ctx, ws):
    """an MJPG .avi whose third frame is zeroed: later frames processed, the skip reported"""
    out = ws / "o"
    o = run_cli(["predict", ctx.video, "--out", out, "--whole-image"])
    expect(o.rc == 0, "predict on the video failed", o)
    frames = [json.loads(x)["frame"] for x in (out / "clip_results.jsonl").read_text().splitlines()]
    expect(frames == [0, 1, 3, 4], f"JSON lines hold frames {frames}, expected [0, 1, 3, 4]", o)
    entry = json.loads((out / "summary.json").read_text())["inputs"][0]
    said = "undecodable" in o.out or "could not be decoded" in o.err
    expect(said and entry.get("bad_frames") == 1, f"the skipped frame is not reported (stdout: {short(o.out)}; "
                                                  f"summary bad_frames={entry.get('bad_frames')})", o)
    return Verdict(HANDLED, "frames [0, 1, 3, 4] predicted; '1 undecodable frame(s) skipped', bad_frames=1")


# ----------------------------------------------------------------------------- 9: silent wrong results


@case("api-float-image-0-255", 9)
def _(ctx, ws):
    """Predictor.predict on a float image in 0..255: a ValueError with a clear message"""
    import cv2

    img = cv2.cvtColor(cv2.imread(str(ctx.hand_image(7))), cv2.COLOR_BGR2RGB).astype("float32")
    try:
        hands = ctx.predictor.predict(img)
    except ValueError as e:
        msg = str(e)
        expect("uint8" in msg or "[0, 1]" in msg, f"the ValueError does not say what is expected: {short(msg)}")
        return Verdict(CLEAR, f"ValueError: {short(msg)}")
    raise Defect(f"accepted: {len(hands)} hand(s) returned for a float 0..255 image (clipped to white?)")


@case("float-tiff-0-255", 9)
def _(ctx, ws):
    """predict on a float32 TIFF in 0..255 is refused for that input (not clipped to white)"""
    import cv2

    tif = ws / "float.tif"
    cv2.imwrite(str(tif), cv2.imread(str(ctx.hand_image(7))).astype("float32"))
    out = ws / "o"
    o = run_cli(predict_args(tif, out=out))
    last = expect_refusal(o, "predict", "[0, 1]", per_input=tif)
    expect(not (out / "float").exists(), "a result was written for the float image", o)
    return Verdict(CLEAR, short(last))


def _tiny_image_case(ctx: Context, ws: Path, extra: list[str]) -> Verdict:
    import cv2
    import numpy as np

    dot = ws / "dot.png"
    cv2.imwrite(str(dot), np.full((1, 1, 3), 200, np.uint8))
    out = ws / "o"
    o = run_cli(["predict", dot, "--out", out, *extra])
    last = expect_refusal(o, "predict", "too small", per_input=dot)
    expect("hand(s)" not in o.out, f"a hand was reported: {short(o.out)}", o)
    expect(not (out / "dot").exists(), "a result folder was written for the 1x1 image", o)
    return Verdict(CLEAR, short(last))


@case("tiny-image-whole-image", 9)
def _(ctx, ws):
    """a 1x1 image with --whole-image is refused (not 'right hand ok')"""
    return _tiny_image_case(ctx, ws, ["--whole-image"])


@case("tiny-image-bbox", 9)
def _(ctx, ws):
    """a 1x1 image with --bbox 0,0,1,1 is refused (not 'right hand ok')"""
    return _tiny_image_case(ctx, ws, ["--bbox", "0,0,1,1"])


@case("int64-tensor-checkpoint-predict", 9)
def _(ctx, ws):
    """predict --checkpoint with an int64 tensor for a float parameter is refused"""
    out = ws / "o"
    o = run_cli(predict_args(ctx.plain_image, out=out, extra=["--whole-image", "--checkpoint", ctx.int64_checkpoint]))
    last = expect_refusal(o, "predict", "int64")
    expect(not (out / "plain").exists(), "a result was written", o)
    return Verdict(CLEAR, short(last))


@case("int64-tensor-checkpoint-eval", 9)
def _(ctx, ws):
    """eval --checkpoint with an int64 tensor for a float parameter is refused"""
    out = ws / "o"
    o = run_cli(["eval", "--checkpoint", ctx.int64_checkpoint, "--data", ctx.data, "--out", out, "--device", "cpu"])
    last = expect_refusal(o, "eval", "int64")
    expect(not (out / "pred.json").exists(), "pred.json was written", o)
    return Verdict(CLEAR, short(last))


# ----------------------------------------------------------------------------- 10: bad outputs


BLOCKER_TEXT = "a file, not a folder"


def _blocker(ws: Path) -> Path:
    b = ws / "blocker"
    b.write_text(BLOCKER_TEXT)
    return b


def _out_case(ctx: Context, ws: Path, cmd: str, make_argv: Callable[[Path], list[object]], under: bool,
              fragments: tuple[str, ...] = ("--out",)) -> Verdict:
    blocker = _blocker(ws)
    out = blocker / "sub" if under else blocker
    before = snapshot(ws)
    o = run_cli(make_argv(out))
    last = expect_refusal(o, cmd, *fragments)
    expect(blocker.read_text() == BLOCKER_TEXT, "the file in the way was changed", o)
    expect_untouched(before, ws, o, "the case folder")
    return Verdict(CLEAR, short(last))


def _register_out_cases() -> None:
    def predict(ctx, ws):
        return lambda out: predict_args(ctx.plain_image, out=out)

    def train(ctx, ws):
        return lambda out: train_args(ctx, out, "--max-steps", "1")

    def evaluate(ctx, ws):
        pred = ctx.gt_pred(ws / "pred.json")
        return lambda out: ["eval", "--pred", pred, "--data", ctx.data, "--out", out]

    def synth(ctx, ws):
        return lambda out: ["synth", "--out", out, "--train", 2, "--eval", 1, "--no-progress"]

    def fit(ctx, ws):
        verts = ctx.verts_json(ws / "verts.json")
        return lambda out: ["fit", verts, "--out", out, "--no-glb"]

    for cmd, argv in (("predict", predict), ("train", train), ("eval", evaluate), ("synth", synth), ("fit", fit)):
        for under in (False, True):
            name = f"{cmd}-out-{'under-a-file' if under else 'is-a-file'}"

            def fn(ctx, ws, cmd=cmd, argv=argv, under=under):
                return _out_case(ctx, ws, cmd, argv(ctx, ws), under)

            fn.__doc__ = f"{cmd} --out {'under a file' if under else 'that is a file'}: one line, nothing written"
            case(name, 10)(fn)


_register_out_cases()


@case("export-onnx-out-under-a-file", 10)
def _(ctx, ws):
    """export-onnx --out under a file: one line, nothing written"""
    return _out_case(ctx, ws, "export-onnx", lambda out: ["export-onnx", ctx.checkpoint, "--out", out / "m.onnx"],
                     under=False)


@case("export-onnx-out-is-a-folder", 10)
def _(ctx, ws):
    """export-onnx --out naming an existing folder: one line, the folder untouched"""
    folder = ws / "m.onnx"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep")
    before = snapshot(ws)
    o = run_cli(["export-onnx", ctx.checkpoint, "--out", folder])
    last = expect_refusal(o, "export-onnx", "--out")
    expect_untouched(before, ws, o, "the case folder")
    return Verdict(CLEAR, short(last))


# ----------------------------------------------------------------------------- 11: non-finite settings


@case("train-lr-inf", 11)
def _(ctx, ws):
    """train --set train.lr=.inf is a config error; nothing created"""
    out = ws / "run"
    o = run_cli(train_args(ctx, out, "--set", "train.lr=.inf"))
    last = expect_refusal(o, "train", "train.lr", "finite")
    expect(not out.exists(), "the run folder was created", o)
    return Verdict(CLEAR, short(last))


@case("train-loss-weight-minus-inf", 11)
def _(ctx, ws):
    """train --set loss.mesh=-.inf is a config error; nothing created"""
    out = ws / "run"
    o = run_cli(train_args(ctx, out, "--set", "loss.mesh=-.inf"))
    last = expect_refusal(o, "train", "loss.mesh", "finite")
    expect(not out.exists(), "the run folder was created", o)
    return Verdict(CLEAR, short(last))


# ----------------------------------------------------------------------------- 12: devices, threads, downloads


def _cuda_case(ctx: Context, ws: Path, cmd: str, argv: list[object], out: Path) -> Verdict:
    o = run_cli(argv)
    if ctx.gpu:
        expect(o.rc == 0, f"{cmd} --device cuda failed on a machine with a GPU", o)
        return Verdict(HANDLED, f"a GPU is present: {cmd} --device cuda ran (exit 0)")
    last = expect_refusal(o, cmd, "--device", "CUDA")
    expect(not out.exists(), f"{out.name} was created", o)
    return Verdict(CLEAR, short(last))


@case("predict-device-cuda", 12)
def _(ctx, ws):
    """predict --device cuda without a GPU: one line before loading"""
    img = ctx.hand_image(7) if ctx.gpu else ctx.plain_image
    return _cuda_case(ctx, ws, "predict", predict_args(img, out=ws / "o", extra=["--whole-image", "--device", "cuda"]),
                      ws / "o")


@case("eval-device-cuda", 12)
def _(ctx, ws):
    """eval --checkpoint --device cuda without a GPU: one line before loading"""
    return _cuda_case(ctx, ws, "eval", ["eval", "--checkpoint", ctx.checkpoint, "--data", ctx.data, "--out", ws / "o",
                                        "--device", "cuda"], ws / "o")


@case("train-device-cuda", 12)
def _(ctx, ws):
    """train --device cuda without a GPU: one line before any work"""
    return _cuda_case(ctx, ws, "train", train_args(ctx, ws / "run", "--device", "cuda", "--max-steps", "1"),
                      ws / "run")


@case("predict-device-banana", 12)
def _(ctx, ws):
    """predict --device banana: one line, nothing created"""
    o = run_cli(predict_args(ctx.plain_image, out=ws / "o", extra=["--device", "banana"]))
    last = expect_refusal(o, "predict", "--device", "banana")
    expect(not (ws / "o").exists(), "--out was created", o)
    return Verdict(CLEAR, short(last))


@case("train-device-banana", 12)
def _(ctx, ws):
    """train --device banana: one line, nothing created"""
    o = run_cli(train_args(ctx, ws / "run", "--device", "banana"))
    last = expect_refusal(o, "train", "--device", "banana")
    expect(not (ws / "run").exists(), "--out was created", o)
    return Verdict(CLEAR, short(last))


@case("predict-threads-negative", 12)
def _(ctx, ws):
    """predict --threads -3: one line, nothing created"""
    o = run_cli(predict_args(ctx.plain_image, out=ws / "o", extra=["--threads", "-3"]))
    last = expect_refusal(o, "predict", "--threads")
    expect(not (ws / "o").exists(), "--out was created", o)
    return Verdict(CLEAR, short(last))


@case("imagenet-download-unreachable", 12)
def _(ctx, ws):
    """train with model.pretrained_backbone and the download unreachable: one line"""
    # A separate process: an empty torch hub cache (TORCH_HOME) and a proxy that refuses
    # every connection make the documented ImageNet download fail at once.
    env = {"TORCH_HOME": str(ws / "torch_home"), "http_proxy": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}
    o = run_sub(m3dhmr_cmd(train_args(ctx, ws / "run", "--set", "model.pretrained_backbone=true",
                                      "--max-steps", "1")), env=env)
    last = expect_refusal(o, "train", "ImageNet")
    expect(len(o.lines()) <= 3, f"{len(o.lines())} lines on stderr", o)
    expect(not (ws / "run" / "checkpoints").exists(), "a run was started without the backbone", o)
    return Verdict(CLEAR, short(last))


@case("fit-coordinates-1e300", 12)
def _(ctx, ws):
    """fit on a mesh with a coordinate of 1e300: one line, nothing written"""
    verts = ctx.verts_json(ws / "verts.json", value=1e300)
    out = ws / "o"
    o = run_cli(["fit", verts, "--out", out, "--no-glb"])
    last = expect_refusal(o, "fit", "1e+300")
    expect(not (out / "pose.json").exists(), "pose.json was written", o)
    return Verdict(CLEAR, short(last))


# ----------------------------------------------------------------------------- 13: resources


@case("synth-size-100000", 13)
def _(ctx, ws):
    """synth --size 100000 is refused before anything is rendered (run with a 3 GiB heap limit)"""
    o = run_sub(m3dhmr_cmd(["synth", "--out", ws / "set", "--train", 1, "--eval", 1, "--size", 100000,
                            "--no-progress"]), memory_gb=MEMORY_LIMIT_GB)
    last = expect_refusal(o, "synth", "size")
    expect(not (ws / "set").exists() or not any((ws / "set").rglob("*.jpg")), "images were written", o)
    return Verdict(CLEAR, short(last))


@case("predict-view-size-100000", 13)
def _(ctx, ws):
    """predict --view-size 100000 is refused before loading (run with a 3 GiB heap limit)"""
    o = run_sub(m3dhmr_cmd(["predict", ctx.plain_image, "--out", ws / "o", "--whole-image", "--view-size", 100000]),
                memory_gb=MEMORY_LIMIT_GB)
    last = expect_refusal(o, "predict", "--view-size")
    expect(not (ws / "o").exists(), "--out was created", o)
    return Verdict(CLEAR, short(last))


@case("checkpoint-input-size-100000", 13)
def _(ctx, ws):
    """a checkpoint whose stored config asks for model.input_size 100000 is refused (3 GiB heap limit)"""
    o = run_sub(m3dhmr_cmd(predict_args(ctx.plain_image, out=ws / "o",
                                        extra=["--whole-image", "--checkpoint", ctx.huge_checkpoint])),
                memory_gb=MEMORY_LIMIT_GB)
    last = expect_refusal(o, "predict", "input_size")
    expect(not (ws / "o" / "plain").exists(), "a result was written", o)
    return Verdict(CLEAR, short(last))


# ----------------------------------------------------------------------------- 14: stale temporaries


@case("stale-checkpoint-temporary", 14)
def _(ctx, ws):
    """a killed run's .last.safetensors.tmp-abc.safetensors is removed by the next train --resume"""
    run = ctx.copy_run(ctx.step3_run, ws / "run")
    stale = run / "checkpoints" / ".last.safetensors.tmp-abc.safetensors"
    stale.write_bytes(b"\0" * 4096)
    o = run_cli(train_args(ctx, run, "--resume", "--max-steps", "4"))
    expect(o.rc == 0, "train --resume failed", o)
    expect(not stale.exists(), f"{stale.name} is still there", o)
    expect(run_state(run).state_step == 4, f"the run did not reach step 4: {run_state(run)}")
    return Verdict(HANDLED, f"{stale.name} removed; the run went on to step 4")


@case("stale-predict-temporary", 14)
def _(ctx, ws):
    """a killed predict's .x.tmp-zz folder in --out is removed by the next predict"""
    out = ws / "o"
    stale = out / ".x.tmp-zz"
    stale.mkdir(parents=True)
    (stale / "result.json").write_text("{}")
    o = run_cli(predict_args(ctx.hand_image(7), out=out))
    expect(o.rc == 0, "predict failed", o)
    left = temporaries(out)
    expect(not left, f"left: {[p.name for p in left]}", o)
    return Verdict(HANDLED, f"{stale.name}/ removed; the new result written")


# ----------------------------------------------------------------------------- 15: minor


@case("predict-K-cx-1e300", 15)
def _(ctx, ws):
    """--K with cx=1e300 is refused and leaves no empty hand_0/"""
    img = shutil.copy(ctx.hand_image(7), ws / "h.jpg")
    out = ws / "o"
    o = run_cli(predict_args(img, out=out, extra=["--whole-image", "--K", "500,500,1e300,10"]))
    last = expect_refusal(o, "predict", "--K", per_input=img)
    expect(not (out / "h").exists(), "a result folder (empty hand_0/?) was left", o)
    return Verdict(CLEAR, short(last))


@case("predict-bbox-negative-numbers", 15)
def _(ctx, ws):
    """--bbox -5 10 100 100 (negative first number, no '=') is accepted"""
    img = shutil.copy(ctx.hand_image(7), ws / "h.jpg")
    out = ws / "o"
    o = run_cli(["predict", "--bbox", "-5", "10", "100", "100", img, "--out", out, "--view-size", 32])
    expect(o.rc == 0, "refused", o)
    box = json.loads((out / "h" / "result.json").read_text())["hands"][0]["hand_box"]
    expect(box == [-5, 10, 100, 100], f"the box used is {box}")
    return Verdict(HANDLED, f"accepted; result.json box {box}")


@case("eval-pred-1e300", 15)
def _(ctx, ws):
    """eval --pred with a 1e300 coordinate: refused, or a metrics.json that is strict JSON"""
    pred = ctx.gt_pred(ws / "huge.json", edit=("xyz", 2, 5, 1, 1e300))
    out = ws / "o"
    o = run_cli(["eval", "--pred", pred, "--data", ctx.data, "--out", out])
    if o.rc == 0:
        text = (out / "metrics.json").read_text()
        try:
            strict_json(text)
        except ValueError as e:
            raise Defect(f"metrics.json is not valid JSON ({e})") from None
        return Verdict(HANDLED, "scored; metrics.json is strict JSON")
    last = expect_refusal(o, "eval", "1e+300")
    expect(not (out / "metrics.json").exists(), "metrics.json written", o)
    return Verdict(CLEAR, short(last))


@case("weights-file-mode-0644", 15)
def _(ctx, ws):
    """last.safetensors (and the rest of a run) is written 0644 under umask 022"""
    modes = {}
    for p in sorted(ctx.finished_run.rglob("*")):
        if p.is_file() and p.name != LOCK_NAME:
            modes[str(p.relative_to(ctx.finished_run))] = p.stat().st_mode & 0o777
    wrong = {k: f"{v:o}" for k, v in modes.items() if v != 0o644}
    expect(modes.get("checkpoints/last.safetensors") == 0o644 and not wrong, f"modes other than 0644: {wrong}")
    return Verdict(HANDLED, f"{len(modes)} files of a run, last.safetensors included, are 0644")


@case("api-K-error-wording", 15)
def _(ctx, ws):
    """a Predictor API error about K speaks of K, not of the CLI's --K"""
    import cv2

    img = cv2.cvtColor(cv2.imread(str(ctx.hand_image(7))), cv2.COLOR_BGR2RGB)
    messages = []
    for K in ([500.0, 500.0, 1e300, 10.0], [1e-9, 1e-9, 30.0, 20.0], [1.0, 2.0]):
        try:
            ctx.predictor.predict(img, K=K, hand_box=[40, 40, 140, 140])
        except ValueError as e:
            messages.append(str(e))
        else:
            raise Defect(f"K={K} accepted by the API")
    bad = [m for m in messages if "--K" in m]
    expect(not bad, f"API error mentions --K: {short(bad[0]) if bad else ''}")
    return Verdict(CLEAR, f"{len(messages)} bad K refused with ValueErrors naming K, e.g. {short(messages[0], 110)}")


# ============================================================================ the runner


def select(cases: list[Case], only: list[str] | None) -> list[Case]:
    if not only:
        return list(cases)
    return [c for c in cases if any(s in c.name for s in only)]


def run_case(c: Case, ctx: Context) -> Verdict:
    try:
        v = c.fn(ctx)
        if v.kind not in (CLEAR, HANDLED, DEFECT):
            return Verdict(DEFECT, f"case returned an unknown class {v.kind!r}")
        return v
    except Defect as d:
        return Verdict(DEFECT, str(d))
    except Exception as e:  # the case could not even be run: counted, never assumed fine
        where = traceback.extract_tb(e.__traceback__)[-1]
        return Verdict(DEFECT, f"the case failed to run: {type(e).__name__}: {short(str(e), 300)} "
                               f"(at {Path(where.filename).name}:{where.lineno})")


def run_cases(cases: list[Case], ctx: Context, emit: Callable[[str], None] = print) -> Counter:
    counts: Counter = Counter()
    for c in cases:
        t0 = time.perf_counter()
        v = run_case(c, ctx)
        counts[v.kind] += 1
        # Paths inside the work folder are shown relative to it ($WORK/...).
        detail = " ".join(v.detail.split()).replace(str(ctx.work), "$WORK")
        emit(f"[{v.kind}] {c.name}: {detail} ({time.perf_counter() - t0:.1f} s)")
    return counts


def summary_line(counts: Counter, n: int) -> str:
    return f"cases={n} clear={counts[CLEAR]} handled={counts[HANDLED]} defects={counts[DEFECT]}"


def main(argv: list[str] | None = None, cases: list[Case] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=None,
                        help="work folder (default: a temporary folder, removed at the end)")
    parser.add_argument("--only", action="append", default=None, metavar="SUBSTRING",
                        help="run the cases whose name contains SUBSTRING (repeatable; commas separate several)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random SIGKILL moments")
    parser.add_argument("--keep", action="store_true", help="keep every case's folder (default: removed after it)")
    args = parser.parse_args(argv)
    only = [s for o in args.only for s in o.split(",") if s] if args.only else None
    chosen = select(CASES if cases is None else cases, only)
    if args.list:
        for c in chosen:
            print(f"{c.name}  (item {c.item}): {c.about}")
        return 0
    if not chosen:
        print(f"no case matches {only}", file=sys.stderr)
        return 2
    temp = args.work is None
    work = Path(tempfile.mkdtemp(prefix="fault_matrix_")) if temp else args.work
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        counts = run_cases(chosen, Context(work, seed=args.seed, keep=args.keep))
    finally:
        if temp and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{len(chosen)} case(s) in {time.perf_counter() - t0:.0f} s; work folder {work}"
          f"{' (removed)' if temp and not args.keep else ''}", file=sys.stderr)
    print(summary_line(counts, len(chosen)), flush=True)
    return 1 if counts[DEFECT] else 0


if __name__ == "__main__":
    sys.exit(main())
