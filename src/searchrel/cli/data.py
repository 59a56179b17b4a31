"""CLI: make and prepare datasets — ``synth``, ``annotate``, ``split``."""

from __future__ import annotations

from pathlib import Path

import typer

from searchrel.annotate.logs import AnnotateConfig, annotate
from searchrel.cli.common import console, user_errors
from searchrel.data.dataset import load_dataset
from searchrel.data.splits import make_splits


@user_errors
def annotate_cmd(
    dataset: Path = typer.Argument(..., help="dataset directory with a search_log table"),
    out: Path | None = typer.Option(None, help="write the annotated dataset here (default: in place)"),
    top_k_boards: int = typer.Option(8, help="board titles kept per item"),
    top_k_queries: int = typer.Option(8, help="engaged queries kept per item"),
    window_days: int | None = typer.Option(None, help="only use the last N days of the log"),
    min_count: int = typer.Option(1, help="keep a title/query only if seen this often"),
    exclude_split: str = typer.Option("valid,test", help="query splits kept out of item features ('' for none)"),
) -> None:
    """Aggregate board titles and engaged queries per item from the search log (DuckDB)."""
    ds = load_dataset(dataset)
    cfg = AnnotateConfig(top_k_boards=top_k_boards, top_k_queries=top_k_queries, window_days=window_days,
                         min_count=min_count, exclude_splits=[s for s in exclude_split.split(",") if s])
    ds, report = annotate(ds, cfg)
    path = ds.save(out or dataset)
    console.print(f"annotated {len(ds.items):,} items: {report.items_with_boards:,} with board titles, "
                  f"{report.items_with_queries:,} with engaged queries ({report.events_used:,} engagements used, "
                  f"{report.events_excluded_split:,} from held-out queries left out) -> {path}")


@user_errors
def split_cmd(
    dataset: Path = typer.Argument(..., help="dataset directory"),
    fractions: str = typer.Option("0.7,0.1,0.2", help="train,valid,test fractions"),
    seed: int = typer.Option(0, help="hash seed of the assignment"),
) -> None:
    """(Re)write the query-grouped, language-stratified train/valid/test split."""
    ds = load_dataset(dataset)
    try:
        fr = tuple(float(x) for x in fractions.split(","))
    except ValueError:
        raise ValueError(f"fractions must be three numbers like 0.7,0.1,0.2, got {fractions!r}") from None
    ds.splits = make_splits(ds.queries, fr, seed)  # type: ignore[arg-type]
    ds.save(dataset)
    counts = ds.splits["split"].value_counts()
    console.print(", ".join(f"{s}: {counts.get(s, 0):,} queries" for s in ("train", "valid", "test")) + f" -> {dataset}")
