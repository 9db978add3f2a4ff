"""Experiment configuration: the ``model``, ``loss``, ``train`` and ``data`` sections of a YAML file.

``TrainConfig`` defaults are the paper's recipe (Adam, batch 32, lr 1e-3 divided by 10 at
epoch 30 of 38, after a stage-1 pretraining of the first stack); CPU configs scale them down.

Plain frozen dataclasses, below everything that reads them: the weights I/O
(:mod:`m3dhmr.model_io`, which stores the experiment in checkpoint metadata), the packaged
models and training. :mod:`m3dhmr.train` re-exports the four main names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from m3dhmr.config_loader import ConfigError, from_dict, load_yaml, to_dict
from m3dhmr.data.augment import AugmentConfig
from m3dhmr.losses import LossWeights
from m3dhmr.models.model_config import ModelConfig
from m3dhmr.errors import InputError


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation schedule of both stages.

    Stage 1 pretrains the first stack (heatmaps + 2D landmarks) for ``stage1_epochs``
    (``stage1_scope: stacks_2d``: the second stack's 2D path too, the paper's "first stack
    and the first layer of the second stack");
    stage 2 trains the whole network with all losses for ``epochs``. Learning rates are
    multiplied by ``lr_factor`` at each milestone epoch (0-based within the stage).
    ``batch_size`` is the global batch: DDP ranks split it.
    """

    batch_size: int = 32
    epochs: int = 38
    lr: float = 1e-3
    lr_milestones: tuple[int, ...] = (30,)
    lr_factor: float = 0.1
    stage1_epochs: int = 10
    stage1_lr: float = 1e-3
    stage1_lr_milestones: tuple[int, ...] = ()
    stage1_heatmap_weight: float = 1.0  # stage-1 MSE to Gaussian heatmaps
    stage1_landmark_weight: float = 1.0  # stage-1 L1 on the first stack's landmarks
    # "stack1": stage 1 trains the first stack on its heatmaps and landmarks. "stacks_2d":
    # also the second stack up to its landmarks (re-injection, encoder, decoder, heatmap
    # head; not the latent projection), on both stacks' heatmaps and landmarks: the
    # paper pretrains "the first stack and the first layer of the second stack", and our
    # second stack gives landmarks only at its end, so its whole 2D path is pretrained.
    stage1_scope: Literal["stack1", "stacks_2d"] = "stack1"
    # The consistency terms (loss.con3d, loss.con2d) count only from this stage-2 epoch
    # on (0-based; MobRecon's code: 4); both views are trained before it all the same.
    consistency_start_epoch: int = 0
    weight_decay: float = 0.0
    grad_clip_norm: float | None = None
    seed: int = 0
    # auto: bf16 (or fp16) on CUDA; on a CPU bf16 only where it is faster (Intel AMX),
    # else full precision (m3dhmr.train.precision has the measurements).
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    channels_last: bool = False  # NHWC images and backbone weights (faster with bf16 on CPU and CUDA)
    log_every: int = 10  # TensorBoard scalars every this many steps
    keep_epoch_checkpoints: bool = True  # epoch_XXX.safetensors besides last.safetensors
    # The checkpoint (weights, optimiser moments, RNG: what --resume continues from) is
    # written at each epoch end (0), or after every this many optimiser steps, inside an
    # epoch too, and at each epoch end only for keep_epoch_checkpoints' epoch files (N > 0);
    # always where training ends or stops. Fewer writes for short epochs (a full state with
    # Adam moments is ~3x the weights), more for long ones; a kill loses the steps since.
    checkpoint_every: int = 0
    # Learning curve: score data.eval_split every this many steps (and at the end of the
    # run) into RUN/eval_metrics.csv and TensorBoard's eval/ scalars; 0 turns it off.
    eval_every: int = 0
    eval_samples: int = 500  # first this many samples of the split (0: all)
    eval_batch_size: int = 64
    # Start from trained weights instead of random ones (a new run only; --resume ignores
    # it): a checkpoint path, or "pretrained" / "pretrained:NAME" for a packaged model.
    # init_from_prefixes limits it to tensors whose names start so (e.g. ["backbone."]).
    init_from: str | None = None
    init_from_prefixes: tuple[str, ...] = ()
    # Parameters whose names start so are not trained (and their BatchNorm statistics
    # stay as loaded), e.g. ["backbone."] to train a decoder on a trained backbone.
    freeze_prefixes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise InputError(f"train.batch_size must be >= 1, got {self.batch_size}")
        if self.epochs < 0 or self.stage1_epochs < 0 or self.epochs + self.stage1_epochs == 0:
            raise InputError(f"train.epochs={self.epochs} / train.stage1_epochs={self.stage1_epochs}: "
                             "need >= 0 each and at least one epoch in total")
        for name in ("lr", "stage1_lr"):
            if not getattr(self, name) > 0:
                raise InputError(f"train.{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.lr_factor <= 1:
            raise InputError(f"train.lr_factor must be in (0, 1], got {self.lr_factor}")
        for name in ("lr_milestones", "stage1_lr_milestones"):
            m = getattr(self, name)
            if list(m) != sorted(m) or any(x < 0 for x in m):
                raise InputError(f"train.{name} must be non-negative and increasing, got {list(m)}")
        if self.stage1_heatmap_weight < 0 or self.stage1_landmark_weight < 0 or \
                self.stage1_heatmap_weight + self.stage1_landmark_weight == 0:
            raise InputError("train.stage1_heatmap_weight and train.stage1_landmark_weight must be >= 0, "
                             "not both 0")
        if self.stage1_scope not in ("stack1", "stacks_2d"):
            raise InputError(f"train.stage1_scope must be 'stack1' or 'stacks_2d', got {self.stage1_scope!r}")
        if self.consistency_start_epoch < 0:
            raise InputError(f"train.consistency_start_epoch must be >= 0, got {self.consistency_start_epoch}")
        if self.weight_decay < 0:
            raise InputError(f"train.weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            raise InputError(f"train.grad_clip_norm must be > 0 or null, got {self.grad_clip_norm}")
        if self.log_every < 1:
            raise InputError(f"train.log_every must be >= 1, got {self.log_every}")
        if self.checkpoint_every < 0:
            raise InputError(f"train.checkpoint_every must be >= 0 (0: at each epoch end), got {self.checkpoint_every}")
        if self.init_from is not None and not str(self.init_from).strip():
            raise InputError("train.init_from must be a checkpoint path, 'pretrained[:NAME]' or null")
        if any(not str(p).strip() for p in self.freeze_prefixes):
            raise InputError(f"train.freeze_prefixes: empty prefix in {list(self.freeze_prefixes)}")
        if self.eval_every < 0 or self.eval_samples < 0 or self.eval_batch_size < 1:
            raise InputError(f"train.eval_every ({self.eval_every}) and train.eval_samples ({self.eval_samples}) "
                             f"must be >= 0 and train.eval_batch_size ({self.eval_batch_size}) >= 1")


@dataclass(frozen=True)
class DataConfig:
    """How training and evaluation samples are made from a FreiHAND-layout folder.

    The crop size is ``model.input_size`` (one source of truth).
    """

    augment: AugmentConfig = field(default_factory=AugmentConfig)
    two_view: bool = True  # stage 2: two augmented views per image for the consistency losses
    # "loader": per-sample crops in DataLoader workers (OpenCV); "memory": the split decoded
    # once into uint8 memory (on the GPU when it fits) and whole batches cropped and
    # jittered on the training device (m3dhmr.data.batched): no workers, no host copies.
    pipeline: Literal["loader", "memory"] = "loader"
    num_workers: int = 2  # loader processes (pipeline: loader); results do not depend on it
    train_split: str = "training"
    eval_split: str = "evaluation"
    # Train on the split's first this many samples only (0: all of them); for quick
    # experiments and ablations on a subset of one rendered set. FreiHAND's training split
    # lists its 4 image versions one after another, so a cap below 32,560 keeps the first.
    train_samples: int = 0
    # Self-training on real photos (m3dhmr.data.real_crops): a folder of photos whose
    # landmark-model pseudo-labels (2D only) train beside the synthetic set. The
    # sign-language-digits layout (Dataset/<digit>/) gives its training persons only
    # (m3dhmr.data.sign_digits.split_by_person), never the held-out ones; any other
    # folder gives all its images. null: synthetic only.
    real_dir: str | None = None
    real_fraction: float = 0.25  # share of each batch that is real (train.batch_size x this, rounded)
    real_min_presence: float = 0.9  # drop pseudo-labels the landmark model is less sure of
    # Weight of the real samples' 2D terms (each stage's 2D weights x this); 3D terms never see them.
    real_weight: float = 1.0
    # The pseudo-label cache (.npz); null: m3dhmr.data.pseudo_labels.default_cache (beside
    # the photos, or under ~/.cache/m3dhmr/pseudo_labels when that folder is read-only).
    real_pseudo_cache: str | None = None

    def __post_init__(self) -> None:
        if self.real_dir is not None and not str(self.real_dir).strip():
            raise InputError("data.real_dir must be a folder of photos or null")
        if self.real_pseudo_cache is not None and not str(self.real_pseudo_cache).strip():
            raise InputError("data.real_pseudo_cache must be a file path or null")
        if not 0.0 < self.real_fraction < 1.0:
            raise InputError(f"data.real_fraction must be in (0, 1), got {self.real_fraction}")
        if not 0.0 <= self.real_min_presence <= 1.0:
            raise InputError(f"data.real_min_presence must be in [0, 1], got {self.real_min_presence}")
        if not (0.0 <= self.real_weight < float("inf")):
            raise InputError(f"data.real_weight must be a finite number >= 0, got {self.real_weight}")
        if self.train_samples < 0:
            raise InputError(f"data.train_samples must be >= 0 (0: the whole split), got {self.train_samples}")
        if self.num_workers < 0:
            raise InputError(f"data.num_workers must be >= 0, got {self.num_workers}")
        if self.pipeline not in ("loader", "memory"):
            raise InputError(f"data.pipeline must be 'loader' or 'memory', got {self.pipeline!r}")
        if self.pipeline == "memory" and self.augment.box_source == "mask":
            raise InputError("data.augment.box_source: mask needs data.pipeline: loader (the in-memory "
                             "pipeline holds no masks)")


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment: one YAML file with sections ``model``, ``loss``, ``train``, ``data``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)


#: The experiment configs that ship with the package (``configs/`` in the repository).
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def packaged_configs() -> list[str]:
    """Names of the packaged experiment configs (``m3dhmr_r18``, ``synthetic_r18``, ...)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config(spec: str | Path) -> Path:
    """A YAML path, or the name of a packaged config (``"m3dhmr_r18"`` or ``"m3dhmr_r18.yaml"``)."""
    path = Path(spec)
    if path.is_file():
        return path
    name = path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml"
    if path.parent == Path(".") and (CONFIG_DIR / name).is_file():
        return CONFIG_DIR / name
    raise FileNotFoundError(f"config {str(spec)!r}: no such file, and not a packaged config "
                            f"({', '.join(packaged_configs())})")


def load_experiment(path: str | Path, overrides=()) -> ExperimentConfig:
    """Read an experiment YAML (a path, or a packaged config's name, see :func:`resolve_config`)
    with optional ``"section.key=value"`` overrides; unknown keys and bad values are errors
    naming file and key."""
    return load_yaml(ExperimentConfig, resolve_config(path), overrides)


def experiment_to_json(cfg: ExperimentConfig) -> str:
    """Canonical JSON form (stored in checkpoint metadata)."""
    return json.dumps(to_dict(cfg), sort_keys=True)


def experiment_from_json(text: str, where: str = "checkpoint") -> ExperimentConfig:
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: experiment config is not valid JSON: {e}") from e
    try:
        return from_dict(ExperimentConfig, data)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from e


__all__ = ["CONFIG_DIR", "DataConfig", "ExperimentConfig", "TrainConfig", "experiment_from_json",
           "experiment_to_json", "load_experiment", "packaged_configs", "resolve_config"]
