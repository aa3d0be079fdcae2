import os
import shutil
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
