"""Stage 7: every run of a profile in the study's three tables, plots and findings."""

from __future__ import annotations

import pandas as pd

from . import io, params
from .benchmark import headline
from .paths import RunPaths
from .styles import STYLES


def collect(profile: str) -> pd.DataFrame:
    """One row per (style, scenario) of the profile; runs without metrics are gaps (NaN)."""
    rows = []
    for scenario in params.scenarios():
        for style in STYLES:
            rp = RunPaths(profile, style, scenario)
            row = {"style": style, "scenario": scenario, "run": rp.name, "present": rp.metrics_json.exists()}
            if row["present"]:
                metrics = io.read_json(rp.metrics_json)
                row.update(headline(metrics))
                spec = metrics["passes"]["speculative"]["spec"] or {}
                row["acceptance_by_pos"] = spec.get("acceptance_by_pos")
                row["speedup_latency"] = metrics["comparison"]["speedup_latency"]
                row["speedup_latency_ci95"] = metrics["comparison"]["speedup_latency_ci95"]
                row["tokens_per_answer_spec"] = metrics["passes"]["speculative"]["output_tokens_mean"]
            rows.append(row)
    return pd.DataFrame(rows)


def _pivot(frame: pd.DataFrame, value: str, styles) -> pd.DataFrame:
    sub = frame[frame["style"].isin(styles)]
    if value not in sub:
        sub = sub.assign(**{value: float("nan")})
    return sub.pivot(index="scenario", columns="style", values=value).reindex(columns=list(styles))


def table_speedup(frame: pd.DataFrame) -> pd.DataFrame:
    """Study table 1: speed-up and acceptance per style and scenario."""
    sp = _pivot(frame, "speedup", ("cot", "cod")).add_suffix(" speed-up")
    ac = _pivot(frame, "acceptance_rate", ("cot", "cod")).add_suffix(" acceptance")
    return pd.concat([sp, ac], axis=1)


def table_accuracy(frame: pd.DataFrame) -> pd.DataFrame:
    """Study table 2: base untrained, CoT baseline/speculative, CoD baseline/speculative."""
    base = _pivot(frame, "accuracy_baseline", ("base",)).rename(columns={"base": "base (untrained)"})
    cols = [base]
    for style in ("cot", "cod"):
        cols.append(_pivot(frame, "accuracy_baseline", (style,)).rename(columns={style: f"{style} baseline"}))
        cols.append(_pivot(frame, "accuracy_speculative", (style,)).rename(columns={style: f"{style} + spec"}))
    return pd.concat(cols, axis=1)


def table_tokens(frame: pd.DataFrame) -> pd.DataFrame:
    """Study table 3: output tokens per answer (baseline pass)."""
    return _pivot(frame, "tokens_per_answer", STYLES).add_suffix(" tokens")


def acceptance_positions(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in frame[frame["present"]].iterrows():
        for pos, value in enumerate(r.get("acceptance_by_pos") or [], 1):
            rows.append({"style": r["style"], "scenario": r["scenario"], "position": pos, "acceptance": value})
    return pd.DataFrame(rows, columns=["style", "scenario", "position", "acceptance"])


def findings(frame: pd.DataFrame) -> list[str]:
    """Plain sentences written from the numbers (never typed in)."""
    out = []
    have = frame[frame["present"]]
    for scenario in params.scenarios():
        pair = have[(have["scenario"] == scenario) & have["style"].isin(["cot", "cod"])].set_index("style")
        if not {"cot", "cod"} <= set(pair.index):
            out.append(f"{scenario}: CoT and CoD are not both measured yet.")
            continue
        a_cot, a_cod = pair.loc["cot", "acceptance_rate"], pair.loc["cod", "acceptance_rate"]
        s_cot, s_cod = pair.loc["cot", "speedup"], pair.loc["cod", "speedup"]
        winner = "CoD" if a_cod > a_cot else "CoT"
        out.append(
            f"{scenario}: {winner} had the higher acceptance ({a_cod:.1%} CoD vs {a_cot:.1%} CoT, "
            f"{abs(a_cod - a_cot) * 100:.1f} points); speed-up {s_cod:.2f}x CoD vs {s_cot:.2f}x CoT."
        )
        for style in ("cot", "cod"):
            delta = pair.loc[style, "accuracy_speculative"] - pair.loc[style, "accuracy_baseline"]
            out.append(
                f"{scenario}/{style}: speculation moved accuracy by {delta * 100:+.1f} points "
                f"(outputs identical to baseline for {pair.loc[style, 'identical_output_share']:.0%} of prompts)."
            )
    return out


def figures(frame: pd.DataFrame) -> dict:
    return {
        "runs_present": sorted(frame.loc[frame["present"], "run"]),
        "runs_missing": sorted(frame.loc[~frame["present"], "run"]),
        "speedup": table_speedup(frame).to_dict(),
        "accuracy": table_accuracy(frame).to_dict(),
        "tokens": table_tokens(frame).to_dict(),
        "findings": findings(frame),
    }
