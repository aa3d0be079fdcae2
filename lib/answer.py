"""The study's answer as a table: per scenario, the untrained base pair, CoT and CoD side by
side for the five quantities the study compares, each with its interval, and CoD − CoT with the
interval that decided its verdict. `build` makes it (plain numbers, recorded by 07) from the
runs and the findings' verdicts; `cells`, `html` and `markdown` show it, and are all the index
page and a result set's README need (no pandas, no analysis imported for reading)."""

from __future__ import annotations

import html as _html
import math

from .formats import WORKBOOK, scenario_order

# (key, row label, the runs column, the interval's columns or None)
QUANTITIES = (
    ("accuracy", "held-out accuracy", "accuracy_baseline", "accuracy_baseline_ci95"),
    ("acceptance", "acceptance", "acceptance_rate", ("acceptance_lo", "acceptance_hi")),
    ("mean acceptance length", "mean acceptance length", "mean_acceptance_length", None),
    ("speed-up", "throughput speed-up", "speedup", ("speedup_lo", "speedup_hi")),
    ("tokens per answer", "tokens per answer", "tokens_per_answer", None),
)
STYLES = (("base", "base"), ("cot", "CoT"), ("cod", "CoD"))
HEADER = ["scenario", "quantity", "base", "CoT", "CoD", "CoD − CoT", "verdict (decided by)"]
LEGEND = (
    "A style's [ ]: its 95 % interval over prompts (speed-up: the range over repetitions); where a style "
    "has several trainings, the mean over them and [their range]. CoD − CoT [ ]: the interval named in the "
    "verdict column. Accuracy and acceptance in %, differences in percentage points (pts). "
    "Throughput speed-up: speculative over baseline output tokens per second."
)


def _num(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _style_cell(rows, column: str, bounds) -> dict | None:
    """One style's figure in a scenario: the run's value and interval, or with several trainings
    the mean over them and their range."""
    values = [v for v in (_num(r.get(column)) for r in rows) if v is not None]
    if not values:
        return None
    if len(values) > 1:
        return {
            "value": sum(values) / len(values),
            "lo": min(values),
            "hi": max(values),
            "trainings": len(values),
            "interval": "range over trainings",
        }
    r = rows[0]
    if isinstance(bounds, str):
        pair = r.get(bounds)
        lo, hi = (_num(pair[0]), _num(pair[1])) if isinstance(pair, (list, tuple)) and len(pair) == 2 else (None, None)
    elif bounds:
        lo, hi = _num(r.get(bounds[0])), _num(r.get(bounds[1]))
    else:
        lo = hi = None
    return {
        "value": values[0],
        "lo": lo,
        "hi": hi,
        "trainings": 1,
        "interval": "range over repetitions" if column == "speedup" else "95 % over prompts",
    }


def _verdict(delta, lo, hi) -> str:
    if lo is None or hi is None:
        return "no interval"
    if lo > 0 or hi < 0:
        return "CoD higher" if delta > 0 else "CoD lower"
    return "no clear difference"


def build(frame, decided: dict, compared) -> dict:
    """The answer's numbers: {"scenarios": [{"scenario", "trainings": {style: n}, "rows": [
    {"quantity", "label", "base"/"cot"/"cod": {value, lo, hi, trainings, interval} or None,
    "diff": {value, lo, hi} or None, "verdict", "by"}]}]}. `frame`: the analysis's runs (the
    workbook's own, present); `decided`: the findings' verdicts per (quantity, scenario) with the
    interval and test that decided them (accuracy, acceptance, speed-up); `compared`:
    `trainings.compare`, which gives the other two quantities their difference and interval."""
    have = frame[frame["present"] & (frame["source"] == WORKBOOK)]
    out = []
    for scenario in scenario_order(have["scenario"].unique()):
        here = have[have["scenario"] == scenario]
        if not len(here):
            continue
        by_style = {s: [r for _, r in here[here["style"] == s].sort_values("replicate").iterrows()] for s, _ in STYLES}
        rows = []
        for key, label, column, bounds in QUANTITIES:
            row = {
                "quantity": key,
                "label": label,
                **{s: _style_cell(by_style[s], column, bounds) if by_style[s] else None for s, _ in STYLES},
            }
            got = decided.get((key, scenario))
            if got is not None:
                row.update(
                    diff={"value": _num(got["delta"]), "lo": _num(got["lo"]), "hi": _num(got["hi"])},
                    verdict=got["verdict"],
                    by=got["by"],
                )
            else:
                c = (
                    compared[(compared["scenario"] == scenario) & (compared["quantity"] == key)]
                    if len(compared)
                    else []
                )
                if len(c):
                    c = c.iloc[0]
                    n = min(int(c["n_cot"]), int(c["n_cod"]))
                    lo, hi = _num(c["lo"]), _num(c["hi"])
                    row.update(
                        diff={"value": _num(c["delta"]), "lo": lo, "hi": hi},
                        verdict=_verdict(c["delta"], lo, hi),
                        by=f"95 % across {n} trainings each" if n > 1 else f"95 % over {c['unit']}",
                    )
                elif row["cot"] and row["cod"]:
                    row.update(
                        diff={"value": row["cod"]["value"] - row["cot"]["value"], "lo": None, "hi": None},
                        verdict="no interval",
                        by="no per-prompt figures",
                    )
                else:
                    row.update(diff=None, verdict="not compared", by="CoT and CoD not both measured")
            rows.append(row)
        out.append({"scenario": scenario, "trainings": {s: len(by_style[s]) for s, _ in STYLES}, "rows": rows})
    return {"scenarios": out}


# --- reading ---------------------------------------------------------------------------------


def quantity_text(key: str, x: float | None, diff: bool = False, bare: bool = False) -> str:
    """A value of one of `QUANTITIES` (`diff`: a difference of two) as the study's tables show
    it, at most four significant digits; `bare` without its unit; `–` for a gap."""
    if x is None or x != x:  # x != x: NaN
        return "–"
    if key in ("accuracy", "acceptance"):
        x *= 100
        return (f"{x:+.1f}" if diff else f"{x:.1f}") + ("" if bare else " pts" if diff else " %")
    if key == "speed-up":
        return (f"{x:+.2f}" if diff else f"{x:.2f}") + ("" if bare else "x")
    if key == "mean acceptance length":
        return f"{x:+.2f}" if diff else f"{x:.2f}"
    if abs(x) >= 9999.5:  # tokens per answer
        return f"{x / 1000:+.1f}k" if diff else f"{x / 1000:.1f}k"
    return f"{x:+.0f}" if diff else f"{x:.0f}"


def _cell(key: str, c: dict | None, diff: bool = False) -> str:
    if not c or c.get("value") is None:
        return "–"
    text = quantity_text(key, c["value"], diff)
    if c.get("lo") is not None and c.get("hi") is not None and c["lo"] != c["hi"]:  # one repetition: no spread
        text += f" [{quantity_text(key, c['lo'], diff, bare=True)}, {quantity_text(key, c['hi'], diff, bare=True)}]"
    return text


def cells(answer: dict) -> list[list[str]]:
    """The table's rows as text, `HEADER`'s columns (the scenario named on its first row)."""
    out = []
    for block in (answer or {}).get("scenarios", []):
        for i, r in enumerate(block["rows"]):
            verdict = r.get("verdict", "")
            out.append(
                [
                    block["scenario"] if i == 0 else "",
                    r["label"],
                    *(_cell(r["quantity"], r.get(s)) for s, _ in STYLES),
                    _cell(r["quantity"], r.get("diff"), diff=True),
                    f"{verdict} ({r['by']})" if r.get("by") else verdict,
                ]
            )
    return out


def trainings_line(answer: dict) -> str:
    """How many trainings the table rests on, per scenario and style."""
    parts = []
    for block in (answer or {}).get("scenarios", []):
        n = block["trainings"]
        parts.append(f"{block['scenario']}: " + ", ".join(f"{name} {n[s]}" for s, name in STYLES if n.get(s)))
    return "Trainings measured — " + "; ".join(parts) + "." if parts else ""


def html(answer: dict) -> str:
    """The answer table as HTML (the index page), or one line where nothing is measured."""
    rows = cells(answer)
    if not rows:
        return "<p class='answer-empty'>No run is measured yet: the answer table fills in as runs finish.</p>"
    head = "".join(f"<th>{_html.escape(h)}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(f"<td>{_html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f"<table class='answer'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"<p class='legend'>{_html.escape(trainings_line(answer))} {_html.escape(LEGEND)}</p>"
    )


def markdown(answer: dict) -> str:
    """The answer table as markdown (a notebook's results block, a result set's README)."""
    rows = cells(answer)
    if not rows:
        return "*No run is measured yet: the answer table fills in as runs finish.*"
    line = lambda cs: "| " + " | ".join(c.replace("|", "\\|") for c in cs) + " |"  # noqa: E731
    return "\n".join(
        [
            line(HEADER),
            line(["---", "---", "---:", "---:", "---:", "---:", "---"]),
            *map(line, rows),
            "",
            f"*{trainings_line(answer)} {LEGEND}*",
        ]
    )


# --- the findings under headings (`findings.study`'s sections) --------------------------------


def lead(figures: dict) -> list[str]:
    """The lines of the findings' "The answer" section (the first is the answer in one sentence),
    which the pages put above the table."""
    return [
        line
        for sec in figures.get("sections") or []
        if sec.get("heading") == "The answer"
        for line in sec.get("lines") or []
    ]


def _section_parts(section: dict) -> tuple[str, list[str], dict | None]:
    """(heading, the sentences to show, the table): where a section has a table, its per-run
    sentences are the table, and its one summary line says what the table shows."""
    table = section.get("table")
    if table and table.get("rows"):
        summary = section.get("summary") or ""
        return section["heading"], [summary] if summary else [], table
    return section["heading"], list(section.get("lines") or []), None


COLLAPSED = ("CoD against CoT",)  # the sentences behind the answer table: there for whoever checks them


def findings_markdown(sections: list[dict]) -> str:
    out = []
    for section in sections or []:
        heading, lines, table = _section_parts(section)
        out.append(f"### {heading}\n")
        out += [f"- {line}" for line in lines]
        if table:
            row = lambda cs: "| " + " | ".join(str(c).replace("|", "\\|") for c in cs) + " |"  # noqa: E731
            out += ["", row(table["columns"]), row(["---"] * len(table["columns"])), *map(row, table["rows"])]
        out.append("")
    return "\n".join(out) if out else "- nothing measured yet."


def findings_html(sections: list[dict]) -> str:
    out = []
    for section in sections or []:
        heading, lines, table = _section_parts(section)
        body = "<ul>" + "".join(f"<li>{_html.escape(line)}</li>" for line in lines) + "</ul>" if lines else ""
        if table:
            head = "".join(f"<th>{_html.escape(str(c))}</th>" for c in table["columns"])
            rows = "".join(
                "<tr>" + "".join(f"<td>{_html.escape(str(c))}</td>" for c in r) + "</tr>" for r in table["rows"]
            )
            body += f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        if heading in COLLAPSED:
            out.append(
                f"<details><summary><b>{_html.escape(heading)}</b> ({len(lines)} sentences behind the answer "
                f"table)</summary>{body}</details>"
            )
        else:
            out.append(f"<h3>{_html.escape(heading)}</h3>{body}")
    return "".join(out)
