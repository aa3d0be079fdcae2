"""The offline `reference` teacher: rewrites a problem's own reference solution into a style.

Works on the embedded rows and on the real datasets alike: GSM8K solutions (one line per
step with `<<expr=value>>` calculator notes, then `#### answer`) and MATH solutions (prose
with `$...$` / `\\[...\\]` math and a final `\\boxed{...}`). It invents nothing: every step
it writes comes from the reference, so its answer is the reference's answer.
"""

from __future__ import annotations

import re
from fractions import Fraction

from ..answers import last_boxed, strip_thousands, unwrap_command
from ..styles import TRAINED_STYLES, check_style

# GSM8K calculator note: <<48/2=24>>, optionally preceded by a currency sign.
_NOTE = re.compile(r"(\$?)<<([^<>=]*)=([^<>]*)>>")
# An equation written out in a GSM8K line that has no note: `12 x 2 = 24`.
_INLINE = re.compile(r"(\d[\d.,]*(?:\s*[-+*/x×÷]\s*\d[\d.,]*)+)\s*=\s*\$?(-?\d[\d.,]*)")
# Any equation in a line without notes, words excluded: `8p = 5p+$3000`, `86(2)=172`.
_TOKEN = r"[\w$.()^%]*[\d)][\w$.()^%]*|[A-Za-z]\w*"
_SIDE = rf"(?:{_TOKEN})(?:\s*[-+*/–]\s*(?:{_TOKEN}))*"
_EQUATION = re.compile(rf"{_SIDE}\s*=\s*{_SIDE}")
_NUMERIC = re.compile(r"[\d.,+\-*/() ]+")
_VALUE_TEXT = re.compile(r"^\s*-?[\d.,/]*\d%?")
_STOPWORDS = {
    "a",
    "an",
    "the",
    "in",
    "on",
    "at",
    "of",
    "for",
    "to",
    "and",
    "or",
    "with",
    "by",
    "from",
    "is",
    "are",
    "was",
    "were",
    "be",
    "this",
    "that",
    "it",
    "its",
    "he",
    "she",
    "they",
    "his",
    "her",
    "their",
    "so",
    "then",
    "which",
    "per",
    "as",
    "into",
    "than",
}
_RELATION = re.compile(r"=|<|>|\\le|\\ge|\\ne|\\approx|\\equiv|\\Rightarrow|\\implies|\\to\b")
_DISPLAY_ENVS = ("align", "align*", "equation", "equation*", "eqnarray", "eqnarray*", "gather", "gather*")
_LEADING_CONNECTIVE = re.compile(
    r"^(?:so|thus|therefore|hence|then|now|and|finally|first|firstly|next|also|to start|to begin)\b,?\s*", re.IGNORECASE
)
_COMMON_OPENERS = {
    "she",
    "he",
    "they",
    "it",
    "the",
    "there",
    "this",
    "that",
    "these",
    "those",
    "we",
    "our",
    "her",
    "his",
    "their",
    "its",
    "a",
    "an",
    "in",
    "on",
    "at",
    "for",
    "each",
    "every",
    "if",
    "when",
    "after",
    "since",
    "all",
    "altogether",
    "together",
    "with",
    "by",
    "let",
    "one",
    "both",
    "to",
    "from",
    "of",
    "still",
    "half",
    "because",
    "here",
    "note",
    "as",
    # imperatives that open MATH solutions
    "call",
    "suppose",
    "consider",
    "recall",
    "use",
    "notice",
    "observe",
    "write",
    "set",
    "substitute",
    "plug",
    "simplify",
    "expand",
    "factor",
    "evaluate",
    "multiply",
    "divide",
    "add",
    "subtract",
    "solve",
    "apply",
}


def reference_text(problem: dict) -> str:
    """The reference solution of a row: embedded `reference`, MATH `solution`, or GSM8K `answer`."""
    for key in ("reference", "solution", "answer"):
        text = problem.get(key)
        if isinstance(text, str) and ("####" in text or last_boxed(text) is not None):
            return text
    raise ValueError(
        f"problem {problem.get('id', '?')!r} has no reference solution (a `####` answer or a `\\boxed{{}}`)"
    )


def final_answer_from_reference(text: str) -> str:
    """Ground truth of a reference solution: after GSM8K's `####`, else the last `\\boxed{}`."""
    if "####" in text:
        lines = [ln for ln in text.rsplit("####", 1)[1].splitlines() if ln.strip()]
        answer = lines[0].strip() if lines else ""
    else:
        answer = last_boxed(text) or ""
    answer = strip_thousands(answer.strip())
    if not answer:
        raise ValueError("reference has no final answer (no `#### answer` and no `\\boxed{}`)")
    return answer


def rewrite(problem: dict, style: str) -> str:
    """The problem's reference solution rewritten in `style` (`cot` or `cod`)."""
    check_style(style)
    if style not in TRAINED_STYLES:
        raise ValueError(
            f"style {style!r} has nothing to teach; the reference teacher writes: {', '.join(TRAINED_STYLES)}"
        )
    text = reference_text(problem)
    answer = final_answer_from_reference(text)
    if "####" in text:
        return _gsm_cot(text, answer) if style == "cot" else _gsm_cod(text, answer)
    return _math_cot(text, answer) if style == "cot" else _math_cod(text, answer)


# ---------------------------------------------------------------------------------------
# Shared prose helpers
# ---------------------------------------------------------------------------------------


def _connector(i: int, n: int) -> str:
    if i == 0:
        return "First, "
    if i == n - 1:
        return "Finally, "
    return ("Next, ", "Then, ")[(i - 1) % 2]


def _narrate(sentences: list[str], context: str) -> list[str]:
    """Prefix each step with First/Next/Then/Finally, dropping the reference's own connectives."""
    known_lower = set(re.findall(r"\b[a-z]+\b", context))
    out = []
    for i, sentence in enumerate(sentences):
        body = _LEADING_CONNECTIVE.sub("", sentence.strip()) or sentence.strip()
        word = re.match(r"[A-Za-z]+", body)
        # Lowercase an ordinary first word ("She", "Adding"), never a name ("Natalia").
        if word and body[0].isupper() and word.group(0) != "I":
            w = word.group(0).lower()
            if w in _COMMON_OPENERS or w.endswith("ing") or w in known_lower:
                body = body[0].lower() + body[1:]
        out.append(_connector(i, len(sentences)) + body)
    return out


def _spaced(expr: str) -> str:
    """`48/2` -> `48 / 2` (spaces around binary operators, not a leading minus)."""
    return re.sub(r"(?<=[\d)%])\s*([-+*/])\s*", r" \1 ", expr.strip())


# ---------------------------------------------------------------------------------------
# GSM8K format
# ---------------------------------------------------------------------------------------


def _gsm_lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.rsplit("####", 1)[0].splitlines() if ln.strip()]


def _explicit(line: str) -> str:
    """The line with notes removed, writing `expr = value` where the note was the only arithmetic."""

    def replace(m: re.Match) -> str:
        before = line[: m.start()].rstrip()
        if before.endswith("="):  # `48/2 = <<48/2=24>>24`: the arithmetic is already shown
            return m.group(1)
        return f"{_spaced(m.group(2))} = {m.group(1)}"

    return _NOTE.sub(replace, line)


def _name_after(tail: str) -> str:
    """A variable name from the words after a value: `24 clips in May` -> `clips_may`."""
    tail = _VALUE_TEXT.sub("", tail)
    clause = re.split(r"[.,;:!?(]", tail, maxsplit=1)[0]
    words = [w.lower() for w in re.findall(r"[A-Za-z]+", clause) if w.lower() not in _STOPWORDS]
    return "_".join(words[:2])


def _draft_step(name: str, expr: str, value: str) -> str:
    expr, value = expr.strip().replace(" ", ""), value.strip()
    core = value if expr == value else f"{expr} = {value}"
    return f"{name} = {core}" if name else core


def _gsm_steps(text: str) -> list[tuple[str, str, str]]:
    """(name, expr, value) for every calculation of the solution, in order."""
    steps = []
    for line in _gsm_lines(text):
        notes = list(_NOTE.finditer(line))
        for m in notes:
            steps.append((_name_after(line[m.end() :]), m.group(2), m.group(3)))
        if notes:
            continue
        inline = list(_INLINE.finditer(line))
        for m in inline:
            expr = re.sub(r"\s*[x×]\s*", "*", m.group(1)).replace("÷", "/")
            steps.append((_name_after(line[m.end() :]), expr, m.group(2).rstrip(".,")))
        if not inline:  # algebra written out in words: keep the bare equation
            for m in _EQUATION.finditer(line):
                lhs, rhs = m.group(0).replace("$", "").replace("–", "-").split("=", 1)
                steps.append(("", lhs.strip(), rhs.strip()))
    return steps


def _gsm_cod(text: str, answer: str) -> str:
    steps = [_draft_step(*s) for s in _gsm_steps(text)]
    return " -> ".join(steps) + f" #### {answer}" if steps else f"#### {answer}"


_INVERSE = {"+": "-", "-": "+", "*": "/", "/": "*"}


def _check(steps: list[tuple[str, str, str]], answer: str) -> str:
    """A check sentence: undo the last operation where it has two operands, else recompute it."""
    steps = [s for s in steps if _NUMERIC.fullmatch(s[1])]
    if not steps:
        return f"Going over each step again gives the same result, so the answer is {answer}."
    _, expr, value = steps[-1]
    m = re.fullmatch(r"\s*(-?[\d.]+)\s*([-+*/])\s*(-?[\d.]+)\s*", expr)
    if m:
        a, op, b = m.groups()
        try:
            x, y, v = Fraction(a), Fraction(b), Fraction(value.replace(",", ""))
            exact = {"+": x + y, "-": x - y, "*": x * y, "/": x / y if y else None}[op]
            if exact == v and (op != "*" or y != 0):
                return f"To check, {value} {_INVERSE[op]} {b} = {a}, which matches, so the answer is {answer}."
        except (ValueError, ZeroDivisionError):
            pass
    return f"To check, recomputing {_spaced(expr)} gives {value} again, so the answer is {answer}."


def _gsm_cot(text: str, answer: str) -> str:
    sentences = [_explicit(ln) for ln in _gsm_lines(text)]
    sentences = [s if s.endswith((".", "!", "?")) else s + "." for s in sentences]
    body = _narrate(sentences, text)
    return "\n".join(body + [_check(_gsm_steps(text), answer), f"#### {answer}"])


# ---------------------------------------------------------------------------------------
# MATH format
# ---------------------------------------------------------------------------------------


def _segments(text: str) -> list[tuple[str, str]]:
    """Split prose into ("text", s) and ("math", s) pieces; math keeps its delimiters."""
    out: list[tuple[str, str]] = []
    i, start, n = 0, 0, len(text)

    def close(end_token: str, from_: int) -> int:
        j = text.find(end_token, from_)
        return n if j < 0 else j + len(end_token)

    while i < n:
        end = None
        if text.startswith("$$", i):
            end = close("$$", i + 2)
        elif text[i] == "$":
            j = i + 1
            while j < n and text[j] != "$":
                j += 2 if text[j] == "\\" else 1
            end = min(j + 1, n)
        elif text.startswith("\\[", i):
            end = close("\\]", i + 2)
        elif text.startswith("\\(", i):
            end = close("\\)", i + 2)
        elif text.startswith("\\begin{", i):
            env = text[i + 7 : text.find("}", i)]
            if env in _DISPLAY_ENVS:
                end = close(f"\\end{{{env}}}", i)
        elif text[i] == "\\":
            i += 2  # an escaped character such as `\$` in prose
            continue
        if end is None:
            i += 1
            continue
        if start < i:
            out.append(("text", text[start:i]))
        out.append(("math", text[i:end]))
        i = start = end
    if start < n:
        out.append(("text", text[start:]))
    return out


def _strip_asy(text: str) -> str:
    return re.sub(r"\[asy\].*?\[/asy\]", " ", text, flags=re.DOTALL)


def _unbox(text: str) -> str:
    text = re.sub(r"\\(?:boxed|fbox)\s+(?=[^\s{])", "", text)  # unbraced `\boxed 9`
    return unwrap_command(unwrap_command(text, "\\boxed"), "\\fbox")


def _math_body(segment: str) -> list[str]:
    """A math segment without delimiters, split into rows for align-like environments."""
    env = re.match(r"\\begin\{([^}]*)\}", segment)
    if env:
        inner = segment[env.end() : segment.rfind("\\end{")]
        rows = [r.replace("&", " ") for r in re.split(r"\\\\", inner)]
    else:
        inner = re.sub(r"^(\$\$|\$|\\\[|\\\()|(\$\$|\$|\\\]|\\\))$", "", segment.strip())
        rows = [inner]
    cleaned = [re.sub(r"\s+", " ", _unbox(r)).strip().rstrip(".,;").strip() for r in rows]
    return [r for r in cleaned if r]


def _math_cod(text: str, answer: str) -> str:
    """The solution's relations (`a = b`, `x > 2`), one step each; all its math if it has none."""
    relations: list[str] = []
    everything: list[str] = []
    for kind, segment in _segments(_strip_asy(text)):
        if kind != "math":
            continue
        for row in _math_body(segment):
            if not everything or everything[-1] != row:
                everything.append(row)
            if _RELATION.search(row) and (not relations or relations[-1] != row):
                relations.append(row)
    steps = relations or everything
    return " -> ".join(steps) + f" #### {answer}" if steps else f"#### {answer}"


def _math_sentences(text: str) -> list[str]:
    """Sentences of MATH prose, never splitting inside math."""
    pieces = _segments(_strip_asy(text))
    masked, maths = "", []
    for kind, s in pieces:
        if kind == "math":
            # MATH often ends a sentence inside the math (`... = 2.$`, `...\]`): mark it with \x01.
            end = "\x01" if re.search(r"[.!?]\s*(\$\$|\$|\\\]|\\\)|\\end\{[^}]*\})$", s) else ""
            masked += f"\x00{len(maths)}\x00{end}"
            maths.append(s)
        else:
            masked += s
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z\x00\\(])|(?<=\x01)\s*|\n\s*\n", masked)
    restore = lambda s: re.sub(r"\x00(\d+)\x00", lambda m: maths[int(m.group(1))], s)  # noqa: E731
    sentences = [re.sub(r"\s+", " ", restore(p.replace("\x01", ""))).strip() for p in parts]
    return [s for s in sentences if s]


def _math_cot(text: str, answer: str) -> str:
    sentences = [_unbox(s) for s in _math_sentences(text)]
    sentences = [s if s.endswith((".", "!", "?", "$", "\\]")) else s + "." for s in sentences]
    body = _narrate(sentences, text)
    check = f"Checking each step once more gives the same result, so the answer is ${answer}$."
    return "\n".join(body + [check, f"#### {answer}"])
