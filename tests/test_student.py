"""The bi-encoder student: features, towers, training on soft labels, the CLI path and the curve."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from searchrel.annotate.text import TextConfig
from searchrel.baselines.bm25 import BM25Scorer
from searchrel.baselines.embed import embed_predictions
from searchrel.cli import app
from searchrel.eval.evaluate import EvalConfig, evaluate
from searchrel.student.config import StudentConfig, StudentTrainConfig
from searchrel.student.features import TextMatch, make_feature
from searchrel.student.model import load_student, new_student
from searchrel.student.predict import predict_dataset
from searchrel.student.train import item_batches, train_student

runner = CliRunner()


def _cfg(bert, **kw) -> StudentTrainConfig:
    student = StudentConfig(backbone=str(bert), layers=1, dim=16, zero_shot_model=str(bert),
                            text=TextConfig(fields=["title", "image_caption"]), item_max_length=32)
    return StudentTrainConfig(student=student, **{"epochs": 2, "batch_items": 16, "eval_every": 1000, **kw})


def test_text_match_bm25_equals_bm25s():
    texts = ["red wooden table", "blue cotton dress", "red red dress with a red belt", "wooden chair"]
    f = TextMatch({}).fit(texts)
    queries = ["red dress", "wooden table", "nothing here"]
    qs, items = f.query_side(queries), f.item_side(texts)
    q_idx = np.repeat(np.arange(3), len(texts))
    i_idx = np.tile(np.arange(len(texts)), 3)
    out = f.pairs(qs, q_idx, items, i_idx)
    ref = BM25Scorer(texts).score_pairs([queries[q] for q in q_idx], i_idx)
    assert np.allclose(np.expm1(out[:, 0]), ref, atol=1e-4)
    assert out[1, 1] == pytest.approx(0.5) and out[2, 2] == 1 and out[2, 1] == 1  # coverage, all terms
    restored = make_feature("text_match", json.loads(json.dumps(f.state())))
    assert np.allclose(restored.pairs(restored.query_side(queries), q_idx, restored.item_side(texts), i_idx), out)
    with pytest.raises(ValueError, match="unknown student feature"):
        make_feature("nope")


def test_text_match_known_share_counts_distinct_query_terms_the_catalogue_has():
    f = TextMatch({}).fit(["red wooden table", "blue cotton dress"])
    # "mesa roja" shares no word with the catalogue: no lexical evidence, whatever the item
    share = f.known_share(["red dress", "mesa roja", "red red mesa", "", "table de bois rouge"])
    assert share.tolist() == [1.0, 0.0, 0.5, 0.0, 0.25]


def test_gated_text_match_adds_the_known_share_and_text_match_scaled_by_it():
    texts = ["red wooden table", "blue cotton dress"]
    base, gated = TextMatch({}).fit(texts), make_feature("text_match_gated").fit(texts)
    queries = ["red dress", "mesa roja", "red mesa"]
    q_idx, i_idx = np.repeat(np.arange(3), 2), np.tile(np.arange(2), 3)
    plain = base.pairs(base.query_side(queries), q_idx, base.item_side(texts), i_idx)
    out = gated.pairs(gated.query_side(queries), q_idx, gated.item_side(texts), i_idx)
    assert out.shape == (6, gated.size) == (6, 7)
    known = np.repeat([1.0, 0.0, 0.5], 2)
    assert np.allclose(out[:, :3], plain) and np.allclose(out[:, 3], known)
    assert np.allclose(out[:, 4:], plain * known[:, None])
    assert out[2:4].max() == 0  # no shared word: every column 0, and the share says why
    assert gated.needs_model is False and gated.query_cached is False  # a text feature, served like text_match


def test_item_batches_hold_every_pair_of_their_items():
    items = np.array([3, 1, 3, 2, 2, 2, 0, 1])
    batches = item_batches(items, 2, seed=0)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(items)))
    for b in batches:
        chosen = set(items[b])
        assert len(chosen) <= 2 and set(np.flatnonzero(np.isin(items, list(chosen)))) == set(b)


def test_towers_are_independent_and_save_load_round_trips(tiny_bert, tmp_path):
    # the residual off: its start weights (+-2 per standardised unit of the zero-shot cosine, unfitted std of 1 here)
    # would turn the bf16 zero-shot encoder's batch-vs-alone rounding (~1e-4) into more than this test's 1e-5
    student = new_student(_cfg(tiny_bert).student.model_copy(update={"residual": False}))
    for f in student.features:
        f.fit(["red table", "blue dress"])
    q = student.side(["red table", "blue dress"], "query", bf16=False)
    items = student.side(["red wooden table", "blue cotton dress", "mesa"], "item", bf16=False)
    assert np.allclose(np.linalg.norm(q.emb, axis=1), 1, atol=1e-5)
    full = student.predict(q, np.array([0, 0, 1]), items, np.array([0, 1, 2]))
    alone = student.side(["blue dress"], "query", bf16=False)  # a query embedded alone gives the same scores
    assert np.allclose(student.predict(alone, np.array([0]), items, np.array([2])), full[2:], atol=1e-5)
    out = student.save(tmp_path / "s")
    again = load_student(out)
    assert np.allclose(again.predict(again.side(["red table", "blue dress"], "query", bf16=False), np.array([0, 0, 1]),
                                     again.side(["red wooden table", "blue cotton dress", "mesa"], "item", bf16=False),
                                     np.array([0, 1, 2])), full, atol=1e-5)
    # the frozen word table is shared by both towers and saved once
    assert (again.query_tower.backbone.get_input_embeddings() is again.item_tower.backbone.get_input_embeddings())


def test_training_on_soft_labels_moves_the_student_towards_the_teacher(world, tiny_bert, tmp_path):
    pairs = world.pairs("train")[["query_id", "item_id"]]
    # a teacher whose judgement the student can learn: sure of grade 5 when the title has a query word, else of 1
    title = world.items.set_index("item_id")["title"].str.lower()
    query = world.queries.set_index("query_id")["text"].str.lower()
    hit = np.array([any(w in title[i] for w in query[q].split()) for q, i in zip(pairs["query_id"], pairs["item_id"])])
    p = np.where(hit[:, None], [0.02, 0.03, 0.05, 0.2, 0.7], [0.7, 0.2, 0.05, 0.03, 0.02]).astype(np.float32)
    labels = pairs.assign(**{f"p_{g}": p[:, j] for j, g in enumerate(world.info.scale.grades)})

    def kl(student_dir):
        pred = predict_dataset(load_student(student_dir), world, pairs=pairs, bf16=False)
        s = pred[[f"p_{g}" for g in world.info.scale.grades]].to_numpy()
        return float(np.mean(np.sum(p * (np.log(p + 1e-9) - np.log(s + 1e-9)), 1)))

    before = train_student(world, tmp_path / "zero", _cfg(tiny_bert, epochs=1, lr=0.0, head_lr=0.0, human_weight=0,
                                                          bf16=False), labels)
    after = train_student(world, tmp_path / "kl", _cfg(tiny_bert, epochs=25, human_weight=0, head_lr=3e-3,
                                                       patience=1000, bf16=False), labels)
    assert kl(after) < 0.5 * kl(before)
    rec = json.loads((after / "train.json").read_text())
    assert rec["distilled_pairs"] == len(labels) and rec["train_pairs"] == len(labels)
    with pytest.raises(FileExistsError):
        train_student(world, after, _cfg(tiny_bert), labels)
    with pytest.raises(ValueError, match="lack p_5"):
        train_student(world, tmp_path / "bad", _cfg(tiny_bert), labels.drop(columns="p_5"))


def test_cli_sample_label_train_eval(world, tiny_bert, tmp_path):
    from test_distill import make_teacher

    teacher = make_teacher(tiny_bert, tmp_path / "teacher")
    data = str(world.path)
    r = runner.invoke(app, ["distill", "sample", data, "--out", str(tmp_path / "pairs.parquet"), "--amplification", "2"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["distill", "label", str(teacher), str(tmp_path / "pairs.parquet"),
                            "--out", str(tmp_path / "labels"), "--shard-size", "64"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["student", "train", data, "--labels", str(tmp_path / "labels"), "--out",
                            str(tmp_path / "student"), "--backbone", str(tiny_bert), "--layers", "1", "--dim", "16",
                            "--zero-shot-model", str(tiny_bert), "--epochs", "1"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "student" / "student.json").read_text())
    assert cfg["text"]["fields"] == ["title", "image_caption"]  # the teacher's item text
    r = runner.invoke(app, ["eval", "--model", str(tmp_path / "student"), "--data", data, "--split", "all",
                            "--out", str(tmp_path / "metrics.json")])
    assert r.exit_code == 0, r.output
    # the CLI's metrics are the library's on the same predictions
    direct = evaluate(world, predict_dataset(load_student(tmp_path / "student"), world, "all"), EvalConfig(split="all"))
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["overall"]["ndcg@8"] == pytest.approx(direct.overall["ndcg@8"], abs=1e-6)
    r = runner.invoke(app, ["student", "predict", str(tmp_path / "student"), data, "--out", str(tmp_path / "p.csv")])
    assert r.exit_code == 0, r.output
    assert len(pd.read_csv(tmp_path / "p.csv")) == len(world.judgments)
    r = runner.invoke(app, ["distill", "sample", data, "--out", str(tmp_path / "x.parquet"), "--amplification", "-1"])
    assert r.exit_code == 2 and "amplification" in r.output


def test_curve_trains_one_student_per_factor(world, tiny_bert, tmp_path):
    from searchrel.distill.config import LabelConfig, SampleConfig
    from searchrel.experiments.curve import CurveConfig, curve
    from test_distill import make_teacher

    teacher = make_teacher(tiny_bert, tmp_path / "teacher")
    cfg = CurveConfig(amplifications=[1, 3], train=_cfg(tiny_bert, epochs=1, seed=3, human_weight=2.0),
                      label=LabelConfig(shard_size=128),
                      sample=SampleConfig(embed_model=str(tiny_bert)))
    results = curve(world, teacher, tmp_path / "curve", cfg)
    # the zero-shot model the students carry as a feature comes first: what distillation has to beat
    assert list(results) == [f"zero-shot {tiny_bert} (the students' feature)", "student: human labels only",
                             "student: x1", "student: x3", "teacher"]
    text = TextConfig.model_validate(json.loads((teacher / "teacher.json").read_text())["text"])  # the students'
    zero_shot = evaluate(world, embed_predictions(world, text, "test", model=str(tiny_bert)), EvalConfig(split="test"))
    assert results[f"zero-shot {tiny_bert} (the students' feature)"].overall == zero_shot.overall
    rec = {k: json.loads((tmp_path / "curve" / f"student-{k}" / "train.json").read_text()) for k in ("x1", "x3")}
    assert rec["x1"]["distilled_pairs"] < rec["x3"]["distilled_pairs"]
    assert {(r["config"]["seed"], r["config"]["human_weight"]) for r in rec.values()} == {(3, 2.0)}
    for f in ("curve.md", "curve.json", "curve.png", "curve-line.png", "curve-paired.md"):
        assert (tmp_path / "curve" / f).is_file()
    # the most distilled student against the human-only one and the zero-shot model, paired per query
    paired = json.loads((tmp_path / "curve" / "curve-paired.json").read_text())
    assert list(paired) == ["human labels only", f"zero-shot {tiny_bert}"]
    for name, system in [("human labels only", "student: human labels only"),
                         (f"zero-shot {tiny_bert}", f"zero-shot {tiny_bert} (the students' feature)")]:
        row = paired[name]["rows"][0]
        assert row["slice"] == "all" and row["a"] == pytest.approx(results["student: x3"].overall["ndcg@8"])
        assert row["b"] == pytest.approx(results[system].overall["ndcg@8"])
        assert row["lo"] <= row["diff"] <= row["hi"] and 0 < row["p_value"] <= 1


def test_a_new_student_ranks_exactly_like_its_residual_start_feature(tiny_bert):
    """Before training, the residual student's expected grade is a rising function of its zero-shot cosine alone."""
    import torch

    cfg = _cfg(tiny_bert).student.model_copy(update={"features": ["text_match", "zero_shot"]})
    student = new_student(cfg)
    student.eval()
    rng = np.random.default_rng(0)
    n = 50
    q, d = torch.randn(n, 16), torch.randn(n, 16)
    feats = torch.tensor(rng.normal(size=(n, 4)), dtype=torch.float32)
    with torch.no_grad():
        probs = torch.softmax(student.score(q, d, feats), -1).numpy()
    expected = probs @ np.arange(1, cfg.scale.n_grades + 1)
    order = np.argsort(feats[:, 3].numpy())  # text_match has 3 columns; zero_shot is the 4th
    assert (np.diff(expected[order]) > 0).all()
    plain = new_student(cfg.model_copy(update={"residual": False}))
    assert plain.skip is None


def test_training_rows_drop_distilled_pairs_of_held_out_queries_and_keep_the_train_languages(world):
    from searchrel.student.train import training_rows

    split = world.split_of()
    pairs = world.judgments[["query_id", "item_id"]].copy()
    labels = pairs.assign(**{f"p_{g}": 0.2 for g in world.info.scale.grades})
    cfg = StudentTrainConfig(student=StudentConfig(scale=world.info.scale), human_weight=8)
    rows, targets = training_rows(world, labels, cfg)
    assert not rows["query_id"].map(split).isin(["valid", "test"]).any()  # no teacher label of a held-out query
    assert len(rows) == len(targets) and np.allclose(targets.sum(1), 1)
    # what is left: the distilled pairs of train queries, then the human labels of the train split
    assert len(rows) == (labels["query_id"].map(split) == "train").sum() + len(world.pairs("train"))
    n_distilled = (labels["query_id"].map(split) == "train").sum()
    assert (rows["weight"][:n_distilled] == 1).all() and (rows["weight"][n_distilled:] == cfg.human_weight).all()
    alone, _ = training_rows(world, None, cfg)  # human labels alone: weight 1 whatever human_weight is
    assert (alone["weight"] == 1).all()
    default = StudentTrainConfig(student=StudentConfig(scale=world.info.scale))  # human_weight 0
    taught, _ = training_rows(world, labels, default)
    assert taught["source"].eq("teacher").all() and len(taught) == n_distilled  # the teacher's labels alone
    assert training_rows(world, None, default)[0]["weight"].eq(1).all()  # and without them, the human labels
    # human labels of the chosen languages only; distilled pairs of every language stay
    en = StudentTrainConfig(student=StudentConfig(scale=world.info.scale), train_languages=["en"])
    rows_en, _ = training_rows(world, None, en)
    language = world.queries.set_index("query_id")["language"]
    assert set(rows_en["query_id"].map(language)) == {"en"}
    assert rows_en["query_id"].map(split).eq("train").all()
    # each row says where its target came from; human labels of more splits when asked (bench/student_cv.py)
    assert rows["source"][:n_distilled].eq("teacher").all() and rows["source"][n_distilled:].eq("human").all()
    both, _ = training_rows(world, labels, cfg, human_splits=("train", "valid"))
    human = both[both["source"] == "human"]
    assert set(human["query_id"].map(split)) == {"train", "valid"}
    assert len(human) == len(world.pairs("train")) + len(world.pairs("valid"))
    assert not both.loc[both["source"] == "teacher", "query_id"].map(split).isin(["valid", "test"]).any()


def test_distilled_subsets_are_nested_in_larger_ones():
    from searchrel.experiments.curve import distilled_subset

    labels = pd.DataFrame({"pair_idx": np.arange(1000)})
    x1, x3, x10 = (distilled_subset(labels, f, 100, seed=7) for f in (1, 3, 10))
    assert (len(x1), len(x3), len(x10)) == (100, 300, 1000)
    assert set(x1["pair_idx"]) <= set(x3["pair_idx"]) <= set(x10["pair_idx"])
    assert x3["pair_idx"].is_monotonic_increasing  # pair order kept
    assert not set(distilled_subset(labels, 1, 100, seed=8)["pair_idx"]) == set(x1["pair_idx"])  # the seed matters


def test_head_settings_out_of_range_are_refused(world, tmp_path):
    from pydantic import ValidationError

    for bad in ({"head_epochs": -1}, {"head_batch": 0}, {"head_patience": 0}, {"human_weight": -1}):
        with pytest.raises(ValidationError):
            StudentTrainConfig(**bad)
    r = runner.invoke(app, ["student", "train", str(world.path), "--out", str(tmp_path / "s"), "--head-epochs", "-1"])
    assert r.exit_code != 0 and "head_epochs" in r.output and "Traceback" not in r.output
    # the curve's student options are validated the same way, before any pair is sampled
    curve = ["distill", "curve", str(world.path), "--teacher", str(tmp_path / "t"), "--out", str(tmp_path / "c")]
    r = runner.invoke(app, curve + ["--human-weight", "-1"])
    assert r.exit_code == 2 and "human_weight" in r.output and not (tmp_path / "c").exists()
    for bad, says in (("0,one", "comma-separated"), ("0,0", "distinct")):
        r = runner.invoke(app, curve + ["--student-seed", bad])
        assert r.exit_code == 2 and says in r.output and not (tmp_path / "c").exists()


def test_curve_over_student_seeds_reports_their_mean(world, tiny_bert, tmp_path):
    from searchrel.distill.config import LabelConfig, SampleConfig
    from searchrel.experiments.curve import CurveConfig, curve
    from test_distill import make_teacher

    teacher = make_teacher(tiny_bert, tmp_path / "teacher")
    cfg = CurveConfig(amplifications=[2], train=_cfg(tiny_bert, epochs=1), label=LabelConfig(shard_size=128),
                      sample=SampleConfig(embed_model=str(tiny_bert)), student_seeds=[0, 1])
    results = curve(world, teacher, tmp_path / "c", cfg)
    for name in ("human", "x2"):
        seeds = [json.loads((tmp_path / "c" / f"student-{name}-s{s}" / "train.json").read_text())["config"]["seed"]
                 for s in (0, 1)]
        assert seeds == [0, 1]
    table = json.loads((tmp_path / "c" / "curve-seeds.json").read_text())
    x2 = table["students"]["x2"]["all"]
    assert x2["mean"] == pytest.approx(results["student: x2"].overall["ndcg@8"])
    assert x2["mean"] == pytest.approx(np.mean(list(x2["seeds"].values())))
    assert x2["spread"] == pytest.approx(max(x2["seeds"].values()) - min(x2["seeds"].values()))
    assert set(table["students"]) == {"human labels only", "x2"} and (tmp_path / "c" / "curve-seeds.md").is_file()
    # paired through each query's mean over the seeds: its mean over queries is the seeds' mean
    paired = json.loads((tmp_path / "c" / "curve-paired.json").read_text())["human labels only"]["rows"][0]
    assert paired["a"] == pytest.approx(x2["mean"])
    assert paired["b"] == pytest.approx(results["student: human labels only"].overall["ndcg@8"])
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="distinct"):
        CurveConfig(student_seeds=[1, 1])


def test_zero_shot_product_columns_sum_to_the_zero_shot_cosine(tiny_bert):
    cos, prod = (make_feature(n, model=str(tiny_bert)) for n in ("zero_shot", "zero_shot_product"))
    qs, its = cos.query_side(["red table", "blue dress"]), cos.item_side(["red wooden table", "blue cotton dress"])
    q_idx, i_idx = np.array([0, 0, 1]), np.array([0, 1, 1])
    p = prod.pairs(qs, q_idx, its, i_idx)
    assert p.shape == (3, prod.size) and prod.size == qs.shape[1]
    assert np.allclose(p.sum(1), cos.pairs(qs, q_idx, its, i_idx)[:, 0], atol=1e-5)
    # one source: their sides are computed once and shared; another model is another source
    from searchrel.student.features import sides, sides_by_source

    tm = TextMatch({}).fit(["red wooden table", "blue cotton dress"])
    got = sides([tm, cos, prod], ["red table"], "query")
    assert got["zero_shot"] is got["zero_shot_product"] and got["text_match"] is not got["zero_shot"]
    by_source = sides_by_source([tm, cos, prod], ["red table"], "query")
    assert list(by_source) == ["text_match", cos.source] and by_source[cos.source] is not None
    assert make_feature("zero_shot", model="other").source != cos.source == prod.source


def test_without_valid_pairs_the_head_trains_every_epoch_and_keeps_the_last(world, tiny_bert, tmp_path):
    """No valid split to choose on: the head still learns (the default has no tower steps), its last epoch kept."""
    import torch

    from searchrel.data.dataset import Dataset

    splits = world.split_of().rename("split").reset_index()
    splits["split"] = splits["split"].replace("valid", "train")
    no_valid = Dataset(world.info, world.items, world.queries, world.judgments, world.search_log, splits, world.path)
    assert no_valid.pairs("valid").empty
    cfg = _cfg(tiny_bert, epochs=0, head_epochs=3, bf16=False)
    out = train_student(no_valid, tmp_path / "s", cfg)
    rec = json.loads((out / "train.json").read_text())
    assert rec["head_epochs_run"] == 3 and rec["steps"] == 0 and rec["best"]["step"] == 0
    start = new_student(cfg.student.model_copy(update={"scale": world.info.scale}))
    trained = load_student(out)
    assert not torch.allclose(trained.scorer[-1].weight, start.scorer[-1].weight)  # the head moved from its start


def test_head_epochs_train_the_head_on_frozen_backbones_and_keep_the_best_valid_epoch(world, tiny_bert, tmp_path,
                                                                                      monkeypatch):
    cfg = _cfg(tiny_bert, epochs=1, head_epochs=3, head_patience=10, bf16=False)
    cfg.student.features = ["text_match", "zero_shot", "zero_shot_product"]
    out = train_student(world, tmp_path / "s", cfg)
    rec = json.loads((out / "train.json").read_text())
    head = [h for h in rec["history"] if "head_epoch" in h]
    assert [h["head_epoch"] for h in head] == [0, 1, 2, 3]  # the start, then each epoch on valid
    towers = [h for h in rec["history"] if "step" in h]
    assert towers[0]["step"] == 0  # the towers' phase starts from the best head, validated before its first step
    assert towers[0]["ndcg@8"] == pytest.approx(max(h["ndcg@8"] for h in head), abs=1e-6)
    assert rec["best"]["ndcg@8"] >= towers[0]["ndcg@8"]
    # the student scores the judged pairs after a save and load
    pred = predict_dataset(load_student(out), world, "test")
    assert len(pred) == len(world.pairs("test"))
    # the head alone (no tower steps), its last epoch kept: the projections and the scorer move, the backbones do not
    import torch

    from searchrel.models.training import EarlyStopping

    class LastIsBest(EarlyStopping):
        def update(self, score, step):
            super().update(score, step)
            self.best, self.best_step, self.bad = score, step, 0
            return True

    monkeypatch.setattr("searchrel.student.train.EarlyStopping", LastIsBest)
    alone = load_student(train_student(world, tmp_path / "head", cfg.model_copy(update={"epochs": 0, "head_lr": 1e-2})))
    start = new_student(alone.config, seed=cfg.seed)
    for name, p in alone.state_dict().items():
        if name in ("feat_mean", "feat_std"):  # the training pairs' feature statistics, not learnt
            continue
        moved = not torch.allclose(p, start.state_dict()[name])
        assert moved == (".backbone." not in f".{name}" and name.startswith(("query_tower.proj", "item_tower.proj",
                                                                             "scorer.", "skip."))), name


def test_head_cross_validation_starts_every_student_from_the_same_folds_and_zero_shot_ranking(world, tiny_bert):
    """bench/student_cv.py: epoch 0 is the zero-shot start, the same for every factor (same folds, same ranking),
    and trained epochs move it."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from student_cv import cross_validate_head

    train_cfg = _cfg(tiny_bert, head_batch=64, seed=1, human_weight=8.0)  # human labels beside the distilled pairs
    pairs = world.judgments[["query_id", "item_id"]]
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(world.info.scale.n_grades), size=len(pairs))
    labels = pairs.assign(**{f"p_{g}": p[:, i] for i, g in enumerate(world.info.scale.grades)})
    human = cross_validate_head(world, labels, train_cfg.student, train_cfg, 0, folds=2, epochs=2, sample_seed=0)
    distilled = cross_validate_head(world, labels, train_cfg.student, train_cfg, 1, folds=2, epochs=2, sample_seed=0)
    assert len(human["mean"]) == len(distilled["mean"]) == 3 and len(human["folds"]) == 2
    assert human["mean"][0] == distilled["mean"][0]  # the start ranks by the zero-shot cosine alone
    assert distilled["training_rows"] > human["training_rows"]
    assert human["mean"][2] != human["mean"][0]
    assert {"ndcg@8", "ndcg@8 en"} <= set(human["mean"][0])
    # human_weight 0: distilled pairs alone are trained on, the held-out human labels still scored
    pure = train_cfg.model_copy(update={"human_weight": 0.0})
    taught = cross_validate_head(world, labels, pure.student, pure, 1, folds=2, epochs=1, sample_seed=0)
    assert taught["mean"][0] == human["mean"][0] and taught["mean"][1] != distilled["mean"][1]


def test_teacher_valid_holds_out_a_share_of_the_distilled_queries_and_scores_agreement_with_the_teacher():
    from searchrel.student.train import TeacherValid, teacher_valid

    rows = pd.DataFrame({"query_id": [f"q{i // 2}" for i in range(40)] + ["h0", "h1"],
                         "item_id": [f"i{i}" for i in range(42)], "source": ["teacher"] * 40 + ["human"] * 2})
    targets = np.tile(np.array([[0.0, 0.0, 1.0]], np.float32), (42, 1))
    cfg = StudentTrainConfig(student=StudentConfig(scale={"min": 1, "max": 3}), teacher_valid_share=0.25,
                             teacher_valid_min_queries=5)
    tv = teacher_valid(rows, targets, cfg)
    held = set(rows["query_id"].iloc[tv.rows])
    assert len(held) == 5 and not held & {"h0", "h1"}  # 25% of the 20 distilled queries, never a human label's
    assert set(tv.rows) == set(np.flatnonzero(rows["query_id"].isin(held)))  # every pair of a held-out query
    assert np.allclose(tv.gains, 3.0)  # the teacher's expected grade
    assert len(teacher_valid(rows, targets, cfg.model_copy(update={"teacher_valid_min_queries": 6}))) == 0
    assert len(teacher_valid(rows, targets, cfg.model_copy(update={"teacher_valid_share": 0.0}))) == 0
    # NDCG@8 against the teacher's expected grades, by hand: gains 2^(g-1) - 1 = 3, 1, 0 for grades 3, 2, 1
    one = TeacherValid(np.arange(3), np.array([3.0, 2.0, 1.0]), pd.DataFrame({"query_id": ["a"] * 3,
                                                                              "item_id": ["x", "y", "z"]}))
    assert one.ndcg(np.array([3.0, 2.0, 1.0]), 1) == pytest.approx(1.0)
    ideal = 3 + 1 / np.log2(3)
    assert one.ndcg(np.array([1.0, 2.0, 3.0]), 1) == pytest.approx((0 + 1 / np.log2(3) + 3 / 2) / ideal)


def test_with_enough_distilled_queries_the_student_chooses_on_teacher_valid(world, tiny_bert, tmp_path):
    pairs = world.pairs("train")[["query_id", "item_id"]]
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(world.info.scale.n_grades), len(pairs)).astype(np.float32)
    labels = pairs.assign(**{f"p_{g}": p[:, j] for j, g in enumerate(world.info.scale.grades)})
    cfg = _cfg(tiny_bert, epochs=1, head_epochs=3, human_weight=0, teacher_valid_share=0.3,
               teacher_valid_min_queries=2, bf16=False)
    out = train_student(world, tmp_path / "s", cfg, labels)
    rec = json.loads((out / "train.json").read_text())
    held = rec["teacher_valid"]
    assert held["queries"] == round(0.3 * pairs["query_id"].nunique()) and held["pairs"] > 0
    assert rec["train_pairs"] == len(labels) - held["pairs"] and rec["best"]["on"] == "teacher-valid"
    head = [h for h in rec["history"] if "head_epoch" in h]
    towers = [h for h in rec["history"] if "step" in h]
    assert all(0 <= h["teacher_valid_ndcg@8"] <= 1 and "ndcg@8" in h for h in head + towers)  # both recorded
    best = max(h["teacher_valid_ndcg@8"] for h in head + towers)
    assert rec["best"]["ndcg@8"] == pytest.approx(best, abs=1e-6)  # the kept weights are teacher-valid's best


def test_the_head_from_head_average_from_on_is_the_mean_of_its_epochs_weights(world, tiny_bert, tmp_path,
                                                                             monkeypatch):
    """Stochastic weight averaging of the head: with nothing to choose on, the last candidate is kept — the mean of
    the weights after epochs 2..4 (each epoch here adds 1 to every head weight)."""
    import torch

    import searchrel.student.train as st
    from searchrel.data.dataset import Dataset

    def plus_one(student, *args, **kw):
        with torch.no_grad():
            for p in st._head_parameters(student):
                p.add_(1.0)

    monkeypatch.setattr(st, "head_epoch", plus_one)
    splits = world.split_of().rename("split").reset_index()
    splits["split"] = splits["split"].replace("valid", "train")
    no_valid = Dataset(world.info, world.items, world.queries, world.judgments, world.search_log, splits, world.path)
    cfg = _cfg(tiny_bert, epochs=0, head_epochs=4, head_average_from=2, bf16=False)
    start = new_student(cfg.student.model_copy(update={"scale": world.info.scale}))
    trained = load_student(train_student(no_valid, tmp_path / "s", cfg))
    # epochs 2, 3, 4 leave start + 2, + 3, + 4: their mean is start + 3 (not the last epoch's start + 4)
    assert torch.allclose(trained.scorer[-1].weight, start.scorer[-1].weight + 3.0, atol=1e-5)
    assert torch.allclose(trained.query_tower.proj.bias, start.query_tower.proj.bias + 3.0, atol=1e-5)
