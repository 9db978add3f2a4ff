"""Training: experiment configs, checkpoints, DDP helpers and the two-stage training loop.

``m3dhmr.train.trainer.train`` runs a whole experiment. Below training: the experiment
config, :mod:`m3dhmr.experiment` (its main names re-exported here), and
reading weights back, :mod:`m3dhmr.model_io` (``load_model_from_checkpoint`` rebuilds a
trained model for inference; re-exported by :mod:`m3dhmr.train.checkpoint`).
"""

from m3dhmr.experiment import DataConfig, ExperimentConfig, TrainConfig, load_experiment

__all__ = ["DataConfig", "ExperimentConfig", "TrainConfig", "load_experiment"]
