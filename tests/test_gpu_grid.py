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
    files = {run / "figures" / "06_benchmark.json": "{}", run / "metrics.json": "{}",
             run / "benchmark_samples.csv": "id,output\n1,x\n",
             home / "reports" / "gpu-solve" / "cod_easy" / "06_benchmark.html": "<html></html>",
             home / "reports" / "gpu-solve" / "cod_easy" / "06_benchmark.log": "log",
             home / "reports" / "gpu-solve" / "status.json": "{}", out / "summary.json": "{}"}
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    gpu_grid.pack(SimpleNamespace(home=home, out=out, profile="gpu-solve"))
    names = {n: set(tarfile.open(out / f"{n}.tar.gz").getnames()) for n in ("results", "samples", "html")}
    assert names["results"] == {"data/gpu-solve/runs/cod_easy/figures/06_benchmark.json",
                                "data/gpu-solve/runs/cod_easy/metrics.json", "reports/gpu-solve/cod_easy/06_benchmark.log",
                                "reports/gpu-solve/status.json", "trace/summary.json"}
    assert names["samples"] == {"data/gpu-solve/runs/cod_easy/benchmark_samples.csv"}
    assert names["html"] == {"reports/gpu-solve/cod_easy/06_benchmark.html"}
    assert not list(out.glob("*.part"))
