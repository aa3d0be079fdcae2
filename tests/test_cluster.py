"""The grid placed by Ray over a simulated cluster (`ray.cluster_utils.Cluster`: a head with no
CPUs and two nodes of one declared GPU each, all on loopback, in this machine): the chains run on
both nodes with their own CUDA_VISIBLE_DEVICES and make what the same grid makes on one host (the
session's tiny grid, `tiny_grid`, of which the cluster runs two chains); a
chain whose node is lost ends failed, naming the node, and the next grid resumes it; a chain no
node can hold is refused before anything is submitted."""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO, SMALL, TINY_GRID
from lib import io, record, runner

pytestmark = [
    pytest.mark.slow,
    pytest.mark.ray,
]
# Ray reads this when imported: then every node of a simulated cluster, and the driver, advertise
# 127.0.0.1 instead of the machine's interface address, which tests may not use (ENVIRONMENT.md).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
RAY = pytest.importorskip("ray")
# One GPU per tiny run (a declared GPU is a count: no device needed), one CPU (its torch threads).
GRID = {**SMALL, "benchmark.k": 3, "benchmark.crosscheck_samples": 2, "grid.gpus_per_run": 1}
# The cluster's grid: the session's tiny grid (one thread per run, the same arithmetic), its base
# style and CoD's first training.
COMPARED = {**TINY_GRID, "grid.gpus_per_run": 1}
STYLES, SCENARIO, REPLICATES = ["base", "cod"], "easy", [0]
LOOPBACK = dict(node_ip_address="127.0.0.1", object_store_memory=80 * 2**20)
# Where and when, not what: left out when the cluster's grid is compared with the one host's
# (timings and what is derived from them; the records' own fingerprints, which hash the
# timings in metrics.json; the findings' sentences, sections and answer table, which quote timings).
PLACE_OR_TIME = re.compile(
    r"(^|_)(s|seconds|time|times|wall|at|host|pid|node|gpus|started|finished|since|"
    r"per_s|tps|rate_s|cpu|cpus|rss|peak|memory|mb|gb|speedup|occupancy|slowdown|ratio|"
    r"step|steps_s|latency|ttft|tpot|throughput|prefill|decode|busy|ceiling|r|predicted|"
    r"floor|cost|passes|repetitions|warmup|lone|tflops|mfu|settings|findings|sections|answer|ran)($|_)"
)


@pytest.fixture(scope="module")
def sim():
    from ray.cluster_utils import Cluster

    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # as the variable above says, should Ray have been imported before it
    cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=0, include_dashboard=False, **LOOPBACK))
    nodes = [cluster.add_node(num_cpus=1, num_gpus=1, **LOOPBACK) for _ in range(2)]
    cluster.wait_for_nodes(timeout=180)
    RAY.init(address=cluster.address, log_to_driver=False)
    yield {"cluster": cluster, "nodes": nodes}
    RAY.shutdown()
    cluster.shutdown()


def _home(tmp_path_factory, grid_pair, name):
    home = tmp_path_factory.mktemp(name)
    shutil.copytree(grid_pair, home / "data" / "tiny" / "models" / "base")  # the session's pair, in place
    return home


@pytest.fixture(scope="module")
def grids(tmp_path_factory, grid_pair, tiny_grid, sim):
    """Two chains of the session's tiny grid (made on one host) made again on the simulated
    cluster, with the base pair and the analysis."""
    home = _home(tmp_path_factory, grid_pair, "cluster")
    shown = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBOOK_HOME", str(home))
        t0 = time.perf_counter()
        result = runner.run_grid(
            "tiny",
            styles=STYLES,
            scenarios=[SCENARIO],
            overrides=COMPARED,
            replicates=REPLICATES,
            log=shown.append,
            cluster="auto",
        )
        cluster = {
            "home": home,
            "result": result,
            "shown": shown,
            "wall_s": time.perf_counter() - t0,
            "status": record.load_status("tiny"),
        }
    return {"one_host": {"home": tiny_grid["home"], "result": tiny_grid["result"]}, "cluster": cluster}


def _comparable(value, home):
    if isinstance(value, dict):
        return {k: _comparable(v, home) for k, v in value.items() if not PLACE_OR_TIME.search(k)}
    if isinstance(value, list):
        return [_comparable(v, home) for v in value]
    return value.replace(str(home), "<home>") if isinstance(value, str) else value


def _made(home):
    """What the runs made: every data file and every adapter's and merged model's weights (by
    content), and every stage's figures and metrics (less place and time)."""
    data = home / "data" / "tiny"
    files = {
        str(p.relative_to(data)): hashlib.sha256(p.read_bytes()).hexdigest()
        for pattern in ("**/*.jsonl", "models/adapters/**/*.safetensors", "models/merged/**/*.safetensors")
        for p in sorted(data.glob(pattern))
    }
    figures = {
        str(p.relative_to(data)): _comparable(io.read_json(p), home)
        for pattern in ("runs/*/figures/*.json", "runs/*/metrics.json")
        for p in sorted(data.glob(pattern))
    }
    return files, figures


def test_the_chains_ran_on_both_nodes_each_with_its_own_gpu(grids, sim):
    run = grids["cluster"]
    assert not run["result"].failed, run["result"].summary()
    status = run["status"]
    placed = {f"{s}_{SCENARIO}": status[f"{s}_{SCENARIO}"] for s in STYLES}
    node_ids = {n.node_id for n in sim["nodes"]}
    for label, stages in placed.items():
        assert {stages[s]["node"] for s in runner.stages_of(label.split("_")[0])} <= node_ids, label
        assert {stages[s]["gpus"] for s in runner.stages_of(label.split("_")[0])} == {"0"}, label  # Ray's, per task
    assert {stages["01_generate_data"]["node"] for stages in placed.values()} == node_ids  # one chain per node
    for style in STYLES:  # the stage's own record says it too
        ran_on = io.read_json(
            run["home"] / "data" / "tiny" / "runs" / f"{style}_{SCENARIO}" / "figures" / "06_benchmark.json"
        )["ran_on"]
        assert ran_on["node"] in node_ids and ran_on["gpus"] == "0", ran_on
    assert "node" not in status["_profile"]["00_base_models"]  # the profile-wide stages ran in the driver
    assert any(m.startswith("ray: 3 node(s), 2 GPU(s), 2 CPU(s)") for m in run["shown"]), run["shown"][:5]
    assert any("cod_easy 06_benchmark finished" in m for m in run["shown"])  # relayed from the chain's log
    print(f"simulated cluster: {run['wall_s']:.0f} s")


def test_the_cluster_makes_what_one_host_makes(grids):
    assert not grids["one_host"]["result"].failed, grids["one_host"]["result"].summary()
    files_c, figures_c = _made(grids["cluster"]["home"])
    # the one host's grid, less the runs the cluster did not make (CoT, the second trainings)
    others = {o.run for o in grids["one_host"]["result"].outcomes} - {
        o.run for o in grids["cluster"]["result"].outcomes
    }
    assert others == {"cot_easy", "cot_easy_r1", "cod_easy_r1"}, others
    other = re.compile(rf"(^|/)({'|'.join(sorted(others))})(/|\.|$)")
    files_1, figures_1 = (
        {k: v for k, v in made.items() if not other.search(k)} for made in _made(grids["one_host"]["home"])
    )
    assert len(files_1) == 16 and len(figures_1) == 12  # 12 problems, teacher, distilled, 2 adapters; 10 + 2
    assert any("adapters/target/cod_easy" in f for f in files_1) and any("distilled" in f for f in files_1)
    assert files_c == files_1
    assert set(figures_c) == set(figures_1)
    analysis = "runs/_profile/figures/07_analysis.json"  # of every run each grid made: not the same runs
    for name in set(figures_1) - {analysis}:
        assert figures_c[name] == figures_1[name], name


def test_a_chain_no_node_can_hold_is_refused_before_anything_is_submitted(grids, sim, monkeypatch):
    monkeypatch.setenv("WORKBOOK_HOME", str(grids["cluster"]["home"]))
    submitted = []
    monkeypatch.setattr(runner.ray_cluster, "place", lambda *a, **k: submitted.append(a) or {})
    with pytest.raises(
        runner.params.ParamsError,
        match=r"cot_easy needs 2 GPU\(s\) \(grid.gpus_per_run=2\), but no node of the cluster has "
        r"more than 1 \(3 node\(s\)\); nothing was submitted",
    ):
        runner.run_grid(
            "tiny",
            styles=["cot"],
            scenarios=[SCENARIO],
            overrides={**GRID, "grid.gpus_per_run": 2},
            cluster="auto",
            log=lambda m: None,
        )
    assert submitted == []


def test_a_chain_handed_over_after_another_starts_when_that_one_ends(sim, tmp_path):
    """`cluster.place(..., after=...)`: a later replicate waits for its own first replicate only;
    a third chain with nothing to wait for runs beside the first."""
    from lib import cluster

    def chain(name, seconds):
        code = (
            f"import time, pathlib; p = pathlib.Path({str(tmp_path)!r}); (p / '{name}.start').write_text(str(time.time())); "
            f"time.sleep({seconds}); (p / '{name}.end').write_text(str(time.time()))"
        )
        return cluster.Chain(
            name=name,
            command=[sys.executable, "-c", code],
            gpus=1,
            cpus=1,
            report_dir=tmp_path / name,
            env=cluster.chain_env(1),
        )

    ended = cluster.place([chain("a", 8), chain("b", 0), chain("a_r1", 0)], lambda m: None, after={"a_r1": "a"})
    assert {n: e["code"] for n, e in ended.items()} == {"a": 0, "b": 0, "a_r1": 0}
    at = {p.name: float(p.read_text()) for p in tmp_path.glob("*.*") if p.suffix in (".start", ".end")}
    assert at["a_r1.start"] >= at["a.end"]  # after its own first replicate
    assert at["b.start"] < at["a.end"]  # the other ran beside it


def _wait_running(stage: str, timeout: float = 600) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        entry = record.load_status("tiny").get("cot_easy", {}).get(stage, {})
        if entry.get("status") == "running" and entry.get("node"):
            return entry
        time.sleep(0.2)
    raise AssertionError(f"cot_easy {stage} never ran")


def test_ctrl_c_on_the_driver_cancels_the_chains_and_each_records_its_stage_interrupted(grids, sim, monkeypatch):
    """The driver in its own process, joined to the cluster by its address, as a person starts it."""
    home = grids["cluster"]["home"]
    monkeypatch.setenv("WORKBOOK_HOME", str(home))
    cmd = [
        sys.executable,
        "-m",
        "lib",
        "run",
        "--profile",
        "tiny",
        "--styles",
        "cot",
        "--scenarios",
        SCENARIO,
        "--stages",
        "01_generate_data",
        "02_train_target",
        "--cluster",
        sim["cluster"].address,
        "--set",
        *[f"{k}={json.dumps(v)}" for k, v in GRID.items()],
    ]

    # SIGINT as at a terminal, even where this test runs with it ignored (a background job) or
    # blocked: a child inherits the forking thread's signal mask, and with SIGINT blocked the driver
    # never saw the Ctrl-C and ran to the end (once in a CI run)
    def terminal_sigint():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    driver = subprocess.Popen(
        cmd,
        cwd=str(REPO),
        env={**os.environ, "PYTHONPATH": str(REPO)},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=terminal_sigint,
    )
    try:
        _wait_running("02_train_target")
        driver.send_signal(signal.SIGINT)
        out, _ = driver.communicate(timeout=300)
    finally:
        driver.kill()
    assert driver.returncode == 130, out[-3000:]
    assert "INTERRUPTED cot_easy / 02_train_target" in out, out[-3000:]
    status = record.load_status("tiny")["cot_easy"]
    assert status["01_generate_data"]["status"] == "finished"
    assert status["02_train_target"]["status"] == "interrupted" and status["02_train_target"]["node"]


def test_a_chain_whose_node_is_lost_fails_naming_it_and_is_resumed(grids, sim, monkeypatch):
    """Last in this module: it removes a node. Another learning rate, so that 02 runs afresh."""
    home = grids["cluster"]["home"]
    monkeypatch.setenv("WORKBOOK_HOME", str(home))
    stages, over = ["01_generate_data", "02_train_target", "03_distill"], {**GRID, "train.target.lr": 0.002}
    ended = {}
    grid = threading.Thread(
        target=lambda: ended.setdefault(
            "result",
            runner.run_grid(
                "tiny",
                styles=["cot"],
                scenarios=[SCENARIO],
                stages=stages,
                overrides=over,
                cluster="auto",
                log=lambda m: None,
            ),
        )
    )
    grid.start()
    entry = _wait_running("02_train_target")
    lost = next(n for n in sim["nodes"] if n.node_id == entry["node"])
    sim["cluster"].remove_node(lost)
    grid.join(timeout=300)
    assert not grid.is_alive()
    result = ended["result"]
    [failed] = result.failed
    assert (failed.run, failed.stage, failed.status) == ("cot_easy", "02_train_target", "failed")
    assert f"node {lost.node_id}" in failed.error and "was lost while it ran" in failed.error, failed.error
    assert ("cot_easy", "03_distill", "skipped") in [(o.run, o.stage, o.status) for o in result.outcomes]
    entry = record.load_status("tiny")["cot_easy"]["02_train_target"]
    assert entry["status"] == "failed" and entry["node"] == lost.node_id

    again = runner.run_grid(
        "tiny", styles=["cot"], scenarios=[SCENARIO], stages=stages, overrides=over, cluster="auto", log=lambda m: None
    )
    assert [(o.stage, o.status) for o in again.outcomes] == [
        ("01_generate_data", "cached"),
        ("02_train_target", "finished"),
        ("03_distill", "finished"),
    ], again.summary()
    assert record.load_status("tiny")["cot_easy"]["02_train_target"]["node"] != lost.node_id  # the node left
