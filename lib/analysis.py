"""Stage 7: every run of a profile in the study's three tables, plots and findings.

`collect` gathers one row per run — the workbook's own (style, scenario) grid from each run's
metrics, and runs produced elsewhere from their per-sample CSVs (`load_externals`), re-graded
with the workbook's answer checker. Runs without metrics are gaps (NaN), never errors. The
tables, interval estimates and findings are all computed from those rows; `figures` is what
the notebook records for tests and the comparison page.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import answers, io, params, record
from .benchmark import headline
from .paths import REPO, RunPaths, analysis_dir
from .formats import WORKBOOK, format_for, scenario_order, scenario_rank, source_rank, style_rank
from .styles import STYLES, TRAINED_STYLES

PASSES = ("baseline", "speculative")

# The original study's per-sample benchmark CSV (one row per prompt and pass).
STUDY_COLUMNS = (
    "run_id", "config_name", "question", "ground_truth", "prediction",
    "gt_extracted", "pred_extracted", "is_correct", "tokens",
)
# The workbook's own benchmark_samples.csv (benchmark.run), also accepted as an external input.
WORKBOOK_COLUMNS = ("run", "pass", "question", "ground_truth", "output", "output_tokens")

_STYLE_WORDS = {"cot": "cot", "cod": "cod", "base": "base", "untrained": "base", "vanilla": "base"}
_PASS_WORDS = {"baseline": "baseline", "speculative": "speculative", "spec": "speculative", "sd": "speculative"}

RUN_COLUMNS = [
    "source", "style", "scenario", "run", "state", "error", "present", "n",
    "accuracy_baseline", "accuracy_speculative", "accuracy_baseline_ci95", "accuracy_speculative_ci95",
    "acceptance_rate", "acceptance_lo", "acceptance_hi", "acceptance_ci_method", "mean_acceptance_length",
    "acceptance_by_pos", "k", "drafts", "draft_tokens", "accepted_tokens", "accepted_per_pos",
    "speedup", "speedup_latency", "speedup_latency_lo", "speedup_latency_hi", "predicted_speedup",
    "speedup_lo", "speedup_hi", "ceiling_speedup", "floor_speedup", "step_cost_r", "identical_output_floor",
    "tokens_per_answer", "tokens_per_answer_spec", "identical_output_share",
    "spec_accuracy_delta", "spec_accuracy_delta_lo", "spec_accuracy_delta_hi", "n_paired", "n_gained", "n_lost",
    "study_accuracy_baseline", "study_accuracy_speculative",
    "crosscheck_n", "crosscheck_acceptance", "crosscheck_acceptance_vllm", "k_sweep",
    "prompt_draft_tokens", "prompt_accepted_tokens",
]


def _num(value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return out


def _ci(pair) -> tuple[float, float]:
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
    rng = np.random.default_rng(seed)
    p_drafted, p_accepted = row.get("prompt_draft_tokens"), row.get("prompt_accepted_tokens")
    if isinstance(p_drafted, (list, tuple)) and len(p_drafted) and sum(p_drafted) > 0:
        d, a = np.asarray(p_drafted, dtype=float), np.asarray(p_accepted, dtype=float)
        idx = rng.integers(0, len(d), size=(n, len(d)))
        den = d[idx].sum(axis=1)
        return a[idx].sum(axis=1)[den > 0] / den[den > 0], PER_PROMPT
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


def _quantiles(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    if len(draws) == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(draws, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def paired_accuracy_delta(base: pd.DataFrame, spec: pd.DataFrame, key: str, n: int = 2000, seed: int = 0) -> dict:
    """Speculative minus baseline accuracy over the prompts both passes answered, with a
    95% paired bootstrap over prompts, and how many prompts turned right or wrong."""
    b = base.drop_duplicates(key).set_index(key)["correct"].astype(float)
    s = spec.drop_duplicates(key).set_index(key)["correct"].astype(float)
    both = b.index.intersection(s.index)
    if not len(both):
        return {}
    diff = (s.loc[both] - b.loc[both]).to_numpy()
    rng = np.random.default_rng(seed)
    draws = diff[rng.integers(0, len(diff), size=(n, len(diff)))].mean(axis=1)
    lo, hi = _quantiles(draws)
    return {
        "spec_accuracy_delta": float(diff.mean()), "spec_accuracy_delta_lo": lo, "spec_accuracy_delta_hi": hi,
        "n_paired": int(len(diff)), "n_gained": int((diff > 0).sum()), "n_lost": int((diff < 0).sum()),
    }


# --- the workbook's own runs ----------------------------------------------------------------
def _first(d: dict, *keys):
    for key in keys:
        if isinstance(d, dict) and d.get(key) is not None:
            return d[key]
    return None


def _crosscheck(metrics: dict) -> dict:
    """The transformers cross-check, where a run recorded one: its acceptance and vLLM's on
    the same prompts (optional; read defensively, its schema may grow)."""
    cc = metrics.get("crosscheck")
    if not isinstance(cc, dict):
        return {}
    tf, vl = cc.get("transformers"), cc.get("vllm")
    return {
        "crosscheck_n": cc.get("n"),
        "crosscheck_acceptance": _first(tf, "acceptance_rate") if isinstance(tf, dict) else _first(cc, "acceptance_rate"),
        "crosscheck_acceptance_vllm": _first(vl, "acceptance_rate") if isinstance(vl, dict) else None,
    }


def _headline(metrics: dict) -> dict:
    try:
        return dict(headline(metrics))
    except (KeyError, TypeError, ValueError):  # optional sections in a shape headline() does not expect
        return dict(headline({**metrics, "k_sweep": None, "crosscheck": None}))


def _metrics_row(metrics: dict) -> dict:
    row = _headline(metrics)
    base, spec_pass, comp = metrics["passes"]["baseline"], metrics["passes"]["speculative"], metrics["comparison"]
    spec = spec_pass.get("spec") or {}
    lo, hi = _ci(comp.get("speedup_latency_ci95"))
    row.update({
        "n": base.get("n"),
        "accuracy_baseline_ci95": _ci(base.get("accuracy_ci95")),
        "accuracy_speculative_ci95": _ci(spec_pass.get("accuracy_ci95")),
        "acceptance_by_pos": spec.get("acceptance_by_pos"),
        "accepted_per_pos": spec.get("accepted_per_pos"),
        "k": spec.get("k", metrics.get("k")),
        "drafts": spec.get("drafts"),
        "draft_tokens": spec.get("draft_tokens"),
        "accepted_tokens": spec.get("accepted_tokens"),
        "speedup_latency": comp.get("speedup_latency"),
        "speedup_latency_lo": lo,
        "speedup_latency_hi": hi,
        "tokens_per_answer_spec": spec_pass.get("output_tokens_mean"),
        "k_sweep": metrics.get("k_sweep"),
        **_crosscheck(metrics),
    })
    if row.get("spec_accuracy_delta") is None:
        row["spec_accuracy_delta"] = comp.get("accuracy_delta")
    return row


def _per_prompt_counts(spec: pd.DataFrame | None) -> dict:
    """Per-request drafted and accepted tokens of the speculative pass, where recorded."""
    cols = ("spec_draft_tokens", "spec_accepted_tokens")
    if spec is None or not set(cols) <= set(spec.columns) or spec[list(cols)].isna().any().any():
        return {}
    return {"prompt_draft_tokens": spec[cols[0]].astype(float).tolist(),
            "prompt_accepted_tokens": spec[cols[1]].astype(float).tolist()}


def _run_state(status: dict, name: str) -> tuple[str | None, str | None]:
    """'failed' (with the error) if any stage of the run failed, per the runner's status."""
    for stage, entry in sorted((status.get(name) or {}).items()):
        if entry.get("status") == "failed":
            return "failed", f"{stage}: {entry.get('error') or 'failed'}"
    return None, None


def _workbook_rows(profile: str, n_boot: int, seed: int) -> list[dict]:
    status = record.load_status(profile)
    rows = []
    for scenario in scenario_order():
        for style in STYLES:
            rp = RunPaths(profile, style, scenario)
            row = {"source": WORKBOOK, "style": style, "scenario": scenario, "run": rp.name}
            failed, error = _run_state(status, rp.name)
            if rp.metrics_json.exists():
                try:
                    row.update(_metrics_row(io.read_json(rp.metrics_json)))
                    row["state"] = "measured"
                except Exception as exc:  # an unreadable or older-schema metrics file is a gap, said so
                    row.update(state="unreadable", error=f"{rp.metrics_json.name}: {type(exc).__name__}: {exc}")
                if row["state"] == "measured" and rp.samples_csv.exists():
                    try:
                        samples = pd.read_csv(rp.samples_csv)
                        by_pass = {p: g for p, g in samples.groupby("pass")}
                        if set(PASSES) <= set(by_pass):
                            row.update(paired_accuracy_delta(by_pass["baseline"], by_pass["speculative"], "id", n_boot, seed))
                        row.update(_per_prompt_counts(by_pass.get("speculative")))
                    except Exception as exc:
                        row["error"] = f"{rp.samples_csv.name}: {type(exc).__name__}: {exc}"
            else:
                row.update(state=failed or "missing", error=error)
            rows.append(row)
    return rows


# --- external runs (per-sample CSVs produced elsewhere) --------------------------------------
@dataclass
class External:
    """Per-sample rows of CSVs from elsewhere, re-graded; what was read and what was skipped."""

    samples: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=[
        "source", "file", "line", "style", "scenario", "pass", "question", "key", "gold",
        "pred", "extraction", "correct", "study_correct", "tokens"]))
    files: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=[
        "source", "file", "schema", "rows", "used", "skipped", "pass_assumed"]))
    bad: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["source", "file", "line", "reason", "raw"]))

    def __bool__(self) -> bool:
        return len(self.files) > 0


def external_dir(profile: str) -> Path:
    """Drop per-sample CSVs here and the analysis picks them up without parameters."""
    return analysis_dir(profile) / "external"


def parse_config(name: str) -> dict:
    """Style, scenario and pass named in a config or file name, e.g.
    `cod_easy_benchmark_baseline` -> {style: cod, scenario: easy, pass: baseline}."""
    words = [w for w in re.split(r"[^a-z0-9]+", str(name).lower()) if w]
    scenarios = set(scenario_order())
    out = {}
    for w in words:
        if w in _STYLE_WORDS and "style" not in out:
            out["style"] = _STYLE_WORDS[w]
        elif w in scenarios and "scenario" not in out:
            out["scenario"] = w
        elif w in _PASS_WORDS and "pass" not in out:
            out["pass"] = _PASS_WORDS[w]
    return out


def _gold(ground_truth: str, gt_extracted: str) -> str | None:
    """The final answer of the reference solution (`#### x` or `\\boxed{x}`), the reference
    itself where it is already a bare answer, else the study's own extraction."""
    from .teachers.reference import final_answer_from_reference

    text = (ground_truth or "").strip()
    if text:
        try:
            return final_answer_from_reference(text)
        except ValueError:
            return text
    return (gt_extracted or "").strip() or None


def _truthy(value) -> bool | None:
    v = str(value).strip().lower()
    if v in ("true", "1", "yes", "1.0"):
        return True
    if v in ("false", "0", "no", "0.0"):
        return False
    return None


def _resolve_path(path) -> Path:
    p = Path(str(path)).expanduser()
    return p if p.is_absolute() or p.exists() else (REPO / p if (REPO / p).exists() else p)


def read_external(spec, mapping: dict | None = None) -> tuple[list[dict], list[dict], dict]:
    """Read and re-grade one per-sample CSV.

    `spec` is a path, or a dict {path, label?, style?, scenario?, pass?} whose fields win over
    what the names say. Style, scenario and pass are otherwise taken from `mapping[config_name]`,
    then from the config name, the run id and the file name (pass defaults to baseline, and
    the file summary says so). Each output is graded again with `answers.grade` against the
    reference's final answer: the study's `is_correct` is kept only for comparison (its
    grader credited cut-off outputs). A missing column is an error naming the missing and
    the expected columns; a malformed row is recorded with its line and reason and skipped.
    """
    spec = {"path": spec} if not isinstance(spec, dict) else dict(spec)
    if "path" not in spec:
        raise ValueError(f"external CSV entry {spec!r} has no 'path'")
    path = _resolve_path(spec["path"])
    if not path.exists():
        raise FileNotFoundError(f"external CSV not found: {spec['path']}")
    label = str(spec.get("label") or path.stem)
    source = f"external:{label}"
    mapping = mapping or {}
    fixed = {k: spec[k] for k in ("style", "scenario", "pass") if spec.get(k)}
    from_file = parse_config(path.stem)
    samples, bad, assumed = [], [], 0
    csv.field_size_limit(1 << 30)
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        if set(WORKBOOK_COLUMNS) <= set(header) and "config_name" not in header:
            schema = "workbook"
        else:
            schema = "study"
            missing = [c for c in STUDY_COLUMNS if c not in header]
            if missing:
                raise ValueError(
                    f"{path.name}: missing column(s) {', '.join(missing)}; expected the study's per-sample "
                    f"columns: {', '.join(STUDY_COLUMNS)} (or the workbook's benchmark_samples.csv columns: "
                    f"{', '.join(WORKBOOK_COLUMNS)}); found: {', '.join(header) or 'none'}"
                )
        col = {name: i for i, name in enumerate(header)}
        while True:
            start = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                bad.append({"source": source, "file": path.name, "line": start, "reason": f"unreadable CSV: {exc}", "raw": ""})
                continue
            if not fields or all(not f.strip() for f in fields):
                continue
            raw = ",".join(fields)[:200]

            def skip(reason: str) -> None:
                bad.append({"source": source, "file": path.name, "line": start, "reason": reason, "raw": raw})

            if len(fields) != len(header):
                skip(f"{len(fields)} fields, expected {len(header)}")
                continue
            rec = {name: fields[i] for name, i in col.items()}
            if schema == "study":
                name, output, tokens_raw = rec["config_name"].strip(), rec["prediction"], rec["tokens"]
                gold = _gold(rec["ground_truth"], rec["gt_extracted"])
                study_correct = _truthy(rec["is_correct"])
                names = [mapping.get(name) or {}, parse_config(name), parse_config(rec["run_id"]), from_file]
            else:
                name, output, tokens_raw = rec["run"].strip(), rec["output"], rec["output_tokens"]
                gold = _gold(rec["ground_truth"], "")
                study_correct = _truthy(rec.get("correct", ""))
                names = [mapping.get(name) or {}, {"pass": _PASS_WORDS.get(rec["pass"].strip().lower())}, parse_config(name), from_file]
            if not name:
                skip("empty config name" if schema == "study" else "empty run name")
                continue
            if gold is None:
                skip("no ground truth")
                continue
            try:
                tokens = float(tokens_raw)
                if not (tokens >= 0) or tokens != int(tokens):
                    raise ValueError
            except ValueError:
                skip(f"tokens {tokens_raw!r} is not a non-negative integer")
                continue
            meta = dict(fixed)
            for source_of_names in names:
                for k, v in (source_of_names or {}).items():
                    if v and k not in meta:
                        meta[k] = v
            if meta.get("style") not in STYLES:
                skip(f"{name!r} names no style ({', '.join(STYLES)}): give it in the entry or in external_map")
                continue
            if not meta.get("scenario"):
                skip(f"{name!r} names no scenario ({', '.join(scenario_order())}): give it in the entry or in external_map")
                continue
            if meta.get("pass") not in PASSES:
                meta["pass"] = "baseline"
                assumed += 1
            graded = answers.grade(output, gold)
            samples.append({
                "source": source, "file": path.name, "line": start, "style": meta["style"],
                "scenario": str(meta["scenario"]), "pass": meta["pass"], "question": rec["question"],
                "gold": gold, "pred": graded["pred"], "extraction": graded["method"],
                "correct": graded["correct"], "study_correct": study_correct, "tokens": int(tokens),
            })
    info = {"source": source, "file": path.name, "schema": schema, "rows": len(samples) + len(bad),
            "used": len(samples), "skipped": len(bad), "pass_assumed": assumed}
    return samples, bad, info


def load_externals(profile: str, csvs=(), mapping: dict | None = None, discover: bool = True) -> External:
    """Every external CSV: those given (paths or dicts, see `read_external`) and, with
    `discover`, every *.csv in `external_dir(profile)`."""
    specs = list(csvs or [])
    if discover and external_dir(profile).is_dir():
        given = {str(_resolve_path(s["path"] if isinstance(s, dict) else s).resolve()) for s in specs}
        specs += [str(p) for p in sorted(external_dir(profile).glob("*.csv")) if str(p.resolve()) not in given]
    out = External()
    samples, bad, files = [], [], []
    for spec in specs:
        s, b, info = read_external(spec, mapping)
        samples += s
        bad += b
        files.append(info)
    if files:
        labels = [f["source"] for f in files]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"two external CSVs share the label(s) {dupes}: give each entry a distinct 'label'")
        out.files = pd.DataFrame(files, columns=out.files.columns)
        out.bad = pd.DataFrame(bad, columns=out.bad.columns)
        if samples:
            frame = pd.DataFrame(samples)
            # Pair the two passes of a prompt: the question and its occurrence number.
            frame["key"] = frame["question"] + "\x00" + frame.groupby(
                ["source", "style", "scenario", "pass", "question"]).cumcount().astype(str)
            out.samples = frame[out.samples.columns]
    return out


def _external_rows(external: External | None, n_boot: int, seed: int) -> list[dict]:
    if external is None or not len(external.samples):
        return []
    rows = []
    for (source, style, scenario), g in external.samples.groupby(["source", "style", "scenario"], sort=False):
        by_pass = {p: x for p, x in g.groupby("pass")}
        row = {"source": source, "style": style, "scenario": scenario, "run": f"{source}/{style}_{scenario}",
               "state": "measured"}
        for p in PASSES:
            if p in by_pass:
                x = by_pass[p]
                correct = x["correct"].astype(float).to_numpy()
                rng = np.random.default_rng(seed)
                draws = correct[rng.integers(0, len(correct), size=(n_boot, len(correct)))].mean(axis=1)
                row[f"accuracy_{p}"] = float(correct.mean())
                row[f"accuracy_{p}_ci95"] = _quantiles(draws)
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
    for i, row in frame.iterrows():
        draws, method = acceptance_draws(row, n_boot, seed)
        if len(draws):
            frame.at[i, "acceptance_lo"], frame.at[i, "acceptance_hi"] = _quantiles(draws)
            frame.at[i, "acceptance_ci_method"] = method
    numeric = [c for c in RUN_COLUMNS if c not in (
        "source", "style", "scenario", "run", "state", "error", "present", "acceptance_ci_method", "acceptance_by_pos",
        "accepted_per_pos", "accuracy_baseline_ci95", "accuracy_speculative_ci95", "k_sweep",
        "prompt_draft_tokens", "prompt_accepted_tokens")]
    for col in numeric:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame[RUN_COLUMNS].reset_index(drop=True)


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
    """Rows (scenario, source); each column `label` the `field` of the run of `style`."""
    cells = {}
    for _, r in frame.iterrows():
        cells.setdefault((r["scenario"], r["source"]), {})[r["style"]] = r
    keys = sorted(cells, key=lambda k: (scenario_rank(k[0]), source_rank(k[1])))
    data = []
    for key in keys:
        by_style = cells[key]
        data.append({label: (by_style[style][fld] if style in by_style else None) for label, style, fld in spec})
    index = pd.MultiIndex.from_tuples(keys, names=["scenario", "source"]) if keys else pd.MultiIndex.from_tuples([], names=["scenario", "source"])
    out = pd.DataFrame(data, index=index, columns=[label for label, _, _ in spec])
    return out.apply(pd.to_numeric, errors="coerce") if numeric else out


# The study's three tables: (column, style, field of the run row), in the study's order.
TABLE_SPECS = {
    "speedup": [(f"{s} speed-up", s, "speedup") for s in TRAINED_STYLES]
    + [(f"{s} acceptance", s, "acceptance_rate") for s in TRAINED_STYLES],
    "accuracy": [("base (untrained)", "base", "accuracy_baseline")]
    + [c for s in TRAINED_STYLES for c in ((f"{s} baseline", s, "accuracy_baseline"), (f"{s} + spec", s, "accuracy_speculative"))],
    "tokens": [(f"{s} tokens", s, "tokens_per_answer") for s in STYLES],
}
TABLE_COLUMNS = {name: [c for c, _, _ in spec] for name, spec in TABLE_SPECS.items()}


def table_speedup(frame: pd.DataFrame) -> pd.DataFrame:
    """Study table 1: speed-up (throughput, as the study reports it) and acceptance per style."""
    return _table(frame, TABLE_SPECS["speedup"])


def table_accuracy(frame: pd.DataFrame) -> pd.DataFrame:
    """Study table 2: base untrained, CoT baseline/speculative, CoD baseline/speculative."""
    return _table(frame, TABLE_SPECS["accuracy"])


def table_tokens(frame: pd.DataFrame) -> pd.DataFrame:
    """Study table 3: output tokens per answer (baseline pass)."""
    return _table(frame, TABLE_SPECS["tokens"])


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in the study's order: source (workbook first), scenario, style."""
    order = [(source_rank(r.source), scenario_rank(r.scenario), style_rank(r.style)) for r in frame.itertuples()]
    return frame.iloc[sorted(range(len(frame)), key=lambda i: order[i])]


def table_intervals(frame: pd.DataFrame) -> pd.DataFrame:
    """Per measured run: acceptance and latency speed-up with their 95% intervals, the
    predicted speed-up, and what speculation did to accuracy (paired over prompts)."""
    cols = ["source", "scenario", "style", "acceptance_rate", "acceptance_lo", "acceptance_hi", "speedup",
            "speedup_latency", "speedup_latency_lo", "speedup_latency_hi", "predicted_speedup",
            "speedup_lo", "speedup_hi", "ceiling_speedup", "floor_speedup", "step_cost_r", "identical_output_floor",
            "spec_accuracy_delta", "spec_accuracy_delta_lo", "spec_accuracy_delta_hi", "n_paired", "n_gained", "n_lost",
            "identical_output_share", "acceptance_ci_method", "crosscheck_n", "crosscheck_acceptance_vllm",
            "crosscheck_acceptance"]
    return _ordered(frame[frame["present"]])[cols].set_index(["source", "scenario", "style"])


def intervals_display(frame: pd.DataFrame) -> pd.DataFrame:
    """`table_intervals` compactly, for reading: each estimate with its [95% interval]."""
    t = table_intervals(frame)

    def est(v, lo, hi, f):
        if pd.isna(v):
            return "–"
        return f(v) + ("" if pd.isna(lo) or pd.isna(hi) else f" [{f(lo)}, {f(hi)}]")

    x, pct = (lambda v: f"{v:.2f}x"), (lambda v: f"{v:.1%}")
    rows = []
    for key, r in t.iterrows():
        rows.append({
            "acceptance [95%]": est(r["acceptance_rate"], r["acceptance_lo"], r["acceptance_hi"], pct),
            "interval over": {PER_PROMPT: "prompts", PER_DRAFT: "drafts", PER_TOKEN: "tokens"}.get(r["acceptance_ci_method"], "–"),
            "speed-up, latency [95%]": est(r["speedup_latency"], r["speedup_latency_lo"], r["speedup_latency_hi"], x),
            "speed-up, throughput [range over repetitions]": est(r["speedup"], r["speedup_lo"], r["speedup_hi"], x),
            "predicted (acceptance by position, step cost r)": est(r["predicted_speedup"], None, None, x),
            "ceiling (all accepted)": est(r["ceiling_speedup"], None, None, x),
            "GPU floor": est(r["floor_speedup"], None, None, x),
            "identical outputs (floor)": "–" if pd.isna(r["identical_output_share"]) else
            f"{r['identical_output_share']:.0%}" + ("" if pd.isna(r["identical_output_floor"]) else f" ({r['identical_output_floor']:.0%})"),
            "accuracy change by speculation, points [95%]": est(r["spec_accuracy_delta"], r["spec_accuracy_delta_lo"],
                                                                 r["spec_accuracy_delta_hi"], _pts),
            "prompts turned right / wrong": "–" if pd.isna(r["n_paired"]) else f"{int(r['n_gained'])} / {int(r['n_lost'])} of {int(r['n_paired'])}",
            "cross-check acceptance (transformers / vLLM)": "–" if pd.isna(r["crosscheck_acceptance"]) else
            f"{r['crosscheck_acceptance']:.1%} / " + ("–" if pd.isna(r["crosscheck_acceptance_vllm"]) else f"{r['crosscheck_acceptance_vllm']:.1%}"),
        })
    return pd.DataFrame(rows, index=t.index)


def regrade_table(external: External | None) -> pd.DataFrame:
    """Per external (source, style, scenario, pass): accuracy as the study graded it against
    the workbook's checker, and outputs the study credited that the workbook does not."""
    cols = ["source", "style", "scenario", "pass", "n", "accuracy (study's is_correct)", "accuracy (re-graded)",
            "credited by study only", "credited by workbook only", "no explicit final answer"]
    if external is None or not len(external.samples):
        return pd.DataFrame(columns=cols)
    rows = []
    for (source, style, scenario, p), g in external.samples.groupby(["source", "style", "scenario", "pass"], sort=False):
        study = g["study_correct"].map(lambda v: bool(v) if v is not None and v == v else None)
        known = study.dropna().astype(bool)
        corr = g["correct"].astype(bool)
        rows.append({
            "source": source, "style": style, "scenario": scenario, "pass": p, "n": len(g),
            "accuracy (study's is_correct)": float(known.mean()) if len(known) else float("nan"),
            "accuracy (re-graded)": float(corr.mean()),
            "credited by study only": int((known & ~corr.loc[known.index]).sum()),
            "credited by workbook only": int((~known & corr.loc[known.index]).sum()),
            "no explicit final answer": int((~g["extraction"].isin(answers.CREDITED_METHODS)).sum()),
        })
    return pd.DataFrame(rows, columns=cols)


# --- long frames for the plots -----------------------------------------------------------------
def acceptance_positions(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in frame[frame["present"]].iterrows():
        by_pos = r.get("acceptance_by_pos")
        for pos, value in enumerate(by_pos if isinstance(by_pos, (list, tuple)) else [], 1):
            rows.append({"source": r["source"], "style": r["style"], "scenario": r["scenario"], "position": pos, "acceptance": value})
    return pd.DataFrame(rows, columns=["source", "style", "scenario", "position", "acceptance"])


def accuracy_long(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, pass) with accuracy and its 95% interval (bootstrap over prompts)."""
    rows = []
    for _, r in frame[frame["present"]].iterrows():
        for p in PASSES:
            acc = r[f"accuracy_{p}"]
            if pd.isna(acc) or (r["style"] == "base" and p == "speculative"):
                continue
            lo, hi = _ci(r[f"accuracy_{p}_ci95"])
            label = "base (untrained)" if r["style"] == "base" else f"{r['style']} {'baseline' if p == 'baseline' else '+ spec'}"
            rows.append({"source": r["source"], "scenario": r["scenario"], "config": label, "accuracy": acc, "lo": lo, "hi": hi})
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
            rows.append({
                "source": r["source"], "style": r["style"], "scenario": r["scenario"], "k": _num(item.get("k")),
                "acceptance": _num(_first(item, "acceptance_rate") or _first(spec, "acceptance_rate")),
                "speedup": _num(_first(item, "speedup", "speedup_throughput", "speedup_latency")
                                or _first(comp, "speedup_throughput", "speedup_latency")),
                "mean_acceptance_length": _num(_first(item, "mean_acceptance_length") or _first(spec, "mean_acceptance_length")),
            })
    out = pd.DataFrame(rows, columns=["source", "style", "scenario", "k", "acceptance", "speedup", "mean_acceptance_length"])
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


# --- findings, written from the numbers --------------------------------------------------------
def _pct(x) -> str:
    return "n/a" if x is None or pd.isna(x) else f"{x:.1%}"


def _pts(x) -> str:
    return "n/a" if x is None or pd.isna(x) else f"{x * 100:+.1f}"


def _interval(lo, hi, fmt) -> str:
    return "" if lo is None or pd.isna(lo) or pd.isna(hi) else f" [{fmt(lo)}, {fmt(hi)}]"


def findings(frame: pd.DataFrame, external: External | None = None, n_boot: int = 2000, seed: int = 0) -> list[str]:
    """Plain sentences written from the numbers (never typed in), each with the interval it
    rests on and what that interval is of."""
    out = []
    have = frame[frame["present"]]
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
            d_cot, m = acceptance_draws(cot, n_boot, seed)
            d_cod, _ = acceptance_draws(cod, n_boot, seed + 1)
            methods.update(x for x in (cot["acceptance_ci_method"], cod["acceptance_ci_method"]) if isinstance(x, str))
            diff = cod["acceptance_rate"] - cot["acceptance_rate"]
            lo, hi = _quantiles(d_cod - d_cot) if len(d_cot) and len(d_cod) else (float("nan"), float("nan"))
            winner, loser = ("CoD", "CoT") if diff > 0 else ("CoT", "CoD")
            compared += 1
            wins["cod" if diff > 0 else "cot"] += diff != 0
            verdict = ("the interval excludes zero" if (lo > 0 or hi < 0) else "the interval includes zero: no clear difference")
            out.append(
                f"{scenario}: {winner} had the higher acceptance — CoD {_pct(cod['acceptance_rate'])}"
                f"{_interval(cod['acceptance_lo'], cod['acceptance_hi'], _pct)} vs CoT {_pct(cot['acceptance_rate'])}"
                f"{_interval(cot['acceptance_lo'], cot['acceptance_hi'], _pct)}, {winner} ahead by "
                f"{abs(diff) * 100:.1f} points (CoD − CoT {_pts(diff)}{_interval(lo, hi, _pts)} points; {verdict})."
            )
        s_cot, s_cod = cot["speedup_latency"], cod["speedup_latency"]
        if not (pd.isna(s_cot) or pd.isna(s_cod)):
            overlap = not (cod["speedup_latency_lo"] > cot["speedup_latency_hi"] or cot["speedup_latency_lo"] > cod["speedup_latency_hi"])
            out.append(
                f"{scenario}: latency speed-up CoD {s_cod:.2f}x{_interval(cod['speedup_latency_lo'], cod['speedup_latency_hi'], lambda v: f'{v:.2f}x')}"
                f" vs CoT {s_cot:.2f}x{_interval(cot['speedup_latency_lo'], cot['speedup_latency_hi'], lambda v: f'{v:.2f}x')}"
                f" ({'intervals overlap' if overlap else 'intervals do not overlap'}); throughput speed-up CoD "
                f"{cod['speedup']:.2f}x vs CoT {cot['speedup']:.2f}x"
                + (" (one measurement per pass, no interval)." if pd.isna(cod["speedup_lo"]) or pd.isna(cot["speedup_lo"]) else
                   f" (range over repetitions CoD [{cod['speedup_lo']:.2f}, {cod['speedup_hi']:.2f}], "
                   f"CoT [{cot['speedup_lo']:.2f}, {cot['speedup_hi']:.2f}])."
                   )
            )
    if compared:
        lead = "CoD" if wins["cod"] >= wins["cot"] else "CoT"
        out.insert(0, f"Across the {compared} scenario(s) with both styles measured, {lead} had the higher acceptance in "
                      f"{max(wins.values())} of {compared}.")
    unchanged = []
    for _, r in _ordered(have).iterrows():
        where = f"{r['scenario']}/{r['style']}" + ("" if r["source"] == WORKBOOK else f" ({r['source']})")
        if not pd.isna(r["n_paired"]) and r["n_gained"] == 0 and r["n_lost"] == 0:
            unchanged.append(f"{where} ({int(r['n_paired'])} prompts)")
        elif not pd.isna(r["n_paired"]):
            lo, hi = r["spec_accuracy_delta_lo"], r["spec_accuracy_delta_hi"]
            moved = "speculation changed accuracy" if (lo > 0 or hi < 0) else "no evidence that speculation changed accuracy"
            ident = "" if pd.isna(r["identical_output_share"]) else f"; outputs identical to baseline for {r['identical_output_share']:.0%} of prompts"
            out.append(
                f"{where}: speculation moved accuracy by {_pts(r['spec_accuracy_delta'])} points"
                f"{_interval(lo, hi, _pts)} (95% paired bootstrap over {int(r['n_paired'])} prompts; "
                f"{int(r['n_gained'])} turned right, {int(r['n_lost'])} turned wrong{ident}) — {moved}."
            )
        elif not pd.isna(r["spec_accuracy_delta"]):
            out.append(f"{where}: speculation moved accuracy by {_pts(r['spec_accuracy_delta'])} points "
                       f"(no per-sample file to put an interval on it).")
    if unchanged:
        out.append("Speculation did not change whether any answer was right in: " + ", ".join(unchanged) + ".")
    ratio = have["speedup"] / have["predicted_speedup"]
    ratio = ratio.dropna()
    if len(ratio):
        within = int((abs(1 / ratio - 1) <= 0.2).sum())
        out.append(f"Measured throughput speed-up was {ratio.min():.2f}–{ratio.max():.2f} times the one predicted from "
                   f"acceptance by draft position and the measured step cost r, over {len(ratio)} run(s); within "
                   f"±20 % in {within} of {len(ratio)}.")
    capped = have.dropna(subset=["ceiling_speedup", "step_cost_r"])
    if len(capped):
        floor = capped["floor_speedup"].dropna()
        out.append(f"A speculative step cost {capped['step_cost_r'].min():.2f}–{capped['step_cost_r'].max():.2f} baseline "
                   f"steps (r), so even with every draft accepted the engine's ceiling is "
                   f"{capped['ceiling_speedup'].min():.2f}–{capped['ceiling_speedup'].max():.2f}x"
                   + (f"; at the GPU-busy floor of a step it would be {floor.min():.2f}–{floor.max():.2f}x." if len(floor) else
                      " (no GPU profile: no hardware floor)."))
    for _, r in _ordered(have.dropna(subset=["identical_output_floor", "identical_output_share"])).iterrows():
        beyond = r["identical_output_share"] < r["identical_output_floor"]
        out.append(f"{r['scenario']}/{r['style']}: speculative outputs equal the baseline's for "
                   f"{_pct(r['identical_output_share'])} of prompts; the baseline equals itself under other batching for "
                   f"{_pct(r['identical_output_floor'])} (the numerical floor) — "
                   + ("a divergence beyond numerical noise." if beyond else "within the floor: numerical noise, not a real divergence."))
    cc = have.dropna(subset=["crosscheck_acceptance"])
    for _, r in _ordered(cc).iterrows():
        vllm = r["crosscheck_acceptance_vllm"] if not pd.isna(r["crosscheck_acceptance_vllm"]) else r["acceptance_rate"]
        on = f" on the same {int(r['crosscheck_n'])} prompts" if not pd.isna(r["crosscheck_n"]) and not pd.isna(r["crosscheck_acceptance_vllm"]) else ""
        out.append(f"{r['scenario']}/{r['style']}: transformers' assisted generation counted {_pct(r['crosscheck_acceptance'])} "
                   f"acceptance against vLLM's {_pct(vllm)}{on}.")
    for m in sorted(methods):
        out.append(f"Acceptance intervals are 95% {m}: {CI_CAVEAT.get(m, '')}.")
    if methods:
        out.append("Speed-up intervals are the benchmark's 95% paired bootstrap over prompts of the per-request "
                   "latency ratio (sum of baseline over sum of speculative latencies).")
    regrade, study_col = regrade_table(external), "accuracy (study's is_correct)"
    for _, r in regrade.iterrows():
        out.append(
            f"{r['scenario']}/{r['style']} {r['pass']} ({r['source']}): re-graded accuracy {_pct(r['accuracy (re-graded)'])} "
            f"against the study's own {_pct(r[study_col])}; the study credited "
            f"{r['credited by study only']} output(s) the workbook's checker does not "
            f"({r['no explicit final answer']} of {r['n']} have no explicit final answer)."
        )
    if external is not None and len(external.bad):
        out.append(f"External CSVs: {len(external.bad)} malformed row(s) skipped (listed in the analysis).")
    missing = frame[~frame["present"] & (frame["source"] == WORKBOOK)]
    if len(missing):
        states = missing.groupby("state")["run"].apply(lambda s: ", ".join(s)).to_dict()
        out.append("Not measured: " + "; ".join(f"{k}: {v}" for k, v in sorted(states.items())) + ".")
    return out


def findings_markdown(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines) or "- nothing measured yet."


# --- display and the recorded figures ---------------------------------------------------------
def styled(table: pd.DataFrame):
    """A table for display: percentages, speed-ups as `1.53x`, gaps as `–`."""
    return table.style.format({c: format_for(c) for c in table.columns})


def _clean(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.bool_):
        return bool(value)
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


def figures(frame: pd.DataFrame, external: External | None = None, n_boot: int = 2000, seed: int = 0) -> dict:
    """What the notebook records: the three tables ({source: {scenario: {column: value}}},
    gaps null), per-run states and intervals, the external files read, and the findings."""
    wb = frame[frame["source"] == WORKBOOK]
    regrade = regrade_table(external)
    return {
        "runs": _records(frame[["source", "style", "scenario", "run", "state", "error"]]),
        "runs_present": sorted(wb.loc[wb["present"], "run"]),
        "runs_missing": sorted(wb.loc[~wb["present"], "run"]),
        "runs_failed": sorted(wb.loc[wb["state"] == "failed", "run"]),
        "sources": sorted(frame["source"].unique(), key=source_rank),
        "speedup": nested(table_speedup(frame)),
        "accuracy": nested(table_accuracy(frame)),
        "tokens": nested(table_tokens(frame)),
        "columns": TABLE_COLUMNS,  # the tables' columns in the study's order (JSON keys are sorted)
        "intervals": _records(table_intervals(frame)),
        "external": {
            "files": _records(external.files) if external else [],
            "n_bad_rows": int(len(external.bad)) if external else 0,
            "bad_rows": _records(external.bad.head(100)) if external else [],
            "regrade": _records(regrade),
        },
        "findings": findings(frame, external, n_boot, seed),
    }
