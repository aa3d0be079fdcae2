"""Where the work runs: the one CUDA check, the one dtype resolver, and memory readings
(device-level GPU memory through NVML, the process's own peak), shared by training, engines,
merge, cross-check and benchmark."""

from __future__ import annotations

import os
import resource
import threading

# `torch.cuda.is_available()` otherwise calls cudaGetDeviceCount, which initialises the CUDA
# driver in this process without marking torch initialised; vLLM then forks its engine core
# (it only checks `torch.cuda.is_initialized()`) and the child dies with "Cannot re-initialize
# CUDA in forked subprocess". With this set, any library's `is_available()` asks NVML instead.
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")

DTYPES = ("float32", "bfloat16", "float16")

# Set by the runner in a run placed on a CPU job slot: the cores that run keeps to.
CPUS_ENV = "WORKBOOK_CPUS"


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity: `taskset`, a container's cpuset), sorted.
    `os.cpu_count()` counts the machine's, and threads sized by it oversubscribe a process kept
    to fewer."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this OS
        return list(range(os.cpu_count() or 1))


def keep_to_slot_cpus() -> list[int] | None:
    """In a run placed on a CPU job slot (`CPUS_ENV`), keep this process, and so every kernel and
    engine it starts, to the slot's cores. Unpinned, two runs side by side shared both cores, and
    a tiny benchmark's repetitions differed by up to 1.7x in step cost; one core each, within
    about 10 % (docs/measurements.md). Returns the cores, or None outside a slot."""
    spec = os.environ.get(CPUS_ENV, "").strip()
    if not spec:
        return None
    try:
        cores = sorted({int(c) for c in spec.split(",")})
        os.sched_setaffinity(0, cores)
    except (ValueError, OSError, AttributeError) as exc:
        raise RuntimeError(f"{CPUS_ENV}={spec!r}: cannot keep this run to those cores ({exc})") from exc
    return cores


def gpu_count() -> int:
    """CUDA devices this process may use, without initialising CUDA: `torch.cuda.device_count()`
    asks NVML (honouring CUDA_VISIBLE_DEVICES) until CUDA is initialised, so a vLLM engine
    started out of process afterwards can still be forked."""
    import torch

    if not torch.backends.cuda.is_built():
        return 0
    return torch.cuda.device_count()


def on_cuda(cfg) -> bool:
    """Whether training, engines and checks run on a GPU: params' `device`, cpu, or a GPU
    where there is one (cuda or auto)."""
    return cfg["device"] != "cpu" and gpu_count() > 0


def torch_dtype(name: str):
    """The torch dtype of a params dtype name (`models.dtype`)."""
    import torch

    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; valid dtypes: {', '.join(DTYPES)}")
    return getattr(torch, name)


def process_peak_mb(cuda: bool) -> float:
    """Peak memory of this process: torch's allocator peak on a GPU, else the peak resident
    set (Linux reports KiB; it cannot be reset, so it is the process's peak so far)."""
    if cuda:
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _nvml():
    """pynvml (nvidia-ml-py) initialised, or None where there is no NVIDIA driver or package."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:
        return None


def _visible_handles(nvml) -> list:
    """NVML handles of the GPUs this process sees (CUDA_VISIBLE_DEVICES by index or UUID:
    the runner's --gpus slots share one machine; another slot's GPU is not ours)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    handles = []
    for item in (v.strip() for v in visible.split(",")):
        if not item:
            continue
        if item.isdigit():
            handles.append(nvml.nvmlDeviceGetHandleByIndex(int(item)))
        else:
            handles.append(nvml.nvmlDeviceGetHandleByUUID(item))
    return handles


def gpu_names() -> list[str]:
    """Names of this process's GPUs ([] without NVML), read without initialising CUDA."""
    nvml = _nvml()
    if nvml is None:
        return []
    try:
        return [str(nvml.nvmlDeviceGetName(h)) for h in _visible_handles(nvml)]
    finally:
        nvml.nvmlShutdown()


class GpuMemoryPeak:
    """Device-level peak GPU memory over a block, sampled by a background thread: what NVML
    reports used on this process's GPUs (summed), whichever process holds it — vLLM's engine
    core runs in a child process, where torch's allocator counters of this one read 0.
    `peak_mb` is None where there is no NVML (CPU). Each block starts from zero."""

    def __init__(self, interval_s: float = 0.2):
        self.interval_s = interval_s
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml = None
        self._handles: list = []

    def sample(self) -> None:
        used = sum(self._nvml.nvmlDeviceGetMemoryInfo(h).used for h in self._handles) / 2**20
        self.peak_mb = used if self.peak_mb is None else max(self.peak_mb, used)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> "GpuMemoryPeak":
        self._nvml = _nvml()
        if self._nvml is None:
            return self
        self._handles = _visible_handles(self._nvml)
        if not self._handles:
            return self
        self.sample()
        self._thread = threading.Thread(target=self._run, name="gpu-memory-peak", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.sample()
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass


# Dense bf16 tensor-core peaks in TFLOP/s from NVIDIA's data sheets (without sparsity), matched
# by a fragment of the device name, most specific first: the denominator of pretraining's MFU.
BF16_PEAK_TFLOPS = (
    ("H200 NVL", 835.5),
    ("H200", 989.4),
    ("H100 NVL", 835.5),
    ("H100 PCIe", 756.5),
    ("H100", 989.4),
    ("A100", 312.0),
    ("L40S", 362.1),
    ("L4", 121.0),
)


def bf16_peak_tflops() -> float | None:
    """The first visible GPU's dense bf16 peak, or None (CPU, or a GPU not in the table)."""
    for name in gpu_names()[:1]:
        for fragment, peak in BF16_PEAK_TFLOPS:
            if fragment in name:
                return peak
    return None
