"""Evaluation results as tables people read: Rich on the terminal, Markdown for READMEs and reports."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from searchrel.eval.evaluate import EvalResult

HEADLINE = ("ndcg@8", "ndcg@20", "p@8", "accuracy", "macro_f1", "qwk")


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def metric_columns(result: EvalResult) -> list[str]:
    aurocs = [k for k in result.overall if k.startswith("auroc@")]
    return [k for k in HEADLINE if k in result.overall] + aurocs


def rows(results: dict[str, EvalResult], breakdown: bool = True) -> list[tuple[str, str, dict]]:
    """(system, slice, metrics) rows: each system overall, then per language and per country."""
    out = []
    for name, r in results.items():
        out.append((name, "all", r.overall))
        if breakdown:
            if len(r.by_language) > 1:
                out += [(name, f"lang={k}", v) for k, v in r.by_language.items()]
            if len(r.by_country) > 1:
                out += [(name, f"country={k}", v) for k, v in r.by_country.items()]
    return out


def rich_table(results: dict[str, EvalResult], title: str = "", breakdown: bool = True) -> Table:
    first = next(iter(results.values()))
    cols = metric_columns(first)
    table = Table(title=title or f"split={first.split}")
    for c in ["system", "slice", "queries", "pairs", *cols]:
        table.add_column(c, justify="left" if c in ("system", "slice") else "right")
    for name, slice_, m in rows(results, breakdown):
        table.add_row(escape(name), escape(slice_), str(int(m["n_queries"])), str(int(m["n_pairs"])), *(_fmt(m.get(c)) for c in cols))
    return table


def markdown_table(results: dict[str, EvalResult], breakdown: bool = True) -> str:
    first = next(iter(results.values()))
    cols = metric_columns(first)
    head = ["system", "slice", "queries", "pairs", *cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for name, slice_, m in rows(results, breakdown):
        cells = [name, slice_, str(int(m["n_queries"])), str(int(m["n_pairs"])), *(_fmt(m.get(c)) for c in cols)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
