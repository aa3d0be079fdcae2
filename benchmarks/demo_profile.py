"""Where a grid's time goes (issue 18): per stage, summed over its runs, from what the runner
and the notebooks already record. Re-runnable on any finished (or partial) grid.

    python benchmarks/demo_profile.py [--profile tiny] [--render] HOME [HOME ...]

HOME is a WORKBOOK_HOME (the repository for a plain `make demo`). Read from there:
- `reports/<profile>/status.json`: each stage's time through papermill (kernel start to
  shutdown, the notebook read and written) and the grid's own wall time (`_grid`);
- each executed notebook's papermill metadata: when the notebook began, when each cell ran;
  so the kernel's start (before the first cell), the setup cell (imports, params), the work
  cells (`with engine_log:`), the cells that show tables and plots, and the rest (kernel
  shutdown, papermill's own reading and writing);
- each stage's log (`<stage>.log`): the `[workbook phase]` lines (`lib/logs.phase`): vLLM's
  import and every engine start;
- the stages' figures: training steps (`wall_s` of the trainer), distillation and each
  benchmark pass's timed generation, the cross-check's transformers decoding.
`--render` also renders every executed notebook again and times it (the HTML step, which the
runner does in the background and does not time).

Several HOMEs give one column each (e.g. before and after a change); stage times that ran
side by side (`--jobs 2`) add up to more than the grid's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PHASE = re.compile(r"^\[workbook phase\] (?P<at>[0-9.]+) (?P<name>.+): (?P<s>[0-9.]+) s$")
ROWS = (
    "stage time (papermill)",
    "kernel CPU time (all threads)",
    "kernel start",
    "setup cell (imports, params)",
    "work cells",
    "  import vllm",
    "  engine starts",
    "  training steps",
    "  generation (timed)",
    "  cross-check (transformers)",
    "  rest of work (imports, model loads, data, saves)",
    "tables and plots cells",
    "kernel shutdown, papermill I/O",
    "render HTML (timed again)",
)


def _t(stamp: str | None) -> float | None:
    return datetime.fromisoformat(stamp).timestamp() if stamp else None


def notebook_phases(ipynb: Path) -> dict:
    """Seconds of the kernel start, the setup cell, the work cells, the other cells and what
    follows the last cell, from papermill's metadata in an executed notebook."""
    nb = json.loads(ipynb.read_text())
    meta = nb["metadata"].get("papermill") or {}
    start, end = _t(meta.get("start_time")), _t(meta.get("end_time"))
    out = defaultdict(float)
    first = last = None
    for cell in nb["cells"]:
        pm = cell.get("metadata", {}).get("papermill") or {}
        a, b = _t(pm.get("start_time")), _t(pm.get("end_time"))
        if a is None or b is None:
            continue
        first, last = first if first is not None else a, b
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        tags = cell.get("metadata", {}).get("tags", [])
        if "parameters" in tags or "injected-parameters" in tags:
            kind = "setup cell (imports, params)"
        elif "with engine_log" in src or "analysis.collect" in src:
            kind = "work cells"
        elif "from lib import" in src:
            kind = "setup cell (imports, params)"
        else:
            kind = "tables and plots cells"
        out[kind] += b - a
    if start is not None and first is not None:
        out["kernel start"] = first - start
    if end is not None and last is not None:
        out["kernel shutdown, papermill I/O"] = end - last
    return out


def log_phases(log: Path, window: tuple[float, float] | None) -> tuple[dict, dict]:
    """The phase lines written while the notebook ran (`window`: its papermill start and end;
    the log also holds earlier runs of the stage)."""
    out = defaultdict(float)
    counts = defaultdict(int)
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            m = PHASE.match(line.strip())
            if m and (window is None or window[0] <= float(m["at"]) <= window[1]):
                name = "  import vllm" if m["name"] == "import vllm" else "  engine starts"
                out[name] += float(m["s"])
                counts[name] += 1
    return out, counts


def figure_phases(home: Path, profile: str, run: str, stage: str) -> dict:
    """Training steps, timed generation and the cross-check, from the stage's own figures."""
    runs = home / "data" / profile / "runs" / run
    out = defaultdict(float)
    fig = runs / "figures" / f"{stage}.json"
    figures = json.loads(fig.read_text()) if fig.exists() else {}
    if stage in ("02_train_target", "04_train_draft"):
        out["  training steps"] += figures.get("wall_s") or 0.0
    elif stage == "00_base_models":
        for role in ("target", "draft"):  # the base pair's pretraining
            out["  training steps"] += (figures.get(role) or {}).get("wall_s") or 0.0
    elif stage == "03_distill":
        out["  generation (timed)"] += figures.get("wall_s") or 0.0  # engine start included: taken off below
    elif stage == "06_benchmark" and (runs / "metrics.json").exists():
        m = json.loads((runs / "metrics.json").read_text())
        for rep in (m.get("comparison") or {}).get("repetitions") or []:
            out["  generation (timed)"] += (rep.get("baseline_wall_s") or 0.0) + (rep.get("speculative_wall_s") or 0.0)
        out["  cross-check (transformers)"] += ((m.get("crosscheck") or {}).get("transformers") or {}).get(
            "wall_s"
        ) or 0.0
    return out


def profile_home(home: Path, profile: str, render: bool) -> dict:
    reports = home / "reports" / profile
    status = json.loads((reports / "status.json").read_text()) if (reports / "status.json").exists() else {}
    per_stage: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    engines = defaultdict(int)
    for run, stages in status.items():
        if run.startswith("_grid"):
            continue
        for stage, entry in stages.items():
            if entry.get("status") != "finished":
                continue
            row = per_stage[stage]
            row["runs"] += 1
            row["stage time (papermill)"] += entry.get("seconds") or 0.0
            if entry.get("cpu_s") is not None:
                row["kernel CPU time (all threads)"] += entry["cpu_s"]
            ipynb = reports / run / f"{stage}.ipynb"
            window = None
            if ipynb.exists():
                for k, v in notebook_phases(ipynb).items():
                    row[k] += v
                meta = json.loads(ipynb.read_text())["metadata"].get("papermill") or {}
                if meta.get("start_time") and meta.get("end_time"):
                    window = (_t(meta["start_time"]), _t(meta["end_time"]))
            logged, counts = log_phases(reports / run / f"{stage}.log", window)
            for k, v in logged.items():
                row[k] += v
            engines[stage] += counts.get("  engine starts", 0)
            figs = figure_phases(home, profile, run, stage)
            if stage == "03_distill":  # its wall covers the engine's start too
                figs["  generation (timed)"] -= logged.get("  engine starts", 0.0) + logged.get("  import vllm", 0.0)
            for k, v in figs.items():
                row[k] += v
            if render and ipynb.exists():
                from lib import reports as rep

                with tempfile.TemporaryDirectory() as tmp:
                    t0 = time.perf_counter()
                    rep.render_html(ipynb, Path(tmp) / "x.html")
                    row["render HTML (timed again)"] += time.perf_counter() - t0
    for row in per_stage.values():
        known = sum(
            row.get(k, 0.0)
            for k in ROWS
            if k.startswith("  ") and k != "  rest of work (imports, model loads, data, saves)"
        )
        row["  rest of work (imports, model loads, data, saves)"] = row.get("work cells", 0.0) - known
    wall = (status.get("_grid") or {}).get("wall") or {}
    return {"stages": per_stage, "engines": engines, "wall": wall}


def _fmt(x) -> str:
    return "" if x is None else f"{x:7.1f}"


def table(results: dict[str, dict]) -> str:
    """Markdown: for each stage (and all of them), one row per phase, one column per home."""
    names = list(results)
    stages = sorted({s for r in results.values() for s in r["stages"]})
    lines = [f"| stage | phase | {' | '.join(names)} |", "|---|---|" + "---:|" * len(names)]
    for stage in stages + ["all stages"]:
        for phase in ROWS:
            vals = []
            for r in results.values():
                rows = list(r["stages"].values()) if stage == "all stages" else [r["stages"].get(stage, {})]
                v = sum(row.get(phase, 0.0) for row in rows)
                vals.append(v if any(phase in row for row in rows) else None)
            if all(v is None or abs(v) < 0.05 for v in vals):
                continue
            label = phase
            if phase == "stage time (papermill)":
                runs = [
                    int(
                        sum(
                            row.get("runs", 0)
                            for row in (
                                list(r["stages"].values()) if stage == "all stages" else [r["stages"].get(stage, {})]
                            )
                        )
                    )
                    for r in results.values()
                ]
                label += f" ({'/'.join(map(str, runs))} notebooks)"
            if phase == "  engine starts":
                counts = [
                    sum(r["engines"].values()) if stage == "all stages" else r["engines"].get(stage, 0)
                    for r in results.values()
                ]
                label += f" ({'/'.join(map(str, counts))})"
            lines.append(f"| {stage if phase == ROWS[0] else ''} | {label} | {' | '.join(_fmt(v) for v in vals)} |")
    walls = []
    for r in results.values():
        w = r["wall"]
        walls.append(f"{w['seconds']:7.1f} ({w.get('jobs', 1)} at a time)" if w.get("seconds") else "")
    lines.append(f"| grid | wall time, start to end | {' | '.join(walls)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("homes", nargs="+", help="WORKBOOK_HOME folders (one column each)")
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--render", action="store_true", help="also time rendering every notebook to HTML again")
    args = parser.parse_args(argv)
    results = {}
    for home in args.homes:
        path = Path(home).resolve()
        if not (path / "reports" / args.profile).is_dir():
            print(f"error: {path / 'reports' / args.profile} does not exist", file=sys.stderr)
            return 2
        results[os.path.basename(str(path)) or str(path)] = profile_home(path, args.profile, args.render)
    print(f"Seconds, summed over each stage's notebooks (profile {args.profile}):\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
