"""Engine and library logs go to a file beside the report, so a report shows its results.

A notebook opens one `StageLog` per stage (its repr is a link to the file) and wraps each
long step in it:

    engine_log = logs.to_file(rp.log("06_benchmark"))   # shown as a link near the top
    with engine_log:
        metrics = benchmark.run(cfg, rp)

Inside the block, file descriptors 1 and 2 point at the log (C extensions, torch, vLLM's
engine-core and worker processes started there), and so do `sys.stdout`/`sys.stderr`, the
`logging` stream handlers that wrote to them (vLLM, transformers, datasets) and Python
warnings. Progress bars stay in the notebook: `tqdm.auto` draws them as ipywidgets, which
reach the front end as display messages, not through stdout. The file is opened once per
kernel and kept open (append): handlers and processes created inside a block keep writing
there afterwards, instead of into a closed file.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import warnings
from pathlib import Path

_OPEN: dict[Path, object] = {}  # one append handle per log file for the kernel's life
# Library bars that are no long step of ours ("Map", "Writing model shards", downloads): off in a
# block. The environment switches are read when the library is first imported, the calls after.
_BAR_ENV = ("HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS")
_BAR_CALLS = {
    "datasets": ("disable_progress_bars", "enable_progress_bars"),
    "transformers.utils.logging": ("disable_progress_bar", "enable_progress_bar"),
}


def _handle(path: Path):
    if path not in _OPEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        _OPEN[path] = open(path, "a", buffering=1, encoding="utf-8", errors="replace")
    return _OPEN[path]


def _flush_c_stdio() -> None:
    # Text a C library wrote with printf may sit in libc's buffer; flush it to the fd it was meant for.
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


def _stream_handlers():
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    return [
        h
        for lg in loggers
        for h in lg.handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]


def _switch_bars(on: int) -> None:
    with warnings.catch_warnings():
        # A library first imported inside a block read the switch above and keeps its bars off
        # (it warns when asked to turn them on): wanted, they are not our steps.
        warnings.simplefilter("ignore")
        for module, calls in _BAR_CALLS.items():
            if module in sys.modules:
                getattr(sys.modules[module], calls[on])()


class StageLog:
    """A stage's log file: a context manager for its long steps; displayed, a link to it."""

    def __init__(self, path):
        self.path = Path(path)
        self._saved = []

    def _repr_markdown_(self) -> str:
        # The report sits beside the log (the runner writes both into the run's report folder).
        return f"Engine and library logs of this stage: [{self.path.name}]({self.path.name}) (`{self.path}`)"

    def __repr__(self) -> str:
        return f"engine and library logs: {self.path}"

    def __enter__(self) -> "StageLog":
        log = _handle(self.path)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        _flush_c_stdio()
        originals = (sys.stdout, sys.stderr)
        handlers = []
        for h in _stream_handlers():
            if h.stream in originals:
                try:
                    handlers.append((h, h.setStream(log)))
                except AttributeError:  # logging's last-resort handler: it follows sys.stderr anyway
                    pass
        show = warnings.showwarning
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: log.write(
            warnings.formatwarning(message, category, filename, lineno, line)
        )
        env = {name: os.environ.get(name) for name in _BAR_ENV}
        os.environ.update({name: "1" for name in _BAR_ENV})
        _switch_bars(0)
        fds = {fd: os.dup(fd) for fd in (1, 2)}  # last: nothing above may leave them pointing here
        for fd in fds:
            os.dup2(log.fileno(), fd)
        sys.stdout = sys.stderr = log
        self._saved.append((fds, originals, handlers, show, env))
        return self

    def __exit__(self, *exc) -> None:
        fds, originals, handlers, show, env = self._saved.pop()
        log = _handle(self.path)
        log.flush()
        _flush_c_stdio()
        sys.stdout, sys.stderr = originals
        for fd, saved in fds.items():
            os.dup2(saved, fd)
            os.close(saved)
        for h, stream in handlers:
            h.setStream(stream)
        warnings.showwarning = show
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _switch_bars(1)


def to_file(path) -> StageLog:
    return StageLog(path)


PHASE_PREFIX = "[workbook phase]"  # benchmarks/demo_profile.py sums these lines per stage


def phase(name: str, seconds: float) -> None:
    """One timed step (an engine start, an import) as a line of the stage's log: stderr, which
    points at the log inside a `StageLog` block. The line carries its time (the log is appended
    to by every run of the stage)."""
    import time

    print(f"{PHASE_PREFIX} {time.time():.3f} {name}: {seconds:.3f} s", file=sys.stderr, flush=True)


def says_where(line: str) -> bool:
    """A line of a placed run's output the grid's terminal shows (its stage lines, warnings and
    errors), not the notebooks' chatter."""
    return line.startswith(("[", "warning", "FAILED", "error"))
