"""CLI: ``eval`` and the ``baseline`` commands — score judged pairs and report the metrics."""

from __future__ import annotations

from pathlib import Path

import typer

from searchrel.annotate.text import TextConfig
from searchrel.baselines.bm25 import bm25_predictions
from searchrel.cli.common import console, user_errors
from searchrel.data.dataset import load_dataset
from searchrel.eval.evaluate import EvalConfig, EvalResult, evaluate, read_predictions
from searchrel.eval.tables import rich_table

baseline_app = typer.Typer(help="Baselines the teacher must beat.", no_args_is_help=True)


def text_config(ds, fields: str | None, budgets: str | None) -> TextConfig:
    cfg = TextConfig.parse(fields, budgets) if fields else TextConfig.default_for(ds.items)
    if budgets and not fields:
        cfg = TextConfig.parse(",".join(cfg.fields), budgets)
    cfg.check(ds.text_fields)
    return cfg


def report(name: str, result: EvalResult, out: Path | None) -> None:
    console.print(rich_table({name: result}))
    if out:
        console.print(f"metrics -> {result.save(out)}")


@user_errors
def eval_cmd(
    data: Path = typer.Option(..., "--data", help="dataset directory"),
    predictions: Path = typer.Option(..., help="CSV/TSV/JSONL/Parquet: query_id,item_id,score and/or p_<grade> columns"),
    split: str = typer.Option("test", help="test, valid, train or all"),
    out: Path | None = typer.Option(None, help="write the metrics JSON here"),
    k: list[int] = typer.Option([8, 20], "--k", help="NDCG cut-offs"),
) -> None:
    """Evaluate any system's predictions on a dataset's judged pairs (like trec_eval)."""
    ds = load_dataset(data)
    result = evaluate(ds, read_predictions(predictions), EvalConfig(ks=k, split=split))
    if result.unjudged_predictions:
        console.print(f"note: {result.unjudged_predictions:,} predicted pairs have no judgment and were not scored")
    report(predictions.stem, result, out)


@baseline_app.command("bm25")
@user_errors
def bm25_cmd(
    dataset: Path = typer.Argument(..., help="dataset directory"),
    fields: str | None = typer.Option(None, help="item fields, comma-separated (default: the filled core fields)"),
    budgets: str | None = typer.Option(None, help="token budgets, e.g. title=32,description=64"),
    split: str = typer.Option("test", help="test, valid, train or all"),
    out: Path | None = typer.Option(None, help="write the metrics JSON here"),
    predictions_out: Path | None = typer.Option(None, help="also write the per-pair scores (Parquet/CSV)"),
) -> None:
    """BM25 (bm25s) over the whole catalogue, re-ranking each query's judged candidates."""
    ds = load_dataset(dataset)
    cfg = text_config(ds, fields, budgets)
    preds = bm25_predictions(ds, cfg, split)
    if predictions_out:
        predictions_out.parent.mkdir(parents=True, exist_ok=True)
        (preds.to_parquet if predictions_out.suffix == ".parquet" else preds.to_csv)(predictions_out, index=False)
    report(f"bm25[{','.join(cfg.fields)}]", evaluate(ds, preds, EvalConfig(split=split)), out)
