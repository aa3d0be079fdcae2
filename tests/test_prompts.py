"""The chat template's `enable_thinking`, a parameter per style: the study's untrained
baseline (`full`, style `base`) thinks, the fine-tuned styles do not."""

import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from lib import benchmark, models, params
from lib.paths import RunPaths

# The parts of Qwen3's chat template that matter here (the generation prompt is verbatim).
QWEN3_STYLE_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)


@pytest.fixture
def qwen3_style_tokenizer():
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({"<unk>": 0}, unk_token="<unk>")))
    tok.chat_template = QWEN3_STYLE_TEMPLATE
    return tok


def test_prompt_differs_with_thinking(qwen3_style_tokenizer):
    off = models.prompt_text(qwen3_style_tokenizer, "base", "What is 2+2?", thinking=False)
    on = models.prompt_text(qwen3_style_tokenizer, "base", "What is 2+2?", thinking=True)
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert on.endswith("<|im_start|>assistant\n") and "<think>" not in on


def test_full_profile_thinks_for_the_untrained_baseline_only():
    assert models.enable_thinking(params.resolve("full", "base", "easy"))
    for style in ("cot", "cod"):
        assert not models.enable_thinking(params.resolve("full", style, "easy"))
    for style in ("base", "cot", "cod"):
        assert not models.enable_thinking(params.resolve("tiny", style, "easy"))
    with pytest.raises(params.ParamsError, match="prompt.enable_thinking.cof"):
        params.resolve("tiny", "cot", "easy", {"prompt.enable_thinking": {"cof": True}})


@pytest.mark.parametrize("profile, thinks", [("full", True), ("tiny", False)])
def test_benchmark_prompts_follow_the_style_parameter(home, monkeypatch, qwen3_style_tokenizer, profile, thinks):
    cfg = params.resolve(profile, "base", "easy", {"benchmark.method": "ngram"})
    seen = {}

    class Stop(Exception):
        pass

    def run_pass(cfg, name, model, prompts, problems, **kwargs):
        seen["prompts"] = prompts
        raise Stop

    monkeypatch.setattr(benchmark, "pair_for_run", lambda cfg, rp: {"target": "t", "draft": "d"})
    monkeypatch.setattr(benchmark, "test_problems", lambda cfg, rp: [{"id": "q1", "question": "What is 2+2?"}])
    monkeypatch.setattr(models, "load_tokenizer", lambda name, revision=None: qwen3_style_tokenizer)
    monkeypatch.setattr(benchmark, "run_pass", run_pass)
    with pytest.raises(Stop):
        benchmark.run(cfg, RunPaths(profile, "base", "easy"))
    assert ("<think>" not in seen["prompts"][0]) == thinks


def test_tables_show_thinking():
    metrics = {
        "enable_thinking": True,
        "passes": {
            name: {
                "n": 1,
                "accuracy": 1.0,
                "accuracy_ci95": [1.0, 1.0],
                "throughput_tok_s": 1.0,
                "wall_s": 1.0,
                "output_tokens_mean": 5.0,
                "ttft_s": {"mean": 0.1},
                "tpot_s": {"mean": 0.1},
                "spec": None,
                "peak_memory_mb": 1.0,
                "peak_gpu_memory_mb": None,
            }
            for name in ("baseline", "speculative")
        },
    }
    assert benchmark.pass_table(metrics)["enable_thinking"].tolist() == [True, True]
    assert (
        benchmark.headline(
            {
                **metrics,
                "comparison": {"speedup_throughput": 1.0, "predicted_speedup": None, "identical_output_share": 1.0},
            }
        )["enable_thinking"]
        is True
    )
