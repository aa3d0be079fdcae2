"""The shared device module: no CUDA initialised before an out-of-process engine starts, one
dtype resolver, device-level peak GPU memory through NVML (faked at the library boundary)."""

import os
import sys
import threading
import time
import types

import pytest
import torch

from lib import device, engine, params


class CudaInitialised(AssertionError):
    pass


@pytest.fixture
def gpu_box(monkeypatch):
    """A CUDA build of torch with one GPU, as far as the code can tell, where every call that
    initialises CUDA (the driver through cudaGetDeviceCount, or torch's lazy init) raises and
    is recorded; NVML's device count is the permitted way to ask."""
    calls = []

    def forbidden(name):
        def call(*a, **k):
            calls.append(name)
            raise CudaInitialised(f"{name} initialises CUDA in the parent before the engine forks")

        return call

    for obj, name in (
        (torch.cuda, "is_available"),
        (torch.cuda, "init"),
        (torch.cuda, "_lazy_init"),
        (torch.cuda, "get_device_name"),
        (torch.cuda, "get_device_properties"),
        (torch._C, "_cuda_getDeviceCount"),
        (torch._C, "_cuda_init"),
    ):
        monkeypatch.setattr(obj, name, forbidden(f"{obj.__name__}.{name}"), raising=False)
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # NVML-based until CUDA is initialised
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    return calls


@pytest.fixture
def fake_vllm(monkeypatch):
    """A stand-in `vllm` whose LLM records the environment the engine would start with."""
    started = []

    class LLM:
        def __init__(self, **kwargs):
            started.append({"kwargs": kwargs, "multiprocessing": os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")})

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM))
    monkeypatch.setattr(os, "environ", dict(os.environ))  # configure() writes the environment
    return started


def test_out_of_process_engine_starts_with_cuda_uninitialised(gpu_box, fake_vllm, home):
    cfg = params.resolve("tiny", "cot", "easy", {"device": "auto", "engine.in_process": False})
    assert device.on_cuda(cfg)
    eng = engine.start(cfg, "some/model")
    assert fake_vllm and fake_vllm[0]["multiprocessing"] is None  # vLLM's default: engine core in a child
    assert eng.model == "some/model"
    assert gpu_box == []
    assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"  # third-party is_available() asks NVML too


def test_training_backend_and_hardware_do_not_initialise_cuda(gpu_box, monkeypatch):
    from lib import benchmark, train

    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([1000]))
    cfg = params.resolve("tiny", "cot", "easy", {"device": "auto"})
    train.resolve_backend(cfg)
    assert benchmark.hardware()["gpu"] == "Fake H200"
    assert gpu_box == []


def test_cpu_device_never_asks_for_a_gpu(gpu_box):
    assert not device.on_cuda(params.resolve("tiny", "cot", "easy", {"device": "cpu"}))


def test_one_dtype_resolver():
    assert device.torch_dtype("bfloat16") is torch.bfloat16
    assert device.torch_dtype("float32") is torch.float32
    with pytest.raises(ValueError, match="'float8'.*valid dtypes: float32, bfloat16"):
        device.torch_dtype("float8")


# --- peak GPU memory -----------------------------------------------------------------------


class FakeNvml(types.ModuleType):
    """pynvml's surface that lib.device uses: one GPU whose used memory (MiB) follows `used`,
    one value per reading (the last value repeats)."""

    def __init__(self, used, fail_init=False):
        super().__init__("pynvml")
        self.used, self.fail_init, self.reads = list(used), fail_init, 0
        self.lock = threading.Lock()

    def nvmlInit(self):
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return f"gpu{i}"

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return uuid

    def nvmlDeviceGetName(self, handle):
        return "Fake H200"

    def nvmlDeviceGetMemoryInfo(self, handle):
        with self.lock:
            value = self.used[min(self.reads, len(self.used) - 1)]
            self.reads += 1
        return types.SimpleNamespace(used=value * 2**20, total=141000 * 2**20)


def _wait_reads(fake, n):
    deadline = time.monotonic() + 10
    while fake.reads < n and time.monotonic() < deadline:
        time.sleep(0.005)
    assert fake.reads >= n


def test_peak_is_sampled_during_the_block_and_reset_per_pass(monkeypatch):
    # Pass 1: the peak (9000) is only ever seen by the background thread, between the first
    # and the last reading; pass 2 stays at 2000 and must not inherit pass 1's peak.
    fake = FakeNvml([1000, 9000, 3000])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with device.GpuMemoryPeak(interval_s=0.001) as first:
        _wait_reads(fake, 4)
    assert first.peak_mb == 9000
    fake.used, fake.reads = [2000], 0
    with device.GpuMemoryPeak(interval_s=0.001) as second:
        _wait_reads(fake, 3)
    assert second.peak_mb == 2000


def test_only_the_visible_gpus_are_read(monkeypatch):
    fake = FakeNvml([500])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with device.GpuMemoryPeak(interval_s=60) as peak:
        pass
    assert peak.peak_mb == 2 * 500  # two GPUs, summed
    assert device.gpu_names() == ["Fake H200", "Fake H200"]


@pytest.mark.parametrize("nvml", [FakeNvml([1], fail_init=True), None], ids=["no-driver", "no-package"])
def test_no_nvml_reports_none(monkeypatch, nvml):
    monkeypatch.setitem(sys.modules, "pynvml", nvml)  # None: `import pynvml` raises ImportError
    with device.GpuMemoryPeak(interval_s=0.001) as peak:
        time.sleep(0.01)
    assert peak.peak_mb is None
    assert device.gpu_names() == []
