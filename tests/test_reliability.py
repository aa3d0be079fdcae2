"""Nothing lost, nothing stale, nothing silent (issue 13): kills, two runners, full disks,
bad input. Stage notebooks are replaced by small stand-ins where a test needs a stage that
runs long; the runner, papermill, the lock, the status store and the index are the real ones."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lineage
from lib import data, io, params, paths, record, reports, runner, splits, stages, train

REPO = Path(__file__).resolve().parent.parent


# --- stand-in notebooks --------------------------------------------------------------------------
def _stand_in(stage: str, body: str) -> dict:
    """A notebook with the runner's parameters cell, `body`, then the stage's usual record."""
    cells = [
        ("profile: str = 'tiny'\nstyle: str = 'cot'\nscenario: str = 'easy'\noverrides: dict = {}", ["parameters"]),
        (
            "from lib import params, paths, record\n"
            "cfg = params.resolve(profile, style, scenario, overrides)\nrp = paths.RunPaths(profile, style, scenario)",
            [],
        ),
        (body, []),
        (f"record.save(rp, {stage!r}, {{'ok': True}}, cfg)", []),
    ]
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [
            {
                "cell_type": "code",
                "id": str(i),
                "metadata": {"tags": tags},
                "execution_count": None,
                "outputs": [],
                "source": src,
            }
            for i, (src, tags) in enumerate(cells)
        ],
    }


def _repo_copy(tmp_path: Path, body: str, stage: str = "01_generate_data") -> Path:
    """A second checkout (lib, notebooks, params) whose `stage` notebook runs `body`."""
    copy = tmp_path / "clone"
    for part in ("lib", "notebooks", "params"):
        shutil.copytree(REPO / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "notebooks" / f"{stage}.ipynb").write_text(json.dumps(_stand_in(stage, body)))
    return copy


def _base_models(home: Path) -> None:
    """The profile's base models, recorded: stage 01 runs only on a current 00."""
    old = os.environ.get("WORKBOOK_HOME")
    os.environ["WORKBOOK_HOME"] = str(home)
    try:
        lineage.stage_done("tiny", "00_base_models", lineage.profile_cfg())
    finally:
        os.environ.pop("WORKBOOK_HOME") if old is None else os.environ.__setitem__("WORKBOOK_HOME", old)


def _runner(copy: Path, home: Path, *args: str) -> subprocess.Popen:
    if not (home / "data" / "tiny" / "runs" / "_profile" / "figures" / "00_base_models.json").exists():
        _base_models(home)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WORKBOOK_PARAMS")}
    env["WORKBOOK_HOME"] = str(home)
    cmd = [
        sys.executable,
        "-m",
        "lib",
        "run",
        "--profile",
        "tiny",
        "--styles",
        "cot",
        "--scenarios",
        "easy",
        "--stages",
        "01_generate_data",
        *args,
    ]
    # SIGINT back to its default: a shell starts background jobs with it ignored, Python then
    # installs no KeyboardInterrupt handler, and the Ctrl-C test would wait out its timeout.
    return subprocess.Popen(
        cmd,
        cwd=copy,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _stopped(proc: subprocess.Popen, sig, said: str, home: Path) -> str:
    """Stop a runner with `sig`: it must end in its summary naming the interrupted stage (the last
    line; the runner itself prints no traceback, the kernel shut down mid-cell may log its own
    socket error), exit 130, and leave the stage recorded interrupted. Its output."""
    try:
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    assert out.rstrip().endswith(f"INTERRUPTED cot_easy / 01_generate_data: stopped by {said}; re-run to resume")
    status = json.loads((home / "reports" / "tiny" / "status.json").read_text())["cot_easy"]["01_generate_data"]
    assert status["status"] == "interrupted"
    return out


def _wait_for(path: Path, seconds: float = 120) -> None:
    end = time.time() + seconds
    while not path.exists():
        assert time.time() < end, f"{path} never appeared"
        time.sleep(0.2)


# Like vLLM in a kernel, the stand-in ignores SIGINT and SIGTERM: a polite shutdown request
# (what nbclient's own Ctrl-C handler sends) does not stop it.
SLOW = (
    "import os, signal, time, pathlib, lib\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "pathlib.Path(os.environ['WORKBOOK_HOME'], 'started').write_text(lib.__file__)\n"
    "time.sleep(float(os.environ.get('STAND_IN_SLEEP', '0')))"
)


# --- 6: a notebook imports the lib of the checkout that runs it; 1: one writer per run; 5: Ctrl-C ---
def _slow_runner(tmp_path: Path, monkeypatch, before=None) -> tuple[subprocess.Popen, Path, Path]:
    """A runner in a second checkout whose stage 01 sleeps (ignoring SIGINT and SIGTERM), once
    its kernel has started: (process, home, checkout). `before(home)` runs before it starts."""
    home = tmp_path / "home"
    copy = _repo_copy(tmp_path, SLOW)
    monkeypatch.setenv("STAND_IN_SLEEP", "600")
    if before:
        before(home)
    proc = _runner(copy, home)
    try:
        _wait_for(home / "started")
    except BaseException:
        proc.kill()
        proc.communicate(timeout=60)
        raise
    return proc, home, copy


@pytest.mark.slow
def test_second_checkout_second_runner_and_ctrl_c(tmp_path, monkeypatch):
    old_html = Path("reports") / "tiny"

    def old_report(home):
        stale = home / old_html / "cot_easy" / "01_generate_data.html"
        stale.parent.mkdir(parents=True)
        stale.write_text("OLD REPORT of an earlier run")

    first, home, copy = _slow_runner(tmp_path, monkeypatch, old_report)
    stale = home / old_html / "cot_easy" / "01_generate_data.html"
    try:
        # 6: the kernel imported the clone's lib, not the one an editable install points at
        assert (home / "started").read_text().startswith(str(copy / "lib"))
        # 5: while it runs, the status says so, with its PID; no stale HTML beside the partial notebook
        status = json.loads((home / old_html / "status.json").read_text())["cot_easy"]["01_generate_data"]
        assert status["status"] == "running" and status["pid"] == first.pid and status["started"]
        assert not stale.exists()
        # 1: a second runner on the same run stops at once, naming the holder
        second = _runner(copy, home)
        out2, _ = second.communicate(timeout=120)
        assert second.returncode == 1, out2
        assert f"LOCKED cot_easy / 01_generate_data: run cot_easy is being written by PID {first.pid}" in out2
    finally:
        # 5: Ctrl-C ends in the runner's summary naming the stage, exit 130, no traceback
        out1 = _stopped(first, signal.SIGINT, "Ctrl-C (SIGINT)", home)
    assert "lib/runner.py" not in out1 and "Task exception was never retrieved" not in out1
    assert "OLD REPORT" not in (stale.read_text() if stale.exists() else "")


@pytest.mark.slow
def test_sigterm_ends_like_ctrl_c(tmp_path, monkeypatch):
    """A scheduler's cancel or `kill`: the stage recorded interrupted, the summary printed, exit
    130 (before: the runner died at once, no summary, the status left "running")."""
    proc, home, _ = _slow_runner(tmp_path, monkeypatch)
    _stopped(proc, signal.SIGTERM, "SIGTERM", home)


@pytest.mark.slow
def test_sigterm_stops_runs_placed_side_by_side(tmp_path, monkeypatch):
    """`--jobs 2`: the runner passes a SIGINT to each placed run, each records its stage
    interrupted, and the summary names both, exit 130 (before: "interrupted (SIGTERM) outside a
    stage", no summary)."""
    home = tmp_path / "home"
    copy = _repo_copy(tmp_path, SLOW)
    monkeypatch.setenv("STAND_IN_SLEEP", "600")
    proc = _runner(copy, home, "--styles", "cod", "--jobs", "2")
    status = home / "reports" / "tiny" / "status.json"
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (
            status.exists()
            and all(
                json.loads(status.read_text()).get(run, {}).get("01_generate_data", {}).get("status") == "running"
                for run in ("cot_easy", "cod_easy")
            )
        ):
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    for run in ("cot_easy", "cod_easy"):
        assert f"INTERRUPTED {run} / 01_generate_data: stopped by" in out, out
        assert json.loads(status.read_text())[run]["01_generate_data"]["status"] == "interrupted"
    assert "outside a stage" not in out


@pytest.mark.slow
def test_a_killed_runner_leaves_no_running_stage_in_the_index(tmp_path, monkeypatch):
    """kill -9: the status still says "running", but the index checks the PID behind it; the
    lock dies with the process, so the next runner runs the stage again (it is not done)."""
    proc, home, copy = _slow_runner(tmp_path, monkeypatch)
    proc.kill()
    proc.communicate(timeout=60)
    monkeypatch.setenv("WORKBOOK_HOME", str(home))
    page = reports.write_index("tiny").read_text()
    row = page[page.index('<tr id="run-cot_easy">') :]
    row = row[: row.index("</tr>")]
    assert "interrupted" in row and "running" not in row.replace("interrupted", "")
    monkeypatch.setenv("STAND_IN_SLEEP", "0")
    again = _runner(copy, home)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0 and "01_generate_data ... (not run yet)" in out and "1 finished" in out, out


# --- 2: done means complete and made with the current params, notebook and earlier stages -------
def _stamp(rp, stage, cfg, **figures):
    return record.save(rp, stage, figures, cfg)


def test_changed_params_notebook_or_upstream_make_a_stage_not_done(home, monkeypatch, tmp_path):
    cfg = params.resolve("tiny", "cot", "easy")
    rp = paths.RunPaths("tiny", "cot", "easy")
    lineage.chain(rp, cfg)
    assert record.why_not_done(rp, "06_benchmark", cfg) is None
    k3 = params.resolve("tiny", "cot", "easy", {"benchmark.k": 3})
    assert "parameters changed (benchmark.k: 5 -> 3)" in record.why_not_done(rp, "06_benchmark", k3)
    # a key added since (here: dropped from the record) at its neutral value re-runs nothing; at another it does
    made_before = io.read_json(record._path(rp, "06_benchmark"))
    del made_before["settings"]["params"]["benchmark.warmup_repetitions"]
    io.write_json(record._path(rp, "06_benchmark"), made_before)
    assert record.why_not_done(rp, "06_benchmark", cfg) is None
    warm = params.resolve("tiny", "cot", "easy", {"benchmark.warmup_repetitions": 2})
    assert "parameters changed (benchmark.warmup_repetitions: 0 -> 2)" in record.why_not_done(rp, "06_benchmark", warm)
    # an operational setting re-runs nothing
    assert (
        record.why_not_done(rp, "06_benchmark", params.resolve("tiny", "cot", "easy", {"engine.in_process": False}))
        is None
    )
    # an earlier stage's parameter counts too (a changed split invalidates the benchmark)
    assert "data.n_test" in record.why_not_done(
        rp, "06_benchmark", params.resolve("tiny", "cot", "easy", {"data.n_test": 6})
    )
    # an earlier stage that ran again with the same result changes nothing; with another, it does
    record.save(rp, "05_merge", {}, cfg)
    assert record.why_not_done(rp, "06_benchmark", cfg) is None
    lineage._weights(rp.merged("draft"), value=1.0)
    record.save(rp, "05_merge", {}, cfg)
    assert "earlier stage 05_merge ran again since, with another result" in record.why_not_done(rp, "06_benchmark", cfg)
    lineage.stage_done(rp, "06_benchmark", cfg)
    # its outputs: metrics gone
    rp.metrics_json.unlink()
    assert "metrics.json unreadable" in record.why_not_done(rp, "06_benchmark", cfg)
    lineage.make_outputs(rp, "06_benchmark")
    # a changed notebook
    nbs = tmp_path / "nbs"
    shutil.copytree(paths.NOTEBOOKS, nbs)
    monkeypatch.setattr(paths, "NOTEBOOKS", nbs)
    assert record.why_not_done(rp, "06_benchmark", cfg) is None
    nb = json.loads((nbs / "06_benchmark.ipynb").read_text())
    nb["cells"][-1]["source"] = ["print('edited')\n"] + nb["cells"][-1]["source"]
    (nbs / "06_benchmark.ipynb").write_text(json.dumps(nb))
    assert "notebooks/06_benchmark.ipynb changed" in record.why_not_done(rp, "06_benchmark", cfg)


def test_a_record_made_before_lib_changed_a_stage_is_not_done(home, monkeypatch):
    # `engine.async_scheduling: auto` changed meaning with the parameter unchanged: a benchmark
    # recorded before (no revision, read as 1) must run again, saying why.
    cfg = params.resolve("tiny", "cot", "easy")
    rp = paths.RunPaths("tiny", "cot", "easy")
    lineage.chain(rp, cfg)
    figures = record.load(rp, "06_benchmark")
    assert figures["settings"]["revision"] == stages.revision("06_benchmark")[0] >= 2
    assert record.why_not_done(rp, "06_benchmark", cfg) is None
    del figures["settings"]["revision"]
    io.write_json(rp.figures("06_benchmark"), figures)
    why = record.why_not_done(rp, "06_benchmark", cfg)
    now, what = stages.revision("06_benchmark")
    assert why.startswith(f"lib's 06_benchmark changed since it ran (revision 1 -> {now}: {what[:30]}")
    # a stage without a revision of its own is 1, and its old records stay done
    assert record.load(rp, "05_merge")["settings"]["revision"] == 1


def test_a_corrupted_distilled_file_is_not_done(home):
    cfg = params.resolve("tiny", "cot", "easy")
    rp = paths.RunPaths("tiny", "cot", "easy")
    lineage.chain(rp, cfg, upto="03_distill")
    assert record.done(rp, "03_distill", cfg)
    with open(rp.distilled, "a") as fh:
        fh.write('{"id": "p3", "solu')
    assert "line 4: malformed JSON" in record.why_not_done(rp, "03_distill", cfg)
    io.write_jsonl(rp.distilled, [{"id": "p0", "solution": "x"}] * 3)
    assert "repeats 2 id(s)" in record.why_not_done(rp, "03_distill", cfg)


def test_a_failed_stage_is_never_cached(home, monkeypatch):
    """Before: the figures of the last good run stayed after a failed re-run, and the next
    plain run reported the stage "cached" with exit 0."""
    calls = []

    def fake_execute(stage, label, out_dir, parameters, hide_input, fail=False):
        calls.append(stage)
        cfg = params.resolve("tiny", parameters["style"], parameters["scenario"], parameters["overrides"])
        rp = paths.RunPaths("tiny", parameters["style"], parameters["scenario"])
        if len(calls) == 2:
            return runner.Outcome(label, stage, "failed", 1.0, "RuntimeError: boom")
        lineage.stage_done(rp, stage, cfg)  # the problems as 00 left them, a teacher's rows
        return runner.Outcome(label, stage, "finished", 1.0)

    monkeypatch.setattr(runner, "execute", fake_execute)
    lineage.stage_done("tiny", "00_base_models", lineage.profile_cfg())
    run = lambda **kw: [
        o.status for o in runner.run_grid("tiny", ["cot"], ["easy"], ["01_generate_data"], **kw).outcomes
    ]
    assert run() == ["finished"]
    assert run() == ["cached"]
    assert run(redo=True) == ["failed"]
    assert run() == ["finished"]  # not "cached": the failed attempt left no record standing
    assert len(calls) == 3


# --- 1 and 3: append-only files: fresh lines, dedupe by key, repairs reported -------------------
def test_append_starts_on_a_fresh_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}')  # complete last row, newline lost
    io.append_jsonl(path, [{"id": "c"}])
    read = io.read_jsonl(path)
    assert [r["id"] for r in read.rows] == ["a", "b", "c"] and not read.bad


def test_teacher_resume_dedupes_and_reports_repairs(home):
    cfg = params.resolve("tiny", "cot", "easy")
    rp = paths.RunPaths("tiny", "cot", "easy")
    problems = io.read_jsonl(paths.EMBEDDED / "easy.jsonl").rows[:6]
    io.write_jsonl(rp.train_problems, problems)
    first = data.generate_solutions(cfg, rp, progress=False)
    assert first["requested"] == 6
    kept = rp.teacher_output.read_text()
    # a second writer's copy of every row, then a half line from a kill
    rp.teacher_output.write_text(kept + kept + '{"id": "easy-x", "sol')
    again = data.generate_solutions(cfg, rp, progress=False)
    ids = [r["id"] for r in io.read_jsonl(rp.teacher_output).rows]
    assert len(ids) == len(set(ids)) == len(io.read_jsonl(rp.teacher_output).rows)
    assert again["requested"] == 0 and again["n_repairs"] >= 2
    assert any("duplicate id" in r for r in again["repairs"]) and any("malformed" in r for r in again["repairs"])


# --- 4: validate before touching state ---------------------------------------------------------
@pytest.mark.parametrize(
    "override, message",
    [
        ({"data.n_test": -5}, "'data.n_test' = -5 must be >= 0"),
        ({"train.target.batch_size": 0}, "'train.target.batch_size' = 0 must be >= 1"),
        ({"benchmark.k": 0}, "'benchmark.k' must be 'auto' or an integer >= 1, got 0"),
        ({"train.val_fraction": 1.5}, "must be in [0, 1]"),
        ({"benchmark.k_sweep": [2, 0]}, "'benchmark.k_sweep'"),
        ({"distill.max_tokens": 0}, "'distill.max_tokens' = 0"),
    ],
)
def test_out_of_range_params_are_refused_at_resolve(override, message):
    with pytest.raises(params.ParamsError) as err:
        params.resolve("tiny", "cot", "easy", override)
    assert message in str(err.value)


def test_floats_written_as_2e_4_are_accepted(params_copy):
    assert params.resolve("tiny", "cot", "easy", {"train.target.lr": "2e-4"}).train.target.lr == 2e-4
    (params_copy / "styles" / "cot.yaml").write_text("train: {target: {lr: 2e-4}}\n")  # YAML 1.1: a string
    assert params.resolve("tiny", "cot", "easy").train.target.lr == 2e-4


def test_a_refused_split_writes_no_data_fingerprint(home, monkeypatch):
    """Before: the fingerprint was written first, so every correct run after a refused one
    was refused too."""
    rp = paths.RunPaths("tiny", "cot", "easy")

    def refuse(*a, **k):
        raise ValueError("refused")

    monkeypatch.setattr(splits.problems, "split_train_test", refuse)
    with pytest.raises(ValueError, match="refused"):
        splits.ensure_problems(params.resolve("tiny", "cot", "easy", {"data.n_test": 7}), rp)
    assert not (rp.problems_dir / "meta.json").exists()
    monkeypatch.undo()
    monkeypatch.setenv("WORKBOOK_HOME", str(home))
    assert splits.ensure_problems(
        params.resolve("tiny", "cot", "easy", {"data.n_train": 20, "data.n_test": 5}), rp
    ) == {
        "n_train": 20,
        "n_test": 5,
        "shared_dropped": 0,
        "shared_ids": [],
        "duplicates_dropped": 0,
        "duplicate_ids": [],
    }


def test_only_complete_checkpoints_are_resumed(tmp_path):
    for step, files in (
        (10, ("adapter_model.safetensors", "trainer_state.json")),
        (20, ("adapter_model.safetensors",)),  # the disk filled before the state
        (30, ("adapter_model.safetensors", "trainer_state.json")),
    ):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        for name in files:
            (folder / name).write_text("{}")
    (tmp_path / "checkpoint-30" / "trainer_state.json").write_text('{"global_st')  # cut short
    assert train.last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")


# --- 5: status and index tell the truth ---------------------------------------------------------
def test_index_checks_the_files_behind_finished(home):
    record.record_status("tiny", "cot_easy", "01_generate_data", status="finished", pid=os.getpid())
    page = reports.write_index("tiny", [("cot", "easy")], lambda s: ("01_generate_data",), []).read_text()
    row = page[page.index('<tr id="run-cot_easy">') :]
    assert 'class="st incomplete"' in row[: row.index("</tr>")] and "its record is missing" in row


def test_index_marks_runs_with_overrides(home):
    for style, over in (("cot", {"benchmark.k": 3}), ("cod", {})):
        rp = paths.RunPaths("tiny", style, "easy")
        record.save(rp, "06_benchmark", {}, params.resolve("tiny", style, "easy", over))
        record.record_status("tiny", rp.name, "06_benchmark", status="finished")
    page = reports.write_index("tiny", None, lambda s: ("06_benchmark",), []).read_text()

    def row(run):
        start = page.index(f'<tr id="run-{run}">')
        return page[start : page.index("</tr>", start)]

    assert 'class="st overridden"' in row("cot_easy") and "benchmark.k=3" in row("cot_easy")
    assert "overridden" not in row("cod_easy") and "<small>profile</small>" in row("cod_easy")


def test_a_full_disk_ends_in_the_summary_naming_the_stage(home, monkeypatch, capsys):
    import errno

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", "status.json")

    monkeypatch.setattr(runner, "execute", full)
    lineage.stage_done("tiny", "00_base_models", lineage.profile_cfg())
    from lib import __main__ as cli

    assert cli.main(["run", "--styles", "cot", "--scenarios", "easy", "--stages", "01_generate_data"]) == 1
    out = capsys.readouterr()
    assert "FAILED cot_easy / 01_generate_data: OSError: [Errno 28] No space left on device" in out.out
    assert "Traceback" not in out.out + out.err


# --- 7: resumed training metrics describe the whole run ----------------------------------------
def test_resumed_train_loss_covers_the_steps_before_the_checkpoint():
    history = [
        {"loss": 2.0, "step": 5},
        {"loss": 1.0, "step": 10},
        {"loss": 0.5, "step": 15},
        {"loss": 0.5, "step": 20},
    ]
    # resumed at step 12 of 20: the Trainer's own train_loss is this session's loss sum over all steps
    session = 0.5 * 8 / 20
    assert train.resumed_loss(session, history, 12, 20) == pytest.approx((2 * 5 + 1 * 5 + 1 * 2 + 0.5 * 8) / 20)
    assert train.resumed_loss(session, history, 0, 20) == session


# --- every error about an input file names the file and the line --------------------------------
def test_input_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "metrics.json"
    bad.write_text('{"a": 1,\n "b": }')
    with pytest.raises(ValueError, match=r"metrics.json: line 2 column"):
        io.read_json(bad)
    rows = tmp_path / "train.jsonl"
    rows.write_text('{"id": "a", "question": "q", "solution": "s"}\n{"id": "b"}\n')
    with pytest.raises(ValueError, match=r"train.jsonl: line 2: missing column\(s\): question, solution"):
        data.load_training_rows(rows)


def test_other_data_params_are_refused_before_any_record_is_touched(home):
    """Before: the refused stage had already dropped its record, so the next correct run
    re-ran it and, after it, every later stage of the run."""
    cfg = params.resolve("tiny", "cot", "easy", {"data.n_train": 20, "data.n_test": 5})
    rp = paths.RunPaths("tiny", "cot", "easy")
    splits.ensure_problems(cfg, rp)
    record.save(rp, "01_generate_data", {}, cfg)
    with pytest.raises(params.ParamsError, match="was made with data params"):
        runner.run_grid("tiny", ["cot"], ["easy"], ["01_generate_data"], {"data.n_train": 20, "data.n_test": 6})
    assert rp.figures("01_generate_data").exists()


@pytest.mark.slow
def test_a_resumed_training_reports_the_whole_run_and_a_new_recipe_deletes_nothing_early(
    tiny_pair, tmp_path, monkeypatch
):
    from conftest import SMALL
    from lib.teachers import reference

    cfg = params.resolve(
        "tiny",
        "cod",
        "easy",
        {**SMALL, "train.save_steps": 2, "train.logging_steps": 1, "train.target": {"epochs": 1, "batch_size": 8}},
    )
    rows = [
        {"id": r["id"], "question": r["question"], "solution": reference.rewrite(r, "cod")}
        for r in tiny_pair["rows"][:32]
    ]
    ckpt, adapter = tmp_path / "ckpt", tmp_path / "adapter"
    train.train_lora(cfg, "target", tiny_pair["target"], rows, adapter, ckpt, max_steps=2)
    whole = train.train_lora(cfg, "target", tiny_pair["target"], rows, adapter, ckpt)
    assert whole["resumed_at_step"] == 2 and "resumed from step 2" in whole["speed_covers"]
    logged = [(e["step"], e["loss"]) for e in whole["log_history"] if "loss" in e]
    assert [s for s, _ in logged] == list(range(1, whole["steps"] + 1))  # one loss per step, both sessions
    assert whole["train_loss"] == pytest.approx(sum(loss for _, loss in logged) / whole["steps"], rel=1e-3)
    # A new recipe that fails keeps the old checkpoints (aside); one that succeeds removes them.
    kept = sorted(p.name for p in ckpt.glob("checkpoint-*"))
    changed = params.resolve(
        "tiny",
        "cod",
        "easy",
        {**SMALL, "train.save_steps": 2, "train.target": {"epochs": 1, "batch_size": 8, "lr": 0.001}},
    )
    from trl import SFTTrainer

    def boom(self, *a, **k):
        raise RuntimeError("the new recipe failed")

    monkeypatch.setattr(SFTTrainer, "train", boom)
    with pytest.raises(RuntimeError, match="new recipe failed"):
        train.train_lora(changed, "target", tiny_pair["target"], rows, adapter, ckpt, max_steps=2)
    previous = ckpt.with_name("ckpt.previous")
    assert sorted(p.name for p in previous.glob("checkpoint-*")) == kept
    monkeypatch.undo()
    third = train.train_lora(changed, "target", tiny_pair["target"], rows, adapter, ckpt, max_steps=2)
    assert third["resumed_from"] is None and not previous.exists()
