"""Rendered notebooks (standalone HTML, figures embedded) and the index page of a profile."""

from __future__ import annotations

import html
import time
from pathlib import Path

from . import io
from .paths import RunPaths, reports_root


def render_html(ipynb: Path, out_html: Path, hide_input: bool = False) -> Path:
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(ipynb), as_version=4)
    exporter = HTMLExporter(template_name="lab", embed_images=True, exclude_input=hide_input)
    body, _ = exporter.from_notebook_node(nb)
    return io.write_text(out_html, body)


def status_path(profile: str) -> Path:
    return reports_root(profile) / "status.json"


def load_status(profile: str) -> dict:
    path = status_path(profile)
    return io.read_json(path) if path.exists() else {}


def record_status(profile: str, run: str, stage: str, **entry) -> None:
    status = load_status(profile)
    status.setdefault(run, {})[stage] = {**entry, "at": time.time()}
    io.write_json(status_path(profile), status)


def _fmt(value, pct: bool = False) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.1%}" if pct else f"{value:.3g}"
    return html.escape(str(value))


def write_index(profile: str, runs: list[tuple[str, str]], stages_of, profile_stages: list[str]) -> Path:
    """One page: each run's stages with their status and link, and its headline numbers."""
    from .benchmark import headline

    root = reports_root(profile)
    status = load_status(profile)
    rows = []
    for style, scenario in runs:
        rp = RunPaths(profile, style, scenario)
        cells = []
        for stage in stages_of(style):
            entry = status.get(rp.name, {}).get(stage)
            html_file = rp.report_dir / f"{stage}.html"
            state = entry["status"] if entry else "missing"
            link = f'<a href="{rp.name}/{stage}.html">{stage[:2]}</a>' if html_file.exists() else stage[:2]
            title = html.escape((entry or {}).get("error") or state)
            cells.append(f'<span class="st {state}" title="{title}">{link} {state}</span>')
        nums = headline(io.read_json(rp.metrics_json)) if rp.metrics_json.exists() else {}
        rows.append(
            f"<tr><td>{style}</td><td>{scenario}</td><td>{' '.join(cells)}</td>"
            f"<td>{_fmt(nums.get('accuracy_baseline'), True)}</td><td>{_fmt(nums.get('accuracy_speculative'), True)}</td>"
            f"<td>{_fmt(nums.get('acceptance_rate'), True)}</td><td>{_fmt(nums.get('mean_acceptance_length'))}</td>"
            f"<td>{_fmt(nums.get('speedup'))}</td><td>{_fmt(nums.get('tokens_per_answer'))}</td></tr>"
        )
    prof_links = []
    for stage in profile_stages:
        entry = status.get("_profile", {}).get(stage)
        state = entry["status"] if entry else "missing"
        target = root / "_profile" / f"{stage}.html"
        name = f'<a href="_profile/{stage}.html">{stage}</a>' if target.exists() else stage
        title = html.escape((entry or {}).get("error") or state)
        prof_links.append(f'<li><span class="st {state}" title="{title}">{name} — {state}</span></li>')
    failed = [
        f"<li><b>{html.escape(run)} / {html.escape(stage)}</b>: <code>{html.escape(e.get('error') or '')}</code></li>"
        for run, stages in status.items() for stage, e in stages.items() if e.get("status") == "failed"
    ]
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{profile} — CoD speculative decoding</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.st{{padding:1px 4px;border-radius:3px;margin-right:3px;white-space:nowrap}}
.finished,.cached{{background:#d4f4d4}}.failed{{background:#f8d0d0}}.missing,.skipped{{background:#eee}}</style></head><body>
<h1>Profile <code>{html.escape(profile)}</code></h1>
<p>Does fine-tuning the target to reason in Chain of Draft make the draft's guesses accepted more often?
Each row is one run (style, scenario); each badge links the rendered notebook of a stage.</p>
<h2>Profile-wide</h2><ul>{''.join(prof_links)}</ul>
<h2>Runs</h2><table><tr><th>style</th><th>scenario</th><th>stages</th><th>accuracy (baseline)</th>
<th>accuracy (speculative)</th><th>acceptance</th><th>mean acceptance length</th><th>speed-up</th><th>tokens / answer</th></tr>
{''.join(rows)}</table>
<h2>Failures</h2><ul>{''.join(failed) or '<li>none</li>'}</ul>
<p><small>Generated {time.strftime('%Y-%m-%d %H:%M:%S')}.</small></p></body></html>"""
    return io.write_text(root / "index.html", page)
