import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Small enough for CI's two cores, still every stage real (used by the pipeline tests).
SMALL = {
    "data.n_train": 48,
    "data.n_test": 12,
    "models.base_pair.pretrain": {"epochs": 2, "batch_size": 16, "lr": 0.003, "max_length": 256},
    "train.target": {"epochs": 1, "batch_size": 8},
    "train.draft": {"epochs": 1, "batch_size": 8},
    "distill.max_tokens": 96,
    "benchmark.max_tokens": 96,
    "benchmark.bootstrap": 200,
}


@pytest.fixture
def home(tmp_path, monkeypatch):
    """Artifacts of a test go to a temporary home, never into the repository."""
    monkeypatch.setenv("WORKBOOK_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def params_copy(tmp_path, monkeypatch):
    """A writable copy of params/, for tests that need a broken layer."""
    dst = tmp_path / "params"
    shutil.copytree(REPO / "params", dst)
    monkeypatch.setenv("WORKBOOK_PARAMS", str(dst))
    return dst


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory):
    """A small base pair built once per test session (tokenizer, target, draft), plus the
    embedded easy problems it was pretrained on."""
    from lib import base_pair, io, params
    from lib.paths import EMBEDDED
    from lib.styles import SYSTEM_PROMPTS
    from lib.teachers import reference

    root = tmp_path_factory.mktemp("pair")
    rows = io.read_jsonl(EMBEDDED / "easy.jsonl").rows[:80]
    spec = dict(params.resolve("tiny", "cot", "easy")["models"]["base_pair"])
    spec["pretrain"] = {**spec["pretrain"], "epochs": 2, "batch_size": 16, "lr": 0.003, "max_length": 256}
    texts = list(SYSTEM_PROMPTS.values())
    for r in rows:
        texts += [r["question"], r["reference"], reference.rewrite(r, "cot"), reference.rewrite(r, "cod")]
    base_pair.build(root, spec, texts, [(r["question"], r["reference"]) for r in rows], seed=0)
    return {
        "root": root,
        "target": str(root / "target"),
        "draft": str(root / "draft"),
        "tokenizer": str(root / "tokenizer"),
        "rows": rows,
    }


@pytest.fixture(scope="session")
def local_hub(tmp_path_factory):
    """The Hub stand-in (tests/local_hub.py) serving the repositories `full` names."""
    from local_hub import LocalHub, build_repos

    with LocalHub(build_repos(tmp_path_factory.mktemp("hub-repos"))) as hub:
        yield hub


@pytest.fixture
def hub_env(local_hub, tmp_path, home):
    """Environment of a process that talks to the local hub with an empty cache: the only
    difference from a networked run of `full`."""
    env = {**os.environ, **local_hub.env(tmp_path / "hf-home"), "PYTHONPATH": str(REPO)}
    env.pop("HF_TOKEN", None)
    return {"env": env, "hub": local_hub}


# --- `make test-fast` skips what trains models or starts engines: the slow marker must be true -----
# Fixtures that train models (their closure is in item.fixturenames, so `bench` -> tiny_pair counts).
TRAINING_FIXTURES = {"tiny_pair"}
# Stages whose notebooks pretrain, train, start an engine or load models to merge (01 with the
# reference teacher and 07 do none of these).
HEAVY_STAGES = {
    "00_base_models",
    "02_train_target",
    "03_distill",
    "04_train_draft",
    "05_merge",
    "05b_eagle3",
    "06_benchmark",
}


def pytest_collection_modifyitems(config, items):
    unmarked = [
        i.nodeid
        for i in items
        if i.get_closest_marker("slow") is None and TRAINING_FIXTURES & set(getattr(i, "fixturenames", ()))
    ]
    if unmarked:
        raise pytest.UsageError(
            f"not marked slow but build models ({', '.join(sorted(TRAINING_FIXTURES))}): " + ", ".join(unmarked)
        )


@pytest.fixture(autouse=True)
def _heavy_work_needs_the_slow_marker(request, monkeypatch):
    """In a test not marked slow, pretraining, LoRA training, a real vLLM engine, the
    transformers cross-check or a heavy stage through the runner fail the test, naming the
    call. A test's own stand-in (monkeypatched after this fixture) still wins."""
    if request.node.get_closest_marker("slow") is not None:
        return
    from lib import base_pair, crosscheck, eagle3, engine, runner, train

    def refuse(what):
        pytest.fail(
            f"{what} in a test not marked slow: mark it @pytest.mark.slow "
            "(`make test-fast` promises to skip tests that train models or start engines)",
            pytrace=False,
        )

    def guarded(obj, name, check=lambda *a, **k: True):
        real = getattr(obj, name)

        def call(*args, **kwargs):
            if check(*args, **kwargs):
                refuse(f"{obj.__name__}.{name}")
            return real(*args, **kwargs)

        monkeypatch.setattr(obj, name, call)

    guarded(base_pair, "pretrain")
    guarded(train, "train_lora")
    guarded(eagle3, "train_on_cpu")
    guarded(crosscheck, "acceptance")
    # the real vLLM only: a test's stand-in module (no __file__) starts nothing
    guarded(
        engine,
        "start",
        lambda *a, **k: getattr(sys.modules.get("vllm"), "__file__", None) is not None or "vllm" not in sys.modules,
    )
    guarded(runner, "execute", lambda stage, *a, **k: stage in HEAVY_STAGES)
