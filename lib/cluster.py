"""Runs placed by Ray: over the nodes of a cluster (`--cluster auto`, `host:port`, `ray://...`)
or over this machine's GPUs (`--gpus`, a local Ray instance started for the grid and stopped
after it). The runner hands over whole chains (one run's stages in one `python -m lib run`);
each becomes one Ray task asking for the GPUs and CPUs its run needs, and Ray sets its
`CUDA_VISIBLE_DEVICES`. No retries: a chain whose node dies ends failed, named, and the next
grid resumes it through the records like any other failure.

Everything a chain needs travels with it (`chain_env`): the driver's environment does not
reach other hosts. The checkout, the Python environment and `WORKBOOK_HOME` must be at the
same path on every node (a shared filesystem, docs/cluster.md); a chain writes its log, its
outcomes and where it ran (`placed.json`) beside its reports, and the driver reads them there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import device, io, logs, params, paths

LOOPBACK = "127.0.0.1"
# What a chain's process takes from the driver's environment: the workbook's own settings, the
# Hub's and Gemini's, the libraries' switches. Not CUDA_VISIBLE_DEVICES: Ray sets it per chain.
PASSED_PREFIXES = (
    "WORKBOOK_",
    "HF_",
    "HUGGING_FACE_",
    "GEMINI_",
    "GOOGLE_",
    "TRANSFORMERS_",
    "VLLM_",
    "WANDB_",
    "TOKENIZERS_",
    "PYTORCH_",
    "NCCL_",
    "TRITON_",
)
CANCEL_WAIT_S = 300  # after Ctrl-C: how long the driver waits for chains to record their stage interrupted


@dataclass
class Chain:
    """One run's stages, to run as one task. `reason`: why it asks for its GPUs (named in a refusal)."""

    name: str
    command: list[str]
    gpus: int
    cpus: int
    report_dir: Path
    reason: str = ""
    env: dict = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.report_dir / paths.RUNNER_LOG

    @property
    def outcomes(self) -> Path:
        return self.report_dir / paths.RUNNER_OUTCOMES

    @property
    def placed(self) -> Path:
        return self.report_dir / "placed.json"

    @property
    def stop(self) -> Path:
        """Written by the driver on Ctrl-C; the task polls for it (`_wait`) beside Ray's cancel."""
        return self.report_dir / "stop.request"


def chain_env(cpus: int) -> dict:
    """The environment a chain's process gets on any node: the checkout first on PYTHONPATH,
    an absolute home, the settings named by `PASSED_PREFIXES`, thread counts of its CPUs."""
    env = {k: v for k, v in os.environ.items() if k.startswith(PASSED_PREFIXES)}
    env["PYTHONPATH"] = paths.repo_first(os.environ.get("PYTHONPATH", ""))
    env["WORKBOOK_HOME"] = str(paths.home())
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(cpus)
    return env


@contextlib.contextmanager
def connected(address: str | None = None, gpus: list[str] | None = None):
    """A Ray connection for the grid: to the cluster at `address` ("auto": the one this host
    belongs to), else a local instance over `gpus` (device numbers of this machine), on
    loopback. A connection that exists already (a test's simulated cluster) is used as it is;
    what is started here is stopped at exit."""
    try:
        import ray
    except ImportError:
        raise params.ParamsError(
            "--gpus and --cluster place runs through Ray, which is not installed here: "
            "pip install ray==2.60.0 (requirements/cpu.txt), or run one run at a time "
            "without them"
        ) from None

    if ray.is_initialized():
        yield
        return
    quiet = dict(log_to_driver=False, logging_level=logging.ERROR)
    if address:
        _reachable(address)
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise params.ParamsError(f"--cluster {address}: no Ray cluster could be reached ({exc})") from None
    else:
        # Ray reads the GPUs it may hand out from CUDA_VISIBLE_DEVICES at start; the grid's
        # own variable is left as it was.
        before = os.environ.get("CUDA_VISIBLE_DEVICES")
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus or [])
        try:
            # "local": a new instance, never one that a stale `ray start` record points at; on
            # loopback, it needs no network and opens nothing to it.
            ray.init(
                address="local",
                num_cpus=len(device.usable_cpus()),
                num_gpus=len(gpus or []),
                include_dashboard=False,
                _node_ip_address=LOOPBACK,
                object_store_memory=128 * 2**20,
                **quiet,
            )
        finally:
            if before is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = before
    try:
        yield
    finally:
        ray.shutdown()


def _reachable(address: str, timeout_s: float = 10.0) -> None:
    """A `host:port` (or `ray://host:port`) that nothing answers is refused at once: Ray itself
    retries such an address for minutes before it fails (measured: over 3 minutes). `auto` is
    the address the last `ray start` on this host recorded, which may be a cluster gone since."""
    if address == "auto":
        try:  # Ray's own lookup (RAY_ADDRESS, then the record of the last `ray start`)
            from ray._private.services import canonicalize_bootstrap_address_or_die
        except ImportError:  # another Ray: leave it to ray.init
            return
        try:
            found = canonicalize_bootstrap_address_or_die("auto")
        except ConnectionError as exc:
            raise params.ParamsError(f"--cluster auto: no Ray cluster runs on this host ({exc})") from None
        _reachable_at(address, found, timeout_s)
    else:
        _reachable_at(address, address.removeprefix("ray://"), timeout_s)


def _reachable_at(asked: str, address: str, timeout_s: float) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        at = "" if asked == address else f" (its address: {address})"
        raise params.ParamsError(
            f"--cluster {asked}{at}: nothing answers there ({exc}); start the head with "
            f"`ray start --head` (docs/cluster.md) or give its address"
        ) from None


def nodes() -> list[dict]:
    """The cluster's live nodes: id, host address, GPUs and CPUs."""
    import ray

    return [
        {
            "node": n["NodeID"],
            "host": n.get("NodeManagerAddress", "?"),
            "gpus": int(n["Resources"].get("GPU", 0)),
            "cpus": int(n["Resources"].get("CPU", 0)),
        }
        for n in ray.nodes()
        if n.get("Alive")
    ]


def refuse_unplaceable(chains: list[Chain], live: list[dict]) -> None:
    """A chain no node can hold would wait in Ray's queue for ever: refused before anything is
    submitted, naming what it asks and the most any node has."""
    most_gpus = max((n["gpus"] for n in live), default=0)
    most_cpus = max((n["cpus"] for n in live), default=0)
    for c in chains:
        if c.gpus > most_gpus:
            raise params.ParamsError(
                f"run {c.name} needs {c.gpus} GPU(s) ({c.reason}), but no node of the cluster has more than "
                f"{most_gpus} ({len(live)} node(s)); nothing was submitted"
            )
        cpus_beside = max(n["cpus"] for n in live if n["gpus"] >= c.gpus)  # one node at least: checked above
        if c.cpus > cpus_beside:
            raise params.ParamsError(
                f"run {c.name} needs {c.cpus} CPU(s) (grid.cpus_per_run) beside {c.gpus} GPU(s), but no such node "
                f"has more than {cpus_beside} (the most any node has: {most_cpus}); nothing was submitted"
            )


def _with_parent() -> None:
    """In the chain's process before it starts: SIGINT reaches it again (Ray's workers block
    SIGINT, and a child inherits the mask: the cancel's SIGINT would wait for ever), and the
    process dies with the worker that started it (a lost node, a killed worker), never left
    writing on its own."""
    import ctypes

    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_chain(command: list[str], env: dict, cwd: str, log: str, placed: str, stop: str) -> dict:
    """The Ray task: one chain's process on the node and GPUs Ray gave it. Stopped (the
    driver's Ctrl-C: Ray's cancel, or the `stop` file the driver writes beside it), it passes a
    SIGINT on, so that the chain records its stage interrupted."""
    import ray

    where = {
        "node": ray.get_runtime_context().get_node_id(),
        "host": socket.gethostname(),
        "gpus": ",".join(str(g) for g in ray.get_gpu_ids()),
        "pid": os.getpid(),
        "since": time.time(),
    }
    io.write_json(placed, where)
    child = {**os.environ, **env, paths.NODE_ENV: where["node"], "CUDA_VISIBLE_DEVICES": where["gpus"]}
    with open(log, "w") as keep:
        proc = subprocess.Popen(
            command, env=child, cwd=cwd, stdout=keep, stderr=subprocess.STDOUT, preexec_fn=_with_parent
        )
        try:
            code = _wait(proc, Path(stop))
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            code = proc.wait()
    return {**where, "code": code}


def _wait(proc, stop: Path) -> int:
    """Wait for the chain's process a second at a time: Ray's cancel raises KeyboardInterrupt
    in the task only when Python code runs, never inside one long blocking wait; and a cancel
    can go unseen (a driver's Ctrl-C once let its chain run to the end), so the driver's `stop`
    file, on the shared home, stops the chain too."""
    while True:
        try:
            return proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            if stop.exists():
                raise KeyboardInterrupt(f"{stop} written by the driver") from None


def where(chain: Chain) -> dict:
    """Where a chain ran (or was running), from the file its task wrote; {} if it never started."""
    try:
        return io.read_json(chain.placed)
    except (OSError, ValueError):
        return {}


def describe(place: dict) -> str:
    """`node 5383852c01… (host h, GPU 0)`: how a message names where a chain ran."""
    if not place:
        return "no node (it never started)"
    gpus = f", GPU {place['gpus']}" if place.get("gpus") else ""
    return f"node {place.get('node')} ({place.get('host')}{gpus})"


def place(chains: list[Chain], relay, after: dict[str, str] | None = None) -> dict[str, dict | Exception]:
    """Submit the chains and wait for all: name -> what its task returned, or the exception that
    ended it (a lost node, a crashed worker). `after`: chain -> the chain it waits for (a later
    replicate trains on its first replicate's data), submitted once that one has ended. Lines
    of the chains' logs that say where they are (`relay_new_lines`) are passed to `relay` as
    they come. Ctrl-C cancels the tasks, waits for them to record their stages interrupted, and
    submits nothing more; a chain never submitted, or never started, has no entry."""
    import ray

    task = ray.remote(run_chain)
    names = {c.name for c in chains}
    after = {k: v for k, v in (after or {}).items() if v in names}  # one outside this grid has ended
    refs, ended, tails, pending = {}, {}, {c.name: 0 for c in chains}, []
    waiting = [c for c in chains if c.name in after]

    def submit(c: Chain) -> None:
        c.report_dir.mkdir(parents=True, exist_ok=True)
        for f in (c.outcomes, c.placed, c.stop):
            f.unlink(missing_ok=True)
        c.log.write_text("")
        ref = task.options(
            num_gpus=c.gpus,
            num_cpus=c.cpus,
            max_retries=0,
            runtime_env={"env_vars": {"PYTHONPATH": c.env["PYTHONPATH"]}},
        ).remote(c.command, c.env, str(paths.REPO), str(c.log), str(c.placed), str(c.stop))
        refs[ref] = c
        pending.append(ref)

    def collect(done) -> None:
        for ref in done:
            pending.remove(ref)
            try:
                ended[refs[ref].name] = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - Ray's errors for a lost node or worker vary
                ended[refs[ref].name] = exc

    def follow() -> None:
        for c in refs.values():
            tails[c.name] = relay_new_lines(c, tails[c.name], relay)

    try:
        for c in chains:
            if c.name not in after:
                submit(c)
        while pending or waiting:
            for c in [c for c in waiting if after[c.name] in ended]:
                waiting.remove(c)
                submit(c)
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0) if pending else ([], [])
            follow()
            collect(done)
    except KeyboardInterrupt:
        for ref in pending:
            with contextlib.suppress(OSError):
                refs[ref].stop.write_text("Ctrl-C on the driver\n")
            ray.cancel(ref)
        if pending:
            done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_WAIT_S)
            collect(done)
        follow()
        for c in refs.values():  # one still running keeps its request
            if c.name in ended:
                c.stop.unlink(missing_ok=True)
    return ended


def relay_new_lines(chain: Chain, offset: int, relay) -> int:
    """Pass on the lines a chain's log gained since `offset` that say where it is (stage lines,
    warnings, errors; not the notebooks' chatter), the chain's place in front; the new offset."""
    try:
        with open(chain.log, "rb") as f:
            f.seek(offset)
            new = f.read()
    except OSError:
        return offset
    complete = new[: new.rfind(b"\n") + 1]
    place = where(chain)
    tag = (
        f"[{place.get('host', '?')} {place.get('node', '?')[:8]}{' gpu ' + place['gpus'] if place.get('gpus') else ''}]"
    )
    for line in complete.decode(errors="replace").splitlines():
        line = line.split("\r")[-1]
        if logs.says_where(line):
            relay(f"{tag} {line.rstrip()}")
    return offset + len(complete)
