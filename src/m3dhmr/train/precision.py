"""Which autocast dtype pays off on this machine (``train.amp: auto``).

bf16 autocast on a CPU is only worth it where oneDNN has bf16 matrix hardware to run
it on: Intel AMX (``amx_bf16``). What was measured (``benchmarks/train_throughput.py
--variants``, ``synthetic_r18``'s training step on its compute path, unless said):

- AMX (an earlier Intel Xeon): bf16 1.78x the fp32 samples/s;
- AVX-512 with ``avx512_bf16`` but no AMX (Intel Xeon, 2026-12-02): no faster than fp32
  (a 3x3 convolution's forward + backward at batch 16: 1.0x), so fp32 is kept;
- AVX2 only (AMD EPYC, 2026-12-01): bf16 1.0 image/s against fp32's 14.8, ~15x slower
  (bf16 emulated by conversions).

So ``auto`` means bf16 on CUDA (fp16 where the GPU lacks bf16) and, on a CPU, bf16
exactly when AMX-BF16 is usable; everywhere else full precision.
"""

from __future__ import annotations

import functools
import logging

import torch

from m3dhmr.errors import InputError
from m3dhmr.hardware import cpu_info

log = logging.getLogger(__name__)

AMP_CHOICES: tuple[str, ...] = ("auto", "off", "bf16", "fp16")


@functools.lru_cache(maxsize=1)
def cpu_has_amx_bf16() -> bool:
    """True when the CPU can run bf16 matrix products on AMX tiles.

    Asks torch first (``torch._C._cpu._init_amx`` also asks Linux for permission to use
    the tiles, which oneDNN needs); where that private hook is missing, the Linux flags.
    """
    init_amx = getattr(getattr(torch._C, "_cpu", None), "_init_amx", None)
    if init_amx is not None:
        try:
            return bool(init_amx())
        except RuntimeError:  # pragma: no cover - depends on the kernel
            return False
    return "amx_bf16" in cpu_info().flags


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``train.amp`` on ``device`` (None: full precision).

    ``auto``: bf16 on CUDA (fp16 without bf16 support); on a CPU bf16 only with AMX
    (see the module docstring for the measurements), else full precision. ``bf16`` is
    honoured on a CPU too, with a warning where it is known to be slow.
    """
    if amp not in AMP_CHOICES:
        raise InputError(f"train.amp must be one of {AMP_CHOICES}, got {amp!r}")
    if amp == "off":
        return None
    if device.type != "cuda":
        if amp == "fp16":
            log.warning("train.amp=fp16 ignored on %s (fp16 autocast is for CUDA; use bf16 or auto)", device)
            return None
        if amp == "auto":
            return torch.bfloat16 if device.type == "cpu" and cpu_has_amx_bf16() else None
        if device.type == "cpu" and not cpu_has_amx_bf16():
            log.warning("train.amp=bf16 on a CPU without AMX: bf16 autocast is no faster than fp32 with "
                        "AVX-512-BF16 and ~15x slower with AVX2 only; 'auto' picks the fast one")
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16
