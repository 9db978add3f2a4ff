"""Training: experiment configs, checkpoints, DDP helpers and the two-stage training loop.

``m3dhmr.train.trainer.train`` runs a whole experiment; ``m3dhmr.train.checkpoint.
load_model_from_checkpoint`` rebuilds a trained model for inference.
"""

from m3dhmr.train.config import DataConfig, ExperimentConfig, TrainConfig, load_experiment

__all__ = ["DataConfig", "ExperimentConfig", "TrainConfig", "load_experiment"]
