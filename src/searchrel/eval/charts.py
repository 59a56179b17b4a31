"""Charts people would rather look at than read: grouped bars per system, lines over ablation steps (matplotlib)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from searchrel.eval.evaluate import EvalResult  # noqa: E402

DEFAULT_METRICS = ("ndcg@8", "ndcg@20", "p@8", "qwk", "accuracy")


def bar_chart(results: dict[str, EvalResult], path: Path, title: str, metrics=DEFAULT_METRICS) -> Path:
    """Grouped bars: one group per metric, one bar per system; n/a metrics are left out, not drawn as 0."""
    systems = list(results)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(metrics) + 0.6 * len(systems)), 4.2))
    width = 0.8 / max(1, len(systems))
    for s, name in enumerate(systems):
        xs, ys = [], []
        for m, metric in enumerate(metrics):
            v = results[name].overall.get(metric)
            if v is not None:
                xs.append(m + (s - (len(systems) - 1) / 2) * width)
                ys.append(v)
        bars = ax.bar(xs, ys, width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def line_chart(steps: list[str], series: dict[str, list[float | None]], path: Path, title: str, ylabel: str,
               references: dict[str, float | None] | None = None) -> Path:
    """One line per series over ordered steps (an ablation's growing field sets, an amplification curve), and a
    dashed horizontal line per reference value (e.g. the teacher an amplification curve climbs towards)."""
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for name, ys in series.items():
        pts = [(i, y) for i, y in enumerate(ys) if y is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
            for x, y in pts:
                ax.annotate(f"{y:.3f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    for i, (name, y) in enumerate((references or {}).items()):
        if y is not None:
            ax.axhline(y, color=f"C{len(series) + i}", linestyle="--", linewidth=1.2, label=f"{name} ({y:.3f})")
    ax.set_xticks(range(len(steps)), steps, fontsize=8)
    ax.margins(y=0.12)  # room for the value labels and a reference line at the top
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
