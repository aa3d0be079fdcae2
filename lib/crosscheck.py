"""The second engine: transformers' assisted generation, greedy, batch size 1.

It re-decodes prompts with the same target, the same draft and the same K as the vLLM pass and
counts, step by step, how many draft tokens the target accepted. Two uses:
- an independent check of vLLM's acceptance counters (the benchmark runs it on a subset);
- acceptance where vLLM cannot run (a GPU machine without vLLM): `acceptance(...)` needs
  only transformers and torch.

How the counts are taken (verified in transformers 5.17, `generation/utils.py`,
`_assisted_decoding`): each step the candidate generator proposes candidates
(`get_candidates`), the target scores them in one forward pass, and the number of leading
candidates it agrees with is passed to `update_candidate_strategy(input_ids, scores,
num_matches)`. For the duration of one `generate` call we wrap `_get_candidate_generator` on
the target *instance* (not the class) so that the generator it builds reports to us; the
generator is discarded after the call and the wrapper removed, so nothing global changes.

- drafted: the candidate tokens really proposed this step (fewer than K when the draft stops
  at EOS or the length limit is near; 0 when prompt lookup finds no match);
- accepted: `num_matches`, transformers' own count;
- agreed: leading candidates equal to the tokens the target emitted. It differs from accepted
  in one case only: when the draft's last candidate is a stop token (EOS) and the target agrees
  with every candidate, transformers lowers `num_matches` by one ("don't generate beyond max
  length or EOS") and emits that EOS as the target's own token. With the target as its own
  draft this is the only thing between transformers' acceptance and 1.0: one token per prompt
  that ended by EOS. vLLM counts that token as accepted (it even verifies drafts past EOS);
- first: the step drafted from the prompt alone. transformers drafts the very first output
  token; vLLM does not (its prefill emits the first token, drafting starts after it). That
  step is usually the hardest to guess.

So the totals come twice: transformers' own (`acceptance_rate`: accepted / drafted over every
step) and `vllm_comparable` (agreed / drafted, the first step of each prompt left out), the
number that should match vLLM's counters on the same prompts.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from .device import gpu_count, torch_dtype
from .stats import mean_acceptance_length

# vLLM's prompt lookup matches n-grams of 4 down to 2 tokens (engine.NGRAM_LOOKUP); transformers'
# tries sizes max..1. Same longest size here; the proposals can still differ.
NGRAM_MAX = 4


def summarize_steps(steps: list[dict], k: int, count: str = "accepted") -> dict:
    """Acceptance over verification steps, each {"drafted", "accepted", "agreed"}, counting
    `count` ("accepted": transformers' num_matches; "agreed": see the module docstring) as
    accepted.

    Same definitions as the vLLM counters: a *draft* is a step that proposed at least one
    token; acceptance rate = accepted / drafted tokens; mean acceptance length = 1 + accepted
    per draft (the target's own token included); acceptance at position i = drafts whose i-th
    token was accepted / drafts."""
    drafted = [s for s in steps if s["drafted"] > 0]
    drafts = len(drafted)
    draft_tokens = sum(s["drafted"] for s in drafted)
    accepted = sum(s[count] for s in drafted)
    width = max([k] + [s["drafted"] for s in drafted])
    per_pos = [sum(s[count] > i for s in drafted) for i in range(width)]
    return {
        "steps": len(steps),
        "drafts": drafts,
        "draft_tokens": draft_tokens,
        "accepted_tokens": accepted,
        "acceptance_rate": accepted / draft_tokens if draft_tokens else None,
        "mean_acceptance_length": mean_acceptance_length(drafts, accepted),
        "accepted_per_pos": per_pos,
        "acceptance_by_pos": [a / drafts for a in per_pos] if drafts else [],
        "held_back_steps": sum(s["agreed"] > s["accepted"] for s in drafted),
    }


def vllm_comparable(steps: list[dict], k: int) -> dict:
    """The counts vLLM would report for the same decoding: every step but the first of each
    prompt, a stop token the target agreed with counted as accepted."""
    return summarize_steps([s for s in steps if not s.get("first")], k, count="agreed")


@contextmanager
def counting_steps(model):
    """Within the block, every assisted `model.generate` call appends one dict per
    verification step to the yielded list: drafted, accepted (transformers' num_matches),
    agreed and first (see the module docstring)."""
    if not hasattr(model, "_get_candidate_generator"):
        import transformers

        raise RuntimeError(
            f"transformers {transformers.__version__}: the model has no _get_candidate_generator; "
            "the acceptance hook was written against 5.17 and needs updating"
        )
    steps: list[dict] = []
    build = model._get_candidate_generator  # the class's bound method

    def instrumented(*args, **kwargs):
        generator = build(*args, **kwargs)
        get_candidates, update = generator.get_candidates, generator.update_candidate_strategy
        state = {"first": True}

        def get_candidates_counted(input_ids, **kw):
            candidates, logits = get_candidates(input_ids, **kw)
            state["cur_len"], state["candidates"] = input_ids.shape[1], candidates
            return candidates, logits

        def update_counted(input_ids, scores, num_matches):
            cur = state["cur_len"]
            proposed = state["candidates"][0, cur:].to(input_ids.device)
            drafted = int(proposed.shape[0])
            if drafted != scores.shape[1] - 1:  # the target scores candidates + 1 positions
                raise RuntimeError(f"acceptance hook out of step: {drafted} candidates, {scores.shape[1]} scores")
            emitted = input_ids[0, cur : cur + drafted]
            n = min(drafted, int(emitted.shape[0]))
            agreed = int((proposed[:n] == emitted[:n]).int().cumprod(0).sum()) if n else 0
            steps.append(
                {
                    "drafted": drafted,
                    "accepted": int(num_matches),
                    "agreed": max(agreed, int(num_matches)),
                    "first": state["first"],
                }
            )
            state["first"] = False
            return update(input_ids, scores, num_matches)

        generator.get_candidates = get_candidates_counted
        generator.update_candidate_strategy = update_counted
        return generator

    model._get_candidate_generator = instrumented  # an instance attribute shadows the method
    try:
        yield steps
    finally:
        del model._get_candidate_generator


def _load(path: str, device: str, dtype: str, revision: str | None):
    from transformers import AutoModelForCausalLM

    from .hub import load_kwargs

    model = AutoModelForCausalLM.from_pretrained(str(path), **load_kwargs(revision), dtype=torch_dtype(dtype))
    return model.to(device).eval()


def acceptance(
    target_path: str,
    draft_path: str | None,
    prompts: list[str],
    k: int,
    max_new_tokens: int,
    device: str = "auto",
    dtype: str = "float32",
    revisions: dict | None = None,
) -> dict:
    """Greedy assisted generation of each prompt (batch size 1) with K draft tokens per step,
    counting accepted tokens per step. `draft_path` None: prompt lookup (n-gram) instead of a
    draft model. Prompts are final strings (chat template already applied), tokenized as vLLM
    tokenizes a text prompt.

    Returns transformers' own totals (`summarize_steps`), the vLLM-comparable ones
    (`vllm_comparable`), timing and, per prompt, its counts and text. `revisions`: {path: Hub
    commit} of a Hub pair (`hub.revision`)."""
    import torch
    from transformers import AutoTokenizer

    if device == "auto":
        device = "cuda" if gpu_count() > 0 else "cpu"
    commit = (revisions or {}).get
    tok = AutoTokenizer.from_pretrained(str(target_path), revision=commit(target_path))
    target = _load(target_path, device, dtype, commit(target_path))
    gen = dict(
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        max_new_tokens=max_new_tokens,
        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
    )
    if draft_path:
        draft = _load(draft_path, device, dtype, commit(draft_path))
        # K comes from the *draft's* generation config; constant, no confidence early stop.
        draft.generation_config.num_assistant_tokens = k
        draft.generation_config.num_assistant_tokens_schedule = "constant"
        draft.generation_config.assistant_confidence_threshold = 0.0
        gen["assistant_model"] = draft
    else:
        gen.update(prompt_lookup_num_tokens=k, max_matching_ngram_size=NGRAM_MAX)
    all_steps, per_prompt, n_out = [], [], 0
    t0 = time.perf_counter()
    for prompt in prompts:
        enc = tok(prompt, return_tensors="pt").to(device)
        with torch.no_grad(), counting_steps(target) as steps:
            out = target.generate(**enc, **gen)
        new = out[0, enc["input_ids"].shape[1] :].tolist()
        n_out += len(new)
        all_steps += steps
        one, comparable = summarize_steps(steps, k), vllm_comparable(steps, k)
        per_prompt.append(
            {
                "drafts": one["drafts"],
                "draft_tokens": one["draft_tokens"],
                "accepted_tokens": one["accepted_tokens"],
                "comparable_draft_tokens": comparable["draft_tokens"],
                "comparable_accepted_tokens": comparable["accepted_tokens"],
                "output_tokens": len(new),
                "text": tok.decode(new, skip_special_tokens=True),
            }
        )
    wall = time.perf_counter() - t0
    import transformers

    return {
        "engine": "transformers",
        "version": transformers.__version__,
        "method": "draft_model" if draft_path else "ngram",
        "k": k,
        "n": len(prompts),
        "max_new_tokens": max_new_tokens,
        "device": device,
        **summarize_steps(all_steps, k),
        "vllm_comparable": vllm_comparable(all_steps, k),
        "output_tokens_total": n_out,
        "wall_s": wall,
        "throughput_tok_s": n_out / wall if wall else None,
        "per_prompt": per_prompt,
    }
