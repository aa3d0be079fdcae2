"""The one answer checker: extraction of a final answer and its comparison with the truth.

Data validation (teacher output) and the benchmark both grade through `grade`, so a
solution is judged the same way wherever it appears.
"""

from __future__ import annotations

import logging
import re

EXTRACTION_METHODS = ("hash", "boxed", "last_number", "none")
# Only an explicit final answer earns credit: a cut-off output's last number is not one.
CREDITED_METHODS = ("hash", "boxed")

# `\boxed{` (group 1) or an unbraced `\boxed 9` (group 2: the one token boxed).
_BOX = re.compile(r"\\(?:boxed|fbox)(?:\s*(\{)|\s+(\\[A-Za-z]+|[^\s{}$]))")
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?|-?\.\d+")
_WHOLE_NUMBER_WITH_COMMAS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
# `B`, `(B)`, `B)` or `(B) 12`: the letter alone decides.
_CHOICE = re.compile(r"\(([A-E])\)(?:\s.*)?|([A-E])\)?")
# A number followed only by unit words ("12 dollars", "5 apples each"): keep the number.
_NUMBER_THEN_WORDS = re.compile(r"(-?\d[\d,]*(?:\.\d+)?)(?:\s+[A-Za-z]{2,}\.?)+")
# Inputs that would make sympy evaluate astronomically large powers (math-verify then hangs,
# and its timeouts are off); compared by string only.
_EXPLOSIVE = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\{?\s*\d{6,}")
_MAX_VERIFY_CHARS = 400


class _DropTimeoutWarning(logging.Filter):
    """math-verify warns once that its timeouts are off; we turn them off on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutWarning())


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` (brace-balanced), or of an unbraced
    `\\boxed 9` (one token, as LaTeX reads it); None if there is none."""
    for m in reversed(list(_BOX.finditer(text))):
        if m.group(1) is None:  # unbraced: a control word or a single character
            return m.group(2)
        depth = 1
        for i in range(m.end(), len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[m.end() : i].strip()
        # Unbalanced (output cut off inside the box): try an earlier box.
    return None


def strip_thousands(answer: str) -> str:
    """Remove thousands separators from a number: `1,250`, `1{,}250`, `1,\\!250` -> `1250`."""
    answer = re.sub(r"(?<=\d)(?:\{,\}|,\\!)(?=\d{3})", "", answer)
    if _WHOLE_NUMBER_WITH_COMMAS.fullmatch(answer.strip()):
        answer = answer.replace(",", "")
    return answer


def extract(text: str | None) -> tuple[str | None, str]:
    """The final answer of `text` and how it was found (one of EXTRACTION_METHODS)."""
    if not text:
        return None, "none"
    if "####" in text:
        lines = [ln for ln in text.rsplit("####", 1)[1].splitlines() if ln.strip()]
        # The answer is the first line after the marker; anything later is run-on text.
        line = lines[0].strip() if lines else ""
        line = line.replace("\\$", "").replace("$", "").strip()
        if line.endswith("."):
            line = line[:-1].rstrip()
        boxed = last_boxed(line)
        if boxed is not None:
            line = boxed
        if line:
            return line, "hash"
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed, "boxed"
    numbers = _NUMBER.findall(text)
    if numbers:
        return numbers[-1].replace(",", ""), "last_number"
    return None, "none"


def unwrap_command(text: str, command: str) -> str:
    """Replace every `\\command{X}` by `X` (brace-balanced)."""
    pattern = re.compile(re.escape(command) + r"\s*\{")
    while (m := pattern.search(text)) is not None:
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth:  # unbalanced: leave the rest alone
            break
        text = text[: m.start()] + text[m.end() : i - 1] + text[i:]
    return text


def normalize(answer: str) -> str:
    """Cheap, safe rewrites that make equal answers equal strings."""
    s = answer.strip()
    boxed = last_boxed(s)
    if boxed is not None:
        s = boxed
    s = s.replace("\\$", "").replace("$", "")
    s = s.replace("\\(", "").replace("\\)", "").replace("\u2212", "-")  # also the Unicode minus
    s = re.sub(r"^(?:the\s+)?(?:final\s+)?answer(?:\s+is)?\s*[:=]?\s*", "", s, flags=re.IGNORECASE)
    s = s.replace("\\displaystyle", "")
    for command in ("\\text", "\\textbf", "\\mathrm", "\\mbox", "\\textnormal"):
        s = unwrap_command(s, command)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\\left\b|\\right\b", "", s)
    s = s.replace("\\%", "%").replace("%", "")
    s = re.sub(r"(?<!\\)\\[,!;: ]", "", s)  # LaTeX spacing commands (not the `\\` row break)
    s = re.sub(r"\^\s*\{?\\circ\}?", "", s)  # degrees
    s = re.sub(r"\s+", " ", s).strip()
    if s.endswith("."):
        s = s[:-1].rstrip()
    s = strip_thousands(s)
    units = _NUMBER_THEN_WORDS.fullmatch(s)
    if units:
        s = units.group(1).replace(",", "")
    return s


def _choice(answer: str) -> str | None:
    m = _CHOICE.fullmatch(answer)
    return (m.group(1) or m.group(2)) if m else None


def _parse(answer: str) -> list:
    from math_verify import parse  # imported lazily: `import lib.answers` stays cheap

    parsed = parse(f"${answer}$", parsing_timeout=None)
    return parsed or parse(answer, parsing_timeout=None)


def equivalent(pred: str | None, gold: str | None) -> bool:
    """Whether `pred` states the same answer as `gold`. Never raises."""
    try:
        if pred is None or gold is None:
            return False
        p, g = normalize(str(pred)), normalize(str(gold))
        if not p or not g:
            return False
        if p == g or p.replace(" ", "") == g.replace(" ", ""):
            return True
        # Multiple choice: a letter is only ever equal to the same letter.
        gold_choice, pred_choice = _choice(g), _choice(p)
        if gold_choice or pred_choice:
            return gold_choice == pred_choice
        if any(len(s) > _MAX_VERIFY_CHARS or _EXPLOSIVE.search(s) for s in (p, g)):
            return False
        from math_verify import verify

        gold_parsed, pred_parsed = _parse(g), _parse(p)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))
    except Exception:  # noqa: BLE001 - a checker that crashes a benchmark is worse than a miss
        return False


def grade(output: str | None, gold: str) -> dict:
    """Extract the answer of `output` and judge it against `gold`."""
    pred, method = extract(output)
    correct = method in CREDITED_METHODS and equivalent(pred, gold)
    return {"pred": pred, "method": method, "correct": bool(correct)}
