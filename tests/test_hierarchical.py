"""The hierarchical bootstrap over replicate trainings (`stats.hierarchical_delta`,
`stats.replicate_delta`, `stats.replicate_verdict`): with one training per style it is exactly
today's paired prompt bootstrap; identical trainings add no width, disagreeing ones widen it;
small cases where every training is constant over its prompts, so the draws can be enumerated
by hand."""

import numpy as np
import pandas as pd
import pytest

from lib import analysis, stats


def correct(n: int, right: int, seed: int) -> np.ndarray:
    """A 0/1 array over `n` prompts with exactly `right` ones, in a seeded order."""
    out = np.zeros(n)
    out[:right] = 1
    return np.random.default_rng(seed).permutation(out)


def frame(values) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"p{i}" for i in range(len(values))], "correct": values})


def width(lo, hi) -> float:
    return hi - lo


# --- one replicate per style: today's paired interval ----------------------------------------
def test_one_replicate_is_the_paired_prompt_bootstrap():
    cot, cod = correct(150, 90, 1), correct(150, 105, 2)
    today = analysis.paired_correct_delta(frame(cot), frame(cod), "id", n=2000, seed=3)
    h = stats.hierarchical_delta([cot], [cod], n=2000, seed=3)
    assert (h["delta"], h["lo"], h["hi"]) == (today["delta"], today["lo"], today["hi"])
    assert (h["within_lo"], h["within_hi"]) == (h["lo"], h["hi"])
    assert h["n_prompts"] == 150
    assert h["verdict"].endswith("over prompts only — training spread not measured (1 replicate)")


def test_one_replicate_ratio_is_the_paired_ratio_bootstrap():
    rng = np.random.default_rng(5)
    drafted_a, drafted_b = rng.integers(1, 40, 120).astype(float), rng.integers(1, 40, 120).astype(float)
    acc_a, acc_b = rng.binomial(drafted_a.astype(int), 0.5), rng.binomial(drafted_b.astype(int), 0.6)
    top_a, bottom_a = stats.resampled_ratios(acc_a, drafted_a, 1500, 7)
    top_b, bottom_b = stats.resampled_ratios(acc_b, drafted_b, 1500, 7)  # same seed: the same prompts resampled
    h = stats.hierarchical_delta([(acc_a, drafted_a)], [(acc_b, drafted_b)], n=1500, seed=7, ratio=True)
    assert (h["lo"], h["hi"]) == stats.quantiles(top_b / bottom_b - top_a / bottom_a)
    assert h["delta"] == acc_b.sum() / drafted_b.sum() - acc_a.sum() / drafted_a.sum()
    assert (h["within_lo"], h["within_hi"]) == (h["lo"], h["hi"])


# --- identical replicates add nothing; disagreeing ones widen --------------------------------
def test_identical_replicates_add_no_width():
    cot, cod = correct(200, 120, 11), correct(200, 134, 12)
    one = stats.hierarchical_delta([cot], [cod], n=2000, seed=0)
    many = stats.hierarchical_delta([cot] * 3, [cod] * 2, n=2000, seed=0)
    for key in ("delta", "lo", "hi", "within_lo", "within_hi"):
        assert many[key] == pytest.approx(one[key], abs=1e-12), key
    across, within = stats.hierarchical_draws([cot] * 3, [cod] * 2, n=2000, seed=0)
    np.testing.assert_allclose(across, within, rtol=0, atol=1e-12)
    # the very draws of one replicate: drawing trainings does not move the prompt resamples
    np.testing.assert_allclose(across, stats.hierarchical_draws([cot], [cod], n=2000, seed=0)[0], rtol=0, atol=1e-12)
    assert many["first"]["sd"] == 0 and many["second"]["min"] == many["second"]["max"]


def test_identical_replicates_add_no_width_ratio():
    rng = np.random.default_rng(8)
    den = rng.integers(1, 30, 80).astype(float)
    a, b = (rng.binomial(den.astype(int), 0.4), den), (rng.binomial(den.astype(int), 0.55), den)
    one = stats.hierarchical_delta([a], [b], n=1000, seed=2, ratio=True)
    many = stats.hierarchical_delta([a] * 2, [b] * 4, n=1000, seed=2, ratio=True)
    for key in ("delta", "lo", "hi", "within_lo", "within_hi"):
        assert many[key] == pytest.approx(one[key], abs=1e-12), key


def test_disagreeing_replicates_widen_the_interval():
    first = [correct(200, 100, s) for s in (21, 22, 23)]  # three trainings at 50 %
    second = [correct(200, right, s) for right, s in ((60, 31), (160, 32), (190, 33))]  # 30, 80, 95 %
    h = stats.hierarchical_delta(first, second, n=2000, seed=0)
    assert h["delta"] == pytest.approx((0.30 + 0.80 + 0.95) / 3 - 0.5)
    assert h["within_lo"] > 0  # over prompts alone the trainings look apart...
    assert h["lo"] < 0 < h["hi"]  # ...but one training in 27 draws is all 30 % ones
    assert width(h["lo"], h["hi"]) > 3 * width(h["within_lo"], h["within_hi"])
    assert h["verdict"] == "excludes zero over prompts but not across trainings"
    assert h["second"]["per_replicate"] == pytest.approx([0.30, 0.80, 0.95])
    assert (h["second"]["min"], h["second"]["max"]) == pytest.approx((0.30, 0.95))
    assert h["second"]["sd"] == pytest.approx(np.std([0.30, 0.80, 0.95], ddof=1))


# --- hand-enumerated: every training constant over its prompts ---------------------------------
def test_constant_prompts_leave_only_the_training_level():
    """First: trainings at 0 and 1 on every prompt; second: one at 0.25. Drawing two of first's
    trainings gives a mean of 0, 0.5 or 1 with chances 1/4, 1/2, 1/4, so second − first is 0.25,
    −0.25 or −0.75; over prompts alone it is always −0.25."""
    first, second = [np.zeros(4), np.ones(4)], [np.full(4, 0.25)]
    h = stats.hierarchical_delta(first, second, n=4000, seed=0)
    assert h["delta"] == -0.25
    assert (h["within_lo"], h["within_hi"]) == (-0.25, -0.25)
    assert (h["lo"], h["hi"]) == (-0.75, 0.25)
    across, within = stats.hierarchical_draws(first, second, n=4000, seed=0)
    assert set(np.unique(within)) == {-0.25}
    shares = {v: np.mean(across == v) for v in (-0.75, -0.25, 0.25)}
    assert sum(shares.values()) == 1
    assert shares == pytest.approx({-0.75: 0.25, -0.25: 0.5, 0.25: 0.25}, abs=0.03)
    assert h["first"] == {
        "value": 0.5,
        "per_replicate": [0.0, 1.0],
        "min": 0.0,
        "max": 1.0,
        "sd": pytest.approx(np.sqrt(0.5)),
        "replicates": 2,
    }
    assert np.isnan(h["second"]["sd"])
    assert h["verdict"].endswith("training spread not measured (1 replicate of one style)")


def test_unequal_replicate_counts_draw_each_style_its_own_size():
    """Three trainings against two: first at 0, 0, 1 (mean of three drawn is k/3, k ~ Bin(3, 1/3)),
    second at 0, 1 (j/2, j ~ Bin(2, 1/2)); second − first = j/2 − k/3 with the product chances."""
    first, second = [np.zeros(3), np.zeros(3), np.ones(3)], [np.zeros(3), np.ones(3)]
    h = stats.hierarchical_delta(first, second, n=20000, seed=4)
    assert h["delta"] == pytest.approx(0.5 - 1 / 3)
    assert (h["first"]["replicates"], h["second"]["replicates"]) == (3, 2)
    across, within = stats.hierarchical_draws(first, second, n=20000, seed=4)
    assert np.allclose(within, 0.5 - 1 / 3)
    p_first, p_second = np.array([8, 12, 6, 1]) / 27, np.array([1, 2, 1]) / 4
    exact: dict = {}
    for k in range(4):
        for j in range(3):  # (k, j) = (0, 0) and (3, 2) both give 0
            value = round(j / 2 - k / 3, 9)
            exact[value] = exact.get(value, 0) + p_first[k] * p_second[j]
    assert set(np.round(across, 9)) == set(exact)
    for value, chance in exact.items():
        assert np.mean(np.isclose(across, value)) == pytest.approx(chance, abs=0.015), value


def test_unequal_replicate_counts_random_prompts():
    first = [correct(100, r, s) for r, s in ((50, 1), (60, 2), (55, 3))]
    second = [correct(100, r, s) for r, s in ((70, 4), (64, 5))]
    h = stats.hierarchical_delta(first, second, n=1000, seed=0)
    assert h["delta"] == pytest.approx((0.70 + 0.64) / 2 - (0.50 + 0.60 + 0.55) / 3)
    assert h["first"]["per_replicate"] == pytest.approx([0.50, 0.60, 0.55])
    assert h["second"]["per_replicate"] == pytest.approx([0.70, 0.64])
    assert h["lo"] < h["delta"] < h["hi"]
    assert width(h["lo"], h["hi"]) > width(h["within_lo"], h["within_hi"])


# --- ratio mode ------------------------------------------------------------------------------
def test_ratio_mode_counts_each_training_once():
    """Second's trainings: acceptance 1 (2 of 2 drafted per prompt) and 0 (0 of 6): each counts
    once, so second's rate is 0.5 (pooled over tokens it would be 4/16 = 0.25); first is 0.5."""
    first = [(np.array([1.0, 1.0]), np.array([2.0, 2.0]))]
    second = [(np.array([2.0, 2.0]), np.array([2.0, 2.0])), (np.array([0.0, 0.0]), np.array([6.0, 6.0]))]
    h = stats.hierarchical_delta(first, second, n=4000, seed=1, ratio=True)
    assert h["delta"] == 0.0
    assert h["second"]["per_replicate"] == [1.0, 0.0]
    assert (h["within_lo"], h["within_hi"]) == (0.0, 0.0)
    assert (h["lo"], h["hi"]) == (-0.5, 0.5)
    across, _ = stats.hierarchical_draws(first, second, n=4000, seed=1, ratio=True)
    assert np.mean(across == 0.5) == pytest.approx(0.25, abs=0.03)


def test_ratio_mode_drops_resamples_that_drafted_nothing():
    """One prompt drafted nothing: a resample of two prompts that draws only it (1 in 4) has no
    rate and is dropped, as `analysis.acceptance_draws` drops it; no NaN reaches the interval."""
    first = [(np.array([0.0, 1.0]), np.array([0.0, 2.0]))]
    second = [(np.array([1.0, 1.0]), np.array([1.0, 1.0]))]
    across, within = stats.hierarchical_draws(first, second, n=4000, seed=0, ratio=True)
    assert np.isfinite(across).all() and np.isfinite(within).all()
    assert len(across) / 4000 == pytest.approx(0.75, abs=0.03)
    assert set(np.unique(across)) == {0.5}
    assert stats.hierarchical_delta(first, second, n=4000, seed=0, ratio=True)["lo"] == 0.5


# --- input checks ----------------------------------------------------------------------------
def test_prompt_counts_that_differ_name_the_replicate():
    with pytest.raises(ValueError, match="second replicate 1 has 199 prompts, second replicate 0 has 200"):
        stats.hierarchical_delta([np.ones(200)], [np.ones(200), np.ones(199)])
    with pytest.raises(ValueError, match="first replicate 2 has 10 prompts"):
        stats.hierarchical_delta([np.ones(12), np.ones(12), np.ones(10)], [np.ones(12)])
    with pytest.raises(ValueError, match="second replicate 0 has 11 prompts, first replicate 0 has 12"):
        stats.hierarchical_delta([np.ones(12)], [np.ones(11)])


def test_malformed_inputs_are_refused():
    with pytest.raises(ValueError, match="first: no replicate"):
        stats.hierarchical_delta([], [np.ones(3)])
    with pytest.raises(ValueError, match="second replicate 0: 3 numerators but 2 denominators"):
        stats.hierarchical_delta([(np.ones(3), np.ones(3))], [(np.ones(3), np.ones(2))], ratio=True)
    with pytest.raises(ValueError, match="first replicate 1: ratio mode takes a"):
        stats.hierarchical_delta([(np.ones(3), np.ones(3)), np.ones(3)], [(np.ones(3), np.ones(3))], ratio=True)
    with pytest.raises(ValueError, match="first replicate 0: values must be finite"):
        stats.hierarchical_delta([np.array([1.0, np.nan])], [np.ones(2)])
    with pytest.raises(ValueError, match="second replicate 0: expected a non-empty 1-D"):
        stats.hierarchical_delta([np.ones(2)], [np.ones((2, 2))])
    with pytest.raises(ValueError, match="second replicate 1: expected a non-empty 1-D"):
        stats.replicate_delta([[1.2, 1.3]], [[1.1], []])


# --- speed-up: repetitions within replicates --------------------------------------------------
def test_replicate_delta_takes_each_replicates_median():
    """A run reports the median of its repetitions; [1, 1, 4] is 1 (its mean would be 2)."""
    h = stats.replicate_delta([[1.0, 1.0, 4.0]], [[2.0, 2.0, 2.0]], n=500)
    assert h["delta"] == 1.0
    assert h["first"]["per_replicate"] == [1.0]


def test_replicate_delta_enumerated():
    """Repetitions constant within each replicate: first's replicates at 1.2 and 1.6 (their mean
    drawn is 1.2, 1.4 or 1.6 with chances 1/4, 1/2, 1/4), second one replicate at 1.5."""
    first, second = [[1.2, 1.2, 1.2], [1.6, 1.6]], [[1.5, 1.5, 1.5, 1.5]]
    h = stats.replicate_delta(first, second, n=4000, seed=0)
    assert h["delta"] == pytest.approx(0.1)
    assert (h["within_lo"], h["within_hi"]) == pytest.approx((0.1, 0.1))
    assert (h["lo"], h["hi"]) == pytest.approx((-0.1, 0.3))
    across, _ = stats.replicate_draws(first, second, n=4000, seed=0)
    assert np.mean(np.isclose(across, 0.1)) == pytest.approx(0.5, abs=0.03)
    assert "(1 replicate of one style)" in h["verdict"] and "over repetitions only" in h["verdict"]


def test_replicate_delta_one_and_identical_replicates():
    a, b = [1.31, 1.52, 1.40], [1.61, 1.75, 1.58, 1.70]
    one = stats.replicate_draws([a], [b], n=1000, seed=3)
    np.testing.assert_array_equal(one[0], one[1])  # one replicate: no training level to draw
    many = stats.replicate_draws([a] * 3, [b] * 2, n=1000, seed=3)
    np.testing.assert_allclose(many[0], many[1], rtol=0, atol=1e-12)  # identical: across = within
    h = stats.replicate_delta([a], [b], n=1000, seed=3)
    assert 0 < h["within_lo"] < h["within_hi"]  # resampling repetitions moves the medians


def test_replicate_delta_disagreeing_replicates_widen():
    first = [[1.30, 1.32, 1.31], [1.29, 1.33, 1.30]]
    second = [[1.45, 1.46, 1.44], [1.90, 1.92, 1.91], [1.20, 1.21, 1.19]]
    h = stats.replicate_delta(first, second, n=2000, seed=0)
    assert h["within_lo"] > 0
    assert h["lo"] < 0 < h["hi"]
    assert width(h["lo"], h["hi"]) > 5 * width(h["within_lo"], h["within_hi"])
    assert h["verdict"] == "excludes zero over repetitions but not across trainings"


# --- the verdict -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "within, across, reps, said",
    [
        ((0.01, 0.05), (0.02, 0.06), (3, 3), "excludes zero across trainings"),
        ((-0.05, -0.01), (-0.06, -0.002), 2, "excludes zero across trainings"),
        ((0.01, 0.05), (-0.02, 0.08), (3, 2), "excludes zero over prompts but not across trainings"),
        ((-0.01, 0.05), (-0.02, 0.08), (3, 3), "includes zero over prompts and across trainings"),
        ((-0.01, 0.05), (0.001, 0.08), (3, 3), "excludes zero across trainings (not over prompts alone)"),
        (
            (0.01, 0.05),
            (0.01, 0.05),
            (1, 1),
            "excludes zero over prompts only — training spread not measured (1 replicate)",
        ),
        (
            (-0.01, 0.05),
            (-0.01, 0.05),
            1,
            "includes zero over prompts only — training spread not measured (1 replicate)",
        ),
        (
            (0.01, 0.05),
            (0.01, 0.07),
            (1, 3),
            "excludes zero over prompts only — training spread not measured (1 replicate of one style)",
        ),
        ((float("nan"), float("nan")), (0.01, 0.07), (3, 3), "no interval"),
    ],
)
def test_verdict(within, across, reps, said):
    assert stats.replicate_verdict(within, across, reps) == said
