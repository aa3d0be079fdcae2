"""The cost model's occupancy: measured speed-up = decode-only prediction x occupancy ratio,
on passes whose every timing is chosen here."""

import pytest

from lib import benchmark


def _samples(n: int, tokens: int, tpot: float) -> list[dict]:
    return [{"output_tokens": tokens, "tpot_s": tpot} for _ in range(n)]


def test_occupancy_is_decode_time_over_wall_and_explains_the_miss():
    # Baseline: 10 requests of 41 tokens, 40 decode steps of 10 ms each = 0.4 s per request,
    # 4 s of decode over a 1 s wall: 4 requests decoding at once on average.
    base = benchmark.step_timing(_samples(10, 41, 0.010), None, 1.0)
    assert base["occupancy"] == pytest.approx(4.0)
    # Speculative: 5 tokens a step (4 accepted), 8 steps per request at 25 ms (r = 2.5): 0.2 s per
    # request, 2 s of decode, but a 0.8 s wall: only 2.5 requests decoding at once.
    counters = {"drafts": 80, "accepted_tokens": 320, "accepted_per_pos": [80, 80, 80, 80]}
    spec = benchmark.step_timing(_samples(10, 41, 0.2 / 40), counters, 0.8)
    assert spec["steps"] == 80 and spec["occupancy"] == pytest.approx(2.5)
    ratio = benchmark.occupancy_ratio(base, spec)
    assert ratio == pytest.approx(2.5 / 4.0)
    model = benchmark.cost_model(base, spec, {"accepted_per_pos": counters["accepted_per_pos"]}, 4)
    assert model["r"] == pytest.approx(2.5) and model["predicted_speedup"] == pytest.approx(5 / 2.5)
    measured = 1.0 / 0.8  # same tokens: the wall-time ratio
    assert measured == pytest.approx(model["predicted_speedup"] * ratio)


def test_no_occupancy_without_request_timestamps():
    step = benchmark.step_timing([{"output_tokens": 5, "tpot_s": None}], None, 2.0)
    assert step["source"] == "wall" and step["occupancy"] is None
    assert benchmark.occupancy_ratio(step, step) is None


def test_prefill_in_the_prediction_leaves_only_empty_slots():
    # Baseline: 10 requests, each 10 ms from scheduled to first token and 0.4 s of decode; 1 s wall.
    base = benchmark.step_timing([{"output_tokens": 41, "tpot_s": 0.010, "prefill_s": 0.01}] * 10, None, 1.0)
    assert base["prefill_s"] == pytest.approx(0.1) and base["busy_occupancy"] == pytest.approx(4.1)
    # Speculative: 100 ms to the first token (the draft's prefill, a speculative step's cost),
    # 0.2 s of decode; the same 4.1 requests holding a slot at once: a wall of 3.0 / 4.1 s.
    counters = {"drafts": 80, "accepted_tokens": 320, "accepted_per_pos": [80, 80, 80, 80]}
    wall = 3.0 / 4.1
    spec = benchmark.step_timing([{"output_tokens": 41, "tpot_s": 0.2 / 40, "prefill_s": 0.1}] * 10, counters, wall)
    model = benchmark.cost_model(base, spec, {"accepted_per_pos": counters["accepted_per_pos"]}, 4)
    measured = 1.0 / wall
    assert model["predicted_speedup_decode"] == pytest.approx(2.0)  # decode only: misses by 46 %
    assert model["predicted_speedup"] == pytest.approx(measured) and model["prediction_basis"] == "decode + prefill"
    assert benchmark.occupancy_ratio(base, spec, "busy_occupancy") == pytest.approx(1.0)
    # without the engine's scheduled timestamp there is no prefill term
    bare = benchmark.step_timing([{"output_tokens": 41, "tpot_s": 0.010, "prefill_s": None}] * 10, None, 1.0)
    assert bare["prefill_s"] is None and bare["busy_occupancy"] is None
    decode_only = benchmark.cost_model(bare, spec, {"accepted_per_pos": counters["accepted_per_pos"]}, 4)
    assert decode_only["prediction_basis"] == "decode"
    assert decode_only["predicted_speedup"] == decode_only["predicted_speedup_decode"]


def _pass(latencies: list[float], tokens: int, wall: float) -> dict:
    """A pass's summary as `repetition` reads it: every request `tokens` long, finishing at `latencies`."""
    timings = [{"output_tokens": tokens, "tpot_s": 0.01, "prefill_s": 0.01, "latency_s": t} for t in latencies]
    timings[-1]["tpot_s"] = (latencies[-1] - latencies[-2]) / tokens  # the last one: its time per token alone
    return {
        "throughput_tok_s": tokens * len(timings) / wall,
        "wall_s": wall,
        "output_tokens_total": tokens * len(timings),
        "step": benchmark.step_timing(timings, None, wall),
        "spec": None,
        "ttft_s": {"mean": None},
    }


def test_a_lone_last_request_is_measured_and_left_out_of_the_speed_up_without_it():
    # Baseline: 10 requests of 40 tokens, the last finishing 0.01 s after the ninth, in a 1.0 s pass.
    base = _pass([0.5 + 0.05 * i for i in range(9)] + [0.91], 40, 1.0)
    assert base["step"]["lone_tail_s"] == pytest.approx(0.01) and base["step"]["lone_tail_tokens"] == 40
    # Speculative: the same nine done by 0.6 s, then the last request alone until 1.2 s (as on the H200).
    spec = _pass([0.2 + 0.05 * i for i in range(9)] + [1.2], 40, 1.2)
    assert spec["step"]["lone_tail_s"] == pytest.approx(0.6)
    assert spec["step"]["lone_tail_tpot_ratio"] == pytest.approx(0.015 / 0.01)
    assert benchmark.without_lone_tail(spec) == pytest.approx(360 / 0.6)
    rep = benchmark.repetition(base, spec, ("baseline", "speculative"), 4)
    assert rep["speedup_throughput"] == pytest.approx(1 / 1.2)  # the whole pass: speculation looks slower
    assert rep["lone_tail_share"] == pytest.approx({"baseline": 0.01, "speculative": 0.5})
    assert rep["lone_tail_tpot_ratio"] == pytest.approx(1.5)
    assert rep["speedup_without_lone_tail"] == pytest.approx((360 / 0.6) / (360 / 0.99))  # without it, faster
    # no finish times, or one request: nothing to say
    nothing = dict.fromkeys(("lone_tail_s", "lone_tail_tokens", "lone_tail_tpot_ratio"))
    assert benchmark.lone_tail([{"output_tokens": 5, "tpot_s": 0.01}] * 3) == nothing
    assert benchmark.lone_tail([{"output_tokens": 5, "tpot_s": 0.01, "latency_s": 1.0}]) == nothing
    bare = {**spec, "step": {**spec["step"], "lone_tail_s": None, "lone_tail_tokens": None}}
    assert benchmark.repetition(base, bare, ("baseline", "speculative"), 4)["speedup_without_lone_tail"] is None


def test_the_plotted_band_is_the_tolerance_the_findings_count():
    from lib import stats

    lo, hi = stats.tolerance_band(2.0)
    assert stats.within_tolerance(lo / 2.0) and stats.within_tolerance(hi / 2.0)
    assert not stats.within_tolerance(lo * 0.99 / 2.0) and not stats.within_tolerance(hi * 1.01 / 2.0)


def test_the_schedule_places_a_long_badly_guessed_request_alone_at_the_end():
    from lib import stats

    # Four requests, two slots. Baseline: 0.1 s to first token, then 10 ms per token. The last
    # one is long (81 tokens); the speculative pass guesses it badly (1 token per step, its own
    # counts) while the others take 4 per step, at 20 ms a step.
    tokens = [21, 21, 21, 81]
    base = [{"output_tokens": n, "tpot_s": 0.010, "prefill_s": 0.1, "latency_s": None} for n in tokens]
    spec = [
        {
            "output_tokens": n,
            "tpot_s": 0.020 / tps,
            "prefill_s": 0.1,
            "latency_s": None,
            "spec_drafts": (n - 1) // tps,
            "spec_accepted_tokens": (n - 1) - (n - 1) // tps,
        }
        for n, tps in zip(tokens, [4, 4, 4, 1])
    ]
    counters = {"drafts": 5 * 3 + 80, "accepted_tokens": 15 * 3}
    b = benchmark.step_timing(base, None, 1.0, slots=2)
    s = benchmark.step_timing(spec, counters, 1.0, slots=2)
    # by hand: baseline slots [0.3, 0.3] then [0.6, 0.3 + 0.9]: the long one ends at 1.2 s
    assert b["scheduled_s"] == pytest.approx(1.2)
    assert s["step_s"] == pytest.approx(0.020)
    # speculative: short ones 0.1 + 5 steps x 20 ms = 0.2 s; the long one 0.1 + 80 x 20 ms = 1.7 s, from 0.2 s
    assert s["scheduled_s"] == pytest.approx(1.9)
    spec_acc = {"accepted_per_pos": [15, 15, 15], "drafts": 95}
    model = benchmark.cost_model(b, s, spec_acc, 3)
    assert model["prediction_basis"] == "schedule"
    assert model["predicted_speedup"] == pytest.approx((sum(tokens) / 1.9) / (sum(tokens) / 1.2))
    # with the same busy time spread evenly over both slots, the prediction would not see the tail
    assert model["predicted_speedup_busy"] > model["predicted_speedup"] * 1.2
    # without slots (or timestamps) there is no schedule, and the busy-time prediction stands
    unslotted = benchmark.cost_model(
        benchmark.step_timing(base, None, 1.0), benchmark.step_timing(spec, counters, 1.0), spec_acc, 3
    )
    assert unslotted["prediction_basis"] == "decode + prefill"
    assert stats.fcfs_makespan([1.0, 1.0, 1.0], 2) == pytest.approx(2.0) and stats.fcfs_makespan([], 4) == 0.0
