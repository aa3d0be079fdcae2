"""The `file` teacher: solutions written elsewhere (an earlier Gemini run, the original
study's data), matched to the problems by normalized question text. Nothing is generated,
but every solution still goes through the same validation as a live teacher's."""

from __future__ import annotations

from typing import Iterator

from .. import io
from ..paths import RunPaths, repo_path
from ..problems import normalize_question


def source_path(cfg) -> str:
    spec = cfg["data"]["teacher_file"]
    if not spec["path"]:
        raise ValueError("data.teacher=file needs data.teacher_file.path (JSONL; {style} and {scenario} are filled in)")
    path = spec["path"].format(style=cfg["style"], scenario=cfg["scenario"])
    # Relative paths are relative to the repository, like every other path in params.
    return str(repo_path(path))


def generate(
    cfg, rp: RunPaths, problems: list[dict], style: str, progress: bool = True
) -> Iterator[tuple[str, str | None, str | None]]:
    spec = cfg["data"]["teacher_file"]
    path = source_path(cfg)
    rows = io.require_jsonl(path, required=(spec["question_field"], spec["solution_field"]))  # bad line: named
    solutions = {}
    for r in rows:  # a question given twice: the first solution is kept, as every data source keeps its first row
        solutions.setdefault(normalize_question(r[spec["question_field"]]), r[spec["solution_field"]])
    for problem in problems:
        found = solutions.get(normalize_question(problem["question"]))
        if found is None:
            yield problem["id"], None, f"no solution for this question in {path}"
        else:
            yield problem["id"], found, None
