"""The training loop: stage 1 (first stack: heatmaps + landmarks), then stage 2 (all losses).

Runs in one process or as one rank of ``torchrun`` (DDP). Exact resumption: the sample
order of an epoch is a function of ``(seed, epoch)`` (:mod:`m3dhmr.train.distributed`),
the dataset draws its augmentation from ``(seed, epoch, index)`` via ``set_epoch``, the
batches an interrupted epoch already used are skipped, and optimiser, scaler and RNG
states are restored, so ``--resume`` reaches the same weights as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as tdist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from m3dhmr.config_loader import to_dict
from m3dhmr.data.batched import load_split, make_batch
from m3dhmr.data.freihand import FreiHANDDataset, no_augment
from m3dhmr.data.real_crops import RealCropDataset, photo_paths, real_batch_slots, split_counts
from m3dhmr import model_io
from m3dhmr.experiment import ExperimentConfig, experiment_from_json
from m3dhmr.fileio import FolderLock, atomic_write_text, check_output_folder, remove_stale_temporaries
from m3dhmr.losses import CONSISTENCY_TERMS, TERMS, LossTerms, compute_losses
from m3dhmr.models import build_model
from m3dhmr.pretrained import DEFAULT_MODEL, read_pretrained_tensors
from m3dhmr.train import checkpoint as ckpt
from m3dhmr.train.distributed import DistInfo, barrier, cleanup_distributed, epoch_batches, init_distributed
from m3dhmr.train.precision import resolve_amp
from m3dhmr.train.validation import LOGGED, MetricsLog, evaluate_model
from m3dhmr.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What a call to :func:`train` did."""

    run_dir: Path
    progress: ckpt.Progress
    steps_run: int  # optimiser steps taken by this call
    seconds: float
    last_losses: dict[str, float] = field(default_factory=dict)
    # Synthetic sample indices this process trained on, in order (with DDP: this rank's share).
    sample_indices: list[int] = field(default_factory=list)
    model: nn.Module | None = None  # the trained network (on the training device)


class NonFiniteLossError(InputError):
    """Training diverged: the loss is NaN or infinite (a user-fixable setting, not a bug)."""


def epoch_plan(cfg: ExperimentConfig) -> list[tuple[int, int]]:
    """``[(stage, epoch_in_stage), ...]`` over both stages, stage-1 epochs first."""
    t = cfg.train
    return [(1, e) for e in range(t.stage1_epochs)] + [(2, e) for e in range(t.epochs)]


def learning_rate(cfg: ExperimentConfig, stage: int, epoch_in_stage: int) -> float:
    """Step schedule: the stage's base lr times ``lr_factor`` per milestone reached."""
    t = cfg.train
    base, milestones = (t.stage1_lr, t.stage1_lr_milestones) if stage == 1 else (t.lr, t.lr_milestones)
    return base * t.lr_factor ** sum(epoch_in_stage >= m for m in milestones)


class StepLoss(nn.Module):
    """What DDP wraps: one stage's forward pass and losses, ``batch -> LossTerms``.

    Returning the losses (not the network's outputs) lets DDP find exactly the
    parameters the loss used (stage 1 leaves the decoder unused). Stage 1 runs the
    first stack only; stage 2 runs the whole network on ``[view 1; view 2]`` in one pass
    (BatchNorm sees the whole batch) and adds the consistency terms.
    """

    def __init__(self, model: nn.Module, stage: int, cfg: ExperimentConfig, two_view: bool,
                 amp_dtype: torch.dtype | None) -> None:
        super().__init__()
        self.model = model
        self.stage = stage
        self.weights = stage_loss_weights(cfg, stage)
        self.two_view = two_view and stage == 2
        self.amp_dtype = amp_dtype
        self.channels_last = cfg.train.channels_last
        self.stage1_scope = cfg.train.stage1_scope
        self.real_weight = cfg.data.real_weight

    def forward(self, batch: dict[str, torch.Tensor]):
        images = batch["image"]
        if self.two_view:
            images = torch.cat([images, batch["image_2"]], dim=0)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        dev_type = images.device.type
        with torch.autocast(dev_type, dtype=self.amp_dtype) if self.amp_dtype is not None else nullcontext():
            if self.stage == 2:
                out = self.model(images)
            elif self.stage1_scope == "stacks_2d":
                out = self.model.forward_2d(images)
            else:
                out = self.model.forward_stack1(images)
        out = _float_outputs(out)
        num_real = int(batch.get("num_real", 0))
        if not num_real:
            return self._terms(out, batch, self.weights)
        # Real photos (the batch's last num_real samples) have 2D labels only: the stage's
        # 2D terms x data.real_weight, never a 3D term (their 3D targets are dummies).
        b = batch["image"].shape[0]
        if self.two_view:
            (o1s, o1r), (o2s, o2r) = (_take_rows(o, b, b - num_real) for o in _split_output(out, b))
            out_syn, out_real = _join_views(o1s, o2s), _join_views(o1r, o2r)
        else:
            out_syn, out_real = _take_rows(out, b, b - num_real)
        batch_syn, batch_real = _take_rows(batch, b, b - num_real)
        syn = self._terms(out_syn, batch_syn, self.weights)
        real = self._terms(out_real, batch_real, real_loss_weights(self.weights, self.real_weight))
        extra = {f"real_{n}": getattr(real, n) for n in REAL_TERMS if getattr(self.weights, n) > 0}
        return dataclasses.replace(syn, total=syn.total + real.total, extra={**extra, "real_total": real.total})

    def _terms(self, out, batch: dict[str, torch.Tensor], weights):
        """The losses of one group of samples (both views when two-view)."""
        faces = self.model.faces
        if not self.two_view:
            return compute_losses(out, batch, faces, weights)
        b = batch["image"].shape[0]
        out1, out2 = _split_output(out, b)
        terms1 = compute_losses(out1, batch, faces, weights, pred_view2=out2)
        no_con = dataclasses.replace(weights, con3d=0.0, con2d=0.0)
        terms2 = compute_losses(out2, second_view(batch), faces, no_con)
        return merge_views(terms1, terms2, weights)


#: Loss terms a real photo (2D pseudo-labels, no 3D) takes part in.
REAL_TERMS = ("pose2d", "pose2d_stack1", "heatmap", "heatmap2", "con2d")


def real_loss_weights(weights, real_weight: float):
    """The weights for real photos: the 2D terms (:data:`REAL_TERMS`) x ``real_weight``, 3D terms 0."""
    return dataclasses.replace(weights, **{n: getattr(weights, n) * real_weight if n in REAL_TERMS else 0.0
                                           for n in TERMS})


def _take_rows(x, b: int, split: int):
    """A batch dict or ModelOutput over ``b`` samples -> (rows ``:split``, rows ``split:``)
    (per-sample tensors cut; anything else shared)."""
    def cut(v, sl):
        return v[sl] if torch.is_tensor(v) and v.ndim > 0 and v.shape[0] == b else v

    if isinstance(x, dict):
        return ({k: cut(v, slice(None, split)) for k, v in x.items() if k != "num_real"},
                {k: cut(v, slice(split, None)) for k, v in x.items() if k != "num_real"})
    parts = []
    for sl in (slice(None, split), slice(split, None)):
        parts.append(dataclasses.replace(x, **{f.name: cut(getattr(x, f.name), sl) for f in dataclasses.fields(x)
                                               if torch.is_tensor(getattr(x, f.name))}))
    return parts[0], parts[1]


def _join_views(out1, out2):
    """Two ModelOutputs of ``n`` samples each -> one over ``2n`` (view 1 rows first)."""
    n = out1.joints2d.shape[0]
    return dataclasses.replace(out1, **{
        f.name: torch.cat([getattr(out1, f.name), getattr(out2, f.name)]) for f in dataclasses.fields(out1)
        if torch.is_tensor(getattr(out1, f.name)) and getattr(out1, f.name).ndim > 0
        and getattr(out1, f.name).shape[0] == n})


def stage_loss_weights(cfg: ExperimentConfig, stage: int, epoch_in_stage: int = 0):
    """Stage 1: heatmaps + first-stack landmarks only (``stage1_scope: stacks_2d``: both
    stacks'); stage 2: the ``loss`` section as written, without the consistency terms
    before ``train.consistency_start_epoch``."""
    if stage == 2:
        if epoch_in_stage < cfg.train.consistency_start_epoch:
            return dataclasses.replace(cfg.loss, con3d=0.0, con2d=0.0)
        return cfg.loss
    t = cfg.train
    weights = dict.fromkeys(TERMS, 0.0)
    weights.update(heatmap=t.stage1_heatmap_weight, pose2d_stack1=t.stage1_landmark_weight)
    if t.stage1_scope == "stacks_2d":
        weights.update(heatmap2=t.stage1_heatmap_weight, pose2d=t.stage1_landmark_weight)
    return dataclasses.replace(cfg.loss, **weights)


def second_view(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``_2`` keys of a two-view batch under their plain names (shared keys kept)."""
    view2 = {k[:-2]: v for k, v in batch.items() if k.endswith("_2")}
    return {**{k: v for k, v in batch.items() if not k.endswith("_2")}, **view2}


def _float_outputs(out):
    """Autocast outputs back to float32 so the losses run in full precision."""
    changes = {f.name: getattr(out, f.name).float() for f in dataclasses.fields(out)
               if torch.is_tensor(getattr(out, f.name)) and getattr(out, f.name).is_floating_point()}
    return dataclasses.replace(out, **changes) if changes else out


def _split_output(out, b: int):
    """A ModelOutput over ``2B`` samples -> (view 1, view 2) outputs of ``B`` each."""
    first, second = {}, {}
    for f in dataclasses.fields(out):
        v = getattr(out, f.name)
        if torch.is_tensor(v) and v.ndim > 0 and v.shape[0] == 2 * b:
            first[f.name], second[f.name] = v[:b], v[b:]
    return dataclasses.replace(out, **first), dataclasses.replace(out, **second)


def merge_views(terms1: LossTerms, terms2: LossTerms, weights) -> LossTerms:
    """One :class:`~m3dhmr.losses.LossTerms` for a two-view batch from each view's: the
    supervised terms averaged over both views, the consistency terms
    (:data:`~m3dhmr.losses.CONSISTENCY_TERMS`, view 1 -> 2) from ``terms1``; ``total``
    re-weighted with ``weights`` (a :class:`~m3dhmr.losses.LossWeights`)."""
    merged = {}
    for n in TERMS:
        t1, t2 = getattr(terms1, n), getattr(terms2, n)
        merged[n] = t1 if n in CONSISTENCY_TERMS else 0.5 * (t1 + t2)
    total = sum(getattr(weights, n) * merged[n] for n in TERMS if getattr(weights, n) > 0)
    return LossTerms(total=total if torch.is_tensor(total) else terms1.total, **merged)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """``batch`` with its tensors on ``device`` (other values kept); copies to a GPU are
    non-blocking (a pinned batch overlaps its copy with the previous step)."""
    nb = device.type == "cuda"
    return {k: v.to(device, non_blocking=nb) if torch.is_tensor(v) else v for k, v in batch.items()}


def _make_dataset(cfg: ExperimentConfig, data_root: Path, two_view: bool, num_vertices: int):
    d = cfg.data
    return FreiHANDDataset(
        data_root, d.train_split, crop_size=cfg.model.input_size, augment=d.augment,
        two_view=two_view, seed=cfg.train.seed, num_vertices=num_vertices,
    )


def train(
    experiment: ExperimentConfig,
    data_root: str | Path,
    run_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    max_steps: int | None = None,
    max_seconds: float | None = None,
    device: str = "cpu",
    progress_bar: bool = True,
) -> TrainResult:
    """Train ``experiment`` on the FreiHAND-layout folder ``data_root``; write the run to ``run_dir``.

    ``resume`` continues the run in ``run_dir``; without it a ``run_dir`` that holds a
    checkpoint is refused unless ``overwrite`` (which starts over and removes the old
    run's checkpoints, curve and logs). Everything is checked before anything is written,
    and ``run_dir`` is locked against a second training process.

    ``max_steps`` stops after that many optimiser steps in total (counting those before a
    resume) and checkpoints there; ``max_seconds`` stops (and checkpoints) after the first
    step that ends past that much wall time of this call (a time budget; not reproducible).
    """
    data_root, run_dir = Path(data_root), Path(run_dir)
    if max_steps is not None and max_steps < 0:
        raise InputError(f"--max-steps must be >= 0, got {max_steps}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available on this machine")
    opts = _CallOptions(resume, overwrite, max_steps, max_seconds, device, progress_bar)
    dist_info = init_distributed(device)
    try:
        return _train(experiment, data_root, run_dir, dist_info, opts)
    finally:
        cleanup_distributed(dist_info)


@dataclass(frozen=True)
class _CallOptions:
    """What one :func:`train` call was asked for besides the experiment and its folders."""

    resume: bool
    overwrite: bool
    max_steps: int | None
    max_seconds: float | None
    device: str
    progress_bar: bool


@dataclass(frozen=True)
class _Start:
    """The model where this call starts (:func:`_start`): fresh or resumed, on its device,
    with the checkpoint's progress and training state (None for a fresh run) and the
    modules kept frozen."""

    model: nn.Module
    progress: ckpt.Progress
    state: dict | None
    frozen_modules: list[nn.Module]


def _train(cfg: ExperimentConfig, data_root: Path, run_dir: Path, dist: DistInfo, opts: _CallOptions) -> TrainResult:
    lock = None
    try:
        if dist.is_main:
            # A new run folder is made only once everything is checked (no folder left by a
            # failed call); an existing one is locked before its checkpoints are read.
            if run_dir.exists():
                lock = _lock_run(run_dir)
            _check_run_dir(run_dir, opts.resume, opts.overwrite)
        return _train_locked(cfg, data_root, run_dir, dist, lock, opts)
    finally:
        if lock is not None:
            lock.release()


def _lock_run(run_dir: Path):
    check_output_folder(run_dir)
    return FolderLock(run_dir, "m3dhmr train").acquire()


def _check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to lose a run: its weights are overwritten only when asked (``overwrite``)."""
    files = ckpt.inspect_run(ckpt.checkpoint_dir(run_dir))
    if files.empty or overwrite:
        return
    if not resume:
        raise InputError(f"{run_dir} already holds {files.describe()}: pass --resume to continue it, "
                         "or --overwrite to start a new run over it")
    if files.state_step is None:
        raise InputError(f"{run_dir} holds {files.describe()} but no {ckpt.LAST_STATE}, so it cannot be "
                         "resumed: train into another --out (train.init_from: PATH starts from those weights), "
                         "or pass --overwrite to start over")


def _clear_run(run_dir: Path) -> None:
    """Remove an old run's outputs before a new run starts over it (``overwrite``)."""
    ckdir = ckpt.checkpoint_dir(run_dir)
    for p in [*ckdir.glob("*.safetensors"), ckdir / ckpt.LAST_STATE, run_dir / "eval_metrics.csv"]:
        p.unlink(missing_ok=True)
    shutil.rmtree(run_dir / "tb", ignore_errors=True)


def _train_locked(cfg: ExperimentConfig, data_root: Path, run_dir: Path, dist: DistInfo, lock,
                  opts: _CallOptions) -> TrainResult:
    t0 = time.perf_counter()
    device = opts.device
    dev = torch.device(f"cuda:{dist.local_rank}" if device.startswith("cuda") and dist.distributed else device)
    tcfg = cfg.train
    start = _start(cfg, run_dir, dist, opts.resume, dev)
    progress = start.progress
    plan = epoch_plan(cfg)
    if progress.epoch_index >= len(plan) or (opts.max_steps is not None and progress.global_step >= opts.max_steps):
        log.info("nothing to do: run at step %d, epoch %d of %d", progress.global_step, progress.epoch_index, len(plan))
        return TrainResult(run_dir, progress, 0, time.perf_counter() - t0, model=start.model)
    data = _TrainingData(cfg, data_root, dev, dist, start.model, opts.progress_bar)
    for epoch_index in range(progress.epoch_index, len(plan)):  # every epoch has a batch: checked before writing
        two_view = plan[epoch_index][0] == 2 and cfg.data.two_view
        num_samples = data.num_samples(two_view)
        if num_samples < data.counts[0]:
            raise InputError(f"{data_root}: {num_samples} training samples are fewer than one batch "
                             f"(train.batch_size={tcfg.batch_size}, of which {data.counts[0]} synthetic)")

    new_lock = None
    if dist.is_main:  # the run starts: from here on the run folder is written
        if lock is None:
            lock = new_lock = _lock_run(run_dir)
        removed = remove_stale_temporaries(run_dir, recursive=True)
        if removed:
            log.info("removed %d temporary file(s) left by a killed run in %s", len(removed), run_dir)
        if start.state is None and opts.overwrite:
            _clear_run(run_dir)
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    try:
        return _run(cfg, data_root, run_dir, dist, dev, start, data, plan, t0, opts)
    finally:
        if new_lock is not None:
            new_lock.release()


def _run(cfg: ExperimentConfig, data_root: Path, run_dir: Path, dist: DistInfo, dev: torch.device, start: _Start,
         data: _TrainingData, plan: list[tuple[int, int]], t0: float, opts: _CallOptions) -> TrainResult:
    tcfg = cfg.train
    model, progress, state, frozen_modules = start.model, start.progress, start.state, start.frozen_modules

    amp_dtype = resolve_amp(tcfg.amp, dev)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    if state is not None:
        ckpt.set_rng_state(state["rng"])
        if state.get("scaler") is not None and scaler.is_enabled():
            scaler.load_state_dict(state["scaler"])

    writer = None
    if dist.is_main:
        from torch.utils.tensorboard import SummaryWriter  # heavy: TensorBoard loads only on the main rank

        writer = SummaryWriter(str(run_dir / "tb"), purge_step=progress.global_step or None)
    curve = _LearningCurve(cfg, data_root, run_dir, model, dev, amp_dtype, writer, progress.global_step) \
        if dist.is_main and tcfg.eval_every > 0 else None
    if dist.is_main and data.real is not None:
        log.info("real photos: %d of each batch of %d (data.real_fraction=%g), %d photos", data.counts[1],
                 tcfg.batch_size, cfg.data.real_fraction, len(data.real))
    loop = _Loop(cfg, model, dev, dist, scaler, writer, curve, t0, opts)
    if dist.is_main:  # train.checkpoint_every: checkpoints inside an epoch too
        loop.save = lambda progress, optimizer, stage: _save(run_dir, model, cfg, progress, optimizer, scaler,
                                                             stage, epoch_file=False)
    optimizer = step_module = None
    opt_stage = None
    try:
        for epoch_index in range(progress.epoch_index, len(plan)):
            stage, epoch_in_stage = plan[epoch_index]
            two_view = stage == 2 and cfg.data.two_view
            if opt_stage != stage:
                optimizer, step_module = _stage_optimizer(cfg, model, stage, epoch_index, state, two_view,
                                                          amp_dtype, dev, dist)
                opt_stage = stage
            lr = learning_rate(cfg, stage, epoch_in_stage)
            for group in optimizer.param_groups:
                group["lr"] = lr
            (step_module.module if hasattr(step_module, "module") else step_module).weights = \
                stage_loss_weights(cfg, stage, epoch_in_stage)
            num_samples = data.num_samples(two_view)
            batches = epoch_batches(num_samples, data.counts[0], tcfg.seed, epoch_index, dist.rank,
                                    dist.world_size)
            skip = progress.batch_in_epoch if epoch_index == progress.epoch_index else 0
            model.train()
            for m in frozen_modules:
                m.eval()  # frozen BatchNorm keeps its loaded statistics
            epoch = _Epoch(stage, epoch_in_stage, epoch_index, len(batches), skip, lr,
                           last_epoch=epoch_index + 1 == len(plan))
            progress, stop, running = loop.epoch(data.loader(batches, skip, epoch_index, two_view), step_module,
                                                 optimizer, progress, epoch)
            # DDP broadcasts rank 0's buffers (BatchNorm statistics) before each forward, so
            # after the last step the other ranks' buffers are stale: align them now.
            _broadcast_buffers(model, dist)
            epoch_done = progress.batch_in_epoch == len(batches)
            if epoch_done:
                progress = ckpt.Progress(epoch_index + 1, 0, progress.global_step, finished=epoch_index + 1 == len(plan))
                if dist.is_main:
                    log.info("stage %d epoch %d/%d done (step %d): %s", stage, epoch_in_stage + 1,
                             sum(s == stage for s, _ in plan), progress.global_step,
                             ", ".join(f"{k} {v:.4g}" for k, v in running.items()))
            if dist.is_main and checkpoint_due(tcfg, progress.global_step, epoch_done, stop or progress.finished):
                _save(run_dir, model, cfg, progress, optimizer, scaler, stage,
                      epoch_file=tcfg.keep_epoch_checkpoints and epoch_done)
            barrier(dist)
            if stop:
                break
    finally:
        if writer is not None:
            writer.close()

    secs = time.perf_counter() - t0
    if dist.is_main:
        log.info("trained %d steps in %.1f s; checkpoints in %s", loop.steps_run, secs, ckpt.checkpoint_dir(run_dir))
    return TrainResult(run_dir, progress, loop.steps_run, secs, loop.last_losses, loop.seen, model)


def _start(cfg: ExperimentConfig, run_dir: Path, dist: DistInfo, resume: bool, dev: torch.device) -> _Start:
    """The model at the start of this call: fresh (seeded, ``init_from``) or resumed; frozen
    parts marked; on ``dev``."""
    tcfg = cfg.train
    ckdir = ckpt.checkpoint_dir(run_dir)
    state_path, weights_path = ckdir / ckpt.LAST_STATE, ckdir / ckpt.LAST_WEIGHTS
    # Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's).
    torch.manual_seed(tcfg.seed)
    model = build_model(cfg.model)
    progress = ckpt.Progress()
    state = None
    if resume and state_path.is_file():
        state = ckpt.load_training_state(state_path)
        stored = experiment_from_json(state["experiment"], where=str(state_path))
        if stored.model != cfg.model:
            raise InputError(f"{state_path}: the run was trained with another model section than --config; "
                             "resume with the run's own config (RUN/config.yaml)")
        tensors, state, progress = ckpt.load_resume_point(ckdir, repair=dist.is_main)
        model_io.load_weights_into(model, tensors, str(state_path))
        log.info("resuming %s at step %d (epoch %d, batch %d)", run_dir, progress.global_step,
                 progress.epoch_index, progress.batch_in_epoch)
    if state is None and tcfg.init_from is not None:
        init_weights_from(model, tcfg.init_from, tcfg.init_from_prefixes)
    frozen_modules = freeze(model, tcfg.freeze_prefixes)
    if resume and state is None and dist.is_main:
        log.warning("--resume: no checkpoint in %s yet; starting a new run", ckdir)
    model.to(dev)
    if tcfg.channels_last:
        model.to(memory_format=torch.channels_last)
    return _Start(model, progress, state, frozen_modules)


class _TrainingData:
    """The training split as batches: in memory (``data.pipeline: memory``) or through a
    DataLoader of :class:`~m3dhmr.data.freihand.FreiHANDDataset` (one per view mode).

    With ``data.real_dir``, each batch is ``counts[0]`` synthetic samples (the epoch's
    order, :func:`epoch_batches`) followed by ``counts[1]`` real photos
    (:class:`~m3dhmr.data.real_crops.RealCropDataset`, stream positions
    ``real_batch_slots``), and ``batch["num_real"]`` says how many; real samples carry
    ``index = -1 - photo row``. Both parts are functions of (seed, epoch, batch), so
    resuming is exact. An epoch is one pass over the synthetic samples.
    """

    def __init__(self, cfg: ExperimentConfig, data_root: Path, dev: torch.device, dist: DistInfo, model: nn.Module,
                 progress_bar: bool) -> None:
        self.cfg, self.data_root, self.dev, self.dist = cfg, data_root, dev, dist
        self.num_vertices = int(model.num_vertices) if hasattr(model, "num_vertices") else None
        self.progress_bar = progress_bar
        self.memory = cfg.data.pipeline == "memory"
        self._split = None
        self._datasets: dict[bool, object] = {}
        self.real = None
        self.counts = (cfg.train.batch_size, 0)  # (synthetic, real) samples per global batch
        if cfg.data.real_dir is not None:
            self.counts = split_counts(cfg.train.batch_size, cfg.data.real_fraction)
            if any(c % dist.world_size for c in self.counts):
                raise InputError(f"train.batch_size={cfg.train.batch_size} with data.real_fraction="
                                 f"{cfg.data.real_fraction} gives {self.counts[0]} synthetic + {self.counts[1]} real "
                                 f"samples per batch; each must divide among the {dist.world_size} ranks")
            # Rank 0 runs the landmark model and writes the cache; the others then read it.
            if dist.is_main:
                self.real = _make_real_dataset(cfg, self.num_vertices or 0, progress_bar)
            barrier(dist)
            if not dist.is_main:
                self.real = _make_real_dataset(cfg, self.num_vertices or 0, False)

    def _source(self, two_view: bool):
        if self.memory:
            if self._split is None:
                self._split = load_split(self.data_root, self.cfg.data.train_split, device=self.dev,
                                         num_vertices=self.num_vertices, progress=self.progress_bar and self.dist.is_main)
            return self._split
        if two_view not in self._datasets:
            self._datasets[two_view] = _make_dataset(self.cfg, self.data_root, two_view, self.num_vertices)
        return self._datasets[two_view]

    def num_samples(self, two_view: bool) -> int:
        n = len(self._source(two_view))
        return min(n, self.cfg.data.train_samples) if self.cfg.data.train_samples else n

    def loader(self, batches: list[list[int]], skip: int, epoch_index: int, two_view: bool):
        source = self._source(two_view)
        if self.memory:
            return _memory_batches(source, batches, skip, self.cfg, epoch_index, two_view, self.dist, self.real,
                                   self.counts[1])
        source.set_epoch(epoch_index)
        if self.real is None:
            return torch.utils.data.DataLoader(source, batch_sampler=batches[skip:],
                                               num_workers=self.cfg.data.num_workers, pin_memory=self.dev.type == "cuda")
        self.real.set_epoch(epoch_index)
        # Keys >= 0 are synthetic samples, -1 - slot the real stream's positions.
        mixed = [batches[b] + [-1 - k for k in real_batch_slots(self.counts[1], b, self.dist.rank,
                                                                   self.dist.world_size)]
                 for b in range(skip, len(batches))]
        loader = torch.utils.data.DataLoader(_MixedDataset(source, self.real, two_view), batch_sampler=mixed,
                                             num_workers=self.cfg.data.num_workers, pin_memory=self.dev.type == "cuda")
        num_real = self.counts[1] // self.dist.world_size
        return ({**batch, "num_real": num_real} for batch in loader)


def _make_real_dataset(cfg: ExperimentConfig, num_vertices: int, progress: bool):
    """The real photos of ``data.real_dir`` with their pseudo-labels (computed once, cached)."""
    from m3dhmr.data.pseudo_labels import pseudo_labels  # looked up when called: tests replace it

    d = cfg.data
    paths = photo_paths(d.real_dir)
    labels = pseudo_labels(paths, cache=d.real_pseudo_cache, progress=progress)
    keep = labels.select(d.real_min_presence)
    left = np.array([h == "left" for h in labels.handedness], dtype=bool)
    log.info("data.real_dir %s: %d photos, %d with presence >= %g", d.real_dir, len(paths), int(keep.sum()),
             d.real_min_presence)
    return RealCropDataset(labels.paths, labels.landmarks, keep, left, cfg.model.input_size, d.augment,
                           seed=cfg.train.seed, num_vertices=num_vertices)


class _MixedDataset(torch.utils.data.Dataset):
    """Synthetic samples at keys >= 0, the real stream's position ``-1 - key`` below 0
    (its ``index`` negated to ``-1 - photo row``, so trained-on lists keep the synthetic ones)."""

    def __init__(self, synthetic, real, two_view: bool) -> None:
        self.synthetic, self.real, self.two_view = synthetic, real, two_view

    def __len__(self) -> int:
        return len(self.synthetic)

    def __getitem__(self, key: int):
        if key >= 0:
            return self.synthetic[key]
        item = self.real.item(-1 - key, self.real.epoch, self.two_view)
        item["index"] = -1 - item["index"]
        return item


def _stage_optimizer(cfg: ExperimentConfig, model: nn.Module, stage: int, epoch_index: int, state, two_view: bool,
                     amp_dtype, dev: torch.device, dist: DistInfo):
    """A fresh Adam per stage (stage 2 starts from stage 1's weights, not its moments; a
    resumed state's moments when it was saved in this stage and epoch) and the loss module."""
    tcfg = cfg.train
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise InputError(f"stage {stage}: train.freeze_prefixes {list(tcfg.freeze_prefixes)} leave nothing to train")
    optimizer = torch.optim.Adam(trainable, lr=learning_rate(cfg, stage, 0), weight_decay=tcfg.weight_decay)
    if state is not None and state["progress"]["epoch_index"] == epoch_index and state.get("optimizer_stage") == stage:
        optimizer.load_state_dict(state["optimizer"])
    step_module: nn.Module = StepLoss(model, stage, cfg, two_view, amp_dtype)
    if dist.distributed:
        # Stage 1 leaves the mesh decoder unused; the loss graph tells DDP which.
        step_module = DDP(step_module, device_ids=[dev.index] if dev.type == "cuda" else None,
                          find_unused_parameters=stage == 1)
    return optimizer, step_module


@dataclass(frozen=True)
class _Epoch:
    """One epoch of the plan as :meth:`_Loop.epoch` runs it: its ``stage`` and place
    (``epoch_in_stage``, ``epoch_index`` over the whole plan), its ``num_batches`` of which
    the first ``skip`` were used before a resume, its learning rate, and whether it is the
    plan's last (``last_epoch``: its last step scores the learning curve)."""

    stage: int
    epoch_in_stage: int
    epoch_index: int
    num_batches: int
    skip: int
    lr: float
    last_epoch: bool


class _Loop:
    """The optimiser steps of one epoch, with logging, stopping rules and learning-curve points."""

    def __init__(self, cfg: ExperimentConfig, model: nn.Module, dev: torch.device, dist: DistInfo, scaler, writer,
                 curve, t0: float, opts: _CallOptions) -> None:
        self.cfg, self.model, self.dev, self.dist = cfg, model, dev, dist
        self.scaler, self.writer, self.curve, self.t0 = scaler, writer, curve, t0
        self.max_steps, self.max_seconds = opts.max_steps, opts.max_seconds
        self.show_bar = opts.progress_bar and dist.is_main
        # Loss values are read back (a host sync) only on logging steps on CUDA.
        self.sync_every_step = dev.type != "cuda"
        self.steps_run = 0
        self.last_losses: dict[str, float] = {}
        self._seen: list[torch.Tensor] = []  # kept on the batch's device: no host sync per step
        # (progress, optimizer, stage) -> None: writes a checkpoint due inside an epoch (rank 0).
        self.save = None

    def epoch(self, loader, step_module, optimizer, progress: ckpt.Progress, epoch: _Epoch):
        """Run the epoch's remaining batches; returns (progress, stop, running loss means)."""
        tcfg = self.cfg.train
        running: dict[str, float] = {}
        bar = self._progress_bar(epoch)
        batch_in_epoch = epoch.skip
        stop = False
        for batch in loader:
            step_no = progress.global_step + 1
            log_step = step_no % tcfg.log_every == 0 or step_no == 1 or batch_in_epoch + 1 == epoch.num_batches
            terms = self._optimise(batch, step_module, optimizer, step_no, log_step, epoch)
            batch_in_epoch += 1
            self.steps_run += 1
            progress = ckpt.Progress(epoch.epoch_index, batch_in_epoch, step_no)
            self._record(terms, log_step, running, bar, epoch, step_no)
            stop = self._stop_due(step_no)
            last_batch = batch_in_epoch == epoch.num_batches and epoch.last_epoch
            if self.curve is not None and (step_no % tcfg.eval_every == 0 or stop or last_batch):
                self.curve.evaluate(step_no, epoch.stage, epoch.epoch_index, time.perf_counter() - self.t0)
            if stop:
                break
            # Epoch ends and stops are checkpointed by the caller, a step inside the epoch here.
            if self.save is not None and batch_in_epoch < epoch.num_batches and \
                    checkpoint_due(tcfg, step_no, epoch_done=False, last=False):
                self.save(progress, optimizer, epoch.stage)
        if bar is not None:
            bar.close()
        return progress, stop, running

    def _progress_bar(self, epoch: _Epoch):
        """A tqdm bar over the epoch's batches (starting at those skipped), or None."""
        if not self.show_bar:
            return None
        return tqdm(total=epoch.num_batches, initial=epoch.skip, desc=f"stage {epoch.stage} epoch "
                    f"{epoch.epoch_in_stage + 1}", leave=False, dynamic_ncols=True)

    def _optimise(self, batch, step_module, optimizer, step_no: int, log_step: bool, epoch: _Epoch) -> LossTerms:
        """One optimiser step on ``batch``; returns its loss terms. A non-finite loss (checked
        where its value is read back anyway) stops training before the step is taken."""
        tcfg = self.cfg.train
        self._seen.append(batch["index"].detach())
        terms = step_module(to_device(batch, self.dev))
        loss = terms.total
        if (self.sync_every_step or log_step) and not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the loss became {loss.item()} by step {step_no} (stage {epoch.stage}, epoch "
                f"{epoch.epoch_in_stage + 1}); the last checkpoint is kept: lower train.lr or set "
                "train.grad_clip_norm, then --resume")
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if tcfg.grad_clip_norm is not None:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), tcfg.grad_clip_norm)
        self.scaler.step(optimizer)
        self.scaler.update()
        return terms

    def _record(self, terms: LossTerms, log_step: bool, running: dict[str, float], bar, epoch: _Epoch,
                step: int) -> None:
        """The step's losses: read back (every step off CUDA, else on logging steps) into
        :attr:`last_losses` and the bar's running means; TensorBoard scalars on logging steps."""
        if self.sync_every_step or log_step:
            self.last_losses = {k: float(v) for k, v in terms.as_dict().items()}
            for k, v in self.last_losses.items():  # running mean for the bar
                running[k] = v if k not in running else 0.9 * running[k] + 0.1 * v
        if bar is not None:
            bar.update(1)
            if log_step:
                bar.set_postfix({k: f"{v:.4g}" for k, v in running.items()}, refresh=False)
        if self.writer is not None and log_step:
            for k, v in self.last_losses.items():
                self.writer.add_scalar(f"loss_stage{epoch.stage}/{k}", v, step)
            self.writer.add_scalar("lr", epoch.lr, step)

    def _stop_due(self, step: int) -> bool:
        """Whether training stops after ``step``: ``max_steps`` reached, or ``max_seconds``
        passed on any rank (asked every step: all ranks take part in that collective)."""
        stop = self.max_steps is not None and step >= self.max_steps
        if self.max_seconds is not None and _any_rank(self.dist, time.perf_counter() - self.t0 > self.max_seconds,
                                                      self.dev):
            stop = True
        return stop

    @property
    def seen(self) -> list[int]:
        """Sample indices trained on so far, in order (one host copy)."""
        seen = torch.cat([t.reshape(-1).cpu() for t in self._seen]).tolist() if self._seen else []
        return [i for i in seen if i >= 0]  # real photos carry -1 - row


def freeze(model: nn.Module, prefixes: tuple[str, ...]) -> list[nn.Module]:
    """Stop training the parameters whose names start with one of ``prefixes``; returns
    the modules wholly inside those prefixes (to be kept in eval mode while training)."""
    if not prefixes:
        return []
    prefixes = tuple(prefixes)
    hit = 0
    for name, p in model.named_parameters():
        if name.startswith(prefixes):
            p.requires_grad_(False)
            hit += 1
    if hit == 0:
        raise InputError(f"train.freeze_prefixes {list(prefixes)}: no parameter name starts so "
                         f"(e.g. {[n for n, _ in model.named_parameters()][:3]})")
    return [m for name, m in model.named_modules() if name and (name + ".").startswith(prefixes)]


def init_weights_from(model: nn.Module, source: str, prefixes: tuple[str, ...] = ()) -> int:
    """Copy trained tensors into ``model`` (``train.init_from``); returns how many were copied.

    ``source``: a checkpoint path, or ``"pretrained"`` / ``"pretrained:NAME"`` (a packaged
    model). Only tensors whose names start with one of ``prefixes`` are taken (all when
    empty); each must exist in ``model`` with the same shape, else a ValueError names it.
    """
    if source == "pretrained" or source.startswith("pretrained:"):
        name = source.partition(":")[2] or DEFAULT_MODEL
        tensors, _ = read_pretrained_tensors(name)
    else:
        tensors, _ = model_io.read_weights(source)
    own = model.state_dict()
    chosen = {k: v for k, v in tensors.items() if not prefixes or k.startswith(tuple(prefixes))}
    if not chosen:
        raise InputError(f"train.init_from {source}: no tensors start with {list(prefixes)}")
    bad = [k for k, v in chosen.items() if k not in own or tuple(own[k].shape) != tuple(v.shape)]
    if bad:
        raise InputError(f"train.init_from {source}: {len(bad)} tensors do not fit this model "
                         f"(e.g. {bad[:3]}); use init_from_prefixes to take a part")
    model.load_state_dict(chosen, strict=False)
    log.info("initialised %d tensors from %s", len(chosen), source)
    return len(chosen)


def _memory_batches(split, batches: list[list[int]], skip: int, cfg: ExperimentConfig, epoch_index: int,
                    two_view: bool, dist: DistInfo, real=None, real_per_batch: int = 0):
    """Batches of the in-memory pipeline; each one's random draws are keyed by its place in the run.

    With ``real`` (a RealCropDataset), its samples at the batch's stream positions are
    cropped on the CPU (OpenCV), moved to the device and appended (``num_real`` of them).
    """
    for b in range(skip, len(batches)):
        batch = make_batch(split, batches[b], cfg.data.augment, cfg.model.input_size, seed=cfg.train.seed,
                           epoch=epoch_index, batch=b * dist.world_size + dist.rank, two_view=two_view)
        if real is not None:
            slots = real_batch_slots(real_per_batch, b, dist.rank, dist.world_size)
            extra = real.collate(slots, epoch_index, two_view)
            extra["index"] = -1 - extra["index"]
            dev = batch["image"].device
            batch = {k: torch.cat([v, extra[k].to(dev, v.dtype)]) for k, v in batch.items()}
            batch["num_real"] = len(slots)
        yield batch


class _LearningCurve:
    """Periodic scores on ``data.eval_split`` (rank 0): ``RUN/eval_metrics.csv`` and ``eval/*`` scalars."""

    def __init__(self, cfg: ExperimentConfig, data_root: Path, run_dir: Path, model: nn.Module,
                 device: torch.device, amp_dtype, writer, start_step: int) -> None:
        self.model, self.device, self.amp_dtype, self.writer = model, device, amp_dtype, writer
        self.batch_size, self.channels_last = cfg.train.eval_batch_size, cfg.train.channels_last
        self.dataset = None
        self.log = MetricsLog(run_dir, resume_step=start_step)
        self.last_step = -1
        split = cfg.data.eval_split
        try:
            ds = FreiHANDDataset(data_root, split, crop_size=cfg.model.input_size, augment=no_augment(cfg.data.augment),
                                 num_vertices=getattr(model, "num_vertices", None))
        except (FileNotFoundError, ValueError) as e:
            log.warning("train.eval_every: cannot score the %s split (%s); no learning curve", split, e)
            return
        if not ds.ann.has_3d:
            log.warning("train.eval_every: the %s split of %s has no ground truth; no learning curve", split, data_root)
            return
        n = min(len(ds), ds.num_annotations)
        if cfg.train.eval_samples:
            n = min(n, cfg.train.eval_samples)
        self.dataset = torch.utils.data.Subset(ds, range(n))

    def evaluate(self, step: int, stage: int, epoch_index: int, seconds: float) -> None:
        if self.dataset is None or step == self.last_step:
            return
        self.last_step = step
        m = evaluate_model(self.model, self.dataset, stage=stage, batch_size=self.batch_size, device=self.device,
                           amp_dtype=self.amp_dtype, channels_last=self.channels_last)
        self.log.add({"step": step, "stage": stage, "epoch": epoch_index, **m, "seconds": seconds})
        for k in LOGGED:
            if m[k] == m[k]:  # not NaN
                self.writer.add_scalar(f"eval/{k}", m[k], step)
        log.info("step %d (stage %d) eval on %d samples: %s", step, stage, m["num_samples"],
                 ", ".join(f"{k} {m[k]:.4g}" for k in LOGGED if m[k] == m[k]))


def _broadcast_buffers(model: nn.Module, dist: DistInfo) -> None:
    """Copy rank 0's floating buffers to every rank (what DDP does at each forward)."""
    if not dist.distributed:
        return
    for b in model.buffers():
        if b.layout == torch.strided and b.numel():
            tdist.broadcast(b, src=0)


def _any_rank(dist: DistInfo, flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true on any rank (all ranks must stop at the same step)."""
    if not dist.distributed:
        return flag
    t = torch.tensor([int(flag)], device=device)
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return bool(t.item())


def checkpoint_due(t, step: int, epoch_done: bool, last: bool) -> bool:
    """Whether the checkpoint is written after optimiser step ``step`` (``t``: the TrainConfig).

    Always where training ends or stops (``last``). ``train.checkpoint_every`` 0: at each
    epoch end (``epoch_done``); N > 0: after every N-th step (inside an epoch too) and, with
    ``train.keep_epoch_checkpoints``, at each epoch end for its epoch file. A resume starts
    from the latest checkpoint and reaches the same weights either way.
    """
    if last:
        return True
    if t.checkpoint_every == 0:
        return epoch_done
    return step % t.checkpoint_every == 0 or (epoch_done and t.keep_epoch_checkpoints)


def _save(run_dir: Path, model: nn.Module, cfg: ExperimentConfig, progress: ckpt.Progress,
          optimizer: torch.optim.Optimizer, scaler, stage: int, epoch_file: bool) -> None:
    ckpt.save_checkpoint(ckpt.checkpoint_dir(run_dir), model, cfg, progress, optimizer, scaler,
                         extra={"optimizer_stage": stage}, epoch_file=epoch_file)


__all__ = ["NonFiniteLossError", "TrainResult", "train", "epoch_plan", "learning_rate", "resolve_amp",
           "checkpoint_due"]
