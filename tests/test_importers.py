"""Importers: CrowdFlower (dirty CSV, translations), ESCI (published schema), generic tables, bad rows, CLI."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from searchrel.cli.imports import import_app
from searchrel.data.dataset import load_dataset
from searchrel.data.importers import (
    BadInputError,
    clean_line,
    clean_text,
    import_crowdflower,
    import_esci,
    import_table,
    parse_fields,
    parse_scale,
    save_import,
)

FIXTURES = Path(__file__).parent / "fixtures"
CF = FIXTURES / "crowdflower_dirty.csv"
CF_TRANSLATIONS = FIXTURES / "crowdflower_translations.jsonl"


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("SEARCHREL_PROGRESS", "0")


def _cli():
    app = typer.Typer()
    app.add_typer(import_app, name="import")
    return app


def _item(ds, title):
    rows = ds.items[ds.items["title"] == title]
    assert len(rows) == 1, f"expected one item titled {title!r}, got {len(rows)}"
    return rows.iloc[0]


# --- text cleaning -------------------------------------------------------------------------------

def test_clean_text_fixes_mojibake_html_and_whitespace():
    assert clean_text("home dÃ©cor") == "home décor"
    assert clean_text("Ellipsoidâ„¢ lens") == "Ellipsoid™ lens"       # a lone one that ftfy leaves alone
    assert clean_text("itâ€™ll fit") == "it'll fit"
    assert clean_text("<p>one&nbsp;two</p><p>three</p>") == "one two\nthree"
    assert clean_text("<style>.a{b:c}</style>text<br/>more") == "text\nmore"
    assert clean_text("a  \t b\n\n\n  c ") == "a b\nc"
    assert clean_text("size < 5 & up") == "size < 5 & up"
    assert clean_text("") == "" and clean_text(None) == ""
    assert clean_line("two\nlines") == "two lines"
    assert clean_text("日本語 café") == "日本語 café"


# --- crowdflower ---------------------------------------------------------------------------------

def test_crowdflower_bad_label_stops_with_row_number():
    with pytest.raises(BadInputError, match=r"row 5 \(line 9\): median_relevance 'five' is not an integer"):
        import_crowdflower(CF)


def test_crowdflower_skip_bad_cleans_and_counts(tmp_path):
    ds, report = import_crowdflower(CF, skip_bad=True)
    assert (report.rows_read, report.skipped) == (9, 1)
    assert (report.duplicates, report.duplicate_conflicts) == (2, 1)  # "wine  rack" repeats row 1 with label 3
    assert (report.queries, report.items, report.judgments) == (3, 4, 6)
    assert sorted(ds.queries["text"]) == ["light bulb", "projector", "wine rack"]
    assert set(ds.queries["language"]) == {"en"} and ds.queries["country"].isna().all()

    rack = _item(ds, "Concept Housewares Wine Rack")
    assert rack["description"] == "Addition to your home décor. It'll hold 6 bottles."
    coat = _item(ds, "Bird & Branch Coat Rack")
    assert coat["description"] == "Sturdy metal\nNumber of Hooks: 10"
    assert _item(ds, "ViewSonic Pro8200 DLP Projector")["description"] == ""
    bulb = _item(ds, "Wintergreen LED Light Bulb")
    assert bulb["description"] == "WTGR1011\nFeatures\nNickel base"
    # the same product judged for two queries is one item with two judgments
    assert (ds.judgments["item_id"] == bulb["item_id"]).sum() == 2
    # first of the duplicate pair kept
    wine = ds.queries.loc[ds.queries["text"] == "wine rack", "query_id"].item()
    kept = ds.judgments[(ds.judgments["query_id"] == wine) & (ds.judgments["item_id"] == rack["item_id"])]
    assert kept["label"].tolist() == [4]

    out = tmp_path / "cf"
    save_import(ds, report, out)
    loaded = load_dataset(out)
    assert len(loaded.judgments) == 6 and loaded.info.relevant_min == 3
    assert (loaded.info.scale.min, loaded.info.scale.max) == (1, 4)
    assert set(loaded.splits["query_id"]) == set(loaded.queries["query_id"])
    q = pd.read_csv(report.quarantine)
    assert report.quarantine == out / "quarantine.csv"
    assert q[["row", "id", "median_relevance"]].values.tolist() == [[5, 7, "five"]]
    assert "not an integer" in q["reason"].item()


def test_crowdflower_item_ids_are_stable():
    a, _ = import_crowdflower(CF, skip_bad=True)
    b, _ = import_crowdflower(CF, skip_bad=True)
    assert a.items["item_id"].tolist() == b.items["item_id"].tolist()
    assert a.queries["query_id"].tolist() == b.queries["query_id"].tolist()


def test_crowdflower_translations(tmp_path):
    ds, report = import_crowdflower(CF, translations=CF_TRANSLATIONS, skip_bad=True)
    assert report.extra["translated_queries_added"] == 4
    assert report.extra["queries_without_translation"] == 1       # light bulb
    assert report.extra["translation_entries_unused"] == 1        # "not in the csv"
    assert (report.queries, report.judgments) == (7, 6 + 2 * 4)
    q = ds.queries.set_index("text")
    assert q.at["botellero", "language"] == "es" and q.at["weinregal", "language"] == "de"
    assert q.at["botellero", "group_id"] == q.at["wine rack", "group_id"] == q.at["weinregal", "group_id"]
    # judgments copied: same items, same labels
    def pairs(text):
        j = ds.judgments[ds.judgments["query_id"] == q.at[text, "query_id"]]
        return sorted(zip(j["item_id"], j["label"]))
    assert pairs("beamer") == pairs("proyector") == pairs("projector")
    split = ds.splits.set_index("query_id")["split"]
    for en, es, de in [("wine rack", "botellero", "weinregal"), ("projector", "proyector", "beamer")]:
        assert split[q.at[en, "query_id"]] == split[q.at[es, "query_id"]] == split[q.at[de, "query_id"]]
    save_import(ds, report, tmp_path / "x")
    assert sorted(load_dataset(tmp_path / "x").info.languages) == ["de", "en", "es"]


def test_crowdflower_broken_translations_file(tmp_path):
    bad = tmp_path / "t.jsonl"
    bad.write_text('{"en": "projector", "es": "proyector"}\n{"en": oops}\n')
    with pytest.raises(BadInputError, match=r"t.jsonl, line 2: not valid JSON"):
        import_crowdflower(CF, translations=bad, skip_bad=True)


def test_crowdflower_missing_column_and_ragged_row(tmp_path):
    f = tmp_path / "cf.csv"
    f.write_text('"id","query","product_title"\n"1","a","b"\n')
    with pytest.raises(BadInputError, match="missing column"):
        import_crowdflower(f)
    f.write_text(CF.read_text() + '"12","lamp","A Lamp","desc","3","0","surplus"\n')
    with pytest.raises(BadInputError, match="row 5 .*; 1 more bad row"):
        import_crowdflower(f)
    ds, report = import_crowdflower(f, skip_bad=True)
    assert report.skipped == 2
    assert "has 7 fields" in report.bad_rows["reason"].iloc[1]
    assert report.bad_rows["_extra"].iloc[1] == "surplus"  # nothing of a bad row is lost


# --- esci ----------------------------------------------------------------------------------------

def _esci_files(tmp_path):
    examples = pd.DataFrame({
        "example_id": range(9),
        "query": ["!awnmower tires", "!awnmower tires", "!awnmower tires", "zapatos", "zapatos", "傘", "傘",
                  "drill", "drill"],
        "query_id": [0, 0, 0, 1, 1, 2, 2, 3, 3],
        "product_id": ["B1", "B2", "B3", "B4", "B1", "B5", "B6", "B1", "B9"],
        "product_locale": ["us", "us", "us", "es", "es", "jp", "jp", "us", "us"],
        "esci_label": ["E", "S", "C", "I", "E", "E", "X", "C", "E"],
        "small_version": [1, 1, 1, 0, 0, 1, 1, 1, 1],
        "large_version": [1] * 9,
        "split": ["train", "train", "train", "train", "train", "test", "test", "train", "train"],
    })
    products = pd.DataFrame({
        "product_id": ["B1", "B2", "B3", "B4", "B1", "B5", "B6", "B7"],
        "product_title": ["Tire <b>Pro</b>", "Tire Max", "Pump", "Zapato", "Neumático", "傘 大", "雨傘", "unused"],
        "product_description": ["<p>Fits&nbsp;most</p><p>mowers</p>", None, "", "Cuero", None, "軽い", None, None],
        "product_bullet_point": ["Durable\nCheap", None, None, None, None, None, None, None],
        "product_brand": ["Acme", "Acme", None, "Zeta", "Acme", "Kasa", None, None],
        "product_color": ["black", None, None, "marrón", None, None, None, None],
        "product_locale": ["us", "us", "us", "es", "es", "jp", "jp", "us"],
    })
    ex, pr = tmp_path / "examples.parquet", tmp_path / "products.parquet"
    examples.to_parquet(ex)
    products.to_parquet(pr)
    return ex, pr


def test_esci_labels_locales_items_and_splits(tmp_path):
    ex, pr = _esci_files(tmp_path)
    with pytest.raises(BadInputError, match=r"row 7: esci_label 'X' is not E/S/C/I; 1 more bad row"):
        import_esci(ex, pr)
    ds, report = import_esci(ex, pr, skip_bad=True)
    assert report.skipped == 2                                     # label X; product B9 missing
    assert "B9 (us) is not in products.parquet" in report.bad_rows["reason"].iloc[1]
    assert (report.queries, report.items, report.judgments) == (4, 6, 7)
    j = ds.judgments.set_index(["query_id", "item_id"])["label"]
    assert j[("0", "B1-us")] == 4 and j[("0", "B2-us")] == 3 and j[("0", "B3-us")] == 2 and j[("1", "B4-es")] == 1
    q = ds.queries.set_index("query_id")
    assert q.loc[["0", "1", "2"], "language"].tolist() == ["en", "es", "ja"]
    assert q.loc[["0", "1", "2"], "country"].tolist() == ["US", "ES", "JP"]
    items = ds.items.set_index("item_id")
    assert items.at["B1-us", "title"] == "Tire Pro" and items.at["B1-es", "title"] == "Neumático"  # keyed by locale
    assert items.at["B1-us", "description"] == "Fits most\nmowers"
    assert items.at["B1-us", "bullet_point"] == "Durable\nCheap"
    assert items.at["B2-us", "description"] == "" and items.at["B3-us", "brand"] == ""
    assert items.at["B5-jp", "language"] == "ja" and items.at["B4-es", "color"] == "marrón"
    assert ds.info.scale.names == ["irrelevant", "complement", "substitute", "exact"]
    split = ds.splits.set_index("query_id")["split"]
    assert split["2"] == "test" and set(split[["0", "1", "3"]]) <= {"train", "valid"}
    assert report.extra["products_not_judged"] == 2                # B7, and B6 (judged only in the bad row)
    save_import(ds, report, tmp_path / "esci")
    assert set(load_dataset(tmp_path / "esci").extra_fields) == {"bullet_point", "brand", "color"}


def test_esci_valid_is_carved_from_train_deterministically(tmp_path):
    n = 60
    examples = pd.DataFrame({"example_id": range(n), "query": [f"q{i}" for i in range(n)], "query_id": range(n),
                             "product_id": ["P"] * n, "product_locale": ["us"] * n, "esci_label": ["E"] * n,
                             "small_version": [1] * n, "large_version": [1] * n,
                             "split": ["test" if i % 4 == 0 else "train" for i in range(n)]})
    products = pd.DataFrame({"product_id": ["P"], "product_title": ["p"], "product_description": [""],
                             "product_bullet_point": [None], "product_brand": [None], "product_color": [None],
                             "product_locale": ["us"]})
    examples.to_parquet(tmp_path / "e.parquet")
    products.to_parquet(tmp_path / "p.parquet")
    a, _ = import_esci(tmp_path / "e.parquet", tmp_path / "p.parquet", valid_fraction=0.2)
    b, _ = import_esci(tmp_path / "e.parquet", tmp_path / "p.parquet", valid_fraction=0.2)
    pd.testing.assert_frame_equal(a.splits, b.splits)
    s = a.splits.set_index("query_id")["split"]
    assert (s[[str(i) for i in range(0, n, 4)]] == "test").all()
    assert s.value_counts().to_dict() == {"train": 36, "valid": 9, "test": 15}


def test_esci_small_version(tmp_path):
    ex, pr = _esci_files(tmp_path)
    ds, report = import_esci(ex, pr, small_version=True, skip_bad=True)
    assert report.extra["rows_outside_small_version"] == 2
    assert "1" not in set(ds.queries["query_id"])                 # the Spanish query was small_version 0
    assert report.judgments == 5


# --- table ---------------------------------------------------------------------------------------

TABLE = pd.DataFrame({
    "q": ["red shoes", "red shoes", "zapatos rojos", "red  shoes", "lamp", "lamp"],
    "lang": ["en", "en", "es", "en", "en", "de"],
    "pid": ["p1", "p2", "p1", "p3", "p1", "p1"],
    "title": ["Red Shoe", "Blue Shoe", "Red Shoe", "Red Shoe", "Red Shoe", "Red Shoe"],
    "desc": ["<b>leather</b>", "", "<b>leather</b>", "suede", "<b>leather</b>", "<b>leather</b>"],
    "grade": [3, 1, 3, 2, 0, 1],
    "grp": ["g1", "g1", "g1", "g1", "g2", ""],
})


def _write(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        df.to_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_table_groups_queries_by_text_and_language_items_by_id(tmp_path, suffix):
    f = _write(TABLE, tmp_path / f"judged{suffix}")
    ds, report = import_table(f, query="q", label="grade", language="lang", item_id="pid",
                              fields=["title=title", "description=desc"], scale="0:3", query_group="grp")
    assert report.rows_read == 6 and report.skipped == 0
    # "red shoes" ×3 (one with extra whitespace) is one query; lamp/en and lamp/de are two
    assert sorted(zip(ds.queries["text"], ds.queries["language"])) == [
        ("lamp", "de"), ("lamp", "en"), ("red shoes", "en"), ("zapatos rojos", "es")]
    assert report.items == 3                                       # by id: p3 is its own item despite the title
    p1 = ds.items.set_index("item_id").loc["p1"]
    assert (p1["title"], p1["description"], p1["language"]) == ("Red Shoe", "leather", "en")
    g = ds.queries.set_index(["text", "language"])["group_id"]
    assert g[("red shoes", "en")] == g[("zapatos rojos", "es")] == "g1"
    assert pd.isna(g[("lamp", "de")])
    assert ds.info.name == "judged" and ds.info.relevant_min == 2
    save_import(ds, report, tmp_path / "out")
    assert len(load_dataset(tmp_path / "out").judgments) == 6


def test_table_items_by_text_without_id(tmp_path):
    f = _write(TABLE, tmp_path / "t.csv")
    ds, report = import_table(f, query="q", label="grade", fields={"title": "title", "description": "desc"},
                              scale=parse_scale("0:3"), relevant_min=3)
    assert report.items == 3        # (Red Shoe, leather), (Blue Shoe, ""), (Red Shoe, suede)
    assert set(ds.queries["language"]) == {"en"}
    assert report.queries == 3      # no language column: "lamp" is one query, its two rows a duplicate pair
    assert report.duplicates == 1 and report.duplicate_conflicts == 1


def test_table_bad_rows(tmp_path):
    df = TABLE.copy()
    df["grade"] = df["grade"].astype(object)
    df.loc[1, "grade"], df.loc[4, "q"], df.loc[5, "grade"] = "2.5", "  ", 9
    f = _write(df, tmp_path / "t.csv")
    kw = dict(query="q", label="grade", item_id="pid", fields=["title=title"], scale="0:3")
    with pytest.raises(BadInputError, match=r"t.csv, row 2 \(line 3\): grade '2.5' is not an integer grade; 2 more"):
        import_table(f, **kw)
    ds, report = import_table(f, skip_bad=True, **kw)
    assert report.skipped == 3
    assert report.bad_rows["row"].tolist() == [2, 5, 6]
    assert "outside the scale 0..3" in report.bad_rows["reason"].iloc[2]
    assert "query (q) is empty" in report.bad_rows["reason"].iloc[1]


def test_table_broken_jsonl_line_is_a_bad_row(tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_text('{"q": "a", "t": "x", "g": 1}\n{"q": "b", "t": \n{"q": "c", "t": "y", "g": 2}\n')
    kw = dict(query="q", label="g", fields=["title=t"], scale="1:2")
    with pytest.raises(BadInputError, match=r"row 2 \(line 2\): not valid JSON"):
        import_table(f, **kw)
    _, report = import_table(f, skip_bad=True, **kw)
    assert (report.skipped, report.judgments) == (1, 2)


@pytest.mark.parametrize("text, message", [("1-4", "MIN:MAX"), ("a:b", "MIN:MAX"), ("4:1", "greater than min"),
                                           ("1:2:3", "MIN:MAX")])
def test_scale_parse_errors(text, message):
    with pytest.raises(BadInputError, match=message):
        parse_scale(text)


def test_table_argument_errors(tmp_path):
    f = _write(TABLE, tmp_path / "t.csv")
    with pytest.raises(BadInputError, match="outside the scale"):
        import_table(f, query="q", label="grade", fields=["title=title"], scale="0:3", relevant_min=5)
    with pytest.raises(BadInputError, match=r"missing column\(s\) nope"):
        import_table(f, query="q", label="grade", fields=["title=nope"], scale="0:3")
    with pytest.raises(BadInputError, match="NAME=COLUMN"):
        parse_fields(["title"])
    with pytest.raises(BadInputError, match="unknown file type"):
        import_table(_write(TABLE, tmp_path / "t.parquet").rename(tmp_path / "t.xlsx"), query="q", label="grade",
                     fields=["title=title"], scale="0:3")


def test_save_refuses_to_replace_a_non_dataset_directory(tmp_path):
    ds, report = import_crowdflower(CF, skip_bad=True)
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(BadInputError, match="not a searchrel dataset"):
        save_import(ds, report, tmp_path)
    assert (tmp_path / "precious.txt").exists()


# --- CLI -----------------------------------------------------------------------------------------

def test_cli_crowdflower(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cf"
    res = runner.invoke(_cli(), ["import", "crowdflower", str(CF), str(out)])
    assert res.exit_code == 2
    assert "row 5 (line 9)" in res.output and "Traceback" not in res.output
    assert not out.exists()
    res = runner.invoke(_cli(), ["import", "crowdflower", str(CF), str(out), "--skip-bad",
                                 "--translations", str(CF_TRANSLATIONS), "--quarantine", str(tmp_path / "bad.csv")])
    assert res.exit_code == 0, res.output
    assert "duplicate pairs dropped" in res.output and "1 bad row(s) quarantined" in res.output
    assert (tmp_path / "bad.csv").exists() and not (out / "quarantine.csv").exists()
    assert len(load_dataset(out).queries) == 7


def test_cli_table_and_esci(tmp_path):
    runner = CliRunner()
    f = _write(TABLE, tmp_path / "t.jsonl")
    args = ["import", "table", str(f), str(tmp_path / "t"), "--query", "q", "--label", "grade", "--language", "lang",
            "--item-id", "pid", "--field", "title=title", "--field", "description=desc", "--relevant-min", "2",
            "--name", "mine"]
    res = runner.invoke(_cli(), [*args, "--scale", "0-3"])
    assert res.exit_code == 2 and "MIN:MAX" in res.output and "Traceback" not in res.output
    res = runner.invoke(_cli(), [*args, "--scale", "0:3"])
    assert res.exit_code == 0, res.output
    assert load_dataset(tmp_path / "t").info.name == "mine"
    ex, pr = _esci_files(tmp_path)
    res = runner.invoke(_cli(), ["import", "esci", "--examples", str(ex), "--products", str(pr), str(tmp_path / "e"),
                                 "--skip-bad", "--small-version"])
    assert res.exit_code == 0, res.output
    assert len(load_dataset(tmp_path / "e").judgments) == 5
    res = runner.invoke(_cli(), ["import", "esci", "--examples", str(tmp_path / "none.parquet"), "--products",
                                 str(pr), str(tmp_path / "e2")])
    assert res.exit_code == 2 and "no such file" in res.output
