"""The test that catches a pipeline that cannot learn: a tiny model over-fits four images.

Same images for training and scoring, no augmentation, the whole training path (memory
pipeline, both stages, the stage-2 recipe of configs/synthetic_r18.yaml). Before
training, the 2D joints sit near the crop centre and the mesh is the rest hand; after a
fixed number of steps both must be far better (bounds measured with margin; see
docs/results_synthetic.md for the numbers this recipe reaches).
"""

from __future__ import annotations

import pytest
import yaml

from m3dhmr.config_loader import from_dict
from m3dhmr.experiment import ExperimentConfig
from m3dhmr.train.trainer import train
from m3dhmr.train.validation import CSV_NAME, read_metrics_csv

TINY = """
model:
  backbone: resnet18
  backbone_width: 16
  input_size: 64
  stack_channels: 16
  stack2_channels: [16, 16, 32]
  latent_channels: 32
  decoder_channels: [8, 8, 16, 16]
  dsc_kernels: 2
loss: {normal: 0.1, heatmap: 1.0, pose2d_stack1: 1.0, heatmap2: 1.0, mesh_aligned: 1.0}
train:
  batch_size: 4
  stage1_epochs: 27
  epochs: 100
  lr_milestones: []
  seed: 0
  log_every: 50
  eval_every: 127
  eval_samples: 4
  keep_epoch_checkpoints: false
  checkpoint_every: 127  # one checkpoint, at the end (127 one-batch epochs would write 127)
data:
  pipeline: memory
  two_view: false
  eval_split: training
  augment: {enabled: false, eval_box: joints, base_box_scale: 1.5}
"""


@pytest.fixture(scope="module")
def four_images(tmp_path_factory):
    from m3dhmr.data.synth import generate

    return generate(tmp_path_factory.mktemp("overfit") / "data", 4, 1, seed=0, workers=1, progress=False)


@pytest.mark.slow
def test_a_tiny_model_overfits_four_images(four_images, tmp_path):
    from m3dhmr.data.freihand import FreiHANDDataset, no_augment
    from m3dhmr.models import build_model
    from m3dhmr.train.validation import evaluate_model

    import torch

    cfg = from_dict(ExperimentConfig, yaml.safe_load(TINY))
    torch.manual_seed(cfg.train.seed)
    ds = FreiHANDDataset(four_images, "training", crop_size=64, augment=no_augment(cfg.data.augment))
    before = evaluate_model(build_model(cfg.model), ds)
    train(cfg, four_images, tmp_path / "run", progress_bar=False)
    after = read_metrics_csv(tmp_path / "run" / CSV_NAME)[-1]
    assert after["step"] == 127  # 27 stage-1 + 100 stage-2 one-batch epochs
    # The untrained mesh is the rest hand: a good aligned (PA) score but the wrong
    # orientation, so the root-relative error is what falls when the model fits the
    # images; 127 steps of a tiny model are too few for the aligned shape to improve
    # too. Measured (27 + 100 steps, ResNet-18 at width 16): 2D 39.3 -> 11.4 px (0.29x),
    # root-relative 147 -> 43 mm (0.30x), as at torchvision's width 64 (0.29x, 0.29x, 3x the
    # time; benchmarks/overfit_width.py); 87 steps reach only 0.42x / 0.34x; a pipeline that
    # cannot learn stays near 1x.
    assert after["err2d_px"] < 0.5 * before["err2d_px"], (before, after)
    assert after["mpjpe_rr_mm"] < 0.5 * before["mpjpe_rr_mm"], (before, after)
