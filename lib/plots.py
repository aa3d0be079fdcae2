"""Seaborn figures the notebooks show (each returns its matplotlib Figure)."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
import pandas as pd
import seaborn as sns

from .stats import TOLERANCE_TEXT, tolerance_band

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
        [
            pd.DataFrame({"step": range(len(r["losses"])), "loss": r["losses"], "role": role})
            for role, r in summary["roles"].items()
        ]
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


def predicted_vs_measured(frame: pd.DataFrame):
    """Left: measured throughput speed-up (bar: range over repetitions) against the one
    predicted from acceptance by position, the measured step cost r and (where timestamped) each
    request's time to its first token, with the band of measured speed-ups within the
    cost model's tolerance (stats.PREDICTION_TOLERANCE). Right, per run: measured, predicted, the engine's ceiling (every
    draft accepted) and, where a GPU was profiled, the speed-up at the GPU-busy floor."""
    frame = frame.dropna(subset=["predicted_speedup", "speedup"]) if len(frame) else frame
    if not len(frame):
        return _no_data("measured vs predicted speed-up", "no run has both a measured and a predicted speed-up")
    frame = frame.reset_index(drop=True)
    for col in ("speedup_lo", "speedup_hi", "ceiling_speedup", "floor_speedup"):
        if col not in frame:
            frame[col] = float("nan")
    fig, (ax, per_run) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1, 1.3]})
    sns.scatterplot(
        frame,
        x="predicted_speedup",
        y="speedup",
        hue="style",
        style="scenario",
        s=80,
        ax=ax,
        hue_order=_present(frame["style"], STYLE_ORDER),
        palette=STYLE_COLORS,
    )
    spread = frame.dropna(subset=["speedup_lo", "speedup_hi"])
    ax.errorbar(
        spread["predicted_speedup"],
        spread["speedup"],
        yerr=[spread["speedup"] - spread["speedup_lo"], spread["speedup_hi"] - spread["speedup"]],
        fmt="none",
        ecolor="gray",
        lw=1,
        zorder=0,
    )
    lo = min(frame[["predicted_speedup", "speedup"]].min().min() * 0.8, 0.5)
    hi = max(frame[["predicted_speedup", "speedup"]].max().max() * 1.2, 1.5)
    ax.plot([lo, hi], [lo, hi], color="gray", ls="--", lw=1)
    band = [tolerance_band(x) for x in (lo, hi)]
    ax.fill_between(
        [lo, hi], [b[0] for b in band], [b[1] for b in band], color="gray", alpha=0.12, lw=0, label=TOLERANCE_TEXT
    )
    ax.set(
        title="measured vs predicted speed-up",
        xlabel="predicted (acceptance by position / step cost r, prefill, slots)",
        ylabel="measured (throughput)",
    )
    labels = frame["scenario"].astype(str) + "/" + frame["style"].astype(str)
    long = (
        frame.assign(run=labels)
        .melt(
            id_vars="run",
            value_vars=["speedup", "predicted_speedup", "ceiling_speedup", "floor_speedup"],
            var_name="what",
        )
        .dropna(subset=["value"])
        .replace(
            {
                "what": {
                    "speedup": "measured",
                    "predicted_speedup": "predicted",
                    "ceiling_speedup": "ceiling (all accepted)",
                    "floor_speedup": "at GPU-busy floor",
                }
            }
        )
    )
    sns.stripplot(
        long, x="value", y="run", hue="what", ax=per_run, size=8, jitter=False, dodge=False, marker="D", palette="deep"
    )
    per_run.axvline(1.0, color="gray", lw=1)
    per_run.set(title="per run", xlabel="speed-up", ylabel="")
    per_run.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


# --- the analysis (stage 7): every run of a profile -------------------------------------------
STYLE_ORDER = ("base", "cot", "cod")
_PAL = sns.color_palette("deep")
_LIGHT = sns.color_palette("pastel")
# One colour per style in every analysis plot; a configuration's baseline in the light shade.
STYLE_COLORS = {"base": _PAL[7], "cot": _PAL[1], "cod": _PAL[2]}
CONFIG_COLORS = {
    "base (untrained)": _PAL[7],
    "cot baseline": _LIGHT[1],
    "cot + spec": _PAL[1],
    "cod baseline": _LIGHT[2],
    "cod + spec": _PAL[2],
}


def _palette(levels) -> dict:
    extra = iter(sns.color_palette("dark", n_colors=max(len(levels), 1)))
    return {lv: STYLE_COLORS.get(lv) or CONFIG_COLORS.get(lv) or next(extra) for lv in levels}


def _present(values, order) -> list:
    have = [v for v in dict.fromkeys(values)]
    return [v for v in order if v in have] + [v for v in have if v not in order]


class NoData(Figure):
    """What a plot shows when there is nothing to draw: its title and why, as a line of text in
    the notebook and its HTML, not an image (IPython renders no PNG of a figure without axes),
    so neither a reader nor a test takes it for a plot. Saved to a file it still shows the text."""

    def __init__(self, *args, title: str = "", why: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.title, self.why = title, why
        self.suptitle(title)
        self.text(0.5, 0.4, why, ha="center", va="center", fontsize=11, color="#555")

    def _repr_markdown_(self) -> str:
        return f"*{self.title}: {self.why}*"


def _no_data(title: str, why: str) -> NoData:
    return plt.figure(FigureClass=NoData, figsize=(7, 1.2), title=title, why=why)


def _dodged(
    ax,
    frame: pd.DataFrame,
    x: str,
    y: str,
    hue: str,
    x_order,
    hue_order,
    lo: str | None = None,
    hi: str | None = None,
    bars: bool = True,
    fmt: str | None = None,
):
    """Grouped bars (or points) with asymmetric error bars from columns `lo`/`hi`; gaps stay empty."""
    colors = _palette(hue_order)
    width = 0.8 / max(len(hue_order), 1)
    for j, level in enumerate(hue_order):
        sub = frame[frame[hue] == level].set_index(x)
        xs, ys, errs = [], [], [[], []]
        for i, cat in enumerate(x_order):
            if cat not in sub.index or pd.isna(sub.loc[cat, y]):
                continue
            row = sub.loc[cat]
            xs.append(i - 0.4 + width * (j + 0.5))
            ys.append(row[y])
            has_ci = lo and hi and not pd.isna(row[lo]) and not pd.isna(row[hi])
            errs[0].append(max(row[y] - row[lo], 0) if has_ci else 0)
            errs[1].append(max(row[hi] - row[y], 0) if has_ci else 0)
        if not xs:
            continue
        if bars:
            ax.bar(xs, ys, width=width * 0.95, color=colors[level], label=str(level))
            ax.errorbar(xs, ys, yerr=errs, fmt="none", ecolor="#222", elinewidth=1.2, capsize=3)
        else:
            ax.errorbar(xs, ys, yerr=errs, fmt="o", color=colors[level], capsize=4, ms=7, label=str(level))
        if fmt:
            for xv, yv in zip(xs, ys):
                ax.annotate(
                    fmt.format(yv), (xv, yv), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8
                )
    ax.set_xticks(range(len(x_order)), [str(c) for c in x_order])
    ax.set_xlim(-0.6, len(x_order) - 0.4)
    ax.legend(title=hue, fontsize=8, title_fontsize=9)


def _facets(frame: pd.DataFrame, col: str, width: float = 5.0, height: float = 3.4, sharey: bool = True):
    levels = list(dict.fromkeys(frame[col])) if len(frame) else [None]
    fig, axes = plt.subplots(1, len(levels), figsize=(width * len(levels), height), squeeze=False, sharey=sharey)
    return fig, list(zip(levels, axes[0]))


def acceptance_by_position_per_style(positions: pd.DataFrame):
    """`analysis.acceptance_positions`: P(draft token at position i accepted), per style, one
    panel per scenario."""
    title = "acceptance by draft position"
    if not len(positions):
        return _no_data(title, "no speculative pass recorded acceptance by position")
    scenarios = list(dict.fromkeys(positions["scenario"]))
    grid = sns.catplot(
        positions,
        x="position",
        y="acceptance",
        hue="style",
        col="scenario",
        col_order=scenarios,
        hue_order=_present(positions["style"], STYLE_ORDER),
        palette=STYLE_COLORS,
        kind="bar",
        height=3.2,
        aspect=1.1,
    )
    grid.set(ylim=(0, 1))
    grid.set_axis_labels("draft position", "P(accepted at position)")
    grid.figure.suptitle(title, y=1.03)
    return grid.figure


def speedup_intervals(runs: pd.DataFrame, scenarios):
    """Latency speed-up of each measured run with its 95% interval (paired bootstrap over
    prompts), per scenario and style; the dashed line is no speed-up."""
    have = runs[runs["present"] & runs["speedup_latency"].notna()]
    title = "speed-up (per-request latency) with 95% intervals"
    if not len(have):
        return _no_data(title, "no run measured both passes yet")
    fig, ax = _fig(7.5, 3.6)
    x_order = [s for s in scenarios if s in set(have["scenario"])]
    _dodged(
        ax,
        have,
        "scenario",
        "speedup_latency",
        "style",
        x_order,
        _present(have["style"], STYLE_ORDER),
        "speedup_latency_lo",
        "speedup_latency_hi",
        bars=False,
        fmt="{:.2f}x",
    )
    ax.axhline(1.0, color="gray", ls="--", lw=1)
    ax.set(title=title, ylabel="baseline / speculative latency", xlabel="scenario")
    fig.tight_layout()
    return fig


def token_distributions(samples: pd.DataFrame, scenarios):
    """Output tokens per answer of the baseline pass, per style and scenario (one panel per source)."""
    title = "tokens per answer (baseline pass)"
    base = samples[samples["pass"] == "baseline"] if len(samples) else samples
    if not len(base):
        return _no_data(title, "no per-sample benchmark file yet")
    fig, panels = _facets(base, "source", width=max(4.5, 2.2 * base["scenario"].nunique()), sharey=False)
    for source, ax in panels:
        sub = base[base["source"] == source]
        sns.boxplot(
            sub,
            x="scenario",
            y="tokens",
            hue="style",
            order=[s for s in scenarios if s in set(sub["scenario"])],
            hue_order=_present(sub["style"], STYLE_ORDER),
            palette=STYLE_COLORS,
            ax=ax,
            fliersize=2,
        )
        ax.set(title=f"{title} — {source}", xlabel="scenario", ylabel="output tokens")
    fig.tight_layout()
    return fig


def accuracy_bars(accuracy: pd.DataFrame, scenarios):
    """`analysis.accuracy_long`: accuracy per configuration (the study's table 2) with 95%
    intervals (bootstrap over prompts), one panel per source."""
    title = "accuracy"
    if not len(accuracy):
        return _no_data(title, "no accuracy measured yet")
    order = ["base (untrained)", "cot baseline", "cot + spec", "cod baseline", "cod + spec"]
    fig, panels = _facets(accuracy, "source", width=max(5.0, 2.6 * accuracy["scenario"].nunique()), height=3.6)
    for source, ax in panels:
        sub = accuracy[accuracy["source"] == source]
        _dodged(
            ax,
            sub,
            "scenario",
            "accuracy",
            "config",
            [s for s in scenarios if s in set(sub["scenario"])],
            _present(sub["config"], order),
            "lo",
            "hi",
        )
        ax.set(title=f"{title} — {source}", ylim=(0, 1.05), xlabel="scenario", ylabel="accuracy")
    fig.tight_layout()
    return fig


def k_sweep(sweep: pd.DataFrame):
    """`analysis.k_sweep_frame`: acceptance and speed-up against K (draft tokens per step)."""
    title = "acceptance and speed-up against K"
    if not len(sweep):
        return _no_data(title, "no run's metrics carry a K sweep")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    hue_order = _present(sweep["style"], STYLE_ORDER)
    sns.lineplot(
        sweep,
        x="k",
        y="acceptance",
        hue="style",
        hue_order=hue_order,
        palette=STYLE_COLORS,
        style="scenario",
        marker="o",
        ax=axes[0],
    )
    axes[0].set(title="acceptance rate", ylim=(0, 1), xlabel="K")
    sns.lineplot(
        sweep,
        x="k",
        y="speedup",
        hue="style",
        hue_order=hue_order,
        palette=STYLE_COLORS,
        style="scenario",
        marker="o",
        ax=axes[1],
    )
    axes[1].axhline(1.0, color="gray", ls="--", lw=1)
    axes[1].set(title="speed-up (throughput)", xlabel="K")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def k_sweep_one_run(long: pd.DataFrame):
    """`benchmark.k_sweep_long`: one run's acceptance rate and speed-up against K."""
    fig, ax = _fig()
    sns.lineplot(long, x="k", y="value", hue="measure", marker="o", ax=ax)
    ax.axhline(1.0, color="grey", linestyle=":")  # speed-up 1: no gain
    ax.set(
        title="acceptance and speed-up against K", xlabel="K (draft tokens per step)", xticks=sorted(long["k"].unique())
    )
    return fig


def training_losses(losses: pd.DataFrame):
    """`analysis.training_losses`: target and draft LoRA loss curves side by side (a row per
    scenario), colour by style, dashed for validation."""
    title = "LoRA training loss"
    if not len(losses):
        return _no_data(title, "no training summary (<adapter>.train.json) found")
    grid = sns.relplot(
        losses,
        x="step",
        y="loss",
        hue="style",
        hue_order=_present(losses["style"], STYLE_ORDER),
        palette=STYLE_COLORS,
        style="split",
        col="role",
        col_order=_present(losses["role"], ("target", "draft")),
        row="scenario",
        kind="line",
        marker="o",
        height=2.8,
        aspect=1.4,
        facet_kws={"sharex": False, "sharey": False},
    )
    grid.figure.suptitle(title, y=1.02)
    return grid.figure


def trainings(compared: pd.DataFrame, points: pd.DataFrame):
    """CoD against CoT across trainings (`trainings.compare` and `.points`): top, each
    replicate's value as a point per style (the bar is the style's mean over its trainings);
    bottom, CoD − CoT with its 95% interval across trainings (thick) and over prompts alone
    (thin). One column per quantity; the dashed line is no difference."""
    title = "CoD against CoT across trainings"
    if not len(compared):
        return _no_data(title, "CoT and CoD are not both measured in any scenario yet")
    quantities = list(dict.fromkeys(compared["quantity"]))
    fig, axes = plt.subplots(2, len(quantities), figsize=(3.4 * len(quantities), 5.6), squeeze=False)
    colors = _palette(["cot", "cod"])
    for col, quantity in enumerate(quantities):
        rows = compared[compared["quantity"] == quantity].reset_index(drop=True)
        top, bottom = axes[0][col], axes[1][col]
        for j, style in enumerate(("cot", "cod")):
            dx = -0.15 + 0.3 * j
            for i, r in rows.iterrows():
                values = r[style]["per_replicate"]
                top.scatter(
                    [i + dx] * len(values),
                    values,
                    color=colors[style],
                    s=28,
                    alpha=0.8,
                    label=style if i == 0 else None,
                )
                top.hlines(r[style]["value"], i + dx - 0.12, i + dx + 0.12, color=colors[style], lw=2)
        for i, r in rows.iterrows():
            bottom.vlines(i, r["lo"], r["hi"], color="#333", lw=4, alpha=0.45)
            bottom.vlines(i, r["within_lo"], r["within_hi"], color="#333", lw=1.2)
            bottom.plot([i], [r["delta"]], "o", color="#333")
        bottom.axhline(0, color="gray", ls="--", lw=1)
        for ax in (top, bottom):
            ax.set_xticks(range(len(rows)), list(rows["scenario"]))
            ax.set_xlim(-0.6, len(rows) - 0.4)
        top.set(title=quantity)
        bottom.set(ylabel="CoD − CoT" if col == 0 else None)
        if col == 0:
            top.legend(title="style", fontsize=8, title_fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
