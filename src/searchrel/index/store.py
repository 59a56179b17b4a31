"""The item embedding index: every item's student vector and feature state, with a FAISS index over the vectors,
kept in versions that are published atomically and refreshed incrementally.

Layout of an index directory::

    CURRENT                  the live version's name (e.g. ``7``), replaced atomically (tmp file + os.replace)
    .lock                    held (flock) by the one build or refresh writing here
    versions/<n>/            one complete version, written as versions/.tmp-<n>-* and renamed when complete
        manifest.json        model version, student, dataset, dim, n_items, item text config, counts, timings
        items.parquet        item_id, content_hash, row (row = position in vectors and in every feature state)
        vectors.npy          float32 [n, dim] L2-normalised student item embeddings
        features/<name>.npy  a feature's item state when it is an array (zero_shot: float32 [n, d])
        features/<name>.npz  ... when it is a scipy sparse matrix (text_match: CSR [n, vocab])
        faiss.index          inner product over the vectors: IndexFlatIP, or IndexHNSWFlat from 50k items

A reader (``load_index``) reads CURRENT once and loads that version, so it never sees a half-written one; after
publishing, versions beyond the newest ``keep`` (2) are deleted. A killed build leaves at most a ``.tmp-*``
directory, which the next build removes.

The model version is the sha256 of the student's ``model.safetensors``, ``student.json`` and ``features.json``
(the fitted feature state — text_match's vocabulary — changes item states too). An item's content hash is the
sha256 of the exact text the student embeds (``build_item_texts`` with the student's text config), so an edit to
a field the model does not read triggers no re-embedding. ``refresh_index`` re-embeds only new items and items
whose content hash changed, copies every other row from the live version, drops deleted items, rebuilds the FAISS
index and publishes a new version; when the model version differs from the live one it does a full build.

Two embedding backends run the same code on each shard of texts: ``local`` (one student in this process) and
``ray`` (Ray Data ``map_batches`` over an actor pool, each actor loading the student once). On Ray, the actors
compute the towers and every feature that ``needs_model`` (zero_shot); the others (text_match: a tokenizer and a
vocabulary lookup, no model, and a sparse state) are computed on the driver. The local backend
keeps the last student it loaded (by model version) for the next build or refresh in the same process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from pydantic import BaseModel, ConfigDict, Field

from searchrel.annotate.text import build_item_texts
from searchrel.data.dataset import Dataset, load_dataset
from searchrel.io import sha256_named
from searchrel.locks import exclusive
from searchrel.models.encode import default_threads
from searchrel.progress import console, step
from searchrel.ray_pool import map_shards
from searchrel.student.config import StudentConfig
from searchrel.student.features import make_feature
from searchrel.student.model import CONFIG_FILE, FEATURES_FILE, WEIGHTS_FILE, Side, load_student

CURRENT = "CURRENT"
VERSIONS = "versions"
LOCK = ".lock"
TMP_PREFIX = ".tmp-"
MANIFEST = "manifest.json"
ITEMS_FILE = "items.parquet"
VECTORS_FILE = "vectors.npy"
FAISS_FILE = "faiss.index"
FEATURES_DIR = "features"
FORMAT = 1


class IndexConfig(BaseModel):
    """How an index is built: the embedding backend and batching, and the FAISS index kind."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["local", "ray"] = "local"
    batch_size: int = Field(64, ge=1)  # texts per tower forward pass
    shard_size: int = Field(4096, ge=1)  # texts per unit of work (one Ray block / one progress step)
    bf16: bool | None = None  # tower precision; None: where the CPU has native bf16 (as Student.embed decides)
    ray_address: str | None = None  # None: start a local Ray; "auto" or ray://host:10001 for a cluster
    ray_actors: int = Field(1, ge=1)  # students in the Ray actor pool
    ray_cpus_per_actor: float = 1.0
    ray_gpus_per_actor: float = 0.0  # passed to Ray only when > 0 (the student itself embeds on CPU)
    faiss: Literal["auto", "flat", "hnsw"] = "auto"  # auto: flat below hnsw_min_items, HNSW from there
    hnsw_min_items: int = 50_000
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 64
    keep: int = Field(2, ge=1)  # versions kept after publishing (the live one included)


# -- hashing ---------------------------------------------------------------------------------------
def model_version(student_dir: str | Path) -> str:
    """sha256 over the student's weights, config and fitted feature state (each file read once)."""
    student_dir = Path(student_dir)
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        if not (student_dir / name).is_file():
            raise FileNotFoundError(f"{student_dir}: not a student directory ({name} is missing)")
    names = [n for n in (WEIGHTS_FILE, CONFIG_FILE, FEATURES_FILE) if (student_dir / n).is_file()]
    return sha256_named((n, student_dir / n) for n in names)


def content_hashes(texts: Iterable[str]) -> np.ndarray:
    """sha256 (hex) of each text, exactly as the model embeds it."""
    return np.array([hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts], dtype=object)


# -- per-feature item state: generic save / load / row operations -----------------------------------
def save_state(stem: Path, state) -> str:
    """Write a feature's item state next to ``stem`` (ndarray -> .npy, scipy sparse -> .npz); returns the file name."""
    if sp.issparse(state):
        path = stem.with_suffix(".npz")
        sp.save_npz(path, sp.csr_matrix(state), compressed=False)
    elif isinstance(state, np.ndarray):
        path = stem.with_suffix(".npy")
        np.save(path, state)
    else:
        raise TypeError(f"cannot store a feature state of type {type(state).__name__} (ndarray or scipy sparse)")
    return path.name


def load_state(path: Path):
    if path.suffix == ".npz":
        return sp.csr_matrix(sp.load_npz(path))
    return np.load(path)


def take_rows(state, rows: np.ndarray):
    """Rows ``rows`` of a state (array or CSR), in that order."""
    rows = np.asarray(rows, dtype=np.int64)
    return state[rows] if not sp.issparse(state) else sp.csr_matrix(state)[rows]


def concat_states(parts: Sequence):
    parts = [p for p in parts if p is not None]
    if any(sp.issparse(p) for p in parts):
        return sp.vstack([sp.csr_matrix(p) for p in parts], format="csr")
    return np.concatenate(parts, axis=0)


# -- FAISS -----------------------------------------------------------------------------------------
def build_faiss(vectors: np.ndarray, cfg: IndexConfig = IndexConfig()):
    """An inner-product FAISS index over L2-normalised ``vectors`` (row i has id i); returns (index, kind)."""
    import faiss  # faiss: the serve extra

    n, dim = vectors.shape
    kind = cfg.faiss if cfg.faiss != "auto" else ("hnsw" if n >= cfg.hnsw_min_items else "flat")
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = cfg.hnsw_ef_construction
        index.hnsw.efSearch = cfg.hnsw_ef_search
    if n:
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index, kind


# -- embedding -------------------------------------------------------------------------------------
class ItemEmbedder:
    """One student (loaded once) embedding item texts: tower vectors and every feature's item state.
    The local backend makes one; each Ray actor makes its own and is called on ``row, text`` batches."""

    def __init__(self, student: str, batch_size: int = 64, bf16: bool | None = None,
                 skip_features: Sequence[str] = ()):
        torch.set_num_threads(default_threads())
        self.student = load_student(student)
        self.batch_size, self.bf16 = batch_size, bf16
        self.features = [f for f in self.student.features if f.name not in set(skip_features)]

    def embed(self, texts: Sequence[str]) -> tuple[np.ndarray, dict[str, object]]:
        texts = list(texts)
        emb = self.student.embed(texts, "item", batch_size=self.batch_size, bf16=self.bf16)
        return emb, {f.name: f.item_side(texts) for f in self.features}

    def __call__(self, batch: pd.DataFrame) -> dict[str, np.ndarray]:
        emb, states = self.embed(batch["text"].tolist())
        out = {"row": batch["row"].to_numpy(np.int64), "emb": emb}
        for name, state in states.items():
            if not isinstance(state, np.ndarray):
                raise TypeError(f"feature {name!r} gives a {type(state).__name__} item state, which the ray backend "
                                "cannot ship back: a feature without a model (needs_model = False) is computed on "
                                "the driver instead")
            out[f"feature__{name}"] = state
        return out


_EMBEDDER: dict[tuple, ItemEmbedder] = {}  # the last student the local backend loaded, for refreshes in one process


def local_embedder(student_dir: str, version: str, batch_size: int = 64, bf16: bool | None = None) -> ItemEmbedder:
    """The local backend's embedder, kept while the student (by model version) and settings stay the same: a
    long-lived process refreshing its index does not reload the student (seconds) for a handful of items."""
    key = (student_dir, version, batch_size, bf16)
    if key not in _EMBEDDER:
        _EMBEDDER.clear()
        _EMBEDDER[key] = ItemEmbedder(student_dir, batch_size, bf16)
    return _EMBEDDER[key]


def _embed_local(student_dir: str, texts: list[str], cfg: IndexConfig,
                 version: str) -> tuple[np.ndarray, dict[str, object]]:
    embedder = local_embedder(student_dir, version, cfg.batch_size, cfg.bf16)
    embs, states = [], {f.name: [] for f in embedder.features}
    with step("embedding items", total=len(texts)) as advance:
        for start in range(0, len(texts), cfg.shard_size):
            chunk = texts[start:start + cfg.shard_size]
            emb, st = embedder.embed(chunk)
            embs.append(emb)
            for name, s in st.items():
                states[name].append(s)
            advance(len(chunk))
    return np.concatenate(embs), {name: concat_states(parts) for name, parts in states.items()}


def _driver_features(student_dir: Path, scfg) -> list:
    """The student's feature objects from its config and features.json alone (no towers loaded)."""
    path = student_dir / FEATURES_FILE
    states = json.loads(path.read_text()) if path.is_file() else {}
    return [make_feature(n, states.get(n), model=scfg.zero_shot_model) for n in scfg.features]


def _embed_ray(student_dir: str, texts: list[str], cfg: IndexConfig, scfg) -> tuple[np.ndarray, dict[str, object]]:
    n = len(texts)
    emb = np.zeros((n, scfg.dim), np.float32)
    states: dict[str, np.ndarray] = {}
    driver = [f for f in _driver_features(Path(student_dir), scfg) if not f.needs_model]
    # results are placed by "row": shards come back in any order
    frame = pd.DataFrame({"row": np.arange(n, dtype=np.int64), "text": texts})
    kwargs = {"student": student_dir, "batch_size": cfg.batch_size, "bf16": cfg.bf16,
              "skip_features": sorted(f.name for f in driver)}
    seen = np.zeros(n, bool)
    with step("embedding items (ray)", total=n) as advance:
        for batch in map_shards(frame, ItemEmbedder, kwargs, cfg, batch_format="numpy"):
            rows = np.asarray(batch["row"], np.int64)
            if not len(rows):
                continue
            emb[rows] = np.asarray(batch["emb"], np.float32)
            for key, value in batch.items():
                if key.startswith("feature__"):
                    value = np.asarray(value)
                    name = key[len("feature__"):]
                    if name not in states:
                        states[name] = np.zeros((n, *value.shape[1:]), value.dtype)
                    states[name][rows] = value
            seen[rows] = True
            advance(len(rows))
    if not seen.all():
        raise RuntimeError(f"the ray backend returned {int(seen.sum()):,} of {n:,} items")
    for f in driver:
        states[f.name] = f.item_side(texts)
    return emb, {f: states[f] for f in scfg.features}  # in the student's feature order


# -- the on-disk index -----------------------------------------------------------------------------
def _version_names(out: Path) -> list[str]:
    vdir = out / VERSIONS
    if not vdir.is_dir():
        return []
    return sorted((p.name for p in vdir.iterdir() if p.is_dir() and p.name.isdigit()), key=int)


def _read_current(out: Path) -> str | None:
    try:
        name = (out / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_current(out: Path, name: str) -> None:
    tmp = out / f".{CURRENT}.tmp"
    with open(tmp, "w") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / CURRENT)  # atomic: a reader sees the old name or the new one
    _fsync_dir(out)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(p.name != LOCK for p in out.iterdir())
                                              and not (out / VERSIONS).is_dir())):
        raise FileExistsError(f"{out} exists and is not an item index: use a new output directory")
    (out / VERSIONS).mkdir(parents=True, exist_ok=True)


def _clean_tmp(out: Path) -> None:
    """Remove what killed builds left (under the writer lock, so no live writer owns them)."""
    for p in (out / VERSIONS).glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(p, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (out / f".{CURRENT}.tmp").unlink()


def _prune(out: Path, keep: int) -> list[str]:
    live = _read_current(out)
    names = _version_names(out)
    gone = [n for n in names[:-keep] if n != live] if keep < len(names) else []
    for n in gone:
        shutil.rmtree(out / VERSIONS / n, ignore_errors=True)
    return gone


def _fsync_tree(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    for d in [path, *(p for p in path.rglob("*") if p.is_dir())]:
        _fsync_dir(d)


class ItemIndex:
    """One loaded version of an item index: ids, vectors, feature states and the FAISS index over the vectors."""

    def __init__(self, path: Path, manifest: dict, items: pd.DataFrame, vectors: np.ndarray,
                 features: dict[str, object], faiss_index=None):
        self.path, self.manifest, self.items = Path(path), manifest, items
        self.vectors, self.features, self.faiss = vectors, features, faiss_index
        self.item_ids = items["item_id"].to_numpy(dtype=object)
        self._rows = pd.Series(np.arange(len(items), dtype=np.int64), index=pd.Index(self.item_ids))

    @property
    def version(self) -> str:
        return self.path.name

    @property
    def model_version(self) -> str:
        return self.manifest["model_version"]

    def __len__(self) -> int:
        return len(self.item_ids)

    def __contains__(self, item_id) -> bool:
        return item_id in self._rows.index

    def row_of(self, item_id) -> int:
        try:
            return int(self._rows[item_id])
        except KeyError:
            raise KeyError(f"item {item_id!r} is not in index version {self.version}") from None

    def rows_of(self, item_ids: Iterable) -> np.ndarray:
        ids = list(item_ids)
        unknown = [i for i in ids if i not in self._rows.index]
        if unknown:
            raise KeyError(f"{len(unknown)} item(s) not in index version {self.version}: {unknown[:10]}")
        return self._rows.loc[ids].to_numpy(np.int64)

    def side(self, rows) -> "Side":
        """The student scorer's item side for these rows: embeddings and each feature's state rows."""
        rows = np.asarray(rows, dtype=np.int64)
        return Side(self.vectors[rows], {name: take_rows(s, rows) for name, s in self.features.items()})

    def search(self, vectors: np.ndarray, k: int, exclude: Iterable | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest items (inner product) of each query vector: ``(ids [nq, k], scores [nq, k])``, best
        first, never an item of ``exclude`` (item ids). ``k`` is cut to the items there are; should an approximate
        (HNSW) search find fewer, the rest of a row is ``None`` / ``nan``."""
        if self.faiss is None:
            raise ValueError(f"index version {self.version} was loaded without its FAISS index")
        q = np.ascontiguousarray(np.atleast_2d(np.asarray(vectors, np.float32)))
        excl = np.unique(self.rows_of([i for i in (exclude or ()) if i in self._rows.index])) \
            if exclude is not None else np.zeros(0, np.int64)
        k = max(0, min(int(k), len(self) - len(excl)))
        ids = np.full((len(q), k), None, dtype=object)
        scores = np.full((len(q), k), np.nan, np.float32)
        if k == 0 or len(q) == 0:
            return ids, scores
        fetch = min(len(self), k + len(excl))
        d, i = self.faiss.search(q, fetch)
        keep = (i >= 0) & ~np.isin(i, excl)
        for r in range(len(q)):
            rows = i[r][keep[r]][:k]
            ids[r, :len(rows)] = self.item_ids[rows]
            scores[r, :len(rows)] = d[r][keep[r]][:k]
        return ids, scores

    def related(self, item_id, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items nearest to ``item_id`` (itself excluded): ``(ids, scores)``."""
        row = self.row_of(item_id)
        ids, scores = self.search(self.vectors[row:row + 1], k, exclude=[item_id])
        return ids[0], scores[0]

    def homefeed(self, item_ids: Iterable, k: int = 10) -> tuple[np.ndarray, np.ndarray, list]:
        """Items for someone who saved ``item_ids``: nearest to the mean of their vectors (normalised), the saved
        items excluded. Returns ``(ids, scores, unknown)`` where ``unknown`` lists the ids the index lacks; raises
        KeyError when it knows none of them."""
        ids = list(dict.fromkeys(item_ids))
        known = [i for i in ids if i in self._rows.index]
        unknown = [i for i in ids if i not in self._rows.index]
        if not known:
            raise KeyError(f"none of the {len(ids)} saved item(s) is in index version {self.version}: {unknown[:10]}")
        mean = self.vectors[self.rows_of(known)].mean(0)
        mean = mean / max(float(np.linalg.norm(mean)), 1e-12)
        found, scores = self.search(mean[None], k, exclude=known)
        return found[0], scores[0], unknown


def _load_version(vdir: Path, with_faiss: bool = True, mmap: bool = False) -> ItemIndex:
    manifest = json.loads((vdir / MANIFEST).read_text())
    items = pd.read_parquet(vdir / ITEMS_FILE)
    items = items.sort_values("row", kind="stable").reset_index(drop=True)
    vectors = np.load(vdir / VECTORS_FILE, mmap_mode="r" if mmap else None)
    features = {name: load_state(vdir / FEATURES_DIR / file) for name, file in manifest["features"].items()}
    index = None
    if with_faiss:
        import faiss  # faiss: the serve extra

        index = faiss.read_index(str(vdir / FAISS_FILE))
        if manifest["faiss"]["kind"] == "hnsw":
            index.hnsw.efSearch = manifest["faiss"].get("ef_search", 64)
    n = len(items)
    if vectors.shape[0] != n or (index is not None and index.ntotal != n) or \
            not np.array_equal(items["row"].to_numpy(), np.arange(n)):
        raise ValueError(f"{vdir}: items, vectors and FAISS index disagree ({n}, {vectors.shape[0]}, "
                         f"{None if index is None else index.ntotal})")
    return ItemIndex(vdir, manifest, items, vectors, features, index)


def load_index(path: str | Path, with_faiss: bool = True, mmap: bool = False) -> ItemIndex:
    """The live version of the index at ``path`` (CURRENT is read once; a version is complete or not there), or,
    given a version directory (as ``build_index`` returns), that version."""
    path = Path(path)
    if (path / MANIFEST).is_file() and path.parent.name == VERSIONS:
        return _load_version(path, with_faiss, mmap)
    for attempt in range(3):
        name = _read_current(path)
        if name is None:
            raise FileNotFoundError(f"{path}: not an item index, or nothing published yet ({CURRENT} is missing)")
        try:
            return _load_version(path / VERSIONS / name, with_faiss, mmap)
        except FileNotFoundError:
            if attempt == 2 or _read_current(path) == name:  # not pruned under us: really missing
                raise
    raise AssertionError("unreachable")


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


def _update(student_dir, dataset, out, cfg: IndexConfig, reuse: bool) -> Path:
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    student_dir = Path(student_dir).resolve()
    if not (student_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{student_dir}: not a student directory ({CONFIG_FILE} is missing)")
    scfg = StudentConfig.model_validate_json((student_dir / CONFIG_FILE).read_text())
    version_id = model_version(student_dir)
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    out = Path(out)
    _check_out(out)
    with exclusive(out / LOCK, f"{out}: another build or refresh is writing this index"):
        _clean_tmp(out)
        live_name = _read_current(out)
        live_manifest_ = json.loads((out / VERSIONS / live_name / MANIFEST).read_text()) if live_name else None
        reason = None
        if not reuse:
            reason = "build requested"
        elif live_name is None:
            reason = "no live version"
        elif live_manifest_["model_version"] != version_id:
            reason = f"the model changed (live version {live_name} has model " \
                     f"{live_manifest_['model_version'][:12]}, this student is {version_id[:12]})"
        live_items = pd.read_parquet(out / VERSIONS / live_name / ITEMS_FILE) if live_name else None
        # the live vectors and feature states are read only when rows will be copied from them
        live = _load_version(out / VERSIONS / live_name, with_faiss=False) if reason is None else None
        t = time.perf_counter()
        texts = build_item_texts(ds.items, scfg.text)
        ids = texts.index.to_numpy(dtype=object)
        texts = texts.tolist()
        hashes = content_hashes(texts)
        n = len(ids)
        timings["texts_s"] = time.perf_counter() - t

        # the catalogue diff against the live version (reported for full builds too)
        if live_items is not None:
            old_ids = pd.Index(live_items["item_id"].to_numpy(dtype=object))
            old_rows = pd.Series(live_items["row"].to_numpy(np.int64), index=old_ids)
            old_hash = pd.Series(live_items["content_hash"].to_numpy(dtype=object), index=old_ids)
            known = pd.Index(ids).isin(old_ids)
            same = np.zeros(n, bool)
            same[known] = old_hash.loc[ids[known]].to_numpy(dtype=object) == hashes[known]
            counts = {"new": int((~known).sum()), "changed": int((known & ~same).sum()), "unchanged": int(same.sum()),
                      "deleted": int(len(live_items) - known.sum())}
        else:
            same = np.zeros(n, bool)
            counts = {"new": n, "changed": 0, "unchanged": 0, "deleted": 0}
        copy = same if reason is None else np.zeros(n, bool)
        todo = np.flatnonzero(~copy)
        counts.update(embedded=int(len(todo)), copied=int(copy.sum()))
        if reason is not None:
            console.print(f"full build of {n:,} items: {reason}")
        else:
            console.print(f"refresh of version {live_name}: {counts['new']:,} new, {counts['changed']:,} changed, "
                          f"{counts['unchanged']:,} unchanged, {counts['deleted']:,} deleted")

        t = time.perf_counter()
        if len(todo):
            todo_texts = [texts[i] for i in todo]
            if cfg.backend == "ray":
                new_emb, new_states = _embed_ray(str(student_dir), todo_texts, cfg, scfg)
            else:
                new_emb, new_states = _embed_local(str(student_dir), todo_texts, cfg, version_id)
        else:
            new_emb, new_states = np.zeros((0, scfg.dim), np.float32), {}
        timings["embed_s"] = time.perf_counter() - t

        # assemble in dataset order: copied rows first, then embedded ones, then one permutation
        t = time.perf_counter()
        copied = np.flatnonzero(copy)
        order = np.empty(n, np.int64)
        order[copied] = np.arange(len(copied))
        order[todo] = len(copied) + np.arange(len(todo))
        src = old_rows.loc[ids[copied]].to_numpy(np.int64) if len(copied) else np.zeros(0, np.int64)
        vectors = np.concatenate([live.vectors[src] if len(copied) else np.zeros((0, scfg.dim), np.float32),
                                  new_emb.astype(np.float32, copy=False)])[order]
        features = {}
        for name in scfg.features:
            parts = [take_rows(live.features[name], src) if len(copied) else None,
                     new_states.get(name) if len(todo) else None]
            features[name] = take_rows(concat_states(parts), order) if any(p is not None for p in parts) else \
                np.zeros((0, 0), np.float32)
        timings["assemble_s"] = time.perf_counter() - t

        t = time.perf_counter()
        index, kind = build_faiss(vectors, cfg)
        timings["faiss_s"] = time.perf_counter() - t

        t = time.perf_counter()
        names = _version_names(out)
        number = max([int(x) for x in names] + [int(live_name) if live_name else 0]) + 1
        name = str(number)
        manifest = {
            "format": FORMAT, "version": name, "created": dt.datetime.now(dt.timezone.utc).isoformat(),
            "model_version": version_id, "student": str(student_dir),
            "dataset": str(Path(ds.path).resolve()) if ds.path else None,
            "dim": int(scfg.dim), "n_items": n, "text_fields": list(scfg.text.fields),
            "text": scfg.text.model_dump(), "build": "full" if reason else "refresh", "full_build_reason": reason,
            "previous_version": live_name, "counts": counts, "backend": cfg.backend, "bf16": cfg.bf16,
            "faiss": {"kind": kind, "metric": "inner_product", "ef_search": cfg.hnsw_ef_search, "m": cfg.hnsw_m}
            if kind == "hnsw" else {"kind": kind, "metric": "inner_product"},
            "features": {}, "timings_s": {},
        }
        vdir = _write_version(out, name, manifest, ids, hashes, vectors, features, index, timings, t_start, t)
        live = None  # the old version's arrays may be pruned below (nothing mmapped: they were read whole)
        _prune(out, cfg.keep)
    m = json.loads((vdir / MANIFEST).read_text())
    tm = m["timings_s"]
    console.print(f"index version {name}: {n:,} items, {counts['embedded']:,} embedded, {counts['copied']:,} copied, "
                  f"{counts['deleted']:,} dropped in {tm['total_s']:.1f} s (embedding {tm['embed_s']:.1f} s) -> {vdir}")
    return vdir


def _write_version(out: Path, name: str, manifest: dict, ids: np.ndarray, hashes: np.ndarray, vectors: np.ndarray,
                   features: dict, index, timings: dict, t_start: float, t_write: float) -> Path:
    """Write a complete version under a temp name, rename it into versions/, then point CURRENT at it."""
    import faiss  # faiss: the serve extra

    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{name}-", dir=out / VERSIONS))
    try:
        pd.DataFrame({"item_id": pd.Series(ids, dtype=object), "content_hash": pd.Series(hashes, dtype=object),
                      "row": np.arange(len(ids), dtype=np.int64)}).to_parquet(tmp / ITEMS_FILE, index=False)
        np.save(tmp / VECTORS_FILE, np.ascontiguousarray(vectors, dtype=np.float32))
        (tmp / FEATURES_DIR).mkdir()
        for fname, state in features.items():
            manifest["features"][fname] = save_state(tmp / FEATURES_DIR / fname, state)
        faiss.write_index(index, str(tmp / FAISS_FILE))
        timings["write_s"] = time.perf_counter() - t_write
        timings["total_s"] = time.perf_counter() - t_start
        manifest["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _fsync_tree(tmp)
        vdir = out / VERSIONS / name
        os.rename(tmp, vdir)  # the version appears complete or not at all
        _fsync_dir(out / VERSIONS)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_current(out, name)
    return vdir
