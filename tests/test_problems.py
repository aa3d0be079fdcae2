"""The embedded problem set: deterministic, unique, well-formed, and split without leakage."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lib.problems import (
    SCENARIOS,
    check_no_leakage,
    generate,
    normalize_question,
    split_train_test,
    write_embedded,
)
from lib.teachers.reference import final_answer_from_reference

EMBEDDED = Path(__file__).resolve().parents[1] / "data" / "embedded"
FIELDS = {"id", "scenario", "question", "reference", "answer", "level", "type", "source"}
N = 600  # write_embedded's default


@pytest.fixture(scope="module")
def rows() -> dict[str, list[dict]]:
    return {s: generate(s, N) for s in SCENARIOS}


def test_same_seed_same_rows(rows: dict[str, list[dict]]) -> None:
    for scenario in SCENARIOS:
        assert generate(scenario, N, seed=0) == rows[scenario]
        assert generate(scenario, 50, seed=1) == generate(scenario, 50, seed=1)
        assert generate(scenario, 50, seed=1) != rows[scenario][:50]
        # a smaller draw is a prefix of a larger one
        assert generate(scenario, 40) == rows[scenario][:40]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_questions_unique(rows: dict[str, list[dict]], scenario: str) -> None:
    keys = [normalize_question(r["question"]) for r in rows[scenario]]
    assert len(set(keys)) == len(keys) == N


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_schema(rows: dict[str, list[dict]], scenario: str) -> None:
    for i, row in enumerate(rows[scenario]):
        assert set(row) == FIELDS
        assert row["id"] == f"{scenario}-{i:05d}"
        assert row["scenario"] == scenario and row["source"] == "embedded"
        assert all(isinstance(v, str) and v for k, v in row.items() if k not in ("level", "type"))
    if scenario == "easy":
        assert all(r["level"] == "" and r["type"] == "" for r in rows[scenario])
        assert all(re.fullmatch(r"\d+", r["answer"]) for r in rows[scenario])
    else:
        levels = {"medium": {"Level 1", "Level 2"}, "hard": {"Level 3", "Level 4"}}[scenario]
        types = {"medium": {"Algebra"}, "hard": {"Algebra", "Intermediate Algebra", "Precalculus"}}[scenario]
        assert {r["level"] for r in rows[scenario]} == levels
        assert {r["type"] for r in rows[scenario]} == types


def test_easy_references_are_gsm8k_format(rows: dict[str, list[dict]]) -> None:
    for row in rows["easy"]:
        *steps, last = row["reference"].split("\n")
        assert last == f"#### {row['answer']}"
        assert 2 <= len(steps) <= 4
        for line in steps:
            note = re.search(r"<<([^=<>]+)=(\d+)>>(\d+)", line)
            assert note and note.group(2) == note.group(3), line
        assert len(row["reference"].split()) < 60


def test_math_references_are_math_format(rows: dict[str, list[dict]]) -> None:
    for row in rows["medium"] + rows["hard"]:
        assert "####" not in row["reference"]
        assert row["reference"].count("$") % 2 == 0
        assert "\\boxed{" in row["reference"]


def test_template_variety(rows: dict[str, list[dict]]) -> None:
    # Different templates open their questions differently; easy has at least 12 of them.
    openings = {" ".join(r["question"].split()[1:3]) for r in rows["easy"]}
    assert len(openings) >= 12
    assert any("\\frac" in r["answer"] for r in rows["medium"])
    assert any("\\sqrt" in r["answer"] for r in rows["hard"])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_reference_answer_is_the_answer(rows: dict[str, list[dict]], scenario: str) -> None:
    for row in rows[scenario]:
        assert final_answer_from_reference(row["reference"]) == row["answer"], row["id"]


def test_unknown_scenario_lists_valid_ones() -> None:
    with pytest.raises(ValueError) as err:
        generate("impossible", 3)
    for scenario in SCENARIOS:
        assert scenario in str(err.value)


def test_normalize_question() -> None:
    assert normalize_question("  What is  2+2?\n") == "what is 2+2"
    assert normalize_question("WHAT is 2+2") == normalize_question("what is 2+2?!")


def test_split_has_no_leakage_even_with_duplicates(rows: dict[str, list[dict]]) -> None:
    pool = rows["easy"][:100]
    # Duplicates that differ only in case, spacing and final punctuation.
    dupes = [
        dict(r, id=f"dup-{i}", question=f"  {r['question'].upper().rstrip('?')} ") for i, r in enumerate(pool[:30])
    ]
    train, test = split_train_test(pool + dupes, n_test=40, seed=3)
    assert len(test) == 40
    check_no_leakage(train, test)
    test_keys = {normalize_question(r["question"]) for r in test}
    assert not any(normalize_question(r["question"]) in test_keys for r in train)
    assert split_train_test(pool + dupes, 40, 3) == (train, test)
    assert split_train_test(pool + dupes, 40, 4) != (train, test)


def test_split_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError):
        split_train_test(generate("easy", 5), n_test=6, seed=0)


def test_check_no_leakage_names_the_rows() -> None:
    train = [{"id": "tr-1", "question": "What is 2 + 2?"}, {"id": "tr-2", "question": "Other"}]
    test = [{"id": "te-9", "question": "what is 2 + 2"}]
    with pytest.raises(ValueError) as err:
        check_no_leakage(train, test)
    assert "tr-1" in str(err.value) and "te-9" in str(err.value)
    assert "tr-2" not in str(err.value)


def test_write_embedded_reproduces_the_committed_files(tmp_path: Path) -> None:
    paths = write_embedded(str(tmp_path))
    assert sorted(paths) == sorted(SCENARIOS)
    for scenario in SCENARIOS:
        fresh = (tmp_path / f"{scenario}.jsonl").read_bytes()
        assert fresh == (EMBEDDED / f"{scenario}.jsonl").read_bytes(), scenario
        lines = fresh.decode("utf-8").splitlines()
        assert len(lines) == N
        assert json.loads(lines[0])["id"] == f"{scenario}-00000"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
