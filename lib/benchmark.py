"""Stage 6: the target alone (baseline) against target + draft (speculative) on the
held-out split, both through vLLM with the same prompts and sampling.

Also, from params: the speculative method (`benchmark.method`: a draft model, prompt lookup
`ngram`, or an `eagle3` head), a K sweep (`benchmark.k_sweep`: one more speculative pass per
K), and an independent cross-check of vLLM's acceptance counts by transformers' assisted
generation on a subset of prompts (`benchmark.crosscheck_samples`, see `lib/crosscheck.py`).

The speed-up is predicted from what each speculative pass measured of itself (`cost_model`):
tokens per verification step from acceptance by position, over r, the step's cost in baseline
steps, and (where the engine timestamps it) each request's time from being scheduled to its
first token, which a per-step model does not see, with the requests placed in the engine's
slots in the order sent. The draft-only engine that once gave a cost
ratio c is gone: inside speculation a draft pass costs several times what it costs alone, and
the prediction built on c missed by 1.6-3.9x.
"""

from __future__ import annotations

import platform
import tempfile
import time
from contextlib import nullcontext

import numpy as np

from . import answers, crosscheck, device, eagle3, engine, hub, io, merge, models, params, stats
from .paths import RunPaths
from .splits import PROBLEM_COLUMNS

PASSES = ("baseline", "speculative")
WARMUP_PROMPT = "Warm-up."  # the untimed requests each engine serves before the timed call


def pair_for_run(cfg, rp: RunPaths) -> dict:
    """Target and draft checkpoints: merged fine-tuned ones, or the untrained pair for `base`."""
    if cfg["style"] == "base":
        return {role: models.base_model(cfg, rp, role) for role in models.ROLES}
    return {role: str(rp.merged(role)) for role in models.ROLES}


def test_problems(cfg, rp: RunPaths) -> list[dict]:
    """The held-out problems to benchmark (the first `benchmark.n_samples`); an unusable row, or
    none at all, is an error naming the file (a benchmark of 0 prompts divides by zero later)."""
    rows = io.require_jsonl(rp.test_problems, required=PROBLEM_COLUMNS)
    n = cfg["benchmark"]["n_samples"]
    rows = rows[:n] if n else rows
    if not rows:
        raise ValueError(
            f"{rp.test_problems}: no held-out problem to benchmark; run 01_generate_data again "
            f"(delete the split files in {rp.problems_dir} to write the split afresh)"
        )
    return rows


def calibration_set(cfg, rp: RunPaths, tokenizer, thinking: bool, test: list[dict]) -> tuple[list[str], list[dict]]:
    """The forecast's prompts: the first `benchmark.calibration_samples` problems of the run's
    training split whose questions are not in the test split, so that the forecast is made on
    prompts the timed passes do not answer. Empty where there is no such problem (the forecast
    is then not made, and says why)."""
    n = int(cfg["benchmark"]["calibration_samples"])
    if not n or not rp.train_problems.exists():
        return [], []
    held_out = {p["question"] for p in test}
    rows = [r for r in io.require_jsonl(rp.train_problems, required=PROBLEM_COLUMNS) if r["question"] not in held_out][
        :n
    ]
    return [models.prompt_text(tokenizer, cfg["style"], r["question"], thinking) for r in rows], rows


def check(cfg) -> None:
    """Refuse a benchmark whose params cannot work, before any engine starts."""
    engine.check_method(cfg)
    engine.speculative_extra(cfg)
    bench = cfg["benchmark"]
    if not (bench["k"] == "auto" or _k_ok(bench["k"])):
        raise ValueError(f"benchmark.k must be 'auto' or an integer >= 1, got {bench['k']!r}")
    for key in ("k_sweep", "k_candidates"):
        if not all(_k_ok(k) for k in bench[key]):
            raise ValueError(f"benchmark.{key} must be a list of integers >= 1, got {bench[key]!r}")
    if bench["k"] == "auto" and not bench["k_candidates"]:
        raise ValueError("benchmark.k = 'auto' needs benchmark.k_candidates, the K to choose among; it is empty")
    if bench["k"] == "auto" and bench["calibration_samples"] < bench["max_num_seqs"]:
        # Fewer prompts than the engine runs at once measure a half-empty batch, whose step cost is
        # not the main pass's: on the H200, 8 prompts at 16 gave r 1.4-3.6x too high and chose K=7
        # (measured 0.78x) over K=5 (1.20x).
        raise ValueError(
            f"benchmark.k = 'auto' needs benchmark.calibration_samples ({bench['calibration_samples']}) "
            f">= benchmark.max_num_seqs ({bench['max_num_seqs']}): a calibration on fewer prompts than "
            f"the main pass runs at once measures another batch size"
        )


def _k_ok(k) -> bool:
    return isinstance(k, int) and not isinstance(k, bool) and k >= 1


def run_pass(
    cfg,
    name: str,
    model: str,
    prompts: list[str],
    problems: list[dict],
    spec: dict | None = None,
    recount: int = 0,
    extras: bool = True,
    max_num_seqs: int | None = None,
    floor: int = 0,
    calibration: tuple[list[str], list[dict]] | None = None,
) -> tuple[list[dict], dict]:
    """One pass: fresh engine (speculative when `spec` is a vLLM speculative_config), untimed
    warm-up requests (`benchmark.warmup_answers`: also the pass's first prompts answered in full),
    then all prompts in one timed generate call; per-request timings and, where vLLM gives them,
    per-request acceptance counts.

    `recount`: the first `recount` prompts' acceptance is also wanted on its own (the
    cross-check subset). From per-request counts when the engine has them; else those prompts
    are generated once more on the same engine after the timed call, counters read around it
    (`info["subset_counters"]`, `info["subset_source"]`). `extras`: also the batch-size-1
    measurement and (CUDA) the GPU-busy time per step on the same engine (repetitions and
    calibration passes skip them). `max_num_seqs` overrides the benchmark's concurrency.
    `floor`: also the numerical floor on the same engine (`_floor`), its samples in
    `info["floor_samples"]`. `calibration` (prompts, problems): answered after the warm-up and
    before the timed call, in one call of their own, timed and counted apart
    (`info["calibration"]`: what the forecast is made from, `forecast`)."""
    # Device-level, sampled through the pass: the engine core may run in another process.
    # Out of process, the GPU-busy floor comes from vLLM's profiler inside the engine core, which
    # must be configured when the engine starts (idle until `gpu_busy` starts it).
    traces = tempfile.TemporaryDirectory(prefix="vllm-trace-") if extras and _floor_by_trace(cfg) else nullcontext()
    with (
        traces as profile_dir,
        device.GpuMemoryPeak() as gpu_mem,
        engine.running(cfg, model, speculative=spec, max_num_seqs=max_num_seqs, profile_dir=profile_dir) as eng,
    ):
        # Untimed warm-up: a fresh engine's first call pays one-time costs that would
        # otherwise land on the timed call (a large share of a small pass). As many requests as
        # the timed call runs at once: the first batched draft proposal paid such a cost too
        # (seen: a tiny speculative pass's first tokens 3.4 s late after a one-request warm-up).
        # An unrelated prompt, so that no benchmark prompt finds its prefix already cached. Request
        # i stops after i + 1 tokens, so that the batch drains through every size the timed call's
        # will: on the H200 the first repetition's speculative pass was the slowest in 8 of 10 runs
        # (later engines start from caches on disk), and work done at a batch size's first sight
        # (kernels compiled per shape) is one suspect.
        width = min(len(prompts), max_num_seqs or cfg["benchmark"]["max_num_seqs"]) or 1
        eng.llm.generate([WARMUP_PROMPT] * width, warm_up_sampling(cfg, width), use_tqdm=False)
        if cfg["benchmark"]["warmup_answers"]:
            # Then a batch of real answers, as long as the timed call's: a speculative engine's first
            # such call was slower than the next even after the warm-up above (docs/measurements.md).
            # Its prompts' cached prefixes are forgotten, so that the timed call prefills afresh.
            eng.llm.generate(prompts[:width], engine.sampling(cfg, cfg["benchmark"]["max_tokens"]), use_tqdm=False)
            engine.reset_prefix_cache(eng)
        cal = _calibration_call(cfg, eng, name, *calibration) if calibration and calibration[0] else None
        before = engine.spec_counters(eng)
        t0 = time.perf_counter()
        outputs = eng.llm.generate(prompts, engine.sampling(cfg, cfg["benchmark"]["max_tokens"]), use_tqdm=extras)
        wall = time.perf_counter() - t0
        counters = engine.counter_delta(engine.spec_counters(eng), before)
        per_request = [engine.request_spec(out) for out in outputs]
        subset, source = None, None
        if spec and recount:
            if all(r is not None for r in per_request[:recount]):
                subset, source = engine.add_counters(per_request[:recount]), "per_request"
            else:  # an older vLLM: no per-request counts
                mark = engine.spec_counters(eng)
                eng.llm.generate(
                    prompts[:recount], engine.sampling(cfg, cfg["benchmark"]["max_tokens"]), use_tqdm=False
                )
                subset, source = engine.counter_delta(engine.spec_counters(eng), mark), "rerun"
        replay = lone_replay(cfg, eng, prompts, outputs, spec is not None) if extras else None
        floor_outputs = _floor(cfg, eng, prompts, floor) if floor else None
        batch1 = _batch1(cfg, eng, prompts[: cfg["benchmark"]["batch1_samples"]]) if extras else None
        gpu = _gpu_busy_or_error(cfg, eng, prompts[0]) if extras and prompts else None
        async_used = engine.async_scheduling_used(eng)
    samples = _samples(name, problems, outputs, per_request)
    info = {
        "wall_s": wall,
        "counters": counters,
        "peak_memory_mb": device.process_peak_mb(False),
        "peak_gpu_memory_mb": gpu_mem.peak_mb,
        "speculative_config": spec,
        "subset_counters": subset,
        "subset_source": source,
        "calibration": cal,
        "batch1": batch1,
        "gpu_busy": gpu,
        "lone_replay": replay,
        "async_scheduling": async_used,
        "max_num_seqs": max_num_seqs or cfg["benchmark"]["max_num_seqs"],
        "floor_samples": _samples(f"{name}_floor", problems, floor_outputs, [None] * len(problems)) if floor else [],
    }
    return samples, info


def _calibration_call(cfg, eng, name: str, prompts: list[str], problems: list[dict]) -> dict:
    """The calibration prompts in one generate call on the pass's engine, before its timed call:
    their per-request timings and acceptance, the call's wall time and counters."""
    mark = engine.spec_counters(eng)
    t0 = time.perf_counter()
    outputs = eng.llm.generate(prompts, engine.sampling(cfg, cfg["benchmark"]["max_tokens"]), use_tqdm=False)
    wall = time.perf_counter() - t0
    samples = _samples(f"{name}_calibration", problems, outputs, [engine.request_spec(o) for o in outputs])
    return {"samples": samples, "wall_s": wall, "counters": engine.counter_delta(engine.spec_counters(eng), mark)}


def _samples(name: str, problems: list[dict], outputs, per_request: list) -> list[dict]:
    """One row per prompt: the output graded, its timings and (speculative) its acceptance counts."""
    samples = []
    for problem, out, req in zip(problems, outputs, per_request):
        text = out.outputs[0].text
        graded = answers.grade(text, problem["answer"])
        samples.append(
            {
                "pass": name,
                "id": problem["id"],
                "question": problem["question"],
                "ground_truth": problem["answer"],
                "output": text,
                "pred": graded["pred"],
                "extraction": graded["method"],
                "correct": graded["correct"],
                "finish_reason": out.outputs[0].finish_reason,
                **engine.request_timing(out),
                "spec_drafts": req["drafts"] if req else None,
                "spec_draft_tokens": req["draft_tokens"] if req else None,
                "spec_accepted_tokens": req["accepted_tokens"] if req else None,
            }
        )
    return samples


def lone_replay(cfg, eng, prompts: list[str], outputs, speculative: bool) -> dict | None:
    """The timed call's last request to finish, answered once more, alone, on the same engine
    right after the call: its time per token (and, speculative, tokens per step) there against
    the one it had in the call. On the H200 a speculative pass's lone last request decoded 6-7x
    slower per token than its batch (medium) at about one token per step: alone
    again, a prompt the draft cannot guess stays slow, while an engine state that slowed it in
    the batch does not. None with fewer than two requests or no request timestamps."""
    timings = [engine.request_timing(out) for out in outputs]
    i = last_to_finish(timings)
    if i is None:
        return None
    before = engine.spec_counters(eng)
    out = eng.llm.generate([prompts[i]], engine.sampling(cfg, cfg["benchmark"]["max_tokens"]), use_tqdm=False)[0]
    timing = engine.request_timing(out)
    alone = step_timing([timing], engine.counter_delta(engine.spec_counters(eng), before), 0.0) if speculative else None
    in_call = engine.request_spec(outputs[i])  # per-request counts where the engine has them
    return {
        "index": i,
        "output_tokens": timings[i]["output_tokens"],
        "tpot_in_call_s": timings[i]["tpot_s"],
        "tpot_alone_s": timing["tpot_s"],
        "tokens_per_step_alone": alone["decode_tokens"] / alone["steps"] if alone and alone["steps"] else None,
        "tokens_per_step_in_call": stats.mean_acceptance_length(in_call["drafts"], in_call["accepted_tokens"])
        if in_call
        else None,
        "identical": out.outputs[0].text == outputs[i].outputs[0].text,
    }


def _floor(cfg, eng, prompts: list[str], width: int) -> list:
    """The numerical floor of "speculation is lossless": the same engine answers the same
    prompts again, `width` at a time in reverse order, its prefix cache emptied first, so the
    outputs can differ from the timed call's only through batching. On the timed call's engine,
    not a fresh one: that saves an engine start (about 30 s on the H200, where the floor's
    other concurrency also meant compiling other graph sizes). Untimed; outputs in prompt order."""
    engine.reset_prefix_cache(eng)
    params = engine.sampling(cfg, cfg["benchmark"]["max_tokens"])
    order, outputs = list(range(len(prompts)))[::-1], [None] * len(prompts)
    for start in range(0, len(order), width):
        chunk = order[start : start + width]
        for i, out in zip(chunk, eng.llm.generate([prompts[i] for i in chunk], params, use_tqdm=False)):
            outputs[i] = out
    return outputs


def _batch1(cfg, eng, prompts: list[str]) -> dict | None:
    """The same engine at batch size 1: prompts sent one at a time (the latency regime, where
    speculative decoding pays most); counters read around the whole sequence."""
    if not prompts:
        return None
    params = engine.sampling(cfg, cfg["benchmark"]["max_tokens"])
    before, timings, latencies = engine.spec_counters(eng), [], []
    t0 = time.perf_counter()
    for prompt in prompts:
        t = time.perf_counter()
        out = eng.llm.generate([prompt], params, use_tqdm=False)[0]
        latencies.append(time.perf_counter() - t)
        timings.append(engine.request_timing(out))
    wall = time.perf_counter() - t0
    tokens = sum(t["output_tokens"] for t in timings)
    counters = engine.counter_delta(engine.spec_counters(eng), before)
    return {
        "n": len(prompts),
        "wall_s": wall,
        "output_tokens": tokens,
        "throughput_tok_s": tokens / wall,
        "latency_s_mean": sum(latencies) / len(latencies),
        "counters": counters,
        "step": step_timing(timings, counters, wall, slots=1),
    }  # one request at a time


def warm_up_sampling(cfg, width: int) -> list:
    """One sampling setting per warm-up request: lengths 1 to `width`, end-of-text ignored."""
    out = []
    for i in range(width):
        p = engine.sampling(cfg, i + 1)
        p.ignore_eos = True
        out.append(p)
    return out


def _floor_by_trace(cfg) -> bool:
    return int(cfg["benchmark"]["gpu_floor_tokens"]) > 0 and device.on_cuda(cfg) and not cfg["engine"]["in_process"]


def _gpu_busy_or_error(cfg, eng, prompt: str) -> dict | None:
    """`gpu_busy`, its failure recorded instead of raised: the floor is a side measurement, and a
    profiler that fails on some driver must not cost the pass it sits beside (the report says
    why the floor is missing)."""
    try:
        return gpu_busy(cfg, eng, prompt)
    except Exception as e:  # noqa: BLE001 - any profiler failure, named in the record
        print(f"GPU-busy floor not measured: {type(e).__name__}: {e}", flush=True)
        return {"error": f"{type(e).__name__}: {e}"}


def gpu_busy(cfg, eng, prompt: str) -> dict | None:
    """CUDA only: one prompt decoded `benchmark.gpu_floor_tokens` tokens under the torch
    profiler; the union of the GPU's kernel intervals per decode step is the least a step can
    cost on this hardware (the rest of a step is CPU work: scheduling, launches, sampling). The
    prefill is inside the busy time (a small over-estimate for short outputs). In process, torch's
    profiler here; out of process, vLLM's inside the engine core (the engine started with
    `profile_dir`), read back from its trace. None on CPU or when off."""
    n = int(cfg["benchmark"]["gpu_floor_tokens"])
    if n <= 0 or not device.on_cuda(cfg) or not (cfg["engine"]["in_process"] or eng.profile_dir):
        return None
    before = engine.spec_counters(eng)
    if eng.profile_dir:
        out, events = engine.profiled(eng, prompt, engine.sampling(cfg, n))
        spans = device_spans(events)
    else:
        import torch
        from torch.profiler import ProfilerActivity, profile

        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            out = eng.llm.generate([prompt], engine.sampling(cfg, n), use_tqdm=False)[0]
            torch.cuda.synchronize()
        spans = [
            (e.time_range.start, e.time_range.end)
            for e in prof.events()
            if e.device_type == torch.autograd.DeviceType.CUDA
        ]
    timing = engine.request_timing(out)
    steps = step_timing([timing], engine.counter_delta(engine.spec_counters(eng), before), 0.0)["steps"]
    if not steps or not spans:
        return None
    busy_us = union_length(spans)
    return {
        "tokens": timing["output_tokens"],
        "steps": steps,
        "busy_s": busy_us / 1e6,
        "busy_step_s": busy_us / 1e6 / steps,
        "source": "vllm profiler trace" if eng.profile_dir else "torch profiler",
    }


# The device's events in a torch Chrome trace: kernels, copies and memsets.
DEVICE_EVENT_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")


def device_spans(events: list[dict]) -> list[tuple[float, float]]:
    """(start, end) in µs of the device's events of a Chrome trace; host events are left out."""
    return [
        (float(e["ts"]), float(e["ts"]) + float(e["dur"]))
        for e in events
        if e.get("cat") in DEVICE_EVENT_CATEGORIES and "ts" in e and "dur" in e
    ]


def union_length(spans) -> float:
    """Length of the union of intervals: kernels overlapping on several streams count once."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def step_timing(timings: list[dict], counters: dict | None, wall_s: float, slots: int | None = None) -> dict:
    """Decode steps of a pass and the time each cost, as the requests paid it.

    Steps: a plain pass takes one per output token after the first (the prefill emits the
    first); a speculative step yields its accepted tokens plus one, so steps = decode tokens -
    accepted tokens. vLLM's draft counter is the same number for a draft model, but misses
    steps where prompt lookup (ngram) found nothing to draft; it is larger only where tokens
    accepted past the length limit were dropped, so the larger of the two is taken.
    Time: the sum over requests of their engine timestamps from first to last token (decode
    only: no queueing, no prefill), over the sum of their steps; the pass's wall time where
    the engine gave no timestamps (`source`). With `slots` (the engine's max_num_seqs), also the
    wall time the cost model predicts for the pass (`scheduled_wall`)."""
    decode_tokens = sum(max(t["output_tokens"] - 1, 0) for t in timings)
    c = counters or {}
    steps = max(int(c.get("drafts") or 0), decode_tokens - int(c.get("accepted_tokens") or 0))
    decode = [
        0.0
        if t["output_tokens"] <= 1
        else (t["tpot_s"] * (t["output_tokens"] - 1) if t["tpot_s"] is not None else None)
        for t in timings
    ]
    if timings and all(d is not None for d in decode):
        total, source = float(sum(decode)), "request_timestamps"
    else:
        total, source = float(wall_s), "wall"
    prefill = [t.get("prefill_s") for t in timings]
    prefill_s = (
        float(sum(prefill))
        if timings and source == "request_timestamps" and all(p is not None for p in prefill)
        else None
    )
    step_s = total / steps if steps else None
    return {
        "steps": int(steps),
        "decode_tokens": int(decode_tokens),
        "decode_s": total,
        "step_s": step_s,
        "source": source,
        # requests decoding at once, on average over the pass (at batch 1: the decode share of
        # the wall time); the decode-only prediction assumes both passes keep the same
        "occupancy": total / wall_s if source == "request_timestamps" and wall_s else None,
        # scheduled to first token, summed; with decode, the time requests held a slot
        "prefill_s": prefill_s,
        "busy_occupancy": (prefill_s + total) / wall_s if prefill_s is not None and wall_s else None,
        "output_tokens": int(sum(t["output_tokens"] for t in timings)),
        "scheduled_s": scheduled_wall(timings, step_s, decode_tokens / steps if steps else 1.0, slots)
        if prefill_s is not None
        else None,
        **lone_tail(timings),
    }


def scheduled_wall(
    timings: list[dict], step_s: float | None, tokens_per_step: float, slots: int | None
) -> float | None:
    """The pass's wall time as the cost model predicts it: each request holds a slot for its
    time to first token (measured) and then its decode steps at the pass's mean step cost, its
    steps being its decode tokens over its tokens per step (vLLM's per-request counts where the
    engine gives them, else the pass's); requests take the first free of `slots` slots in the
    order sent. The prediction from the passes' summed busy time assumed both keep their slots
    equally busy; this places the empty ones: a long request, or one the draft guesses badly,
    left decoding alone at the end (on the tiny CPU pair, base medium's 155-token answer at 1.4
    tokens per step against its pass's 2.9 took 0.73 of predicted to 1.14). None without a
    step cost or slots."""
    if not (slots and step_s):
        return None
    durations = [t["prefill_s"] + n * step_s for t, n in zip(timings, request_steps(timings, tokens_per_step))]
    return stats.fcfs_makespan(durations, slots)


def request_steps(timings: list[dict], tokens_per_step: float) -> list[float]:
    """Each request's decode steps: its decode tokens over its own tokens per step (vLLM's
    per-request counts), else over the pass's."""
    return [
        max(t["output_tokens"] - 1, 0)
        / (stats.mean_acceptance_length(t.get("spec_drafts"), t.get("spec_accepted_tokens")) or tokens_per_step)
        for t in timings
    ]


# requests (standard deviation): a narrower spread of occupancies leaves the line's slope unmeasured
MIN_OCCUPANCY_SPREAD = 0.5


def occupancy_step_cost(timings: list[dict], tokens_per_step: float) -> dict | None:
    """A step's cost as a line in the number of requests decoding in it, s(b) = s0 + s1*b,
    fitted over one pass's requests: each request's mean step time (its decode time over its
    steps) against how many requests were decoding, on average, while it decoded. Both come from
    the requests' own first- and last-token times (every request of the one generate call
    arrives at once), weighted by steps. A benchmark keeps its slots full for longer than a
    short calibration on fewer prompts does, and a fuller step costs more (one H100: a baseline
    step 3.13 ms in the timed pass against 2.70 ms in its calibration): a flat mean step carries
    that difference into the forecast. None with fewer than three decoding requests, occupancies
    spread less than MIN_OCCUPANCY_SPREAD, or a line that costs less with more requests."""
    rows = [
        (t["latency_s"] - t["tpot_s"] * (t["output_tokens"] - 1), t["latency_s"], n)
        for t, n in zip(timings, request_steps(timings, tokens_per_step))
        if t.get("tpot_s") and t.get("latency_s") is not None and t["output_tokens"] > 1 and n > 0
    ]
    if len(rows) < 3:
        return None
    start, end, steps = (np.array(x, dtype=float) for x in zip(*rows))
    span = end - start
    overlap = np.clip(np.minimum(end[:, None], end[None, :]) - np.maximum(start[:, None], start[None, :]), 0, None)
    occupancy = overlap.sum(axis=1) / span  # itself included
    step = span / steps
    w = steps / steps.sum()
    mean_occ = float(w @ occupancy)
    spread = float(np.sqrt(w @ (occupancy - mean_occ) ** 2))
    if spread < MIN_OCCUPANCY_SPREAD:
        return None
    s1 = float(w @ ((occupancy - mean_occ) * (step - w @ step)) / (w @ (occupancy - mean_occ) ** 2))
    s0 = float(w @ step - s1 * mean_occ)
    if s1 < 0 or s0 + s1 <= 0:
        return None
    return {
        "s0": s0,
        "s1": s1,
        "occupancy_mean": mean_occ,
        "occupancy_spread": spread,
        "occupancy_max": float(occupancy.max()),
        "requests": len(rows),
    }


def batched_wall(timings: list[dict], fit: dict, tokens_per_step: float, slots: int, scale: float = 1.0) -> float:
    """`scheduled_wall` with each step costing `scale` x (s0 + s1 x the requests decoding in it)
    (`occupancy_step_cost`) instead of one mean: requests in slots first come first served,
    each its measured time to first token, then its steps."""
    return stats.batched_makespan(
        [t["prefill_s"] for t in timings],
        [
            max(round(n), 1) if t["output_tokens"] > 1 else 0
            for t, n in zip(timings, request_steps(timings, tokens_per_step))
        ],
        lambda b: scale * (fit["s0"] + fit["s1"] * b),
        slots,
    )


def lone_tail(timings: list[dict]) -> dict:
    """How long the pass's last request decoded alone (`lone_tail_s`: its finish minus the
    second-to-last finish; all requests arrive with the one generate call), its output tokens,
    and its time per token over the pass's median (`lone_tail_tpot_ratio`). On the H200 a
    speculative engine's lone last request decoded 4-8x slower per token than its batch, 19-24 %
    of the pass in 5 of 9 runs, while the baseline's tail stayed under 2 %: time the cost model,
    which prices a step from all requests together, does not see. None each without per-request
    finish times or with fewer than two requests."""
    out = dict.fromkeys(("lone_tail_s", "lone_tail_tokens", "lone_tail_tpot_ratio"))
    i = last_to_finish(timings)
    if i is None:
        return out
    last = timings[i]
    tpots = [t["tpot_s"] for t in timings if t.get("tpot_s")]
    second = max(t["latency_s"] for j, t in enumerate(timings) if j != i)
    out.update(lone_tail_s=float(last["latency_s"] - second), lone_tail_tokens=int(last["output_tokens"]))
    if last.get("tpot_s") and tpots:
        out["lone_tail_tpot_ratio"] = float(last["tpot_s"] / np.median(tpots))
    return out


def last_to_finish(timings: list[dict]) -> int | None:
    """Index of the request that finished last (latest `latency_s`: all requests arrive with the
    one generate call); None with fewer than two requests or any without a finish time."""
    if len(timings) < 2 or any(t.get("latency_s") is None for t in timings):
        return None
    return max(range(len(timings)), key=lambda i: timings[i]["latency_s"])


def without_lone_tail(m: dict) -> float | None:
    """A pass's throughput (tokens/s) with its lone last request left out: the other requests'
    tokens over the time until the second-to-last finished."""
    tail, tokens = m["step"].get("lone_tail_s"), m["step"].get("lone_tail_tokens")
    if tail is None or tokens is None or m["wall_s"] <= tail:
        return None
    return (m["output_tokens_total"] - tokens) / (m["wall_s"] - tail)


def cost_model(
    base_step: dict, spec_step: dict, spec: dict | None, k: int, gpu: dict | None = None, base_gpu: dict | None = None
) -> dict | None:
    """The speculative pass's step cost r (its time per step over the baseline's), what a step
    yields, and from them the predicted speed-up, the engine's ceiling (every draft accepted)
    and, where both passes' GPU-busy time was profiled (`gpu`, `base_gpu`), the hardware floor
    of r (a speculative step's kernel time over a target step's, one prompt each) and the
    speed-up it would allow were every step only its kernels.

    What this prediction can and cannot show: r and the tokens per step are measured inside the
    decode phase (per-request engine timestamps, vLLM's counters), while the measured speed-up
    is output tokens over the wall time of the whole timed call (prefill, queueing behind
    max_num_seqs, the batch emptying at the end). The decode-only prediction (τ/r,
    `predicted_speedup_decode`) equals the measurement only if decode were all of a pass; the
    one with prefill (`predicted_speedup_busy`, basis "decode + prefill") also counts each
    request's time from scheduled to first token, so it equals the measurement when both passes
    keep their slots equally busy. Where each pass knows its slots, the prediction (basis
    "schedule") places that busy time in them request by request (`scheduled_wall`), so a long
    or badly guessed last request decoding alone is in it; agreement within 20 % then shows that
    no other cost is missing. It does not predict r from elsewhere: r is measured per pass (the
    K sweep's fit a + b*K, and `k: auto`'s calibration on other prompts, are the out-of-sample
    uses)."""
    if not (spec and base_step.get("step_s") and spec_step.get("step_s")):
        return None
    r = spec_step["step_s"] / base_step["step_s"]
    # acceptance by position per step (steps without a draft count as nothing accepted)
    by_pos = [a / spec_step["steps"] for a in spec["accepted_per_pos"]]
    out = {
        "k": k,
        "r": r,
        "step_s": spec_step["step_s"],
        "baseline_step_s": base_step["step_s"],
        "step_source": spec_step["source"],
        "tokens_per_step": stats.tokens_per_step(by_pos),
        "predicted_speedup_decode": stats.speedup_from_cost(by_pos, r),
        "ceiling_speedup": stats.ceiling_speedup(k, r),
        "gpu_busy_step_s": None,
        "r_floor": None,
        "floor_speedup": None,
    }
    out["predicted_speedup"], out["prediction_basis"] = out["predicted_speedup_decode"], "decode"
    if base_step.get("prefill_s") is not None and spec_step.get("prefill_s") is not None:
        # each request's time from scheduled to last token, not its decode alone: the decode
        # prediction scaled by the share of that time each pass spent decoding (what a miss
        # leaves then is slots standing empty: the ratio of busy occupancies). On the tiny CPU
        # pair this took the prediction from 1.27x to 1.03x of measured.
        out["predicted_speedup"] = out["predicted_speedup_decode"] * _decode_share(spec_step) / _decode_share(base_step)
        out["prediction_basis"] = "decode + prefill"
    out["predicted_speedup_busy"] = out["predicted_speedup"]
    if base_step.get("scheduled_s") and spec_step.get("scheduled_s"):
        # the same busy time, placed in the engine's slots request by request (`scheduled_wall`)
        out["predicted_speedup"] = (spec_step["output_tokens"] / spec_step["scheduled_s"]) / (
            base_step["output_tokens"] / base_step["scheduled_s"]
        )
        out["prediction_basis"] = "schedule"
    if _busy(gpu) and _busy(base_gpu):
        # kernels over kernels, not over the baseline's wall step: a small target's step is
        # mostly host work (190M on the H200: 0.70 ms of kernels in a 1.9 ms step at batch 1), and
        # over wall time the "floor" came out below 1 (18x speed-up)
        out["gpu_busy_step_s"] = gpu["busy_step_s"]
        out["r_floor"] = gpu["busy_step_s"] / base_gpu["busy_step_s"]
        out["floor_speedup"] = stats.speedup_from_cost(by_pos, out["r_floor"])
    return out


def _busy(gpu: dict | None) -> bool:
    return bool(gpu) and "busy_step_s" in gpu  # not None, nor a profiling that failed ({"error": ...})


def _decode_share(step: dict) -> float:
    return step["decode_s"] / (step["decode_s"] + step["prefill_s"])


def batch1_summary(base_info: dict, spec_info: dict, k: int) -> dict | None:
    """Speed-up, acceptance and predicted speed-up at batch size 1 (None when not measured)."""
    b, s = base_info.get("batch1"), spec_info.get("batch1")
    if not (b and s):
        return None
    acc = spec_summary(s["counters"], k)
    base_gpu = base_info.get("gpu_busy")
    model = cost_model(b["step"], s["step"], acc, k, spec_info.get("gpu_busy"), base_gpu)
    return {
        "n": b["n"],
        "baseline_tok_s": b["throughput_tok_s"],
        "speculative_tok_s": s["throughput_tok_s"],
        "speedup": s["throughput_tok_s"] / b["throughput_tok_s"],
        "latency_speedup": b["latency_s_mean"] / s["latency_s_mean"],
        "spec": acc,
        "cost_model": model,
        "predicted_speedup": model["predicted_speedup"] if model else None,
        # the GPU-busy time was profiled on one prompt: like for like with this batch size's step
        "gpu_busy_share": base_gpu["busy_step_s"] / b["step"]["step_s"]
        if _busy(base_gpu) and b["step"].get("step_s")
        else None,
    }


def spec_summary(c: dict, k: int) -> dict | None:
    """Acceptance from speculative counters (a pass's, or a subset's); None if nothing was drafted."""
    if not c["drafts"]:
        return None
    return {
        "k": k,
        "drafts": c["drafts"],
        "draft_tokens": c["draft_tokens"],
        "accepted_tokens": c["accepted_tokens"],
        "acceptance_rate": c["accepted_tokens"] / c["draft_tokens"],
        "mean_acceptance_length": stats.mean_acceptance_length(c["drafts"], c["accepted_tokens"]),
        "accepted_per_pos": c["accepted_per_pos"],
        "acceptance_by_pos": [a / c["drafts"] for a in c["accepted_per_pos"]],
    }


def summarize_pass(samples: list[dict], run_info: dict, k: int, n_boot: int, seed: int) -> dict:
    correct = np.array([s["correct"] for s in samples], dtype=float)
    tokens = np.array([s["output_tokens"] for s in samples], dtype=float)
    ttft = np.array([s["ttft_s"] for s in samples if s["ttft_s"] is not None], dtype=float)
    tpot = np.array([s["tpot_s"] for s in samples if s["tpot_s"] is not None], dtype=float)
    extraction = {m: int(sum(s["extraction"] == m for s in samples)) for m in answers.EXTRACTION_METHODS}
    c = run_info["counters"]
    out = {
        "n": len(samples),
        "accuracy": float(correct.mean()) if len(correct) else float("nan"),
        "accuracy_ci95": stats.bootstrap_ci(correct, n=n_boot, seed=seed),
        "output_tokens_total": int(tokens.sum()),
        "output_tokens_mean": float(tokens.mean()) if len(tokens) else float("nan"),
        "wall_s": run_info["wall_s"],
        "throughput_tok_s": float(tokens.sum() / run_info["wall_s"]),
        "ttft_s": _dist(ttft),
        "tpot_s": _dist(tpot),
        "peak_memory_mb": run_info["peak_memory_mb"],
        "peak_gpu_memory_mb": run_info.get("peak_gpu_memory_mb"),
        "extraction": extraction,
        "extraction_warning": (
            "most answers were found only by the last-number fallback (no credit given)"
            if extraction["last_number"] + extraction["none"] > len(samples) / 2
            else None
        ),
        "spec": spec_summary(c, k),
        "step": step_timing(samples, c, run_info["wall_s"], run_info.get("max_num_seqs")),
        "gpu_busy": run_info.get("gpu_busy"),
        "lone_replay": run_info.get("lone_replay"),
        "async_scheduling": run_info.get("async_scheduling"),
        "max_num_seqs": run_info.get("max_num_seqs"),
    }
    return out


def _dist(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {"mean": None, "p50": None, "p90": None}
    return {
        "mean": float(values.mean()),
        "p50": float(np.quantile(values, 0.5)),
        "p90": float(np.quantile(values, 0.9)),
    }


def identical_share(a: list[dict], b: list[dict]) -> float:
    """Share of prompts (matched by id) whose outputs are the same text in both passes."""
    other = {x["id"]: x["output"] for x in b}
    same = [x["output"] == other[x["id"]] for x in a if x["id"] in other]
    return float(np.mean(same)) if same else float("nan")


def repetition(m_base: dict, m_spec: dict, order: tuple[str, ...], k: int) -> dict:
    """One repetition's measured and predicted speed-up."""
    model = cost_model(m_base["step"], m_spec["step"], m_spec["spec"], k)
    return {
        "order": list(order),
        "baseline_tok_s": m_base["throughput_tok_s"],
        "speculative_tok_s": m_spec["throughput_tok_s"],
        "baseline_wall_s": m_base["wall_s"],
        "speculative_wall_s": m_spec["wall_s"],
        "baseline_step_s": m_base["step"]["step_s"],
        "speculative_step_s": m_spec["step"]["step_s"],
        "ttft_s": {"baseline": m_base["ttft_s"]["mean"], "speculative": m_spec["ttft_s"]["mean"]},
        "speedup_throughput": m_spec["throughput_tok_s"] / m_base["throughput_tok_s"],
        "r": model["r"] if model else None,
        "predicted_speedup": model["predicted_speedup"] if model else None,
        "occupancy_ratio": occupancy_ratio(m_base["step"], m_spec["step"]),
        "predicted_speedup_decode": model["predicted_speedup_decode"] if model else None,
        "predicted_speedup_busy": model["predicted_speedup_busy"] if model else None,
        "busy_occupancy_ratio": occupancy_ratio(m_base["step"], m_spec["step"], "busy_occupancy"),
        "lone_tail_share": {
            name: (
                m["step"].get("lone_tail_s") / m["wall_s"]
                if m["step"].get("lone_tail_s") is not None and m["wall_s"]
                else None
            )
            for name, m in (("baseline", m_base), ("speculative", m_spec))
        },
        "speedup_without_lone_tail": (
            spec_rest / base_rest
            if (spec_rest := without_lone_tail(m_spec)) and (base_rest := without_lone_tail(m_base))
            else None
        ),
        "lone_tail_tpot_ratio": m_spec["step"].get("lone_tail_tpot_ratio"),
    }


def occupancy_ratio(base_step: dict, spec_step: dict, key: str = "occupancy") -> float | None:
    """The speculative pass's occupancy over the baseline's. Measured speed-up = decode-only
    prediction x this ratio (wall = decode time summed over requests / occupancy, and the
    prediction is the ratio of the decode times): below 1, the speculative pass spent more of
    its time outside decode steps (prefill, scheduling, a batch emptying). With `key`
    "busy_occupancy" (prefill counted as busy), what is left once prefill is in the prediction."""
    b, s = base_step.get(key), spec_step.get(key)
    return s / b if b and s else None


def compare(
    base: list[dict],
    spec: list[dict],
    m_base: dict,
    m_spec: dict,
    reps: list[dict],
    k: int,
    n_boot: int,
    seed: int,
    floor: list[dict] | None = None,
    warmups: list[dict] | None = None,
) -> dict:
    """Speed-up (median over repetitions, their range as its interval), the cost model's
    prediction beside it, accuracy and token deltas, and lossless-ness against its floor.
    `warmups`: repetitions run before these, kept beside them and counted in none of it."""
    lat_b = [s["latency_s"] or 0.0 for s in base]
    lat_s = [s["latency_s"] or 0.0 for s in spec]
    identical = identical_share(base, spec) if base else float("nan")
    floor_share = identical_share(base, floor) if floor else None
    measured = [r["speedup_throughput"] for r in reps]
    model = cost_model(
        m_base["step"], m_spec["step"], m_spec["spec"], k, m_spec.get("gpu_busy"), m_base.get("gpu_busy")
    )
    out = {
        "speedup_throughput": float(np.median(measured)),
        "speedup_throughput_range": [float(min(measured)), float(max(measured))],
        "repetitions": reps,
        "warmup_repetitions": warmups or [],
        # per-request latency ratio, resampled over prompts (paired): sum(base)/sum(spec)
        "speedup_latency": float(np.sum(lat_b) / np.sum(lat_s)) if np.sum(lat_s) else None,
        "speedup_latency_ci95": stats.paired_ratio_ci(lat_b, lat_s, n=n_boot, seed=seed),
        "accuracy_delta": m_spec["accuracy"] - m_base["accuracy"],
        "tokens_mean_delta": m_spec["output_tokens_mean"] - m_base["output_tokens_mean"],
        "identical_output_share": identical,
        "identical_output_floor": floor_share,
        "identical_output_warning": None,
        "identical_output_excess_p": None,
        "cost_model": model,  # the first repetition's, with the GPU-busy floor where profiled
        "predicted_speedup": None,
        "step_cost_r": None,
        "ceiling_speedup": None,
        "floor_speedup": model["floor_speedup"] if model else None,
        "measured_over_predicted": None,
        "prediction_within_tolerance": None,
        "occupancy": {"baseline": m_base["step"].get("occupancy"), "speculative": m_spec["step"].get("occupancy")},
        "occupancy_ratio": None,
        "busy_occupancy_ratio": None,
        "predicted_speedup_decode": None,
        "predicted_speedup_busy": None,
        "prediction_basis": model["prediction_basis"] if model else None,
        # medians over repetitions: each pass's lone last request (`lone_tail`), and the
        # speed-up measured without it
        "lone_tail_share": {
            name: stats.median_present([(r.get("lone_tail_share") or {}).get(name) for r in reps]) for name in PASSES
        },
        "speedup_without_lone_tail": stats.median_present([r.get("speedup_without_lone_tail") for r in reps]),
        "lone_tail_tpot_ratio": stats.median_present([r.get("lone_tail_tpot_ratio") for r in reps]),
    }
    if floor_share is not None:
        # beyond the floor by more than chance: 5 differing prompts against the floor's 3 is not
        out["identical_output_excess_p"] = p = stats.excess_mismatch_p(identical, floor_share, len(base))
        if p < stats.NOISE_ALPHA:
            out["identical_output_warning"] = (
                f"speculative outputs equal the baseline's for {identical:.0%} of prompts, fewer than the baseline equals "
                f"itself under other batching ({floor_share:.0%}; p = {p:.3f}): a divergence beyond numerical noise"
            )
    elif not identical >= 0.95:  # written so that NaN warns
        out["identical_output_warning"] = (
            "speculative outputs differ from baseline at temperature 0 for more than 5% of prompts (no floor measured)"
        )
    preds = [r["predicted_speedup"] for r in reps if r["predicted_speedup"] is not None]
    if preds:  # medians over repetitions, like the measured speed-up
        out["step_cost_r"] = float(np.median([r["r"] for r in reps if r["r"] is not None]))
        out["ceiling_speedup"] = stats.ceiling_speedup(k, out["step_cost_r"])
        out["predicted_speedup"] = float(np.median(preds))
        out["measured_over_predicted"] = out["speedup_throughput"] / out["predicted_speedup"]
        for key in ("occupancy_ratio", "busy_occupancy_ratio", "predicted_speedup_decode", "predicted_speedup_busy"):
            out[key] = stats.median_present([r.get(key) for r in reps])
        out["prediction_within_tolerance"] = bool(stats.within_tolerance(out["measured_over_predicted"]))
    return out


def hardware() -> dict:
    info = {"machine": platform.machine(), "processor": platform.processor(), "python": platform.python_version()}
    names = device.gpu_names()  # NVML: naming the GPU through torch would initialise CUDA
    if names:
        info["gpu"] = names[0]
    info["cpus"] = len(device.usable_cpus())  # the run's own cores (a CPU job slot's), not the machine's
    return info


CROSSCHECK_NOTE = (
    "Both engines decode the same prompts greedily with the same target, draft and K; vLLM batches them, "
    "transformers runs batch size 1. transformers' own count ('transformers') differs from vLLM's in two known "
    "places: it drafts the first output token from the prompt alone (vLLM's prefill emits that token, drafting "
    "starts after it), and when its draft stops at EOS with every candidate agreed it counts that EOS as the "
    "target's own token ('held_back_steps'). 'transformers.vllm_comparable' leaves out each prompt's first step "
    "and counts such an EOS as accepted: that is the number to set beside vLLM's. Left: vLLM drafts K tokens "
    "even at the length limit and past EOS (transformers drafts fewer there), and tiny float differences "
    "between the engines' kernels can flip a greedy choice and change the rest of an output "
    "('identical_output_share')."
)


def crosscheck_pass(
    cfg, pair: dict, prompts: list[str], problems: list[dict], spec_samples: list[dict], spec_info: dict
) -> dict | None:
    """vLLM's acceptance on the first `benchmark.crosscheck_samples` prompts beside the one
    transformers' assisted generation counts on the same prompts (same pair, same K, greedy,
    batch size 1). None when disabled (0)."""
    bench = cfg["benchmark"]
    n = min(int(bench["crosscheck_samples"]), len(prompts))
    if n <= 0:
        return None
    method, k = bench["method"], bench["k"]
    if method == "eagle3":
        return {"n": 0, "skipped": "transformers has no EAGLE-3 proposer: no cross-check for method eagle3"}
    tf = crosscheck.acceptance(
        pair["target"],
        pair["draft"] if method == "draft_model" else None,
        prompts[:n],
        k,
        bench["max_tokens"],
        device="cuda" if device.on_cuda(cfg) else "cpu",
        dtype=cfg["models"]["dtype"],
        revisions={name: hub.revision(cfg, name) for name in pair.values()},
    )
    per_prompt = tf.pop("per_prompt")
    vllm_side = spec_summary(spec_info["subset_counters"], k) if spec_info["subset_counters"] else None
    if vllm_side is not None:
        vllm_side["source"] = spec_info["subset_source"]
    same = [pp["text"] == s["output"] for pp, s in zip(per_prompt, spec_samples[:n])]
    for pp, s, eq in zip(per_prompt, spec_samples[:n], same):
        pp.update(
            id=s["id"],
            identical_to_vllm=eq,
            vllm_draft_tokens=s["spec_draft_tokens"],
            vllm_accepted_tokens=s["spec_accepted_tokens"],
        )
        pp.pop("text")
    notes = [CROSSCHECK_NOTE]
    if method == "ngram":
        notes.append(
            "method ngram: transformers' prompt lookup tries n-grams of "
            f"{crosscheck.NGRAM_MAX} tokens down to 1, vLLM's down to {engine.NGRAM_LOOKUP['prompt_lookup_min']}; "
            "the proposals differ, so compare loosely."
        )
    if bench["temperature"] != 0:
        notes.append(
            f"the vLLM pass sampled at temperature {bench['temperature']}; the cross-check is greedy: "
            "the acceptance rates are not comparable."
        )
    diff = None
    if vllm_side and tf["vllm_comparable"]["acceptance_rate"] is not None:
        diff = tf["vllm_comparable"]["acceptance_rate"] - vllm_side["acceptance_rate"]
    return {
        "n": n,
        "ids": [p["id"] for p in problems[:n]],
        "method": method,
        "k": k,
        "max_tokens": bench["max_tokens"],
        "vllm": vllm_side,
        "transformers": tf,
        "acceptance_rate_diff": diff,
        "identical_output_share": float(np.mean(same)) if same else None,
        "per_prompt": per_prompt,
        "note": " ".join(notes),
    }


def k_sweep(
    cfg,
    pair: dict,
    prompts: list[str],
    problems: list[dict],
    base_samples: list[dict],
    m_base: dict,
    main: tuple[list[dict], dict],
    ks,
) -> tuple[list[dict], list[dict], dict | None]:
    """One speculative pass per K of `ks` (each a fresh engine; the main pass's K is reused,
    not re-run): acceptance, throughput and speed-up over the first baseline pass, each pass's
    step cost r and the speed-up predicted from it. Returns the entries, the passes' samples
    (pass `speculative_k<K>`) and the least-squares fit r = a + b*K over them (None with fewer
    than two K)."""
    bench = cfg["benchmark"]
    n_boot, seed = bench["bootstrap"], cfg["seed"]
    entries, all_samples = [], []
    for k in dict.fromkeys(ks):  # in order, without repeats
        reused = k == bench["k"]
        if reused:
            samples, m = main
        else:
            spec = engine.speculative_config(cfg, pair["draft"], k=k)
            samples, info = run_pass(
                cfg, f"speculative_k{k}", pair["target"], prompts, problems, spec=spec, extras=False
            )
            m = summarize_pass(samples, info, k, n_boot, seed)
            all_samples += samples
        sp = m["spec"] or {}
        model = cost_model(m_base["step"], m["step"], m["spec"], k) or {}
        entries.append(
            {
                "k": k,
                "pass": "speculative" if reused else f"speculative_k{k}",
                "reused_main_pass": reused,
                "acceptance_rate": sp.get("acceptance_rate"),
                "mean_acceptance_length": sp.get("mean_acceptance_length"),
                "acceptance_by_pos": sp.get("acceptance_by_pos"),
                "drafts": sp.get("drafts", 0),
                "draft_tokens": sp.get("draft_tokens", 0),
                "accepted_tokens": sp.get("accepted_tokens", 0),
                "throughput_tok_s": m["throughput_tok_s"],
                "wall_s": m["wall_s"],
                "speedup_throughput": m["throughput_tok_s"] / m_base["throughput_tok_s"],
                "r": model.get("r"),
                "predicted_speedup": model.get("predicted_speedup"),
                "ceiling_speedup": model.get("ceiling_speedup"),
                "accuracy": m["accuracy"],
                "output_tokens_mean": m["output_tokens_mean"],
                "identical_output_share": identical_share(base_samples, samples),
            }
        )
    fitted = [e for e in entries if e["r"] is not None]
    fit = stats.fit_step_cost([e["k"] for e in fitted], [e["r"] for e in fitted]) if fitted else None
    return entries, all_samples, fit


def forecast(
    cal_base: dict,
    cal_spec: dict,
    n: int,
    slots: int,
    step_s: float | None = None,
    tokens_per_step: float | None = None,
) -> dict | None:
    """The throughput speed-up a benchmark of `n` prompts will measure, forecast from a
    calibration on other prompts (`calibration_set`), before its timed passes: each pass's
    calibration requests, taken in turn until there are `n`, hold a slot for their own time to
    first token and then their decode steps at the calibration's step cost (speculative: each
    request's own tokens per step), placed first come first served in `slots` slots
    (`scheduled_wall`, the accounting check's model, here fed by other prompts). The baseline's
    and the speculative pass's placements give the two throughputs. The same model placed for
    the calibration's own requests (`calibration_model_speedup`) beside what the calibration call
    measured (`calibration_speedup`) tells whether a miss lies in the model or in the prompts.
    `step_s` and `tokens_per_step` replace the speculative calibration's (a K it did not run:
    `calibrate`). None where the calibration has no per-request timestamps."""
    if not (cal_base and cal_spec and cal_base["samples"] and cal_spec["samples"] and n and slots):
        return None
    base = step_timing(cal_base["samples"], None, cal_base["wall_s"], slots)
    spec = step_timing(cal_spec["samples"], cal_spec.get("counters"), cal_spec["wall_s"], slots)
    if base["prefill_s"] is None or spec["prefill_s"] is None or not (base["step_s"] and spec["step_s"]):
        return None
    own_tps = spec["decode_tokens"] / spec["steps"] if spec["steps"] else 1.0
    # each pass's step cost as a line in its occupancy, where the calibration measured one for both
    fits = {
        "baseline": occupancy_step_cost(cal_base["samples"], 1.0),
        "speculative": occupancy_step_cost(cal_spec["samples"], own_tps),
    }
    by_occupancy = all(fits.values())

    def wall(rows, name, measured, step, tps):
        if by_occupancy:  # a step cost other than the calibration's scales its line
            return batched_wall(rows, fits[name], tps, slots, scale=step / measured["step_s"])
        return scheduled_wall(rows, step, tps, slots)

    def modelled(base_rows, spec_rows, spec_step, pass_tps):
        wall_base = wall(base_rows, "baseline", base, base["step_s"], 1.0)
        wall_spec = wall(spec_rows, "speculative", spec, spec_step, pass_tps)
        tokens = lambda rows: sum(t["output_tokens"] for t in rows)  # noqa: E731
        return (tokens(spec_rows) / wall_spec) / (tokens(base_rows) / wall_base)

    cycle = lambda rows: [rows[i % len(rows)] for i in range(n)]  # noqa: E731
    base_rows, spec_rows = cycle(cal_base["samples"]), cycle(cal_spec["samples"])
    pass_tps = own_tps
    if tokens_per_step is not None:  # a K not calibrated: the pass's tokens per step for every request
        spec_rows = [{"prefill_s": t["prefill_s"], "output_tokens": t["output_tokens"]} for t in spec_rows]
        pass_tps = tokens_per_step
    spec_step = step_s if step_s is not None else spec["step_s"]
    return {
        "speedup": modelled(base_rows, spec_rows, spec_step, pass_tps),
        "n_calibration": len(cal_base["samples"]),
        "n": n,
        "r": spec_step / base["step_s"],
        "tokens_per_step": pass_tps,
        # "occupancy": steps priced by how many requests share them (`occupancy_step_cost`), else "flat"
        "step_model": "occupancy" if by_occupancy else "flat",
        "occupancy_fit": fits,
        # the calibration call's own throughput ratio, and the model's for its requests as they came
        "calibration_speedup": (spec["output_tokens"] / cal_spec["wall_s"])
        / (base["output_tokens"] / cal_base["wall_s"]),
        "calibration_model_speedup": modelled(cal_base["samples"], cal_spec["samples"], spec["step_s"], own_tps),
        # what the model took from each calibration pass, to set beside the timed passes' `step`
        "calibration_steps": {
            name: {"step_s": st["step_s"], "prefill_s_mean": st["prefill_s"] / len(c["samples"])}
            for name, st, c in (("baseline", base, cal_base), ("speculative", spec, cal_spec))
        },
    }


TIMING_KEYS = ("output_tokens", "prefill_s", "tpot_s", "latency_s", "spec_drafts", "spec_accepted_tokens")


def forecast_record(base_info: dict, spec_info: dict, n: int, slots: int, calibration: dict | None) -> dict:
    """The forecast made before the first repetition's timed passes, from the calibration call
    on their own engines (`run_pass`'s `calibration`), or why there is none."""
    cal_base, cal_spec = base_info.get("calibration"), spec_info.get("calibration")
    if not (cal_base and cal_spec):
        return {
            "speedup": None,
            "why_none": "no calibration prompts (benchmark.calibration_samples = 0, or the training "
            "split has none outside the test split)",
        }
    got = forecast(cal_base, cal_spec, n, slots)
    if got is None:
        return {"speedup": None, "why_none": "the engine gave no per-request timestamps"}
    return {
        **got,
        "source": "training split",
        "made": "before the timed passes, on their engines",
        # what it was made from, per request, so that another model of it can be tried afterwards
        "calibration_requests": {
            name: [{key: t.get(key) for key in TIMING_KEYS} for t in c["samples"]]
            for name, c in (("baseline", cal_base), ("speculative", cal_spec))
        },
        "k_auto_forecast": (calibration or {}).get("predicted_speedup", {}).get(str(calibration["k"]))
        if calibration
        else None,
    }


def forecast_checked(fc: dict, comparison: dict, sweep: list[dict], calibration: dict | None) -> dict:
    """The forecast against what the timed passes then measured (`ratio`: measured over
    forecast), and with `k: auto` and a K sweep, where the chosen K's measured speed-up stood
    among the measured ones (`k_choice`)."""
    measured = comparison.get("speedup_throughput")
    out = {
        **fc,
        "measured_speedup": measured,
        "ratio": measured / fc["speedup"] if fc.get("speedup") and measured is not None else None,
    }
    measured_k = {e["k"]: e["speedup_throughput"] for e in sweep or [] if e.get("speedup_throughput")}
    if calibration and len(measured_k) > 1 and calibration["k"] in measured_k:
        best = max(measured_k, key=measured_k.get)
        # the sweep measures each K once; the chosen K's own repetitions show how far one pass moves
        own = [r["speedup_throughput"] for r in comparison.get("repetitions") or [] if r.get("speedup_throughput")]
        out["k_choice"] = {
            "chosen": calibration["k"],
            "best_measured": best,
            "chosen_speedup": measured_k[calibration["k"]],
            "best_speedup": measured_k[best],
            "share_of_best": measured_k[calibration["k"]] / measured_k[best],
            "rank": sorted(measured_k.values(), reverse=True).index(measured_k[calibration["k"]]) + 1,
            "of": len(measured_k),
            "chosen_repetitions": own,
            # the best K's one pass no faster than the chosen K's fastest repetition: the sweep
            # cannot tell the two apart
            "best_within_chosen_range": bool(own) and measured_k[best] <= max(own),
        }
    return out


def calibrate(cfg, pair: dict, cal: tuple[list[str], list[dict]], n: int) -> dict:
    """`benchmark.k: auto`: on the calibration prompts (`calibration_set`: training problems,
    not the benchmark's), a baseline pass and speculative passes at the smallest, middle and
    largest K candidate, each on a fresh engine. Each probed K's forecast for the benchmark's
    `n` prompts comes from its own pass (`forecast`); a K between them is forecast from the
    nearest probe's requests, with the step cost r(K) = a + b*K fitted over the probes and the
    tokens per step the largest probe's acceptance by position allows at K (a greedy draft
    proposes the same first tokens whatever K is). The K with the highest forecast is chosen."""
    bench = cfg["benchmark"]
    prompts, problems = cal
    if not prompts:
        raise ValueError(
            "benchmark.k auto: no calibration prompts (the training split has none outside the test split)"
        )
    slots = bench["max_num_seqs"]
    cands = sorted(set(int(k) for k in bench["k_candidates"]))
    probes = sorted({cands[0], cands[len(cands) // 2], cands[-1]})
    samples, info = run_pass(cfg, "calibration_baseline", pair["target"], prompts, problems, extras=False)
    cal_base = {"samples": samples, "wall_s": info["wall_s"], "counters": info["counters"]}
    base_step = step_timing(samples, None, info["wall_s"], slots)
    points, cals = [], {}
    for k in probes:
        spec = engine.speculative_config(cfg, pair["draft"], k=k)
        samples, info = run_pass(cfg, f"calibration_k{k}", pair["target"], prompts, problems, spec=spec, extras=False)
        sp = spec_summary(info["counters"], k)
        cals[k] = {"samples": samples, "wall_s": info["wall_s"], "counters": info["counters"]}
        got = forecast(cal_base, cals[k], n, slots)
        if sp and got:
            points.append(
                {
                    "k": k,
                    "r": got["r"],
                    "acceptance_by_pos": sp["acceptance_by_pos"],
                    "forecast_speedup": got["speedup"],
                }
            )
    if not points:
        raise RuntimeError(
            f"benchmark.k auto: no calibration pass drafted anything (K {probes}, {len(prompts)} prompts)"
        )
    fit = stats.fit_step_cost([x["k"] for x in points], [x["r"] for x in points]) or {
        "a": points[0]["r"],
        "b": 0.0,
        "k": [points[0]["k"]],
        "r": [points[0]["r"]],
        "residuals": [0.0],
        "rms_residual": 0.0,
    }  # a single candidate
    by_pos, probed = points[-1]["acceptance_by_pos"], {x["k"]: x["forecast_speedup"] for x in points}
    predicted = {}
    for k in cands:
        if k in probed:
            predicted[k] = probed[k]
        elif k <= len(by_pos):
            near = min(probed, key=lambda p: (abs(p - k), p))
            got = forecast(
                cal_base,
                cals[near],
                n,
                slots,
                step_s=base_step["step_s"] * (fit["a"] + fit["b"] * k),
                tokens_per_step=stats.tokens_per_step(by_pos, k),
            )
            if got:
                predicted[k] = got["speedup"]
    chosen = max(predicted, key=predicted.get)
    return {
        "n": len(prompts),
        "source": "training split",
        "candidates": cands,
        "probes": points,
        "fit": fit,
        "k": chosen,
        "predicted_speedup": {str(k): v for k, v in predicted.items()},  # str keys: as JSON writes them
    }


def with_k(cfg, k: int):
    """The run's params with `benchmark.k` resolved (from `auto` to the calibrated K)."""
    return params.Params({**cfg, "benchmark": {**cfg["benchmark"], "k": int(k)}})


def _repetitions(
    cfg, target: str, prompts: list[str], problems: list[dict], spec: dict, n_check: int, calibration=None
):
    """`benchmark.warmup_repetitions` repetitions recorded but not counted, then baseline and
    speculative passes `benchmark.repetitions` times, in alternating order; each repetition's
    comparison (warm-ups apart), and the first counted repetition's samples and summaries (the
    only one with the extras and the cross-check recount)."""
    bench = cfg["benchmark"]
    k, n_boot, seed, warm = bench["k"], bench["bootstrap"], cfg["seed"], bench["warmup_repetitions"]
    warmups, reps, first = [], [], None
    for i in range(-warm, bench["repetitions"]):  # i < 0: a warm-up repetition
        order = PASSES if i % 2 == 0 else PASSES[::-1]  # alternate, so drift favours neither pass
        got = {}
        for name in order:
            got[name] = run_pass(
                cfg,
                name,
                target,
                prompts,
                problems,
                spec=spec if name == "speculative" else None,
                recount=n_check if name == "speculative" and i == 0 else 0,
                extras=i == 0,
                floor=bench["floor_max_num_seqs"] if name == "baseline" and i == 0 else 0,
                calibration=calibration if i == 0 else None,
            )
        m = {name: summarize_pass(*got[name], k, n_boot, seed) for name in PASSES}
        (warmups if i < 0 else reps).append(repetition(m["baseline"], m["speculative"], order, k))
        if i == 0:
            first = (got, m)
    return warmups, reps, first


def sweep_ks(ks: list[int], chosen: int, reference: int) -> list[int]:
    """The K sweep's K under `k: auto`: the study's K stays measured beside the pick, and the
    pick joins the sweep (its main pass, not run again), so that `forecast.k_choice` ranks it
    among the measured K (on one H100 the pick, K 6, fell outside a sweep over 1, 3, 5, 7)."""
    ks = list(ks)
    if chosen != reference and reference not in ks:
        ks.append(reference)
    if ks and chosen not in ks:
        ks.append(chosen)
    return ks


def run(cfg, rp: RunPaths) -> dict:
    """Baseline and speculative passes, `benchmark.repetitions` times in alternating order;
    the baseline once more at other batching (the floor of lossless-ness); the K sweep and the
    transformers cross-check where params ask for them. With `k: auto`, a calibration first
    picks K, and a pass at `k_reference` joins the sweep when the pick differs (and the pick
    joins a sweep that lacks it)."""
    import pandas as pd

    check(cfg)
    method = cfg["benchmark"]["method"]
    pair = pair_for_run(cfg, rp)
    tok_t = models.load_tokenizer(pair["target"], hub.revision(cfg, pair["target"]))
    if method == "draft_model":
        models.assert_same_tokenizer(tok_t, models.load_tokenizer(pair["draft"], hub.revision(cfg, pair["draft"])))
    problems = test_problems(cfg, rp)
    thinking = models.enable_thinking(cfg)
    prompts = [models.prompt_text(tok_t, cfg["style"], p["question"], thinking) for p in problems]
    engine.check_prompt_lengths(cfg, tok_t, prompts, [p["id"] for p in problems], rp.test_problems)
    cal = calibration_set(cfg, rp, tok_t, thinking, problems)
    if cal[0]:
        engine.check_prompt_lengths(cfg, tok_t, cal[0], [p["id"] for p in cal[1]], rp.train_problems)
    requested, calibration, ks = cfg["benchmark"]["k"], None, list(cfg["benchmark"]["k_sweep"])
    if requested == "auto":
        calibration = calibrate(cfg, pair, cal, len(prompts))
        cfg = with_k(cfg, calibration["k"])
        ks = sweep_ks(ks, calibration["k"], cfg["benchmark"]["k_reference"])
    bench = cfg["benchmark"]
    k, n_boot, seed = bench["k"], bench["bootstrap"], cfg["seed"]
    spec = engine.speculative_config(cfg, pair["draft"])
    n_check = bench["crosscheck_samples"] if method != "eagle3" else 0
    warmups, reps, first = _repetitions(cfg, pair["target"], prompts, problems, spec, n_check, cal)
    (base_samples, base_info), (spec_samples, spec_info) = first[0]["baseline"], first[0]["speculative"]
    m_base, m_spec = first[1]["baseline"], first[1]["speculative"]
    floor_samples = base_info["floor_samples"]
    sweep, sweep_samples, fit = k_sweep(cfg, pair, prompts, problems, base_samples, m_base, (spec_samples, m_spec), ks)
    check_result = crosscheck_pass(cfg, pair, prompts, problems, spec_samples, spec_info)
    head = (rp.eagle3_head, base_samples, m_base, floor_samples) if eagle3.enabled(cfg) else None
    e3_samples, e3 = eagle3_pass(cfg, pair["target"], prompts, problems, *head) if head else ([], None)
    metrics = {
        "run": rp.name,
        "profile": cfg["profile"],
        "style": cfg["style"],
        "scenario": cfg["scenario"],
        "models": pair,
        "method": method,
        "k": k,
        "k_requested": requested,
        "temperature": bench["temperature"],
        "enable_thinking": thinking,
        "speculative_config": spec,
        "engine_settings": {
            "async_scheduling": {n: p["async_scheduling"] for n, p in (("baseline", m_base), ("speculative", m_spec))},
            "async_scheduling_param": cfg["engine"]["async_scheduling"],
            "enforce_eager": cfg["engine"]["enforce_eager"],
            "repetitions": bench["repetitions"],
            "warmup_repetitions": bench["warmup_repetitions"],
            "floor_max_num_seqs": bench["floor_max_num_seqs"],
        },
        "passes": {"baseline": m_base, "speculative": m_spec} | ({EAGLE3_PASS: e3["pass"]} if e3 else {}),
        "comparison": compare(
            base_samples, spec_samples, m_base, m_spec, reps, k, n_boot, seed, floor_samples, warmups
        ),
        "calibration": calibration,
        "forecast": forecast_record(base_info, spec_info, len(prompts), bench["max_num_seqs"], calibration),
        "crosscheck": check_result,
        "k_sweep": sweep,
        "k_sweep_fit": fit,
        "batch1": batch1_summary(base_info, spec_info, k),
        "versions": engine.versions(),
        "hardware": hardware(),
        "seed": seed,
        "params": dict(cfg),
    } | ({"eagle3": {k: v for k, v in e3.items() if k != "pass"}} if e3 else {})
    metrics["forecast"] = forecast_checked(metrics["forecast"], metrics["comparison"], sweep, calibration)
    # merged checkpoints are large; the adapters stay. Said in the metrics, so that the merge stays
    # done while this benchmark stands (`record.outputs_missing`)
    metrics["merged_deleted"] = bool(cfg["merge"]["delete_after_benchmark"] and rp.style != "base")
    frame = pd.DataFrame(base_samples + spec_samples + floor_samples + sweep_samples + e3_samples)
    frame.insert(0, "run", rp.name)
    rp.run_dir.mkdir(parents=True, exist_ok=True)
    io.write_text(rp.samples_csv, frame.to_csv(index=False))
    io.write_json(rp.metrics_json, metrics)
    if metrics["merged_deleted"]:
        merge.delete_merged(rp)
    return metrics


EAGLE3_PASS = "eagle3"  # the third pass, where the run has an EAGLE-3 head (`eagle3.enabled`)


def eagle3_spec(cfg, head, k: int | None = None) -> dict:
    """vLLM's speculative_config for an EAGLE-3 head folder (speculators' layout), K as asked."""
    bench = {**cfg["benchmark"], "method": "eagle3", "eagle3_model": str(head)}
    return engine.speculative_config(params.Params({**cfg, "benchmark": bench}), None, k)


def eagle3_pass(cfg, target: str, prompts, problems, head, base_samples, m_base, floor_samples) -> tuple[list, dict]:
    """Target + EAGLE-3 head on a fresh engine, once, measured against the first repetition's
    baseline as the draft model's pass is: acceptance by position, mean acceptance length, step
    cost r, speed-up, and lossless-ness against the baseline's own floor."""
    k, n_boot, seed = cfg["benchmark"]["k"], cfg["benchmark"]["bootstrap"], cfg["seed"]
    spec = eagle3_spec(cfg, head)
    samples, info = run_pass(cfg, EAGLE3_PASS, target, prompts, problems, spec=spec, extras=False)
    m = summarize_pass(samples, info, k, n_boot, seed)
    comparison = compare(
        base_samples, samples, m_base, m, [repetition(m_base, m, PASSES, k)], k, n_boot, seed, floor_samples
    )
    return samples, {"pass": m, "comparison": comparison, "speculative_config": spec, "head": str(head)}


def eagle3_headline(metrics: dict) -> dict:
    """The head's pass in the headline's terms (absent where the run has no head, so that a run
    without one records what it always did)."""
    e3, m = metrics.get("eagle3"), metrics["passes"].get(EAGLE3_PASS)
    if not e3 or not m:
        return {}
    c, spec = e3["comparison"], m["spec"] or {}
    return {
        "eagle3_acceptance_rate": spec.get("acceptance_rate"),
        "eagle3_mean_acceptance_length": spec.get("mean_acceptance_length"),
        "eagle3_acceptance_by_pos": spec.get("acceptance_by_pos"),
        "eagle3_speedup": c["speedup_throughput"],
        "eagle3_step_cost_r": c.get("step_cost_r"),
        "eagle3_predicted_speedup": c.get("predicted_speedup"),
        "eagle3_accuracy": m["accuracy"],
        "eagle3_identical_output_share": c["identical_output_share"],
        "eagle3_identical_output_warning": c.get("identical_output_warning"),
    }


def headline(metrics: dict) -> dict:
    """The few numbers the index page and the analysis show per run."""
    b, s, c = metrics["passes"]["baseline"], metrics["passes"]["speculative"], metrics["comparison"]
    cross = metrics.get("crosscheck") or {}
    return {
        "accuracy_baseline": b["accuracy"],
        "accuracy_speculative": s["accuracy"],
        "acceptance_rate": (s["spec"] or {}).get("acceptance_rate"),
        "mean_acceptance_length": (s["spec"] or {}).get("mean_acceptance_length"),
        "speedup": c["speedup_throughput"],
        "predicted_speedup": c["predicted_speedup"],
        # added (issue 15): the cost model beside the measurement
        "speedup_lo": (c.get("speedup_throughput_range") or [None, None])[0],
        "speedup_hi": (c.get("speedup_throughput_range") or [None, None])[1],
        "ceiling_speedup": c.get("ceiling_speedup"),
        "floor_speedup": c.get("floor_speedup"),
        "step_cost_r": c.get("step_cost_r"),
        "r_floor": (c.get("cost_model") or {}).get("r_floor"),
        "gpu_busy_share": (metrics.get("batch1") or {}).get("gpu_busy_share"),
        "occupancy_ratio": c.get("occupancy_ratio"),
        "busy_occupancy_ratio": c.get("busy_occupancy_ratio"),
        "lone_tail_share": (c.get("lone_tail_share") or {}).get("speculative"),
        "lone_tail_share_baseline": (c.get("lone_tail_share") or {}).get("baseline"),
        "speedup_without_lone_tail": c.get("speedup_without_lone_tail"),
        "lone_tail_tpot_ratio": c.get("lone_tail_tpot_ratio"),
        **lone_replay_columns(s.get("lone_replay")),
        "predicted_speedup_decode": c.get("predicted_speedup_decode"),
        "predicted_speedup_busy": c.get("predicted_speedup_busy"),
        "prediction_basis": c.get("prediction_basis") or ("decode" if c.get("predicted_speedup") is not None else None),
        "identical_output_floor": c.get("identical_output_floor"),
        "k_requested": metrics.get("k_requested", metrics.get("k")),
        "k": metrics.get("k"),
        "tokens_per_answer": b["output_tokens_mean"],
        "enable_thinking": metrics.get("enable_thinking"),  # the chat template's, for this style
        "identical_output_share": c["identical_output_share"],
        # added: the cross-check subset, both engines (None when it did not run)
        "crosscheck_n": cross.get("n"),
        "crosscheck_acceptance_vllm": (cross.get("vllm") or {}).get("acceptance_rate"),
        "crosscheck_acceptance_transformers": ((cross.get("transformers") or {}).get("vllm_comparable") or {}).get(
            "acceptance_rate"
        ),
        "k_sweep_best_k": max(metrics["k_sweep"], key=lambda e: e["speedup_throughput"])["k"]
        if metrics.get("k_sweep")
        else None,
        # the out-of-sample forecast (`forecast`): made before the timed passes, on training prompts
        "forecast_speedup": (metrics.get("forecast") or {}).get("speedup"),
        "forecast_ratio": (metrics.get("forecast") or {}).get("ratio"),
        "k_choice_share": ((metrics.get("forecast") or {}).get("k_choice") or {}).get("share_of_best"),
        "k_choice_within_range": ((metrics.get("forecast") or {}).get("k_choice") or {}).get(
            "best_within_chosen_range"
        ),
        # vLLM's resolved scheduler per pass (None where it does not say): with `auto` they may differ
        "async_baseline": b.get("async_scheduling"),
        "async_speculative": s.get("async_scheduling"),
    } | eagle3_headline(metrics)


def lone_replay_columns(replay: dict | None) -> dict:
    """The speculative pass's lone-request replay (`lone_replay`) in the headline's terms: its
    time per token in the timed call over its time alone, and its tokens per step alone."""
    r = replay or {}
    return {
        "lone_replay_slowdown": r["tpot_in_call_s"] / r["tpot_alone_s"]
        if r.get("tpot_in_call_s") and r.get("tpot_alone_s")
        else None,
        "lone_replay_tokens_per_step": r.get("tokens_per_step_alone"),
    }


def pass_table(metrics: dict):
    import pandas as pd

    rows = []
    for name, m in metrics["passes"].items():
        spec = m["spec"] or {}
        rows.append(
            {
                "pass": name,
                "n": m["n"],
                "accuracy": m["accuracy"],
                "accuracy_ci95": tuple(round(x, 3) for x in m["accuracy_ci95"]),
                "throughput_tok_s": m["throughput_tok_s"],
                "wall_s": m["wall_s"],
                "tokens_mean": m["output_tokens_mean"],
                "ttft_mean_s": m["ttft_s"]["mean"],
                "tpot_mean_s": m["tpot_s"]["mean"],
                "acceptance_rate": spec.get("acceptance_rate"),
                "mean_acceptance_length": spec.get("mean_acceptance_length"),
                "peak_memory_mb": m["peak_memory_mb"],
                "peak_gpu_memory_mb": m.get("peak_gpu_memory_mb"),
                "enable_thinking": metrics.get("enable_thinking"),
                "async_scheduling": m.get("async_scheduling"),  # vLLM's resolved scheduler: `auto` may differ per pass
            }
        )
    return pd.DataFrame(rows).set_index("pass")


def comparison_table(metrics: dict):
    """The comparison's single numbers (repetitions and the cost model have their own tables)."""
    import pandas as pd

    flat = {k: v for k, v in metrics["comparison"].items() if not isinstance(v, (dict, list)) or k.endswith("_ci95")}
    return pd.Series(flat, name=metrics["run"], dtype=object).to_frame()


def cost_table(metrics: dict):
    """One row per repetition (its pass order, measured and predicted speed-up, step cost r),
    warm-ups first (not counted), then the median the run reports, with the engine's ceiling
    and the GPU-busy floor."""
    import pandas as pd

    c = metrics["comparison"]
    model = c.get("cost_model") or {}
    runs = [(f"warm-up {i + 1}", r) for i, r in enumerate(c.get("warmup_repetitions") or [])]
    runs += [(str(i + 1), r) for i, r in enumerate(c.get("repetitions") or [])]
    rows = [
        {
            "repetition": label,
            "order": " → ".join(r["order"]),
            "measured": r["speedup_throughput"],
            "predicted": r["predicted_speedup"],
            "equal slots": r.get("predicted_speedup_busy"),
            "decode only": r.get("predicted_speedup_decode"),
            "r": r["r"],
            **_tail_columns(r),
        }
        for label, r in runs
    ]
    rows.append(
        {
            "repetition": "median",
            "order": "",
            "measured": c["speedup_throughput"],
            "predicted": c["predicted_speedup"],
            "equal slots": c.get("predicted_speedup_busy"),
            "decode only": c.get("predicted_speedup_decode"),
            "r": c.get("step_cost_r"),
            **_tail_columns(c),
            "ceiling": c.get("ceiling_speedup"),
            "GPU floor": c.get("floor_speedup"),
            "tokens per step": model.get("tokens_per_step"),
        }
    )
    return pd.DataFrame(rows).set_index("repetition")


def _tail_columns(r: dict) -> dict:
    """A repetition's (or the median's) lone-tail share of the speculative pass and the speed-up without it."""
    return {
        "lone tail (speculative)": (r.get("lone_tail_share") or {}).get("speculative"),
        "its time per token / median": r.get("lone_tail_tpot_ratio"),
        "measured without it": r.get("speedup_without_lone_tail"),
    }


def floor_note(metrics: dict) -> str:
    """One line on the GPU-busy floor: both passes' kernel time per step (one prompt each),
    their ratio beside the measured r, and the share of a target step the GPU was busy; or why
    there is none (no CUDA, turned off, the profiler failed)."""
    gpus = {name: metrics["passes"][name].get("gpu_busy") for name in PASSES}
    failed = [f"{name}: {g['error']}" for name, g in gpus.items() if g and "error" in g]
    if failed:
        return f"GPU-busy floor: not measured, the profiler failed ({'; '.join(failed)})"
    if not all(_busy(g) for g in gpus.values()):
        return "GPU-busy floor: none (CPU run, or benchmark.gpu_floor_tokens = 0)"
    spec, base, c = gpus["speculative"], gpus["baseline"], metrics["comparison"]
    r_floor = (c.get("cost_model") or {}).get("r_floor")  # cost_model's, the one definition of it
    share = (metrics.get("batch1") or {}).get("gpu_busy_share")
    return (
        f"GPU-busy floor ({spec['source']}, one prompt each): a speculative step's kernels took "
        f"{spec['busy_step_s'] * 1e3:.2f} ms, a target step's {base['busy_step_s'] * 1e3:.2f} ms: r could be "
        f"{r_floor or float('nan'):.2f} against {c.get('step_cost_r') or float('nan'):.2f} measured"
        + (f"; the GPU was busy for {share:.0%} of a target step at batch 1" if share is not None else "")
    )


def forecast_note(metrics: dict) -> str:
    """One line on the forecast made before the timed passes, and how the measurement compared."""
    fc = metrics.get("forecast") or {}
    if not fc.get("speedup"):
        return f"Forecast: none ({fc.get('why_none') or 'recorded before forecasts'})"
    line = (
        f"Forecast before the timed passes ({fc['n_calibration']} training prompts on the first repetition's "
        f"engines, placed for {fc['n']} prompts): {fc['speedup']:.2f}x (r {fc['r']:.2f}, "
        f"{fc['tokens_per_step']:.2f} tokens a step"
        + ("; a step priced by the requests sharing it" if fc.get("step_model") == "occupancy" else "")
        + (
            f"; the calibration call itself measured {fc['calibration_speedup']:.2f}x where the model "
            f"placed its requests at {fc['calibration_model_speedup']:.2f}x"
            if fc.get("calibration_model_speedup")
            else ""
        )
        + f"); measured {fc['measured_speedup']:.2f}x, {fc['ratio']:.2f} of it"
    )
    choice = fc.get("k_choice")
    if choice:
        line += (
            f"; k auto chose K = {choice['chosen']}, measured {choice['chosen_speedup']:.2f}x, "
            f"{choice['share_of_best']:.0%} of the best measured K = {choice['best_measured']} "
            f"({choice['best_speedup']:.2f}x, rank {choice['rank']} of {choice['of']}, one pass each)"
        )
        own = choice.get("chosen_repetitions") or []
        if len(own) > 1 and choice["best_measured"] != choice["chosen"]:
            line += f"; the chosen K's own repetitions measured {min(own):.2f}x–{max(own):.2f}x" + (
                ", a range that holds the best K's pass" if choice.get("best_within_chosen_range") else ""
            )
    return line


def lone_note(metrics: dict) -> str:
    """One line per pass on its last request to finish (`lone_replay`): its time per token in
    the timed call against the same prompt answered once more alone on the same engine."""
    lines = []
    for name in PASSES:
        r = metrics["passes"][name].get("lone_replay")
        if not (r and r.get("tpot_in_call_s") and r.get("tpot_alone_s")):
            continue
        per_step = "".join(
            f"; {label} {r[key]:.1f} tokens per step"
            for key, label in (("tokens_per_step_in_call", "in the call"), ("tokens_per_step_alone", "alone"))
            if r.get(key)
        )
        lines.append(
            f"{name}: last request (prompt {r['index']}, {r['output_tokens']} tokens) took "
            f"{r['tpot_in_call_s'] * 1e3:.2f} ms per token in the call, {r['tpot_alone_s'] * 1e3:.2f} ms alone on the "
            f"same engine ({lone_replay_columns(r)['lone_replay_slowdown']:.1f}x){per_step}"
        )
    return "\n".join(lines) or "Lone last request: not replayed (recorded before it, or fewer than two requests)"


def speed_frame(metrics: dict):
    """The run as one row of the analysis's run frame: what `plots.predicted_vs_measured` draws."""
    import pandas as pd

    h = headline(metrics)
    return pd.DataFrame(
        [
            {
                "style": metrics["style"],
                "scenario": metrics["scenario"],
                "speedup": h["speedup"],
                "predicted_speedup": h["predicted_speedup"],
                "speedup_lo": h["speedup_lo"],
                "speedup_hi": h["speedup_hi"],
                "ceiling_speedup": h["ceiling_speedup"],
                "floor_speedup": h["floor_speedup"],
            }
        ]
    )


def calibration_table(metrics: dict):
    """`k: auto`: the predicted speed-up of each K candidate (empty when K was given)."""
    import pandas as pd

    cal = metrics.get("calibration") or {}
    pred = cal.get("predicted_speedup") or {}
    return pd.DataFrame(
        [{"k": int(k), "predicted": v, "chosen": int(k) == cal["k"]} for k, v in pred.items()],
        columns=["k", "predicted", "chosen"],
    )


def position_frame(metrics: dict):
    import pandas as pd

    spec = metrics["passes"]["speculative"]["spec"] or {}
    return pd.DataFrame(
        [{"position": i, "acceptance": a} for i, a in enumerate(spec.get("acceptance_by_pos") or [], 1)],
        columns=["position", "acceptance"],
    )


def crosscheck_table(metrics: dict):
    """On the cross-check subset: vLLM's counts, transformers' own, and transformers' counted
    as vLLM counts (first step left out, agreed EOS accepted). Empty if it did not run."""
    import pandas as pd

    cross = metrics.get("crosscheck") or {}
    cols = [
        "n",
        "drafts",
        "draft_tokens",
        "accepted_tokens",
        "acceptance_rate",
        "mean_acceptance_length",
        "held_back_steps",
    ]
    sides = {
        "vllm": cross.get("vllm"),
        "transformers": cross.get("transformers"),
        "transformers (vllm-comparable)": (cross.get("transformers") or {}).get("vllm_comparable"),
    }
    rows = [
        {"engine": name, "n": cross["n"], **{c: side.get(c) for c in cols[1:]}} for name, side in sides.items() if side
    ]
    return pd.DataFrame(rows, columns=["engine"] + cols).set_index("engine")


def crosscheck_position_frame(metrics: dict):
    """Acceptance by draft position, one row per (engine, position); transformers' counted as
    vLLM counts."""
    import pandas as pd

    cross = metrics.get("crosscheck") or {}
    sides = {"vllm": cross.get("vllm"), "transformers": ((cross.get("transformers") or {}).get("vllm_comparable"))}
    rows = [
        {"engine": eng, "position": i, "acceptance": a}
        for eng, side in sides.items()
        for i, a in enumerate((side or {}).get("acceptance_by_pos") or [], 1)
    ]
    return pd.DataFrame(rows, columns=["engine", "position", "acceptance"])


K_SWEEP_COLUMNS = [
    "k",
    "acceptance_rate",
    "mean_acceptance_length",
    "throughput_tok_s",
    "speedup_throughput",
    "r",
    "predicted_speedup",
    "ceiling_speedup",
    "accuracy",
    "identical_output_share",
    "reused_main_pass",
]


def k_sweep_frame(metrics: dict):
    """One row per K of the sweep (empty when there was none)."""
    import pandas as pd

    return pd.DataFrame(
        [{c: e.get(c) for c in K_SWEEP_COLUMNS} for e in metrics.get("k_sweep") or []], columns=K_SWEEP_COLUMNS
    )


def k_sweep_long(metrics: dict):
    """The sweep in long form for one line plot: columns k, measure (acceptance rate,
    speed-up), value."""
    frame = k_sweep_frame(metrics)
    long = frame.melt(id_vars="k", value_vars=["acceptance_rate", "speedup_throughput"], var_name="measure")
    return long.replace(
        {"measure": {"acceptance_rate": "acceptance rate", "speedup_throughput": "speed-up (throughput)"}}
    )


def sample_preview(rp: RunPaths, n: int = 6):
    import pandas as pd

    frame = pd.read_csv(rp.samples_csv)
    cols = ["pass", "question", "ground_truth", "output", "pred", "extraction", "correct", "output_tokens", "latency_s"]
    return frame[cols].head(n)
