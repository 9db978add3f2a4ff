import math

import numpy as np
import pytest

from m3dhmr.inference.one_euro import OneEuroConfig, OneEuroFilter, smoothing_factor


class ScalarOneEuroNaive:
    """The paper's scalar filter, written out literally (reference)."""

    def __init__(self, min_cutoff, beta, d_cutoff):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x = self.dx = self.t = None

    @staticmethod
    def alpha(cutoff, dt):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x, t):
        if self.x is None:
            self.x, self.dx, self.t = x, 0.0, t
            return x
        dt = t - self.t
        dx = (x - self.x) / dt
        a_d = self.alpha(self.d_cutoff, dt)
        dx_hat = a_d * dx + (1 - a_d) * self.dx
        cutoff = self.min_cutoff + self.beta * abs(dx_hat)
        a = self.alpha(cutoff, dt)
        x_hat = a * x + (1 - a) * self.x
        self.x, self.dx, self.t = x_hat, dx_hat, t
        return x_hat


def test_matches_naive_scalar_loop():
    rng = np.random.default_rng(0)
    cfg = OneEuroConfig(min_cutoff=0.7, beta=0.3, d_cutoff=1.3)
    f = OneEuroFilter(cfg)
    signal = np.cumsum(rng.normal(size=(40, 21, 2)), axis=0)
    times = np.cumsum(rng.uniform(0.02, 0.05, size=40))
    naive = [[ScalarOneEuroNaive(0.7, 0.3, 1.3) for _ in range(2)] for _ in range(21)]
    for x, t in zip(signal, times):
        out = f(x, t)
        ref = np.array([[naive[j][d](x[j, d], t) for d in range(2)] for j in range(21)])
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


def test_hand_computed_two_steps():
    # dt = 1/(2 pi) s and cutoff 1 Hz give tau = dt, alpha = 1/2 for both filters.
    f = OneEuroFilter(OneEuroConfig(min_cutoff=1.0, beta=0.0, d_cutoff=1.0))
    dt = 1 / (2 * math.pi)
    assert f(np.array([0.0]), 0.0)[0] == 0.0
    assert f(np.array([2.0]), dt)[0] == pytest.approx(1.0)
    assert smoothing_factor(1.0, dt) == pytest.approx(0.5)


def test_constant_signal_unchanged_and_reset():
    f = OneEuroFilter(OneEuroConfig(beta=1.0))
    x = np.full((3,), 5.0)
    for i in range(5):
        np.testing.assert_allclose(f(x, i * 0.1), x)
    f.reset()
    np.testing.assert_allclose(f(np.zeros(3), 0.0), np.zeros(3))  # time may restart after reset


def test_reduces_jitter_and_beta_reduces_lag():
    rng = np.random.default_rng(1)
    t = np.arange(200) / 30.0
    clean = np.zeros(200)
    noisy = clean + rng.normal(scale=1.0, size=200)
    f = OneEuroFilter(OneEuroConfig(min_cutoff=0.5, beta=0.0))
    out = np.array([f(np.array([v]), ti)[0] for v, ti in zip(noisy, t)])
    assert np.std(out[20:]) < 0.5 * np.std(noisy[20:])
    ramp = 100.0 * t  # fast motion: a larger beta lags less
    lags = []
    for beta in (0.0, 1.0):
        f = OneEuroFilter(OneEuroConfig(min_cutoff=0.5, beta=beta))
        out = np.array([f(np.array([v]), ti)[0] for v, ti in zip(ramp, t)])
        lags.append(abs(ramp[-1] - out[-1]))
    assert lags[1] < 0.2 * lags[0]


def test_bad_inputs():
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroConfig(min_cutoff=0.0)
    with pytest.raises(ValueError, match="beta"):
        OneEuroConfig(beta=-1.0)
    f = OneEuroFilter()
    with pytest.raises(ValueError, match="NaN"):
        f(np.array([np.nan]), 0.0)
    f(np.zeros((21, 3)), 0.0)
    with pytest.raises(ValueError, match="shape"):
        f(np.zeros((21, 2)), 1.0)
    with pytest.raises(ValueError, match="increase"):
        f(np.zeros((21, 3)), 0.0)
