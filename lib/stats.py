"""Small statistics: bootstrap intervals and the speculative speed-up model."""

from __future__ import annotations

import numpy as np


def bootstrap_ci(values, stat=np.mean, n: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n, len(values)))
    stats = np.array([stat(values[i]) for i in idx])
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def paired_ratio_ci(num, den, n: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Interval of sum(num)/sum(den) over samples resampled together (paired)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    if len(num) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), size=(n, len(num)))
    ratios = num[idx].sum(axis=1) / den[idx].sum(axis=1)
    lo, hi = np.quantile(ratios, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def predicted_speedup(alpha: float, k: int, c: float) -> float:
    """Expected speed-up of speculative decoding (Leviathan et al. 2023): with per-token
    acceptance alpha, K draft tokens and draft/target step cost ratio c."""
    if alpha >= 1.0:
        return (k + 1) / (1 + k * c)
    return (1 - alpha ** (k + 1)) / ((1 - alpha) * (1 + k * c))
