"""The demo's wall time beside its budget (issue 18): the runner records the grid's own wall
time in status.json, the index shows it with `report.budget_s`, and `--jobs` places runs side
by side on the CPUs. Fast: synthetic status files, no notebook runs."""

import json
import re

import lineage
import pytest

from lib import device, params, paths, record, reports, runner


def _status(seconds: float, whole: bool = True) -> dict:
    return {
        "cot_easy": {"01_generate_data": {"status": "finished", "seconds": 7.5, "at": 1.0}},
        record.GRID_RUN: {
            record.GRID_WALL: {
                "status": "ended",
                "seconds": seconds,
                "started": 1_795_000_000.0,
                "jobs": 2,
                "outcomes": {"finished": 44},
                "whole_grid": whole,
                "command": "run --profile tiny",
                "host": "box",
                "at": 2.0,
            }
        },
    }


def _wall_paragraph(page: str) -> str:
    return re.search(r'<p id="wall-time">.*?</p>', page, re.S).group(0)


@pytest.mark.parametrize("seconds, budget, verdict", [(545.2, 600.0, "within budget"), (848.0, 600.0, "over budget")])
def test_the_index_shows_the_grids_wall_time_beside_the_budget(home, params_copy, seconds, budget, verdict):
    layer = params_copy / "profiles" / "tiny.yaml"  # one `report` key: a layer may not give a key twice
    layer.write_text(re.sub(r"(?m)^report:.*$", f"report: {{budget_s: {budget}}}", layer.read_text()))
    status_file = record.status_path("tiny")
    status_file.parent.mkdir(parents=True)
    status_file.write_text(json.dumps(_status(seconds)))
    wall = _wall_paragraph(reports.write_index("tiny").read_text())
    minutes = f"{int(seconds // 60)} min {seconds % 60:04.1f} s"
    assert f"<b>{minutes}</b> wall" in wall and "44 finished" in wall and "2 run(s) at a time" in wall
    assert "budget 10 min 00.0 s" in wall and verdict in wall
    if verdict == "over budget":
        assert f"by {int((seconds - budget) // 60)} min" in wall
    # a partial grid (or one that reused cached stages) is not set against the budget
    status_file.write_text(json.dumps(_status(seconds, whole=False)))
    wall = _wall_paragraph(reports.write_index("tiny").read_text())
    assert "which this was not" in wall and "budget" not in wall.split("which this was not")[1]
    assert "within budget" not in wall and "over budget" not in wall


def test_no_budget_and_no_wall_time_are_said_so(home):
    assert params.resolve("tiny", "base", "easy")["report"]["budget_s"] >= 0
    page = reports.write_index("tiny").read_text()
    assert "No grid has recorded its wall time here yet" in page
    status_file = record.status_path("tiny")
    status_file.write_text(json.dumps(_status(100.0)))
    wall = _wall_paragraph(reports.write_index("tiny").read_text())
    assert "<b>1 min 40.0 s</b> wall" in wall
    # the grid's entry is no run: the failure list and the run rows ignore it
    assert "_grid" not in reports.write_index("tiny").read_text().split('id="wall-time"')[0]


def test_the_runner_records_the_grids_wall_time(home, monkeypatch):
    monkeypatch.setattr(runner, "execute", lineage.fake_execute(seconds=0.5))
    lineage.stage_done("tiny", "00_base_models", lineage.profile_cfg("tiny", {"data.n_train": 20, "data.n_test": 6}))
    runner.run_grid("tiny", ["cot"], ["easy"], ["01_generate_data"], {"data.n_train": 20, "data.n_test": 6})
    wall = record.load_status("tiny")[record.GRID_RUN][record.GRID_WALL]
    assert wall["status"] == "ended" and wall["jobs"] == 1 and wall["outcomes"] == {"finished": 1}
    assert wall["whole_grid"] is False  # one stage of one run
    record.forget("tiny", "00_base_models")  # now the whole grid, every stage run afresh
    runner.run_grid("tiny", redo=True)  # every style, scenario and stage (44 notebooks), each run here
    wall = record.load_status("tiny")[record.GRID_RUN][record.GRID_WALL]
    assert wall["outcomes"] == {"finished": 44} and wall["whole_grid"] is True
    assert 0 < wall["seconds"] < 60
    assert 'id="wall-time"' in (paths.reports_root("tiny") / "index.html").read_text()


def test_jobs_auto_places_cpu_runs_two_at_a_time_each_on_its_own_cores(monkeypatch):
    cpu = [params.resolve("tiny", "cot", "easy")]
    monkeypatch.setattr(device, "usable_cpus", lambda: [2, 5])  # the process's affinity, not the machine's count
    assert runner.parse_jobs("auto", cpu) == 2 and runner.parse_jobs("1", cpu) == 1
    assert runner.parse_jobs("auto", [params.resolve("tiny", "cot", "easy", {"device": "auto"})]) == 1
    slots = runner.job_slots(2)
    assert [name for name, _ in slots] == ["job 1", "job 2"]
    assert [env["OMP_NUM_THREADS"] for _, env in slots] == ["1", "1"]
    assert [env[device.CPUS_ENV] for _, env in slots] == ["2", "5"]
    assert runner.job_slots(1) == []
    monkeypatch.setattr(device, "usable_cpus", lambda: [0, 1, 2, 3, 4])
    assert [env[device.CPUS_ENV] for _, env in runner.job_slots(2)] == ["0,1", "2,3"]
    monkeypatch.setattr(device, "usable_cpus", lambda: [0])  # more slots than cores: shared, one thread each
    assert [(env["OMP_NUM_THREADS"], device.CPUS_ENV in env) for _, env in runner.job_slots(2)] == [("1", False)] * 2
    monkeypatch.setattr(device, "usable_cpus", lambda: [0, 1])
    with pytest.raises(params.ParamsError, match="got '0'"):
        runner.parse_jobs("0", cpu)


def test_cpu_jobs_run_chains_side_by_side_longest_first(home, monkeypatch):
    """Two jobs: each chain in its own process (here a stand-in that reports at once) with one
    thread, the child told to run alone (`--jobs 1`); on one slot, the base run (two stages)
    goes after the longer run."""
    import sys

    real, seen = runner._chain_command, []

    def command(chain, profile, overrides, redo, hide_input, outcomes_file):
        (style, scenario, _), _ = chain[0]
        seen.append((f"{style}_{scenario}", real(chain, profile, overrides, redo, hide_input, outcomes_file)))
        outcomes = [{"run": f"{style}_{scenario}", "stage": s, "status": "finished"} for _, s in chain]
        code = (
            f"import json, os; json.dump({outcomes!r}, open({str(outcomes_file)!r}, 'w')); "
            f"assert os.environ['OMP_NUM_THREADS'] == '1' and os.environ['{runner.JOB_ENV}']; "
            f"print('\\r  {style}_{scenario} 01: 50%|##  |\\r      \\r[1/1 0s] {style}_{scenario} finished')"
        )
        return [sys.executable, "-c", code]

    monkeypatch.setattr(runner, "_chain_command", command)
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 2)
    shown = []
    result = runner.run_grid(
        "tiny", ["base", "cod"], ["easy"], ["01_generate_data", "02_train_target"], jobs=2, log=shown.append
    )
    # each run's own lines come through, with its slot in front, and not hidden behind a progress bar
    assert {"[1/1 0s] base_easy finished", "[1/1 0s] cod_easy finished"} <= {
        m.split("] ", 1)[1] for m in shown if m.startswith("[job ")
    }
    assert sorted((o.run, o.stage, o.status) for o in result.outcomes) == [
        ("base_easy", "01_generate_data", "finished"),
        ("cod_easy", "01_generate_data", "finished"),
        ("cod_easy", "02_train_target", "finished"),
    ]
    assert all(cmd[cmd.index("--jobs") + 1] == "1" for _, cmd in seen)
    assert record.load_status("tiny")[record.GRID_RUN][record.GRID_WALL]["jobs"] == 2

    seen.clear()
    chains = [
        [(("base", "easy", 0), "01_generate_data")],
        [(("cod", "easy", 0), "01_generate_data"), (("cod", "easy", 0), "02_train_target")],
    ]
    runner._place(chains, runner.job_slots(2)[:1], "tiny", {}, False, False, lambda msg: None)
    assert [run for run, _ in seen] == ["cod_easy", "base_easy"]  # without short_first: longest first


def test_cpu_jobs_place_the_short_base_runs_first(home, monkeypatch):
    """On two cores, one `base` run (two stages, 40-90 s) placed last ran alone at the end of
    the demo while the other core idled 44-55 s; placed first, the trained runs end together.
    Ray (GPUs) gets the longest runs first."""
    import sys

    seen, placed = [], []

    def command(chain, profile, overrides, redo, hide_input, outcomes_file):
        (style, scenario, _), _ = chain[0]
        seen.append(f"{style}_{scenario}")
        outcomes = [{"run": f"{style}_{scenario}", "stage": s, "status": "finished"} for _, s in chain]
        return [sys.executable, "-c", f"import json; json.dump({outcomes!r}, open({str(outcomes_file)!r}, 'w'))"]

    monkeypatch.setattr(runner, "_chain_command", command)
    chains = [
        [(("base", "easy", 0), "01_generate_data")],
        [(("cod", "easy", 0), "01_generate_data"), (("cod", "easy", 0), "02_train_target")],
    ]
    runner._place(chains, runner.job_slots(2)[:1], "tiny", {}, False, False, lambda msg: None, short_first=True)
    assert seen == ["base_easy", "cod_easy"]

    real = runner._place
    monkeypatch.setattr(runner, "_place", lambda *a, **k: placed.append(k) or real(*a, **k))
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 2)
    runner.run_grid("tiny", ["base", "cod"], ["easy"], ["01_generate_data"], jobs=2, log=lambda msg: None)
    assert [k["short_first"] for k in placed] == [True]

    # Placed by Ray (GPUs): submitted longest first
    submitted = []
    monkeypatch.setattr(
        runner.ray_cluster, "place", lambda ray_chains, log, after: submitted.extend(c.name for c in ray_chains) or {}
    )
    rays = {
        id(c): runner._ray_chain(c, runner.params.resolve("tiny", c[0][0][0], "easy"), "tiny", {}, False, False)
        for c in chains
    }
    runner._place_by_ray(chains, rays, "tiny", lambda msg: None)
    assert submitted == ["cod_easy", "base_easy"]


def _small_tokenizer(folder):
    """A byte-level BPE tokenizer saved as transformers saves one (tokenizer.json and config)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["Natalia sold 48 clips in April and half as many in May. 48/2 = 24. #### 72"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"]))
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(str(folder))
    return folder


def test_token_counts_skip_transformers_and_match_it(tmp_path):
    """Notebook 01 counts teacher tokens: through `tokenizers` straight from tokenizer.json,
    the same counts as transformers' tokenizer, without importing torch (seconds per notebook)."""
    import subprocess
    import sys

    from lib import models

    folder = _small_tokenizer(tmp_path / "tok")
    texts = ["Natalia sold 48 clips.", "  two spaces, unicode ≥ π", "<|endoftext|> special", "\n\n#### 72", ""]
    assert models.token_counter(str(folder))(texts) == models.count_tokens(models.load_tokenizer(str(folder)), texts)
    code = (
        f"import sys; from lib import models; print(models.token_counter({str(folder)!r})(['a b'])); "
        f"print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(paths.REPO),
        env={**__import__("os").environ, "PYTHONPATH": str(paths.REPO)},
    ).stdout
    assert out.strip().splitlines()[-1] == "False False"


@pytest.mark.slow  # starts a Jupyter kernel
def test_the_kernel_is_not_left_to_tear_itself_down(home, monkeypatch, tmp_path):
    """After the last cell the kernel is killed, not asked to exit: a kernel whose teardown is
    slow (torch loaded took 3.6-4.4 s per notebook) no longer holds the stage up. Here an exit
    hook that sleeps 30 s; a polite shutdown waits 2.5 s for it before signalling."""
    from datetime import datetime

    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import atexit, time\natexit.register(time.sleep, 30)\nprint('done')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = tmp_path / "slow_exit.ipynb"
    nbformat.write(nb, str(src))
    monkeypatch.setattr(runner, "notebook", lambda stage: src)
    out = runner.execute("slow_exit", "_profile", home / "out", {}, False)
    assert out.status == "finished", out.error
    done = nbformat.read(str(home / "out" / "slow_exit.ipynb"), as_version=4)
    end = datetime.fromisoformat(done.metadata.papermill.end_time).timestamp()
    last = datetime.fromisoformat(done.cells[-1].metadata.papermill.end_time).timestamp()
    # asked politely, jupyter_client waits 2.5 s (half its shutdown_wait_time) before signalling
    assert end - last < 1.5, f"{end - last:.1f} s between the last cell and the notebook's end"


def test_the_profile_reads_status_notebook_times_and_phase_lines(home, capsys):
    """benchmarks/demo_profile.py on a synthetic home: a stage's time, its kernel CPU, the
    kernel start (notebook start to first cell), the work cell and, inside it, the engine
    starts from the stage log's phase lines."""
    import importlib.util
    from datetime import datetime

    import nbformat

    from lib import logs

    spec = importlib.util.spec_from_file_location("demo_profile", paths.REPO / "benchmarks" / "demo_profile.py")
    profile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(profile)
    out = paths.reports_root("tiny") / "cod_easy"
    out.mkdir(parents=True)
    status = {record.GRID_RUN: _status(300.0)[record.GRID_RUN]}
    status["cod_easy"] = {"06_benchmark": {"status": "finished", "seconds": 30.0, "cpu_s": 25.0, "at": 1.0}}
    record.status_path("tiny").write_text(json.dumps(status))
    nb = nbformat.v4.new_notebook()
    t = lambda s: f"2026-11-29T08:00:{s:06.3f}+00:00"
    cells = [
        ("from lib import params", 2.0, 4.0),
        ("with engine_log:\n    metrics = benchmark.run(cfg, rp)", 4.0, 24.0),
        ("benchmark.pass_table(metrics)", 24.0, 25.0),
    ]
    for src, a, b in cells:
        cell = nbformat.v4.new_code_cell(src)
        cell.metadata["papermill"] = {"start_time": t(a), "end_time": t(b)}
        nb.cells.append(cell)
    nb.metadata["papermill"] = {"start_time": t(0.5), "end_time": t(26.0)}
    nbformat.write(nb, str(out / "06_benchmark.ipynb"))
    during = datetime.fromisoformat(t(10.0)).timestamp()  # a line of an earlier run of the stage is left out
    (out / "06_benchmark.log").write_text(
        "vLLM chatter\n"
        + "".join(
            f"{logs.PHASE_PREFIX} {at:.3f} {n}: {s} s\n"
            for at, n, s in (
                (during - 3600, "engine start", 9.0),
                (during, "import vllm", 6.5),
                (during, "engine start", 1.25),
                (during, "engine start (speculative)", 1.75),
            )
        )
    )
    assert profile.main([str(home)]) == 0
    table = capsys.readouterr().out
    row = lambda label: [c.strip() for c in next(line for line in table.splitlines() if label in line).split("|")]
    assert row("stage time (papermill)")[3] == "30.0" and row("kernel CPU time")[3] == "25.0"
    assert row("kernel start")[3] == "1.5" and row("work cells")[3] == "20.0"
    assert row("import vllm")[3] == "6.5" and row("engine starts (2)")[3] == "3.0"
    assert "300.0 (2 at a time)" in row("wall time")[3]


def test_a_run_on_a_job_slot_keeps_to_its_cores():
    """The slot's process pins itself before any kernel starts; kernels and engines inherit it.
    A value that names no core of this machine is a clear error naming the variable."""
    import os
    import subprocess
    import sys

    first = device.usable_cpus()[0]
    code = "import os; from lib import device; print(device.keep_to_slot_cpus(), sorted(os.sched_getaffinity(0)))"
    env = {**os.environ, device.CPUS_ENV: str(first)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [f"[{first}]", f"[{first}]"]
    bad = subprocess.run(
        [sys.executable, "-c", code], env={**env, device.CPUS_ENV: "x"}, capture_output=True, text=True
    )
    assert bad.returncode != 0 and f"{device.CPUS_ENV}='x'" in bad.stderr
