"""Reasoning styles and their system prompts (the only place a style is spelled out)."""

from __future__ import annotations

from .choices import choose

STYLES = ("base", "cot", "cod")
# Styles a model is fine-tuned in; `base` is the untrained pair prompted in the CoT style.
TRAINED_STYLES = ("cot", "cod")

COT_PROMPT = (
    "You are a careful math tutor. Solve the problem step by step. Explain every step in a "
    "full sentence, say which quantities you combine and why, and check the arithmetic of "
    "each step. End with a final line of the form '#### <answer>'."
)

COD_PROMPT = (
    "Solve the problem in Chain of Draft style: write only the essential expression of each "
    "step, with its units or variable names, as a terse draft. Separate steps with ' -> '. "
    "No sentences. End with '#### <answer>'."
)

SYSTEM_PROMPTS = {"base": COT_PROMPT, "cot": COT_PROMPT, "cod": COD_PROMPT}


def check_style(style: str, allowed: tuple[str, ...] = STYLES) -> str:
    """Return `style` or raise a ValueError naming the valid choices."""
    return choose("style", style, allowed)


def system_prompt(style: str) -> str:
    return SYSTEM_PROMPTS[check_style(style)]


def chat_messages(style: str, question: str) -> list[dict]:
    """The prompt every stage uses: the style's system message, then the question."""
    return [
        {"role": "system", "content": system_prompt(style)},
        {"role": "user", "content": question},
    ]
