"""The analysis stage (07) on synthetic run outputs: the notebook executed through papermill
in a temporary home; the study's three tables read back from the figures JSON its last cell
writes; gaps for missing runs; an external CSV in the study's schema re-graded beside the
workbook's runs; the rendered HTML with and without code; the index page; the comparison."""

import re
import shutil

import index_page
import nbformat
import pandas as pd
import papermill as pm
import pytest

from fixtures import synthetic as syn
from lib import analysis, externals, io, params, paths, record, reports, runner

PROFILE = syn.PROFILE
N_PLOTS = 7  # acceptance by position, speed-up, tokens, accuracy, predicted vs measured, K sweep, losses
STUDY = "external:study_cot"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Synthetic runs (two scenarios partly measured, `hard` not at all, cot_hard failed), a
    study-schema CSV from elsewhere, and the analysis notebook executed on them."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBOOK_HOME", str(home))
        syn.write_grid(PROFILE)
        study = home / "elsewhere" / "study_cot.csv"
        study.parent.mkdir()
        study.write_text(syn.study_csv_text())
        record.record_status(PROFILE, "cot_hard", "06_benchmark", status="failed", error="RuntimeError: engine died")
        out_dir = paths.reports_root(PROFILE) / paths.PROFILE_RUN
        out_dir.mkdir(parents=True)
        out = out_dir / "07_analysis.ipynb"
        pm.execute_notebook(
            str(runner.notebook("07_analysis")), str(out), kernel_name="python3", progress_bar=False,
            cwd=str(paths.NOTEBOOKS), parameters={"profile": PROFILE, "external_csvs": [str(study)], "n_boot": 300},
        )
        yield {"home": home, "ipynb": out, "figs": record.load(PROFILE, "07_analysis"), "study": study}


def test_three_tables_read_back_from_the_figures(executed):
    figs = executed["figs"]
    wb_speed, wb_acc, wb_tok = figs["speedup"]["workbook"], figs["accuracy"]["workbook"], figs["tokens"]["workbook"]
    for style, scenario in [("cot", "easy"), ("cod", "easy"), ("cot", "medium")]:
        # same answers in both passes, so throughput speed-up = baseline wall / speculative wall
        wall = syn.RUNS[(style, scenario)]["wall"]
        assert wb_speed[scenario][f"{style} speed-up"] == pytest.approx(wall[0] / wall[1], rel=1e-6)
        assert wb_speed[scenario][f"{style} acceptance"] == pytest.approx(syn.acceptance(style, scenario))
        assert wb_acc[scenario][f"{style} baseline"] == pytest.approx(syn.accuracy(style, scenario, "baseline"))
        assert wb_acc[scenario][f"{style} + spec"] == pytest.approx(syn.accuracy(style, scenario, "speculative"))
        assert wb_tok[scenario][f"{style} tokens"] == pytest.approx(syn.tokens_mean(style, scenario))
    for scenario in ("easy", "medium"):
        assert wb_acc[scenario]["base (untrained)"] == pytest.approx(syn.accuracy("base", scenario, "baseline"))
        assert wb_tok[scenario]["base tokens"] == pytest.approx(syn.tokens_mean("base", scenario))
    assert figs["columns"]["accuracy"] == ["base (untrained)", "cot baseline", "cot + spec", "cod baseline", "cod + spec"]
    assert set(wb_acc["easy"]) == set(figs["columns"]["accuracy"])


def test_missing_runs_are_gaps_not_errors(executed):
    figs = executed["figs"]
    assert figs["runs_missing"] == sorted(["cod_medium", "base_hard", "cot_hard", "cod_hard"])
    assert figs["runs_failed"] == ["cot_hard"]
    failed = next(r for r in figs["runs"] if r["run"] == "cot_hard")
    assert failed["state"] == "failed" and "RuntimeError: engine died" in failed["error"]
    assert figs["speedup"]["workbook"]["medium"]["cod speed-up"] is None
    assert figs["accuracy"]["workbook"]["medium"]["cod baseline"] is None
    assert set(figs["accuracy"]["workbook"]["hard"].values()) == {None}  # a whole scenario missing: a row of gaps
    assert any("not both measured" in f and "cod_medium" in f for f in figs["findings"])
    nb = nbformat.read(str(executed["ipynb"]), as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []


def test_external_csv_regraded_beside_the_workbook(executed):
    figs = executed["figs"]
    acc = figs["accuracy"][STUDY]
    # re-graded by the workbook's checker, not the study's is_correct (which credited a cut-off answer)
    assert acc["easy"]["cot baseline"] == pytest.approx(syn.STUDY_COT_EASY["baseline"])
    assert acc["easy"]["cot + spec"] == pytest.approx(syn.STUDY_COT_EASY["speculative"])
    assert acc["hard"]["base (untrained)"] == 0.0  # the study said 100%: its only output was cut off
    regrade = {(r["style"], r["scenario"], r["pass"]): r for r in figs["external"]["regrade"]}
    assert regrade[("cot", "easy", "baseline")]["accuracy (study's is_correct)"] == pytest.approx(
        syn.STUDY_COT_EASY_STUDY["baseline"])
    assert regrade[("cot", "easy", "baseline")]["credited by study only"] == 1
    assert figs["tokens"][STUDY]["hard"]["base tokens"] == 512
    assert figs["speedup"][STUDY]["easy"]["cot acceptance"] is None  # a samples file has no acceptance
    assert figs["sources"] == ["workbook", STUDY]
    [f] = figs["external"]["files"]
    assert (f["schema"], f["used"], f["skipped"]) == ("study", 9, syn.STUDY_BAD_ROWS)
    assert figs["external"]["n_bad_rows"] == syn.STUDY_BAD_ROWS
    reasons = " | ".join(b["reason"] for b in figs["external"]["bad_rows"])
    assert "not a non-negative integer" in reasons and "fields, expected 9" in reasons and "'misc_run' names no" in reasons


def test_findings_are_written_from_the_numbers(executed):
    findings = executed["figs"]["findings"]
    diff = (syn.acceptance("cod", "easy") - syn.acceptance("cot", "easy")) * 100
    [line] = [f for f in findings if f.startswith("easy: CoD had the higher acceptance")]
    assert f"CoD ahead by {diff:.1f} points" in line
    assert f"CoD {syn.acceptance('cod', 'easy'):.1%} [" in line  # with its interval
    assert any(f.startswith("Acceptance intervals are 95% bootstrap over prompts") for f in findings)
    assert any(f.startswith("easy/cot: speculation moved accuracy by +10.0 points [") for f in findings)
    assert any(f.startswith("Speculation did not change whether any answer was right in:") and "easy/cod" in f
               for f in findings)
    # issue 15: the cost model's prediction, the ceiling and the lossless floor are stated
    [pred] = [f for f in findings if f.startswith("Measured throughput speed-up was")]
    assert "measured step cost r" in pred and "within ±20 %" in pred
    assert any("the engine's ceiling is" in f and "no GPU profile" in f for f in findings)
    floors = [f for f in findings if "(the numerical floor)" in f]
    assert floors and all("equals itself under other batching for 100.0%" in f for f in floors)


def test_every_plot_is_drawn_once(executed):
    nb = nbformat.read(str(executed["ipynb"]), as_version=4)
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == N_PLOTS
    plot_cells = [c for c in nb.cells if c.cell_type == "code" and "plots." in c.source]
    assert all(len([o for o in c.outputs if "image/png" in o.get("data", {})]) == 1 for c in plot_cells)


def test_html_embeds_figures_and_hides_code_when_asked(executed, tmp_path):
    shown = reports.render_html(executed["ipynb"], tmp_path / "shown.html").read_text()
    hidden = reports.render_html(executed["ipynb"], tmp_path / "hidden.html", hide_input=True).read_text()
    for page in (shown, hidden):
        assert page.count("<img") >= N_PLOTS and "data:image/png;base64," in page
        assert "Speed-up and acceptance" in page and "CoD had the higher acceptance" in page
        assert "require.min.js" not in page and "MathJax.js" not in page  # nothing fetched from the network
    text = {name: re.sub(r"<[^>]+>", "", page) for name, page in (("shown", shown), ("hidden", hidden))}
    assert "analysis.collect(profile, external" in text["shown"] and 'class="jp-InputPrompt' in shown
    assert "analysis.collect(" not in text["hidden"] and "record.save(" not in text["hidden"]
    assert 'class="jp-InputPrompt' not in hidden and 'class="jp-OutputPrompt' not in hidden and not re.search(r"Out\[\d+\]", text["hidden"])


def test_index_lists_failed_and_missing_runs_and_links_the_analysis(executed, monkeypatch):
    monkeypatch.setenv("WORKBOOK_HOME", str(executed["home"]))
    record.record_status(PROFILE, paths.PROFILE_RUN, "07_analysis", status="finished", seconds=1.0, error=None)
    reports.render_html(executed["ipynb"], executed["ipynb"].with_suffix(".html"))
    # as the runner calls it, for a subset of styles: the index still lists the whole grid
    index = reports.write_index(PROFILE, [("cot", "hard")], runner.stages_of, list(runner.PRE_STAGES + runner.POST_STAGES))
    page = index.read_text()

    def row(run):
        start = page.index(f'<tr id="run-{run}">')
        return page[start:page.index("</tr>", start)]

    assert 'class="st failed" title=' in row("cot_hard") and "RuntimeError: engine died" in row("cot_hard")
    assert 'class="st missing" title=' in row("cod_medium")
    assert 'class="st measured" title=' in row("cod_easy") and "68.8%" in row("cod_easy")
    assert '<a href="_profile/07_analysis.html">' in page
    assert "CoD had the higher acceptance" in page  # the analysis's findings
    assert io.read_json(index.parent / "analysis.json")["speedup"] == executed["figs"]["speedup"]


def test_compare_two_profiles_side_by_side(executed, monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBOOK_HOME", str(executed["home"]))
    reports.write_index(PROFILE)
    other = tmp_path / "elsewhere-reports"
    shutil.copytree(paths.reports_root(PROFILE), other)  # a report folder from another machine
    page = reports.compare(PROFILE, other).read_text()
    assert reports.compare(PROFILE, other).name == f"compare_{PROFILE}_vs_elsewhere-reports.html"
    assert "1 · Speed-up and acceptance" in page and "2 · Accuracy" in page and "3 · Tokens per answer" in page
    assert page.count(f"{syn.acceptance('cod', 'easy'):.1%}") >= 2  # both sides
    assert "difference (elsewhere-reports − tiny)" in page
    # a profile with no analysis and no runs: every cell a gap, not an error
    empty = reports.compare(PROFILE, "full").read_text()
    assert "full" in empty and "–" in empty
    assert reports.compare_pages(PROFILE)


def test_missing_column_is_a_clear_error(tmp_path):
    bad = tmp_path / "no_tokens.csv"
    bad.write_text(syn.study_csv_text(drop_column="tokens"))
    with pytest.raises(ValueError) as err:
        externals.read_external(str(bad))
    msg = str(err.value)
    assert "missing column(s) tokens" in msg
    assert "run_id, config_name, question, ground_truth, prediction, gt_extracted, pred_extracted, is_correct, tokens" in msg


def test_names_the_config_does_not_give_come_from_the_map_or_the_entry(tmp_path, home):
    csv = tmp_path / "runA.csv"
    rows = [",".join(syn.STUDY_HEADER), 'runA,runA,"Q1","#### 4","so #### 4",4,4,True,7',
            'runA,runA,"Q2","#### 5","#### 6",5,6,False,9']
    csv.write_text("\n".join(rows) + "\n")
    ext = externals.load_externals(PROFILE, [str(csv)], {"runA": {"style": "cod", "scenario": "medium", "pass": "speculative"}})
    assert set(zip(ext.samples["style"], ext.samples["scenario"], ext.samples["pass"])) == {("cod", "medium", "speculative")}
    ext = externals.load_externals(PROFILE, [{"path": str(csv), "label": "mine", "style": "cot", "scenario": "hard"}])
    assert ext.files.iloc[0]["pass_assumed"] == 2 and set(ext.samples["source"]) == {"external:mine"}
    runs = analysis.collect(PROFILE, ext)
    assert analysis.table_accuracy(runs).loc[("hard", "external:mine"), "cot baseline"] == 0.5
    assert externals.parse_config("cod_easy_benchmark_baseline") == {"style": "cod", "scenario": "easy", "pass": "baseline"}


def test_acceptance_interval_over_drafts_is_centred_on_the_rate():
    row = {"drafts": 100, "draft_tokens": 400, "accepted_tokens": 215, "accepted_per_pos": [80, 60, 45, 30]}
    draws, method = analysis.acceptance_draws(row, n=4000, seed=1)
    assert method == analysis.PER_DRAFT
    assert draws.mean() == pytest.approx(215 / 400, abs=0.005)
    inconsistent = {**row, "accepted_per_pos": [10, 60, 45, 30]}  # not a prefix table: falls back to binomial
    assert analysis.acceptance_draws(inconsistent)[1] == analysis.PER_TOKEN


def test_dropped_in_csvs_are_found_and_the_workbook_schema_is_read(home):
    """A CSV in data/<profile>/analysis/external/ is read without parameters; the workbook's own
    benchmark_samples.csv (from another machine) is accepted as an external input too."""
    rp = syn.write_run(PROFILE, "cod", "easy")
    drop = externals.external_dir(PROFILE)
    drop.mkdir(parents=True)
    shutil.copy(rp.samples_csv, drop / "gpu_box_cod_easy.csv")
    shutil.rmtree(rp.run_dir)  # only the dropped-in copy is left
    ext = externals.load_externals(PROFILE)
    assert ext.files.iloc[0]["schema"] == "workbook" and ext.files.iloc[0]["skipped"] == 0
    runs = analysis.collect(PROFILE, ext)
    table = analysis.table_accuracy(runs)
    assert table.loc[("easy", "external:gpu_box_cod_easy"), "cod baseline"] == syn.accuracy("cod", "easy", "baseline")
    assert pd.isna(table.loc[("easy", "workbook"), "cod baseline"])  # the workbook's own run is now a gap


def test_a_failed_redo_leaves_no_old_numbers_standing_as_current(home, monkeypatch):
    """A run that once finished every stage; `--redo` of its benchmark then fails. Its metrics
    on disk are the earlier attempt's: the index must not show them as the run's current
    numbers, nor the analysis count the run as measured."""
    for style in ("cot", "cod"):
        rp = syn.write_run(PROFILE, style, "easy")
        cfg = params.resolve(PROFILE, style, "easy")
        for stage in runner.stages_of(style):
            record.save(rp, stage, {}, cfg)
            record.record_status(PROFILE, rp.name, stage, status="finished")
    monkeypatch.setattr(runner, "execute", lambda stage, label, *a: runner.Outcome(label, stage, "failed", 1.0,
                                                                                    "RuntimeError: engine died"))
    result = runner.run_grid(PROFILE, ["cot"], ["easy"], ["06_benchmark"], redo=True, log=lambda msg: None)
    assert [(o.run, o.status) for o in result.outcomes] == [("cot_easy", "failed")]
    assert paths.RunPaths(PROFILE, "cot", "easy").metrics_json.exists()  # the earlier attempt's, still on disk

    rows = index_page.runs((paths.reports_root(PROFILE) / "index.html").read_text())
    redone, other = rows["cot_easy"], rows["cod_easy"]
    assert redone.state == "failed" and "engine died" in redone.note and "earlier attempt" in redone.note
    assert redone.stages["06"] == "failed"
    assert all("stale" in c.classes for c in redone.numbers.values())  # shown struck through, not as current
    assert redone.numbers["accuracy (baseline)"].text == f"{syn.accuracy('cot', 'easy', 'baseline'):.1%}"
    assert other.state != "failed" and not any("stale" in c.classes for c in other.numbers.values())
    assert other.numbers["accuracy (baseline)"].text == f"{syn.accuracy('cod', 'easy', 'baseline'):.1%}"

    runs = analysis.collect(PROFILE, n_boot=50).set_index("run")
    assert runs.loc["cot_easy", "state"] == "failed" and not runs.loc["cot_easy", "present"]
    assert "engine died" in runs.loc["cot_easy", "error"] and "earlier attempt" in runs.loc["cot_easy", "error"]
    assert runs.loc["cod_easy", "state"] == "measured"
    table = analysis.table_accuracy(runs.reset_index())
    assert pd.isna(table.loc[("easy", "workbook"), "cot baseline"])  # a gap, not the old number
    assert table.loc[("easy", "workbook"), "cod baseline"] == syn.accuracy("cod", "easy", "baseline")
