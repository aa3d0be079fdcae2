"""A profile's whole grid on one GPU in the time a lent machine gives (issues 15 and 16).

    python benchmarks/gpu_grid.py --profile gpu-solve --home H --out O [--scenarios ...] [--set k=v ...] [--gpus 0 1]

Order: the base pair (00), then per scenario each trained style's chain 01-05 and each style's
benchmark (06), one at a time on the card; the analysis (07) last. With `--gpus`, one home and one
base pair for every run: after 00 all chains 01-05 are placed on the GPUs by the runner (one run
per GPU at a time), then all benchmarks, so that a benchmark only ever shares the host with
another benchmark. Every phase is one `python -m lib run` call, measured around it (wall, device GPU memory,
host memory); after each phase the figures, metrics, status and logs so far are packed into
`O/results.tar.gz` (and every `--pack-every` seconds while a phase runs), so a machine taken away
mid-grid still leaves what finished. A relaunch
skips what finished (the runner's own records).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "benchmarks")]

from full_true_size import Monitor  # noqa: E402

TRAIN = ("01_generate_data", "02_train_target", "03_distill", "04_train_draft", "05_merge")


def main() -> int:
    # --- arguments ------------------------------------------------------------------------
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="gpu-solve")
    ap.add_argument("--home", type=Path, required=True, help="WORKBOOK_HOME (data/ and reports/)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--styles", nargs="*", default=["base", "cot", "cod"])
    ap.add_argument("--scenarios", nargs="*", default=["easy", "medium", "hard"])
    ap.add_argument("--set", nargs="*", default=[], dest="sets")
    ap.add_argument("--gpus", nargs="*", default=[], help="GPU slots for the runner's placement (`lib run --gpus`)")
    ap.add_argument(
        "--pack-every",
        type=float,
        default=30.0,
        help="seconds between packs while a phase runs (a placed phase holds several runs)",
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "WORKBOOK_HOME": str(args.home),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    # placed runs: the busiest of the slots' GPUs (a slot may be several, "0,1")
    monitor = Monitor(args.out / "monitor.csv", devices=[int(d) for slot in args.gpus for d in slot.split(",")] or None)
    summary_path = args.out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {"phases": []}
    summary["sets"] = args.sets
    codes = []  # this launch's (a relaunch's summary keeps the earlier phases too)

    def phase(name: str, styles: list[str], scenarios: list[str], stages: list[str]) -> int:
        """One `python -m lib run` call, measured; the results so far packed while it runs and after it."""
        monitor.stage, t = name, time.time()
        cmd = (
            [
                sys.executable,
                "-m",
                "lib",
                "run",
                "--profile",
                args.profile,
                "--styles",
                *styles,
                "--scenarios",
                *scenarios,
                "--stages",
                *stages,
            ]
            + (["--set", *args.sets] if args.sets else [])
            + (["--gpus", *args.gpus] if args.gpus else [])
        )
        with open(args.out / f"{name}.runner.log", "a") as log:
            code = run_packing(cmd, env, log, args.pack_every, lambda: pack(args))
        entry = {"phase": name, "rc": code, "wall_s": round(time.time() - t, 1), **monitor.peaks.get(name, {})}
        summary["phases"].append(entry)
        codes.append(code)
        print(f"{name}: rc {code}, {entry['wall_s']:.0f} s, GPU peak {entry.get('gpu_used_mb', 0):.0f} MiB", flush=True)
        summary_path.write_text(json.dumps(summary, indent=2))
        pack(args)
        return code

    # --- the base pair, then the chains and the benchmarks (plan) ----------------------------------
    for name, styles, scenarios, stages in plan(args.styles, args.scenarios, bool(args.gpus)):
        phase(name, styles, scenarios, stages)
    phase("07_analysis", args.styles, args.scenarios, ["07_analysis"])
    monitor.close()
    pack(args)
    return max(codes)


def run_packing(cmd: list[str], env: dict, log, every: float, pack_now) -> int:
    """Run `cmd` to its end, calling `pack_now` every `every` s while it runs (the caller packs
    after): a placed phase holds several runs, and a machine taken away in the middle of it
    still leaves every run that finished before."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    while True:
        try:
            return proc.wait(timeout=every)
        except subprocess.TimeoutExpired:
            pack_now()


def plan(styles: list[str], scenarios: list[str], placed: bool) -> list[tuple[str, list, list, list]]:
    """The phases before 07: (name, styles, scenarios, stages), the base pair (00) first. One card: per scenario
    one chain at a time (vLLM sizes its KV cache from the memory the card has in use while it
    profiles, so a neighbour's engine or trainer, seen on the H200, leaves it none), then each
    benchmark. Placed on several GPUs: every chain, then every benchmark, the runner keeping
    one run per GPU."""
    trained = [s for s in styles if s != "base"]
    out = [("00_base_models", ["base"], [scenarios[0]], ["00_base_models"])]
    if placed:
        if trained:
            out.append(("train", trained, scenarios, list(TRAIN)))
        if "base" in styles:
            out.append(("base-data", ["base"], scenarios, ["01_generate_data"]))
        out.append(("benchmark", styles, scenarios, ["06_benchmark"]))
        return out
    for scenario in scenarios:
        out += [(f"{scenario}-{style}-train", [style], [scenario], list(TRAIN)) for style in trained]
        if "base" in styles:
            out.append((f"{scenario}-base-data", ["base"], [scenario], ["01_generate_data"]))
        out += [(f"{scenario}-{style}-benchmark", [style], [scenario], ["06_benchmark"]) for style in styles]
    return out


def pack(args) -> None:
    """Figures, metrics, status and logs (no models, no per-sample outputs) into results.tar.gz,
    what may be committed; beside it, to bring back but not commit, samples.tar.gz (each run's
    per-sample benchmark outputs: the analysis needs them for the paired interval of the
    accuracy change under speculation) and html.tar.gz (the rendered reports)."""
    home, out = args.home, args.out
    data, reports = home / "data" / args.profile, home / "reports" / args.profile

    def rel(paths) -> list[tuple[Path, str]]:
        return [(p, str(p.relative_to(home))) for p in paths]

    _tar(out / "samples.tar.gz", rel(data.rglob("benchmark_samples.csv")))
    _tar(out / "html.tar.gz", rel(reports.rglob("*.html")))
    trace = [
        (p, f"trace/{p.name}") for p in [*out.glob("*.log"), out / "monitor.csv", out / "summary.json"] if p.exists()
    ]
    _tar(
        out / "results.tar.gz",
        rel(
            [
                *data.rglob("figures/*.json"),
                *data.rglob("metrics.json"),
                *reports.rglob("*.log"),
                *reports.rglob("status.json"),
            ]
        )
        + trace,
    )


def _tar(path: Path, members: list[tuple[Path, str]]) -> None:
    tmp = path.with_name(path.name + ".part")  # a machine taken away mid-write leaves the last whole one
    with tarfile.open(tmp, "w:gz") as tar:
        for p, name in members:
            try:
                tar.add(p, arcname=name)
            except FileNotFoundError:  # packed while a phase runs: a stage starting again removes its old record
                continue
    tmp.replace(path)


if __name__ == "__main__":
    raise SystemExit(main())
