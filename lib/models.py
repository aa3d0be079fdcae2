"""Which model a role uses, and the checks that two tokenizers are really the same."""

from __future__ import annotations

from pathlib import Path

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


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name_or_path)


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


def token_counter(name_or_path: str):
    """`count_tokens` with the tokenizer of a model, as a function of texts. From a local
    folder's `tokenizer.json`, through the `tokenizers` library directly: the same fast
    tokenizer transformers would wrap, the same ids, without importing transformers and torch
    (3-20 s of each data notebook on 2 cores, for counting). Else (a hub id) through transformers."""
    file = Path(name_or_path) / "tokenizer.json"
    if not file.is_file():
        tokenizer = load_tokenizer(name_or_path)
        return lambda texts: count_tokens(tokenizer, texts)
    from tokenizers import Tokenizer

    fast = Tokenizer.from_file(str(file))
    return lambda texts: [len(e.ids) for e in fast.encode_batch(list(texts), add_special_tokens=False)]


def dir_size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 2**20
