"""Which FAISS index for the item vectors: exact (flat) against HNSW and IVF, on real student item vectors.

    .venv/bin/python bench/faiss_choice.py [--world /tmp/world100k] [--items 100000] [--queries 1000] [--k 10]
    .venv/bin/python bench/faiss_choice.py --world /tmp/world1m --index /tmp/bench-index-1m/warm \
        --student /tmp/bench-index-1m/student      # the vectors of an index bench/index.py built (1M items)

Embeds the catalogue's items with the default student's item tower (``new_student(StudentConfig())``, untrained:
the vectors' geometry is the pretrained me5-small's, which is what an index sees before training) and uses
queries' tower vectors as search vectors. For each index: build seconds, bytes per item, single-thread query
latency and recall@k against the exact inner-product search (the flat index). Writes
bench/results/faiss-choice-DATE.json with the machine it ran on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SEARCHREL_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).parent))

from encode import machine_info, write_result  # noqa: E402


def vectors(world: Path, items: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
    from searchrel.annotate.text import build_item_texts
    from searchrel.data.dataset import load_dataset
    from searchrel.student.config import StudentConfig
    from searchrel.student.model import new_student

    ds = load_dataset(world)
    student = new_student(StudentConfig(features=[]))
    texts = build_item_texts(ds.items.head(items), student.config.text).tolist()
    q = ds.queries["text"].tolist()
    q = (q * (queries // len(q) + 1))[:queries]
    q = [f"{t} {i // len(ds.queries)}" if i >= len(ds.queries) else t for i, t in enumerate(q)]  # distinct texts
    return student.embed(texts, "item").astype(np.float32), student.embed(q, "query").astype(np.float32)


def index_vectors(world: Path, index: Path, student_dir: Path, queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Item vectors from a built index (its live version) and query vectors from the student that built it."""
    from searchrel.data.dataset import load_dataset
    from searchrel.index import load_index
    from searchrel.student.model import load_student

    ds = load_dataset(world)
    items = load_index(index, with_faiss=False).vectors
    q = ds.queries["text"].tolist()
    q = (q * (queries // len(q) + 1))[:queries]
    q = [f"{t} {i // len(ds.queries)}" if i >= len(ds.queries) else t for i, t in enumerate(q)]  # distinct texts
    return np.ascontiguousarray(items, np.float32), load_student(student_dir).embed(q, "query").astype(np.float32)


def build(index, items: np.ndarray, train: bool = False) -> float:
    """Train (IVF) and fill ``index``; returns the seconds it took."""
    t = time.perf_counter()
    if train:
        index.train(items)
    index.add(items)
    return time.perf_counter() - t


def measure(name: str, index, build_s: float, queries: np.ndarray, exact: np.ndarray, k: int) -> dict:
    """Single-thread query latency and recall@k of a built ``index`` (the search settings as they are set)."""
    import faiss

    faiss.omp_set_num_threads(1)
    lat = []
    found = np.empty((len(queries), k), np.int64)
    for i in range(len(queries)):
        t = time.perf_counter()
        _, found[i] = index.search(queries[i:i + 1], k)
        lat.append(1000 * (time.perf_counter() - t))
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(found, exact)])
    size = len(faiss.serialize_index(index))
    return {"index": name, "build_s": round(build_s, 2), "bytes_per_item": round(size / index.ntotal, 1),
            "query_p50_ms": round(statistics.median(lat), 3), "query_p99_ms": round(float(np.percentile(lat, 99)), 3),
            f"recall@{k}": round(float(recall), 4)}


def main() -> None:
    import faiss

    from searchrel.index import IndexConfig
    from searchrel.index.build import ivf_lists, ivf_probes

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, default=Path("/tmp/world100k"))
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--index", type=Path, default=None, help="take the item vectors from this built index instead "
                    "of embedding --items of the world (with --student: the student that built it)")
    ap.add_argument("--student", type=Path, default=None, help="with --index: the student whose query tower "
                    "embeds the queries")
    ap.add_argument("--kinds", type=lambda v: set(v.split(",")), default={"hnsw", "ivf", "pq"},
                    help="approximate indexes to measure beside exact search: hnsw,ivf,pq (a million items: "
                    "each takes minutes to build)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if (args.index is None) != (args.student is None):
        ap.error("--index and --student go together")
    t = time.perf_counter()
    items, queries = (index_vectors(args.world, args.index, args.student, args.queries) if args.index else
                      vectors(args.world, args.items, args.queries))
    embed_s = time.perf_counter() - t
    n, dim = items.shape
    flat_s = build(flat := faiss.IndexFlatIP(dim), items)
    _, exact = flat.search(queries, args.k)  # the truth every index is measured against
    nlist = ivf_lists(n)  # as `searchrel index build` makes them
    rows = [measure("flat (exact)", flat, flat_s, queries, exact, args.k)]
    cfg = IndexConfig()  # what `searchrel index build` makes above cfg.hnsw_min_items, then a wider search
    if "hnsw" in args.kinds:  # one graph, searched with two efSearch settings
        index = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = cfg.hnsw_ef_construction
        build_s = build(index, items)
        for ef in (cfg.hnsw_ef_search, 2 * cfg.hnsw_ef_search):
            index.hnsw.efSearch = ef
            rows.append(measure(f"HNSW M={cfg.hnsw_m} efConstruction={cfg.hnsw_ef_construction} efSearch={ef}"
                                + (" (the former default)" if ef == cfg.hnsw_ef_search else ""), index, build_s,
                                queries, exact, args.k))
    if "ivf" in args.kinds:  # one trained index, searched through more and more of its lists
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        build_s = build(index, items, train=True)
        default = ivf_probes(nlist, cfg)
        for nprobe in sorted({8, 32, 64, 128, default}):
            index.nprobe = nprobe
            rows.append(measure(f"IVF-Flat nlist={nlist} nprobe={nprobe}"
                                + (" (the default)" if nprobe == default else ""), index, build_s, queries,
                                exact, args.k))
    if "pq" in args.kinds:
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, 64, 8, faiss.METRIC_INNER_PRODUCT)
        index.nprobe = 32
        rows.append(measure(f"IVF-PQ nlist={nlist} 64x8 bit nprobe=32", index, build(index, items, train=True),
                            queries, exact, args.k))
    res = {"date": dt.date.today().isoformat(), "machine": machine_info(), "items": n, "dim": dim,
           "queries": len(queries), "k": args.k, "embed_s": round(embed_s, 1),
           "vectors": "untrained default student's item tower (me5-small, 4 layers, 256-d, L2-normalised)"
                      + (f", read from the index {args.index}" if args.index else ""),
           "rows": rows}
    lines = [f"{n:,} items, {dim}-d, {len(queries)} queries, k={args.k}:", "",
             "| index | build s | bytes/item | p50 ms | p99 ms | recall@k |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['index']} | {r['build_s']} | {r['bytes_per_item']} | {r['query_p50_ms']} | {r['query_p99_ms']} | "
              f"{r[f'recall@{args.k}']} |" for r in rows]
    write_result(res, "faiss-choice", args.out, "\n".join(lines))


if __name__ == "__main__":
    main()
