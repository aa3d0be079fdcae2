"""The speed-up forecast made before the timed passes (issue 36): its arithmetic on
calibration requests whose timings are chosen, and how it is set against the measurement."""

import pytest

from lib import benchmark


def _request(tokens, tpot, prefill, drafts=None, accepted=None, latency=None):
    return {
        "output_tokens": tokens,
        "tpot_s": tpot,
        "prefill_s": prefill,
        "latency_s": latency or prefill + tpot * 10,
        "ttft_s": prefill,
        "spec_drafts": drafts,
        "spec_accepted_tokens": accepted,
    }


# Two calibration requests per pass, 11 tokens each (10 decoded after the first).
# Baseline: 0.1 s a token, 0.5 s to the first: each holds a slot 0.5 + 10 x 0.1 = 1.5 s.
BASE = {"samples": [_request(11, 0.1, 0.5), _request(11, 0.1, 0.5, latency=1.6)], "wall_s": 1.6, "counters": None}
# Speculative: 5 drafts, 5 accepted per request (2 tokens a step, 5 steps), 0.75 s of decode each:
# a step costs 1.5 / 10 = 0.15 s (r = 1.5); each holds a slot 0.5 + 10 / 2 x 0.15 = 1.25 s.
SPEC = {
    "samples": [_request(11, 0.075, 0.5, 5, 5), _request(11, 0.075, 0.5, 5, 5, latency=1.3)],
    "wall_s": 1.3,
    "counters": {"drafts": 10, "draft_tokens": 50, "accepted_tokens": 10, "accepted_per_pos": [5, 5, 0, 0, 0]},
}


def test_the_forecast_places_the_calibration_requests_in_the_benchmarks_slots():
    # four requests in two slots: the baseline ends at 2 x 1.5 = 3.0 s, the speculative pass at 2 x 1.25 = 2.5 s
    got = benchmark.forecast(BASE, SPEC, n=4, slots=2)
    assert got["speedup"] == pytest.approx(3.0 / 2.5)
    assert got["r"] == pytest.approx(1.5) and got["tokens_per_step"] == pytest.approx(2.0)
    assert got["n"] == 4 and got["n_calibration"] == 2
    # the calibration call measured 1.6 s and 1.3 s where the model places its two requests at 1.5 s
    # and 1.25 s: both recorded beside the forecast
    assert got["calibration_speedup"] == pytest.approx((22 / 1.3) / (22 / 1.6))
    assert got["calibration_model_speedup"] == pytest.approx(1.5 / 1.25)
    assert got["calibration_steps"]["speculative"] == {"step_s": pytest.approx(0.15), "prefill_s_mean": 0.5}
    # five requests in two slots: the last runs alone (3 rounds each), the ratio is the same here
    assert benchmark.forecast(BASE, SPEC, n=5, slots=2)["speedup"] == pytest.approx(4.5 / 3.75)
    # a long request is left decoding alone at the end: the makespan is its own time
    long_spec = {
        **SPEC,
        "samples": [_request(41, 0.075, 0.5, 20, 20), SPEC["samples"][1]],
        "counters": {**SPEC["counters"], "drafts": 25, "accepted_tokens": 25},
    }
    long_base = {**BASE, "samples": [_request(41, 0.1, 0.5), BASE["samples"][1]]}
    # baseline: 0.5 + 40 x 0.1 = 4.5 s; speculative: 50 decode tokens in 25 steps over 3.75 s (0.15 s a
    # step), the long one 0.5 + 40 / 2 x 0.15 = 3.5 s
    got = benchmark.forecast(long_base, long_spec, n=2, slots=2)
    assert got["speedup"] == pytest.approx(4.5 / 3.5) == got["calibration_model_speedup"]


def test_a_k_not_calibrated_takes_the_given_step_cost_and_tokens_per_step():
    # step 0.2 s, 4 tokens a step: each request 0.5 + 10 / 4 x 0.2 = 1.0 s; two rounds: 2.0 s against 3.0
    got = benchmark.forecast(BASE, SPEC, n=4, slots=2, step_s=0.2, tokens_per_step=4.0)
    assert got["speedup"] == pytest.approx(3.0 / 2.0) and got["r"] == pytest.approx(2.0)
    assert got["calibration_model_speedup"] == pytest.approx(1.5 / 1.25)  # the calibrated pass's own


def test_no_forecast_without_timestamps_or_calibration():
    no_prefill = {**BASE, "samples": [{**r, "prefill_s": None} for r in BASE["samples"]]}
    assert benchmark.forecast(no_prefill, SPEC, 4, 2) is None
    assert benchmark.forecast(None, SPEC, 4, 2) is None
    rec = benchmark.forecast_record({"calibration": None}, {"calibration": None}, 40, 16, None)
    assert rec["speedup"] is None and "calibration_samples = 0" in rec["why_none"]


def test_the_forecast_is_set_against_the_measurement_and_the_chosen_k_against_the_sweep():
    fc = benchmark.forecast_record({"calibration": BASE}, {"calibration": SPEC}, 4, 2, None)
    checked = benchmark.forecast_checked(fc, {"speedup_throughput": 1.32}, [], None)
    assert checked["ratio"] == pytest.approx(1.32 / 1.2) and "k_choice" not in checked
    sweep = [{"k": k, "speedup_throughput": v} for k, v in ((1, 1.0), (3, 1.4), (5, 1.5), (7, 1.2))]
    reps = {"speedup_throughput": 1.4, "repetitions": [{"speedup_throughput": 1.4}, {"speedup_throughput": 1.45}]}
    checked = benchmark.forecast_checked(fc, reps, sweep, {"k": 3})
    assert checked["k_choice"] == {
        "chosen": 3,
        "best_measured": 5,
        "chosen_speedup": 1.4,
        "best_speedup": 1.5,
        "share_of_best": pytest.approx(1.4 / 1.5),
        "rank": 2,
        "of": 4,
        "chosen_repetitions": [1.4, 1.45],
        "best_within_chosen_range": False,  # K 5's 1.5x is above both of K 3's repetitions
    }
    reps["repetitions"][1]["speedup_throughput"] = 1.55
    checked = benchmark.forecast_checked(fc, reps, sweep, {"k": 3})
    assert checked["k_choice"]["best_within_chosen_range"] is True
    note = benchmark.forecast_note({"forecast": checked})
    assert "93% of the best measured K = 5 (1.50x, rank 2 of 4, one pass each)" in note
    assert "repetitions measured 1.40x–1.55x, a range that holds the best K's pass" in note


def test_the_findings_set_the_forecast_apart_from_the_accounting_check():
    import pandas as pd

    from lib import findings

    have = pd.DataFrame(
        {
            "forecast_ratio": [0.9, 1.1, 1.5, None],
            "k_choice_share": [None, 1.0, 0.9, 0.8],
            "k_choice_within_range": [None, False, True, False],
        }
    )
    [fc, k] = findings._forecast(have)
    assert "measured was 0.90–1.50 times the forecast over 3 run(s), within ±20 % in 2 of 3" in fc
    assert "out of sample" in fc and "no cost is missing" in fc
    assert "80%–100% of the best measured K's over 3 run(s), within 5 % in 1 of 3" in k
    assert "In 1 of the 2 further off, the best K's one pass was no faster" in k
    [_, k] = findings._forecast(have.drop(columns="k_choice_within_range"))  # metrics from before the range
    assert "further off" not in k
    assert findings._forecast(pd.DataFrame({"speedup": [1.0]})) == []  # metrics from before the forecast


def test_a_batched_engine_prices_each_step_by_the_requests_in_it():
    from lib import stats

    cost = lambda b: 0.05 + 0.05 * b  # noqa: E731
    # two slots, both requests decode together after a 0.5 s prefill: 10 steps of 0.15 s
    assert stats.batched_makespan([0.5, 0.5], [10, 10], cost, 2) == pytest.approx(2.0)
    # a third waits for a slot (2.0 s), its prefill, then decodes alone: 10 steps of 0.1 s
    assert stats.batched_makespan([0.5, 0.5, 0.5], [10, 10, 10], cost, 2) == pytest.approx(3.5)
    # a request with nothing to decode holds its slot only for its prefill
    assert stats.batched_makespan([0.5, 0.25], [10, 0], cost, 2) == pytest.approx(0.5 + 10 * 0.1)


def _waves(line, steps):
    """Six requests of 11 tokens in four slots, each with `steps` decode steps costing line(b) for
    the b requests decoding together, no prefill: four decode together, then two."""
    first, second = steps * line(4), steps * line(2)
    wave = lambda end, span: {**_request(11, span / 10, 0.0, latency=end)}  # noqa: E731
    rows = [wave(first, first)] * 4 + [wave(first + second, second)] * 2
    return {"samples": rows, "wall_s": first + second, "counters": None}


def test_the_forecast_prices_steps_by_occupancy_where_the_calibration_measured_it():
    base_line = lambda b: 0.02 + 0.01 * b  # noqa: E731  a fuller step costs more
    spec_line = lambda b: 0.1 + 0.005 * b  # noqa: E731  relatively less so
    base = _waves(base_line, 10)
    spec = _waves(spec_line, 5)
    spec["samples"] = [{**r, "spec_drafts": 5, "spec_accepted_tokens": 5} for r in spec["samples"]]
    spec["counters"] = {"drafts": 30, "accepted_tokens": 30}
    fit = benchmark.occupancy_step_cost(base["samples"], 1.0)
    assert (fit["s0"], fit["s1"]) == (pytest.approx(0.02), pytest.approx(0.01))
    assert fit["occupancy_max"] == pytest.approx(4.0) and fit["requests"] == 6
    # twelve requests keep all four slots full: three waves at 4 requests a step, 0.6 s each in both
    # passes, where the flat mean step (the calibration's, a third of it at 2 a step) forecast 0.91x
    got = benchmark.forecast(base, spec, n=12, slots=4)
    assert got["step_model"] == "occupancy" and got["speedup"] == pytest.approx(1.0)
    flat_base, flat_spec = (4 * 0.6 + 2 * 0.4) / 60, (4 * 0.6 + 2 * 0.55) / 30
    assert (3 * 10 * flat_base) / (3 * 5 * flat_spec) == pytest.approx(0.914, abs=1e-3)
    # a K not calibrated: its step cost scales the speculative line
    got = benchmark.forecast(base, spec, n=12, slots=4, step_s=2 * flat_spec, tokens_per_step=2.0)
    assert got["speedup"] == pytest.approx(0.5)


def test_occupancies_too_alike_or_a_falling_line_keep_the_flat_step():
    same = _waves(lambda b: 0.05, 10)
    same["samples"] = same["samples"][:4]  # one wave: every request saw four
    assert benchmark.occupancy_step_cost(same["samples"], 1.0) is None
    falling = _waves(lambda b: 0.1 - 0.01 * b, 10)
    assert benchmark.occupancy_step_cost(falling["samples"], 1.0) is None
    assert benchmark.forecast(BASE, SPEC, n=4, slots=2)["step_model"] == "flat"


def test_the_pick_and_the_studys_k_join_the_sweep():
    assert benchmark.sweep_ks([1, 3, 5, 7], 6, 5) == [1, 3, 5, 7, 6]
    assert benchmark.sweep_ks([1, 3, 5, 7], 7, 5) == [1, 3, 5, 7]
    assert benchmark.sweep_ks([], 7, 5) == [5, 7]  # no sweep asked: the pick against the study's K
    assert benchmark.sweep_ks([], 5, 5) == []  # the pick is the study's K: nothing to set it against
