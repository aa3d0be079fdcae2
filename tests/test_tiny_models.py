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

    return [
        {"id": r["id"], "question": r["question"], "solution": reference.rewrite(r, style)} for r in pair["rows"][:n]
    ]


def test_loss_mask_covers_exactly_the_assistant_tokens(tiny_pair, tmp_path, monkeypatch):
    """A real batch of the trainer `train_lora` builds (its own SFTConfig, collator and
    dataset): system and user tokens ignored, every assistant token trained."""
    import trl

    batches = []

    class Spy(trl.SFTTrainer):
        def train(self, *args, **kwargs):
            batches.append(next(iter(self.get_train_dataloader())))
            return super().train(*args, **kwargs)

    monkeypatch.setattr(trl, "SFTTrainer", Spy)
    rows = _solution_rows(tiny_pair, n=8)
    train.train_lora(_cfg(), "target", tiny_pair["target"], rows, tmp_path / "adapter", tmp_path / "ckpt", max_steps=1)
    (batch,) = batches
    tok = models.load_tokenizer(tiny_pair["tokenizer"])
    examples, _ = train.build_dataset(rows, "cod", tok, 512)
    encoded = [
        (
            models.chat_ids(tok, ex["prompt"], add_generation_prompt=True),
            models.chat_ids(tok, ex["prompt"] + ex["completion"]),
        )
        for ex in examples
    ]
    assert len(batch["input_ids"]) == len(examples) == 8
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist()):
        # the loader shuffles: find this row's example by its tokens
        prompt, full = next((p, f) for p, f in encoded if ids[: len(f)] == f)
        assert len(prompt) < len(full)
        assert all(t == -100 for t in labels[: len(prompt)]), "a prompt token is trained"
        assert labels[len(prompt) : len(full)] == full[len(prompt) :], "an assistant token is ignored"
        assert all(t == -100 for t in labels[len(full) :]), "padding is trained"


def test_training_resumes_from_its_last_checkpoint(tiny_pair, tmp_path, monkeypatch):
    """Resumption seen from the trainer's own loop, not from the summary: the optimizer steps
    of the second session start at the checkpoint's step and run only the rest of the epoch."""
    from transformers import Trainer

    at_step = []  # the trainer's global step at each optimizer step taken (grad_accum 1)
    real_step = Trainer.training_step
    monkeypatch.setattr(
        Trainer,
        "training_step",
        lambda self, *a, **k: (at_step.append(self.state.global_step), real_step(self, *a, **k))[1],
    )
    cfg = _cfg(**{"train.save_steps": 2, "train.target": {"epochs": 1, "batch_size": 8}})
    rows = _solution_rows(tiny_pair, n=32)
    ckpt, adapter = tmp_path / "ckpt", tmp_path / "adapter"
    first = train.train_lora(cfg, "target", tiny_pair["target"], rows, adapter, ckpt, max_steps=2)
    assert first["resumed_from"] is None and at_step == [0, 1]
    assert train.last_checkpoint(ckpt).endswith("checkpoint-2")
    at_step.clear()
    second = train.train_lora(cfg, "target", tiny_pair["target"], rows, adapter, ckpt)
    assert second["steps"] > 2  # one epoch of 29 training rows at batch 8: 4 steps
    assert at_step == list(range(2, second["steps"])), "the second session did not continue from step 2"
    assert second["resumed_from"].endswith("checkpoint-2")
    assert (adapter / "adapter_model.safetensors").exists()
    # Another recipe never resumes these checkpoints (a finished one would silently not train).
    at_step.clear()
    changed = _cfg(**{"train.save_steps": 2, "train.target": {"epochs": 1, "batch_size": 8, "lr": 0.001}})
    third = train.train_lora(changed, "target", tiny_pair["target"], rows, adapter, ckpt, max_steps=2)
    assert third["resumed_from"] is None and at_step == [0, 1]


def test_gradient_checkpointing_trains_the_same_adapter(tiny_pair, tmp_path, monkeypatch):
    """Recomputing activations changes memory, not the result: the LoRA weights after two steps
    match a run that keeps them (a checkpointed PEFT model whose inputs need no grad would
    leave lora_B at its zero init instead)."""
    from safetensors.torch import load_file
    from transformers import PreTrainedModel

    enabled = []
    real = PreTrainedModel.gradient_checkpointing_enable
    monkeypatch.setattr(
        PreTrainedModel,
        "gradient_checkpointing_enable",
        lambda self, *a, **k: (enabled.append(True), real(self, *a, **k))[1],
    )
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
    with pytest.MonkeyPatch.context() as mp:  # restores a user's own WORKBOOK_HOME afterwards
        mp.setenv("WORKBOOK_HOME", str(tmp_path_factory.mktemp("home")))
        rp = RunPaths("tiny", "cod", "easy")
        cfg = _cfg()
        rows = _solution_rows(tiny_pair, n=40)
        problems = tiny_pair["rows"][:40]
        io.write_jsonl(rp.train_problems, problems[:30])
        io.write_jsonl(rp.test_problems, problems[30:])
        for role in models.ROLES:
            train.train_lora(cfg, role, tiny_pair[role], rows, rp.adapter(role), rp.checkpoints(role), max_steps=3)
        yield cfg, rp


def test_merged_logits_equal_base_plus_adapter(trained, tiny_pair):
    """The checkpoints on disk, reloaded: their logits are those of the base model with the
    adapter attached by PEFT (unmerged), and their tokenizers are the base pair's, by content."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg, rp = trained
    cfg = params.Params(
        {**cfg, "models": {**cfg["models"], "target": tiny_pair["target"], "draft": tiny_pair["draft"]}}
    )
    probe = ["<|im_start|>user\nTom has 3 apples.<|im_end|>\n<|im_start|>assistant\n", "x = 1 -> y = 2"]
    merge.merge_run(cfg, rp, probe)
    base_tok = models.load_tokenizer(tiny_pair["tokenizer"])
    batch = base_tok(probe, return_tensors="pt", padding=True)
    mask = batch["attention_mask"].bool()
    for role in models.ROLES:
        tok = models.load_tokenizer(str(rp.merged(role)))
        assert tok.get_vocab() == base_tok.get_vocab() and tok.chat_template == base_tok.chat_template
        assert tok.special_tokens_map == base_tok.special_tokens_map and tok.pad_token_id == base_tok.pad_token_id
        assert tok(probe)["input_ids"] == base_tok(probe)["input_ids"]
        merged = AutoModelForCausalLM.from_pretrained(str(rp.merged(role)), dtype=torch.float32).eval()
        base = AutoModelForCausalLM.from_pretrained(tiny_pair[role], dtype=torch.float32).eval()
        with torch.no_grad():
            plain = base(**batch).logits[mask]
            attached = PeftModel.from_pretrained(base, str(rp.adapter(role))).eval()(**batch).logits[mask]
            reloaded = merged(**batch).logits[mask]
        torch.testing.assert_close(reloaded, attached, rtol=1e-4, atol=1e-4, msg=f"{role}: merged != base + adapter")
        # the adapter moves the logits far more than the merge's rounding does
        assert (attached - plain).abs().max() > 100 * (reloaded - attached).abs().max(), role


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


def _spy_on_generate(monkeypatch) -> list:
    """Every RequestOutput vLLM's LLM.generate returns, as the caller received it."""
    from vllm import LLM

    outputs, real = [], LLM.generate

    def generate(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        outputs.extend(result)
        return result

    monkeypatch.setattr(LLM, "generate", generate)
    return outputs


def test_distillation_resumes_without_duplicates_or_losses(trained, tiny_pair, monkeypatch):
    cfg, rp = trained
    cfg = params.Params(
        {
            **cfg,
            "models": {**cfg["models"], "target": tiny_pair["target"]},
            "distill": {**cfg["distill"], "batch_size": 8, "max_tokens": 24, "serve": "adapter"},
        }
    )
    served = _spy_on_generate(monkeypatch)
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
    # vLLM's own record of every request: each answer came from the base model with the
    # target's adapter attached (a request without it would hold None here).
    assert len(served) == 16 + 22 and all(r["solution"] for r in rows)
    assert {getattr(out.lora_request, "lora_path", None) for out in served} == {str(rp.adapter("target"))}
    # Other settings (or a retrained adapter): earlier answers are set aside, not mixed in.
    other = params.Params({**cfg, "distill": {**cfg["distill"], "max_tokens": 16}})
    again = distill.distill(other, rp, progress=False)
    assert again["set_aside"] and again["n_generated"] == 30 and again["n_resumed"] == 0
    assert len(again["set_aside"]) == 1 and len(io.read_jsonl(again["set_aside"][0]).rows) == 30


def test_distillation_on_a_cpu_serves_the_checked_merge_and_gives_the_adapters_answers(trained, tiny_pair, monkeypatch):
    """`distill.serve: auto` on a CPU: the target merged first (vLLM's CPU LoRA path took 80 %
    of the demo's distillation time), checked as stage 5 checks a merge, served without a
    LoRA request from a temporary folder that is gone afterwards; the answers are those of the
    base with the adapter attached."""
    cfg, rp = trained
    cfg = params.Params(
        {
            **cfg,
            "models": {**cfg["models"], "target": tiny_pair["target"]},
            "distill": {**cfg["distill"], "batch_size": 16, "max_tokens": 32, "serve": "adapter"},
        }
    )
    assert not distill.serve_merged(cfg) and distill.serve_merged(
        params.Params({**cfg, "distill": {**cfg["distill"], "serve": "merged"}})
    )
    auto = params.Params({**cfg, "distill": {**cfg["distill"], "serve": "auto"}})
    assert distill.serve_merged(auto)  # this machine has no GPU (device: cpu in the tiny profile)
    rp.distilled.unlink(missing_ok=True)
    served = _spy_on_generate(monkeypatch)
    with_adapter = distill.distill(cfg, rp, progress=False)
    lora = [r["solution"] for r in io.read_jsonl(rp.distilled).rows]
    assert with_adapter["served"]["as"].startswith("base + adapter")
    assert {getattr(out.lora_request, "lora_path", None) for out in served} == {str(rp.adapter("target"))}

    rp.distilled.unlink()
    served.clear()
    killed = rp.root / f".distill-{rp.name}-killed" / "target"  # what a killed attempt leaves
    killed.mkdir(parents=True)
    merged = distill.distill(auto, rp, progress=False)
    assert merged["served"]["as"].startswith("base with the adapter merged in")
    assert merged["served"]["max_abs_logit_diff"] <= merged["served"]["logit_tolerance"]
    assert merged["served"]["modules_checked"] > 0
    assert served and all(out.lora_request is None for out in served)
    assert [r["solution"] for r in io.read_jsonl(rp.distilled).rows] == lora
    assert not list(rp.root.glob(".distill-*"))  # the temporary merge is removed, and the killed attempt's
    # every answer resumed: nothing is merged or served
    monkeypatch.setattr(merge, "merge_adapter", lambda *a, **k: pytest.fail("merged with nothing to answer"))
    assert distill.distill(auto, rp, progress=False)["n_generated"] == 0


def test_draft_identical_to_target_is_accepted_everywhere(tiny_pair):
    """A known answer for the counters: the target as its own draft, greedy. Every draft token
    is the target's own choice, so all but a rare float near-tie (the draft and the verifier
    compute in different batch shapes) are accepted: nearly all, on any CPU."""
    cfg = _cfg(**{"benchmark.k": 4, "benchmark.max_num_seqs": 4})
    tok = models.load_tokenizer(tiny_pair["target"])
    prompts = [models.prompt_text(tok, "cod", r["question"]) for r in tiny_pair["rows"][:6]]
    spec = engine.speculative_config(cfg, tiny_pair["target"])
    with engine.running(cfg, tiny_pair["target"], speculative=spec) as eng:
        before = engine.spec_counters(eng)
        outs = eng.llm.generate(prompts, engine.sampling(cfg, 40), use_tqdm=False)
        c = engine.counter_delta(engine.spec_counters(eng), before)
    assert c["drafts"] > 0 and c["draft_tokens"] == 4 * c["drafts"]
    assert c["accepted_tokens"] >= 0.9 * c["draft_tokens"], c
    assert sum(c["accepted_per_pos"]) == c["accepted_tokens"] and len(c["accepted_per_pos"]) == 4
    assert all(c["drafts"] >= a >= 0.9 * c["drafts"] for a in c["accepted_per_pos"]), c
    # each verify step emits its accepted tokens and one of the target's (the prefill the first)
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    assert len(prompts) + c["drafts"] <= tokens <= len(prompts) + c["drafts"] + c["accepted_tokens"], (tokens, c)
    assert all(engine.request_timing(o)["ttft_s"] is not None for o in outs)
    assert json.loads(json.dumps(c)) == c  # plain numbers, as metrics.json stores them


def test_bf16_merge_is_checked_in_bf16_and_saved_in_bf16(trained, tiny_pair, tmp_path):
    """Checked in the model's dtype, as on the GPU (one bf16 copy, no float32 one): a right
    merge passes within the full profile's tolerance (bf16 logits round by up to 0.125 at 16,
    so an absolute 1e-4 could not hold) and every merged weight within its rounding bound."""
    import json as _json

    cfg, rp = trained
    full = params.resolve("full", "cod", "easy")["merge"]
    bf16 = params.Params(
        {
            **cfg,
            "models": {**cfg["models"], "dtype": "bfloat16"},
            "merge": {**cfg["merge"], "atol": full["atol"], "rtol": full["rtol"]},
        }
    )
    out = merge.merge_adapter(bf16, tiny_pair["target"], rp.adapter("target"), tmp_path / "m", ["x = 1 -> y = 2"])
    assert out["max_abs_logit_diff"] <= out["logit_tolerance"] and out["worst_error_over_bound"] <= 1
    print("bf16 merge of the tiny target:", {k: out[k] for k in ("max_abs_logit_diff", "logit_tolerance")})
    assert _json.loads((tmp_path / "m" / "config.json").read_text())["dtype"] == "bfloat16"


def test_local_teacher_through_vllm(trained, tiny_pair):
    """The `local` teacher for real: a model served by vLLM answers, every row is validated.
    The tiny target cannot solve a problem (it repeats a digit), so its rows are rejected for
    their content: each holds the model's own greedy text (transformers' for the first two)."""
    from transformers import AutoModelForCausalLM

    from lib import answers, data

    cfg, rp = trained
    cfg = params.Params(
        {
            **cfg,
            "data": {
                **cfg["data"],
                "teacher": "local",
                "local_teacher": {**cfg["data"]["local_teacher"], "model": tiny_pair["target"], "max_tokens": 24},
                "max_cut_fraction": 1.0,  # every answer runs to max_tokens here: rows, not a stop, are tested
            },
        }
    )
    result = data.generate_solutions(cfg, rp, progress=False)
    assert result["requested"] == 30
    kept = io.read_jsonl(rp.teacher_output).rows if rp.teacher_output.exists() else []
    rejected = io.read_jsonl(rp.teacher_rejected).rows
    assert len(kept) + len(rejected) == 30
    assert {r["finish_reason"] for r in kept + rejected} <= {"length", "stop"}  # vLLM's, recorded per row
    by_id = {r["id"]: r for r in kept + rejected}
    problems = io.read_jsonl(rp.train_problems).rows
    assert set(by_id) == {p["id"] for p in problems}
    for row in kept + rejected:
        assert row["solution"].strip(), f"{row['id']}: the teacher returned nothing"
        assert not row.get("reason", "").startswith("teacher error"), row
        graded = answers.grade(row["solution"], row["answer"])
        assert (row["pred"], row["extraction"], row["correct"]) == (graded["pred"], graded["method"], graded["correct"])
    for row in rejected:  # rejected for what the answer says, nothing else
        assert row["reason"] == data.validate(next(p for p in problems if p["id"] == row["id"]), row["solution"])[1]
    tok = models.load_tokenizer(tiny_pair["target"])
    model = AutoModelForCausalLM.from_pretrained(tiny_pair["target"], dtype=torch.float32).eval()
    for problem in problems[:2]:
        enc = tok(models.prompt_text(tok, "cod", problem["question"]), return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(**enc, do_sample=False, max_new_tokens=24)[0, enc["input_ids"].shape[1] :]
        assert by_id[problem["id"]]["solution"].strip() == tok.decode(ids, skip_special_tokens=True).strip()
