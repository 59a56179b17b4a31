"""An index directory's layout and the pieces every part of the index shares: file names, the build config,
the model version and content hashes, per-feature item state on disk, and the versions directory
(CURRENT, atomic publishing, pruning).

Layout of an index directory::

    CURRENT                  the live version's name (e.g. ``7``), replaced atomically (tmp file + os.replace)
    .lock                    held (flock) by the one build or refresh writing here
    versions/<n>/            one complete version, written as versions/.tmp-<n>-* and renamed when complete
        manifest.json        model version, student, dataset, dim, n_items, item text config, counts, timings
        items.parquet        item_id, content_hash, row (row = position in vectors and in every feature state)
        vectors.npy          float32 [n, dim] L2-normalised student item embeddings
        features/<name>.npy  a feature's item state when it is an array (zero_shot: float32 [n, d])
        features/<name>.npz  ... when it is a scipy sparse matrix (text_match: CSR [n, vocab]); features of one
                             source (zero_shot, zero_shot_product) share one file, named in manifest features
        faiss.index          inner product over the vectors: IndexFlatIP, or IndexIVFFlat from 50k items (a
                             refresh keeps the live version's centroids: manifest faiss.centroids says which)

The model version is the sha256 of the student's ``model.safetensors``, ``student.json`` and ``features.json``
(the fitted feature state — text_match's vocabulary — changes item states too). An item's content hash is the
sha256 of the exact text the student embeds (``build_item_texts`` with the student's text config), so an edit to
a field the model does not read triggers no re-embedding.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from searchrel.io import sha256_named
from searchrel.student.model import CONFIG_FILE, FEATURES_FILE, WEIGHTS_FILE

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
    # auto: exact (flat) below hnsw_min_items, IVF-Flat from there — at 100k items HNSW with the settings below found
    # 67% of the exact top 10, IVF-Flat with nprobe 32 95% in less time (bench/faiss_choice.py); hnsw on request
    faiss: Literal["auto", "flat", "hnsw", "ivf"] = "auto"
    hnsw_min_items: int = 50_000  # where auto leaves exact search (the name predates IVF as the approximate choice)
    # lists searched per query (the lists are 4 * sqrt(items)); None: ivf_probes(nlist), a constant share of them —
    # a fixed 32 found 95% of the exact top 10 at 100k items (1,264 lists) but 90% at 1M (4,000 lists)
    ivf_nprobe: int | None = Field(None, ge=1)
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
    if not sp.issparse(state):
        return state[rows]
    return (state if isinstance(state, sp.csr_matrix) else sp.csr_matrix(state))[rows]


def concat_states(parts: Sequence):
    parts = [p for p in parts if p is not None]
    if any(sp.issparse(p) for p in parts):
        return sp.vstack([sp.csr_matrix(p) for p in parts], format="csr")
    return np.concatenate(parts, axis=0)


# -- the on-disk index -----------------------------------------------------------------------------
def version_names(out: Path) -> list[str]:
    vdir = out / VERSIONS
    if not vdir.is_dir():
        return []
    return sorted((p.name for p in vdir.iterdir() if p.is_dir() and p.name.isdigit()), key=int)


def read_current(out: Path) -> str | None:
    try:
        name = (out / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_current(out: Path, name: str) -> None:
    tmp = out / f".{CURRENT}.tmp"
    with open(tmp, "w") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / CURRENT)  # atomic: a reader sees the old name or the new one
    fsync_dir(out)


def check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(p.name != LOCK for p in out.iterdir())
                                              and not (out / VERSIONS).is_dir())):
        raise FileExistsError(f"{out} exists and is not an item index: use a new output directory")
    (out / VERSIONS).mkdir(parents=True, exist_ok=True)


def clean_tmp(out: Path) -> None:
    """Remove what killed builds left (under the writer lock, so no live writer owns them)."""
    for p in (out / VERSIONS).glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(p, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (out / f".{CURRENT}.tmp").unlink()


def prune(out: Path, keep: int) -> list[str]:
    live = read_current(out)
    names = version_names(out)
    gone = [n for n in names[:-keep] if n != live] if keep < len(names) else []
    for n in gone:
        shutil.rmtree(out / VERSIONS / n, ignore_errors=True)
    return gone


def fsync_tree(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    for d in [path, *(p for p in path.rglob("*") if p.is_dir())]:
        fsync_dir(d)
