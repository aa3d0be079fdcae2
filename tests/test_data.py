"""Stage 1 on its own: sources, the split, teachers, validation, resuming, bad input."""

import json

import pytest

from lib import data, io, params, problems, splits
from lib.paths import REPO, RunPaths

SEED = REPO.parent / "shared" / "seed-data"


def _cfg(style="cot", scenario="easy", profile="tiny", **over):
    return params.resolve(profile, style, scenario, {"data.n_train": 40, "data.n_test": 10, **over})


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_embedded_split_has_no_shared_question(home):
    cfg, rp = _cfg(), RunPaths("tiny", "cot", "easy")
    assert splits.ensure_problems(cfg, rp) == {
        "n_train": 40,
        "n_test": 10,
        "shared_dropped": 0,
        "shared_ids": [],
        "duplicates_dropped": 0,
        "duplicate_ids": [],
    }
    train, test = io.read_jsonl(rp.train_problems).rows, io.read_jsonl(rp.test_problems).rows
    assert not {problems.normalize_question(r["question"]) for r in train} & {
        problems.normalize_question(r["question"]) for r in test
    }


def test_changed_data_params_are_refused_not_mixed(home):
    splits.ensure_problems(_cfg(), RunPaths("tiny", "cot", "easy"))
    with pytest.raises(ValueError, match="was made with data params"):
        splits.ensure_problems(_cfg(**{"data.n_test": 11}), RunPaths("tiny", "cod", "easy"))


def test_question_shared_with_an_explicit_test_split_is_dropped_from_training_and_listed(home, tmp_path):
    rows = [
        {"question": f"What is {i} plus {i}?", "answer": f"{i}+{i} = <<{i}+{i}={2 * i}>>{2 * i}\n#### {2 * i}"}
        for i in range(30)
    ]
    train = _write(tmp_path / "train.jsonl", rows)
    test = _write(tmp_path / "test.jsonl", [{**rows[0], "question": "  what is 0 plus 0 "}] + rows[1:3])
    cfg = _cfg(
        **{
            "data.source": "local",
            "data.local.path": train,
            "data.local.test_path": test,
            "data.n_train": 0,
            "data.n_test": 0,
        }
    )
    rp = RunPaths("tiny", "cot", "easy")
    split = splits.ensure_problems(cfg, rp)
    assert split["n_train"] == 27 and split["n_test"] == 3
    assert split["shared_dropped"] == 3 and sorted(split["shared_ids"]) == ["local-00000", "local-00001", "local-00002"]
    table = data.shared_table(rp)
    assert list(table.columns) == ["id", "test_id", "question"]
    assert dict(zip(table["id"], table["test_id"]))["local-00000"] == "local_test-00000"
    train_ids = {r["id"] for r in io.read_jsonl(rp.train_problems).rows}
    assert not train_ids & {"local-00000", "local-00001", "local-00002"}
    assert splits.ensure_problems(cfg, rp) == split  # a re-run reads the same list back


def test_local_file_missing_column_names_it(home, tmp_path):
    path = _write(tmp_path / "p.jsonl", [{"prompt": "2+2?", "answer": "#### 4"}])
    cfg = _cfg(**{"data.source": "local", "data.local.path": path})
    with pytest.raises(KeyError, match=r"no column\(s\) \['question'\].*columns present: \['answer', 'prompt'\]"):
        splits.ensure_problems(cfg, RunPaths("tiny", "cot", "easy"))


def test_local_file_malformed_line_is_named(home, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"question": "1+1?", "answer": "#### 2"}\n{"question": "broken\n')
    cfg = _cfg(**{"data.source": "local", "data.local.path": str(path)})
    with pytest.raises(ValueError, match="1 malformed line.*line 2"):
        splits.ensure_problems(cfg, RunPaths("tiny", "cot", "easy"))


def test_reference_teacher_validates_and_resumes(home):
    cfg, rp = _cfg(), RunPaths("tiny", "cot", "easy")
    splits.ensure_problems(cfg, rp)
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
    splits.ensure_problems(cfg, rp)
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
    split = splits.ensure_problems(cfg, rp)
    assert (split["n_train"], split["n_test"]) == (60, 20)
    data.generate_solutions(cfg, rp, progress=False)
    kept = io.read_jsonl(rp.teacher_output).rows
    assert len(kept) >= 45  # the study's teacher was right on ~95 % of rows
    assert sum("->" in r["solution"] for r in kept) > len(kept) / 2  # CoD steps joined by ->


# --- the hub path, against the local hub (tests/local_hub.py) ---------------------------

_HUB_SPLIT = """
import json, sys
from lib import io, params, paths, splits
scenario = sys.argv[1]
cfg = params.resolve("full", "cot", scenario, {"data.n_train": 0, "data.n_test": 0})
rp = paths.RunPaths("full", "cot", scenario)
split = splits.ensure_problems(cfg, rp)
train = [r["id"] for r in io.read_jsonl(rp.train_problems).rows]
test = [r["id"] for r in io.read_jsonl(rp.test_problems).rows]
levels = sorted({r["level"] for r in io.read_jsonl(rp.train_problems).rows})
print(json.dumps({"split": split, "train": train, "test": test, "levels": levels}))
"""


@pytest.mark.slow  # `datasets` against the local Hub in a subprocess
@pytest.mark.parametrize("scenario", ["easy", "medium", "hard"])
def test_full_profile_reads_its_hub_datasets(home, hub_env, scenario):
    """`full`'s own params against hub-shaped repositories: GSM8K's `main` config, and
    MATH's three subject configs joined (EleutherAI/hendrycks_math has no default config:
    `load_dataset(path, None)` fails there with "Config name is missing")."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _HUB_SPLIT, scenario],
        env=hub_env["env"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    train, test, split = got["train"], got["test"], got["split"]
    assert len(set(train)) == len(train) and len(set(test)) == len(test) and not set(train) & set(test)
    configs = {
        "easy": {"main"},
        "medium": {"algebra", "intermediate_algebra", "precalculus"},
        "hard": {"algebra", "intermediate_algebra", "precalculus"},
    }[scenario]
    assert {i.split("-")[1] for i in train} == configs  # every config joined, ids name theirs
    assert {i.split("-")[1] for i in test} == configs
    if scenario != "easy":  # the study's level filter (the stand-in has Level 5 rows too)
        assert got["levels"] == (["Level 1", "Level 2"] if scenario == "medium" else ["Level 3", "Level 4"])
    # the stand-in repeats two training questions of each config in its test split
    assert split["shared_dropped"] >= 2 and len(split["shared_ids"]) == split["shared_dropped"]
    assert not set(split["shared_ids"]) & set(train)
    calls = [path for _, path, _ in hub_env["hub"].calls]
    dataset = "openai/gsm8k" if scenario == "easy" else "EleutherAI/hendrycks_math"
    assert any(f"/datasets/{dataset}/resolve/" in c and c.endswith(".parquet") for c in calls)
