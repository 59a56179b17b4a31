"""Evaluate a model's (or any external system's) predictions on a dataset's judged pairs, like trec_eval.

Predictions are a table with ``query_id, item_id, score`` and optionally one probability column per grade,
named ``p_<grade>`` (``p_1 .. p_4`` on a 1–4 scale), and optionally a ``grade`` column (a model's decoded grade).
With probabilities, the predicted grade is ``grade`` where given, else the most probable one; without a
``score`` column, ranking uses the expected grade. A scorer that only ranks
(BM25, a cosine) gets its grade metrics (accuracy, macro-F1, QWK) reported as n/a, never invented.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from searchrel.data.dataset import Dataset, DatasetError
from searchrel.data.tables import read_table
from searchrel.eval import metrics as M


class EvalConfig(BaseModel):
    ks: list[int] = Field(default_factory=lambda: [8, 20], description="cut-offs for NDCG@k")
    precision_k: int = 8
    split: str = "test"


class EvalResult(BaseModel):
    """Metrics overall, per query language and per query country, as ``searchrel eval --out`` writes them."""

    overall: dict[str, float | None]
    by_language: dict[str, dict[str, float | None]]
    by_country: dict[str, dict[str, float | None]]
    n_queries: int
    n_pairs: int
    split: str
    unjudged_predictions: int = 0

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.model_dump(), indent=2, allow_nan=False) + "\n")
        return path


def mean_of(results: list[EvalResult]) -> EvalResult:
    """The metrics of several runs of one system (e.g. student seeds) averaged key by key, overall and per slice; a
    metric that is n/a in any run stays n/a. The runs must cover the same split and slices."""
    if not results:
        raise ValueError("mean_of needs at least one result")
    first = results[0]
    if any(r.split != first.split or set(r.by_language) != set(first.by_language) for r in results):
        raise ValueError("mean_of: the results cover different splits or languages")

    def avg(dicts: list[dict[str, float | None]]) -> dict[str, float | None]:
        return {k: None if any(d.get(k) is None for d in dicts) else float(np.mean([d[k] for d in dicts]))
                for k in dicts[0]}

    return first.model_copy(update={
        "overall": avg([r.overall for r in results]),
        "by_language": {k: avg([r.by_language[k] for r in results]) for k in first.by_language},
        "by_country": {k: avg([r.by_country[k] for r in results]) for k in first.by_country
                       if all(k in r.by_country for r in results)}})


def prob_columns(ds: Dataset) -> list[str]:
    return [f"p_{g}" for g in ds.info.scale.grades]


def read_predictions(path: str | Path) -> pd.DataFrame:
    """Read predictions from CSV, TSV, JSONL or Parquet."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such predictions file")
    return read_table(path, dtype={"query_id": str, "item_id": str})


def attach_predictions(ds: Dataset, preds: pd.DataFrame, split: str,
                       pairs: pd.DataFrame | None = None) -> tuple[pd.DataFrame, int]:
    """Join predictions onto the split's judged pairs; every judged pair must have a prediction."""
    for col in ("query_id", "item_id"):
        if col not in preds.columns:
            raise DatasetError(f"predictions: missing column {col} (has: {', '.join(map(str, preds.columns))})")
    probs = prob_columns(ds)
    has_probs = [c for c in probs if c in preds.columns]
    if has_probs and len(has_probs) != len(probs):
        raise DatasetError(f"predictions: grade probabilities need all of {', '.join(probs)}; found {', '.join(has_probs)}")
    if "score" not in preds.columns and not has_probs:
        raise DatasetError(f"predictions: need a score column or the grade probabilities {', '.join(probs)}")
    preds = preds.copy()
    preds["query_id"] = preds["query_id"].astype(str)
    preds["item_id"] = preds["item_id"].astype(str)
    dup = preds.duplicated(["query_id", "item_id"])
    if dup.any():
        row = int(dup.to_numpy().argmax())
        raise DatasetError(f"predictions, row {row}: pair ({preds['query_id'].iloc[row]}, {preds['item_id'].iloc[row]}) "
                           f"is predicted twice ({int(dup.sum())} duplicate row(s))")
    if has_probs:
        p = preds[probs].to_numpy(dtype=float)
        if np.isnan(p).any() or (p < -1e-6).any() or (np.abs(p.sum(1) - 1) > 1e-3).any():
            row = int((np.isnan(p).any(1) | (p < -1e-6).any(1) | (np.abs(p.sum(1) - 1) > 1e-3)).argmax())
            raise DatasetError(f"predictions, row {row}: grade probabilities must be non-negative and sum to 1")
        grades = np.array(ds.info.scale.grades)
        preds["pred_grade"] = preds["grade"].astype(int) if "grade" in preds.columns else grades[p.argmax(1)]
        if "score" not in preds.columns:
            preds["score"] = p @ grades
    elif "grade" in preds.columns:
        preds["pred_grade"] = preds["grade"].astype(int)
    if "pred_grade" in preds.columns and not preds["pred_grade"].isin(ds.info.scale.grades).all():
        row = int((~preds["pred_grade"].isin(ds.info.scale.grades)).to_numpy().argmax())
        raise DatasetError(f"predictions, row {row}: grade {preds['pred_grade'].iloc[row]} is not on the scale "
                           f"{ds.info.scale.min}..{ds.info.scale.max}")
    if preds["score"].isna().any():
        row = int(preds["score"].isna().to_numpy().argmax())
        raise DatasetError(f"predictions, row {row}: score is empty")
    if pairs is None:
        pairs = ds.pairs(split)
    merged = pairs.merge(preds, on=["query_id", "item_id"], how="left", indicator=True)
    missing = merged["_merge"] == "left_only"
    if missing.any():
        ex = merged[missing].iloc[0]
        raise DatasetError(f"predictions lack {int(missing.sum())} of the {len(pairs)} judged pairs of split {split!r} "
                           f"(e.g. query {ex['query_id']}, item {ex['item_id']}): score every judged pair")
    unjudged = len(preds) - len(merged)
    return merged.drop(columns="_merge"), unjudged


def ranking_metric(metric: str) -> tuple[str, int]:
    """``("ndcg", K)`` or ``("p", K)`` from ``ndcg@K`` / ``p@K``; a clear error for anything else."""
    kind, _, k = metric.partition("@")
    if kind not in ("ndcg", "p") or not k.isdigit() or int(k) < 1:
        raise ValueError(f"metric {metric!r}: give ndcg@K, p@K or qwk (e.g. ndcg@8)")
    return kind, int(k)


def query_metrics(g: pd.DataFrame, ds: Dataset, metrics: list[str]) -> list[float | None]:
    """One query's ``ndcg@K`` / ``p@K`` values, in the order of ``metrics``, from its joined pairs (``label``,
    ``score``, ``item_id``); None where a metric is undefined (NDCG of a query without a relevant candidate)."""
    lab, sc, ids = g["label"].to_numpy(), g["score"].to_numpy(), g["item_id"].to_numpy()
    out: list[float | None] = []
    for metric in metrics:
        kind, k = ranking_metric(metric)
        out.append(M.ndcg_at_k(lab, sc, ids, k, ds.info.scale.min) if kind == "ndcg"
                   else M.precision_at_k(lab, sc, ids, k, ds.info.relevant_min))
    return out


def compute_metrics(df: pd.DataFrame, ds: Dataset, config: EvalConfig) -> dict[str, float | None]:
    """All metrics over one group of joined pairs (``label``, ``score``, optional ``pred_grade``)."""
    scale = ds.info.scale
    labels = df["label"].to_numpy(dtype=int)
    score = df["score"].to_numpy(dtype=float)
    out: dict[str, float | None] = {}
    if "pred_grade" in df.columns:
        pred = df["pred_grade"].to_numpy(dtype=int)
        out["accuracy"] = M.accuracy(labels, pred)
        out["macro_f1"] = M.macro_f1(labels, pred, scale.grades)
        out["qwk"] = M.quadratic_weighted_kappa(labels, pred, scale.grades)
    else:
        out["accuracy"] = out["macro_f1"] = out["qwk"] = None
    for t in scale.grades[1:]:
        out[f"auroc@>={t}"] = M.auroc(labels >= t, score)
    names = [f"ndcg@{k}" for k in config.ks] + [f"p@{config.precision_k}"]
    per_query: dict[str, list[float]] = {name: [] for name in names}
    for _, g in df.groupby("query_id", sort=False):
        for name, v in zip(names, query_metrics(g, ds, names)):
            if v is not None:
                per_query[name].append(v)
    for key, values in per_query.items():
        out[key] = float(np.mean(values)) if values else None
    out["n_queries"] = float(df["query_id"].nunique())
    out["n_pairs"] = float(len(df))
    return out


def evaluate(ds: Dataset, preds: pd.DataFrame, config: EvalConfig = EvalConfig(),
             pairs: pd.DataFrame | None = None) -> EvalResult:
    """Metrics of ``preds`` on ``config.split`` of ``ds`` (or on the given subset of its judged ``pairs``):
    overall, per language, per country."""
    df, unjudged = attach_predictions(ds, preds, config.split, pairs)
    if df.empty:
        raise DatasetError(f"split {config.split!r} has no judged pairs to evaluate")
    by_language = {str(k): compute_metrics(g, ds, config) for k, g in df.groupby("language", sort=True)}
    by_country = {}
    if "country" in df.columns:
        by_country = {str(k): compute_metrics(g, ds, config)
                      for k, g in df.groupby(df["country"].fillna("unknown"), sort=True)}
    return EvalResult(overall=compute_metrics(df, ds, config), by_language=by_language, by_country=by_country,
                      n_queries=int(df["query_id"].nunique()), n_pairs=len(df), split=config.split,
                      unjudged_predictions=unjudged)
