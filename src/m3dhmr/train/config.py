"""Experiment configuration, re-exported: the definitions live in :mod:`m3dhmr.experiment`
(plain data below the weights I/O, the packaged models and training, which all read it).

``from m3dhmr.train.config import ExperimentConfig, load_experiment`` keeps working.
"""

from m3dhmr.experiment import (
    CONFIG_DIR,
    DataConfig,
    ExperimentConfig,
    TrainConfig,
    experiment_from_json,
    experiment_to_json,
    load_experiment,
    packaged_configs,
    resolve_config,
)

__all__ = ["CONFIG_DIR", "DataConfig", "ExperimentConfig", "TrainConfig", "experiment_from_json",
           "experiment_to_json", "load_experiment", "packaged_configs", "resolve_config"]
