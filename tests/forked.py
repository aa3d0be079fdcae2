"""Scripts run as `python -c SCRIPT ARGS...` runs them, each in a fresh process, without each
paying for the imports: the processes fork from one that imported `preload` under the same
environment and folder, and ran nothing else (a test's several calls to the workbook against the
local Hub: huggingface_hub reads the Hub's address and cache from the environment as it is
imported, so the test process itself cannot make these calls)."""

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

# The forking process: imports (as the warm kernels' process names them), then one child per
# request line, its exit status on a line back.
_SERVER = r"""
import json, os, sys
from lib.kernels import exit_status, import_named
for name in sys.argv[1:]:
    import_named(name)
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for fd, path in ((1, job["out"]), (2, job["err"])):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
            sys.stdin = open(os.devnull)
            sys.argv = ["-c", *job["args"]]
            exec(compile(job["script"], "<string>", "exec"), {"__name__": "__main__"})
            code = 0
        except SystemExit as exc:
            code = exit_status(exc)
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(json.dumps(os.waitstatus_to_exitcode(status)), flush=True)
"""


class Forks:
    """`run(script, *args)` -> `subprocess.CompletedProcess` (text), as `subprocess.run([python,
    "-c", script, *args], env=env, cwd=cwd, capture_output=True, text=True)` returns it."""

    def __init__(self, env: dict, cwd, preload: list[str]):
        self._dir = tempfile.TemporaryDirectory(prefix="forks-")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, *preload],
            env=env,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its children with it, should one hang
        )
        self._n = 0

    def run(self, script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        self._n += 1
        out, err = (Path(self._dir.name) / f"{self._n}.{s}" for s in ("out", "err"))
        job = {"script": script, "args": list(args), "out": str(out), "err": str(err)}
        self._proc.stdin.write(json.dumps(job) + "\n")
        self._proc.stdin.flush()
        if not select.select([self._proc.stdout], [], [], timeout)[0]:
            os.killpg(self._proc.pid, signal.SIGKILL)
            raise subprocess.TimeoutExpired(job["args"], timeout)
        line = self._proc.stdout.readline()
        if not line:  # the forking process died (a failed import): its own error is on the test's stderr
            raise RuntimeError(f"the forking process ended with {self._proc.wait()}")
        return subprocess.CompletedProcess(
            [sys.executable, "-c", script, *args], json.loads(line), out.read_text(), err.read_text()
        )

    def close(self) -> None:
        self._proc.stdin.close()
        self._proc.wait(30)
        self._dir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
