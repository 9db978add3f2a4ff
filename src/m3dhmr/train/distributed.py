"""Process groups and deterministic data sharding for one process or ``torchrun`` DDP.

The sample order of an epoch depends only on ``(seed, epoch)``, so a resumed run, a run
with another ``num_workers`` and every rank of a DDP run agree on it. Each rank takes a
strided share of every global batch, so a global batch is the same set of samples
whatever the world size.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from m3dhmr.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: no process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def dist_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (``0, 1, 0`` without it)."""
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as e:
        raise InputError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {e}") from e
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return rank, world, local


def init_distributed(device: str) -> DistInfo:
    """Join torchrun's process group (``env://``) when ``WORLD_SIZE > 1``.

    gloo on CPU, nccl on CUDA; with CUDA each process uses GPU ``LOCAL_RANK``.
    """
    rank, world, local = dist_env()
    if world == 1:
        return DistInfo()
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://")
    log.info("rank %d of %d joined the %s process group", rank, world, backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local, backend=backend)


def cleanup_distributed(info: DistInfo) -> None:
    if info.distributed:
        if dist.is_initialized():
            dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    """``(N,)`` int64 sample order of ``epoch``: a function of ``(seed, epoch)`` only."""
    g = torch.Generator()
    # Distinct, reproducible stream per (seed, epoch); large odd multiplier avoids
    # (seed, epoch) and (seed + 1, epoch - k) colliding.
    g.manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2**63 - 1))
    return torch.randperm(num_samples, generator=g)


def epoch_batches(
    num_samples: int,
    batch_size: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    shuffle: bool = True,
) -> list[list[int]]:
    """This rank's mini-batches of ``epoch``: a list of ``num_batches`` lists of indices.

    ``batch_size`` is the global batch (all ranks together) and must divide by
    ``world_size``; the last incomplete global batch is dropped (BatchNorm needs more
    than one sample, and every rank must take the same number of steps). Global batch
    ``b`` is ``order[b * batch_size:(b + 1) * batch_size]``; rank ``r`` takes its
    elements ``r, r + world_size, ...``.
    """
    if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
        raise InputError(f"bad sharding: batch_size={batch_size}, rank={rank}, world_size={world_size}")
    if batch_size % world_size:
        raise InputError(f"train.batch_size={batch_size} is not divisible by the world size {world_size}")
    order = epoch_permutation(num_samples, seed, epoch) if shuffle else torch.arange(num_samples)
    num_batches = num_samples // batch_size
    order = order[: num_batches * batch_size].view(num_batches, batch_size)
    return order[:, rank::world_size].tolist()
