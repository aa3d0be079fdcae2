"""Stage 5: LoRA adapters merged into full checkpoints for the benchmark, each merge proven
equal to base + adapter on a few inputs, and the pair's tokenizers proven identical."""

from __future__ import annotations

import shutil
from pathlib import Path

from . import hub, io, models
from .device import on_cuda, torch_dtype


def _expected_delta(module, adapter: str):
    """scale·B·A of one LoRA Linear in float32, from the adapter's own matrices (not PEFT's
    merge code, which is what is being checked)."""
    a = module.lora_A[adapter].weight.float()
    b = module.lora_B[adapter].weight.float()
    delta = (b @ a) * module.scaling[adapter]
    return delta.T if getattr(module, "fan_in_fan_out", False) else delta


def merge_checked(model, adapter: str = "default") -> dict:
    """Merge a PeftModel's LoRA modules one at a time, each merged weight checked at once
    against W + scale·B·A computed in float32: beside the model, at most one module's float32
    copy (on the model's device). The bound is the rounding of the model's dtype (a few ulps
    of the weight), so a right merge passes in bf16 and a wrong one (a module merged twice,
    skipped, scaled wrongly, corrupted) fails, naming the module."""
    import torch
    from peft.tuners.lora import LoraLayer

    n, worst = 0, 0.0
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer) or adapter not in module.lora_A:
            continue
        if module.use_dora.get(adapter):
            raise ValueError(f"{name}: a DoRA adapter; the merge check knows plain LoRA (W + scale·B·A) only")
        with torch.no_grad():
            eps = torch.finfo(module.get_base_layer().weight.dtype).eps
            delta = _expected_delta(module, adapter)
            expected = module.get_base_layer().weight.float() + delta
            module.merge(adapter_names=[adapter])
            err = (module.get_base_layer().weight.float() - expected).abs()
            bound = 4 * eps * (expected.abs() + delta.abs().max()) + torch.finfo(torch.float32).tiny
            ratio = float((err / bound).max())  # NaN where a merged weight is NaN (torch's max keeps it)
        if not ratio <= 1:  # written so that NaN fails it
            raise ValueError(
                f"merged weight of {name} differs from W + scale·B·A by up to {float(err.max()):.3e} "
                f"({ratio:.1f}x the rounding bound of its dtype): refusing to benchmark a wrong merge"
            )
        n, worst = n + 1, max(worst, ratio)
        del delta, expected, err, bound
    if n == 0:
        raise ValueError(f"no LoRA module of adapter {adapter!r} found to merge")
    return {"modules_checked": n, "worst_error_over_bound": worst}


def merge_adapter(cfg, base: str, adapter_dir: Path, out_dir: Path, probe_texts: list[str]) -> dict:
    """Merge and save, on the GPU where there is one, in the model's dtype (one copy of the
    model, never a float32 one: a 14B in float32 is ~60 GB of host RAM). Checked twice: every
    merged weight against W + scale·B·A (`merge_checked`), and the logits of the merged model
    against the unmerged base + adapter on `probe_texts`, within merge.atol + merge.rtol x the
    largest logit (bf16 logits round by up to an ulp: 0.125 at 16)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    m = cfg["merge"]
    dev = "cuda" if on_cuda(cfg) else "cpu"
    tokenizer = models.load_tokenizer(str(adapter_dir))
    models.require_model(base)
    base_model = AutoModelForCausalLM.from_pretrained(
        base,
        **hub.load_kwargs(hub.revision(cfg, base)),
        dtype=torch_dtype(cfg["models"]["dtype"]),
        device_map={"": dev},
    )
    model = PeftModel.from_pretrained(base_model, str(adapter_dir))
    model.eval()
    batch = tokenizer(probe_texts, return_tensors="pt", padding=True).to(dev)
    mask = batch["attention_mask"].bool()
    with torch.no_grad():
        before = model(**batch).logits[mask].float().cpu()  # masked: [tokens, vocab] only
    weights = merge_checked(model)
    merged = model.unload()  # every LoRA module is merged already: drop the adapter layers
    with torch.no_grad():
        after = merged(**batch).logits[mask].float().cpu()
    max_diff = float((before - after).abs().max())
    tol = m["atol"] + m["rtol"] * float(before.abs().max())
    if not max_diff <= tol:  # written so that NaN (a NaN logit on either side) fails it
        raise ValueError(
            f"merged model differs from base + adapter by {max_diff:.2e} in the logits (> merge.atol={m['atol']} + "
            f"merge.rtol={m['rtol']} x max |logit| = {tol:.2e}) for {adapter_dir}: refusing to benchmark a wrong merge"
        )
    io.write_folder(
        out_dir, lambda tmp: (merged.save_pretrained(tmp, safe_serialization=True), tokenizer.save_pretrained(tmp))
    )
    return {
        "max_abs_logit_diff": max_diff,
        "logit_tolerance": tol,
        "atol": m["atol"],
        "rtol": m["rtol"],
        "dtype": cfg["models"]["dtype"],
        "device": dev,
        **weights,
        "size_mb": models.dir_size_mb(out_dir),
    }


def merge_run(cfg, rp, probe_texts: list[str]) -> dict:
    out = {}
    for role in models.ROLES:
        out[role] = merge_adapter(cfg, models.base_model(cfg, rp, role), rp.adapter(role), rp.merged(role), probe_texts)
    models.assert_same_tokenizer(
        models.load_tokenizer(str(rp.merged("target"))), models.load_tokenizer(str(rp.merged("draft")))
    )
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

    rows = io.require_jsonl(rp.test_problems, required=("question",))
    if not rows:
        raise ValueError(f"{rp.test_problems}: no held-out problem to check the merge on; run 01_generate_data again")
    rows = rows[: cfg["merge"]["check_inputs"]]
    tok = models.load_tokenizer(str(rp.adapter("target")))
    return [models.prompt_text(tok, cfg["style"], r["question"], models.enable_thinking(cfg)) for r in rows]


def summary_table(merged: dict):
    import pandas as pd

    return pd.DataFrame({role: merged[role] for role in models.ROLES}).T
