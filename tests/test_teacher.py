"""The teacher on a tiny random backbone: training, prediction, resume after kill -9, time budget."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from searchrel.annotate.text import TextConfig
from searchrel.eval.evaluate import EvalConfig, evaluate
from searchrel.eval.grades import decode_grades, fit_thresholds
from searchrel.teacher.config import TeacherConfig, TrainConfig
from searchrel.teacher.inference import load_teacher, predict_dataset
from searchrel.teacher.train import train

HERE = Path(__file__).parent


def _dataset():
    from conftest import make_tiny

    ds = make_tiny()
    ds.splits["split"] = ["train", "train", "valid", "test"]
    return ds


def _config(backbone, **kw) -> TrainConfig:
    teacher = TeacherConfig(backbone=str(backbone), text=TextConfig(fields=["title", "image_caption"]), max_length=32)
    return TrainConfig(teacher=teacher, **{"epochs": 3, "batch_size": 2, "eval_every": 2, "checkpoint_every": 1, **kw})


def test_train_predict_and_evaluate(tiny_bert, tmp_path):
    ds = _dataset()
    out = train(ds, tmp_path / "run", _config(tiny_bert))
    record = json.loads((out / "train.json").read_text())
    assert record["steps"] == 9 and record["history"] and record["tokens_per_s"] > 0
    model, tok = load_teacher(out)
    assert model.config.thresholds is not None and len(model.config.thresholds) == 4
    preds = predict_dataset(model, tok, ds, "all")
    probs = preds[[f"p_{g}" for g in range(1, 6)]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert np.allclose(preds["score"], probs @ np.arange(1, 6), atol=1e-4)
    result = evaluate(ds, preds, EvalConfig(split="all"))
    assert result.overall["qwk"] is not None and result.n_pairs == len(ds.judgments)
    with pytest.raises(FileExistsError, match="--resume"):
        train(ds, out, _config(tiny_bert))


def test_train_languages_filter_and_empty_split(tiny_bert, tmp_path):
    ds = _dataset()
    with pytest.raises(ValueError, match="no training pairs"):
        train(ds, tmp_path / "r", _config(tiny_bert, train_languages=["fr"]))


def test_time_budget_stops_cleanly_with_best_kept(tiny_bert, tmp_path):
    out = train(_dataset(), tmp_path / "run", _config(tiny_bert, epochs=50, max_minutes=1e-6))
    record = json.loads((out / "train.json").read_text())
    assert record["steps"] == 1 and record["best"]["step"] == 1
    assert (out / "model.safetensors").exists()


_CHILD = """
import sys
sys.path.insert(0, {tests!r})
from test_teacher import _config, _dataset
from searchrel.teacher.train import train
train(_dataset(), {run!r}, _config({backbone!r}, epochs=8, patience=1000), resume=True)
"""


@pytest.mark.integration
def test_resume_after_kill_ends_where_an_uninterrupted_run_would(tiny_bert, tmp_path):
    reference = train(_dataset(), tmp_path / "ref", _config(tiny_bert, epochs=8, patience=1000))
    run = tmp_path / "killed"
    code = _CHILD.format(tests=str(HERE), run=str(run), backbone=str(tiny_bert))
    env = {**os.environ, "SEARCHREL_PROGRESS": "0"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.time() + 120
    progress = run / "checkpoint" / "progress.json"
    while time.time() < deadline:  # kill -9 mid-run, once a few checkpoints exist
        if progress.exists():
            try:
                if json.loads(progress.read_text())["global_step"] >= 8:
                    break
            except (ValueError, OSError):
                pass
        if proc.poll() is not None:
            pytest.fail("the training process ended before it could be killed")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "model.safetensors").exists()
    resumed = train(_dataset(), run, _config(tiny_bert, epochs=8, patience=1000), resume=True)
    a, b = load_file(str(reference / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert np.allclose(a[k].numpy(), b[k].numpy(), atol=1e-6), k
    ra, rb = (json.loads((p / "train.json").read_text()) for p in (reference, resumed))
    assert ra["steps"] == rb["steps"] and ra["best"] == rb["best"]


def test_resume_on_a_dataset_with_its_own_scale(tiny_bert, tmp_path):
    """The saved config carries the dataset's scale (here 1-4); resuming with the caller's config must match it."""
    from searchrel.data.dataset import Scale

    ds = _dataset()
    ds.info.scale = Scale(min=1, max=4, names=["bad", "meh", "good", "great"])
    ds.judgments["label"] = ds.judgments["label"].clip(upper=4)
    run = tmp_path / "run"
    train(ds, run, _config(tiny_bert, epochs=2, max_minutes=0.0001, fit_thresholds=False))
    (run / "teacher.json").unlink()  # as if the budget had run out before the teacher was written
    resumed = train(ds, run, _config(tiny_bert, epochs=2, max_minutes=None, fit_thresholds=False), resume=True)
    assert json.loads((resumed / "teacher.json").read_text())["scale"]["max"] == 4
    with pytest.raises(ValueError, match="another configuration"):
        train(ds, run, _config(tiny_bert, epochs=2, lr=1e-3), resume=True)


def test_thresholds_raise_qwk_on_imbalanced_probs():
    from searchrel.data.dataset import Scale
    from searchrel.eval.metrics import quadratic_weighted_kappa

    rng = np.random.default_rng(0)
    scale = Scale(min=1, max=4)
    labels = rng.choice([1, 2, 3, 4], 600, p=[0.1, 0.15, 0.15, 0.6])
    # a model that ranks well but always puts most mass on grade 4
    logits = np.stack([np.zeros(600), 0.2 * labels, 0.4 * labels, 1.0 + 0.6 * labels], 1) + rng.normal(0, .3, (600, 4))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    argmax = decode_grades(probs, scale, None)
    cuts = fit_thresholds(probs, labels, scale)
    assert cuts == sorted(cuts)
    fitted = decode_grades(probs, scale, cuts)
    assert quadratic_weighted_kappa(labels, fitted, scale.grades) > quadratic_weighted_kappa(labels, argmax, scale.grades) + 0.1


def test_decoder_backbone_pools_last_token(tmp_path):
    from conftest import make_tiny_bert

    path = make_tiny_bert(tmp_path / "tiny-llama", "red table blue dress".split(), decoder=True)
    out = train(_dataset(), tmp_path / "run", _config(path, epochs=1))
    model, tok = load_teacher(out)
    assert model.config.is_decoder and model.pooling == "last"
    preds = predict_dataset(model, tok, _dataset(), "all")
    assert len(preds) == 9


def test_cli_train_predict_eval(tiny_bert, tmp_path):
    from typer.testing import CliRunner

    from searchrel.cli import app

    ds = _dataset()
    ds.save(tmp_path / "ds")
    run = CliRunner().invoke(app, ["teacher", "train", str(tmp_path / "ds"), "--out", str(tmp_path / "t"),
                                   "--recipe", "cross_encoder", "--backbone", str(tiny_bert), "--fields", "title,image_caption", "--epochs", "1",
                                   "--batch-size", "4", "--max-length", "32"])
    assert run.exit_code == 0, run.output
    run = CliRunner().invoke(app, ["teacher", "predict", str(tmp_path / "t"), str(tmp_path / "ds"), "--out",
                                   str(tmp_path / "p.csv")])
    assert run.exit_code == 0, run.output
    run = CliRunner().invoke(app, ["eval", "--data", str(tmp_path / "ds"), "--predictions", str(tmp_path / "p.csv"),
                                   "--split", "all", "--out", str(tmp_path / "a.json")])
    assert run.exit_code == 0, run.output
    run = CliRunner().invoke(app, ["eval", "--data", str(tmp_path / "ds"), "--model", str(tmp_path / "t"),
                                   "--split", "all", "--out", str(tmp_path / "b.json")])
    assert run.exit_code == 0, run.output
    a, b = (json.loads((tmp_path / f).read_text())["overall"] for f in ("a.json", "b.json"))
    assert a == pytest.approx(b)
    run = CliRunner().invoke(app, ["eval", "--data", str(tmp_path / "ds"), "--model", str(tmp_path / "ds")])
    assert run.exit_code == 2 and "not a trained model directory" in run.output
    run = CliRunner().invoke(app, ["teacher", "train", str(tmp_path / "ds"), "--out", str(tmp_path / "t2"),
                                   "--recipe", "cross_encoder", "--backbone", "no-such-model"])
    assert run.exit_code == 2 and "unknown model 'no-such-model'" in run.output


def test_lora_adapters_train_and_merge(tiny_bert, tmp_path):
    pytest.importorskip("peft")
    from searchrel.teacher.config import LoraOptions

    cfg = _config(tiny_bert, epochs=1)
    cfg = cfg.model_copy(update={"teacher": cfg.teacher.model_copy(update={"lora": LoraOptions(r=4, alpha=8)})})
    out = train(_dataset(), tmp_path / "run", cfg)
    record = json.loads((out / "train.json").read_text())
    full = sum(p.numel() for p in load_teacher(out)[0].backbone.parameters())
    assert 0 < record["trainable_non_embedding_params"] < full / 2  # adapters (+ head), not the backbone
    model, tok = load_teacher(out)  # merged back into a plain backbone: loads without peft
    assert model.config.lora is None and not any("lora" in k for k in model.state_dict())
    assert len(predict_dataset(model, tok, _dataset(), "all")) == 9


def test_frozen_layers_and_zero_shot_feature(tiny_bert, tmp_path):
    cfg = _config(tiny_bert, epochs=1)
    cfg = cfg.model_copy(update={"teacher": cfg.teacher.model_copy(update={"freeze_layers": 1, "zero_shot_feature": True})})
    out = train(_dataset(), tmp_path / "run", cfg)
    model, tok = load_teacher(out)
    assert model.n_features == 1 and model.head[1].in_features == 32 + 1
    preds = predict_dataset(model, tok, _dataset(), "all")
    assert np.allclose(preds[[f"p_{g}" for g in range(1, 6)]].sum(1), 1, atol=1e-5)
    from transformers import AutoModel

    pretrained = AutoModel.from_pretrained(tiny_bert).state_dict()
    state = load_file(str(out / "model.safetensors"))
    for name in ("attention.self.query.weight", "output.dense.weight"):
        assert np.array_equal(state[f"backbone.encoder.layer.0.{name}"].numpy(), pretrained[f"encoder.layer.0.{name}"].numpy())
        assert not np.array_equal(state[f"backbone.encoder.layer.1.{name}"].numpy(), pretrained[f"encoder.layer.1.{name}"].numpy())


def test_targets_one_hot_smoothed_and_spread_by_rater_variance():
    from searchrel.teacher.train import _targets

    labels = np.array([1.0, 3.0, 5.0])
    one_hot = _targets(labels, None, TrainConfig()).numpy()
    assert one_hot.argmax(1).tolist() == [0, 2, 4] and np.allclose(one_hot.sum(1), 1) and one_hot.max() == 1
    smooth = _targets(labels, None, TrainConfig(label_smoothing=0.1)).numpy()
    assert np.allclose(smooth.sum(1), 1) and np.allclose(smooth.min(), 0.1 / 5) and smooth.argmax(1).tolist() == [0, 2, 4]
    # soft targets: a discretised normal around the label, wider where the raters disagreed more
    soft = _targets(labels, np.array([0.0, 0.5, 2.0]), TrainConfig(soft_targets=True)).numpy()
    assert np.allclose(soft.sum(1), 1) and soft.argmax(1).tolist() == [0, 2, 4]
    assert soft[1, 1] == pytest.approx(soft[1, 3]) and soft[1, 2] > soft[1, 1] > soft[1, 0]  # symmetric, peaked
    assert soft[0, 0] > soft[1, 2] > soft[2, 4]  # more variance, less mass on the label
    assert np.allclose(_targets(labels, None, TrainConfig(soft_targets=True)).numpy(), one_hot)  # no variance given
