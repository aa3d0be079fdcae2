"""Content fingerprints of files, folders and settings: what a stage's record says it was made
from and what it made, so that "done" can be checked against the bytes on disk, not a date.

A file's fingerprint is the SHA-256 of its bytes. Hashing a 28 GB merged checkpoint takes
tens of seconds, and every check of a run walks its whole lineage, so a file's hash is kept in
a cache beside the data (`.fingerprints.json` in the home's `data/`) keyed by its path, size,
modification time and inode: an edit, a truncation or a replacement changes one of them
(as git's index assumes).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from . import io, paths

_MEMO: dict[str, dict] = {}  # this process's view of the cache, by key
_BIG = 16 * 2**20  # files above this are worth a line in the shared cache
_SKIP = (".tmp", ".lock")  # half-written or lock files are not part of a result


def of_value(value) -> str:
    """A short hash of a JSON-able value (keys sorted): settings, a list of fingerprints."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cache_file() -> Path:
    return paths.home() / "data" / ".fingerprints.json"


def _key(path: Path, st: os.stat_result) -> str:
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"


def _load_cache() -> None:
    if _MEMO:
        return
    try:
        cached = io.read_json(_cache_file())
        if isinstance(cached, dict):
            _MEMO.update({k: v for k, v in cached.items() if isinstance(v, str)})
    except (OSError, ValueError):  # no cache, or a damaged one: hashes are recomputed
        pass


def of_file(path: Path) -> str:
    path = Path(path)
    st = path.stat()
    key = _key(path, st)
    _load_cache()
    if key in _MEMO:
        return _MEMO[key]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(4 * 2**20), b""):
            digest.update(block)
    sha = digest.hexdigest()[:16]
    _MEMO[key] = sha
    if st.st_size >= _BIG:
        _remember(key, sha)
    return sha


def _remember(key: str, sha: str) -> None:
    """Add one big file's hash to the shared cache (several runners may write it at once)."""
    try:
        with io.locked(_cache_file()):
            try:
                cached = io.read_json(_cache_file())
                cached = cached if isinstance(cached, dict) else {}
            except (OSError, ValueError):
                cached = {}
            live = {k: v for k, v in cached.items() if os.path.exists(k.split("|", 1)[0])}
            io.write_json(_cache_file(), {**live, key: sha})
    except OSError:  # a read-only or full disk: the hash is still right, only not kept
        pass


def of_path(path: Path) -> str | None:
    """A file's fingerprint, a folder's (its files' relative names and fingerprints, hidden and
    temporary files left out), or None where nothing is there."""
    path = Path(path)
    if path.is_file():
        return of_file(path)
    if not path.is_dir():
        return None
    files = sorted(
        p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".") and not p.name.endswith(_SKIP)
    )
    return of_value([[str(p.relative_to(path)), of_file(p)] for p in files])


def of_paths(files, root: Path) -> dict:
    """{name: fingerprint or None} for each path, named relative to `root` (the home), else to
    the repository (`repo:data/embedded/easy.jsonl`: a second checkout reads the same file), else
    absolute: a record stays valid where the home or the checkout moves."""
    out = {}
    for path in files:
        path = Path(path).absolute()
        for base, prefix in ((Path(root).absolute(), ""), (paths.REPO, "repo:")):
            if path.is_relative_to(base):
                name = prefix + str(path.relative_to(base))
                break
        else:
            name = str(path)
        out[name] = of_path(path)
    return out


def sealed(row: dict) -> dict:
    """A row of a resumable file with its own hash (`sha`): a row edited by hand (an answer marked
    right, a solution changed) no longer matches it and is not resumed (`intact`)."""
    body = {k: v for k, v in row.items() if k != "sha"}
    return {**body, "sha": of_value(body)}


def intact(row: dict) -> bool:
    return row.get("sha") == sealed(row)["sha"]


def changed(recorded: dict, now: dict) -> list[str]:
    """The names whose fingerprint differs (appeared, vanished or changed)."""
    return sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))


def resume_guard(path: Path, made_with: dict, siblings=()) -> list[str]:
    """Resume `path` (an append-only file, a checkpoint folder) only under the settings it was
    made with: they are kept beside it (`<name>.made_with.json`); where they differ, or where
    they were never written (a file of an older workbook), `path` and its `siblings` are renamed
    aside (kept, never mixed in, never deleted) and the new settings are written. Returns what
    was set aside."""
    import time

    path = Path(path)
    sidecar = path.with_name(path.name + ".made_with.json")
    want = json.loads(json.dumps(made_with, sort_keys=True, default=str))
    try:
        have = io.read_json(sidecar) if sidecar.exists() else None
    except ValueError:  # cut short: what it described cannot be trusted either
        have = None
    moved = []
    if have != want and any(Path(p).exists() for p in [path, *siblings]):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for item in [path, *siblings]:
            item = Path(item)
            if item.exists():
                aside = item.with_name(f"{item.stem}.set-aside-{stamp}{item.suffix}")
                item.rename(aside)
                moved.append(str(aside))
    if have != want or not sidecar.exists():
        io.write_json(sidecar, want)
    return moved
