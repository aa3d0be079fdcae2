"""Notebook kernels forked from a warm process, on the CPU.

A fresh kernel imports torch, transformers, PEFT and vLLM again for every stage: most of a tiny
stage's time (docs/measurements.md). With `warm()` active, the runner starts one process that
imports them once (`WARM`; a kernel asked for meanwhile waits), and papermill's kernel command
goes through `launch`, which asks that process to fork a kernel with the launcher's streams,
folder and environment.

What a forked kernel is not told at import time it cannot be told later: modules read the
environment and the set of cores when imported (the Hub's endpoint, OpenMP's thread count).
So the warm process serves only a request whose environment and cores are the ones it
imported under; any other gets "no", and the launcher becomes a fresh kernel (exec). Off the
CPU (`device` cuda or auto) no warm process is started: vLLM's import may touch CUDA, which a
forked child cannot use.

A grid on CPU job slots (`--jobs`) runs each run in a process of its own, one after another per
slot: the grid's runner starts one warm process per slot (`for_slots`), in the slot's environment
and on its cores, and each run's runner uses it (`ADDRESS_ENV`) rather than starting its own.

A forked kernel's own Python children started by multiprocessing's "spawn" (vLLM's engine core
and its worker, out of the kernel's process: vLLM forces spawn on the CPU) fork from the warm
process too: the kernel's `multiprocessing.set_executable` is a script in the warm process's
folder that runs `spawn`, the same launcher for `python -c "...spawn_main(...)"`, with the
spawning process's file descriptors at their numbers. Only for a process the warm process forked
(a kernel, or such a child): the imports it runs on are the warm process's, so its environment,
which it has set more of while it ran, goes to the child whole. The child then has what the
"fork" start method (vLLM's default off the CPU) would give it, less the spawning process's
threads and memory. Except what a process reads only as it starts (`AT_START`: the loader's
LD_PRELOAD, OpenMP's threads and places, which vLLM sets for its worker) and its cores: where
these changed, a fresh process; but for an LD_PRELOAD of libraries the warm process has loaded
already (vLLM on the CPU preloads torch's own libgomp for its engine core and worker).

The launcher stays what jupyter_client started and watches: it relays signals to the kernel's
process group and exits with the kernel's status. Killed (jupyter_client's "immediate" shutdown,
the runner's Ctrl-C), its connection closes and the warm process kills that kernel's group. The
warm process ends with its runner (its standard input closes).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import selectors
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

# In import order, cheapest first: what every notebook needs, then training, then vLLM. A
# module missing here is imported by the kernel that needs it, as before.
WARM = (
    "lib.params",
    "lib.record",
    "lib.formats",
    "lib.logs",
    "lib.plots",
    "lib.data",
    "ipykernel.ipkernel",  # not kernelapp, whose defaults read the kernel's JPY_PARENT_PID when imported
    "IPython.core.shellapp",
    "debugpy",
    "matplotlib.pyplot",
    "seaborn",
    "torch",
    "transformers:AutoModelForCausalLM",  # module:name, for what a package imports only when asked
    "transformers:AutoTokenizer",
    "transformers:Qwen3ForCausalLM",
    "transformers:TrainerCallback",
    "datasets",
    "peft:PeftModel",
    "peft:LoraConfig",
    "trl:SFTTrainer",
    "trl:SFTConfig",
    "lib.train",
    "lib.merge",
    "lib.base_pair",
    "vllm:LLM",
    "vllm:SamplingParams",
    "vllm.engine.arg_utils",
    "vllm.v1.engine.core",
    "vllm.v1.worker.cpu_worker",
    "vllm.v1.worker.cpu_model_runner",
    "vllm.model_executor.models.qwen3",
    "vllm.v1.spec_decode.draft_model",
    "vllm.lora.worker_manager",
    "lib.engine",
    "lib.distill",
    "lib.benchmark",
    "lib.analysis",
    "lib.findings",
)
# Set by jupyter_client for each kernel it starts: not a difference the imports could have seen.
PER_KERNEL = ("JPY_",)
# Read by a process as it starts (the loader, Python, OpenMP and the allocators as they load), never
# after: a spawned child whose environment changed any of these is a fresh process.
AT_START = ("LD_", "PYTHON", "OMP_", "GOMP_", "KMP_", "MALLOC_", "MKL_", "OPENBLAS_")
# multiprocessing's spawn: the only `python -c` program a warm process runs
SPAWN_MAIN = "from multiprocessing.spawn import spawn_main; spawn_main("
# The address of a warm process a runner shares rather than starts: the one of its CPU job slot,
# started by the grid's runner for the runs placed on that slot one after another (`for_slots`).
ADDRESS_ENV = "WORKBOOK_WARM_KERNELS"
_HEADER = struct.Struct("!I")
MAX_FDS = 64  # a request's descriptors: a kernel's 3 streams; a spawned child's, a few more
_active: dict = {}


@contextlib.contextmanager
def warm(start: bool, modules=WARM):
    """Kernels of notebooks executed in this block (`papermill_kwargs`) fork from a warm
    process: its CPU job slot's (`ADDRESS_ENV`), else, with `start`, one that imports `modules`,
    started at the first kernel (a grid with nothing to run starts none) and ended with the block."""
    shared = os.environ.get(ADDRESS_ENV)
    shared = shared if shared and os.path.exists(shared) else None
    if _active or not (start or shared):
        yield
        return
    _active["start"] = lambda: _Shared(shared) if shared else _Server(modules)
    try:
        yield
    finally:
        server = _active.pop("server", None)
        _active.clear()
        if server is not None:
            server.close()


def _server():
    """This block's warm process, started at the first call; None where none could start."""
    if "server" not in _active:
        _active["server"] = _started(_active["start"], "the kernels")
    return _active["server"]


def _started(start, what: str):
    """`start()`, or None with a warning where no warm process can start (a full disk, no
    processes left): the kernels start fresh, slower."""
    try:
        return start()
    except OSError as exc:
        print(f"warning: no warm process for {what} ({exc}); each kernel starts fresh", file=sys.stderr, flush=True)
        return None


@contextlib.contextmanager
def for_slots(enabled: bool, envs: list[dict], modules=WARM):
    """One warm process per CPU job slot, for the runs its slot runs one after another, each a
    process of its own. `envs` are the slots' environments (their cores, threads); yields for
    each a function giving what to add to a run's environment there: the address, which the
    run's `warm` finds, of its slot's warm process, started at the slot's first run. They end
    with the block."""
    servers: dict = {}

    def adding(i: int):
        def env() -> dict:
            if not enabled:
                return {}
            if i not in servers:
                servers[i] = _started(lambda: _Server(modules, env={**os.environ, **envs[i]}, shared=True), "the slots")
            return {ADDRESS_ENV: servers[i].address} if servers[i] else {}

        return env

    try:
        yield [adding(i) for i in range(len(envs))]
    finally:
        for server in servers.values():
            if server is not None:
                server.close()


# How long papermill waits for a warm kernel's first reply (its own default: 60 s). A kernel
# asked for during the warm process's imports waits for them (about 20 CPU-seconds), and on a
# loaded machine they took longer than 60 s: the stage failed "Kernel didn't respond in 60
# seconds" (seen on a Ray node, where chains run at niceness 15, beside other work). A kernel that
# dies meanwhile is still noticed within a second (jupyter_client checks it is alive as it waits).
START_TIMEOUT_S = 600


def papermill_kwargs() -> dict:
    """What `papermill.execute_notebook` needs for a warm kernel here: nothing outside `warm`."""
    server = _server() if _active else None
    if server is None:
        return {}
    return {"kernel_manager_class": _manager_class(server.address), "start_timeout": START_TIMEOUT_S}


class _Shared:
    """A warm process this runner uses but did not start (its slot's)."""

    def __init__(self, address: str):
        self.address = address

    def cpu_seconds(self) -> float:
        """CPU seconds of the kernels that have ended (those killed are waited for first)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(self.address)
            _send(conn, b'{"cpu": true}')
            return float(_receive(conn)[0]["cpu"])

    def close(self) -> None:
        pass  # its slot's runner ends it


class _Server(_Shared):
    """A warm process this runner starts and ends. `env`: its environment, that of the kernels
    it serves (default: this process's); `shared`: with its own address in it, as the runs of
    its slot have it."""

    def __init__(self, modules, env: dict | None = None, shared: bool = False):
        self._folder = tempfile.mkdtemp(prefix="workbook-kernels-")
        super().__init__(os.path.join(self._folder, "socket"))
        # os.environ as jupyter_client passes it to kernels, not the C environment, which can
        # hold more (readline, once imported, sets LINES and COLUMNS there)
        env = dict(os.environ if env is None else env)
        if shared:
            env[ADDRESS_ENV] = self.address
        self._log = open(os.path.join(self._folder, "warm.log"), "wb")  # noqa: SIM115 (closed in close)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "lib.kernels", "serve", self.address, *modules],
            stdin=subprocess.PIPE,
            env=env,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,  # the terminal's Ctrl-C reaches the runner, which decides
        )
        deadline = time.monotonic() + 30
        while not os.path.exists(self.address) and self._proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # listening before any kernel asks (it binds first, then imports)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._proc.stdin.close()  # the warm process kills its kernels and ends
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()
        shutil.rmtree(self._folder, ignore_errors=True)


def cpu_seconds() -> float | None:
    """CPU seconds of the warm kernels ended so far (0 outside `warm`): they are the warm
    process's children, not the runner's, so `resource.getrusage` does not count them."""
    server = _active.get("server")
    if server is None:  # none started yet, or none could: the kernels so far were fresh
        return 0.0
    try:
        return server.cpu_seconds()
    except (OSError, ValueError, ConnectionError, KeyError):
        return None  # the warm process is gone, and with it what its kernels used: unknown


def _manager_class(address: str):
    from jupyter_client import AsyncKernelManager

    class WarmKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            cmd = super().format_kernel_cmd(extra_arguments)
            return [sys.executable, "-m", "lib.kernels", "launch", address, *cmd]

    return WarmKernelManager


# --- the warm process ---


def _fingerprint(env: dict) -> dict:
    return {k: v for k, v in env.items() if not k.startswith(PER_KERNEL)}


def _send(conn, data: bytes, fds=()) -> None:
    socket.send_fds(conn, [_HEADER.pack(len(data)) + data], list(fds))


def _receive(conn, max_fds: int = 0):
    data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, max_fds)
    if len(data) < _HEADER.size:
        raise ConnectionError("short request")
    (size,) = _HEADER.unpack_from(data)
    data = data[_HEADER.size :]
    while len(data) < size:
        more = conn.recv(size - len(data))
        if not more:
            raise ConnectionError("request cut short")
        data += more
    return json.loads(data), fds


def serve(address: str, modules) -> None:
    """The warm process: import `modules` one at a time, then fork a kernel for each request
    (those that came during the imports waited), until standard input closes. On a CPU job
    slot's cores first, as its runs keep to them before any import."""
    from . import device

    device.keep_to_slot_cpus()
    _Warm(address).run(modules)


class _Warm:
    def __init__(self, address: str):
        self.imported_under = _fingerprint(dict(os.environ)), sorted(os.sched_getaffinity(0))
        # the Python its kernels' multiprocessing spawns: `spawn` with this address (before the
        # socket exists, so that a kernel that finds the socket finds the script)
        self.python = _python_script(address)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(address)
        self.listener.listen(64)
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        self.wake_w = wake_w
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_w)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, "accept")
        self.sel.register(sys.stdin, selectors.EVENT_READ, "runner")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "child")
        self.kernels: dict[int, socket.socket] = {}  # kernel PID -> its launcher's connection
        self.waiting = []  # (connection, request, streams) that came during the imports
        self.cpu = 0.0  # CPU seconds of the kernels ended so far, their children included

    def run(self, modules) -> None:
        todo = list(modules)
        # vLLM configures its logger when imported; a kernel's `engine.configure` would have set this first
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        while True:
            for key, _ in self.sel.select(0 if todo or self.waiting else None):
                if key.data == "runner":
                    if not os.read(sys.stdin.fileno(), 1 << 12):
                        for pid in self.kernels:
                            _kill_group(pid)
                        return
                elif key.data == "accept":
                    self._accept()
                elif key.data == "child":
                    os.read(self.wake_r, 1 << 12)
                elif _closed(key.fileobj):  # a launcher's connection: closed, so its kernel goes too
                    self.sel.unregister(key.fileobj)
                    _kill_group(key.data)
            self._reap()
            if todo:
                name = todo.pop(0)
                try:
                    import_named(name)
                except Exception as exc:  # a kernel that needs it imports it itself, and says why it fails
                    print(f"warm: import {name} failed: {exc!r}", file=sys.stderr, flush=True)
                if not todo:
                    import gc

                    gc.freeze()  # what the kernels share is never copied by a collection's pass
                continue
            while self.waiting:
                self._fork(*self.waiting.pop(0))

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        try:
            request, fds = _receive(conn, max_fds=MAX_FDS)
        except (OSError, ValueError, ConnectionError):
            conn.close()
            return
        if "cpu" in request:  # the runner: what its kernels used, once those it stopped have ended
            for pid, kernel_conn in list(self.kernels.items()):
                if _closed(kernel_conn):
                    _kill_group(pid)
                    self._reap(pid)
            with contextlib.suppress(OSError):
                _send(conn, json.dumps({"cpu": self.cpu}).encode())
            conn.close()
            return
        request["pid"] = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
        if not self._refused(conn, request, fds):  # told at once, not after the imports
            self.waiting.append((conn, request, fds))

    def _refused(self, conn, request: dict, fds) -> bool:
        why = self._why_not(request)
        if why:
            with contextlib.suppress(OSError):
                _send(conn, json.dumps({"no": why}).encode())
            conn.close()
            for fd in fds:
                os.close(fd)
        return bool(why)

    def _why_not(self, request: dict) -> str | None:
        env, (env0, cores0) = _fingerprint(request["env"]), self.imported_under
        if request.get("spawn"):
            flags, flags0 = request["argv"][: request["argv"].index("-c")], subprocess._args_from_interpreter_flags()
            if flags != flags0:
                return f"its interpreter options {flags} are not the warm process's {flags0}"
            if _parent(request["pid"]) not in self.kernels:
                return "not asked for by a process the warm process forked"
            # the imports it runs on are these: its environment goes whole, less what is read at start
            at_start, at_start0 = ({k: v for k, v in e.items() if k.startswith(AT_START)} for e in (env, os.environ))
            if "LD_PRELOAD" not in at_start0 and _loaded(at_start.get("LD_PRELOAD", "")):
                # libraries the imports loaded already (vLLM's on the CPU: torch's own libgomp), first
                # in the lookup order there, not here: the engine core runs no OpenMP, its worker
                # comes fresh (OMP_*)
                at_start.pop("LD_PRELOAD")
            why = _differs(at_start, at_start0)
            if why:
                return f"it changed what a process reads as it starts: {why}"
        elif why := _differs(env, env0):
            return f"its environment differs from the warm process's: {why}"
        if sorted(request["cores"]) != cores0:
            return f"its cores {request['cores']} are not the warm process's {cores0}"
        return None

    def _fork(self, conn, request: dict, fds) -> None:
        others = [self.listener, self.sel, self.wake_r, self.wake_w, *self.kernels.values()]
        others += [c for c, _, _ in self.waiting]
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _become_child(request, fds, others + [conn], self.python)
            except BaseException:  # on the launcher's stderr: the stage's dead kernel says why
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        try:
            _send(conn, json.dumps({"pid": pid}).encode())
        except OSError:
            pass  # the launcher is gone: its connection reads closed below, and the kernel goes
        self.kernels[pid] = conn
        self.sel.register(conn, selectors.EVENT_READ, pid)

    def _reap(self, pid: int = -1) -> None:
        """Collect ended kernels (`pid`: wait for that one), telling each launcher its status."""
        while self.kernels:
            try:
                done, status, usage = os.wait4(pid, 0 if pid > 0 else os.WNOHANG)
            except ChildProcessError:
                return
            if not done:
                return
            self.cpu += usage.ru_utime + usage.ru_stime  # its own children are in it once reaped
            conn = self.kernels.pop(done, None)
            if conn is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self.sel.unregister(conn)
                with contextlib.suppress(OSError):
                    _send(conn, json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode())
                conn.close()
            if pid > 0:
                return


def _closed(conn) -> bool:
    """Whether the launcher's end of `conn` is closed (it sends nothing after its request)."""
    try:
        conn.setblocking(False)
        return not conn.recv(1 << 12)
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        with contextlib.suppress(OSError):
            conn.setblocking(True)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


def _become_child(request: dict, fds, close, python: str) -> int:
    """In the forked child: the launcher's process as it asked (its descriptors at their numbers,
    folder, environment), then its kernel or its multiprocessing child; the exit status."""
    os.setsid()  # its own process group, killed whole as jupyter_client kills a kernel's
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a fresh Python's: KeyboardInterrupt
    for f in close:  # the warm process's own, and the other children's connections
        with contextlib.suppress(OSError):
            f.close() if hasattr(f, "close") else os.close(f)
    at = request.get("fds_at", [0, 1, 2])  # 0 was the runner's pipe to the warm process
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, max(at, default=2) + 1) for fd in fds]  # none lands on another's number
    for fd in fds:
        os.close(fd)
    for fd, number in zip(moved, at, strict=True):
        os.dup2(fd, number)
        os.close(fd)
    if request.get("spawn"):  # its spawning process's, whole
        os.environ.clear()
        os.environ.update(request["env"])
    else:  # the rest is the request's already, plus what the imports set
        os.environ.update({k: v for k, v in request["env"].items() if k.startswith(PER_KERNEL)})
    os.chdir(request["cwd"])
    if "numpy" in sys.modules:  # a fresh process seeds NumPy's global generator from the OS
        sys.modules["numpy"].random.seed()
    import multiprocessing

    multiprocessing.set_executable(python)  # its own spawned children fork from here too
    try:
        if request.get("spawn"):
            argv = request["argv"][request["argv"].index("-c") :]
            sys.argv, sys.path[0] = ["-c", *argv[2:]], ""  # as `python -c` has them
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
            return 0
        sys.path[0] = request["cwd"]  # as `python -m` puts it
        sys.argv = ["ipykernel_launcher", *request["argv"]]
        from ipykernel import kernelapp

        kernelapp.launch_new_instance()
    except SystemExit as exc:
        return exit_status(exc)
    return 0


def import_named(name: str) -> None:
    """Import `name`: a module, or `module:name` for what a package imports only when asked
    (transformers' lazy attributes), as `WARM` lists them."""
    module, _, attr = name.partition(":")
    getattr(importlib.import_module(module), attr) if attr else importlib.import_module(module)


def exit_status(exc: SystemExit) -> int:
    """The status Python exits with for `exc`: its code, 0 for None, 1 for a message."""
    return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


def _differs(env: dict, env0: dict) -> str:
    keys = sorted({k for k, _ in set(env.items()) ^ set(env0.items())})
    return ", ".join(f"{k}={env.get(k, '(unset)')!r} (warm: {env0.get(k, '(unset)')!r})" for k in keys[:5])


def _loaded(preload: str) -> bool:
    """Whether `preload` (LD_PRELOAD's value) names only libraries this process has loaded."""
    names = {os.path.realpath(p) for p in preload.replace(" ", ":").split(":") if p}
    if not names:
        return False
    with open("/proc/self/maps") as f:
        mapped = {os.path.realpath(line.split()[-1]) for line in f if line.rstrip().endswith(".so") or ".so." in line}
    return names <= mapped


def _parent(pid: int) -> int | None:
    import psutil

    try:
        return psutil.Process(pid).ppid()
    except psutil.Error:
        return None


def _python_script(address: str) -> str:
    """A `python` for multiprocessing's spawn beside `address`: `spawn` with it, then the arguments."""
    path = os.path.join(os.path.dirname(address), "python")
    launcher = [sys.executable, "-m", "lib.kernels", "spawn", address]
    with open(path, "w") as f:
        f.write(f'#!/bin/sh\nexec {" ".join(shlex.quote(a) for a in launcher)} "$@"\n')
    os.chmod(path, 0o700)
    return path


# --- the launcher: the kernel command jupyter_client starts ---


def launch(address: str, cmd: list[str]) -> int:
    """Ask the warm process at `address` for a kernel running `cmd`'s arguments; relay signals
    to it and exit with it. Where it cannot serve, run `cmd` itself (a fresh kernel)."""
    if "ipykernel_launcher" not in cmd:
        _fresh(cmd, "a fresh kernel: not an ipykernel command")
    args = cmd[cmd.index("ipykernel_launcher") + 1 :]
    return _forked(address, {"argv": args}, [0, 1, 2], cmd, "a fresh kernel")


def spawn(address: str, args: list[str]) -> int:
    """multiprocessing's spawn, through a forked kernel's `set_executable`: `args` are Python's
    (`-c "...spawn_main(...)" --multiprocessing-fork`). Ask the warm process for that child, with
    every descriptor this process has at its number (spawn passes the pipe it reads its process
    from, and the resource tracker's, by number); elsewhere, Python itself (a fresh process)."""
    python = [sys.executable, *args]
    prog = args[args.index("-c") + 1] if "-c" in args[:-1] else ""
    if not prog.startswith(SPAWN_MAIN):  # the resource tracker: a small process, started fresh
        _fresh(python)
    fds = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own, closed by now
            os.fstat(int(name))
            fds.append(int(name))
    return _forked(address, {"argv": args, "spawn": True, "fds_at": fds}, fds, python, "a fresh process")


def _fresh(cmd: list[str], why: str | None = None) -> None:
    """This process becomes `cmd` (exec), saying `why` first: slower, not wrong."""
    if why:
        print(why, file=sys.stderr, flush=True)
    os.execv(cmd[0], cmd)


def _forked(address: str, request: dict, fds: list[int], fresh: list[str], what: str) -> int:
    """The warm process's child for `request` (this process's folder, environment and cores
    added), its signals relayed and its exit status returned; or `fresh`, exec'd, where the warm
    process cannot serve it (saying why, as `what`)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(address)
        request = {**request, "cwd": os.getcwd(), "env": dict(os.environ), "cores": sorted(os.sched_getaffinity(0))}
        _send(conn, json.dumps(request).encode(), fds)
        reply, _ = _receive(conn)
    except (OSError, ValueError, ConnectionError) as exc:
        reply = {"no": f"warm process unreachable: {exc}"}
    if "pid" not in reply:
        conn.close()
        _fresh(fresh, f"{what}: {reply['no']}")
    pid = reply["pid"]

    def relay(signum, _frame):
        with contextlib.suppress(OSError):
            os.killpg(pid, signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, relay)
    try:
        done, _ = _receive(conn)
    except (OSError, ValueError, ConnectionError):
        return 1
    return int(done.get("exit", 1))


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        serve(argv[1], argv[2:])
        return 0
    if argv[:1] == ["launch"]:
        return launch(argv[1], argv[2:])
    if argv[:1] == ["spawn"]:
        return spawn(argv[1], argv[2:])
    print(
        "usage: python -m lib.kernels serve ADDRESS MODULE... | launch ADDRESS CMD... | spawn ADDRESS PYTHON-ARGS...",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
