"""Every stage notebook executed as the reports are made: the session's finished tiny grid
(`conftest.tiny_grid`: the base pair, the untrained `base` style, CoT and CoD with two trainings
each, one scenario, the analysis) through the runner with tiny overrides. Each stage's recorded
figures are checked for values that could be wrong, and the benchmark report is read as a
researcher reads it: its first table within the first screen, the engine's lines in the stage's
log file instead."""

import json
import math
import re

import pytest

from conftest import SMALL, TINY_GRID
from lib import io, paths, record, runner

pytestmark = pytest.mark.slow
K = TINY_GRID["benchmark.k"]
FIRST_SCREEN_CHARS = 3000  # output text a reader scrolls through before the benchmark's first table


@pytest.fixture(scope="module")
def grid(tiny_grid):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBOOK_HOME", str(tiny_grid["home"]))
        yield {
            **tiny_grid,
            "base": paths.RunPaths("tiny", "base", "easy"),
            "cot": paths.RunPaths("tiny", "cot", "easy"),
            "cod": paths.RunPaths("tiny", "cod", "easy"),
            "cod_r1": paths.RunPaths("tiny", "cod", "easy", 1),
        }


def _fraction(x) -> bool:
    return isinstance(x, (int, float)) and 0.0 <= x <= 1.0


def test_every_stage_ran_and_the_terminal_showed_progress(grid):
    ran = [(o.run, o.stage, o.status) for o in grid["result"].outcomes]
    runs = [("base_easy", s) for s in runner.stages_of("base")]
    for style in ("cot", "cod"):
        runs += [(f"{style}_easy", s) for s in runner.stages_of(style)]
        runs += [(f"{style}_easy_r1", s) for s in runner.stages_of(style, 1)]  # trains on the first's data
    assert ran[0] == ("_profile", "00_base_models", "finished") and ran[-1] == ("_profile", "07_analysis", "finished")
    assert sorted(ran[1:-1]) == sorted((run, stage, "finished") for run, stage in runs), grid["result"].summary()
    for label in {run for run, _ in runs}:  # each run's stages in their order (runs side by side interleave)
        assert [s for r, s, _ in ran if r == label] == [s for r, s in runs if r == label], label
    # Within a stage, papermill's bar over its cells (e.g. "cod_easy 06_benchmark:  50%| 9/18").
    assert re.search(r"cod_easy 06_benchmark: +\d+%.*\d+/\d+", grid["terminal"]), grid["terminal"][-2000:]


def test_base_models_and_data(grid, grid_pair):
    pair = record.load("tiny", "00_base_models")
    assert pair["built"] is True
    # 00 found the session's pair complete and kept it: made with these settings, not built again
    kept = grid["base"].base_models / "summary.json"
    assert kept.read_bytes() == (grid_pair / "summary.json").read_bytes()
    assert pair["target"]["parameters"] > pair["draft"]["parameters"] > 0
    assert pair["target"]["steps"] > 0 and pair["draft"]["steps"] > 0
    for rp in (grid["base"], grid["cot"], grid["cod"]):
        data = record.load(rp, "01_generate_data")
        assert (data["n_train"], data["n_test"]) == (SMALL["data.n_train"], SMALL["data.n_test"])
    cod = record.load(grid["cod"], "01_generate_data")
    assert cod["kept"] + cod["rejected"] == SMALL["data.n_train"] and cod["kept"] > 0
    assert _fraction(cod["teacher_accuracy"]) and cod["tokens_mean_cod"] > 0
    assert len(io.read_jsonl(grid["cod"].teacher_output).rows) == cod["kept"]


@pytest.mark.parametrize("run", ["cot", "cod", "cod_r1"])
def test_training_distillation_and_merge(grid, run):
    rp = grid[run]
    kept = record.load(rp.first, "01_generate_data")["kept"]  # a later training reads the first's data
    distilled = record.load(rp, "03_distill")
    for stage, rows in (("02_train_target", kept), ("04_train_draft", distilled["n_rows"])):
        fig = record.load(rp, stage)
        assert fig["steps"] > 0 and fig["epochs"] == 1, (stage, fig)
        assert fig["n_train"] + fig["n_val"] + fig["n_dropped_too_long"] == rows, (stage, fig)
        assert math.isfinite(fig["train_loss"]) and fig["train_loss"] > 0, (stage, fig)
    # Every training problem answered and kept, right or wrong; the tiny profile warns on the gate.
    assert distilled["n_rows"] == SMALL["data.n_train"] and _fraction(distilled["accuracy"])
    assert distilled["mode"] == "warn" and distilled["passed"] == (distilled["accuracy"] >= distilled["gate"])
    merged = record.load(rp, "05_merge")
    assert merged["tokenizers_identical"] is True
    for role in ("target", "draft"):
        assert merged[role]["max_abs_logit_diff"] <= merged[role]["atol"] and merged[role]["size_mb"] > 0
        # merge.delete_after_benchmark: the benchmark stage removed the checkpoints, the adapters stay
        assert not rp.merged(role).exists() and rp.adapter(role).exists(), role


@pytest.mark.parametrize("run", ["base", "cot", "cod", "cod_r1"])
def test_benchmark_figures(grid, run):
    rp = grid[run]
    head = record.load(rp, "06_benchmark")
    metrics = io.read_json(rp.metrics_json)
    assert metrics["k"] == K and metrics["speculative_config"]["num_speculative_tokens"] == K
    for name in ("baseline", "speculative"):
        assert metrics["passes"][name]["n"] == SMALL["data.n_test"], name
    assert _fraction(head["accuracy_baseline"]) and _fraction(head["accuracy_speculative"])
    assert _fraction(head["acceptance_rate"]) and 1.0 <= head["mean_acceptance_length"] <= K + 1
    assert head["speedup"] > 0 and head["tokens_per_answer"] > 0
    assert head["crosscheck_n"] == 2 and _fraction(head["crosscheck_acceptance_vllm"])
    assert _fraction(head["identical_output_share"])


def test_analysis_sees_both_runs(grid):
    fig = record.load("tiny", "07_analysis")
    runs = {"base_easy", "cot_easy", "cot_easy_r1", "cod_easy", "cod_easy_r1"}
    assert runs <= set(fig["runs_present"]) and fig["runs_failed"] == []
    assert fig["speedup"] and fig["accuracy"] and fig["findings"]


def _text(output) -> str:
    data = output.get("data", {})
    return "".join(output.get("text") or data.get("text/plain", ""))


def test_benchmark_report_shows_results_first_and_keeps_engine_lines_in_its_log(grid):
    rp = grid["cod"]
    nb = json.loads((rp.report_dir / "06_benchmark.ipynb").read_text())
    before_table, seen_table = 0, False
    for cell in nb["cells"]:
        if cell["cell_type"] != "code" or "parameters" in cell["metadata"].get("tags", []):
            continue
        for output in cell.get("outputs", []):
            if "<table" in "".join(output.get("data", {}).get("text/html", "")):
                seen_table = True
                break
            before_table += len(_text(output))
        if seen_table:
            break
    assert seen_table and before_table < FIRST_SCREEN_CHARS, before_table
    log = rp.log("06_benchmark")
    assert log.exists() and log.stat().st_size > 0
    html = (rp.report_dir / "06_benchmark.html").read_text()
    assert 'href="06_benchmark.log"' in html  # linked near the top
