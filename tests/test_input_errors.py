"""No stale number presented as current: bad input stops early with an error that says what and
where (file and line, or record; the parameter and its value; the problem id; the stage that
makes a missing folder), never a late traceback or a run that "finishes" on nothing.

The parameters' own checks are in test_params.py, the merge's in test_merge.py."""

import json
from pathlib import Path
import os
import re
import shutil
import subprocess
import sys
import types

import pytest

from conftest import REPO
from lib import benchmark, data, engine, externals, io, merge, models, params, splits, train
from lib.paths import RunPaths

BAD_BYTE = b"\xff"


def _cfg(style="cot", scenario="easy", **over):
    return params.resolve("tiny", style, scenario, {"data.n_train": 40, "data.n_test": 10, **over})


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _gsm(i: int, question: str | None = None) -> dict:
    return {"question": question or f"What is {i} plus {i}?", "answer": f"{i}+{i} = {2 * i}\n#### {2 * i}"}


def _local(path, **over):
    return _cfg(**{"data.source": "local", "data.local.path": str(path), **over})


def _with_bad_byte(path, rows, line: int):
    """A JSONL file whose `line` (1-based) holds a byte that is not UTF-8 in its first string,
    far enough in that Python's own error gives a position but no line."""
    lines = [json.dumps(r).encode() for r in rows]
    lines[line - 1] = lines[line - 1].replace(b'": "', b'": "' + BAD_BYTE, 1)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _named(path, line: int) -> str:
    """The start of the message naming a file that is not UTF-8, as a pattern."""
    return rf"{re.escape(str(path))}: line {line} column \d+: byte 0xff is not UTF-8"


def _chat_tokenizer(folder):
    """A word-level tokenizer with a chat template, saved as a model folder holds one: what the
    benchmark and distillation read before any engine starts."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "<eos>": 2, **{f"w{i}": i + 3 for i in range(61)}}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")
    fast.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }} <eos> {% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    fast.save_pretrained(folder)
    return str(folder)


# --- 4. every input error names the file and the line or record ----------------------------


def test_non_utf8_local_data_names_the_file_and_line(home, tmp_path):
    path = _with_bad_byte(tmp_path / "p.jsonl", [_gsm(i) for i in range(40)], line=31)
    with pytest.raises(ValueError, match=_named(path, 31)):
        splits.ensure_problems(_local(path), RunPaths("tiny", "cot", "easy"))


def test_non_utf8_file_teacher_names_the_file_and_line(home, tmp_path):
    cfg, rp = _cfg(), RunPaths("tiny", "cot", "easy")
    splits.ensure_problems(cfg, rp)
    train_rows = io.read_jsonl(rp.train_problems).rows
    rows = [{"instruction": r["question"], "output": f"#### {r['answer']}"} for r in train_rows]
    path = _with_bad_byte(tmp_path / "sol.jsonl", rows, line=12)
    with pytest.raises(ValueError, match=_named(path, 12)):
        data.generate_solutions(
            _cfg(**{"data.teacher": "file", "data.teacher_file.path": str(path)}), rp, progress=False
        )


def test_non_utf8_external_csv_names_the_file_and_line(tmp_path):
    path = tmp_path / "cod_easy.csv"
    head = ",".join(externals.WORKBOOK_COLUMNS).encode()
    rows = [f"cod_easy,baseline,What is {i} plus 1?,{i + 1},#### {i + 1},5".encode() for i in range(30)]
    rows[19] = rows[19].replace(b"plus", b"pl" + BAD_BYTE + b"s")
    path.write_bytes(b"\n".join([head, *rows]) + b"\n")
    with pytest.raises(ValueError, match=_named(path, 21)):
        externals.read_external(str(path))


def test_non_utf8_json_names_the_file_and_line(tmp_path):
    path = tmp_path / "m.json"
    path.write_bytes(b'{\n  "a": 1,\n  "b": "caf' + BAD_BYTE + b'"\n}\n')
    with pytest.raises(ValueError, match=re.escape(f"{path}: line 3 column 12: byte 0xff is not UTF-8")):
        io.read_json(path)


@pytest.mark.parametrize("column", ["question", "answer"])
@pytest.mark.parametrize("value", ["", "   ", None])
def test_an_empty_question_or_answer_in_local_data_names_the_file_and_record(home, tmp_path, column, value):
    rows = [_gsm(i) for i in range(40)]
    rows[17][column] = value
    path = _write(tmp_path / "p.jsonl", rows)
    with pytest.raises(ValueError, match=re.escape(f"{path}: record 17: column(s) ['{column}'] empty")):
        splits.ensure_problems(_local(path), RunPaths("tiny", "cot", "easy"))


def test_a_solution_without_a_final_answer_names_the_file_and_record(home, tmp_path):
    rows = [_gsm(i) for i in range(40)]
    rows[5]["answer"] = "It is four."
    path = _write(tmp_path / "p.jsonl", rows)
    with pytest.raises(
        ValueError, match=re.escape(f"{path}: record 5: column 'answer': reference has no final answer")
    ):
        splits.ensure_problems(_local(path), RunPaths("tiny", "cot", "easy"))


def test_an_unreadable_parquet_file_is_named(home, tmp_path):
    path = tmp_path / "p.parquet"
    path.write_bytes(b"not parquet at all" * 10)
    with pytest.raises(ValueError, match=re.escape(f"{path}: not a readable parquet file")):
        splits.ensure_problems(_local(path), RunPaths("tiny", "cot", "easy"))


# --- 5. duplicated questions are dropped, counted and listed --------------------------------


def test_duplicated_questions_in_a_local_file_are_dropped_counted_and_listed(home, tmp_path):
    rows = [_gsm(i) for i in range(60)]
    rows += [{**_gsm(i), "question": f"  what is {i} PLUS {i} "} for i in range(30)]  # the same, normalized
    path = _write(tmp_path / "p.jsonl", rows)
    rp = RunPaths("tiny", "cot", "easy")
    split = splits.ensure_problems(_local(path, **{"data.n_train": 0}), rp)
    assert split["duplicates_dropped"] == 30 and split["shared_dropped"] == 0
    assert split["n_train"] + split["n_test"] == 60  # trained (and held out) once each
    assert sorted(split["duplicate_ids"]) == [f"local-{i:05d}" for i in range(60, 90)]  # the first copy kept
    kept = io.read_jsonl(rp.train_problems).rows + io.read_jsonl(rp.test_problems).rows
    questions = [r["question"] for r in kept]
    assert len(set(questions)) == len(questions) == 60
    table = data.duplicates_table(rp)
    assert list(table.columns) == ["id", "kept_id", "question"]
    assert dict(zip(table["id"], table["kept_id"]))["local-00061"] == "local-00001"
    assert splits.ensure_problems(_local(path, **{"data.n_train": 0}), rp) == split  # read back the same


def test_a_question_twice_in_an_explicit_test_split_is_held_out_once(home, tmp_path):
    train_path = _write(tmp_path / "train.jsonl", [_gsm(i) for i in range(10, 40)])
    test_path = _write(tmp_path / "test.jsonl", [_gsm(i) for i in range(8)] + [_gsm(3), _gsm(5)])
    cfg = _local(train_path, **{"data.local.test_path": test_path, "data.n_train": 0, "data.n_test": 0})
    split = splits.ensure_problems(cfg, RunPaths("tiny", "cot", "easy"))
    assert (split["n_train"], split["n_test"], split["duplicates_dropped"]) == (30, 8, 2)
    assert split["duplicate_ids"] == ["local_test-00008", "local_test-00009"]


# --- 6. neither split may be empty ----------------------------------------------------------


@pytest.mark.parametrize("which", ["train_problems", "test_problems"])
def test_an_emptied_split_is_an_error_at_01(home, which):
    cfg, rp = _cfg(), RunPaths("tiny", "cot", "easy")
    splits.ensure_problems(cfg, rp)
    (rp.problems_dir / "split.sha.json").unlink()  # a split whose hashes were not kept: it cannot be made again
    getattr(rp, which).write_text("")
    with pytest.raises(ValueError, match=re.escape(f"{getattr(rp, which)} holds no problem")):
        splits.ensure_problems(cfg, rp)


@pytest.mark.parametrize("edit", ["empty", "answer"])
def test_a_split_changed_since_it_was_made_is_made_again_from_its_source(home, edit):
    """An emptied split, or a held-out answer edited in place: set aside (kept), made again as it
    was, never graded against (before: the edited answer stood, every stage re-ran on it)."""
    cfg, rp = _cfg(), RunPaths("tiny", "cot", "easy")
    first = splits.ensure_problems(cfg, rp)
    made = rp.test_problems.read_text()
    if edit == "empty":
        rp.test_problems.write_text("")
    else:
        rows = io.read_jsonl(rp.test_problems).rows
        rows[0]["answer"] = "999999"
        io.write_jsonl(rp.test_problems, rows)
    again = splits.ensure_problems(cfg, rp)
    assert rp.test_problems.read_text() == made and again["n_test"] == first["n_test"]
    assert len(again["edited_set_aside"]) == 2 and all(Path(p).exists() for p in again["edited_set_aside"])
    assert "edited_set_aside" not in splits.ensure_problems(cfg, rp)


def test_the_benchmark_refuses_zero_prompts_naming_the_file(home):
    cfg, rp = _cfg(), RunPaths("tiny", "cot", "easy")
    splits.ensure_problems(cfg, rp)
    rp.test_problems.write_text("\n")
    with pytest.raises(ValueError, match=re.escape(f"{rp.test_problems}: no held-out problem to benchmark")):
        benchmark.test_problems(cfg, rp)


# --- 7. a question too long for the engine --------------------------------------------------


def _too_long_problems(rp):
    rows = [
        {"id": f"easy-{i:05d}", "question": f"w{i} w{i + 1}", "reference": "#### 1", "answer": "1"} for i in range(3)
    ]
    rows.insert(1, {"id": "easy-huge", "question": "w1 w2 " * 50_000, "reference": "#### 1", "answer": "1"})  # 300 KB
    io.write_jsonl(rp.test_problems, rows)
    return rows


def test_a_question_too_long_for_the_engine_is_named_before_any_engine_starts(home, tmp_path):
    # style base: the benchmark reads the named pair (here only its tokenizer exists); the
    # slow-marker guard fails this test if an engine starts
    tok = _chat_tokenizer(tmp_path / "pair")
    cfg = _cfg("base", **{"models.target": tok, "models.draft": tok})
    rp = RunPaths("tiny", "base", "easy")
    _too_long_problems(rp)
    with pytest.raises(
        ValueError,
        match=re.escape(f"{rp.test_problems}: 1 problem(s) too long for the engine")
        + r".*engine\.max_model_len=1024.*: easy-huge \(\d+ tokens\)",
    ):
        benchmark.run(cfg, rp)


def test_distillation_names_a_question_too_long_before_its_engine_starts(home, tmp_path):
    tok = _chat_tokenizer(tmp_path / "model")
    rows = _too_long_problems(RunPaths("tiny", "cot", "easy"))
    with pytest.raises(ValueError, match=r"distill .*: 1 problem\(s\) too long for the engine.*easy-huge"):
        next(engine.answer_problems(_cfg(), tok, rows, "cot", 16, 8, "distill", progress=False))


# --- 8. a local model folder that does not exist --------------------------------------------


@pytest.mark.parametrize(
    "where, stage",
    [
        (lambda rp: rp.merged("draft"), "stage 05_merge of run cot_easy"),
        (lambda rp: rp.adapter("target"), "stage 02_train_target of run cot_easy"),
        (lambda rp: rp.adapter("draft"), "stage 04_train_draft of run cot_easy"),
        (lambda rp: rp.base_model("target"), "stage 00_base_models"),
    ],
)
def test_a_missing_model_folder_names_itself_and_the_stage_that_makes_it(home, where, stage):
    path = str(where(RunPaths("tiny", "cot", "easy")))
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"model folder {path} does not exist: {stage} (profile tiny)")
    ):
        models.load_tokenizer(path)


def test_a_missing_path_elsewhere_is_named_and_a_hub_id_is_left_to_the_hub(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"model folder {tmp_path / 'gone'} does not exist; check models")
    ):
        models.load_tokenizer(str(tmp_path / "gone"))
    models.require_model("Qwen/Qwen3-0.6B")  # a hub id: nothing to check here


def test_an_engine_on_a_deleted_merged_draft_says_which_stage_makes_it(home, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))  # a stand-in: no real engine
    rp = RunPaths("tiny", "cot", "easy")
    target = _chat_tokenizer(tmp_path / "target")
    spec = engine.speculative_config(_cfg(), str(rp.merged("draft")))
    with pytest.raises(FileNotFoundError, match=r"merged/draft/cot_easy does not exist: stage 05_merge"):
        engine.start(_cfg(), target, speculative=spec)


def test_a_merge_without_its_adapter_says_which_stage_makes_it(home, tmp_path):
    rp = RunPaths("tiny", "cot", "easy")
    base = _chat_tokenizer(tmp_path / "base")
    with pytest.raises(FileNotFoundError, match=r"adapters/target/cot_easy does not exist: stage 02_train_target"):
        merge.merge_adapter(_cfg(), base, rp.adapter("target"), rp.merged("target"), ["w1"])


# --- 2 and 9. training: a non-finite loss stops it; W&B only from params --------------------


def test_a_non_finite_logged_loss_stops_training_naming_role_step_and_loss():
    from transformers import TrainerControl, TrainerState

    callback, state = train.stop_on_non_finite_loss("draft"), TrainerState()
    state.global_step = 15
    args = types.SimpleNamespace(learning_rate=1e3)
    callback.on_log(args, state, TrainerControl(), logs={"loss": 2.5, "learning_rate": 1e3})  # finite: goes on
    for key, value in (("loss", float("nan")), ("eval_loss", float("inf")), ("train_loss", float("-inf"))):
        with pytest.raises(FloatingPointError, match=rf"draft training diverged: {key} = {value} at step 15"):
            callback.on_log(args, state, TrainerControl(), logs={key: value})


def test_reporting_comes_from_params_never_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    args = train._sft_config(_cfg(), "target", "trl", tmp_path, -1, has_val=False)
    assert args.report_to == []  # the key alone turns nothing on
    assert args.logging_nan_inf_filter is False  # a NaN step loss is logged as NaN, not averaged away
    assert params.resolve("full", "cot", "easy").train.report_to == "wandb"  # as the study did


def test_wandb_asked_for_but_not_installed_names_the_parameter(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(RuntimeError, match="train.report_to=wandb, but wandb is not installed"):
        train.check_reporting(params.resolve("full", "cot", "easy"))
    train.check_reporting(_cfg())  # none: nothing needed


@pytest.mark.slow
def test_training_on_a_nan_loss_stops_before_saving_an_adapter(home, tmp_path):
    """A base model with one NaN weight: every loss is NaN. The Trainer used to log its running
    mean instead (0.0 here), train to the end and save the adapter as if all were well."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    base = tmp_path / "base"
    _chat_tokenizer(base)
    config = Qwen3Config(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=2,
    )
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        model.model.norm.weight[0] = float("nan")
    model.save_pretrained(base)
    rows = [{"id": f"r{i}", "question": f"w{i} w{i + 1}", "solution": f"w{i + 2} #### {i}"} for i in range(8)]
    cfg = _cfg(
        **{
            "device": "cpu",
            "train.logging_steps": 1,
            "train.val_fraction": 0.0,
            "train.target": {"epochs": 1, "batch_size": 4},
        }
    )
    adapter = RunPaths("tiny", "cot", "easy").adapter("target")
    with pytest.raises(FloatingPointError, match=r"target training diverged: loss = nan at step 1"):
        train.train_lora(cfg, "target", str(base), rows, adapter, tmp_path / "ckpt")
    assert not adapter.exists()


# --- 10. CLI verbs end in one line and a non-zero exit --------------------------------------


def test_compare_with_a_mistyped_profile_is_one_line_and_exit_2(home, capsys):
    from lib.__main__ import main

    assert main(["compare", "tinyy", "tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: 'tinyy' is neither a profile") and "\n" not in err


def test_render_on_an_unwritable_home_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys):
    from lib.__main__ import main

    (tmp_path / "file").write_text("")  # a home below a file: unwritable even for root
    monkeypatch.setenv("WORKBOOK_HOME", str(tmp_path / "file" / "home"))
    assert main(["render", "--profile", "tiny"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(tmp_path / "file") in err and "\n" not in err


# --- 11. make clean-runs ----------------------------------------------------------------------


@pytest.fixture
def make_tree(tmp_path):
    """The Makefile and the profile names in a scratch tree with data/ and reports/ in it: a
    clean-runs that goes wrong removes only scratch files."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    tree = tmp_path / "repo"
    (tree / "params").mkdir(parents=True)
    shutil.copy(REPO / "Makefile", tree)
    shutil.copytree(REPO / "params" / "profiles", tree / "params" / "profiles")
    for folder in ("data/embedded", "data/tiny", "reports/tiny", "home/data/tiny", "home/reports/tiny"):
        (tree / folder).mkdir(parents=True)
        (tree / folder / "kept").write_text("")
    return tree


def _clean(tree, profile, home=None):
    env = {k: v for k, v in os.environ.items() if k not in ("WORKBOOK_HOME", "MAKEFLAGS", "MFLAGS")}
    if home:
        env["WORKBOOK_HOME"] = str(home)
    return subprocess.run(
        ["make", "-s", "clean-runs", f"PROFILE={profile}"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("profile", ["", "..", "../..", "tiny/..", "tiny/../..", ".", "tiny full", "nope"])
def test_clean_runs_refuses_anything_but_a_profile_name(make_tree, profile):
    out = _clean(make_tree, profile)
    assert out.returncode != 0 and "is not a profile; choose one of: full gpu-small gpu-solve seed tiny" in out.stderr
    assert all((make_tree / f / "kept").exists() for f in ("data/embedded", "data/tiny", "reports/tiny"))


def test_clean_runs_cleans_the_workbook_home(make_tree):
    out = _clean(make_tree, "tiny", home=make_tree / "home")
    assert out.returncode == 0, out.stderr
    assert (
        not (make_tree / "home" / "data" / "tiny").exists() and not (make_tree / "home" / "reports" / "tiny").exists()
    )
    assert (make_tree / "data" / "tiny" / "kept").exists() and (make_tree / "data" / "embedded" / "kept").exists()
    out = _clean(make_tree, "tiny")  # no WORKBOOK_HOME: the repository's own
    assert out.returncode == 0 and not (make_tree / "data" / "tiny").exists()
    assert (make_tree / "data" / "embedded" / "kept").exists()


# --- 3. checks written so that NaN and infinities fail them -----------------------------------


@pytest.mark.parametrize("tokens", ["nan", "inf", "-1", "2.5"])
def test_an_external_row_with_a_non_finite_token_count_is_skipped_with_its_line(tmp_path, tokens):
    path = tmp_path / "cod_easy.csv"
    rows = [f"cod_easy,baseline,What is {i} plus 1?,{i + 1},#### {i + 1},{tokens if i == 2 else 5}" for i in range(4)]
    path.write_text("\n".join([",".join(externals.WORKBOOK_COLUMNS), *rows]) + "\n")
    samples, bad, info = externals.read_external(str(path))
    assert (len(samples), info["skipped"]) == (3, 1)
    assert bad[0]["line"] == 4 and bad[0]["reason"] == f"tokens {tokens!r} is not a non-negative integer"


def test_a_broken_tokenizer_file_is_named_with_the_stage_that_writes_it(home):
    folder = RunPaths("tiny", "cot", "easy").base_model("target")
    folder.mkdir(parents=True)
    (folder / "tokenizer.json").write_bytes(b'{"version": "1.0", "trunc')  # cut short
    with pytest.raises(
        ValueError,
        match=re.escape(f"{folder / 'tokenizer.json'}: not a readable tokenizer (")
        + r".*\); stage 00_base_models \(profile tiny\) makes it",
    ):
        models.token_counter(str(folder))
