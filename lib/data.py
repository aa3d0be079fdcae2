"""Stage 1: problems, the held-out split, and the teacher's solutions.

Problems come from the embedded offline set, a local file, or the hub; the held-out split
shares no (normalized) question with training: split from one pool, or, where the source has
its own test split, with training copies of its questions dropped and listed. A teacher writes a solution in the run's
style for each training problem; every solution is validated and rejected rows are kept
with their reason. Resumable: problems already answered are never asked again.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from . import answers, io, problems
from .paths import EMBEDDED, REPO, RunPaths
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
    rows = []
    for i, rec in enumerate(records):
        missing = [c for c in (q, s) if c not in rec]
        if missing:
            source = spec.get("test_path" if test else "path") or id_prefix
            raise KeyError(
                f"{source}: record {i} has no column(s) {missing}; columns present: {sorted(rec)}. "
                f"Set data.{section}.question_field / solution_field."
            )
        if levels and rec.get("level") not in levels:
            continue
        if types and rec.get("type") not in types:
            continue
        rows.append({
            "id": f"{id_prefix}-{i:05d}",
            "question": rec[q],
            "reference": rec[s],
            "answer": reference.final_answer_from_reference(rec[s]),
            "level": rec.get("level", ""),
            "type": rec.get("type", ""),
            "source": id_prefix,
        })
    return rows


def _load_hub(spec: dict) -> tuple[list[dict], list[dict]]:
    """Train and test rows of every config (subset) the params name, joined. A hub dataset
    with one config per subject (EleutherAI/hendrycks_math) has no default config, so
    `configs` lists them; ids carry the config so they stay unique across configs."""
    import datasets  # the hub path: needs the Hub (or HF_ENDPOINT), used by the `full` profile

    train, test = [], []
    for name in spec["configs"] or [None]:  # [] = the dataset's default config
        tag = name or "default"
        for split, rows, prefix in ((spec["train_split"], train, "hub"), (spec["test_split"], test, "hub_test")):
            table = datasets.load_dataset(spec["path"], name, split=split)
            rows += _from_records(table, spec, "hub", f"{prefix}-{tag}", test=prefix == "hub_test")
    return train, test


def _load_file(path: str) -> list[dict]:
    p = Path(path) if Path(path).is_absolute() else REPO / path  # params paths are repo-relative
    if not p.exists():
        raise FileNotFoundError(f"data.local path does not exist: {path}")
    if p.suffix == ".parquet":
        import pandas as pd

        return pd.read_parquet(p).to_dict("records")
    read = io.read_jsonl(p)
    if read.bad:
        first = read.bad[0]
        raise ValueError(f"{path}: {len(read.bad)} malformed line(s), first at line {first['line']}: {first['reason']}")
    return read.rows


def load_source(cfg) -> tuple[list[dict], list[dict] | None]:
    """(pool of problems, explicit test rows or None)."""
    data, scenario = cfg["data"], cfg["scenario"]
    if data["source"] == "embedded":
        read = io.read_jsonl(EMBEDDED / f"{scenario}.jsonl", required=PROBLEM_COLUMNS)
        if read.bad:
            raise ValueError(f"embedded {scenario}.jsonl has malformed rows: {read.bad[:3]}")
        return read.rows, None
    if data["source"] == "local":
        spec = data["local"]
        pool = _from_records(_load_file(spec["path"]), spec, "local", "local")
        test = _from_records(_load_file(spec["test_path"]), spec, "local", "local_test", test=True) if spec["test_path"] else None
        return pool, test
    return _load_hub(data["hub"])


def _read_problems(path: Path) -> list[dict]:
    read = io.read_jsonl(path, required=PROBLEM_COLUMNS)
    if read.bad:
        first = read.bad[0]
        raise ValueError(
            f"{path} has {len(read.bad)} unusable row(s); first at line {first['line']}: {first['reason']}. "
            f"Fix the file or delete it to regenerate the split."
        )
    return read.rows


def ensure_problems(cfg, rp: RunPaths) -> dict:
    """Write the scenario's train and test problems once; later runs reuse them."""
    check_fingerprint(cfg, rp)  # compares only: written below once the split is accepted
    if rp.train_problems.exists() and rp.test_problems.exists():
        train = _read_problems(rp.train_problems)
        test = _read_problems(rp.test_problems)
    else:
        pool, test = load_source(cfg)
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
            raise ValueError(f"data params give {len(train)} training and {len(test)} held-out problems for "
                             f"{cfg['scenario']}; both must be at least 1 (data.n_train, data.n_test)")
        io.write_jsonl(rp.shared_questions, shared)  # first: the split files mark the step done
        io.write_jsonl(rp.train_problems, train)
        io.write_jsonl(rp.test_problems, test)
    problems.check_no_leakage(train, test)
    meta = rp.problems_dir / "meta.json"
    if not meta.exists():
        io.write_json(meta, _fingerprint(cfg))
    shared = _rows(rp.shared_questions)
    return {"n_train": len(train), "n_test": len(test), "shared_dropped": len(shared),
            "shared_ids": [r["id"] for r in shared]}


def shared_table(rp: RunPaths):
    """Training rows dropped because the test split holds the same question (with the ids
    of their test twins)."""
    return preview(rp.shared_questions, columns=["id", "test_id", "question"], n=None)


def _teach(problem: dict, style: str, teacher: str) -> str:
    if teacher == "reference":
        return reference.rewrite(problem, style)
    raise ValueError(f"unknown per-row teacher {teacher!r}; valid: reference (batch teachers: gemini, local)")


def _batch_teacher(teacher: str):
    """`generate(cfg, rp, problems, style, progress)` of a batch teacher: yields
    `(id, text or None, error or None)` for every problem it is given."""
    if teacher == "gemini":
        from .teachers import gemini

        return gemini.generate
    if teacher == "local":
        from .teachers import local

        return local.generate
    if teacher == "file":
        from .teachers import file

        return file.generate
    raise ValueError(f"unknown teacher {teacher!r}; valid teachers: reference, gemini, local, file")


def validate(problem: dict, solution: str) -> tuple[dict, str | None]:
    """A checked output row, and the reason it is rejected (None when it is fine)."""
    graded = answers.grade(solution, problem["answer"])
    row = {
        "id": problem["id"],
        "question": problem["question"],
        "solution": solution,
        "pred": graded["pred"],
        "extraction": graded["method"],
        "answer": problem["answer"],
        "correct": graded["correct"],
    }
    if graded["method"] not in ("hash", "boxed"):
        return row, "no final '#### answer' (or \\boxed{}) in the solution"
    if not graded["correct"]:
        return row, f"answer {graded['pred']!r} does not match ground truth {problem['answer']!r}"
    return row, None


def generate_solutions(cfg, rp: RunPaths, progress: bool = True) -> dict:
    """Run the teacher over the training problems not yet answered; append as we go."""
    from tqdm.auto import tqdm

    style, teacher = cfg["style"], cfg["data"]["teacher"]
    if style == "base":
        return {"requested": 0, "skipped_done": 0, "wall_s": 0.0, "note": "base style: nothing to teach"}
    train = io.require_jsonl(rp.train_problems, required=PROBLEM_COLUMNS)
    set_aside = _set_aside_other_teacher(rp, teacher)
    done_ids, repairs = set(), []
    for path in (rp.teacher_output, rp.teacher_rejected):
        # A killed run may leave half a line; two writers or a replayed batch, a repeated id.
        repairs += [f"{path.name}: {_where(r)}{r['reason']}"
                    for r in io.repair_jsonl(path, required=("id",), key="id")]
        if path.exists():
            done_ids |= {r["id"] for r in io.read_jsonl(path).rows if "id" in r}
    todo = [p for p in train if p["id"] not in done_ids]
    t0 = time.perf_counter()
    if teacher == "reference":  # per row
        for problem in tqdm(todo, desc=f"teacher {teacher} ({style})", disable=not progress):
            try:
                solution, error = _teach(problem, style, teacher), None
            except Exception as exc:  # one bad row must not lose the others
                solution, error = "", str(exc)
            _record(cfg, rp, problem, solution, error)
    elif todo:  # batch teachers (gemini, local): one call for every problem not yet answered
        by_id, written = {p["id"]: p for p in todo}, set(done_ids)
        # a teacher may add fields for the row (gemini: the model version that answered)
        for problem_id, solution, error, *extra in _batch_teacher(teacher)(cfg, rp, todo, style, progress=progress):
            if problem_id in written:  # a teacher answering one id twice must not write two rows
                repairs.append(f"teacher returned {problem_id!r} again; the first answer is kept")
                continue
            written.add(problem_id)
            _record(cfg, rp, by_id[problem_id], solution, error, *extra)
    return {"requested": len(todo), "skipped_done": len(done_ids), "wall_s": time.perf_counter() - t0,
            "set_aside": set_aside, "n_repairs": len(repairs), "repairs": repairs[:20]}


def _where(bad: dict) -> str:
    return f"line {bad['line']}: " if bad.get("line") else ""


def _set_aside_other_teacher(rp: RunPaths, teacher: str) -> list[str]:
    """Solutions resume only under the same teacher: another teacher's files are renamed aside
    (kept, never mixed in, never deleted)."""
    if not rp.teacher_output.exists():
        return []
    teachers = {r.get("teacher") for r in io.read_jsonl(rp.teacher_output).rows} - {None}  # unlabelled rows: kept
    if teachers <= {teacher}:
        return []
    stamp = int(time.time())
    moved = []
    for path in (rp.teacher_output, rp.teacher_rejected):
        if path.exists():
            target = path.with_name(f"{path.stem}.{'-'.join(sorted(map(str, teachers)))}-{stamp}{path.suffix}")
            path.rename(target)
            moved.append(str(target))
    return moved


def _record(cfg, rp: RunPaths, problem: dict, solution: str | None, error: str | None, extra: dict | None = None) -> None:
    """Validate one teacher answer and append it to the output or the rejected file."""
    style, teacher = cfg["style"], cfg["data"]["teacher"]
    if error is not None or solution is None:
        reason = f"teacher error: {error or 'no solution returned'}"
        io.append_jsonl(rp.teacher_rejected, [{"id": problem["id"], "reason": reason, "solution": "", **(extra or {})}])
        return
    row, reason = validate(problem, solution)
    row.update(teacher=teacher, style=style, **(extra or {}))
    if reason and not (cfg["data"]["keep_wrong"] and row["extraction"] in ("hash", "boxed")):
        io.append_jsonl(rp.teacher_rejected, [{**row, "reason": reason}])
    else:
        io.append_jsonl(rp.teacher_output, [row])


def _rows(path: Path) -> list[dict]:
    return io.read_jsonl(path).rows if path.exists() else []


def preview(path: Path, columns: list[str] | None = None, n: int | None = 5):
    import pandas as pd

    frame = pd.DataFrame(_rows(path))
    if columns is not None and len(frame):
        frame = frame[[c for c in columns if c in frame]]
    return frame if n is None else frame.head(n)


def validation_summary(cfg, rp: RunPaths) -> dict:
    """Teacher accuracy over every answered problem, tokens per kept solution, and the
    CoD/CoT token ratio once both styles' data exist for the scenario."""
    kept, rejected = _rows(rp.teacher_output), _rows(rp.teacher_rejected)
    answered = len(kept) + len(rejected)
    out = {
        "kept": len(kept),
        "rejected": len(rejected),
        "teacher_accuracy": (sum(r["correct"] for r in kept) + sum(bool(r.get("correct")) for r in rejected)) / answered
        if answered else None,
    }
    tokens = token_frame(cfg, rp)
    for style, group in tokens.groupby("style") if len(tokens) else []:
        out[f"tokens_mean_{style}"] = float(group["tokens"].mean())
        out[f"chars_mean_{style}"] = float(group["chars"].mean())
    if "tokens_mean_cod" in out and "tokens_mean_cot" in out:
        out["cod_cot_token_ratio"] = out["tokens_mean_cod"] / out["tokens_mean_cot"]
        out["cod_cot_char_ratio"] = out["chars_mean_cod"] / out["chars_mean_cot"]
    return out


def token_frame(cfg, rp: RunPaths):
    """Tokens per kept teacher solution, for every style of this scenario written so far."""
    import pandas as pd

    from . import models
    from .styles import TRAINED_STYLES

    frames = []
    tokenizer = None
    for style in TRAINED_STYLES:
        rows = _rows(RunPaths(rp.profile, style, rp.scenario).teacher_output)
        if not rows:
            continue
        tokenizer = tokenizer or models.load_tokenizer(models.base_model(cfg, rp, "target"))
        counts = models.count_tokens(tokenizer, [r["solution"] for r in rows])
        frames.append(pd.DataFrame({
            "style": style, "id": [r["id"] for r in rows], "tokens": counts, "chars": [len(r["solution"]) for r in rows],
        }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["style", "id", "tokens", "chars"])


def rejected_table(rp: RunPaths):
    return preview(rp.teacher_rejected, columns=["id", "reason", "pred", "answer", "solution"], n=None)


def load_training_rows(path: Path) -> list[dict]:
    """Rows a training stage consumes (teacher output or distilled answers)."""
    rows = io.require_jsonl(path, required=("id", "question", "solution"))
    if not rows:
        raise ValueError(f"{path}: no rows to train on")
    return rows


def _fingerprint(cfg) -> dict:
    d = cfg["data"]
    return {"source": d["source"], "n_train": d["n_train"], "n_test": d["n_test"], "seed": cfg["seed"],
            "hub": d["hub"] if d["source"] == "hub" else None, "local": d["local"] if d["source"] == "local" else None}


def check_fingerprint(cfg, rp: RunPaths) -> None:
    """Problems are written once per scenario and shared by every style: refuse to mix
    runs made from different data parameters into one profile's results."""
    meta = rp.problems_dir / "meta.json"
    want = _fingerprint(cfg)
    if meta.exists():
        have = io.read_json(meta)
        if have != want:
            raise ValueError(
                f"{rp.problems_dir} was made with data params {have}, this run asks for {want}; "
                f"use another profile, or delete everything under {rp.root} but models/base (the base pair "
                f"does not depend on it) to start this profile's data afresh"
            )
