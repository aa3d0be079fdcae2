"""Training, merging, distilling and the engine on a small real model pair (CPU, offline)."""

import json

import pytest
import torch

from conftest import SMALL
from lib import distill, engine, io, merge, models, params, train
from lib.paths import RunPaths

pytestmark = pytest.mark.slow


def _cfg(**over):
    return params.resolve("tiny", "cod", "easy", {**SMALL, **over})


def _solution_rows(pair, style="cod", n=32):
    from lib.teachers import reference

    return [{"id": r["id"], "question": r["question"], "solution": reference.rewrite(r, style)} for r in pair["rows"][:n]]


def test_loss_mask_covers_exactly_the_assistant_tokens(tiny_pair):
    """A real collated batch from TRL: system and user tokens ignored, every assistant token trained."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer
    from transformers import AutoModelForCausalLM

    tok = models.load_tokenizer(tiny_pair["tokenizer"])
    rows = _solution_rows(tiny_pair, n=4)
    examples, _ = train.build_dataset(rows, "cod", tok, 512)
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_pair["target"]),
        args=SFTConfig(output_dir=str(tiny_pair["root"] / "mask"), max_length=512, completion_only_loss=True,
                       use_cpu=True, report_to="none", per_device_train_batch_size=4),
        train_dataset=Dataset.from_list(examples), processing_class=tok,
    )
    batch = next(iter(trainer.get_train_dataloader()))
    encoded = [
        (models.chat_ids(tok, ex["prompt"], add_generation_prompt=True), models.chat_ids(tok, ex["prompt"] + ex["completion"]))
        for ex in examples
    ]
    assert len(batch["input_ids"]) == len(examples)
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist()):
        # the loader shuffles: find this row's example by its tokens
        prompt, full = next((p, f) for p, f in encoded if ids[: len(f)] == f)
        assert len(prompt) < len(full)
        assert all(l == -100 for l in labels[: len(prompt)]), "a prompt token is trained"
        assert labels[len(prompt) : len(full)] == full[len(prompt) :], "an assistant token is ignored"
        assert all(l == -100 for l in labels[len(full) :]), "padding is trained"


def test_training_resumes_from_its_last_checkpoint(tiny_pair, tmp_path):
    cfg = _cfg(**{"train.save_steps": 2, "train.target": {"epochs": 1, "batch_size": 8}})
    rows = _solution_rows(tiny_pair, n=32)
    ckpt, adapter = tmp_path / "ckpt", tmp_path / "adapter"
    first = train.train_lora(cfg, "target", tiny_pair["target"], rows, adapter, ckpt, max_steps=2)
    assert first["resumed_from"] is None and first["steps"] == 2
    assert train.last_checkpoint(ckpt).endswith("checkpoint-2")
    second = train.train_lora(cfg, "target", tiny_pair["target"], rows, adapter, ckpt)
    assert second["resumed_from"].endswith("checkpoint-2")
    assert second["steps"] > 2
    assert (adapter / "adapter_model.safetensors").exists()
    # Another recipe never resumes these checkpoints (a finished one would silently not train).
    changed = _cfg(**{"train.save_steps": 2, "train.target": {"epochs": 1, "batch_size": 8, "lr": 0.001}})
    third = train.train_lora(changed, "target", tiny_pair["target"], rows, adapter, ckpt, max_steps=2)
    assert third["resumed_from"] is None and third["steps"] == 2


def test_gradient_checkpointing_trains_the_same_adapter(tiny_pair, tmp_path, monkeypatch):
    """Recomputing activations changes memory, not the result: the LoRA weights after two steps
    match a run that keeps them (a checkpointed PEFT model whose inputs need no grad would
    leave lora_B at its zero init instead)."""
    from safetensors.torch import load_file
    from transformers import PreTrainedModel

    enabled = []
    real = PreTrainedModel.gradient_checkpointing_enable
    monkeypatch.setattr(PreTrainedModel, "gradient_checkpointing_enable",
                        lambda self, *a, **k: (enabled.append(True), real(self, *a, **k))[1])
    rows = _solution_rows(tiny_pair, n=16)
    weights = {}
    for gc in (False, True):
        enabled.clear()
        cfg = _cfg(**{"train.gradient_checkpointing": gc, "train.target": {"epochs": 1, "batch_size": 8}})
        out = tmp_path / f"gc{gc}"
        summary = train.train_lora(cfg, "target", tiny_pair["target"], rows, out / "adapter", out / "ckpt", max_steps=2)
        assert summary["gradient_checkpointing"] is gc and summary["steps"] == 2
        assert bool(enabled) is gc, "checkpointing was not switched as asked"
        weights[gc] = load_file(out / "adapter" / "adapter_model.safetensors")
    lora_b = [k for k in weights[True] if "lora_B" in k]
    assert lora_b and all(weights[True][k].abs().max() > 0 for k in lora_b)
    for k, w in weights[True].items():
        torch.testing.assert_close(w, weights[False][k], rtol=1e-4, atol=1e-6)


def test_too_long_samples_are_dropped_not_truncated(tiny_pair):
    tok = models.load_tokenizer(tiny_pair["tokenizer"])
    rows = _solution_rows(tiny_pair, n=6)
    rows[0] = {**rows[0], "solution": rows[0]["solution"] + " -> x = 1" * 200}
    examples, info = train.build_dataset(rows, "cod", tok, 256)
    assert info["dropped_too_long"] == [rows[0]["id"]]
    assert len(examples) == 5 and max(info["lengths"]) > 256


@pytest.fixture(scope="module")
def trained(tiny_pair, tmp_path_factory):
    """A target and a draft adapter for one run, laid out as the stages lay them out."""
    home = tmp_path_factory.mktemp("home")
    rp = RunPaths("tiny", "cod", "easy")
    import os

    os.environ["WORKBOOK_HOME"] = str(home)
    cfg = _cfg()
    rows = _solution_rows(tiny_pair, n=40)
    problems = tiny_pair["rows"][:40]
    io.write_jsonl(rp.train_problems, problems[:30])
    io.write_jsonl(rp.test_problems, problems[30:])
    for role in models.ROLES:
        train.train_lora(cfg, role, tiny_pair[role], rows, rp.adapter(role), rp.checkpoints(role), max_steps=3)
    yield cfg, rp
    os.environ.pop("WORKBOOK_HOME", None)


def test_merged_logits_equal_base_plus_adapter(trained, tiny_pair):
    cfg, rp = trained
    cfg = params.Params({**cfg, "models": {**cfg["models"], "target": tiny_pair["target"], "draft": tiny_pair["draft"]}})
    probe = ["<|im_start|>user\nTom has 3 apples.<|im_end|>\n<|im_start|>assistant\n", "x = 1 -> y = 2"]
    result = merge.merge_run(cfg, rp, probe)
    assert result["tokenizers_identical"]
    for role in models.ROLES:
        assert result[role]["max_abs_logit_diff"] <= cfg["merge"]["atol"]
    # And the saved checkpoint really is the merged model (not the base).
    from transformers import AutoModelForCausalLM

    tok = models.load_tokenizer(str(rp.merged("target")))
    batch = tok(probe[:1], return_tensors="pt")
    merged = AutoModelForCausalLM.from_pretrained(str(rp.merged("target")))
    base = AutoModelForCausalLM.from_pretrained(tiny_pair["target"])
    with torch.no_grad():
        assert not torch.allclose(merged(**batch).logits, base(**batch).logits)


def test_a_wrong_merge_is_refused(trained, tiny_pair, tmp_path):
    cfg, rp = trained
    strict = params.Params({**cfg, "merge": {**cfg["merge"], "atol": -1.0}})
    with pytest.raises(ValueError, match="refusing to benchmark a wrong merge"):
        merge.merge_adapter(strict, tiny_pair["target"], rp.adapter("target"), tmp_path / "m", ["x = 1"])


def test_tokenizer_mismatch_is_a_clear_error(tiny_pair, tmp_path):
    from lib import base_pair

    same = models.load_tokenizer(tiny_pair["tokenizer"])
    models.assert_same_tokenizer(same, models.load_tokenizer(tiny_pair["target"]))
    other = base_pair.train_tokenizer(["completely different words entirely"] * 20, 300, tmp_path / "other")
    with pytest.raises(ValueError, match="target and draft tokenizers differ: vocab sizes"):
        models.assert_same_tokenizer(same, other)


def test_accuracy_gate_passes_and_fails():
    cfg = _cfg(**{"distill.gate_mode": "stop"})
    assert distill.check_gate(cfg, 0.90)["passed"]
    with pytest.raises(distill.GateError, match=r"accuracy 0\.500 is below the easy gate 0\.85"):
        distill.check_gate(cfg, 0.5)
    warn = distill.check_gate(_cfg(**{"distill.gate_mode": "warn"}), 0.5)
    assert not warn["passed"] and "below" in warn["message"]


def test_distillation_resumes_without_duplicates_or_losses(trained, tiny_pair, monkeypatch):
    cfg, rp = trained
    cfg = params.Params({**cfg, "models": {**cfg["models"], "target": tiny_pair["target"]},
                         "distill": {**cfg["distill"], "batch_size": 8, "max_tokens": 24}})
    calls = {"n": 0}
    real_append = io.append_jsonl

    def crash_after_first_batch(path, rows):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed halfway")
        real_append(path, rows)

    monkeypatch.setattr(io, "append_jsonl", crash_after_first_batch)
    with pytest.raises(KeyboardInterrupt):
        distill.distill(cfg, rp, progress=False)
    monkeypatch.setattr(io, "append_jsonl", real_append)
    assert len(io.read_jsonl(rp.distilled).rows) == 8
    with open(rp.distilled, "a") as fh:  # and a writer killed mid-line
        fh.write('{"id": "easy-0')
    result = distill.distill(cfg, rp, progress=False)
    assert result["n_repaired_lines"] == 1
    rows = io.read_jsonl(rp.distilled).rows
    ids = [r["id"] for r in rows]
    assert result["n_resumed"] == 8 and result["n_generated"] == 22
    assert len(ids) == len(set(ids)) == 30
    assert {r["id"] for r in io.read_jsonl(rp.train_problems).rows} == set(ids)
    # Other settings (or a retrained adapter): earlier answers are set aside, not mixed in.
    other = params.Params({**cfg, "distill": {**cfg["distill"], "max_tokens": 16}})
    again = distill.distill(other, rp, progress=False)
    assert again["set_aside"] and again["n_generated"] == 30 and again["n_resumed"] == 0
    assert len(io.read_jsonl(again["set_aside"]).rows) == 30


def test_draft_identical_to_target_is_accepted_everywhere(tiny_pair):
    """A known answer for the counters: the target as its own draft, greedy."""
    cfg = _cfg(**{"benchmark.k": 4, "benchmark.max_num_seqs": 4})
    tok = models.load_tokenizer(tiny_pair["target"])
    prompts = [models.prompt_text(tok, "cod", r["question"]) for r in tiny_pair["rows"][:6]]
    spec = engine.speculative_config(cfg, tiny_pair["target"])
    with engine.running(cfg, tiny_pair["target"], speculative=spec) as eng:
        before = engine.spec_counters(eng)
        outs = eng.llm.generate(prompts, engine.sampling(cfg, 40), use_tqdm=False)
        c = engine.counter_delta(engine.spec_counters(eng), before)
    assert c["drafts"] > 0
    assert c["accepted_tokens"] == c["draft_tokens"] == 4 * c["drafts"]
    assert c["accepted_per_pos"] == [c["drafts"]] * 4
    assert sum(c["accepted_per_pos"]) == c["accepted_tokens"]
    assert all(engine.request_timing(o)["ttft_s"] is not None for o in outs)
    json.dumps(c)


def test_bf16_merge_is_checked_in_bf16_and_saved_in_bf16(trained, tiny_pair, tmp_path):
    """Checked in the model's dtype, as on the GPU (one bf16 copy, no float32 one): a right
    merge passes within the full profile's tolerance (bf16 logits round by up to 0.125 at 16,
    so an absolute 1e-4 could not hold) and every merged weight within its rounding bound."""
    import json as _json

    cfg, rp = trained
    full = params.resolve("full", "cod", "easy")["merge"]
    bf16 = params.Params({**cfg, "models": {**cfg["models"], "dtype": "bfloat16"},
                          "merge": {**cfg["merge"], "atol": full["atol"], "rtol": full["rtol"]}})
    out = merge.merge_adapter(bf16, tiny_pair["target"], rp.adapter("target"), tmp_path / "m", ["x = 1 -> y = 2"])
    assert out["max_abs_logit_diff"] <= out["logit_tolerance"] and out["worst_error_over_bound"] <= 1
    print("bf16 merge of the tiny target:", {k: out[k] for k in ("max_abs_logit_diff", "logit_tolerance")})
    assert _json.loads((tmp_path / "m" / "config.json").read_text())["dtype"] == "bfloat16"


def test_local_teacher_through_vllm(trained, tiny_pair):
    """The `local` teacher for real: a model served by vLLM answers, every row is validated."""
    from lib import data

    cfg, rp = trained
    cfg = params.Params({**cfg, "data": {**cfg["data"], "teacher": "local",
                                         "local_teacher": {**cfg["data"]["local_teacher"], "model": tiny_pair["target"], "max_tokens": 24}}})
    result = data.generate_solutions(cfg, rp, progress=False)
    assert result["requested"] == 30
    kept = io.read_jsonl(rp.teacher_output).rows if rp.teacher_output.exists() else []
    rejected = io.read_jsonl(rp.teacher_rejected).rows
    assert len(kept) + len(rejected) == 30
    assert all(r["reason"] for r in rejected)
