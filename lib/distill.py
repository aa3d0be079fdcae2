"""Stage 3: the fine-tuned target answers the training problems at temperature 0 through
vLLM: its LoRA adapter attached to the base (a GPU), or merged into it first (a CPU, see
`served_target`). Every answer is kept, right or wrong: the draft must imitate the target, not
the truth. Resumable and gated on accuracy.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from . import answers, device, engine, fingerprints, hub, io, merge, models, record
from .paths import RunPaths


class GateError(RuntimeError):
    pass


def distill(cfg, rp: RunPaths, progress: bool = True) -> dict:
    train = io.require_jsonl(rp.train_problems, required=("id", "question", "answer"))
    set_aside = _check_source(cfg, rp)
    # Resume: drop half-written lines and rows repeating an id (two writers, a replayed batch).
    repaired = io.repair_jsonl(rp.distilled, required=("id", "solution"), key="id")
    edited = io.set_aside_rows(rp.distilled, fingerprints.intact, "edited")  # answers changed by hand
    set_aside += [edited] if edited else []
    done = {r["id"] for r in io.read_jsonl(rp.distilled).rows} if rp.distilled.exists() else set()
    todo = [p for p in train if p["id"] not in done]
    t0, n_tokens = time.perf_counter(), 0
    with served_target(cfg, rp, bool(todo)) as (model, adapter, served):
        batches = (
            engine.answer_problems(
                cfg,
                model,
                todo,
                cfg["style"],
                cfg["distill"]["max_tokens"],
                cfg["distill"]["batch_size"],
                "distill",
                progress,
                adapter=adapter,
            )
            if todo
            else []
        )
        for batch, outputs in batches:
            rows = []
            for problem, out in zip(batch, outputs):
                text = out.outputs[0].text
                graded = answers.grade(text, problem["answer"])
                n_tokens += len(out.outputs[0].token_ids)
                rows.append(
                    fingerprints.sealed(
                        {
                            "id": problem["id"],
                            "question": problem["question"],
                            "solution": text,
                            "answer": problem["answer"],
                            "pred": graded["pred"],
                            "extraction": graded["method"],
                            "correct": graded["correct"],
                            "output_tokens": len(out.outputs[0].token_ids),
                            "finish_reason": out.outputs[0].finish_reason,
                        }
                    )
                )
            io.append_jsonl(rp.distilled, rows)  # a crash loses at most this batch
    rows = io.require_jsonl(rp.distilled, required=("id", "solution", "correct")) if rp.distilled.exists() else []
    missing = sorted({p["id"] for p in train} - {r["id"] for r in rows})
    if missing:
        raise RuntimeError(
            f"{rp.distilled}: {len(missing)} of {len(train)} training problems have no answer "
            f"(first: {missing[0]}); re-run the stage to fill them in"
        )
    accuracy = sum(r["correct"] for r in rows) / len(rows) if rows else 0.0
    return {
        "n_rows": len(rows),
        "n_generated": len(todo),
        "n_resumed": len(done),
        "n_repaired_lines": len(repaired),
        "repairs": [f"line {r['line']}: {r['reason']}" if r["line"] else r["reason"] for r in repaired[:20]],
        "set_aside": set_aside,
        "accuracy": accuracy,
        "wall_s": time.perf_counter() - t0,
        "tokens_per_s": n_tokens / (time.perf_counter() - t0) if todo else None,
        "served": served,
    }


def serve_merged(cfg) -> bool:
    """`distill.serve`: `merged` or `adapter`; `auto` merges on a CPU only. vLLM's CPU build
    applies a LoRA adapter through its torch fallback, which gathers the adapter's matrices for
    every token: 80 % of distillation's generation time with the tiny pair (a merged target:
    11.6 s instead of 34.4 s for the same 200 answers, all identical). On a GPU the LoRA kernels
    cost little and a merge of a large model costs minutes and its size on disk."""
    mode = cfg["distill"]["serve"]
    return mode == "merged" or (mode == "auto" and not device.on_cuda(cfg))


@contextmanager
def served_target(cfg, rp: RunPaths, needed: bool = True):
    """(model, adapter, description) the target is served as: the base with the adapter
    attached, or a merge of the two (`serve_merged`), checked as stage 5 checks its merges and
    written to a temporary folder that is removed afterwards (and, if a killed attempt left
    one, before). Nothing is merged when nothing is `needed` (every answer resumed)."""
    base, adapter = models.base_model(cfg, rp, "target"), rp.adapter("target")
    if not (needed and serve_merged(cfg)):
        yield base, adapter, {"as": "base + adapter (LoRA request)"}
        return
    prefix = f".distill-{rp.name}-"
    for stale in rp.root.glob(f"{prefix}*"):  # a killed attempt's merge (the run lock keeps out a live one)
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=prefix, dir=rp.root) as tmp:
        merged = Path(tmp) / "target"
        check = merge.merge_adapter(cfg, base, adapter, merged, merge.probe_texts(cfg, rp))
        yield str(merged), None, {"as": "base with the adapter merged in (checked)", **check}


def _check_source(cfg, rp: RunPaths) -> list[str]:
    """Resume only answers made under the current settings: the distillation's parameters (and
    every earlier stage's), the adapter's and the base model's bytes. After the target is
    retrained, or `distill.max_tokens` or an engine setting changes, earlier rows are set aside
    (renamed, not deleted) instead of being mixed in."""
    base = models.base_model(cfg, rp, "target")
    made_with = {
        "params": {
            k: v for k, v in record.stage_params(cfg, "03_distill").items() if not k.startswith("distill.gate")
        },  # the gate judges, it does not generate
        "adapter": fingerprints.of_path(rp.adapter("target")),
        # a Hub base by name and commit (`hub.revision`): rows of another commit are set aside
        "base": fingerprints.of_path(Path(base)) if Path(base).exists() else [base, hub.revision(cfg, base)],
    }
    return fingerprints.resume_guard(rp.distilled, made_with)


def check_gate(cfg, accuracy: float) -> dict:
    """The scenario's accuracy gate: stop the run (or warn, where the profile says so)."""
    gate, mode = cfg["distill"]["gate"], cfg["distill"]["gate_mode"]
    passed = accuracy >= gate
    message = (
        f"distilled target accuracy {accuracy:.3f} {'meets' if passed else 'is below'} the "
        f"{cfg['scenario']} gate {gate:.2f} (distill.gate_mode={mode})"
    )
    if not passed and mode == "stop":
        raise GateError(
            message + ": the target is not good enough to teach the draft; train it longer or lower distill.gate"
        )
    return {"gate": gate, "passed": passed, "mode": mode, "message": message}
