"""The rating sheet: validation names every bad row with its number and what to fix; the store keeps who rated what;
ratings become judgments (median, variance, replacing the dataset's label); `searchrel import ratings` on a run."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from searchrel.cli import app
from searchrel.data.dataset import DatasetError
from searchrel.data.ratings import (
    RatingsError,
    aggregate,
    import_ratings,
    merge_ratings,
    read_sheet,
    read_store,
    upsert_sheet_row,
    validate_ratings,
    write_sheet,
)
from searchrel.layout import RunLayout

# tiny: q1, q2, q3 are train queries, q4 is test; items i1..i5; scale 1..5


def _sheet(tmp_path, rows, name="sheet.csv"):
    return write_sheet(pd.DataFrame(rows), tmp_path / name)


def test_a_good_sheet_is_read_back_as_ratings(tiny, tmp_path):
    path = _sheet(tmp_path, [
        {"query_id": "q1", "item_id": "i4", "query": "red table", "reason": "unsure", "grade": "4", "rater": "ann"},
        {"query_id": "q1", "item_id": "i4", "grade": "2", "rater": "bob"},  # a second rater of the same pair
        {"query_id": "q2", "item_id": "i5", "grade": "1", "rater": "ann"},
    ])
    ratings, unrated = validate_ratings(read_sheet(path), tiny, "sheet.csv")
    assert unrated == 0
    assert ratings.to_dict("records") == [
        {"query_id": "q1", "item_id": "i4", "grade": 4, "rater": "ann"},
        {"query_id": "q1", "item_id": "i4", "grade": 2, "rater": "bob"},
        {"query_id": "q2", "item_id": "i5", "grade": 1, "rater": "ann"}]


def test_every_bad_row_is_named_with_its_number_and_what_to_fix(tiny, tmp_path):
    path = _sheet(tmp_path, [
        {"query_id": "q1", "item_id": "i4", "grade": "3", "rater": "ann"},      # row 1: fine
        {"query_id": "q9", "item_id": "i4", "grade": "3", "rater": "ann"},      # row 2: unknown query
        {"query_id": "q1", "item_id": "nope", "grade": "3", "rater": "ann"},    # row 3: unknown item
        {"query_id": "q1", "item_id": "i5", "grade": "7", "rater": "ann"},      # row 4: off the scale
        {"query_id": "q1", "item_id": "i5", "grade": "2.5", "rater": "bob"},    # row 5: not a whole grade
        {"query_id": "q1", "item_id": "i4", "grade": "4", "rater": "ann"},      # row 6: ann twice on q1/i4
        {"query_id": "q4", "item_id": "i1", "grade": "3", "rater": "ann"},      # row 7: a test query
        {"query_id": "q2", "item_id": "i3", "grade": "", "rater": "ann"},       # row 8: no grade
        {"query_id": "q2", "item_id": "i4", "grade": "3", "rater": ""},         # row 9: no rater
    ])
    with pytest.raises(RatingsError) as e:
        validate_ratings(read_sheet(path), tiny, "sheet.csv")
    rows = {p.row: p.message for p in e.value.problems}
    assert sorted(rows) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert "'q9' is not a query" in rows[2] and "'nope' is not an item" in rows[3]
    assert "off the scale" in rows[4] and "1..5" in rows[4] and "'2.5'" in rows[5]
    assert "twice" in rows[6] and "also row 1" in rows[6]
    assert "test split" in rows[7] and "leak into evaluation" in rows[7]
    assert "grade is empty" in rows[8] and "--skip-unrated" in rows[8] and "rater is empty" in rows[9]
    assert "row 6 (line 7)" in str(e.value) and "8 problem(s), nothing imported" in str(e.value)


def test_line_numbers_follow_quoted_line_breaks(tiny, tmp_path):
    path = tmp_path / "s.csv"
    path.write_text('query_id,item_id,query,grade,rater\nq1,i4,"red\ntable",3,ann\nq1,i5,x,9,ann\n')
    with pytest.raises(RatingsError) as e:
        validate_ratings(read_sheet(path), tiny, "s.csv")
    assert [(p.row, p.line) for p in e.value.problems] == [(2, 4)]


def test_rows_without_a_grade_can_be_left_out(tiny, tmp_path):
    path = _sheet(tmp_path, [{"query_id": "q1", "item_id": "i4", "grade": "3", "rater": "ann"},
                             {"query_id": "q1", "item_id": "i5", "grade": "", "rater": ""}])
    ratings, unrated = validate_ratings(read_sheet(path), tiny, "s", skip_unrated=True)
    assert len(ratings) == 1 and unrated == 1


def test_a_sheet_without_the_needed_columns_is_refused(tiny, tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("query_id,item_id,grade\nq1,i4,3\n")
    with pytest.raises(DatasetError, match="column\\(s\\) rater missing"):
        read_sheet(path)


def test_importing_twice_is_a_duplicate_rater_error_and_the_store_is_unchanged(tiny, tmp_path):
    path = _sheet(tmp_path, [{"query_id": "q1", "item_id": "i4", "grade": "3", "rater": "ann"}])
    store = tmp_path / "ratings.parquet"
    res = import_ratings(path, tiny, store)
    assert res["ratings"] == 1 and res["raters"] == ["ann"] and res["by_language"] == {"en": 1}
    with pytest.raises(RatingsError, match="already rated q1 / i4 \\(imported from sheet.csv\\)"):
        import_ratings(path, tiny, store)
    kept = read_store(store)
    assert len(kept) == 1 and kept.iloc[0]["source"] == "sheet.csv" and kept.iloc[0]["grade"] == 3


def test_ratings_become_judgments_median_and_variance_replacing_the_datasets_label(tiny):
    ratings = pd.DataFrame({"query_id": ["q1", "q1", "q1", "q2"], "item_id": ["i4", "i4", "i1", "i5"],
                            "grade": [4, 5, 2, 3], "rater": ["a", "b", "a", "a"]})
    agg = aggregate(ratings).set_index(["query_id", "item_id"])
    assert agg.loc[("q1", "i4"), "label"] == 5  # median 4.5: halves round up
    assert agg.loc[("q1", "i4"), "rater_variance"] == pytest.approx(0.25)
    merged, stats = merge_ratings(tiny, ratings)
    j = merged.judgments.set_index(["query_id", "item_id"])["label"]
    assert j[("q1", "i4")] == 5 and j[("q2", "i5")] == 3
    assert j[("q1", "i1")] == 2  # was 5 in the dataset: the rating replaces it
    assert stats == {"ratings": 4, "rated_pairs": 3, "new_pairs": 2, "replaced_labels": 1,
                     "judgments": len(tiny.judgments) + 2}
    untouched = tiny.judgments.set_index(["query_id", "item_id"])["label"].drop(("q1", "i1"))
    assert (j.loc[untouched.index] == untouched).all()


def test_the_workbench_row_writer_replaces_a_raters_earlier_grade(tmp_path):
    path = tmp_path / "wb.csv"
    upsert_sheet_row(path, {"query_id": "q1", "item_id": "i4", "grade": "2", "rater": "ann"})
    upsert_sheet_row(path, {"query_id": "q1", "item_id": "i4", "grade": "3", "rater": "bob"})
    n = upsert_sheet_row(path, {"query_id": "q1", "item_id": "i4", "grade": "5", "rater": "ann"})
    rows = read_sheet(path)
    assert n == 2 and sorted(zip(rows["rater"], rows["grade"])) == [("ann", "5"), ("bob", "3")]


def _run_dir(tiny, tmp_path):
    run = tmp_path / "run"
    tiny.save(RunLayout(run).dataset)
    return run


def test_import_ratings_cli_adds_to_the_runs_store(tiny, tmp_path):
    run = _run_dir(tiny, tmp_path)
    path = _sheet(tmp_path, [{"query_id": "q1", "item_id": "i4", "grade": "3", "rater": "ann"},
                             {"query_id": "q3", "item_id": "i1", "grade": "2", "rater": "ann"}])
    res = CliRunner().invoke(app, ["import", "ratings", str(path), str(run)])
    assert res.exit_code == 0, res.output
    assert "imported 2 rating(s) of 2 pair(s)" in res.output and "searchrel run CONFIG --out" in res.output
    assert len(read_store(RunLayout(run).ratings)) == 2


def test_import_ratings_cli_lists_the_bad_rows_and_exits_2(tiny, tmp_path):
    run = _run_dir(tiny, tmp_path)
    path = _sheet(tmp_path, [{"query_id": "q1", "item_id": "i4", "grade": "0", "rater": "ann"}])
    res = CliRunner().invoke(app, ["import", "ratings", str(path), str(run)])
    assert res.exit_code == 2 and "row 1 (line 2)" in res.output and "off the scale" in res.output
    assert not RunLayout(run).ratings.exists()
    res = CliRunner().invoke(app, ["import", "ratings", str(path), str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "not a pipeline run directory" in res.output
