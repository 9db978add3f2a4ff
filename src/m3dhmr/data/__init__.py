"""Data: FreiHAND-layout loading (:mod:`.freihand`), crops and augmentation (:mod:`.augment`),
and the synthetic set writer (:mod:`.synth`, imported on its own: it pulls in the renderer)."""

from m3dhmr.data.augment import AugmentConfig, apply_affine, apply_rotation, view_mapping
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
    "apply_affine",
    "apply_rotation",
    "load_annotations",
    "no_augment",
    "view_mapping",
]
