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


@user_errors
def synth_cmd(
    out: Path = typer.Argument(..., help="where to write the synthetic dataset"),
    seed: int = typer.Option(0, help="same seed, identical world"),
    items: int = typer.Option(3000, help="catalogue size"),
    queries: int = typer.Option(500, help="distinct queries"),
    users: int = typer.Option(2000, help="users (savers with boards)"),
    judged_pairs: int = typer.Option(6000, help="human-judged (query, item) pairs"),
    searches: int = typer.Option(12_000, help="searches in the log (x ~15 impressions each)"),
    languages: str = typer.Option("en,es,de,fr,ja", help="languages of queries and items"),
) -> None:
    """Generate the synthetic Pinterest-like world (clearly labelled synthetic), deterministic by seed."""
    from searchrel.data.synth import SynthConfig, synthesize

    cfg = SynthConfig(seed=seed, n_items=items, n_queries=queries, n_users=users, n_judged_pairs=judged_pairs,
                      n_searches=searches, languages=tuple(s.strip() for s in languages.split(",") if s.strip()))
    ds = synthesize(cfg)
    path = ds.save(out)
    console.print(f"synthetic world: {len(ds.items):,} items, {len(ds.queries):,} queries, {len(ds.judgments):,} "
                  f"judgments, {len(ds.search_log):,} log events -> {path}")
