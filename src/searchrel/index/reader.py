"""Reading a published index: ``load_index`` reads CURRENT once and loads that version whole (or memory-mapped),
so a reader never sees a half-written one; ``ItemIndex`` gives rows, feature sides and FAISS search (related items,
the home feed).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from searchrel.index.layout import (
    CURRENT,
    FAISS_FILE,
    FEATURES_DIR,
    ITEMS_FILE,
    MANIFEST,
    VECTORS_FILE,
    VERSIONS,
    load_state,
    read_current,
    take_rows,
)
from searchrel.student.model import Side


class ItemIndex:
    """One loaded version of an item index: ids, vectors, feature states and the FAISS index over the vectors."""

    def __init__(self, path: Path, manifest: dict, items: pd.DataFrame, vectors: np.ndarray,
                 features: dict[str, object], faiss_index=None):
        self.path, self.manifest, self.items = Path(path), manifest, items
        self.vectors, self.features, self.faiss = vectors, features, faiss_index
        self.item_ids = items["item_id"].to_numpy(dtype=object)
        self._rows = pd.Series(np.arange(len(items), dtype=np.int64), index=pd.Index(self.item_ids))
        self._row = dict(zip(self.item_ids.tolist(), range(len(self.item_ids))))  # the request path's lookups

    @property
    def version(self) -> str:
        return self.path.name

    @property
    def model_version(self) -> str:
        return self.manifest["model_version"]

    def __len__(self) -> int:
        return len(self.item_ids)

    def __contains__(self, item_id) -> bool:
        return item_id in self._row

    def row_of(self, item_id) -> int:
        try:
            return int(self._rows[item_id])
        except KeyError:
            raise KeyError(f"item {item_id!r} is not in index version {self.version}") from None

    def rows_of(self, item_ids: Iterable) -> np.ndarray:
        row = self._row
        ids = list(item_ids)
        unknown = [i for i in ids if i not in row]
        if unknown:
            raise KeyError(f"{len(unknown)} item(s) not in index version {self.version}: {unknown[:10]}")
        return np.fromiter((row[i] for i in ids), np.int64, len(ids))

    def lookup(self, item_ids: Iterable) -> tuple[np.ndarray, list, list]:
        """In one pass over ``item_ids``: the rows of those the index holds, those ids, and the ids it lacks."""
        row = self._row
        rows, known, unknown = [], [], []
        for i in item_ids:
            r = row.get(i)
            if r is None:
                unknown.append(i)
            else:
                rows.append(r)
                known.append(i)
        return np.asarray(rows, dtype=np.int64), known, unknown

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


def load_version(vdir: Path, with_faiss: bool = True, mmap: bool = False) -> ItemIndex:
    manifest = json.loads((vdir / MANIFEST).read_text())
    items = pd.read_parquet(vdir / ITEMS_FILE)
    items = items.sort_values("row", kind="stable").reset_index(drop=True)
    vectors = np.load(vdir / VECTORS_FILE, mmap_mode="r" if mmap else None)
    files = {file: load_state(vdir / FEATURES_DIR / file) for file in dict.fromkeys(manifest["features"].values())}
    features = {name: files[file] for name, file in manifest["features"].items()}  # a shared file is read once
    index = None
    if with_faiss:
        import faiss  # faiss: the serve extra

        index = faiss.read_index(str(vdir / FAISS_FILE))
        if manifest["faiss"]["kind"] == "hnsw":
            index.hnsw.efSearch = manifest["faiss"].get("ef_search", 64)
        elif manifest["faiss"]["kind"] == "ivf":
            index.nprobe = manifest["faiss"]["nprobe"]
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
        return load_version(path, with_faiss, mmap)
    for attempt in range(3):
        name = read_current(path)
        if name is None:
            raise FileNotFoundError(f"{path}: not an item index, or nothing published yet ({CURRENT} is missing)")
        try:
            return load_version(path / VERSIONS / name, with_faiss, mmap)
        except FileNotFoundError:
            if attempt == 2 or read_current(path) == name:  # not pruned under us: really missing
                raise
    raise AssertionError("unreachable")
