"""Seaborn figures the notebooks show (each returns its matplotlib Figure)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

sns.set_theme(style="whitegrid", context="notebook")


def _fig(width: float = 7, height: float = 3.5):
    return plt.subplots(figsize=(width, height))


def token_distribution(frame: pd.DataFrame, column: str = "tokens", hue: str | None = None, title: str = ""):
    fig, ax = _fig()
    sns.histplot(frame, x=column, hue=hue, bins=30, ax=ax, element="step")
    ax.set(title=title or "tokens per solution", xlabel="tokens")
    return fig


def loss_curves(frame: pd.DataFrame, title: str):
    fig, ax = _fig()
    if len(frame):
        sns.lineplot(frame, x="step", y="loss", hue="split", marker="o", ax=ax)
    ax.set(title=title)
    return fig


def pretrain_losses(summary: dict):
    frame = pd.concat(
        [pd.DataFrame({"step": range(len(r["losses"])), "loss": r["losses"], "role": role}) for role, r in summary["roles"].items()]
    )
    fig, ax = _fig()
    sns.lineplot(frame, x="step", y="loss", hue="role", ax=ax)
    ax.set(title="pretraining loss of the base pair", yscale="log")
    return fig


def acceptance_by_position(frame: pd.DataFrame, hue: str | None = None, title: str = "acceptance by draft position"):
    """`frame`: columns position, acceptance (and `hue`, e.g. style)."""
    fig, ax = _fig()
    sns.barplot(frame, x="position", y="acceptance", hue=hue, ax=ax)
    ax.set(title=title, ylim=(0, 1), ylabel="P(accepted | position)")
    return fig


def pass_comparison(frame: pd.DataFrame):
    """`frame`: one row per pass with throughput_tok_s, accuracy."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    sns.barplot(frame, x="pass", y="throughput_tok_s", ax=axes[0])
    axes[0].set(title="throughput (output tokens/s)")
    sns.barplot(frame, x="pass", y="accuracy", ax=axes[1])
    axes[1].set(title="accuracy", ylim=(0, 1))
    fig.tight_layout()
    return fig


def grouped_bars(frame: pd.DataFrame, x: str, y: str, hue: str, title: str, ylim=None, ref: float | None = None):
    fig, ax = _fig()
    sns.barplot(frame, x=x, y=y, hue=hue, ax=ax)
    if ref is not None:
        ax.axhline(ref, color="gray", ls="--", lw=1)
    ax.set(title=title)
    if ylim:
        ax.set_ylim(*ylim)
    return fig


def predicted_vs_measured(frame: pd.DataFrame):
    fig, ax = _fig(5, 4)
    sns.scatterplot(frame, x="predicted_speedup", y="speedup", hue="style", style="scenario", s=80, ax=ax)
    lo = min(frame[["predicted_speedup", "speedup"]].min().min(), 0.5) if len(frame) else 0
    hi = max(frame[["predicted_speedup", "speedup"]].max().max(), 1.5) if len(frame) else 2
    ax.plot([lo, hi], [lo, hi], color="gray", ls="--", lw=1)
    ax.set(title="measured vs predicted speed-up", xlabel="predicted from acceptance", ylabel="measured")
    return fig
