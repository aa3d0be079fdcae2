"""Layered, validated parameters.

Layers, in order: `params/base.yaml`, `profiles/<profile>.yaml`, `scenarios/<scenario>.yaml`,
`profiles/<profile>/<scenario>.yaml` (optional), `styles/<style>.yaml`, then the caller's
overrides. `base.yaml` declares every key the
workbook knows; any later layer that names another key, or gives a value of another type or
outside a key's choices, is an error naming the valid ones — before any notebook runs
(papermill itself only warns on unknown parameters).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import yaml

from . import paths
from .styles import STYLES

# Keys whose values come from a fixed set.
CHOICES: dict[str, tuple] = {
    "device": ("auto", "cpu", "cuda"),
    "data.source": ("embedded", "hub", "local"),
    "data.teacher": ("reference", "gemini", "local", "file"),
    "train.backend": ("auto", "unsloth", "trl"),
    "distill.gate_mode": ("stop", "warn"),
    "benchmark.method": ("draft_model", "ngram", "eagle3"),
    "engine.async_scheduling": ("auto", "on", "off"),
}
# Keys that also take a word beside their default's type, and integer keys that must be >= 1.
WORDS: dict[str, tuple] = {"benchmark.k": ("auto",)}
AT_LEAST_ONE = ("benchmark.k", "benchmark.repetitions", "benchmark.calibration_samples")


class ParamsError(ValueError):
    pass


class Params(dict):
    """A read-only view of nested parameters with attribute access: `cfg.train.target.lr`."""

    def __getattr__(self, key: str) -> Any:
        try:
            value = self[key]
        except KeyError:
            raise AttributeError(f"no parameter {key!r}; valid: {', '.join(sorted(self))}") from None
        return Params(value) if isinstance(value, dict) else value

    def to_dict(self) -> dict:
        return copy.deepcopy(dict(self))


def _names(folder: str) -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in (paths.params_dir() / folder).glob("*.yaml")))


def profiles() -> tuple[str, ...]:
    return _names("profiles")


def scenarios() -> tuple[str, ...]:
    return _names("scenarios")


def _choose(kind: str, value: str, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise ParamsError(f"unknown {kind} {value!r}; valid {kind}s: {', '.join(valid)}")
    return value


def _load_yaml(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path.name}: expected a mapping at the top level")
    return data


def _expand_dotted(overrides: Mapping[str, Any]) -> dict:
    """`{"benchmark.k": 3}` and `{"benchmark": {"k": 3}}` mean the same override."""
    out: dict = {}
    for key, value in overrides.items():
        node = out
        *parents, leaf = str(key).split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf].update(value)
        else:
            node[leaf] = value
    return out


def _type_ok(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def _merge(base: dict, layer: dict, source: str, prefix: str = "") -> dict:
    """Merge `layer` into a copy of `base`, refusing keys that `base` does not declare."""
    out = copy.deepcopy(base)
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            raise ParamsError(
                f"{source}: unknown parameter {dotted!r}; valid keys here: {', '.join(sorted(base))}"
            )
        default = base[key]
        if isinstance(default, dict) and default and isinstance(value, dict):
            out[key] = _merge(default, value, source, dotted + ".")
            continue
        if value in WORDS.get(dotted, ()):
            out[key] = value
            continue
        if not _type_ok(default, value):
            raise ParamsError(
                f"{source}: parameter {dotted!r} must be {type(default).__name__}, got {value!r}"
            )
        if dotted in AT_LEAST_ONE and value < 1:
            words = "".join(f"{w!r} or " for w in WORDS.get(dotted, ()))
            raise ParamsError(f"{source}: parameter {dotted!r} must be {words}an integer >= 1, got {value!r}")
        if dotted in CHOICES and value not in CHOICES[dotted]:
            raise ParamsError(
                f"{source}: parameter {dotted!r} = {value!r} is not valid; choose one of: "
                f"{', '.join(map(str, CHOICES[dotted]))}"
            )
        out[key] = copy.deepcopy(value)
    return out


def resolve(profile: str, style: str, scenario: str, overrides: Mapping[str, Any] | None = None) -> Params:
    """The merged, validated parameters of one run."""
    root = paths.params_dir()
    _choose("profile", profile, profiles())
    _choose("scenario", scenario, scenarios())
    _choose("style", style, STYLES)
    cfg = _load_yaml(root / "base.yaml")
    layers = [
        (root / "profiles" / f"{profile}.yaml", True),
        (root / "scenarios" / f"{scenario}.yaml", True),
        # optional: what one profile needs per scenario (e.g. its local files)
        (root / "profiles" / profile / f"{scenario}.yaml", False),
        (root / "styles" / f"{style}.yaml", True),
    ]
    for source, required in layers:
        if required or source.exists():
            cfg = _merge(cfg, _load_yaml(source), f"{source.parent.name}/{source.name}")
    cfg = _merge(cfg, _expand_dotted(overrides or {}), "overrides")
    cfg.update(profile=profile, style=style, scenario=scenario)
    return Params(cfg)


def dump(cfg: Mapping) -> str:
    return yaml.safe_dump(dict(cfg), sort_keys=False)
