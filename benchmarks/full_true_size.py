"""`full` at the study's true sizes, stage by stage, measured (issue 12).

Serves hub-shaped repositories of Qwen/Qwen3-14B and Qwen/Qwen3-0.6B with their published
dimensions and random bf16 weights (one shared tokenizer), GSM8K and MATH stand-ins, through
the local Hub (tests/local_hub.py, `HF_ENDPOINT`), and the Gemini Batch API stand-in
(tests/fake_gemini.py). Then runs `python -m lib run --profile full` one stage at a time and,
around each stage, samples device-level GPU memory (NVML), host memory and the bytes written.
Only counts are overridden (`--set`); everything structural is `full`'s.

    python benchmarks/full_true_size.py --work W --home H --out O [--set key=value ...]

W holds the Hub cache (the weights are written straight into it as the cache's own blobs, so
the libraries find them there and nothing is copied: one 28 GB copy of the 14B on disk); H is
WORKBOOK_HOME (the merged 14B goes there: put it on another filesystem when disk is short).
O receives `summary.json` (per stage: wall, peak GPU memory, peak host memory, bytes written,
the stage's figures) and `results.tar.gz` (figures JSON, metrics.json, monitor trace, logs).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from fake_gemini import FakeGemini, reference_teacher  # noqa: E402
from local_hub import (  # noqa: E402
    MODEL_CARD,
    TRUE_SIZES,
    TRUE_VOCAB,
    Blob,
    LocalHub,
    Repo,
    config_files,
    dataset_repos,
    hf_model,
    model_card_files,
    qwen3_config,
    tokenizer_corpus,
    tokenizer_files,
)

STAGES = (
    "01_generate_data",
    "02_train_target",
    "03_distill",
    "04_train_draft",
    "05_merge",
    "06_benchmark",
    "07_analysis",
)
KEY = "h200-stand-in-key"


def true_size_repo(
    repo_id: str, tok, tok_files: dict, hub_cache: Path, seed: int, device: str = "cuda", sizes: dict = TRUE_SIZES
) -> Repo:
    """Random weights of the published shape, made on the GPU, saved as the real repository
    shards them, then moved into the Hub cache as its blobs (named by sha256)."""
    import torch

    dims, tie = sizes[repo_id]
    config = qwen3_config(tok, dims, tie, TRUE_VOCAB)
    torch.manual_seed(seed)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(device):
        model = hf_model(config)
    torch.set_default_dtype(torch.float32)
    with torch.no_grad():  # rows past the tokenizer: logit 0, never a greedy pick over random logits
        model.get_output_embeddings().weight[len(tok) :] = 0
    stage = hub_cache / f"staging-{seed}"
    model.save_pretrained(stage, max_shard_size="4GB")
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    blobs = hub_cache / f"models--{repo_id.replace('/', '--')}" / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    weights = sorted(p for p in stage.iterdir() if p.suffix == ".safetensors")
    with ThreadPoolExecutor(len(weights)) as pool:  # hashlib releases the GIL
        hashed = dict(zip(weights, pool.map(Blob.of, weights)))
    files: dict = {p.name: p.read_bytes() for p in stage.iterdir() if p.name.endswith(".index.json")}
    for path, blob in hashed.items():
        target = blobs / blob.sha256
        path.rename(target)
        files[path.name] = Blob(target, blob.sha256, blob.size)
    return Repo(
        repo_id, "model", {**tok_files, **files, **config_files(config), **model_card_files(repo_id)}, card=MODEL_CARD
    )


class Monitor:
    """Samples every `period` s: GPU memory used on the device (NVML; with `devices`, the most
    used of those), host memory in use by processes (MemTotal - MemAvailable - Shmem) and tmpfs
    (Shmem)."""

    def __init__(self, trace: Path, period: float = 0.5, devices: list[int] | None = None):
        import pynvml

        try:
            pynvml.nvmlInit()
            # NVML counts every GPU of the host, CUDA_VISIBLE_DEVICES none: CUDA's index i is the
            # i-th visible one (the first when no devices are named)
            visible = [int(x) for x in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if x.strip().isdigit()]
            indices = [visible[i] if i < len(visible) else i for i in (devices or [0])]
            self.nvml, self.handles = pynvml, [pynvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
        except pynvml.NVMLError:  # no GPU: host figures only
            self.nvml, self.handles = None, []
        new = not trace.exists()
        self.trace, self.period, self.stage = open(trace, "a"), period, "setup"
        if new:
            self.trace.write("t,stage,gpu_used_mb,host_used_mb,shmem_mb\n")
        self.peaks: dict = {}
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    @staticmethod
    def _meminfo() -> dict:
        out = {}
        for line in open("/proc/meminfo"):
            key, value = line.split(":")
            out[key] = int(value.split()[0]) / 1024
        return out

    def sample(self) -> tuple[float, float, float]:
        gpu = max((self.nvml.nvmlDeviceGetMemoryInfo(h).used / 2**20 for h in self.handles), default=0.0)
        mem = self._meminfo()
        return gpu, mem["MemTotal"] - mem["MemAvailable"] - mem.get("Shmem", 0), mem.get("Shmem", 0)

    def _run(self) -> None:
        while not self._stop.is_set():
            gpu, host, shm = self.sample()
            p = self.peaks.setdefault(self.stage, {"gpu_used_mb": 0.0, "host_used_mb": 0.0, "shmem_mb": 0.0})
            p["gpu_used_mb"], p["host_used_mb"], p["shmem_mb"] = (
                max(p["gpu_used_mb"], gpu),
                max(p["host_used_mb"], host),
                max(p["shmem_mb"], shm),
            )
            self.trace.write(f"{time.time():.1f},{self.stage},{gpu:.0f},{host:.0f},{shm:.0f}\n")
            self._stop.wait(self.period)

    def close(self) -> None:
        self._stop.set()
        self.trace.close()


def tree_bytes(*roots: Path) -> int:
    """Bytes of the files under `roots` (links not followed: the Hub cache's snapshots are links)."""
    total = 0
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                p = Path(folder) / name
                if not p.is_symlink():
                    total += p.stat().st_size
    return total


def make_models(args, hub_cache: Path) -> list[Repo]:
    tok_files, tok = tokenizer_files(tokenizer_corpus(), args.work / "tokenizer")
    sizes = (
        {
            r: (
                {
                    **dims,
                    "hidden_size": 64,
                    "intermediate_size": 128,
                    "layers": 2,
                    "heads": 2,
                    "kv_heads": 1,
                    "head_dim": 32,
                },
                tie,
            )
            for r, (dims, tie) in TRUE_SIZES.items()
        }
        if args.small
        else TRUE_SIZES
    )
    return [
        true_size_repo(repo_id, tok, tok_files, hub_cache, seed, args.device, sizes)
        for seed, repo_id in enumerate(TRUE_SIZES)
    ]


def main() -> int:
    # --- arguments --------------------------------------------------------------------
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--style", default="cot")
    ap.add_argument("--scenario", default="easy")
    ap.add_argument("--stages", nargs="*", default=list(STAGES))
    ap.add_argument("--set", nargs="*", default=[], dest="sets")
    ap.add_argument("--device", default="cuda", help="where the random weights are made (cpu: a dry run, with --small)")
    ap.add_argument("--small", action="store_true", help="tiny dimensions instead of the published ones (a dry run)")
    args = ap.parse_args()
    for d in (args.work, args.home, args.out):
        d.mkdir(parents=True, exist_ok=True)
    hf_home = args.work / "hf-home"
    hub_cache = hf_home / "hub"
    monitor = Monitor(args.out / "monitor.csv")
    t0 = time.time()

    # --- repositories: datasets, tokenizer, true-size models in the Hub cache -------------
    repos = dataset_repos()
    made = args.work / "models.pkl"  # a second launch (e.g. from a failed stage on) reuses the weights
    if made.exists():
        repos += pickle.loads(made.read_bytes())
    else:
        repos += make_models(args, hub_cache)
        made.write_bytes(pickle.dumps(repos[-len(TRUE_SIZES) :]))
    setup_s = time.time() - t0
    print(f"repositories ready in {setup_s:.0f} s", flush=True)

    # --- servers: the Hub and Gemini ----------------------------------------------------
    old = args.out / "summary.json"  # a relaunch adds its stages to the last launch's
    summary = json.loads(old.read_text()) if old.exists() else {"stages": {}}
    summary.update(setup_s=setup_s, sets=args.sets)
    with LocalHub(repos) as hub, FakeGemini(reference_teacher(hub.references()), api_key=KEY) as gemini:
        env = {
            **os.environ,
            **hub.env(hf_home),
            "GEMINI_API_KEY": KEY,
            "WORKBOOK_HOME": str(args.home),
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        }
        sets = [
            f"data.gemini.base_url={gemini.url}",
            "data.gemini.poll_interval_s=1.0",
            "data.gemini.poll_max_interval_s=2.0",
            *args.sets,
        ]

        # --- stages, one runner call each, measured around it ---------------------------
        for stage in args.stages:
            monitor.stage = stage
            before, t = tree_bytes(args.home, hf_home), time.time()
            cmd = [
                sys.executable,
                "-m",
                "lib",
                "run",
                "--profile",
                "full",
                "--styles",
                args.style,
                "--scenarios",
                args.scenario,
                "--stages",
                stage,
                "--set",
                *sets,
            ]
            with open(args.out / f"{stage}.runner.log", "w") as log:
                code = subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
            wall = time.time() - t
            entry = {
                "rc": code,
                "wall_s": wall,
                "bytes_written": tree_bytes(args.home, hf_home) - before,
                **monitor.peaks.get(stage, {}),
            }
            fig = args.home / "data" / "full" / "runs" / f"{args.style}_{args.scenario}" / "figures" / f"{stage}.json"
            entry["figures"] = json.loads(fig.read_text()) if fig.exists() else None
            summary["stages"][stage] = entry
            print(
                f"{stage}: rc {code}, {wall:.0f} s, GPU peak {entry.get('gpu_used_mb', 0):.0f} MiB, "
                f"host peak {entry.get('host_used_mb', 0):.0f} MiB, wrote {entry['bytes_written'] / 2**30:.2f} GiB",
                flush=True,
            )
            (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
            if code:
                break
    monitor.close()

    # --- results: figures, metrics, logs (no models, no per-sample outputs) ----------------
    with tarfile.open(args.out / "results.tar.gz", "w:gz") as tar:
        runs = args.home / "data" / "full" / "runs"
        for p in list(runs.rglob("figures/*.json")) + list(runs.rglob("metrics.json")):
            tar.add(p, arcname=str(p.relative_to(args.home)))
        for p in list(args.out.glob("*.log")) + [args.out / "monitor.csv"]:
            tar.add(p, arcname=f"trace/{p.name}")
        for p in (args.home / "reports" / "full").rglob("*.log"):
            tar.add(p, arcname=str(p.relative_to(args.home)))
    return max((s["rc"] for s in summary["stages"].values()), default=0)


if __name__ == "__main__":
    raise SystemExit(main())
