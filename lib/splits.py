"""Problems and their held-out split, shared by stage 00 (the base pair is pretrained on the
training problems) and stage 01 (the teacher answers them).

Problems come from the embedded offline set, a local file, or the hub; the held-out split
shares no (normalized) question with training: split from one pool, or, where the source has
its own test split, with training copies of its questions dropped and listed. Written once
per scenario and profile, and shared by every style.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from . import fingerprints, hub, io, problems
from .paths import EMBEDDED, RunPaths, repo_path
from .teachers import reference

PROBLEM_COLUMNS = ("id", "question", "reference", "answer")


def _from_records(records, spec: dict, section: str, id_prefix: str, test: bool = False) -> list[dict]:
    """Map a foreign table's columns onto the workbook's problem rows, keeping the
    study's MATH filter (levels and types) when the params give one. Ids number the rows
    of the source table before filtering, so they stay the same when the filter changes."""
    q, s = spec["question_field"], spec["solution_field"]
    if test:  # a held-out file may name its columns differently
        q, s = spec.get("test_question_field") or q, spec.get("test_solution_field") or s
    levels, types = set(spec.get("levels") or []), set(spec.get("types") or [])
    source = spec.get("test_path" if test else "path") or id_prefix
    rows = []
    for i, rec in enumerate(records):
        missing = [c for c in (q, s) if c not in rec]
        if missing:
            raise KeyError(
                f"{source}: record {i} has no column(s) {missing}; columns present: {sorted(rec)}. "
                f"Set data.{section}.question_field / solution_field."
            )
        if levels and rec.get("level") not in levels:
            continue
        if types and rec.get("type") not in types:
            continue
        rows.append(
            {
                "id": f"{id_prefix}-{i:05d}",
                "question": rec[q],
                "reference": rec[s],
                "answer": _final_answer(rec, q, s, f"{source}: record {i}"),
                "level": rec.get("level", ""),
                "type": rec.get("type", ""),
                "source": id_prefix,
            }
        )
    return rows


def _final_answer(rec: dict, q: str, s: str, where: str) -> str:
    """The final answer of a record's solution; an empty question or solution, or one without a
    final answer, is an error naming the file and the record (not a row that can never be graded)."""
    empty = [c for c in (q, s) if not isinstance(rec[c], str) or not rec[c].strip()]
    if empty:
        raise ValueError(
            f"{where}: column(s) {empty} empty or not text; every problem needs a question and "
            f"a solution: fix or remove the record"
        )
    try:
        return reference.final_answer_from_reference(rec[s])
    except ValueError as exc:
        raise ValueError(f"{where}: column {s!r}: {exc}") from None


def _load_hub(spec: dict, sha: str) -> tuple[list[dict], list[dict]]:
    """Train and test rows of every config (subset) the params name, joined, all at commit `sha`
    (`hub.dataset_pin`). A hub dataset with one config per subject (EleutherAI/hendrycks_math)
    has no default config, so `configs` lists them; ids carry the config so they stay unique."""
    import datasets  # the hub path: needs the Hub (or HF_ENDPOINT), used by the `full` profile

    train, test = [], []
    for name in spec["configs"] or [None]:  # [] = the dataset's default config
        tag = name or "default"
        for split, rows, prefix in ((spec["train_split"], train, "hub"), (spec["test_split"], test, "hub_test")):
            table = datasets.load_dataset(spec["path"], name, split=split, revision=sha)
            rows += _from_records(table, spec, "hub", f"{prefix}-{tag}", test=prefix == "hub_test")
    return train, test


def _load_file(path: str) -> list[dict]:
    p = repo_path(path)  # params paths are repo-relative
    if not p.exists():
        raise FileNotFoundError(f"data.local path does not exist: {path}")
    if p.suffix == ".parquet":
        import pandas as pd

        try:
            return pd.read_parquet(p).to_dict("records")
        except (OSError, ValueError) as exc:  # pyarrow's own errors name a buffer, not the file
            raise ValueError(f"{path}: not a readable parquet file ({type(exc).__name__}: {exc})") from None
    read = io.read_jsonl(p)
    if read.bad:
        first = read.bad[0]
        raise ValueError(f"{path}: {len(read.bad)} malformed line(s), first at line {first['line']}: {first['reason']}")
    return read.rows


def load_source(cfg, hub_sha: str | None = None) -> tuple[list[dict], list[dict] | None]:
    """(pool of problems, explicit test rows or None); a hub source read at commit `hub_sha`."""
    data, scenario = cfg["data"], cfg["scenario"]
    if data["source"] == "embedded":
        read = io.read_jsonl(EMBEDDED / f"{scenario}.jsonl", required=PROBLEM_COLUMNS)
        if read.bad:
            raise ValueError(f"embedded {scenario}.jsonl has malformed rows: {read.bad[:3]}")
        return read.rows, None
    if data["source"] == "local":
        spec = data["local"]
        pool = _from_records(_load_file(spec["path"]), spec, "local", "local")
        test = (
            _from_records(_load_file(spec["test_path"]), spec, "local", "local_test", test=True)
            if spec["test_path"]
            else None
        )
        return pool, test
    return _load_hub(data["hub"], hub_sha)


def _read_problems(path: Path) -> list[dict]:
    read = io.read_jsonl(path, required=PROBLEM_COLUMNS)
    if read.bad:
        first = read.bad[0]
        raise ValueError(
            f"{path} has {len(read.bad)} unusable row(s); first at line {first['line']}: {first['reason']}. "
            f"Fix the file or delete it to regenerate the split."
        )
    if not read.rows:  # emptied: every later stage would train or benchmark on nothing
        raise ValueError(f"{path} holds no problem. Delete it to regenerate the split.")
    return read.rows


def _drop_duplicates(pool: list[dict], test: list[dict] | None) -> tuple[list[dict], list[dict] | None, list[dict]]:
    """Each source's rows with every question once (the first kept), and the later copies."""
    pool, dropped = problems.drop_duplicates(pool)
    if test is not None:
        test, dropped_test = problems.drop_duplicates(test)
        dropped += dropped_test
    return pool, test, dropped


def ensure_problems(cfg, rp: RunPaths) -> dict:
    """Write the scenario's train and test problems once; later runs reuse them."""
    recorded = check_fingerprint(cfg, rp)  # compares only: written below once the split is accepted
    edited = _set_aside_edited(rp)
    commit = None
    if rp.train_problems.exists() and rp.test_problems.exists():
        train = _read_problems(rp.train_problems)
        test = _read_problems(rp.test_problems)
    else:
        # a hub dataset at the commit this scenario's split was first made from, else resolved now
        commit = hub.dataset_pin(cfg, recorded) if cfg["data"]["source"] == "hub" else None
        pool, test, duplicates = _drop_duplicates(*load_source(cfg, commit and commit["sha"]))
        n_train, n_test, seed = cfg["data"]["n_train"], cfg["data"]["n_test"], cfg["seed"]
        if test is None:
            train, test = problems.split_train_test(pool, n_test, seed)
            shared = []
        else:
            test = random.Random(seed).sample(test, min(n_test, len(test))) if n_test else test
            # A source's own test split may repeat a training question (hub datasets do):
            # the held-out side wins, the training copy is dropped and listed.
            train, shared = problems.drop_shared(pool, test)
        if n_train and len(train) > n_train:
            train = random.Random(seed).sample(train, n_train)
        problems.check_no_leakage(train, test)
        if not train or not test:
            raise ValueError(
                f"data params give {len(train)} training and {len(test)} held-out problems for "
                f"{cfg['scenario']}; both must be at least 1 (data.n_train, data.n_test)"
            )
        io.write_jsonl(rp.duplicate_questions, duplicates)  # first: the split files mark the step done
        io.write_jsonl(rp.shared_questions, shared)
        io.write_jsonl(rp.train_problems, train)
        io.write_jsonl(rp.test_problems, test)
        io.write_json(_made(rp), _split_hashes(rp))
    if not _made(rp).exists():  # a split made before its hashes were kept: taken as it is
        io.write_json(_made(rp), _split_hashes(rp))
    problems.check_no_leakage(train, test)
    meta = rp.problems_dir / "meta.json"
    if not meta.exists() or (commit and commit != recorded):
        io.write_json(meta, {**_fingerprint(cfg), **({"hub_revision": commit} if commit else {})})
    shared = io.read_jsonl(rp.shared_questions).rows if rp.shared_questions.exists() else []
    duplicates = io.read_jsonl(rp.duplicate_questions).rows if rp.duplicate_questions.exists() else []
    out = {
        "n_train": len(train),
        "n_test": len(test),
        "shared_dropped": len(shared),
        "shared_ids": [r["id"] for r in shared],
        "duplicates_dropped": len(duplicates),
        "duplicate_ids": [r["id"] for r in duplicates],
    }
    return {**out, "edited_set_aside": edited} if edited else out


def _made(rp: RunPaths) -> Path:
    return rp.problems_dir / "split.sha.json"


def _split_hashes(rp: RunPaths) -> dict:
    return {p.name: fingerprints.of_path(p) for p in (rp.train_problems, rp.test_problems)}


def _set_aside_edited(rp: RunPaths) -> list[str]:
    """A split file changed since the split was made (edited by hand, cut short, emptied) is not
    the split: both are renamed aside (kept) and the split is made again from its source, as it
    was — never a held-out answer edited in place and graded against."""
    if not _made(rp).exists() or not (rp.train_problems.exists() and rp.test_problems.exists()):
        return []
    try:
        same = io.read_json(_made(rp)) == _split_hashes(rp)
    except ValueError:  # the hashes file cut short: the split cannot be vouched for
        same = False
    if same:
        return []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = []
    for path in (rp.train_problems, rp.test_problems):
        aside = path.with_name(f"{path.stem}.edited-{stamp}{path.suffix}")
        path.rename(aside)
        moved.append(str(aside))
    _made(rp).unlink()
    return moved


def _fingerprint(cfg) -> dict:
    d = cfg["data"]
    return {
        "source": d["source"],
        "n_train": d["n_train"],
        "n_test": d["n_test"],
        "seed": cfg["seed"],
        # the commit is compared by `hub.dataset_pin`, against the one recorded beside (`hub_revision`)
        "hub": {k: v for k, v in d["hub"].items() if k != "revision"} if d["source"] == "hub" else None,
        "local": d["local"] if d["source"] == "local" else None,
    }


def check_fingerprint(cfg, rp: RunPaths) -> dict | None:
    """Problems are written once per scenario and shared by every style: refuse to mix
    runs made from different data parameters (or Hub dataset commits) into one profile's
    results. Returns the dataset commit the split was made from, where one is recorded."""
    meta = rp.problems_dir / "meta.json"
    want = _fingerprint(cfg)
    recorded = None
    if meta.exists():
        have = io.read_json(meta)
        recorded = have.pop("hub_revision", None)
        if have == want and recorded and cfg["data"]["source"] == "hub":
            hub.dataset_pin(cfg, recorded)  # a pin naming another commit is refused, naming both
        if have != want:
            raise ValueError(
                f"{rp.problems_dir} was made with data params {have}, this run asks for {want}; "
                f"use another profile, or delete everything under {rp.root} but models/base (the base pair "
                f"does not depend on it) to start this profile's data afresh"
            )
    return recorded
