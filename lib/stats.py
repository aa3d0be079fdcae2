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
    return {
        "a": float(a),
        "b": float(b),
        "k": ks.astype(int).tolist(),
        "r": rs.tolist(),
        "residuals": resid.tolist(),
        "rms_residual": float(np.sqrt(np.mean(resid**2))),
    }


def best_k(acceptance_by_pos, fit: dict, candidates) -> tuple[int, dict]:
    """The K of `candidates` that maximises the predicted speed-up, with acceptance by
    position measured at the largest K (a greedy draft proposes the same first tokens whatever
    K is, so smaller K see the same positions truncated) and cost r(K) = a + b*K from `fit`.
    Returns (K, {K: predicted speed-up})."""
    usable = [k for k in candidates if k <= len(acceptance_by_pos)]
    if not usable:
        raise ValueError(
            f"no K candidate in {list(candidates)} is covered by {len(acceptance_by_pos)} measured positions"
        )
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
    return sum(
        math.comb(marked, x) * math.comb(total - marked, drawn - x) for x in range(hits, min(marked, drawn) + 1)
    ) / math.comb(total, drawn)


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


def batched_makespan(prefills, steps, step_cost, slots: int) -> float:
    """When the last request ends in an engine that runs its decoding requests together, one
    step at a time, each step costing `step_cost(b)` for the `b` requests decoding in it.
    Request i takes the first free of `slots` slots in the order given, holds it `prefills[i]`
    seconds (no step of its own, as its first token comes from the prefill), then decodes
    `steps[i]` steps. `fcfs_makespan` with a step cost that depends on how many share it."""
    slots = max(1, int(slots))
    waiting = list(zip(prefills, steps))[::-1]
    active: list[list[float]] = []  # [prefill seconds left, steps left]
    t = 0.0
    while waiting or active:
        while waiting and len(active) < slots:
            p, n = waiting.pop()
            if p > 0.0 or n > 0.0:
                active.append([float(p), float(n)])
        if not active:
            break
        decoding = [a for a in active if a[0] <= 0.0]
        if not decoding:  # every slot still in its prefill: time runs to the first to finish
            dt = min(a[0] for a in active)
        else:
            dt = float(step_cost(len(decoding)))
            for a in decoding:
                a[1] -= 1.0
        for a in active:
            if a[0] > 0.0:
                a[0] -= dt
        t += dt
        active = [a for a in active if a[0] > 0.0 or a[1] > 1e-9]
    return t


def holm(pvalues) -> list[float]:
    """Holm's step-down adjustment of p-values tested together (same order as given): the
    chance that any of them is as small by luck stays under the level each is compared with."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    out, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        out[i] = running
    return out


# --- replicate trainings: a hierarchical bootstrap ---------------------------------------------
# A style trained N times (replicates, each its own training seed) answers the same held-out
# prompts every time. Two sources of chance then stand behind a CoD − CoT difference: which
# prompts were drawn (the held-out split) and which trainings were drawn (the seeds). The
# prompt bootstrap alone measures only the first, so a training that happened to land well can
# look like a style effect. Here each draw resamples trainings within each style (level 1),
# then prompts (level 2, one resample shared by both styles: both answered the same prompts, so
# a prompt's own difficulty cancels, as in `analysis.paired_correct_delta`). Trainings are drawn
# from a generator stream of their own, so the prompt draws are the same whatever the
# trainings: one replicate per style gives exactly the paired prompt bootstrap of the same seed,
# and identical replicates give the same draws as replicates held fixed (no added width).


def _replicates(reps, side: str, ratio: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """One style's replicates as arrays (replicate × prompt): values, or numerators and
    denominators in ratio mode. Raises ValueError naming the replicate that does not fit."""
    if len(reps) == 0:
        raise ValueError(f"{side}: no replicate given")
    rows, dens = [], []
    for r, rep in enumerate(reps):
        if ratio:
            if len(rep) != 2:
                raise ValueError(
                    f"{side} replicate {r}: ratio mode takes a (numerator, denominator) pair per replicate"
                )
            num, den = (np.asarray(x, dtype=float) for x in rep)
            if num.shape != den.shape:
                raise ValueError(f"{side} replicate {r}: {num.size} numerators but {den.size} denominators")
            dens.append(den)
        else:
            num = np.asarray(rep, dtype=float)
        if num.ndim != 1 or num.size == 0:
            raise ValueError(
                f"{side} replicate {r}: expected a non-empty 1-D array of per-prompt values, got shape {num.shape}"
            )
        if not (np.isfinite(num).all() and (not ratio or np.isfinite(dens[-1]).all())):
            raise ValueError(
                f"{side} replicate {r}: values must be finite (a prompt with no value belongs to no replicate)"
            )
        if rows and num.size != rows[0].size:
            raise ValueError(
                f"{side} replicate {r} has {num.size} prompts, {side} replicate 0 has {rows[0].size}: "
                "every replicate must answer the same prompts, in the same order"
            )
        rows.append(num)
    return np.stack(rows), (np.stack(dens) if ratio else None)


def _replicate_counts(rng, n: int, count: int) -> np.ndarray:
    """How often each of `count` replicates is drawn in each of `n` resamples (n × count)."""
    picks = rng.integers(0, count, size=(n, count))
    return (picks[:, :, None] == np.arange(count)).sum(axis=1).astype(float)


def _split_inputs(first, second, ratio: bool):
    a, a_den = _replicates(first, "first", ratio)
    b, b_den = _replicates(second, "second", ratio)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"second replicate 0 has {b.shape[1]} prompts, first replicate 0 has {a.shape[1]}: "
            "both styles must answer the same prompts, in the same order"
        )
    return a, a_den, b, b_den


def hierarchical_draws(
    first, second, n: int = 2000, seed: int = 0, ratio: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap draws of second − first: (across trainings, within training).

    `first` and `second` hold one entry per replicate of each style (their counts may differ):
    a per-prompt array over the same prompts in the same order, or in ratio mode a
    (numerator, denominator) pair of such arrays. A style's figure is the mean over its
    replicates of each replicate's own figure (its mean over prompts, or its ratio of sums):
    every training counts once, as a training is the unit level 1 draws. Across trainings,
    each draw resamples replicates with replacement within each style, then prompts (one
    resample for both styles); within training, the replicates are held fixed at all of
    them and only prompts are resampled (the same prompt resamples). Ratio draws whose
    denominator sums to zero are dropped, as `analysis.acceptance_draws` does."""
    a, a_den, b, b_den = _split_inputs(first, second, ratio)
    prompts = a.shape[1]
    idx = np.random.default_rng(seed).integers(0, prompts, size=(n, prompts))  # as resampled_means draws them
    rep_rng = np.random.default_rng([seed, 1])  # trainings: a stream of their own
    counts = {"first": _replicate_counts(rep_rng, n, len(a)), "second": _replicate_counts(rep_rng, n, len(b))}
    fixed = {"first": np.ones((n, len(a))), "second": np.ones((n, len(b)))}
    if not ratio:

        def draws(w: dict) -> np.ndarray:
            # per prompt, each style's mean over the drawn replicates; then the paired difference
            diff = w["second"] @ b / len(b) - w["first"] @ a / len(a)
            return np.take_along_axis(diff, idx, axis=1).mean(axis=1)

        return draws(counts), draws(fixed)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_rep = {
            side: num[:, idx].sum(axis=2) / den[:, idx].sum(axis=2)  # replicate × draw
            for side, num, den in (("first", a, a_den), ("second", b, b_den))
        }

    def ratio_draws(w: dict) -> np.ndarray:
        value = {}
        for side, r in per_rep.items():
            used = w[side] > 0
            bad = (used & ~np.isfinite(r.T)).any(axis=1)  # a drawn replicate whose resample drafted nothing
            value[side] = np.where(
                bad, np.nan, np.nan_to_num(w[side] * r.T, nan=0.0, posinf=0.0, neginf=0.0).sum(axis=1)
            )
            value[side] = value[side] / len(r)
        out = value["second"] - value["first"]
        return out[np.isfinite(out)]

    return ratio_draws(counts), ratio_draws(fixed)


def _spread(values) -> dict:
    values = np.asarray(values, dtype=float)
    return {
        "value": float(values.mean()),
        "per_replicate": values.tolist(),
        "min": float(values.min()),
        "max": float(values.max()),
        "sd": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
        "replicates": int(len(values)),
    }


def hierarchical_delta(first, second, n: int = 2000, seed: int = 0, level: float = 0.95, ratio: bool = False) -> dict:
    """second − first over replicate trainings answering the same prompts (see
    `hierarchical_draws` for the inputs and the two levels): the point estimate `delta`, the
    interval across trainings (`lo`, `hi`: trainings and prompts resampled), the interval
    within training (`within_lo`, `within_hi`: prompts only, every replicate held fixed; with
    one replicate per style it is exactly `analysis.paired_correct_delta`'s, same seed), each
    style's spread over its replicates (`first`, `second`: value, per_replicate, min, max, sd),
    `n_prompts` and `verdict` (`replicate_verdict`). The interval across trainings is the one
    that speaks for the style rather than for these trainings."""
    a, a_den, b, b_den = _split_inputs(first, second, ratio)
    with np.errstate(divide="ignore", invalid="ignore"):
        own = (
            {"first": a.mean(axis=1), "second": b.mean(axis=1)}
            if not ratio
            else {"first": a.sum(axis=1) / a_den.sum(axis=1), "second": b.sum(axis=1) / b_den.sum(axis=1)}
        )
    # per prompt first, as paired_correct_delta takes it: with one replicate the same float
    delta = (
        float((b.mean(axis=0) - a.mean(axis=0)).mean())
        if not ratio
        else float(own["second"].mean() - own["first"].mean())
    )
    across, within = hierarchical_draws(first, second, n, seed, ratio)
    lo, hi = quantiles(across, level)
    within_lo, within_hi = quantiles(within, level)
    return {
        "delta": delta,
        "lo": lo,
        "hi": hi,
        "within_lo": within_lo,
        "within_hi": within_hi,
        "first": _spread(own["first"]),
        "second": _spread(own["second"]),
        "n_prompts": int(a.shape[1]),
        "verdict": replicate_verdict((within_lo, within_hi), (lo, hi), (len(a), len(b))),
    }


def replicate_draws(first, second, n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap draws of second − first for a figure with no per-prompt structure, measured as
    repetitions within each replicate (a throughput speed-up: one figure per fresh engine pair):
    (across trainings, within training). A replicate's figure is the median of its repetitions,
    as a run reports its speed-up (`benchmark`: median over repetitions); a style's, the mean of
    its replicates' medians. Across trainings, each draw resamples replicates within each style,
    then each drawn replicate's repetitions; within training, replicates are held fixed and only
    repetitions are resampled. The two styles' repetitions are separate engine pairs, not paired,
    so they are resampled independently. With three repetitions a replicate's median has only a
    few values to take: the within interval is coarse, and says little more than the range."""
    sides = []
    for side, reps in (("first", first), ("second", second)):
        if len(reps) == 0:
            raise ValueError(f"{side}: no replicate given")
        arrays = [np.asarray(r, dtype=float) for r in reps]
        for r, x in enumerate(arrays):
            if x.ndim != 1 or x.size == 0 or not np.isfinite(x).all():
                raise ValueError(f"{side} replicate {r}: expected a non-empty 1-D array of finite repetition values")
        sides.append(arrays)
    rng, rep_rng = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    out = {"across": 0.0, "within": 0.0}
    for sign, arrays in zip((-1.0, 1.0), sides):
        count, width = len(arrays), max(len(x) for x in arrays)
        sizes = np.array([len(x) for x in arrays])
        padded = np.full((count, width), np.nan)
        for r, x in enumerate(arrays):
            padded[r, : len(x)] = x
        u = rng.random((n, count, width))  # the repetition draws of each replicate slot
        picked = {
            "across": rep_rng.integers(0, count, size=(n, count)),
            "within": np.broadcast_to(np.arange(count), (n, count)),
        }
        for key, rep in picked.items():
            m = sizes[rep][:, :, None]
            values = padded[rep[:, :, None], np.floor(u * m).astype(int)]
            values = np.where(
                np.arange(width) < m, values, np.nan
            )  # a slot draws as many repetitions as its replicate has
            out[key] = out[key] + sign * np.nanmedian(values, axis=2).mean(axis=1)
    return out["across"], out["within"]


def replicate_delta(first, second, n: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """second − first for a figure measured per replicate as repetitions (`replicate_draws`):
    `delta` (difference of the styles' means of replicate medians), `lo`, `hi` across trainings,
    `within_lo`, `within_hi` with replicates held fixed, each style's spread over its replicates'
    medians (`first`, `second`) and `verdict`."""
    across, within = replicate_draws(first, second, n, seed)
    own = {
        side: np.array([np.median(np.asarray(r, dtype=float)) for r in reps])
        for side, reps in (("first", first), ("second", second))
    }
    lo, hi = quantiles(across, level)
    within_lo, within_hi = quantiles(within, level)
    return {
        "delta": float(own["second"].mean() - own["first"].mean()),
        "lo": lo,
        "hi": hi,
        "within_lo": within_lo,
        "within_hi": within_hi,
        "first": _spread(own["first"]),
        "second": _spread(own["second"]),
        "verdict": replicate_verdict((within_lo, within_hi), (lo, hi), (len(first), len(second)), "repetitions"),
    }


def replicate_verdict(within, across, replicates, unit: str = "prompts") -> str:
    """Which interval decided, in a few plain words: the one across trainings when each style has
    two replicates or more; with one, the training spread is not measured and only the `unit`
    resampled within training (prompts, or repetitions) speaks. `within` and `across` are
    (lo, hi); `replicates` a count, or one per style."""
    counts = replicates if isinstance(replicates, (list, tuple)) else (replicates,)
    (w_lo, w_hi), (a_lo, a_hi) = within, across
    if any(pd.isna(x) for x in (w_lo, w_hi, a_lo, a_hi)):
        return "no interval"
    inside, spans = (w_lo > 0 or w_hi < 0), (a_lo > 0 or a_hi < 0)
    if min(counts) < 2:
        what = "1 replicate" if max(counts) < 2 else "1 replicate of one style"
        return (
            "excludes zero" if inside else "includes zero"
        ) + f" over {unit} only — training spread not measured ({what})"
    if spans:
        return "excludes zero across trainings" + ("" if inside else f" (not over {unit} alone)")
    if inside:
        return f"excludes zero over {unit} but not across trainings"
    return f"includes zero over {unit} and across trainings"
