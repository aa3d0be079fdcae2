"""A committed result set (a GPU session's `<run>/metrics.json`, as `benchmarks/gpu_grid.py`
brings them back with the stages' figures) rendered by the workbook itself: the runs are put in
a scratch home, the analysis (07) runs over them as over any grid, and beside the set goes
`answer.md` (the answer table and the findings under headings, small enough to commit) while
the whole page goes to the home's reports (`reports/results/<set>.html`).

    python -m lib results docs/results/gpu-solve-h200/<set> [--profile gpu-solve]
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from . import answer, io, params, paths, record, runner
from .styles import STYLES

_RUN = re.compile(r"^(?P<style>[a-z]+)_(?P<scenario>[a-z0-9]+)(?:_r(?P<replicate>[0-9]+))?$")
ANSWER_MD = "answer.md"


def runs_of(set_dir: Path) -> tuple[list[tuple[str, str, int, Path]], list[str]]:
    """(style, scenario, replicate, folder) of each run folder holding a metrics.json whose
    name is a grid run's (`cot_hard`, `cod_medium_r1`), and the names of the folders set aside
    (a variant such as `cod_easy_ksweep` is not one of the grid's runs)."""
    styles, scenarios = set(STYLES), set(params.scenarios())
    runs, other = [], []
    for metrics in sorted(Path(set_dir).glob("*/metrics.json")):
        m = _RUN.match(metrics.parent.name)
        if m and m["style"] in styles and m["scenario"] in scenarios:
            runs.append((m["style"], m["scenario"], int(m["replicate"] or 0), metrics.parent))
        else:
            other.append(metrics.parent.name)
    return runs, other


def render(set_dir, profile: str = "gpu-solve") -> dict:
    """Run 07 over the set's runs; write `answer.md` beside them and the page under the home's
    reports. Returns the analysis's figures (with `answer`), the paths written and the folders
    set aside."""
    set_dir = Path(set_dir).resolve()
    runs, other = runs_of(set_dir)
    if not runs:
        raise FileNotFoundError(f"{set_dir}: no <style>_<scenario>/metrics.json under it: not a result set")
    params.resolve(profile, "base", params.scenarios()[0])  # an unknown profile fails here, naming it
    scratch = Path(tempfile.mkdtemp(prefix="workbook-results-"))
    before = os.environ.get("WORKBOOK_HOME")
    os.environ["WORKBOOK_HOME"] = str(scratch)
    try:
        for style, scenario, replicate, folder in runs:
            rp = paths.RunPaths(profile, style, scenario, replicate)
            rp.metrics_json.parent.mkdir(parents=True, exist_ok=True)
            # the metrics alone: the stages' records name the code and settings of their day, which
            # the lineage check (record.why_not_done) rightly calls outdated against today's
            shutil.copyfile(folder / "metrics.json", rp.metrics_json)
        out_dir = paths.reports_root(profile) / paths.PROFILE_RUN
        grid = {"grid.replicates": max(r for *_, r, _ in runs) + 1}
        outcome = runner.execute(
            "07_analysis",
            f"{set_dir.name}",
            out_dir,
            {"profile": profile, "discover_external": False, "overrides": grid},
            hide_input=True,
        )
        if outcome.status != "finished":
            raise RuntimeError(f"{set_dir}: the analysis did not finish: {outcome.error}")
        figures = record.load(profile, "07_analysis")
    finally:
        if before is None:
            os.environ.pop("WORKBOOK_HOME", None)
        else:
            os.environ["WORKBOOK_HOME"] = before
    page = paths.home() / "reports" / "results" / f"{set_dir.name}.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out_dir / "07_analysis.html", page)
    shutil.rmtree(scratch, ignore_errors=True)
    md = io.write_text(set_dir / ANSWER_MD, markdown(set_dir, profile, figures, other))
    return {"figures": figures, "answer_md": md, "page": page, "set_aside": other}


def markdown(set_dir: Path, profile: str, figures: dict, other: list[str]) -> str:
    """`answer.md`: what the set is, how it was rendered, the answer table, the findings."""
    try:
        shown = set_dir.relative_to(paths.REPO)
    except ValueError:
        shown = Path(set_dir.name)
    aside = f"\n\nNot in the table (not a grid run's name): {', '.join(f'`{o}`' for o in other)}." if other else ""
    return (
        f"# {set_dir.name}: the answer, rendered by the workbook\n\n"
        f"Written by `python -m lib results {shown} --profile {profile}` from the set's `metrics.json` files "
        f"(07 over them, as over a grid); do not edit by hand.{aside}\n\n"
        + "\n\n".join(answer.lead(figures))
        + "\n\n"
        + answer.markdown(figures["answer"])
        + "\n\n## Findings\n\n"
        + answer.findings_markdown([s for s in figures.get("sections") or [] if s["heading"] != "The answer"])
    )
