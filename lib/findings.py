"""What the analysis says and records: findings written from the numbers (never typed in),
and the figures notebook 07 records (`figures`) for the tests, the index and the comparison page."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import analysis, answer, trainings
from .externals import External
from .formats import WORKBOOK, pts, scenario_order, source_rank
from .stats import (
    NOISE_ALPHA,
    TOLERANCE_TEXT,
    excess_mismatch_p,
    holm,
    least_rank_test_p,
    placement_p,
    quantiles,
    rank_test_p,
    within_tolerance,
)
from .styles import TRAINED_STYLES


NAMES = {"base": "base", "cot": "CoT", "cod": "CoD"}  # styles as sentences name them


def _pct(x) -> str:
    return "n/a" if x is None or pd.isna(x) else f"{x:.1%}"


def _interval(lo, hi, fmt) -> str:
    return "" if lo is None or pd.isna(lo) or pd.isna(hi) else f" [{fmt(lo)}, {fmt(hi)}]"


def _decide(tally: dict, quantity: str, scenario: str, said: str, delta, lo, hi, by: str) -> None:
    """A scenario's verdict on one quantity: `said` for the answer sentence (`_answer`), and in
    `tally["decided"]` the difference, the interval or test that decided it and the verdict in
    CoD's terms, for the answer table (`answer.build`)."""
    tally.setdefault(quantity if quantity != "speed-up" else "speedup", {})[scenario] = said
    table = (
        "no clear difference"
        if said == "unclear"
        else "CoD higher"
        if said in ("CoD higher", "CoD faster")
        else "CoD lower"
    )
    tally.setdefault("decided", {})[(quantity, scenario)] = {
        "delta": delta,
        "lo": lo,
        "hi": hi,
        "verdict": table,
        "by": by,
    }


def findings(frame: pd.DataFrame, external: External | None = None, n_boot: int = 2000, seed: int = 0) -> list[str]:
    """Plain sentences written from the numbers (never typed in), each with the interval it
    rests on and what that interval is of: every section's, in order."""
    return [line for section in study(frame, external, n_boot, seed)["sections"] for line in section["lines"]]


def study(frame: pd.DataFrame, external: External | None = None, n_boot: int = 2000, seed: int = 0) -> dict:
    """The analysis's reading of the runs, computed once: `answer` (the table, `answer.build`),
    `compared` (`trainings.compare`) and `sections`, the findings under headings, each
    {"heading", "lines", "table"}: sentences written from the numbers and, where the same
    sentence would repeat per run, one table of the runs instead (`lines` keeps the sentences
    for the records)."""
    frame = frame if "replicate" in frame else frame.assign(replicate=0)  # a frame from before replicates
    have = frame[frame["present"]]
    first = have[have["replicate"] == 0]  # one training per style, as the study had
    tally: dict = {"acceptance": {}, "speedup": {}, "accuracy": {}}
    styles, methods = _styles_compared(frame, first, n_boot, seed, tally)
    styles += _accuracy_by_style(first, tally, one_training=not (have["replicate"] > 0).any())
    compared = trainings.compare(frame, n_boot, seed)
    styles += _across_trainings(compared, tally)
    notes = _intervals_said(methods) + _external_notes(external) + _settings_differ(have)
    missing = frame[~frame["present"] & (frame["source"] == WORKBOOK)]
    if len(missing):
        states = missing.groupby("state")["run"].apply(lambda s: ", ".join(s)).to_dict()
        notes.append("Not measured: " + "; ".join(f"{k}: {v}" for k, v in sorted(states.items())) + ".")
    noise, crosscheck = _noise_lines(have), _crosscheck_lines(have)
    sections = [
        {"heading": "The answer", "lines": _answer(tally, compared), "table": None},
        {"heading": "CoD against CoT", "lines": styles, "table": None},
        {
            "heading": "Did speculation change the answers?",
            "lines": _accuracy_moves(have) + noise,
            "table": _lossless_table(have),
            "summary": _lossless_summary(have),
        },
        {"heading": "Speed model: measured against predicted", "lines": _cost_model(have), "table": None},
        {"heading": EAGLE3_HEADING, "lines": _eagle3_lines(first), "table": _eagle3_table(first)},
        {
            "heading": "Cross-check: transformers against vLLM",
            "lines": crosscheck,
            "table": _crosscheck_table(have),
            "summary": _crosscheck_summary(have),
        },
        {"heading": "Intervals, data and gaps", "lines": notes, "table": None},
    ]
    return {
        "answer": answer.build(frame, tally.get("decided", {}), compared),
        "compared": compared,
        "sections": [s for s in sections if s["lines"]],
    }


def _settings_differ(have: pd.DataFrame) -> list[str]:
    """Runs made with different settings are never set side by side unsaid."""
    made = have[have["source"] == WORKBOOK]
    kinds = made["settings"].fillna("(not recorded)").replace("", "the profile's")
    if kinds.nunique() <= 1:
        return []
    by = kinds.groupby(kinds).apply(lambda s: ", ".join(made.loc[s.index, "run"])).to_dict()
    return [
        "These runs were not all made with the same settings, so their numbers are not like for like: "
        + "; ".join(f"{k}: {v}" for k, v in sorted(by.items()))
        + "."
    ]


def _across_trainings(compared: pd.DataFrame, tally: dict) -> list[str]:
    """CoD against CoT across replicated trainings (`trainings`): where each style has two or
    more, the interval across trainings decides the scenario's verdicts in the answer."""
    replicated = compared[(compared["n_cot"] > 1) & (compared["n_cod"] > 1)] if len(compared) else compared
    if not len(replicated):
        return []
    for _, r in replicated.iterrows():
        apart, higher = (r["lo"] > 0 or r["hi"] < 0), r["delta"] > 0
        said = {
            "accuracy": "CoD higher" if higher else "CoD lower",
            "acceptance": ("CoD" if higher else "CoT") + " higher",
            "speed-up": ("CoD" if higher else "CoT") + " faster",
        }.get(r["quantity"])
        if said:
            _decide(
                tally,
                r["quantity"],
                r["scenario"],
                said if apart else "unclear",
                r["delta"],
                r["lo"],
                r["hi"],
                f"95 % across {min(r['n_cot'], r['n_cod'])} trainings each",
            )
    return [
        "Across trainings (each style trained more than once, `grid.replicates`): the intervals resample the "
        "trainings and, within each, the prompts (speed-up: the repetitions), so they hold the spread between "
        "trainings; these decide the answer above."
    ] + trainings.sentences(replicated)


def _trainings_said(acc: pd.DataFrame | None) -> str:
    """How many trainings of each style the accuracy verdicts rest on, in words: each style's own
    count (a grid may hold three CoT trainings and one CoD), a range where scenarios differ."""
    if acc is None or not len(acc):
        return "one training per style"
    counts = {style: sorted({int(n) for n in acc[f"n_{style}"]}) for style in ("cot", "cod")}
    said = {s: (f"{c[0]}" if len(c) == 1 else f"{c[0]}-{c[-1]}") for s, c in counts.items()}
    if said["cot"] == said["cod"]:
        return "one training per style" if said["cot"] == "1" else f"{said['cot']} trainings per style"
    return f"{said['cot']} training(s) of CoT, {said['cod']} of CoD"


def _answer(tally: dict, compared: pd.DataFrame | None = None) -> list[str]:
    """The study's question in one sentence, from the per-scenario verdicts the sentences below
    state with their intervals: which style led where the interval or the repetitions' ranges
    tell them apart, and where they do not; how many trainings of each style it rests on."""
    if not any(tally.values()):
        return []
    acc = compared[compared["quantity"] == "accuracy"] if compared is not None and len(compared) else None
    trained = _trainings_said(acc)

    def part(what: str, verdicts: dict, unclear: str) -> str:
        by = {}
        for scenario, v in verdicts.items():
            by.setdefault(v, []).append(scenario)
        return f"{what}: " + "; ".join(f"{v if v != 'unclear' else unclear} in {', '.join(sc)}" for v, sc in by.items())

    said = [
        part(*x)
        for x in (
            (f"Accuracy ({trained})", tally["accuracy"], "no clear difference"),
            ("Acceptance", tally["acceptance"], "no clear difference"),
            ("Throughput speed-up", tally["speedup"], "not resolved by the repetitions"),
        )
        if x[1]
    ]
    return [
        "The study's question (does CoD make speculation faster without costing accuracy?), for this pair — "
        + ". ".join(said)
        + "."
    ]


def _styles_compared(
    frame: pd.DataFrame, have: pd.DataFrame, n_boot: int, seed: int, tally: dict
) -> tuple[list[str], set]:
    """Per scenario, CoD against CoT: acceptance (with the interval of the difference) and
    speed-up; first, how often each style led. Also the interval methods the numbers rest on;
    each scenario's verdicts go into `tally` (for `_answer`)."""
    out = []
    wins, compared = {"cod": 0, "cot": 0}, 0
    methods = set()
    for scenario in scenario_order(frame["scenario"].unique()):
        pair = have[(have["source"] == WORKBOOK) & (have["scenario"] == scenario) & have["style"].isin(TRAINED_STYLES)]
        pair = pair.set_index("style")
        gone = [f"{s}_{scenario}" for s in TRAINED_STYLES if s not in pair.index]
        if not ((frame["source"] == WORKBOOK) & (frame["scenario"] == scenario)).any():
            continue
        if gone:
            out.append(f"{scenario}: CoT and CoD are not both measured yet (no metrics for {', '.join(gone)}).")
            continue
        cot, cod = pair.loc["cot"], pair.loc["cod"]
        if pd.isna(cot["acceptance_rate"]) or pd.isna(cod["acceptance_rate"]):
            out.append(f"{scenario}: acceptance is not recorded for both styles (no speculative counters).")
        else:
            d_cot, m = analysis.acceptance_draws(cot, n_boot, seed)
            d_cod, _ = analysis.acceptance_draws(cod, n_boot, seed + 1)
            methods.update(x for x in (cot["acceptance_ci_method"], cod["acceptance_ci_method"]) if isinstance(x, str))
            diff = cod["acceptance_rate"] - cot["acceptance_rate"]
            lo, hi = quantiles(d_cod - d_cot) if len(d_cot) and len(d_cod) else (float("nan"), float("nan"))
            winner, loser = ("CoD", "CoT") if diff > 0 else ("CoT", "CoD")
            compared += 1
            wins["cod" if diff > 0 else "cot"] += diff != 0
            verdict = (
                "the interval excludes zero"
                if (lo > 0 or hi < 0)
                else "the interval includes zero: no clear difference"
            )
            _decide(
                tally,
                "acceptance",
                scenario,
                f"{winner} higher" if (lo > 0 or hi < 0) else "unclear",
                diff,
                lo,
                hi,
                "95 % over prompts",
            )
            out.append(
                f"{scenario}: {winner} had the higher acceptance — CoD {_pct(cod['acceptance_rate'])}"
                f"{_interval(cod['acceptance_lo'], cod['acceptance_hi'], _pct)} vs CoT {_pct(cot['acceptance_rate'])}"
                f"{_interval(cot['acceptance_lo'], cot['acceptance_hi'], _pct)}, {winner} ahead by "
                f"{abs(diff) * 100:.1f} points (CoD − CoT {pts(diff)}{_interval(lo, hi, pts)} points; {verdict})."
            )
        out.extend(_speedup_by_style(scenario, cot, cod, tally))
    if compared:
        lead = "CoD" if wins["cod"] >= wins["cot"] else "CoT"
        out.insert(
            0,
            f"Across the {compared} scenario(s) with both styles measured, {lead} had the higher acceptance in "
            f"{max(wins.values())} of {compared}.",
        )
    return out, methods


def _reps(row) -> list:
    reps = row.get("speedup_reps")
    return list(reps) if isinstance(reps, (list, tuple, np.ndarray)) else []


def _speedup_by_style(scenario: str, cot, cod, tally: dict | None = None) -> list[str]:
    """CoD's speed-up against CoT's. The repetitions decide: each is a fresh engine pair, so
    they hold the run-to-run spread; the latency interval resamples the prompts of one pass and
    does not (on the H200, two repetitions differed by up to 2.8x while each latency interval
    was a few hundredths wide). The test is a rank test over the two runs' repetitions, not
    whether their ranges overlap: a range only widens with more repetitions, so that rule grew
    stricter the more was measured. Metrics without per-repetition figures keep the range rule."""
    out = []
    if not (pd.isna(cot["speedup"]) or pd.isna(cod["speedup"])):
        reps = [r.get("repetitions") for r in (cot, cod)]
        r_cot, r_cod = _reps(cot), _reps(cod)
        verdict = "unclear"
        if any(pd.isna(n) or n < 2 for n in reps) or pd.isna(cod["speedup_lo"]) or pd.isna(cot["speedup_lo"]):
            spread = (
                "fewer than two repetitions: the run-to-run spread is not measured, so this does not tell them apart"
            )
            test = "fewer than 2 repetitions: not tested"
        else:
            ranges = (
                f"range over repetitions CoD [{cod['speedup_lo']:.2f}, {cod['speedup_hi']:.2f}], "
                f"CoT [{cot['speedup_lo']:.2f}, {cot['speedup_hi']:.2f}]"
            )
            ranked = len(r_cot) >= 2 and len(r_cod) >= 2
            if ranked:
                p, least = rank_test_p(r_cod, r_cot), least_rank_test_p(len(r_cod), len(r_cot))
                apart = p < NOISE_ALPHA
                test = f"rank test over {len(r_cod)} + {len(r_cot)} repetitions, p = {p:.2f}"
            else:
                apart = cod["speedup_lo"] > cot["speedup_hi"] or cot["speedup_lo"] > cod["speedup_hi"]
                test = "ranges over repetitions " + ("apart" if apart else "overlap")
            if apart:
                verdict = "CoD faster" if cod["speedup"] > cot["speedup"] else "CoT faster"
            if ranked:
                spread = (
                    f"{ranges}; rank test over the {len(r_cod)} + {len(r_cot)} repetitions p = {p:.2f}: "
                    + (verdict if apart else "not resolved by these repetitions")
                    + (
                        ""
                        if least < NOISE_ALPHA
                        else f"; with so few the test cannot go below p = {least:.2f}: four repetitions each can tell them apart"
                    )
                )
            else:
                spread = f"{ranges}: " + (
                    "the ranges do not overlap" if apart else "the ranges overlap, not resolved by these repetitions"
                )
        out.append(
            f"{scenario}: throughput speed-up CoD {cod['speedup']:.2f}x vs CoT {cot['speedup']:.2f}x ({spread})."
        )
        if tally is not None:
            _decide(tally, "speed-up", scenario, verdict, cod["speedup"] - cot["speedup"], None, None, test)
    s_cot, s_cod = cot["speedup_latency"], cod["speedup_latency"]
    if not (pd.isna(s_cot) or pd.isna(s_cod)):
        x = "{:.2f}x".format
        out.append(
            f"{scenario}: latency speed-up CoD {s_cod:.2f}x{_interval(cod['speedup_latency_lo'], cod['speedup_latency_hi'], x)}"
            f" vs CoT {s_cot:.2f}x{_interval(cot['speedup_latency_lo'], cot['speedup_latency_hi'], x)}"
            " (95 % over the prompts of one pass: not the run-to-run spread)."
        )
    return out


def _accuracy_by_style(have: pd.DataFrame, tally: dict, one_training: bool = True) -> list[str]:
    """Per scenario, each style's held-out accuracy (the target alone, the baseline pass) with
    its interval, and whether CoD's differs from CoT's: the study's "without costing accuracy",
    decided by the paired interval over the prompts both answered where the per-sample files
    allow, else by whether the two intervals overlap."""
    out = []
    mine = have[have["source"] == WORKBOOK]
    for scenario in scenario_order(mine["scenario"].unique()):
        rows = mine[mine["scenario"] == scenario].set_index("style")
        said, bounds = [], {}
        for style in ("base", *TRAINED_STYLES):
            if style not in rows.index or pd.isna(rows.loc[style, "accuracy_baseline"]):
                continue
            r = rows.loc[style]
            lo, hi = analysis.ci_bounds(r["accuracy_baseline_ci95"])
            bounds[style] = (r["accuracy_baseline"], lo, hi)
            said.append(f"{NAMES[style]} {_pct(r['accuracy_baseline'])}{_interval(lo, hi, _pct)}")
        if not said:
            continue
        line = (
            f"{scenario}: held-out accuracy of the target alone — " + ", ".join(said) + " (95% bootstrap over prompts)"
        )
        if "cot" in bounds and "cod" in bounds:
            paired = rows.loc["cod"]
            if not pd.isna(paired.get("style_accuracy_delta")):
                # both styles answered the same prompts: the paired interval of the difference decides
                d, lo, hi = (
                    paired["style_accuracy_delta"],
                    paired["style_accuracy_delta_lo"],
                    paired["style_accuracy_delta_hi"],
                )
                lower, higher = hi < 0, lo > 0
                verdict = (
                    "CoD cost accuracy"
                    if lower
                    else "CoD was more accurate"
                    if higher
                    else "the interval includes zero: no clear difference"
                )
                line += (
                    f"; CoD − CoT {pts(d)}{_interval(lo, hi, pts)} points (95% paired bootstrap over the "
                    f"{int(paired['style_n_paired'])} prompts both answered: {int(paired['style_n_cod_only'])} right "
                    f"only with CoD, {int(paired['style_n_cot_only'])} only with CoT), {verdict}"
                )
                decided = (d, lo, hi, f"95 % paired over {int(paired['style_n_paired'])} prompts")
            else:  # no per-sample files to pair: two separate intervals, a weaker test
                (cot, cot_lo, cot_hi), (cod, cod_lo, cod_hi) = bounds["cot"], bounds["cod"]
                lower, higher = cod_hi < cot_lo, cod_lo > cot_hi
                verdict = (
                    "CoD cost accuracy (the intervals do not overlap)"
                    if lower
                    else "CoD was more accurate (the intervals do not overlap)"
                    if higher
                    else "the intervals overlap: no clear difference"
                )
                line += f"; CoD − CoT {pts(cod - cot)} points (no per-sample files to pair them), {verdict}"
                decided = (
                    cod - cot,
                    None,
                    None,
                    "the styles' intervals " + ("apart" if lower or higher else "overlap"),
                )
            _decide(
                tally, "accuracy", scenario, "CoD lower" if lower else "CoD higher" if higher else "unclear", *decided
            )
        out.append(line + ".")
    if tally["accuracy"] and one_training:
        out.append(
            "These accuracy intervals resample the held-out prompts answered by one trained target per style: "
            "they do not hold the spread between trainings (another seed, or GPU training, which is not "
            "bit-reproducible), which only a second training of each style measures."
        )
    return out


def _accuracy_moves(have: pd.DataFrame) -> list[str]:
    """What speculation did to accuracy, per run (a paired interval where samples allow)."""
    out, unchanged = [], []
    for _, r in analysis.ordered(have).iterrows():
        where = f"{r['scenario']}/{r['style']}" + ("" if r["source"] == WORKBOOK else f" ({r['source']})")
        if not pd.isna(r["n_paired"]) and r["n_gained"] == 0 and r["n_lost"] == 0:
            unchanged.append(f"{where} ({int(r['n_paired'])} prompts)")
        elif not pd.isna(r["n_paired"]):
            lo, hi = r["spec_accuracy_delta_lo"], r["spec_accuracy_delta_hi"]
            moved = (
                "speculation changed accuracy"
                if (lo > 0 or hi < 0)
                else "no evidence that speculation changed accuracy"
            )
            ident = (
                ""
                if pd.isna(r["identical_output_share"])
                else f"; outputs identical to baseline for {r['identical_output_share']:.0%} of prompts"
            )
            out.append(
                f"{where}: speculation moved accuracy by {pts(r['spec_accuracy_delta'])} points"
                f"{_interval(lo, hi, pts)} (95% paired bootstrap over {int(r['n_paired'])} prompts; "
                f"{int(r['n_gained'])} turned right, {int(r['n_lost'])} turned wrong{ident}) — {moved}."
            )
        elif not pd.isna(r["spec_accuracy_delta"]):
            out.append(
                f"{where}: speculation moved accuracy by {pts(r['spec_accuracy_delta'])} points "
                f"(no per-sample file to put an interval on it)."
            )
    if unchanged:
        out.append("Speculation did not change whether any answer was right in: " + ", ".join(unchanged) + ".")
    return out


# A lone tail longer than this share of the speculative pass is worth a sentence (on the H200:
# 19-24 % where it happened, under 2 % for every baseline).
LONE_TAIL_NOTABLE = 0.05
# A benchmark's first repetitions: on the H200 (default scheduler) every notable speculative
# lone tail came in the first or second repetition (docs/results/gpu-solve-h200).
EARLY_REPETITIONS = 2


def _cost_model(have: pd.DataFrame) -> list[str]:
    """Measured against predicted speed-up, and the ceiling the step cost r leaves."""
    out = []
    ratio = (have["speedup"] / have["predicted_speedup"]).dropna()
    if len(ratio):
        # One sentence per basis: runs recorded before per-request timestamps predict from decode
        # steps alone, and pooling them with the others would hide which model misses.
        basis = have.loc[ratio.index, "prediction_basis"].fillna("decode")
        for name, what in (
            (
                "schedule",
                "acceptance by draft position (per request where the engine counts it), the "
                "measured step cost r and each request's time to its first token, the requests "
                "placed in the engine's slots in the order sent",
            ),
            (
                "decode + prefill",
                "acceptance by draft position, the measured step cost r and each "
                "request's time to its first token (slots assumed equally busy in both "
                "passes)",
            ),
            (
                "decode",
                "acceptance by draft position and the measured step cost r (decode steps "
                "only: these runs recorded no prefill timestamps)",
            ),
        ):
            part = ratio[basis == name]
            if len(part):
                within = int(within_tolerance(part).sum())
                out.append(
                    f"Measured throughput speed-up was {_span(part, '{:.2f}')} times the one predicted "
                    f"from {what}, over {len(part)} run(s); within {TOLERANCE_TEXT} in {within} of {len(part)}."
                )
        occ = have["occupancy_ratio"].dropna()
        if len(occ):
            out.append(
                f"Decode steps alone: the speculative passes kept {_span(occ, '{:.2f}')} times as many "
                f"requests decoding at once as the baseline (occupancy), and measured = decode-only prediction x "
                f"that ratio: below 1, speculation spent more of its time outside decode steps (prefill, "
                f"scheduling, the batch emptying)."
            )
        busy = have["busy_occupancy_ratio"].dropna()
        if len(busy):
            out.append(
                f"With each request's prefill counted as busy, the ratio is {_span(busy, '{:.2f}')}: "
                f"what a prediction with prefill alone misses is slots standing empty (the batch emptying, "
                f"scheduling gaps), which the schedule prediction places from each request's length and "
                f"acceptance."
            )
        out += _lone_tail(have)
        out += _lone_tail_by_repetition(have)
    out += _forecast(have)
    out += _schedulers(have)
    capped = have.dropna(subset=["ceiling_speedup", "step_cost_r"])
    if len(capped):
        floor = capped["floor_speedup"].dropna()
        out.append(
            f"A speculative step cost {_span(capped['step_cost_r'], '{:.2f}')} baseline "
            f"steps (r), so even with every draft accepted the engine's ceiling is "
            f"{_span(capped['ceiling_speedup'], '{:.2f}x')}"
            + (
                f"; were each step only its kernels (r {_span(capped['r_floor'].dropna(), '{:.2f}')}: a speculative step's "
                f"GPU-busy time over a target step's), it would be {_span(floor, '{:.2f}x')}."
                if len(floor)
                else " (no GPU profile: no hardware floor)."
            )
        )
        share = have["gpu_busy_share"].dropna()
        if len(share):
            out.append(
                f"The GPU was busy for {_span(share, '{:.0%}')} of a target step at batch 1: the rest is "
                f"host work (scheduling, launches, sampling), so on a pair this small the measured speed-up speaks "
                f"of the engine's host overhead more than of the GPU."
            )
    order = have["order_effect"].dropna()
    if len(order):
        out.append(
            f"Repetition order: in {int((order > 1).sum())} of {len(order)} run(s) the repetitions that ran the "
            f"speculative pass first measured the higher speed-up (speculative-first over baseline-first "
            f"{_span(order, '{:.2f}')}, median {order.median():.2f}). The order alternates, so the median "
            f"balances it; the range over repetitions includes it."
        )
    return out


def _forecast(have: pd.DataFrame) -> list[str]:
    """The forecast made before the timed passes from a calibration on training prompts (out of
    sample), against what was then measured; and `k: auto`'s pick against the best K a sweep
    measured. The prediction above is an accounting check of the very passes it explains."""
    out = []
    ratio = have.reindex(columns=["forecast_ratio"])["forecast_ratio"].dropna()
    if len(ratio):
        within = int(within_tolerance(ratio).sum())
        out.append(
            f"Forecast before the timed passes (a calibration on training prompts the benchmark does not ask, "
            f"placed in the engine's slots for the benchmark's prompt count: out of sample): measured was "
            f"{_span(ratio, '{:.2f}')} times the forecast over {len(ratio)} run(s), within {TOLERANCE_TEXT} in "
            f"{within} of {len(ratio)}. The prediction above uses each pass's own timings: it shows that no cost "
            f"is missing, not what a run will give."
        )
    choice = have.reindex(columns=["k_choice_share", "k_choice_within_range"]).dropna(subset=["k_choice_share"])
    if len(choice):
        share = choice["k_choice_share"]
        close, far = int((share >= 0.95).sum()), choice[share < 0.95]
        unresolved = int((far["k_choice_within_range"] == True).sum())  # noqa: E712 - None where not recorded
        out.append(
            f"k: auto against a K sweep: the chosen K's measured speed-up was {_span(share, '{:.0%}')} of the best "
            f"measured K's over {len(share)} run(s), within 5 % in {close} of {len(share)}."
            + (
                f" In {unresolved} of the {len(far)} further off, the best K's one pass was no faster than the "
                f"chosen K's own fastest repetition: the sweep, one pass per K, cannot tell them apart."
                if unresolved
                else ""
            )
        )
    return out


def _lone_tail(have: pd.DataFrame) -> list[str]:
    """The speculative pass's last request decoding alone, and measured against predicted without it."""
    cols = [
        "lone_tail_share",
        "lone_tail_share_baseline",
        "speedup_without_lone_tail",
        "predicted_speedup",
        "lone_tail_tpot_ratio",
        "lone_replay_slowdown",
        "lone_replay_tokens_per_step",
        "predicted_speedup_busy",
    ]
    tails = have.reindex(columns=cols).dropna(subset=cols[:2])  # runs recorded before it have none
    if not len(tails):
        return []
    long = tails[tails["lone_tail_share"] > LONE_TAIL_NOTABLE]
    slow = long["lone_tail_tpot_ratio"].dropna()
    out = [
        f"The speculative pass's last request decoded alone for more than {LONE_TAIL_NOTABLE:.0%} of the pass in "
        f"{len(long)} of {len(tails)} run(s)"
        + (
            f" ({_span(long['lone_tail_share'], '{:.0%}')}; the baseline's "
            f"{_span(tails['lone_tail_share_baseline'], '{:.0%}')})"
            if len(long)
            else ""
        )
        + (f", at {_span(slow, '{:.1f}')} times the pass's median time per token" if len(slow) else "")
        + ": a prediction that prices a step from all requests together does not see that time; the schedule "
        "prediction does, as far as the request's own length and acceptance explain it."
    ]
    replayed = long.reindex(columns=["lone_replay_slowdown", "lone_replay_tokens_per_step"]).dropna(
        subset=["lone_replay_slowdown"]
    )
    if len(replayed):
        # the same prompt once more, alone on the same engine: slow again, the prompt; fast, the batch's state
        ratio, per_step = replayed["lone_replay_slowdown"], replayed["lone_replay_tokens_per_step"].dropna()
        cause = (
            ": its slowness came from the engine's state late in the batch, not from the prompt"
            if (ratio > 2).all()
            else ": the prompt decodes slowly by itself"
            if (ratio < 1.5).all()
            else ""
        )
        out.append(
            f"Answered once more alone on the same engine, that request's time per token in its pass was "
            f"{_span(ratio, '{:.1f}')} times its time alone"
            + (f" ({_span(per_step, '{:.1f}')} tokens per step alone)" if len(per_step) else "")
            + cause
            + "."
        )
    # without the tail, against the prediction that assumes no empty slots (the schedule one places the tail)
    equal_slots = tails["predicted_speedup_busy"].fillna(tails["predicted_speedup"])
    rest = (tails["speedup_without_lone_tail"] / equal_slots).dropna()
    if len(rest):
        within = int(within_tolerance(rest).sum())
        out.append(
            f"Without each pass's lone last request, measured was {_span(rest, '{:.2f}')} times the prediction "
            f"with both passes' slots equally busy (within {TOLERANCE_TEXT} in {within} of {len(rest)})."
        )
    return out


def _lone_tail_by_repetition(have: pd.DataFrame) -> list[str]:
    """Where in the benchmarks the speculative lone tails fell: the first repetitions, or anywhere
    (warm-up repetitions, run and not counted, included in the order run). A tail bound to
    start-up is not the engine's steady state, and the untimed warm-up request does not remove it."""
    if "lone_tail_reps" not in have:
        return []
    runs = have.reindex(columns=["lone_tail_reps", "warmup_repetitions"]).dropna(subset=["lone_tail_reps"])
    placed = []  # (among the first repetitions, a warm-up, a notable tail) per repetition
    for reps, warm in runs.itertuples(index=False, name=None):
        warm = int(warm) if pd.notna(warm) else 0
        placed += [
            (i < EARLY_REPETITIONS, i < warm, share > LONE_TAIL_NOTABLE)
            for i, share in enumerate(reps)
            if share is not None
        ]
    tails = sum(tail for *_, tail in placed)
    if not tails:
        return []
    early = sum(first for first, *_ in placed)
    early_tails = sum(first and tail for first, _, tail in placed)
    out = (
        f"By repetition: the speculative pass's lone tail exceeded {LONE_TAIL_NOTABLE:.0%} of the pass in {tails} of "
        f"{len(placed)} repetitions"
    )
    if early == len(placed):  # nothing ran later to set them against
        return [
            out + f"; no benchmark ran more than {EARLY_REPETITIONS} repetitions, so whether they belong to its start "
            f"cannot be told."
        ]
    out += (
        f", {early_tails} of them in a benchmark's first {EARLY_REPETITIONS} repetitions (which are {early} of "
        f"the {len(placed)})"
    )
    p = placement_p(len(placed), early, tails, early_tails)
    out += f"; placed at random, at least that many would fall there with probability {p:.2g}"
    warmups = sum(warm for _, warm, _ in placed)
    if p < NOISE_ALPHA:
        out += ": a start-up effect that the untimed warm-up request does not remove, not the engine's steady state" + (
            ""
            if warmups
            else "; the range over repetitions and the rank test between styles include it "
            "(benchmark.warmup_repetitions runs repetitions first without counting them)"
        )
    out += "."
    if warmups:
        out += (
            f" {warmups} of the {len(placed)} were warm-up repetitions (benchmark.warmup_repetitions: run, "
            f"recorded, counted in nothing) and held {sum(warm and tail for _, warm, tail in placed)} of the "
            f"{tails} tails."
        )
    return [out]


def _schedulers(have: pd.DataFrame) -> list[str]:
    """Runs whose passes vLLM scheduled differently (`engine.async_scheduling: auto` leaves each
    engine its default: vLLM 0.26 overlaps scheduling for the target alone, not with a draft model)."""
    both = have.reindex(columns=["async_baseline", "async_speculative"]).dropna().astype(bool)
    split = both[both["async_baseline"] != both["async_speculative"]]
    if not len(split):
        return []
    ahead = (
        "baseline"
        if split["async_baseline"].all()
        else "speculative pass"
        if split["async_speculative"].all()
        else None
    )
    which = (
        f"for the {ahead} and not for the {'speculative pass' if ahead == 'baseline' else 'baseline'}"
        if ahead
        else "for one pass and not the other"
    )
    return [
        f"In {len(split)} of {len(both)} run(s) vLLM overlapped scheduling with the GPU (async scheduling) {which}, "
        f"each engine's default: r and the speed-up count that difference as part of speculating."
    ]


def _span(values: pd.Series, fmt: str) -> str:
    """'lo–hi' in `fmt`, or one figure when there is one value."""
    lo, hi = fmt.format(values.min()), fmt.format(values.max())
    return lo if lo == hi else f"{lo}–{hi}"


def _noise_and_crosscheck(have: pd.DataFrame) -> list[str]:
    """Identical outputs against the numerical floor, and the transformers cross-check."""
    return _noise_lines(have) + _crosscheck_lines(have)


def _noise_tests(have: pd.DataFrame) -> list[tuple]:
    """Per run with a numerical floor: (row, p alone, p Holm-adjusted over the runs tested, verdict)."""
    tested = analysis.ordered(have.dropna(subset=["identical_output_floor", "identical_output_share", "n"]))
    ps = [
        excess_mismatch_p(r["identical_output_share"], r["identical_output_floor"], int(r["n"]))
        for _, r in tested.iterrows()
    ]
    # one test per run: over many runs, one p under the level is what chance alone gives
    out = []
    for (_, r), p, p_all in zip(tested.iterrows(), ps, holm(ps)):
        over = f"; {p_all:.2f} over the {len(ps)} runs tested, Holm" if len(ps) > 1 else ""
        verdict = (
            f"a divergence beyond numerical noise (p = {p:.3f}{over})."
            if p_all < NOISE_ALPHA
            else f"more than the floor in this run alone (p = {p:.3f}), not over the {len(ps)} runs tested (Holm-adjusted "
            f"p = {p_all:.2f}): one such run among them is what chance gives."
            if p < NOISE_ALPHA
            else "within the floor: numerical noise, not a real divergence."
            if r["identical_output_share"] >= r["identical_output_floor"]
            else f"below it by no more than chance (p = {p:.2f}): numerical noise, not a real divergence."
        )
        out.append((r, p, p_all, verdict))
    return out


def _noise_lines(have: pd.DataFrame) -> list[str]:
    return [
        f"{r['scenario']}/{r['style']}: speculative outputs equal the baseline's for "
        f"{_pct(r['identical_output_share'])} of prompts; the baseline equals itself under other batching for "
        f"{_pct(r['identical_output_floor'])} (the numerical floor) — " + verdict
        for r, _, _, verdict in _noise_tests(have)
    ]


def _crosscheck_lines(have: pd.DataFrame) -> list[str]:
    out = []
    for _, r in analysis.ordered(have.dropna(subset=["crosscheck_acceptance"])).iterrows():
        vllm = r["crosscheck_acceptance_vllm"] if not pd.isna(r["crosscheck_acceptance_vllm"]) else r["acceptance_rate"]
        on = (
            f" on the same {int(r['crosscheck_n'])} prompts"
            if not pd.isna(r["crosscheck_n"]) and not pd.isna(r["crosscheck_acceptance_vllm"])
            else ""
        )
        out.append(
            f"{r['scenario']}/{r['style']}: transformers' assisted generation counted {_pct(r['crosscheck_acceptance'])} "
            f"acceptance against vLLM's {_pct(vllm)}{on}."
        )
    return out


def _run_label(r) -> str:
    label = f"{r['scenario']} · {NAMES.get(r['style'], r['style'])}"
    if r.get("replicate") and r["replicate"] > 0:
        label += f" (training {int(r['replicate']) + 1})"
    return label + ("" if r["source"] == WORKBOOK else f" ({r['source']})")


def _count(x) -> str:
    return "–" if x is None or pd.isna(x) else f"{int(x)}"


EAGLE3_HEADING = "EAGLE-3 head beside the draft model"


def _eagle3_lines(have: pd.DataFrame) -> list[str]:
    """Per scenario where both styles have a head: does CoD raise the head's acceptance, and by
    how much against what it does for the draft model (first trainings; none without heads)."""
    table = analysis.table_eagle3(have)
    lines = []
    for (scenario, source), r in table.iterrows():
        head, draft = r.get("CoD − CoT head acceptance (pts)"), r.get("CoD − CoT draft acceptance (pts)")
        where = scenario if source == WORKBOOK else f"{scenario} ({source})"
        if head is None or pd.isna(head):  # one style has a head: what it measured, no comparison yet
            lines += [
                f"{where}, {s}: the EAGLE-3 head's acceptance {_pct(r[f'{s} head acceptance'])} against the "
                f"draft model's {_pct(r[f'{s} draft acceptance'])}; speed-up {r[f'{s} head speed-up']:.2f}x against "
                f"{r[f'{s} draft speed-up']:.2f}x (one pass: no interval); CoD against CoT needs a head for both."
                for s in TRAINED_STYLES
                if not pd.isna(r.get(f"{s} head acceptance"))
            ]
            continue
        ratio = r.get("head's CoD gain over the draft's")
        lines.append(
            f"{where}: CoD {'raised' if head > 0 else 'did not raise'} the EAGLE-3 head's acceptance "
            f"({_pct(r['cot head acceptance'])} with CoT, {_pct(r['cod head acceptance'])} with CoD: {head:+.1f} pts), "
            f"against {draft:+.1f} pts for the draft model ({_pct(r['cot draft acceptance'])} to "
            f"{_pct(r['cod draft acceptance'])})"
            + (f", {ratio:.2f}x the draft model's change" if not pd.isna(ratio) else "")
            + f"; speed-up with the head {r['cot head speed-up']:.2f}x (CoT) and {r['cod head speed-up']:.2f}x (CoD), "
            f"with the draft model {r['cot draft speed-up']:.2f}x and {r['cod draft speed-up']:.2f}x "
            "(one pass each: no interval)."
        )
    return lines


def _eagle3_table(have: pd.DataFrame) -> dict | None:
    table = analysis.table_eagle3(have)
    if table.empty:
        return None
    fmt = {"acceptance": _pct, "speed-up": lambda x: f"{x:.2f}x", "(pts)": lambda x: f"{x:+.1f}"}
    cell = lambda col, x: "–" if pd.isna(x) else next((f(x) for k, f in fmt.items() if k in col), f"{x:.2f}")
    return {
        "columns": ["scenario", *table.columns],
        "rows": [[scenario, *(cell(c, r[c]) for c in table.columns)] for (scenario, _), r in table.iterrows()],
    }


def _lossless_table(have: pd.DataFrame) -> dict | None:
    """Per run, what speculation did to its answers: the paired accuracy change, prompts turned
    right and wrong, identical outputs against the numerical floor and that test's verdict."""
    tested = {(r["source"], r["run"]): (p, p_all) for r, p, p_all, _ in _noise_tests(have)}
    rows = []
    for _, r in analysis.ordered(have).iterrows():
        if pd.isna(r.get("spec_accuracy_delta")) and pd.isna(r.get("identical_output_share")):
            continue
        p = tested.get((r["source"], r["run"]))
        if p is None:
            verdict = "–"
        else:
            verdict = (
                (
                    "beyond noise"
                    if p[1] < NOISE_ALPHA
                    else "this run alone, not over all"
                    if p[0] < NOISE_ALPHA
                    else "within noise"
                )
                + f" (p {p[0]:.2f}"
                + (f", Holm {p[1]:.2f})" if len(tested) > 1 else ")")
            )
        change = (
            "–"
            if pd.isna(r.get("spec_accuracy_delta"))
            else f"{pts(r['spec_accuracy_delta'])} pts"
            + _interval(r["spec_accuracy_delta_lo"], r["spec_accuracy_delta_hi"], pts)
        )
        rows.append(
            [
                _run_label(r),
                _count(r.get("n_paired")),
                _count(r.get("n_gained")),
                _count(r.get("n_lost")),
                change,
                _pct(r.get("identical_output_share")),
                _pct(r.get("identical_output_floor")),
                verdict,
            ]
        )
    if not rows:
        return None
    return {
        "columns": [
            "run",
            "prompts",
            "turned right",
            "turned wrong",
            "accuracy change [95 %]",
            "identical outputs",
            "numerical floor",
            "identical vs floor",
        ],
        "rows": rows,
    }


def _lossless_summary(have: pd.DataFrame) -> str:
    moved = have.dropna(subset=["n_paired"])
    changed = moved[(moved["n_gained"] > 0) | (moved["n_lost"] > 0)]
    tests = _noise_tests(have)
    beyond = [r["run"] for r, _, p_all, _ in tests if p_all < NOISE_ALPHA]
    parts = []
    if len(moved):
        parts.append(
            f"speculation changed whether an answer was right in {len(changed)} of {len(moved)} run(s)"
            + (
                f", at most {int(max(changed['n_gained'].max(), changed['n_lost'].max()))} prompt(s) each way"
                if len(changed)
                else ""
            )
        )
    if tests:
        parts.append(
            f"outputs diverged beyond the numerical floor in {len(beyond)} of {len(tests)} run(s) tested"
            + (f" ({', '.join(beyond)})" if beyond else "")
        )
    return (
        ("Speculation should not change the answers (it is lossless up to numerical noise): " + "; ".join(parts) + ".")
        if parts
        else ""
    )


def _crosscheck_table(have: pd.DataFrame) -> dict | None:
    cc = analysis.ordered(have.dropna(subset=["crosscheck_acceptance"]))
    if not len(cc):
        return None
    rows = [
        [
            _run_label(r),
            _count(r.get("crosscheck_n")),
            _pct(r["crosscheck_acceptance"]),
            _pct(
                r["crosscheck_acceptance_vllm"]
                if not pd.isna(r["crosscheck_acceptance_vllm"])
                else r["acceptance_rate"]
            ),
        ]
        for _, r in cc.iterrows()
    ]
    return {"columns": ["run", "prompts", "transformers' acceptance", "vLLM's acceptance"], "rows": rows}


def _crosscheck_summary(have: pd.DataFrame) -> str:
    cc = have.dropna(subset=["crosscheck_acceptance"])
    if not len(cc):
        return ""
    vllm = cc["crosscheck_acceptance_vllm"].fillna(cc["acceptance_rate"])
    gap = (cc["crosscheck_acceptance"] - vllm).abs().dropna()
    return f"transformers' assisted generation counted acceptance on the same prompts as vLLM in {len(cc)} run(s)" + (
        f"; they differ by {_span(gap * 100, '{:.1f}')} points." if len(gap) else "."
    )


def _intervals_said(methods: set) -> list[str]:
    out = []
    for m in sorted(methods):
        out.append(f"Acceptance intervals are 95% {m}: {analysis.CI_CAVEAT.get(m, '')}.")
    if methods:
        out.append(
            "Speed-up intervals are the benchmark's 95% paired bootstrap over prompts of the per-request "
            "latency ratio (sum of baseline over sum of speculative latencies)."
        )
    return out


def _external_notes(external: External | None) -> list[str]:
    """The external runs re-graded against the study's own grading, and rows skipped."""
    out = []
    regrade, study_col = analysis.regrade_table(external), "accuracy (study's is_correct)"
    for _, r in regrade.iterrows():
        out.append(
            f"{r['scenario']}/{r['style']} {r['pass']} ({r['source']}): re-graded accuracy {_pct(r['accuracy (re-graded)'])} "
            f"against the study's own {_pct(r[study_col])}; the study credited "
            f"{r['credited by study only']} output(s) the workbook's checker does not "
            f"({r['no explicit final answer']} of {r['n']} have no explicit final answer)."
        )
    if external is not None and len(external.bad):
        out.append(f"External CSVs: {len(external.bad)} malformed row(s) skipped (listed in the analysis).")
    return out


def markdown(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines) or "- nothing measured yet."


def _clean(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def nested(table: pd.DataFrame) -> dict:
    """{source: {scenario: {column: value}}}; gaps are null."""
    out = {}
    for (scenario, source), row in table.iterrows():
        out.setdefault(source, {})[scenario] = {c: _clean(v) for c, v in row.items()}
    return out


def _records(frame: pd.DataFrame) -> list[dict]:
    flat = frame.reset_index(drop=list(frame.index.names) == [None])
    return [{k: _clean(v) for k, v in r.items()} for r in flat.to_dict("records")]


def figures(
    frame: pd.DataFrame, external: External | None = None, n_boot: int = 2000, seed: int = 0, read: dict | None = None
) -> dict:
    """What the notebook records: the three tables ({source: {scenario: {column: value}}},
    gaps null), per-run states and intervals, the external files read, and the findings."""
    wb = frame[frame["source"] == WORKBOOK]
    regrade = analysis.regrade_table(external)
    read = read or study(frame, external, n_boot, seed)  # `study`'s result, where the caller has it
    return {
        "runs": _records(
            frame[
                ["source", "style", "scenario", "run", "state", "error"]
                + (["replicate"] if "replicate" in frame else [])
            ]
        ),
        # CoD − CoT per scenario and quantity, across trainings and over prompts (`trainings.compare`)
        "trainings": _records(read["compared"]),
        "answer": read["answer"],  # the study's answer as a table (`answer.build`): what the pages open on
        "sections": read["sections"],  # the findings under headings, repeated per-run sentences as tables
        "runs_present": sorted(wb.loc[wb["present"], "run"]),
        "runs_missing": sorted(wb.loc[~wb["present"], "run"]),
        "runs_failed": sorted(wb.loc[wb["state"] == "failed", "run"]),
        "sources": sorted(frame["source"].unique(), key=source_rank),
        "speedup": nested(analysis.table_speedup(frame)),
        "accuracy": nested(analysis.table_accuracy(frame)),
        "tokens": nested(analysis.table_tokens(frame)),
        "columns": analysis.TABLE_COLUMNS,  # the tables' columns in the study's order (JSON keys are sorted)
        "intervals": _records(analysis.table_intervals(frame)),
        "external": {
            "files": _records(external.files) if external else [],
            "n_bad_rows": int(len(external.bad)) if external else 0,
            "bad_rows": _records(external.bad.head(100)) if external else [],
            "regrade": _records(regrade),
        },
        "findings": [line for section in read["sections"] for line in section["lines"]],
    }
