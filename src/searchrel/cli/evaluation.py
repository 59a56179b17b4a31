"""CLI: ``eval`` and the ``baseline`` commands — score judged pairs and report the metrics."""

from __future__ import annotations

from pathlib import Path

import typer

from searchrel.baselines.bm25 import bm25_predictions
from searchrel.cli.common import console, text_config, user_errors, write_table
from searchrel.data.dataset import load_dataset
from searchrel.eval.evaluate import EvalConfig, EvalResult, evaluate, read_predictions
from searchrel.eval.tables import rich_table

baseline_app = typer.Typer(help="Baselines the teacher must beat.", no_args_is_help=True)


def report(name: str, result: EvalResult, out: Path | None) -> None:
    console.print(rich_table({name: result}))
    if out:
        console.print(f"metrics -> {result.save(out)}")


@user_errors
def eval_cmd(
    data: Path = typer.Option(..., "--data", help="dataset directory"),
    predictions: Path | None = typer.Option(None, help="CSV/TSV/JSONL/Parquet: query_id,item_id,score and/or p_<grade> columns"),
    model: Path | None = typer.Option(None, help="a trained teacher (or student) directory to score the pairs with"),
    split: str = typer.Option("test", help="test, valid, train or all"),
    out: Path | None = typer.Option(None, help="write the metrics JSON here"),
    k: list[int] = typer.Option([8, 20], "--k", help="NDCG cut-offs"),
    against: Path | None = typer.Option(None, help="a second system (a model directory or a predictions file): "
                                        "also print the paired difference per language, with a bootstrap interval "
                                        "over queries and a randomization test"),
    metric: str = typer.Option("ndcg@8", help="the metric --against compares: ndcg@K, p@K or qwk (decoded grades)"),
    reps: int = typer.Option(10_000, min=100, help="bootstrap and randomization resamples (--against, --intervals)"),
    intervals: bool = typer.Option(False, help="also print NDCG@8, QWK and AUROC per threshold, per language, with "
                                   "95% bootstrap intervals over queries"),
) -> None:
    """Evaluate a model, or any system's predictions, on a dataset's judged pairs (like trec_eval)."""
    if (predictions is None) == (model is None):
        raise ValueError("give exactly one of --predictions FILE or --model DIR")
    if against is None and metric != "ndcg@8":
        raise ValueError(f"--metric {metric} chooses what --against compares: give --against SYSTEM too")
    if against is None and not intervals and reps != 10_000:
        raise ValueError("--reps sets the resamples of --against and --intervals: give one of them too")
    ds = load_dataset(data)
    preds, name = _system(ds, model or predictions, split, is_model=model is not None)
    result = evaluate(ds, preds, EvalConfig(ks=k, split=split))
    if result.unjudged_predictions:
        console.print(f"note: {result.unjudged_predictions:,} predicted pairs have no judgment and were not scored")
    report(name, result, out)
    if intervals:
        from searchrel.eval.intervals import markdown as interval_table
        from searchrel.eval.intervals import metric_intervals

        spread = metric_intervals(ds, preds, split, reps=reps)
        console.print(interval_table(spread, name), markup=False, soft_wrap=True)
        if out:
            path = out.with_name(out.stem + ".intervals.json")
            path.write_text(spread.model_dump_json(indent=2) + "\n")
            console.print(f"intervals -> {path}")
    if against is not None:
        from searchrel.eval.paired import compare_predictions, markdown

        other, other_name = _system(ds, against, split, is_model=against.is_dir())
        if other_name == name:  # two runs' student-x10, say: tell them apart by their parent directories
            name, other_name = f"{(model or predictions).parent.name}/{name}", f"{against.parent.name}/{other_name}"
        paired = compare_predictions(ds, preds, other, split, metric, reps)
        console.print(markdown(paired, name, other_name), markup=False, soft_wrap=True)
        if out:
            path = out.with_name(out.stem + ".paired.json")
            path.write_text(paired.model_dump_json(indent=2) + "\n")
            console.print(f"paired comparison -> {path}")


def _system(ds, path: Path, split: str, is_model: bool):
    """One system's predictions on ``split`` and its name: a trained model's directory, or a predictions file."""
    if is_model:
        from searchrel.experiments.scorers import load_scorer

        return load_scorer(path).predict(ds, split), path.name
    return read_predictions(path), path.stem


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
        write_table(preds, predictions_out)
    report(f"bm25[{','.join(cfg.fields)}]", evaluate(ds, preds, EvalConfig(split=split)), out)


@baseline_app.command("embed")
@user_errors
def embed_cmd(
    dataset: Path = typer.Argument(..., help="dataset directory"),
    model: str = typer.Option("me5-small", help="embedding model: registered name, local path or hub id"),
    fields: str | None = typer.Option(None, help="item fields, comma-separated (default: the filled core fields)"),
    budgets: str | None = typer.Option(None, help="token budgets, e.g. title=32,description=64"),
    split: str = typer.Option("test", help="test, valid, train or all"),
    fp32: bool = typer.Option(False, help="no bf16"),
    out: Path | None = typer.Option(None, help="write the metrics JSON here"),
    predictions_out: Path | None = typer.Option(None, help="also write the per-pair scores (Parquet/CSV)"),
) -> None:
    """Zero-shot embedding baseline (SearchSage analogue): cosine of query and item embeddings."""
    from searchrel.baselines.embed import embed_predictions

    ds = load_dataset(dataset)
    cfg = text_config(ds, fields, budgets)
    preds = embed_predictions(ds, cfg, split, model=model, precision="fp32" if fp32 else "auto")
    if predictions_out:
        write_table(preds, predictions_out)
    report(f"zero-shot {model}[{','.join(cfg.fields)}]", evaluate(ds, preds, EvalConfig(split=split)), out)
