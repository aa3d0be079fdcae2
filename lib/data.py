"""Stage 1: the teacher's solutions (the problems and their held-out split: `splits`).

A teacher writes a solution in the run's style for each training problem; every solution is validated and rejected rows are kept
with their reason. Resumable: problems already answered are never asked again.
"""

from __future__ import annotations

import time
from fnmatch import fnmatchcase
from pathlib import Path

from . import answers, fingerprints, io, params
from .record import OPERATIONAL, flat
from .styles import system_prompt
from .paths import RunPaths
from .splits import PROBLEM_COLUMNS
from .teachers import reference


def shared_table(rp: RunPaths):
    """Training rows dropped because the test split holds the same question (with the ids
    of their test twins)."""
    return preview(rp.shared_questions, columns=["id", "test_id", "question"], n=None)


def duplicates_table(rp: RunPaths):
    """Rows dropped because an earlier row of the same source asks the same question (with the
    id of the row kept)."""
    return preview(rp.duplicate_questions, columns=["id", "kept_id", "question"], n=None)


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
    # the rejected rows and a pending batch job go with the solutions: the same teacher's answers
    set_aside = fingerprints.resume_guard(
        rp.teacher_output, teacher_settings(cfg), [rp.teacher_rejected, rp.teacher_state]
    )
    done_ids, repairs = set(), []
    for path in (rp.teacher_output, rp.teacher_rejected):
        # A killed run may leave half a line; two writers or a replayed batch, a repeated id.
        repairs += [f"{path.name}: {_where(r)}{r['reason']}" for r in io.repair_jsonl(path, required=("id",), key="id")]
    set_aside += _set_aside_changed_rows(rp, train)
    for path in (rp.teacher_output, rp.teacher_rejected):
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
    cut = cut_short(cfg, rp)
    if cut:  # on every run, resumed or not, until a setting changes (which asks every problem again)
        raise TeacherCutShort(cut)
    return {
        "requested": len(todo),
        "skipped_done": len(done_ids),
        "wall_s": time.perf_counter() - t0,
        "set_aside": set_aside,
        "n_repairs": len(repairs),
        "repairs": repairs[:20],
    }


class TeacherCutShort(RuntimeError):
    """Most of the teacher's answers stopped at its output limit: its settings, not the problems."""


# Finish reasons of an answer stopped at the output limit (Gemini; vLLM), and what sets the limit.
CUT = {"MAX_TOKENS": "gemini", "length": "local_teacher"}
LIMITS = {
    "gemini": "data.gemini.max_output_tokens (thought tokens count against it) or lower data.gemini.thinking_level",
    "local_teacher": "data.local_teacher.max_tokens",
}


def cut_short(cfg, rp: RunPaths) -> str | None:
    """Why a teacher's answers cannot be used as they are: more than `data.max_cut_fraction` of
    them stopped at its output limit (thinking spent Gemini's budget, say); None when they can."""
    rows = _rows(rp.teacher_output) + _rows(rp.teacher_rejected)
    finished = [r for r in rows if r.get("finish_reason")]
    cut = [r for r in finished if r["finish_reason"] in CUT]
    if not finished or len(cut) <= cfg["data"]["max_cut_fraction"] * len(finished):
        return None
    reason = cut[0]["finish_reason"]
    thoughts = [r["usage"]["thought_tokens"] for r in cut if (r.get("usage") or {}).get("thought_tokens")]
    return (
        f"{len(cut)} of {len(finished)} teacher answers stopped at the output limit (finish reason {reason}; more "
        f"than data.max_cut_fraction = {cfg['data']['max_cut_fraction']:g})"
        + (f"; their mean thought tokens {sum(thoughts) / len(thoughts):.0f}" if thoughts else "")
        + f". Raise {LIMITS[CUT[reason]]}: a changed setting asks every problem again "
        f"(the cut answers are in {rp.teacher_rejected})."
    )


def _where(bad: dict) -> str:
    return f"line {bad['line']}: " if bad.get("line") else ""


def teacher_settings(cfg) -> dict:
    """What a teacher's solutions are made with: the teacher, its own settings (not how it is
    polled or reached), the style and its prompt. Resumed only under the same (see
    `fingerprints.resume_guard`); problem text is checked row by row (`_set_aside_changed_rows`)."""
    teacher = cfg["data"]["teacher"]
    own = params.TEACHER_SECTIONS.get(teacher)
    spec = {
        k: v
        for k, v in flat({own: cfg["data"][own]} if own else {}).items()
        if not any(fnmatchcase(f"data.{k}", pat) for pat in OPERATIONAL)
    }
    return {
        "teacher": teacher,
        "spec": spec,
        "keep_wrong": cfg["data"]["keep_wrong"],
        "style": cfg["style"],
        "prompt": system_prompt(cfg["style"]),
        "thinking": cfg["prompt"]["enable_thinking"].get(cfg["style"]),
    }


def _set_aside_changed_rows(rp: RunPaths, train: list[dict]) -> list[str]:
    """Rows not resumed, each moved to a file beside its own (kept) and asked again: a row edited
    since it was written (its `sha` no longer matches), and one answered for a problem whose
    question or answer is no longer the one under its id (or whose id is gone)."""
    current = {p["id"]: (p["question"], p["answer"]) for p in train}
    moved = []
    for path in (rp.teacher_output, rp.teacher_rejected):
        moved.append(io.set_aside_rows(path, fingerprints.intact, "edited"))
        moved.append(
            io.set_aside_rows(
                path,
                lambda r: "question" not in r or current.get(r.get("id")) == (r["question"], r.get("answer")),
                "changed-problems",
            )
        )
    return [m for m in moved if m]


def _record(
    cfg, rp: RunPaths, problem: dict, solution: str | None, error: str | None, extra: dict | None = None
) -> None:
    """Validate one teacher answer and append it to the output or the rejected file."""
    style, teacher = cfg["style"], cfg["data"]["teacher"]
    if error is not None or solution is None:
        reason = f"teacher error: {error or 'no solution returned'}"
        io.append_jsonl(
            rp.teacher_rejected,
            [fingerprints.sealed({"id": problem["id"], "reason": reason, "solution": "", **(extra or {})})],
        )
        return
    row, reason = validate(problem, solution)
    row.update(teacher=teacher, style=style, **(extra or {}))
    if reason and not (cfg["data"]["keep_wrong"] and row["extraction"] in ("hash", "boxed")):
        io.append_jsonl(rp.teacher_rejected, [fingerprints.sealed({**row, "reason": reason})])
    else:
        io.append_jsonl(rp.teacher_output, [fingerprints.sealed(row)])


def _rows(path: Path) -> list[dict]:
    return io.read_jsonl(path).rows if path.exists() else []


def preview(path: Path, columns: list[str] | None = None, n: int | None = 5):
    import pandas as pd

    frame = pd.DataFrame(_rows(path))
    if columns is not None and len(frame):
        frame = frame[[c for c in columns if c in frame]]
    return frame if n is None else frame.head(n)


def validation_summary(cfg, rp: RunPaths) -> dict:
    """Teacher accuracy over every answered problem and tokens per kept solution, of this
    run's own data only (what another run has written by then must not change its figures)."""
    kept, rejected = _rows(rp.teacher_output), _rows(rp.teacher_rejected)
    answered = len(kept) + len(rejected)
    out = {
        "kept": len(kept),
        "rejected": len(rejected),
        "teacher_accuracy": (sum(r["correct"] for r in kept) + sum(bool(r.get("correct")) for r in rejected)) / answered
        if answered
        else None,
    }
    out.update(teacher_cost(kept + rejected))
    tokens = token_frame(cfg, rp)
    for style, group in tokens.groupby("style") if len(tokens) else []:
        out[f"tokens_mean_{style}"] = float(group["tokens"].mean())
        out[f"chars_mean_{style}"] = float(group["chars"].mean())
    return out


def teacher_cost(rows: list[dict]) -> dict:
    """What the teacher was paid for, where its rows say (Gemini's token usage, thought tokens
    included: they are billed as output), and why its answers finished."""
    out = {}
    usage = [r["usage"] for r in rows if r.get("usage")]
    for name in sorted({k for u in usage for k in u}):
        out[f"teacher_{name}"] = sum(int(u.get(name) or 0) for u in usage)
    finished = [r["finish_reason"] for r in rows if r.get("finish_reason")]
    if finished:
        out["finish_reasons"] = {reason: finished.count(reason) for reason in sorted(set(finished))}
    return out


def token_frame(cfg, rp: RunPaths):
    """Tokens per kept teacher solution of this run (none for `base`). Only its own: another
    style's file, read when it happened to exist, made this run's figures depend on the order
    runs were placed in, from an input its record did not name."""
    import pandas as pd

    from . import hub, models

    rows = _rows(rp.teacher_output)
    if not rows:
        return pd.DataFrame(columns=["style", "id", "tokens", "chars"])
    base = models.base_model(cfg, rp, "target")
    counts = models.token_counter(base, hub.revision(cfg, base))([r["solution"] for r in rows])
    return pd.DataFrame(
        {
            "style": rp.style,
            "id": [r["id"] for r in rows],
            "tokens": counts,
            "chars": [len(r["solution"]) for r in rows],
        }
    )


def rejected_table(rp: RunPaths):
    return preview(rp.teacher_rejected, columns=["id", "reason", "finish_reason", "pred", "answer", "solution"], n=None)


def load_training_rows(path: Path) -> list[dict]:
    """Rows a training stage consumes (teacher output or distilled answers)."""
    rows = io.require_jsonl(path, required=("id", "question", "solution"))
    if not rows:
        raise ValueError(f"{path}: no rows to train on")
    return rows
