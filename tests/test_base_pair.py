"""The base pair's pretraining: packed rows, the FLOPs count behind MFU, the generated corpus."""

import random

import pytest

from lib import base_pair, problems
from lib.styles import TRAINED_STYLES
from lib.teachers import reference


def test_packed_rows_hold_every_token_once_in_full_rows():
    ids = [[i] * n for i, n in enumerate([3, 5, 2, 7, 4, 6], start=1)]  # 27 tokens
    rows = base_pair.packed_rows(ids, 5, random.Random(0))
    assert tuple(rows.shape) == (5, 5)  # 27 // 5 full rows; the 2-token tail dropped
    flat = rows.flatten().tolist()
    # examples stay whole and in one piece: each id's run is contiguous (only the tail may be cut)
    runs = [flat[0]] + [b for a, b in zip(flat, flat[1:]) if a != b]
    assert len(runs) == len(set(runs))
    kept = {i: flat.count(i) for i in set(flat)}
    assert all(kept[i] == len(ids[i - 1]) for i in kept if i != flat[-1])
    assert base_pair.packed_rows(ids, 5, random.Random(0)).tolist() == rows.tolist()  # seeded


def test_packing_longer_than_the_corpus_names_the_parameter():
    with pytest.raises(ValueError, match=r"models\.base_pair\.pretrain\.seq_len=100"):
        base_pair.packed_rows([[1, 2], [3]], 100, random.Random(0))


def test_flops_per_token_counts_every_matmul_weight():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=96,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        tie_word_embeddings=True,
    )
    model = Qwen3ForCausalLM(config)
    import torch

    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    # the tied head is a Linear too; the embedding lookup is not a matmul
    assert base_pair.flops_per_token(config, 0) == 6 * linear
    assert base_pair.flops_per_token(config, 128) - base_pair.flops_per_token(config, 0) == 12 * 3 * 4 * 16 * 128


def test_generated_pool_drops_held_out_and_alternates_styles_whatever_the_workers():
    rows = problems.generate("easy", 40, seed=5)
    held_out = {problems.normalize_question(r["question"]) for r in rows[:10]}
    one, counts = base_pair.generated_pool("easy", 60, 0, "styles", held_out, chunk=25, workers=1)
    two, _ = base_pair.generated_pool("easy", 60, 0, "styles", held_out, chunk=25, workers=2)
    assert one == two
    assert counts["generated"] == 60 and counts["kept"] == len(one)
    assert counts["kept"] + counts["dropped_held_out"] + counts["dropped_repeated"] == 60
    assert not held_out & {problems.normalize_question(q) for q, _ in one}
    # The pool, rebuilt by hand: chunk seeds, then CoT and CoD alternating within each chunk.
    cod = sum(" -> " in text for _, text in one)
    assert abs(cod - (len(one) - cod)) <= 3  # dropped rows may unbalance by a few, no more
    first = problems.generate("easy", 25, 1_000_003 * 1 + 7919 * 1)[0]
    assert one[0] == (first["question"], reference.rewrite(first, TRAINED_STYLES[0]))


def test_held_out_questions_are_dropped_from_a_pool_that_draws_them():
    first = problems.generate("easy", 5, 1_000_003 * 1 + 7919 * 1)
    held_out = {problems.normalize_question(r["question"]) for r in first}
    pool, counts = base_pair.generated_pool("easy", 5, 0, "reference", held_out, workers=1)
    assert pool == [] and counts["dropped_held_out"] == 5


@pytest.mark.slow  # trains a model (a tiny one, seconds): `make test-fast` skips training
def test_packed_pretraining_trains_on_full_rows_on_cpu(tmp_path):
    from transformers import Qwen3Config

    texts = [f"{a} + {b} = {a + b}" for a in range(30) for b in range(10)]
    tok = base_pair.train_tokenizer(texts, 300, tmp_path / "tok")
    config = Qwen3Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
    )
    spec = {"epochs": 2, "batch_size": 4, "lr": 0.01, "max_length": 64, "seq_len": 32, "compile": True}
    out = base_pair.pretrain(config, texts, tok, spec, 0, tmp_path / "m", "target")
    n_tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
    rows = n_tokens // 32
    assert out["steps"] == 2 * (rows // 4)
    assert out["tokens"] == out["steps"] * 4 * 32  # no padding: every token of every row counts
    assert out["compiled"] is False  # compile is CUDA only
    assert out["mfu"] is None and out["model_tflops"] > 0
    assert out["loss_last"] < out["loss_first"]
