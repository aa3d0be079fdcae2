"""The `local` teacher: any model (hub id or local path, `data.local_teacher.model`) served by
vLLM at temperature 0, prompted exactly as every other stage prompts (the style's system
message and the question through that model's own chat template, `models.prompt_text`).
For users without a Gemini key. The engine is lib/engine.py's; nothing engine-specific here.
"""

from __future__ import annotations

from typing import Iterator

from .. import engine, models
from ..paths import RunPaths


def generate(cfg, rp: RunPaths, problems: list[dict], style: str, progress: bool = True) -> Iterator[tuple[str, str | None, str | None]]:
    """`(id, text, None)` per problem, a batch of prompts per vLLM call (the caller appends
    after each batch, so a crash loses at most the batch in flight)."""
    if not problems:
        return
    spec = cfg["data"]["local_teacher"]
    if not spec["model"]:
        raise ValueError(
            "data.teacher=local needs data.local_teacher.model: a hub id or a local model folder "
            "(any chat model vLLM can serve)"
        )
    from tqdm.auto import tqdm

    tokenizer = models.load_tokenizer(spec["model"])
    with engine.running(cfg, spec["model"], eager=True, max_num_seqs=cfg["distill"]["max_num_seqs"]) as eng:
        params = engine.sampling(cfg, spec["max_tokens"])
        params.temperature = 0.0  # the teacher is greedy whatever the benchmark samples
        size = max(1, spec["batch_size"])
        for start in tqdm(range(0, len(problems), size), desc=f"teacher local ({style})", disable=not progress):
            batch = problems[start : start + size]
            prompts = [models.prompt_text(tokenizer, style, p["question"]) for p in batch]
            outputs = eng.llm.generate(prompts, params, use_tqdm=False)
            for problem, out in zip(batch, outputs):
                yield problem["id"], out.outputs[0].text, None
