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
import functools
import math
from pathlib import Path
from typing import Any, Mapping

import yaml

from . import io, paths
from .choices import choose
from .styles import STYLES

# Keys whose values come from a fixed set.
CHOICES: dict[str, tuple] = {
    "device": ("auto", "cpu", "cuda"),
    "data.source": ("embedded", "hub", "local"),
    "data.teacher": ("reference", "gemini", "local", "file"),
    "data.gemini.thinking_level": ("", "minimal", "low", "medium", "high"),
    "train.backend": ("auto", "unsloth", "trl"),
    "train.report_to": ("none", "wandb"),
    "distill.gate_mode": ("stop", "warn"),
    "distill.serve": ("auto", "adapter", "merged"),
    "benchmark.method": ("draft_model", "ngram", "eagle3"),
    "engine.async_scheduling": ("auto", "on", "off"),
    "models.base_pair.corpus.solutions": ("reference", "styles"),
}
# Sub-sections read only under a choice: a teacher's settings when it teaches, a source's when
# problems come from it. What a run does not read is no part of what it was made with.
TEACHER_SECTIONS = {"gemini": "gemini", "local": "local_teacher", "file": "teacher_file"}
SOURCE_SECTIONS = {"hub": "hub", "local": "local"}
_READ_WHEN = {
    **{f"data.{section}.": ("data.teacher", teacher) for teacher, section in TEACHER_SECTIONS.items()},
    **{f"data.{section}.": ("data.source", source) for source, section in SOURCE_SECTIONS.items()},
    # The EAGLE-3 head's settings, `enabled` included, are read only where it is on: a run without
    # a head has no eagle3 key in its records, as before the section existed.
    "eagle3.": ("eagle3.enabled", True),
}


def read_keys(flat: dict) -> dict:
    """`flat` (dotted keys, as records hold them) without the sub-sections its own choices
    leave unread (`_READ_WHEN`): Gemini's settings do not make a run taught by another teacher."""
    return {
        k: v
        for k, v in flat.items()
        if not any(k.startswith(prefix) and flat.get(key) != value for prefix, (key, value) in _READ_WHEN.items())
    }


# Integer keys that also take a word, and integer keys that must be >= 1.
WORDS: dict[str, tuple] = {"benchmark.k": ("auto",)}
AT_LEAST_ONE = (
    "benchmark.k",
    "benchmark.repetitions",
)  # calibration_samples may be 0: no forecast (k auto checks its own)


# Ranges, by dotted key (fnmatch patterns, first match wins): (low, high, low_exclusive).
# Checked at resolve time, so a value a library would reject late (a zero batch size, K=0, a
# negative count) stops the run before anything is written.
RANGES: tuple[tuple[str, float | None, float | None, bool], ...] = (
    ("*batch_size", 1, None, False),
    ("*max_tokens", 1, None, False),
    ("*max_output_tokens", 1, None, False),
    ("benchmark.floor_max_num_seqs", 0, None, False),  # 0 = no floor pass (first match wins)
    ("benchmark.warmup_repetitions", 0, None, False),  # 0 = none
    ("*max_num_seqs", 1, None, False),
    ("benchmark.k", 1, None, False),
    ("benchmark.k_sweep", 1, None, False),  # each element
    ("*.n_train", 0, None, False),
    ("*.n_test", 0, None, False),
    ("*samples", 0, None, False),
    ("benchmark.bootstrap", 0, None, False),
    ("*.epochs", 0, None, True),
    ("*.lr", 0, None, True),
    ("*.grad_accum", 1, None, False),
    ("*_fraction", 0, 1, False),
    ("*_ratio", 0, 1, False),
    ("*.dropout", 0, 1, False),
    ("distill.gate", 0, 1, False),
    ("engine.gpu_memory_utilization", 0, 1, True),
    ("engine.kv_cache_gb", 0, None, True),
    ("eagle3.ttt_steps", 0, None, False),  # 0 = benchmark.k
    ("eagle3.max_length", 1, None, False),
    ("eagle3.*", 0, None, False),
    ("*_steps", 1, None, False),
    ("*temperature", 0, None, False),
    ("seed", 0, None, False),
    ("grid.replicates", 1, None, False),
    ("grid.gpus_per_run", 0, None, False),
    ("grid.cpus_per_run", 1, None, False),
    ("merge.*", 0, None, False),
    ("*_s", 0, None, False),
    ("*retry_attempts", 1, None, False),
    ("data.gemini.thinking_budget", -1, None, False),
    ("train.lora.r", 1, None, False),
    ("train.lora.alpha", 0, None, True),
    ("models.base_pair.pretrain.seq_len", 0, None, False),  # 0 = unpacked
    ("models.base_pair.corpus.n_problems", 0, None, False),  # 0 = the training problems
    ("models.base_pair.*", 1, None, False),
    ("engine.*", 1, None, False),
)


class ParamsError(ValueError):
    pass


def _numbers(value: Any):
    """Every number in a value, inside lists and mappings too (a boolean is not a number here)."""
    if isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def _range_error(dotted: str, value: Any) -> str | None:
    """Why `value` is out of range for `dotted`, or None (numbers only; lists element-wise).
    No parameter takes NaN or an infinity (none in base.yaml means "unbounded" by one: 0 does),
    and every bound is written so that NaN fails it (NaN compares False both ways)."""
    from fnmatch import fnmatchcase

    numbers = list(_numbers(value))
    if not all(math.isfinite(v) for v in numbers):
        return "must be a finite number"
    for low, high, exclusive in (r[1:] for r in RANGES if fnmatchcase(dotted, r[0])):
        for v in numbers:
            if low is not None and not (v > low if exclusive else v >= low):
                return f"must be {'>' if exclusive else '>='} {low:g}" + (
                    f" and <= {high:g}" if high is not None else ""
                )
            if high is not None and not v <= high:
                return f"must be in [{low:g}, {high:g}]"
        return None
    return None


def _as_float(value: Any) -> Any:
    """YAML 1.1 (PyYAML) reads `2e-4` as a string; a float parameter accepts it as a number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


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


def _load_yaml(path: Path) -> dict:
    """A params layer (a fresh copy: callers merge into it); parsed once per version of the file,
    since every check of a run's lineage resolves its parameters again."""
    path = Path(path)
    st = path.stat() if path.exists() else None
    return copy.deepcopy(_parsed(str(path), st.st_mtime_ns if st else None, st.st_size if st else None))


class _UniqueKeys(yaml.SafeLoader):
    """PyYAML keeps the last of a key given twice in one mapping; a layer that sets one key twice
    is a mistake to name, not a value to guess."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (first at line {seen[key] + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


@functools.lru_cache(maxsize=256)
def _parsed(name: str, mtime_ns, size) -> dict:
    """A params layer; a file that is not UTF-8 or not YAML is an error naming it and the line."""
    path = Path(name)
    try:
        with io.named_decode_errors(path, ParamsError), open(path, encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=_UniqueKeys) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(_yaml_message(path, exc)) from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    return data


def _yaml_message(path: Path, exc: yaml.YAMLError) -> str:
    """PyYAML's error on one line: the file, the line and column of the problem, and what it is."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
    what = ", ".join(x for x in (getattr(exc, "context", None), getattr(exc, "problem", None)) if x)
    return f"{path}: {where}not valid YAML ({what or exc})"


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
    if default is None:
        return True
    if value is None:  # `null` in a layer or `--set k=null` would reach a library as None
        return False
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
            raise ParamsError(f"{source}: unknown parameter {dotted!r}; valid keys here: {', '.join(sorted(base))}")
        default = base[key]
        if isinstance(default, dict) and default and isinstance(value, dict):
            out[key] = _merge(default, value, source, dotted + ".")
            continue
        if value in WORDS.get(dotted, ()):
            out[key] = value
            continue
        if default in WORDS.get(dotted, ()):
            default = 1  # an earlier layer's word (a profile's `k: auto`): the key's numbers are integers
        if isinstance(default, float):
            value = _as_float(value)
        if isinstance(value, bool) and {"on", "off"} <= set(CHOICES.get(dotted, ())):
            value = "on" if value else "off"  # YAML 1.1 (PyYAML, --set) reads a bare on/off as a boolean
        if not _type_ok(default, value):
            raise ParamsError(f"{source}: parameter {dotted!r} must be {type(default).__name__}, got {value!r}")
        if dotted in AT_LEAST_ONE and not value >= 1:
            words = "".join(f"{w!r} or " for w in WORDS.get(dotted, ()))
            raise ParamsError(f"{source}: parameter {dotted!r} must be {words}an integer >= 1, got {value!r}")
        if dotted in CHOICES and value not in CHOICES[dotted]:
            raise ParamsError(
                f"{source}: parameter {dotted!r} = {value!r} is not valid; choose one of: "
                f"{', '.join(map(str, CHOICES[dotted]))}"
            )
        bad_range = _range_error(dotted, value)
        if bad_range:
            raise ParamsError(f"{source}: parameter {dotted!r} = {value!r} {bad_range}")
        out[key] = copy.deepcopy(value)
    return out


def parse_sets(items) -> dict:
    """`--set KEY=VALUE ...` as overrides, each value read as YAML (a number, a list, null)."""
    overrides = {}
    for item in items or []:
        if "=" not in item:
            raise ParamsError(f"--set takes KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            overrides[key] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ParamsError(f"--set {item!r}: the value is not YAML: {exc}") from None
    return overrides


def resolve(
    profile: str, style: str, scenario: str, overrides: Mapping[str, Any] | None = None, replicate: int = 0
) -> Params:
    """The merged, validated parameters of one run (`replicate`: which training of the (style,
    scenario), 0 to `grid.replicates` - 1; the untrained base style has only 0)."""
    root = paths.params_dir()
    choose("profile", profile, profiles(), ParamsError)
    choose("scenario", scenario, scenarios(), ParamsError)
    choose("style", style, STYLES, ParamsError)
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
    n = cfg["grid"]["replicates"]
    if isinstance(replicate, bool) or not isinstance(replicate, int) or not 0 <= replicate < n:
        raise ParamsError(f"replicate {replicate!r}: grid.replicates is {n}, so a replicate is 0 to {n - 1}")
    if style == "base" and replicate:
        raise ParamsError(
            f"replicate {replicate}: the base style is the untrained pair, one run whatever "
            f"grid.replicates says (only replicate 0)"
        )
    cfg.update(profile=profile, style=style, scenario=scenario, replicate=replicate)
    return Params(cfg)


def training_seed(cfg) -> int:
    """The seed of a run's training and sampling: `seed` itself for replicate 0 (the run as it
    always was), another derived from `seed` and the replicate for each later one. Splits keep
    `seed`: every replicate trains and is tested on the same problems."""
    return (cfg["seed"] + 1_000_003 * cfg["replicate"]) % 2**31


def dump(cfg: Mapping) -> str:
    return yaml.safe_dump(dict(cfg), sort_keys=False)
