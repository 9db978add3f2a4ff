"""The processor a figure was measured on: its name and the features that change speed.

Speed figures depend on the processor more than on anything in this package (bf16
autocast was 1.78x fp32 with AMX and 0.07x with AVX2 only), so every benchmark prints
:func:`cpu_summary` beside its figures. Linux's ``/proc/cpuinfo`` is read where it
exists (no extra dependency: ``py-cpuinfo`` would add little on Linux and nothing the
standard library lacks elsewhere); elsewhere :mod:`platform` and torch's CPU capability.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Feature name -> the Linux flags that stand for it (any of them).
FEATURES: dict[str, tuple[str, ...]] = {
    "avx2": ("avx2",),
    "fma": ("fma",),
    "avx512": ("avx512f",),
    "vnni": ("avx512_vnni", "avx_vnni"),  # int8 dot products (VPDPBUSD): what int8 convolutions need
    "bf16": ("avx512_bf16", "avx_ne_convert"),
    "amx": ("amx_bf16", "amx_int8", "amx_tile"),
    "neon": ("asimd", "neon"),
}


@dataclass(frozen=True)
class CpuInfo:
    """name: the model name; cores: logical CPUs this process may use; features: the
    :data:`FEATURES` present (empty when unknown); capability: torch's kernel level
    (e.g. ``AVX2``, ``AVX512``), or None without torch; flags: the OS's feature flags."""

    name: str
    cores: int
    features: tuple[str, ...]
    capability: str | None
    flags: frozenset[str] = frozenset()

    def summary(self) -> str:
        """One line, e.g. ``AMD EPYC, 2 cores, avx2 fma (torch: AVX2)``."""
        feats = " ".join(self.features) if self.features else "features unknown"
        torch_part = f" (torch: {self.capability})" if self.capability else ""
        return f"{self.name}, {self.cores} cores, {feats}{torch_part}"


def parse_cpuinfo(text: str) -> tuple[str | None, frozenset[str]]:
    """(model name, flags) from the text of ``/proc/cpuinfo`` (first processor); x86's
    ``flags`` or ARM's ``Features`` line."""
    name = None
    flags: frozenset[str] = frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and name is None:
            name = value.strip() or None
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    return name, flags


def features_of(flags: frozenset[str]) -> tuple[str, ...]:
    """The :data:`FEATURES` whose flags are in ``flags``, in that table's order."""
    return tuple(name for name, names in FEATURES.items() if any(f in flags for f in names))


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    """This machine's :class:`CpuInfo` (cached)."""
    try:
        name, flags = parse_cpuinfo(cpuinfo.read_text(errors="replace"))
    except OSError:
        name, flags = None, frozenset()
    try:
        import torch  # heavy: m3dhmr.hardware stays light; torch is loaded only to read its CPU capability

        capability = str(torch.backends.cpu.get_cpu_capability())
    except (ImportError, AttributeError):  # pragma: no cover - torch is a dependency
        capability = None
    name = name or platform.processor() or platform.machine() or "unknown processor"
    return CpuInfo(name=name, cores=_usable_cores(), features=features_of(flags), capability=capability,
                   flags=flags)


def cpu_summary() -> str:
    """:meth:`CpuInfo.summary` of this machine."""
    return cpu_info().summary()


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)`` (``None``: unchanged), then put
    torch's previous count back.

    The count is process-wide: a command run in-process (``m3dhmr.cli.main`` from a
    notebook, a test or another program) must not leave its ``--threads`` behind, where two
    threads per process on two shared cores made later work several times slower (the
    test suite's over-fitting test: 29 s alone, 101 s after an in-process ``bench``).
    """
    import torch  # deferred: this module is read by ``m3dhmr --help`` paths without torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
