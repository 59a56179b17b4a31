"""The teacher recipe's parts on tiny data: the listwise loss, query batches, the stacker, the fine-tuned bi-encoder
member, the ensemble teacher end to end (train, load, predict, label), and reading tables by content."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from searchrel.annotate.text import TextConfig, build_item_texts
from searchrel.data.dataset import DatasetError
from searchrel.data.tables import read_table
from searchrel.distill.label import TeacherLabeler
from searchrel.distill.sample import read_pairs
from searchrel.models.pairs import query_batches
from searchrel.models.testing import make_tiny_embeddinggemma
from searchrel.teacher.config import BiEncoderConfig, TeacherConfig, TrainConfig
from searchrel.teacher.ensemble import EnsembleTeacher, Ordinal, fit_ordinal, fit_stacker, is_ensemble
from searchrel.teacher.inference import load_teacher, predict_dataset
from searchrel.teacher.losses import listnet_loss
from searchrel.teacher.recipe import train_teacher


def test_listnet_matches_a_hand_computed_value():
    scores = torch.tensor([2.0, 1.0, 0.0, 5.0, 5.0])
    labels = torch.tensor([3.0, 1.0, 1.0, 2.0, 4.0])
    groups = torch.tensor([0, 0, 0, 1, 1])
    # group 0: target softmax([3,1,1]), log softmax([2,1,0]); group 1: target softmax([2,4]), log softmax([5,5])
    t0 = np.exp([3, 1, 1]) / np.exp([3, 1, 1]).sum()
    l0 = np.array([2, 1, 0]) - math.log(np.exp([2, 1, 0]).sum())
    t1 = np.exp([2, 4]) / np.exp([2, 4]).sum()
    expected = (-(t0 * l0).sum() + -(t1 * np.log([0.5, 0.5])).sum()) / 2
    assert listnet_loss(scores, labels, groups).item() == pytest.approx(expected, rel=1e-6)
    # a group of one item has no order to learn and is left out
    assert listnet_loss(scores[:4], labels[:4], groups[:4]).item() == pytest.approx(-(t0 * l0).sum(), rel=1e-6)
    assert listnet_loss(scores[:1], labels[:1], groups[:1]).item() == 0.0


def test_query_batches_hold_one_query_each_and_cover_every_pair_once():
    codes = np.repeat(np.arange(5), [3, 40, 1, 17, 16])
    batches = query_batches(codes, batch_size=16, seed=3)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(codes)))
    assert all(len(set(codes[b])) == 1 and len(b) <= 16 for b in batches)
    assert min(len(b) for b in batches if codes[b[0]] == 1) >= 13  # 40 pairs -> 14/13/13, no 1-pair remainder
    assert [b.tolist() for b in query_batches(codes, 16, seed=3)] == [b.tolist() for b in batches]


def test_stacker_ranks_by_the_informative_feature_and_gives_monotone_distributions():
    rng = np.random.default_rng(0)
    n = 600
    y = rng.integers(1, 4, n)  # grades 1..3 of a 1..4 scale
    groups = np.arange(n) // 12
    X = np.stack([y + rng.normal(0, 0.5, n), rng.normal(0, 1, n), y + rng.normal(0, 0.3, n)], 1)
    names = ["signal", "noise", "trained"]
    held_out = groups % 3 == 0
    X[~held_out, 2] = np.nan  # a trained member is scored on the held-out rows only
    stacker = fit_stacker(X, names, y, groups, held_out, {"trained"}, [1, 2, 3, 4])
    assert stacker.level1.features == ["signal", "noise"] and stacker.level2.features == ["level1", "trained"]
    assert abs(stacker.level1.weights[0]) > 5 * abs(stacker.level1.weights[1]) and stacker.level1.weights[0] > 0
    p = stacker.predict(X[held_out], names)
    assert p.shape == (held_out.sum(), 4) and np.allclose(p.sum(1), 1, atol=1e-6) and (p >= 0).all()
    score = stacker.score(X[held_out], names)
    expected = p @ np.arange(1, 5)
    order = np.argsort(score)
    assert (np.diff(expected[order]) >= -1e-6).all()  # ranking by the expected grade = ranking by the score
    assert np.corrcoef(expected, y[held_out])[0, 1] > 0.8
    only = fit_stacker(X[:, :2], names[:2], y, groups, np.ones(n, bool), set(), [1, 2, 3, 4])
    assert only.level2 is None and np.allclose(only.predict(X[:, :2], names[:2]).sum(1), 1, atol=1e-6)
    with pytest.raises(ValueError, match="not trained on the labels"):
        fit_stacker(X[:, 2:], ["trained"], y, groups, held_out, {"trained"}, [1, 2, 3, 4])


def test_ordinal_model_recovers_its_cut_points():
    rng = np.random.default_rng(1)
    score = rng.normal(0, 2, 4000)
    true = Ordinal(slope=1.5, cuts=[-2.0, 0.0, 2.5])
    y = np.array([rng.choice([1, 2, 3, 4], p=row) for row in true(score)])
    fit = fit_ordinal(score, y, [1, 2, 3, 4])
    assert fit.slope == pytest.approx(1.5, rel=0.1)
    assert np.allclose(fit.cuts, true.cuts, atol=0.25)


def test_tables_are_recognised_by_content_and_bad_files_named(tmp_path):
    df = pd.DataFrame({"query_id": ["q1", "q2"], "item_id": ["i1", "i2"]})
    df.to_parquet(tmp_path / "pairs")  # no suffix, as `distill sample --out pairs` may write
    got, _ = read_pairs(tmp_path / "pairs")
    assert got.equals(df)
    assert read_table(tmp_path / "pairs").equals(df)
    (tmp_path / "bad.csv").write_bytes(b"\xd8\xff\x00\x01query_id\n\xd8")
    with pytest.raises(DatasetError, match=r"bad\.csv.*accepted formats: Parquet, CSV"):
        read_table(tmp_path / "bad.csv")


@pytest.fixture(scope="module")
def eg(tmp_path_factory):
    return make_tiny_embeddinggemma(tmp_path_factory.mktemp("models") / "tiny-eg")


def test_sentence_transformers_folder_is_encoded_like_sentence_transformers(eg):
    """Mean pooling over every token (prompt included), both Dense layers, L2 norm — computed here by hand."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer
    from transformers import AutoModel

    from searchrel.models.encode import Encoder
    from searchrel.models.registry import backbone_for

    enc = Encoder(eg, backbone_for(str(eg)), precision="fp32")
    assert enc.backbone.query_prefix == "task: search result | query: " and enc.dim == 32
    texts = ["red table", "blue summer dress vintage"]
    got = enc.encode(texts, kind="query")
    tok = Tokenizer.from_file(str(eg / "tokenizer.json"))
    model = AutoModel.from_pretrained(eg).eval()
    for row, text in enumerate(texts):
        ids = torch.tensor([tok.encode("task: search result | query: " + text).ids])
        with torch.no_grad():
            x = model(input_ids=ids).last_hidden_state.mean(1)
        for d in ("2_Dense", "3_Dense"):
            x = x @ load_file(str(eg / d / "model.safetensors"))["linear.weight"].T
        ref = torch.nn.functional.normalize(x, dim=-1)[0].numpy()
        assert np.allclose(got[row], ref, atol=1e-5)


def _tiny():
    from conftest import make_tiny

    ds = make_tiny()
    ds.splits["split"] = ["train", "train", "valid", "valid"]
    return ds


def test_ensemble_teacher_trains_loads_predicts_and_labels(eg, tiny_bert, tmp_path):
    ds = _tiny()
    text = TextConfig(fields=["title", "image_caption"])
    cfg = TrainConfig(recipe="ensemble", members=["biencoder", "cross_encoder", f"fields:{eg}", "text_match"],
                      biencoder=BiEncoderConfig(backbone=str(eg), train_layers=1, epochs=2),
                      teacher=TeacherConfig(backbone=str(tiny_bert), text=text, max_length=32),
                      epochs=1, batch_size=2, eval_every=2, checkpoint_every=1)
    run = train_teacher(ds, tmp_path / "t", cfg)
    assert is_ensemble(run) and (run / "biencoder" / "biencoder.json").is_file()
    assert (run / "cross-encoder" / "teacher.json").is_file()
    record = json.loads((run / "train.json").read_text())
    assert record["members"][0] == "biencoder:biencoder" and record["level2_weights"]
    model, tok = load_teacher(run)
    assert isinstance(model, EnsembleTeacher) and tok is None
    assert model.config.thresholds is not None
    # every member feeds the stacker, the text-match member with its known-word gate
    features = model.config.stacker.features
    assert {f.split(":")[0] for f in features} == {"biencoder", "cross_encoder", "fields", "text_match"}
    assert {"text_match:known", "text_match:coverage*known"} <= set(features)
    preds = predict_dataset(model, tok, ds, "all")
    probs = preds[[f"p_{g}" for g in ds.info.scale.grades]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    # a pair's grade does not depend on the other pairs scored with it
    texts = build_item_texts(ds.items, text)
    alone = model.predict_probs(["red table"], [texts.loc["i1"]])
    together = model.predict_probs(["red table", "blue dress", "red table"], [texts.loc["i1"], texts.loc["i2"],
                                                                             texts.loc["i3"]])
    assert np.allclose(alone[0], together[0], atol=1e-5)
    # the labelling path serves it
    labeler = TeacherLabeler(str(run))
    assert np.allclose(labeler.probs(["red table"], [texts.loc["i1"]]), alone, atol=1e-5)
    # a second call resumes: every member is reused, the stacker refitted the same
    again = train_teacher(ds, run, cfg, resume=True)
    assert json.loads((again / "teacher.json").read_text())["stacker"] == model.config.stacker.model_dump()


def test_biencoder_member_on_a_plain_transformers_backbone_keeps_its_registered_prompts(tiny_bert, tmp_path,
                                                                                       monkeypatch):
    """A registered backbone that is not a sentence-transformers folder (me5-small): saved without Dense layers,
    with the query/passage prefixes it was trained with written beside it (the registry does not know the copy)."""
    import dataclasses

    from searchrel.models import registry
    from searchrel.teacher import biencoder

    plain = registry.backbone_for(str(tiny_bert))
    assert not (tiny_bert / "modules.json").exists() and plain.query_prefix == ""
    monkeypatch.setattr(biencoder, "backbone_for", lambda name: dataclasses.replace(
        plain, query_prefix="query: ", passage_prefix="passage: "))
    ds = _tiny()
    texts = build_item_texts(ds.items, TextConfig(fields=["title"]))
    pairs = ds.pairs("all").merge(ds.splits, on="query_id")
    out = biencoder.train_biencoder(ds, tmp_path / "be", BiEncoderConfig(backbone=str(tiny_bert), train_layers=1,
                                                                          epochs=1), texts,
                                    pairs[pairs["split"] == "train"], pairs[pairs["split"] == "valid"])
    saved = registry.backbone_for(str(out))
    assert (saved.query_prefix, saved.passage_prefix) == ("query: ", "passage: ")
    assert (out / "biencoder.json").is_file() and not (out / "modules.json").exists()


def test_prf_member_scores_the_title_against_the_centroid_of_the_query_s_nearest_catalogue_titles(eg, tmp_path):
    from searchrel.models.encode import load_encoder
    from searchrel.teacher.ensemble import Member, prf_file

    ds = _tiny()
    text = TextConfig(fields=["title", "image_caption"])
    run = train_teacher(ds, tmp_path / "t", TrainConfig(members=[f"prf:{eg}", "text_match"], prf_k=2,
                                                       teacher=TeacherConfig(text=text)))
    model = EnsembleTeacher.load(run)
    assert model.config.prf_k == 2 and "prf:" + str(eg) + ":title" in model.config.stacker.features
    enc = load_encoder(str(eg))
    titles = ds.items["title"].tolist()  # five distinct titles: the whole catalogue, in order
    catalogue = np.load(run / prf_file(str(eg)))
    assert catalogue.dtype == np.float16 and np.allclose(catalogue, enc.encode(titles, kind="passage"), atol=2e-3)
    # by hand: the two nearest catalogue titles of "red table", averaged and normalised, against i1's title
    q = enc.encode(["red table"], kind="query")[0]
    near = np.argsort(-(catalogue.astype(np.float32) @ q))[:2]
    centroid = catalogue[near].astype(np.float32).mean(0)
    centroid /= np.linalg.norm(centroid)
    expected = centroid @ enc.encode([titles[0]], kind="passage")[0]
    texts = build_item_texts(ds.items, text)
    X, names = model.member_features(Member(kind="prf", source=str(eg)), ["red table", "red table"],
                                     [texts.loc["i1"], texts.loc["i2"]])
    assert names == [f"prf:{eg}:title"] and X[0, 0] == pytest.approx(expected, abs=1e-4)
    empty = pd.Series(["", ""], index=["i1", "i2"])
    with pytest.raises(ValueError, match="needs item titles"):
        model.write_catalogue(Member(kind="prf", source=str(eg)), empty)
    (run / prf_file(str(eg))).unlink()
    with pytest.raises(FileNotFoundError, match="catalogue vectors prf-"):  # at load, like a missing member directory
        EnsembleTeacher.load(run)


def test_fields_only_member_scores_each_field_alone_and_falls_back_to_the_first_filled_one(eg, tmp_path):
    from searchrel.models.encode import load_encoder
    from searchrel.teacher.ensemble import Member

    ds = _tiny()
    text = TextConfig(fields=["title", "image_caption"])
    run = train_teacher(ds, tmp_path / "t", TrainConfig(members=[f"fields-only:{eg}", "text_match"],
                                                       teacher=TeacherConfig(text=text)))
    model = EnsembleTeacher.load(run)
    label = f"fields-only:{eg}"
    assert model.config.members[0].label == label and not model.config.members[0].whole
    assert {f"{label}:title", f"{label}:image_caption"} <= set(model.config.stacker.features)
    assert not any(f.endswith((":cos", ":zcos")) for f in model.config.stacker.features)  # no whole-text pass
    enc = load_encoder(str(eg))
    q = enc.encode(["red table"], kind="query")[0]
    texts = build_item_texts(pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["red table", "blue dress", ""],
                                           "image_caption": ["a wooden table", "", ""]}), text).tolist()
    texts[2] = "red table, no fields"  # a text without field labels: nothing to split, the whole text is scored
    X, names = model.member_features(Member(kind="fields", source=str(eg), whole=False), ["red table"] * 3, texts)
    assert names == [f"{label}:title", f"{label}:image_caption"]
    cos = {t: float(enc.encode([t], kind="passage")[0] @ q) for t in ["red table", "a wooden table", "blue dress",
                                                                       texts[2]]}
    assert X[0] == pytest.approx([cos["red table"], cos["a wooden table"]], abs=1e-4)
    assert X[1] == pytest.approx([cos["blue dress"], cos["blue dress"]], abs=1e-4)  # no caption: the title's cosine
    assert X[2] == pytest.approx([cos[texts[2]]] * 2, abs=1e-4)  # no field at all: the whole text's
    # the whole-text variant of the same model gives the same field columns after its two whole-text ones
    Xw, nw = model.member_features(Member(kind="fields", source=str(eg)), ["red table"] * 2, texts[:2])
    assert nw[:2] == [f"fields:{eg}:cos", f"fields:{eg}:zcos"] and np.allclose(Xw[0, 2:], X[0], atol=1e-5)


def test_encodings_stop_on_the_budget_and_a_rerun_encodes_only_what_was_left(eg, tmp_path, monkeypatch):
    from searchrel.models.encode import Encoder
    from searchrel.models.registry import backbone_for
    from searchrel.models.training import Budget, BudgetSpent
    from searchrel.teacher import ensemble

    class SpentAfterOneCheck(Budget):
        checks = 0

        def spent(self) -> bool:
            self.checks += 1
            return self.checks > 1  # checked before each chunk: the first chunk runs, the second does not

    monkeypatch.setenv("SEARCHREL_HOME", str(tmp_path / "home"))  # an empty embedding cache
    monkeypatch.setattr(ensemble, "ENCODE_CHUNK", 40)
    enc = Encoder(eg, backbone_for(str(eg)), precision="fp32")
    computed: list[int] = []
    compute = enc._compute_chunk
    monkeypatch.setattr(enc, "_compute_chunk",
                        lambda texts, *a, **k: computed.append(len(texts)) or compute(texts, *a, **k))
    texts = [f"item number {i} of the catalogue" for i in range(100)]
    with pytest.raises(BudgetSpent, match=r"2 min ran out while encoding test titles \(40 of 100 done\).*--resume"):
        ensemble.encode_within(enc, texts, "passage", budget=SpentAfterOneCheck(2.0), what="test titles")
    assert computed == [40]
    got = ensemble.encode_within(enc, texts, "passage")  # the rerun: the first 40 come from the cache
    assert computed == [40, 60]
    monkeypatch.setenv("SEARCHREL_EMBED_CACHE", "0")
    assert np.allclose(got, Encoder(eg, backbone_for(str(eg)), precision="fp32").encode(texts), atol=1e-5)
    with pytest.raises(BudgetSpent, match=r"cache is off \(SEARCHREL_EMBED_CACHE=0\), so training again encodes"):
        ensemble.encode_within(enc, texts, "passage", budget=SpentAfterOneCheck(2.0))
    # no budget, or one without a limit, is the plain encode
    assert np.allclose(ensemble.encode_within(enc, texts[:3], "passage", budget=Budget(None)), got[:3], atol=1e-5)


def test_ensemble_training_stops_on_its_budget_and_resumes_to_the_same_teacher(eg, tmp_path):
    from typer.testing import CliRunner

    from searchrel.cli import app
    from searchrel.models.training import BudgetSpent

    ds = _tiny()
    cfg = TrainConfig(members=[f"fields:{eg}", "text_match"], teacher=TeacherConfig(text=TextConfig(
        fields=["title", "image_caption"])))
    with pytest.raises(BudgetSpent, match="ran out while encoding"):
        train_teacher(ds, tmp_path / "t", cfg.model_copy(update={"max_minutes": 1e-9}))
    assert not (tmp_path / "t" / "teacher.json").exists()  # no half-made teacher
    resumed = train_teacher(ds, tmp_path / "t", cfg, resume=True)
    whole = train_teacher(ds, tmp_path / "ref", cfg)
    assert (json.loads((resumed / "teacher.json").read_text())["stacker"]
            == json.loads((whole / "teacher.json").read_text())["stacker"])
    ds.save(tmp_path / "ds")
    run = CliRunner().invoke(app, ["teacher", "train", str(tmp_path / "ds"), "--out", str(tmp_path / "cli"),
                                   "--members", f"fields:{eg},text_match", "--max-minutes", "0.0000001"])
    assert run.exit_code == 2 and "ran out while encoding" in run.output and "--resume" in run.output


def test_ensemble_needs_a_valid_split_and_known_members(tiny_bert, tmp_path):
    ds = _tiny()
    ds.splits["split"] = "train"
    with pytest.raises(ValueError, match="valid split"):
        train_teacher(ds, tmp_path / "a", TrainConfig(members=["text_match"]))
    with pytest.raises(ValueError, match="unknown ensemble member 'bm99'"):
        train_teacher(_tiny(), tmp_path / "b", TrainConfig(members=["bm99"]))
    with pytest.raises(ValueError, match="'fields-only:' names no model"):
        train_teacher(_tiny(), tmp_path / "c", TrainConfig(members=["fields-only:", "text_match"]))


def test_cli_default_recipe_trains_evaluates_and_names_the_missing_model(eg, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from searchrel.cli import app

    ds = _tiny()
    ds.save(tmp_path / "ds")
    run = CliRunner().invoke(app, ["teacher", "train", str(tmp_path / "ds"), "--out", str(tmp_path / "t"),
                                   "--members", f"fields:{eg},text_match", "--fields", "title,image_caption",
                                   "--ordinal-weight", "3"])
    assert run.exit_code == 0, run.output
    stacker = json.loads((tmp_path / "t" / "teacher.json").read_text())["stacker"]
    assert stacker["level1"]["fitted_on"]["ordinal_weight"] == 3
    run = CliRunner().invoke(app, ["eval", "--data", str(tmp_path / "ds"), "--model", str(tmp_path / "t"),
                                   "--split", "all", "--out", str(tmp_path / "e.json")])
    assert run.exit_code == 0, run.output
    assert json.loads((tmp_path / "e.json").read_text())["overall"]["qwk"] is not None
    monkeypatch.setenv("SEARCHREL_HOME", str(tmp_path / "empty-home"))  # the default needs EmbeddingGemma
    run = CliRunner().invoke(app, ["teacher", "train", str(tmp_path / "ds"), "--out", str(tmp_path / "t2")])
    assert run.exit_code == 2 and "searchrel models pull embeddinggemma-300m" in run.output
    run = CliRunner().invoke(app, ["teacher", "train", str(tmp_path / "ds"), "--out", str(tmp_path / "t3"),
                                   "--recipe", "stacked"])
    assert run.exit_code == 2 and "unknown recipe 'stacked'" in run.output
