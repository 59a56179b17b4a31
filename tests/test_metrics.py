"""Metrics against scikit-learn and hand-computed cases; ``searchrel eval`` reproduces scikit-learn."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score, ndcg_score, roc_auc_score
from typer.testing import CliRunner

from searchrel.cli import app
from searchrel.data.dataset import Dataset, DatasetError, DatasetInfo, Scale
from searchrel.eval import metrics as M
from searchrel.eval.evaluate import EvalConfig, evaluate

rng = np.random.default_rng(0)


def test_grade_metrics_match_sklearn():
    grades = [1, 2, 3, 4]
    for _ in range(20):
        y = rng.integers(1, 5, 200)
        p = np.where(rng.random(200) < 0.5, y, rng.integers(1, 5, 200))
        assert M.accuracy(y, p) == pytest.approx(np.mean(y == p))
        assert M.macro_f1(y, p, grades) == pytest.approx(f1_score(y, p, average="macro"))
        assert M.quadratic_weighted_kappa(y, p, grades) == pytest.approx(
            cohen_kappa_score(y, p, weights="quadratic", labels=grades))


def test_qwk_on_an_unordered_scale_and_off_scale_grades():
    grades = [0, 2, 1]  # the scale's listed order is its order, whatever the numbers
    y, p = np.array([0, 2, 1, 1, 0]), np.array([2, 2, 1, 0, 0])
    assert M.quadratic_weighted_kappa(y, p, grades) == pytest.approx(
        cohen_kappa_score(y, p, weights="quadratic", labels=grades))
    with pytest.raises(KeyError, match="grade 7 is not on the scale"):
        M.quadratic_weighted_kappa(y, np.array([7, 2, 1, 1, 0]), grades)


def test_macro_f1_skips_grades_absent_from_both():
    y, p = np.array([1, 1, 4]), np.array([1, 4, 4])
    assert M.macro_f1(y, p, [1, 2, 3, 4]) == pytest.approx(f1_score(y, p, average="macro"))


def test_auroc_matches_sklearn_with_ties():
    for _ in range(20):
        y = rng.random(300) < 0.3
        s = np.round(rng.random(300) + y * 0.3, 1)  # many ties
        assert M.auroc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert M.auroc(np.ones(5, bool), np.arange(5)) is None


def test_ndcg_matches_sklearn_and_hand_case():
    for _ in range(20):
        labels = rng.integers(1, 6, 15)
        if labels.max() == 1:
            continue
        score = rng.random(15)
        ids = np.array([f"i{j}" for j in range(15)])
        for k in (3, 8, 20):
            ours = M.ndcg_at_k(labels, score, ids, k, scale_min=1)
            ref = ndcg_score([2.0 ** (labels - 1) - 1], [score], k=k)
            assert ours == pytest.approx(ref)
    # by hand: gains [1, 0, 3] ranked as given; ideal [3, 1, 0]
    ndcg = M.ndcg_at_k(np.array([2, 1, 3]), np.array([3.0, 2.0, 1.0]), np.array(["a", "b", "c"]), 3, 1)
    assert ndcg == pytest.approx((1 + 3 / 2) / (3 + 1 / np.log2(3)))
    assert M.ndcg_at_k(np.array([1, 1]), np.array([1.0, 2.0]), np.array(["a", "b"]), 8, 1) is None


def test_ties_break_by_item_id():
    order = M.rank_order(np.array([1.0, 1.0, 2.0]), np.array(["b", "a", "c"]))
    assert order.tolist() == [2, 1, 0]
    assert M.precision_at_k(np.array([4, 1, 1]), np.array([0.0, 0.0, 0.0]), np.array(["z", "a", "b"]), 1, 3) == 0.0


def _random_dataset(n_queries=30, per_query=12, seed=1):
    r = np.random.default_rng(seed)
    rows = []
    for q in range(n_queries):
        for i in r.choice(60, per_query, replace=False):
            rows.append((f"q{q}", f"i{i}", int(r.integers(1, 5))))
    j = pd.DataFrame(rows, columns=["query_id", "item_id", "label"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(60)], "title": "t", "description": "d", "language": "en"})
    queries = pd.DataFrame({"query_id": [f"q{q}" for q in range(n_queries)], "text": [f"query {q}" for q in range(n_queries)],
                            "language": ["en" if q % 3 else "de" for q in range(n_queries)],
                            "country": ["US" if q % 3 else "DE" for q in range(n_queries)]})
    info = DatasetInfo(name="rand", scale=Scale(min=1, max=4))
    return Dataset(info, items, queries, j).validate()


def _random_predictions(ds, seed=2):
    r = np.random.default_rng(seed)
    p = r.dirichlet(np.ones(4), len(ds.judgments))
    preds = ds.judgments[["query_id", "item_id"]].copy()
    for g in range(4):
        preds[f"p_{g + 1}"] = p[:, g]
    return preds


def test_eval_cli_reproduces_sklearn(tmp_path):
    ds = _random_dataset()
    ds.save(tmp_path / "ds")
    preds = _random_predictions(ds)
    preds.to_csv(tmp_path / "preds.csv", index=False)
    res = CliRunner().invoke(app, ["eval", "--data", str(tmp_path / "ds"), "--predictions", str(tmp_path / "preds.csv"),
                                   "--split", "all", "--out", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "m.json").read_text())
    assert set(out) >= {"overall", "by_language", "by_country", "n_queries", "n_pairs"}
    assert out["n_pairs"] == len(ds.judgments) and out["n_queries"] == 30

    df = ds.judgments.merge(preds, on=["query_id", "item_id"])
    p = df[[f"p_{g}" for g in range(1, 5)]].to_numpy()
    pred, expected = p.argmax(1) + 1, p @ np.arange(1, 5)
    o = out["overall"]
    assert o["accuracy"] == pytest.approx(np.mean(pred == df["label"]))
    assert o["qwk"] == pytest.approx(cohen_kappa_score(df["label"], pred, weights="quadratic"))
    assert o["macro_f1"] == pytest.approx(f1_score(df["label"], pred, average="macro"))
    for t in (2, 3, 4):
        assert o[f"auroc@>={t}"] == pytest.approx(roc_auc_score(df["label"] >= t, expected))
    for k in (8, 20):
        per_q = [ndcg_score([2.0 ** (g["label"] - 1) - 1], [g[[f"p_{i}" for i in range(1, 5)]].to_numpy() @ np.arange(1, 5)], k=k)
                 for _, g in df.groupby("query_id") if g["label"].max() > 1]
        assert o[f"ndcg@{k}"] == pytest.approx(np.mean(per_q))
    de = df[df["query_id"].map(ds.queries.set_index("query_id")["language"]) == "de"]
    de_pred = de[[f"p_{g}" for g in range(1, 5)]].to_numpy().argmax(1) + 1
    assert out["by_language"]["de"]["accuracy"] == pytest.approx(np.mean(de_pred == de["label"]))
    assert out["by_country"]["DE"]["n_pairs"] == len(de)


def test_ranking_only_scorer_gets_na_grades():
    ds = _random_dataset()
    preds = ds.judgments[["query_id", "item_id"]].assign(score=np.arange(len(ds.judgments), dtype=float))
    r = evaluate(ds, preds, EvalConfig(split="all"))
    assert r.overall["accuracy"] is None and r.overall["qwk"] is None
    assert r.overall["ndcg@8"] is not None and r.overall["auroc@>=3"] is not None


def test_eval_input_errors(tmp_path):
    ds = _random_dataset()
    preds = _random_predictions(ds)
    with pytest.raises(DatasetError, match="lack 1 of the"):
        evaluate(ds, preds.iloc[1:], EvalConfig(split="all"))
    with pytest.raises(DatasetError, match="need all of"):
        evaluate(ds, preds.drop(columns="p_4"), EvalConfig(split="all"))
    with pytest.raises(DatasetError, match="sum to 1"):
        evaluate(ds, preds.assign(p_1=0.9), EvalConfig(split="all"))
    with pytest.raises(DatasetError, match="predicted twice"):
        evaluate(ds, pd.concat([preds, preds.iloc[:1]]), EvalConfig(split="all"))
    ds.save(tmp_path / "ds")
    res = CliRunner().invoke(app, ["eval", "--data", str(tmp_path / "ds"), "--predictions", str(tmp_path / "none.csv")])
    assert res.exit_code == 2 and "no such predictions file" in res.output


# -- paired comparison (eval.paired, `searchrel eval --against`) ------------------------------------------------------

def test_sign_flip_p_value_matches_exact_enumeration():
    """The randomization test's p against every one of the 2^10 sign patterns, and the bootstrap interval's edges."""
    import itertools

    from searchrel.eval.paired import paired_test

    d = np.array([0.09, 0.05, -0.02, 0.12, 0.03, -0.04, 0.07, 0.01, 0.06, -0.01])
    flips = np.array(list(itertools.product([-1, 1], repeat=len(d))))
    exact = np.mean(np.abs((flips * d).mean(1)) >= abs(d.mean()) - 1e-12)
    mean, lo, hi, p = paired_test(d, reps=40_000, seed=3)
    assert mean == pytest.approx(d.mean())
    assert p == pytest.approx(exact, abs=0.006)  # exact: 66 of the 1,024 patterns
    assert lo < mean < hi and lo > 0  # every bootstrap mean of these differences is a mean of 10 draws from d
    assert d.min() <= lo and hi <= d.max()
    same = paired_test(np.array([0.1, -0.1] * 6), reps=2_000)
    assert same[0] == pytest.approx(0) and same[3] == 1.0 and same[1] < 0 < same[2]
    assert paired_test(np.full(12, 0.02), reps=20, seed=1)[3] == pytest.approx(1 / 21)  # (1 + 0 extreme) / (1 + 20)
    const = paired_test(np.full(12, 0.02), reps=5_000)
    assert const[1] == pytest.approx(0.02) and const[2] == pytest.approx(0.02)
    assert const[3] == pytest.approx((1 + 5_000 * 2 / 4096) / 5_001, abs=0.003)  # only all-plus or all-minus tie it
    with pytest.raises(ValueError, match="non-empty"):
        paired_test(np.array([]))
    from searchrel.eval.paired import PairedResult, PairedRow, markdown

    row = PairedRow(slice="all", queries=10, a=0.9, b=0.8, diff=0.1, lo=0.05, hi=0.15, p_value=1 / 10_001)
    table = markdown(PairedResult(metric="ndcg@8", split="test", reps=10_000, level=0.95, rows=[row]), "T", "Z")
    assert "| all | 10 | 0.900 | 0.800 | +10.0 | [+5.0, +15.0] | < 0.001 |" in table


def test_paired_comparison_per_language_and_cli(tmp_path):
    from searchrel.eval.paired import compare_predictions, per_query

    ds = _random_dataset(n_queries=30)
    pairs = ds.judgments[["query_id", "item_id"]]
    noise = np.random.default_rng(5).normal(0, 1.5, len(pairs))
    good = pairs.assign(score=ds.judgments["label"].to_numpy() + noise)  # ranks by the label, with noise
    rand = pairs.assign(score=np.random.default_rng(6).normal(size=len(pairs)))
    res = compare_predictions(ds, good, rand, split="all", reps=2_000)
    assert [r.slice for r in res.rows] == ["all", "lang=de", "lang=en"]
    q_good, q_rand = per_query(ds, good, "all"), per_query(ds, rand, "all")
    assert res.rows[0].queries == len(q_good) and res.rows[1].queries + res.rows[2].queries == len(q_good)
    assert res.rows[0].a == pytest.approx(q_good["value"].mean())
    assert res.rows[0].a == pytest.approx(evaluate(ds, good, EvalConfig(split="all")).overall["ndcg@8"])
    assert res.rows[0].diff == pytest.approx(q_good["value"].mean() - q_rand["value"].mean())
    assert res.rows[0].diff > 0 and res.rows[0].lo > 0 and res.rows[0].p_value < 0.01
    itself = compare_predictions(ds, good, good, split="all", reps=500).rows[0]
    assert itself.diff == 0 and itself.p_value == 1.0
    p8 = compare_predictions(ds, good, rand, "all", "p@8", reps=500)
    assert p8.metric == "p@8"
    assert p8.rows[0].a == pytest.approx(evaluate(ds, good, EvalConfig(split="all")).overall["p@8"])
    with pytest.raises(ValueError, match="ndcg@K, p@K or qwk"):
        compare_predictions(ds, good, rand, "all", "auroc@>=3")
    with pytest.raises(DatasetError, match="decoded grades"):  # scores only: no grades to compare
        compare_predictions(ds, good, rand, "all", "qwk")

    ds.save(tmp_path / "ds")
    good.to_csv(tmp_path / "good.csv", index=False)
    rand.to_parquet(tmp_path / "rand.parquet")
    out = tmp_path / "m.json"
    cli = CliRunner().invoke(app, ["eval", "--data", str(tmp_path / "ds"), "--predictions", str(tmp_path / "good.csv"),
                                   "--split", "all", "--against", str(tmp_path / "rand.parquet"), "--reps", "500",
                                   "--out", str(out)])
    assert cli.exit_code == 0, cli.output
    assert "good against rand" in cli.output and "lang=de" in cli.output
    (tmp_path / "other").mkdir()
    rand.to_parquet(tmp_path / "other" / "good.parquet")  # the same name in another directory: told apart
    same = CliRunner().invoke(app, ["eval", "--data", str(tmp_path / "ds"), "--predictions", str(tmp_path / "good.csv"),
                                    "--split", "all", "--against", str(tmp_path / "other" / "good.parquet"),
                                    "--reps", "200"])
    assert same.exit_code == 0 and f"{tmp_path.name}/good against other/good" in same.output, same.output
    saved = json.loads((tmp_path / "m.paired.json").read_text())
    assert saved["rows"][0]["diff"] == pytest.approx(res.rows[0].diff) and saved["reps"] == 500
    bad = CliRunner().invoke(app, ["eval", "--data", str(tmp_path / "ds"), "--predictions", str(tmp_path / "good.csv"),
                                   "--split", "all", "--against", str(tmp_path / "none.csv")])
    assert bad.exit_code == 2 and "no such predictions file" in bad.output
    alone = CliRunner().invoke(app, ["eval", "--data", str(tmp_path / "ds"), "--predictions", str(tmp_path / "good.csv"),
                                     "--metric", "qwk"])
    assert alone.exit_code == 2 and "give --against" in alone.output  # not ignored silently
    alone = CliRunner().invoke(app, ["eval", "--data", str(tmp_path / "ds"), "--predictions", str(tmp_path / "good.csv"),
                                     "--reps", "500"])
    assert alone.exit_code == 2 and "give one of them" in alone.output


def test_bootstrap_intervals_for_one_system(tmp_path):
    """eval.intervals: QWK from confusion matrices as metrics computes it, resamples as drawn, values as evaluate's."""
    from searchrel.eval.intervals import metric_intervals
    from searchrel.eval.metrics import qwk_from_counts
    from searchrel.eval.paired import resampled_sums

    r = np.random.default_rng(0)
    for _ in range(5):
        t, p = r.integers(0, 4, 200), np.clip(r.integers(0, 4, 200) + r.integers(-1, 2, 200), 0, 3)
        counts = np.zeros((4, 4))
        np.add.at(counts, (t, p), 1)
        assert qwk_from_counts(counts) == pytest.approx(M.quadratic_weighted_kappa(t + 1, p + 1, [1, 2, 3, 4]))
    assert qwk_from_counts(np.diag([5.0, 0, 0, 0])) == 0.0  # one grade only: undefined, 0 as metrics says
    rows = r.normal(size=(30, 2, 2))
    idx = np.random.default_rng(7).integers(0, 30, (5, 30))
    assert np.allclose(resampled_sums(rows, 5, np.random.default_rng(7)), rows[idx].sum(1))

    ds = _random_dataset()
    preds = _random_predictions(ds)
    res = metric_intervals(ds, preds, split="all", reps=2_000)
    ev = evaluate(ds, preds, EvalConfig(split="all"))
    got = {(row.slice, row.metric): row for row in res.rows}
    metrics = ("ndcg@8", "qwk") + tuple(f"auroc@>={t}" for t in ds.info.scale.grades[1:])
    assert set(got) == {(s, m) for s in ("all", "lang=de", "lang=en") for m in metrics}
    for (slice_, metric), row in got.items():
        expected = ev.overall if slice_ == "all" else ev.by_language[slice_.removeprefix("lang=")]
        assert row.value == pytest.approx(expected[metric]) and row.lo <= row.value <= row.hi
    assert got[("all", "qwk")].hi - got[("all", "qwk")].lo < got[("lang=de", "qwk")].hi - got[("lang=de", "qwk")].lo
    ranking_only = ds.judgments[["query_id", "item_id"]].assign(score=r.normal(size=len(ds.judgments)))
    assert {row.metric for row in metric_intervals(ds, ranking_only, "all", reps=200).rows} == {"ndcg@8"} | {
        f"auroc@>={t}" for t in ds.info.scale.grades[1:]}

    ds.save(tmp_path / "ds")
    preds.to_csv(tmp_path / "p.csv", index=False)
    cli = CliRunner().invoke(app, ["eval", "--data", str(tmp_path / "ds"), "--predictions", str(tmp_path / "p.csv"),
                                   "--split", "all", "--intervals", "--reps", "500", "--out", str(tmp_path / "m.json")])
    assert cli.exit_code == 0, cli.output
    assert "| all | qwk | 30 |" in cli.output
    saved = json.loads((tmp_path / "m.intervals.json").read_text())
    assert saved["reps"] == 500 and saved["rows"][0]["value"] == pytest.approx(ev.overall["ndcg@8"])


def test_auroc_of_a_resample_is_the_auroc_of_its_pooled_pairs():
    """eval.intervals' AUROC from per-query counts equals metrics.auroc over the drawn queries' pairs, repeated as
    drawn (ties counting half), and is undefined where a draw has no positive."""
    from searchrel.eval.intervals import auroc_from_counts, auroc_parts

    r = np.random.default_rng(3)
    query = r.integers(0, 6, 80)
    labels = r.integers(1, 5, 80)
    score = np.round(r.normal(size=80), 1)  # rounded: ties across queries
    for t in (2, 3, 4):
        A, p, n = auroc_parts(labels, score, query, t)
        assert auroc_from_counts(A, p, n, np.ones((1, 6)))[0] == pytest.approx(M.auroc(labels >= t, score))
        for counts in ([2, 0, 1, 0, 3, 0], [0, 1, 1, 1, 0, 2]):
            rows = np.concatenate([np.flatnonzero(query == q).repeat(c) for q, c in enumerate(counts)])
            got = auroc_from_counts(A, p, n, np.array([counts], float))[0]
            assert got == pytest.approx(M.auroc(labels[rows] >= t, score[rows]))
    A, p, n = auroc_parts(np.where(query == 0, 4, 1), score, query, 4)  # positives only in query 0
    assert np.isnan(auroc_from_counts(A, p, n, np.array([[0, 1, 1, 1, 1, 1.0]]))[0])


def test_the_curve_still_stands_when_no_query_can_be_compared(tmp_path):
    from searchrel.experiments.curve import write_paired

    ds = _random_dataset()
    ds.judgments["label"] = 1  # no relevant candidate anywhere: NDCG is undefined for every query
    preds = ds.judgments[["query_id", "item_id"]].assign(score=0.0)
    write_paired(tmp_path, ds, {"x3": preds, "human labels only": preds}, "x3", "all", "ndcg@8")
    assert not (tmp_path / "curve-paired.md").exists()
    fine = _random_predictions(_random_dataset())
    write_paired(tmp_path, _random_dataset(), {"x3": fine, "human labels only": fine}, "x3", "all", "qwk")  # pooled
    assert not (tmp_path / "curve-paired.md").exists()
    write_paired(tmp_path, _random_dataset(), {"x3": fine, "human labels only": fine}, "x3", "all", "ndcg@8")
    assert (tmp_path / "curve-paired.md").exists()


def test_mean_of_several_runs():
    from searchrel.eval.evaluate import mean_of

    ds = _random_dataset()
    runs = [evaluate(ds, _random_predictions(ds, seed=s), EvalConfig(split="all")) for s in (2, 3)]
    ranking_only = evaluate(ds, ds.judgments[["query_id", "item_id"]].assign(score=1.0), EvalConfig(split="all"))
    mean = mean_of(runs)
    assert mean.overall["ndcg@8"] == pytest.approx((runs[0].overall["ndcg@8"] + runs[1].overall["ndcg@8"]) / 2)
    assert mean.by_language["de"]["qwk"] == pytest.approx((runs[0].by_language["de"]["qwk"]
                                                           + runs[1].by_language["de"]["qwk"]) / 2)
    assert mean_of([runs[0], ranking_only]).overall["qwk"] is None  # n/a in one run: n/a in the mean
    with pytest.raises(ValueError, match="at least one"):
        mean_of([])
    other = evaluate(ds, _random_predictions(ds), EvalConfig(split="all")).model_copy(update={"split": "test"})
    with pytest.raises(ValueError, match="different splits"):
        mean_of([runs[0], other])


def test_paired_qwk_swaps_grades_per_query(tmp_path):
    """QWK compared through per-query confusion matrices: the point values are evaluate's, the randomization test
    against exact enumeration of every swap pattern on a small set, and systems without grades are refused."""
    import itertools

    from searchrel.eval.metrics import qwk_from_counts
    from searchrel.eval.paired import compare_predictions, confusion_by_query

    ds = _random_dataset(n_queries=30)
    labels = ds.judgments["label"].to_numpy()
    r = np.random.default_rng(4)
    near = np.clip(labels + r.integers(-1, 2, len(labels)), 1, 4)
    good = ds.judgments[["query_id", "item_id"]].assign(score=0.0, grade=near)
    bad = ds.judgments[["query_id", "item_id"]].assign(score=0.0, grade=r.integers(1, 5, len(labels)))
    res = compare_predictions(ds, good, bad, "all", "qwk", reps=4_000)
    ev_good, ev_bad = (evaluate(ds, p, EvalConfig(split="all")) for p in (good, bad))
    row = res.rows[0]
    assert row.a == pytest.approx(ev_good.overall["qwk"]) and row.b == pytest.approx(ev_bad.overall["qwk"])
    assert res.rows[1].a == pytest.approx(ev_good.by_language["de"]["qwk"])
    assert row.diff > 0.3 and row.lo <= row.diff <= row.hi and row.lo > 0 and row.p_value < 0.01
    assert compare_predictions(ds, good, good, "all", "qwk", reps=300).rows[0].p_value == 1.0

    # exact randomization p on the 10 German queries: all 2^10 swap patterns
    de = ds.queries.loc[ds.queries["language"] == "de", "query_id"]
    noisy = good.assign(grade=np.where(r.random(len(labels)) < 0.5, good["grade"], bad["grade"]))
    j = ds.judgments.assign(pred_grade=noisy["grade"].to_numpy())
    ca = np.stack(confusion_by_query(j[j["query_id"].isin(de)], [1, 2, 3, 4]).to_list())
    j = ds.judgments.assign(pred_grade=bad["grade"].to_numpy())
    cb = np.stack(confusion_by_query(j[j["query_id"].isin(de)], [1, 2, 3, 4]).to_list())
    observed = abs(qwk_from_counts(ca.sum(0)) - qwk_from_counts(cb.sum(0)))
    keep = np.array(list(itertools.product([0.0, 1.0], repeat=len(ca))))
    sa = np.einsum("kq,qij->kij", keep, ca) + np.einsum("kq,qij->kij", 1 - keep, cb)
    sb = np.einsum("kq,qij->kij", 1 - keep, ca) + np.einsum("kq,qij->kij", keep, cb)
    exact = np.mean(np.abs(qwk_from_counts(sa) - qwk_from_counts(sb)) >= observed - 1e-12)
    german = compare_predictions(ds, noisy, bad, "all", "qwk", reps=20_000).rows[1]
    assert german.slice == "lang=de" and german.p_value == pytest.approx(exact, abs=0.01)
    from searchrel.eval.paired import markdown

    table = markdown(res, "good", "bad")
    assert "difference in kappa" in table and f"| {row.diff:+.3f} |" in table
    with pytest.raises(DatasetError, match="decoded grades"):
        compare_predictions(ds, good.drop(columns="grade"), bad, "all", "qwk")
