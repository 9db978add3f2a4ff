"""Training throughput of a config on a device, against its compute limit.

Three ways of running the same stage-2 training step (forward, losses, backward, Adam)
of ``--config`` are timed in turns, in blocks of ``--block`` steps, so machine noise
hits them alike:

- ``compute``: one fixed batch already on the device, reused (the compute limit: no
  input pipeline at all);
- ``loader``: batches from the per-sample DataLoader (OpenCV crops in
  ``data.num_workers`` worker processes);
- ``memory``: batches cropped on the device from the split decoded into memory
  (``data.pipeline: memory``, :mod:`m3dhmr.data.batched`).

It prints training samples per second (a two-view sample counts once) for each and
the ratio of each pipeline to the compute limit (goal: >= 0.8, the pipeline never the
bottleneck). Without ``--data`` it renders ``--images`` synthetic samples into a
temporary folder. ``--variants`` adds rows for the CPU settings that are worth
comparing (fp32 vs bf16 autocast, with and without channels_last) on the compute path.

    .venv/bin/python benchmarks/train_throughput.py --config configs/synthetic_r18.yaml [--device cpu]
        [--data DIR] [--steps 24] [--block 4] [--variants]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch


def _step_fn(cfg, device, model, two_view):
    from m3dhmr.train.trainer import StepLoss, resolve_amp

    amp = resolve_amp(cfg.train.amp, device)
    step = StepLoss(model, 2, cfg, two_view, amp)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def run(batch):
        loss = step(batch).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return run


def main() -> None:
    from m3dhmr.hardware import cpu_summary

    print(f"# cpu: {cpu_summary()}", flush=True)  # every figure with its processor
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=Path("configs/synthetic_r18.yaml"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", type=Path, default=None, help="FreiHAND-layout folder (default: render --images)")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--steps", type=int, default=24, help="timed steps per way (after 2 warm-up steps each)")
    ap.add_argument("--block", type=int, default=4, help="steps per turn")
    ap.add_argument("--batch-size", type=int, default=None, help="override train.batch_size")
    ap.add_argument("--variants", action="store_true", help="also time fp32/bf16 x channels_last on the compute path")
    args = ap.parse_args()

    from m3dhmr.data.batched import load_split, make_batch
    from m3dhmr.data.freihand import FreiHANDDataset
    from m3dhmr.models import build_model
    from m3dhmr.experiment import load_experiment
    from m3dhmr.train.trainer import to_device

    cfg = load_experiment(args.config)
    if args.batch_size:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=args.batch_size))
    device = torch.device(args.device)
    bs, S, two_view = cfg.train.batch_size, cfg.model.input_size, cfg.data.two_view
    tmp = None
    data = args.data
    if data is None:
        from m3dhmr.data.synth import generate

        tmp = tempfile.TemporaryDirectory(prefix="m3dhmr-throughput-")
        data = Path(tmp.name) / "data"
        generate(data, args.images, 0, seed=0, workers=2, progress=False)

    torch.manual_seed(0)
    model = build_model(cfg.model).to(device)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    split = load_split(data, cfg.data.train_split, device=device, num_vertices=model.num_vertices,
                       cache_dir=Path(tmp.name) / "cache" if tmp else None)
    n = len(split)
    fixed = make_batch(split, list(range(bs)), cfg.data.augment, S, seed=0, epoch=0, batch=0, two_view=two_view)
    ds = FreiHANDDataset(data, cfg.data.train_split, crop_size=S, augment=cfg.data.augment, two_view=two_view,
                         num_vertices=model.num_vertices, cache_dir=Path(tmp.name) / "cache" if tmp else None)
    sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=10**7)
    loader = iter(torch.utils.data.DataLoader(ds, batch_size=bs, sampler=sampler, num_workers=cfg.data.num_workers,
                                              pin_memory=device.type == "cuda", persistent_workers=cfg.data.num_workers > 0,
                                              drop_last=True))
    counter = {"memory": 0}

    def next_memory():
        counter["memory"] += 1
        idx = torch.randint(0, n, (bs,), generator=torch.Generator().manual_seed(counter["memory"]))
        return make_batch(split, idx, cfg.data.augment, S, seed=0, epoch=0, batch=counter["memory"], two_view=two_view)

    sources = {
        "compute": lambda: fixed,
        "loader": lambda: to_device(next(loader), device),
        "memory": next_memory,
    }
    step = _step_fn(cfg, device, model, two_view)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    timings = {k: 0.0 for k in sources}
    for k, src in sources.items():  # warm-up (kernels, worker start-up, caches)
        for _ in range(2):
            step(src())
    sync()
    done = {k: 0 for k in sources}
    while min(done.values()) < args.steps:
        for k, src in sources.items():
            m = min(args.block, args.steps - done[k])
            if m <= 0:
                continue
            sync()
            t = time.perf_counter()
            for _ in range(m):
                step(src())
            sync()
            timings[k] += time.perf_counter() - t
            done[k] += m
    rate = {k: done[k] * bs / timings[k] for k in sources}
    print(f"config {args.config} on {device}: batch {bs}, {S} px, {'two views' if two_view else 'one view'}, "
          f"amp={cfg.train.amp}, channels_last={cfg.train.channels_last}, {cfg.data.num_workers} loader workers, "
          f"torch threads {torch.get_num_threads()}")
    if args.variants:
        for amp in ("off", "bf16"):
            for cl in (False, True):
                vcfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, amp=amp, channels_last=cl))
                vmodel = model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
                vstep = _step_fn(vcfg, device, vmodel, two_view)
                for _ in range(2):
                    vstep(fixed)
                sync()
                t = time.perf_counter()
                for _ in range(args.steps):
                    vstep(fixed)
                sync()
                r = args.steps * bs / (time.perf_counter() - t)
                print(f"compute_amp_{amp}_channels_last_{int(cl)}_samples_per_s={r:.2f}")
    for k in sources:
        print(f"{k}_samples_per_s={rate[k]:.2f}")
    print(f"loader_over_compute={rate['loader'] / rate['compute']:.3f}")
    print(f"memory_over_compute={rate['memory'] / rate['compute']:.3f}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
