"""The `full` profile end to end, as a researcher runs it: `python -m lib run --profile full`
against hub-shaped repositories (tests/local_hub.py, through `HF_ENDPOINT`) and the Gemini
Batch API stand-in (tests/fake_gemini.py, through `data.gemini.base_url`).

Every stage runs with the profile's own structure — hub datasets, Gemini teacher, LoRA SFT of
the hub target, distillation, draft SFT, merge, a benchmark whose engines run out of the
kernel's process (`engine.in_process: false` stays), the analysis. Overridden, and only these:
- the device: `cpu`;
- counts and sizes: problems, repetitions, epochs, tokens, batch sizes, model length, KV cache, bootstrap;
- what this CPU cannot do: `models.dtype: float32` (no AVX512-BF16 on CI's CPUs),
  `optim: adamw_torch` (the profile's `adamw_8bit` is bitsandbytes, a GPU package not in the CPU
  environment), `engine.enforce_eager: true` (CUDA graphs / compilation do not apply on CPU),
  `engine.gpu_memory_utilization` (on CPU: the share of host RAM vLLM may take),
  `train.report_to: none` (the profile's W&B: wandb is in the GPU environment only, and no account here);
- the gate mode (`warn`: random tiny models cannot pass the study's gates);
- where the two services are, and the teacher's polling intervals (seconds, not minutes).
"""

import json
import subprocess
import sys
import time

import pytest

from conftest import REPO
from fake_gemini import FakeGemini, reference_teacher

KEY = "test-key-full"


def overrides(gemini_url: str) -> dict:
    step = {"epochs": 1, "batch_size": 8, "grad_accum": 1, "optim": "adamw_torch"}
    return {
        "device": "cpu",
        "models.dtype": "float32",
        "data.n_train": 24,
        "data.n_test": 6,
        "data.gemini": {
            "base_url": gemini_url,
            "poll_interval_s": 0.05,
            "poll_max_interval_s": 0.1,
            "poll_timeout_s": 120.0,
            "retry_initial_delay_s": 0.01,
        },
        "train.max_length": 384,
        "train.target": step,
        "train.draft": step,
        "train.save_steps": 50,
        "train.report_to": "none",
        "distill.gate_mode": "warn",
        "distill.max_tokens": 16,
        "distill.batch_size": 32,
        "distill.max_num_seqs": 16,
        "benchmark.max_tokens": 16,
        "benchmark.n_samples": 4,
        "benchmark.repetitions": 1,  # the profile's 4 start 8 engines out of process; the tiny grid alternates 2
        "benchmark.max_num_seqs": 8,
        "benchmark.bootstrap": 100,
        "benchmark.crosscheck_samples": 2,
        "engine.max_model_len": 512,
        "engine.kv_cache_gb": 1,
        "engine.gpu_memory_utilization": 0.3,
        "engine.enforce_eager": True,
    }


def _run(env, gemini_url: str, *args: str, styles=("cod",), **extra) -> tuple[subprocess.CompletedProcess, float]:
    sets = {**overrides(gemini_url), **extra}
    cmd = [
        sys.executable,
        "-m",
        "lib",
        "run",
        "--profile",
        "full",
        "--styles",
        *styles,
        *args,
        "--set",
        *[f"{k}={json.dumps(v)}" for k, v in sets.items()],
    ]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    return out, time.perf_counter() - t0


def _figures(home, run: str) -> dict:
    folder = home / "data" / "full" / "runs" / run / "figures"
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}


MOVED = ("Qwen/Qwen3-14B", "Qwen/Qwen3-0.6B", "openai/gsm8k")


@pytest.mark.slow
def test_full_profile_runs_end_to_end_against_the_local_hub_and_fake_gemini(hub_env, home):
    """Every stage for GSM8K (`easy`), with the Hub's repositories moved to new commits after
    its target was trained: every later stage loads the commits 00 and 01 recorded. The MATH path (`medium`: three subject
    configs joined, `\\boxed{}` solutions, questions shared by MATH's train and test splits)
    through its data stage, which is all that differs from `easy` after it."""
    with hub_env["hub"].copy() as hub, FakeGemini(reference_teacher(hub.references()), api_key=KEY) as gemini:
        env = {**hub_env["env"], **hub.env(home / "hf-home"), "GEMINI_API_KEY": KEY, "WORKBOOK_HOME": str(home)}
        env.pop("GOOGLE_API_KEY", None)
        stages = ("00_base_models", "01_generate_data", "02_train_target")
        out, wall = _run(env, gemini.url, "--scenarios", "easy", "--stages", *stages)
        assert out.returncode == 0, f"`full` failed after {wall:.0f} s:\n{out.stdout[-6000:]}{out.stderr[-6000:]}"
        kinds = {"openai/gsm8k": "dataset"}
        moves = {repo: hub.repo(repo, kinds.get(repo, "model")).move("NOTICE", b"a later commit\n") for repo in MOVED}
        n_before = len(hub.calls)
        out, rest = _run(env, gemini.url, "--scenarios", "easy")
        assert out.returncode == 0, f"`full` failed after the move:\n{out.stdout[-6000:]}{out.stderr[-6000:]}"
        wall += rest
        after = [p for _, p, _ in hub.calls[n_before:]]
        math, math_wall = _run(
            env, gemini.url, "--scenarios", "medium", "--stages", "01_generate_data", **{"data.n_test": 0}
        )  # the whole test split, so the shared questions are in it
        assert math.returncode == 0, f"`full` medium failed:\n{math.stdout[-6000:]}{math.stderr[-6000:]}"
        gemini_paths = [c["path"] for c in gemini.calls]

    easy = _figures(home, "cod_easy")
    stages = ("01_generate_data", "02_train_target", "03_distill", "04_train_draft", "05_merge", "06_benchmark")
    assert set(stages) <= set(easy), sorted(easy)
    assert easy["01_generate_data"]["kept"] == easy["01_generate_data"]["n_train"] > 0  # Gemini taught every problem
    bench = json.loads((home / "data" / "full" / "runs" / "cod_easy" / "metrics.json").read_text())
    assert set(bench["passes"]) == {"baseline", "speculative"}
    assert bench["models"]["target"].endswith("target/cod_easy")  # the merged hub target
    assert (home / "data" / "full" / "runs" / "_profile" / "figures" / "07_analysis.json").exists()

    medium = _figures(home, "cod_medium")["01_generate_data"]
    assert medium["kept"] > 0 and medium["shared_dropped"] >= 2  # the stand-in repeats some per subject
    assert all(i.startswith("hub-") for i in medium["shared_ids"])

    # every model and dataset came through the Hub's own HTTP API, the teacher through v1beta
    paths = [p for _, p, _ in hub.calls]
    for repo in ("Qwen/Qwen3-14B", "Qwen/Qwen3-0.6B"):
        assert any(p.startswith(f"/{repo}/resolve/") and p.endswith(".safetensors") for p in paths), repo
    for repo in ("openai/gsm8k", "EleutherAI/hendrycks_math"):
        assert any(p.startswith(f"/datasets/{repo}/resolve/") and p.endswith(".parquet") for p in paths), repo
    assert any(p.startswith("/v1beta/") and p.endswith(":batchGenerateContent") for p in gemini_paths)

    # moved after 02: every later stage loaded the commits recorded before, none of the new heads
    for repo, (_old, new) in moves.items():
        assert not [p for p in after if new in p or f"{repo}/resolve/main/" in p], repo
    assert any(f"/Qwen/Qwen3-0.6B/resolve/{moves['Qwen/Qwen3-0.6B'][0]}/" in p for p in after)  # draft: first at 04
    pinned = _figures(home, "_profile")["00_base_models"]["revisions"]
    assert {r: e["sha"] for r, e in pinned.items()} == {
        "target": moves["Qwen/Qwen3-14B"][0],
        "draft": moves["Qwen/Qwen3-0.6B"][0],
    }
    for run, stage in (("cod_easy", "06_benchmark"), ("cod_easy", "04_train_draft")):
        made_from = _figures(home, run)[stage]["settings"]["hub"]
        assert made_from["model.target"]["sha"] == moves["Qwen/Qwen3-14B"][0], (run, stage)
    data_from = _figures(home, "cod_easy")["01_generate_data"]["settings"]["hub"]["dataset"]
    assert data_from["sha"] == moves["openai/gsm8k"][0]

    print(f"full rehearsal: easy, every stage {wall:.0f} s; medium, data stage {math_wall:.0f} s")


_STRICT = """
import json
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
api = HfApi()
seen = {}
for name, call in {
    "repo": lambda: api.model_info("Qwen/Qwen3-15B"),
    "dataset_as_model": lambda: api.model_info("openai/gsm8k"),
    "revision": lambda: hf_hub_download("Qwen/Qwen3-0.6B", "config.json", revision="v9"),
    "unknown_sha": lambda: hf_hub_download("Qwen/Qwen3-0.6B", "config.json", revision="0" * 40),
    "unknown_sha_info": lambda: api.model_info("Qwen/Qwen3-0.6B", revision="0" * 40),
    "unknown_sha_dataset": lambda: api.dataset_info("openai/gsm8k", revision="0" * 40),
    "file": lambda: hf_hub_download("Qwen/Qwen3-0.6B", "pytorch_model.bin"),
    "parquet_branch": lambda: api.list_repo_files("openai/gsm8k", repo_type="dataset", revision="refs/convert/parquet"),
}.items():
    try:
        call()
        seen[name] = "ok"
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as e:
        seen[name] = type(e).__name__
info = api.dataset_info("EleutherAI/hendrycks_math")
seen["configs"] = [c["config_name"] for c in info.card_data["configs"]]
seen["files"] = sorted(api.list_repo_files("Qwen/Qwen3-14B"))
print(json.dumps(seen))
"""


def test_local_hub_is_as_strict_as_the_hub(hub_env):
    """Through huggingface_hub itself: unknown repos, revisions and files fail with the Hub's
    own errors, and the repositories are laid out as the real ones."""
    out = subprocess.run(
        [sys.executable, "-c", _STRICT], env=hub_env["env"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["repo"] == seen["dataset_as_model"] == "RepositoryNotFoundError"
    assert seen["revision"] == seen["parquet_branch"] == "RevisionNotFoundError"
    # a pinned commit the repository does not have: refused as the Hub refuses it, never served as main
    assert seen["unknown_sha"] == seen["unknown_sha_info"] == seen["unknown_sha_dataset"] == "RevisionNotFoundError"
    assert seen["file"] == "RemoteEntryNotFoundError"  # huggingface_hub 1.x: an EntryNotFoundError
    assert seen["configs"] == ["algebra", "intermediate_algebra", "precalculus"]
    files = seen["files"]
    assert {
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
        "merges.txt",
        "model.safetensors.index.json",
    } <= set(files)
    assert sum(f.startswith("model-0") and f.endswith(".safetensors") for f in files) >= 2
