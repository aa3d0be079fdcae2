"""The offline base pair: a tokenizer trained on the workbook's corpus and two small
Qwen3-architecture models (target larger than draft, same tokenizer) pretrained briefly on
it, so that fine-tuning has something to adapt. Built once per profile; the `full` profile
names hub models instead and never comes here.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import time
from pathlib import Path

from . import device, fingerprints, io

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


def _padded_batches(ids: list[list[int]], batch_size: int, pad_id: int, rng: random.Random):
    """One example per row, padded to the batch's longest (`seq_len` 0)."""
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


def packed_rows(ids: list[list[int]], seq_len: int, rng: random.Random):
    """Examples in a seeded random order, joined end to end and cut into rows of `seq_len`
    tokens (the tail shorter than a row is dropped): no padding, so every token trains and
    attention runs as one causal block (SDPA's flash path, no mask)."""
    import numpy as np
    import torch

    order = list(range(len(ids)))
    rng.shuffle(order)
    flat = np.fromiter(itertools.chain.from_iterable(ids[i] for i in order), dtype=np.int64)
    n_rows = len(flat) // seq_len
    if n_rows == 0:
        raise ValueError(
            f"models.base_pair.pretrain.seq_len={seq_len} is longer than the whole pretraining "
            f"corpus ({len(flat)} tokens): lower it, or 0 to pad one example per row"
        )
    return torch.from_numpy(flat[: n_rows * seq_len].reshape(n_rows, seq_len))


def _packed_batches(rows, batch_size: int, rng: random.Random):
    """Full batches of packed rows in a fresh order (a partial last batch would recompile a
    compiled model; its rows come round in the next epoch's order)."""
    order = list(range(len(rows)))
    rng.shuffle(order)
    for start in range(0, len(order) - batch_size + 1, batch_size):
        batch = rows[order[start : start + batch_size]]
        yield batch, None, batch


def flops_per_token(config, context: float) -> float:
    """Training FLOPs per token as PaLM counts them (Chowdhery et al. 2022, app. B):
    6 x the matmul weights (the tied output head included, the embedding lookup not) plus
    12 x layers x attention width x context for the attention scores."""
    d, layers = config.hidden_size, config.num_hidden_layers
    q, kv = config.num_attention_heads * config.head_dim, config.num_key_value_heads * config.head_dim
    per_layer = d * q + 2 * d * kv + q * d + 3 * d * config.intermediate_size
    return 6 * (layers * per_layer + d * config.vocab_size) + 12 * layers * q * context


def pretrain(
    config,
    texts: list[str],
    tokenizer,
    spec: dict,
    seed: int,
    out_dir: Path,
    label: str,
    device: str = "cpu",
    dtype: str = "float32",
) -> dict:
    """A causal-LM pretraining with a plain torch loop (SFT is TRL's job). On CUDA the weights
    stay float32, the matmuls run in bf16 autocast, attention through PyTorch's SDPA, AdamW
    fused; `seq_len` > 0 packs examples into full rows, `compile` runs the model through
    torch.compile. Throughput and MFU are measured after the first steps (compilation and
    warm-up), on the device's dense bf16 peak. Saved in `dtype`."""
    import torch
    from tqdm.auto import tqdm
    from transformers import Qwen3ForCausalLM

    from .device import bf16_peak_tflops

    torch.manual_seed(seed)
    config._attn_implementation = "sdpa"
    model = Qwen3ForCausalLM(config).to(device)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        torch.backends.cuda.matmul.allow_tf32 = True
    ids = [x[: spec["max_length"]] for x in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    rng = random.Random(seed)
    seq_len = int(spec["seq_len"])
    if seq_len:
        rows = packed_rows(ids, seq_len, rng)
        per_epoch, context = len(rows) // spec["batch_size"], seq_len
        if per_epoch == 0:
            raise ValueError(
                f"models.base_pair.pretrain.batch_size={spec['batch_size']} is more than the "
                f"{len(rows)} packed rows of {seq_len} tokens: lower one of them"
            )
        batches = lambda: _packed_batches(rows, spec["batch_size"], rng)  # noqa: E731
    else:
        per_epoch, context = math.ceil(len(ids) / spec["batch_size"]), sum(map(len, ids)) / max(1, len(ids))
        batches = lambda: _padded_batches(ids, spec["batch_size"], tokenizer.pad_token_id, rng)  # noqa: E731
    step_model = torch.compile(model) if spec["compile"] and cuda else model
    opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=0.01, fused=cuda)
    steps = spec["epochs"] * per_epoch
    warmup = max(1, steps // 10)
    # linear warm-up, then cosine decay to 10 % (any number of steps, even a handful)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / warmup
            if s < warmup
            else 0.1 + 0.45 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup)))
        ),
    )
    # Steady state starts after the first steps: compilation and allocator warm-up.
    skip = 3 if steps > 6 else 0
    losses, n_tokens, t0, t_steady, steady_tokens = [], 0, time.perf_counter(), None, 0
    model.train()
    with tqdm(total=steps, desc=f"pretrain {label}") as bar:
        for _ in range(spec["epochs"]):
            for input_ids, mask, labels in batches():
                input_ids, labels = input_ids.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                mask = mask.to(device) if mask is not None else None
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                    loss = step_model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                tokens = input_ids.numel() if mask is None else int(mask.sum())
                n_tokens += tokens
                losses.append(loss.item())  # also the step's sync point: the clock below is honest
                if not math.isfinite(losses[-1]):
                    raise FloatingPointError(
                        f"{label} pretraining diverged: loss = {losses[-1]} at step {len(losses)}; "
                        f"lower models.base_pair.pretrain.lr"
                    )
                if len(losses) == skip:
                    t_steady, steady_tokens = time.perf_counter(), 0
                elif t_steady is not None:
                    steady_tokens += tokens
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
                bar.update()
    wall = time.perf_counter() - t0
    if not steady_tokens:  # too few steps to leave any out: the whole run
        t_steady, steady_tokens = t0, n_tokens
    tokens_per_s = steady_tokens / (time.perf_counter() - t_steady)
    peak_tflops = bf16_peak_tflops() if cuda else None
    achieved = tokens_per_s * flops_per_token(config, context) / 1e12
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
        "tokens": n_tokens,
        "seq_len": seq_len,
        "compiled": step_model is not model,
        "wall_s": wall,
        "tokens_per_s": tokens_per_s,  # steady state: after the first `skip` steps
        "model_tflops": achieved,
        "mfu": achieved / peak_tflops if peak_tflops else None,  # over the device's dense bf16 peak
        "loss_first": losses[0],
        "loss_last": sum(losses[-10:]) / len(losses[-10:]),
        "losses": losses,
    }


def build(
    base_dir: Path,
    spec: dict,
    tokenizer_texts: list[str],
    pairs: list[tuple[str, str]],
    seed: int,
    device: str = "cpu",
    dtype: str = "float32",
) -> dict:
    """Make tokenizer, target and draft under `base_dir` (skipped when already complete and made
    with these very settings and texts). `pairs` are (question, reference solution) chats to
    pretrain on. Another pair is built beside the old one, which it replaces only once whole."""
    done = base_dir / "summary.json"
    made_with = json.loads(
        json.dumps(
            {
                "spec": spec,
                "seed": seed,
                "device": device,
                "dtype": dtype,
                "tokenizer_texts": fingerprints.of_value(tokenizer_texts),
                "pairs": fingerprints.of_value(pairs),
            },
            default=str,
        )
    )
    try:
        old = io.read_json(done) if done.exists() else None
    except ValueError:  # cut short: rebuilt
        old = None
    if isinstance(old, dict) and old.get("made_with") == made_with:
        return old
    built = {}
    io.write_folder(
        Path(base_dir),
        lambda tmp: built.update(_build(Path(tmp), spec, tokenizer_texts, pairs, seed, device, dtype, made_with)),
    )
    return built


def _build(
    base_dir: Path, spec: dict, tokenizer_texts: list[str], pairs, seed: int, device: str, dtype: str, made_with: dict
) -> dict:
    tokenizer = train_tokenizer(tokenizer_texts, spec["vocab_size"], base_dir / "tokenizer")
    pretrain_texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}, {"role": "assistant", "content": a}], tokenize=False
        )
        for q, a in pairs
    ]
    summary = {
        "vocab_size": len(tokenizer),
        "n_pretrain_texts": len(pretrain_texts),
        "roles": {},
        "made_with": made_with,
    }
    for role in ("target", "draft"):
        config = model_config(tokenizer, spec[role], spec["max_positions"])
        summary["roles"][role] = pretrain(
            config,
            pretrain_texts,
            tokenizer,
            {**spec["pretrain"], **spec[role].get("pretrain", {})},
            seed,
            base_dir / role,
            role,
            device=device,
            dtype=dtype,
        )
    io.write_json(base_dir / "summary.json", summary)  # written last: its presence means the pair is complete
    return summary


def solution(row: dict, i: int, solutions: str) -> str:
    """The pretraining solution of the `i`-th problem: its reference, or (`styles`) the CoT
    and CoD rewrites in turn, so each style gets the same number of problems."""
    from .styles import TRAINED_STYLES
    from .teachers import reference

    return (
        row["reference"]
        if solutions == "reference"
        else reference.rewrite(row, TRAINED_STYLES[i % len(TRAINED_STYLES)])
    )


def _pool_chunk(job: tuple[str, int, int, str]) -> list[tuple[str, str, str]]:
    """(normalized question, question, solution) for one chunk of the generated pool."""
    from . import problems

    scenario, n, seed, solutions = job
    return [
        (problems.normalize_question(row["question"]), row["question"], solution(row, i, solutions))
        for i, row in enumerate(problems.generate(scenario, n, seed))
    ]


def generated_pool(
    scenario: str, n: int, seed: int, solutions: str, held_out: set[str], chunk: int = 5000, workers: int | None = None
) -> tuple[list[tuple[str, str]], dict]:
    """`n` freshly generated problems of `scenario` as (question, solution) chats, in chunks
    drawn in parallel, each from its own seed (the same rows whatever the number of workers).
    A question also held out (normalized) or drawn twice is dropped and counted."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    # Seeds apart from the embedded set's (0) and from each other scenario's.
    jobs = [
        (scenario, min(chunk, n - start), 1_000_003 * (seed + 1) + 7919 * (start // chunk + 1), solutions)
        for start in range(0, n, chunk)
    ]
    workers = max(1, min(len(jobs), workers or len(device.usable_cpus())))
    if workers == 1:
        parts = map(_pool_chunk, jobs)
    else:
        pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
        parts = pool.map(_pool_chunk, jobs)
    seen, chats, dropped_held_out, dropped_twice = set(), [], 0, 0
    try:
        for part in parts:
            for key, question, text in part:
                if key in held_out:
                    dropped_held_out += 1
                elif key in seen:
                    dropped_twice += 1
                else:
                    seen.add(key)
                    chats.append((question, text))
    finally:
        if workers > 1:
            pool.shutdown()
    return chats, {
        "generated": n,
        "kept": len(chats),
        "dropped_held_out": dropped_held_out,
        "dropped_repeated": dropped_twice,
    }


def corpus(profile: str, overrides: dict | None = None) -> tuple[list[str], list[str], dict]:
    """Texts for the tokenizer and for pretraining. Held-out questions never reach the base pair.

    The tokenizer sees every scenario's training problems, reference solutions, both styles'
    rewrites and the system prompts. The models are pretrained on (question -> solution)
    chats without a system prompt: by default the training problems with their reference
    solutions only, so the styles are still something fine-tuning has to teach. With
    `models.base_pair.corpus.n_problems`, on that many freshly generated problems per scenario
    instead (embedded source), solved by `corpus.solutions`: `reference`, or `styles` — CoT and
    CoD rewrites alternating, the same number of problems each, so pretraining favours
    neither style.
    """
    from . import params, problems, splits
    from .paths import RunPaths
    from .styles import SYSTEM_PROMPTS, TRAINED_STYLES
    from .teachers import reference

    tokenizer_texts = list(SYSTEM_PROMPTS.values())
    chats, counts = [], {}
    for scenario in params.scenarios():
        cfg = params.resolve(profile, "base", scenario, overrides)
        spec = cfg["models"]["base_pair"]["corpus"]
        rp = RunPaths(profile, "base", scenario)
        splits.ensure_problems(cfg, rp)
        rows = io.read_jsonl(rp.train_problems).rows
        counts[scenario] = len(rows)
        for row in rows:
            tokenizer_texts += [row["question"], row["reference"]]
            tokenizer_texts += [reference.rewrite(row, style) for style in TRAINED_STYLES]
        if not spec["n_problems"]:
            chats += [(row["question"], solution(row, i, spec["solutions"])) for i, row in enumerate(rows)]
            continue
        if cfg["data"]["source"] != "embedded":
            raise ValueError(
                f"models.base_pair.corpus.n_problems={spec['n_problems']} generates problems of the "
                f"embedded set's kind; data.source is {cfg['data']['source']!r} (use 0 there)"
            )
        held_out = {problems.normalize_question(r["question"]) for r in io.read_jsonl(rp.test_problems).rows}
        pool, counts[f"{scenario}_generated"] = generated_pool(
            scenario,
            spec["n_problems"],
            cfg["seed"] + 101 * problems.SCENARIOS.index(scenario),
            spec["solutions"],
            held_out,
        )
        chats += pool
    return tokenizer_texts, chats, counts


def ensure(profile: str, overrides: dict | None = None) -> dict:
    """The profile's base pair: built here when params name no hub models. Hub models named are
    resolved to the commits every later stage loads, their tokenizers checked (`hub.pin_models`)."""
    from . import hub, models, params
    from .paths import RunPaths

    cfg = params.resolve(profile, "base", params.scenarios()[0], overrides)
    revisions = hub.pin_models(cfg)
    if not models.uses_base_pair(cfg):
        named = {role: cfg["models"][role] for role in models.ROLES}
        return {"built": False, **named, "revisions": revisions, "tokenizers_identical": True}
    rp = RunPaths(profile, "base", params.scenarios()[0])
    texts, pairs, counts = corpus(profile, overrides)
    from .device import on_cuda

    device = "cuda" if on_cuda(cfg) else "cpu"
    summary = build(
        rp.base_models, cfg["models"]["base_pair"], texts, pairs, cfg["seed"], device, cfg["models"]["dtype"]
    )
    return {"built": True, "training_problems": counts, **summary, **({"revisions": revisions} if revisions else {})}


def summary_table(summary: dict):
    import pandas as pd

    if not summary.get("roles"):
        commits = summary.get("revisions") or {}
        return pd.DataFrame(
            [
                {"role": r, "model": summary[r], "revision": (commits.get(r) or {}).get("sha", "(a folder)")}
                for r in ("target", "draft")
            ]
        )
    return pd.DataFrame([{k: v for k, v in r.items() if k != "losses"} for r in summary["roles"].values()]).set_index(
        "role"
    )


def figures(summary: dict) -> dict:
    out = {
        "built": summary.get("built", False),
        "corpus": summary.get("training_problems"),
        "n_pretrain_texts": summary.get("n_pretrain_texts"),
        **{k: summary[k] for k in ("revisions", "tokenizers_identical") if k in summary},
    }
    for role, r in (summary.get("roles") or {}).items():
        out[role] = {k: v for k, v in r.items() if k != "losses"}
    return out
