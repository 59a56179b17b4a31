"""Pseudo-queries cut from catalogue titles, and how they travel through sampling, labelling and student training."""

import numpy as np
import pandas as pd
import pytest

from searchrel.annotate.text import normalise_query
from searchrel.distill.config import LabelConfig, SampleConfig
from searchrel.distill.pseudo import PREFIX, pseudo_queries, title_words
from searchrel.distill.sample import pseudo_count, read_pairs, sample_pairs, save_pairs

TITLES = ["Mushroom Microplush Heated Throw Blanket", "Upton Home Renshaw Wine Rack",
          "Viewsonic VP2765-LED Widescreen LCD Monitor", "WD My Passport 2TB Portable Hard Drive - Black (LB400)",
          "Flip Waffle Maker", "Kate Aspen Bridal Shower Decorations, Set of 12", "Crinkly Infinity Scarf"]


def _items(titles=TITLES):
    return pd.DataFrame({"item_id": [f"i{k}" for k in range(len(titles))], "title": titles, "language": "en"})


def test_title_words_keep_the_head_clause_without_codes():
    assert title_words("WD My Passport 2TB Portable Hard Drive - Black (LB400)") == \
        ["wd", "my", "passport", "portable", "hard", "drive"]
    assert title_words("Kate Aspen Bridal Shower Decorations, Set of 12") == ["kate", "aspen", "bridal", "shower",
                                                                               "decorations"]
    assert title_words("") == [] and title_words(None) == []


def test_pseudo_queries_are_distinct_short_phrases_of_the_titles_never_excluded_ones():
    items = _items()
    made = pseudo_queries(items, 25, seed=3, exclude={"Wine Rack", "throw blanket"})
    assert list(made.columns) == ["query_id", "text", "language", "item_id"]
    assert 0 < len(made) <= 25 and made["query_id"].str.startswith(PREFIX).all() and made["query_id"].is_unique
    assert made["text"].map(normalise_query).is_unique
    assert not made["text"].map(normalise_query).isin({"wine rack", "throw blanket"}).any()
    title = items.set_index("item_id")["title"]
    for text, item in zip(made["text"], made["item_id"]):
        words = text.split()
        assert 1 <= len(words) <= 4 and not any(c.isdigit() for c in text)
        assert set(words) <= set(title_words(title[item]))  # every word is its title's
        assert words[0] not in {"of", "for", "with", "and", "the"} and words[-1] not in {"of", "for", "and"}
    assert set(made["language"]) == {"en"}
    again = pseudo_queries(items, 25, seed=3, exclude={"Wine Rack", "throw blanket"})
    pd.testing.assert_frame_equal(made, again)  # seeded
    assert pseudo_queries(items, 0).empty
    with pytest.raises(ValueError, match=">= 0"):
        pseudo_queries(items, -1)
    with pytest.raises(ValueError, match="title"):
        pseudo_queries(items.drop(columns="title"), 3)


def test_the_number_of_pseudo_queries_follows_the_budget_without_a_log():
    auto = SampleConfig(pseudo_queries="auto", candidates_per_query=50)
    assert SampleConfig().pseudo_queries == "auto"  # on by default, where there is no log
    assert pseudo_count(auto, target=10_000, n_queries=60, has_log=False) == 140  # 200 queries x 50 candidates
    assert pseudo_count(auto, target=1_000, n_queries=60, has_log=False) == 0  # the dataset's queries suffice
    assert pseudo_count(auto, target=10_000, n_queries=60, has_log=True) == 0  # a log says what users search
    assert pseudo_count(SampleConfig(pseudo_queries=7), 10_000, 60, has_log=True) == 7
    assert pseudo_count(SampleConfig(pseudo_queries=0), 10_000, 60, has_log=False) == 0
    with pytest.raises(ValueError, match="pseudo_queries"):
        SampleConfig(pseudo_queries=-2)
    with pytest.raises(ValueError, match="candidates_per_query"):
        SampleConfig(candidates_per_query=0)


def test_pseudo_query_pairs_are_sampled_labelled_and_trained_on(world, tiny_bert, tmp_path):
    from searchrel.distill.label import label_pairs, read_labels
    from searchrel.student.config import StudentConfig, StudentTrainConfig
    from searchrel.student.train import training_rows
    from test_distill import make_teacher

    ds = world.with_judgments(world.judgments)
    ds.search_log = None
    cfg = SampleConfig(amplification=2, embed_model=str(tiny_bert), pseudo_queries=20, seed=1)
    pairs = sample_pairs(ds, cfg)
    pseudo = pairs["query_id"].str.startswith(PREFIX)
    assert pseudo.any() and (~pseudo).any() and len(pairs) == 2 * len(ds.judgments)
    assert pairs.loc[pseudo, "query"].notna().all() and pairs.loc[~pseudo, "query"].isna().all()
    held_out = ds.queries[ds.queries["query_id"].map(ds.split_of()).isin(["valid", "test"])]["text"]
    assert not pairs.loc[pseudo, "query"].map(normalise_query).isin(set(held_out.map(normalise_query))).any()
    none = sample_pairs(ds, cfg.model_copy(update={"pseudo_queries": 0}))
    assert "query" not in none and not none["query_id"].str.startswith(PREFIX).any()

    path = save_pairs(pairs, tmp_path / "pairs", ds, cfg)  # no suffix: read back by content
    back, _ = read_pairs(path)
    pd.testing.assert_frame_equal(back, pairs)
    teacher = make_teacher(tiny_bert, tmp_path / "teacher")
    labels = read_labels(label_pairs(teacher, path, tmp_path / "labels", LabelConfig(shard_size=64, bf16=False),
                                     dataset=ds))
    text = pairs.set_index("query_id")["query"].dropna().groupby(level=0).first()
    got = labels[labels["query_id"].str.startswith(PREFIX)].set_index("query_id")["query"]
    assert (got == text.loc[got.index]).all()  # the labels keep a pseudo-query's text: no dataset has it
    real = labels[~labels["query_id"].str.startswith(PREFIX)]
    assert (real["query"] == real["query_id"].map(ds.queries.set_index("query_id")["text"])).all()

    train_cfg = StudentTrainConfig(student=StudentConfig(scale=ds.info.scale))
    rows, targets = training_rows(ds, labels, train_cfg)
    assert rows["query"].notna().all() and len(rows) == len(targets)
    assert rows["query_id"].str.startswith(PREFIX).sum() == len(got)
    # labels without the text (an older labels directory) cannot name a query the dataset lacks
    from searchrel.student.train import train_student

    tiny = StudentTrainConfig(student=StudentConfig(backbone=str(tiny_bert), layers=1, dim=16,
                                                    zero_shot_model=str(tiny_bert)), epochs=1)
    with pytest.raises(ValueError, match="give no query text"):
        train_student(ds, tmp_path / "student", tiny, labels.drop(columns="query"))
    assert np.isfinite(targets).all()


def test_with_a_log_pseudo_queries_get_their_share_by_retrieval(world, tiny_bert):
    cfg = SampleConfig(amplification=2, embed_model=str(tiny_bert), pseudo_queries=30, seed=2)
    pairs = sample_pairs(world, cfg)
    pseudo = pairs["query_id"].str.startswith(PREFIX)
    assert len(pairs) == 2 * len(world.judgments)
    assert set(pairs.loc[~pseudo, "source"]) == {"log"}  # the log serves its queries ...
    assert set(pairs.loc[pseudo, "source"]) <= {"bm25", "embed", "random"} and pseudo.any()  # ... retrieval the rest
    n_real = pairs.loc[~pseudo, "query_id"].nunique()
    share = 30 / (30 + world.queries["query_id"].map(world.split_of()).eq("train").sum())
    assert abs(pseudo.mean() - share) < 0.1 and n_real > 0
    assert "query" not in sample_pairs(world, cfg.model_copy(update={"pseudo_queries": "auto"}))  # auto: a log, none
    with pytest.raises(ValueError, match="source 'log'"):
        sample_pairs(world, cfg.model_copy(update={"source": "log"}))
    clash = world.with_judgments(world.judgments)
    clash.queries = clash.queries.assign(query_id=PREFIX + clash.queries["query_id"].astype(str))
    with pytest.raises(ValueError, match="name pseudo-queries"):
        sample_pairs(clash, cfg)


def test_the_cli_samples_pseudo_queries(world, tiny_bert, tmp_path):
    from typer.testing import CliRunner

    from searchrel.cli import app

    runner = CliRunner()
    out = tmp_path / "pairs.parquet"
    r = runner.invoke(app, ["distill", "sample", str(world.path), "--out", str(out), "--amplification", "1",
                            "--source", "retrieval", "--embed-model", str(tiny_bert), "--pseudo-queries", "12"])
    assert r.exit_code == 0, r.output
    pairs, meta = read_pairs(out)
    assert pairs["query_id"].str.startswith(PREFIX).any() and meta["config"]["pseudo_queries"] == 12
    r = runner.invoke(app, ["distill", "sample", str(world.path), "--out", str(out), "--pseudo-queries", "-1"])
    assert r.exit_code != 0 and "pseudo_queries" in r.output
    r = runner.invoke(app, ["distill", "sample", str(world.path), "--out", str(out), "--pseudo-queries", "many"])
    assert r.exit_code == 2 and "whole number or auto" in r.output
