"""Deterministic sharding (naive reference, hand case) and a 2-process gloo DDP training run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from m3dhmr.train.distributed import DistInfo, dist_env, epoch_batches, epoch_permutation


def epoch_batches_naive(n, batch, seed, epoch, rank, world):
    order = epoch_permutation(n, seed, epoch).tolist()
    out = []
    for b in range(n // batch):
        glob = order[b * batch:(b + 1) * batch]
        out.append([glob[j] for j in range(len(glob)) if j % world == rank])
    return out


def test_permutation_depends_only_on_seed_and_epoch():
    a = epoch_permutation(50, 3, 7)
    assert torch.equal(a, epoch_permutation(50, 3, 7))
    assert sorted(a.tolist()) == list(range(50))
    assert not torch.equal(a, epoch_permutation(50, 3, 8))
    assert not torch.equal(a, epoch_permutation(50, 4, 7))


@pytest.mark.parametrize("n,batch,world", [(10, 4, 1), (10, 4, 2), (17, 6, 3), (5, 8, 1)])
def test_epoch_batches_matches_naive(n, batch, world):
    for rank in range(world):
        assert epoch_batches(n, batch, 1, 2, rank, world) == epoch_batches_naive(n, batch, 1, 2, rank, world)


def test_ranks_partition_each_global_batch():
    n, batch, world = 23, 6, 3
    single = epoch_batches(n, batch, 0, 0)
    shards = [epoch_batches(n, batch, 0, 0, r, world) for r in range(world)]
    assert len(single) == 3  # 23 // 6, the incomplete batch dropped
    for b, glob in enumerate(single):
        merged = sorted(i for s in shards for i in s[b])
        assert merged == sorted(glob)
        assert all(len(s[b]) == batch // world for s in shards)


def test_hand_case_without_shuffle():
    assert epoch_batches(7, 4, 0, 0, 0, 2, shuffle=False) == [[0, 2]]
    assert epoch_batches(7, 4, 0, 0, 1, 2, shuffle=False) == [[1, 3]]
    assert epoch_batches(8, 2, 0, 0, shuffle=False) == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_bad_sharding_is_an_error():
    with pytest.raises(ValueError, match="not divisible"):
        epoch_batches(10, 3, 0, 0, 0, 2)
    with pytest.raises(ValueError, match="bad sharding"):
        epoch_batches(10, 4, 0, 0, 2, 2)


def test_dist_env(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert dist_env() == (0, 1, 0)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert dist_env() == (1, 2, 0)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2"):
        dist_env()
    assert DistInfo().is_main and not DistInfo().distributed


@pytest.mark.slow
def test_ddp_two_cpu_processes_keep_identical_weights(tiny_data, tiny_config, tmp_path):
    """torchrun, 2 ranks, gloo: both ranks end with the same weights after training on disjoint shards."""
    from safetensors.torch import load_file

    from m3dhmr.experiment import load_experiment

    run, dump = tmp_path / "run", tmp_path / "dump"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    worker = Path(__file__).with_name("ddp_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(worker), str(tiny_config), str(tiny_data), str(run), str(dump), "3"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = load_file(dump / "rank0.safetensors"), load_file(dump / "rank1.safetensors")
    seen0, seen1 = r0.pop("__seen_indices__"), r1.pop("__seen_indices__")
    # Each rank trained on its own half of every global batch.
    per_rank = load_experiment(tiny_config).train.batch_size // 2
    assert len(seen0) == len(seen1) == 3 * per_rank
    for b0, b1 in zip(seen0.view(3, per_rank).tolist(), seen1.view(3, per_rank).tolist()):
        assert not set(b0) & set(b1)
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    # Rank 0 wrote the checkpoint (and only one set of files exists).
    ck = load_file(run / "checkpoints" / "last.safetensors")
    for k in ck:
        assert torch.equal(ck[k], r0[k]), k
    # And training changed the weights.
    assert any(not torch.equal(ck[k], v) for k, v in _initial_weights(tiny_config).items() if v.is_floating_point())


def _initial_weights(config: Path) -> dict[str, torch.Tensor]:
    from m3dhmr.models import build_model
    from m3dhmr.train.checkpoint import dense_state_dict
    from m3dhmr.experiment import load_experiment

    cfg = load_experiment(config)
    torch.manual_seed(cfg.train.seed)
    return dense_state_dict(build_model(cfg.model))
