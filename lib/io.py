"""Atomic, resumable file I/O shared by every stage.

Writes go to a temporary name in the same folder and are renamed into place, so a killed
run never leaves a half-written file behind. JSONL readers record malformed rows instead of
failing the whole file or silently dropping them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator


def _atomic_write(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; reports must be readable by a web server
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_folder(folder: Path, write) -> Path:
    """`write(tmp)` fills a temporary sibling folder, which then replaces `folder`: a present
    model or adapter folder is always a complete one (a killed save leaves only `*.tmp`)."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive lock beside `path` (`<path>.lock`), for read-modify-write of a file that
    runs placed on different GPUs update at once."""
    import fcntl

    lock = Path(str(path) + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_text(path: Path, text: str) -> Path:
    return _atomic_write(path, lambda fh: fh.write(text))


def write_json(path: Path, obj: Any) -> Path:
    return _atomic_write(path, lambda fh: json.dump(obj, fh, indent=2, sort_keys=True, default=str))


def decode_message(path: Path, exc: UnicodeDecodeError) -> str:
    """A file that is not UTF-8, as a message naming the file and the line and column of its
    first bad byte: Python's own names only a position in the chunk it was decoding."""
    data = Path(path).read_bytes()
    try:
        data.decode("utf-8")
        start = exc.start  # the file decodes whole: the error came from a part of it
    except UnicodeDecodeError as whole:
        start = whole.start
    line = data.count(b"\n", 0, start) + 1
    column = start - (data.rfind(b"\n", 0, start) + 1) + 1
    byte = f"byte 0x{data[start]:02x}" if start < len(data) else "the end of the file"
    return f"{path}: line {line} column {column}: {byte} is not UTF-8 ({exc.reason}); save the file as UTF-8"


@contextlib.contextmanager
def named_decode_errors(path: Path, error: type[Exception] = ValueError):
    """Within the block, `path` is read as UTF-8 text: a byte that is not one is an `error`
    naming the file, the line and the column (`decode_message`)."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise error(decode_message(path, exc)) from None


def read_json(path: Path) -> Any:
    """Parse a JSON file; a malformed one is an error naming the file, line and column."""
    with named_decode_errors(path), open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def write_jsonl(path: Path, rows: Iterable[dict]) -> Path:
    def write(fh):
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")

    return _atomic_write(path, write)


def append_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Append rows and fsync: resumable stages call this after every batch so a crash
    loses at most the batch in flight."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        # A writer killed after its last row but before the newline leaves the file
        # unterminated: start on a fresh line instead of gluing two rows into one.
        if not ends_with_newline(path):
            fh.write(b"\n")
        for row in rows:
            fh.write((json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def parse_lines(lines: Iterable[str]) -> Iterator[tuple[int, Any, str | None, str]]:
    """(line number, parsed value or None, JSON error or None, stripped text) for every
    non-empty line: the one JSON-lines parser, for our files and for results from elsewhere."""
    for lineno, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        try:
            yield lineno, json.loads(text), None, text
        except json.JSONDecodeError as exc:
            yield lineno, None, exc.msg, text


@dataclass
class JsonlRead:
    rows: list[dict] = field(default_factory=list)
    # (line number, reason, raw text) for every line that could not be used
    bad: list[dict] = field(default_factory=list)


def read_jsonl(path: Path, required: Iterable[str] = ()) -> JsonlRead:
    """Read a JSONL file; malformed lines and rows missing a required key are recorded in
    `.bad` with their line number and reason, never silently dropped."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such JSONL file: {path}")
    required = tuple(required)
    out = JsonlRead()
    with named_decode_errors(path), open(path, encoding="utf-8") as fh:
        for lineno, row, error, text in parse_lines(fh):
            if error:
                # A line cut short by a killed writer ends up here too.
                out.bad.append({"line": lineno, "reason": f"malformed JSON: {error}", "raw": text[:200]})
                continue
            if not isinstance(row, dict):
                out.bad.append({"line": lineno, "reason": "not a JSON object", "raw": text[:200]})
                continue
            missing = [k for k in required if k not in row]
            if missing:
                out.bad.append(
                    {"line": lineno, "reason": f"missing column(s): {', '.join(missing)}", "raw": text[:200]}
                )
                continue
            out.rows.append(row)
    return out


def ends_with_newline(path: Path) -> bool:
    """True for an empty file or one whose last byte is a newline."""
    with open(path, "rb") as fh:
        if not fh.seek(0, os.SEEK_END):
            return True
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def require_jsonl(path: Path, required: Iterable[str] = ()) -> list[dict]:
    """The rows of a JSONL file a stage consumes; any unusable line is an error naming the
    file, the line and the reason (never a silently shorter input)."""
    read = read_jsonl(path, required)
    if read.bad:
        first = read.bad[0]
        raise ValueError(f"{path}: line {first['line']}: {first['reason']} ({len(read.bad)} unusable line(s) in all)")
    return read.rows


def set_aside_rows(path: Path, keep, why: str) -> str | None:
    """Rows of an append-only file for which `keep(row)` is false are moved to a file beside it
    (`<name>.<why>-<time>.jsonl`, kept) and the rest rewritten; what was moved, or None."""
    import time

    path = Path(path)
    if not path.exists():
        return None
    rows = read_jsonl(path).rows
    kept = [r for r in rows if keep(r)]
    if len(kept) == len(rows):
        return None
    aside = path.with_name(f"{path.stem}.{why}-{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}")
    write_jsonl(aside, [r for r in rows if not keep(r)])
    write_jsonl(path, kept)
    return f"{aside} ({len(rows) - len(kept)} rows)"


def repair_jsonl(path: Path, required: Iterable[str] = (), key: str | None = None) -> list[dict]:
    """Before resuming an append-only file: drop unusable lines (e.g. the half-written last
    line of a killed run) and, with `key`, later rows repeating a key already present (two
    writers, a replayed batch); terminate an unterminated last line. Returns what was
    dropped (line, reason, raw) so the stage can report it."""
    path = Path(path)
    if not path.exists():
        return []
    read = read_jsonl(path, required)
    dropped, rows, seen = list(read.bad), [], set()
    for row in read.rows:
        if key is not None and row.get(key) in seen:
            dropped.append({"line": None, "reason": f"duplicate {key} {row.get(key)!r}", "raw": str(row.get(key))})
            continue
        seen.add(row.get(key))
        rows.append(row)
    if dropped or not ends_with_newline(path):
        write_jsonl(path, rows)
    return dropped
