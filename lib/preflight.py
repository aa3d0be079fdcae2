"""`python -m lib check --profile full`: what a grid needs, checked before anything is paid for.

Nothing here trains, generates, uploads or submits. Each check only reads: the grid's
parameters, the machine (device, free disk), the Gemini model's description (`models.get`, not
billed), the Hub's metadata and the two tokenizers' files (a few MB). Each says ok, fail or skip,
with what it found or what to change; the command exits 1 when any check fails. What it cannot
see: whether a batch job will be accepted (the Batch API has no dry run), and the GPU memory a
stage will take.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from . import device, hub, params, paths
from .stages import stages_of
from .styles import STYLES

GB = 1e9


@dataclass
class Check:
    name: str
    status: str  # ok | fail | skip
    detail: str


def _try(name: str, fn) -> Check:
    """Run one check: its detail, or the error it met (a failed check never stops the others)."""
    try:
        return Check(name, "ok", fn())
    except Exception as exc:  # a preflight reports every problem, not the first
        return Check(name, "fail", f"{type(exc).__name__}: {exc}")


def grid(profile: str, styles=None, scenarios=None, overrides: dict | None = None) -> list:
    """Every run's merged parameters (the first error names its run, key and layer)."""
    out = []
    for scenario in scenarios or params.scenarios():
        for style in styles or STYLES:
            n = 1 if style == "base" else params.resolve(profile, style, scenario, overrides)["grid"]["replicates"]
            out += [params.resolve(profile, style, scenario, overrides, r) for r in range(n)]
    return out


def _device(cfgs) -> str:
    wanted = {c["device"] for c in cfgs}
    n = device.gpu_count()
    if "cuda" in wanted and n == 0:
        raise RuntimeError("device = cuda in params, but torch sees no CUDA GPU on this machine")
    names = ", ".join(device.gpu_names()) if n else "none"
    return f"device {'/'.join(sorted(wanted))}; GPUs seen: {n} ({names})"


def _hub_size(repo: str, sha: str) -> float:
    """Bytes of a Hub model's weights at a commit (what its download and a merged copy take)."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(repo, revision=sha, files_metadata=True)
    return float(sum(s.size or 0 for s in info.siblings or [] if s.rfilename.endswith((".safetensors", ".bin"))))


def _disk(cfgs, sizes: dict[str, float]) -> str:
    """Free space where the runs write, against the models the grid downloads and merges."""
    free = shutil.disk_usage(paths.home()).free
    trained = [c for c in cfgs if stages_of(c["style"], c["replicate"]) != stages_of("base")]
    merged = 0 if all(c["merge"]["delete_after_benchmark"] for c in trained) else len(trained)
    need = sum(sizes.values()) * (1 + merged)
    text = f"{free / GB:.1f} GB free in {paths.home()}"
    if not hub.hub_roles(cfgs[0]):
        return text + " (no Hub models: the profile builds its own small pair)"
    if not sizes:
        raise RuntimeError(f"{text}; the Hub models' sizes are unknown (see the checks above)")
    text += f"; the Hub pair {sum(sizes.values()) / GB:.3g} GB, kept once" + (
        f" and merged for {merged} trained run(s)" if merged else " (merged copies deleted after each benchmark)"
    )
    if free < need:
        raise RuntimeError(f"{text}: about {need / GB:.1f} GB needed (set merge.delete_after_benchmark to keep less)")
    return text


def _teacher(cfgs) -> list[Check]:
    taught = [c for c in cfgs if c["style"] != "base" and c["data"]["teacher"] == "gemini"]
    if not taught:
        return [Check("teacher", "skip", f"teacher {sorted({c['data']['teacher'] for c in cfgs})}: nothing to pay for")]
    from .teachers import gemini

    cfg = taught[0]
    n = sum(c["data"]["n_train"] for c in taught if c["replicate"] == 0)  # later replicates share the first's data
    key = _try("gemini key", lambda: f"found ({len(gemini.api_key())} characters; never printed)")
    out = [key, _try("gemini settings", lambda: f"generationConfig {gemini.generation_config(cfg)}")]
    if key.status == "ok":
        out.append(_try("gemini model", lambda: f"{gemini.check_model(gemini.make_client(cfg), cfg)}"))
    out.append(Check("gemini batch", "ok", f"about {n} request(s) in {len(taught)} job(s) (n_train 0 = all rows)"))
    return out


def _hub(cfgs) -> tuple[list[Check], dict[str, float]]:
    out, sizes, entries, seen = [], {}, {}, set()
    for cfg in cfgs:
        repo = cfg["data"]["hub"]["path"]
        if cfg["data"]["source"] == "hub" and repo not in seen:
            seen.add(repo)
            out.append(_try(f"dataset {repo}", lambda c=cfg: f"at {hub.dataset_pin(c, None)['sha']}"))
    cfg = cfgs[0]
    named = hub.hub_roles(cfg)

    def model(role: str, repo: str) -> str:
        entries[role] = hub.model_entry(cfg, role)  # asked of the Hub now, never a recorded commit
        sizes[role] = _hub_size(repo, entries[role]["sha"])
        return f"at {entries[role]['sha']}, {sizes[role] / GB:.3g} GB of weights"

    out += [_try(f"{role} {repo}", lambda r=role, p=repo: model(r, p)) for role, repo in named.items()]
    if len(named) == 2 and len(entries) == 2:
        same = lambda: f"one tokenizer ({hub.one_tokenizer(cfg, entries)} tokens) at the commits above"  # noqa: E731
        out.append(_try("tokenizers", same))
    elif not named:
        out.append(Check("hub models", "skip", "models.target / models.draft name no Hub repos"))
    return out, sizes


def checks(profile: str, styles=None, scenarios=None, overrides: dict | None = None) -> list[Check]:
    # --- the grid's parameters: every run resolves, or the first bad key is named
    try:
        cfgs = grid(profile, styles, scenarios, overrides)
    except ValueError as exc:
        return [Check("params", "fail", str(exc))]
    out = [Check("params", "ok", f"{len(cfgs)} run(s) of profile {profile} resolve")]
    # --- the machine, the teacher, the Hub, the disk the Hub's models will take
    out.append(_try("device", lambda: _device(cfgs)))
    out += _teacher(cfgs)
    found, sizes = _hub(cfgs)
    out += found
    out.append(_try("disk", lambda: _disk(cfgs, sizes)))
    return out


def main(profile: str, styles=None, scenarios=None, overrides: dict | None = None, log=print) -> int:
    """The checks as a table; 1 when any failed."""
    results = checks(profile, styles, scenarios, overrides)
    width = max(len(c.name) for c in results)
    for c in results:
        log(f"{c.status:<5} {c.name:<{width}}  {c.detail}")
    failed = [c.name for c in results if c.status == "fail"]
    log(f"{len(failed)} check(s) failed: {', '.join(failed)}" if failed else "all checks passed")
    return 1 if failed else 0
