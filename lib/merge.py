"""Stage 5: LoRA adapters merged into full checkpoints for the benchmark, each merge proven
equal to base + adapter on a few inputs, and the pair's tokenizers proven identical."""

from __future__ import annotations

import shutil
from pathlib import Path

from . import io, models


def _dtype(cfg):
    import torch

    return torch.bfloat16 if cfg["models"]["dtype"] == "bfloat16" else torch.float32


def merge_adapter(cfg, base: str, adapter_dir: Path, out_dir: Path, probe_texts: list[str]) -> dict:
    """Merge and save; return the largest logit difference between the merged model and
    the unmerged base + adapter on `probe_texts`."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tokenizer = models.load_tokenizer(str(adapter_dir))
    # Merge and check in float32: in bf16 the logits alone round by up to 0.125 (an ulp at 16),
    # which would hide a wrong merge or fail a right one. Saved in the profile's dtype.
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), str(adapter_dir))
    model.eval()
    batch = tokenizer(probe_texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        before = model(**batch).logits.float()
        merged = model.merge_and_unload()
        after = merged(**batch).logits.float()
    mask = batch["attention_mask"].bool()
    max_diff = float((before - after).abs()[mask].max())
    if max_diff > cfg["merge"]["atol"]:
        raise ValueError(
            f"merged model differs from base + adapter by {max_diff:.2e} (> merge.atol={cfg['merge']['atol']}) "
            f"for {adapter_dir}: refusing to benchmark a wrong merge"
        )
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.to(_dtype(cfg)).save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return {"max_abs_logit_diff": max_diff, "atol": cfg["merge"]["atol"], "size_mb": models.dir_size_mb(out_dir)}


def merge_run(cfg, rp, probe_texts: list[str]) -> dict:
    out = {}
    for role in models.ROLES:
        out[role] = merge_adapter(cfg, models.base_model(cfg, rp, role), rp.adapter(role), rp.merged(role), probe_texts)
    models.assert_same_tokenizer(models.load_tokenizer(str(rp.merged("target"))), models.load_tokenizer(str(rp.merged("draft"))))
    out["tokenizers_identical"] = True
    return out


def delete_merged(rp) -> list[str]:
    gone = []
    for role in models.ROLES:
        if rp.merged(role).exists():
            shutil.rmtree(rp.merged(role))
            gone.append(str(rp.merged(role)))
    return gone


def probe_texts(cfg, rp) -> list[str]:
    """A few held-out prompts for the merge-equivalence check."""
    from . import io

    rows = io.read_jsonl(rp.test_problems).rows[: cfg["merge"]["check_inputs"]]
    tok = models.load_tokenizer(str(rp.adapter("target")))
    return [models.prompt_text(tok, cfg["style"], r["question"], models.enable_thinking(cfg)) for r in rows]


def summary_table(merged: dict):
    import pandas as pd

    return pd.DataFrame({role: merged[role] for role in models.ROLES}).T
