"""The offline base pair: a tokenizer trained on the workbook's corpus and two small
Qwen3-architecture models (target larger than draft, same tokenizer) pretrained briefly on
it, so that fine-tuning has something to adapt. Built once per profile; the `full` profile
names hub models instead and never comes here.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

from . import io

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# The ChatML layout Qwen3 uses, so prompts look alike for the tiny and the full profile.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def train_tokenizer(texts: list[str], vocab_size: int, out_dir: Path):
    """Byte-level BPE with single-digit number tokens (so numbers are read digit by digit)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=4096,
    )
    fast.chat_template = CHAT_TEMPLATE
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return fast


def model_config(tokenizer, spec: dict, max_positions: int):
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_layers"],
        num_attention_heads=spec["num_heads"],
        num_key_value_heads=spec["num_kv_heads"],
        # vLLM's CPU attention supports head_dim 64 (16 fails): keep it whatever the width.
        head_dim=spec["head_dim"],
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )


def _batches(ids: list[list[int]], batch_size: int, pad_id: int, rng: random.Random):
    import torch

    order = list(range(len(ids)))
    rng.shuffle(order)
    for start in range(0, len(order), batch_size):
        chunk = [ids[i] for i in order[start : start + batch_size]]
        width = max(map(len, chunk))
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, seq in enumerate(chunk):
            input_ids[row, : len(seq)] = torch.tensor(seq)
            labels[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        yield input_ids, mask, labels


def pretrain(config, texts: list[str], tokenizer, spec: dict, seed: int, out_dir: Path, label: str,
             device: str = "cpu", dtype: str = "float32") -> dict:
    """A short causal-LM pretraining with a plain torch loop (the library's job here is
    only to give LoRA a base that has seen the language; SFT is done by TRL). On CUDA the
    weights stay float32 and the matmuls run in bf16 autocast; saved in `dtype`."""
    import torch
    from tqdm.auto import tqdm
    from transformers import Qwen3ForCausalLM

    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).to(device)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"][: spec["max_length"]] for t in texts]
    opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=0.01)
    steps = spec["epochs"] * math.ceil(len(ids) / spec["batch_size"])
    warmup = max(1, steps // 10)
    # linear warm-up, then cosine decay to 10 % (any number of steps, even a handful)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.1 + 0.45 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup)))
    )
    rng = random.Random(seed)
    losses, n_tokens, t0 = [], 0, time.perf_counter()
    model.train()
    with tqdm(total=steps, desc=f"pretrain {label}") as bar:
        for epoch in range(spec["epochs"]):
            for input_ids, mask, labels in _batches(ids, spec["batch_size"], tokenizer.pad_token_id, rng):
                input_ids, mask, labels = input_ids.to(device), mask.to(device), labels.to(device)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                    loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad()
                n_tokens += int(mask.sum())
                losses.append(loss.item())
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
                bar.update()
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if dtype == "bfloat16":
        model = model.to(torch.bfloat16)
        model.config.dtype = "bfloat16"
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return {
        "role": label,
        "device": device,
        "peak_memory_mb": peak,
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": steps,
        "wall_s": wall,
        "tokens_per_s": n_tokens / wall,
        "loss_first": losses[0],
        "loss_last": sum(losses[-10:]) / len(losses[-10:]),
        "losses": losses,
    }


def build(base_dir: Path, spec: dict, tokenizer_texts: list[str], pairs: list[tuple[str, str]], seed: int,
          device: str = "cpu", dtype: str = "float32") -> dict:
    """Make tokenizer, target and draft under `base_dir` (skipped when already complete).
    `pairs` are (question, reference solution) chats to pretrain on."""
    done = base_dir / "summary.json"
    if done.exists():
        return io.read_json(done)
    tokenizer = train_tokenizer(tokenizer_texts, spec["vocab_size"], base_dir / "tokenizer")
    pretrain_texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": a}], tokenize=False)
        for q, a in pairs
    ]
    summary = {"vocab_size": len(tokenizer), "n_pretrain_texts": len(pretrain_texts), "roles": {}}
    for role in ("target", "draft"):
        config = model_config(tokenizer, spec[role], spec["max_positions"])
        summary["roles"][role] = pretrain(
            config, pretrain_texts, tokenizer, {**spec["pretrain"], **spec[role].get("pretrain", {})},
            seed, base_dir / role, role, device=device, dtype=dtype,
        )
    io.write_json(done, summary)  # written last: its presence means the pair is complete
    return summary


def corpus(profile: str, overrides: dict | None = None) -> tuple[list[str], list[str], dict]:
    """Texts for the tokenizer and for pretraining, from every scenario's *training*
    problems (held-out questions never reach the base pair).

    The tokenizer sees the questions, reference solutions, both styles' rewrites and the
    system prompts; the models are pretrained on (question -> reference solution) chats
    only, so the styles are still something fine-tuning has to teach.
    """
    from . import params, splits
    from .paths import RunPaths
    from .styles import SYSTEM_PROMPTS, TRAINED_STYLES
    from .teachers import reference

    tokenizer_texts = list(SYSTEM_PROMPTS.values())
    chats, counts = [], {}
    for scenario in params.scenarios():
        cfg = params.resolve(profile, "base", scenario, overrides)
        rp = RunPaths(profile, "base", scenario)
        splits.ensure_problems(cfg, rp)
        rows = io.read_jsonl(rp.train_problems).rows
        counts[scenario] = len(rows)
        for row in rows:
            tokenizer_texts += [row["question"], row["reference"]]
            tokenizer_texts += [reference.rewrite(row, style) for style in TRAINED_STYLES]
            chats.append((row["question"], row["reference"]))
    return tokenizer_texts, chats, counts


def ensure(profile: str, overrides: dict | None = None) -> dict:
    """The profile's base pair: built here when params name no hub models."""
    from . import models, params
    from .paths import RunPaths

    cfg = params.resolve(profile, "base", params.scenarios()[0], overrides)
    if not models.uses_base_pair(cfg):
        return {"built": False, "target": cfg["models"]["target"], "draft": cfg["models"]["draft"]}
    rp = RunPaths(profile, "base", params.scenarios()[0])
    texts, pairs, counts = corpus(profile, overrides)
    from .device import on_cuda

    device = "cuda" if on_cuda(cfg) else "cpu"
    summary = build(rp.base_models, cfg["models"]["base_pair"], texts, pairs, cfg["seed"], device, cfg["models"]["dtype"])
    return {"built": True, "training_problems": counts, **summary}


def summary_table(summary: dict):
    import pandas as pd

    if not summary.get("roles"):
        return pd.DataFrame([{"role": r, "model": summary[r]} for r in ("target", "draft")])
    return pd.DataFrame(
        [{k: v for k, v in r.items() if k != "losses"} for r in summary["roles"].values()]
    ).set_index("role")


def figures(summary: dict) -> dict:
    out = {"built": summary.get("built", False)}
    for role, r in (summary.get("roles") or {}).items():
        out[role] = {k: v for k, v in r.items() if k != "losses"}
    return out
