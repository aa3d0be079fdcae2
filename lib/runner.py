"""Run a profile's grid of notebooks through papermill.

For each scenario, for each style, each stage's notebook is executed with that run's
parameters, saved and rendered to HTML beside the others; the profile-wide notebooks (base
models first, analysis last) run once. Finished stages are skipped unless `redo`; a failed
run keeps its partial notebook (rendered, error included) and the grid goes on; the exit
status says whether anything failed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field

from . import io, params, paths, record, reports
from .styles import STYLES

RUN_STAGES = ("01_generate_data", "02_train_target", "03_distill", "04_train_draft", "05_merge", "06_benchmark")
BASE_STAGES = ("01_generate_data", "06_benchmark")  # the untrained pair: nothing to train
PRE_STAGES = ("00_base_models",)
POST_STAGES = ("07_analysis",)
ALL_STAGES = PRE_STAGES + RUN_STAGES + POST_STAGES
PROFILE_RUN = paths.PROFILE_RUN


def stages_of(style: str) -> tuple[str, ...]:
    return BASE_STAGES if style == "base" else RUN_STAGES


def notebook(stage: str):
    return paths.NOTEBOOKS / f"{stage}.ipynb"


@dataclass
class Outcome:
    run: str
    stage: str
    status: str  # finished | cached | failed | skipped
    seconds: float = 0.0
    error: str | None = None


@dataclass
class GridResult:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def summary(self) -> str:
        counts = {}
        for o in self.outcomes:
            counts[o.status] = counts.get(o.status, 0) + 1
        lines = [", ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
        lines += [f"FAILED {o.run} / {o.stage}: {o.error}" for o in self.failed]
        return "\n".join(lines)


def _check_choices(kind: str, chosen, valid) -> list[str]:
    chosen = list(chosen) if chosen else list(valid)
    bad = [c for c in chosen if c not in valid]
    if bad:
        raise params.ParamsError(f"unknown {kind}(s) {bad}; valid {kind}s: {', '.join(valid)}")
    return chosen


def execute(stage: str, run_label: str, out_dir, parameters: dict, hide_input: bool) -> Outcome:
    """Execute one notebook with papermill; render what ran to HTML, failure included."""
    import papermill as pm

    out_ipynb = out_dir / f"{stage}.ipynb"
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    error = None
    try:
        pm.execute_notebook(
            str(notebook(stage)), str(out_ipynb), parameters=parameters, kernel_name="python3",
            # One bar per stage, over its cells, so a long stage is not silent; cleared when done.
            progress_bar={"desc": f"  {run_label} {stage}", "file": sys.stdout, "leave": False, "ascii": True},
            cwd=str(paths.NOTEBOOKS), report_mode=hide_input,
            # ipykernel 7 warns on every start that its localhost TCP sockets are unencrypted:
            # 44 alarming lines per demo, none actionable. Errors still show.
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
    except Exception as exc:  # papermill saves the partial notebook with the traceback
        error = _short_error(exc)
    seconds = time.perf_counter() - t0
    if out_ipynb.exists():
        try:
            reports.render_html(out_ipynb, out_dir / f"{stage}.html", hide_input=hide_input)
        except Exception as exc:  # the stage itself ran: a missing HTML is reported, not a failure
            print(f"warning: {stage} ran but its HTML could not be rendered: {exc}", flush=True)
    return Outcome(run_label, stage, "failed" if error else "finished", seconds, error)


def _short_error(exc: Exception) -> str:
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    return f"{ename}: {evalue}".strip()[:500]


def parse_gpus(gpus) -> list[str]:
    """`--gpus 0 1` gives two slots of one GPU each, `--gpus 0,1 2,3` two of two (for a target
    split with tensor parallelism); each slot runs one (style, scenario) at a time."""
    slots = []
    for slot in gpus or []:
        ids = str(slot).split(",")
        if not all(i.strip().isdigit() for i in ids):
            raise params.ParamsError(
                f"--gpus takes device numbers, one slot each, GPUs of a slot joined by commas "
                f"(e.g. 0 1, or 0,1 2,3); got {slot!r}"
            )
        slots.append(",".join(i.strip() for i in ids))
    used = [i for slot in slots for i in slot.split(",")]
    if len(used) != len(set(used)):
        raise params.ParamsError(f"--gpus: a GPU is in more than one slot: {' '.join(slots)}")
    return slots


def run_grid(
    profile: str,
    styles=None,
    scenarios=None,
    stages=None,
    overrides: dict | None = None,
    redo: bool = False,
    hide_input: bool = False,
    log=None,
    gpus=None,
) -> GridResult:
    """The grid, one stage at a time; with `gpus`, the profile-wide stages still run here and
    each (style, scenario) chain runs in its own `python -m lib run` on a free GPU slot."""
    log = log or (lambda msg: print(msg, flush=True))
    overrides = dict(overrides or {})
    params._choose("profile", profile, params.profiles())
    styles = _check_choices("style", styles, STYLES)
    scenarios = _check_choices("scenario", scenarios, params.scenarios())
    stages = _check_choices("stage", stages, ALL_STAGES)
    slots = parse_gpus(gpus)
    per_slot = min((len(s.split(",")) for s in slots), default=None)
    # Validate every run's merged parameters before anything runs.
    for scenario in scenarios:
        for style in styles:
            cfg = params.resolve(profile, style, scenario, overrides)
            tp = cfg["engine"]["tensor_parallel_size"]
            if slots and tp > per_slot:
                raise params.ParamsError(
                    f"engine.tensor_parallel_size={tp} needs {tp} GPUs per slot; --gpus gave {' '.join(slots)}"
                )
    runs = [(style, scenario) for scenario in scenarios for style in styles]
    pre = [(PROFILE_RUN, s) for s in PRE_STAGES if s in stages]
    chains = [[((style, scenario), s) for s in stages_of(style) if s in stages] for style, scenario in runs]
    chains = [c for c in chains if c]
    post = [(PROFILE_RUN, s) for s in POST_STAGES if s in stages]
    result, t_start = GridResult(), time.perf_counter()
    if not slots:
        _run_plan(pre + [step for c in chains for step in c] + post, profile, overrides, redo, hide_input, log, result, t_start)
    else:
        _run_plan(pre, profile, overrides, redo, hide_input, log, result, t_start)
        result.outcomes += _place_on_gpus(chains, slots, profile, overrides, redo, hide_input, log)
        _run_plan(post, profile, overrides, redo, hide_input, log, result, t_start)
    reports.write_index(profile, runs, stages_of, [s for s in PRE_STAGES + POST_STAGES])
    log(f"index: {paths.reports_root(profile) / 'index.html'}")
    log(result.summary())
    return result


def _run_plan(plan, profile, overrides, redo, hide_input, log, result: GridResult, t_start: float) -> None:
    broken = set()
    for i, (run, stage) in enumerate(plan, 1):
        if run == PROFILE_RUN:
            rp, label, out_dir = profile, PROFILE_RUN, paths.reports_root(profile) / PROFILE_RUN
            parameters = {"profile": profile, "overrides": overrides}
        else:
            style, scenario = run
            rp = paths.RunPaths(profile, style, scenario)
            label, out_dir = rp.name, rp.report_dir
            parameters = {"profile": profile, "style": style, "scenario": scenario, "overrides": overrides}
        head = f"[{i}/{len(plan)} {time.perf_counter() - t_start:6.0f}s] {label} {stage}"
        if label in broken:
            outcome = Outcome(label, stage, "skipped", error="an earlier stage of this run failed")
        elif not redo and record.done(rp, stage) and stage not in POST_STAGES:
            outcome = Outcome(label, stage, "cached")
        else:
            log(f"{head} ...")
            outcome = execute(stage, label, out_dir, parameters, hide_input)
        if outcome.status == "failed":
            broken.add(label)
        if outcome.status != "cached":
            entry = dict(status=outcome.status, seconds=outcome.seconds, error=outcome.error)
            if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
                entry["gpus"] = os.environ["CUDA_VISIBLE_DEVICES"]  # where it ran, when placed
            reports.record_status(profile, label, stage, **entry)
        log(f"{head} {outcome.status} ({outcome.seconds:.1f}s){': ' + outcome.error if outcome.error else ''}")
        result.outcomes.append(outcome)


def _chain_command(chain, profile, overrides, redo, hide_input, outcomes_file) -> list[str]:
    (style, scenario), _ = chain[0]
    cmd = [sys.executable, "-m", "lib", "run", "--profile", profile, "--styles", style, "--scenarios", scenario,
           "--stages", *[stage for _, stage in chain], "--outcomes", str(outcomes_file)]
    if overrides:
        cmd += ["--set", *[f"{k}={json.dumps(v)}" for k, v in overrides.items()]]  # JSON is YAML
    return cmd + ["--redo"] * redo + ["--hide-input"] * hide_input


def _place_on_gpus(chains, slots, profile, overrides, redo, hide_input, log) -> list[Outcome]:
    """Each chain in its own process, `CUDA_VISIBLE_DEVICES` set to a free slot; its output is
    relayed with the slot in front and kept in the run's `runner.log`."""
    import queue
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    free = queue.Queue()
    for slot in slots:
        free.put(slot)

    def run_chain(chain) -> list[Outcome]:
        (style, scenario), _ = chain[0]
        rp = paths.RunPaths(profile, style, scenario)
        rp.report_dir.mkdir(parents=True, exist_ok=True)
        outcomes_file = rp.report_dir / "runner.outcomes.json"
        outcomes_file.unlink(missing_ok=True)
        slot = free.get()
        try:
            log(f"[gpu {slot}] {rp.name}: {', '.join(stage for _, stage in chain)}")
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": slot}
            with open(rp.report_dir / "runner.log", "w") as keep:
                proc = subprocess.Popen(
                    _chain_command(chain, profile, overrides, redo, hide_input, outcomes_file), env=env,
                    cwd=str(paths.REPO), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                )
                for line in proc.stdout:
                    keep.write(line)
                    keep.flush()
                    if line.startswith(("[", "warning", "FAILED", "error")):  # not the notebooks' chatter
                        log(f"[gpu {slot}] {line.rstrip()}")
                code = proc.wait()
        finally:
            free.put(slot)
        if outcomes_file.exists():
            return [Outcome(**o) for o in io.read_json(outcomes_file)]
        return [Outcome(rp.name, chain[0][1], "failed",
                        error=f"the run's process ended with code {code} before reporting; see {rp.report_dir / 'runner.log'}")]

    with ThreadPoolExecutor(max_workers=len(slots)) as pool:
        return [o for outcomes in pool.map(run_chain, chains) for o in outcomes]


def render_missing(profile: str, hide_input: bool = False, log=print) -> list:
    """Render executed notebooks that have no HTML yet (e.g. copied back from a GPU machine
    without nbconvert), then rewrite the profile's index."""
    done = []
    for ipynb in sorted(paths.reports_root(profile).rglob("*.ipynb")):
        html = ipynb.with_suffix(".html")
        if not html.exists():
            reports.render_html(ipynb, html, hide_input=hide_input)
            done.append(html)
            log(f"rendered {html}")
    reports.write_index(profile, None, stages_of, list(PRE_STAGES + POST_STAGES))
    return done


def main_run(args) -> int:
    import yaml

    overrides = {}
    for item in args.set or []:
        if "=" not in item:
            raise params.ParamsError(f"--set takes KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key] = yaml.safe_load(value)
    try:
        result = run_grid(
            args.profile, args.styles, args.scenarios, args.stages, overrides, redo=args.redo, hide_input=args.hide_input,
            gpus=args.gpus,
        )
        if args.outcomes:  # a run placed on a GPU reports back to its parent
            io.write_json(args.outcomes, [dataclasses.asdict(o) for o in result.outcomes])
    except params.ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception:
        traceback.print_exc()
        return 1
    return 1 if result.failed else 0
