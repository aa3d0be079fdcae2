"""The figures a notebook records: its last cell writes them as JSON next to its outputs;
the runner, the tests and the analysis read them back (never printed text).

Each record carries the settings it was made with (`settings`): the parameters its stage
depends on (its own sections and those of every stage before it), the overrides among them
that differ from the profile's own values, a hash of the notebook that ran, the stage's revision
(`stages.STAGE_REVISIONS`: raised when lib changes what the stage computes), and when each
earlier stage of the run last finished. `done` compares those with the current ones and
checks the stage's output files, so "finished" means complete *and* made with the current
parameters, notebook and inputs.
"""

from __future__ import annotations

import hashlib
import json
import time
from fnmatch import fnmatchcase
from pathlib import Path

from . import io, params, paths
from .paths import RunPaths, profile_figures, reports_root
from .stages import ADDED_KEYS, FIRST_REVISION, STAGE_SECTIONS, revision

# How a result is fetched or paced, not what it is: changing these re-runs nothing.
OPERATIONAL = ("data.gemini.base_url", "data.gemini.api_version", "data.gemini.inline_limit_bytes",
               "data.gemini.poll_*", "data.gemini.retry_*", "data.local_teacher.batch_size",
               "distill.batch_size", "engine.in_process", "merge.delete_after_benchmark")


def _path(rp: RunPaths | str, stage: str):
    # A run's figures, or (given a profile name) a profile-wide notebook's.
    return profile_figures(rp, stage) if isinstance(rp, str) else rp.figures(stage)


def flat(tree: dict, prefix: str = "") -> dict:
    """Nested figures as one level: {'target': {'mfu': x}} -> {'target.mfu': x}."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def stage_params(cfg, stage: str) -> dict:
    """The flattened parameters `stage` depends on (JSON-normalized, operational keys left out)."""
    sections = {s for name, secs in STAGE_SECTIONS.items() if name <= stage for s in secs}
    used = flat({k: v for k, v in dict(cfg).items() if k in sections})
    used = {k: v for k, v in used.items() if not any(fnmatchcase(k, pat) for pat in OPERATIONAL)}
    return json.loads(json.dumps(used, sort_keys=True, default=str))


def notebook_sha(stage: str) -> str | None:
    """A hash of the notebook's code cells (markdown, outputs and metadata do not change results)."""
    path = paths.NOTEBOOKS / f"{stage}.ipynb"
    if not path.exists():
        return None
    cells = ["".join(c.get("source", "")) for c in io.read_json(path).get("cells", []) if c.get("cell_type") == "code"]
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()[:16]


def _upstream(rp: RunPaths | str, stage: str) -> dict:
    """When each earlier stage of this run (and the profile's base models) last finished."""
    found = {}
    folders = [profile_figures(rp if isinstance(rp, str) else rp.profile, stage).parent]
    if not isinstance(rp, str):
        folders.append(rp.figures(stage).parent)
    for folder in folders:
        for path in sorted(folder.glob("*.json")) if folder.exists() else []:
            if path.stem < stage:
                try:
                    found[path.stem] = io.read_json(path).get("finished_at")
                except (OSError, ValueError, AttributeError):
                    found[path.stem] = None
    return found


def overrides_of(cfg, stage: str) -> dict:
    """The stage's parameters whose values differ from the profile's own (what the caller
    overrode, whichever way: `--set`, a parameter file, the notebook's `overrides`)."""
    own = params.resolve(cfg["profile"], cfg["style"], cfg["scenario"])
    have, default = stage_params(cfg, stage), stage_params(own, stage)
    return {k: v for k, v in have.items() if default.get(k, object()) != v}


def settings(cfg, rp: RunPaths | str, stage: str) -> dict:
    used = stage_params(cfg, stage)
    return {
        "params_sha": hashlib.sha256(json.dumps(used, sort_keys=True).encode()).hexdigest()[:16],
        "params": used,
        "overrides": overrides_of(cfg, stage),
        "notebook_sha": notebook_sha(stage),
        "revision": revision(stage)[0],
        "upstream": _upstream(rp, stage),
    }


def save(rp: RunPaths | str, stage: str, figures: dict, cfg=None) -> dict:
    """Write a stage's figures; with `cfg`, stamped with the settings it was made with (a
    record without them is never taken as done by the runner)."""
    name = rp if isinstance(rp, str) else rp.name
    stamp = {"settings": settings(cfg, rp, stage)} if cfg is not None else {}
    figures = {"stage": stage, "run": name, "finished_at": time.time(), **figures, **stamp}
    io.write_json(_path(rp, stage), figures)
    return figures


def load(rp: RunPaths | str, stage: str) -> dict | None:
    path = _path(rp, stage)
    return io.read_json(path) if path.exists() else None


def forget(rp: RunPaths | str, stage: str) -> None:
    """Drop a stage's record before it runs again: a failed or interrupted re-run must not
    leave the previous run's figures standing as if they described the new outputs."""
    _path(rp, stage).unlink(missing_ok=True)


def _changed(old: dict, new: dict, limit: int = 4) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def outputs_missing(rp: RunPaths | str, stage: str, figures: dict, cfg) -> str | None:
    """What is missing or broken among the files `stage` is known by, or None."""
    if isinstance(rp, str):
        if stage == "00_base_models" and not cfg["models"]["target"]:
            base = paths.data_root(rp) / "models" / "base"
            absent = [r for r in ("tokenizer", "target", "draft") if not any((base / r).glob("*"))]
            return f"base model folder(s) {', '.join(absent)} missing under {base}" if absent else None
        return None
    if stage == "01_generate_data":
        files = [rp.train_problems, rp.test_problems] + ([rp.teacher_output] if rp.style != "base" else [])
        return _jsonl_problem(files)
    if stage in ("02_train_target", "04_train_draft"):
        role = "target" if stage == "02_train_target" else "draft"
        weights = rp.adapter(role) / "adapter_model.safetensors"
        return None if weights.exists() and rp.train_summary(role).exists() else f"{weights} missing"
    if stage == "03_distill":
        problem = _jsonl_problem([rp.distilled])
        if problem:
            return problem
        ids = [r.get("id") for r in io.read_jsonl(rp.distilled).rows]
        if len(ids) != len(set(ids)):
            return f"{rp.distilled} repeats {len(ids) - len(set(ids))} id(s)"
        if figures.get("n_rows") is not None and len(ids) != figures["n_rows"]:
            return f"{rp.distilled} holds {len(ids)} rows, its record says {figures['n_rows']}"
        return None
    if stage == "05_merge" and not cfg["merge"]["delete_after_benchmark"]:
        absent = [r for r in ("target", "draft") if not (rp.merged(r) / "config.json").exists()]
        return f"merged {', '.join(absent)} missing under {rp.merged('target').parent.parent}" if absent else None
    if stage == "06_benchmark":
        if not rp.samples_csv.exists():
            return f"{rp.samples_csv} missing"
        try:
            io.read_json(rp.metrics_json)
        except (OSError, ValueError) as exc:
            return f"{rp.metrics_json} unreadable: {exc}"
    return None


def _jsonl_problem(files) -> str | None:
    for path in files:
        if not path.exists():
            return f"{path} missing"
        read = io.read_jsonl(path)
        if read.bad:
            return f"{path}: line {read.bad[0]['line']}: {read.bad[0]['reason']}"
    return None


def why_not_done(rp: RunPaths | str, stage: str, cfg) -> str | None:
    """None when `stage` finished with the current parameters, notebook and upstream stages
    and its outputs are whole; otherwise why it must run (again)."""
    try:
        figures = load(rp, stage)
    except (OSError, ValueError) as exc:
        return f"its record is unreadable ({exc})"
    if figures is None:
        return "not run yet"
    recorded = figures.get("settings")
    if not recorded:
        return "its record carries no settings (made by an older workbook, or without cfg)"
    now = settings(cfg, rp, stage)
    # a key added since the record was made counts as recorded at its neutral value
    made_with = {**{k: v for k, v in ADDED_KEYS.items() if k in now["params"]}, **(recorded.get("params") or {})}
    if made_with != now["params"]:
        return f"parameters changed ({_changed(made_with, now['params'])})"
    if recorded.get("notebook_sha") != now["notebook_sha"]:
        return f"notebooks/{stage}.ipynb changed since it ran"
    then = recorded.get("revision", FIRST_REVISION[0])
    if then != now["revision"]:
        return f"lib's {stage} changed since it ran (revision {then} -> {now['revision']}: {revision(stage)[1]})"
    if recorded.get("upstream") != now["upstream"]:
        moved = sorted(k for k in set(now["upstream"]) | set(recorded.get("upstream") or {})
                       if (recorded.get("upstream") or {}).get(k) != now["upstream"].get(k))
        return f"earlier stage(s) {', '.join(moved)} ran again since"
    return outputs_missing(rp, stage, figures, cfg)


def done(rp: RunPaths | str, stage: str, cfg) -> bool:
    return why_not_done(rp, stage, cfg) is None


# --- run status, as the runner records it ------------------------------------------------------
# Beside the runs' entries: the last grid's own wall time (`status[GRID_RUN][GRID_WALL]`), whose
# stages may have overlapped (runs side by side), so their times do not add up to it.
GRID_RUN, GRID_WALL = "_grid", "wall"


def status_path(profile: str) -> Path:
    return reports_root(profile) / "status.json"


def load_status(profile: str) -> dict:
    """The runner's status store; a corrupted one (a full disk mid-write before writes were
    atomic, a hand edit) is set aside with a warning, not fatal: the files behind each state
    are checked anyway."""
    path = status_path(profile)
    if not path.exists():
        return {}
    try:
        status = io.read_json(path)
        if isinstance(status, dict):
            return status
        raise ValueError(f"{path}: not a JSON object")
    except ValueError as exc:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        path.rename(aside)
        print(f"warning: {exc}; set aside as {aside.name}, starting a new status", flush=True)
        return {}


def record_status(profile: str, run: str, stage: str, **entry) -> None:
    with io.locked(status_path(profile)):  # runs placed on several GPUs write here at once
        status = load_status(profile)
        status.setdefault(run, {})[stage] = {**entry, "at": time.time()}
        io.write_json(status_path(profile), status)
