"""Rendered notebooks (standalone HTML, figures embedded), the index page of a profile, and a
side-by-side comparison of two profiles (or two report folders)."""

from __future__ import annotations

import html
import math
import os
import re
import time
from pathlib import Path

from . import answer, io, params, record
from . import stages as stage_names
from .formats import format_for, label, scenario_order, scenario_rank, show, source_rank
from .paths import RunPaths, reports_root
from .styles import STYLES

# The lab template without what a report does not need from the network: require.js (only
# widgets use it) always, MathJax unless a markdown cell has math. A page then opens offline
# with nothing to fetch.
_TEMPLATE = "workbook_report.html.j2"
_TEMPLATE_SOURCE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- if resources.workbook_math -%}{{ super() }}{%- endif -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_css -%}<link rel="icon" href="data:,"><style>{{ resources.workbook_css }}</style>{%- endblock html_head_css -%}
"""
# Tables fit the page: cells wrap (long labels, paths, intervals) rather than widen the table.
_PAGE_CSS = (
    ".jp-RenderedHTMLCommon table{max-width:100%;table-layout:auto}"
    ".jp-RenderedHTMLCommon td,.jp-RenderedHTMLCommon th{white-space:normal;overflow-wrap:anywhere}"
)
_MATH = re.compile(r"\$[^$\n]+\$|\\\(|\\\[|\$\$")


def render_html(ipynb: Path, out_html: Path, hide_input: bool = False) -> Path:
    """A standalone HTML page of an executed notebook: images embedded, no code cells when
    `hide_input` (markdown and outputs stay)."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(ipynb), as_version=4)
    exporter = HTMLExporter(
        template_name="lab",
        template_file=_TEMPLATE,
        embed_images=True,
        exclude_input=hide_input,
        exclude_input_prompt=hide_input,
        exclude_output_prompt=hide_input,
        extra_loaders=[jinja2.DictLoader({_TEMPLATE: _TEMPLATE_SOURCE})],
    )
    summary = results_markdown(nb, Path(ipynb).stem)
    if summary:  # the page opens on what the stage found; the steps that found it follow
        nb.cells.insert(
            1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0, nbformat.v4.new_markdown_cell(summary)
        )
    math_used = any(c.cell_type == "markdown" and _MATH.search(c.source) for c in nb.cells)
    resources = {"workbook_math": math_used, "workbook_css": _PAGE_CSS, "metadata": {"name": Path(ipynb).stem}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return io.write_text(out_html, body)


_NOT_RESULTS = ("stage", "run", "finished_at", "ran_on", "settings")
_MAX_ROWS = 12
# A benchmark's figures a reader looks for first, in this order (the rest are a click away).
_HEADLINE = (
    "accuracy_baseline",
    "accuracy_speculative",
    "acceptance_rate",
    "mean_acceptance_length",
    "k",
    "speedup",
    "speedup_lo",
    "speedup_hi",
    "predicted_speedup",
    "tokens_per_answer",
    "identical_output_share",
    "identical_output_floor",
)


def results_markdown(nb, stage: str) -> str | None:
    """The stage's recorded figures as a table (and any findings as a list) for the top of its
    page; None unless this very execution wrote them: papermill's start and end times bracket
    the figures' `finished_at` and no cell raised, so a page never opens on an earlier
    attempt's numbers."""
    from datetime import datetime

    meta = nb.metadata.get("papermill") or {}
    given = meta.get("parameters") or {}
    if meta.get("exception") or not meta.get("start_time") or not meta.get("end_time") or "profile" not in given:
        return None
    profile = given["profile"]
    if stage in stage_names.PROFILE_STAGES:
        figures = record.load(profile, stage)
    elif "style" in given and "scenario" in given:
        figures = record.load(RunPaths(profile, given["style"], given["scenario"]), stage)
    else:
        return None
    start, end = (datetime.fromisoformat(meta[k]).timestamp() for k in ("start_time", "end_time"))
    if not figures or not start <= float(figures.get("finished_at") or 0) <= end + 1:
        return None
    head = f"## Results\n\n*What this execution recorded (`figures/{stage}.json`); the steps below produced it.*"
    if isinstance(figures.get("answer"), dict):  # the analysis: the study's answer first, its findings at the end
        return "\n\n".join(
            [
                head,
                *answer.lead(figures)[:1],
                answer.markdown(figures["answer"]),
                "*The findings under headings are at the end of the page; the plots and the study's "
                "three tables between.*",
            ]
        )
    notes = [n for n in figures.get("findings") or [] if isinstance(n, str)]
    if notes:  # an analysis recorded before the answer table: its findings are the results
        return head + "\n\n" + "\n".join(f"- {n}" for n in notes)
    rows = {}
    for key, value in record.flat({k: v for k, v in figures.items() if k not in _NOT_RESULTS}).items():
        if isinstance(value, bool) or isinstance(value, (int, float)) and not _missing(value):
            rows[key] = (label(key), show(key, value))
        elif isinstance(value, str) and value and "/" not in value:  # a path is where, not what
            rows[key] = (label(key), value)
    if not rows:
        return None
    first = [rows.pop(k) for k in _HEADLINE if k in rows] or [rows.pop(k) for k in list(rows)[:_MAX_ROWS]]
    table = "| figure | value |\n|---|---:|\n" + "\n".join(f"| {k} | {v.replace('|', '/')} |" for k, v in first)
    if rows:  # the rest a click away, named and formatted alike (HTML: markdown would end the block); all in the JSON
        cells = "".join(
            f"<tr><td>{html.escape(k)}</td><td style='text-align:right'>{html.escape(v)}</td></tr>"
            for k, v in rows.values()
        )
        table += (
            f"\n\n<details><summary>{len(rows)} more recorded figures</summary><table><tr><th>figure</th>"
            f"<th>value</th></tr>{cells}</table></details>"
        )
    return head + "\n\n" + table


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value, pct: bool = False) -> str:
    if _missing(value):
        return "–"
    if isinstance(value, float):
        return f"{value:.1%}" if pct else f"{value:.3g}"
    return html.escape(str(value))


def _fmt_x(value) -> str:
    return "–" if _missing(value) else f"{value:.2f}x"


def stage_state(entry: dict | None, rp, stage: str, cfg) -> tuple[str, str | None]:
    """A stage's state as the files behind it bear out: "running" only while its runner lives
    (else "interrupted"), "finished"/"cached" only while its record and outputs are whole
    (else "incomplete", saying what is missing)."""
    if not entry:
        return "missing", None
    state = entry.get("status") or "missing"
    if state == "running":
        since = time.strftime("%H:%M:%S", time.localtime(entry.get("started") or entry.get("at") or 0))
        if record.alive(entry):
            return "running", f"since {since}, PID {entry.get('pid')} on {entry.get('host')}"
        return "interrupted", f"started {since} by PID {entry.get('pid')}, which is gone: the stage did not finish"
    if state in ("finished", "cached") and stage not in stage_names.POST_STAGES:
        try:
            figures = record.load(rp, stage)
            missing = "its record is missing" if figures is None else record.outputs_missing(rp, stage, figures, cfg)
        except (OSError, ValueError) as exc:
            missing = f"unreadable: {exc}"
        if missing:
            return "incomplete", f"recorded {state}, but {missing}"
        # judged on the settings it records (a run made with --set is not stale for that)
        stale = record.current(rp, stage)
        if stale:
            return "outdated", f"recorded {state}, but not current: {stale}"
    return state, entry.get("error")


def run_state(entries: dict, stages, has_metrics: bool) -> tuple[str, str | None]:
    """A run's overall state from its stages' entries: failed (and the first error), running,
    interrupted or outdated (a stage no longer current), finished (every stage done), measured (metrics on disk but no stage
    recorded, e.g. copied from another machine), incomplete (some), or missing (none, and no
    metrics)."""
    for wanted in ("failed", "interrupted", "running", "outdated"):
        for stage in stages:
            e = entries.get(stage) or {}
            if e.get("status") == wanted:
                return wanted, f"{stage}: {e.get('error') or wanted}"
    done = [s for s in stages if (entries.get(s) or {}).get("status") in ("finished", "cached")]
    if len(done) == len(stages):
        return "finished", None
    if has_metrics and not entries:
        return "measured", "metrics on disk; the runner recorded no stage of this run"
    if done or has_metrics:
        return "incomplete", f"{len(done)} of {len(stages)} stages done"
    return "missing", None


def _grid_runs(profile: str, runs) -> list[tuple[str, str, int]]:
    """Every run of the profile's grid, each (style, scenario) followed by its replicates, then
    any other run asked for."""
    grid = [
        (style, scenario, r)
        for scenario in scenario_order()
        for style in STYLES
        for r in record.replicates_of(profile, style, scenario)
    ]
    asked = [tuple(r) + (0,) * (3 - len(r)) for r in (runs or [])]
    return grid + [r for r in asked if r not in grid]


def compare_pages(profile: str) -> list[Path]:
    """Comparison pages (see `compare`) that involve this profile."""
    root = reports_root(profile).parent
    slug = _slug(profile)
    return sorted(
        p
        for p in root.glob("compare_*_vs_*.html")
        if p.stem.startswith(f"compare_{slug}_vs_") or p.stem.endswith(f"_vs_{slug}")
    )


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1500px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.st{padding:1px 4px;border-radius:3px;margin-right:3px;white-space:nowrap;font-size:.9em}
.finished,.cached,.measured{background:#d4f4d4}.failed{background:#f8d0d0}.missing,.skipped{background:#eee}
.incomplete,.unreadable,.interrupted,.overridden,.outdated{background:#fff1c4}.running,.locked{background:#d8e8ff}.err{color:#900;font-family:monospace;font-size:.85em;white-space:pre-wrap}
td.stages{min-width:15em}.num{text-align:right;font-variant-numeric:tabular-nums}.stale{color:#999;text-decoration:line-through}.side{display:flex;gap:2em;flex-wrap:wrap}
.side>div{flex:1 1 560px;min-width:0;overflow-x:auto}.side table{font-size:.85em}.side td,.side th{padding:3px 5px}small{color:#666}
table.answer td{white-space:nowrap}table.answer td:last-child{white-space:normal}.legend{font-size:.85em;color:#555;max-width:95em}
table.runs{font-size:.9em;max-width:100%}table.runs td{overflow-wrap:break-word}table.runs td:first-child{white-space:nowrap}.stale-block{opacity:.6}
details{margin:.5em 0}"""


def _settings_cell(rp: RunPaths, stages) -> str:
    """ "profile" when every recorded stage of the run used the profile's settings; else the
    overrides (from the stages' records, whichever way they were run: runner, papermill, lab)."""
    overrides, unrecorded = {}, []
    for stage in stages:
        try:
            figures = record.load(rp, stage)
        except (OSError, ValueError):
            figures = None
        if figures is None:
            continue
        if "settings" not in figures:
            unrecorded.append(stage[:2])
            continue
        overrides.update(figures["settings"].get("overrides") or {})
    parts = []
    if overrides:
        text = ", ".join(f"{k}={v!r}" for k, v in sorted(overrides.items()))
        parts.append(
            f'<span class="st overridden" title="{html.escape(text)}">overrides</span> <small>{html.escape(text)}</small>'
        )
    if unrecorded:
        parts.append(f"<small>settings not recorded: {', '.join(unrecorded)}</small>")
    return " ".join(parts) or "<small>profile</small>"


def _run_numbers(rp: RunPaths) -> tuple[dict, str | None]:
    """The run's headline numbers from its metrics, or why they could not be read."""
    from .benchmark import headline

    nums, metrics_error = {}, None
    if rp.metrics_json.exists():
        try:
            metrics = io.read_json(rp.metrics_json)
            try:
                nums = headline(metrics)
            except (KeyError, TypeError, ValueError):  # optional sections in an unexpected shape
                nums = headline({**metrics, "k_sweep": None, "crosscheck": None})
            ci = metrics["comparison"].get("speedup_latency_ci95") or [None, None]
            nums["speedup_latency"] = metrics["comparison"].get("speedup_latency")
            nums["speedup_latency_ci"] = ci
        except Exception as exc:
            metrics_error = f"metrics.json unreadable: {type(exc).__name__}: {exc}"
    return nums, metrics_error


def _run_row(profile: str, style: str, scenario: str, replicate: int, status: dict, stages_of) -> str:
    """One run's row of the index: state, stage badges, settings and headline numbers."""
    rp = RunPaths(profile, style, scenario, replicate)
    cfg = params.resolve(profile, style, scenario, {"grid.replicates": replicate + 1} if replicate else None, replicate)
    head = stage_names.EAGLE3_STAGE in status.get(rp.name, {})  # a run given an EAGLE-3 head shows its stage
    stages = list(stages_of(style, replicate, head) if replicate or head else stages_of(style))
    entries, cells = {}, []
    for stage in stages:
        state, note = stage_state(status.get(rp.name, {}).get(stage), rp, stage, cfg)
        if state != "missing":
            entries[stage] = {"status": state, "error": note}
        html_file = rp.report_dir / f"{stage}.html"
        num = stage.split("_")[0]  # 05b for the EAGLE-3 head
        link = f'<a href="{rp.name}/{stage}.html">{num}</a>' if html_file.exists() else num
        title = html.escape(note or state)
        cells.append(f'<span class="st {state}" title="{title}">{link} {state}</span>')
    settings_html = _settings_cell(rp, stages)
    nums, metrics_error = _run_numbers(rp)
    state, why = run_state(entries, stages, bool(nums))
    if metrics_error:
        state, why = "failed" if state == "failed" else "incomplete", why or metrics_error
    # a stage's latest attempt did not finish: metrics on disk are an earlier attempt's, not current
    stale = bool(nums) and state in ("failed", "interrupted", "running", "outdated", "incomplete")
    if stale:
        why = f"{why}; the numbers shown are not current"
    num = '<td class="num stale" title="not current: see the run\'s state">' if stale else '<td class="num">'
    if state == "failed":
        why_html = f'<div class="err">{html.escape(why)}</div>'
    else:  # a note, not an alarm
        why_html = f"<div><small>{html.escape(why)}</small></div>" if why and state != "finished" else ""
    lat = nums.get("speedup_latency")
    ci = nums.get("speedup_latency_ci") or [None, None]
    lat_txt = _fmt_x(lat) + (f" <small>[{_fmt_x(ci[0])}, {_fmt_x(ci[1])}]</small>" if not _missing(ci[0]) else "")
    return (
        f'<tr id="run-{rp.name}"><td>{style} · {scenario}</td><td class="num">{replicate + 1}</td>'
        f'<td><span class="st {state}" title="{html.escape(why or state)}">{state}</span>{why_html}</td>'
        f'<td class="stages">{" ".join(cells)}</td><td>{settings_html}</td>'
        f"{num}{_fmt(nums.get('accuracy_baseline'), True)}</td>{num}{_fmt(nums.get('accuracy_speculative'), True)}</td>"
        f"{num}{_fmt(nums.get('acceptance_rate'), True)}</td>{num}{_fmt(nums.get('mean_acceptance_length'))}</td>"
        f"{num}{_fmt_x(nums.get('speedup'))}</td>{num}{lat_txt}</td>"
        f"{num}{_fmt(nums.get('tokens_per_answer'))}</td></tr>"
    )


def _profile_items(profile: str, status: dict, profile_stages) -> list[str]:
    """The profile-wide notebooks (00, 07) as list items: state and link."""
    root = reports_root(profile)
    prof_links = []
    profile_cfg = params.resolve(profile, "base", params.scenarios()[0])
    for stage in profile_stages:
        state, err = stage_state(status.get("_profile", {}).get(stage), profile, stage, profile_cfg)
        target = root / "_profile" / f"{stage}.html"
        name = f'<a href="_profile/{stage}.html">{stage}</a>' if target.exists() else stage
        err_html = f' <span class="err">{html.escape(err)}</span>' if err else ""
        prof_links.append(f'<li><span class="st {state}">{state}</span> {name}{err_html}</li>')
    return prof_links


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s"


def wall_time_html(status: dict, budget_s: float) -> str:
    """The last grid's wall time (start to end, as the runner recorded it) beside the profile's
    budget (`report.budget_s`, 0 = none): a change that makes the demo slower shows here."""
    wall = (status.get(record.GRID_RUN) or {}).get(record.GRID_WALL)
    if not wall:
        return "<p><small>No grid has recorded its wall time here yet.</small></p>"
    seconds = float(wall.get("seconds") or 0)
    counts = ", ".join(f"{n} {state}" for state, n in sorted((wall.get("outcomes") or {}).items())) or "no stage"
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(wall.get("started") or 0))
    text = f"<b>{_minutes(seconds)}</b> wall, {counts}, {wall.get('jobs', 1)} run(s) at a time"
    if budget_s > 0 and not wall.get("whole_grid"):
        text += (
            f"; budget {_minutes(budget_s)} (<code>report.budget_s</code>) for the whole grid run afresh, "
            "which this was not"
        )
    elif budget_s > 0:
        over = seconds > budget_s
        verdict = (
            f'<span class="st failed">over budget</span> by {_minutes(seconds - budget_s)}'
            if over
            else f'<span class="st finished">within budget</span> ({seconds / budget_s:.0%} of it)'
        )
        text += f"; budget {_minutes(budget_s)} (<code>report.budget_s</code>): {verdict}"
    interrupted = " (interrupted)" if wall.get("status") == "interrupted" else ""
    return (
        f'<p id="wall-time">Last grid{interrupted}, started {when} on {html.escape(str(wall.get("host", "")))}: '
        f"{text}.<br><small><code>{html.escape(str(wall.get('command', '')))}</code>; stages skipped as "
        f"cached cost nothing, so compare whole fresh runs only.</small></p>"
    )


def _answer_and_findings(profile: str, figs: dict | None, status: dict) -> tuple[str, str]:
    """The answer table (with the answer in one sentence above it) and the findings under
    headings, from the analysis's record; said to be not current where 07 is not."""
    if not figs:
        return "<p><small>The analysis (07) has not run yet: the answer table appears once it has.</small></p>", ""
    cfg = params.resolve(profile, "base", params.scenarios()[0])
    state, why = stage_state(status.get("_profile", {}).get("07_analysis"), profile, "07_analysis", cfg)
    stale = (
        ""
        if state in ("finished", "cached")
        else (
            f'<p><span class="st {state}">{state}</span> <b>The analysis is not current</b> ({html.escape(why or state)}): '
            "the table below is its last record; run 07 again for numbers made from the current runs.</p>"
        )
    )
    lead = "".join(f"<p>{html.escape(line)}</p>" for line in answer.lead(figs)[:1])
    if isinstance(figs.get("answer"), dict):
        table = answer.html(figs["answer"])
        findings = answer.findings_html([s for s in figs.get("sections") or [] if s.get("heading") != "The answer"])
    else:  # recorded before the answer table
        table = ""
        findings = "<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in figs.get("findings", [])) + "</ul>"
    wrap = f'<div class="{"stale-block" if stale else ""}">{lead}{table}</div>'
    return stale + wrap, f"<h2>Findings</h2>{findings}" if findings else ""


def write_index(profile: str, runs=None, stages_of=None, profile_stages=None) -> Path:
    """One page per profile: a link to the analysis and its findings; every run of the grid
    (and any other run given) with its state (finished, failed with its error, incomplete,
    missing), each stage's badge linking its rendered notebook, and its headline numbers.
    Also copies the analysis figures next to it (`analysis.json`), so the report folder alone
    can be compared with another (`compare`)."""
    stages_of = stages_of or stage_names.stages_of
    profile_stages = list(stage_names.PROFILE_STAGES) if profile_stages is None else profile_stages
    root = reports_root(profile)
    status = record.load_status(profile)
    rows = [_run_row(profile, *run, status, stages_of) for run in _grid_runs(profile, runs)]
    prof_links = _profile_items(profile, status, profile_stages)
    failed = [
        f"<li><b>{html.escape(run)} / {html.escape(stage)}</b>: <code>{html.escape(e.get('error') or '')}</code></li>"
        for run, stages in status.items()
        for stage, e in stages.items()
        if e.get("status") == "failed"
    ]
    analysis_figs = record.load(profile, "07_analysis")
    if analysis_figs:
        io.write_json(root / "analysis.json", analysis_figs)
    analysis_html = root / "_profile" / "07_analysis.html"
    analysis_link = (
        '<a href="_profile/07_analysis.html">the analysis</a> (three tables, plots, findings)'
        if analysis_html.exists()
        else "the analysis (not rendered yet)"
    )
    answer_html, findings_html = _answer_and_findings(profile, analysis_figs, status)
    compares = "".join(f'<li><a href="../{p.name}">{html.escape(p.stem)}</a></li>' for p in compare_pages(profile))
    compares_html = f"<h2>Comparisons</h2><ul>{compares}</ul>" if compares else ""
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(profile)} — CoD speculative decoding</title>
<link rel="icon" href="data:,"><style>{_CSS}</style></head><body>
<h1>Profile <code>{html.escape(profile)}</code></h1>
<p>Does fine-tuning the target to reason in Chain of Draft (CoD) instead of Chain of Thought (CoT) make the draft's
guesses accepted more often, and speculation faster, without costing accuracy? Per scenario, the untrained pair and
both fine-tunes side by side ({analysis_link}); every run below, each badge linking a stage's rendered notebook.</p>
{answer_html}
<h2>Runs</h2><p><small>Settings: <span class="st overridden">overrides</span> marks a run some stage of which ran
with parameters other than the profile's (listed); compare such runs with the others knowingly.</small></p>
<table class="runs"><tr><th>run</th><th title="which training of the (style, scenario): grid.replicates">training</th><th>state</th><th>stages</th><th>settings</th><th>accuracy (baseline)</th>
<th>accuracy (speculative)</th><th>acceptance</th><th>mean acceptance length</th><th>speed-up (throughput)</th>
<th>speed-up (latency) [95 %]</th><th>tokens per answer</th></tr>
{"".join(rows)}</table>
{findings_html}
<h2>Wall time</h2>{wall_time_html(status, params.resolve(profile, "base", params.scenarios()[0])["report"]["budget_s"])}
<h2>Profile-wide</h2><ul>{"".join(prof_links)}</ul>
<h2>Failures</h2><ul>{"".join(failed) or "<li>none</li>"}</ul>
{compares_html}
<p><small>Generated {time.strftime("%Y-%m-%d %H:%M:%S")}.</small></p></body></html>"""
    return io.write_text(root / "index.html", page)


# --- two profiles (or report folders) side by side ------------------------------------------------
TABLES = (("speedup", "1 · Speed-up and acceptance"), ("accuracy", "2 · Accuracy"), ("tokens", "3 · Tokens per answer"))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-") or "x"


def _side(which) -> tuple[str, dict, Path]:
    """(label, analysis figures, report folder) of a profile name or a report folder."""
    path = Path(str(which))
    if str(which) in params.profiles() and not path.is_dir():
        figs = record.load(str(which), "07_analysis")
        if figs is None:  # the analysis has not run: compute the tables from the metrics on disk
            from . import analysis, findings

            figs = findings.figures(analysis.collect(str(which)))
        return str(which), figs, reports_root(str(which))
    if path.is_dir():
        src = path / "analysis.json"
        if not src.exists():
            raise FileNotFoundError(
                f"{path.name}: no analysis.json in this report folder; run the analysis "
                f"(07_analysis) and write the index for that profile first"
            )
        return path.name, io.read_json(src), path
    raise ValueError(f"{which!r} is neither a profile ({', '.join(params.profiles())}) nor a report folder")


def _diff_format(column: str, value: float) -> str:
    c = str(column)
    if "speed-up" in c:
        return f"{value:+.2f}"
    if "tokens" in c:
        return f"{value:+.1f}"
    return f"{value * 100:+.1f} pts"


def _cell(column: str, value, diff: bool = False) -> str:
    if _missing(value):
        return '<td class="num">–</td>'
    text = _diff_format(column, value) if diff else format_for(column)(value)
    return f'<td class="num">{html.escape(str(text))}</td>'


def _html_table(nested: dict, columns: list[str] | None = None, diff: bool = False) -> str:
    """{source: {scenario: {column: value}}} as an HTML table, rows (scenario, source)."""
    rows = [(scen, src, vals) for src, by_scen in nested.items() for scen, vals in by_scen.items()]
    rows.sort(key=lambda r: (scenario_rank(r[0]), source_rank(r[1])))
    columns = columns or list(dict.fromkeys(c for _, _, v in rows for c in v))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        f"<tr><td>{html.escape(scen)}</td><td>{html.escape(src)}</td>{''.join(_cell(c, v.get(c), diff) for c in columns)}</tr>"
        for scen, src, v in rows
    )
    return (
        f"<table><tr><th>scenario</th><th>source</th>{head}</tr>{body or '<tr><td colspan=9>no runs</td></tr>'}</table>"
    )


def _difference(a: dict, b: dict) -> dict:
    out = {}
    for src in a:
        for scen, va in a[src].items():
            vb = (b.get(src) or {}).get(scen)
            if vb is None:
                continue
            out.setdefault(src, {})[scen] = {
                c: (vb[c] - va[c]) if not (_missing(va.get(c)) or _missing(vb.get(c))) else None for c in va
            }
    return out


def compare(a, b, out: Path | None = None) -> Path:
    """`reports/compare_<a>_vs_<b>.html`: the three tables of two profiles (or two report
    folders holding an `analysis.json`) side by side, their differences (b − a) where both
    have the row, and each side's findings."""
    la, fa, da = _side(a)
    lb, fb, db = _side(b)
    out = Path(out) if out else reports_root(la).parent / f"compare_{_slug(la)}_vs_{_slug(lb)}.html"

    def link(label, folder):
        index = folder / "index.html"
        if not index.exists():
            return html.escape(label)
        return f'<a href="{html.escape(os.path.relpath(index, out.parent))}">{html.escape(label)}</a>'

    from .analysis import TABLE_COLUMNS

    parts = []
    for key, title in TABLES:
        ta, tb = fa.get(key) or {}, fb.get(key) or {}
        present = [c for t in (ta, tb) for s in t.values() for v in s.values() for c in v]
        columns = [c for c in TABLE_COLUMNS[key] if c in present] + sorted(set(present) - set(TABLE_COLUMNS[key]))
        diff = _difference(ta, tb)
        diff_html = (
            f"<h3>difference ({html.escape(lb)} − {html.escape(la)})</h3>{_html_table(diff, columns, diff=True)}"
            if diff
            else ""
        )
        parts.append(
            f'<h2>{title}</h2><div class="side"><div><h3>{link(la, da)}</h3>{_html_table(ta, columns)}</div>'
            f"<div><h3>{link(lb, db)}</h3>{_html_table(tb, columns)}</div></div>{diff_html}"
        )
    finds = "".join(
        f"<div><h3>{html.escape(label)}</h3><ul>{''.join(f'<li>{html.escape(x)}</li>' for x in figs.get('findings', [])) or '<li>none</li>'}</ul></div>"
        for label, figs in ((la, fa), (lb, fb))
    )
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(la)} vs {html.escape(lb)}</title>
<link rel="icon" href="data:,"><style>{_CSS}body{{max-width:none}}</style></head><body>
<h1><code>{html.escape(la)}</code> vs <code>{html.escape(lb)}</code></h1>
<p>The study's three tables for both, side by side (gaps are runs not measured), then the differences where both have a row.</p>
{"".join(parts)}
<h2>Findings</h2><div class="side">{finds}</div>
<p><small>Generated {time.strftime("%Y-%m-%d %H:%M:%S")}.</small></p></body></html>"""
    return io.write_text(out, page)
