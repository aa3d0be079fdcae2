"""Stage 7: every run of a profile in the study's three tables, plots and findings.

`collect` gathers one row per run — the workbook's own (style, scenario) grid from each run's
metrics, and runs produced elsewhere from their per-sample CSVs (`externals.load_externals`), re-graded
with the workbook's answer checker. Runs without metrics are gaps (NaN), never errors. The
tables, interval estimates and findings are all computed from those rows; `figures` is what
the notebook records for tests and the comparison page.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import answers, io, record
from .benchmark import PASSES, headline
from .externals import External
from .formats import WORKBOOK, format_for, pts, scenario_order, scenario_rank, source_rank, style_rank
from .paths import RunPaths
from .stats import quantiles, resampled_means, resampled_ratios
from .styles import STYLES, TRAINED_STYLES


RUN_COLUMNS = [
    "source",
    "style",
    "scenario",
    "replicate",
    "run",
    "state",
    "error",
    "present",
    "settings",
    "n",
    "accuracy_baseline",
    "accuracy_speculative",
    "accuracy_baseline_ci95",
    "accuracy_speculative_ci95",
    "acceptance_rate",
    "acceptance_lo",
    "acceptance_hi",
    "acceptance_ci_method",
    "mean_acceptance_length",
    "acceptance_by_pos",
    "k",
    "drafts",
    "draft_tokens",
    "accepted_tokens",
    "accepted_per_pos",
    "speedup",
    "speedup_latency",
    "speedup_latency_lo",
    "speedup_latency_hi",
    "predicted_speedup",
    "forecast_speedup",
    "forecast_ratio",
    "k_choice_share",
    "k_choice_within_range",
    "speedup_lo",
    "speedup_hi",
    "repetitions",
    "speedup_reps",
    "ceiling_speedup",
    "floor_speedup",
    "step_cost_r",
    "occupancy_ratio",
    "predicted_speedup_decode",
    "predicted_speedup_busy",
    "prediction_basis",
    "busy_occupancy_ratio",
    "identical_output_floor",
    "tokens_per_answer",
    "r_floor",
    "gpu_busy_share",
    "order_effect",
    "lone_tail_share",
    "lone_tail_share_baseline",
    "lone_tail_reps",
    "warmup_repetitions",
    "speedup_without_lone_tail",
    "lone_tail_tpot_ratio",
    "lone_replay_slowdown",
    "lone_replay_tokens_per_step",
    "async_baseline",
    "async_speculative",
    "tokens_per_answer_spec",
    "identical_output_share",
    "spec_accuracy_delta",
    "spec_accuracy_delta_lo",
    "spec_accuracy_delta_hi",
    "n_paired",
    "n_gained",
    "n_lost",
    "style_accuracy_delta",
    "style_accuracy_delta_lo",
    "style_accuracy_delta_hi",
    "style_n_paired",
    "style_n_cod_only",
    "style_n_cot_only",
    "study_accuracy_baseline",
    "study_accuracy_speculative",
    "crosscheck_n",
    "crosscheck_acceptance",
    "crosscheck_acceptance_vllm",
    "k_sweep",
    "prompt_draft_tokens",
    "prompt_accepted_tokens",
    "prompt_ids",
    "prompt_correct",
    "prompt_tokens",
    "spec_prompt_ids",
] + [
    # the run's EAGLE-3 head (a third pass, `eagle3.enabled`), NaN where it has none
    "eagle3_acceptance_rate",
    "eagle3_mean_acceptance_length",
    "eagle3_speedup",
    "eagle3_step_cost_r",
    "eagle3_accuracy",
    "eagle3_identical_output_share",
]


def _num(value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return out


def ci_bounds(pair) -> tuple[float, float]:
    """(lo, hi) of an interval as metrics record it (a two-item list), NaNs where there is none."""
    if isinstance(pair, (list, tuple)) and len(pair) == 2:
        return _num(pair[0]), _num(pair[1])
    return float("nan"), float("nan")


# --- intervals from what the metrics record ----------------------------------------------------
def acceptance_draws(row, n: int = 2000, seed: int = 0) -> tuple[np.ndarray, str]:
    """Bootstrap draws of a run's acceptance rate, and what they resample.

    Where the benchmark samples carry per-request counts (`spec_draft_tokens`,
    `spec_accepted_tokens`), prompts are resampled: the same unit as the speed-up interval.
    Otherwise from the pass's counters: vLLM records, per draft position i, how many drafts
    had position i accepted; acceptance is a prefix, so these counts give the number of
    drafts with exactly j tokens accepted (j = 0..K). Resampling those drafts respects that
    the tokens of one draft are accepted or rejected together, but treats drafts as
    independent (drafts of one prompt are not), so it is if anything too narrow. Where the
    counts are not a consistent prefix table, each drafted token is treated as an
    independent trial (binomial), narrower still.
    """
    p_drafted, p_accepted = row.get("prompt_draft_tokens"), row.get("prompt_accepted_tokens")
    if isinstance(p_drafted, (list, tuple)) and len(p_drafted) and sum(p_drafted) > 0:
        num, den = resampled_ratios(p_accepted, p_drafted, n, seed)
        return num[den > 0] / den[den > 0], PER_PROMPT
    rng = np.random.default_rng(seed)
    drafts, tokens, accepted = _num(row.get("drafts")), _num(row.get("draft_tokens")), _num(row.get("accepted_tokens"))
    per_pos = row.get("accepted_per_pos")
    if not (tokens > 0) or math.isnan(accepted):
        return np.array([]), "none"
    if isinstance(per_pos, (list, tuple)) and per_pos and drafts > 0:
        a = np.asarray(per_pos, dtype=float)
        exactly = np.append(-np.diff(a), a[-1])  # drafts with exactly j = 1..K accepted
        zero = drafts - a[0]
        counts = np.concatenate([[zero], exactly])
        if (counts >= 0).all() and abs(a.sum() - accepted) < 0.5 and counts.sum() > 0:
            lengths = np.arange(len(counts))
            draws = rng.multinomial(int(round(counts.sum())), counts / counts.sum(), size=n) @ lengths
            return draws / tokens, PER_DRAFT
    p = accepted / tokens
    return rng.binomial(int(tokens), p, size=n) / tokens, PER_TOKEN


PER_PROMPT = "bootstrap over prompts (per-request acceptance counts)"
PER_DRAFT = "bootstrap over drafts (per-draft accepted lengths rebuilt from the per-position counts)"
PER_TOKEN = "binomial over drafted tokens (per-position counts missing or inconsistent)"
CI_CAVEAT = {
    PER_PROMPT: "prompts are the unit, as for the speed-up interval",
    PER_DRAFT: "drafts of one prompt are treated as independent, so the interval is if anything too narrow",
    PER_TOKEN: "tokens of one draft are treated as independent, so the interval is too narrow",
}


def paired_correct_delta(first: pd.DataFrame, second: pd.DataFrame, key: str, n: int = 2000, seed: int = 0) -> dict:
    """Accuracy of `second` minus that of `first` over the prompts both answered (matched by
    `key`), with a 95% paired bootstrap over those prompts, and how many prompts only one got
    right: (delta, lo, hi, n, only_second, only_first); {} when no prompt is shared."""
    a = first.drop_duplicates(key).set_index(key)["correct"].astype(float)
    b = second.drop_duplicates(key).set_index(key)["correct"].astype(float)
    both = a.index.intersection(b.index)
    if not len(both):
        return {}
    diff = (b.loc[both] - a.loc[both]).to_numpy()
    lo, hi = quantiles(resampled_means(diff, n, seed))
    return {
        "delta": float(diff.mean()),
        "lo": lo,
        "hi": hi,
        "n": int(len(diff)),
        "only_second": int((diff > 0).sum()),
        "only_first": int((diff < 0).sum()),
    }


def paired_accuracy_delta(base: pd.DataFrame, spec: pd.DataFrame, key: str, n: int = 2000, seed: int = 0) -> dict:
    """Speculative minus baseline accuracy over the prompts both passes answered, with a
    95% paired bootstrap over prompts, and how many prompts turned right or wrong."""
    d = paired_correct_delta(base, spec, key, n, seed)
    return (
        {}
        if not d
        else {
            "spec_accuracy_delta": d["delta"],
            "spec_accuracy_delta_lo": d["lo"],
            "spec_accuracy_delta_hi": d["hi"],
            "n_paired": d["n"],
            "n_gained": d["only_second"],
            "n_lost": d["only_first"],
        }
    )


def paired_style_delta(cot_baseline: pd.DataFrame, cod_baseline: pd.DataFrame, n: int = 2000, seed: int = 0) -> dict:
    """CoD's held-out accuracy minus CoT's, the target alone (baseline pass), paired over the
    prompts both answered: both styles answer the same held-out split, so the prompt's own
    difficulty cancels, and the interval is far narrower than two separate ones overlapping."""
    d = paired_correct_delta(cot_baseline, cod_baseline, "id", n, seed)
    return (
        {}
        if not d
        else {
            "style_accuracy_delta": d["delta"],
            "style_accuracy_delta_lo": d["lo"],
            "style_accuracy_delta_hi": d["hi"],
            "style_n_paired": d["n"],
            "style_n_cod_only": d["only_second"],
            "style_n_cot_only": d["only_first"],
        }
    )


# --- the workbook's own runs ----------------------------------------------------------------
def _first(d: dict, *keys):
    for key in keys:
        if isinstance(d, dict) and d.get(key) is not None:
            return d[key]
    return None


def _either(*values):
    """The first value that is not None (an acceptance of 0.0 is a value, not a gap)."""
    return next((v for v in values if v is not None), None)


def _crosscheck(metrics: dict) -> dict:
    """The transformers cross-check, where a run recorded one: its acceptance and vLLM's on
    the same prompts (optional; read defensively, its schema may grow)."""
    cc = metrics.get("crosscheck")
    if not isinstance(cc, dict):
        return {}
    tf, vl = cc.get("transformers"), cc.get("vllm")
    return {
        "crosscheck_n": cc.get("n"),
        "crosscheck_acceptance": _first(tf, "acceptance_rate")
        if isinstance(tf, dict)
        else _first(cc, "acceptance_rate"),
        "crosscheck_acceptance_vllm": _first(vl, "acceptance_rate") if isinstance(vl, dict) else None,
    }


def _headline(metrics: dict) -> dict:
    try:
        return dict(headline(metrics))
    except (KeyError, TypeError, ValueError):  # optional sections in a shape headline() does not expect
        return dict(headline({**metrics, "k_sweep": None, "crosscheck": None}))


def order_effect(reps: list[dict]) -> float | None:
    """The repetitions that ran the speculative pass first over those that ran the baseline first:
    the ratio of their speed-ups' geometric means (None unless both orders ran). The order
    alternates so that the median balances drift; this says how much the order itself moved it
    (on the H200 the speculative-first repetitions measured more in most runs)."""
    by = {
        first: [r["speedup_throughput"] for r in reps if r["order"][0] == first and r.get("speedup_throughput")]
        for first in ("speculative", "baseline")
    }
    if not (by["speculative"] and by["baseline"]):
        return None
    return float(np.exp(np.mean(np.log(by["speculative"])) - np.mean(np.log(by["baseline"]))))


def lone_tail_reps(reps: list[dict]) -> list:
    """Each repetition's speculative lone tail share, in the order the repetitions ran (None where
    a repetition has none recorded): where in a benchmark the tails fall."""
    shares = [r.get("lone_tail_share") for r in reps]
    return [share.get("speculative") if isinstance(share, dict) else None for share in shares]


def _metrics_row(metrics: dict) -> dict:
    row = _headline(metrics)
    base, spec_pass, comp = metrics["passes"]["baseline"], metrics["passes"]["speculative"], metrics["comparison"]
    spec = spec_pass.get("spec") or {}
    lo, hi = ci_bounds(comp.get("speedup_latency_ci95"))
    reps, warmups = comp.get("repetitions") or [], comp.get("warmup_repetitions") or []
    row.update(
        {
            "n": base.get("n"),
            "accuracy_baseline_ci95": ci_bounds(base.get("accuracy_ci95")),
            "accuracy_speculative_ci95": ci_bounds(spec_pass.get("accuracy_ci95")),
            "acceptance_by_pos": spec.get("acceptance_by_pos"),
            "accepted_per_pos": spec.get("accepted_per_pos"),
            "k": spec.get("k", metrics.get("k")),
            "drafts": spec.get("drafts"),
            "draft_tokens": spec.get("draft_tokens"),
            "accepted_tokens": spec.get("accepted_tokens"),
            "speedup_latency": comp.get("speedup_latency"),
            "repetitions": len(reps),  # fresh engine pairs behind the speed-up's range
            "speedup_reps": [r["speedup_throughput"] for r in reps if r.get("speedup_throughput")],
            "order_effect": order_effect(reps),
            "lone_tail_reps": lone_tail_reps(warmups + reps),  # in the order run: the warm-ups (not counted) first
            "warmup_repetitions": len(warmups),
            "speedup_latency_lo": lo,
            "speedup_latency_hi": hi,
            "tokens_per_answer_spec": spec_pass.get("output_tokens_mean"),
            "k_sweep": metrics.get("k_sweep"),
            **_crosscheck(metrics),
        }
    )
    if row.get("spec_accuracy_delta") is None:
        row["spec_accuracy_delta"] = comp.get("accuracy_delta")
    return row


def _per_prompt_counts(spec: pd.DataFrame | None) -> dict:
    """Per-request drafted and accepted tokens of the speculative pass, where recorded (with the
    prompts' ids, so that replicates pair them by prompt)."""
    cols = ("spec_draft_tokens", "spec_accepted_tokens")
    if spec is None or not set(cols) <= set(spec.columns) or spec[list(cols)].isna().any().any():
        return {}
    out = {
        "prompt_draft_tokens": spec[cols[0]].astype(float).tolist(),
        "prompt_accepted_tokens": spec[cols[1]].astype(float).tolist(),
    }
    if "id" in spec.columns:
        out["spec_prompt_ids"] = spec["id"].astype(str).tolist()
    return out


def _run_state(status: dict, rp: RunPaths) -> tuple[str | None, str | None]:
    """Why the run's metrics are not current, as (state, error), or (None, None): the latest
    attempt of a stage failed, was interrupted or is still running (a "running" whose process
    is gone was interrupted), or its benchmark is no longer made from the current everything
    (`record.current`: judged on the settings it records)."""
    for stage, entry in sorted((status.get(rp.name) or {}).items()):
        state = entry.get("status")
        if state == "running" and not record.alive(entry):
            state, entry = "interrupted", {**entry, "error": "its process is gone; the stage did not finish"}
        if state in ("failed", "interrupted", "running"):
            return state, f"{stage}: {entry.get('error') or state}"
    try:
        recorded = record.load(rp, "06_benchmark") is not None
    except (OSError, ValueError) as exc:
        return "outdated", f"06_benchmark: {exc}"
    stale = record.current(rp, "06_benchmark") if recorded else None  # no record: measured elsewhere
    return ("outdated", f"06_benchmark: {stale}") if stale else (None, None)


def _settings(rp: RunPaths) -> str:
    """The overrides a run's benchmark records ("" for the profile's own settings; None where no
    record says): runs side by side with different settings are said so (`findings`)."""
    try:
        figures = record.load(rp, "06_benchmark")
    except (OSError, ValueError):
        return None
    if figures is None or "settings" not in figures:
        return None
    given = figures["settings"].get("overrides") or {}
    return ", ".join(f"{k}={v!r}" for k, v in sorted(given.items()))


def _workbook_run(rp: RunPaths, status: dict, n_boot: int, seed: int) -> tuple[dict, pd.DataFrame | None]:
    """One run's row, and its baseline pass's samples (CoD against CoT is paired by prompt)."""
    row = {"source": WORKBOOK, "style": rp.style, "scenario": rp.scenario, "replicate": rp.replicate, "run": rp.name}
    failed, error = _run_state(status, rp)
    if failed:  # metrics not made from the current everything are a gap, said so
        stale = "; its metrics.json is not current" if rp.metrics_json.exists() else ""
        row.update(state=failed, error=error + stale)
        return row, None
    if not rp.metrics_json.exists():
        row.update(state="missing")
        return row, None
    alone = None
    try:
        row.update(_metrics_row(io.read_json(rp.metrics_json)))
        row["state"], row["settings"] = "measured", _settings(rp)
    except Exception as exc:  # an unreadable or older-schema metrics file is a gap, said so
        row.update(state="unreadable", error=f"{rp.metrics_json.name}: {type(exc).__name__}: {exc}")
    if row["state"] == "measured" and rp.samples_csv.exists():
        try:
            samples = pd.read_csv(rp.samples_csv)
            by_pass = {p: g for p, g in samples.groupby("pass")}
            if set(PASSES) <= set(by_pass):
                row.update(paired_accuracy_delta(by_pass["baseline"], by_pass["speculative"], "id", n_boot, seed))
            row.update(_per_prompt_counts(by_pass.get("speculative")))
            row.update(_per_prompt_answers(by_pass.get("baseline")))
            alone = by_pass.get("baseline")
        except Exception as exc:
            row["error"] = f"{rp.samples_csv.name}: {type(exc).__name__}: {exc}"
    return row, alone


def _per_prompt_answers(baseline: pd.DataFrame | None) -> dict:
    """Per prompt of the target alone, in id order: right or not, and tokens (the replicates'
    intervals pair them by prompt, `trainings`)."""
    if baseline is None or not {"id", "correct", "output_tokens"} <= set(baseline.columns):
        return {}
    x = baseline.sort_values("id")
    return {
        "prompt_ids": x["id"].astype(str).tolist(),
        "prompt_correct": x["correct"].astype(float).tolist(),
        "prompt_tokens": x["output_tokens"].astype(float).tolist(),
    }


def _workbook_rows(profile: str, n_boot: int, seed: int) -> list[dict]:
    status = record.load_status(profile)
    rows = []
    for scenario in scenario_order():
        alone, made = {}, {}  # style -> replicate 0's baseline samples (CoD against CoT, paired by prompt); its row
        for style in STYLES:
            for replicate in record.replicates_of(profile, style, scenario):
                row, samples = _workbook_run(RunPaths(profile, style, scenario, replicate), status, n_boot, seed)
                rows.append(row)
                if replicate == 0:
                    made[style] = row
                    if samples is not None:
                        alone[style] = samples
        if set(TRAINED_STYLES) <= set(alone):  # on CoD's row, as the study's tables put CoD beside CoT
            made["cod"].update(paired_style_delta(alone["cot"], alone["cod"], n_boot, seed))
    return rows


def _external_rows(external: External | None, n_boot: int, seed: int) -> list[dict]:
    if external is None or not len(external.samples):
        return []
    rows = []
    for (source, style, scenario), g in external.samples.groupby(["source", "style", "scenario"], sort=False):
        by_pass = {p: x for p, x in g.groupby("pass")}
        row = {
            "source": source,
            "style": style,
            "scenario": scenario,
            "run": f"{source}/{style}_{scenario}",
            "state": "measured",
        }
        for p in PASSES:
            if p in by_pass:
                x = by_pass[p]
                correct = x["correct"].astype(float).to_numpy()
                row[f"accuracy_{p}"] = float(correct.mean())
                row[f"accuracy_{p}_ci95"] = quantiles(resampled_means(correct, n_boot, seed))
                study = x["study_correct"].dropna()
                row[f"study_accuracy_{p}"] = float(study.astype(float).mean()) if len(study) else None
                row["tokens_per_answer" if p == "baseline" else "tokens_per_answer_spec"] = float(x["tokens"].mean())
        row["n"] = int(len(by_pass.get("baseline", g)))
        if set(PASSES) <= set(by_pass):
            row.update(paired_accuracy_delta(by_pass["baseline"], by_pass["speculative"], "key", n_boot, seed))
        rows.append(row)
    return rows


# --- everything, one row per run ------------------------------------------------------------
def collect(profile: str, external: External | None = None, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per run: each (style, scenario) of the profile's grid (`source` workbook; a
    run without metrics is a gap: state missing, failed or unreadable, numbers NaN), then
    each (source, style, scenario) of the external CSVs."""
    rows = _workbook_rows(profile, n_boot, seed) + _external_rows(external, n_boot, seed)
    frame = pd.DataFrame(rows)
    for col in RUN_COLUMNS:
        if col not in frame:
            frame[col] = None
    frame["present"] = frame["state"] == "measured"
    frame["replicate"] = pd.to_numeric(frame["replicate"], errors="coerce").fillna(0).astype(int)  # externals: one
    for i, row in frame.iterrows():
        draws, method = acceptance_draws(row, n_boot, seed)
        if len(draws):
            frame.at[i, "acceptance_lo"], frame.at[i, "acceptance_hi"] = quantiles(draws)
            frame.at[i, "acceptance_ci_method"] = method
    numeric = [
        c
        for c in RUN_COLUMNS
        if c
        not in (
            "source",
            "style",
            "scenario",
            "run",
            "state",
            "error",
            "present",
            "settings",
            "acceptance_ci_method",
            "acceptance_by_pos",
            "prompt_ids",
            "prompt_correct",
            "prompt_tokens",
            "spec_prompt_ids",
            "prediction_basis",
            "speedup_reps",
            "lone_tail_reps",
            "accepted_per_pos",
            "accuracy_baseline_ci95",
            "accuracy_speculative_ci95",
            "k_sweep",
            "prompt_draft_tokens",
            "prompt_accepted_tokens",
        )
    ]
    for col in numeric:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame[RUN_COLUMNS].reset_index(drop=True)


def one_training(frame: pd.DataFrame) -> pd.DataFrame:
    """The first training of each (style, scenario) (replicate 0, the run the study had): what
    the per-run plots draw, one mark per style; `trainings` shows every replicate."""
    return frame[frame["replicate"] == 0] if "replicate" in frame else frame


def gaps(frame: pd.DataFrame) -> pd.DataFrame:
    """The runs without numbers and why (missing, the runner's error, an unreadable file)."""
    out = frame.loc[~frame["present"], ["source", "run", "state", "error"]]
    return out.fillna("").reset_index(drop=True)


def run_states(frame: pd.DataFrame) -> pd.DataFrame:
    """Which runs are there: scenario x style, per source (measured, missing, failed, ...)."""
    out = _table(frame, [(s, s, "state") for s in STYLES], numeric=False)
    return out.fillna("–")


# --- the study's three tables ----------------------------------------------------------------
def _table(frame: pd.DataFrame, spec, numeric: bool = True) -> pd.DataFrame:
    """Rows (scenario, source); each column `label` the `field` of the run of `style` — with
    several trainings of it (replicates), the mean over those measured (`trainings` gives their
    spread and the intervals across them); a state, each replicate's, joined."""
    cells = {}
    for _, r in frame.iterrows():
        cells.setdefault((r["scenario"], r["source"]), {}).setdefault(r["style"], []).append(r)
    keys = sorted(cells, key=lambda k: (scenario_rank(k[0]), source_rank(k[1])))
    data = []
    for key in keys:
        by_style = cells[key]
        data.append(
            {
                label: (_over_replicates(by_style[style], fld, numeric) if style in by_style else None)
                for label, style, fld in spec
            }
        )
    index = (
        pd.MultiIndex.from_tuples(keys, names=["scenario", "source"])
        if keys
        else pd.MultiIndex.from_tuples([], names=["scenario", "source"])
    )
    out = pd.DataFrame(data, index=index, columns=[label for label, _, _ in spec])
    return out.apply(pd.to_numeric, errors="coerce") if numeric else out


def _over_replicates(rows: list, field: str, numeric: bool):
    if len(rows) == 1:
        return rows[0][field]
    if not numeric:
        return ", ".join(f"r{int(r['replicate'])} {r[field]}" for r in rows)
    values = [_num(r[field]) for r in rows if r["present"]]
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else None


# The study's three tables: (column, style, field of the run row), in the study's order.
TABLE_SPECS = {
    "speedup": [(f"{s} speed-up", s, "speedup") for s in TRAINED_STYLES]
    + [(f"{s} acceptance", s, "acceptance_rate") for s in TRAINED_STYLES],
    "accuracy": [("base (untrained)", "base", "accuracy_baseline")]
    + [
        c
        for s in TRAINED_STYLES
        for c in ((f"{s} baseline", s, "accuracy_baseline"), (f"{s} + spec", s, "accuracy_speculative"))
    ],
    "tokens": [(f"{s} tokens", s, "tokens_per_answer") for s in STYLES],
}
TABLE_COLUMNS = {name: [c for c, _, _ in spec] for name, spec in TABLE_SPECS.items()}


EAGLE3_SPEC = [
    c
    for s in TRAINED_STYLES
    for c in (
        (f"{s} head acceptance", s, "eagle3_acceptance_rate"),
        (f"{s} draft acceptance", s, "acceptance_rate"),
        (f"{s} head speed-up", s, "eagle3_speedup"),
        (f"{s} draft speed-up", s, "speedup"),
        (f"{s} head r", s, "eagle3_step_cost_r"),
    )
]


def table_eagle3(frame: pd.DataFrame) -> pd.DataFrame:
    """Where runs have an EAGLE-3 head: per scenario, each trained style's head beside its draft
    model (acceptance, speed-up, the head's step cost r), and what CoD did to each: CoD − CoT in
    acceptance points for the head and for the draft model, and the head's change over the draft
    model's. Empty where no run has a head."""
    if frame.empty or frame["eagle3_acceptance_rate"].isna().all():
        return pd.DataFrame()
    out = _table(frame, EAGLE3_SPEC)
    if all(f"{s} head acceptance" in out for s in ("cot", "cod")):
        for who in ("head", "draft"):
            out[f"CoD − CoT {who} acceptance (pts)"] = 100 * (
                out[f"cod {who} acceptance"] - out[f"cot {who} acceptance"]
            )
        out["head's CoD gain over the draft's"] = out["CoD − CoT head acceptance (pts)"] / out[
            "CoD − CoT draft acceptance (pts)"
        ].replace(0, np.nan)
    return out


def table_speedup(frame: pd.DataFrame) -> pd.DataFrame:
    """Study table 1: speed-up (throughput, as the study reports it) and acceptance per style."""
    return _table(frame, TABLE_SPECS["speedup"])


def table_accuracy(frame: pd.DataFrame) -> pd.DataFrame:
    """Study table 2: base untrained, CoT baseline/speculative, CoD baseline/speculative."""
    return _table(frame, TABLE_SPECS["accuracy"])


def table_style_accuracy(frame: pd.DataFrame) -> pd.DataFrame:
    """Per scenario, CoD's held-out accuracy minus CoT's (the target alone) with its 95% paired
    bootstrap over the prompts both answered, and the prompts only one style got right; only
    where both runs' per-sample files pair them."""
    have = frame[frame["present"] & (frame["style"] == "cod")]
    have = have[pd.to_numeric(have["style_accuracy_delta"], errors="coerce").notna()]
    rows = [
        {
            "scenario": r["scenario"],
            "source": r["source"],
            "CoD − CoT, points [95%, paired]": f"{pts(r['style_accuracy_delta'])} "
            f"[{pts(r['style_accuracy_delta_lo'])}, {pts(r['style_accuracy_delta_hi'])}]",
            "right only with CoD / only with CoT": f"{int(r['style_n_cod_only'])} / {int(r['style_n_cot_only'])}",
            "prompts paired": int(r["style_n_paired"]),
        }
        for _, r in ordered(have).iterrows()
    ]
    cols = ["CoD − CoT, points [95%, paired]", "right only with CoD / only with CoT", "prompts paired"]
    return pd.DataFrame(rows, columns=["scenario", "source", *cols]).set_index(["scenario", "source"])


def table_tokens(frame: pd.DataFrame) -> pd.DataFrame:
    """Study table 3: output tokens per answer (baseline pass)."""
    return _table(frame, TABLE_SPECS["tokens"])


def ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in the study's order: source (workbook first), scenario, style."""
    order = [
        (source_rank(r.source), scenario_rank(r.scenario), style_rank(r.style), getattr(r, "replicate", 0))
        for r in frame.itertuples()
    ]
    return frame.iloc[sorted(range(len(frame)), key=lambda i: order[i])]


def table_intervals(frame: pd.DataFrame) -> pd.DataFrame:
    """Per measured run: acceptance and latency speed-up with their 95% intervals, the
    predicted speed-up, and what speculation did to accuracy (paired over prompts)."""
    cols = [
        "source",
        "scenario",
        "style",
        "acceptance_rate",
        "acceptance_lo",
        "acceptance_hi",
        "speedup",
        "speedup_latency",
        "speedup_latency_lo",
        "speedup_latency_hi",
        "predicted_speedup",
        "speedup_lo",
        "speedup_hi",
        "ceiling_speedup",
        "floor_speedup",
        "step_cost_r",
        "r_floor",
        "gpu_busy_share",
        "occupancy_ratio",
        "identical_output_floor",
        "predicted_speedup_decode",
        "prediction_basis",
        "busy_occupancy_ratio",
        "lone_tail_share",
        "lone_tail_share_baseline",
        "speedup_without_lone_tail",
        "lone_tail_tpot_ratio",
        "lone_replay_slowdown",
        "lone_replay_tokens_per_step",
        "spec_accuracy_delta",
        "spec_accuracy_delta_lo",
        "spec_accuracy_delta_hi",
        "n_paired",
        "n_gained",
        "n_lost",
        "identical_output_share",
        "acceptance_ci_method",
        "crosscheck_n",
        "crosscheck_acceptance_vllm",
        "crosscheck_acceptance",
    ]
    rows = ordered(frame[frame["present"]])
    # a later training of a style is its own row, named by its replicate
    rows = rows.assign(style=[s if not r else f"{s} r{r}" for s, r in zip(rows["style"], rows["replicate"])])
    return rows[cols].set_index(["source", "scenario", "style"])


def intervals_display(frame: pd.DataFrame) -> pd.DataFrame:
    """`table_intervals` compactly, for reading: each estimate with its [95% interval]."""
    t = table_intervals(frame)

    def est(v, lo, hi, f):
        if pd.isna(v):
            return "–"
        return f(v) + ("" if pd.isna(lo) or pd.isna(hi) else f" [{f(lo)}, {f(hi)}]")

    x, pct = (lambda v: f"{v:.2f}x"), (lambda v: f"{v:.1%}")
    rows = []
    for _, r in t.iterrows():
        rows.append(
            {
                "acceptance [95%]": est(r["acceptance_rate"], r["acceptance_lo"], r["acceptance_hi"], pct),
                "interval over": {PER_PROMPT: "prompts", PER_DRAFT: "drafts", PER_TOKEN: "tokens"}.get(
                    r["acceptance_ci_method"], "–"
                ),
                "speed-up, latency [95%]": est(
                    r["speedup_latency"], r["speedup_latency_lo"], r["speedup_latency_hi"], x
                ),
                "speed-up, throughput [range over repetitions]": est(r["speedup"], r["speedup_lo"], r["speedup_hi"], x),
                "predicted": est(r["predicted_speedup"], None, None, x)
                + ("" if pd.isna(r["predicted_speedup"]) else f" ({r['prediction_basis']})"),
                "predicted, decode only": est(r["predicted_speedup_decode"], None, None, x),
                "ceiling (all accepted)": est(r["ceiling_speedup"], None, None, x),
                "GPU floor": est(r["floor_speedup"], None, None, x),
                "identical outputs (floor)": "–"
                if pd.isna(r["identical_output_share"])
                else f"{r['identical_output_share']:.0%}"
                + ("" if pd.isna(r["identical_output_floor"]) else f" ({r['identical_output_floor']:.0%})"),
                "accuracy change by speculation, points [95%]": est(
                    r["spec_accuracy_delta"], r["spec_accuracy_delta_lo"], r["spec_accuracy_delta_hi"], pts
                ),
                "prompts turned right / wrong": "–"
                if pd.isna(r["n_paired"])
                else f"{int(r['n_gained'])} / {int(r['n_lost'])} of {int(r['n_paired'])}",
                "cross-check acceptance (transformers / vLLM)": "–"
                if pd.isna(r["crosscheck_acceptance"])
                else f"{r['crosscheck_acceptance']:.1%} / "
                + ("–" if pd.isna(r["crosscheck_acceptance_vllm"]) else f"{r['crosscheck_acceptance_vllm']:.1%}"),
            }
        )
    return pd.DataFrame(rows, index=t.index)


def regrade_table(external: External | None) -> pd.DataFrame:
    """Per external (source, style, scenario, pass): accuracy as the study graded it against
    the workbook's checker, and outputs the study credited that the workbook does not."""
    cols = [
        "source",
        "style",
        "scenario",
        "pass",
        "n",
        "accuracy (study's is_correct)",
        "accuracy (re-graded)",
        "credited by study only",
        "credited by workbook only",
        "no explicit final answer",
    ]
    if external is None or not len(external.samples):
        return pd.DataFrame(columns=cols)
    rows = []
    for (source, style, scenario, p), g in external.samples.groupby(
        ["source", "style", "scenario", "pass"], sort=False
    ):
        study = g["study_correct"].map(lambda v: bool(v) if v is not None and v == v else None)
        known = study.dropna().astype(bool)
        corr = g["correct"].astype(bool)
        rows.append(
            {
                "source": source,
                "style": style,
                "scenario": scenario,
                "pass": p,
                "n": len(g),
                "accuracy (study's is_correct)": float(known.mean()) if len(known) else float("nan"),
                "accuracy (re-graded)": float(corr.mean()),
                "credited by study only": int((known & ~corr.loc[known.index]).sum()),
                "credited by workbook only": int((~known & corr.loc[known.index]).sum()),
                "no explicit final answer": int((~g["extraction"].isin(answers.CREDITED_METHODS)).sum()),
            }
        )
    return pd.DataFrame(rows, columns=cols)


# --- long frames for the plots -----------------------------------------------------------------
def acceptance_positions(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in frame[frame["present"]].iterrows():
        by_pos = r.get("acceptance_by_pos")
        for pos, value in enumerate(by_pos if isinstance(by_pos, (list, tuple)) else [], 1):
            rows.append(
                {
                    "source": r["source"],
                    "style": r["style"],
                    "scenario": r["scenario"],
                    "position": pos,
                    "acceptance": value,
                }
            )
    return pd.DataFrame(rows, columns=["source", "style", "scenario", "position", "acceptance"])


def accuracy_long(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, pass) with accuracy and its 95% interval (bootstrap over prompts)."""
    rows = []
    for _, r in frame[frame["present"]].iterrows():
        for p in PASSES:
            acc = r[f"accuracy_{p}"]
            if pd.isna(acc) or (r["style"] == "base" and p == "speculative"):
                continue
            lo, hi = ci_bounds(r[f"accuracy_{p}_ci95"])
            label = (
                "base (untrained)"
                if r["style"] == "base"
                else f"{r['style']} {'baseline' if p == 'baseline' else '+ spec'}"
            )
            rows.append(
                {"source": r["source"], "scenario": r["scenario"], "config": label, "accuracy": acc, "lo": lo, "hi": hi}
            )
    return pd.DataFrame(rows, columns=["source", "scenario", "config", "accuracy", "lo", "hi"])


def sample_tokens(profile: str, frame: pd.DataFrame, external: External | None = None) -> pd.DataFrame:
    """Tokens of every answer of every measured run (the workbook's benchmark_samples.csv,
    and the external CSVs), for the distribution plot."""
    parts = []
    for _, r in frame[frame["present"] & (frame["source"] == WORKBOOK)].iterrows():
        path = RunPaths(profile, r["style"], r["scenario"]).samples_csv
        if path.exists():
            s = pd.read_csv(path, usecols=["pass", "output_tokens"]).rename(columns={"output_tokens": "tokens"})
            s = s[s["pass"].isin(PASSES)]  # not the K-sweep's extra passes
            parts.append(s.assign(source=WORKBOOK, style=r["style"], scenario=r["scenario"]))
    if external is not None and len(external.samples):
        parts.append(external.samples[["source", "style", "scenario", "pass", "tokens"]])
    cols = ["source", "style", "scenario", "pass", "tokens"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def k_sweep_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Acceptance and speed-up against K, from the runs whose metrics carry a `k_sweep`
    (a list of {k, ...} or a mapping K -> {...}); empty where none does."""
    rows = []
    for _, r in frame[frame["present"]].iterrows():
        sweep = r.get("k_sweep")
        if isinstance(sweep, dict):
            items = []
            for k, v in sweep.items():
                if isinstance(v, dict):
                    items.append({"k": v.get("k", k), **v})
                elif isinstance(v, list) and k in ("points", "rows", "results"):
                    items += [x for x in v if isinstance(x, dict)]
        elif isinstance(sweep, list):
            items = [x for x in sweep if isinstance(x, dict)]
        else:
            continue
        for item in items:
            spec = _first(item, "spec") or _first(_first(item, "passes") or {}, "speculative") or {}
            if isinstance(spec, dict) and "spec" in spec:
                spec = spec["spec"] or {}
            comp = item.get("comparison") or {}
            rows.append(
                {
                    "source": r["source"],
                    "style": r["style"],
                    "scenario": r["scenario"],
                    "k": _num(item.get("k")),
                    "acceptance": _num(_either(_first(item, "acceptance_rate"), _first(spec, "acceptance_rate"))),
                    "speedup": _num(
                        _either(
                            _first(item, "speedup", "speedup_throughput", "speedup_latency"),
                            _first(comp, "speedup_throughput", "speedup_latency"),
                        )
                    ),
                    "mean_acceptance_length": _num(
                        _either(_first(item, "mean_acceptance_length"), _first(spec, "mean_acceptance_length"))
                    ),
                }
            )
    out = pd.DataFrame(
        rows, columns=["source", "style", "scenario", "k", "acceptance", "speedup", "mean_acceptance_length"]
    )
    return out.dropna(subset=["k"]).sort_values(["scenario", "style", "k"]).reset_index(drop=True)


def training_losses(profile: str) -> pd.DataFrame:
    """Training and validation loss per step of every run's target and draft adapters."""
    from .train import loss_frame

    parts = []
    for scenario in scenario_order():
        for style in TRAINED_STYLES:
            rp = RunPaths(profile, style, scenario)
            for role in ("target", "draft"):
                path = rp.train_summary(role)
                if path.exists():
                    try:
                        lf = loss_frame(io.read_json(path))
                    except Exception:
                        continue
                    parts.append(lf.assign(style=style, scenario=scenario, role=role))
    cols = ["style", "scenario", "role", "step", "split", "loss"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


# --- display and the recorded figures ---------------------------------------------------------
def styled(table: pd.DataFrame):
    """A table for display: percentages, speed-ups as `1.53x`, gaps as `–`."""
    return table.style.format({c: format_for(c) for c in table.columns})
