"""The `local` teacher: any model (hub id or local path, `data.local_teacher.model`) served by
vLLM at temperature 0, prompted exactly as every other stage prompts (the style's system
message and the question through that model's own chat template, `models.prompt_text`).
For users without a Gemini key. The engine is lib/engine.py's; nothing engine-specific here.
"""

from __future__ import annotations

from typing import Iterator

from .. import engine
from ..paths import RunPaths


def generate(
    cfg, rp: RunPaths, problems: list[dict], style: str, progress: bool = True
) -> Iterator[tuple[str, str | None, str | None, dict]]:
    """`(id, text, None, fields)` per problem (fields: vLLM's finish reason, `length` where the
    answer was cut at max_tokens), a batch of prompts per vLLM call (the caller appends after
    each batch, so a crash loses at most the batch in flight)."""
    if not problems:
        return
    spec = cfg["data"]["local_teacher"]
    if not spec["model"]:
        raise ValueError(
            "data.teacher=local needs data.local_teacher.model: a hub id or a local model folder "
            "(any chat model vLLM can serve)"
        )
    batches = engine.answer_problems(
        cfg,
        spec["model"],
        problems,
        style,
        spec["max_tokens"],
        max(1, spec["batch_size"]),
        f"teacher local ({style})",
        progress,
    )
    for batch, outputs in batches:
        for problem, out in zip(batch, outputs):
            yield problem["id"], out.outputs[0].text, None, {"finish_reason": out.outputs[0].finish_reason}
