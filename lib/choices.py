"""The one "value in choices, else an error naming them" check (styles, scenarios, profiles,
stages), at the bottom of the import graph so every module can use it."""

from __future__ import annotations


def choose(kind: str, value, valid, error: type[Exception] = ValueError):
    """Return `value`, or raise `error` naming it and the valid choices."""
    if value not in valid:
        raise error(f"unknown {kind} {value!r}; valid {kind}s: {', '.join(valid)}")
    return value


def choose_all(kind: str, chosen, valid, error: type[Exception] = ValueError) -> list:
    """`chosen` (all of `valid` when empty), or raise `error` naming every unknown one."""
    chosen = list(chosen) if chosen else list(valid)
    bad = [c for c in chosen if c not in valid]
    if bad:
        raise error(f"unknown {kind}(s) {bad}; valid {kind}s: {', '.join(valid)}")
    return chosen
