"""The rating round's suggestions: only train queries' unjudged, unrated pairs; the budget split by reason and by
language in turns, with a per-query cap; every row explained; the `rate suggest` → `import ratings` round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from searchrel.cli import app
from searchrel.data.ratings import append_ratings, read_sheet, read_store
from searchrel.experiments.rating_round import SuggestConfig, candidates, random_sheet, suggest, summary
from searchrel.layout import RunLayout


def _labels(path, ds, seed=0):
    """A finished labels directory over every (query, item) pair of the first 40 items, random distributions."""
    items = ds.items["item_id"].head(40)
    pairs = pd.MultiIndex.from_product([ds.queries["query_id"], items], names=["query_id", "item_id"]).to_frame(
        index=False)
    probs = np.random.default_rng(seed).dirichlet(np.ones(5) * 0.7, len(pairs))
    df = pairs.assign(pair_idx=np.arange(len(pairs)), **{f"p_{g}": probs[:, j] for j, g in enumerate(range(1, 6))})
    path.mkdir(parents=True)
    df.to_parquet(path / "part-000000000.parquet", index=False)
    (path / "labels.json").write_text(json.dumps({"complete": True, "n_pairs": len(df)}))
    return path


@pytest.fixture
def pool(world, tmp_path):
    return candidates(world, _labels(tmp_path / "labels", world))


def test_the_pool_is_train_queries_unjudged_and_unrated_pairs(world, tmp_path):
    labels = _labels(tmp_path / "labels", world)
    split = world.split_of()
    store = tmp_path / "ratings.parquet"
    train_pair = candidates(world, labels).iloc[0]
    append_ratings(store, pd.DataFrame([{"query_id": train_pair["query_id"], "item_id": train_pair["item_id"],
                                         "grade": 3, "rater": "ann"}]), "s.csv")
    pool = candidates(world, labels, store=store)
    assert set(pool["query_id"].map(split)) == {"train"}
    judged = set(zip(world.judgments["query_id"], world.judgments["item_id"]))
    got = set(zip(pool["query_id"], pool["item_id"]))
    assert not got & judged and (train_pair["query_id"], train_pair["item_id"]) not in got
    assert set(candidates(world, labels, languages=["en"])["language"]) == {"en"}


def test_the_teachers_uncertainty_is_the_grade_sd_of_its_distribution(world, tmp_path):
    labels = _labels(tmp_path / "labels", world)
    first = candidates(world, labels).head(2)[["query_id", "item_id"]]
    parts = pd.read_parquet(labels / "part-000000000.parquet")
    cols = [f"p_{g}" for g in range(1, 6)]
    rows = [parts.index[(parts["query_id"] == q) & (parts["item_id"] == i)][0] for q, i in first.to_numpy()]
    parts.loc[rows[0], cols] = [0, 0, 1, 0, 0]  # certain: sd 0
    parts.loc[rows[1], cols] = [0.5, 0, 0, 0, 0.5]  # the two ends: sd 2, the most unsure there is
    parts.to_parquet(labels / "part-000000000.parquet", index=False)
    pool = candidates(world, labels).set_index(["query_id", "item_id"])
    for (q, i), sd in zip(first.to_numpy(), (0.0, 2.0)):
        assert pool.loc[(q, i), "teacher_sd"] == pytest.approx(sd, abs=1e-6)
        assert pool.loc[(q, i), "uncertain"] == pytest.approx(sd / 2, abs=1e-6)
    assert pool.loc[tuple(first.to_numpy()[1]), "teacher_expected"] == pytest.approx(3.0)


def test_suggestions_split_the_budget_by_reason_and_language_and_cap_each_query(world, pool):
    rng = np.random.default_rng(1)
    pool = pool.assign(student_expected=rng.uniform(1, 5, len(pool)))
    pool["disagree"] = (pool["teacher_expected"] - pool["student_expected"]).abs() / 4
    sheet = suggest(world, pool, SuggestConfig(budget=40, per_query=2))
    s = summary(sheet)
    assert s["rows"] == 40 and s["by_reason"] == {"disagree": 16, "uncertain": 16, "uncovered": 8}
    assert sheet["query_id"].value_counts().max() <= 2
    assert not sheet.duplicated(["query_id", "item_id"]).any()
    # languages take turns: in the first reason, every language has its even part, or all its queries allow
    langs = sorted(pool["language"].unique())
    room = pool.groupby("language")["query_id"].nunique() * 2
    counts = sheet[sheet["pick"] == "disagree"]["language"].value_counts().reindex(langs, fill_value=0)
    assert len(langs) > 2 and counts.sum() == 16
    for lang in langs:
        assert counts[lang] == room[lang] or counts[lang] >= counts.max() - 1, (counts.to_dict(), room.to_dict())
    # within a language, the first disagreement picked is the pool's largest there
    for lang in langs:
        top = pool[pool["language"] == lang].sort_values("disagree", ascending=False).iloc[0]
        picked = sheet[(sheet["pick"] == "disagree") & (sheet["language"] == lang)]
        assert (top["query_id"], top["item_id"]) in set(zip(picked["query_id"], picked["item_id"]))
    # every row says why, with its numbers; the raters' columns are blank
    for row in sheet.itertuples():
        assert {"disagree": "disagree: expected grade", "uncertain": "teacher unsure: grade sd",
                "uncovered": "few labels"}[row.pick] in row.reason
    assert (sheet["grade"] == "").all() and (sheet["rater"] == "").all()
    assert list(sheet.columns[:8]) == ["query_id", "item_id", "language", "query", "item_title", "reason", "grade",
                                       "rater"]


def test_without_a_student_the_disagreement_share_passes_to_the_other_reasons(world, pool):
    sheet = suggest(world, pool, SuggestConfig(budget=30))
    assert summary(sheet)["by_reason"] == {"uncertain": 20, "uncovered": 10}


def test_a_random_sheet_is_a_seeded_uniform_draw_from_the_same_pool(world, pool):
    a, b = random_sheet(world, pool, 25, seed=3), random_sheet(world, pool, 25, seed=3)
    assert a.equals(b) and len(a) == 25 and set(a["pick"]) == {"random"}
    assert set(zip(a["query_id"], a["item_id"])) <= set(zip(pool["query_id"], pool["item_id"]))
    assert not a.equals(random_sheet(world, pool, 25, seed=4))


def test_rate_suggest_then_import_ratings_round_trip(world, tmp_path):
    run = tmp_path / "run"
    world.save(RunLayout(run).dataset)
    _labels(RunLayout(run).labels, world)
    sheet = tmp_path / "sheet.csv"
    res = CliRunner().invoke(app, ["rate", "suggest", str(run), "--budget", "12", "--out", str(sheet)])
    assert res.exit_code == 0, res.output
    assert "12 pairs over" in res.output and "searchrel import ratings" in res.output
    rows = read_sheet(sheet)
    assert len(rows) == 12 and (rows["grade"] == "").all()
    rows["grade"], rows["rater"] = "4", "ann"
    rows.drop(columns=["_row", "_line"]).to_csv(sheet, index=False)
    res = CliRunner().invoke(app, ["import", "ratings", str(sheet), str(run)])
    assert res.exit_code == 0, res.output
    assert len(read_store(RunLayout(run).ratings)) == 12
    # the next suggestion leaves the rated pairs out
    res = CliRunner().invoke(app, ["rate", "suggest", str(run), "--budget", "12", "--out", str(tmp_path / "2.csv")])
    again = read_sheet(tmp_path / "2.csv")
    assert res.exit_code == 0 and not set(zip(again["query_id"], again["item_id"])) & set(
        zip(rows["query_id"], rows["item_id"]))


def test_uncovered_prefers_the_queries_with_the_fewest_labels(world, pool, tmp_path):
    # every query of the small world has 5 labels: take all but one from a train query per language
    split = world.split_of()
    train = world.queries[world.queries["query_id"].map(split) == "train"]
    thin = train.groupby("language")["query_id"].first()
    j = world.judgments
    keep = ~j["query_id"].isin(thin) | ~j.duplicated("query_id", keep="first")
    sparse = world.with_judgments(j[keep].reset_index(drop=True))
    pool = candidates(sparse, tmp_path / "labels")
    sheet = suggest(sparse, pool, SuggestConfig(budget=len(thin), shares={"uncovered": 1.0}, per_query=1))
    assert set(sheet["query_id"]) == set(thin) and (sheet["query_labels"] == 1).all()
    assert all("the query has 1 human label(s)" in r for r in sheet["reason"])
