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
