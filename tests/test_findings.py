"""Findings written from the numbers: the styles' accuracy, read from synthetic runs whose
every number the fixture chose (tests/fixtures/synthetic.py)."""

from fixtures import synthetic as syn
from lib import analysis, findings


def test_accuracy_of_each_style_is_stated_with_its_interval_and_the_cod_cot_verdict(home):
    syn.write_grid(syn.PROFILE)
    frame = analysis.collect(syn.PROFILE, n_boot=200)
    lines = findings.findings(frame, n_boot=200)
    [easy] = [f for f in lines if f.startswith("easy: held-out accuracy of the target alone")]
    # the baseline pass (the target alone), not the speculative one: cot easy is 6/10 alone, 7/10 with a draft
    for style, name in (("base", "base"), ("cot", "CoT"), ("cod", "CoD")):
        assert f"{name} {syn.accuracy(style, 'easy', 'baseline'):.1%} [" in easy
    diff = (syn.accuracy("cod", "easy", "baseline") - syn.accuracy("cot", "easy", "baseline")) * 100
    assert f"CoD − CoT {diff:+.1f} points" in easy
    assert "the intervals overlap: no clear difference" in easy  # 8/10 against 6/10 over ten prompts
    [medium] = [f for f in lines if f.startswith("medium: held-out accuracy")]
    assert "CoD" not in medium and "CoT 50.0% [" in medium  # cod_medium is a gap: no verdict
