"""Probe candidate query-side-cheap features for the student before building them: how well does each rank alone,
and averaged with the zero-shot cosine the student already carries?

    .venv/bin/python bench/student_features.py --data data/cf [--model me5-small] [--prf-k 5,10,20] [--other-model M]

Every candidate keeps the student's serving contract — a query vector from the zero-shot model (computed online,
cached), item vectors offline — and all but ``other:M`` cost no second query model:

* ``whole`` — the zero-shot cosine with the item's whole text (the student's ``zero_shot`` feature today);
* ``title`` / ``description`` — the same query vector against a vector of that field alone (one more item vector);
* ``prf_<catalogue><k>`` — pseudo-relevance feedback, the teacher's ``prf:`` member on the student's model: the
  item's vector against the mean of the query's ``k`` nearest catalogue vectors (whole texts or titles), an
  item-index search per query at serving time;
* ``other:M`` (with ``--other-model M``) — a second zero-shot model's cosine with the whole text (a second
  transformer pass per query, e.g. an English-only model beside a multilingual one).

Each is scored alone and as a per-query z-score average with ``whole`` (weights 0.3, 0.5, 1): NDCG@8 per split and
language over every judged query. A candidate worth building lifts the average on train and valid in every
language; the test split is reported beside them as a check, not to choose by. Writes
bench/results/student-features-DATE.json with the machine it ran on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SEARCHREL_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).parent))

from encode import machine_info, write_result  # noqa: E402
from teacher_cv import ndcg_and_qwk  # noqa: E402

WEIGHTS = (0.3, 0.5, 1.0)


def prf_cosine(q: np.ndarray, catalogue: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """``[n_queries, n_items]`` cosines of each item with the normalised mean of the query's k nearest catalogue
    vectors."""
    k = min(k, len(catalogue))
    top = np.argpartition(-(q @ catalogue.T), k - 1, axis=1)[:, :k]
    centroid = catalogue[top].mean(1)
    centroid /= np.linalg.norm(centroid, axis=1, keepdims=True) + 1e-12
    return centroid @ items.T


def _ks(value: str) -> list[int]:
    """``--prf-k``: comma-separated positive integers, or a usage error that says so."""
    try:
        ks = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        ks = []
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: give positive integers, comma-separated (e.g. 5,10,20)")
    return ks


def main() -> None:
    import pandas as pd

    from searchrel.annotate.text import TextConfig, build_item_texts, split_item_text
    from searchrel.data.dataset import load_dataset
    from searchrel.models.encode import load_encoder

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="dataset directory")
    ap.add_argument("--model", default="me5-small", help="the student's zero-shot model")
    ap.add_argument("--prf-k", default="5,10,20", type=_ks, help="catalogue neighbours averaged per query, "
                    "comma-separated positive integers")
    ap.add_argument("--other-model", default=None, help="a second zero-shot model (registry name, local path or hub "
                    "id) whose whole-text cosine is a candidate too")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    started = time.perf_counter()
    ds = load_dataset(args.data)
    text = TextConfig.default_for(ds.items)
    texts = build_item_texts(ds.items, text)
    parts = [split_item_text(t, text) for t in texts.tolist()]
    enc = load_encoder(args.model)
    vectors = {"whole": enc.encode(texts.tolist(), kind="passage")}
    for field in ("title", "description"):
        if field in text.fields:  # an item without the field falls back to its whole text, as the teacher does
            vectors[field] = enc.encode([p.get(field) or t for p, t in zip(parts, texts.tolist())], kind="passage")
    queries = enc.encode(ds.queries["text"].tolist(), kind="query")
    if args.other_model:
        other = load_encoder(args.other_model)
        other_items = other.encode(texts.tolist(), kind="passage")
        other_queries = other.encode(ds.queries["text"].tolist(), kind="query")
    encode_s = time.perf_counter() - started

    judged = ds.judgments.assign(split=ds.judgments["query_id"].map(ds.split_of()),
                                 language=ds.judgments["query_id"].map(ds.queries.set_index("query_id")["language"]))
    q_row = judged["query_id"].map({q: i for i, q in enumerate(ds.queries["query_id"])}).to_numpy()
    i_row = judged["item_id"].map({i: n for n, i in enumerate(texts.index)}).to_numpy()
    scores = {name: np.einsum("nd,nd->n", queries[q_row], v[i_row]) for name, v in vectors.items()}
    if args.other_model:
        scores[f"other:{args.other_model}"] = np.einsum("nd,nd->n", other_queries[q_row], other_items[i_row])
    for k in args.prf_k:
        for catalogue in [c for c in ("whole", "title") if c in vectors]:
            sims = prf_cosine(queries, vectors[catalogue], vectors[catalogue], k)
            scores[f"prf_{catalogue}{k}"] = sims[q_row, i_row]
    groups = judged["query_id"].to_numpy()

    def z(x: np.ndarray) -> np.ndarray:
        s = pd.Series(x).groupby(groups)
        return ((pd.Series(x) - s.transform("mean")) / (s.transform("std").fillna(0) + 1e-9)).to_numpy()

    for name in [n for n in scores if n != "whole"]:
        for w in WEIGHTS:
            scores[f"whole+{w}*{name}"] = z(scores["whole"]) + w * z(scores[name])

    rows = []
    splits = [sp for sp in ("train", "valid", "test") if (judged["split"] == sp).any()]
    for name, s in scores.items():
        row = {"feature": name}
        for split in splits:
            sel = (judged["split"] == split).to_numpy()
            metrics = ndcg_and_qwk(judged[sel], s[sel], None, list(ds.info.scale.grades))
            row[f"{split} all"] = round(metrics.pop("ndcg@8"), 4)
            row |= {f"{split} {k.removeprefix('ndcg@8 ')}": round(v, 4) for k, v in metrics.items()}
        rows.append(row)
    res = {"date": dt.date.today().isoformat(), "machine": machine_info(), "data": str(args.data),
           "model": args.model, "other_model": args.other_model, "queries": int(judged["query_id"].nunique()),
           "pairs": len(judged),
           "encode_s": round(encode_s, 1), "rows": rows}
    cols = [c for c in rows[0] if c != "feature"]
    lines = ["| feature | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    lines += [f"| {r['feature']} | " + " | ".join(f"{r.get(c, float('nan')):.4f}" for c in cols) + " |" for r in rows]
    write_result(res, "student-features", args.out, "\n".join(lines))


if __name__ == "__main__":
    main()
