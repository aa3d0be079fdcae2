"""CoD against CoT across trainings: with `grid.replicates` > 1 each trained (style, scenario)
is trained several times, each replicate answering the same held-out prompts. For each
scenario and each quantity the study compares, the CoD − CoT difference gets an interval that
resamples trainings and, within each, prompts (`stats.hierarchical_delta`; speed-up, which has
no per-prompt structure, resamples trainings and repetitions, `stats.replicate_delta`), beside
the interval over prompts alone and each style's spread between its replicates; the verdict
says which interval decided. With one replicate per style it is today's paired interval over
prompts, and says that training spread is not measured.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from . import answer
from .formats import WORKBOOK, scenario_order
from .stats import hierarchical_delta, replicate_delta

# the quantities the study compares, in its answer table's order (`answer.QUANTITIES`), shown as there
QUANTITIES = tuple(key for key, *_ in answer.QUANTITIES)
COLUMNS = [
    "scenario",
    "quantity",
    "trainings (CoT / CoD)",
    "CoT [range over trainings]",
    "CoD [range over trainings]",
    "CoD − CoT",
    "95% over prompts",
    "95% across trainings",
    "verdict",
]


def _measured(frame: pd.DataFrame, scenario: str, style: str) -> pd.DataFrame:
    rows = frame[
        frame["present"] & (frame["source"] == WORKBOOK) & (frame["scenario"] == scenario) & (frame["style"] == style)
    ]
    return rows.sort_values("replicate")


def _lists(rows: pd.DataFrame, ids: str, *columns: str) -> list[dict] | None:
    """Each replicate's per-prompt lists keyed by prompt id, or None if any replicate lacks them."""
    out = []
    for _, r in rows.iterrows():
        if not isinstance(r.get(ids), list) or not all(isinstance(r.get(c), list) for c in columns):
            return None
        out.append({c: dict(zip(r[ids], r[c])) for c in columns})
    return out


def _paired(cot: list[dict], cod: list[dict], column: str, common: list[str]) -> tuple[list, list]:
    return (
        [np.array([rep[column][i] for i in common]) for rep in cot],
        [np.array([rep[column][i] for i in common]) for rep in cod],
    )


def _common(reps: list[dict], column: str) -> list[str]:
    keys = [set(rep[column]) for rep in reps]
    return sorted(set.intersection(*keys)) if keys else []


def _compare(cot: pd.DataFrame, cod: pd.DataFrame, quantity: str, n_boot: int, seed: int) -> dict | None:
    """The hierarchical comparison of one quantity, or None where the per-prompt (or per
    repetition) figures it needs are not recorded for every replicate."""
    if quantity in ("accuracy", "tokens per answer"):
        column = "prompt_correct" if quantity == "accuracy" else "prompt_tokens"
        a, b = _lists(cot, "prompt_ids", column), _lists(cod, "prompt_ids", column)
        common = _common((a or []) + (b or []), column) if a and b else []
        if not common:
            return None
        first, second = _paired(a, b, column, common)
        return {**hierarchical_delta(first, second, n_boot, seed), "unit": "prompts"}
    if quantity in ("acceptance", "mean acceptance length"):
        cols = ("prompt_accepted_tokens", "prompt_draft_tokens")
        a, b = _lists(cot, "spec_prompt_ids", *cols), _lists(cod, "spec_prompt_ids", *cols)
        common = _common((a or []) + (b or []), cols[0]) if a and b else []
        if not common:
            return None
        ks = set(pd.concat([cot["k"], cod["k"]]).tolist())
        if quantity == "mean acceptance length" and len(ks) != 1:
            return None  # drafts per prompt are drafted tokens / K: one K for every run
        per = 1.0 if quantity == "acceptance" else float(ks.pop())
        # acceptance: accepted / drafted tokens; mean acceptance length − 1: accepted / drafts
        pairs = [
            [
                (np.array([rep[cols[0]][i] for i in common]), np.array([rep[cols[1]][i] for i in common]) / per)
                for rep in side
            ]
            for side in (a, b)
        ]
        out = {**hierarchical_delta(pairs[0], pairs[1], n_boot, seed, ratio=True), "unit": "prompts"}
        if quantity == "mean acceptance length":  # 1 + accepted per draft: the 1 cancels in the difference
            for side in ("first", "second"):
                out[side] = {
                    **out[side],
                    **{k: out[side][k] + 1 for k in ("value", "min", "max")},
                    "per_replicate": [v + 1 for v in out[side]["per_replicate"]],
                }
        return out
    reps = [
        [
            r["speedup_reps"] if isinstance(r["speedup_reps"], list) and r["speedup_reps"] else [r["speedup"]]
            for _, r in rows.iterrows()
        ]
        for rows in (cot, cod)
    ]
    if any(pd.isna(v) for side in reps for rep in side for v in rep):
        return None
    return {**replicate_delta(reps[0], reps[1], n_boot, seed), "unit": "repetitions"}


def compare(frame: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per (scenario, quantity) where both styles are measured: the numbers behind
    `table` (delta, lo, hi, within_lo, within_hi, each style's spread and replicates, verdict)."""
    rows = []
    frame = frame if "replicate" in frame else frame.assign(replicate=0)
    for scenario in scenario_order(frame["scenario"].unique()):
        cot, cod = _measured(frame, scenario, "cot"), _measured(frame, scenario, "cod")
        if not (len(cot) and len(cod)):
            continue
        for quantity in QUANTITIES:
            got = _compare(cot, cod, quantity, n_boot, seed)
            if got is None:
                continue
            rows.append(
                {
                    "scenario": scenario,
                    "quantity": quantity,
                    "delta": got["delta"],
                    "lo": got["lo"],
                    "hi": got["hi"],
                    "within_lo": got["within_lo"],
                    "within_hi": got["within_hi"],
                    "unit": got["unit"],
                    "cot": got["first"],
                    "cod": got["second"],
                    "n_cot": got["first"]["replicates"],
                    "n_cod": got["second"]["replicates"],
                    "verdict": got["verdict"],
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "scenario",
            "quantity",
            "delta",
            "lo",
            "hi",
            "within_lo",
            "within_hi",
            "unit",
            "cot",
            "cod",
            "n_cot",
            "n_cod",
            "verdict",
        ],
    )


def _shown(quantity: str):
    """How a value of `quantity`, and a difference of two, read (`answer.quantity_text`)."""
    return partial(answer.quantity_text, quantity), partial(answer.quantity_text, quantity, diff=True)


def table(compared: pd.DataFrame) -> pd.DataFrame:
    """`compare` for reading: every number formatted, each style's value with its range over
    trainings, the two intervals of the difference, and which decided."""
    out = []
    for _, r in compared.iterrows():
        value, diff = _shown(r["quantity"])

        def style(s: dict, value=value) -> str:
            return value(s["value"]) + (f" [{value(s['min'])}–{value(s['max'])}]" if s["replicates"] > 1 else "")

        out.append(
            {
                "scenario": r["scenario"],
                "quantity": r["quantity"],
                "trainings (CoT / CoD)": f"{r['n_cot']} / {r['n_cod']}",
                "CoT [range over trainings]": style(r["cot"]),
                "CoD [range over trainings]": style(r["cod"]),
                "CoD − CoT": diff(r["delta"]),
                "95% over prompts": f"[{diff(r['within_lo'])}, {diff(r['within_hi'])}]"
                + ("" if r["unit"] == "prompts" else " (repetitions)"),
                "95% across trainings": f"[{diff(r['lo'])}, {diff(r['hi'])}]",
                "verdict": r["verdict"],
            }
        )
    return pd.DataFrame(out, columns=COLUMNS).set_index(["scenario", "quantity"])


def counts(frame: pd.DataFrame) -> pd.DataFrame:
    """How many trainings each style has measured per scenario (the analysis's first screen)."""
    have = frame[frame["present"] & (frame["source"] == WORKBOOK)]
    if not len(have):
        return pd.DataFrame()
    return have.groupby(["scenario", "style"])["replicate"].nunique().unstack("style").fillna(0).astype(int)


def points(compared: pd.DataFrame) -> pd.DataFrame:
    """Each replicate's value per (scenario, quantity, style), long, for the replicate plot."""
    rows = []
    for _, r in compared.iterrows():
        for style in ("cot", "cod"):
            for i, v in enumerate(r[style]["per_replicate"]):
                rows.append(
                    {"scenario": r["scenario"], "quantity": r["quantity"], "style": style, "replicate": i, "value": v}
                )
    return pd.DataFrame(rows, columns=["scenario", "quantity", "style", "replicate", "value"])


def sentences(compared: pd.DataFrame) -> list[str]:
    """The findings' sentences: per scenario and quantity, the difference with both intervals."""
    out = []
    for _, r in compared.iterrows():
        value, diff = _shown(r["quantity"])
        spread = "; ".join(
            f"{name} {value(r[s]['value'])}"
            + (f" (trainings {value(r[s]['min'])}–{value(r[s]['max'])})" if r[s]["replicates"] > 1 else "")
            for s, name in (("cot", "CoT"), ("cod", "CoD"))
        )
        out.append(
            f"{r['scenario']}, {r['quantity']}, {r['n_cot']} + {r['n_cod']} training(s): CoD − CoT "
            f"{diff(r['delta'])}, 95% across trainings [{diff(r['lo'])}, {diff(r['hi'])}], over "
            f"{r['unit']} alone [{diff(r['within_lo'])}, {diff(r['within_hi'])}] — {r['verdict']} ({spread})."
        )
    return out
