"""Findings written from the numbers: the styles' accuracy, read from synthetic runs whose
every number the fixture chose (tests/fixtures/synthetic.py)."""

import numpy as np
import pytest
from fixtures import synthetic as syn
from lib import analysis, findings, io, paths
from lib.paths import RunPaths
from lib.stats import least_rank_test_p, quantiles, rank_test_p, resampled_means


def test_accuracy_of_each_style_is_stated_with_its_interval_and_the_cod_cot_verdict(home):
    syn.write_grid(syn.PROFILE)
    frame = analysis.collect(syn.PROFILE, n_boot=200)
    lines = findings.findings(frame, n_boot=200)
    [easy] = [f for f in lines if f.startswith("easy: held-out accuracy of the target alone")]
    # the baseline pass (the target alone), not the speculative one: cot easy is 6/10 alone, 7/10 with a draft
    for style, name in (("base", "base"), ("cot", "CoT"), ("cod", "CoD")):
        assert f"{name} {syn.accuracy(style, 'easy', 'baseline'):.1%} [" in easy
    diff = (syn.accuracy("cod", "easy", "baseline") - syn.accuracy("cot", "easy", "baseline")) * 100
    # paired over the ten prompts both answered: CoD right on prompts 0-7, CoT on 0-5
    assert (
        f"CoD − CoT {diff:+.1f} [" in easy
        and "over the 10 prompts both answered: 2 right only with CoD, 0 only with CoT" in easy
    )
    assert easy.endswith("the interval includes zero: no clear difference.")  # 2 of 10 prompts differ
    [medium] = [f for f in lines if f.startswith("medium: held-out accuracy")]
    assert "CoD" not in medium and "CoT 50.0% [" in medium  # cod_medium is a gap: no verdict
    assert any(f.startswith("These accuracy intervals resample the held-out prompts") for f in lines)
    table = analysis.table_style_accuracy(frame)  # notebook 07's paired table: easy only (cod_medium is a gap)
    assert list(table.index) == [("easy", "workbook")]
    assert table.iloc[0].tolist()[1:] == ["2 / 0", 10] and table.iloc[0, 0].startswith(f"{diff:+.1f} [")

    for style in ("cot", "cod"):  # without per-sample files: the two separate intervals, said so
        RunPaths(syn.PROFILE, style, "easy").samples_csv.unlink()
    lines = findings.findings(analysis.collect(syn.PROFILE, n_boot=200), n_boot=200)
    [easy] = [f for f in lines if f.startswith("easy: held-out accuracy of the target alone")]
    assert (
        f"CoD − CoT {diff:+.1f} points (no per-sample files to pair them), the intervals overlap: no clear difference"
        in easy
    )


def test_cod_against_cot_accuracy_is_paired_over_the_prompts_both_answered():
    """Both styles answer the same held-out prompts: a difference the two separate intervals
    cannot see (they overlap) the paired interval does, and the verdict follows it."""
    import pandas as pd

    n = 200
    ids = [f"medium-{i:03d}" for i in range(n)]
    cot = pd.DataFrame({"id": ids, "correct": [i < 100 for i in range(n)]})  # 50 %
    cod = pd.DataFrame({"id": ids, "correct": [i < 85 for i in range(n)]})  # 42.5 %: 15 prompts lost, none gained
    paired = analysis.paired_style_delta(cot, cod.sample(frac=1, random_state=0), n=2000)  # order must not matter
    assert paired["style_n_paired"] == n and (paired["style_n_cod_only"], paired["style_n_cot_only"]) == (0, 15)
    assert paired["style_accuracy_delta"] == pytest.approx(-0.075) and paired["style_accuracy_delta_hi"] < 0

    def row(style, acc, extra=None):
        lo, hi = quantiles(resampled_means([1.0] * int(acc * n) + [0.0] * (n - int(acc * n)), 2000))
        return {
            "source": "workbook",
            "scenario": "medium",
            "style": style,
            "accuracy_baseline": acc,
            "accuracy_baseline_ci95": (lo, hi),
            **(extra or {}),
        }

    frame = pd.DataFrame([row("cot", 0.5), row("cod", 0.425, paired)])
    assert frame.loc[1, "accuracy_baseline_ci95"][1] > frame.loc[0, "accuracy_baseline_ci95"][0]  # they overlap
    tally = {"accuracy": {}}
    [line, _caveat] = findings._accuracy_by_style(frame, tally)
    assert "CoD − CoT -7.5 [" in line and "0 right only with CoD, 15 only with CoT), CoD cost accuracy." in line
    assert tally["accuracy"] == {"medium": "CoD lower"}


def test_cod_against_cot_speed_up_is_decided_by_the_repetitions_not_the_prompt_interval():
    import pandas as pd

    def row(speedup, lo, hi, lat, lat_lo, lat_hi, reps=2):
        return pd.Series(
            {
                "speedup": speedup,
                "speedup_lo": lo,
                "speedup_hi": hi,
                "repetitions": reps,
                "speedup_latency": lat,
                "speedup_latency_lo": lat_lo,
                "speedup_latency_hi": lat_hi,
            }
        )

    # the H200's medium pair: latency intervals far apart, repetitions overlapping
    cot, cod = row(1.09, 0.58, 1.60, 0.78, 0.76, 0.79), row(0.91, 0.73, 1.09, 1.17, 1.15, 1.19)
    thr, lat = findings._speedup_by_style("medium", cot, cod)
    assert "the ranges overlap, not resolved" in thr and "CoD [0.73, 1.09], CoT [0.58, 1.60]" in thr
    assert "not the run-to-run spread" in lat and "do not overlap" not in lat
    apart, _ = findings._speedup_by_style("easy", row(0.76, 0.67, 0.84, 1, 1, 1), row(1.23, 1.18, 1.27, 1, 1, 1))
    assert "the ranges do not overlap" in apart
    single, _ = findings._speedup_by_style(
        "easy", row(0.76, 0.76, 0.76, 1, 1, 1, reps=1), row(1.23, 1.23, 1.23, 1, 1, 1, reps=1)
    )
    assert "fewer than two repetitions" in single and "do not overlap" not in single


def test_cod_against_cot_speed_up_is_a_rank_test_over_the_repetitions_not_their_ranges():
    """Ranges only widen as repetitions are added, so "do the ranges overlap" grew stricter the
    more was measured; the rank test over both runs' repetitions does not, and it says when
    there are too few repetitions for any answer."""
    import pandas as pd

    def row(reps):
        return pd.Series(
            {
                "speedup": float(np.median(reps)),
                "speedup_lo": min(reps),
                "speedup_hi": max(reps),
                "repetitions": len(reps),
                "speedup_reps": list(reps),
                "speedup_latency": float("nan"),
            }
        )

    # eight repetitions each, ranges overlapping, CoD's mostly above: told apart
    cot = row([0.80, 0.95, 1.00, 1.05, 1.10, 1.12, 1.15, 1.40])
    cod = row([1.10, 1.20, 1.25, 1.30, 1.35, 1.40, 1.45, 1.50])
    tally = {"speedup": {}}
    [thr] = findings._speedup_by_style("medium", cot, cod, tally)
    p = rank_test_p(cod["speedup_reps"], cot["speedup_reps"])
    assert p < 0.05 and cod["speedup_lo"] < cot["speedup_hi"]  # the ranges overlap, the ranks do not
    assert f"rank test over the 8 + 8 repetitions p = {p:.2f}: CoD faster" in thr and tally["speedup"] == {
        "medium": "CoD faster"
    }
    # the session-8 easy pair (four each, overlapping): not resolved
    [thr] = findings._speedup_by_style("easy", row([1.15, 1.21, 1.35, 1.87]), row([1.00, 1.29, 1.35, 1.53]), tally)
    assert "rank test over the 4 + 4 repetitions p = " in thr and "not resolved by these repetitions" in thr
    assert tally["speedup"]["easy"] == "unclear" and "cannot go below" not in thr
    # two each, wholly apart: the test cannot answer, and says how many would
    [thr] = findings._speedup_by_style("hard", row([0.7, 0.8]), row([1.2, 1.3]), tally)
    assert "p = 0.33: not resolved" in thr and "cannot go below p = 0.33: four repetitions each" in thr
    assert tally["speedup"]["hard"] == "unclear"


def test_rank_test_is_exact_for_small_groups_and_sampled_past_the_limit():
    assert rank_test_p([1, 2, 3, 4], [5, 6, 7, 8]) == pytest.approx(2 / 70) == least_rank_test_p(4, 4)
    assert least_rank_test_p(2, 2) == pytest.approx(1 / 3) and least_rank_test_p(3, 3) == pytest.approx(0.1)
    assert rank_test_p([1, 2, 3], [1, 2, 3]) == 1.0  # ties: midranks, nothing apart
    a, b = [0.9, 1.1, 1.3, 1.2, 0.8, 1.0], [1.25, 1.4, 1.35, 1.5, 1.05, 1.45]
    assert rank_test_p(a, b) == rank_test_p(b, a)
    assert rank_test_p(a, b, exact_limit=10, draws=40_000) == pytest.approx(rank_test_p(a, b), abs=0.01)


def test_synthetic_grid_states_the_speed_up_of_both_styles(home):
    syn.write_grid(syn.PROFILE)
    lines = findings.findings(analysis.collect(syn.PROFILE, n_boot=200), n_boot=200)
    [easy] = [f for f in lines if f.startswith("easy: throughput speed-up CoD")]
    assert "fewer than two repetitions" in easy  # the fixture writes one repetition per run: a range of one point


def test_the_prediction_sentence_says_what_the_prediction_counted():
    import pandas as pd

    def frame(bases):
        return pd.DataFrame(
            {
                "speedup": [1.0] * len(bases),
                "predicted_speedup": [1.1] * len(bases),
                "prediction_basis": bases,
                "occupancy_ratio": [None] * len(bases),
                "busy_occupancy_ratio": [None] * len(bases),
                "ceiling_speedup": [None] * len(bases),
                "step_cost_r": [None] * len(bases),
                "floor_speedup": [None] * len(bases),
                "order_effect": [None] * len(bases),
            }
        )

    [old] = findings._cost_model(frame(["decode", "decode"]))
    assert "decode steps only" in old and "first token" not in old and "within ±20 % in 2 of 2" in old
    [new] = findings._cost_model(frame(["decode + prefill"]))
    assert "each request's time to its first token" in new and "where the engine" not in new
    # Mixed (the H200's earlier sessions had no timestamps): one sentence per basis, each its own count.
    with_prefill, decode_only = findings._cost_model(
        frame(["decode", "decode + prefill", "decode + prefill"]).assign(speedup=[0.5, 1.0, 1.0])
    )
    assert "equally busy in both passes), over 2 run(s); within ±20 % in 2 of 2" in with_prefill
    assert "decode steps only" in decode_only and "over 1 run(s); within ±20 % in 0 of 1" in decode_only
    # The schedule (requests placed in the engine's slots) first, each basis its own count.
    scheduled, busy = findings._cost_model(
        frame(["schedule", "schedule", "decode + prefill"]).assign(speedup=[1.0, 0.5, 1.0])
    )
    assert "placed in the engine's slots in the order sent, over 2 run(s); within ±20 % in 1 of 2" in scheduled
    assert "equally busy" in busy and "over 1 run(s)" in busy


def test_the_floor_sentence_gives_kernel_time_over_kernel_time_and_the_busy_share():
    import pandas as pd

    row = {
        "speedup": 1.0,
        "predicted_speedup": 1.1,
        "prediction_basis": "decode + prefill",
        "occupancy_ratio": None,
        "busy_occupancy_ratio": None,
        "ceiling_speedup": 1.67,
        "step_cost_r": 4.8,
        "floor_speedup": 2.38,
        "r_floor": 3.02,
        "gpu_busy_share": 0.37,
        "order_effect": None,
    }
    lines = findings._cost_model(pd.DataFrame([row]))
    [floor] = [x for x in lines if "ceiling" in x]
    assert "r 3.02: a speculative step's GPU-busy time over a target step's), it would be 2.38x" in floor
    [share] = [x for x in lines if x.startswith("The GPU was busy")]
    assert "37% of a target step at batch 1" in share
    two = findings._cost_model(
        pd.DataFrame([row, {**row, "r_floor": 2.5, "floor_speedup": 2.9, "gpu_busy_share": 0.4}])
    )
    assert any("(r 2.50–3.02:" in x and "2.38x–2.90x" in x for x in two) and any("37%–40%" in x for x in two)
    lines = findings._cost_model(
        pd.DataFrame([{**row, "floor_speedup": None, "r_floor": None, "gpu_busy_share": None}])
    )
    assert any("no GPU profile: no hardware floor" in x for x in lines) and not any("was busy" in x for x in lines)
    assert not any("Repetition order" in x for x in lines)


def test_repetition_order_is_measured_and_said():
    import pandas as pd

    reps = [
        {"order": ["baseline", "speculative"], "speedup_throughput": 0.5},
        {"order": ["speculative", "baseline"], "speedup_throughput": 2.0},
        {"order": ["baseline", "speculative"], "speedup_throughput": 2.0},
        {"order": ["speculative", "baseline"], "speedup_throughput": 2.0},
    ]
    assert analysis.order_effect(reps) == pytest.approx(2.0)  # geometric means: 2.0 over 1.0
    assert analysis.order_effect(reps[::2]) is None  # one order only
    frame = pd.DataFrame(
        {
            "speedup": [1.0, 1.0],
            "predicted_speedup": [None, None],
            "occupancy_ratio": [None, None],
            "busy_occupancy_ratio": [None, None],
            "ceiling_speedup": [None, None],
            "step_cost_r": [None, None],
            "floor_speedup": [None, None],
            "prediction_basis": [None, None],
            "order_effect": [2.0, 0.8],
        }
    )
    [said] = [x for x in findings._cost_model(frame) if x.startswith("Repetition order")]
    assert "in 1 of 2 run(s)" in said and "0.80–2.00, median 1.40" in said


def test_the_lone_tail_is_said_with_measured_over_predicted_without_it():
    import pandas as pd

    row = {
        "speedup": 0.75,
        "predicted_speedup": 1.0,
        "prediction_basis": "decode + prefill",
        "occupancy_ratio": None,
        "busy_occupancy_ratio": None,
        "ceiling_speedup": None,
        "step_cost_r": None,
        "floor_speedup": None,
        "order_effect": None,
        "lone_tail_share": 0.2,
        "lone_tail_share_baseline": 0.01,
        "speedup_without_lone_tail": 0.95,
        "lone_tail_tpot_ratio": 6.0,
    }
    quiet = {**row, "speedup": 0.9, "lone_tail_share": 0.01, "speedup_without_lone_tail": 0.9}
    lines = findings._cost_model(pd.DataFrame([row, quiet]))
    [tail] = [x for x in lines if x.startswith("The speculative pass's last request")]
    assert "more than 5% of the pass in 1 of 2 run(s) (20%; the baseline's 1%), at 6.0 times the pass's median" in tail
    [rest] = [x for x in lines if x.startswith("Without each pass's lone last request")]
    assert "0.90–0.95 times the prediction with both passes' slots equally busy (within ±20 % in 2 of 2)" in rest
    # a schedule prediction places the tail: without it, the measurement is set against equal slots
    scheduled = pd.DataFrame(
        [{**row, "predicted_speedup": 0.8, "prediction_basis": "schedule", "predicted_speedup_busy": 1.25}]
    )
    [rest] = [x for x in findings._cost_model(scheduled) if x.startswith("Without each pass's lone last request")]
    assert "was 0.76 times the prediction with both passes' slots equally busy (within ±20 % in 0 of 1)" in rest
    assert "within ±20 % in 1 of 2" in lines[0]  # the whole passes: the tail's run misses
    assert not any(x.startswith("Answered once more alone") for x in lines)  # no replay recorded
    # the lone request answered again alone: 6.5x faster per token, so the batch's state slowed it
    replayed = findings._cost_model(
        pd.DataFrame([{**row, "lone_replay_slowdown": 6.5, "lone_replay_tokens_per_step": 5.4}, quiet])
    )
    [again] = [x for x in replayed if x.startswith("Answered once more alone")]
    assert (
        "was 6.5 times its time alone (5.4 tokens per step alone): its slowness came from the engine's state" in again
    )
    same = findings._cost_model(
        pd.DataFrame([{**row, "lone_replay_slowdown": 1.1, "lone_replay_tokens_per_step": 1.2}])
    )
    assert any(
        x.endswith("1.1 times its time alone (1.2 tokens per step alone): the prompt decodes slowly by itself.")
        for x in same
    )
    # runs recorded before the lone tail: no sentence
    old = pd.DataFrame([{k: v for k, v in row.items() if "lone_tail" not in k}])
    assert not any("lone" in x for x in findings._cost_model(old))


def test_lone_tails_by_repetition_say_where_in_the_benchmark_they_fell():
    import pandas as pd

    from lib.stats import placement_p

    # the hypergeometric tail: all 3 drawn of 8 in the 4 marked positions is C(4,3)/C(8,3)
    assert placement_p(8, 4, 3, 3) == pytest.approx(4 / 56)
    assert placement_p(8, 4, 3, 0) == pytest.approx(1.0) and placement_p(10, 10, 3, 3) == pytest.approx(1.0)
    assert (
        placement_p(72, 28, 9, 9) < 1e-4
    )  # the H200's sets of 2026-11-29T2348 and 2026-11-30T0240: 9 of 9 in the first two of 72
    # each repetition's speculative share, in the order run; a repetition without one is None
    reps = [{"lone_tail_share": {"baseline": 0.01, "speculative": 0.2}}, {"lone_tail_share": 0.3}, {}]
    assert analysis.lone_tail_reps(reps) == [0.2, None, None]

    def frame(*per_run):
        return pd.DataFrame(
            {
                "speedup": 1.0,
                "predicted_speedup": 1.0,
                "prediction_basis": "schedule",
                "occupancy_ratio": None,
                "busy_occupancy_ratio": None,
                "ceiling_speedup": None,
                "step_cost_r": None,
                "floor_speedup": None,
                "order_effect": None,
                "lone_tail_reps": list(per_run),
            }
        )

    def said(f):
        return [x for x in findings._cost_model(f) if x.startswith("By repetition")]

    # three tails, all first or second of 4 + 4 + 4: p = C(6,3)/C(12,3) = 20/220, not below 5 %
    early = [0.15, 0.14, 0.01, 0.01]
    [line] = said(frame(early, [0.2, 0.0, 0.01, 0.0], [0.0] * 4))
    assert "exceeded 5% of the pass in 3 of 12 repetitions, 3 of them in a benchmark's first 2" in line
    assert "(which are 6 of the 12)" in line and "probability 0.091." in line and "start-up" not in line
    # eight repetitions a run: 3 of 3 in the 8 early slots of 32 is not chance alone (56/4960)
    [line] = said(frame(early + [0.0] * 4, [0.2] + [0.0] * 7, [0.0] * 8, [0.0] * 8))
    assert "3 of 32 repetitions" in line and "probability 0.011: a start-up effect that the untimed warm-up" in line
    # tails late in the benchmark: said, and no start-up reading
    [line] = said(frame([0.0] * 6 + [0.2, 0.3], [0.0] * 8))
    assert "2 of 16 repetitions, 0 of them" in line and "probability 1." in line and "start-up" not in line
    # warm-up repetitions come first in the order run; the sentence says how many tails they held
    [line] = said(frame(early + [0.0] * 4, [0.2] + [0.0] * 7, [0.0] * 8, [0.0] * 8).assign(warmup_repetitions=2))
    assert "3 of 32 repetitions" in line and "8 of the 32 were warm-up repetitions" in line
    assert "held 3 of the 3 tails." in line and "benchmark.warmup_repetitions runs" not in line
    # two repetitions a benchmark (the tiny demo): nothing later to set the tails against
    [line] = said(frame([0.2, 0.0], [0.3, 0.01]))
    assert line.endswith(
        "in 2 of 4 repetitions; no benchmark ran more than 2 repetitions, so whether they belong to its start "
        "cannot be told."
    )
    # no tail above 5 %, or no per-repetition record (older metrics): nothing
    assert not said(frame([0.01] * 4)) and not said(frame(None))


def test_a_runs_row_puts_its_warm_up_repetitions_first_and_counts_none_of_them():
    # the H200's CoT medium (2026-11-30T0240-h200x2, eight repetitions), its first two made warm-ups
    m = io.read_json(paths.REPO / "docs/results/gpu-solve-h200/2026-11-30T0240-h200x2/reps8/cot_medium/metrics.json")
    reps = m["comparison"]["repetitions"]
    m["comparison"].update(warmup_repetitions=reps[:2], repetitions=reps[2:])
    row = analysis._metrics_row(m)
    assert row["warmup_repetitions"] == 2 and row["lone_tail_reps"][0] == pytest.approx(0.108, abs=1e-3)
    assert len(row["lone_tail_reps"]) == 8 and row["speedup_reps"] == [r["speedup_throughput"] for r in reps[2:]]


def test_the_first_finding_answers_the_study_question(home):
    # The synthetic grid: one repetition per run, so no speed-up verdict can be drawn; the
    # sentence must say so rather than name a faster style.
    syn.write_grid(syn.PROFILE)
    lines = findings.findings(analysis.collect(syn.PROFILE, n_boot=200), n_boot=200)
    first = lines[0]
    assert (
        first.startswith("The study's question")
        and "Accuracy (one training per style):" in first
        and "Acceptance:" in first
    )
    assert "Throughput speed-up: not resolved by the repetitions in" in first and "CoD faster" not in first
    tally = {"acceptance": {"easy": "CoT higher", "hard": "unclear"}, "speedup": {"easy": "CoD faster"}, "accuracy": {}}
    [said] = findings._answer(tally)
    assert "Acceptance: CoT higher in easy; no clear difference in hard" in said and "CoD faster in easy" in said
    assert "Accuracy" not in said and findings._answer({"acceptance": {}, "speedup": {}, "accuracy": {}}) == []


def test_a_divergence_beyond_the_floor_is_judged_over_all_runs_tested():
    import pandas as pd

    from lib import stats

    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # CoT hard on the H200: 193 of 200 equal against a floor of 199 (p = 0.035), among nine runs
    runs = [
        {
            "source": "workbook",
            "scenario": sc,
            "style": st,
            "identical_output_share": 0.99,
            "identical_output_floor": 0.99,
            "n": 200,
            "crosscheck_acceptance": None,
        }
        for sc in ("easy", "medium", "hard")
        for st in ("base", "cot", "cod")
    ]
    runs[7].update(identical_output_share=0.965, identical_output_floor=0.995)
    lines = findings._noise_and_crosscheck(pd.DataFrame(runs))
    [said] = [x for x in lines if x.startswith("hard/cot")]
    assert (
        "more than the floor in this run alone (p = 0.035), not over the 9 runs tested (Holm-adjusted p = 0.32)" in said
    )
    # the same run tested alone: beyond noise
    [alone] = findings._noise_and_crosscheck(pd.DataFrame([runs[7]]))
    assert "a divergence beyond numerical noise (p = 0.035)." in alone
    # a divergence too large for chance even over nine runs (170 of 200 against 199)
    runs[7].update(identical_output_share=0.85)
    [strong] = [x for x in findings._noise_and_crosscheck(pd.DataFrame(runs)) if x.startswith("hard/cot")]
    assert "a divergence beyond numerical noise (p = 0.000; 0.00 over the 9 runs tested, Holm)." in strong


def test_passes_that_vllm_scheduled_differently_are_said():
    # `engine.async_scheduling: auto` leaves each engine vLLM's default; vLLM 0.26 overlaps
    # scheduling for the target alone and not with a draft model, so r carries that difference.
    import pandas as pd

    base = {
        "speedup": 1.0,
        "predicted_speedup": 1.0,
        "prediction_basis": "schedule",
        "occupancy_ratio": None,
        "busy_occupancy_ratio": None,
        "ceiling_speedup": None,
        "step_cost_r": None,
        "floor_speedup": None,
        "order_effect": None,
    }
    rows = [
        {**base, "async_baseline": True, "async_speculative": False},
        {**base, "async_baseline": False, "async_speculative": False},
        {**base, "async_baseline": None, "async_speculative": None},
    ]  # a vLLM that does not say
    frame = pd.DataFrame(rows)
    [said] = [x for x in findings._cost_model(frame) if "async scheduling" in x]
    assert said.startswith(
        "In 1 of 2 run(s) vLLM overlapped scheduling with the GPU (async scheduling) for the "
        "baseline and not for the speculative pass"
    )
    assert not any("async scheduling" in x for x in findings._cost_model(frame.iloc[1:]))
    assert not any(
        "async scheduling" in x
        for x in findings._cost_model(frame.drop(columns=["async_baseline", "async_speculative"]))
    )


def test_answer_names_each_styles_trainings():
    """Three CoT trainings and one CoD: the sentence says so, not "one training per style"."""
    import pandas as pd

    from lib.findings import _trainings_said

    def acc(n_cot, n_cod):
        return pd.DataFrame({"n_cot": n_cot, "n_cod": n_cod})

    assert _trainings_said(None) == "one training per style"
    assert _trainings_said(acc([1, 1], [1, 1])) == "one training per style"
    assert _trainings_said(acc([3, 3], [3, 3])) == "3 trainings per style"
    assert _trainings_said(acc([3], [1])) == "3 training(s) of CoT, 1 of CoD"
    assert _trainings_said(acc([2, 3], [2, 3])) == "2-3 trainings per style"
