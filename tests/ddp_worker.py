"""The torchrun worker of ``tests/test_distributed.py``: train a few steps, then write this
rank's final weights and the sample indices it trained on (``RANK.safetensors``)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from m3dhmr.train import checkpoint as ckpt
from m3dhmr.experiment import load_experiment
from m3dhmr.train.distributed import dist_env
from m3dhmr.train.trainer import train


def main(config: str, data: str, run: str, dump: str, steps: str) -> None:
    result = train(load_experiment(config), data, run, device="cpu", max_steps=int(steps), progress_bar=False)
    rank = dist_env()[0]
    tensors = ckpt.dense_state_dict(result.model)
    tensors["__seen_indices__"] = torch.tensor(result.sample_indices, dtype=torch.int64)
    Path(dump).mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(Path(dump) / f"rank{rank}.safetensors"))


if __name__ == "__main__":
    main(*sys.argv[1:])
