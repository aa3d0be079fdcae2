"""Run a profile's grid of notebooks through papermill.

For each scenario, for each style, each stage's notebook is executed with that run's
parameters, saved and rendered to HTML beside the others; the profile-wide notebooks (base
models first, analysis last) run once. Finished stages are skipped unless `redo`; a failed
run keeps its partial notebook (rendered, error included) and the grid goes on; the exit
status says whether anything failed.

A stage is skipped as done only when its record says it finished with the current
parameters, notebook and earlier stages and its output files are whole (`record.why_not_done`);
otherwise it runs again, and the stages after it follow. One writer per run: a stage holds
its run's lock (`runs/<run>/writer.lock`) while it checks, runs and records; a second runner
that finds the lock taken does not wait — it stops that run with a message naming the holder
(PID, host, since when) and goes on with the others. Ctrl-C stops the grid after recording the
stage as interrupted; a full disk or a dead kernel fails the stage; either way the summary
names the stage.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field

from . import cluster as ray_cluster
from . import device, heap, io, kernels, logs, params, paths, record, reports, splits
from .choices import choose, choose_all
from .stages import ALL_STAGES, POST_STAGES, PRE_STAGES, PROFILE_STAGES, eagle3_on, stages_of
from .styles import STYLES

PROFILE_RUN = paths.PROFILE_RUN

# papermill and nbconvert import jsonschema, which imports rfc3987_syntax for its "iri" format
# checker, and that builds a Lark grammar at import: 2.4 s of the 3 s `import papermill` takes,
# in every runner process (ten per demo: the grid's and one per placed run). Notebook schemas
# use no such format; marked absent, it is the one checker jsonschema leaves out.
sys.modules.setdefault("rfc3987_syntax", None)


def notebook(stage: str):
    return paths.NOTEBOOKS / f"{stage}.ipynb"


@dataclass
class Outcome:
    run: str
    stage: str
    status: str  # finished | cached | failed | skipped | interrupted | locked
    seconds: float = 0.0
    error: str | None = None
    cpu_seconds: float | None = None  # the kernel's CPU time (user + system), all its threads


@dataclass
class GridResult:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status in ("failed", "interrupted", "locked")]

    @property
    def interrupted(self) -> bool:
        return any(o.status == "interrupted" for o in self.outcomes)

    def summary(self) -> str:
        counts = {}
        for o in self.outcomes:
            counts[o.status] = counts.get(o.status, 0) + 1
        lines = [", ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
        lines += [
            f"{'FAILED' if o.status == 'failed' else o.status.upper()} {o.run} / {o.stage}: {o.error}"
            for o in self.failed
        ]
        return "\n".join(lines)


def execute(stage: str, run_label: str, out_dir, parameters: dict, hide_input: bool, render=None) -> Outcome:
    """Execute one notebook with papermill; render what ran to HTML, failure included. `render`
    (a `Renderer`) renders in the background, off the critical path; default: here and now."""
    import papermill as pm

    out_ipynb, out_html = out_dir / f"{stage}.ipynb", out_dir / f"{stage}.html"
    out_dir.mkdir(parents=True, exist_ok=True)
    out_html.unlink(missing_ok=True)  # a partial notebook is never left beside the last run's HTML
    use_this_checkout()
    t0, cpu0 = time.perf_counter(), _children_cpu()
    error = None
    for attempt in range(1, KERNEL_STARTS + 1):
        try:
            _run_notebook(pm, stage, out_ipynb, parameters, run_label, hide_input)
            break
        except KeyboardInterrupt:
            # papermill's event loop is torn down mid-cell: asyncio would print the dead kernel's
            # task as an unretrieved-exception traceback; the summary says it instead.
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)
            _render(out_ipynb, out_html, stage, hide_input)  # what ran so far, marked partial by its status
            raise
        except Exception as exc:  # papermill saves the partial notebook with the traceback
            error = _short_error(exc)
            if KERNEL_DIED_AT_START not in str(exc) or attempt == KERNEL_STARTS:
                break
            print(f"  {run_label} {stage}: the kernel died as it started; starting another", flush=True)
            error = None
    seconds, cpu = time.perf_counter() - t0, _children_cpu()
    cpu = None if None in (cpu, cpu0) else cpu - cpu0
    (render or _render)(out_ipynb, out_html, stage, hide_input)
    return Outcome(run_label, stage, "failed" if error else "finished", seconds, error, cpu)


# jupyter_client's error for a kernel that exited before it answered, no cell run. Seen where two
# runners side by side (`--jobs`) each chose a free port for a kernel, the same one: the second
# kernel's bind failed ("Address already in use"). Another kernel, with ports chosen anew.
KERNEL_DIED_AT_START = "Kernel died before replying to kernel_info"
KERNEL_STARTS = 2


def _run_notebook(pm, stage: str, out_ipynb, parameters: dict, run_label: str, hide_input: bool) -> None:
    _interruptible(
        pm.execute_notebook,
        str(notebook(stage)),
        str(out_ipynb),
        parameters=parameters,
        kernel_name="python3",
        # One bar per stage, over its cells, so a long stage is not silent; cleared when done.
        progress_bar={"desc": f"  {run_label} {stage}", "file": sys.stdout, "leave": False, "ascii": True},
        cwd=str(paths.NOTEBOOKS),
        report_mode=hide_input,
        # ipykernel 7 warns on every start that its localhost TCP sockets are unencrypted:
        # 44 alarming lines per demo, none actionable. Errors still show. The kernel freezes
        # what survives each full collection (lib/heap.py).
        extra_arguments=["--IPKernelApp.log_level=ERROR", heap.KERNEL_ARGUMENT],
        # The last cell has run and every output was written atomically (logs line by line):
        # the kernel (its process group) is killed rather than asked to exit, which took
        # 3.6-4.4 s per notebook with torch loaded on 2 shared cores (0.13 s killed).
        shutdown_kernel="immediate",
        **kernels.papermill_kwargs(),
    )


def _children_cpu() -> float | None:
    """CPU seconds of this process's finished children and warm kernels: the kernel once it is
    shut down (a figure that depends far less on other load than the wall time)."""
    import resource

    usage, warm = resource.getrusage(resource.RUSAGE_CHILDREN), kernels.cpu_seconds()
    return None if warm is None else usage.ru_utime + usage.ru_stime + warm


def _interruptible(fn, *args, **kwargs):
    """Run papermill in a worker thread so that Ctrl-C reaches this process as KeyboardInterrupt.
    In the main thread nbclient replaces the SIGINT handler with one that asks the kernel to
    shut down politely, which a kernel busy in a long cell (training, vLLM) ignores until the
    cell ends: Ctrl-C did nothing. The kernel runs in its own session (the terminal's Ctrl-C
    never reaches it), so on interrupt it is killed here; papermill then saves the partial
    notebook, and the caller records the stage as interrupted."""
    import threading

    box = {}

    def work():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    worker = threading.Thread(target=work, name="papermill", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.5)
    except KeyboardInterrupt:
        _kill_kernels()
        worker.join(60)
        raise
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _kill_kernels() -> None:
    """Kill this process's kernels (children running ipykernel) and whatever they started."""
    import psutil

    for child in psutil.Process().children():
        try:
            if any("ipykernel" in part for part in child.cmdline()):
                for proc in child.children(recursive=True) + [child]:
                    proc.kill()
        except psutil.Error:  # already gone
            pass


def _render(out_ipynb, out_html, stage: str, hide_input: bool) -> None:
    if out_ipynb.exists():
        try:
            reports.render_html(out_ipynb, out_html, hide_input=hide_input)
        except Exception as exc:  # the stage itself ran: a missing HTML is reported, not a failure
            print(f"warning: {stage} ran but its HTML could not be rendered: {exc}", flush=True)


class Renderer:
    """Renders executed notebooks to HTML in one background thread while the next notebook runs
    (nbconvert took 1-3 s a notebook on 2 cores, 44 times a demo, with the kernel of the next
    stage waiting). Leaving the `with` block waits for every render; the index comes after."""

    def __enter__(self) -> "Renderer":
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")
        return self

    def __call__(self, out_ipynb, out_html, stage: str, hide_input: bool) -> None:
        self._pool.submit(_render, out_ipynb, out_html, stage, hide_input)

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True)


def use_this_checkout() -> None:
    """Kernels import the `lib` of the checkout this runner belongs to, not whichever one an
    editable install points at: the repository goes first on the kernel's PYTHONPATH."""
    os.environ["PYTHONPATH"] = paths.repo_first(os.environ.get("PYTHONPATH", ""))
    if os.environ.get("WORKBOOK_HOME"):  # the kernel runs in notebooks/: a relative home would move
        os.environ["WORKBOOK_HOME"] = str(paths.home())


class RunLocked(RuntimeError):
    """Another process is writing this run."""


def lock_file(profile: str, label: str):
    return paths.data_root(profile) / "runs" / label / "writer.lock"


@contextlib.contextmanager
def run_lock(profile: str, label: str):
    """Hold the run's writer lock, or raise RunLocked naming its holder (never wait: a
    second runner on a run is a mistake to report, not a queue)."""
    import filelock

    path = lock_file(profile, label)
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = path.with_name(path.name + ".holder.json")
    lock = filelock.FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        try:
            who = io.read_json(holder)
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(who.get("since", 0)))
            by = f"PID {who.get('pid')} on {who.get('host')} since {since} ({who.get('what')})"
        except (OSError, ValueError):
            by = "another process"
        raise RunLocked(
            f"run {label} is being written by {by}; lock {path}. Wait for it to finish, or stop that process"
        ) from None
    try:
        io.write_json(
            holder,
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": time.time(),
                "what": " ".join(sys.argv[1:])[:100],
            },
        )
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


def _short_error(exc: Exception) -> str:
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    return f"{ename}: {evalue}".strip()[:500]


def parse_gpus(gpus) -> list[str]:
    """`--gpus 0 1 2 3`: the GPUs of this machine the grid may use (`0,1 2,3` reads the same).
    A local Ray instance hands them out: each run gets as many as it needs (`cluster.Chain`),
    two for a target split with tensor parallelism."""
    ids = []
    for slot in gpus or []:
        for i in str(slot).split(","):
            if not i.strip().isdigit():
                raise params.ParamsError(f"--gpus takes device numbers (e.g. 0 1 2 3); got {slot!r}")
            ids.append(i.strip())
    if len(ids) != len(set(ids)):
        raise params.ParamsError(f"--gpus: a GPU is named twice: {' '.join(map(str, gpus))}")
    return ids


def gpus_of(cfg: dict) -> tuple[int, str]:
    """How many GPUs one run asks of Ray, and why (named when no node has them):
    `grid.gpus_per_run`, else `engine.tensor_parallel_size` unless the run is on the CPU."""
    if cfg["grid"]["gpus_per_run"]:
        return cfg["grid"]["gpus_per_run"], f"grid.gpus_per_run={cfg['grid']['gpus_per_run']}"
    if cfg["device"] == "cpu":
        return 0, "device: cpu"
    tp = cfg["engine"]["tensor_parallel_size"]
    return tp, f"engine.tensor_parallel_size={tp}"


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
    jobs=1,
    top=True,
    replicates=None,
    cluster: str | None = None,
) -> GridResult:
    """The grid, one stage at a time; the profile-wide stages always run here. With `cluster`
    (a Ray address) or `gpus` (this machine's), each (style, scenario[, replicate]) chain is
    one Ray task on the GPUs it needs (`cluster.place`); with `jobs` > 1, one process per CPU
    job slot (`parse_jobs`). `top`: the runner a person started, which records the grid's wall
    time and writes the index (a placed run leaves both to it). `replicates`: which trainings
    of each trained (style, scenario) to run (default: all `grid.replicates`)."""
    # one write per line: runs placed side by side log from several threads
    log = log or (lambda msg: print(f"{msg}\n", end="", flush=True))
    overrides = dict(overrides or {})
    choose("profile", profile, params.profiles(), params.ParamsError)
    styles = choose_all("style", styles, STYLES, params.ParamsError)
    scenarios = choose_all("scenario", scenarios, params.scenarios(), params.ParamsError)
    stages = choose_all("stage", stages, ALL_STAGES, params.ParamsError)
    gpu_ids = parse_gpus(gpus)
    if gpu_ids and cluster:
        raise params.ParamsError("--gpus names this machine's GPUs and --cluster a Ray cluster's: give one of them")
    # Validate every run's merged parameters before anything runs.
    cfgs, runs = [], []
    for scenario in scenarios:
        for style in styles:
            for replicate in _replicates(profile, style, scenario, overrides, replicates):
                cfg = params.resolve(profile, style, scenario, overrides, replicate)
                cfgs.append(cfg)
                runs.append((style, scenario, replicate))
    for cfg, (style, scenario, _) in zip(cfgs, runs, strict=True):
        try:  # problems made with other data params: refused here, before any stage's record is touched
            splits.check_fingerprint(cfg, paths.RunPaths(profile, style, scenario))
        except ValueError as exc:
            raise params.ParamsError(str(exc)) from None
    pre = [(PROFILE_RUN, s) for s in PRE_STAGES if s in stages]
    chains = [
        [(run, s) for s in stages_of(run[0], run[2], eagle3_on(cfg)) if s in stages] for run, cfg in zip(runs, cfgs)
    ]
    chains = [c for c in chains if c]
    post = [(PROFILE_RUN, s) for s in POST_STAGES if s in stages]
    by_ray = bool(gpu_ids or cluster)
    cfg_of = dict(zip(runs, cfgs, strict=True))
    ray_chains = (
        {id(c): _ray_chain(c, cfg_of[c[0][0]], profile, overrides, redo, hide_input) for c in chains} if by_ray else {}
    )
    if gpu_ids:  # this machine: refused before a Ray instance is started for nothing
        ray_cluster.refuse_unplaceable(
            list(ray_chains.values()), [{"node": "local", "gpus": len(gpu_ids), "cpus": len(device.usable_cpus())}]
        )
    n_jobs = 1 if by_ray else parse_jobs(jobs, cfgs)
    slots = job_slots(n_jobs) if len(chains) > 1 and not by_ray else []
    result, t_start, started = GridResult(), time.perf_counter(), time.time()
    placing = ray_cluster.connected(cluster, gpu_ids) if by_ray and chains else contextlib.nullcontext()
    use_this_checkout()  # before a warm process starts: its kernels' environment
    # Warm processes (lib/kernels.py): one for the notebooks this process runs, one per CPU job
    # slot for the runs placed on it one after another.
    in_chains = sum(map(len, chains))
    here = len(pre) + len(post) + (0 if slots or ray_chains else in_chains)
    warm_here = kernels.warm(warm_kernels(cfgs, here))
    warm_slots = kernels.for_slots(warm_kernels(cfgs, in_chains), [env for _, env in slots])
    with Renderer() as render, placing, warm_here, warm_slots as slot_warm:  # the index after the last render
        slots = [(name, env, warm) for (name, env), warm in zip(slots, slot_warm, strict=True)]
        if by_ray and chains:
            live = ray_cluster.nodes()
            ray_cluster.refuse_unplaceable(list(ray_chains.values()), live)
            log(
                f"ray: {len(live)} node(s), {sum(n['gpus'] for n in live)} GPU(s), "
                f"{sum(n['cpus'] for n in live)} CPU(s)"
            )
        if not slots and not ray_chains:
            _run_plan(
                pre + [step for c in chains for step in c] + post,
                profile,
                overrides,
                redo,
                hide_input,
                log,
                result,
                t_start,
                render,
            )
        else:
            _run_plan(pre, profile, overrides, redo, hide_input, log, result, t_start, render)
            if ray_chains and not result.interrupted:
                result.outcomes += _place_by_ray(chains, ray_chains, profile, log)
            elif not ray_chains:
                # CPU jobs: later replicates train on their first replicate's data (01), so they
                # are placed once the first replicates are done, in a second round.
                for round_ in ([c for c in chains if not c[0][0][2]], [c for c in chains if c[0][0][2]]):
                    if round_ and not result.interrupted:
                        result.outcomes += _place(
                            round_, slots, profile, overrides, redo, hide_input, log, short_first=True
                        )
            if not result.interrupted:
                _run_plan(post, profile, overrides, redo, hide_input, log, result, t_start, render)
    if top:
        whole = (set(styles), set(scenarios), set(stages)) == (set(STYLES), set(params.scenarios()), set(ALL_STAGES))
        _record_wall(profile, result, started, time.perf_counter() - t_start, len(slots) or len(gpu_ids) or 1, whole)
        try:
            reports.write_index(profile, runs, stages_of, list(PROFILE_STAGES))
            log(f"index: {paths.reports_root(profile) / 'index.html'}")
        except OSError as exc:  # the summary below still says what happened
            log(f"warning: the index could not be written: {_short_error(exc)}")
    log(result.summary())
    return result


# From this many notebooks on, a warm process pays back its imports (one, ~20 s of CPU): each
# kernel forked from it skips most of its own (docs/measurements.md).
WARM_FROM = 3


def warm_kernels(cfgs, notebooks: int) -> bool:
    """Whether this runner's kernels fork from a warm process (`lib/kernels.py`): where every
    run is on the CPU and it runs at least `WARM_FROM` notebooks (cached ones count too: not
    known yet), unless WORKBOOK_FRESH_KERNELS=1."""
    return (
        os.environ.get("WORKBOOK_FRESH_KERNELS") != "1"
        and notebooks >= WARM_FROM
        and all(cfg["device"] == "cpu" for cfg in cfgs)
    )


def _run_plan(plan, profile, overrides, redo, hide_input, log, result: GridResult, t_start: float, render=None) -> None:
    broken = set()
    for i, (run, stage) in enumerate(plan, 1):
        if run == PROFILE_RUN:
            rp, label, out_dir = profile, PROFILE_RUN, paths.reports_root(profile) / PROFILE_RUN
            cfg = params.resolve(profile, "base", params.scenarios()[0], overrides)  # as notebook 00 resolves it
            parameters = {"profile": profile, "overrides": overrides}
        else:
            style, scenario, replicate = run
            rp = paths.RunPaths(profile, style, scenario, replicate)
            cfg = params.resolve(profile, style, scenario, overrides, replicate)
            label, out_dir = rp.name, rp.report_dir
            parameters = {
                "profile": profile,
                "style": style,
                "scenario": scenario,
                "replicate": replicate,
                "overrides": overrides,
            }
        head = f"[{i}/{len(plan)} {time.perf_counter() - t_start:6.0f}s] {label} {stage}"
        if label in broken:
            outcome = Outcome(label, stage, "skipped", error="an earlier stage of this run failed")
        else:
            try:
                outcome = _run_stage(
                    rp, label, stage, cfg, out_dir, parameters, profile, redo, hide_input, log, head, render
                )
            except KeyboardInterrupt:
                outcome = Outcome(label, stage, "interrupted", error=f"stopped by {STOPPED_BY[0]}; re-run to resume")
                _record(profile, label, stage, outcome)
                log(f"{head} interrupted")
                result.outcomes.append(outcome)
                return
        if outcome.status in ("failed", "locked"):
            broken.add(label)
        log(f"{head} {outcome.status} ({outcome.seconds:.1f}s){': ' + outcome.error if outcome.error else ''}")
        result.outcomes.append(outcome)


def _run_stage(
    rp, label, stage, cfg, out_dir, parameters, profile, redo, hide_input, log, head, render=None
) -> Outcome:
    """One stage under its run's lock: skipped when done (see `record.why_not_done`), else run."""
    try:
        with run_lock(profile, label):
            why = "always runs" if stage in POST_STAGES else ("--redo" if redo else record.why_not_done(rp, stage, cfg))
            if why is None:  # recorded too: a status left "running" or lost is set right
                outcome = Outcome(label, stage, "cached")
                _record(profile, label, stage, outcome)
                return outcome
            # A stage never runs on stale results: a partial run whose earlier stages are not
            # current refuses, naming them (docs/reliability.md), and leaves this stage's record.
            stale = None if stage in POST_STAGES else record.stale_upstream(rp, stage, cfg)
            if stale:
                return Outcome(label, stage, "failed", error=stale)
            log(f"{head} ... ({why})")
            record.forget(rp, stage)
            _record(profile, label, stage, Outcome(label, stage, "running"), started=time.time())
            outcome = execute(stage, label, out_dir, parameters, hide_input, render)
            _record(profile, label, stage, outcome)
            return outcome
    except RunLocked as exc:
        return Outcome(label, stage, "locked", error=str(exc))
    except OSError as exc:  # a full disk, a vanished folder: this stage fails, named; the grid goes on
        outcome = Outcome(label, stage, "failed", error=_short_error(exc))
        with contextlib.suppress(OSError):
            _record(profile, label, stage, outcome)
        return outcome


def _record(profile: str, label: str, stage: str, outcome: Outcome, **extra) -> None:
    """A stage's status, with where it ran: host and PID, the GPUs and Ray node when placed, the
    CPU job slot; `extra` has the last word (a chain that died is recorded by the driver, with
    the node it ran on)."""
    entry = dict(
        status=outcome.status, seconds=outcome.seconds, error=outcome.error, pid=os.getpid(), host=socket.gethostname()
    )
    if outcome.cpu_seconds is not None:
        entry["cpu_s"] = outcome.cpu_seconds
    # where it ran, when placed: its GPUs and Ray node, as its figures say (`record.ran_on`)
    entry.update({k: v for k, v in record.ran_on().items() if k in ("gpus", "node") and v})
    if os.environ.get(JOB_ENV):
        entry["job"] = os.environ[JOB_ENV]  # a CPU job slot: it ran beside another run
    record.record_status(profile, label, stage, **{**entry, **extra})


def _record_wall(profile: str, result: GridResult, started: float, seconds: float, jobs: int, whole: bool) -> None:
    """The grid's own wall time, start to end (stage times overlap when runs go side by side):
    what the index sets beside `report.budget_s`, when it was the whole grid, every stage run
    afresh (`whole_grid`)."""
    counts = {}
    for o in result.outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    entry = dict(
        status="interrupted" if result.interrupted else "ended",
        seconds=seconds,
        started=started,
        jobs=jobs,
        outcomes=counts,
        whole_grid=whole and set(counts) == {"finished"},
        command=" ".join(sys.argv[1:])[:300],
        host=socket.gethostname(),
    )
    with contextlib.suppress(OSError):  # the summary still says what happened
        record.record_status(profile, record.GRID_RUN, record.GRID_WALL, **entry)


JOB_ENV = "WORKBOOK_JOB"  # set in a run placed on a CPU job slot: the slot's number


def _replicates(profile: str, style: str, scenario: str, overrides: dict, asked) -> list[int]:
    """The replicates of one (style, scenario) to run: those asked for (`--replicates`) among the
    `grid.replicates` it has; the untrained base style has one run, replicate 0."""
    n = 1 if style == "base" else params.resolve(profile, style, scenario, overrides)["grid"]["replicates"]
    if asked is None:
        return list(range(n))
    wrong = [r for r in asked if isinstance(r, bool) or not isinstance(r, int) or r < 0]
    if wrong:
        raise params.ParamsError(f"--replicates takes replicate numbers 0, 1, ...; got {wrong[0]!r}")
    if style != "base" and any(r >= n for r in asked):
        raise params.ParamsError(
            f"--replicates {' '.join(map(str, asked))}: grid.replicates is {n} for {style} "
            f"{scenario}, so replicates are 0 to {n - 1} (raise it with --set grid.replicates=N)"
        )
    return [r for r in asked if r < n]


def parse_jobs(jobs, cfgs) -> int:
    """`--jobs N`: N (style, scenario) runs side by side on this machine's CPUs. `auto` (the
    command line's default): 2 where every run's params say `device: cpu` and there are at
    least 2 cores, else 1 (a GPU profile places its runs with `--gpus`). Each run holds torch,
    an engine and its models (a tiny benchmark kernel peaked at 1.1 GB resident)."""
    if jobs in (None, "auto"):
        cpu = all(cfg["device"] == "cpu" for cfg in cfgs)
        return min(2, len(device.usable_cpus())) if cpu else 1
    if isinstance(jobs, bool) or not str(jobs).isdigit() or int(jobs) < 1:
        raise params.ParamsError(f"--jobs takes a number of runs side by side (1, 2, ...) or auto; got {jobs!r}")
    return int(jobs)


def job_slots(n: int) -> list[tuple[str, dict]]:
    """N CPU job slots, the cores this process may use shared out: each slot's run keeps to its
    own cores (`device.keep_to_slot_cpus`) and its torch, OpenMP and vLLM use one thread per
    core, so that two runs neither oversubscribe two cores nor take turns on one. With more
    slots than cores, the slots share them, one thread each."""
    if n <= 1:
        return []
    cores = device.usable_cpus()
    per = len(cores) // n
    slots = []
    for i in range(n):
        own = cores[i * per : (i + 1) * per] if per else []
        threads = str(len(own) or 1)
        env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, JOB_ENV: str(i + 1)}
        if own:
            env[device.CPUS_ENV] = ",".join(map(str, own))
        slots.append((f"job {i + 1}", env))
    return slots


def _chain_command(chain, profile, overrides, redo, hide_input, outcomes_file) -> list[str]:
    (style, scenario, replicate), _ = chain[0]
    cmd = [
        sys.executable,
        "-m",
        "lib",
        "run",
        "--profile",
        profile,
        "--styles",
        style,
        "--scenarios",
        scenario,
        "--replicates",
        str(replicate),
        "--stages",
        *[stage for _, stage in chain],
        "--jobs",
        "1",
        "--outcomes",
        str(outcomes_file),
    ]
    if overrides:
        cmd += ["--set", *[f"{k}={json.dumps(v)}" for k, v in overrides.items()]]  # JSON is YAML
    return cmd + ["--redo"] * redo + ["--hide-input"] * hide_input


def _place(chains, slots, profile, overrides, redo, hide_input, log, short_first: bool = False) -> list[Outcome]:
    """CPU job slots: each chain in its own process on a free slot (thread counts shared out,
    `job_slots`); its output is relayed with the slot in front and kept in the run's
    `runner.log`. `short_first`: the untrained `base` runs (two stages) first. On two cores
    their 40-90 s were what a slot idled at the end of the demo (one base run left alone,
    44-55 s); placed first, the six trained runs (115-160 s each) end close together (the stage
    times of three demos, replayed: 18-22 s of wall time less, within 4 s of an even split of
    the work). Otherwise longest first."""
    import queue
    import signal
    import subprocess
    import threading
    from concurrent.futures import ThreadPoolExecutor

    free, running, stopping = queue.Queue(), set(), threading.Event()
    for slot in slots:
        free.put(slot)

    def run_chain(chain) -> list[Outcome]:
        (style, scenario, replicate), _ = chain[0]
        rp = paths.RunPaths(profile, style, scenario, replicate)
        rp.report_dir.mkdir(parents=True, exist_ok=True)
        rp.runner_outcomes.unlink(missing_ok=True)
        taken = free.get()
        slot, slot_env, *slot_warm = taken  # (name, environment[, its warm process's address])
        try:
            if stopping.is_set():  # the grid was stopped before this chain started: it is not begun
                return []
            log(f"[{slot}] {rp.name}: {', '.join(stage for _, stage in chain)}")
            env = {**os.environ, **slot_env, **(slot_warm[0]() if slot_warm else {})}
            with open(rp.runner_log, "w") as keep:
                proc = subprocess.Popen(
                    _chain_command(chain, profile, overrides, redo, hide_input, rp.runner_outcomes),
                    env=env,
                    cwd=str(paths.REPO),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                running.add(proc)
                for line in proc.stdout:
                    keep.write(line)
                    keep.flush()
                    if logs.says_where(line):
                        log(f"[{slot}] {line.rstrip()}")
                code = proc.wait()
        finally:
            free.put(taken)
        return _chain_outcomes(chain, profile, f"the run's process ended with code {code} before reporting")

    with ThreadPoolExecutor(max_workers=len(slots)) as pool:
        futures = [pool.submit(run_chain, c) for c in sorted(chains, key=len, reverse=not short_first)]
        try:
            return [o for f in futures for o in f.result()]
        except KeyboardInterrupt:
            # Ctrl-C (or SIGTERM, `_stop_on_sigterm`): no chain starts after it; each running one
            # gets a SIGINT (a terminal sends it to them too), records its stage interrupted and
            # reports, and the grid's summary says so.
            stopping.set()
            for proc in list(running):
                with contextlib.suppress(OSError):
                    proc.send_signal(signal.SIGINT)
            return [o for f in futures for o in f.result()]


def _ray_chain(chain, cfg, profile, overrides, redo, hide_input) -> ray_cluster.Chain:
    """A chain as one Ray task: its command, the GPUs and CPUs its run (`cfg`) asks for, its
    environment."""
    (style, scenario, replicate), _ = chain[0]
    rp = paths.RunPaths(profile, style, scenario, replicate)
    gpus, reason = gpus_of(cfg)
    cpus = cfg["grid"]["cpus_per_run"]
    return ray_cluster.Chain(
        name=rp.name,
        command=_chain_command(chain, profile, overrides, redo, hide_input, rp.runner_outcomes),
        gpus=gpus,
        cpus=cpus,
        report_dir=rp.report_dir,
        reason=reason,
        env=ray_cluster.chain_env(cpus),
    )


def _place_by_ray(chains, ray_chains: dict, profile: str, log) -> list[Outcome]:
    """Every chain submitted at once, longest first (Ray starts them in that order as GPUs free
    up, so the two-stage `base` runs fill the end), but a later replicate only once its first
    replicate's chain has ended (it trains on that one's data); each one's outcomes when all
    have ended."""
    chains = sorted(chains, key=len, reverse=True)
    after = {}
    for c in chains:
        rc = ray_chains[id(c)]
        rp = paths.RunPaths(profile, *c[0][0])
        if rp.replicate:
            after[rc.name] = rp.first.name
        log(
            f"[ray] {rc.name}: {', '.join(stage for _, stage in c)} ({rc.gpus} GPU, {rc.cpus} CPU)"
            + (f", after {after[rc.name]}" if rc.name in after else "")
        )
    ended = ray_cluster.place([ray_chains[id(c)] for c in chains], log, after)
    outcomes = []
    for c in chains:
        rc = ray_chains[id(c)]
        how = ended.get(rc.name)
        place = ray_cluster.where(rc)
        if how is None and not place:  # never started (the grid was stopped first): nothing to say
            continue
        if how is None:
            why = f"it was still running on {ray_cluster.describe(place)} when the grid stopped waiting"
        elif isinstance(how, Exception):
            why = f"{ray_cluster.describe(place)} was lost while it ran ({_short_error(how).splitlines()[0][:300]})"
        else:
            why = f"the run's process on {ray_cluster.describe(place)} ended with code {how['code']} before reporting"
        outcomes += _chain_outcomes(c, profile, why, place)
    return outcomes


def _chain_outcomes(chain, profile: str, why: str, place: dict | None = None) -> list[Outcome]:
    """A placed chain's outcomes as its process reported them; if it ended without reporting
    (killed, its node lost), the stage it was running fails, recorded with `why` and where it
    ran, and the rest of the chain is skipped (the next grid resumes it through the records)."""
    (style, scenario, replicate), _ = chain[0]
    rp = paths.RunPaths(profile, style, scenario, replicate)
    if rp.runner_outcomes.exists():
        return [Outcome(**o) for o in io.read_json(rp.runner_outcomes)]
    status = record.load_status(profile).get(rp.name, {})
    names = [stage for _, stage in chain]
    running = next((s for s in names if status.get(s, {}).get("status") == "running"), names[0])
    failed = Outcome(rp.name, running, "failed", error=f"{why}; see {rp.runner_log}")
    extra = {k: place[k] for k in ("node", "host", "gpus") if place and place.get(k)}
    with contextlib.suppress(OSError):
        _record(profile, rp.name, running, failed, **extra)
    rest = names[names.index(running) + 1 :]
    return [failed] + [Outcome(rp.name, s, "skipped", error="an earlier stage of this run failed") for s in rest]


def render_missing(profile: str, hide_input: bool = False, log=print) -> list:
    """Render executed notebooks that have no HTML yet (e.g. copied back from a GPU machine
    without nbconvert), then rewrite the profile's index."""
    choose("profile", profile, params.profiles(), params.ParamsError)  # a name, never a path
    done = []
    for ipynb in sorted(paths.reports_root(profile).rglob("*.ipynb")):
        html = ipynb.with_suffix(".html")
        if not html.exists():
            reports.render_html(ipynb, html, hide_input=hide_input)
            done.append(html)
            log(f"rendered {html}")
    reports.write_index(profile, None, stages_of, list(PROFILE_STAGES))
    return done


STOPPED_BY = ["Ctrl-C (SIGINT)"]  # what ended the grid early, for the summary


def _stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's cancel, `kill`, a machine going down) ends the grid as Ctrl-C does:
    the stage recorded interrupted, what ran rendered, the summary printed. Placed runs are
    passed a SIGINT by what placed them (`_place`, `cluster.place`), so that each records its
    own stage the same way."""
    import signal

    def stop(signum, frame):
        STOPPED_BY[0] = "SIGTERM"
        raise KeyboardInterrupt("SIGTERM")

    with contextlib.suppress(ValueError):  # not the main thread (a test calling main_run): leave it
        signal.signal(signal.SIGTERM, stop)


def main_run(args) -> int:
    _stop_on_sigterm()
    device.keep_to_slot_cpus()  # a run placed on a CPU job slot: before any kernel or engine starts

    try:
        overrides = params.parse_sets(args.set)
        if (args.gpus or args.cluster) and args.jobs not in (None, "auto", "1"):
            raise params.ParamsError(
                f"{'--gpus' if args.gpus else '--cluster'} and --jobs both place runs side by side: give one of them"
            )
        result = run_grid(
            args.profile,
            args.styles,
            args.scenarios,
            args.stages,
            overrides,
            redo=args.redo,
            hide_input=args.hide_input,
            gpus=args.gpus,
            jobs=args.jobs or "auto",
            top=not args.outcomes,
            replicates=args.replicates,
            cluster=args.cluster,
        )
        if args.outcomes:  # a run placed on a GPU reports back to its parent
            io.write_json(args.outcomes, [dataclasses.asdict(o) for o in result.outcomes])
    except params.ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside any stage (validation, the index)
        print(f"interrupted ({STOPPED_BY[0]}) outside a stage; nothing was left half-written", file=sys.stderr)
        return 130
    except OSError as exc:  # e.g. the disk filled while writing the index
        print(f"error: {_short_error(exc)}", file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        return 1
    return 130 if result.interrupted else 1 if result.failed else 0
