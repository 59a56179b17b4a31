"""The item embedding index: a build equals the student's own item side, a refresh re-embeds only what changed
and equals a full build, a failed refresh leaves the live version alone, search / related / homefeed, the CLI and
the Ray backend."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from searchrel.annotate.text import build_item_texts
from searchrel.data.dataset import Dataset
from searchrel.index import LOCK, build_index, load_index, model_version, refresh_index
from searchrel.index import build as index_build
from searchrel.index.embed import ItemEmbedder, driver_features, feature_sources
from searchrel.student.model import load_student, new_student
from test_student import _cfg

runner = CliRunner()
FAST = dict(bf16=False)  # deterministic fp32 towers


@pytest.fixture(scope="module", autouse=True)
def fp32_zero_shot():
    """The zero_shot feature's encoder in fp32 (eager) in this process, so its states are deterministic too."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("searchrel.models.encode.cpu_has_bf16", lambda: False)
        yield


@pytest.fixture(scope="module")
def student_dir(tiny_bert, world, tmp_path_factory):
    """A tiny untrained student (fields title + image_caption) with its text feature (text_match_gated, the
    default) fitted on the catalogue."""
    student = new_student(_cfg(tiny_bert).student)
    texts = build_item_texts(world.items, student.config.text).tolist()
    for f in student.features:
        f.fit(texts)
    return student.save(tmp_path_factory.mktemp("student") / "s")


@pytest.fixture(scope="module")
def reference(student_dir, world):
    """The student's own item side of every item (what the index must hold)."""
    student = load_student(student_dir)
    texts = build_item_texts(world.items, student.config.text)
    return texts, student.side(texts.tolist(), "item", bf16=False)


def _same_states(a: dict, b: dict, atol=1e-5):
    assert set(a) == set(b)
    for name in a:
        x, y = a[name], b[name]
        if hasattr(x, "toarray"):
            x, y = x.toarray(), y.toarray()
        assert x.shape == y.shape and np.allclose(x, y, atol=atol), name


def _edited(world: Dataset) -> tuple[Dataset, dict]:
    """The world with one title changed, one item added, one deleted and one description (unused) changed."""
    items = world.items.copy()
    changed, deleted, unused = items["item_id"].iloc[3], items["item_id"].iloc[7], items["item_id"].iloc[11]
    items.loc[items["item_id"] == changed, "title"] = "a brand new title about red wooden tables"
    items.loc[items["item_id"] == unused, "description"] = "an edited description the student never reads"
    added = items.iloc[[0]].copy()
    added["item_id"], added["title"] = "added-item", "blue cotton summer dress"
    items = pd.concat([items[items["item_id"] != deleted], added], ignore_index=True)
    ds = Dataset(world.info, items, world.queries, world.judgments, world.search_log, world.splits)  # not validated:
    return ds, {"changed": changed, "deleted": deleted, "unused": unused, "added": "added-item"}  # judgments go stale


def test_build_holds_the_students_item_side(student_dir, world, reference, tmp_path):
    texts, side = reference
    vdir = build_index(student_dir, world, tmp_path / "idx", **FAST)
    assert vdir == tmp_path / "idx" / "versions" / "1" and (tmp_path / "idx" / "CURRENT").read_text().strip() == "1"
    idx = load_index(tmp_path / "idx")
    assert list(idx.item_ids) == list(world.items["item_id"]) and idx.version == "1"
    assert idx.vectors.dtype == np.float32 and np.allclose(idx.vectors, side.emb, atol=1e-5)
    _same_states(idx.features, side.features)
    assert set(idx.features) == {"text_match_gated", "zero_shot", "zero_shot_product"}
    assert (vdir / "features" / "text_match_gated.npz").is_file() and (vdir / "features" / "zero_shot.npy").is_file()
    # zero_shot and zero_shot_product are one model's vectors: stored once, read once
    assert idx.manifest["features"]["zero_shot_product"] == idx.manifest["features"]["zero_shot"] == "zero_shot.npy"
    assert sorted(p.name for p in (vdir / "features").iterdir()) == ["text_match_gated.npz", "zero_shot.npy"]
    assert idx.features["zero_shot_product"] is idx.features["zero_shot"]
    sources = feature_sources(driver_features(student_dir, load_student(student_dir).config))
    assert list(sources) == ["text_match_gated", "zero_shot", "zero_shot_product"]
    assert sources["zero_shot"] == sources["zero_shot_product"] != sources["text_match_gated"]
    assert list(idx.items["content_hash"]) == [hashlib.sha256(t.encode()).hexdigest() for t in texts]
    m = idx.manifest
    assert m["n_items"] == len(world.items) and m["dim"] == 16 and m["text_fields"] == ["title", "image_caption"]
    assert m["faiss"]["kind"] == "flat" and m["counts"]["embedded"] == len(world.items) and m["build"] == "full"
    assert m["model_version"] == model_version(student_dir) and len(m["model_version"]) == 64
    # side(rows): the scorer's item side for chosen rows, CSR rows sliced
    rows = np.array([5, 0, 17])
    part = idx.side(rows)
    assert np.allclose(part.emb, side.emb[rows], atol=1e-5)
    assert np.allclose(part.features["text_match_gated"].toarray(), side.features["text_match_gated"][rows].toarray())
    assert idx.row_of(world.items["item_id"].iloc[17]) == 17
    with pytest.raises(KeyError, match="not in index"):
        idx.row_of("nope")


def test_refresh_re_embeds_only_what_changed_and_equals_a_full_build(student_dir, world, tmp_path, monkeypatch):
    out = tmp_path / "idx"
    build_index(student_dir, world, out, **FAST)
    before = load_index(out)
    ds, ids = _edited(world)
    embedded = []
    real = ItemEmbedder.embed
    monkeypatch.setattr(ItemEmbedder, "embed", lambda self, texts: embedded.extend(texts) or real(self, texts))
    vdir = refresh_index(student_dir, ds, out, **FAST)
    assert vdir.name == "2" and (out / "CURRENT").read_text().strip() == "2"
    idx = load_index(out)
    c = idx.manifest["counts"]
    assert len(embedded) == 2 and c["embedded"] == 2 and c["deleted"] == 1 and c["copied"] == len(world.items) - 2
    assert c == {"new": 1, "changed": 1, "unchanged": len(world.items) - 2, "deleted": 1, "embedded": 2,
                 "copied": len(world.items) - 2}
    assert idx.manifest["build"] == "refresh" and idx.manifest["previous_version"] == "1"
    assert list(idx.item_ids) == list(ds.items["item_id"]) and ids["deleted"] not in idx
    # copied rows are the old rows exactly (the unused-field edit included); the changed title moved
    r_old, r_new = before.row_of(ids["unused"]), idx.row_of(ids["unused"])
    assert np.array_equal(idx.vectors[r_new], before.vectors[r_old])
    assert not np.allclose(idx.vectors[idx.row_of(ids["changed"])], before.vectors[before.row_of(ids["changed"])])
    # equal to a fresh full build of the edited catalogue
    full = load_index(build_index(student_dir, ds, tmp_path / "full", **FAST))
    assert np.allclose(idx.vectors, full.vectors, atol=1e-5)
    _same_states(idx.features, full.features)
    assert list(idx.items["content_hash"]) == list(full.items["content_hash"])
    assert sorted(p.name for p in (vdir / "features").iterdir()) == ["text_match_gated.npz", "zero_shot.npy"]
    # nothing changed: nothing embedded; versions beyond the last 2 are deleted
    embedded.clear()
    refresh_index(student_dir, ds, out, **FAST)
    assert embedded == [] and load_index(out).manifest["counts"]["copied"] == len(ds.items)
    assert sorted(p.name for p in (out / "versions").iterdir()) == ["2", "3"]


def test_a_changed_model_means_a_full_build(student_dir, world, tiny_bert, tmp_path):
    out = tmp_path / "idx"
    build_index(student_dir, world, out, **FAST)
    other = new_student(_cfg(tiny_bert).student, seed=1)
    for f in other.features:
        f.fit(build_item_texts(world.items, other.config.text).tolist())
    other_dir = other.save(tmp_path / "other")
    refresh_index(other_dir, world, out, **FAST)
    m = load_index(out).manifest
    assert m["build"] == "full" and "model changed" in m["full_build_reason"]
    assert m["counts"]["embedded"] == len(world.items) and m["counts"]["unchanged"] == len(world.items)


@pytest.mark.integration
def test_a_failed_or_killed_refresh_leaves_the_live_version(student_dir, world, reference, tmp_path, monkeypatch):
    out = tmp_path / "idx"
    build_index(student_dir, world, out, **FAST)
    ds, _ = _edited(world)

    def boom(*a, **k):
        raise RuntimeError("killed while writing")

    # fails with every file of the new version written, just before the rename
    monkeypatch.setattr(index_build, "fsync_tree", boom)
    with pytest.raises(RuntimeError, match="killed"):
        refresh_index(student_dir, ds, out, **FAST)
    monkeypatch.undo()
    assert (out / "CURRENT").read_text().strip() == "1"
    assert [p.name for p in (out / "versions").iterdir()] == ["1"]  # the temp version was removed
    idx = load_index(out)
    assert np.allclose(idx.vectors, reference[1].emb, atol=1e-5) and len(idx) == len(world.items)
    # a kill -9 mid-write leaves a temp directory: readers ignore it, the next writer removes it
    junk = out / "versions" / ".tmp-2-abcd"
    junk.mkdir()
    (junk / "vectors.npy").write_bytes(b"half")
    assert load_index(out).version == "1"
    vdir = refresh_index(student_dir, ds, out, **FAST)
    assert vdir.name == "2" and not junk.exists() and load_index(out).version == "2"
    # a second writer is refused while one holds the lock
    from searchrel.locks import exclusive

    with exclusive(out / LOCK, "held"), pytest.raises(FileExistsError, match="another build"):
        refresh_index(student_dir, ds, out, **FAST)


def test_search_related_and_homefeed(student_dir, world, tmp_path):
    idx = load_index(build_index(student_dir, world, tmp_path / "idx", **FAST))
    texts = build_item_texts(world.items, load_student(student_dir).config.text)
    unique = [i for i, t in texts.items() if (texts == t).sum() == 1][:5]
    rows = idx.rows_of(unique)
    ids, scores = idx.search(idx.vectors[rows], 3)
    assert ids.shape == (5, 3) and list(ids[:, 0]) == unique and np.allclose(scores[:, 0], 1, atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    # related: nearest items, itself excluded, in the exact (flat) order
    rel, s = idx.related(unique[0], k=5)
    assert len(rel) == 5 and unique[0] not in rel
    brute = idx.vectors @ idx.vectors[rows[0]]
    brute[rows[0]] = -np.inf
    assert np.allclose(s, np.sort(brute)[::-1][:5], atol=1e-5)
    # homefeed: the mean of the saved items, normalised; saved items excluded; unknown ids reported
    saved = list(world.items["item_id"].iloc[:3])
    feed, s, unknown = idx.homefeed(saved + ["nope"], k=10)
    assert unknown == ["nope"] and len(feed) == 10 and not set(feed) & set(saved)
    mean = idx.vectors[idx.rows_of(saved)].mean(0)
    brute = idx.vectors @ (mean / np.linalg.norm(mean))
    brute[idx.rows_of(saved)] = -np.inf
    assert np.allclose(s, np.sort(brute)[::-1][:10], atol=1e-5)
    with pytest.raises(KeyError, match="none of the 2"):
        idx.homefeed(["nope", "nada"])
    with pytest.raises(KeyError):
        idx.related("nope")
    # k is cut to what there is
    ids, _ = idx.search(idx.vectors[:1], 10_000, exclude=saved)
    assert ids.shape == (1, len(idx) - 3) and not set(ids[0]) & set(saved)


def test_hnsw_index(student_dir, world, tmp_path):
    idx = load_index(build_index(student_dir, world, tmp_path / "idx", faiss="hnsw", **FAST))
    assert idx.manifest["faiss"]["kind"] == "hnsw"
    rel, s = idx.related(idx.item_ids[0], k=5)
    assert len(rel) == 5 and idx.item_ids[0] not in rel and np.all(np.diff(s) <= 1e-6)


def test_ivf_index_is_the_approximate_default_and_finds_the_exact_neighbours(student_dir, world, tmp_path):
    from searchrel.index.build import ivf_lists

    exact = load_index(build_index(student_dir, world, tmp_path / "flat", faiss="flat", **FAST))
    # auto leaves exact search at hnsw_min_items: IVF-Flat from there, searched through nprobe of its lists
    idx = load_index(build_index(student_dir, world, tmp_path / "idx", hnsw_min_items=10, ivf_nprobe=4, **FAST))
    nlist = ivf_lists(len(idx))
    assert idx.manifest["faiss"] == {"kind": "ivf", "metric": "inner_product", "nlist": nlist, "nprobe": 4,
                                     "centroids": "trained"}
    assert idx.faiss.nprobe == 4 and idx.faiss.nlist == nlist
    idx.faiss.nprobe = nlist  # every list searched: the exact answer
    got, _ = idx.search(exact.vectors[:20], 5)
    want, _ = exact.search(exact.vectors[:20], 5)
    assert (got == want).all()
    rel, s = idx.related(idx.item_ids[0], k=5)
    assert idx.item_ids[0] not in rel and np.all(np.diff(s[~np.isnan(s)]) <= 1e-6)


def test_ivf_searches_a_constant_share_of_its_lists_by_default(student_dir, world, tmp_path):
    """Unless ivf_nprobe is set, an IVF index searches 1/32 of its lists and at least 32 (all of fewer): recall
    holds as the catalogue grows instead of falling with a fixed count (bench/faiss_choice.py at 100k and 1M)."""
    from searchrel.index import IndexConfig
    from searchrel.index.build import ivf_probes

    assert [ivf_probes(n) for n in (10, 32, 1264, 4000, 40_000)] == [10, 32, 39, 125, 1250]
    assert ivf_probes(4000, IndexConfig(ivf_nprobe=8)) == 8 and ivf_probes(4, IndexConfig(ivf_nprobe=8)) == 4
    with pytest.raises(ValueError):
        IndexConfig(ivf_nprobe=0)
    idx = load_index(build_index(student_dir, world, tmp_path / "idx", hnsw_min_items=10, **FAST))
    assert idx.faiss.nprobe == idx.manifest["faiss"]["nprobe"] == ivf_probes(idx.faiss.nlist)


def test_ivf_refresh_keeps_the_live_centroids(student_dir, world, tmp_path):
    """A refresh assigns vectors to the live version's IVF lists instead of training k-means again; the result
    holds the edited catalogue's vectors and, every list searched, answers exactly."""
    import faiss

    opts = dict(hnsw_min_items=10, ivf_nprobe=4, **FAST)
    first = load_index(build_index(student_dir, world, tmp_path / "idx", **opts))
    ds, _ = _edited(world)
    idx = load_index(refresh_index(student_dir, ds, tmp_path / "idx", **opts))
    assert idx.manifest["build"] == "refresh" and idx.manifest["faiss"]["centroids"] == "kept from version 1"
    centroids = [faiss.downcast_index(i.faiss.quantizer).reconstruct_n(0, i.faiss.nlist) for i in (first, idx)]
    assert np.array_equal(*centroids)
    exact = load_index(build_index(student_dir, ds, tmp_path / "exact", faiss="flat", **FAST))
    assert np.allclose(idx.vectors, exact.vectors, atol=1e-5)
    idx.faiss.nprobe = idx.faiss.nlist
    got, _ = idx.search(exact.vectors[:20], 5)
    want, _ = exact.search(exact.vectors[:20], 5)
    assert (got == want).all()
    # a full build trains again
    assert load_index(build_index(student_dir, ds, tmp_path / "idx", **opts)).manifest["faiss"]["centroids"] == \
        "trained"


def test_cli_build_and_refresh(student_dir, world, tmp_path):
    from searchrel.cli.index import index_app

    out = tmp_path / "idx"
    r = runner.invoke(index_app, ["build", str(student_dir), str(world.path), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "index version 1" in r.output and f"{len(world.items):,} embedded" in r.output
    ds, _ = _edited(world)
    edited_path = tmp_path / "edited"
    ds.judgments = ds.judgments[ds.judgments["item_id"].isin(ds.items["item_id"])]
    ds.search_log = ds.search_log[ds.search_log["item_id"].isin(ds.items["item_id"])]
    ds.save(edited_path)
    r = runner.invoke(index_app, ["refresh", str(student_dir), str(edited_path), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "index version 2" in r.output and "2 embedded" in r.output and "1 deleted" in r.output
    assert json.loads((out / "versions" / "2" / "manifest.json").read_text())["dataset"] == str(edited_path.resolve())
    r = runner.invoke(index_app, ["build", str(student_dir), str(world.path), "--out", str(world.path)])
    assert r.exit_code == 2 and "not an item index" in r.output



@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.integration
def test_ray_backend_gives_the_local_vectors(local_ray, student_dir, world, reference, tmp_path):
    idx = load_index(build_index(student_dir, world, tmp_path / "idx", backend="ray", shard_size=50, **FAST))
    assert idx.manifest["backend"] == "ray" and list(idx.item_ids) == list(world.items["item_id"])
    texts, side = reference
    assert np.allclose(idx.vectors, side.emb, atol=1e-5)
    tm = "text_match_gated"
    assert np.allclose(idx.features[tm].toarray(), side.features[tm].toarray())  # on the driver
    # zero_shot comes from the actors, whose encoder picks its own precision (bf16 where the CPU has it)
    zs = np.sum(idx.features["zero_shot"] * side.features["zero_shot"], 1)
    assert idx.features["zero_shot"].shape == side.features["zero_shot"].shape and zs.min() > 0.99
    assert idx.manifest["features"]["zero_shot_product"] == "zero_shot.npy"  # one source: shipped and stored once
    assert idx.features["zero_shot_product"] is idx.features["zero_shot"]
    # a refresh on ray re-embeds only the changed items
    ds, _ = _edited(world)
    vdir = refresh_index(student_dir, ds, tmp_path / "idx", backend="ray", **FAST)
    assert load_index(tmp_path / "idx").manifest["counts"]["embedded"] == 2 and vdir.name == "2"
