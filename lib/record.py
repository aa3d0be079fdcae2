"""The figures a notebook records: its last cell writes them as JSON next to its outputs;
the runner, the tests and the analysis read them back (never printed text).

Each record carries what its result was made with and from (`settings`): the parameters its
stage depends on (its own sections and those of every stage before it), the overrides among
them, a hash of the notebook that ran, the stage's revision (`stages.STAGE_REVISIONS`), the
content fingerprints of the files it read from outside the stages and of the files it made, and
the digest of each earlier stage it read. `why_not_done` compares them with now and judges every
earlier stage the same way, transitively: "done" means made from the current everything
(docs/reliability.md).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from fnmatch import fnmatchcase
from pathlib import Path

from . import fingerprints, hub, io, models, params, paths
from .paths import RunPaths, profile_figures, reports_root
from .stages import (
    ADDED_KEYS,
    EAGLE3_STAGE,
    FIRST_REVISION,
    PRE_STAGES,
    PROFILE_STAGES,
    STAGE_SECTIONS,
    eagle3_on,
    revision,
    stages_of,
)

# How a result is fetched or paced, not what it is: changing these re-runs nothing.
OPERATIONAL = (
    "data.gemini.base_url",
    "data.gemini.api_version",
    "data.gemini.upload_mime_type",
    "data.max_cut_fraction",
    "data.gemini.poll_*",
    "data.gemini.retry_*",
    "data.local_teacher.batch_size",
    "distill.batch_size",
    "engine.in_process",
    "merge.delete_after_benchmark",
    "train.report_to",
)
# Which Hub commit to load: judged by the commit a result was made from (`hub.pin_problem`), not
# by the words, so that pinning the very commit a chain resolved re-runs none of it.
REVISION_PINS = ("models.target_revision", "models.draft_revision", "data.hub.revision")


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
    used = {
        k: v
        for k, v in params.read_keys(used).items()
        if not any(fnmatchcase(k, pat) for pat in OPERATIONAL + REVISION_PINS)
    }
    return json.loads(json.dumps(used, sort_keys=True, default=str))


def notebook_sha(stage: str) -> str | None:
    """A hash of the notebook's code cells (markdown, outputs and metadata do not change results)."""
    path = paths.NOTEBOOKS / f"{stage}.ipynb"
    if not path.exists():
        return None
    st = path.stat()
    return _notebook_sha(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _notebook_sha(path: str, mtime_ns: int, size: int) -> str:
    cells = ["".join(c.get("source", "")) for c in io.read_json(path).get("cells", []) if c.get("cell_type") == "code"]
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()[:16]


def overrides_of(cfg, stage: str) -> dict:
    """The stage's parameters whose values differ from the profile's own (what the caller
    overrode, whichever way: `--set`, a parameter file, the notebook's `overrides`)."""
    own = params.resolve(cfg["profile"], cfg["style"], cfg["scenario"])
    have, default = stage_params(cfg, stage), stage_params(own, stage)
    # which replicate a run is, is its name, not an override
    return {k: v for k, v in have.items() if default.get(k, object()) != v and k != "replicate"}


def settings(cfg, rp: RunPaths | str, stage: str) -> dict:
    """What a result is made with and from: its parameters, notebook and revision, the result
    (digest) of each earlier stage it reads, and the fingerprint of each file it read from
    outside the stages (a data source, a teacher file)."""
    now = _judged(cfg, rp, stage)
    return {
        "params_sha": fingerprints.of_value(now["params"]),
        **now,
        "overrides": overrides_of(cfg, stage),
        "inputs": {key: _digest_of(u_rp, u_stage) for key, (u_rp, u_stage) in upstream(rp, stage, cfg).items()},
    }


def _judged(cfg, rp: RunPaths | str, stage: str) -> dict:
    """The part of a stage's settings its record is compared with, as they are now."""
    now = {
        "params": stage_params(cfg, stage),
        "notebook_sha": notebook_sha(stage),
        "revision": revision(stage)[0],
        "input_files": fingerprints.of_paths(input_files(rp, stage, cfg), paths.home()),
    }
    commits = hub_commits(cfg, rp, stage)
    return {**now, "hub": commits} if commits else now  # absent where none: local records stay as they were


def hub_commits(cfg, rp: RunPaths | str, stage: str) -> dict:
    """The Hub commits (models, the scenario's dataset) a stage's result is made from, as recorded now."""
    if isinstance(rp, str) and stage not in PRE_STAGES:
        return {}
    meta = None if isinstance(rp, str) else rp.first.problems_dir / "meta.json"
    return hub.judged(cfg, rp, stage, io.read_json(meta) if meta and meta.exists() else None)


def _digest_of(rp: RunPaths | str, stage: str) -> str | None:
    try:
        figures = load(rp, stage)
    except (OSError, ValueError):
        return None
    return ((figures or {}).get("settings") or {}).get("digest")


def save(rp: RunPaths | str, stage: str, figures: dict, cfg=None) -> dict:
    """Write a stage's figures; with `cfg`, stamped with the settings it was made with and the
    fingerprints of the files it made (a record without them is never taken as done)."""
    name = rp if isinstance(rp, str) else rp.name
    stamp = {}
    if cfg is not None:
        made = settings(cfg, rp, stage)
        made["outputs"] = fingerprints.of_paths(output_files(rp, stage, cfg), paths.home())
        # what a later stage records as read from this one: changes when the result does
        made["digest"] = fingerprints.of_value(
            {k: made[k] for k in ("params", "inputs", "input_files", "outputs", "hub") if k in made}
        )
        stamp = {"settings": made}
    figures = {"stage": stage, "run": name, "finished_at": time.time(), "ran_on": ran_on(), **figures, **stamp}
    io.write_json(_path(rp, stage), figures)
    return figures


def ran_on() -> dict:
    """Where a stage ran: the host, the GPUs it was given (`CUDA_VISIBLE_DEVICES`, set where it
    was placed) and the Ray node (`paths.NODE_ENV`: simulated nodes share a host name).
    Not part of the digest: where a result was made does not change what it is."""
    import os
    import socket

    return {
        "host": socket.gethostname(),
        "gpus": os.environ.get("CUDA_VISIBLE_DEVICES") or None,
        "node": os.environ.get(paths.NODE_ENV) or None,
    }


def load(rp: RunPaths | str, stage: str) -> dict | None:
    """A stage's figures, or None where it has none; a file that is not a JSON object (or whose
    settings are not one) is a ValueError naming it."""
    path = _path(rp, stage)
    if not path.exists():
        return None
    figures = io.read_json(path)
    if not isinstance(figures, dict) or not isinstance(figures.get("settings", {}), dict):
        raise ValueError(
            f"{path}: not a stage record (a JSON object with its settings); it is ignored and the stage runs again"
        )
    return figures


def forget(rp: RunPaths | str, stage: str) -> None:
    """Drop a stage's record before it runs again: a failed or interrupted re-run must not
    leave the previous run's figures standing as if they described the new outputs."""
    _path(rp, stage).unlink(missing_ok=True)


def _changed(old: dict, new: dict, limit: int = 4) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def upstream(rp: RunPaths | str, stage: str, cfg=None) -> dict:
    """{stage: (where, stage)} for every stage whose result `stage` reads: a run's earlier stages
    and the profile's base models (and its EAGLE-3 head where `cfg` enables it). Judged
    transitively, so this is every stage it is made from."""
    if isinstance(rp, str):
        return {}  # the base models read files (below), the analysis reads every run's state itself
    found = {"00_base_models": (rp.profile, "00_base_models")}
    run = stages_of(rp.style, eagle3=eagle3_on(cfg))
    found.update({s: (rp.first if s == "01_generate_data" else rp, s) for s in run if s < stage})
    return found


def output_files(rp: RunPaths | str, stage: str, cfg) -> list[Path]:
    """The files and folders a stage's result is: fingerprinted when it is recorded, and
    compared with the disk whenever it is judged."""
    if isinstance(rp, str):
        if stage != "00_base_models":
            return []
        return ([paths.data_root(rp) / "models" / "base"] if models.uses_base_pair(cfg) else []) + (
            [paths.hub_revisions(rp)] if hub.hub_roles(cfg) else []
        )
    role = {"02_train_target": "target", "04_train_draft": "draft"}.get(stage)
    if role:
        return [rp.adapter(role), rp.train_summary(role)]
    return {
        "01_generate_data": [rp.train_problems, rp.test_problems] + ([rp.teacher_output] if rp.style != "base" else []),
        "03_distill": [rp.distilled],
        "05_merge": [rp.merged("target"), rp.merged("draft")],
        EAGLE3_STAGE: [rp.eagle3_head, rp.eagle3_summary],
        "06_benchmark": [rp.samples_csv, rp.metrics_json],
    }.get(stage, [])


def input_files(rp: RunPaths | str, stage: str, cfg) -> list[Path]:
    """Files a stage reads that no earlier stage made: the data source and a teacher's file
    (01), the problems the base pair is pretrained on (00). Hub datasets and models are named
    by their parameters instead."""
    if isinstance(rp, str):
        if stage != "00_base_models" or not models.uses_base_pair(cfg):
            return []
        return [
            paths.data_root(rp) / "problems" / s / f"{split}.jsonl"
            for s in params.scenarios()
            for split in ("train", "test")
        ]
    if stage != "01_generate_data":
        return []
    data, found = cfg["data"], []
    if data["source"] == "embedded":
        found.append(paths.EMBEDDED / f"{rp.scenario}.jsonl")
    elif data["source"] == "local":
        found += [paths.repo_path(data["local"][k]) for k in ("path", "test_path") if data["local"][k]]
    if data["teacher"] == "file" and rp.style != "base" and data["teacher_file"]["path"]:
        found.append(paths.repo_path(data["teacher_file"]["path"].format(style=rp.style, scenario=rp.scenario)))
    return found


def outputs_missing(rp: RunPaths | str, stage: str, figures: dict, cfg) -> str | None:
    """What is missing or broken among the files `stage` is known by, or None: present, of the
    shape a later stage reads (parsing rows, whole safetensors, a metrics object)."""
    if isinstance(rp, str):
        if stage == "00_base_models" and hub.hub_roles(cfg) and not paths.hub_revisions(rp).exists():
            return (
                f"no Hub commit recorded for {', '.join(hub.hub_roles(cfg).values())} ({paths.hub_revisions(rp)} "
                "missing: made before Hub revisions were recorded, or deleted)"
            )
        if stage == "00_base_models" and models.uses_base_pair(cfg):
            base = paths.data_root(rp) / "models" / "base"
            absent = [r for r in ("tokenizer", "target", "draft") if not any((base / r).glob("*"))]
            if absent:
                return f"base model folder(s) {', '.join(absent)} missing under {base}"
            return _safetensors_problem([base / "target", base / "draft"])
        return None
    if stage == "01_generate_data":
        files = [rp.train_problems, rp.test_problems] + ([rp.teacher_output] if rp.style != "base" else [])
        problem = _jsonl_problem(files)
        if problem:
            return problem
        empty = [p for p in files[:2] if not io.read_jsonl(p).rows]
        return f"{empty[0]} holds no problems" if empty else None
    if stage in ("02_train_target", "04_train_draft"):
        role = "target" if stage == "02_train_target" else "draft"
        weights = rp.adapter(role) / "adapter_model.safetensors"
        if not (weights.exists() and rp.train_summary(role).exists()):
            return f"{weights if not weights.exists() else rp.train_summary(role)} missing"
        return _safetensors_problem([rp.adapter(role)])
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
    if stage == "05_merge":
        absent = [r for r in ("target", "draft") if not (rp.merged(r) / "config.json").exists()]
        if absent and _benchmarked_from(rp, figures, cfg):
            return None  # deleted after the benchmark they were made for, which still stands
        if absent:
            return f"merged {', '.join(absent)} missing under {rp.merged('target').parent.parent}"
        return _safetensors_problem([rp.merged("target"), rp.merged("draft")])
    if stage == EAGLE3_STAGE:
        if not ((rp.eagle3_head / "config.json").exists() and rp.eagle3_summary.exists()):
            return f"EAGLE-3 head or its summary missing under {rp.eagle3_head.parent}"
        return _safetensors_problem([rp.eagle3_head])
    if stage == "06_benchmark":
        if not rp.samples_csv.exists():
            return f"{rp.samples_csv} missing"
        try:
            metrics = io.read_json(rp.metrics_json)
        except (OSError, ValueError) as exc:
            return f"{rp.metrics_json} unreadable: {exc}"
        return metrics_problem(metrics, rp.metrics_json)
    return None


def metrics_problem(metrics, where) -> str | None:
    """Why a benchmark's metrics are not of the shape the reports read, or None."""
    if not isinstance(metrics, dict):
        return f"{where}: not a JSON object"
    passes, comparison = metrics.get("passes"), metrics.get("comparison")
    if not isinstance(passes, dict) or not all(isinstance(passes.get(p), dict) for p in ("baseline", "speculative")):
        return f"{where}: no baseline and speculative passes"
    return None if isinstance(comparison, dict) else f"{where}: no comparison"


def _safetensors_problem(folders) -> str | None:
    """The first *.safetensors under `folders` whose header or size is not whole (a file cut
    short by a full disk or a copy still loads its header but not its tensors)."""
    import struct

    for folder in folders:
        for path in sorted(Path(folder).glob("*.safetensors")):
            try:
                with open(path, "rb") as fh:
                    (n,) = struct.unpack("<Q", fh.read(8))
                    header = json.loads(fh.read(n))
                end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
                if path.stat().st_size != 8 + n + end:
                    return f"{path}: {path.stat().st_size} bytes, its header says {8 + n + end}"
            except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error) as exc:
                return f"{path}: not a whole safetensors file ({type(exc).__name__}: {exc})"
    return None


def _jsonl_problem(files) -> str | None:
    for path in files:
        if not path.exists():
            return f"{path} missing"
        read = io.read_jsonl(path)
        if read.bad:
            return f"{path}: line {read.bad[0]['line']}: {read.bad[0]['reason']}"
    return None


def _benchmarked_from(rp: RunPaths, figures: dict, cfg) -> bool:
    """Whether the run's benchmark deleted the merges after it (`merge.delete_after_benchmark`, said
    in its metrics), was made from this merge and is current on its own terms: then they served
    their purpose. Should the benchmark have to run again, the merge is not done and runs first."""
    try:
        bench = load(rp, "06_benchmark")
        deleted = bench is not None and io.read_json(rp.metrics_json).get("merged_deleted") is True
    except (OSError, ValueError, AttributeError):
        return False
    if not deleted:
        return False
    digest = (figures.get("settings") or {}).get("digest")
    return bool(
        bench
        and digest
        and ((bench.get("settings") or {}).get("inputs") or {}).get("05_merge") == digest
        and _own_reason(rp, "06_benchmark", bench, cfg) is None
    )


def for_stage(cfg, rp: RunPaths | str, stage: str):
    """The parameters `stage` is judged with, from a run's `cfg`: the profile-wide stages resolve
    as their notebooks do (style base, the first scenario), with the same overrides."""
    if not isinstance(rp, str) or stage not in PROFILE_STAGES:
        return (
            cfg
            if isinstance(rp, str) or rp.replicate == cfg["replicate"]
            else params.Params({**cfg, "replicate": rp.replicate})
        )  # replicate 0's data stage, read by a later replicate
    own = params.resolve(cfg["profile"], cfg["style"], cfg["scenario"])
    given = {
        k: v
        for k, v in flat(dict(cfg)).items()
        if flat(dict(own)).get(k, object()) != v and k not in ("profile", "style", "scenario", "replicate")
    }
    return params.resolve(cfg["profile"], "base", params.scenarios()[0], given)


def _own_reason(rp: RunPaths | str, stage: str, figures: dict, cfg) -> str | None:
    """Why a record is not current on its own terms (settings, notebook, revision, the files it
    read and made), leaving the stages it read from aside."""
    recorded = figures.get("settings")
    if not recorded:
        return "its record carries no settings (made by an older workbook, or without cfg)"
    if "outputs" not in recorded or "digest" not in recorded:
        return "its record carries no content fingerprints (made before they were recorded)"
    now = _judged(cfg, rp, stage)
    # a key added since the record was made counts as recorded at its neutral value
    made_with = {**{k: v for k, v in ADDED_KEYS.items() if k in now["params"]}, **(recorded.get("params") or {})}
    made_with = params.read_keys(made_with)  # a record may hold settings its run never read
    if made_with != now["params"]:
        return f"parameters changed ({_changed(made_with, now['params'])})"
    pinned = hub.pin_problem(cfg, now.get("hub") or {}) or hub.changed(recorded.get("hub"), now.get("hub") or {})
    if pinned:
        return pinned
    if recorded.get("notebook_sha") != now["notebook_sha"]:
        return f"notebooks/{stage}.ipynb changed since it ran"
    then = recorded.get("revision", FIRST_REVISION[0])
    if then != now["revision"]:
        return f"lib's {stage} changed since it ran (revision {then} -> {now['revision']}: {revision(stage)[1]})"
    moved = fingerprints.changed(recorded.get("input_files") or {}, now["input_files"])
    if moved:
        return f"input file(s) changed since it ran: {', '.join(moved[:3])}"
    missing = outputs_missing(rp, stage, figures, cfg)
    if missing:
        return missing
    present = [p for p in output_files(rp, stage, cfg) if p.exists()]
    edited = fingerprints.changed(
        {k: v for k, v in recorded["outputs"].items() if k in fingerprints.of_paths(present, paths.home())},
        fingerprints.of_paths(present, paths.home()),
    )
    if edited:
        return f"its output(s) changed since it was recorded: {', '.join(edited[:3])}"
    return None


def why_not_done(rp: RunPaths | str, stage: str, cfg, _seen: dict | None = None) -> str | None:
    """None when `stage` is current: finished with the current parameters, notebook and input
    files, its outputs whole and as recorded, and every stage it reads from current too and
    the very result it was made from (transitively, down to the base models). Otherwise why it
    must run (again)."""
    seen = {} if _seen is None else _seen
    where = (rp if isinstance(rp, str) else rp.name, stage)
    if where in seen:
        return seen[where]
    try:
        figures = load(rp, stage)
    except (OSError, ValueError) as exc:
        seen[where] = f"its record is unreadable ({exc})"
        return seen[where]
    if figures is None:
        seen[where] = "not run yet"
        return seen[where]
    reason = _own_reason(rp, stage, figures, cfg)
    if reason is None:
        reason = _upstream_reason(rp, stage, cfg, figures["settings"].get("inputs") or {}, seen)
    seen[where] = reason
    return reason


def _upstream_reason(rp, stage: str, cfg, made_from: dict, seen: dict) -> str | None:
    for key, (u_rp, u_stage) in upstream(rp, stage, cfg).items():
        where = (u_rp if isinstance(u_rp, str) else u_rp.name, u_stage)
        stale = seen[where] if where in seen else why_not_done(u_rp, u_stage, for_stage(cfg, u_rp, u_stage), seen)
        if stale:
            return f"earlier stage {u_stage} is not current ({stale})"
        if made_from.get(key) != _digest_of(u_rp, u_stage):
            return f"earlier stage {u_stage} ran again since, with another result"
    return None


def stale_upstream(rp: RunPaths | str, stage: str, cfg) -> str | None:
    """Why a stage may not run now: an earlier stage it reads is not current (see docs/
    reliability.md: a partial run refuses, naming them, rather than read stale results)."""
    seen: dict = {}
    stale = [
        (u_stage, why)
        for u_rp, u_stage in upstream(rp, stage, cfg).values()
        if (why := why_not_done(u_rp, u_stage, for_stage(cfg, u_rp, u_stage), seen))
    ]
    if stage == "06_benchmark" and "05_merge" in upstream(rp, stage, cfg) and not stale:
        absent = [r for r in ("target", "draft") if not (rp.merged(r) / "config.json").exists()]
        if absent:  # done for the benchmark that used them, but this one needs them again
            stale.append(
                (
                    "05_merge",
                    f"merged {', '.join(absent)} deleted after the last benchmark (merge.delete_after_benchmark)",
                )
            )
    if not stale:
        return None
    after = f", and {', '.join(s for s, _ in stale[1:])} after it" if len(stale) > 1 else ""
    return (
        f"earlier stage(s) not current: {stale[0][0]} ({stale[0][1]}){after}. Run them first (the whole "
        f"chain: leave out --stages, or add them to it)"
    )


def replicates_of(profile: str, style: str, scenario: str) -> list[int]:
    """The replicates of a (style, scenario) the profile has: those its `grid.replicates` names
    (base: one), and any other found on disk (a run made with `--set grid.replicates=N`)."""
    import re

    n = 1 if style == "base" else params.resolve(profile, style, scenario)["grid"]["replicates"]
    pattern = re.compile(rf"^{re.escape(paths.run_name(style, scenario))}_r(\d+)$")
    runs = paths.data_root(profile) / "runs"
    found = {int(m.group(1)) for p in (runs.iterdir() if runs.exists() else []) if (m := pattern.match(p.name))}
    return sorted(set(range(n)) | ({r for r in found if r > 0} if style != "base" else set()))


class StaleUpstream(RuntimeError):
    """A stage asked to run on results that are not current."""


def require_current_upstream(rp: RunPaths | str, stage: str, cfg) -> None:
    """The first thing a stage notebook does, however it is run (runner, papermill, JupyterLab)."""
    if not isinstance(rp, str) and stage not in stages_of(rp.style, rp.replicate, eagle3_on(cfg)):
        raise StaleUpstream(
            f"{stage} is not a stage of run {rp.name} (its stages: "
            f"{', '.join(stages_of(rp.style, rp.replicate, eagle3_on(cfg)))}); replicates after the first read "
            f"replicate 0's data, which is generated once"
        )
    stale = stale_upstream(rp, stage, cfg)
    if stale:
        raise StaleUpstream(f"{stage} of {rp if isinstance(rp, str) else rp.name}: {stale}")


def recorded_cfg(rp: RunPaths | str, stage: str, figures: dict | None = None):
    """The parameters a record says it was made with (the profile's, plus the overrides it
    recorded): what the index and the analysis judge a result against, so that a run made with
    `--set` is judged on its own terms and marked as overridden, not called stale."""
    figures = load(rp, stage) if figures is None else figures
    given = ((figures or {}).get("settings") or {}).get("overrides") or {}
    if not isinstance(rp, str) and rp.replicate:  # a later replicate exists only where grid.replicates allowed it
        own = params.resolve(rp.profile, rp.style, rp.scenario, given)["grid"]["replicates"]
        given = {**given, "grid.replicates": max(own, rp.replicate + 1)}
    if isinstance(rp, str):
        return params.resolve(rp, "base", params.scenarios()[0], given)
    return params.resolve(rp.profile, rp.style, rp.scenario, given, rp.replicate)


def current(rp: RunPaths | str, stage: str) -> str | None:
    """None when a recorded stage is current on the terms it records (see `why_not_done`);
    else why not, including a record that is missing or whose settings no longer resolve."""
    try:
        figures = load(rp, stage)
        if figures is None:
            return "not run yet"
        return why_not_done(rp, stage, recorded_cfg(rp, stage, figures))
    except (OSError, ValueError) as exc:  # params.ParamsError is a ValueError
        return f"cannot be judged: {exc}"


def done(rp: RunPaths | str, stage: str, cfg) -> bool:
    return why_not_done(rp, stage, cfg) is None


# --- run status, as the runner records it ------------------------------------------------------
# Beside the runs' entries: the last grid's own wall time (`status[GRID_RUN][GRID_WALL]`), whose
# stages may have overlapped (runs side by side), so their times do not add up to it.
GRID_RUN, GRID_WALL = "_grid", "wall"


def alive(entry: dict) -> bool:
    """Whether the process that recorded a "running" entry still runs (on another host: assumed)."""
    import os
    import socket

    if entry.get("host") not in (None, socket.gethostname()):
        return True
    try:
        os.kill(int(entry.get("pid")), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


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
