"""Stage 1 on its own: sources, the split, teachers, validation, resuming, bad input."""

import json

import pytest

from lib import data, io, params, problems
from lib.paths import REPO, RunPaths

SEED = REPO.parent / "shared" / "seed-data"


def _cfg(style="cot", scenario="easy", profile="tiny", **over):
    return params.resolve(profile, style, scenario, {"data.n_train": 40, "data.n_test": 10, **over})


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_embedded_split_has_no_shared_question(home):
    cfg, rp = _cfg(), RunPaths("tiny", "cot", "easy")
    assert data.ensure_problems(cfg, rp) == {"n_train": 40, "n_test": 10}
    train, test = io.read_jsonl(rp.train_problems).rows, io.read_jsonl(rp.test_problems).rows
    assert not {problems.normalize_question(r["question"]) for r in train} & {
        problems.normalize_question(r["question"]) for r in test
    }


def test_changed_data_params_are_refused_not_mixed(home):
    data.ensure_problems(_cfg(), RunPaths("tiny", "cot", "easy"))
    with pytest.raises(ValueError, match="was made with data params"):
        data.ensure_problems(_cfg(**{"data.n_test": 11}), RunPaths("tiny", "cod", "easy"))


def test_leaking_local_test_file_stops_with_the_ids(home, tmp_path):
    rows = [{"question": f"What is {i} plus {i}?", "answer": f"{i}+{i} = <<{i}+{i}={2*i}>>{2*i}\n#### {2*i}"} for i in range(30)]
    train = _write(tmp_path / "train.jsonl", rows)
    test = _write(tmp_path / "test.jsonl", rows[:3])
    cfg = _cfg(**{"data.source": "local", "data.local.path": train, "data.local.test_path": test})
    with pytest.raises(ValueError) as err:
        data.ensure_problems(cfg, RunPaths("tiny", "cot", "easy"))
    assert "local-00000" in str(err.value) or "local_test-00000" in str(err.value)


def test_local_file_missing_column_names_it(home, tmp_path):
    path = _write(tmp_path / "p.jsonl", [{"prompt": "2+2?", "answer": "#### 4"}])
    cfg = _cfg(**{"data.source": "local", "data.local.path": path})
    with pytest.raises(KeyError, match=r"no column\(s\) \['question'\].*columns present: \['answer', 'prompt'\]"):
        data.ensure_problems(cfg, RunPaths("tiny", "cot", "easy"))


def test_local_file_malformed_line_is_named(home, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"question": "1+1?", "answer": "#### 2"}\n{"question": "broken\n')
    cfg = _cfg(**{"data.source": "local", "data.local.path": str(path)})
    with pytest.raises(ValueError, match="1 malformed line.*line 2"):
        data.ensure_problems(cfg, RunPaths("tiny", "cot", "easy"))


def test_reference_teacher_validates_and_resumes(home):
    cfg, rp = _cfg(), RunPaths("tiny", "cot", "easy")
    data.ensure_problems(cfg, rp)
    first = data.generate_solutions(cfg, rp, progress=False)
    assert first["requested"] == 40
    kept = io.read_jsonl(rp.teacher_output).rows
    assert kept and all(r["correct"] and r["solution"].rstrip().endswith(r["answer"]) for r in kept)
    # a killed writer's half line is repaired; nothing is asked twice
    with open(rp.teacher_output, "a") as fh:
        fh.write('{"id": "easy-9')
    again = data.generate_solutions(cfg, rp, progress=False)
    assert again["requested"] == 0 and again["skipped_done"] == 40
    assert len(io.read_jsonl(rp.teacher_output).rows) == len(kept)


def test_file_teacher_rejects_wrong_and_unmatched_rows_with_reasons(home, tmp_path):
    cfg, rp = _cfg(), RunPaths("tiny", "cot", "easy")
    data.ensure_problems(cfg, rp)
    train = io.read_jsonl(rp.train_problems).rows
    solutions = [{"instruction": r["question"], "output": f"It is done.\n#### {r['answer']}"} for r in train[:30]]
    solutions[0]["output"] = "It is done.\n#### 123456789"  # wrong
    solutions[1]["output"] = "It is done, the answer is 7"  # no final marker
    path = _write(tmp_path / "sol_{style}.jsonl".replace("{style}", "cot"), solutions)
    cfg = _cfg(**{"data.teacher": "file", "data.teacher_file.path": path.replace("_cot", "_{style}")})
    data.generate_solutions(cfg, rp, progress=False)
    rejected = {r["id"]: r["reason"] for r in io.read_jsonl(rp.teacher_rejected).rows}
    assert "does not match ground truth" in rejected[train[0]["id"]]
    assert "no final '#### answer'" in rejected[train[1]["id"]]
    assert "no solution for this question" in rejected[train[35]["id"]]
    assert len(io.read_jsonl(rp.teacher_output).rows) == 28
    # Back to the reference teacher: the file teacher's rows are set aside, not mixed in.
    back = data.generate_solutions(_cfg(), rp, progress=False)
    assert back["requested"] == 40 and len(back["set_aside"]) == 2
    assert {r["teacher"] for r in io.read_jsonl(rp.teacher_output).rows} == {"reference"}


@pytest.mark.skipif(not SEED.exists(), reason="../shared/seed-data is not beside this checkout")
@pytest.mark.parametrize("scenario", ["easy", "medium", "hard"])
def test_seed_profile_reads_the_study_data(home, scenario):
    cfg = params.resolve("seed", "cod", scenario, {"data.n_train": 60, "data.n_test": 20})
    rp = RunPaths("seed", "cod", scenario)
    split = data.ensure_problems(cfg, rp)
    assert split == {"n_train": 60, "n_test": 20}
    data.generate_solutions(cfg, rp, progress=False)
    kept = io.read_jsonl(rp.teacher_output).rows
    assert len(kept) >= 45  # the study's teacher was right on ~95 % of rows
    assert sum("->" in r["solution"] for r in kept) > len(kept) / 2  # CoD steps joined by ->
