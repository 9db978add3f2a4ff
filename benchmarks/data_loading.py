"""DataLoader throughput of the FreiHAND-layout loader with the training augmentation.

Builds a 224 x 224 set in a temporary folder (``m3dhmr.data.synth`` when it works,
else the test fixture writer, whose images decode at the same cost), then times a
DataLoader with 2 workers and batch 32 over it, single-view and two-view (the
training default of stage 2). ``loader_images_per_s`` counts source images (samples)
per second in two-view mode, i.e. what one training step of batch 32 consumes; each
sample carries two 128 x 128 crops.

Then it times stage-2 training steps (forward of both views, all losses, backward, Adam)
of ``--config`` (default ``configs/synthetic_cpu.yaml``: its model, loss and batch size)
in this process with torch's default thread count, on batches from the same loader, and
prints ``train_step_images_per_s`` and ``loader_over_train_ratio`` (>= 3 means the
loader keeps training fed with room to spare). Loader and training are timed one after
the other, not concurrently.

    .venv/bin/python benchmarks/data_loading.py [--images 640] [--workers 2] [--batch 32] [--config CFG]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from m3dhmr.data import AugmentConfig, FreiHANDDataset


def make_set(root: Path, n: int) -> str:
    try:
        from m3dhmr.data.synth import generate

        generate(root, n, 0, seed=0, workers=2, progress=False)
        return "synth"
    except Exception as e:  # the synthetic writer (or the hand model it needs) is unavailable
        print(f"(m3dhmr.data.synth unavailable: {type(e).__name__}: {e}; using the test fixture writer)")
        for p in sorted(root.iterdir()) if root.exists() else []:
            if p.is_dir():
                import shutil

                shutil.rmtree(p)
            else:
                p.unlink()
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from freihand_fixture import write_fixture

        write_fixture(root, n=n, versions=1, size=224, num_vertices=778, eval_n=0)
        return "fixture"


def throughput(ds: FreiHANDDataset, workers: int, batch: int, epochs: int = 2) -> float:
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))
    ds.set_epoch(0)
    for _ in loader:  # warm-up epoch: worker start, page cache
        pass
    count, t0 = 0, time.perf_counter()
    for e in range(1, epochs + 1):
        ds.set_epoch(e)
        for b in loader:
            count += b["image"].shape[0]
    return count / (time.perf_counter() - t0)


def train_step_throughput(cfg, ds: FreiHANDDataset, steps: int, threads: int) -> float:
    """Images (source samples) per second of stage-2 training steps of ``cfg`` on ``ds`` batches."""
    from m3dhmr.models import build_model
    from m3dhmr.train.trainer import StepLoss

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    step = StepLoss(model, 2, cfg, two_view=True, amp_dtype=None)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    loader = DataLoader(ds, batch_size=cfg.train.batch_size, shuffle=True, num_workers=0, drop_last=True,
                        generator=torch.Generator().manual_seed(1))
    batches = []
    for b in loader:
        batches.append(b)
        if len(batches) == 2:
            break

    def one(b):
        opt.zero_grad(set_to_none=True)
        step(b).total.backward()
        opt.step()

    one(batches[0])  # warm-up: allocator, first-call overheads
    t0 = time.perf_counter()
    for i in range(steps):
        one(batches[i % len(batches)])
    return steps * cfg.train.batch_size / (time.perf_counter() - t0)


def main() -> None:
    from m3dhmr.hardware import cpu_summary

    print(f"# cpu: {cpu_summary()}", flush=True)  # every figure with its processor
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=640)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--config", type=Path, default=Path(__file__).resolve().parents[1] / "configs" / "synthetic_cpu.yaml")
    ap.add_argument("--train-steps", type=int, default=5, help="timed training steps")
    args = ap.parse_args()
    from m3dhmr.experiment import load_experiment

    exp = load_experiment(args.config)
    train_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "set"
        t = time.perf_counter()
        source = make_set(root, args.images)
        print(f"wrote {args.images} images ({source}) in {time.perf_counter() - t:.1f} s")
        cfg = AugmentConfig()
        crop = exp.model.input_size
        one = FreiHANDDataset(root, crop_size=crop, augment=cfg, use_cache=False)
        two = FreiHANDDataset(root, crop_size=crop, augment=cfg, two_view=True, use_cache=False)
        t = time.perf_counter()
        for i in range(64):
            two[i % len(two)]
        per_item_ms = (time.perf_counter() - t) / 64 * 1e3
        single = throughput(one, args.workers, args.batch)
        double = throughput(two, args.workers, args.batch)
        train_ips = train_step_throughput(exp, two, args.train_steps, train_threads)
    print(f"getitem_two_view_ms={per_item_ms:.2f}")
    print(f"loader_single_view_images_per_s={single:.0f}")
    print(f"loader_crops_per_s={2 * double:.0f}")
    print(f"train_config={args.config.name} batch={exp.train.batch_size} input={exp.model.input_size} "
          f"threads={train_threads}")
    print(f"loader_images_per_s={double:.0f}")
    print(f"train_step_images_per_s={train_ips:.1f}")
    print(f"loader_over_train_ratio={double / train_ips:.2f}")


if __name__ == "__main__":
    main()
