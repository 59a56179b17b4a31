"""Log aggregation into item fields (no held-out leakage) and the one text builder."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from searchrel.annotate.logs import AnnotateConfig, annotate
from searchrel.annotate.text import TextConfig, build_item_text, build_item_texts, truncate
from searchrel.baselines.bm25 import BM25Scorer, bm25_predictions, tokenize
from searchrel.cli import app
from searchrel.data.dataset import DatasetError, load_dataset


def test_annotate_aggregates_boards_and_engaged_queries(tiny):
    ds, report = annotate(tiny, AnnotateConfig(exclude_splits=[]))
    items = ds.items.set_index("item_id")
    assert items.loc["i3", "board_titles"] == ["dining room ideas"]
    assert items.loc["i1", "board_titles"] == ["dining room ideas"]
    # i3: click + save from "red table" (impression is no engagement)
    assert items.loc["i3", "engaged_queries"] == ["red table"]
    assert items.loc["i5", "engaged_queries"] == ["テーブル"]  # long click counts
    assert items.loc["i2", "engaged_queries"] == ["blue dress"]  # the impression from q1 does not
    assert report.items_with_boards == 3 and report.events_excluded_split == 0


def test_annotate_keeps_held_out_queries_out(tiny):
    ds, report = annotate(tiny)  # q4 is in the test split
    items = ds.items.set_index("item_id")
    assert items.loc["i5", "engaged_queries"] is None
    assert report.events_excluded_split == 1


def test_annotate_window_and_top_k(tiny):
    ds, _ = annotate(tiny, AnnotateConfig(window_days=5, exclude_splits=[]))
    items = ds.items.set_index("item_id")
    assert items.loc["i3", "engaged_queries"] is None  # January events are outside the last 5 days
    assert items.loc["i1", "board_titles"] == ["dining room ideas"]
    with pytest.raises(DatasetError, match="no search_log"):
        annotate(tiny.with_judgments(tiny.judgments).__class__(tiny.info, tiny.items, tiny.queries, tiny.judgments))


def test_annotate_cli_writes_the_dataset(tiny, tmp_path):
    tiny.save(tmp_path / "ds")
    res = CliRunner().invoke(app, ["annotate", str(tmp_path / "ds"), "--exclude-split", ""])
    assert res.exit_code == 0, res.output
    assert load_dataset(tmp_path / "ds").items.set_index("item_id").loc["i5", "engaged_queries"] == ["テーブル"]
    res = CliRunner().invoke(app, ["annotate", str(tmp_path / "ds"), "--exclude-split", "holdout"])
    assert res.exit_code == 2 and "unknown split 'holdout'" in res.output


def test_text_builder_fields_order_and_budgets(tiny):
    ds, _ = annotate(tiny, AnnotateConfig(exclude_splits=[]))
    cfg = TextConfig.parse("image_caption,title,board_titles", "title=2")
    item = ds.items.set_index("item_id").loc["i1"]
    assert build_item_text(item, cfg) == "image: a photo of a red table | title: red wooden | boards: dining room ideas"
    texts = build_item_texts(ds.items, TextConfig.parse("description,brand"))
    assert texts["i1"] == "description: solid oak dining table | brand: Oakly"
    assert texts["i3"] == ""  # empty fields are skipped, not filled with noise
    with pytest.raises(ValueError, match="unknown item field"):
        build_item_texts(ds.items, TextConfig.parse("title,colour"))
    assert truncate("木製のテーブル", 3) == "木製の"
    assert TextConfig.default_for(tiny.items).fields == ["title", "description", "image_caption"]


def test_bm25_tokens_and_scores(tiny):
    assert tokenize("Mesa ROJA, rústica!") == ["mesa", "roja", "rústica"]
    assert "テー" in tokenize("テーブル")
    scorer = BM25Scorer(["red wooden table", "blue dress", "", "テーブル"])
    s = scorer.score_pairs(["red table", "red table", "テーブル", "unknown words"], np.array([0, 1, 3, 0]))
    assert s[0] > 0 and s[1] == 0 and s[2] > 0 and s[3] == 0
    preds = bm25_predictions(tiny, TextConfig.parse("title,image_caption"), "all")
    assert len(preds) == len(tiny.judgments)
    by = preds.set_index(["query_id", "item_id"])["score"]
    assert by[("q1", "i1")] > by[("q1", "i2")] and by[("q3", "i4")] > by[("q3", "i2")]


def test_bm25_cli(tiny, tmp_path):
    tiny.save(tmp_path / "ds")
    res = CliRunner().invoke(app, ["baseline", "bm25", str(tmp_path / "ds"), "--split", "all", "--fields",
                                   "title,image_caption", "--out", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["overall"]["accuracy"] is None and m["overall"]["ndcg@8"] > 0.5
    assert set(m["by_language"]) == {"en", "es", "ja"}
    res = CliRunner().invoke(app, ["baseline", "bm25", str(tmp_path / "ds"), "--fields", "title,nope"])
    assert res.exit_code == 2 and "unknown item field" in res.output
