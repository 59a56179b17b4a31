"""The online experiment: team-draft interleaving, bootstrap intervals and power (``eval.online``), and
``searchrel simulate`` on a small synthetic run (A/B, interleaving, per language, offline vs online, CLI errors)."""

from __future__ import annotations

import json
from dataclasses import replace
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from searchrel.annotate.text import TextConfig, build_item_texts
from searchrel.cli import app
from searchrel.data.dataset import load_dataset
from searchrel.data.synth import SynthConfig, synthesize
from searchrel.eval import online
from searchrel.eval.evaluate import evaluate
from searchrel.experiments import rankers
from searchrel.experiments import simulate as sim
from searchrel.experiments.scorers import load_scorer
from searchrel.index import IndexConfig, build_index
from searchrel.layout import RunLayout
from searchrel.student.config import StudentConfig, StudentTrainConfig
from searchrel.student.model import new_student
from searchrel.student.train import train_student

runner = CliRunner()


# --- team-draft interleaving -------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(20))
def test_team_draft_picks_alternately_without_duplicates_each_team_in_its_own_order(seed):
    rng = np.random.default_rng(seed)
    items = np.arange(30)
    a, b = rng.permutation(items)[:20], rng.permutation(items)[:20]
    coins = rng.random(20) < 0.5
    shown, team = online.team_draft(a, b, 10, coins)
    assert len(shown) == 10 == len(set(shown))
    for r in range(5):  # every round one pick per team, the coin's team first
        assert list(team[2 * r:2 * r + 2]) == ([True, False] if coins[r] else [False, True])
    for picks, ranking, mine in ((np.array(shown)[team], a, True), (np.array(shown)[~team], b, False)):
        # each pick is the team's best item not shown before it
        for p, item in enumerate(np.array(shown)):
            if team[p] == mine:
                best = next(x for x in ranking if x not in shown[:p])
                assert item == best
        assert list(picks) == sorted(picks, key=list(ranking).index)


def test_team_draft_of_identical_rankings_is_that_ranking():
    ranking = [5, 3, 9, 1, 7, 2]
    shown, team = online.team_draft(ranking, ranking, 6, np.array([True, False, True, False, True, False]))
    assert shown == ranking and team.sum() == 3


def test_team_draft_fills_from_the_other_ranking_when_one_runs_out():
    shown, team = online.team_draft([1, 2], [3, 4, 5, 6], 5, np.ones(5, bool))
    assert shown == [1, 3, 2, 4, 5] and list(team) == [True, False, True, False, False]


def test_credit_counts_each_click_for_the_team_of_its_item():
    team_a = np.array([[True, False, True, False]] * 4)
    clicks = np.array([[1, 1, 1, 0], [0, 0, 0, 0], [0, 1, 0, 1], [1, 1, 0, 0]])
    a, b, outcome = online.credit(team_a, clicks)
    assert a.tolist() == [2, 0, 0, 1] and b.tolist() == [1, 0, 2, 1]
    assert outcome[[0, 2, 3]].tolist() == [1, -1, 0] and np.isnan(outcome[1])
    est, _, _ = online.bootstrap_ratio(np.nan_to_num(outcome), ~np.isnan(outcome), 100)
    assert est == 0  # one win each, one tie: (1 - 1) / 3 searches with a credited click


def test_interleaving_prefers_the_ranker_that_puts_the_relevant_items_first():
    """With the world's users: a ranker ordering by true grade beats the same items reversed, decisively."""
    rng = np.random.default_rng(0)
    n_queries, pool = 30, 40
    grade = rng.integers(1, 6, n_queries * pool)
    rows = np.arange(n_queries * pool).reshape(n_queries, pool)
    best = np.array([r[np.argsort(-grade[r], kind="stable")] for r in rows])[:, :20]
    worst = np.array([r[np.argsort(grade[r], kind="stable")] for r in rows])[:, :20]
    q_of = rng.integers(n_queries, size=3000)
    frame = sim.interleave(best, worst, grade, q_of, np.random.default_rng(1))
    est, lo, hi = online.bootstrap_ratio(np.nan_to_num(frame["outcome"]), frame["outcome"].notna(), 500, 0)
    assert lo > 0.5 and est <= hi
    # and the same ranker against itself: no preference beyond noise
    same = sim.interleave(best, best, grade, q_of, np.random.default_rng(2))
    _, lo, hi = online.bootstrap_ratio(np.nan_to_num(same["outcome"]), same["outcome"].notna(), 500, 0)
    assert lo < 0 < hi
    assert (frame["credit_a"] + frame["credit_b"] > 0).sum() == frame["outcome"].notna().sum()


# --- bootstrap, power, agreement ----------------------------------------------------------------------------------

def test_bootstrap_intervals_cover_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = 0
    for t in range(200):
        est, lo, hi = online.bootstrap_mean(rng.random(300) < 0.3, reps=400, seed=t)
        assert lo <= est <= hi
        covered += lo <= 0.3 <= hi
    assert 0.89 <= covered / 200 <= 0.99


def test_bootstrap_ratios_share_resamples_and_skip_undefined_columns():
    num = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    den = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    out = online.bootstrap_ratios(num, den, reps=200, seed=0)
    assert out[0, 0] == 0.75 and 0 <= out[0, 1] <= 0.75 <= out[0, 2] <= 1
    assert np.isnan(out[1]).all()
    d, lo, hi = online.bootstrap_difference(np.ones(50), np.zeros(50), reps=200)
    assert d == lo == hi == 1.0


def test_power_formulas_match_a_hand_computation():
    z = 1.959964 + 0.841621  # z_0.975 + z_0.8
    a, b = np.array([1, 0, 1, 1.0]), np.array([0, 0, 1, 0.0])  # means .75 / .25, sample variances .25 each
    assert online.ab_searches_needed(a, b) == pytest.approx(z**2 * 0.5 / 0.25, rel=1e-5)
    d = np.array([1, 1, -1, 0, np.nan])  # mean .2 over 5 searches (no click = 0), sample variance .7
    assert online.interleaving_searches_needed(d) == pytest.approx(z**2 * 0.7 / 0.04, rel=1e-5)
    assert online.ab_searches_needed(a, a) == float("inf")


def test_an_ab_of_the_size_the_power_formula_gives_detects_the_effect_80_percent_of_the_time():
    rng = np.random.default_rng(0)
    p_a, p_b = 0.55, 0.50
    big_a, big_b = rng.random(200_000) < p_a, rng.random(200_000) < p_b
    n = int(np.ceil(online.ab_searches_needed(big_a, big_b)))
    z = NormalDist().inv_cdf(0.975)
    hits = 0
    for _ in range(400):
        a, b = rng.random(n) < p_a, rng.random(n) < p_b
        se = np.sqrt(a.var(ddof=1) / n + b.var(ddof=1) / n)
        hits += abs(a.mean() - b.mean()) / se > z
    assert 0.74 <= hits / 400 <= 0.86


def test_kendall_tau():
    from scipy.stats import kendalltau

    x, y = [0.9, 0.7, 0.5, 0.2], [0.3, 0.4, 0.1, 0.0]
    assert online.kendall_tau(x, y) == pytest.approx(kendalltau(x, y).statistic)
    assert online.kendall_tau(x, x) == 1 and online.kendall_tau(x, [-v for v in x]) == -1


def test_traffic_is_zipf_within_each_language_and_covers_every_language():
    queries = pd.DataFrame({"query_id": [f"q{i}" for i in range(60)],
                            "language": ["en"] * 40 + ["de"] * 15 + ["ja"] * 5})
    q = sim.traffic(queries, 20_000, 1.1, np.random.default_rng(0))
    assert (q == sim.traffic(queries, 20_000, 1.1, np.random.default_rng(0))).all()
    lang = queries["language"].to_numpy()[q]
    for code, share in (("en", 40 / 60), ("de", 15 / 60), ("ja", 5 / 60)):  # languages in proportion to queries
        assert (lang == code).mean() == pytest.approx(share, abs=0.015)
    counts = np.sort(np.bincount(q[lang == "en"], minlength=60)[:40])[::-1]
    expected = np.arange(1, 41) ** -1.1
    assert np.allclose(counts / counts.sum(), expected / expected.sum(), atol=0.01)
    # with the log's popularity, the log's head is the head, whatever the seed
    head = np.zeros(60)
    head[[7, 3, 45]] = [90, 50, 10]  # en: q7 then q3; de: q45
    for seed in (0, 1):
        q = sim.traffic(queries, 20_000, 1.1, np.random.default_rng(seed), head)
        counts = np.bincount(q, minlength=60)
        assert counts[7] > counts[3] > counts[np.r_[0:3, 4:7, 8:40]].max() and counts[45] == counts[40:55].max()


def test_ndcg_of_a_screen_against_the_pool_ideal():
    ideal = np.array([[5, 4, 1]])
    assert sim.ndcg_of(np.array([[5, 4, 1]]), ideal, 1)[0] == 1
    gains = np.array([15, 7, 0]) / np.log2([2, 3, 4])
    assert sim.ndcg_of(np.array([[4, 5, 1]]), ideal, 1)[0] == pytest.approx((7 + 15 / np.log2(3)) / gains.sum())
    assert np.isnan(sim.ndcg_of(np.array([[1, 1, 0]]), np.array([[1, 1, 0]]), 1)[0])


# --- the simulation on a small run --------------------------------------------------------------------------------

SMALL = SynthConfig(seed=1, n_items=150, n_queries=60, n_users=40, n_judged_pairs=300, n_searches=400)


@pytest.fixture(scope="module")
def small_run(tiny_bert, tmp_path_factory):
    """A run directory as `searchrel run` leaves it, made by hand: the synthetic dataset, its config, a trained and
    an untrained student (served: x1) with its index, evaluated offline."""
    out = tmp_path_factory.mktemp("simrun") / "run"
    at = RunLayout(out)
    ds = synthesize(SMALL)
    ds.save(at.dataset)
    text = TextConfig(fields=["title", "image_caption"])
    at.config.write_text(json.dumps({"data": {"source": "synthetic", "synth": SMALL.model_dump(mode="json")},
                                     "text": text.model_dump(mode="json"),
                                     "baselines": {"bm25": True, "zero_shot": None}, "evaluate": {"split": "test"}}))
    student = StudentConfig(backbone=str(tiny_bert), layers=1, dim=16, zero_shot_model=str(tiny_bert), text=text,
                            item_max_length=32, scale=ds.info.scale, features=["text_match"])
    train_student(ds, at.student("human"), StudentTrainConfig(student=student, epochs=1, eval_every=1000))
    untrained = new_student(student)
    for f in untrained.features:
        f.fit(build_item_texts(ds.items, text).tolist())
    untrained.save(at.student("x1"))
    build_index(at.student("x1"), ds, at.index, IndexConfig(faiss="flat"))
    systems = []
    for stem, name, path in (("student-human", "student: human labels only", at.student("human")),
                             ("student-x1", "student: x1", at.student("x1"))):
        evaluate(ds, load_scorer(path).predict(ds, "test")).save(at.eval / f"metrics-{stem}.json")
        systems.append({"name": name, "kind": "student", "predictions": f"predictions-{stem}.parquet",
                        "metrics": f"metrics-{stem}.json"})
    at.systems.write_text(json.dumps({"split": "test", "student": "student: x1", "systems": systems}))
    return out


CFG = {"searches": 3000, "bootstrap": 200}


@pytest.fixture(scope="module")
def result(small_run):
    return sim.simulate(small_run, sim.SimulateConfig(**CFG))


def test_simulate_writes_arms_languages_interleaving_and_power(small_run, result):
    at = RunLayout(small_run)
    assert json.loads((at.simulate / "online.json").read_text()) == json.loads(json.dumps(result))
    assert list(result["arms"]) == ["bm25", "student-human", "student-x1"]
    assert [(c["a"], c["b"]) for c in result["interleaving"]] == [("student-x1", "bm25"),
                                                                   ("student-x1", "student-human")]
    assert sum(a["searches"] for a in result["arms"].values()) == 3000
    ds = load_dataset(at.dataset)
    languages = set(ds.queries.loc[ds.queries["query_id"].map(ds.split_of()) == "test", "language"])
    assert set(result["languages"]) == languages and len(languages) >= 4  # every held-out language gets searches
    for arm in result["arms"].values():
        assert set(arm["by_language"]) == languages
        for m in sim.METRICS:
            v = arm[m]
            assert v["lo"] <= v["mean"] <= v["hi"]
        assert 0 <= arm["fulfilment"]["mean"] <= 1 and 0 < arm["ndcg"]["mean"] <= 1
        assert arm["impressions_per_search"] == 20
    for il in result["interleaving"]:
        p = il["preference"]
        assert p["lo"] <= p["mean"] <= p["hi"]
        assert il["wins_a"] + il["wins_b"] + il["ties"] == il["searches_with_clicks"]
    searches = pd.read_parquet(at.simulate / "searches.parquet")
    assert searches["experiment"].value_counts().to_dict() == {"ab": 3000, "interleave student-x1 vs bm25": 3000,
                                                               "interleave student-x1 vs student-human": 3000}
    ab = searches[searches["experiment"] == "ab"]
    # the summary is what the per-search rows say
    bm25 = ab[ab["arm"] == "bm25"]
    assert result["arms"]["bm25"]["fulfilment"]["mean"] == pytest.approx(bm25["fulfilled"].mean(), abs=1e-5)
    assert ((ab["long_clicks"] <= ab["clicks"]) & (ab["saves"] <= ab["clicks"])).all()
    assert (ab["fulfilled"] == ((ab["long_clicks"] > 0) | (ab["saves"] > 0))).all()
    ovo = result["offline_vs_online"]
    assert set(ovo["offline"]) == {"student-human", "student-x1"} and ovo["statement"]


def test_the_served_student_ranks_from_its_index_as_from_its_own_towers(small_run):
    ds = load_dataset(RunLayout(small_run).dataset)
    specs = rankers.available(small_run)
    served = specs["student"]
    assert served.name == "student-x1" and served.index == RunLayout(small_run).index
    assert specs["student-human"].index is None  # the index was built from the served student only
    text = TextConfig(fields=["title", "image_caption"])
    pool = sim.candidate_pool(ds, ds.queries.head(6), text, served, 10)
    assert set(pool["source"]) <= {"bm25", "index", "both"} and "index" in set(pool["source"])
    from_index = rankers.score_pool(served, ds, pool, text)
    from_towers = rankers.score_pool(replace(served, index=None), ds, pool, text)
    assert np.allclose(from_index, from_towers, atol=1e-4)


def test_online_metrics_follow_true_relevance(small_run, result):
    """Clicks and fulfilment rise with the screen's true NDCG across searches: the world's users at work."""
    ab = pd.read_parquet(RunLayout(small_run).simulate / "searches.parquet").query("experiment == 'ab'")
    top, bottom = ab["ndcg"] >= ab["ndcg"].quantile(0.75), ab["ndcg"] <= ab["ndcg"].quantile(0.25)
    assert ab.loc[top, "fulfilled"].mean() > ab.loc[bottom, "fulfilled"].mean() + 0.1


def test_the_same_seed_gives_the_same_experiment(small_run, result, tmp_path):
    again = sim.simulate(small_run, sim.SimulateConfig(**CFG), out=tmp_path / "again")
    assert again == result


def test_cli_simulates_one_pair_and_names_what_exists(small_run, tmp_path):
    res = runner.invoke(app, ["simulate", str(small_run), "--a", "student", "--b", "bm25", "--searches", "1000",
                              "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "s" / "online.json").read_text())
    assert list(data["arms"]) == ["student-x1", "bm25"] and data["config"]["searches"] == 1000
    assert "interleaving preference" in res.output and "online.json" in res.output
    res = runner.invoke(app, ["simulate", str(small_run), "--arms", "bm25,student-human", "--a", "student", "--b",
                              "bm25", "--searches", "600", "--out", str(tmp_path / "arms")])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "arms" / "online.json").read_text())
    assert list(data["arms"]) == ["bm25", "student-human", "student-x1"]  # the compared pair joins the arms
    bad = runner.invoke(app, ["simulate", str(small_run), "--a", "student", "--b", "bm26"])
    assert bad.exit_code == 2 and "bm26" in bad.output and "student-human" in bad.output
    same = runner.invoke(app, ["simulate", str(small_run), "--a", "student", "--b", "student-x1"])
    assert same.exit_code == 2 and "both name student-x1" in same.output


def test_a_run_without_a_world_is_refused_with_the_reason(tiny, tmp_path):
    at = RunLayout(tmp_path / "run")
    tiny.save(at.dataset)
    at.config.write_text(json.dumps({"data": {"source": "dataset", "path": "x"}}))
    with pytest.raises(sim.NoWorld, match="not the synthetic world"):
        sim.simulate(at.root)
    res = runner.invoke(app, ["simulate", str(at.root)])
    assert res.exit_code == 2 and "not the synthetic world" in res.output
