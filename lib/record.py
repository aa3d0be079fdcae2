"""The figures a notebook records: its last cell writes them as JSON next to its outputs;
the runner, the tests and the analysis read them back (never printed text)."""

from __future__ import annotations

import time

from . import io
from .paths import RunPaths, profile_figures


def _path(rp: RunPaths | str, stage: str):
    # A run's figures, or (given a profile name) a profile-wide notebook's.
    return profile_figures(rp, stage) if isinstance(rp, str) else rp.figures(stage)


def save(rp: RunPaths | str, stage: str, figures: dict) -> dict:
    name = rp if isinstance(rp, str) else rp.name
    figures = {"stage": stage, "run": name, "finished_at": time.time(), **figures}
    io.write_json(_path(rp, stage), figures)
    return figures


def load(rp: RunPaths | str, stage: str) -> dict | None:
    path = _path(rp, stage)
    return io.read_json(path) if path.exists() else None


def done(rp: RunPaths | str, stage: str) -> bool:
    return _path(rp, stage).exists()
