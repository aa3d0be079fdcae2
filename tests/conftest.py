import os
import shutil
import sys
from pathlib import Path

import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parent.parent

# As the runner does (lib/runner.py): jsonschema's "iri" format checker would build a Lark
# grammar at the first import of nbformat, papermill or nbconvert, 2.4 s per test process.
sys.modules.setdefault("rfc3987_syntax", None)


def _keep_worker_to_its_cores() -> None:
    """Under pytest-xdist, each worker process keeps to its own share of the cores (worker i of
    n: every n-th core from the i-th), and so does every kernel, engine and run it starts: each
    sizes its threads by its affinity (`device.usable_cpus`, OpenMP, vLLM's binding). Unshared,
    each worker's OpenMP threads assume every core, and two workers oversubscribe them."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if not worker.startswith("gw") or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cores, i = sorted(os.sched_getaffinity(0)), int(worker[2:])
    os.sched_setaffinity(0, cores[i % count :: count] or [cores[i % len(cores)]])  # more workers than cores: one each


_keep_worker_to_its_cores()


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


# A folder `make test` makes for its two pytest runs (the tests beside each other, then those that
# start Ray, alone), removed after both: what the first built, the second reads (the tiny grid
# that the cluster's grid is compared with). Fresh for each `make test`, never a leftover.
WORLDS_ENV = "TEST_WORLDS"


def shared_build(tmp_path_factory, name: str, build) -> Path:
    """`build(folder)` once per pytest run, also when pytest-xdist runs it in several worker
    processes (and once per `make test`, in `WORLDS_ENV`): the first worker to ask builds under
    a lock, the others wait and read the same folder. Only for what tests read and never change."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get(WORLDS_ENV):
        base = Path(os.environ[WORLDS_ENV])
    elif os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's temporary root, shared by its workers
    folder, done = base / name, base / f"{name}.done"
    with FileLock(str(base / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed in another worker
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory):
    """A small base pair built once per test run (tokenizer, target, draft), plus the
    embedded easy problems it was pretrained on."""
    from lib import base_pair, io, params
    from lib.paths import EMBEDDED
    from lib.styles import SYSTEM_PROMPTS
    from lib.teachers import reference

    rows = io.read_jsonl(EMBEDDED / "easy.jsonl").rows[:80]
    spec = dict(params.resolve("tiny", "cot", "easy")["models"]["base_pair"])
    spec["pretrain"] = {**spec["pretrain"], "epochs": 2, "batch_size": 16, "lr": 0.003, "max_length": 256}
    texts = list(SYSTEM_PROMPTS.values())
    for r in rows:
        texts += [r["question"], r["reference"], reference.rewrite(r, "cot"), reference.rewrite(r, "cod")]
    root = shared_build(
        tmp_path_factory,
        "tiny-pair",
        lambda folder: base_pair.build(folder, spec, texts, [(r["question"], r["reference"]) for r in rows], seed=0),
    )
    return {
        "root": root,
        "target": str(root / "target"),
        "draft": str(root / "draft"),
        "tokenizer": str(root / "tokenizer"),
        "rows": rows,
    }


@pytest.fixture(scope="session")
def grid_pair(tmp_path_factory):
    """The base pair as stage 00 of `tiny` makes it with `SMALL`'s settings (its corpus: the
    scenarios' training problems; its seed), built once per test run: a grid given it (copied to
    `paths.RunPaths(...).base_models`) runs 00, which finds it complete and keeps it. `tiny_pair`
    is pretrained on other texts with another seed: 00 would build it again."""
    from lib import base_pair

    def build(home):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("WORKBOOK_HOME", str(home))
            base_pair.ensure("tiny", SMALL)

    return shared_build(tmp_path_factory, "grid-pair", build) / "data" / "tiny" / "models" / "base"


# The finished tiny grid that tests read (tests/test_grid.py, tests/test_replicates.py, and
# tests/test_cluster.py, which makes part of it again on a simulated cluster): the base style, CoT
# and CoD on easy, two trainings of each trained style; K 3, not the profile's 5 (the recorded K
# must be the one asked for); a cross-check of 2 prompts; checkpoints deleted after the benchmark
# (merge.delete_after_benchmark), the adapters kept. On one core, one thread per run, whatever
# the machine: the cluster's chains have one CPU each, and other thread counts sum floats in
# another order.
TINY_GRID = {
    **SMALL,
    "grid.replicates": 2,
    "benchmark.k": 3,
    "benchmark.repetitions": 2,
    "benchmark.crosscheck_samples": 2,
    "merge.delete_after_benchmark": True,
}


@pytest.fixture(scope="session")
def tiny_grid(tmp_path_factory, grid_pair):
    """`TINY_GRID` run once per pytest run through the runner, as `make demo` runs it, on the
    session's `grid_pair` (notebook 00 still runs and finds it complete): its home, its outcomes
    (`runner.GridResult`) and what it printed. Tests only read it."""
    import contextlib
    import io as stdio
    import json

    from lib import paths, runner

    def build(home):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("WORKBOOK_HOME", str(home))
            shutil.copytree(grid_pair, paths.RunPaths("tiny", "base", "easy").base_models)
            terminal, cores = stdio.StringIO(), os.sched_getaffinity(0)
            os.sched_setaffinity(0, [min(cores)])
            try:
                with contextlib.redirect_stdout(terminal):
                    result = runner.run_grid("tiny", ["base", "cot", "cod"], ["easy"], None, TINY_GRID)
            finally:
                os.sched_setaffinity(0, cores)
            ran = {"outcomes": [vars(o) for o in result.outcomes], "terminal": terminal.getvalue()}
            (home / "tiny_grid.json").write_text(json.dumps(ran))

    home = shared_build(tmp_path_factory, "tiny-grid", build)
    ran = json.loads((home / "tiny_grid.json").read_text())
    result = runner.GridResult([runner.Outcome(**o) for o in ran["outcomes"]])
    return {"home": home, "result": result, "terminal": ran["terminal"]}


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


# --- `make test-fast` skips what trains models, starts engines or runs notebooks: the slow marker
# must be true. Fixtures that train models (their closure is in item.fixturenames, so `bench` ->
# tiny_pair counts).
TRAINING_FIXTURES = {"tiny_pair", "grid_pair", "tiny_grid"}


# The files whose slow tests take longest (they build their own worlds), first: pytest-xdist
# hands each worker whole files in this order (`--no-loadscope-reorder`), and a long file started
# last runs alone at the end (seen: the 19-minute `full` rehearsal queued behind the 34-minute
# replicates grid on one worker). Longest first, by `--durations` on 2 cores. test_replicates
# builds the shared grid (`tiny_grid`); test_grid only reads it, so it goes last: a worker that
# reached it early would wait idle on the grid's lock.
LONGEST_FIRST = [
    "test_replicates.py",
    "test_full_profile.py",
    "test_eagle3.py",
    "test_tiny_models.py",
    "test_benchmark.py",
    "test_runner.py",
    "test_hub_revisions.py",
]
LAST = ["test_grid.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)} | {name: len(LONGEST_FIRST) + 1 for name in LAST}
    items.sort(key=lambda i: rank.get(i.path.name, len(LONGEST_FIRST)))  # stable: a file's tests keep their order
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
    transformers cross-check or a notebook executed in a Jupyter kernel (seconds each, whatever
    the stage) fail the test, naming the call. A test's own stand-in (monkeypatched after this
    fixture) still wins."""
    if request.node.get_closest_marker("slow") is not None:
        return
    from lib import base_pair, crosscheck, eagle3, engine, runner, train

    def refuse(what):
        pytest.fail(
            f"{what} in a test not marked slow: mark it @pytest.mark.slow "
            "(`make test-fast` promises to skip tests that train models, start engines or run notebooks)",
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
    guarded(runner, "execute")
    if "papermill" in sys.modules:  # imported by the test module: its own notebook runs count too
        guarded(sys.modules["papermill"], "execute_notebook")
