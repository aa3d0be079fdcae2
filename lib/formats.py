"""How the study's rows are ordered and its numbers shown, shared by the analysis and the
report pages (so neither imports the other for it)."""

from __future__ import annotations

import math

import numpy as np

from . import params
from .problems import SCENARIOS  # the study's order; other scenarios follow, sorted
from .styles import STYLES

WORKBOOK = "workbook"  # the `source` of the workbook's own runs; external ones are "external:<label>"


def scenario_order(extra=()) -> list[str]:
    known = list(params.scenarios()) + [s for s in extra if isinstance(s, str)]
    first = [s for s in SCENARIOS if s in known]
    return first + sorted(set(known) - set(first))


def scenario_rank(name: str) -> tuple:
    return (SCENARIOS.index(name), "") if name in SCENARIOS else (len(SCENARIOS), str(name))


def source_rank(source: str) -> tuple:
    return (0, "") if source == WORKBOOK else (1, str(source))


def style_rank(style: str) -> int:
    return STYLES.index(style) if style in STYLES else len(STYLES)


def format_for(column: str):
    """How a table column is shown: speed-ups as `1.53x`, rates as percentages, counts as
    integers, gaps as `–`; anything not a number as it is."""
    c = str(column)
    if "speed-up" in c or "speedup" in c:
        spec = "{:.2f}x"
    elif "tokens" in c:
        spec = "{:.1f}"
    elif c in ("n", "n_paired", "n_gained", "n_lost", "crosscheck_n", "rows", "used", "skipped"):
        spec = "{:.0f}"
    elif any(w in c for w in ("acceptance", "accuracy", "baseline", "+ spec", "untrained", "share", "delta")):
        spec = "{:.1%}"
    else:
        spec = "{}"

    def fmt(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "–"
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            return v
        return spec.format(v)

    return fmt


def pts(x) -> str:
    """A difference of rates in percentage points, signed (`+3.2`); `n/a` for a gap."""
    return "n/a" if x is None or x != x else f"{x * 100:+.1f}"  # x != x: NaN of any float type


# --- a recorded figure or a table column, for a reader -------------------------------------
# Field names as words (`throughput_tok_s` -> "throughput (tokens/s)") and values with the digits
# they deserve: the notebooks' tables and the pages' results blocks alike (`label`, `show`, `readable`).
_WORDS = {
    "speedup": "speed-up",
    "ttft": "time to first token",
    "tpot": "time per output token",
    "ci95": "[95 %]",
    "tok": "tokens",
    "mb": "(MB)",
    "gpu": "GPU",
    "vllm": "vLLM",
    "r": "r",
    "n": "n",
    "k": "K",
    "lo": "low",
    "hi": "high",
    "sha": "hash",
    "pct": "%",
}


# columns of the cost table, each a speed-up or a share
_SPEEDUPS = (
    "measured",
    "predicted",
    "equal slots",
    "decode only",
    "ceiling",
    "gpu floor",
    "measured without it",
    "chosen speed-up",
)


def _kind(key: str) -> str:
    k = str(key).lower().rsplit(".", 1)[-1]
    if k.endswith("_ci95"):
        k = k[: -len("_ci95")]
    if k.endswith("tok_s") or k.endswith("tokens_per_s"):
        return "rate"
    if k.endswith("_mb"):
        return "mb"
    if k.endswith("_s") or k in ("seconds",):
        return "time"
    if "speedup" in k or "slowdown" in k or k.endswith("_x") or k in _SPEEDUPS:
        return "x"
    if any(
        w in k
        for w in (
            "accuracy",
            "acceptance_rate",
            "share",
            "acceptance_transformers",
            "acceptance_vllm",
            "lone tail",
            "identical_output",
            "fraction",
        )
    ) or k in ("acceptance", "gate"):
        return "pct"
    if (
        k
        in (
            "n",
            "k",
            "drafts",
            "draft_tokens",
            "accepted_tokens",
            "rows",
            "steps",
            "held_back_steps",
            "n_test",
            "n_train",
            "n_paired",
            "n_gained",
            "n_lost",
            "crosscheck_n",
            "epochs",
            "k_requested",
            "tokens",
        )
        or k.startswith("n_")
        or k.endswith("_count")
        or k.endswith("_tokens")
        and "per" not in k
    ):
        return "count"
    return "number"


def label(key: str) -> str:
    """A field name as words: `throughput_tok_s` -> "throughput (tokens/s)", `wall_s` -> "wall"."""
    k = str(key).rsplit(".", 1)[-1]
    kind = _kind(k)
    if kind == "rate":
        k = k.replace("tok_s", "").replace("tokens_per_s", "").rstrip("_") or "throughput"
        return " ".join(_WORDS.get(w, w) for w in k.split("_")) + " (tokens/s)"
    if kind == "time" and k.endswith("_s"):
        k = k[:-2]
    if kind == "time" and "_s_" in k:
        k = k.replace("_s_", "_")
    return " ".join(_WORDS.get(w, w) for w in k.split("_") if w)


def show(key: str, value) -> str:
    """A value as a reader wants it: 68.6 %, 1.32x, 412 ms / 2.31 s, 1,624 tokens/s, 4 significant digits."""
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float, np.floating)) or v is None for v in value)
    ):
        return "[" + ", ".join(show(key, v) for v in value) + "]"
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if not isinstance(value, (int, float, np.integer, np.floating)):
        return str(value)
    kind, v = _kind(key), float(value)
    if kind == "pct":
        return f"{v:.1%}"
    if kind == "x":
        return f"{v:.2f}x"
    if kind == "rate" or kind == "mb":
        return f"{v:,.0f}"
    if kind == "time":
        return f"{v * 1000:.1f} ms" if abs(v) < 1 else f"{v:.2f} s" if abs(v) < 600 else f"{v / 60:.1f} min"
    if kind == "count" or (isinstance(value, (int, np.integer))):
        return f"{v:,.0f}"
    return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"


def readable(table):
    """A table for reading: columns named in words, every value shown as `show` would (the frame
    itself is unchanged: plots and records keep the numbers)."""
    if table.shape[1] == 1 and all(isinstance(i, str) for i in table.index):  # one column of named figures
        column = table.columns[0]
        return table.assign(**{str(column): [show(i, v) for i, v in table[column].items()]}).rename(index=label)
    shown = table.copy()
    for column in shown.columns:
        shown[column] = [show(column, v) for v in shown[column]]
    shown.columns = [label(c) for c in shown.columns]
    if shown.index.name:
        shown.index.name = label(shown.index.name)
    return shown


class Nothing:
    """What a notebook shows for a table with no rows: one line saying so, not a row of headers."""

    def __init__(self, text: str):
        self.text = text

    def _repr_markdown_(self) -> str:
        return f"*{self.text}*"

    def __repr__(self) -> str:
        return self.text


def or_nothing(table, text: str):
    """`table` (a frame or its styler) where it has rows, else one line (`Nothing`)."""
    return table if len(getattr(table, "data", table)) else Nothing(text)
