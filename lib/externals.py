"""Runs produced elsewhere: per-sample CSVs (the original study's, or another workbook's
`benchmark_samples.csv`), read, named (style, scenario, pass) and re-graded with the
workbook's own grader; what was read and what was skipped, each with its file and line."""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import answers, io
from .benchmark import PASSES
from .formats import scenario_order
from .paths import REPO, analysis_dir
from .styles import STYLES

# The original study's per-sample benchmark CSV (one row per prompt and pass).
STUDY_COLUMNS = (
    "run_id",
    "config_name",
    "question",
    "ground_truth",
    "prediction",
    "gt_extracted",
    "pred_extracted",
    "is_correct",
    "tokens",
)
# The workbook's own benchmark_samples.csv (benchmark.run), also accepted as an external input.
WORKBOOK_COLUMNS = ("run", "pass", "question", "ground_truth", "output", "output_tokens")

_STYLE_WORDS = {"cot": "cot", "cod": "cod", "base": "base", "untrained": "base", "vanilla": "base"}
_PASS_WORDS = {"baseline": "baseline", "speculative": "speculative", "spec": "speculative", "sd": "speculative"}


@dataclass
class External:
    """Per-sample rows of CSVs from elsewhere, re-graded; what was read and what was skipped."""

    samples: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            columns=[
                "source",
                "file",
                "line",
                "style",
                "scenario",
                "pass",
                "question",
                "key",
                "gold",
                "pred",
                "extraction",
                "correct",
                "study_correct",
                "tokens",
            ]
        )
    )
    files: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            columns=["source", "file", "schema", "rows", "used", "skipped", "pass_assumed"]
        )
    )
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


def _schema(path: Path, header: list[str]) -> str:
    """ "workbook" (a benchmark_samples.csv) or "study"; a missing column is an error naming it."""
    if set(WORKBOOK_COLUMNS) <= set(header) and "config_name" not in header:
        return "workbook"
    missing = [c for c in STUDY_COLUMNS if c not in header]
    if missing:
        raise ValueError(
            f"{path.name}: missing column(s) {', '.join(missing)}; expected the study's per-sample "
            f"columns: {', '.join(STUDY_COLUMNS)} (or the workbook's benchmark_samples.csv columns: "
            f"{', '.join(WORKBOOK_COLUMNS)}); found: {', '.join(header) or 'none'}"
        )
    return "study"


def _sample(rec: dict, schema: str, fixed: dict, names_from: list[dict], mapping: dict) -> dict | str:
    """One row's re-graded sample, or the reason it is skipped."""
    if schema == "study":
        name, output, tokens_raw = rec["config_name"].strip(), rec["prediction"], rec["tokens"]
        gold = _gold(rec["ground_truth"], rec["gt_extracted"])
        study_correct = _truthy(rec["is_correct"])
        names = [mapping.get(name) or {}, parse_config(name), parse_config(rec["run_id"])] + names_from
    else:
        name, output, tokens_raw = rec["run"].strip(), rec["output"], rec["output_tokens"]
        gold = _gold(rec["ground_truth"], "")
        study_correct = _truthy(rec.get("correct", ""))
        names = [
            mapping.get(name) or {},
            {"pass": _PASS_WORDS.get(rec["pass"].strip().lower())},
            parse_config(name),
        ] + names_from
    if not name:
        return "empty config name" if schema == "study" else "empty run name"
    if gold is None:
        return "no ground truth"
    try:
        tokens = float(tokens_raw)
        if not 0 <= tokens < math.inf or tokens != int(tokens):  # NaN fails it; inf would overflow int()
            raise ValueError
    except ValueError:
        return f"tokens {tokens_raw!r} is not a non-negative integer"
    meta = dict(fixed)
    for source_of_names in names:
        for k, v in (source_of_names or {}).items():
            if v and k not in meta:
                meta[k] = v
    if meta.get("style") not in STYLES:
        return f"{name!r} names no style ({', '.join(STYLES)}): give it in the entry or in external_map"
    if not meta.get("scenario"):
        return f"{name!r} names no scenario ({', '.join(scenario_order())}): give it in the entry or in external_map"
    graded = answers.grade(output, gold)
    return {
        "style": meta["style"],
        "scenario": str(meta["scenario"]),
        "pass": meta.get("pass"),
        "question": rec["question"],
        "gold": gold,
        "pred": graded["pred"],
        "extraction": graded["method"],
        "correct": graded["correct"],
        "study_correct": study_correct,
        "tokens": int(tokens),
    }


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
    source = f"external:{spec.get('label') or path.stem}"
    fixed = {k: spec[k] for k in ("style", "scenario", "pass") if spec.get(k)}
    names_from = [parse_config(path.stem)]
    samples, bad, assumed = [], [], 0
    csv.field_size_limit(1 << 30)
    with io.named_decode_errors(path), open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        schema = _schema(path, header)
        while True:
            start = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                bad.append(
                    {"source": source, "file": path.name, "line": start, "reason": f"unreadable CSV: {exc}", "raw": ""}
                )
                continue
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                got = f"{len(fields)} fields, expected {len(header)}"
            else:
                got = _sample(dict(zip(header, fields)), schema, fixed, names_from, mapping or {})
            if isinstance(got, str):
                bad.append(
                    {"source": source, "file": path.name, "line": start, "reason": got, "raw": ",".join(fields)[:200]}
                )
                continue
            if got["pass"] not in PASSES:
                got["pass"] = "baseline"
                assumed += 1
            samples.append({"source": source, "file": path.name, "line": start, **got})
    info = {
        "source": source,
        "file": path.name,
        "schema": schema,
        "rows": len(samples) + len(bad),
        "used": len(samples),
        "skipped": len(bad),
        "pass_assumed": assumed,
    }
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
            frame["key"] = (
                frame["question"]
                + "\x00"
                + frame.groupby(["source", "style", "scenario", "pass", "question"]).cumcount().astype(str)
            )
            out.samples = frame[out.samples.columns]
    return out
