"""Hub revisions: every Hub model and dataset a profile reads is resolved ONCE to a commit sha,
recorded, and loaded at exactly that sha by every later stage, so that a repository updated on
the Hub between two stages cannot mix two of its commits into one result.

- Models (`models.target` / `models.draft` naming Hub repos): stage 00_base_models resolves them
  (`models.target_revision` / `models.draft_revision`; null = `main` at first use), checks the two
  tokenizers at those commits are one, and writes `paths.hub_revisions(profile)`, an output of 00
  (so its fingerprint is in 00's digest, which every later stage records). Every loader asks
  `revision(cfg, name)` for the sha to pass as `revision=` (transformers, PEFT, vLLM).
- Datasets (`data.hub.path`, `data.hub.revision`): resolved when a scenario's split is made, and
  recorded in the split's meta.json beside it (`splits.ensure_problems`); a split made again
  (its files deleted) loads that same sha.

A pin compatible with what is recorded (null, the recorded sha or a prefix of it, or the branch
or tag name that was resolved) keeps it; another pin makes the stages not current
(`pin_problem`). Local paths (the tiny profile's own base pair, a merged model) have no revision.
"""

from __future__ import annotations

import re
from pathlib import Path

from . import io, paths

ROLES = ("target", "draft")
SHA = re.compile(r"^[0-9a-f]{40}$")


def is_repo(name) -> bool:
    """Whether `name` is a Hub repo id (`name` or `org/name`) rather than a folder on this machine."""
    name = str(name or "")
    if not name or Path(name).expanduser().is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        return False
    return not Path(name).expanduser().exists()  # as transformers does: an existing folder is read as one


def pin_of(cfg, key: str):
    """A revision pin of params (`models.target_revision`, `data.hub.revision`): a string or null."""
    node = cfg
    for part in key.split("."):
        node = node[part]
    if node is not None and (not isinstance(node, str) or not node.strip()):
        raise ValueError(
            f"{key} = {node!r} (profile {cfg['profile']}, scenario {cfg['scenario']}): a Hub revision is a "
            "commit sha, a branch or a tag name, or null (main, resolved once at first use)"
        )
    return node


def resolve(repo: str, kind: str, asked: str | None, key: str) -> str:
    """The commit sha `asked` (null: `main`) names in the Hub repository `repo` (`kind` model or
    dataset), asked of the Hub once; an unknown repo or revision is an error naming `key`."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi()
    info = api.model_info if kind == "model" else api.dataset_info
    try:
        return info(repo, revision=asked or "main").sha
    except RevisionNotFoundError:
        raise ValueError(
            f"{key} = {asked!r}: no such revision of the {kind} repository {repo} on {api.endpoint}"
        ) from None
    except RepositoryNotFoundError:
        raise ValueError(f"{kind} repository {repo!r} not found on {api.endpoint} (or not accessible)") from None


def compatible(asked: str | None, entry: dict) -> bool:
    """Whether a pin still names the recorded commit: null (resolved once, then fixed), the
    recorded sha or a prefix of it (7+ hex digits), or the very name that was resolved."""
    if asked is None or asked == entry.get("asked"):
        return True
    return len(asked) >= 7 and bool(re.fullmatch(r"[0-9a-f]+", asked)) and entry["sha"].startswith(asked)


def entry_text(entry: dict) -> str:
    return f"{entry['repo']} at {entry['sha']} (asked: {entry['asked']})"


# --- models ---------------------------------------------------------------------------------


def recorded_models(profile: str) -> dict:
    """{role: {repo, asked, sha}} that stage 00 recorded for the profile ({} where none)."""
    path = paths.hub_revisions(profile)
    try:
        return io.read_json(path) if path.exists() else {}
    except ValueError as exc:
        raise ValueError(f"{path}: unreadable ({exc}); run 00_base_models again (--redo) to resolve anew") from None


def hub_roles(cfg) -> dict[str, str]:
    """{role: repo} of the roles whose params name a Hub repository."""
    return {role: cfg["models"][role] for role in ROLES if is_repo(cfg["models"][role])}


def model_entry(cfg, role: str, recorded: dict | None = None) -> dict:
    """{repo, asked, sha} of a role's Hub repository: `recorded` while it is the same repo and its
    pin still names that commit, else resolved now (an unknown repo or revision names the key)."""
    repo, key = cfg["models"][role], f"models.{role}_revision"
    asked = pin_of(cfg, key)
    if recorded and recorded.get("repo") == repo and compatible(asked, recorded):
        return recorded
    return {"repo": repo, "asked": asked or "main", "sha": resolve(repo, "model", asked, key)}


def one_tokenizer(cfg, entries: dict) -> int:
    """The named pair's two tokenizers, each at its entry's commit (a local model: its folder),
    proven one (an error names both); returns its size."""
    from . import models

    named = {role: cfg["models"][role] for role in ROLES}
    toks = {role: models.load_tokenizer(named[role], (entries.get(role) or {}).get("sha")) for role in ROLES}
    models.assert_same_tokenizer(
        toks["target"],
        toks["draft"],
        names=tuple(
            f"{role} (models.{role} = {entry_text(entries[role]) if role in entries else named[role]})"
            for role in ROLES
        ),
    )
    return len(toks["target"])


def pin_models(cfg) -> dict:
    """Stage 00's part for Hub models: each named repo resolved to a commit (kept where one is
    recorded and the pin still names it), the two tokenizers at those commits proven one (before
    hours of training, not after, at 05), then recorded. Returns what it recorded."""
    profile, old = cfg["profile"], recorded_models(cfg["profile"])
    out = {role: model_entry(cfg, role, old.get(role)) for role in hub_roles(cfg)}
    if all(cfg["models"][role] for role in ROLES):  # a named pair: one tokenizer, or the run stops here
        one_tokenizer(cfg, out)
    if out:
        io.write_json(paths.hub_revisions(profile), out)
    else:
        paths.hub_revisions(profile).unlink(missing_ok=True)
    return out


def load_kwargs(commit: str | None) -> dict:
    """transformers' `from_pretrained` arguments that load `commit`: its files, and its probe for a
    PEFT adapter too (transformers 5.17 `auto_factory` looks for adapter_config.json at `main`
    unless `adapter_kwargs` names the revision: a file added on the Hub later would be loaded)."""
    return {"revision": commit, "adapter_kwargs": {"revision": commit}} if commit else {}


def revision(cfg, name) -> str | None:
    """The commit to load `name` at: the one stage 00 recorded when `name` is a Hub repo that
    `models.target` or `models.draft` names; None for a folder (no revision) and for other Hub
    models (an EAGLE-3 head, a local teacher: not pinned)."""
    if not is_repo(name) or name not in (cfg["models"]["target"], cfg["models"]["draft"]):
        return None
    for entry in recorded_models(cfg["profile"]).values():
        if entry.get("repo") == name:
            return entry["sha"]
    raise FileNotFoundError(
        f"no Hub revision recorded for {name} (models.target / models.draft) in "
        f"{paths.hub_revisions(cfg['profile'])}: run stage 00_base_models first "
        f"(python -m lib run --profile {cfg['profile']} --stages 00_base_models)"
    )


# --- datasets -------------------------------------------------------------------------------


def dataset_pin(cfg, recorded: dict | None) -> dict:
    """The scenario's Hub dataset at the commit its split is made from: the one `recorded` (the
    split's meta) where the pin still names it, else resolved now."""
    repo, key = cfg["data"]["hub"]["path"], "data.hub.revision"
    asked = pin_of(cfg, key)
    if recorded and recorded.get("repo") == repo:
        if not compatible(asked, recorded):
            raise ValueError(pin_text(key, asked, recorded, cfg))
        return recorded
    return {"repo": repo, "asked": asked or "main", "sha": resolve(repo, "dataset", asked, key)}


def pin_text(key: str, asked, entry: dict, cfg) -> str:
    return (
        f"{key} = {asked!r} (profile {cfg['profile']}, scenario {cfg['scenario']}) does not name the commit "
        f"recorded: {entry_text(entry)}"
    )


# --- what a record is judged by --------------------------------------------------------------


def judged(cfg, rp, stage: str, meta: dict | None) -> dict:
    """The Hub commits a stage's result is made from, as recorded now: the models' (00's record)
    for every stage from 00 on, the dataset's (the split's meta) for 01. {} where none."""
    models = {r: e for r, e in recorded_models(cfg["profile"]).items() if r in hub_roles(cfg)}
    out = {f"model.{role}": entry for role, entry in models.items()}
    if stage == "01_generate_data" and meta and meta.get("hub_revision"):
        out["dataset"] = meta["hub_revision"]
    return out


def pin_problem(cfg, now: dict) -> str | None:
    """A revision pin of params that no longer names the commit the result was made from."""
    for role in ROLES:
        entry = now.get(f"model.{role}")
        key = f"models.{role}_revision"
        if entry and entry.get("repo") == cfg["models"][role] and not compatible(pin_of(cfg, key), entry):
            return pin_text(key, pin_of(cfg, key), entry, cfg)
    entry = now.get("dataset")
    if entry and cfg["data"]["source"] == "hub" and not compatible(pin_of(cfg, "data.hub.revision"), entry):
        return pin_text("data.hub.revision", pin_of(cfg, "data.hub.revision"), entry, cfg)
    return None


def changed(recorded: dict | None, now: dict) -> str | None:
    """Why a record's Hub commits are not those recorded now, or None."""
    if not now:
        return None
    if recorded is None:
        return (
            f"its record names no Hub commit for {', '.join(e['repo'] for e in now.values())} (made before "
            "Hub revisions were recorded): which one it loaded is unknown"
        )
    for key, entry in now.items():
        then = recorded.get(key)
        if not then or then.get("sha") != entry["sha"] or then.get("repo") != entry["repo"]:
            was = entry_text(then) if then else "none"
            return f"made from {key} {was}, now recorded: {entry_text(entry)}"
    return None
