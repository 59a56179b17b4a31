"""The synthetic world: deterministic, valid, and with the properties the later stages rely on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from searchrel.data.dataset import load_dataset
from searchrel.data.synth import SCALE, Latent, SynthConfig, World, build_world, synthesize, true_grades
from searchrel.data.synth_lexicon import ATTRIBUTES, LANGUAGES, THIN_TITLES, VERTICALS

SMALL = SynthConfig(seed=7, n_items=600, n_queries=200, n_users=300, n_judged_pairs=2000, n_searches=3000)
TABLES = ("items", "queries", "judgments", "search_log", "splits")


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(SMALL)


def _all_words(entry: dict[str, tuple[str, ...]]) -> list[str]:
    return [w.lower() for syns in entry.values() for w in syns]


# --- determinism and I/O ------------------------------------------------------------------------------

def test_same_seed_gives_identical_tables(world):
    again = synthesize(SMALL)
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(world.dataset, name), getattr(again, name), obj=name)
    assert again.info == world.dataset.info


def test_different_seeds_differ(world):
    other = synthesize(SMALL.model_copy(update={"seed": 8}))
    assert not other.items["title"].equals(world.dataset.items["title"])
    assert not other.queries["text"].equals(world.dataset.queries["text"])
    assert not other.search_log.equals(world.dataset.search_log)


def test_save_load_roundtrip(world, tmp_path):
    path = world.dataset.save(tmp_path / "synth")
    loaded = load_dataset(path)
    assert loaded.info == world.dataset.info
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(world.dataset, name), check_dtype=False, obj=name)


def test_dataset_json_says_synthetic(world):
    info = world.dataset.info
    assert info.synthetic and info.source == "searchrel synth" and "synthetic" in info.description.lower()
    assert info.scale == SCALE and info.scale.names[0] == "irrelevant" and info.relevant_min == 4
    assert info.languages == list(LANGUAGES)


def test_config_rejects_unknown_language():
    with pytest.raises(ValueError, match="languages"):
        SynthConfig(languages=("en", "xx"))


def test_language_subset():
    ds = synthesize(SMALL.model_copy(update={"languages": ("en", "ja")}))
    assert set(ds.items["language"]) == {"en", "ja"} and set(ds.queries["language"]) == {"en", "ja"}


# --- tables ---------------------------------------------------------------------------------------------

def test_items_table(world):
    items = world.dataset.items
    assert items["item_id"].str.fullmatch(r"i\d{6}").all()
    assert items["board_titles"].isna().all() and items["engaged_queries"].isna().all()  # annotate fills them
    assert {"color", "brand"} <= set(world.dataset.extra_fields)
    assert 0 < items["image_caption"].isna().sum() < 0.1 * len(items)  # a few items have no caption
    assert items["color"].notna().any() and items["brand"].notna().any()


def test_languages_present_everywhere(world):
    ds = world.dataset
    assert set(LANGUAGES) <= set(ds.items["language"])
    assert set(LANGUAGES) <= set(ds.queries["language"])
    assert set(LANGUAGES) <= set(ds.pairs()["language"])  # judgments for queries in every language
    en_share = (ds.queries["language"] == "en").mean()
    assert 0.45 <= en_share <= 0.75
    countries = {"en": {"US", "GB"}, "es": {"ES", "MX"}, "de": {"DE"}, "fr": {"FR"}, "ja": {"JP"}}
    assert all(c in countries[lang] for lang, c in zip(ds.queries["language"], ds.queries["country"]))
    ja = ds.queries.loc[ds.queries["language"] == "ja", "text"]
    assert not ja.str.contains(" ").any()  # Japanese written without spaces


def test_judgments_spread_and_noise(world):
    j = world.dataset.judgments
    assert j["label"].nunique() >= 4
    assert (j.groupby("query_id")["label"].nunique() >= 2).mean() > 0.8  # not all 1s within a query
    assert j["rater_variance"].notna().all() and (j["rater_variance"] >= 0).all() and (j["rater_variance"] > 0).any()
    true = world.true_grade(j["query_id"], j["item_id"])
    err = np.abs(j["label"].to_numpy() - true)
    assert 0.7 < (err == 0).mean() < 1.0  # noisy, but mostly right
    assert (err <= 1).mean() > 0.95


def test_true_grades_follow_structure():
    # query 0: sub-topic 0 with colour 2 and style 1; query 1: the whole vertical 0 with season 3
    q = Latent(np.array([0, 0]), np.array([0, -1]), np.array([[2, -1, 1, -1, -1], [-1, -1, -1, -1, 3]]))
    it = Latent(np.array([0, 0, 0, 0, 0, 1]), np.array([0, 0, 0, 1, 1, 5]),
                np.array([[2, 0, 1, 0, 3], [2, 0, 0, 0, 0], [0, 0, 0, 0, 0], [2, 0, 1, 0, 0], [0, 0, 0, 0, 3],
                          [2, 0, 1, 0, 3]]))
    items = np.arange(6)
    assert true_grades(q, np.zeros(6, int), it, items).tolist() == [5, 4, 3, 3, 2, 2]
    assert true_grades(q, np.ones(6, int), it, items).tolist() == [5, 2, 2, 2, 5, 2]


# --- fields carry complementary information ----------------------------------------------------------------

def test_thin_items_have_their_meaning_only_in_the_caption(world):
    items = world.dataset.items
    latent = world.items.frame(items["item_id"])
    thin_titles = {t for titles in THIN_TITLES.values() for t in titles}
    thin = items["title"].isin(thin_titles).to_numpy()
    assert thin.mean() > 0.1
    for (_, item), (_, lat) in zip(items[thin].iterrows(), latent[thin].iterrows()):
        topic_words = VERTICALS[lat["vertical"]].topics[lat["topic"]]
        assert item["description"] == ""
        assert not any(w in item["title"].lower() for w in _all_words(topic_words))
        assert any(w in item["image_caption"].lower() for w in topic_words["en"])


def test_audience_and_season_live_mostly_in_board_titles(world):
    ds, latent = world.dataset, world.items.frame(world.dataset.items["item_id"]).set_index("item_id")
    saves = ds.search_log[ds.search_log["event"] == "save"]
    text = (ds.items["title"] + " " + ds.items["description"]).str.lower().set_axis(ds.items["item_id"])
    for kind in ("audience", "season"):
        value = latent[kind]
        def mentions(strings: pd.Series, item_ids: pd.Series) -> float:
            hits = [any(w in s.lower() for w in _all_words(ATTRIBUTES[kind][value[i]]))
                    for s, i in zip(strings, item_ids) if pd.notna(value[i])]
            return float(np.mean(hits))
        in_boards = mentions(saves["board_title"], saves["item_id"])
        saved = saves["item_id"].drop_duplicates()
        in_text = mentions(text[saved], saved)
        assert in_boards > 0.25 and in_boards > 2 * in_text, (kind, in_boards, in_text)


def test_engaged_queries_cross_languages(world):
    ds = world.dataset
    eng = ds.search_log[ds.search_log["event"] != "impression"]
    lang = eng.merge(ds.queries[["query_id", "language"]], on="query_id").merge(
        ds.items[["item_id", "language"]], on="item_id", suffixes=("_q", "_i"))
    assert 0.05 < (lang["language_q"] != lang["language_i"]).mean() < 0.6


# --- the search log -----------------------------------------------------------------------------------

def test_log_shape(world):
    log, k = world.dataset.search_log, SMALL.impressions_per_search
    assert set(log["event"]) == {"impression", "click", "save", "long_click"}
    imp = log[log["event"] == "impression"]
    assert len(imp) == SMALL.n_searches * k and log["position"].between(0, k - 1).all()
    assert (imp["position"] == 0).sum() == SMALL.n_searches
    span = log["ts"].max() - log["ts"].min()
    assert pd.Timedelta(days=SMALL.log_days // 2) < span <= pd.Timedelta(days=SMALL.log_days, hours=1)
    assert log["ts"].is_monotonic_increasing and log["user_id"].str.fullmatch(r"u\d{6}").all()
    keys = ["user_id", "query_id", "item_id", "position"]
    shown = pd.MultiIndex.from_frame(imp[keys])
    assert pd.MultiIndex.from_frame(log.loc[log["event"] != "impression", keys]).isin(shown).all()


def test_zipf_query_reuse(world):
    searches = world.dataset.search_log.query("event == 'impression' and position == 0")["query_id"]
    counts = searches.value_counts()
    top = counts.iloc[: len(world.dataset.queries) // 10].sum()
    assert top / counts.sum() >= 0.5
    assert counts.iloc[0] > 10 * counts.median()


def test_click_through_falls_with_position_and_rises_with_relevance(world):
    log = world.dataset.search_log
    imp, clk = log[log["event"] == "impression"], log[log["event"] == "click"]
    imp_grade = world.true_grade(imp["query_id"], imp["item_id"])
    clk_grade = world.true_grade(clk["query_id"], clk["item_id"])
    # position bias at fixed relevance (the ranker's ordering alone would also make CTR fall with position)
    good_imp, good_clk = imp.loc[imp_grade >= 4, "position"], clk.loc[clk_grade >= 4, "position"]
    buckets = [(good_clk.between(lo, hi).sum() / good_imp.between(lo, hi).sum())
               for lo, hi in ((0, 1), (2, 4), (5, 8), (9, 14))]
    assert buckets == sorted(buckets, reverse=True) and buckets[0] > 2 * buckets[-1], buckets
    by_grade = (pd.Series(clk_grade).value_counts() / pd.Series(imp_grade).value_counts()).fillna(0).sort_index()
    assert list(by_grade.index) == SCALE.grades
    assert by_grade.is_monotonic_increasing and by_grade.iloc[-1] > 5 * by_grade.iloc[0], by_grade.to_dict()


def test_saves_carry_board_titles(world):
    log = world.dataset.search_log
    saves = log["event"] == "save"
    assert saves.sum() > 50
    assert log.loc[saves, "board_title"].notna().all() and (log.loc[saves, "board_title"].str.len() > 0).all()
    assert log.loc[~saves, "board_title"].isna().all()
    # a board keeps its title: users reuse boards, so there are far fewer titles than saves
    assert log.loc[saves, "board_title"].nunique() < 0.8 * saves.sum()


# --- splits ------------------------------------------------------------------------------------------------

def test_splits_keep_translations_together(world):
    ds = world.dataset
    splits = ds.splits.merge(ds.queries, on="query_id")
    assert len(ds.splits) == len(ds.queries) and set(splits["split"]) == {"train", "valid", "test"}
    grouped = splits.dropna(subset=["group_id"])
    assert (grouped.groupby("group_id")["language"].nunique() > 1).sum() >= 5  # translations exist
    assert (grouped.groupby("group_id")["split"].nunique() == 1).all()
