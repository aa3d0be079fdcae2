"""Done means made from the current everything (issue 31): a stage is current only if its
own settings, notebook, input files and outputs are as recorded and every stage it reads from
is current and is the very result it was made from — transitively, down to the base models.
The runner refuses a partial run on stale results, naming them; the index and the analysis
say "outdated" and present no such number as current; resumable files resume only under the
settings they were made with."""

import json
import os
import subprocess
import sys

import pytest

import lineage
from lib import analysis, base_pair, data, distill, fingerprints, io, params, paths, record, reports, runner

RUN = ("cot", "easy")


@pytest.fixture
def run(home):
    cfg = params.resolve("tiny", *RUN)
    rp = paths.RunPaths("tiny", *RUN)
    lineage.chain(rp, cfg)
    assert record.why_not_done(rp, "06_benchmark", cfg) is None
    return rp, cfg


def _row(page: str, run: str) -> str:
    start = page.index(f'<tr id="run-{run}">')
    return page[start : page.index("</tr>", start)]


# --- 1: earlier stages are checked against the current settings -----------------------------------
def test_a_partial_run_on_stale_earlier_stages_refuses_naming_them(run, monkeypatch):
    rp, cfg = run
    calls = []
    monkeypatch.setattr(runner, "execute", lineage.fake_execute(calls))
    result = runner.run_grid("tiny", ["cot"], ["easy"], ["06_benchmark"], {"train.target.lr": 2e-4})
    [outcome] = result.outcomes
    assert outcome.status == "failed" and calls == []
    assert "earlier stage(s) not current: 00_base_models" not in outcome.error
    assert (
        "02_train_target (parameters changed (train.target.lr: 0.003 -> 0.0002)), and 03_distill, 04_train_draft, "
        "05_merge after it" in outcome.error
    )
    assert "Run them first" in outcome.error
    # the benchmark's own record is untouched: it still describes what it was made from
    assert record.why_not_done(rp, "06_benchmark", cfg) is None
    # the whole chain with the same setting runs every stale stage, in order
    result = runner.run_grid("tiny", ["cot"], ["easy"], None, {"train.target.lr": 2e-4})
    assert calls == ["02_train_target", "03_distill", "04_train_draft", "05_merge", "06_benchmark", "07_analysis"], (
        result.summary()
    )


def test_a_retrained_target_makes_every_later_stage_stale(run):
    rp, cfg = run
    lineage._weights(rp.adapter("target"), "adapter_model.safetensors", value=2.0)  # another training
    record.save(rp, "02_train_target", {}, cfg)
    assert record.why_not_done(rp, "02_train_target", cfg) is None
    assert (
        record.why_not_done(rp, "03_distill", cfg)
        == "earlier stage 02_train_target ran again since, with another result"
    )
    why = record.why_not_done(rp, "06_benchmark", cfg)
    assert why.startswith("earlier stage 00_base_models") is False and "02_train_target ran again" in why
    assert "not run on results that are not current" not in why
    with pytest.raises(record.StaleUpstream, match="03_distill"):
        record.require_current_upstream(rp, "06_benchmark", cfg)


def test_a_stage_record_made_before_fingerprints_runs_again(run):
    rp, cfg = run
    made = record.load(rp, "03_distill")
    del made["settings"]["outputs"]
    io.write_json(rp.figures("03_distill"), made)
    assert "no content fingerprints" in record.why_not_done(rp, "03_distill", cfg)
    assert "03_distill is not current (its record carries no content fingerprints" in record.why_not_done(
        rp, "06_benchmark", cfg
    )


# --- 4: edited or damaged inputs and outputs do not pass as done ----------------------------------
def test_an_edited_test_split_makes_01_and_06_stale(run):
    rp, cfg = run
    rows = io.read_jsonl(rp.test_problems).rows
    rows[0]["answer"] = "999"
    io.write_jsonl(rp.test_problems, rows)
    assert "its output(s) changed since it was recorded: data/tiny/problems/easy/test.jsonl" in record.why_not_done(
        rp, "01_generate_data", cfg
    )
    assert "problems/easy/test.jsonl" in record.why_not_done(rp, "06_benchmark", cfg)  # the base pair read it too


def test_an_emptied_split_is_not_done(run):
    rp, cfg = run
    rp.test_problems.write_text("")
    assert record.why_not_done(rp, "01_generate_data", cfg) == f"{rp.test_problems} holds no problems"


def test_a_teacher_file_cut_short_is_not_done(run):
    rp, cfg = run
    rows = io.read_jsonl(rp.teacher_output).rows
    io.write_jsonl(rp.teacher_output, rows[:-1])
    assert "changed since it was recorded: data/tiny/teacher/cot_easy.jsonl" in record.why_not_done(
        rp, "01_generate_data", cfg
    )


def test_a_truncated_adapter_is_not_done(run):
    rp, cfg = run
    weights = rp.adapter("target") / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-5])
    assert "not a whole safetensors" in record.why_not_done(
        rp, "02_train_target", cfg
    ) or "its header says" in record.why_not_done(rp, "02_train_target", cfg)
    assert "02_train_target" in record.why_not_done(rp, "06_benchmark", cfg)


def test_a_deleted_merged_draft_is_not_done(run):
    rp, cfg = run
    import shutil

    shutil.rmtree(rp.merged("draft"))
    assert "merged draft missing" in record.why_not_done(rp, "05_merge", cfg)
    assert "05_merge" in record.why_not_done(rp, "06_benchmark", cfg)


def test_merges_deleted_after_their_benchmark_stay_done_while_it_stands(home):
    cfg = params.resolve("tiny", *RUN, {"merge.delete_after_benchmark": True})
    rp = paths.RunPaths("tiny", *RUN)
    lineage.chain(rp, cfg)
    import shutil

    for role in ("target", "draft"):
        shutil.rmtree(rp.merged(role))
    assert record.why_not_done(rp, "05_merge", cfg) is None
    assert record.why_not_done(rp, "06_benchmark", cfg) is None  # the benchmark stands
    why = record.stale_upstream(rp, "06_benchmark", cfg)  # but --redo of it would need them
    assert "05_merge (merged target, draft deleted after the last benchmark" in why
    # once the benchmark must run again, the merge must too (its checkpoints are gone)
    k3 = params.resolve("tiny", *RUN, {"merge.delete_after_benchmark": True, "benchmark.k": 3})
    assert "merged target, draft missing" in record.why_not_done(rp, "05_merge", k3)


@pytest.mark.parametrize(
    "content, expected",
    [
        ({}, "no baseline and speculative passes"),
        ([1, 2], "not a JSON object"),
        ({"passes": {"baseline": {}, "speculative": {}}}, "no comparison"),
    ],
)
def test_metrics_of_the_wrong_shape_are_not_done_anywhere(run, content, expected):
    rp, cfg = run
    io.write_json(rp.metrics_json, content)
    assert expected in record.why_not_done(rp, "06_benchmark", cfg)
    record.record_status("tiny", rp.name, "06_benchmark", status="cached", pid=os.getpid())
    page = reports.write_index("tiny", [RUN], lambda s: ("06_benchmark",), []).read_text()
    assert 'class="st incomplete"' in _row(page, rp.name)
    frame = analysis.collect("tiny", n_boot=10)
    row = frame[frame["run"] == rp.name].iloc[0]
    assert row["state"] != "measured"


def test_a_figures_file_of_the_wrong_shape_is_not_taken_as_a_record(run):
    rp, cfg = run
    rp.figures("05_merge").write_text("[1, 2, 3]")
    assert "not a stage record" in record.why_not_done(rp, "05_merge", cfg)
    assert "05_merge" in record.why_not_done(rp, "06_benchmark", cfg)
    assert "not a stage record" in record.current(rp, "05_merge")


# --- 1, 6: the index and the analysis judge the same way -----------------------------------------
def test_index_and_analysis_call_a_run_on_a_stale_chain_outdated(run):
    rp, cfg = run
    for stage in ("01_generate_data", "02_train_target", "03_distill", "04_train_draft", "05_merge", "06_benchmark"):
        record.record_status("tiny", rp.name, stage, status="finished", pid=os.getpid())
    assert analysis.collect("tiny", n_boot=10).set_index("run").loc[rp.name, "state"] == "measured"
    # a benchmark recorded with an override its chain was not trained with (plain papermill -f)
    record.save(rp, "06_benchmark", {}, params.resolve("tiny", *RUN, {"train.target.lr": 2e-4}))
    page = reports.write_index("tiny", [RUN], lambda s: ("02_train_target", "06_benchmark"), []).read_text()
    row = _row(page, rp.name)
    assert 'class="st outdated"' in row and "train.target.lr" in row and 'class="num stale"' in row
    state = analysis.collect("tiny", n_boot=10).set_index("run").loc[rp.name]
    assert state["state"] == "outdated" and "02_train_target" in state["error"]


def test_a_benchmark_killed_mid_run_is_not_measured(run):
    rp, cfg = run
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record.record_status("tiny", rp.name, "06_benchmark", status="running", pid=dead.pid, started=0)
    row = analysis.collect("tiny", n_boot=10).set_index("run").loc[rp.name]
    assert row["state"] == "interrupted" and "its process is gone" in row["error"]


# --- 2: the base pair is rebuilt when its settings change, the old one kept until then -----------
def test_the_base_pair_is_rebuilt_when_its_settings_change(tmp_path, monkeypatch):
    built = []

    def fake_build(folder, spec, texts, pairs, seed, device, dtype, made_with):
        built.append(spec["target"]["hidden_size"])
        if spec["target"]["hidden_size"] == 999:
            raise RuntimeError("pretraining failed")
        (folder / "target").mkdir(parents=True)
        (folder / "target" / "config.json").write_text(json.dumps({"hidden_size": spec["target"]["hidden_size"]}))
        summary = {"roles": {}, "made_with": made_with}
        io.write_json(folder / "summary.json", summary)
        return summary

    monkeypatch.setattr(base_pair, "_build", fake_build)
    spec = params.resolve("tiny", "base", "easy")["models"]["base_pair"]
    base = tmp_path / "base"
    base_pair.build(base, spec, ["a"], [("q", "a")], 42)
    base_pair.build(base, spec, ["a"], [("q", "a")], 42)
    assert built == [128]  # the same settings and texts: kept
    wider = {**spec, "target": {**spec["target"], "hidden_size": 256}}
    base_pair.build(base, wider, ["a"], [("q", "a")], 42)
    assert built == [128, 256] and json.loads((base / "target" / "config.json").read_text())["hidden_size"] == 256
    base_pair.build(base, wider, ["a", "b"], [("q", "a")], 42)  # another corpus
    assert built == [128, 256, 256]
    broken = {**spec, "target": {**spec["target"], "hidden_size": 999}}
    with pytest.raises(RuntimeError, match="pretraining failed"):
        base_pair.build(base, broken, ["a"], [("q", "a")], 42)
    assert json.loads((base / "target" / "config.json").read_text())["hidden_size"] == 256  # the old pair stands


# --- 3: resume only into identical settings -----------------------------------------------------
def test_distilled_answers_resume_only_under_their_settings(run):
    rp, cfg = run
    assert len(distill._check_source(cfg, rp)) == 1  # answers with no settings beside them: set aside
    lineage.make_outputs(rp, "03_distill")
    assert distill._check_source(cfg, rp) == []  # the same settings resume
    assert distill._check_source(params.resolve("tiny", *RUN, {"distill.gate": 0.5}), rp) == []  # a gate judges only
    moved = distill._check_source(params.resolve("tiny", *RUN, {"engine.max_model_len": 200}), rp)
    assert len(moved) == 1 and not rp.distilled.exists() and len(io.read_jsonl(moved[0]).rows) == 3
    lineage.make_outputs(rp, "03_distill")
    lineage._weights(rp.adapter("target"), "adapter_model.safetensors", value=3.0)  # retrained
    assert len(distill._check_source(params.resolve("tiny", *RUN, {"engine.max_model_len": 200}), rp)) == 1


def test_teacher_rows_resume_only_under_their_settings_and_problems(home):
    cfg = params.resolve("tiny", *RUN)
    rp = paths.RunPaths("tiny", *RUN)
    problems = io.read_jsonl(paths.EMBEDDED / "easy.jsonl").rows[:6]
    io.write_jsonl(rp.train_problems, problems)
    assert data.generate_solutions(cfg, rp, progress=False)["requested"] == 6
    again = data.generate_solutions(cfg, rp, progress=False)
    assert again["requested"] == 0 and again["set_aside"] == []
    # one problem's text changed under its id: that row alone is set aside and asked again
    problems[2]["question"] += " Exactly."
    io.write_jsonl(rp.train_problems, problems)
    changed = data.generate_solutions(cfg, rp, progress=False)
    assert changed["requested"] == 1 and len(changed["set_aside"]) == 1 and "(1 rows)" in changed["set_aside"][0]
    # another teacher setting: every row set aside (kept), all asked again
    other = params.resolve("tiny", *RUN, {"data.keep_wrong": True})
    moved = data.generate_solutions(other, rp, progress=False)
    assert moved["requested"] == 6 and moved["set_aside"]
    assert all(os.path.exists(p) for p in moved["set_aside"])


def test_resume_guard_sets_aside_files_of_an_older_workbook(tmp_path):
    path = tmp_path / "d.jsonl"
    io.write_jsonl(path, [{"id": "a"}])
    moved = fingerprints.resume_guard(path, {"x": 1})  # no settings beside it: made by an older workbook
    assert len(moved) == 1 and not path.exists()
    io.write_jsonl(path, [{"id": "a"}])
    assert fingerprints.resume_guard(path, {"x": 1}) == []
    assert fingerprints.resume_guard(path, {"x": float("nan")})  # NaN is not equal to itself: set aside


def test_a_cached_file_hash_follows_an_edit(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 10)
    first = fingerprints.of_file(path)
    path.write_bytes(b"b" * 10)  # same size; mtime or inode moves
    os.utime(path, ns=(1, 1))
    assert fingerprints.of_file(path) != first


def test_every_parameter_section_counts_for_some_stage_or_is_named_as_not_a_result():
    """A section no stage's fingerprint holds re-runs nothing when changed: `prompt` was one."""
    from lib import stages

    sections = set(params.resolve("tiny", "cot", "easy")) - {"profile", "style", "scenario", "replicate"}
    counted = {s for secs in stages.STAGE_SECTIONS.values() for s in secs}
    assert sections <= counted | set(stages.NOT_RESULTS), sections - counted - set(stages.NOT_RESULTS)
    assert not counted & set(stages.NOT_RESULTS)


def test_a_changed_prompt_setting_makes_the_data_and_everything_after_it_stale(run):
    rp, cfg = run
    thinking = params.resolve("tiny", *RUN, {"prompt.enable_thinking": {"base": False, "cot": True, "cod": False}})
    assert "prompt.enable_thinking.cot" in record.why_not_done(rp, "01_generate_data", thinking)
    assert record.why_not_done(rp.profile, "00_base_models", lineage.profile_cfg()) is None
    assert "prompt.enable_thinking.cot" in record.why_not_done(rp, "06_benchmark", thinking)


def test_a_teacher_setting_does_not_rebuild_the_base_models(run):
    rp, cfg = run
    assert (
        record.why_not_done(rp.profile, "00_base_models", lineage.profile_cfg(overrides={"data.keep_wrong": True}))
        is None
    )


def test_rows_edited_by_hand_are_not_resumed(home):
    """A teacher's answer changed to another final answer, a distilled answer marked right: each row
    carries its own hash; an edited one is set aside (kept) and made again, never adopted."""
    cfg = params.resolve("tiny", *RUN)
    rp = paths.RunPaths("tiny", *RUN)
    problems = io.read_jsonl(paths.EMBEDDED / "easy.jsonl").rows[:4]
    io.write_jsonl(rp.train_problems, problems)
    data.generate_solutions(cfg, rp, progress=False)
    rows = io.read_jsonl(rp.teacher_output).rows
    rows[0]["solution"] = rows[0]["solution"].rsplit("####", 1)[0] + "#### 999"
    io.write_jsonl(rp.teacher_output, rows)
    again = data.generate_solutions(cfg, rp, progress=False)
    assert again["requested"] == 1 and any("edited" in s and "(1 rows)" in s for s in again["set_aside"])
    assert all(
        fingerprints.intact(r) and "#### 999" not in r["solution"] for r in io.read_jsonl(rp.teacher_output).rows
    )
    kept = [fingerprints.sealed({"id": p["id"], "solution": "x", "correct": False}) for p in problems]
    flipped = {**kept[0], "correct": True}
    assert fingerprints.intact(kept[0]) and not fingerprints.intact(flipped)
    io.write_jsonl(rp.distilled, [flipped] + kept[1:])
    assert io.set_aside_rows(rp.distilled, fingerprints.intact, "edited").endswith("(1 rows)")
    assert [r["id"] for r in io.read_jsonl(rp.distilled).rows] == [p["id"] for p in problems[1:]]


# --- found by the attack (docs/reliability.md, cases 79-99) ---------------------------------------
def test_two_set_flags_add_up(home, monkeypatch):
    seen = {}
    monkeypatch.setattr(runner, "run_grid", lambda *a, **k: seen.update(overrides=a[4]) or runner.GridResult())
    from lib import __main__ as cli

    assert (
        cli.main(
            ["run", "--set", "train.target.lr=2e-4", "--set", "benchmark.k=3", "--styles", "cot", "--styles", "cod"]
        )
        == 0
    )
    assert seen["overrides"] == {"train.target.lr": "2e-4", "benchmark.k": 3}


def test_a_layer_giving_a_key_twice_or_null_is_refused(params_copy):
    (params_copy / "styles" / "cot.yaml").write_text("benchmark: {k: 3}\nbenchmark: {k: 5}\n")
    with pytest.raises(params.ParamsError, match=r"cot.yaml: line 2 column 1: .*key 'benchmark' given twice"):
        params.resolve("tiny", "cot", "easy")
    with pytest.raises(params.ParamsError, match="'train.target.lr' must be float, got None"):
        params.resolve("tiny", "cod", "easy", {"train.target.lr": None})


def test_a_relative_home_is_the_same_folder_in_every_process(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORKBOOK_HOME", "rel")
    assert paths.home() == tmp_path / "rel"
    runner.use_this_checkout()  # what a kernel (cwd notebooks/) is given
    assert os.environ["WORKBOOK_HOME"] == str(tmp_path / "rel")


def test_a_repository_file_is_named_by_its_place_in_the_repository(home):
    names = fingerprints.of_paths([paths.EMBEDDED / "easy.jsonl", home / "x.json"], paths.home())
    assert set(names) == {"repo:data/embedded/easy.jsonl", "x.json"} and names["x.json"] is None


def test_a_cached_stage_sets_a_stale_running_status_right(run, monkeypatch):
    rp, cfg = run
    record.record_status("tiny", rp.name, "06_benchmark", status="running", pid=1, started=0)  # a reused PID
    monkeypatch.setattr(runner, "execute", lineage.fake_execute())
    [outcome] = runner.run_grid("tiny", ["cot"], ["easy"], ["06_benchmark"]).outcomes
    assert outcome.status == "cached"
    assert record.load_status("tiny")[rp.name]["06_benchmark"]["status"] == "cached"
