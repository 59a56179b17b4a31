"""The report's matplotlib figures (Agg, PNG files): grouped bars, confusion heatmaps, reliability diagrams,
a curve against a reference line, latency percentiles. Each function draws one figure and returns its path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 110
MIN_BIN = 3  # pairs a reliability-diagram point needs


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _wrap(name: str, width: int = 34) -> str:
    return "\n".join(textwrap.wrap(name, width)) or name


def grouped_bars(groups: list[str], series: dict[str, list[float | None]], path: Path, title: str,
                 ylabel: str) -> Path:
    """One group of bars per slice (a language, a country), one bar per series; None is left out, not 0."""
    fig, ax = plt.subplots(figsize=(max(6.5, 0.9 * len(groups) * max(1, len(series)) ** 0.5 + 3), 4))
    width = 0.8 / max(1, len(series))
    for s, (name, values) in enumerate(series.items()):
        pts = [(g + (s - (len(series) - 1) / 2) * width, v) for g, v in enumerate(values) if v is not None]
        ax.bar([p[0] for p in pts], [p[1] for p in pts], width, label=_wrap(name))
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def _grid(n: int, per_row: int = 3, size: tuple[float, float] = (4.4, 4.0)):
    cols = min(per_row, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def confusion_grid(matrices: dict[str, np.ndarray], labels: list[str], path: Path) -> Path:
    """One heatmap per system: rows the human grade, columns the predicted one; colour is the row share,
    each cell says its count and its share of the row."""
    fig, axes = _grid(len(matrices))
    for ax, (name, counts) in zip(axes, matrices.items()):
        totals = counts.sum(1, keepdims=True)
        share = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(counts.shape[0]):
            for j in range(counts.shape[1]):
                ax.text(j, i, f"{int(counts[i, j])}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.55 else "black")
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel("predicted grade")
        ax.set_ylabel("human grade")
        ax.set_title(_wrap(name), fontsize=9)
    return _save(fig, path)


def reliability_grid(curves: dict[str, dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]], path: Path) -> Path:
    """Reliability diagrams, one panel per system: for each grade (one vs rest) the mean predicted probability
    of a bin against how often the grade was the human one; the diagonal is perfect calibration. Marker size
    follows the number of pairs in the bin."""
    fig, axes = _grid(len(curves))
    for ax, (name, per_grade) in zip(axes, curves.items()):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
        for grade, (pred, freq, count) in per_grade.items():
            keep = count >= MIN_BIN  # a point from one or two pairs is noise, not calibration
            ax.plot(pred[keep], freq[keep], marker="o", markersize=3, linewidth=1.2, label=f"grade {grade}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("observed frequency")
        ax.set_title(_wrap(name), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def latency_chart(rows: list[dict], path: Path, title: str) -> Path:
    """Re-ranking latency against the number of candidates: p50 solid (dots), p99 dashed (squares), one colour
    per cache state."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for c, cache in enumerate(sorted({str(r.get("cache", "")) for r in rows})):
        rs = sorted((r for r in rows if str(r.get("cache", "")) == cache), key=lambda r: r["candidates"])
        xs = [r["candidates"] for r in rs]
        for key, style, marker in (("p50_ms", "-", "o"), ("p99_ms", "--", "s")):
            ys = [r.get(key) for r in rs]
            pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
            if pts:
                ax.plot(*zip(*pts), linestyle=style, marker=marker, color=f"C{c}",
                        label=f"{cache or 'all'} cache, {key.split('_')[0]}")
    ax.set_xlabel("candidates per request")
    ax.set_ylabel("milliseconds")
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
