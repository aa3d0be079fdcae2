"""The merge check on a random Qwen3-architecture model and adapter (tests/fixtures/lora_pair):
a right merge passes in float32 and in bf16, in the model's dtype; a wrong one fails, naming
the module; the model is never loaded in float32 when the profile's dtype is bf16."""

import json

import pytest
import torch

from fixtures import lora_pair
from lib import merge, params


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return lora_pair.build(tmp_path_factory.mktemp("lora"))


def _cfg(dtype="float32", **over):
    return params.resolve("tiny", "cot", "easy", {"device": "cpu", "models.dtype": dtype, **over})


@pytest.mark.parametrize("dtype, over", [("float32", {}), ("bfloat16", {"merge.atol": 0.0, "merge.rtol": 0.05})])
def test_right_merge_passes_in_the_models_dtype(pair, tmp_path, dtype, over, monkeypatch):
    from transformers import AutoModelForCausalLM

    loaded = []
    real = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        loaded.append(kwargs.get("dtype"))
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    out = merge.merge_adapter(_cfg(dtype, **over), pair["base"], pair["adapter"], tmp_path / "m", pair["probes"])
    assert loaded == [getattr(torch, dtype)]  # one load, in the model's dtype (no float32 copy)
    assert out["modules_checked"] == 2 * len(lora_pair.TARGETS) and out["worst_error_over_bound"] <= 1
    assert out["max_abs_logit_diff"] <= out["logit_tolerance"] and out["device"] == "cpu"
    assert json.loads((tmp_path / "m" / "config.json").read_text())["dtype"] == dtype
    monkeypatch.undo()
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "m"), dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(pair["base"], dtype=torch.float32)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[name], base.state_dict()[name])  # the adapter is in
    # The checkpoint on disk, reloaded, against base + adapter attached by PEFT (unmerged, in
    # float32): equal but for the rounding of the saved dtype, every layer present.
    from peft import PeftModel
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tmp_path / "m"))
    assert tok.get_vocab() == AutoTokenizer.from_pretrained(pair["base"]).get_vocab()
    batch = tok(pair["probes"], return_tensors="pt", padding=True)
    mask = batch["attention_mask"].bool()
    with torch.no_grad():
        plain = base(**batch).logits[mask]
        attached = PeftModel.from_pretrained(base, str(pair["adapter"])).eval()(**batch).logits[mask]
        reloaded = merged.eval()(**batch).logits[mask]
    err, moved = (reloaded - attached).abs().max(), (attached - plain).abs().max()
    assert err <= (1e-5 if dtype == "float32" else 0.05) * attached.abs().max() and moved > 10 * err, (err, moved)


def _corrupt_one_module(monkeypatch, how):
    """PEFT's Linear.merge made wrong for the second LoRA module merged."""
    from peft.tuners.lora import layer as lora_layer  # here: peft takes seconds to import

    real, calls = lora_layer.Linear.merge, {"n": 0}

    def merge_wrong(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] != 2:
            return real(self, *args, **kwargs)
        weight = self.get_base_layer().weight
        if how == "skipped":
            self.merged_adapters.extend(self.active_adapters)  # claims a merge, changes nothing
        elif how == "nan":
            real(self, *args, **kwargs)
            with torch.no_grad():
                weight[0, 0] = float("nan")  # compares False both ways: `ratio > 1` let it through
        else:
            real(self, *args, **kwargs)
            with torch.no_grad():
                weight[0, :4] += 0.05  # a few corrupted entries

    monkeypatch.setattr(lora_layer.Linear, "merge", merge_wrong)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("how", ["skipped", "corrupted", "nan"])
def test_a_wrong_merge_is_refused_naming_the_module(pair, tmp_path, monkeypatch, how, dtype):
    _corrupt_one_module(monkeypatch, how)
    cfg = _cfg(dtype, **{"merge.atol": 1e9})  # the logits check would let it through: the weight check may not
    with pytest.raises(ValueError, match=r"model\.layers\.0\.self_attn\.k_proj.*refusing to benchmark a wrong merge"):
        merge.merge_adapter(cfg, pair["base"], pair["adapter"], tmp_path / "m", pair["probes"])
    assert not (tmp_path / "m").exists()


def test_logits_check_still_guards_the_whole_model(pair, tmp_path):
    cfg = _cfg("float32", **{"merge.atol": 0.0, "merge.rtol": 0.0})
    cfg["merge"]["atol"] = -1.0  # no tolerance can pass (params refuse it; set after validation)
    with pytest.raises(ValueError, match="in the logits.*refusing to benchmark a wrong merge"):
        merge.merge_adapter(cfg, pair["base"], pair["adapter"], tmp_path / "m", pair["probes"])


def _damage_after_the_weight_check(monkeypatch, damage):
    """`damage(model)` between the per-weight check and the logits comparison: what only the
    logits can show (the output layer is no LoRA module, so no weight check looks at it)."""
    real = merge.merge_checked

    def checked_then_damaged(model, *args, **kwargs):
        out = real(model, *args, **kwargs)
        with torch.no_grad():
            damage(dict(model.named_parameters())["base_model.model.lm_head.weight"])
        return out

    monkeypatch.setattr(merge, "merge_checked", checked_then_damaged)


@pytest.mark.parametrize(
    "damage",
    [
        lambda w: w[5].add_(1.0),  # one token's logit moved: the largest difference shows it, the smallest not
        lambda w: w[5].fill_(float("nan")),  # NaN logits: `max_diff > tol` was False for them
    ],
    ids=["one_logit_moved", "nan_logits"],
)
def test_the_logits_check_sees_damage_no_weight_check_sees(pair, tmp_path, monkeypatch, damage):
    _damage_after_the_weight_check(monkeypatch, damage)
    cfg = _cfg("float32")  # the tiny profile's own tolerance
    assert (cfg["merge"]["atol"], cfg["merge"]["rtol"]) == (0.0001, 0.0)
    with pytest.raises(ValueError, match="in the logits.*refusing to benchmark a wrong merge"):
        merge.merge_adapter(cfg, pair["base"], pair["adapter"], tmp_path / "m", pair["probes"])
    assert not (tmp_path / "m").exists()
