"""The analysis stage (07) on synthetic run outputs: the notebook executed through papermill
in a temporary home; the study's three tables read back from the figures JSON its last cell
writes; gaps for missing runs; an external CSV in the study's schema re-graded beside the
workbook's runs; the rendered HTML with and without code; the index page; the comparison."""

import re
import shutil

import index_page
import lineage
import pandas as pd
import pytest

from fixtures import synthetic as syn
from lib import analysis, answer, externals, io, params, paths, record, reports, runner, stats

PROFILE = syn.PROFILE
N_PLOTS = 8  # CoD vs CoT across trainings, acceptance by position, speed-up, tokens, accuracy, predicted vs measured, K sweep, losses
STUDY = "external:study_cot"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Synthetic runs (two scenarios partly measured, `hard` not at all, cot_hard failed), a
    study-schema CSV from elsewhere, and the analysis notebook executed on them."""
    import papermill as pm  # here, not at collection: the tests that use it are slow

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
            str(runner.notebook("07_analysis")),
            str(out),
            kernel_name="python3",
            progress_bar=False,
            cwd=str(paths.NOTEBOOKS),
            parameters={"profile": PROFILE, "external_csvs": [str(study)], "n_boot": 300},
        )
        yield {"home": home, "ipynb": out, "figs": record.load(PROFILE, "07_analysis"), "study": study}


@pytest.mark.slow  # `executed`: the analysis notebook in a Jupyter kernel
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
    assert figs["columns"]["accuracy"] == [
        "base (untrained)",
        "cot baseline",
        "cot + spec",
        "cod baseline",
        "cod + spec",
    ]
    assert set(wb_acc["easy"]) == set(figs["columns"]["accuracy"])


@pytest.mark.slow  # `executed`: the analysis notebook in a Jupyter kernel
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
    import nbformat

    nb = nbformat.read(str(executed["ipynb"]), as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []


@pytest.mark.slow  # `executed`: the analysis notebook in a Jupyter kernel
def test_external_csv_regraded_beside_the_workbook(executed):
    figs = executed["figs"]
    acc = figs["accuracy"][STUDY]
    # re-graded by the workbook's checker, not the study's is_correct (which credited a cut-off answer)
    assert acc["easy"]["cot baseline"] == pytest.approx(syn.STUDY_COT_EASY["baseline"])
    assert acc["easy"]["cot + spec"] == pytest.approx(syn.STUDY_COT_EASY["speculative"])
    assert acc["hard"]["base (untrained)"] == 0.0  # the study said 100%: its only output was cut off
    regrade = {(r["style"], r["scenario"], r["pass"]): r for r in figs["external"]["regrade"]}
    assert regrade[("cot", "easy", "baseline")]["accuracy (study's is_correct)"] == pytest.approx(
        syn.STUDY_COT_EASY_STUDY["baseline"]
    )
    assert regrade[("cot", "easy", "baseline")]["credited by study only"] == 1
    assert figs["tokens"][STUDY]["hard"]["base tokens"] == 512
    assert figs["speedup"][STUDY]["easy"]["cot acceptance"] is None  # a samples file has no acceptance
    assert figs["sources"] == ["workbook", STUDY]
    [f] = figs["external"]["files"]
    assert (f["schema"], f["used"], f["skipped"]) == ("study", 9, syn.STUDY_BAD_ROWS)
    assert figs["external"]["n_bad_rows"] == syn.STUDY_BAD_ROWS
    reasons = " | ".join(b["reason"] for b in figs["external"]["bad_rows"])
    assert (
        "not a non-negative integer" in reasons and "fields, expected 9" in reasons and "'misc_run' names no" in reasons
    )


@pytest.mark.slow  # `executed`: the analysis notebook in a Jupyter kernel
def test_findings_are_written_from_the_numbers(executed):
    findings = executed["figs"]["findings"]
    diff = (syn.acceptance("cod", "easy") - syn.acceptance("cot", "easy")) * 100
    [line] = [f for f in findings if f.startswith("easy: CoD had the higher acceptance")]
    assert f"CoD ahead by {diff:.1f} points" in line
    assert f"CoD {syn.acceptance('cod', 'easy'):.1%} [" in line  # with its interval
    assert any(f.startswith("Acceptance intervals are 95% bootstrap over prompts") for f in findings)
    assert any(f.startswith("easy/cot: speculation moved accuracy by +10.0 points [") for f in findings)
    assert any(
        f.startswith("Speculation did not change whether any answer was right in:") and "easy/cod" in f
        for f in findings
    )
    # issue 15: the cost model's prediction, the ceiling and the lossless floor are stated
    [pred] = [f for f in findings if f.startswith("Measured throughput speed-up was")]
    assert "measured step cost r" in pred and "within ±20 %" in pred
    assert any("the engine's ceiling is" in f and "no GPU profile" in f for f in findings)
    floors = [f for f in findings if "(the numerical floor)" in f]
    assert floors and all("equals itself under other batching for 100.0%" in f for f in floors)


@pytest.mark.slow  # `executed`: the analysis notebook in a Jupyter kernel
def test_every_plot_is_drawn_once(executed):
    """Every plot cell shows one image, and it is a plot: a plot without data shows a line of
    text instead (plots.NoData), never an image."""
    import nbformat

    nb = nbformat.read(str(executed["ipynb"]), as_version=4)
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == N_PLOTS
    plot_cells = [c for c in nb.cells if c.cell_type == "code" and "plots." in c.source]
    assert len(plot_cells) == N_PLOTS
    for cell in plot_cells:
        data = [o.get("data", {}) for o in cell.outputs]
        assert [d for d in data if "image/png" in d] and not [d for d in data if "text/markdown" in d], cell.source


def test_a_plot_without_data_is_text_not_an_image(home):
    """The placeholder each analysis plot shows without data: IPython renders it as a line of
    text (title and why), with no PNG; so counting images counts plots."""
    from types import SimpleNamespace

    from IPython.core.formatters import DisplayFormatter
    from IPython.core.pylabtools import select_figure_formats

    from lib import plots

    shell = SimpleNamespace(display_formatter=DisplayFormatter())  # formats as the notebook's kernel does
    select_figure_formats(shell, {"png"})
    empty = analysis.collect(PROFILE, n_boot=10).iloc[0:0]  # the right columns, no rows
    figures = [
        plots.acceptance_by_position_per_style(analysis.acceptance_positions(empty)),
        plots.speedup_intervals(empty, []),
        plots.token_distributions(pd.DataFrame(columns=["pass"]), []),
        plots.accuracy_bars(analysis.accuracy_long(empty), []),
        plots.predicted_vs_measured(empty),
        plots.k_sweep(analysis.k_sweep_frame(empty)),
        plots.training_losses(pd.DataFrame()),
    ]
    for fig in figures:
        data, _ = shell.display_formatter.format(fig)
        assert isinstance(fig, plots.NoData) and "image/png" not in data, type(fig)
        assert data["text/markdown"] == f"*{fig.title}: {fig.why}*" and fig.why


@pytest.mark.slow  # `executed`: the analysis notebook in a Jupyter kernel
def test_html_embeds_figures_and_hides_code_when_asked(executed, tmp_path):
    shown = reports.render_html(executed["ipynb"], tmp_path / "shown.html").read_text()
    hidden = reports.render_html(executed["ipynb"], tmp_path / "hidden.html", hide_input=True).read_text()
    for page in (shown, hidden):
        assert page.count("<img") == N_PLOTS and page.count('src="data:image/png;base64,') == N_PLOTS
        assert "Speed-up and acceptance" in page and "CoD had the higher acceptance" in page
        assert "require.min.js" not in page and "MathJax.js" not in page  # nothing fetched from the network
    text = {name: re.sub(r"<[^>]+>", "", page) for name, page in (("shown", shown), ("hidden", hidden))}
    assert "analysis.collect(profile, external" in text["shown"] and 'class="jp-InputPrompt' in shown
    assert "analysis.collect(" not in text["hidden"] and "record.save(" not in text["hidden"]
    assert (
        'class="jp-InputPrompt' not in hidden
        and 'class="jp-OutputPrompt' not in hidden
        and not re.search(r"Out\[\d+\]", text["hidden"])
    )


@pytest.mark.slow  # `executed`: the analysis notebook in a Jupyter kernel
def test_index_lists_failed_and_missing_runs_and_links_the_analysis(executed, monkeypatch):
    monkeypatch.setenv("WORKBOOK_HOME", str(executed["home"]))
    record.record_status(PROFILE, paths.PROFILE_RUN, "07_analysis", status="finished", seconds=1.0, error=None)
    reports.render_html(executed["ipynb"], executed["ipynb"].with_suffix(".html"))
    # as the runner calls it, for a subset of styles: the index still lists the whole grid
    index = reports.write_index(
        PROFILE, [("cot", "hard")], runner.stages_of, list(runner.PRE_STAGES + runner.POST_STAGES)
    )
    page = index.read_text()

    def row(run):
        start = page.index(f'<tr id="run-{run}">')
        return page[start : page.index("</tr>", start)]

    assert 'class="st failed" title=' in row("cot_hard") and "RuntimeError: engine died" in row("cot_hard")
    assert 'class="st missing" title=' in row("cod_medium")
    assert 'class="st measured" title=' in row("cod_easy") and "68.8%" in row("cod_easy")
    assert '<a href="_profile/07_analysis.html">' in page
    assert "CoD had the higher acceptance" in page  # the analysis's findings
    assert io.read_json(index.parent / "analysis.json")["speedup"] == executed["figs"]["speedup"]


@pytest.mark.slow  # `executed`: the analysis notebook in a Jupyter kernel
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
    assert (
        "run_id, config_name, question, ground_truth, prediction, gt_extracted, pred_extracted, is_correct, tokens"
        in msg
    )


def test_names_the_config_does_not_give_come_from_the_map_or_the_entry(tmp_path, home):
    csv = tmp_path / "runA.csv"
    rows = [
        ",".join(syn.STUDY_HEADER),
        'runA,runA,"Q1","#### 4","so #### 4",4,4,True,7',
        'runA,runA,"Q2","#### 5","#### 6",5,6,False,9',
    ]
    csv.write_text("\n".join(rows) + "\n")
    ext = externals.load_externals(
        PROFILE, [str(csv)], {"runA": {"style": "cod", "scenario": "medium", "pass": "speculative"}}
    )
    assert set(zip(ext.samples["style"], ext.samples["scenario"], ext.samples["pass"])) == {
        ("cod", "medium", "speculative")
    }
    ext = externals.load_externals(PROFILE, [{"path": str(csv), "label": "mine", "style": "cot", "scenario": "hard"}])
    assert ext.files.iloc[0]["pass_assumed"] == 2 and set(ext.samples["source"]) == {"external:mine"}
    runs = analysis.collect(PROFILE, ext)
    assert analysis.table_accuracy(runs).loc[("hard", "external:mine"), "cot baseline"] == 0.5
    assert externals.parse_config("cod_easy_benchmark_baseline") == {
        "style": "cod",
        "scenario": "easy",
        "pass": "baseline",
    }


def test_acceptance_interval_over_drafts_is_the_bootstrap_of_the_drafts_accepted_lengths():
    """By hand: of 100 drafts of K=4, [80, 60, 45, 30] had positions 1..4 accepted, so (acceptance
    being a prefix) 20 drafts accepted 0 tokens, 20 one, 15 two, 15 three and 30 four. Their mean
    length is 2.15, E[L^2] = (20*1 + 15*4 + 15*9 + 30*16) / 100 = 6.95, the variance 6.95 - 2.15^2
    = 2.3275. The rate is the mean length / 4: 0.5375 with standard error sqrt(2.3275/100)/4 =
    0.03815, so the 95% interval is about 0.5375 -+ 1.96 * 0.03815 = [0.4627, 0.6123]. Tokens
    treated as independent would give the narrower 0.5375 -+ 0.0489; constant draws none."""
    row = {"drafts": 100, "draft_tokens": 400, "accepted_tokens": 215, "accepted_per_pos": [80, 60, 45, 30]}
    draws, method = analysis.acceptance_draws(row, n=4000, seed=1)
    assert method == analysis.PER_DRAFT
    assert draws.mean() == pytest.approx(0.5375, abs=0.003)
    lo, hi = stats.quantiles(draws)
    assert lo == pytest.approx(0.4627, abs=0.006) and hi == pytest.approx(0.6123, abs=0.006)
    # not a prefix table: each drafted token an independent trial, 0.5375 -+ 1.96 * sqrt(0.5375 * 0.4625 / 400)
    inconsistent = {**row, "accepted_per_pos": [10, 60, 45, 30]}
    draws, method = analysis.acceptance_draws(inconsistent, n=4000, seed=1)
    assert method == analysis.PER_TOKEN
    lo, hi = stats.quantiles(draws)
    assert lo == pytest.approx(0.4886, abs=0.006) and hi == pytest.approx(0.5864, abs=0.006)


def _hand_run(profile: str) -> paths.RunPaths:
    """cot_easy measured on 4 prompts, every number chosen so the tests can work out by hand
    what the analysis must say (built through benchmark.summarize_pass / compare, the schema
    benchmark.run writes)."""
    from lib import benchmark

    k = 4
    rp = paths.RunPaths(profile, "cot", "easy")

    def samples(pass_, tpot, latencies, correct, accepted=None):
        return [
            {
                "pass": pass_,
                "id": f"p{i}",
                "question": f"q{i}",
                "ground_truth": "1",
                "output": f"#### {int(c)}",
                "pred": str(int(c)),
                "extraction": "hash",
                "correct": c,
                "finish_reason": "stop",
                "ttft_s": 0.01,
                "tpot_s": tpot,
                "latency_s": lat,
                "output_tokens": 10 * i + 11,
                "spec_drafts": None if accepted is None else 10,
                "spec_draft_tokens": None if accepted is None else 40,
                "spec_accepted_tokens": None if accepted is None else accepted[i],
            }
            for i, (lat, c) in enumerate(zip(latencies, correct))
        ]

    base = samples("baseline", 0.010, [1.0, 2.0, 3.0, 4.0], [True, True, False, False])
    spec = samples("speculative", 0.006, [0.5, 1.0, 2.0, 1.5], [True, False, True, True], accepted=[5, 10, 15, 20])
    none = {"drafts": 0, "draft_tokens": 0, "accepted_tokens": 0, "accepted_per_pos": []}
    drafted = {"drafts": 40, "draft_tokens": 160, "accepted_tokens": 50, "accepted_per_pos": [20, 15, 10, 5]}
    m_base = benchmark.summarize_pass(base, {"wall_s": 2.0, "counters": none, "peak_memory_mb": 1.0}, k, 100, 0)
    m_spec = benchmark.summarize_pass(spec, {"wall_s": 1.0, "counters": drafted, "peak_memory_mb": 1.0}, k, 100, 0)
    reps = [benchmark.repetition(m_base, m_spec, benchmark.PASSES, k)]
    metrics = {
        "run": rp.name,
        "k": k,
        "passes": {"baseline": m_base, "speculative": m_spec},
        "comparison": benchmark.compare(base, spec, m_base, m_spec, reps, k, 500, 0, floor=base),
        "k_sweep": [
            {"k": 2, "acceptance_rate": 0.0, "mean_acceptance_length": 1.0, "speedup_throughput": 0.8},
            {"k": 4, "acceptance_rate": 0.3125, "mean_acceptance_length": 2.25, "speedup_throughput": 2.0},
        ],
    }
    rp.run_dir.mkdir(parents=True, exist_ok=True)
    io.write_text(rp.samples_csv, pd.DataFrame(base + spec).to_csv(index=False))
    io.write_json(rp.metrics_json, metrics)
    return rp


def test_intervals_speedups_and_answers_moved_by_hand(home):
    _hand_run(PROFILE)
    runs = analysis.collect(PROFILE, n_boot=2000)
    r = runs.set_index("run").loc["cot_easy"]
    assert r["state"] == "measured"
    # acceptance: 50 of 160 drafted tokens; per prompt 5, 10, 15, 20 of 40 (0.125 .. 0.5)
    assert r["acceptance_rate"] == 50 / 160 and r["mean_acceptance_length"] == 1 + 50 / 40
    assert r["acceptance_ci_method"] == analysis.PER_PROMPT
    assert 0.125 <= r["acceptance_lo"] < 50 / 160 < r["acceptance_hi"] <= 0.5
    # latency speed-up: sum of baseline latencies over speculative ones, 10 / 5; per prompt the
    # ratio is 2, 2, 1.5 or 2.67, so every resample lies within [1.5, 2.67]
    assert r["speedup_latency"] == pytest.approx(2.0)
    assert 1.5 <= r["speedup_latency_lo"] < 2.0 < r["speedup_latency_hi"] <= 8 / 3
    # throughput: 104 tokens in 2 s, then in 1 s
    assert r["speedup"] == pytest.approx(2.0)
    # predicted: baseline steps 100 decode tokens at 0.010 s; speculative 100 - 50 accepted = 50
    # steps over 100 * 0.006 s, so 0.012 s a step and r = 1.2; a step yields 1 + (20+15+10+5)/50
    # = 2 tokens: 2 / 1.2 = 1.667; the ceiling (K+1)/r = 5 / 1.2
    assert r["step_cost_r"] == pytest.approx(1.2)
    assert r["predicted_speedup"] == pytest.approx(2 / 1.2)
    assert r["ceiling_speedup"] == pytest.approx(5 / 1.2)
    # answers: right/wrong per prompt baseline TTFF, speculative TFTT: +1 -1 +1 -> delta +0.25
    assert (r["n_paired"], r["n_gained"], r["n_lost"]) == (4, 2, 1)
    assert r["spec_accuracy_delta"] == pytest.approx(0.25)
    assert -1 <= r["spec_accuracy_delta_lo"] < 0.25 < r["spec_accuracy_delta_hi"] <= 1
    assert (r["accuracy_baseline"], r["accuracy_speculative"], r["tokens_per_answer"]) == (0.5, 0.75, 26.0)

    shown = analysis.intervals_display(runs).loc[("workbook", "easy", "cot")]
    assert shown["speed-up, latency [95%]"] == (
        f"2.00x [{r['speedup_latency_lo']:.2f}x, {r['speedup_latency_hi']:.2f}x]"
    )
    assert (
        shown["predicted"] == "1.67x (decode)" and shown["predicted, decode only"] == "1.67x"
    )  # no prefill timestamps here
    assert shown["ceiling (all accepted)"] == "4.17x"
    assert shown["prompts turned right / wrong"] == "2 / 1 of 4"
    assert shown["interval over"] == "prompts"


def test_k_sweep_frame_by_hand(home):
    _hand_run(PROFILE)
    sweep = analysis.k_sweep_frame(analysis.collect(PROFILE, n_boot=10))
    expected = pd.DataFrame(
        {
            "source": "workbook",
            "style": "cot",
            "scenario": "easy",
            "k": [2.0, 4.0],
            "acceptance": [0.0, 0.3125],
            "speedup": [0.8, 2.0],
            "mean_acceptance_length": [1.0, 2.25],
        }
    )
    pd.testing.assert_frame_equal(sweep, expected)
    # the other shapes a K sweep comes in: a mapping K -> entry, and entries nested as benchmark passes
    rows = pd.DataFrame(
        [
            {
                "source": "workbook",
                "style": "cod",
                "scenario": "easy",
                "present": True,
                "k_sweep": {"3": {"acceptance_rate": 0.5, "speedup": 1.5, "mean_acceptance_length": 2.5}},
            },
            {
                "source": "workbook",
                "style": "cot",
                "scenario": "easy",
                "present": True,
                "k_sweep": {
                    "points": [
                        {
                            "k": 1,
                            "passes": {
                                "speculative": {"spec": {"acceptance_rate": 0.25, "mean_acceptance_length": 1.25}}
                            },
                            "comparison": {"speedup_throughput": 1.1},
                        }
                    ]
                },
            },
            {"source": "workbook", "style": "base", "scenario": "easy", "present": False, "k_sweep": [{"k": 9}]},
        ]
    )
    expected = pd.DataFrame(
        {
            "source": "workbook",
            "style": ["cod", "cot"],
            "scenario": "easy",
            "k": [3.0, 1.0],
            "acceptance": [0.5, 0.25],
            "speedup": [1.5, 1.1],
            "mean_acceptance_length": [2.5, 1.25],
        }
    )
    pd.testing.assert_frame_equal(analysis.k_sweep_frame(rows), expected)


def test_training_losses_by_hand(home):
    rp = paths.RunPaths(PROFILE, "cod", "medium")
    io.write_json(
        rp.train_summary("target"),
        {
            "log_history": [
                {"step": 5, "loss": 2.0},
                {"step": 10, "loss": 1.5},
                {"step": 10, "eval_loss": 1.75},
                {"step": 10, "train_runtime": 3.0},
            ]
        },
    )
    io.write_json(rp.train_summary("draft"), {"log_history": [{"step": 4, "loss": 3.0, "eval_loss": 3.5}]})
    io.write_json(
        paths.RunPaths(PROFILE, "cot", "easy").train_summary("draft"), {"no": "history"}
    )  # unreadable: left out
    expected = pd.DataFrame(
        {
            "style": "cod",
            "scenario": "medium",
            "role": ["target", "target", "target", "draft", "draft"],
            "step": [5, 10, 10, 4, 4],
            "split": ["train", "train", "validation", "train", "validation"],
            "loss": [2.0, 1.5, 1.75, 3.0, 3.5],
        }
    )
    pd.testing.assert_frame_equal(analysis.training_losses(PROFILE), expected)


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


def _fail(stage, label, *args):
    return runner.Outcome(label, stage, "failed", 1.0, "RuntimeError: engine died")


def _interrupt(stage, label, *args):
    raise KeyboardInterrupt


@pytest.mark.parametrize("attempt, ended", [(_fail, "failed"), (_interrupt, "interrupted")])
def test_a_failed_redo_leaves_no_old_numbers_standing_as_current(home, monkeypatch, attempt, ended):
    """A run that once finished every stage; `--redo` of its benchmark then fails (or is
    stopped with Ctrl-C). Its metrics on disk are the earlier attempt's: the index must not show
    them as the run's current numbers, nor the analysis count the run as measured."""
    lineage.stage_done(PROFILE, "00_base_models", lineage.profile_cfg(PROFILE))
    for style in ("cot", "cod"):
        rp = syn.write_run(PROFILE, style, "easy")
        cfg = params.resolve(PROFILE, style, "easy")
        for stage in runner.stages_of(style):  # every earlier stage's files by hand, the benchmark's synthetic
            lineage.stage_done(rp, stage, cfg) if stage != "06_benchmark" else record.save(rp, stage, {}, cfg)
            record.record_status(PROFILE, rp.name, stage, status="finished")
    monkeypatch.setattr(runner, "execute", attempt)
    result = runner.run_grid(PROFILE, ["cot"], ["easy"], ["06_benchmark"], redo=True, log=lambda msg: None)
    assert [(o.run, o.status) for o in result.outcomes] == [("cot_easy", ended)]
    cause = "engine died" if ended == "failed" else "Ctrl-C"
    assert paths.RunPaths(PROFILE, "cot", "easy").metrics_json.exists()  # the earlier attempt's, still on disk

    rows = index_page.runs((paths.reports_root(PROFILE) / "index.html").read_text())
    redone, other = rows["cot_easy"], rows["cod_easy"]
    assert redone.state == ended and cause in redone.note and "not current" in redone.note
    assert redone.stages["06"] == ended
    assert all("stale" in c.classes for c in redone.numbers.values())  # shown struck through, not as current
    assert redone.numbers["accuracy (baseline)"].text == f"{syn.accuracy('cot', 'easy', 'baseline'):.1%}"
    assert other.state != "failed" and not any("stale" in c.classes for c in other.numbers.values())
    assert other.numbers["accuracy (baseline)"].text == f"{syn.accuracy('cod', 'easy', 'baseline'):.1%}"

    runs = analysis.collect(PROFILE, n_boot=50).set_index("run")
    assert runs.loc["cot_easy", "state"] == ended and not runs.loc["cot_easy", "present"]
    assert cause in runs.loc["cot_easy", "error"] and "not current" in runs.loc["cot_easy", "error"]
    assert runs.loc["cod_easy", "state"] == "measured"
    table = analysis.table_accuracy(runs.reset_index())
    assert pd.isna(table.loc[("easy", "workbook"), "cot baseline"])  # a gap, not the old number
    assert table.loc[("easy", "workbook"), "cod baseline"] == syn.accuracy("cod", "easy", "baseline")


@pytest.mark.slow  # `executed`: the analysis notebook in a Jupyter kernel
def test_page_opens_on_this_executions_results_never_an_earlier_attempts(executed, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_HOME", str(executed["home"]))
    page = reports.render_html(executed["ipynb"], tmp_path / "page.html").read_text()
    first_finding = executed["figs"]["findings"][0]
    # the summary and the findings come before the first code cell
    body = page[page.index("<body") :]
    plain = max(re.findall(r"[A-Za-z ]+", first_finding[:60]), key=len)  # markdown re-encodes quotes and dashes
    assert body.index("What this execution recorded") < body.index(plain) < body.index("jp-CodeCell")
    # figures older than the execution (an earlier attempt's), or an execution that raised: no summary
    import nbformat

    nb = nbformat.read(str(executed["ipynb"]), as_version=4)
    stale = {**executed["figs"], "finished_at": 1.0}
    io.write_json(paths.profile_figures(PROFILE, "07_analysis"), stale)
    assert reports.results_markdown(nb, "07_analysis") is None
    io.write_json(paths.profile_figures(PROFILE, "07_analysis"), executed["figs"])
    summary = reports.results_markdown(nb, "07_analysis")
    assert first_finding in summary and "| " + " | ".join(answer.HEADER) + " |" in summary  # the answer, then its table
    nb.metadata.papermill["exception"] = True
    assert reports.results_markdown(nb, "07_analysis") is None
