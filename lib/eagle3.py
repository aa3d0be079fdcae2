"""Stage 05b (only where `eagle3.enabled`): an EAGLE-3 head per (style, scenario), trained on the
fine-tuned target's own distilled answers (03) against the merged target (05), in the layout of
the vLLM project's `speculators` library, which vLLM serves as `method: eagle3`.

Two paths, one data format (speculators' sample: the target's auxiliary hidden states
concatenated, its last pre-norm hidden state, input ids, a loss mask on the answer's tokens):
- CUDA: `speculators` itself, `prepare-data` then `train` (hidden states extracted by vLLM,
  its trainer and fused loss): `train_with_speculators`.
- CPU (tiny, tests): the library's own model class (`Eagle3DraftModel.from_training_args`), its
  vocabulary mapping, packing (`CollateFn`, `shift_batch`) and eager loss, with the hidden states
  from transformers (forward hooks) and a short loop of ours: the library's trainer moves the
  model to CUDA, its default loss is a Triton kernel, and vLLM's hidden-state connector calls
  CUDA streams, so it has no CPU path (`train_on_cpu`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import device, io, models, params, stages

LOSS = "kl_div"  # speculators' default loss for EAGLE-3 (`--loss-fn`)


def enabled(cfg) -> bool:
    """Whether the run trains and benchmarks a head (never the untrained base pair: it has no
    distilled answers)."""
    return stages.eagle3_on(cfg) and cfg["style"] != "base"


def ttt_steps(cfg) -> int:
    """Draft positions trained (TTT steps): `eagle3.ttt_steps`, else the benchmark's K (its
    reference K when K is chosen at run time)."""
    bench = cfg["benchmark"]
    return int(cfg["eagle3"]["ttt_steps"] or (bench["k_reference"] if bench["k"] == "auto" else bench["k"]))


def layer_ids(cfg, target: str) -> list[int]:
    """The target layers the head reads (vLLM's numbering: id L is the state after L decoder
    layers); [] = speculators' default, which a 4-layer target rejects, hence the tiny profile's own."""
    from speculators.models.utils import resolve_target_layer_ids

    return resolve_target_layer_ids(list(cfg["eagle3"]["layer_ids"]) or None, target)


def examples(tokenizer, style: str, rows: list[dict], max_length: int, thinking: bool = False) -> list[dict]:
    """The distilled answers as token ids with a loss mask on the answer's tokens (the head is
    trained where the target generates, not on the prompt), each cut at `max_length` tokens."""
    import torch

    out = []
    for row in rows:
        prompt = models.prompt_text(tokenizer, style, row["question"], thinking)
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tokenizer(row["solution"] + (tokenizer.eos_token or ""), add_special_tokens=False)["input_ids"]
        ids = (p_ids + a_ids)[:max_length]
        if len(ids) <= len(p_ids) + 1:
            continue
        mask = torch.zeros(len(ids), dtype=torch.bool)
        mask[len(p_ids) :] = True
        out.append({"input_ids": torch.tensor(ids, dtype=torch.long), "loss_mask": mask})
    return out


def hidden_states(target_model, ids, layers: list[int]):
    """(auxiliary states [seq, len(layers) x hidden], last pre-norm state [seq, hidden]) of one
    sequence through transformers, by forward hooks on the decoder layers. vLLM's layer id L is the
    state after L decoder layers (L = 0: the embeddings); transformers 5 returns the post-norm state
    as its last hidden state, so the pre-norm one is the last decoder layer's output."""
    import torch

    decoder = target_model.model
    seen = {}

    def keep(i):
        def hook(module, args, output):
            seen[i] = output[0] if isinstance(output, tuple) else output

        return hook

    n = len(decoder.layers)
    handles = [decoder.embed_tokens.register_forward_hook(keep(0))]
    handles += [layer.register_forward_hook(keep(i + 1)) for i, layer in enumerate(decoder.layers)]
    try:
        with torch.no_grad():
            target_model(input_ids=ids.unsqueeze(0), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return torch.cat([seen[i][0] for i in layers], dim=-1), seen[n][0]


def samples(target: str, tokenizer, style: str, rows: list[dict], layers: list[int], max_length: int, thinking=False):
    """speculators' training samples (the keys its `CollateFn` and `shift_batch` take) for the
    distilled rows, hidden states from the merged target on this machine."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32).eval()
    out = []
    for ex in examples(tokenizer, style, rows, max_length, thinking):
        aux, last = hidden_states(model, ex["input_ids"], layers)
        n = len(ex["input_ids"])
        out.append(
            {
                **ex,
                "hidden_states": aux,
                "verifier_last_hidden_states": last,
                "lengths": torch.tensor([n], dtype=torch.long),
                "position_ids": torch.arange(n, dtype=torch.long),
            }
        )
    return out


def vocab_mapping(draft_vocab_size: int, target_vocab_size: int, data: list[dict]):
    """speculators' d2t/t2d from the answers' token frequencies, or (None, None) where the head
    keeps the target's whole vocabulary (`eagle3.draft_vocab_size` 0 or not smaller)."""
    from collections import Counter

    from speculators.train.vocab_mapping import build_vocab_mappings_from_distribution

    if not draft_vocab_size or draft_vocab_size >= target_vocab_size:
        return None, None
    freq = Counter()
    for s in data:
        freq.update(s["input_ids"][s["loss_mask"]].tolist())
    return build_vocab_mappings_from_distribution(dict(freq), draft_vocab_size, target_vocab_size)


def build_head(cfg, target: str, layers: list[int], d2t=None, t2d=None):
    """A new head of speculators' layout for `target` (its decoder layer's weights random, its
    embedding and LM head the target's), or the starting head `eagle3.from_pretrained`."""
    from speculators.models.eagle3.core import Eagle3DraftModel
    from transformers import AutoConfig

    start = str(cfg["eagle3"]["from_pretrained"] or "").strip()
    if start:  # its own vocabulary mapping and layer ids, which must be the ones asked for
        head = Eagle3DraftModel.from_pretrained(start)
        if list(head.target_layer_ids) != list(layers):
            raise ValueError(
                f"eagle3.from_pretrained {start} reads target layers {head.target_layer_ids}, "
                f"eagle3.layer_ids asks for {layers}: set eagle3.layer_ids to the head's"
            )
        return head
    return Eagle3DraftModel.from_training_args(
        AutoConfig.from_pretrained(target),
        t2d=t2d,
        d2t=d2t,
        verifier_name_or_path=target,
        target_layer_ids=layers,
        draft_vocab_size=int(t2d.sum()) if t2d is not None else tokenizer_vocab(target),
        norm_before_residual=False,
        ttt_steps=ttt_steps(cfg),
        draft_attn_impl="sdpa",  # flex attention needs a compiler; sdpa runs anywhere
        num_layers=1,
    )


def save_head(head, target: str, out_dir: Path) -> None:
    """The head as vLLM loads it: speculators' `config.json` and `model.safetensors`, its verifier
    pointed at the target it was trained against; written whole or not at all."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    head.config.speculators_config.verifier.name_or_path = str(target)
    head.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)


def train_on_cpu(cfg, target: str, rows: list[dict], out_dir: Path, style: str) -> dict:
    """Train a head on this machine (see the module's docstring for why the loop is ours): every
    distilled row once per epoch, in a seeded order, AdamW with a linear decay."""
    import torch
    from speculators.losses import resolve_loss_config
    from speculators.models.eagle3.data import shift_batch
    from speculators.train.data import CollateFn

    e3 = cfg["eagle3"]
    torch.manual_seed(params.training_seed(cfg))
    t0 = time.perf_counter()
    tokenizer = models.load_tokenizer(target)
    layers = layer_ids(cfg, target)
    data = samples(target, tokenizer, style, rows, layers, e3["max_length"], models.enable_thinking(cfg, style))
    if not data:
        raise ValueError("eagle3: no distilled answer fits eagle3.max_length: nothing to train the head on")
    t_hidden = time.perf_counter() - t0
    starting = bool(str(e3["from_pretrained"] or "").strip())  # a starting head brings its own mapping
    d2t, t2d = (None, None) if starting else vocab_mapping(int(e3["draft_vocab_size"]), tokenizer_vocab(target), data)
    head = build_head(cfg, target, layers, d2t, t2d).float()
    hidden = data[0]["verifier_last_hidden_states"].shape[-1]
    loss_config = resolve_loss_config(LOSS, "eager")  # the fused default is Triton: no CPU
    trainable = [p for p in head.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=float(e3["lr"]))
    steps = len(data) * int(e3["epochs"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / max(steps, 1))
    history, step, k = [], 0, ttt_steps(cfg)
    gen = torch.Generator().manual_seed(params.training_seed(cfg))
    head.train()
    for epoch in range(int(e3["epochs"])):
        for j in torch.randperm(len(data), generator=gen).tolist():
            # One row a step, unpadded: the head's attention mask is dense on a CPU (sdpa), so a
            # packed step costs the square of its length (4 rows: 4.1 s against 4 x 0.55 s).
            collate = CollateFn(len(data[j]["input_ids"]) - 1, hidden, len(layers), torch.float32, shift_batch)
            batch = collate([data[j]])
            _, loss, metrics = head(
                hidden_states=batch["hidden_states"],
                input_ids=batch["input_ids"],
                document_ids=batch["document_ids"],
                loss_mask=batch["loss_mask"],
                position_ids=batch["position_ids"],
                verifier_last_hidden_states=batch["verifier_last_hidden_states"],
                ttt_steps=k,
                loss_config=loss_config,
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            history.append({"step": step, "epoch": epoch + 1, "loss": float(loss.detach())} | accuracies(metrics))
    head.eval()
    save_head(head, target, out_dir)
    return {
        "backend": "cpu (speculators model class, own loop)",
        "target": str(target),
        "layer_ids": layers,
        "draft_vocab_size": int(head.draft_vocab_size),
        "ttt_steps": k,
        "rows": len(rows),
        "rows_used": len(data),
        "tokens": int(sum(len(s["input_ids"]) for s in data)),
        "answer_tokens": int(sum(int(s["loss_mask"].sum()) for s in data)),
        "steps": step,
        "epochs": int(e3["epochs"]),
        "trainable_parameters": int(sum(p.numel() for p in trainable)),
        "hidden_states_s": t_hidden,
        "train_s": time.perf_counter() - t0 - t_hidden,
        "history": history,
    }


def tokenizer_vocab(target: str) -> int:
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(target).vocab_size)


def accuracies(metrics: dict) -> dict:
    """speculators' draft accuracy by position (`acc_<i>`: the share of answer tokens whose
    drafts were right at position i and at every position before it)."""
    out = {}
    for key, value in metrics.items():
        if key.startswith("full_acc_") and key.endswith("_sum"):
            i = key[len("full_acc_") : -len("_sum")]
            total = float(metrics[f"full_acc_{i}_total"])
            out[f"acc_{i}"] = float(value) / total if total else None
    return out


def untrained_head(cfg, target: str, out_dir: Path) -> Path:
    """A head of the trained one's shape, its decoder layer left at its random initialisation: the
    control a trained head must beat on acceptance."""
    import torch

    torch.manual_seed(params.training_seed(cfg))
    save_head(build_head(cfg, target, layer_ids(cfg, target)).float(), target, out_dir)
    return Path(out_dir)


def train_with_speculators(cfg, target: str, rows: list[dict], out_dir: Path, style: str, work: Path) -> dict:
    """The CUDA path: the distilled answers tokenized as on the CPU (`examples`: speculators'
    pre-tokenized `input_ids` / `loss_mask` rows, which `prepare-data` passes through without a
    rendering server), then `speculators train` (hidden states extracted by vLLM, the library's
    trainer and fused loss), its last epoch's head copied out. Not run on a CPU."""
    e3 = cfg["eagle3"]
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    tokenizer = models.load_tokenizer(target)
    rows_file = work / "tokenized.jsonl"
    made = examples(tokenizer, style, rows, e3["max_length"], models.enable_thinking(cfg, style))
    io.write_text(
        rows_file,
        "".join(json.dumps({k: ex[k].int().tolist() for k in ("input_ids", "loss_mask")}) + "\n" for ex in made),
    )
    cli = [sys.executable, "-m", "speculators"]
    data_dir, save = work / "data", work / "checkpoints"
    prepare = ["prepare-data", "--model", target, "--data", str(rows_file), "--output", str(data_dir)]
    prepare += ["--seq-length", str(e3["max_length"]), "--seed", str(params.training_seed(cfg))]
    subprocess.run(cli + prepare, check=True)
    layers = layer_ids(cfg, target)
    args = ["train", "--verifier-name-or-path", target, "--data-path", str(data_dir), "--speculator-type", "eagle3"]
    args += ["--target-layer-ids", *map(str, layers), "--ttt-steps", str(ttt_steps(cfg))]
    args += [
        "--epochs",
        str(e3["epochs"]),
        "--lr",
        str(e3["lr"]),
        "--draft-attn-impl",
        "sdpa",
        "--save-path",
        str(save),
    ]
    if int(e3["draft_vocab_size"]):
        args += ["--draft-vocab-size", str(e3["draft_vocab_size"])]
    if str(e3["from_pretrained"] or "").strip():
        args += ["--from-pretrained", str(e3["from_pretrained"])]
    t0 = time.perf_counter()
    subprocess.run(cli + args, check=True)
    # speculators writes one folder per epoch under the save path: the last one written is the head
    last = max(save.glob("*/config.json"), key=lambda p: p.stat().st_mtime).parent
    tmp = Path(out_dir).with_name(Path(out_dir).name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(last, tmp)
    conf = io.read_json(tmp / "config.json")
    conf.setdefault("speculators_config", {}).setdefault("verifier", {})["name_or_path"] = str(target)
    io.write_json(tmp / "config.json", conf)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return {
        "backend": "speculators (CUDA)",
        "target": str(target),
        "layer_ids": layers,
        "ttt_steps": ttt_steps(cfg),
        "rows": len(rows),
        "rows_used": len(made),
        "epochs": int(e3["epochs"]),
        "train_s": time.perf_counter() - t0,
        "history": [],
    }


def train_head(cfg, rp) -> dict:
    """The stage: a head for the run's merged target on its distilled answers, where the machine
    has a path for it (speculators on CUDA, the CPU loop elsewhere); its summary beside it."""
    rows = io.require_jsonl(rp.distilled, required=("id", "question", "solution"))
    target = str(rp.merged("target"))
    out = rp.eagle3_head
    if device.on_cuda(cfg):
        summary = train_with_speculators(cfg, target, rows, out, rp.style, rp.eagle3_work)
    else:
        summary = train_on_cpu(cfg, target, rows, out, rp.style)
    io.write_json(rp.eagle3_summary, summary)
    return summary


def figures(summary: dict) -> dict:
    """What the stage records: the head's shape and training, its last loss and accuracies."""
    last = (summary.get("history") or [{}])[-1]
    return {k: v for k, v in summary.items() if k != "history"} | {
        "final_loss": last.get("loss"),
        **{f"final_{k}": v for k, v in last.items() if k.startswith("acc_")},
    }


def loss_frame(summary: dict):
    """The training loss per step, in the frame `plots.loss_curves` draws."""
    import pandas as pd

    rows = [{"step": h["step"], "split": "train", "loss": h["loss"]} for h in summary.get("history") or []]
    return pd.DataFrame(rows, columns=["step", "split", "loss"])


def accuracy_table(summary: dict):
    """The head's draft accuracy by position, per epoch (mean over its steps)."""
    import pandas as pd

    frame = pd.DataFrame(summary.get("history") or [])
    cols = [c for c in frame.columns if c.startswith("acc_")]
    return frame.groupby("epoch")[cols].mean() if cols else frame


def summary_table(summary: dict):
    """What the head is and how it was trained, one line each."""
    import pandas as pd

    return pd.Series(figures(summary), dtype=object).to_frame("head")
