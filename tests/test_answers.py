"""The shared answer checker: extraction order, equivalence on hard cases, no credit when cut off."""

from __future__ import annotations

import threading

import pytest

from lib.answers import EXTRACTION_METHODS, equivalent, extract, grade

# (prediction, gold, expected): right and wrong answers alike.
EQUIVALENCE_CASES = [
    # fractions in any notation
    ("1/2", "\\frac{1}{2}", True),
    ("0.5", "\\frac{1}{2}", True),
    ("\\dfrac12", "\\frac{1}{2}", True),
    ("\\tfrac{1}{2}", "0.5", True),
    ("\\frac{3}{2}", "1.5", True),
    ("-\\frac{3}{2}", "\\frac{-3}{2}", True),
    ("\\frac{1}{3}", "0.33", False),
    ("\\frac{1}{2}", "\\frac{1}{3}", False),
    ("2/4", "\\frac{1}{2}", True),
    # radicals
    ("2\\sqrt{3}", "\\sqrt{12}", True),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}", True),
    ("\\sqrt{2}/2", "\\frac{1}{\\sqrt{2}}", True),
    ("\\sqrt{3}", "1.732", False),
    ("3\\sqrt{2}", "2\\sqrt{3}", False),
    # expressions and polynomials
    ("x^2+2x+1", "(x+1)^2", True),
    ("(x-1)(x+1)", "x^2-1", True),
    ("x^2+1", "(x+1)^2", False),
    ("5x+3", "3+5x", True),
    ("5x-3", "5x+3", False),
    ("x = 3", "3", True),
    # tuples and points (ordered)
    ("(1,2)", "(1, 2)", True),
    ("(1,2)", "(2,1)", False),
    ("(1, \\sqrt{3})", "\\left(1,\\sqrt3\\right)", True),
    ("(1,3,2)", "(1,2,3)", False),
    # intervals and unions
    ("(-\\infty, 2) \\cup (3, \\infty)", "(-\\infty,2)\\cup(3,\\infty)", True),
    ("(3, \\infty) \\cup (-\\infty, 2)", "(-\\infty,2)\\cup(3,\\infty)", True),
    ("(-\\infty, 2]", "(-\\infty, 2)", False),
    ("[1,2)", "(1,2]", False),
    ("(-\\infty,3)\\cup(2,\\infty)", "(-\\infty,2)\\cup(3,\\infty)", False),
    # unordered solution lists
    ("2, 3", "3, 2", True),
    ("-2, 5", "5, -2", True),
    ("x=-2, x=5", "-2, 5", True),
    ("2, 3", "2, 4", False),
    # matrices and vectors
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
    ("\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", False),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", True),
    ("\\begin{pmatrix} 1 & 3 \\\\ 2 & 4 \\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", False),
    # \text{} words
    ("\\text{Monday}", "Monday", True),
    ("\\text{Monday}", "\\text{Tuesday}", False),
    ("10 \\text{ cm}", "10", True),
    ("12 dollars", "12", True),
    ("12 dollars", "13", False),
    # multiple-choice letters
    ("(B)", "B", True),
    ("B", "\\text{(B)}", True),
    ("(B) 12", "(B)", True),
    ("(C)", "B", False),
    ("b", "(B)", False),
    # currency and thousands separators
    ("\\$1,250", "1250", True),
    ("1,250", "1250", True),
    ("1,250.50", "1250.5", True),
    ("1{,}250", "1250", True),
    ("10,\\!000", "10000", True),
    ("125", "1,250", False),
    # percent
    ("50\\%", "50", True),
    ("25%", "25", True),
    ("25\\%", "30", False),
    # degrees and plain numbers
    ("90^\\circ", "90", True),
    ("2.0", "2", True),
    ("-\\infty", "\\infty", False),
    ("3", "3.0001", False),
    # prose around the answer, Unicode minus
    ("The answer is 5", "5", True),
    ("\u22124", "-4", True),
    # nothing to compare
    ("", "2", False),
    (None, "2", False),
]


@pytest.mark.parametrize(("pred", "gold", "expected"), EQUIVALENCE_CASES)
def test_equivalent(pred: str | None, gold: str, expected: bool) -> None:
    assert equivalent(pred, gold) is expected


@pytest.mark.parametrize(
    ("text", "answer", "method"),
    [
        ("48 + 24 = 72\n#### 72", "72", "hash"),
        ("#### 1 \n#### 1,250.", "1,250", "hash"),
        ("so we get $\\boxed{5}$\n#### $\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}", "hash"),
        ("#### 7\nQuestion: what is 8?", "7", "hash"),
        ("Thus $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}", "boxed"),
        ("\\boxed{1} then \\fbox{\\sqrt{2}}", "\\sqrt{2}", "boxed"),
        ("first \\boxed{3}, then \\boxed{\\frac{4", "3", "boxed"),  # cut off inside the box
        ("... so the total is 4", "4", "last_number"),
        ("she pays 1,250 dollars", "1250", "last_number"),
        ("no numbers at all", None, "none"),
        ("", None, "none"),
    ],
)
def test_extract(text: str, answer: str | None, method: str) -> None:
    assert extract(text) == (answer, method)
    assert method in EXTRACTION_METHODS


@pytest.mark.parametrize(
    ("output", "gold", "correct", "method"),
    [
        ("2 + 2 = 4\n#### 4", "4", True, "hash"),
        ("The answer is $\\boxed{\\dfrac{1}{2}}$.", "0.5", True, "boxed"),
        ("#### (B)", "B", True, "hash"),
        ("2 + 2 = 4\n#### 5", "4", False, "hash"),
        # Cut off before the final answer: the right number is not enough.
        ("First, 2 + 2 = 4, so the total is 4", "4", False, "last_number"),
        ("We start by", "4", False, "none"),
    ],
)
def test_grade(output: str, gold: str, correct: bool, method: str) -> None:
    result = grade(output, gold)
    assert result["correct"] is correct
    assert result["method"] == method
    assert set(result) == {"pred", "method", "correct"}


def test_never_raises_on_garbage() -> None:
    for pred in ["\\frac{", "}}{{", "\\begin{pmatrix}", "x^{10^{10^{10}}}", "(" * 50, "\\sqrt"]:
        assert equivalent(pred, "2") is False
    assert grade(None, "2")["correct"] is False  # type: ignore[arg-type]


def test_works_off_the_main_thread() -> None:
    # math-verify's default timeouts use signal.alarm, which fails in a thread.
    results: list[bool] = []
    worker = threading.Thread(target=lambda: results.append(equivalent("0.5", "\\frac{1}{2}")))
    worker.start()
    worker.join()
    assert results == [True]
