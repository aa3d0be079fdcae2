"""Stage 6: the target alone (baseline) against target + draft (speculative) on the
held-out split, both through vLLM with the same prompts and sampling."""

from __future__ import annotations

import platform
import resource
import time

import numpy as np

from . import answers, engine, io, models, stats
from .paths import RunPaths

PASSES = ("baseline", "speculative")


def pair_for_run(cfg, rp: RunPaths) -> dict:
    """Target and draft checkpoints: merged fine-tuned ones, or the untrained pair for `base`."""
    if cfg["style"] == "base":
        return {role: models.base_model(cfg, rp, role) for role in models.ROLES}
    return {role: str(rp.merged(role)) for role in models.ROLES}


def test_problems(cfg, rp: RunPaths) -> list[dict]:
    rows = io.read_jsonl(rp.test_problems).rows
    n = cfg["benchmark"]["n_samples"]
    return rows[:n] if n else rows


def _peak_memory_mb(cuda: bool) -> float:
    if cuda:
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_pass(cfg, name: str, model: str, prompts: list[str], problems: list[dict], draft: str | None = None) -> tuple[list[dict], dict]:
    """One pass: fresh engine, all prompts in one generate call, per-request timings."""
    spec = engine.speculative_config(cfg, draft) if name != "baseline" else None
    with engine.running(cfg, model, speculative=spec) as eng:
        before = engine.spec_counters(eng)
        t0 = time.perf_counter()
        outputs = eng.llm.generate(prompts, engine.sampling(cfg, cfg["benchmark"]["max_tokens"]), use_tqdm=True)
        wall = time.perf_counter() - t0
        counters = engine.counter_delta(engine.spec_counters(eng), before)
    samples = []
    for problem, out in zip(problems, outputs):
        text = out.outputs[0].text
        graded = answers.grade(text, problem["answer"])
        samples.append({
            "pass": name, "id": problem["id"], "question": problem["question"], "ground_truth": problem["answer"],
            "output": text, "pred": graded["pred"], "extraction": graded["method"], "correct": graded["correct"],
            "finish_reason": out.outputs[0].finish_reason, **engine.request_timing(out),
        })
    return samples, {"wall_s": wall, "counters": counters, "peak_memory_mb": _peak_memory_mb(engine.on_cuda(cfg))}


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
        "extraction": extraction,
        "extraction_warning": (
            "most answers were found only by the last-number fallback (no credit given)"
            if extraction["last_number"] + extraction["none"] > len(samples) / 2 else None
        ),
        "spec": None,
    }
    if c["drafts"]:
        out["spec"] = {
            "k": k,
            "drafts": c["drafts"],
            "draft_tokens": c["draft_tokens"],
            "accepted_tokens": c["accepted_tokens"],
            "acceptance_rate": c["accepted_tokens"] / c["draft_tokens"],
            "mean_acceptance_length": 1 + c["accepted_tokens"] / c["drafts"],
            "accepted_per_pos": c["accepted_per_pos"],
            "acceptance_by_pos": [a / c["drafts"] for a in c["accepted_per_pos"]],
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
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:
        pass
    import os

    info["cpus"] = os.cpu_count()
    return info


def run(cfg, rp: RunPaths) -> dict:
    """Both passes (and the draft alone, to measure the draft/target cost ratio c)."""
    import pandas as pd

    pair = pair_for_run(cfg, rp)
    tok_t, tok_d = models.load_tokenizer(pair["target"]), models.load_tokenizer(pair["draft"])
    models.assert_same_tokenizer(tok_t, tok_d)
    problems = test_problems(cfg, rp)
    prompts = [models.prompt_text(tok_t, cfg["style"], p["question"]) for p in problems]
    k, n_boot, seed = cfg["benchmark"]["k"], cfg["benchmark"]["bootstrap"], cfg["seed"]
    base_samples, base_info = run_pass(cfg, "baseline", pair["target"], prompts, problems)
    spec_samples, spec_info = run_pass(cfg, "speculative", pair["target"], prompts, problems, draft=pair["draft"])
    m_base = summarize_pass(base_samples, base_info, k, n_boot, seed)
    m_spec = summarize_pass(spec_samples, spec_info, k, n_boot, seed)
    draft_cost = None
    if cfg["benchmark"]["method"] == "draft_model":
        draft_samples, draft_info = run_pass(cfg, "draft_alone", pair["draft"], prompts, problems)
        m_draft = summarize_pass(draft_samples, draft_info, k, n_boot, seed)
        # c: time of one draft token over one target token, each model decoding alone.
        draft_cost = m_base["throughput_tok_s"] / m_draft["throughput_tok_s"]
    metrics = {
        "run": rp.name, "profile": cfg["profile"], "style": cfg["style"], "scenario": cfg["scenario"],
        "models": pair, "method": cfg["benchmark"]["method"], "k": k, "temperature": cfg["benchmark"]["temperature"],
        "passes": {"baseline": m_base, "speculative": m_spec},
        "comparison": compare(base_samples, spec_samples, m_base, m_spec, draft_cost, k, n_boot, seed),
        "versions": engine.versions(), "hardware": hardware(), "seed": seed, "params": dict(cfg),
    }
    frame = pd.DataFrame(base_samples + spec_samples)
    frame.insert(0, "run", rp.name)
    rp.run_dir.mkdir(parents=True, exist_ok=True)
    io.write_text(rp.samples_csv, frame.to_csv(index=False))
    io.write_json(rp.metrics_json, metrics)
    return metrics


def headline(metrics: dict) -> dict:
    """The few numbers the index page and the analysis show per run."""
    b, s, c = metrics["passes"]["baseline"], metrics["passes"]["speculative"], metrics["comparison"]
    return {
        "accuracy_baseline": b["accuracy"],
        "accuracy_speculative": s["accuracy"],
        "acceptance_rate": (s["spec"] or {}).get("acceptance_rate"),
        "mean_acceptance_length": (s["spec"] or {}).get("mean_acceptance_length"),
        "speedup": c["speedup_throughput"],
        "predicted_speedup": c["predicted_speedup"],
        "tokens_per_answer": b["output_tokens_mean"],
        "identical_output_share": c["identical_output_share"],
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
            "peak_memory_mb": m["peak_memory_mb"],
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


def sample_preview(rp: RunPaths, n: int = 6):
    import pandas as pd

    frame = pd.read_csv(rp.samples_csv)
    cols = ["pass", "question", "ground_truth", "output", "pred", "extraction", "correct", "output_tokens", "latency_s"]
    return frame[cols].head(n)
