"""The offline reference teacher: CoT and CoD rewrites that keep the reference's answer."""

from __future__ import annotations

import re

import pytest

from lib.answers import grade
from lib.problems import SCENARIOS, generate
from lib.teachers.reference import final_answer_from_reference, rewrite

# Hand-written rows in the real datasets' formats (GSM8K keeps its solution in `answer`,
# MATH in `solution`), with the answer each should end in.
GSM8K_ROWS = [
    (
        {
            "question": "A baker bakes 36 rolls and sells half of them in the morning. She sells 7 more in the "
            "afternoon. How many rolls are left?",
            "answer": "She sells 36 / 2 = <<36/2=18>>18 rolls in the morning.\n"
            "In all she sells 18 + 7 = <<18+7=25>>25 rolls.\n"
            "So 36 - 25 = <<36-25=11>>11 rolls are left.\n#### 11",
        },
        "11",
    ),
    (
        {
            "question": "A farm earns $1,200 a month and pays $2,150 in yearly costs. How much does it keep in a year?",
            "answer": "The farm earns 1200 * 12 = $<<1200*12=14400>>14,400 in a year.\n"
            "After costs it keeps 14400 - 2150 = $<<14400-2150=12250>>12,250.\n#### 12,250",
        },
        "12250",
    ),
    (
        {
            "question": "Tom buys 3 bags with 4 marbles each. How many marbles does he have?",
            "answer": "Tom has <<3*4=12>>12 marbles.\n#### 12",
        },
        "12",
    ),
    (
        {
            "question": "A pool holds 5 tanks of 20 liters. A hose fills 4 liters a minute. How long does filling take?",
            "answer": "The pool holds 5 x 20 = 100 liters.\nIt fills in 100 / 4 = <<100/4=25>>25 minutes.\n#### 25",
        },
        "25",
    ),
    # The workbook's own schema: the same text under `reference`, the answer under `answer`.
    (
        {
            "question": "Ana reads 12 pages a day for 3 days. How many pages does she read?",
            "reference": "Ana reads 12 x 3 = <<12*3=36>>36 pages.\n#### 36",
            "answer": "36",
        },
        "36",
    ),
]

MATH_ROWS = [
    (
        {
            "problem": "Evaluate $\\frac{a^2 + b}{3}$ when $a = 4$ and $b = 2$.",
            "solution": "We have \\[\\frac{a^2 + b}{3} = \\frac{4^2 + 2}{3} = \\frac{18}{3} = \\boxed{6}.\\]",
        },
        "6",
    ),
    (
        {
            "problem": "Solve $4x - 1 = 1$.",
            "solution": "Adding $1$ to both sides gives $4x = 2$. Dividing by $4$ gives $x = \\boxed{\\frac{1}{2}}$.",
        },
        "\\frac{1}{2}",
    ),
    (
        {
            "problem": "In the figure, $3x + 2 = 11$. Find $x$.",
            "solution": 'The figure is below.\n[asy]\ndraw((0,0)--(1,1));\nlabel("$A$",(0,0),S);\n[/asy]\n'
            "We have \\begin{align*}\n3x + 2 &= 11 \\\\\n3x &= 9\n\\end{align*} so $x = \\boxed{3}$.",
        },
        "3",
    ),
    (
        {
            "problem": "Where do $y = x + 1$ and $y = 2x - 1$ meet?",
            "solution": "Setting $x + 1 = 2x - 1$ gives $x = 2$, and then $y = 2 + 1 = 3$. "
            "The lines meet at $\\boxed{(2, 3)}$.",
        },
        "(2, 3)",
    ),
    (
        {
            "problem": "Compute $2\\cos 30^\\circ$.",
            "solution": "Since $\\cos 30^\\circ = \\frac{\\sqrt{3}}{2}$, we get "
            "$2\\cos 30^\\circ = 2 \\cdot \\frac{\\sqrt{3}}{2} = \\boxed{\\sqrt{3}}$.",
        },
        "\\sqrt{3}",
    ),
    ({"problem": "What is $3 + 4$?", "solution": "Adding, $3 + 4 = 7$, so the answer is $\\boxed 7$."}, "7"),
    (
        {
            "problem": "Pears cost \\$5 a pound. How much do 3 pounds cost?",
            "solution": "At \\$5 a pound, $3 \\cdot 5 = 15$, so they cost $\\boxed{\\$15}$.",
        },
        "\\$15",
    ),
]

ALL_ROWS = GSM8K_ROWS + MATH_ROWS
STYLES = ("cot", "cod")


@pytest.fixture(scope="module")
def embedded() -> list[dict]:
    return [row for scenario in SCENARIOS for row in generate(scenario, 600)]


def _reference(row: dict) -> str:
    return row.get("reference") or row.get("solution") or row["answer"]


@pytest.mark.parametrize(("row", "gold"), ALL_ROWS)
@pytest.mark.parametrize("style", STYLES)
def test_real_format_rows(row: dict, gold: str, style: str) -> None:
    assert final_answer_from_reference(_reference(row)) == gold
    out = rewrite(row, style)
    assert out.rstrip().endswith(f"#### {gold}")
    result = grade(out, gold)
    assert result["correct"], (out, result)
    assert result["method"] == "hash"
    assert "<<" not in out and "\\boxed" not in out and "[asy]" not in out and "draw(" not in out


@pytest.mark.parametrize(("row", "gold"), ALL_ROWS)
def test_cod_is_shorter_than_cot(row: dict, gold: str) -> None:
    assert len(rewrite(row, "cod")) < len(rewrite(row, "cot"))


def test_cod_format_gsm8k() -> None:
    row = GSM8K_ROWS[0][0]
    assert rewrite(row, "cod") == "rolls_morning = 36/2 = 18 -> rolls = 18+7 = 25 -> rolls_left = 36-25 = 11 #### 11"
    # A line whose arithmetic has no note still gives a step.
    assert rewrite(GSM8K_ROWS[3][0], "cod").startswith("liters = 5*20 = 100 -> ")


def test_cod_format_math() -> None:
    cod = rewrite(MATH_ROWS[2][0], "cod")  # asy dropped, align rows split into steps
    assert cod == "3x + 2 = 11 -> 3x = 9 -> x = 3 #### 3"
    cod = rewrite(MATH_ROWS[1][0], "cod")
    assert cod == "4x = 2 -> x = \\frac{1}{2} #### \\frac{1}{2}"


def test_cot_explains_every_step() -> None:
    cot = rewrite(GSM8K_ROWS[0][0], "cot")
    lines = cot.splitlines()
    assert lines[0].startswith("First, ") and lines[1].startswith("Next, ") and lines[2].startswith("Finally, ")
    assert "36 / 2 = 18" in cot and "18 + 7 = 25" in cot and "36 - 25 = 11" in cot
    assert "check" in lines[-2].lower()
    assert lines[-1] == "#### 11"
    # A note without displayed arithmetic is written out.
    assert "3 * 4 = 12" in rewrite(GSM8K_ROWS[2][0], "cot")
    # Names keep their capital; ordinary openers are lowercased after the connective.
    assert lines[0] == "First, she sells 36 / 2 = 18 rolls in the morning."
    assert rewrite(GSM8K_ROWS[4][0], "cot").startswith("First, Ana reads")


def test_embedded_rows_all_scenarios(embedded: list[dict]) -> None:
    for row in embedded:
        cot, cod = rewrite(row, "cot"), rewrite(row, "cod")
        for out in (cot, cod):
            assert out.endswith(f"#### {row['answer']}"), (row["id"], out)
            assert grade(out, row["answer"])["correct"], (row["id"], out)
        assert len(cod) < len(cot), row["id"]


def test_multi_step_cod_has_arrows(embedded: list[dict]) -> None:
    for row in embedded:
        reference = row["reference"]
        if row["scenario"] == "easy":
            multi_step = reference.count("<<") >= 2
        else:  # MATH prose: two or more relations written in math
            multi_step = len(re.findall(r"\$[^$]*[=<>][^$]*\$", reference)) >= 2
        if multi_step:
            assert " -> " in rewrite(row, "cod"), row["id"]
    assert all(" -> " in rewrite(r, "cod") for r in embedded if r["scenario"] == "easy")


def test_base_style_has_nothing_to_teach() -> None:
    with pytest.raises(ValueError, match="nothing to teach"):
        rewrite(GSM8K_ROWS[0][0], "base")


def test_unknown_style_lists_valid_styles() -> None:
    with pytest.raises(ValueError) as err:
        rewrite(GSM8K_ROWS[0][0], "verbose")
    assert "cot" in str(err.value) and "cod" in str(err.value)


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("a\n#### 72", "72"),
        ("a\n#### 1,250\n", "1250"),
        ("so $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("first \\boxed{1}, then \\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),
        ("it is $\\boxed{10{,}000}$", "10000"),
        ("so $\\boxed 9$.", "9"),
    ],
)
def test_final_answer_from_reference(text: str, answer: str) -> None:
    assert final_answer_from_reference(text) == answer


def test_reference_without_answer_is_an_error() -> None:
    with pytest.raises(ValueError):
        final_answer_from_reference("no final answer here: 3 + 4 = 7")
    with pytest.raises(ValueError):
        rewrite({"id": "x", "question": "q", "reference": "3 + 4 = 7"}, "cot")
