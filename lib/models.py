"""Which model a role uses, and the checks that two tokenizers are really the same."""

from __future__ import annotations

from pathlib import Path

from . import paths
from .paths import RunPaths

ROLES = ("target", "draft")


def base_model(cfg, rp: RunPaths, role: str) -> str:
    """The untrained model of a role: a hub id / local path from params, or the profile's
    own offline base pair when params leave it empty."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")
    named = cfg["models"][role]
    if named:
        return named
    # summary.json is written last by the builder: without it the pair is absent or half-built.
    if not (rp.base_models / "summary.json").exists():
        raise FileNotFoundError(
            f"the {cfg['profile']} profile's base pair is not built (no {rp.base_models / 'summary.json'}): "
            f"run stage 00_base_models first (python -m lib run --profile {cfg['profile']} --stages 00_base_models), "
            "or name hub models in models.target and models.draft"
        )
    return str(rp.base_model(role))


def uses_base_pair(cfg) -> bool:
    return not (cfg["models"]["target"] and cfg["models"]["draft"])


def _looks_local(name: str) -> bool:
    """A hub id is `name` or `org/name`: anything absolute, starting with `.` or `~`, or with
    more than one `/` is a path on this machine (Hugging Face would call it a bad repo id)."""
    return Path(name).expanduser().is_absolute() or name.startswith((".", "~")) or name.count("/") > 1


def made_by(path: Path) -> str | None:
    """The stage, run and profile whose output `path` is (the base pair, an adapter, a merged
    model), as words; None for any other path."""
    path = Path(path).expanduser().absolute()
    data = paths.data_root("any").parent.absolute()  # every profile's data root is in here
    if not path.is_relative_to(data) or path == data:
        return None
    profile = path.relative_to(data).parts[0]
    style, _, scenario = path.name.partition("_")  # a run's folders are named <style>_<scenario>
    rp = RunPaths(profile, style, scenario)
    outputs = {
        rp.base_models: "00_base_models",
        rp.tokenizer: "00_base_models",
        **{rp.base_model(role): "00_base_models" for role in ROLES},
        rp.adapter("target"): "02_train_target",
        rp.adapter("draft"): "04_train_draft",
        **{rp.merged(role): "05_merge" for role in ROLES},
    }
    stage = next((s for p, s in outputs.items() if p.absolute() == path), None)
    if stage is None:
        return None
    run = "" if stage == "00_base_models" else f" of run {rp.name}"
    return f"stage {stage}{run} (profile {profile}) makes it"


def require_model(name_or_path: str) -> None:
    """Refuse a local model or tokenizer path that does not exist, naming it and the stage that
    makes it (a deleted merged draft, say), before Hugging Face reads it as a malformed repo id."""
    name = str(name_or_path)
    if not _looks_local(name) or Path(name).expanduser().exists():
        return
    maker = made_by(Path(name))
    raise FileNotFoundError(
        f"model folder {name} does not exist"
        + (f": {maker}; run that stage again" if maker else "; check models.target / models.draft or the path given")
    )


def load_tokenizer(name_or_path: str, revision: str | None = None):
    """`revision`: the Hub commit (`hub.revision`), None for a folder."""
    from transformers import AutoTokenizer

    require_model(name_or_path)
    return AutoTokenizer.from_pretrained(name_or_path, revision=revision)


def assert_same_tokenizer(a, b, names=("target", "draft")) -> None:
    """Speculative decoding compares token ids: refuse a pair whose vocabularies or special
    tokens differ, naming the first difference."""
    va, vb = a.get_vocab(), b.get_vocab()
    if va != vb:
        only_a = sorted(set(va) - set(vb))[:5]
        only_b = sorted(set(vb) - set(va))[:5]
        moved = [t for t in set(va) & set(vb) if va[t] != vb[t]][:5]
        raise ValueError(
            f"{names[0]} and {names[1]} tokenizers differ: vocab sizes {len(va)} vs {len(vb)}; "
            f"only in {names[0]}: {only_a}; only in {names[1]}: {only_b}; different ids: {moved}"
        )
    sa, sb = a.special_tokens_map, b.special_tokens_map
    if sa != sb or a.eos_token_id != b.eos_token_id or a.pad_token_id != b.pad_token_id:
        raise ValueError(f"{names[0]} and {names[1]} special tokens differ: {sa} vs {sb}")
    if (a.chat_template or "") != (b.chat_template or ""):
        raise ValueError(f"{names[0]} and {names[1]} chat templates differ")


def enable_thinking(cfg, style: str | None = None) -> bool:
    """Whether prompts of `style` (default: the run's) let the chat template think
    (params `prompt.enable_thinking`, per style)."""
    return bool(cfg["prompt"]["enable_thinking"][style or cfg["style"]])


def prompt_text(tokenizer, style: str, question: str, thinking: bool = False) -> str:
    """The exact prompt string every engine sees (chat template applied once, here).
    `thinking`: the template's `enable_thinking` (Qwen3: False opens the answer with an empty
    <think></think>, True lets the model think first); templates without it ignore it."""
    from .styles import chat_messages

    return tokenizer.apply_chat_template(
        chat_messages(style, question), tokenize=False, add_generation_prompt=True, enable_thinking=thinking
    )


def chat_ids(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> list[int]:
    """Token ids of a chat (transformers 5 returns a BatchEncoding from apply_chat_template)."""
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def count_tokens(tokenizer, texts) -> list[int]:
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def token_counter(name_or_path: str, revision: str | None = None):
    """`count_tokens` with the tokenizer of a model, as a function of texts. From a local
    folder's `tokenizer.json`, through the `tokenizers` library directly: the same fast
    tokenizer transformers would wrap, the same ids, without importing transformers and torch
    (3-20 s of each data notebook on 2 cores, for counting). Else (a hub id) through transformers."""
    file = Path(name_or_path) / "tokenizer.json"
    if not file.is_file():
        tokenizer = load_tokenizer(name_or_path, revision)
        return lambda texts: count_tokens(tokenizer, texts)
    from tokenizers import Tokenizer

    try:
        fast = Tokenizer.from_file(str(file))
    except Exception as exc:  # the tokenizers library raises a bare Exception naming no file
        maker = made_by(Path(name_or_path))
        raise ValueError(
            f"{file}: not a readable tokenizer ({exc})" + (f"; {maker}: run it again" if maker else "")
        ) from None
    return lambda texts: [len(e.ids) for e in fast.encode_batch(list(texts), add_special_tokens=False)]


def dir_size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 2**20
