"""One-Euro filter (Casiez, Roussel and Vogel, CHI 2012), vectorised over arrays.

A first-order low-pass filter whose cut-off frequency rises with the signal's speed:
slow motion is smoothed strongly (little jitter), fast motion lightly (little lag).
Every element of the input array (e.g. ``(J, 3)`` joints) is filtered independently,
exactly as the scalar filter of the paper would filter it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from m3dhmr.errors import InputError


@dataclass(frozen=True)
class OneEuroConfig:
    """Filter settings; the cut-offs are in Hz, ``beta`` in 1 / (signal unit).

    ``beta`` scales with the unit of the signal: a pixel signal moves ~1000x more
    units per second than the same motion in metres, so it needs a ~1000x smaller beta.
    """

    min_cutoff: float = 1.0
    beta: float = 0.0
    d_cutoff: float = 1.0

    def __post_init__(self) -> None:
        for name in ("min_cutoff", "d_cutoff"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise InputError(f"OneEuroConfig.{name} must be a positive number, got {v!r}")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise InputError(f"OneEuroConfig.beta must be >= 0, got {self.beta!r}")


def smoothing_factor(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Exponential smoothing factor ``alpha = 1 / (1 + tau / dt)``, ``tau = 1 / (2 pi cutoff)``."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Stateful One-Euro filter over arrays of a fixed shape (e.g. ``(J, 2)`` or ``(3,)``).

    Call it with successive samples and their timestamps in seconds; the first sample
    is returned unchanged. :meth:`reset` forgets the history (e.g. when tracking is lost).
    """

    def __init__(self, config: OneEuroConfig = OneEuroConfig()) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None   # last filtered value
        self._dx: np.ndarray | None = None  # last filtered derivative
        self._t: float | None = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filter sample ``x`` (any shape, float) taken at time ``t`` (s); returns float64."""
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise InputError(f"OneEuroFilter: sample of shape {x.shape} contains NaN or inf")
        if self._x is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        if x.shape != self._x.shape:
            raise InputError(f"OneEuroFilter: sample shape {x.shape} differs from the first sample's {self._x.shape}")
        dt = float(t) - self._t
        if not dt > 0:
            raise InputError(f"OneEuroFilter: timestamps must increase, got {t} after {self._t}")
        c = self.config
        dx = (x - self._x) / dt
        a_d = smoothing_factor(c.d_cutoff, dt)
        dx_hat = a_d * dx + (1.0 - a_d) * self._dx
        a = smoothing_factor(c.min_cutoff + c.beta * np.abs(dx_hat), dt)
        x_hat = a * x + (1.0 - a) * self._x
        self._x, self._dx, self._t = x_hat, dx_hat, float(t)
        return x_hat.copy()
