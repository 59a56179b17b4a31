"""Building and refreshing an index, read top-down as diff -> embed -> assemble -> publish.

``build_index`` embeds every item; ``refresh_index`` re-embeds only new items and items whose content hash
changed, copies every other row from the live version and drops deleted items (a full build when nothing is live
or the model changed). Either writes a complete new version under a temporary name, renames it into place, points
CURRENT at it, and prunes versions beyond ``keep``; a killed build leaves at most a ``.tmp-*`` directory, which
the next build removes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from searchrel.annotate.text import build_item_texts
from searchrel.data.dataset import Dataset, load_dataset
from searchrel.index.embed import driver_features, embed_local, embed_ray, feature_sources
from searchrel.index.layout import (
    FAISS_FILE,
    FEATURES_DIR,
    FORMAT,
    ITEMS_FILE,
    LOCK,
    MANIFEST,
    TMP_PREFIX,
    VECTORS_FILE,
    VERSIONS,
    IndexConfig,
    check_out,
    clean_tmp,
    concat_states,
    content_hashes,
    fsync_dir,
    fsync_tree,
    model_version,
    prune,
    read_current,
    save_state,
    take_rows,
    version_names,
    write_current,
)
from searchrel.index.reader import load_version
from searchrel.io import read_config
from searchrel.locks import exclusive
from searchrel.progress import console
from searchrel.student.config import StudentConfig
from searchrel.student.model import CONFIG_FILE


# -- FAISS -----------------------------------------------------------------------------------------
def ivf_lists(n: int) -> int:
    """Inverted lists of an IVF index over ``n`` items: 4 * sqrt(n), FAISS's usual rule (at least 1)."""
    return max(1, int(4 * np.sqrt(n)))


def ivf_probes(nlist: int, cfg: IndexConfig = IndexConfig()) -> int:
    """Lists an IVF index searches per query: ``cfg.ivf_nprobe``, or by default 1/32 of them and at least 32 — a
    constant share as the catalogue grows (recall@10 against exact search, bench/faiss_choice.py: 0.95 with 32 of
    1,264 lists at 100k items; at 1M, 32 of 4,000 lists found 0.90 and 128 found 0.97)."""
    return min(nlist, cfg.ivf_nprobe or max(32, nlist // 32))


def build_faiss(vectors: np.ndarray, cfg: IndexConfig = IndexConfig(), centroids: np.ndarray | None = None):
    """An inner-product FAISS index over L2-normalised ``vectors`` (row i has id i); returns (index, kind).

    ``centroids``: an IVF index's coarse centroids to reuse instead of training k-means again (a refresh keeps
    the live version's, see ``reusable_centroids``); ignored for flat and HNSW indexes."""
    import faiss  # faiss: the serve extra

    n, dim = vectors.shape
    kind = cfg.faiss if cfg.faiss != "auto" else ("ivf" if n >= cfg.hnsw_min_items else "flat")
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        quantizer = faiss.IndexFlatIP(dim)
        nlist = ivf_lists(n) if centroids is None else len(centroids)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.nprobe = ivf_probes(nlist, cfg)
        if centroids is not None:  # the trained coarse quantizer of the live version: assignment only
            quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
            index.is_trained = True
        elif n:
            index.train(np.ascontiguousarray(vectors, dtype=np.float32))
    else:
        index = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = cfg.hnsw_ef_construction
        index.hnsw.efSearch = cfg.hnsw_ef_search
    if n:
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index, kind


def reusable_centroids(live_dir: Path, n: int, cfg: IndexConfig) -> np.ndarray | None:
    """The live version's IVF centroids when a refresh to ``n`` items may keep them, else None.

    k-means is most of an IVF build's cost and a 1% refresh moves the item distribution by little, so a refresh
    assigns the vectors to the live version's lists. They are trained again on a full build (a new model) and
    when the catalogue has grown or shrunk so far that the list count is off by more than a factor of 2 from
    ``ivf_lists(n)`` (4x the items: lists too long or too many to probe)."""
    import faiss  # faiss: the serve extra

    live = json.loads((live_dir / MANIFEST).read_text())["faiss"]
    wanted = cfg.faiss if cfg.faiss != "auto" else ("ivf" if n >= cfg.hnsw_min_items else "flat")
    if wanted != "ivf" or live.get("kind") != "ivf" or not 0.5 <= live["nlist"] / ivf_lists(n) <= 2:
        return None
    index = faiss.read_index(str(live_dir / FAISS_FILE))
    return faiss.downcast_index(faiss.extract_index_ivf(index).quantizer).reconstruct_n(0, live["nlist"])


# -- build / refresh -------------------------------------------------------------------------------
def build_index(student_dir: str | Path, dataset: Dataset | str | Path, out: str | Path,
                config: IndexConfig | None = None, **options) -> Path:
    """Embed every item of ``dataset`` with the student and publish a new index version in ``out``.
    ``options`` are IndexConfig fields (backend="ray", batch_size=..., ray_address=..., ray_actors=...)."""
    return _update(student_dir, dataset, out, _config(config, options), reuse=False)


def refresh_index(student_dir: str | Path, dataset: Dataset | str | Path, out: str | Path,
                  config: IndexConfig | None = None, **options) -> Path:
    """Publish a new version of ``out`` for ``dataset``: re-embed new items and items whose text changed, copy the
    rest from the live version, drop deleted items. A full build when nothing is live or the model changed."""
    return _update(student_dir, dataset, out, _config(config, options), reuse=True)


def _config(config: IndexConfig | None, options: dict) -> IndexConfig:
    base = (config or IndexConfig()).model_dump()
    return IndexConfig(**{**base, **{k: v for k, v in options.items()}})


@dataclass
class Diff:
    """The catalogue against the live version: which rows are copied, which embedded, and the counts."""

    copy: np.ndarray  # bool [n]: copy this item's row from the live version
    todo: np.ndarray  # int [k]: rows to embed
    src: np.ndarray  # int [copy.sum()]: the live row of each copied item, in dataset order
    counts: dict[str, int]


def _update(student_dir, dataset, out, cfg: IndexConfig, reuse: bool) -> Path:
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    student_dir = Path(student_dir).resolve()
    scfg = StudentConfig.model_validate(read_config(student_dir, CONFIG_FILE, "student"))
    version_id = model_version(student_dir)
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    out = Path(out)
    check_out(out)
    with exclusive(out / LOCK, f"{out}: another build or refresh is writing this index"):
        clean_tmp(out)
        live_name = read_current(out)
        reason = _full_build_reason(out, live_name, version_id, reuse)

        t = time.perf_counter()
        texts = build_item_texts(ds.items, scfg.text)
        ids, texts = texts.index.to_numpy(dtype=object), texts.tolist()
        hashes = content_hashes(texts)
        timings["texts_s"] = time.perf_counter() - t

        diff = _diff(out, live_name, ids, hashes, full=reason is not None)
        if reason is not None:
            console.print(f"full build of {len(ids):,} items: {reason}")
        else:
            c = diff.counts
            console.print(f"refresh of version {live_name}: {c['new']:,} new, {c['changed']:,} changed, "
                          f"{c['unchanged']:,} unchanged, {c['deleted']:,} deleted")

        t = time.perf_counter()
        features = driver_features(student_dir, scfg)  # from the config and features.json: no towers loaded
        sources = feature_sources(features)
        new_emb, new_states = _embed([texts[i] for i in diff.todo], student_dir, cfg, scfg, version_id, features)
        timings["embed_s"] = time.perf_counter() - t

        t = time.perf_counter()
        # the live vectors and feature states are read only when rows are copied from them
        live = load_version(out / VERSIONS / live_name, with_faiss=False) if len(diff.src) else None
        vectors, states = _assemble(diff, live, new_emb, new_states, sources)
        live = None  # the old version's arrays may be pruned below (nothing mmapped: they were read whole)
        timings["assemble_s"] = time.perf_counter() - t

        t = time.perf_counter()
        centroids = reusable_centroids(out / VERSIONS / live_name, len(ids), cfg) if reason is None else None
        index, kind = build_faiss(vectors, cfg, centroids)
        timings["faiss_s"] = time.perf_counter() - t

        t = time.perf_counter()
        number = max([int(x) for x in version_names(out)] + [int(live_name) if live_name else 0]) + 1
        name = str(number)
        manifest = {
            "format": FORMAT, "version": name, "created": dt.datetime.now(dt.timezone.utc).isoformat(),
            "model_version": version_id, "student": str(student_dir),
            "dataset": str(Path(ds.path).resolve()) if ds.path else None,
            "dim": int(scfg.dim), "n_items": len(ids), "text_fields": list(scfg.text.fields),
            "text": scfg.text.model_dump(), "build": "full" if reason else "refresh", "full_build_reason": reason,
            "previous_version": live_name, "counts": diff.counts, "backend": cfg.backend, "bf16": cfg.bf16,
            "faiss": {"kind": kind, "metric": "inner_product",
                      **({"ef_search": cfg.hnsw_ef_search, "m": cfg.hnsw_m} if kind == "hnsw" else {}),
                      **({"nlist": int(index.nlist), "nprobe": int(index.nprobe),
                          "centroids": "trained" if centroids is None else f"kept from version {live_name}"}
                         if kind == "ivf" else {})},
            "features": {}, "timings_s": {},
        }
        vdir = _publish(out, name, manifest, ids, hashes, vectors, states, sources, index, timings, t_start, t)
        prune(out, cfg.keep)
    tm, c = json.loads((vdir / MANIFEST).read_text())["timings_s"], diff.counts
    console.print(f"index version {name}: {len(ids):,} items, {c['embedded']:,} embedded, {c['copied']:,} copied, "
                  f"{c['deleted']:,} dropped in {tm['total_s']:.1f} s (embedding {tm['embed_s']:.1f} s) -> {vdir}")
    return vdir


def _full_build_reason(out: Path, live_name: str | None, version_id: str, reuse: bool) -> str | None:
    """Why every item is embedded again, or None for a refresh."""
    if not reuse:
        return "build requested"
    if live_name is None:
        return "no live version"
    live_model = json.loads((out / VERSIONS / live_name / MANIFEST).read_text())["model_version"]
    if live_model != version_id:
        return (f"the model changed (live version {live_name} has model {live_model[:12]}, "
                f"this student is {version_id[:12]})")
    return None


def _diff(out: Path, live_name: str | None, ids: np.ndarray, hashes: np.ndarray, full: bool) -> Diff:
    """New, changed, unchanged and deleted items against the live version (counted for full builds too); an
    unchanged item's row is copied unless ``full``."""
    n = len(ids)
    same, src = np.zeros(n, bool), np.zeros(0, np.int64)
    counts = {"new": n, "changed": 0, "unchanged": 0, "deleted": 0}
    if live_name is not None:
        live_items = pd.read_parquet(out / VERSIONS / live_name / ITEMS_FILE)
        old_ids = pd.Index(live_items["item_id"].to_numpy(dtype=object))
        old_rows = pd.Series(live_items["row"].to_numpy(np.int64), index=old_ids)
        old_hash = pd.Series(live_items["content_hash"].to_numpy(dtype=object), index=old_ids)
        known = pd.Index(ids).isin(old_ids)
        same[known] = old_hash.loc[ids[known]].to_numpy(dtype=object) == hashes[known]
        counts = {"new": int((~known).sum()), "changed": int((known & ~same).sum()), "unchanged": int(same.sum()),
                  "deleted": int(len(live_items) - known.sum())}
    copy = same if not full else np.zeros(n, bool)
    if copy.any():
        src = old_rows.loc[ids[copy]].to_numpy(np.int64)
    todo = np.flatnonzero(~copy)
    return Diff(copy, todo, src, counts | {"embedded": int(len(todo)), "copied": int(copy.sum())})


def _embed(texts: list[str], student_dir: Path, cfg: IndexConfig, scfg: StudentConfig, version_id: str,
           features: list) -> tuple[np.ndarray, dict[str, object]]:
    """The student's item vectors and feature item states (by source) of ``texts`` (on the configured backend)."""
    if not texts:
        return np.zeros((0, scfg.dim), np.float32), {}
    if cfg.backend == "ray":
        return embed_ray(str(student_dir), texts, cfg, scfg, features)
    return embed_local(str(student_dir), texts, cfg, version_id)


def _assemble(diff: Diff, live, new_emb: np.ndarray, new_states: dict,
              sources: dict[str, str]) -> tuple[np.ndarray, dict]:
    """Vectors and feature states (by source) in dataset order, each in one pass: a copied item's row comes from
    the live version (``diff.src``), an embedded one's from ``new_emb`` / ``new_states`` (in ``diff.todo`` order).
    ``sources`` maps each feature name to its source: features of one source are gathered once."""
    n = len(diff.copy)
    vectors = _gather(live.vectors if live is not None else None, new_emb.astype(np.float32, copy=False), diff, n)
    states: dict[str, object] = {}
    for name, source in sources.items():
        if source in states:
            continue
        old = live.features[name] if live is not None else None
        new = new_states.get(source) if len(diff.todo) else None
        states[source] = _gather(old, new, diff, n) if old is not None or new is not None else \
            np.zeros((0, 0), np.float32)
    return vectors, states


def _gather(old, new, diff: Diff, n: int):
    """Row i of the result: ``old[diff.src[j]]`` for the j-th copied item, else the embedded item's row of ``new``.
    Dense states are filled in place (no concatenation, no permutation copy); sparse ones are stacked once and
    their rows taken once. A full build (nothing copied) returns ``new`` itself: at a million items a copy of the
    vectors and states is 2.5 GB more at the peak."""
    copied = np.flatnonzero(diff.copy)
    if not len(copied) and new is not None:  # every row embedded, in dataset order (diff.todo is 0..n-1): no copy
        return sp.csr_matrix(new) if sp.issparse(new) else new
    if sp.issparse(old) or sp.issparse(new):
        parts = [p for p in (old if len(copied) else None, new) if p is not None]
        offset = old.shape[0] if len(copied) else 0
        take = np.empty(n, np.int64)
        take[copied] = diff.src
        take[diff.todo] = offset + np.arange(len(diff.todo))
        return take_rows(concat_states(parts), take)
    like = old if old is not None else new
    out = np.empty((n, *like.shape[1:]), like.dtype)
    if len(copied):
        out[copied] = old[diff.src]
    if len(diff.todo):
        out[diff.todo] = new
    return out


def _publish(out: Path, name: str, manifest: dict, ids: np.ndarray, hashes: np.ndarray, vectors: np.ndarray,
             states: dict, sources: dict[str, str], index, timings: dict, t_start: float, t_write: float) -> Path:
    """Publish: write a complete version under a temp name, rename it into versions/, point CURRENT at it. Each
    source's item state is one file, named after its first feature; the manifest names every feature's file."""
    import faiss  # faiss: the serve extra

    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{name}-", dir=out / VERSIONS))
    try:
        pd.DataFrame({"item_id": pd.Series(ids, dtype=object), "content_hash": pd.Series(hashes, dtype=object),
                      "row": np.arange(len(ids), dtype=np.int64)}).to_parquet(tmp / ITEMS_FILE, index=False)
        np.save(tmp / VECTORS_FILE, np.ascontiguousarray(vectors, dtype=np.float32))
        (tmp / FEATURES_DIR).mkdir()
        files: dict[str, str] = {}
        for feature, source in sources.items():
            if source not in files:
                files[source] = save_state(tmp / FEATURES_DIR / feature, states[source])
            manifest["features"][feature] = files[source]
        faiss.write_index(index, str(tmp / FAISS_FILE))
        timings["write_s"] = time.perf_counter() - t_write
        timings["total_s"] = time.perf_counter() - t_start
        manifest["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        fsync_tree(tmp)
        vdir = out / VERSIONS / name
        os.rename(tmp, vdir)  # the version appears complete or not at all
        fsync_dir(out / VERSIONS)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_current(out, name)
    return vdir
