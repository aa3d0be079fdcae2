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
