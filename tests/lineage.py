"""A run's lineage made by hand: each stage's output files, small but of the shape the records
check (whole safetensors, parsing rows, a metrics object), and its record saved with the real
`record.save`. For tests of what is done and current that need no model trained."""

from __future__ import annotations

import numpy as np
from safetensors.numpy import save_file

from lib import fingerprints, io, params, paths, record
from lib.stages import stages_of


# a real benchmark's metrics (the H200's, committed), so that the analysis reads them as it would
METRICS = paths.REPO / "docs" / "results" / "gpu-solve-h200" / "2026-11-30T0240-h200x2" / "cot_hard" / "metrics.json"


def _weights(folder, name="model.safetensors", value=0.0):
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"w": np.full(4, value, dtype=np.float32)}, str(folder / name))


def _problems(n=3):
    return [
        {"id": f"easy-{i}", "question": f"q{i}?", "answer": str(i), "reference": f"{i}\n#### {i}"} for i in range(n)
    ]


def _split(rp) -> None:
    if not rp.train_problems.exists():
        io.write_jsonl(rp.train_problems, _problems())
        io.write_jsonl(rp.test_problems, _problems(2))


def make_outputs(rp, stage: str, cfg=None) -> None:
    """Plausible outputs of one stage (`rp` a RunPaths, or a profile name for 00)."""
    if stage == "00_base_models":
        base = paths.data_root(rp) / "models" / "base"
        (base / "tokenizer").mkdir(parents=True, exist_ok=True)
        (base / "tokenizer" / "tokenizer.json").write_text("{}")
        for role in ("target", "draft"):
            _weights(base / role)
        io.write_json(base / "summary.json", {"made_with": "by hand"})
        for scenario in params.scenarios():  # the base pair's corpus: every scenario's split, written once
            _split(paths.RunPaths(rp, "base", scenario))
        return
    if stage == "01_generate_data":
        _split(rp)
        if rp.style != "base":
            io.write_jsonl(
                rp.teacher_output,
                [
                    fingerprints.sealed(
                        {"id": p["id"], "question": p["question"], "solution": p["reference"], "answer": p["answer"]}
                    )
                    for p in _problems()
                ],
            )
    elif stage in ("02_train_target", "04_train_draft"):
        role = "target" if stage == "02_train_target" else "draft"
        _weights(rp.adapter(role), "adapter_model.safetensors")
        io.write_json(rp.train_summary(role), {"train_loss": 1.0})
    elif stage == "03_distill":
        io.write_jsonl(
            rp.distilled, [fingerprints.sealed({"id": p["id"], "solution": "x", "correct": True}) for p in _problems()]
        )
    elif stage == "05_merge":
        for role in ("target", "draft"):
            _weights(rp.merged(role))
            io.write_json(rp.merged(role) / "config.json", {"model_type": "qwen3"})
    elif stage == "06_benchmark":
        rp.samples_csv.parent.mkdir(parents=True, exist_ok=True)
        rp.samples_csv.write_text("id,pass\n1,baseline\n")
        deleted = bool(cfg is not None and cfg["merge"]["delete_after_benchmark"])  # as benchmark.run says it
        io.write_json(rp.metrics_json, {**io.read_json(METRICS), "merged_deleted": deleted})


def stage_done(rp, stage: str, cfg, **figures) -> dict:
    """Make a stage's outputs and save its record, as its notebook's last cell does."""
    make_outputs(rp, stage, cfg)
    if stage == "03_distill":
        figures.setdefault("n_rows", 3)
    return record.save(rp, stage, figures, cfg)


def profile_cfg(profile: str = "tiny", overrides=None):
    return params.resolve(profile, "base", params.scenarios()[0], overrides)


def chain(rp, cfg, upto: str | None = None, profile_overrides=None) -> None:
    """The base models and every stage of `rp`'s run up to `upto` (all by default), in order."""
    stage_done(rp.profile, "00_base_models", profile_cfg(rp.profile, profile_overrides))
    for stage in stages_of(rp.style):
        if upto is not None and stage > upto:
            break
        stage_done(rp, stage, cfg)


def fake_execute(calls: list | None = None, seconds: float = 0.1):
    """A stand-in for `runner.execute`: each stage makes its outputs and records, as its
    notebook would, in no time (`calls` collects the stages run)."""
    from lib import runner

    def execute(stage, label, out_dir, parameters, hide_input, render=None):
        if calls is not None:
            calls.append(stage)
        given = parameters.get("overrides") or {}
        if stage == "00_base_models":
            stage_done(parameters["profile"], stage, profile_cfg(parameters["profile"], given))
        elif "style" in parameters:
            run = (parameters["profile"], parameters["style"], parameters["scenario"])
            replicate = parameters.get("replicate", 0)
            stage_done(paths.RunPaths(*run, replicate), stage, params.resolve(*run, given, replicate))
        return runner.Outcome(label, stage, "finished", seconds)

    return execute
