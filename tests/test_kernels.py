"""Kernels forked from a warm process (lib/kernels.py): they start with its imports and the
launcher's folder and environment; a request it could not serve as a fresh kernel would be
gets a fresh kernel, saying why; a kernel's children through multiprocessing's spawn fork from it
too; a killed launcher takes its kernel with it; the kernels' CPU
time is counted; the warm process ends with its block. Through papermill and jupyter_client
themselves, with a warm process that imports only torch."""

import contextlib
import json
import os
import threading
import time

import nbformat
import papermill as pm
import psutil
import pytest

from lib import kernels, runner

pytestmark = pytest.mark.slow

PROBE = """
import json, os, sys, time
t0 = time.process_time()
while time.process_time() - t0 < {burn}:
    pass
json.dump({{"torch": "torch" in sys.modules, "pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(),
           "x": os.environ.get("WORKBOOK_TEST_X"), "jpy": os.environ.get("JPY_PARENT_PID")}}, open({out!r}, "w"))
time.sleep({sleep})
"""


def _notebook(tmp_path, out, burn=0.0, sleep=0):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(PROBE.format(out=str(out), burn=burn, sleep=sleep))]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "probe.ipynb"
    nbformat.write(nb, path)
    return path


def _serving(address: str) -> int:
    """The PID of this process's child that serves `address` (other tests' children may be zombies)."""
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if address in child.cmdline():
                return child.pid
    raise AssertionError(f"no child of this process serves {address}")


def _execute(path, cwd, **kwargs):
    pm.execute_notebook(
        str(path),
        str(path.with_name("ran.ipynb")),
        kernel_name="python3",
        cwd=str(cwd),
        progress_bar=False,
        shutdown_kernel="immediate",
        **{**kernels.papermill_kwargs(), **kwargs},
    )


def test_a_kernel_forks_with_the_warm_imports_and_its_own_folder(tmp_path, capfd):
    out, cwd = tmp_path / "seen.json", tmp_path / "work"
    cwd.mkdir()
    with kernels.warm(True, modules=("torch",)):
        before = kernels.cpu_seconds()  # none started yet: 0
        _execute(_notebook(tmp_path, out, burn=0.5), cwd)
        used = kernels.cpu_seconds() - before
        server = kernels._active["server"]
        seen = json.loads(out.read_text())
        assert seen["torch"], "the kernel imported torch itself: not forked from the warm process"
        assert seen["ppid"] == server._proc.pid  # the warm process's child
        assert seen["cwd"] == str(cwd)
        assert seen["jpy"] == str(os.getpid())  # what jupyter_client set for this kernel
        assert 0.5 <= used < 30, used  # its CPU, counted though not this process's child
    assert server._proc.poll() is not None  # ended with the block
    assert not os.path.exists(server.address)
    assert "a fresh kernel" not in capfd.readouterr().err


def test_a_kernel_asked_for_during_the_warm_imports_waits_for_them(tmp_path, monkeypatch):
    """Its first reply comes after the warm process's imports: papermill's own start timeout (60 s,
    here scaled down to 2 s against a 4 s import) counts them and fails the stage; the warm
    kernels' (`kernels.START_TIMEOUT_S`) does not."""
    (tmp_path / "slow_to_import.py").write_text("import time\ntime.sleep(4)\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "seen.json"
    with kernels.warm(True, modules=("slow_to_import",)):
        with pytest.raises(RuntimeError, match="Kernel didn't respond in 2 seconds"):
            _execute(_notebook(tmp_path, out), tmp_path, start_timeout=2)
    assert not out.exists()
    with kernels.warm(True, modules=("slow_to_import",)):
        assert kernels.papermill_kwargs()["start_timeout"] == kernels.START_TIMEOUT_S > 60
        _execute(_notebook(tmp_path, out), tmp_path)
        assert json.loads(out.read_text())["ppid"] == kernels._active["server"]._proc.pid  # forked, once imported


def test_a_kernel_whose_environment_differs_is_a_fresh_one_saying_why(tmp_path, monkeypatch, capfd):
    out = tmp_path / "seen.json"
    with kernels.warm(True, modules=("torch",)):
        kernels.papermill_kwargs()  # the warm process starts (at the first kernel)
        monkeypatch.setenv("WORKBOOK_TEST_X", "set after the warm process started")  # its imports never saw it
        _execute(_notebook(tmp_path, out), tmp_path)
    seen = json.loads(out.read_text())
    assert seen["x"] == "set after the warm process started"
    assert not seen["torch"] and seen["ppid"] == os.getpid()  # jupyter_client's own child
    assert "a fresh kernel: its environment differs from the warm process's: WORKBOOK_TEST_X" in capfd.readouterr().err


# In a kernel: three children through multiprocessing's spawn (as vLLM starts its engine core), after
# setting a variable. The first reads from a pipe spawn passes it by number, says what it sees and
# ends with status 3; the second sleeps until killed; the third comes after OpenMP's thread count
# is set.
SPAWNS = """
import json, multiprocessing, os, time
os.environ["WORKBOOK_TEST_Y"] = "set by the kernel"
ctx = multiprocessing.get_context("spawn")
ours, theirs = ctx.Pipe()
ours.send("through the pipe")
code = (
    "import json, os, sys\\n"
    "seen = dict(torch='torch' in sys.modules, pid=os.getpid(), ppid=os.getppid(), got=conn.recv(),\\n"
    "            y=os.environ.get('WORKBOOK_TEST_Y'))\\n"
    "open(out, 'w').write(json.dumps(seen))\\n"
    "raise SystemExit(3)\\n"
)
child = ctx.Process(target=exec, args=(code, {{"conn": theirs, "out": {out!r}}}))
child.start()
child.join(60)
sleep = "import os, time; open(out, 'w').write(str(os.getpid())); time.sleep(300)"
asleep = ctx.Process(target=exec, args=(sleep, {{"out": {slept!r}}}))
asleep.start()
while not os.path.exists({slept!r}):
    time.sleep(0.05)
asleep.kill()  # its launcher, as vLLM force-kills an engine core that outlives its shutdown
asleep.join(60)
os.environ["OMP_NUM_THREADS"] = "1"  # as vLLM sets it for its worker: read by OpenMP as it loads
third = ctx.Process(target=exec, args=("import os; open(out, 'w').write(str(os.getppid()))", {{"out": {third!r}}}))
third.start()
third.join(60)
json.dump({{"exit": child.exitcode, "killed": asleep.exitcode, "third_ppid": int(open({third!r}).read()),
           "kernel": os.getpid()}}, open({ended!r}, "w"))
"""


def test_a_kernels_spawned_children_fork_from_the_warm_process_with_its_environment(tmp_path, capfd):
    out, slept, ended = tmp_path / "child.json", tmp_path / "slept", tmp_path / "ended.json"
    nb = nbformat.v4.new_notebook()
    code = SPAWNS.format(out=str(out), slept=str(slept), ended=str(ended), third=str(tmp_path / "third"))
    nb.cells = [nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "spawns.ipynb")
    with kernels.warm(True, modules=("torch",)):
        _execute(tmp_path / "spawns.ipynb", tmp_path)
        warm_pid = kernels._active["server"]._proc.pid
        seen, ended_with = json.loads(out.read_text()), json.loads(ended.read_text())
        assert seen["torch"] and seen["ppid"] == warm_pid, seen  # forked from the warm process
        assert seen["got"] == "through the pipe" and seen["y"] == "set by the kernel", seen
        assert (ended_with["exit"], ended_with["killed"]) == (3, -9), ended_with  # as spawn's own children end
        assert ended_with["third_ppid"] == ended_with["kernel"], ended_with  # Python itself, exec'd by its launcher
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(int(slept.read_text())).wait(20)  # TimeoutExpired: it outlived its killed launcher
    err = capfd.readouterr().err
    assert err.count("a fresh") == 1, err
    assert "a fresh process: it changed what a process reads as it starts: OMP_NUM_THREADS='1'" in err


def test_a_process_the_warm_process_did_not_fork_spawns_fresh_children(tmp_path, capfd):
    """Its imports were not the warm process's: its environment could have been read by them."""
    import multiprocessing
    import multiprocessing.spawn

    out = tmp_path / "child.json"
    with kernels.warm(True, modules=("torch",)):
        kernels.papermill_kwargs()
        script = os.path.join(os.path.dirname(kernels._active["server"].address), "python")
        ctx = multiprocessing.get_context("spawn")
        old = multiprocessing.spawn.get_executable()
        ctx.set_executable(script)
        try:
            code = "import json, os, sys; open(out, 'w').write(json.dumps([os.getppid(), 'torch' in sys.modules]))"
            child = ctx.Process(target=exec, args=(code, {"out": str(out)}))
            child.start()
            child.join(60)
        finally:
            ctx.set_executable(old)
    assert child.exitcode == 0 and json.loads(out.read_text()) == [os.getpid(), False]  # Python itself, exec'd
    assert "a fresh process: not asked for by a process the warm process forked" in capfd.readouterr().err


def test_killing_the_launcher_as_ctrl_c_does_kills_its_kernel(tmp_path):
    out = tmp_path / "seen.json"
    failed = {}

    def work():
        try:
            _execute(_notebook(tmp_path, out, sleep=120), tmp_path)
        except Exception as exc:  # the dead kernel, as papermill reports it
            failed["error"] = exc

    with kernels.warm(True, modules=()):
        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        deadline = time.monotonic() + 120
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        kernel = psutil.Process(json.loads(out.read_text())["pid"])
        runner._kill_kernels()  # what the runner does on Ctrl-C: its children running ipykernel
        kernel.wait(20)  # psutil.TimeoutExpired if the kernel outlived its launcher
        thread.join(60)
    assert not thread.is_alive() and "error" in failed


def test_a_slots_warm_process_serves_each_run_placed_on_it_and_ends_with_the_grid(tmp_path, monkeypatch):
    """As the runner's CPU job slots do: the grid's runner starts one per slot; a run's own
    runner (a process with the slot's environment) uses it, and leaves it running for the next."""
    out = tmp_path / "seen.json"
    slot = {"WORKBOOK_TEST_SLOT": "1"}
    with kernels.for_slots(True, [slot], modules=("torch",)) as adding:
        address = adding[0]()[kernels.ADDRESS_ENV]  # started at the slot's first run
        warm_pid = _serving(address)
        for run in range(2):
            with monkeypatch.context() as mp:  # this process as the run's runner
                for key, value in {**slot, **adding[0]()}.items():
                    mp.setenv(key, value)
                with kernels.warm(False):
                    _execute(_notebook(tmp_path, out), tmp_path)
            seen = json.loads(out.read_text())
            assert seen["torch"] and seen["ppid"] == warm_pid, (run, seen)
            assert psutil.pid_exists(warm_pid)  # the run's end does not end it
    assert not psutil.pid_exists(warm_pid) or psutil.Process(warm_pid).status() == psutil.STATUS_ZOMBIE
    assert not os.path.exists(address)


def test_no_room_for_a_warm_process_means_fresh_kernels_with_a_warning(monkeypatch, capfd):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(kernels.tempfile, "mkdtemp", full)
    with kernels.warm(True), kernels.for_slots(True, [{}]) as adding:
        assert kernels.papermill_kwargs() == {} and adding[0]() == {}
    err = capfd.readouterr().err
    assert "no warm process for the kernels ([Errno 28] No space left on device); each kernel starts fresh" in err
    assert "no warm process for the slots" in err


def test_a_block_that_starts_no_kernel_starts_no_warm_process(monkeypatch):
    """A grid with every stage done, or a test's stand-in for the notebooks, imports nothing."""

    def refuse(*args, **kwargs):
        raise AssertionError("a warm process started with no kernel to fork")

    monkeypatch.setattr(kernels, "_Server", refuse)
    with kernels.warm(True), kernels.for_slots(True, [{}, {}]):
        assert kernels.cpu_seconds() == 0.0


def test_the_runner_warms_only_on_the_cpu_and_for_enough_notebooks(monkeypatch):
    cpu, gpu = {"device": "cpu"}, {"device": "cuda"}
    assert runner.warm_kernels([cpu, cpu], runner.WARM_FROM)
    assert not runner.warm_kernels([cpu], runner.WARM_FROM - 1)
    assert not runner.warm_kernels([cpu, gpu], 10)
    assert not runner.warm_kernels([{"device": "auto"}], 10)  # may be a GPU: never forked
    monkeypatch.setenv("WORKBOOK_FRESH_KERNELS", "1")
    assert not runner.warm_kernels([cpu], 10)
