"""Which pairs should people grade next: a rating sheet of the pairs whose human label would help most.

The candidates are the pairs the teacher labelled for distillation (``distill/labels``): traffic-weighted and
retrieved pairs of **train-split queries only** — a rating of a valid or test query would leak into model
selection and evaluation — less the pairs already judged or rated. Each candidate is scored three ways:

* ``uncertain``: the teacher is unsure — the standard deviation of the grade under its distribution
  ``p(grade)``, over half the scale's span (1: all mass on the two ends);
* ``disagree``: the teacher and the served student disagree — ``|E_teacher[grade] - E_student[grade]|`` over the
  span: the student was distilled from the teacher, so where they still differ a human label settles it;
* ``uncovered``: the query has the fewest human labels (then its language the fewest per train query, then the
  teacher's uncertainty breaks ties).

The budget is split across the reasons (``shares``) and, within a reason, across languages in turns, so every
language of the pool gets its part rather than the one with the most traffic; no query takes more than
``per_query`` rows. Every row says why it was picked, in words, with the numbers behind it. ``random_sheet`` draws
the same number from the same pool uniformly: the control the suggestions must beat.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from searchrel.data.dataset import Dataset
from searchrel.data.ratings import read_store
from searchrel.distill.label import read_labels
from searchrel.experiments.scorers import load_scorer

REASONS = ("disagree", "uncertain", "uncovered")


class SuggestConfig(BaseModel):
    """How a rating sheet is picked."""

    model_config = ConfigDict(extra="forbid")

    budget: int = Field(200, ge=1)  # rows in the sheet: pairs to grade
    # share of the budget per reason; a reason with no candidates (no student: no disagreement) passes its share on
    shares: dict[str, float] = Field(default_factory=lambda: {"disagree": 0.4, "uncertain": 0.4, "uncovered": 0.2})
    per_query: int = Field(3, ge=1)  # at most this many rows of one query: spread the labels over queries
    languages: list[str] | None = None  # only queries in these languages (e.g. the teacher's train_languages)

    @field_validator("shares")
    @classmethod
    def _shares(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = set(v) - set(REASONS)
        if unknown or not v or min(v.values()) < 0 or sum(v.values()) <= 0:
            raise ValueError(f"shares: non-negative weights over {', '.join(REASONS)}, got {v}")
        return v


def candidates(ds: Dataset, labels: Path, student: Path | None = None, store: Path | None = None,
               languages: list[str] | None = None) -> pd.DataFrame:
    """The pool: the teacher-labelled pairs of train queries, not yet judged or rated, with every score a reason
    needs (``teacher_expected``, ``teacher_sd``, ``student_expected``, ``query_labels``, ``language_density``)."""
    scale = ds.info.scale
    grades = np.asarray(scale.grades, dtype=float)
    lab = read_labels(labels)
    split = ds.split_of()
    pool = lab[lab["query_id"].map(split) == "train"]
    taken = ds.judgments[["query_id", "item_id"]]
    if store is not None:
        taken = pd.concat([taken, read_store(store)[["query_id", "item_id"]]], ignore_index=True)
    seen = pd.MultiIndex.from_frame(taken.astype(str))
    pool = pool[~pd.MultiIndex.from_frame(pool[["query_id", "item_id"]].astype(str)).isin(seen)]
    queries = ds.queries.set_index("query_id")
    pool = pool.assign(language=pool["query_id"].map(queries["language"]), query=pool["query_id"].map(queries["text"]))
    if languages:
        pool = pool[pool["language"].isin(languages)]
    pool = pool.drop_duplicates(["query_id", "item_id"]).reset_index(drop=True)
    p = pool[[f"p_{g}" for g in scale.grades]].to_numpy(float)
    p = p / p.sum(1, keepdims=True)
    half_span = (scale.max - scale.min) / 2
    expected = p @ grades
    pool["teacher_expected"] = expected
    pool["teacher_sd"] = np.sqrt(np.clip(p @ grades ** 2 - expected ** 2, 0, None))
    pool["uncertain"] = pool["teacher_sd"] / half_span
    if student is not None and len(pool):
        preds = load_scorer(student).predict(ds, pairs=pool[["query_id", "item_id"]])
        pool["student_expected"] = preds["score"].to_numpy()
        pool["disagree"] = (pool["teacher_expected"] - pool["student_expected"]).abs() / (scale.max - scale.min)
    else:
        pool["student_expected"] = np.nan
        pool["disagree"] = np.nan
    # coverage: human labels (judged and already rated) per query, and per train query of each language
    per_query = taken.groupby("query_id").size()
    pool["query_labels"] = pool["query_id"].map(per_query).fillna(0).astype(int)
    train_q = ds.queries[ds.queries["query_id"].map(split) == "train"]
    density = (train_q["query_id"].map(per_query).fillna(0).groupby(train_q["language"]).mean())
    pool["language_density"] = pool["language"].map(density).fillna(0.0)
    # fewest labels for the query, then for its language, then the most unsure teacher: as a rank in [0, 1]
    order = np.lexsort((-pool["uncertain"].to_numpy(), pool["language_density"].to_numpy(),
                        pool["query_labels"].to_numpy()))
    rank = np.empty(len(pool))
    rank[order] = np.arange(len(pool))
    pool["uncovered"] = 1 - rank / max(1, len(pool))
    return pool


def _reason(row: dict, pick: str, grades: list[int], density: pd.Series) -> str:
    """Why ``row`` was picked, in words, with the numbers behind it."""
    if pick == "random":
        return "random: the control draw"
    if pick == "disagree":
        return (f"teacher and student disagree: expected grade {row['teacher_expected']:.2f} vs "
                f"{row['student_expected']:.2f}")
    if pick == "uncertain":
        (p1, g1), (p2, g2) = sorted(((row[f"p_{g}"], g) for g in grades), reverse=True)[:2]
        return f"teacher unsure: grade sd {row['teacher_sd']:.2f} (p({g1}) = {p1:.2f}, p({g2}) = {p2:.2f})"
    others = ", ".join(f"{lang} {d:.1f}" for lang, d in density.sort_values().items()) if len(density) > 1 else ""
    return (f"few labels: the query has {row['query_labels']} human label(s); {row['language']} has "
            f"{row['language_density']:.1f} per train query" + (f" (by language: {others})" if others else ""))


def _take(pool: pd.DataFrame, score: str, k: int, picked: np.ndarray, per_query: dict[str, int], cap: int) -> list[int]:
    """Up to ``k`` rows of ``pool`` by ``score`` (highest first), languages taking turns; marks them picked."""
    orders = {lang: list(grp.sort_values([score, "query_id", "item_id"], ascending=[False, True, True]).index)
              for lang, grp in pool[pool[score].notna()].groupby("language", sort=True)}
    cursor = dict.fromkeys(orders, 0)
    out: list[int] = []
    while len(out) < k and orders:
        for lang in list(orders):
            order, i = orders[lang], cursor[lang]
            while i < len(order) and (picked[order[i]] or per_query.get(pool.at[order[i], "query_id"], 0) >= cap):
                i += 1
            if i == len(order):
                del orders[lang]
                continue
            j = order[i]
            cursor[lang] = i + 1
            picked[j] = True
            qid = pool.at[j, "query_id"]
            per_query[qid] = per_query.get(qid, 0) + 1
            out.append(j)
            if len(out) == k:
                break
    return out


def suggest(ds: Dataset, pool: pd.DataFrame, cfg: SuggestConfig = SuggestConfig()) -> pd.DataFrame:
    """The sheet: ``budget`` rows of ``pool`` (from :func:`candidates`), stratified by reason and language, each
    with its ``pick`` and a ``reason`` in words; ``grade`` and ``rater`` blank for the raters."""
    pool = pool.reset_index(drop=True)
    usable = {r: w for r, w in cfg.shares.items() if w > 0 and pool[r].notna().any()}
    total = sum(usable.values()) or 1.0
    budget = min(cfg.budget, len(pool))
    quotas = {r: int(round(budget * w / total)) for r, w in usable.items()}
    picked = np.zeros(len(pool), bool)
    per_query: dict[str, int] = {}
    rows: list[tuple[int, str]] = []
    carry = 0  # what the reasons before could not fill passes to the next ones
    for r in (r for r in REASONS if r in quotas):
        got = _take(pool, r, min(quotas[r] + carry, budget - len(rows)), picked, per_query, cfg.per_query)
        carry += quotas[r] - len(got)
        rows += [(j, r) for j in got]
    for r in REASONS:  # still short (small pools, the per-query cap): fill by any reason, the cap relaxed
        if len(rows) < budget and r in usable:
            rows += [(j, r) for j in _take(pool, r, budget - len(rows), picked, {}, budget)]
    return _sheet(ds, pool, rows)


def random_sheet(ds: Dataset, pool: pd.DataFrame, budget: int, seed: int) -> pd.DataFrame:
    """``budget`` rows of ``pool`` drawn uniformly (the control for :func:`suggest`)."""
    pool = pool.reset_index(drop=True)
    take = np.random.default_rng(seed).choice(len(pool), min(budget, len(pool)), replace=False)
    return _sheet(ds, pool, [(int(j), "random") for j in take])


def _sheet(ds: Dataset, pool: pd.DataFrame, rows: list[tuple[int, str]]) -> pd.DataFrame:
    grades = ds.info.scale.grades
    titles = ds.items.set_index("item_id")["title"]
    density = pool.drop_duplicates("language").set_index("language")["language_density"]
    out = []
    for j, pick in rows:
        row = pool.loc[j].to_dict()
        out.append({"query_id": row["query_id"], "item_id": row["item_id"], "language": row["language"],
                    "query": row["query"], "item_title": str(titles.get(row["item_id"], "") or ""),
                    "reason": _reason(row, pick, grades, density), "grade": "", "rater": "", "pick": pick,
                    "teacher_expected": round(float(row["teacher_expected"]), 3),
                    "teacher_sd": round(float(row["teacher_sd"]), 3),
                    "student_expected": None if pd.isna(row["student_expected"])
                    else round(float(row["student_expected"]), 3),
                    "query_labels": int(row["query_labels"])})
    sheet = pd.DataFrame(out, columns=["query_id", "item_id", "language", "query", "item_title", "reason", "grade",
                                       "rater", "pick", "teacher_expected", "teacher_sd", "student_expected",
                                       "query_labels"])
    # a rater grades one query's items together
    return sheet.sort_values(["language", "query_id", "item_id"], kind="stable").reset_index(drop=True)


def summary(sheet: pd.DataFrame) -> dict:
    """Rows per reason and per language, and how many queries the sheet touches."""
    return {"rows": int(len(sheet)), "queries": int(sheet["query_id"].nunique()),
            "by_reason": {k: int(v) for k, v in sheet["pick"].value_counts().sort_index().items()},
            "by_language": {k: int(v) for k, v in sheet["language"].value_counts().sort_index().items()}}
