"""The runner on a small grid, with the real notebooks, papermill and nbconvert."""

import json
import shutil

import index_page
import pytest

from conftest import SMALL
from lib import __main__ as cli
from lib import paths, record, reports, runner


@pytest.mark.slow  # runs notebooks
def test_grid_reports_a_failed_run_and_finishes_the_others(home, capsys, grid_pair):
    # The base pair (profile-wide: the session's, which 00 finds complete) and easy/hard problems first.
    shutil.copytree(grid_pair, paths.RunPaths("tiny", "base", "easy").base_models)
    first = runner.run_grid(
        "tiny", styles=["cot"], scenarios=["easy", "hard"], stages=["00_base_models"], overrides=SMALL
    )
    assert [o.status for o in first.outcomes] == ["finished"]

    # Solutions from files (the `file` teacher), hard's with a malformed line: that run must fail
    # with a clear error, easy must not. (A changed problems file would make the base pair, which
    # read it, not current: both runs would be refused before running, see test_lineage.)
    hard = paths.RunPaths("tiny", "cot", "hard")
    teacher = {
        "data.teacher": "file",
        "data.keep_wrong": True,
        "data.teacher_file": {
            "path": str(home / "teacher_{scenario}.jsonl"),
            "question_field": "question",
            "solution_field": "reference",
        },
    }
    for scenario in ("easy", "hard"):
        rows = paths.RunPaths("tiny", "cot", scenario).train_problems.read_text()
        (home / f"teacher_{scenario}.jsonl").write_text(
            rows + ('{"question": "broken", "refer\n' if scenario == "hard" else "")
        )

    over = {**SMALL, **teacher}
    argv = [
        "run",
        "--profile",
        "tiny",
        "--styles",
        "cot",
        "--scenarios",
        "easy",
        "hard",
        "--stages",
        "01_generate_data",
        "--set",
    ] + [f"{k}={json.dumps(v)}" for k, v in over.items()]
    code = cli.main(argv)
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED cot_hard / 01_generate_data" in out
    assert "1 failed" in out and "1 finished" in out

    # The failed notebook is still saved and rendered, with the error in it.
    html = (hard.report_dir / "01_generate_data.html").read_text()
    assert "malformed JSON" in html and "teacher_hard.jsonl" in html and "line" in html
    easy = paths.RunPaths("tiny", "cot", "easy")
    assert (easy.report_dir / "01_generate_data.html").exists()
    assert easy.figures("01_generate_data").exists()
    assert not hard.figures("01_generate_data").exists()

    status = record.load_status("tiny")
    assert status["cot_hard"]["01_generate_data"]["status"] == "failed"
    assert "malformed JSON" in status["cot_hard"]["01_generate_data"]["error"]
    rows = index_page.runs((paths.reports_root("tiny") / "index.html").read_text())
    assert rows["cot_hard"].state == "failed" and "malformed JSON" in rows["cot_hard"].note
    assert rows["cot_hard"].stages["01"] == "failed" and rows["cot_easy"].stages["01"] == "finished"
    assert [run for run, row in rows.items() if row.state == "failed"] == ["cot_hard"]  # the grid's other rows too

    # A re-run skips what finished and tries the failed run again.
    again = runner.run_grid(
        "tiny", styles=["cot"], scenarios=["easy", "hard"], stages=["01_generate_data"], overrides=over
    )
    assert [(o.run, o.status) for o in again.outcomes] == [("cot_easy", "cached"), ("cot_hard", "failed")]


def test_unknown_names_fail_before_anything_runs(home, capsys):
    assert cli.main(["run", "--profile", "tiny", "--styles", "cod", "chain"]) == 2
    assert "unknown style(s) ['chain']; valid styles: base, cot, cod" in capsys.readouterr().err
    assert cli.main(["run", "--profile", "tiny", "--set", "benchmark.kk=3"]) == 2
    assert "unknown parameter 'benchmark.kk'" in capsys.readouterr().err
    assert not (home / "reports").exists()


@pytest.mark.slow  # runs a notebook in a Jupyter kernel
def test_a_report_that_cannot_be_rendered_does_not_fail_its_stage(home, monkeypatch):
    """Seen on the GPU machine (no nbconvert there): the stage ran, only its HTML is missing."""

    def broken(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'nbconvert'")

    monkeypatch.setattr(reports, "render_html", broken)
    out = runner.execute("07_analysis", "_profile", home / "out", {"profile": "tiny", "overrides": {}}, False)
    assert out.status == "finished" and out.error is None
    assert (home / "out" / "07_analysis.ipynb").exists() and not (home / "out" / "07_analysis.html").exists()


@pytest.mark.slow  # runs notebooks
@pytest.mark.ray  # starts a local Ray instance
def test_runs_placed_on_gpus_run_side_by_side(home, grid_pair):
    """`--gpus 0 1`: the base pair here (the session's, which 00 finds complete), then each run as
    a Ray task of a local instance, in its own process with its own CUDA_VISIBLE_DEVICES (on this
    CPU machine a declared GPU is only a count; the tiny runs ask for one with grid.gpus_per_run)."""
    shutil.copytree(grid_pair, paths.RunPaths("tiny", "base", "easy").base_models)
    result = runner.run_grid(
        "tiny",
        styles=["cot", "cod"],
        scenarios=["easy"],
        stages=["00_base_models", "01_generate_data"],
        overrides={**SMALL, "grid.gpus_per_run": 1},
        gpus=["0", "1"],
    )
    assert sorted((o.run, o.stage, o.status) for o in result.outcomes) == [
        ("_profile", "00_base_models", "finished"),
        ("cod_easy", "01_generate_data", "finished"),
        ("cot_easy", "01_generate_data", "finished"),
    ]
    status = record.load_status("tiny")
    assert {status[r]["01_generate_data"]["gpus"] for r in ("cot_easy", "cod_easy")} == {"0", "1"}
    assert all(status[r]["01_generate_data"]["node"] for r in ("cot_easy", "cod_easy"))
    assert "gpus" not in status["_profile"]["00_base_models"] and "node" not in status["_profile"]["00_base_models"]
    for run in ("cot_easy", "cod_easy"):
        rp = paths.RunPaths("tiny", run.split("_")[0], "easy")
        assert rp.figures("01_generate_data").exists()
        assert "01_generate_data finished" in (rp.report_dir / "runner.log").read_text()


def test_a_placed_run_that_dies_is_reported_with_its_log(home, monkeypatch):
    import sys

    monkeypatch.setattr(
        runner, "_chain_command", lambda *a: [sys.executable, "-c", "print('boom'); raise SystemExit(3)"]
    )
    result = runner.run_grid("tiny", styles=["cot", "cod"], scenarios=["easy"], stages=["01_generate_data"], jobs=2)
    assert {o.run for o in result.failed} == {"cot_easy", "cod_easy"}
    assert all("code 3" in o.error and "runner.log" in o.error for o in result.failed)
    assert "boom" in (paths.RunPaths("tiny", "cot", "easy").report_dir / "runner.log").read_text()


def test_bad_gpus_are_refused_before_anything_runs(home, capsys):
    import pytest

    from lib import params

    with pytest.raises(params.ParamsError, match="got 'a'"):
        runner.run_grid("tiny", styles=["cot"], scenarios=["easy"], gpus=["0", "a"])
    with pytest.raises(params.ParamsError, match="named twice"):
        runner.run_grid("tiny", styles=["cot"], scenarios=["easy"], gpus=["0,1", "1"])
    # a run split over two GPUs on a machine given one: refused before Ray starts, both numbers named
    with pytest.raises(
        params.ParamsError,
        match=r"cot_easy needs 2 GPU\(s\) \(engine.tensor_parallel_size=2\), "
        r"but no node of the cluster has more than 1",
    ):
        runner.run_grid(
            "tiny",
            styles=["cot"],
            scenarios=["easy"],
            overrides={"engine.tensor_parallel_size": 2, "device": "cuda"},
            gpus=["0"],
        )
    with pytest.raises(params.ParamsError, match="give one of them"):
        runner.run_grid("tiny", styles=["cot"], scenarios=["easy"], gpus=["0"], cluster="auto")
    assert cli.main(["run", "--profile", "tiny", "--gpus", "x"]) == 2
    assert cli.main(["run", "--profile", "tiny", "--cluster", "auto", "--jobs", "2"]) == 2
    assert "--cluster and --jobs" in capsys.readouterr().err
    assert not (home / "reports").exists()


@pytest.mark.slow  # imports papermill and nbconvert in a fresh process
def test_the_runner_imports_papermill_without_the_iri_grammar():
    """`import papermill` took 3 s, 2.4 s of it rfc3987_syntax building a Lark grammar for
    jsonschema's "iri" format, in each of a demo's ten runner processes. The runner leaves that
    one checker out; notebooks still validate and render."""
    import subprocess
    import sys

    code = (
        "import sys; from lib import runner; import papermill, nbformat; from nbconvert import HTMLExporter; "
        "nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell('x')]); nbformat.validate(nb); "
        "HTMLExporter().from_notebook_node(nb); print(sys.modules.get('rfc3987_syntax'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(paths.REPO),
        env={**__import__("os").environ, "PYTHONPATH": str(paths.REPO)},
    ).stdout
    assert out.strip().splitlines()[-1] == "None"


@pytest.mark.slow  # runs a notebook in a Jupyter kernel
def test_full_collections_freeze_their_survivors_in_the_runners_kernels(home, monkeypatch):
    """Each full collection passed over the whole heap again (5-9 times while a kernel imports
    torch, transformers and vLLM). The runner's kernels freeze what survives one, so the next
    passes over what came since; new objects stay collectable until then."""
    import gc
    import os

    import papermill
    from jupyter_client.manager import start_new_kernel

    from lib import heap

    seen = {}
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: seen.update(k))
    monkeypatch.setattr(runner, "_render", lambda *a, **k: None)
    runner.execute("07_analysis", "_profile", home / "out", {}, False)
    assert heap.KERNEL_ARGUMENT in seen["extra_arguments"]
    km, kc = start_new_kernel(
        kernel_name="python3",
        extra_arguments=seen["extra_arguments"],
        cwd=str(paths.REPO),
        env={**os.environ, "PYTHONPATH": str(paths.REPO)},
    )
    try:
        out = []
        kc.execute_interactive(
            "import gc; gc.collect(); print(gc.get_freeze_count() > 0)",
            timeout=60,
            output_hook=lambda m: out.append(m["content"].get("text", "")),
        )
    finally:
        km.shutdown_kernel(now=True)
    assert "".join(out).split() == ["True"]

    heap.freeze_survivors()
    try:
        gc.unfreeze()
        gc.collect()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        # (a frozen object can still die meanwhile: in the full suite one did, so the count may drop a little)
        fresh = [[] for _ in range(1000)]
        assert gc.get_freeze_count() <= frozen  # not frozen before the next full collection
        gc.collect(1)
        assert gc.get_freeze_count() <= frozen  # nor by a younger one
        gc.collect()
        assert gc.get_freeze_count() >= frozen + 950
        del fresh
    finally:
        heap.stop_freezing()
    gc.collect()
    assert gc.get_freeze_count() == 0


def test_a_cluster_nothing_answers_at_is_refused_at_once(home, capsys, monkeypatch):
    """Ray retries an address that nothing answers for minutes (over 3 measured); the runner
    says so in a second, for an address given and for the one `auto` finds (RAY_ADDRESS, or the
    last `ray start` on this host, which may be gone)."""
    import re
    import socket
    import time

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    t0 = time.perf_counter()
    assert cli.main(["run", "--profile", "tiny", "--styles", "cot", "--scenarios", "easy", "--cluster", closed]) == 2
    assert f"--cluster {closed}: nothing answers there" in capsys.readouterr().err
    monkeypatch.setenv("RAY_ADDRESS", closed)
    assert cli.main(["run", "--profile", "tiny", "--styles", "cot", "--scenarios", "easy", "--cluster", "auto"]) == 2
    port = closed.rsplit(":", 1)[1]  # Ray gives a loopback address as this host's own
    assert re.search(rf"--cluster auto \(its address: [^)]+:{port}\): nothing answers there", capsys.readouterr().err)
    assert time.perf_counter() - t0 < 60
    assert not (home / "reports" / "tiny" / "status.json").exists()


@pytest.mark.slow  # runner.execute (its notebook a stand-in)
def test_a_kernel_that_dies_as_it_starts_is_started_again_once(home, monkeypatch, capsys):
    """Two runners side by side (`--jobs`) may choose the same free port for their kernels; the
    second kernel cannot bind it and dies before it answers, no cell run: another kernel, once.
    Any other error, or a second such death, fails the stage as before."""
    calls = []

    def dies(times, error=runner.KERNEL_DIED_AT_START):
        def run(*args):
            calls.append(args[1])
            if len(calls) <= times:
                raise RuntimeError(error)

        return run

    def run(fake):
        calls.clear()
        monkeypatch.setattr(runner, "_run_notebook", fake)
        return runner.execute("01_generate_data", "cot_easy", home / "out", {}, False, render=lambda *a: None)

    out = run(dies(1))
    assert (out.status, out.error, len(calls)) == ("finished", None, 2)
    assert "cot_easy 01_generate_data: the kernel died as it started; starting another" in capsys.readouterr().out
    out = run(dies(2))
    assert out.status == "failed" and runner.KERNEL_DIED_AT_START in out.error and len(calls) == 2
    out = run(dies(1, "ZeroDivisionError: a cell failed"))
    assert out.status == "failed" and "ZeroDivisionError" in out.error and len(calls) == 1
