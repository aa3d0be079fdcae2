"""The GPU driver's packing: what may be committed (figures, metrics, status, logs) apart from
what is only brought back (per-sample outputs, rendered reports)."""

import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import gpu_grid  # noqa: E402


def test_pack_keeps_per_sample_outputs_out_of_the_committable_archive(tmp_path):
    home, out = tmp_path / "home", tmp_path / "out"
    run = home / "data" / "gpu-solve" / "runs" / "cod_easy"
    files = {
        run / "figures" / "06_benchmark.json": "{}",
        run / "metrics.json": "{}",
        run / "benchmark_samples.csv": "id,output\n1,x\n",
        home / "reports" / "gpu-solve" / "cod_easy" / "06_benchmark.html": "<html></html>",
        home / "reports" / "gpu-solve" / "cod_easy" / "06_benchmark.log": "log",
        home / "reports" / "gpu-solve" / "status.json": "{}",
        out / "summary.json": "{}",
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    gpu_grid.pack(SimpleNamespace(home=home, out=out, profile="gpu-solve"))
    names = {n: set(tarfile.open(out / f"{n}.tar.gz").getnames()) for n in ("results", "samples", "html")}
    assert names["results"] == {
        "data/gpu-solve/runs/cod_easy/figures/06_benchmark.json",
        "data/gpu-solve/runs/cod_easy/metrics.json",
        "reports/gpu-solve/cod_easy/06_benchmark.log",
        "reports/gpu-solve/status.json",
        "trace/summary.json",
    }
    assert names["samples"] == {"data/gpu-solve/runs/cod_easy/benchmark_samples.csv"}
    assert names["html"] == {"reports/gpu-solve/cod_easy/06_benchmark.html"}
    assert not list(out.glob("*.part"))


def test_plan_one_card_runs_one_chain_at_a_time_and_placed_runs_every_chain_then_every_benchmark():
    one = gpu_grid.plan(["cot", "cod", "base"], ["hard"], placed=False)
    assert [p[0] for p in one] == [
        "00_base_models",
        "hard-cot-train",
        "hard-cod-train",
        "hard-base-data",
        "hard-cot-benchmark",
        "hard-cod-benchmark",
        "hard-base-benchmark",
    ]
    assert one[1][1:] == (["cot"], ["hard"], list(gpu_grid.TRAIN))
    # on several GPUs: one base pair, the runner places the runs; no benchmark beside a trainer
    placed = gpu_grid.plan(["cot", "cod", "base"], ["easy", "medium"], placed=True)
    assert placed == [
        ("00_base_models", ["base"], ["easy"], ["00_base_models"]),
        ("train", ["cot", "cod"], ["easy", "medium"], list(gpu_grid.TRAIN)),
        ("base-data", ["base"], ["easy", "medium"], ["01_generate_data"]),
        ("benchmark", ["cot", "cod", "base"], ["easy", "medium"], ["06_benchmark"]),
    ]
    assert [p[0] for p in gpu_grid.plan(["base"], ["hard"], placed=True)] == [
        "00_base_models",
        "base-data",
        "benchmark",
    ]


def test_a_phase_is_packed_while_it_runs_not_only_after(tmp_path):
    """A placed phase holds several runs for many minutes: packing on a clock while it runs
    keeps each finished run's figures if the machine is taken away before the phase ends."""
    ticks = []
    with open(tmp_path / "phase.log", "w") as log:
        code = gpu_grid.run_packing(
            [sys.executable, "-c", "import time; time.sleep(1.0); raise SystemExit(3)"],
            {},
            log,
            0.2,
            lambda: ticks.append(1),
        )
    assert code == 3 and len(ticks) >= 3  # the command's own exit status, after packs made while it ran
    with open(tmp_path / "phase.log", "w") as log:
        assert gpu_grid.run_packing([sys.executable, "-c", "pass"], {}, log, 5.0, lambda: ticks.append(1)) == 0


def test_a_file_removed_between_listing_and_packing_is_left_out_not_fatal(tmp_path):
    """Packing while a phase runs races the runner: a stage starting again removes its old
    record and report, and the pack must go on with the rest rather than stop the driver."""
    kept, gone = tmp_path / "kept.json", tmp_path / "gone.json"
    kept.write_text("{}")
    gpu_grid._tar(tmp_path / "out.tar.gz", [(gone, "gone.json"), (kept, "kept.json")])
    assert tarfile.open(tmp_path / "out.tar.gz").getnames() == ["kept.json"]
