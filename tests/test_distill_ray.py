"""The Ray backend of teacher labelling: the same labels as the local backend, and it resumes a partial run.
One small local Ray (2 CPUs, no dashboard) serves the whole module."""

import json

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")  # raised inside Ray Data

from searchrel.distill.config import LabelConfig  # noqa: E402
from searchrel.distill.label import label_pairs, read_labels  # noqa: E402
from test_distill import make_teacher  # noqa: E402

LOCAL = LabelConfig(backend="local", shard_size=16, bf16=False)
RAY = LabelConfig(backend="ray", shard_size=16, bf16=False, ray_actors=1)


@pytest.fixture(scope="module")
def teacher(tiny_bert, tmp_path_factory):
    return make_teacher(tiny_bert, tmp_path_factory.mktemp("teacher") / "t")


@pytest.fixture(scope="module")
def pairs_path(world, tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "pairs.csv"
    world.judgments[["query_id", "item_id"]].head(72).to_csv(path, index=False)  # 5 shards, the last one short
    return path



@pytest.fixture(scope="module")
def reference(world, teacher, pairs_path, tmp_path_factory):
    """The local backend's labels of the pairs."""
    return read_labels(label_pairs(teacher, pairs_path, tmp_path_factory.mktemp("local") / "labels", LOCAL,
                                   dataset=world))


def assert_same_labels(labels, reference):
    cols = [c for c in reference if c.startswith("p_")]
    assert list(labels.columns) == list(reference.columns)
    assert list(labels["pair_idx"]) == list(range(len(reference)))  # every pair exactly once
    assert (labels[["pair_idx", "query_id", "item_id"]] == reference[["pair_idx", "query_id", "item_id"]]).all().all()
    assert np.allclose(labels[cols].to_numpy(), reference[cols].to_numpy(), atol=1e-5)


@pytest.mark.integration
def test_ray_backend_gives_the_local_backends_labels(world, teacher, pairs_path, reference, local_ray, tmp_path):
    out = label_pairs(teacher, pairs_path, tmp_path / "labels", RAY, dataset=world)
    assert_same_labels(read_labels(out), reference)
    assert len(list(out.glob("part-*.parquet"))) == 5  # one shard per batch of shard_size pairs
    assert ray.is_initialized()  # a Ray the caller started is left running


@pytest.mark.integration
def test_ray_backend_resumes_a_partial_run(world, teacher, pairs_path, reference, local_ray, tmp_path):
    out = label_pairs(teacher, pairs_path, tmp_path / "labels", LOCAL, dataset=world)
    shards = sorted(out.glob("part-*.parquet"))
    for shard in shards[1::2]:  # drop shards 1 and 3: holes in the middle of the pairs
        shard.unlink()
    manifest = json.loads((out / "labels.json").read_text())
    del manifest["complete"]  # as a killed run leaves it
    (out / "labels.json").write_text(json.dumps(manifest))
    kept = {s.name: s.stat().st_mtime_ns for s in out.glob("part-*.parquet")}
    label_pairs(teacher, pairs_path, out, RAY, dataset=world)
    labels = read_labels(out)
    assert_same_labels(labels, reference)
    assert {s.name: s.stat().st_mtime_ns for s in out.glob("part-*.parquet") if s.name in kept} == kept  # untouched
    assert len(list(out.glob("part-*.parquet"))) == 5
