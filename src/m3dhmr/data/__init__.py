"""Data: FreiHAND-layout loading (:mod:`.freihand`), crops and augmentation (:mod:`.augment`),
and the synthetic set writer (:mod:`.synth`, imported on its own: it pulls in the renderer)."""

from m3dhmr.data.augment import AugmentConfig
from m3dhmr.data.freihand import (
    SAMPLE_KEYS,
    VIEW_KEYS,
    FreiHANDAnnotations,
    FreiHANDDataset,
    load_annotations,
    no_augment,
)

__all__ = [
    "AugmentConfig",
    "FreiHANDAnnotations",
    "FreiHANDDataset",
    "SAMPLE_KEYS",
    "VIEW_KEYS",
    "load_annotations",
    "no_augment",
]
