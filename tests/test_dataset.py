"""The dataset format: round trip, and errors that name table, column and row."""

import json

import pandas as pd
import pytest

from searchrel.data.dataset import DatasetError, DatasetInfo, Scale, load_dataset
from searchrel.data.splits import make_splits


def test_roundtrip_keeps_tables_and_types(tiny, tmp_path):
    path = tiny.save(tmp_path / "ds")
    back = load_dataset(path)
    assert back.info == tiny.info
    assert back.items["brand"].iloc[0] == "Oakly" and pd.isna(back.items["brand"].iloc[1])
    assert back.judgments["label"].tolist() == tiny.judgments["label"].tolist()
    assert back.extra_fields == ["brand"]
    assert back.search_log["board_title"].iloc[2] == "dining room ideas"
    assert json.loads((path / "dataset.json").read_text())["relevant_min"] == 4


def test_save_is_atomic_over_an_existing_dataset(tiny, tmp_path):
    path = tiny.save(tmp_path / "ds")
    bad = tiny.with_judgments(tiny.judgments.assign(label=9))
    with pytest.raises(DatasetError):
        bad.save(path)
    assert load_dataset(path).judgments["label"].max() == 5  # the old copy is intact
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no temp dirs left behind


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.judgments.__setitem__("label", [5, 1, 4, 5, 1, 5, 1, 4, 7]), "table judgments, column label, row 8 (value 7)"),
    (lambda d: d.judgments.__setitem__("item_id", ["i1", "i2", "i3", "i2", "i1", "i4", "nope", "i5", "i2"]), "column item_id, row 6 (value 'nope'): names no item"),
    (lambda d: d.queries.__setitem__("query_id", ["q1", "q1", "q3", "q4"]), "table queries, column query_id, row 1"),
    (lambda d: d.search_log.__setitem__("event", ["impression"] * 7 + ["like"]), "table search_log, column event, row 7"),
    (lambda d: setattr(d, "items", d.items.drop(columns="title")), "table items: missing column(s) title"),
])
def test_validation_names_the_place(tiny, mutate, message):
    mutate(tiny)
    with pytest.raises(DatasetError) as e:
        tiny.validate()
    assert message in str(e.value)


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(DatasetError, match="no dataset directory"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "d").mkdir()
    with pytest.raises(DatasetError, match="dataset.json is missing"):
        load_dataset(tmp_path / "d")


def test_scale_and_relevant_min():
    assert DatasetInfo(name="x", scale=Scale(min=1, max=4)).relevant_min == 3
    assert DatasetInfo(name="x", scale=Scale(min=0, max=2)).relevant_min == 2
    assert Scale.parse("0:9").n_grades == 10
    with pytest.raises(ValueError, match="MIN:MAX"):
        Scale.parse("1-4")
    with pytest.raises(ValueError):
        DatasetInfo(name="x", scale=Scale(min=1, max=4), relevant_min=5)


def test_splits_group_and_stratify():
    n = 300
    q = pd.DataFrame({"query_id": [f"q{i}" for i in range(n)], "text": "x",
                      "language": ["en"] * 200 + ["de"] * 100,
                      "group_id": [f"g{i % 150}" for i in range(n)]})
    s = make_splits(q, seed=3).set_index("query_id")["split"]
    groups = q.assign(split=q["query_id"].map(s)).groupby("group_id")["split"].nunique()
    assert (groups == 1).all()  # no group on two sides
    assert make_splits(q, seed=3).equals(make_splits(q.sample(frac=1, random_state=1), seed=3)
                                         .set_index("query_id").loc[q["query_id"]].reset_index())
    solo = q.drop(columns="group_id")
    counts = solo.assign(split=solo["query_id"].map(make_splits(solo).set_index("query_id")["split"])) \
                 .groupby("language")["split"].value_counts(normalize=True)
    for lang in ("en", "de"):
        assert abs(counts[(lang, "train")] - 0.7) < 0.02 and abs(counts[(lang, "test")] - 0.2) < 0.02
    with pytest.raises(ValueError, match="summing to 1"):
        make_splits(q, (0.5, 0.5, 0.5))


def test_save_refuses_to_replace_something_else(tiny, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not a dataset"):
        tiny.save(tmp_path / "notes")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
