"""`searchrel run`: a whole experiment from one TOML config on a small world with tiny models; a rerun reuses every
stage, a change redoes exactly the stages downstream of it, a failure is recorded and resumed, bad configs fail
with one clear line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from searchrel.cli import app
from searchrel.layout import RunLayout
from searchrel.pipeline import load_config
from searchrel.pipeline.config import config_path

pytestmark = pytest.mark.integration  # whole pipeline runs: make test, not the quick make check

TOML = """
name = "tiny"
[data.synth]
n_items = 120
n_queries = 30
n_users = 40
n_judged_pairs = 150
n_searches = 300
[data.splits]
fractions = [0.6, 0.2, 0.2]
seed = 3
[text]
fields = ["title", "image_caption", "board_titles"]
[baselines]
zero_shot = "{m}"
[teacher.model]
backbone = "{m}"
max_length = 48
[teacher.train]
recipe = "cross_encoder"
epochs = 1
batch_size = 16
eval_every = 5
train_languages = ["en"]
[ablation]
enabled = true
[distill]
amplifications = [1, 2]
[distill.sample]
embed_model = "{m}"
[student.model]
backbone = "{m}"
zero_shot_model = "{m}"
layers = 1
dim = 16
[student.train]
epochs = 1
[index]
faiss = "flat"
[latency]
candidates = [20]
queries = 4
onnx = false
[simulate]
searches = 2000
bootstrap = 200
"""


def stages(out: Path) -> dict[str, str]:
    return {s["name"]: s["status"] for s in json.loads(RunLayout(out).summary.read_text())["stages"]}


@pytest.fixture(scope="module")
def config(tiny_bert, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    path.write_text(TOML.replace("{m}", str(tiny_bert)))
    return path


@pytest.fixture(scope="module")
def first_run(config, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    res = CliRunner().invoke(app, ["run", str(config), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_a_run_writes_every_stage_and_its_record(first_run):
    out, output = first_run
    assert set(stages(out).values()) == {"done"}
    assert list(stages(out)) == ["data", "baselines", "ratings", "teacher", "ablation", "sample", "label",
                                 "student-human", "student-x1", "student-x2", "index", "evaluate", "rate", "simulate",
                                 "latency", "report"]
    for name in stages(out):
        rec = json.loads(RunLayout(out).record(name).read_text())
        assert rec["status"] == "done" and rec["seconds"] >= 0 and len(rec["key"]) == 64
        assert all((out / p).exists() for p in rec["artefacts"])
    from searchrel.data.dataset import load_dataset
    from searchrel.data.splits import make_splits

    data = json.loads(RunLayout(out).record("data").read_text())["metrics"]
    ds = load_dataset(RunLayout(out).dataset)
    assert data["queries_per_split"] == make_splits(ds.queries, (0.6, 0.2, 0.2), 3)["split"].value_counts().to_dict()
    teacher = json.loads(RunLayout(out).record("teacher").read_text())
    assert teacher["params"]["train"]["teacher"]["text"]["fields"] == ["title", "image_caption", "board_titles"]
    assert teacher["metrics"]["steps"] > 0
    evaluated = json.loads(RunLayout(out).record("evaluate").read_text())["metrics"]
    assert all(0 <= v <= 1 for v in evaluated.values()) and len(evaluated) == 6
    systems = json.loads(RunLayout(out).systems.read_text())
    assert [s["name"] for s in systems["systems"]][:2] == ["BM25", f"zero-shot {systems['systems'][1]['name'][10:]}"]
    assert systems["student"] == "student: x2" and systems["teacher"].startswith("teacher ")
    for s in systems["systems"]:
        assert (RunLayout(out).eval / s["predictions"]).is_file() and (RunLayout(out).eval / s["metrics"]).is_file()
    curve = json.loads((RunLayout(out).curve / "curve.json").read_text())
    # the zero-shot baseline first (what the students must beat), then the students in step order
    assert list(curve)[:4] == [systems["systems"][1]["name"], "student: human labels only", "student: x1",
                               "student: x2"]
    paired = json.loads((RunLayout(out).curve / "curve-paired.json").read_text())
    assert list(paired) == ["human labels only", systems["systems"][1]["name"]]  # x2 against each, paired
    assert paired["human labels only"]["rows"][0]["a"] == pytest.approx(curve["student: x2"]["overall"]["ndcg@8"])
    latency = json.loads(RunLayout(out).latency.read_text())
    assert {r["cache"] for r in latency["rerank"]} == {"cold", "warm"} and latency["teacher_pairs_per_s"] > 0
    labels = json.loads(RunLayout(out).record("label").read_text())["metrics"]
    x2 = json.loads(RunLayout(out).record("student-x2").read_text())["metrics"]
    x1 = json.loads(RunLayout(out).record("student-x1").read_text())["metrics"]
    assert x2["distilled_pairs"] == labels["pairs"] and 0 < x1["distilled_pairs"] < x2["distilled_pairs"]
    report = RunLayout(out).report
    assert (report / "report.html").is_file()
    # every section of the report was built from what the stages wrote
    markdown = (report / "report.md").read_text()
    assert "could not be built" not in markdown and "could not be read" not in markdown
    assert "searchrel serve --index" in output and "students/x2" in output
    # the online experiment: BM25, zero-shot, the human-only and the served student as A/B arms, the served one
    # interleaved with BM25 and with the human-only one, and its section in the report
    online = json.loads((RunLayout(out).simulate / "online.json").read_text())
    assert list(online["arms"]) == ["bm25", "zero-shot", "student-human", "student-x2"]
    assert [(i["a"], i["b"]) for i in online["interleaving"]] == [("student-x2", "bm25"),
                                                                  ("student-x2", "student-human")]
    assert sum(a["searches"] for a in online["arms"].values()) == 2000
    simulated = json.loads(RunLayout(out).record("simulate").read_text())["metrics"]
    assert simulated["searches"] == 2000 and "preference student-x2 vs bm25" in simulated
    assert "## Online experiment (simulated users)" in markdown and "interleaving preference" in markdown


def _copy_of(first_run, tmp_path) -> Path:
    """The finished first run, copied: each test changes its own run directory."""
    copy = tmp_path / "run"
    shutil.copytree(first_run[0], copy)
    return copy


def _redone(out: Path) -> list[str]:
    return [n for n, s in stages(out).items() if s == "done"]


def test_a_rerun_without_changes_reuses_every_stage(first_run, config, tmp_path):
    out = _copy_of(first_run, tmp_path)
    res = CliRunner().invoke(app, ["run", str(config), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert set(stages(out).values()) == {"skipped"}


@pytest.mark.parametrize("change, redone", [
    # the student's settings reach the students and what reads them, not the data, teacher or labels
    (["--set", "student.train.lr=1e-4"], ["student-human", "student-x1", "student-x2", "index", "evaluate",
                                          "rate", "simulate", "latency", "report"]),
    # the latency settings reach the latency check and the report only
    (["--set", "latency.queries=3"], ["latency", "report"]),
    # evaluation settings retrain no model (the ablation, an evaluation of BM25 per field set, is redone)
    (["--set", "evaluate.ks=[8,10]"], ["baselines", "ablation", "evaluate", "simulate", "report"]),
    # the simulation's settings reach the simulation and the report only
    (["--set", "simulate.seed=1"], ["simulate", "report"]),
    # a forced stage makes what reads it run again, though their keys are unchanged
    (["--force", "index"], ["index", "simulate", "latency", "report"]),
])
def test_a_change_redoes_only_what_it_reaches(first_run, config, tmp_path, change, redone):
    out = _copy_of(first_run, tmp_path)
    before = {n: json.loads(RunLayout(out).record(n).read_text())["key"] for n in stages(out)}
    res = CliRunner().invoke(app, ["run", str(config), "--out", str(out), *change])
    assert res.exit_code == 0, res.output
    assert _redone(out) == redone
    after = {n: json.loads(RunLayout(out).record(n).read_text())["key"] for n in stages(out)}
    changed_keys = {n for n in after if after[n] != before[n]}
    assert changed_keys <= set(redone) and "teacher" not in changed_keys
    if "evaluate.ks=[8,10]" in change:
        assert "ndcg@10" in json.loads((RunLayout(out).eval / "metrics-teacher.json").read_text())["overall"]


def test_the_rating_round_writes_a_sheet_and_new_ratings_retrain_only_what_reads_them(first_run, config, tmp_path):
    from searchrel.data.dataset import load_dataset
    from searchrel.data.ratings import read_sheet, read_store
    from searchrel.data.synth import SynthConfig, build_world

    out = _copy_of(first_run, tmp_path)
    at = RunLayout(out)
    sheet, simulated = read_sheet(at.rate / "suggestions.csv"), read_sheet(at.rate / "simulated.csv")
    rate = json.loads(at.record("rate").read_text())["metrics"]
    assert len(sheet) == rate["rows"] > 0 and (sheet["grade"] == "").all() and sheet["reason"].str.len().min() > 10
    ds = load_dataset(at.dataset)
    assert set(sheet["query_id"].map(ds.split_of())) == {"train"}  # never a valid or test query
    world = build_world(SynthConfig(n_items=120, n_queries=30, n_users=40, n_judged_pairs=150, n_searches=300))
    assert simulated["grade"].astype(int).tolist() == world.true_grade(sheet["query_id"], sheet["item_id"]).tolist()
    before = {n: json.loads(at.record(n).read_text())["key"] for n in stages(out)}
    res = CliRunner().invoke(app, ["import", "ratings", str(at.rate / "simulated.csv"), str(out)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["run", str(config), "--out", str(out)])
    assert res.exit_code == 0, res.output
    # the new labels reach the teacher and the students (and what reads them); data, baselines, the BM25 ablation
    # and the sample are reused
    assert {n for n, s in stages(out).items() if s == "skipped"} == {"data", "baselines", "ablation", "sample"}
    assert {"ratings", "teacher", "label", "student-human", "student-x1", "student-x2", "index", "evaluate", "rate",
            "report"} <= set(_redone(out))
    after = {n: json.loads(at.record(n).read_text())["key"] for n in stages(out)}
    assert {n for n in after if after[n] != before[n]} == set(_redone(out))  # keys chain from the ratings' content
    merged = json.loads(at.record("ratings").read_text())["metrics"]
    assert merged["ratings"] == len(read_store(at.ratings)) == len(sheet) and merged["new_pairs"] == len(sheet)
    again = read_sheet(at.rate / "suggestions.csv")  # the rated pairs are not suggested again
    assert not set(zip(again["query_id"], again["item_id"])) & set(zip(sheet["query_id"], sheet["item_id"]))


def test_the_simulate_stage_on_data_without_a_world_records_why_it_did_not_run(first_run, config, tmp_path):
    from searchrel.pipeline.stages import Run

    out = _copy_of(first_run, tmp_path)
    cfg = load_config(config, ["data.source=dataset", f"data.path={RunLayout(out).dataset}"])
    (RunLayout(out).config).write_text(cfg.model_dump_json())
    metrics = Run(cfg, out).simulate()
    assert "not the synthetic world" in metrics["skipped"]
    assert json.loads((RunLayout(out).simulate / "online.json").read_text()) == {"skipped": metrics["skipped"]}


def test_suggested_vs_random_ratings_runs_on_a_synthetic_run(first_run, tmp_path):
    out = tmp_path / "exp"
    res = CliRunner().invoke(app, ["rate", "experiment", str(first_run[0]), "--out", str(out), "--budget", "5",
                                   "--seeds", "2"])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "rating-value.json").read_text())
    assert list(data["arms"]) == ["judgments only", "+ suggested", "+ random"] and data["languages"] == ["en"]
    for arm in data["arms"].values():
        runs = arm["ndcg@8"]["runs"]
        assert len(runs) == 2 and all(0 <= v <= 1 for v in runs)
        assert arm["ndcg@8"]["mean"] == pytest.approx(sum(runs) / 2, abs=1e-4)
    assert {n: s["rows"] for n, s in data["sheets"].items()} == {"suggested": 5, "random-0": 5, "random-1": 5}
    assert "| + suggested |" in (out / "rating-value.md").read_text()


def test_a_stage_no_longer_planned_loses_its_artefacts(first_run, config, tmp_path):
    out = _copy_of(first_run, tmp_path)
    res = CliRunner().invoke(app, ["run", str(config), "--out", str(out), "--set", "latency.enabled=false"])
    assert res.exit_code == 0, res.output
    assert "latency" not in stages(out) and not RunLayout(out).latency.exists()  # the report cannot show them
    assert not RunLayout(out).record("latency").exists()
    assert _redone(out) == ["report"]


def test_a_failed_stage_is_recorded_and_the_next_run_starts_there(first_run, config, monkeypatch, tmp_path):
    from searchrel.pipeline.stages import Run

    copy = _copy_of(first_run, tmp_path)

    def boom(self):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Run, "latency", boom)
    res = CliRunner().invoke(app, ["run", str(config), "--out", str(copy), "--set", "latency.queries=2"])
    assert res.exit_code != 0
    rec = json.loads(RunLayout(copy).record("latency").read_text())
    assert rec["status"] == "failed" and "disk full" in rec["error"]
    assert not RunLayout(copy).latency.exists()  # its old artefacts are gone with the old key
    monkeypatch.undo()
    res = CliRunner().invoke(app, ["run", str(config), "--out", str(copy), "--set", "latency.queries=2"])
    assert res.exit_code == 0, res.output
    assert [n for n, s in stages(copy).items() if s == "done"] == ["latency", "report"]


def test_a_second_run_into_the_same_directory_is_refused(config, tmp_path):
    from searchrel.locks import exclusive

    out = tmp_path / "r"
    out.mkdir()
    with exclusive(out / ".lock", "held"):  # as a first run would hold it
        res = CliRunner().invoke(app, ["run", str(config), "--out", str(out)])
    assert res.exit_code == 2 and "another `searchrel run`" in " ".join(res.output.split())


@pytest.mark.parametrize("override, says", [
    (["--set", "teacher.train.max_minuts=3"], "unknown config key teacher.train.'max_minuts'"),
    (["--set", "data.source=crowdflower"], "needs data.path"),
    (["--set", "distill.amplifications=[0]"], "positive factors"),
    (["--set", "data.splits.fractions=[0.5,0.1,0.1]"], "summing to 1"),
    (["--set", "teacher.model.text.fields=[\"title\"]"], "the item text of every model is [text]"),
    (["--set", "latency.candidates=[]"], "one or more positive counts"),
    (["--set", "text.fields=[\"colour\"]"], "unknown item field"),
    (["--force", "nosuchstage"], "no such stage"),
])
def test_bad_configs_fail_with_one_clear_line(config, tmp_path, override, says):
    res = CliRunner().invoke(app, ["run", str(config), "--out", str(tmp_path / "r"), *override])
    assert res.exit_code == 2, res.output
    assert says in " ".join(res.output.split())


def test_shipped_configs_are_valid(tmp_path):
    demo = load_config("demo")
    assert demo.data.source == "synthetic" and demo.distill.amplifications == [1.0, 3.0]
    assert load_config("demo", ["baselines.zero_shot=none", "teacher.train.train_languages=none"]).baselines.zero_shot is None
    cf = load_config("crowdflower", ["data.path=x.csv"])
    assert cf.data.source == "crowdflower" and cf.text.fields == ["title", "description"]
    assert config_path("demo").name == "demo.toml"
    res = CliRunner().invoke(app, ["run", "nosuch", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "built-in configs" in res.output
