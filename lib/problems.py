"""The embedded offline problem set: GSM8K-like (easy) and MATH-like (medium, hard) items.

Everything is drawn from `random.Random(seed)` with integer arithmetic, so the same
arguments give the same rows on every machine, and `generate(s, n)` is a prefix of
`generate(s, m)` for n < m. References follow the real datasets' formats (GSM8K
`<<expr=value>>` notes and `#### answer`; MATH prose with `$...$` and `\\boxed{}`), so the
same teacher and checker code serves the embedded set and the hub datasets.
"""

from __future__ import annotations

import ast
import json
import operator
import os
import random
import re
import string
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

from . import io
from .choices import choose

SCENARIOS = ("easy", "medium", "hard")


@dataclass(frozen=True)
class _Item:
    question: str
    reference: str
    answer: str
    level: str
    type: str


def check_scenario(scenario: str) -> str:
    """Return `scenario` or raise a ValueError naming the valid choices."""
    return choose("scenario", scenario, SCENARIOS)


def normalize_question(text: str) -> str:
    """Lowercase, collapse whitespace, strip punctuation at the ends (for leakage checks)."""
    text = re.sub(r"\s+", " ", text.lower())
    return text.strip(string.punctuation + string.whitespace)


# ---------------------------------------------------------------------------------------
# Arithmetic and formatting helpers
# ---------------------------------------------------------------------------------------

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _arith(expr: str) -> Fraction:
    """Exact value of a `+ - * /` expression of integers (no eval)."""

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return Fraction(node.value)
        raise ValueError(f"unsupported expression {expr!r}")

    return walk(ast.parse(expr, mode="eval").body)


def _tex(x: Fraction | int) -> str:
    """A rational number in MATH's notation: `7`, `-\\frac{3}{2}`."""
    x = Fraction(x)
    if x.denominator == 1:
        return str(x.numerator)
    sign = "-" if x < 0 else ""
    return f"{sign}\\frac{{{abs(x.numerator)}}}{{{x.denominator}}}"


def _par(x: Fraction | int) -> str:
    """Wrap negatives in parentheses: `5 - (-3)`."""
    return f"({_tex(x)})" if x < 0 else _tex(x)


def _combo(terms: list[tuple[int, str]]) -> str:
    """Signed sum of coefficient-symbol terms: [(2, 'x'), (-1, 'y'), (5, '')] -> `2x - y + 5`."""
    out: list[str] = []
    for c, sym in terms:
        if c == 0:
            continue
        text = f"{'' if abs(c) == 1 and sym else abs(c)}{sym}"
        out.append(("-" if c < 0 else "") + text if not out else f"{'-' if c < 0 else '+'} {text}")
    return " ".join(out) if out else "0"


def _poly(coeffs: list[int], var: str = "x") -> str:
    """Polynomial from the highest power down: [1, -5, 6] -> `x^2 - 5x + 6`."""
    degree = len(coeffs) - 1
    return _combo([(c, {0: "", 1: var}.get(degree - i, f"{var}^{degree - i}")) for i, c in enumerate(coeffs)])


def _subst(coeffs: list[int], value: int) -> str:
    """The polynomial with `value` substituted, in parentheses: `3(2)^2 - 4(2) + 1`."""
    degree = len(coeffs) - 1
    return _combo(
        [(c, {0: "", 1: f"({value})"}.get(degree - i, f"({value})^{degree - i}")) for i, c in enumerate(coeffs)]
    )


def _sum(values: list[int]) -> str:
    """`12 - 6 + 5` from [12, -6, 5]; zero terms dropped."""
    values = [v for v in values if v] or [0]
    out = str(values[0])
    for v in values[1:]:
        out += f" - {-v}" if v < 0 else f" + {v}"
    return out


def _nonzero(rng: random.Random, lo: int, hi: int) -> int:
    return rng.choice([v for v in range(lo, hi + 1) if v != 0])


# ---------------------------------------------------------------------------------------
# easy: GSM8K-like word problems
# ---------------------------------------------------------------------------------------

_PEOPLE = (
    ("Nadia", "she"),
    ("James", "he"),
    ("Maria", "she"),
    ("Omar", "he"),
    ("Priya", "she"),
    ("Lucas", "he"),
    ("Aisha", "she"),
    ("Mateo", "he"),
    ("Hannah", "she"),
    ("Kenji", "he"),
    ("Sofia", "she"),
    ("Daniel", "he"),
    ("Chloe", "she"),
    ("Ibrahim", "he"),
    ("Grace", "she"),
    ("Leo", "he"),
    ("Fatima", "she"),
    ("Ethan", "he"),
    ("Mei", "she"),
    ("Noah", "he"),
    ("Olivia", "she"),
    ("Samuel", "he"),
    ("Zara", "she"),
    ("Diego", "he"),
    ("Emma", "she"),
    ("Ravi", "he"),
    ("Lena", "she"),
    ("Tomas", "he"),
    ("Yuki", "she"),
    ("Marcus", "he"),
)
_GOODS = (
    ("notebook", "notebooks", 2, 6),
    ("pen", "pens", 1, 4),
    ("apple", "apples", 1, 3),
    ("toy car", "toy cars", 3, 9),
    ("book", "books", 6, 15),
    ("shirt", "shirts", 8, 20),
    ("candle", "candles", 2, 7),
    ("mug", "mugs", 4, 10),
    ("puzzle", "puzzles", 5, 12),
    ("sandwich", "sandwiches", 3, 8),
)
_BIG_GOODS = ("jacket", "bike helmet", "lamp", "backpack", "chair", "suitcase", "tent", "guitar case")
_TREATS = ("stickers", "marbles", "stamps", "cards", "shells", "beads")
_PLANTS = (("tomato", "tomatoes"), ("pepper", "peppers"), ("bean", "beans"), ("strawberry", "strawberries"))
_VEHICLES = ("car", "bus", "train", "truck", "motorcycle")
_PLACES = ("zoo", "museum", "water park", "science fair", "aquarium")
_HOBBIES = ("the piano", "the guitar", "the violin", "chess", "soccer drills", "drawing")
_RELATIVES = ("brother", "sister", "cousin", "uncle", "aunt")
_FRACTIONS = (
    (1, 2, "half"),
    (1, 3, "a third"),
    (1, 4, "a quarter"),
    (2, 5, "two fifths"),
    (3, 4, "three quarters"),
    (2, 3, "two thirds"),
)


class _Gsm:
    """Accumulates GSM8K-format solution lines; each step's value is computed, not typed."""

    def __init__(self, rng: random.Random) -> None:
        self.lines: list[str] = []
        self.mul = rng.choice(("x", "*"))  # GSM8K writes both
        self.value = 0

    def step(self, before: str, expr: str, after: str, money: bool = False) -> int:
        value = _arith(expr)
        if value.denominator != 1 or value < 0:
            raise _Redraw  # template drew numbers that do not divide; draw again
        shown = re.sub(r"\s*([-+*/])\s*", r" \1 ", expr).replace("*", self.mul)
        cur = "$" if money else ""
        self.lines.append(f"{before} {shown} = {cur}<<{expr}={value}>>{value}{after}.")
        self.value = int(value)
        return self.value

    def item(self, question: str) -> _Item:
        reference = "\n".join(self.lines + [f"#### {self.value}"])
        return _Item(question, reference, str(self.value), "", "")


class _Redraw(Exception):
    """Raised by a template whose random numbers do not give a clean problem."""


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _person(rng: random.Random) -> tuple[str, str, str, str]:
    """Name, subject pronoun, object pronoun, possessive."""
    name, he = rng.choice(_PEOPLE)
    return (name, he, "her", "her") if he == "she" else (name, he, "him", "his")


def _e_shopping(rng: random.Random) -> _Item:
    name, he, _, _ = _person(rng)
    one, many, lo, hi = rng.choice(_GOODS)
    other, _, lo2, hi2 = rng.choice([g for g in _GOODS if g[0] != one])
    n, p, q = rng.randint(2, 9), rng.randint(lo, hi), rng.randint(lo2, hi2)
    bill = next(b for b in (20, 50, 100, 200) if b > n * p + q)
    s = _Gsm(rng)
    a = s.step(f"{name} spends", f"{n}*{p}", f" on {many}", money=True)
    b = s.step(f"With the {other}, {he} spends", f"{a}+{q}", " in total", money=True)
    s.step(f"{he.capitalize()} gets", f"{bill}-{b}", " in change", money=True)
    return s.item(
        f"{name} buys {n} {many} for ${p} each and {_a(other)} for ${q}. "
        f"{he.capitalize()} pays with a ${bill} bill. How much change does {he} get?"
    )


def _e_ages(rng: random.Random) -> _Item:
    name, he, _, his = _person(rng)
    rel = rng.choice(_RELATIVES)
    age, k, y = rng.randint(3, 15), rng.randint(2, 4), rng.randint(2, 12)
    s = _Gsm(rng)
    b = s.step(f"{name}'s {rel} is", f"{age}*{k}", " years old")
    now = s.step("Together they are", f"{age}+{b}", " years old now")
    s.step(f"In {y} years each is {y} years older, so the sum is", f"{now}+2*{y}", " years")
    return s.item(
        f"{name} is {age} years old. {his.capitalize()} {rel} is {k} times as old as {name}. "
        f"What will the sum of their ages be in {y} years?"
    )


def _e_speed(rng: random.Random) -> _Item:
    v = rng.choice(_VEHICLES)
    s1, s2 = rng.randrange(30, 75, 5), rng.randrange(20, 70, 5)
    h1, h2 = rng.randint(2, 6), rng.randint(2, 5)
    s = _Gsm(rng)
    d1 = s.step("First it covers", f"{s1}*{h1}", " miles in the first part")
    d2 = s.step("Then it covers", f"{s2}*{h2}", " miles in the second part")
    s.step("In all it travels", f"{d1}+{d2}", " miles")
    return s.item(
        f"A {v} travels at {s1} miles per hour for {h1} hours, then at {s2} miles per hour "
        f"for {h2} hours. How many miles does it travel in all?"
    )


def _e_sharing(rng: random.Random) -> _Item:
    name, he, _, _ = _person(rng)
    thing = rng.choice(_TREATS)
    k, each, keep = rng.randint(2, 8), rng.randint(3, 15), rng.randint(2, 12)
    total = k * each + keep
    s = _Gsm(rng)
    left = s.step(f"After keeping {keep}, {name} has", f"{total}-{keep}", f" {thing} left")
    s.step("Each friend gets", f"{left}/{k}", f" {thing}")
    return s.item(
        f"{name} has {total} {thing}. {he.capitalize()} keeps {keep} and shares the rest "
        f"equally among {k} friends. How many {thing} does each friend get?"
    )


def _e_discount(rng: random.Random) -> _Item:
    name, he, _, _ = _person(rng)
    one = rng.choice(_BIG_GOODS)
    many = one + "s"
    price, pct, k = rng.randrange(20, 201, 20), rng.choice((10, 20, 25, 30, 40, 50, 75)), rng.randint(2, 6)
    s = _Gsm(rng)
    off = s.step("The discount is", f"{price}*{pct}/100", f" per {one}", money=True)
    sale = s.step("The sale price is", f"{price}-{off}", f" per {one}", money=True)
    s.step(f"For {k} {many} {he} pays", f"{k}*{sale}", " in total", money=True)
    return s.item(
        f"{_a(one).capitalize()} normally costs ${price}. It is on sale for {pct}% off. "
        f"How much does {name} pay for {k} {many} on sale?"
    )


def _e_wages(rng: random.Random) -> _Item:
    name, he, _, _ = _person(rng)
    wage, h, d, extra = rng.randint(8, 25), rng.randint(2, 8), rng.randint(3, 6), rng.randint(2, 6)
    s = _Gsm(rng)
    weekday = s.step(f"On weekdays {he} works", f"{h}*{d}", " hours")
    hours = s.step("With the weekend, that is", f"{weekday}+{extra}", " hours in total")
    s.step(f"{he.capitalize()} earns", f"{hours}*{wage}", " in wages", money=True)
    return s.item(
        f"{name} earns ${wage} an hour. {he.capitalize()} works {h} hours a day for {d} days, "
        f"then {extra} more hours on the weekend. How much does {he} earn?"
    )


def _e_recipe(rng: random.Random) -> _Item:
    name, he, _, _ = _person(rng)
    cups, per, batches = rng.randint(2, 5), rng.choice((6, 8, 10, 12, 20, 24)), rng.randint(2, 7)
    s = _Gsm(rng)
    b = s.step(f"{name} needs", f"{per * batches}/{per}", " batches")
    s.step(f"{he.capitalize()} uses", f"{b}*{cups}", " cups of flour")
    return s.item(
        f"A recipe uses {cups} cups of flour to make {per} cookies. {name} wants to make "
        f"{per * batches} cookies. How many cups of flour does {he} need?"
    )


def _e_savings(rng: random.Random) -> _Item:
    name, he, him, his = _person(rng)
    one, _, lo, hi = rng.choice(_GOODS)
    save, weeks, gift = rng.randint(3, 20), rng.randint(3, 12), rng.randint(5, 40)
    cost = rng.randint(lo, hi) * rng.randint(2, 4)
    s = _Gsm(rng)
    saved = s.step(f"{name} saves", f"{save}*{weeks}", " in savings", money=True)
    have = s.step("With the gift, that is", f"{saved}+{gift}", " in total", money=True)
    s.step(f"After the {one}, {he} has", f"{have}-{cost}", " left", money=True)
    return s.item(
        f"{name} saves ${save} every week for {weeks} weeks. {his.capitalize()} grandmother "
        f"gives {him} ${gift}. Then {he} spends ${cost} on {_a(one)}. "
        f"How much money does {he} have left?"
    )


def _e_reading(rng: random.Random) -> _Item:
    name, he, _, _ = _person(rng)
    r, d = rng.randint(5, 25), rng.randint(2, 7)
    remaining = 2 * rng.randint(10, 80)
    pages = r * d + remaining
    s = _Gsm(rng)
    done = s.step(f"{name} reads", f"{r}*{d}", " pages first")
    left = s.step("That leaves", f"{pages}-{done}", " pages")
    half = s.step(f"On the weekend {he} reads", f"{left}/2", " pages")
    s.step("Still unread are", f"{left}-{half}", " pages")
    return s.item(
        f"A book has {pages} pages. {name} reads {r} pages a day for {d} days, then reads "
        f"half of the remaining pages on the weekend. How many pages are still unread?"
    )


def _e_garden(rng: random.Random) -> _Item:
    name, he, _, _ = _person(rng)
    plant, fruit = rng.choice(_PLANTS)
    rows, per_row, each = rng.randint(2, 8), rng.randint(3, 12), 2 * rng.randint(1, 6)
    total = rows * per_row * each
    bag = rng.choice([b for b in (2, 3, 4, 5, 6, 8, 10, 12) if total % b == 0])
    s = _Gsm(rng)
    plants = s.step(f"{name} has", f"{rows}*{per_row}", " plants")
    got = s.step("They give", f"{plants}*{each}", f" {fruit}")
    s.step(f"{he.capitalize()} fills", f"{got}/{bag}", " bags")
    return s.item(
        f"{name} plants {rows} rows of {per_row} {plant} plants. Each plant gives {each} {fruit}. "
        f"{he.capitalize()} packs them in bags of {bag}. How many bags does {he} fill?"
    )


def _e_class(rng: random.Random) -> _Item:
    num, den, words = rng.choice(_FRACTIONS)
    n, k = den * rng.randint(4, 12), rng.randint(2, 6)
    s = _Gsm(rng)
    girls = s.step("There are", f"{n}*{num}/{den}", " girls")
    boys = s.step("So there are", f"{n}-{girls}", " boys")
    s.step("The boys bring", f"{boys}*{k}", " pencils")
    return s.item(
        f"There are {n} students in a class, and {words} of them are girls. "
        f"Each boy brings {k} pencils. How many pencils do the boys bring?"
    )


def _e_collections(rng: random.Random) -> _Item:
    (a_name, _), (b_name, _), (c_name, _) = rng.sample(_PEOPLE, 3)
    thing = rng.choice(_TREATS)
    a, more, k = rng.randint(5, 40), rng.randint(2, 20), rng.randint(2, 3)
    times = {2: "twice", 3: "three times"}[k]
    s = _Gsm(rng)
    b = s.step(f"{b_name} has", f"{a}+{more}", f" {thing}")
    c = s.step(f"{c_name} has", f"{k}*{b}", f" {thing}")
    s.step("Altogether they have", f"{a}+{b}+{c}", f" {thing}")
    return s.item(
        f"{a_name} has {a} {thing}. {b_name} has {more} more {thing} than {a_name}. "
        f"{c_name} has {times} as many {thing} as {b_name}. "
        f"How many {thing} do they have altogether?"
    )


def _e_practice(rng: random.Random) -> _Item:
    name, he, _, _ = _person(rng)
    hobby = rng.choice(_HOBBIES)
    minutes, days = rng.choice((15, 20, 30, 40, 45, 60)), rng.randint(3, 7)
    weeks = next(w for w in range(rng.randint(2, 8), 100) if minutes * days * w % 60 == 0)
    s = _Gsm(rng)
    week = s.step(f"Each week {he} practices", f"{minutes}*{days}", " minutes")
    total = s.step(f"In {weeks} weeks that is", f"{week}*{weeks}", " minutes")
    s.step("In hours that is", f"{total}/60", " hours")
    return s.item(
        f"{name} practices {hobby} for {minutes} minutes a day, {days} days a week. "
        f"How many hours does {he} practice in {weeks} weeks?"
    )


def _e_fuel(rng: random.Random) -> _Item:
    gallons, every = rng.randint(2, 6), rng.choice((20, 25, 30, 40, 50))
    trip = every * rng.randint(2, 12) // 2
    if (2 * trip) % every:
        raise _Redraw
    v = rng.choice(_VEHICLES)
    s = _Gsm(rng)
    miles = s.step("There and back is", f"{trip}*2", " miles")
    legs = s.step("That is", f"{miles}/{every}", f" stretches of {every} miles")
    s.step(f"The {v} needs", f"{legs}*{gallons}", " gallons of fuel")
    return s.item(
        f"A {v} uses {gallons} gallons of fuel for every {every} miles. How many gallons "
        f"does it need for a trip of {trip} miles there and back?"
    )


def _e_tickets(rng: random.Random) -> _Item:
    place = rng.choice(_PLACES)
    adults, kids = rng.randint(1, 6), rng.randint(2, 9)
    adult, kid = rng.randint(10, 30), rng.randint(4, 15)
    s = _Gsm(rng)
    a = s.step("Adult tickets cost", f"{adults}*{adult}", " for the adults", money=True)
    c = s.step("Child tickets cost", f"{kids}*{kid}", " for the children", money=True)
    s.step("Together the tickets cost", f"{a}+{c}", " in total", money=True)
    return s.item(
        f"{adults} adults and {kids} children visit the {place}. An adult ticket costs "
        f"${adult} and a child ticket costs ${kid}. How much do the tickets cost in total?"
    )


def _e_spending(rng: random.Random) -> _Item:
    name, he, _, _ = _person(rng)
    num, den, words = rng.choice(_FRACTIONS[:3])
    one, _, lo, hi = rng.choice(_GOODS)
    money = den * rng.randint(8, 40)
    extra = rng.randint(lo, hi)
    s = _Gsm(rng)
    part = s.step(f"{name} spends", f"{money}*{num}/{den}", " on games", money=True)
    spent = s.step(f"With the {one}, {he} spends", f"{part}+{extra}", " in total", money=True)
    s.step(f"{he.capitalize()} has", f"{money}-{spent}", " left", money=True)
    return s.item(
        f"{name} has ${money}. {he.capitalize()} spends {words} of it on games and ${extra} "
        f"on {_a(one)}. How much money does {name} have left?"
    )


def _e_bakery(rng: random.Random) -> _Item:
    box, price, days = rng.choice((4, 6, 8, 12)), rng.randint(5, 18), rng.randint(2, 7)
    per_day = box * rng.randint(3, 15)
    s = _Gsm(rng)
    made = s.step(f"In {days} days the bakery makes", f"{per_day}*{days}", " muffins")
    boxes = s.step("That fills", f"{made}/{box}", " boxes")
    s.step("The bakery earns", f"{boxes}*{price}", " in sales", money=True)
    return s.item(
        f"A bakery makes {per_day} muffins a day and packs them in boxes of {box}. "
        f"Each box sells for ${price}. How much does the bakery earn in {days} days?"
    )


_EASY = (
    _e_shopping,
    _e_ages,
    _e_speed,
    _e_sharing,
    _e_discount,
    _e_wages,
    _e_recipe,
    _e_savings,
    _e_reading,
    _e_garden,
    _e_class,
    _e_collections,
    _e_practice,
    _e_fuel,
    _e_tickets,
    _e_spending,
    _e_bakery,
)


# ---------------------------------------------------------------------------------------
# medium: MATH Level 1-2 Algebra
# ---------------------------------------------------------------------------------------


def _math(question: str, reference: str, answer: str, level: int, kind: str = "Algebra") -> _Item:
    return _Item(question, reference, answer, f"Level {level}", kind)


def _m_evaluate(rng: random.Random) -> _Item:
    coeffs, a = [_nonzero(rng, -5, 5), _nonzero(rng, -9, 9), rng.randint(-10, 10)], _nonzero(rng, -4, 5)
    terms = [coeffs[0] * a * a, coeffs[1] * a, coeffs[2]]
    return _math(
        f"What is the value of ${_poly(coeffs)}$ when $x = {a}$?",
        f"Substituting $x = {a}$ gives ${_subst(coeffs, a)} = {_sum(terms)} = \\boxed{{{sum(terms)}}}$.",
        str(sum(terms)),
        1,
    )


def _m_two_vars(rng: random.Random) -> _Item:
    a, b = _nonzero(rng, -6, 8), _nonzero(rng, -6, 8)
    p, q, k = rng.randint(1, 5), rng.randint(1, 5), rng.choice((2, 3, 4, 5, 6))
    num = p * a * a + q * b
    value = Fraction(num, k)
    expr, substituted = _combo([(p, "x^2"), (q, "y")]), _combo([(p, f"({a})^2"), (q, f"({b})")])
    return _math(
        f"If $x = {a}$ and $y = {b}$, what is the value of $\\frac{{{expr}}}{{{k}}}$?",
        f"We have $\\frac{{{substituted}}}{{{k}}} = "
        f"\\frac{{{_sum([p * a * a, q * b])}}}{{{k}}} = \\frac{{{num}}}{{{k}}} = \\boxed{{{_tex(value)}}}$.",
        _tex(value),
        1 if value.denominator == 1 else 2,
    )


def _divide(a: int, x: Fraction) -> str:
    """The last sentence of a linear solve (the coefficient is never 1: nothing to divide)."""
    if a == 1:
        raise _Redraw
    return f". Dividing both sides by ${a}$ gives $x = \\boxed{{{_tex(x)}}}$."


def _m_linear(rng: random.Random) -> _Item:
    a, b, c = _nonzero(rng, -9, 9), _nonzero(rng, -20, 20), rng.randint(-30, 30)
    x = Fraction(c - b, a)
    verb = "Subtracting" if b > 0 else "Adding"
    return _math(
        f"Solve for $x$: ${_poly([a, b])} = {c}$.",
        f"{verb} ${abs(b)}$ {'from' if b > 0 else 'to'} both sides gives ${_poly([a, 0])} = {c - b}$" + _divide(a, x),
        _tex(x),
        1 if x.denominator == 1 else 2,
    )


def _m_linear_both(rng: random.Random) -> _Item:
    a, c = rng.sample([v for v in range(-9, 10) if v], 2)
    b, d = rng.randint(-20, 20), rng.randint(-20, 20)
    x = Fraction(d - b, a - c)
    return _math(
        f"Solve for $x$: ${_poly([a, b])} = {_poly([c, d])}$.",
        f"Collecting the $x$ terms on the left gives ${_poly([a - c, 0])} = {d} - {_par(b)} = {d - b}$"
        + _divide(a - c, x),
        _tex(x),
        2,
    )


def _m_slope(rng: random.Random) -> _Item:
    x1, y1, x2, y2 = (rng.randint(-9, 9) for _ in range(4))
    if x1 == x2:
        raise _Redraw
    m = Fraction(y2 - y1, x2 - x1)
    return _math(
        f"What is the slope of the line passing through $({x1}, {y1})$ and $({x2}, {y2})$?",
        f"The slope is $\\frac{{{y2} - {_par(y1)}}}{{{x2} - {_par(x1)}}} = \\frac{{{y2 - y1}}}{{{x2 - x1}}} "
        f"= \\boxed{{{_tex(m)}}}$.",
        _tex(m),
        2,
    )


def _m_midpoint(rng: random.Random) -> _Item:
    x1, y1 = rng.randint(-10, 10), rng.randint(-10, 10)
    x2, y2 = x1 + 2 * rng.randint(-6, 6), y1 + 2 * rng.randint(-6, 6)
    mx, my = (x1 + x2) // 2, (y1 + y2) // 2
    return _math(
        f"What is the sum of the coordinates of the midpoint of the segment with endpoints "
        f"$({x1}, {y1})$ and $({x2}, {y2})$?",
        f"The midpoint is $\\left(\\frac{{{x1} + {_par(x2)}}}{{2}}, \\frac{{{y1} + {_par(y2)}}}{{2}}\\right) "
        f"= ({mx}, {my})$, so the sum of its coordinates is ${mx} + {_par(my)} = \\boxed{{{mx + my}}}$.",
        str(mx + my),
        2,
    )


def _m_simplify(rng: random.Random) -> _Item:
    a, c = rng.sample(range(1, 10), 2)
    b, d = _nonzero(rng, -9, 9), _nonzero(rng, -9, 9)
    answer = _poly([a - c, b - d])
    opened = _combo([(a, "x"), (b, ""), (-c, "x"), (-d, "")])
    return _math(
        f"Simplify $({_poly([a, b])}) - ({_poly([c, d])})$.",
        f"Distributing the minus sign, $({_poly([a, b])}) - ({_poly([c, d])}) = {opened}$. "
        f"Combining like terms gives $\\boxed{{{answer}}}$.",
        answer,
        1,
    )


def _m_distribute(rng: random.Random) -> _Item:
    a, c = rng.randint(2, 7), rng.randint(2, 7)
    b, d = _nonzero(rng, -9, 9), _nonzero(rng, -9, 9)
    answer = _poly([a + c, a * b + c * d])
    return _math(
        f"Simplify ${a}({_poly([1, b])}) + {c}({_poly([1, d])})$.",
        f"Distributing gives ${_poly([a, a * b])} + {_poly([c, c * d])}$. "
        f"Combining like terms, we get $\\boxed{{{answer}}}$.",
        answer,
        2,
    )


def _m_sum_difference(rng: random.Random) -> _Item:
    x, y = rng.randint(5, 60), rng.randint(1, 50)
    if x <= y:
        x, y = y + x, x
    return _math(
        f"The sum of two numbers is ${x + y}$ and their difference is ${x - y}$. What is the larger number?",
        f"Let the numbers be $x$ and $y$ with $x > y$. Then $x + y = {x + y}$ and $x - y = {x - y}$. "
        f"Adding the equations gives $2x = {2 * x}$, so $x = \\boxed{{{x}}}$.",
        str(x),
        2,
    )


def _m_consecutive(rng: random.Random) -> _Item:
    n, count = rng.randint(-20, 60), rng.choice((3, 5))
    half = count // 2
    names = ", ".join(f"$n {'-' if k < 0 else '+'} {abs(k)}$" if k else "$n$" for k in range(-half, half + 1))
    word = {3: "three", 5: "five"}[count]
    return _math(
        f"The sum of {word} consecutive integers is ${count * n}$. What is the largest of them?",
        f"Let the integers be {names}. Their sum is ${count}n = {count * n}$, so $n = {n}$ "
        f"and the largest is ${n} + {half} = \\boxed{{{n + half}}}$.",
        str(n + half),
        1,
    )


def _m_function(rng: random.Random) -> _Item:
    coeffs, c = [_nonzero(rng, -4, 6), 0, rng.randint(-12, 12)], _nonzero(rng, -6, 6)
    terms = [coeffs[0] * c * c, coeffs[2]]
    return _math(
        f"If $f(x) = {_poly(coeffs)}$, what is the value of $f({c})$?",
        f"We have $f({c}) = {_subst(coeffs, c)} = {_sum(terms)} = \\boxed{{{sum(terms)}}}$.",
        str(sum(terms)),
        1,
    )


def _m_powers(rng: random.Random) -> _Item:
    b1, b2 = rng.sample((2, 3, 4, 5, 6, 7, 10), 2)
    e1, e2 = rng.randint(2, 4), rng.randint(2, 3)
    sign = rng.choice((1, -1))
    value = b1**e1 + sign * b2**e2
    op = "+" if sign > 0 else "-"
    return _math(
        f"Evaluate ${b1}^{e1} {op} {b2}^{e2}$.",
        f"We have ${b1}^{e1} = {b1**e1}$ and ${b2}^{e2} = {b2**e2}$, so "
        f"${b1}^{e1} {op} {b2}^{e2} = {b1**e1} {op} {b2**e2} = \\boxed{{{value}}}$.",
        str(value),
        1,
    )


def _m_plan(rng: random.Random) -> _Item:
    base, rate, used = rng.randint(10, 40), rng.randint(2, 9), rng.randint(2, 15)
    bill = base + rate * used
    return _math(
        f"A phone plan costs $\\${base}$ per month plus $\\${rate}$ per gigabyte of data. "
        f"If one month's bill is $\\${bill}$, how many gigabytes were used?",
        f"Let $g$ be the number of gigabytes. Then ${base} + {rate}g = {bill}$, so "
        f"${rate}g = {bill - base}$ and $g = \\boxed{{{used}}}$.",
        str(used),
        2,
    )


_MEDIUM = (
    _m_evaluate,
    _m_two_vars,
    _m_linear,
    _m_linear_both,
    _m_slope,
    _m_midpoint,
    _m_simplify,
    _m_distribute,
    _m_sum_difference,
    _m_consecutive,
    _m_function,
    _m_powers,
    _m_plan,
)


# ---------------------------------------------------------------------------------------
# hard: MATH Level 3-4 Algebra, Intermediate Algebra, Precalculus
# ---------------------------------------------------------------------------------------


def _h_system(rng: random.Random) -> _Item:
    x, y = rng.randint(-9, 9), rng.randint(-9, 9)
    a, b, c, d = (_nonzero(rng, -6, 6) for _ in range(4))
    det = a * d - b * c
    if det == 0:
        raise _Redraw
    e, f = a * x + b * y, c * x + d * y
    ask = rng.choice(("x + y", "xy", "pair"))
    answer, final, question = {
        "x + y": (str(x + y), f"x + y = {x} + {_par(y)}", "what is the value of $x + y$?"),
        "xy": (str(x * y), f"xy = ({x})({y})", "what is the value of $xy$?"),
        "pair": (f"({x}, {y})", "(x, y)", "what is the ordered pair $(x, y)$?"),
    }[ask]
    reference = (
        f"Multiplying the first equation by ${d}$ and the second by ${b}$, then subtracting, "
        f"gives $(({a})({d}) - ({b})({c}))x = ({e})({d}) - ({f})({b})$, "
        f"that is, ${_poly([det, 0])} = {det * x}$, so $x = {x}$. "
        f"Substituting into the first equation gives "
        f"${_poly([b, 0], 'y')} = {e} - {_par(a * x)} = {e - a * x}$, "
        f"so $y = {y}$. Therefore ${final} = \\boxed{{{answer}}}$."
    )
    first, second = _combo([(a, "x"), (b, "y")]), _combo([(c, "x"), (d, "y")])
    return _math(f"If ${first} = {e}$ and ${second} = {f}$, {question}", reference, answer, rng.choice((3, 4)))


def _roots(rng: random.Random) -> tuple[int, int, int, list[int]]:
    r1, r2 = rng.sample(range(-9, 10), 2)
    k = rng.choice((1, 1, 1, 2, 3))
    return r1, r2, k, [k, -k * (r1 + r2), k * r1 * r2]


def _h_vieta(rng: random.Random) -> _Item:
    r1, r2, k, (a, b, c) = _roots(rng)
    if rng.random() < 0.5:
        value = Fraction(-b, a)
        ref = (
            f"By Vieta's formulas, the sum of the roots of $ax^2 + bx + c = 0$ is $-\\frac{{b}}{{a}}$. "
            f"Here this is $-\\frac{{{b}}}{{{a}}} = \\boxed{{{_tex(value)}}}$."
        )
        what = "sum"
    else:
        value = Fraction(c, a)
        ref = (
            f"By Vieta's formulas, the product of the roots of $ax^2 + bx + c = 0$ is $\\frac{{c}}{{a}}$. "
            f"Here this is $\\frac{{{c}}}{{{a}}} = \\boxed{{{_tex(value)}}}$."
        )
        what = "product"
    return _math(f"What is the {what} of the roots of ${_poly([a, b, c])} = 0$?", ref, _tex(value), 3)


def _factor(r: int) -> str:
    return f"(x {'-' if r > 0 else '+'} {abs(r)})" if r else "x"


def _h_solutions(rng: random.Random) -> _Item:
    r1, r2, k, coeffs = _roots(rng)
    lo, hi = sorted((r1, r2))
    lead = "" if k == 1 else str(k)
    ref = (
        f"Factoring gives ${lead}{_factor(lo)}{_factor(hi)} = 0$, so $x = {lo}$ or $x = {hi}$. "
        f"The solutions are $\\boxed{{{lo}, {hi}}}$."
    )
    return _math(
        f"Find all solutions to ${_poly(coeffs)} = 0$. Enter the solutions, separated by commas.", ref, f"{lo}, {hi}", 3
    )


def _h_root_gap(rng: random.Random) -> _Item:
    r1, r2, k, coeffs = _roots(rng)
    lo, hi = sorted((r1, r2))
    lead = "" if k == 1 else str(k)
    ref = (
        f"Factoring gives ${lead}{_factor(lo)}{_factor(hi)} = 0$, so the solutions are $x = {lo}$ and "
        f"$x = {hi}$. Their positive difference is ${hi} - {_par(lo)} = \\boxed{{{hi - lo}}}$."
    )
    return _math(
        f"What is the positive difference between the solutions of ${_poly(coeffs)} = 0$?", ref, str(hi - lo), 4
    )


def _h_compose(rng: random.Random) -> _Item:
    a, b, c, k = _nonzero(rng, -5, 5), rng.randint(-9, 9), rng.randint(-9, 9), _nonzero(rng, -5, 5)
    g = k * k + c
    value = a * g + b
    ref = (
        f"First, $g({k}) = {_subst([1, 0, c], k)} = {g}$. "
        f"Then $f(g({k})) = f({g}) = {_subst([a, b], g)} = \\boxed{{{value}}}$."
    )
    return _math(
        f"Let $f(x) = {_poly([a, b])}$ and $g(x) = {_poly([1, 0, c])}$. What is $f(g({k}))$?", ref, str(value), 3
    )


_ORDINALS = {
    2: "second",
    3: "third",
    4: "fourth",
    5: "fifth",
    6: "sixth",
    7: "seventh",
    8: "eighth",
    10: "tenth",
    12: "twelfth",
    15: "fifteenth",
    20: "twentieth",
    25: "twenty-fifth",
    30: "thirtieth",
}


def _h_sequence(rng: random.Random) -> _Item:
    first, d = rng.randint(-20, 30), _nonzero(rng, -7, 9)
    i, j = sorted(rng.sample((2, 3, 4, 5, 6, 7, 8), 2))
    n = rng.choice((10, 12, 15, 20, 25, 30))
    term = lambda k: first + (k - 1) * d  # noqa: E731 - a one-line formula reads best here
    ref = (
        f"Let the common difference be $d$. Then ${term(j)} - {_par(term(i))} = {j - i}d$, so $d = {d}$. "
        f"The first term is ${term(i)} - {i - 1}\\cdot{_par(d)} = {first}$, so the {_ORDINALS[n]} term is "
        f"${first} + {n - 1}\\cdot{_par(d)} = \\boxed{{{term(n)}}}$."
    )
    return _math(
        f"The {_ORDINALS[i]} and {_ORDINALS[j]} terms of an arithmetic sequence are ${term(i)}$ and "
        f"${term(j)}$, respectively. What is the {_ORDINALS[n]} term?",
        ref,
        str(term(n)),
        rng.choice((3, 4)),
    )


def _h_remainder(rng: random.Random) -> _Item:
    coeffs = [1, rng.randint(-5, 5), rng.randint(-9, 9), rng.randint(-12, 12)]
    r = _nonzero(rng, -4, 4)
    terms = [c * r ** (3 - i) for i, c in enumerate(coeffs)]
    return _math(
        f"Find the remainder when ${_poly(coeffs)}$ is divided by ${_poly([1, -r])}$.",
        f"By the Remainder Theorem, the remainder is $p({r})$ where $p(x) = {_poly(coeffs)}$. "
        f"We get $p({r}) = {_subst(coeffs, r)} = {_sum(terms)} = \\boxed{{{sum(terms)}}}$.",
        str(sum(terms)),
        3,
        "Intermediate Algebra",
    )


def _h_minimum(rng: random.Random) -> _Item:
    h, m = _nonzero(rng, -9, 9), rng.randint(-30, 30)
    b, c = 2 * h, h * h + m
    return _math(
        f"What is the minimum value of ${_poly([1, b, c])}$ over all real $x$?",
        f"Completing the square, ${_poly([1, b, c])} = {_factor(-h)}^2 {'-' if m < 0 else '+'} {abs(m)}$. "
        f"Since ${_factor(-h)}^2 \\ge 0$, the minimum value is $\\boxed{{{m}}}$, attained at $x = {-h}$.",
        str(m),
        3,
        "Intermediate Algebra",
    )


def _h_absolute(rng: random.Random) -> _Item:
    a, b = _nonzero(rng, -15, 15), rng.randint(1, 20)
    return _math(
        f"What is the sum of all values of $x$ such that $|x {'-' if a > 0 else '+'} {abs(a)}| = {b}$?",
        f"We need $x - {_par(a)} = {b}$ or $x - {_par(a)} = -{b}$, so $x = {a + b}$ or $x = {a - b}$. "
        f"The sum is ${a + b} + {_par(a - b)} = \\boxed{{{2 * a}}}$.",
        str(2 * a),
        3,
        "Intermediate Algebra",
    )


def _h_logs(rng: random.Random) -> _Item:
    base = rng.choice((2, 3, 4, 5, 6, 7, 10))
    p, q = rng.randint(1, 4), rng.randint(1, 4)
    m, n = base**p, base**q
    return _math(
        f"Evaluate $\\log_{{{base}}} {m} + \\log_{{{base}}} {n}$.",
        f"Since ${m} = {base}^{p}$ and ${n} = {base}^{q}$, we have "
        f"$\\log_{{{base}}} {m} + \\log_{{{base}}} {n} "
        f"= {p} + {q} = \\boxed{{{p + q}}}$.",
        str(p + q),
        3,
        "Intermediate Algebra",
    )


def _h_inequality(rng: random.Random) -> _Item:
    a, b, c = rng.choice((-6, -5, -4, -3, -2, -1, 2, 3, 4, 5, 6)), _nonzero(rng, -15, 15), rng.randint(-15, 15)
    bound = Fraction(c - b, a)
    flip = a < 0
    answer = f"({_tex(bound)}, \\infty)" if flip else f"(-\\infty, {_tex(bound)})"
    note = ", reversing the inequality because we divide by a negative number" if flip else ""
    rel = ">" if flip else "<"
    return _math(
        f"Solve the inequality ${_poly([a, b])} < {c}$. Express your answer in interval notation.",
        f"{'Subtracting' if b > 0 else 'Adding'} ${abs(b)}$ {'from' if b > 0 else 'to'} both sides "
        f"gives ${_poly([a, 0])} < {c - b}$. Dividing by ${a}${note}, "
        f"we get $x {rel} {_tex(bound)}$. In interval notation this is $\\boxed{{{answer}}}$.",
        answer,
        4,
    )


# Exact values of cos and sin in the first quadrant, as (numerator, denominator, radicand).
_FIRST_QUADRANT = {
    0: ((1, 1, 1), (0, 1, 1)),
    30: ((1, 2, 3), (1, 2, 1)),
    45: ((1, 2, 2), (1, 2, 2)),
    60: ((1, 2, 1), (1, 2, 3)),
}
_TAN = {0: (0, 1, 1), 30: (1, 3, 3), 45: (1, 1, 1), 60: (1, 1, 3)}
_SPECIAL_ANGLES = tuple(a for a in range(0, 360, 15) if a % 30 == 0 or a % 45 == 0)


def _radical(num: int, den: int, rad: int) -> str:
    """`num/den * sqrt(rad)` in MATH notation, reduced: `-\\frac{\\sqrt{3}}{2}`."""
    f = Fraction(num, den)
    if rad == 1 or f == 0:
        return _tex(f)
    sign = "-" if f < 0 else ""
    top = f"{'' if abs(f.numerator) == 1 else abs(f.numerator)}\\sqrt{{{rad}}}"
    return f"{sign}{top}" if f.denominator == 1 else f"{sign}\\frac{{{top}}}{{{f.denominator}}}"


def _unit_point(angle: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(cos, sin) of a special angle in degrees: the first-quadrant values, rotated."""
    quadrant, ref = divmod(angle % 360, 90)
    cos, sin = _FIRST_QUADRANT[ref]
    for _ in range(quadrant):  # rotating by 90 degrees: (c, s) -> (-s, c)
        cos, sin = (-sin[0], sin[1], sin[2]), cos
    return cos, sin


def _wrap(tex: str) -> str:
    return f"\\left({tex}\\right)" if tex.startswith("-") else tex


def _h_trig(rng: random.Random) -> _Item:
    angle, func, k = rng.choice(_SPECIAL_ANGLES), rng.choice(("sin", "cos", "tan")), rng.choice((1, 1, 2, 3, 4))
    cos, sin = _unit_point(angle)
    if func == "tan":
        if cos[0] == 0:
            raise _Redraw  # tan 90 and tan 270 are undefined
        sign = 1 if (angle % 360) // 90 in (0, 2) else -1
        num, den, rad = _TAN[angle % 90] if angle % 90 else (0, 1, 1)
        num *= sign
        work = (
            f"$\\tan {angle}^\\circ = \\frac{{\\sin {angle}^\\circ}}{{\\cos {angle}^\\circ}} = "
            f"\\frac{{{_radical(*sin)}}}{{{_radical(*cos)}}} = {_radical(num, den, rad)}$"
        )
    else:
        num, den, rad = cos if func == "cos" else sin
        work = f"$\\{func} {angle}^\\circ = {_radical(num, den, rad)}$"
    value = _radical(k * num, den, rad)
    point = f"\\left({_radical(*cos)}, {_radical(*sin)}\\right)"
    ref = f"The point on the unit circle at ${angle}^\\circ$ is ${point}$, so {work}."
    if k == 1:
        ref = ref[:-2] + f" = \\boxed{{{value}}}$."
    else:
        unit = _wrap(_radical(num, den, rad))
        ref += f" Therefore ${k}\\{func} {angle}^\\circ = {k}\\cdot {unit} = \\boxed{{{value}}}$."
    coeff = "" if k == 1 else str(k)
    return _math(f"Compute ${coeff}\\{func} {angle}^\\circ$.", ref, value, 3 if k == 1 else 4, "Precalculus")


def _h_polar(rng: random.Random) -> _Item:
    angle, r = rng.choice([a for a in _SPECIAL_ANGLES if a]), rng.randint(2, 8)
    (cn, cd, cr), (sn, sd, sr) = _unit_point(angle)
    frac = Fraction(angle, 180)
    numerator = "" if frac.numerator == 1 else frac.numerator
    theta = "\\pi" if frac == 1 else f"\\frac{{{numerator}\\pi}}{{{frac.denominator}}}"
    answer = f"({_radical(r * cn, cd, cr)}, {_radical(r * sn, sd, sr)})"
    ref = (
        f"In rectangular coordinates, $\\left({r}, {theta}\\right)$ becomes "
        f"$\\left({r}\\cos {theta}, {r}\\sin {theta}\\right) = \\boxed{{{answer}}}$."
    )
    return _math(
        f"Convert the point $\\left( {r}, {theta} \\right)$ in polar coordinates to rectangular coordinates.",
        ref,
        answer,
        3,
        "Precalculus",
    )


def _h_determinant(rng: random.Random) -> _Item:
    a, b, c, d = (rng.randint(-9, 9) for _ in range(4))
    value = a * d - b * c
    matrix = f"\\begin{{vmatrix}} {a} & {b} \\\\ {c} & {d} \\end{{vmatrix}}"
    return _math(
        f"Compute ${matrix}$.",
        f"We have ${matrix} = ({a})({d}) - ({b})({c}) = {a * d} - {_par(b * c)} = \\boxed{{{value}}}$.",
        str(value),
        3,
        "Precalculus",
    )


def _vec(a: int, b: int) -> str:
    return f"\\begin{{pmatrix}} {a} \\\\ {b} \\end{{pmatrix}}"


def _h_vectors(rng: random.Random) -> _Item:
    u, v = (rng.randint(-8, 8), rng.randint(-8, 8)), (rng.randint(-8, 8), rng.randint(-8, 8))
    k = rng.randint(2, 5)
    if rng.random() < 0.5:
        value = u[0] * v[0] + u[1] * v[1]
        return _math(
            f"Compute ${_vec(*u)} \\cdot {_vec(*v)}$.",
            f"The dot product is $({u[0]})({v[0]}) + ({u[1]})({v[1]}) = "
            f"{_sum([u[0] * v[0], u[1] * v[1]])} = \\boxed{{{value}}}$.",
            str(value),
            3,
            "Precalculus",
        )
    answer = _vec(k * u[0] - v[0], k * u[1] - v[1])
    return _math(
        f"Find ${k}{_vec(*u)} - {_vec(*v)}$.",
        f"We have ${k}{_vec(*u)} = {_vec(k * u[0], k * u[1])}$, so ${k}{_vec(*u)} - {_vec(*v)} = \\boxed{{{answer}}}$.",
        answer,
        3,
        "Precalculus",
    )


_HARD = (
    _h_system,
    _h_vieta,
    _h_solutions,
    _h_root_gap,
    _h_compose,
    _h_sequence,
    _h_remainder,
    _h_minimum,
    _h_absolute,
    _h_logs,
    _h_inequality,
    _h_trig,
    _h_polar,
    _h_determinant,
    _h_vectors,
)

_TEMPLATES: dict[str, tuple[Callable[[random.Random], _Item], ...]] = {
    "easy": _EASY,
    "medium": _MEDIUM,
    "hard": _HARD,
}


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------


def generate(scenario: str, n: int, seed: int = 0) -> list[dict]:
    """`n` problems of `scenario` with unique (normalized) questions, deterministic in `seed`."""
    templates = _TEMPLATES[check_scenario(scenario)]
    rng = random.Random(seed)
    rows: list[dict] = []
    seen: set[str] = set()
    attempts = 0
    while len(rows) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise RuntimeError(f"could not draw {n} unique {scenario} problems (got {len(rows)})")
        template = rng.choice(templates)
        try:
            item = template(rng)
        except _Redraw:
            continue
        key = normalize_question(item.question)
        if key in seen:
            continue
        seen.add(key)
        rows.append(
            {
                "id": f"{scenario}-{len(rows):05d}",
                "scenario": scenario,
                "question": item.question,
                "reference": item.reference,
                "answer": item.answer,
                "level": item.level,
                "type": item.type,
                "source": "embedded",
            }
        )
    return rows


def _question(row: dict) -> str:
    # Hub MATH rows call it `problem`; everything else `question`.
    return row["question"] if "question" in row else row["problem"]


def split_train_test(rows: list[dict], n_test: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Shuffle deterministically, hold out `n_test` rows, and drop training rows whose
    normalized question also appears in the test split."""
    if not 0 <= n_test <= len(rows):
        raise ValueError(f"n_test={n_test} must be between 0 and the number of rows ({len(rows)})")
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    test, rest = shuffled[:n_test], shuffled[n_test:]
    held_out = {normalize_question(_question(r)) for r in test}
    train = [r for r in rest if normalize_question(_question(r)) not in held_out]
    return train, test


def drop_shared(train: list[dict], test: list[dict]) -> tuple[list[dict], list[dict]]:
    """(training rows whose normalized question is not in `test`, the dropped ones), each
    dropped row listed as `{id, test_id, question}`."""
    test_ids = {}
    for r in test:
        test_ids.setdefault(normalize_question(_question(r)), str(r.get("id", "?")))
    kept, dropped = [], []
    for r in train:
        twin = test_ids.get(normalize_question(_question(r)))
        if twin is None:
            kept.append(r)
        else:
            dropped.append({"id": str(r.get("id", "?")), "test_id": twin, "question": _question(r)})
    return kept, dropped


def drop_duplicates(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(rows with each normalized question once, the first kept; the later copies), each dropped
    row listed as `{id, kept_id, question}`: a question twice in one source would be trained on
    twice, or held out twice (and counted twice in every benchmark figure)."""
    first: dict[str, str] = {}
    kept, dropped = [], []
    for r in rows:
        key = normalize_question(_question(r))
        if key in first:
            dropped.append({"id": str(r.get("id", "?")), "kept_id": first[key], "question": _question(r)})
        else:
            first[key] = str(r.get("id", "?"))
            kept.append(r)
    return kept, dropped


def check_no_leakage(train: list[dict], test: list[dict]) -> None:
    """Raise ValueError naming every row whose question appears in both splits."""
    test_keys = {normalize_question(_question(r)) for r in test}
    shared = {normalize_question(_question(r)) for r in train} & test_keys
    if shared:
        ids = [str(r.get("id", "?")) for r in train + test if normalize_question(_question(r)) in shared]
        raise ValueError(f"{len(shared)} question(s) shared by train and test; rows: {', '.join(ids)}")


def write_embedded(directory: str, n_per_scenario: int = 600, seed: int = 0) -> dict[str, str]:
    """Write `<directory>/<scenario>.jsonl` for every scenario; returns scenario -> path."""
    os.makedirs(directory, exist_ok=True)
    paths: dict[str, str] = {}
    for scenario in SCENARIOS:
        rows = generate(scenario, n_per_scenario, seed)
        text = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows)
        paths[scenario] = os.path.join(directory, f"{scenario}.jsonl")
        io.write_text(Path(paths[scenario]), text)
    return paths
