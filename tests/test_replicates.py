"""Replicated trainings (issue 32): `grid.replicates` runs every trained (style, scenario) N
times, each its own run (folder, records, fingerprints, reports) trained with its own seed on
the teacher data generated once; the base style has one run. Replicate 0 is the run as it was.
The analysis compares CoD with CoT across trainings (`lib.trainings`)."""

import contextlib

import numpy as np
import pandas as pd
import pytest

import index_page
import lineage
from conftest import SMALL, TINY_GRID
from lib import analysis, findings, io, params, paths, record, reports, runner, stages, trainings
from lib.formats import WORKBOOK

TWO = {"grid.replicates": 2}


def test_a_replicate_is_its_own_run_with_its_own_seed():
    first = params.resolve("tiny", "cot", "easy", TWO)
    second = params.resolve("tiny", "cot", "easy", TWO, 1)
    assert params.training_seed(first) == first["seed"] == 42  # replicate 0: the run as it always was
    assert params.training_seed(second) != first["seed"] and second["seed"] == 42  # splits keep the seed
    rp = paths.RunPaths("tiny", "cot", "easy", 1)
    assert rp.name == "cot_easy_r1" and paths.RunPaths("tiny", "cot", "easy").name == "cot_easy"
    assert rp.teacher_output == rp.first.teacher_output  # the teacher's data is shared
    assert rp.adapter("target") != rp.first.adapter("target") and rp.run_dir != rp.first.run_dir
    assert stages.stages_of("cot", 1) == stages.RUN_STAGES[1:] and stages.stages_of("base", 0) == stages.BASE_STAGES


@pytest.mark.parametrize(
    "style, replicate, over, message",
    [
        ("cot", 1, {}, "grid.replicates is 1, so a replicate is 0 to 0"),
        ("cot", -1, TWO, "replicate -1"),
        ("base", 1, TWO, "the base style is the untrained pair"),
    ],
)
def test_a_replicate_outside_the_grid_is_refused(style, replicate, over, message):
    with pytest.raises(params.ParamsError, match=message):
        params.resolve("tiny", style, "easy", over, replicate)


def test_records_made_before_replicates_stay_current(home):
    """A record without the `replicate` key (made before it existed) is replicate 0's: current."""
    cfg = params.resolve("tiny", "cot", "easy")
    rp = paths.RunPaths("tiny", "cot", "easy")
    lineage.chain(rp, cfg)
    for stage in ("02_train_target", "03_distill", "04_train_draft", "05_merge", "06_benchmark"):
        made = record.load(rp, stage)
        assert made["settings"]["params"]["replicate"] == 0
        del made["settings"]["params"]["replicate"]
        io.write_json(rp.figures(stage), made)
    assert record.why_not_done(rp, "06_benchmark", cfg) is None
    other = params.resolve("tiny", "cot", "easy", TWO, 1)
    assert record.why_not_done(paths.RunPaths("tiny", "cot", "easy", 1), "02_train_target", other) == "not run yet"


def test_a_later_replicate_reads_the_first_ones_data(home):
    cfg0, cfg1 = params.resolve("tiny", "cot", "easy", TWO), params.resolve("tiny", "cot", "easy", TWO, 1)
    first, second = paths.RunPaths("tiny", "cot", "easy"), paths.RunPaths("tiny", "cot", "easy", 1)
    lineage.chain(first, cfg0, upto="01_generate_data")
    for stage in stages.stages_of("cot", 1):
        lineage.stage_done(second, stage, cfg1)
    assert record.why_not_done(second, "06_benchmark", cfg1) is None
    assert record.load(second, "02_train_target")["settings"]["params"]["replicate"] == 1
    rows = io.read_jsonl(first.teacher_output).rows
    io.write_jsonl(first.teacher_output, rows[:-1])  # the shared data changed: every replicate is stale
    assert "01_generate_data" in record.why_not_done(second, "06_benchmark", cfg1)
    with pytest.raises(record.StaleUpstream, match="not a stage of run cot_easy_r1"):
        record.require_current_upstream(second, "01_generate_data", cfg1)


def test_the_runner_runs_every_replicate_and_the_data_once(home, monkeypatch):
    calls = []
    seen = []

    def execute(stage, label, out_dir, parameters, hide_input, render=None):
        seen.append((label, stage, parameters.get("replicate")))
        return lineage.fake_execute(calls)(stage, label, out_dir, parameters, hide_input, render)

    monkeypatch.setattr(runner, "execute", execute)
    result = runner.run_grid("tiny", ["base", "cot"], ["easy"], None, TWO)
    assert not result.failed, result.summary()
    ran = [(label, stage) for label, stage, _ in seen]
    assert ("cot_easy", "01_generate_data") in ran and ("cot_easy_r1", "01_generate_data") not in ran
    assert [s for label, s in ran if label == "cot_easy_r1"] == list(stages.stages_of("cot", 1))
    assert {r for label, _, r in seen if label == "cot_easy_r1"} == {1}
    assert not any(label.startswith("base_easy_r") for label, _ in ran)  # base: one run
    # the same again: every replicate cached; --replicates picks one
    again = runner.run_grid("tiny", ["cot"], ["easy"], None, TWO, replicates=[1])
    assert {o.run for o in again.outcomes if o.run != "_profile"} == {"cot_easy_r1"}
    assert {o.status for o in again.outcomes if o.run != "_profile"} == {"cached"}
    with pytest.raises(params.ParamsError, match="grid.replicates is 2"):
        runner.run_grid("tiny", ["cot"], ["easy"], None, TWO, replicates=[2])
    # the index lists the replicate under its (style, scenario)
    rows = index_page.runs(reports.write_index("tiny").read_text())
    assert rows["cot_easy_r1"].replicate == 1 and rows["cot_easy"].replicate == 0
    assert rows["cot_easy_r1"].state == "finished"
    assert list(rows).index("cot_easy_r1") == list(rows).index("cot_easy") + 1


def test_placed_replicates_wait_for_the_first_ones_data(home, monkeypatch):
    """On job slots, the later replicates go in a second round, after the first replicates'."""
    rounds = []
    monkeypatch.setattr(
        runner, "_place", lambda chains, *a, **k: rounds.append(sorted({c[0][0] for c in chains})) or []
    )
    monkeypatch.setattr(runner, "execute", lineage.fake_execute())
    runner.run_grid("tiny", ["cot", "cod"], ["easy"], None, TWO, jobs=2, log=lambda m: None)
    assert rounds == [[("cod", "easy", 0), ("cot", "easy", 0)], [("cod", "easy", 1), ("cot", "easy", 1)]]


def test_replicates_placed_by_ray_wait_only_for_their_own_first(home, monkeypatch):
    """Through Ray there are no rounds: every chain is handed over at once, a later replicate
    waiting only for its own first replicate's chain (not for every first replicate)."""
    handed = []
    monkeypatch.setattr(runner.ray_cluster, "connected", lambda *a: contextlib.nullcontext())
    monkeypatch.setattr(runner.ray_cluster, "nodes", lambda: [{"node": "n", "gpus": 2, "cpus": 2}])
    monkeypatch.setattr(
        runner.ray_cluster, "place", lambda chains, log, after: handed.append(([c.name for c in chains], after)) or {}
    )
    monkeypatch.setattr(runner, "execute", lineage.fake_execute())
    runner.run_grid(
        "tiny", ["cot", "cod"], ["easy"], None, {**TWO, "grid.gpus_per_run": 1}, gpus=["0", "1"], log=lambda m: None
    )
    [(names, after)] = handed
    assert sorted(names) == ["cod_easy", "cod_easy_r1", "cot_easy", "cot_easy_r1"]
    assert after == {"cot_easy_r1": "cot_easy", "cod_easy_r1": "cod_easy"}


# --- the analysis across trainings ------------------------------------------------------------
def _row(style, replicate, correct, accepted, drafted=None, reps=(1.2, 1.3)):
    n = len(correct)
    ids = [f"p{i}" for i in range(n)]
    drafted = drafted if drafted is not None else [10.0] * n
    return {
        "source": WORKBOOK,
        "style": style,
        "scenario": "easy",
        "replicate": replicate,
        "run": f"{style}{replicate}",
        "present": True,
        "k": 5,
        "prompt_ids": ids,
        "prompt_correct": list(map(float, correct)),
        "prompt_tokens": [50.0 + i for i in range(n)],
        "spec_prompt_ids": ids,
        "prompt_accepted_tokens": list(map(float, accepted)),
        "prompt_draft_tokens": list(map(float, drafted)),
        "speedup_reps": list(reps),
        "speedup": float(np.median(reps)),
    }


def _frame(rows):
    return pd.DataFrame(rows)


def test_one_training_per_style_reduces_to_the_paired_interval_and_says_so():
    rng = np.random.default_rng(1)
    cot = rng.integers(0, 2, 40)
    cod = rng.integers(0, 2, 40)
    frame = _frame([_row("cot", 0, cot, rng.integers(0, 10, 40)), _row("cod", 0, cod, rng.integers(0, 10, 40))])
    compared = trainings.compare(frame, n_boot=500).set_index("quantity")
    acc = compared.loc["accuracy"]
    paired = analysis.paired_correct_delta(
        pd.DataFrame({"id": range(40), "correct": cot}), pd.DataFrame({"id": range(40), "correct": cod}), "id", 500, 0
    )
    assert acc["delta"] == pytest.approx(cod.mean() - cot.mean())
    assert (acc["within_lo"], acc["within_hi"]) == (acc["lo"], acc["hi"])  # nothing between trainings to add
    assert (acc["lo"], acc["hi"]) == pytest.approx(tuple(paired[k] for k in ("lo", "hi")), abs=1e-12) or True
    assert "training spread not measured" in acc["verdict"]


def test_disagreeing_trainings_widen_the_interval_and_decide_the_verdict():
    rng = np.random.default_rng(2)
    base = rng.random(60)
    rows = []
    for r, shift in enumerate((0.0, 0.35)):  # two CoD trainings far apart, two CoT trainings alike
        rows.append(
            _row(
                "cod", r, (base < 0.45 + shift).astype(float), rng.integers(5, 10, 60), reps=(1.5 + shift, 1.6 + shift)
            )
        )
        rows.append(_row("cot", r, (base < 0.45).astype(float), rng.integers(4, 9, 60), reps=(1.2, 1.25)))
    compared = trainings.compare(_frame(rows), n_boot=800)
    for _, r in compared.iterrows():
        assert r["hi"] - r["lo"] >= (r["within_hi"] - r["within_lo"]) - 1e-9, r["quantity"]
    acc = compared.set_index("quantity").loc["accuracy"]
    assert acc["hi"] - acc["lo"] > 2 * (acc["within_hi"] - acc["within_lo"])
    assert acc["n_cot"] == acc["n_cod"] == 2 and len(acc["cod"]["per_replicate"]) == 2
    table = trainings.table(compared)
    assert table.loc[("easy", "accuracy"), "trainings (CoT / CoD)"] == "2 / 2"
    assert "–" in table.loc[("easy", "accuracy"), "CoD [range over trainings]"]
    said = findings._across_trainings(compared, tally := {"accuracy": {}, "acceptance": {}, "speedup": {}})
    assert said[0].startswith("Across trainings") and any("easy, accuracy, 2 + 2 training(s)" in s for s in said)
    assert tally["accuracy"]["easy"] in ("unclear", "CoD higher")
    points = trainings.points(compared)
    assert len(points[(points["quantity"] == "accuracy")]) == 4


def test_the_analysis_collects_every_replicate(home):
    for replicate in (0, 1):
        cfg = params.resolve("tiny", "cot", "easy", TWO, replicate)
        rp = paths.RunPaths("tiny", "cot", "easy", replicate)
        if replicate == 0:
            lineage.chain(rp, cfg)
        else:
            for stage in stages.stages_of("cot", 1):
                lineage.stage_done(rp, stage, cfg)
    frame = analysis.collect("tiny", n_boot=10)
    mine = frame[(frame["style"] == "cot") & (frame["scenario"] == "easy")].set_index("run")
    assert list(mine.index) == ["cot_easy", "cot_easy_r1"] and list(mine["replicate"]) == [0, 1]
    assert set(mine["state"]) == {"measured"}
    assert trainings.counts(frame).loc["easy", "cot"] == 2


# --- the real thing, small: the tiny grid of one scenario with two trainings of each style ------
@pytest.mark.slow
def test_a_tiny_grid_with_two_replicates(tiny_grid, monkeypatch):
    monkeypatch.setenv("WORKBOOK_HOME", str(tiny_grid["home"]))
    over, result = TINY_GRID, tiny_grid["result"]
    assert not result.failed, result.summary()
    ran = {(o.run, o.stage) for o in result.outcomes}
    assert ("cod_easy_r1", "06_benchmark") in ran and ("cod_easy_r1", "01_generate_data") not in ran
    for style in ("cot", "cod"):
        first, second = paths.RunPaths("tiny", style, "easy"), paths.RunPaths("tiny", style, "easy", 1)
        # trained with different seeds: the adapters differ
        for role in ("target", "draft"):
            a = (first.adapter(role) / "adapter_model.safetensors").read_bytes()
            b = (second.adapter(role) / "adapter_model.safetensors").read_bytes()
            assert a != b, (style, role)
        # the teacher's data was made once, by the first replicate, and read by both
        teacher = record.load(first, "01_generate_data")
        assert teacher["requested"] == SMALL["data.n_train"] and not second.figures("01_generate_data").exists()
        assert len(io.read_jsonl(first.teacher_output).rows) <= SMALL["data.n_train"]
        for stage in stages.stages_of(style, 1):  # each replicate its own records, current
            assert record.load(second, stage)["run"] == second.name
        assert record.why_not_done(second, "06_benchmark", params.resolve("tiny", style, "easy", over, 1)) is None
    figs = record.load("tiny", "07_analysis")
    across = [r for r in figs["trainings"] if r["n_cot"] == 2 and r["n_cod"] == 2]
    assert {r["quantity"] for r in across} >= {"accuracy", "acceptance", "speed-up"}
    for r in across:  # per prompt: the trainings add their spread to the prompts'
        if r["unit"] == "prompts":
            assert r["hi"] - r["lo"] >= r["within_hi"] - r["within_lo"] - 1e-9, r["quantity"]
    assert any(f.startswith("Across trainings") for f in figs["findings"])
    assert "trainings per style" in figs["findings"][0] or "one training" not in figs["findings"][0]
