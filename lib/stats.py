"""Small statistics: bootstrap intervals and the speculative speed-up model."""

from __future__ import annotations

import heapq
import itertools
import math

import numpy as np
import pandas as pd

NOISE_ALPHA = 0.05  # a difference counts as real when chance alone gives it less than 5 % of the time


def quantiles(draws, level: float = 0.95) -> tuple[float, float]:
    """The central `level` interval of bootstrap draws (NaNs when there are none)."""
    if len(draws) == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(draws, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def mean_acceptance_length(drafts, accepted) -> float | None:
    """Tokens a verification step yields: its accepted draft tokens plus the target's own, 1 +
    accepted / drafts. None without drafts (None, NaN as a CSV reads a missing count, or 0)."""
    if not drafts or drafts != drafts:
        return None
    return 1 + accepted / drafts


def median_present(values) -> float | None:
    """Median of the values that are not None (None when none are): a figure some repetitions
    could not measure."""
    present = [v for v in values if v is not None]
    return float(np.median(present)) if present else None


def resampled_means(values, n: int = 1000, seed: int = 0) -> np.ndarray:
    """Means of `n` bootstrap resamples of `values` (with replacement, same size)."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    return values[rng.integers(0, len(values), size=(n, len(values)))].mean(axis=1)


def bootstrap_ci(values, stat=np.mean, n: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n, len(values)))
    stats = np.array([stat(values[i]) for i in idx])
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def resampled_ratios(num, den, n: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """sum(num) and sum(den) of `n` bootstrap resamples of the pairs (num[i], den[i])."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), size=(n, len(num)))
    return num[idx].sum(axis=1), den[idx].sum(axis=1)


def paired_ratio_ci(num, den, n: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Interval of sum(num)/sum(den) over samples resampled together (paired)."""
    if len(num) == 0:
        return (float("nan"), float("nan"))
    top, bottom = resampled_ratios(num, den, n, seed)
    return quantiles(top / bottom, level)


# --- the cost model of a speculative step, as measured ----------------------------------------
# A speculative pass is described by two measured quantities: what a verification step yields
# (1 + the sum over draft positions of P(position i accepted), from vLLM's per-position
# counters) and what it costs (r: the pass's time per verification step over the baseline's
# time per decode step, both from per-request engine timestamps). The predicted speed-up is
# their ratio. Nothing here assumes how a draft pass costs relative to a target pass: the
# draft-only engine once used for that (the c of Leviathan et al.) missed by 1.6-3.9x, because
# inside speculation the draft runs with other overheads (scheduling, CPU-bound launches).

def tokens_per_step(acceptance_by_pos, k: int | None = None) -> float:
    """Expected tokens one verification step yields: the target's own token plus each draft
    position accepted (`acceptance_by_pos[i]` = P(position i+1 accepted); truncated at K)."""
    probs = list(acceptance_by_pos)[: (len(acceptance_by_pos) if k is None else k)]
    return 1.0 + float(sum(probs))


def speedup_from_cost(acceptance_by_pos, r: float, k: int | None = None) -> float:
    """Predicted speed-up: tokens per step over the step's cost in baseline steps."""
    return tokens_per_step(acceptance_by_pos, k) / r


def ceiling_speedup(k: int, r: float) -> float:
    """The engine's ceiling: every draft token accepted (K + 1 tokens a step) at cost r."""
    return (k + 1) / r


def fit_step_cost(ks, rs) -> dict | None:
    """Least squares r = a + b*K over the K sweep (None with fewer than two distinct K):
    a is the fixed cost of a step (target pass and overheads), b the cost of one draft
    position, both in baseline steps; residuals per K."""
    ks, rs = np.asarray(ks, dtype=float), np.asarray(rs, dtype=float)
    if len(set(ks.tolist())) < 2:
        return None
    b, a = np.polyfit(ks, rs, 1)
    resid = rs - (a + b * ks)
    return {"a": float(a), "b": float(b), "k": ks.astype(int).tolist(), "r": rs.tolist(),
            "residuals": resid.tolist(), "rms_residual": float(np.sqrt(np.mean(resid ** 2)))}


def best_k(acceptance_by_pos, fit: dict, candidates) -> tuple[int, dict]:
    """The K of `candidates` that maximises the predicted speed-up, with acceptance by
    position measured at the largest K (a greedy draft proposes the same first tokens whatever
    K is, so smaller K see the same positions truncated) and cost r(K) = a + b*K from `fit`.
    Returns (K, {K: predicted speed-up})."""
    usable = [k for k in candidates if k <= len(acceptance_by_pos)]
    if not usable:
        raise ValueError(f"no K candidate in {list(candidates)} is covered by {len(acceptance_by_pos)} measured positions")
    pred = {int(k): speedup_from_cost(acceptance_by_pos, fit["a"] + fit["b"] * k, k) for k in usable}
    return max(pred, key=pred.get), pred


def excess_mismatch_p(share: float, floor_share: float, n: int) -> float:
    """One-sided exact p-value that a pass differs from the baseline on more prompts than the
    baseline differs from itself under other batching (the floor), both over the same `n`
    prompts: given the total of differing prompts, each falls in either pass with probability
    1/2 when the two rates are equal (conditional binomial test). 97.5 % against a floor of
    98.5 % over 200 prompts (5 against 3) is p = 0.36: noise."""
    count, floor_count = round((1 - share) * n), round((1 - floor_share) * n)
    total = count + floor_count
    if count <= floor_count:
        return 1.0
    return sum(math.comb(total, i) for i in range(count, total + 1)) / 2**total


def rank_test_p(a, b, exact_limit: int = 200_000, draws: int = 20_000, seed: int = 0) -> float:
    """Two-sided p of the rank-sum (Mann-Whitney) test that `a` and `b` come from one
    distribution: over every way of splitting the pooled values into groups of their sizes
    (midranks for ties), the share whose rank sum is at least as far from its mean as the
    observed one; a seeded sample of splits past `exact_limit`. No normal approximation: a
    run has a handful of repetitions. Its least value is `least_rank_test_p`."""
    ranks = pd.Series(np.concatenate([np.asarray(a, dtype=float), np.asarray(b, dtype=float)])).rank().to_numpy()
    n, total = len(a), len(ranks)
    mean = n * (total + 1) / 2
    far = abs(ranks[:n].sum() - mean) - 1e-9  # at least as far: a float sum equal to the observed one counts
    if math.comb(total, n) <= exact_limit:
        sums = np.array([ranks[list(c)].sum() for c in itertools.combinations(range(total), n)])
    else:
        rng = np.random.default_rng(seed)
        sums = np.array([rng.permutation(ranks)[:n].sum() for _ in range(draws)])
    return float(np.mean(np.abs(sums - mean) >= far))


def least_rank_test_p(n: int, m: int) -> float:
    """The smallest two-sided p `rank_test_p` can give with n and m values (the two groups
    wholly apart): 0.33 for 2 + 2, 0.10 for 3 + 3, 0.029 for 4 + 4, so fewer than four
    repetitions a side can never tell two runs apart at NOISE_ALPHA."""
    return min(1.0, 2 / math.comb(n + m, n))


PREDICTION_TOLERANCE = 0.2  # the cost model's goal: predicted within 20 % of measured (issue 15)
TOLERANCE_TEXT = f"±{PREDICTION_TOLERANCE * 100:.0f} %"  # as reports say it


def placement_p(total: int, marked: int, drawn: int, hits: int) -> float:
    """Chance that at least `hits` of `drawn` items fall among `marked` of `total` positions when
    the drawn ones are placed at random (the hypergeometric upper tail): how surprising it is that
    the repetitions with some property sit where they do."""
    return sum(math.comb(marked, x) * math.comb(total - marked, drawn - x)
               for x in range(hits, min(marked, drawn) + 1)) / math.comb(total, drawn)


def within_tolerance(measured_over_predicted):
    """Whether the prediction is within PREDICTION_TOLERANCE of the measurement (predicted over
    measured): for one ratio, or element-wise over a Series of them."""
    return abs(1 / measured_over_predicted - 1) <= PREDICTION_TOLERANCE


def tolerance_band(predicted):
    """The measured speed-ups `within_tolerance` of `predicted`: (lowest, highest)."""
    return predicted / (1 + PREDICTION_TOLERANCE), predicted / (1 - PREDICTION_TOLERANCE)


def fcfs_makespan(durations, slots: int) -> float:
    """When the last of `durations` ends if each takes the first of `slots` free slots in the
    order given (first come, first served, as vLLM admits waiting requests)."""
    free = [0.0] * max(1, min(int(slots), len(durations)))
    end = 0.0
    for d in durations:
        start = heapq.heappop(free)
        heapq.heappush(free, start + d)
        end = max(end, start + d)
    return end


def holm(pvalues) -> list[float]:
    """Holm's step-down adjustment of p-values tested together (same order as given): the
    chance that any of them is as small by luck stays under the level each is compared with."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    out, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        out[i] = running
    return out
