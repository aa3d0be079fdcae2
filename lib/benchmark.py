"""Stage 6: the target alone (baseline) against target + draft (speculative) on the
held-out split, both through vLLM with the same prompts and sampling.

Also, from params: the speculative method (`benchmark.method`: a draft model, prompt lookup
`ngram`, or an `eagle3` head), a K sweep (`benchmark.k_sweep`: one more speculative pass per
K), and an independent cross-check of vLLM's acceptance counts by transformers' assisted
generation on a subset of prompts (`benchmark.crosscheck_samples`, see `lib/crosscheck.py`).
"""

from __future__ import annotations

import platform
import time

import numpy as np

from . import answers, crosscheck, device, engine, io, models, stats
from .paths import RunPaths

PASSES = ("baseline", "speculative")
WARMUP_PROMPT, WARMUP_TOKENS = "Warm-up.", 8  # one untimed request per engine before the timed call


def pair_for_run(cfg, rp: RunPaths) -> dict:
    """Target and draft checkpoints: merged fine-tuned ones, or the untrained pair for `base`."""
    if cfg["style"] == "base":
        return {role: models.base_model(cfg, rp, role) for role in models.ROLES}
    return {role: str(rp.merged(role)) for role in models.ROLES}


def test_problems(cfg, rp: RunPaths) -> list[dict]:
    rows = io.read_jsonl(rp.test_problems).rows
    n = cfg["benchmark"]["n_samples"]
    return rows[:n] if n else rows


def check(cfg) -> None:
    """Refuse a benchmark whose params cannot work, before any engine starts."""
    engine.check_method(cfg)
    sweep = cfg["benchmark"]["k_sweep"]
    if not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in sweep):
        raise ValueError(f"benchmark.k_sweep must be a list of integers >= 1, got {sweep!r}")


def run_pass(cfg, name: str, model: str, prompts: list[str], problems: list[dict], spec: dict | None = None,
             recount: int = 0) -> tuple[list[dict], dict]:
    """One pass: fresh engine (speculative when `spec` is a vLLM speculative_config), one
    untimed warm-up request, then all prompts in one timed generate call; per-request timings
    and, where vLLM gives them, per-request acceptance counts.

    `recount`: the first `recount` prompts' acceptance is also wanted on its own (the
    cross-check subset). From per-request counts when the engine has them; else those prompts
    are generated once more on the same engine after the timed call, counters read around it
    (`info["subset_counters"]`, `info["subset_source"]`)."""
    # Device-level, sampled through the pass: the engine core may run in another process.
    with device.GpuMemoryPeak() as gpu, engine.running(cfg, model, speculative=spec) as eng:
        # Untimed warm-up: a fresh engine's first call pays one-time costs that would
        # otherwise land on the timed call (a large share of a small pass).
        # An unrelated prompt, so that no benchmark prompt finds its prefix already cached.
        eng.llm.generate([WARMUP_PROMPT], engine.sampling(cfg, WARMUP_TOKENS), use_tqdm=False)
        before = engine.spec_counters(eng)
        t0 = time.perf_counter()
        outputs = eng.llm.generate(prompts, engine.sampling(cfg, cfg["benchmark"]["max_tokens"]), use_tqdm=True)
        wall = time.perf_counter() - t0
        counters = engine.counter_delta(engine.spec_counters(eng), before)
        per_request = [engine.request_spec(out) for out in outputs]
        subset, source = None, None
        if spec and recount:
            if all(r is not None for r in per_request[:recount]):
                subset, source = engine.add_counters(per_request[:recount]), "per_request"
            else:  # an older vLLM: no per-request counts
                mark = engine.spec_counters(eng)
                eng.llm.generate(prompts[:recount], engine.sampling(cfg, cfg["benchmark"]["max_tokens"]), use_tqdm=False)
                subset, source = engine.counter_delta(engine.spec_counters(eng), mark), "rerun"
        batch1 = _batch1(cfg, eng, prompts[: cfg["benchmark"]["batch1_samples"]])
    samples = []
    for problem, out, req in zip(problems, outputs, per_request):
        text = out.outputs[0].text
        graded = answers.grade(text, problem["answer"])
        samples.append({
            "pass": name, "id": problem["id"], "question": problem["question"], "ground_truth": problem["answer"],
            "output": text, "pred": graded["pred"], "extraction": graded["method"], "correct": graded["correct"],
            "finish_reason": out.outputs[0].finish_reason, **engine.request_timing(out),
            "spec_drafts": req["drafts"] if req else None,
            "spec_draft_tokens": req["draft_tokens"] if req else None,
            "spec_accepted_tokens": req["accepted_tokens"] if req else None,
        })
    info = {"wall_s": wall, "counters": counters, "peak_memory_mb": device.process_peak_mb(False),
            "peak_gpu_memory_mb": gpu.peak_mb,
            "speculative_config": spec, "subset_counters": subset, "subset_source": source, "batch1": batch1}
    return samples, info


def _batch1(cfg, eng, prompts: list[str]) -> dict | None:
    """The same engine at batch size 1: prompts sent one at a time (the latency regime, where
    speculative decoding pays most); counters read around the whole sequence."""
    if not prompts:
        return None
    params = engine.sampling(cfg, cfg["benchmark"]["max_tokens"])
    before, tokens, latencies = engine.spec_counters(eng), 0, []
    t0 = time.perf_counter()
    for prompt in prompts:
        t = time.perf_counter()
        out = eng.llm.generate([prompt], params, use_tqdm=False)[0]
        latencies.append(time.perf_counter() - t)
        tokens += len(out.outputs[0].token_ids)
    wall = time.perf_counter() - t0
    return {"n": len(prompts), "wall_s": wall, "output_tokens": tokens, "throughput_tok_s": tokens / wall,
            "latency_s_mean": sum(latencies) / len(latencies),
            "counters": engine.counter_delta(engine.spec_counters(eng), before)}


def batch1_summary(base_info: dict, spec_info: dict, draft_info: dict | None, k: int) -> dict | None:
    """Speed-up, acceptance and predicted speed-up at batch size 1 (None when not measured)."""
    b, s = base_info.get("batch1"), spec_info.get("batch1")
    if not (b and s):
        return None
    d = (draft_info or {}).get("batch1")
    c = b["throughput_tok_s"] / d["throughput_tok_s"] if d else None
    acc = spec_summary(s["counters"], k)
    out = {"n": b["n"], "baseline_tok_s": b["throughput_tok_s"], "speculative_tok_s": s["throughput_tok_s"],
           "speedup": s["throughput_tok_s"] / b["throughput_tok_s"],
           "latency_speedup": b["latency_s_mean"] / s["latency_s_mean"], "spec": acc, "draft_cost_ratio": c,
           "predicted_speedup": None}
    if acc and c is not None:
        out["predicted_speedup"] = stats.predicted_speedup(acc["acceptance_rate"], k, c)
    return out


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
        "mean_acceptance_length": 1 + c["accepted_tokens"] / c["drafts"],
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
            if extraction["last_number"] + extraction["none"] > len(samples) / 2 else None
        ),
        "spec": spec_summary(c, k),
    }
    return out


def _dist(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {"mean": None, "p50": None, "p90": None}
    return {"mean": float(values.mean()), "p50": float(np.quantile(values, 0.5)), "p90": float(np.quantile(values, 0.9))}


def compare(base: list[dict], spec: list[dict], m_base: dict, m_spec: dict, draft_cost: float | None, k: int, n_boot: int, seed: int) -> dict:
    """Speed-up, accuracy and token deltas, and the speed-up predicted from acceptance."""
    lat_b = [s["latency_s"] or 0.0 for s in base]
    lat_s = [s["latency_s"] or 0.0 for s in spec]
    identical = float(np.mean([b["output"] == s["output"] for b, s in zip(base, spec)])) if base else float("nan")
    out = {
        "speedup_throughput": m_spec["throughput_tok_s"] / m_base["throughput_tok_s"],
        # per-request latency ratio, resampled over prompts (paired): sum(base)/sum(spec)
        "speedup_latency": float(np.sum(lat_b) / np.sum(lat_s)) if np.sum(lat_s) else None,
        "speedup_latency_ci95": stats.paired_ratio_ci(lat_b, lat_s, n=n_boot, seed=seed),
        "accuracy_delta": m_spec["accuracy"] - m_base["accuracy"],
        "tokens_mean_delta": m_spec["output_tokens_mean"] - m_base["output_tokens_mean"],
        "identical_output_share": identical,
        "identical_output_warning": (
            "speculative outputs differ from baseline at temperature 0 for more than 5% of prompts"
            if identical < 0.95 else None
        ),
        "draft_cost_ratio": draft_cost,
        "predicted_speedup": None,
        "measured_over_predicted": None,
    }
    if m_spec["spec"] and draft_cost is not None:
        pred = stats.predicted_speedup(m_spec["spec"]["acceptance_rate"], k, draft_cost)
        out["predicted_speedup"] = pred
        out["measured_over_predicted"] = out["speedup_throughput"] / pred
    return out


def hardware() -> dict:
    info = {"machine": platform.machine(), "processor": platform.processor(), "python": platform.python_version()}
    names = device.gpu_names()  # NVML: naming the GPU through torch would initialise CUDA
    if names:
        info["gpu"] = names[0]
    import os

    info["cpus"] = os.cpu_count()
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


def crosscheck_pass(cfg, pair: dict, prompts: list[str], problems: list[dict], spec_samples: list[dict],
                    spec_info: dict) -> dict | None:
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
        pair["target"], pair["draft"] if method == "draft_model" else None, prompts[:n], k, bench["max_tokens"],
        device="cuda" if device.on_cuda(cfg) else "cpu", dtype=cfg["models"]["dtype"],
    )
    per_prompt = tf.pop("per_prompt")
    vllm_side = spec_summary(spec_info["subset_counters"], k) if spec_info["subset_counters"] else None
    if vllm_side is not None:
        vllm_side["source"] = spec_info["subset_source"]
    same = [pp["text"] == s["output"] for pp, s in zip(per_prompt, spec_samples[:n])]
    for pp, s, eq in zip(per_prompt, spec_samples[:n], same):
        pp.update(id=s["id"], identical_to_vllm=eq, vllm_draft_tokens=s["spec_draft_tokens"],
                  vllm_accepted_tokens=s["spec_accepted_tokens"])
        pp.pop("text")
    notes = [CROSSCHECK_NOTE]
    if method == "ngram":
        notes.append("method ngram: transformers' prompt lookup tries n-grams of "
                     f"{crosscheck.NGRAM_MAX} tokens down to 1, vLLM's down to {engine.NGRAM_LOOKUP['prompt_lookup_min']}; "
                     "the proposals differ, so compare loosely.")
    if bench["temperature"] != 0:
        notes.append(f"the vLLM pass sampled at temperature {bench['temperature']}; the cross-check is greedy: "
                     "the acceptance rates are not comparable.")
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


def k_sweep(cfg, pair: dict, prompts: list[str], problems: list[dict], base_samples: list[dict], m_base: dict,
            main: tuple[list[dict], dict], draft_cost: float | None) -> tuple[list[dict], list[dict]]:
    """One speculative pass per K of `benchmark.k_sweep` (each a fresh engine; the main pass's
    K is reused, not re-run): acceptance, mean acceptance length, throughput and speed-up over
    the baseline pass. Returns the entries and the passes' samples (pass `speculative_k<K>`)."""
    bench = cfg["benchmark"]
    n_boot, seed = bench["bootstrap"], cfg["seed"]
    entries, all_samples = [], []
    for k in dict.fromkeys(bench["k_sweep"]):  # in order, without repeats
        reused = k == bench["k"]
        if reused:
            samples, m = main
        else:
            spec = engine.speculative_config(cfg, pair["draft"], k=k)
            samples, info = run_pass(cfg, f"speculative_k{k}", pair["target"], prompts, problems, spec=spec)
            m = summarize_pass(samples, info, k, n_boot, seed)
            all_samples += samples
        sp = m["spec"] or {}
        speedup = m["throughput_tok_s"] / m_base["throughput_tok_s"]
        pred = stats.predicted_speedup(sp["acceptance_rate"], k, draft_cost) if sp and draft_cost is not None else None
        entries.append({
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
            "speedup_throughput": speedup,
            "predicted_speedup": pred,
            "accuracy": m["accuracy"],
            "output_tokens_mean": m["output_tokens_mean"],
            "identical_output_share": float(np.mean([b["output"] == s["output"] for b, s in zip(base_samples, samples)])),
        })
    return entries, all_samples


def run(cfg, rp: RunPaths) -> dict:
    """Both passes (and the draft alone, to measure the draft/target cost ratio c), then the K
    sweep and the transformers cross-check where params ask for them."""
    import pandas as pd

    check(cfg)
    method = cfg["benchmark"]["method"]
    pair = pair_for_run(cfg, rp)
    tok_t = models.load_tokenizer(pair["target"])
    if method == "draft_model":
        models.assert_same_tokenizer(tok_t, models.load_tokenizer(pair["draft"]))
    problems = test_problems(cfg, rp)
    thinking = models.enable_thinking(cfg)
    prompts = [models.prompt_text(tok_t, cfg["style"], p["question"], thinking) for p in problems]
    k, n_boot, seed = cfg["benchmark"]["k"], cfg["benchmark"]["bootstrap"], cfg["seed"]
    spec = engine.speculative_config(cfg, pair["draft"])
    n_check = cfg["benchmark"]["crosscheck_samples"] if method != "eagle3" else 0
    base_samples, base_info = run_pass(cfg, "baseline", pair["target"], prompts, problems)
    spec_samples, spec_info = run_pass(cfg, "speculative", pair["target"], prompts, problems, spec=spec, recount=n_check)
    m_base = summarize_pass(base_samples, base_info, k, n_boot, seed)
    m_spec = summarize_pass(spec_samples, spec_info, k, n_boot, seed)
    draft_cost, draft_info = None, None
    if method == "draft_model":
        draft_samples, draft_info = run_pass(cfg, "draft_alone", pair["draft"], prompts, problems)
        m_draft = summarize_pass(draft_samples, draft_info, k, n_boot, seed)
        # c: time of one draft token over one target token, each model decoding alone.
        draft_cost = m_base["throughput_tok_s"] / m_draft["throughput_tok_s"]
    sweep, sweep_samples = k_sweep(cfg, pair, prompts, problems, base_samples, m_base, (spec_samples, m_spec), draft_cost)
    check_result = crosscheck_pass(cfg, pair, prompts, problems, spec_samples, spec_info)
    metrics = {
        "run": rp.name, "profile": cfg["profile"], "style": cfg["style"], "scenario": cfg["scenario"],
        "models": pair, "method": method, "k": k, "temperature": cfg["benchmark"]["temperature"],
        "enable_thinking": thinking,
        "speculative_config": spec,
        "passes": {"baseline": m_base, "speculative": m_spec},
        "comparison": compare(base_samples, spec_samples, m_base, m_spec, draft_cost, k, n_boot, seed),
        "crosscheck": check_result,
        "k_sweep": sweep,
        "batch1": batch1_summary(base_info, spec_info, draft_info, k),
        "versions": engine.versions(), "hardware": hardware(), "seed": seed, "params": dict(cfg),
    }
    frame = pd.DataFrame(base_samples + spec_samples + sweep_samples)
    frame.insert(0, "run", rp.name)
    rp.run_dir.mkdir(parents=True, exist_ok=True)
    io.write_text(rp.samples_csv, frame.to_csv(index=False))
    io.write_json(rp.metrics_json, metrics)
    return metrics


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
        "tokens_per_answer": b["output_tokens_mean"],
        "enable_thinking": metrics.get("enable_thinking"),  # the chat template's, for this style
        "identical_output_share": c["identical_output_share"],
        # added: the cross-check subset, both engines (None when it did not run)
        "crosscheck_n": cross.get("n"),
        "crosscheck_acceptance_vllm": (cross.get("vllm") or {}).get("acceptance_rate"),
        "crosscheck_acceptance_transformers": ((cross.get("transformers") or {}).get("vllm_comparable") or {}).get("acceptance_rate"),
        "k_sweep_best_k": max(metrics["k_sweep"], key=lambda e: e["speedup_throughput"])["k"] if metrics.get("k_sweep") else None,
    }


def pass_table(metrics: dict):
    import pandas as pd

    rows = []
    for name, m in metrics["passes"].items():
        spec = m["spec"] or {}
        rows.append({
            "pass": name, "n": m["n"], "accuracy": m["accuracy"],
            "accuracy_ci95": tuple(round(x, 3) for x in m["accuracy_ci95"]),
            "throughput_tok_s": m["throughput_tok_s"], "wall_s": m["wall_s"],
            "tokens_mean": m["output_tokens_mean"], "ttft_mean_s": m["ttft_s"]["mean"], "tpot_mean_s": m["tpot_s"]["mean"],
            "acceptance_rate": spec.get("acceptance_rate"), "mean_acceptance_length": spec.get("mean_acceptance_length"),
            "peak_memory_mb": m["peak_memory_mb"], "peak_gpu_memory_mb": m.get("peak_gpu_memory_mb"),
            "enable_thinking": metrics.get("enable_thinking"),
        })
    return pd.DataFrame(rows).set_index("pass")


def comparison_table(metrics: dict):
    import pandas as pd

    return pd.Series(metrics["comparison"], name=metrics["run"]).to_frame()


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
    cols = ["n", "drafts", "draft_tokens", "accepted_tokens", "acceptance_rate", "mean_acceptance_length", "held_back_steps"]
    sides = {
        "vllm": cross.get("vllm"),
        "transformers": cross.get("transformers"),
        "transformers (vllm-comparable)": (cross.get("transformers") or {}).get("vllm_comparable"),
    }
    rows = [{"engine": name, "n": cross["n"], **{c: side.get(c) for c in cols[1:]}} for name, side in sides.items() if side]
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


K_SWEEP_COLUMNS = ["k", "acceptance_rate", "mean_acceptance_length", "throughput_tok_s", "speedup_throughput",
                   "predicted_speedup", "accuracy", "identical_output_share", "reused_main_pass"]


def k_sweep_frame(metrics: dict):
    """One row per K of the sweep (empty when there was none)."""
    import pandas as pd

    return pd.DataFrame([{c: e.get(c) for c in K_SWEEP_COLUMNS} for e in metrics.get("k_sweep") or []],
                        columns=K_SWEEP_COLUMNS)


def k_sweep_long(metrics: dict):
    """The sweep in long form for one line plot: columns k, measure (acceptance rate,
    speed-up), value."""
    frame = k_sweep_frame(metrics)
    long = frame.melt(id_vars="k", value_vars=["acceptance_rate", "speedup_throughput"], var_name="measure")
    return long.replace({"measure": {"acceptance_rate": "acceptance rate", "speedup_throughput": "speed-up (throughput)"}})


def sample_preview(rp: RunPaths, n: int = 6):
    import pandas as pd

    frame = pd.read_csv(rp.samples_csv)
    cols = ["pass", "question", "ground_truth", "output", "pred", "extraction", "correct", "output_tokens", "latency_s"]
    return frame[cols].head(n)
