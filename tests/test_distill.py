"""Distillation data: candidate sampling (log and retrieval) and crash-safe teacher labelling."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from searchrel.annotate.text import TextConfig, build_item_texts
from searchrel.distill.config import LabelConfig, SampleConfig
from searchrel.distill.label import label_pairs, read_labels
from searchrel.distill.sample import read_pairs, sample_pairs, save_pairs

HERE = Path(__file__).parent


def make_teacher(backbone, out: Path) -> Path:
    """An untrained teacher (random head) on a tiny backbone: enough to test labelling plumbing."""
    from searchrel.teacher.config import TeacherConfig
    from searchrel.teacher.model import new_teacher

    model, tok = new_teacher(TeacherConfig(backbone=str(backbone), text=TextConfig(fields=["title", "image_caption"]),
                                           max_length=32))
    return model.save(out, tok)


@pytest.fixture(scope="module")
def teacher(tiny_bert, tmp_path_factory):
    return make_teacher(tiny_bert, tmp_path_factory.mktemp("teacher") / "t")


def test_log_sampling_excludes_held_out_queries_and_follows_traffic(world):
    pairs = sample_pairs(world, SampleConfig(amplification=2, source="log"))
    split = world.split_of()
    assert not pairs["query_id"].map(split).isin(["valid", "test"]).any()
    assert not pairs.duplicated(["query_id", "item_id"]).any()
    assert len(pairs) <= 2 * len(world.judgments) and set(pairs["source"]) == {"log"}
    # frequent queries are sampled more: pair counts follow impression counts
    shown = world.search_log[world.search_log["event"] == "impression"]["query_id"].value_counts()
    sampled = pairs["query_id"].value_counts()
    common = sampled.index.intersection(shown.index)
    assert np.corrcoef(shown[common], sampled[common])[0, 1] > 0.5


def test_retrieval_sampling_without_a_log(world, tiny_bert):
    ds = world.with_judgments(world.judgments)
    ds.search_log = None
    with pytest.raises(ValueError, match="no search_log"):
        sample_pairs(ds, SampleConfig(source="log"))
    cfg = SampleConfig(amplification=3, embed_model=str(tiny_bert), exclude_splits=["test"], pseudo_queries=0)
    pairs = sample_pairs(ds, cfg)
    assert len(pairs) == 3 * len(ds.judgments)
    assert set(pairs["source"]) == {"bm25", "embed", "random"}
    assert not pairs.duplicated(["query_id", "item_id"]).any()
    assert not pairs["query_id"].map(ds.split_of()).eq("test").any()
    # BM25 candidates share words with their query far more often than random ones
    text = build_item_texts(ds.items, TextConfig.default_for(ds.items)).str.lower()
    q = ds.queries.set_index("query_id")["text"].str.lower()
    share = pairs.assign(hit=[any(w in text[i] for w in q[qid].split()) for qid, i in zip(pairs["query_id"], pairs["item_id"])])
    by = share.groupby("source")["hit"].mean()
    assert by["bm25"] > 0.9 and by["bm25"] > by["random"] + 0.3


def test_pairs_file_round_trip_and_bad_input(world, tmp_path):
    cfg = SampleConfig(amplification=1)
    pairs = sample_pairs(world, cfg)
    path = save_pairs(pairs, tmp_path / "pairs.parquet", world, cfg)
    back, meta = read_pairs(path)
    pd.testing.assert_frame_equal(back, pairs)
    assert meta["dataset"] == str(world.path.resolve()) and meta["amplification"] == 1
    with pytest.raises(ValueError, match="amplification"):
        SampleConfig(amplification=0)
    (tmp_path / "bad.csv").write_text("query,item\na,b\n")
    with pytest.raises(ValueError, match="query_id, item_id"):
        read_pairs(tmp_path / "bad.csv")


def test_the_fast_teacher_path_matches_eager_fp32(world, teacher):
    """Evaluation, labelling and the workbench share ``load_teacher``: on the fast path (bf16 TorchScript) the
    probabilities stay within 0.01 of the eager fp32 model's (bf16 keeps 8 bits of mantissa; measured ~3e-4)."""
    from searchrel.teacher.inference import load_teacher, predict_dataset

    pairs = world.judgments[["query_id", "item_id"]].head(64)
    fast, tok = load_teacher(teacher, fast=True)
    eager, _ = load_teacher(teacher, fast=False)
    assert fast.fast is not None and eager.fast is None
    cols = [f"p_{g}" for g in world.info.scale.grades]
    a = predict_dataset(fast, tok, world, pairs=pairs)[cols].to_numpy()
    b = predict_dataset(eager, tok, world, pairs=pairs, bf16=False)[cols].to_numpy()
    assert np.abs(a - b).max() <= 0.01 and np.allclose(a.sum(1), 1, atol=1e-5)


def test_labels_are_the_teachers_probabilities(world, teacher, tmp_path):
    from searchrel.teacher.inference import load_teacher, predict_dataset

    pairs = world.judgments[["query_id", "item_id"]].head(40)
    path = tmp_path / "pairs.csv"
    pairs.to_csv(path, index=False)
    out = label_pairs(teacher, path, tmp_path / "labels", LabelConfig(shard_size=16, bf16=False), dataset=world)
    labels = read_labels(out)
    assert len(list(out.glob("part-*.parquet"))) == 3 and list(labels["pair_idx"]) == list(range(40))
    model, tok = load_teacher(teacher, fast=False)  # bf16=False: labelled in fp32, off the bf16 fast path
    direct = predict_dataset(model, tok, world, pairs=pairs, bf16=False)
    cols = [f"p_{g}" for g in world.info.scale.grades]
    assert np.allclose(labels[cols].to_numpy(), direct[cols].to_numpy(), atol=1e-5)
    assert np.allclose(labels[cols].sum(axis=1), 1, atol=1e-5)
    # a finished run is a no-op; another pairs file into the same directory is refused
    assert label_pairs(teacher, path, out, LabelConfig(shard_size=16, bf16=False), dataset=world) == out
    pairs.head(5).to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(FileExistsError, match="another teacher or pairs"):
        label_pairs(teacher, tmp_path / "other.csv", out, dataset=world)
    pd.DataFrame({"query_id": ["nope"], "item_id": ["x"]}).to_csv(tmp_path / "unknown.csv", index=False)
    with pytest.raises(ValueError, match="does not have"):
        label_pairs(teacher, tmp_path / "unknown.csv", tmp_path / "l2", dataset=world)


_CHILD = """
import sys; sys.path.insert(0, {tests!r})
from searchrel.distill.config import LabelConfig
from searchrel.distill.label import label_pairs
label_pairs({teacher!r}, {pairs!r}, {out!r}, LabelConfig(shard_size=8, bf16=False))
"""


@pytest.mark.integration
def test_labelling_killed_midway_resumes_with_every_pair_exactly_once(world, teacher, tmp_path):
    cfg = SampleConfig(amplification=6)
    pairs_path = save_pairs(sample_pairs(world, cfg), tmp_path / "pairs.parquet", world, cfg)
    n = len(read_pairs(pairs_path)[0])
    out = tmp_path / "labels"
    code = _CHILD.format(tests=str(HERE), teacher=str(teacher), pairs=str(pairs_path), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "SEARCHREL_PROGRESS": "0"})
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("part-*.parquet"))) < 5:
        if proc.poll() is not None:
            pytest.fail("labelling ended before it could be killed")
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    shards = len(list(out.glob("part-*.parquet")))
    assert 5 <= shards < -(-n // 8), "killed before the end"
    with pytest.raises(ValueError, match="not finished"):
        read_labels(out)
    label_pairs(teacher, pairs_path, out, LabelConfig(shard_size=8, bf16=False))
    labels = read_labels(out)
    assert list(labels["pair_idx"]) == list(range(n))  # every pair exactly once
    reference = read_labels(label_pairs(teacher, pairs_path, tmp_path / "ref", LabelConfig(shard_size=8, bf16=False)))
    cols = [c for c in labels if c.startswith("p_")]
    assert np.allclose(labels[cols].to_numpy(), reference[cols].to_numpy(), atol=1e-5)
    assert (labels[["query_id", "item_id"]] == reference[["query_id", "item_id"]]).all().all()
