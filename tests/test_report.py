"""The run report, end to end: a run directory built from real components on a small synthetic world (real BM25,
real evaluation; teacher and student predictions from the world's true grades plus noise at two levels), turned
into HTML and Markdown, checked for content, self-containment and graceful gaps, and opened in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from searchrel.annotate.text import TextConfig
from searchrel.baselines.bm25 import bm25_predictions
from searchrel.cli import app
from searchrel.data.synth import SynthConfig, build_world
from searchrel.eval.evaluate import EvalConfig, evaluate
from searchrel.experiments.common import write_outputs
from searchrel.experiments.curve import write_paired
from searchrel.report import CHARTS, build_report
from searchrel.report.analysis import calibration, confusion
from searchrel.report.sections import N_DISAGREEMENTS

RUN_NAME = "synthetic <smoke> & co"
SECTIONS = ["What was run", "Systems compared", "Per language", "Per country", "Confusion matrices",
            "Calibration of the grade probabilities", "Feature ablation", "Amplification curve",
            "Online experiment (simulated users)", "Latency", "Where the teacher and the student disagree most"]


def graded_predictions(world, pairs: pd.DataFrame, noise: float, seed: int) -> pd.DataFrame:
    """p_<grade> from the true grade plus Gaussian noise, softened; ``grade`` the most probable one."""
    grades = np.array(world.dataset.info.scale.grades, dtype=float)
    true = world.true_grade(pairs["query_id"], pairs["item_id"]).astype(float)
    centre = true + np.random.default_rng(seed).normal(0, noise, len(true))
    logits = -((grades[None, :] - centre[:, None]) ** 2) / (1 + noise)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    out = pairs[["query_id", "item_id"]].copy()
    for j, g in enumerate(grades.astype(int)):
        out[f"p_{g}"] = p[:, j]
    out["score"] = p @ grades
    out["grade"] = grades.astype(int)[p.argmax(1)]
    return out


def write_system(run, ds, where: str, stem: str, preds: pd.DataFrame):
    d = run / where
    d.mkdir(parents=True, exist_ok=True)
    preds.to_parquet(d / f"predictions-{stem}.parquet", index=False)
    result = evaluate(ds, preds, EvalConfig(split="test"))
    result.save(d / f"metrics-{stem}.json")
    return result, {"predictions": f"../{where}/predictions-{stem}.parquet",
                    "metrics": f"../{where}/metrics-{stem}.json"}


def _interval(mean: float, half: float) -> dict:
    return {"mean": mean, "lo": round(mean - half, 5), "hi": round(mean + half, 5)}


def _arm(system: str, fulfilment: float, searches: int) -> dict:
    metrics = {"fulfilment": _interval(fulfilment, 0.011), "saves_per_search": _interval(fulfilment / 2, 0.02),
               "clicks_per_search": _interval(1.5 * fulfilment, 0.03), "ndcg": _interval(fulfilment + 0.2, 0.004)}
    return {"system": system, "kind": "student", "searches": searches, "impressions_per_search": 20.0, **metrics,
            "by_language": {lang: {"searches": searches // 2, "impressions_per_search": 20.0, **metrics}
                            for lang in ("en", "de")}}


# what searchrel simulate writes (simulate/online.json), for two arms, two languages and one compared pair
ONLINE = {
    "config": {"searches": 4000, "top_k": 20, "pool_k": 50, "bootstrap": 1000, "alpha": 0.05, "power": 0.8},
    "split": "test", "languages": ["en", "de"],
    "world": {"seed": 0, "zipf_exponent": 1.1, "queries": 12, "searches_per_language": {"en": 2000, "de": 2000}},
    "pool": {"sources": ["bm25", "index"], "per_query": 83.5, "relevant_per_query": 9.25},
    "arms": {"student": _arm("student: x3", 0.6123, 2000), "bm25": _arm("BM25", 0.4567, 2000)},
    "ab": [{"a": "student", "b": "bm25", "fulfilment": {**_interval(0.1556, 0.02), "searches_per_arm_needed": 157},
            "ndcg": {**_interval(0.1556, 0.01), "searches_per_arm_needed": 12}}],
    "interleaving": [{"a": "student", "b": "bm25", "searches": 4000, "searches_with_clicks": 3210, "wins_a": 2000,
                      "wins_b": 900, "ties": 310, "preference": _interval(0.3427, 0.031), "searches_needed": 77,
                      "by_language": {lang: {"searches": 2000, "preference": _interval(0.3311, 0.05)}
                                      for lang in ("en", "de")}}],
    "offline_vs_online": {"offline_metric": "ndcg@8", "offline": {"student": 0.81, "bm25": 0.62},
                          "tau": {"fulfilment": 1.0, "ndcg": 1.0},
                          "pairs": [{"offline_better": "student", "other": "bm25", "offline_diff": 0.19,
                                     "fulfilment": {**_interval(0.1556, 0.02), "verdict": "agree"},
                                     "ndcg": {**_interval(0.1556, 0.01), "verdict": "agree"}}],
                          "statement": "Offline ndcg@8 orders the arms student > bm25; online fulfilment agrees."},
}


def make_run(run) -> dict:
    """Write a complete run directory; return what the checks need to know about it."""
    world = build_world(SynthConfig(n_items=150, n_queries=60, n_users=40, n_judged_pairs=480, n_searches=300))
    ds = world.dataset
    ds.save(run / "dataset")
    pairs = ds.pairs("test")
    ev = EvalConfig(split="test")

    bm25, bm25_entry = write_system(run, ds, "baselines", "bm25",
                                    bm25_predictions(ds, TextConfig(fields=["title", "description"]), "test"))
    true = world.true_grade(pairs["query_id"], pairs["item_id"])
    zero = pairs[["query_id", "item_id"]].assign(score=true + np.random.default_rng(1).normal(0, 2.0, len(true)))
    zs, zs_entry = write_system(run, ds, "baselines", "zero-shot", zero)
    teacher_preds = graded_predictions(world, pairs, 0.4, seed=2)
    teacher, t_entry = write_system(run, ds, "teacher", "teacher", teacher_preds)
    student_preds = graded_predictions(world, pairs, 1.2, seed=3)
    student, s_entry = write_system(run, ds, "students/x3", "student", student_preds)
    systems = [("BM25", "bm25", bm25_entry), ("zero-shot me5-small", "zero-shot", zs_entry),
               ("teacher me5-small", "teacher", t_entry), ("student: x3", "student", s_entry)]
    (run / "eval").mkdir()
    (run / "eval" / "systems.json").write_text(json.dumps({
        "split": "test", "teacher": "teacher me5-small", "student": "student: x3",
        "systems": [{"name": n, "kind": k, **e} for n, k, e in systems]}))

    ablation = {}
    for i, (step, fields) in enumerate([("caption", ["image_caption"]),
                                        ("+ title, description", ["image_caption", "title", "description"])]):
        ablation[f"teacher: {step}"] = evaluate(ds, graded_predictions(world, pairs, 1.0 - 0.5 * i, seed=10 + i), ev)
        ablation[f"BM25: {step}"] = evaluate(ds, bm25_predictions(ds, TextConfig(fields=fields), "test"), ev)
    write_outputs(run / "ablation", "ablation", ablation, "ablation", ["teacher: caption: 3-minute budget"])
    curve_preds = {label: graded_predictions(world, pairs, noise, seed=20 + i)
                   for i, (label, noise) in enumerate([("human labels only", 2.0), ("x1", 1.5), ("x3", 1.2)])}
    curve = {f"student: {label}": evaluate(ds, p, ev) for label, p in curve_preds.items()}
    write_outputs(run / "curve", "curve", curve | {"teacher": teacher}, "curve", ["student x1: 480 distilled pairs"])
    write_paired(run / "curve", ds, curve_preds, "x3", "test", "ndcg@8")

    (run / "latency").mkdir()
    (run / "latency" / "latency.json").write_text(json.dumps({
        "machine": {"cpu": "Test CPU @ 2.0GHz", "cores": 2, "torch_threads": 2},
        "rerank": [{"candidates": n, "cache": c, "n": 50, "p50_ms": n / 40 + (3 if c == "cold" else 0.5),
                    "p95_ms": n / 30 + 4, "p99_ms": n / 25 + (7 if c == "cold" else 5)}
                   for n in (50, 200, 400) for c in ("cold", "warm")],
        "query_encode_ms": {"p50": 2.5, "p99": 4.75}, "teacher_pairs_per_s": 150.0, "student_pairs_per_s": 6000.0}))

    (run / "simulate").mkdir()
    (run / "simulate" / "online.json").write_text(json.dumps(ONLINE))

    stages = [("data", "done", 1.25), ("baselines", "skipped", 0.5), ("teacher", "done", 240.0),
              ("ablation", "done", 30.0), ("evaluate", "done", 2.0), ("latency", "done", 4.0)]
    (run / "stages").mkdir()
    for name, status, secs in stages:
        (run / "stages" / f"{name}.json").write_text(json.dumps({
            "stage": name, "key": f"{name}-key-0123456789", "params": {}, "deps": {}, "status": "done",
            "started": "2026-03-01T10:00:00", "seconds": secs,
            "metrics": {"ndcg@8": 0.8123} if name == "teacher" else {},
            "artefacts": [name]}))
    (run / "run.json").write_text(json.dumps({
        "name": RUN_NAME,
        "config": {"data": {"source": "synthetic", "n_items": 150}, "teacher": {"backbone": "me5-small"}},
        "stages": [{"name": n, "status": s, "key": f"{n}-key-0123456789", "seconds": secs} for n, s, secs in stages],
        "started": "2026-03-01T10:00:00", "finished": "2026-03-01T10:05:00"}))
    return {"bm25": bm25, "zero": zs, "teacher": teacher, "student": student, "ds": ds,
            "teacher_preds": teacher_preds, "student_preds": student_preds}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    run = tmp_path_factory.mktemp("report") / "run"
    facts = make_run(run)
    paths = build_report(run)
    return run, paths, facts


def test_report_has_every_section_with_the_runs_numbers(built):
    run, paths, facts = built
    assert paths["html"] == run / "report" / "report.html" and paths["markdown"] == run / "report" / "report.md"
    page = paths["html"].read_text()
    md = paths["markdown"].read_text()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page and f"## {title}" in md
    assert "not part of this run" not in page.lower() and "could not" not in page  # a complete run lacks nothing
    for name in ("BM25", "zero-shot me5-small", "teacher me5-small", "student: x3"):
        assert f"<td>{name}</td>" in page and f"| {name} |" in md
    # headline numbers from the metrics files, formatted as the tables show them
    for key in ("teacher", "student", "bm25"):
        ndcg = f"{facts[key].overall['ndcg@8']:.3f}"
        assert ndcg in page and ndcg in md
    assert f"{facts['student'].by_language['es']['ndcg@8']:.3f}" in page
    assert f"{facts['teacher'].by_country['GB']['qwk']:.3f}" in page
    # the pipeline table: stages ran/reused with their seconds
    assert re.search(r"<td>baselines</td><td>reused</td><td class=\"num\">0.5</td>", page)
    assert re.search(r"<td>teacher</td><td>ran</td><td class=\"num\">240.0</td>", page)
    # ablation steps, curve steps, latency rows, throughput ratio
    for text in ("teacher: + title, description", "BM25: caption", "student: human labels only", "student: x1",
                 "Test CPU @ 2.0GHz", "40.0x", "p50 2.50 ms, p99 4.75 ms", "3-minute budget"):
        assert text in page, text
    # the curve's paired comparison: the most distilled student against the human-only one, per slice
    curve_part = page[page.index('id="curve"'):page.index('id="latency"') if 'id="latency"' in page else None]
    paired = json.loads((run / "curve" / "curve-paired.json").read_text())["human labels only"]["rows"][0]
    for text in ("student: x3 against each, paired per query", "<td>human labels only</td><td>all</td>",
                 f"[{100 * paired['lo'] + 0.0:+.1f}, {100 * paired['hi'] + 0.0:+.1f}]"):
        assert text in curve_part, text
    # the online experiment: arms with intervals, the interleaving preference, power, offline against online
    online = page[page.index('id="online"'):page.index('id="latency"')]
    for text in ("0.612 [0.601, 0.623]", "0.457 [0.446, 0.468]", "+0.343 [+0.312, +0.374]", "3,210", ">77<",
                 ">157<", "+0.1556 [+0.1356, +0.1756]", "student: x3 vs BM25", "online fulfilment agrees",
                 "4,000 searches", "bm25 ∪ index top 50", ">agree<"):
        assert text in online, text
    # text from the data is escaped, never markup
    assert "synthetic &lt;smoke&gt; &amp; co" in page and "<smoke>" not in page


def test_report_is_self_contained_with_embedded_charts(built):
    run, paths, _ = built
    page = paths["html"].read_text()
    images = re.findall(r'<img src="([^"]*)"', page)
    assert len(images) == len(CHARTS) and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(src|href)="(?!data:|#)', page)  # only inline data and in-page anchors
    assert "http://" not in page and "https://" not in page and "<script" not in page and "<link" not in page
    md = paths["markdown"].read_text()
    for name in CHARTS:  # every chart is written, is a real picture, and the Markdown twin links it
        assert paths[name] == run / "report" / f"{name}.png"
        height, width = plt.imread(paths[name]).shape[:2]
        assert height >= 200 and width >= 300
        assert f"]({name}.png)" in md


def test_disagreements_are_the_largest_expected_grade_gaps(built):
    _, paths, facts = built
    t, s = facts["teacher_preds"], facts["student_preds"]
    both = t.merge(s, on=["query_id", "item_id"], suffixes=("_t", "_s"))
    grades = np.arange(1, 6)
    def expected(side: str) -> np.ndarray:
        return both[[f"p_{g}_{side}" for g in grades]].to_numpy() @ grades

    gap = expected("s") - expected("t")
    top = f"{gap[np.abs(gap).argmax()]:+.2f}"
    page = paths["html"].read_text()
    section = page[page.index('id="disagreements"'):]
    assert section.count("<tr>") == N_DISAGREEMENTS + 1  # a header and the configured number of pairs
    assert f'<td class="num">{top}</td></tr>' in section.split("</tr>", 2)[1] + "</tr>"  # the first row is the largest


def test_confusion_and_calibration_numbers():
    grades = [1, 2, 3]
    m = confusion(np.array([1, 1, 2, 3, 3]), np.array([1, 2, 2, 3, 1]), grades)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    # perfectly confident and right: no calibration error; uniform on balanced labels: none either
    labels = np.array([1, 2, 3, 1, 2, 3])
    onehot = (labels[:, None] == np.array(grades)).astype(float)
    c = calibration(onehot, labels, grades)
    assert c.classwise_ece == pytest.approx(0) and c.top_label_ece == pytest.approx(0) and c.brier == pytest.approx(0)
    c = calibration(np.full((6, 3), 1 / 3), labels, grades)
    assert c.classwise_ece == pytest.approx(0) and c.top_label_ece == pytest.approx(0) and c.n == 6
    # overconfident in grade 1, right a third of the time
    c = calibration(np.tile([0.9, 0.05, 0.05], (6, 1)), labels, grades)
    assert c.top_label_ece == pytest.approx(0.9 - 1 / 3)
    assert c.classwise_ece == pytest.approx(((0.9 - 1 / 3) + 2 * (1 / 3 - 0.05)) / 3)
    wrong = np.roll(onehot, 1, axis=1)
    assert calibration(wrong, labels, grades).top_label_ece == pytest.approx(1) and \
        calibration(wrong, labels, grades).brier == pytest.approx(2)


def test_missing_parts_become_one_line_notes(built, tmp_path):
    run, _, _ = built
    partial = tmp_path / "partial"
    shutil.copytree(run, partial, ignore=shutil.ignore_patterns("report"))
    for part in ("curve", "latency"):
        shutil.rmtree(partial / part)
    (partial / "simulate" / "online.json").write_text(json.dumps({"skipped": "its dataset is not the synthetic world"}))
    (partial / "ablation" / "ablation.json").write_text('{"teacher: caption": {"overall": 1}}')  # there, unreadable
    (partial / "report").mkdir()
    (partial / "report" / "latency.png").write_bytes(b"stale")  # an earlier report's chart does not linger
    paths = build_report(partial)
    page = paths["html"].read_text()
    for what in ("curve/curve.json", "latency/latency.json"):
        assert f'<p class="note">Not part of this run (no {what}).</p>' in page
    ablation = page[page.index('id="ablation"'):page.index('id="curve"')]
    assert ("ablation/ablation.json could not be read: &#x27;teacher: caption&#x27;: 6 validation error(s), "
            "e.g. overall: ") in ablation and "<img" not in ablation and "http" not in page
    assert all(f"<h2>{t}</h2>" in page for t in SECTIONS)
    assert "latency" not in paths and not (partial / "report" / "latency.png").exists()
    assert "Not part of this run (no latency/latency.json)." in paths["markdown"].read_text()
    assert "The simulate stage did not run an experiment: its dataset is not the synthetic world" in page

    bare = tmp_path / "bare"  # a run that stopped after its first stage: only run.json
    bare.mkdir()
    (bare / "run.json").write_text(json.dumps({"name": "bare", "config": {}, "stages": [
        {"name": "data", "status": "failed", "key": "k", "seconds": 0.1}], "started": "2026-03-01T10:00:00",
        "finished": None}))
    (bare / "stages").mkdir()
    (bare / "stages" / "data.json").write_text(json.dumps({"stage": "data", "status": "failed",
                                                           "error": "RuntimeError: boom\nmore", "traceback": "..."}))
    page = build_report(bare, tmp_path / "bare-report")["html"].read_text()
    assert '<p class="note">Stage data failed: RuntimeError: boom</p>' in page
    # every section after "What was run" says it has nothing, rather than failing
    assert page.count("Not part of this run") >= len(SECTIONS) - 2 and "could not be built" not in page
    assert "<td>data</td><td><strong>failed</strong></td>" in page
    assert "still running" in page and "<img" not in page


def test_cli_writes_the_report_and_rejects_a_non_run(built, tmp_path):
    run, _, _ = built
    res = CliRunner().invoke(app, ["report", str(run), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "report.html").exists() and "report.html" in res.output
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "no such run directory" in res.output
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(app, ["report", str(tmp_path / "empty")])
    assert res.exit_code == 2 and "not a run directory" in res.output
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{not json")
    res = CliRunner().invoke(app, ["report", str(tmp_path / "broken")])
    assert res.exit_code == 2 and "not valid JSON" in res.output


@pytest.mark.integration
def test_report_renders_in_headless_chromium(built):
    from browser import browser_page, screenshot

    _, paths, _ = built
    with browser_page() as page:
        page.goto(paths["html"].as_uri())
        assert page.locator("h1").inner_text().startswith("searchrel report: synthetic <smoke> & co")
        assert page.locator("h2").all_inner_texts() == SECTIONS
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) == len(CHARTS) and all(w > 0 for w in widths)
        assert page.locator("#comparison table").count() == 1
        shot = screenshot(page, "report.png")
    height, width = plt.imread(shot).shape[:2]
    assert width >= 800 and height >= 600
