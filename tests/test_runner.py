"""The runner on a small grid, with the real notebooks, papermill and nbconvert."""

import json

from conftest import SMALL
from lib import __main__ as cli
from lib import paths, reports, runner


def test_grid_reports_a_failed_run_and_finishes_the_others(home, capsys):
    # The base pair (profile-wide) and easy/hard problems first.
    first = runner.run_grid("tiny", styles=["cot"], scenarios=["easy", "hard"], stages=["00_base_models"], overrides=SMALL)
    assert [o.status for o in first.outcomes] == ["finished"]

    # A malformed row in hard's problems: that run must fail with a clear error, easy must not.
    hard = paths.RunPaths("tiny", "cot", "hard")
    with open(hard.train_problems, "a") as fh:
        fh.write('{"id": "broken", "question": \n')

    argv = ["run", "--profile", "tiny", "--styles", "cot", "--scenarios", "easy", "hard",
            "--stages", "01_generate_data", "--set"] + [f"{k}={json.dumps(v)}" for k, v in SMALL.items()]
    code = cli.main(argv)
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED cot_hard / 01_generate_data" in out
    assert "1 failed" in out and "1 finished" in out

    # The failed notebook is still saved and rendered, with the error in it.
    html = (hard.report_dir / "01_generate_data.html").read_text()
    assert "unusable row" in html and "line" in html
    easy = paths.RunPaths("tiny", "cot", "easy")
    assert (easy.report_dir / "01_generate_data.html").exists()
    assert easy.figures("01_generate_data").exists()
    assert not hard.figures("01_generate_data").exists()

    status = reports.load_status("tiny")
    assert status["cot_hard"]["01_generate_data"]["status"] == "failed"
    assert "unusable row" in status["cot_hard"]["01_generate_data"]["error"]
    index = (paths.reports_root("tiny") / "index.html").read_text()
    assert "cot_hard" in index and "failed" in index

    # A re-run skips what finished and tries the failed run again.
    again = runner.run_grid("tiny", styles=["cot"], scenarios=["easy", "hard"], stages=["01_generate_data"], overrides=SMALL)
    assert [(o.run, o.status) for o in again.outcomes] == [("cot_easy", "cached"), ("cot_hard", "failed")]


def test_unknown_names_fail_before_anything_runs(home, capsys):
    assert cli.main(["run", "--profile", "tiny", "--styles", "cod", "chain"]) == 2
    assert "unknown style(s) ['chain']; valid styles: base, cot, cod" in capsys.readouterr().err
    assert cli.main(["run", "--profile", "tiny", "--set", "benchmark.kk=3"]) == 2
    assert "unknown parameter 'benchmark.kk'" in capsys.readouterr().err
    assert not (home / "reports").exists()


def test_a_report_that_cannot_be_rendered_does_not_fail_its_stage(home, monkeypatch):
    """Seen on the GPU machine (no nbconvert there): the stage ran, only its HTML is missing."""
    def broken(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'nbconvert'")

    monkeypatch.setattr(reports, "render_html", broken)
    out = runner.execute("07_analysis", "_profile", home / "out", {"profile": "tiny", "overrides": {}}, False)
    assert out.status == "finished" and out.error is None
    assert (home / "out" / "07_analysis.ipynb").exists() and not (home / "out" / "07_analysis.html").exists()
