"""Probe what more a trained ensemble teacher could use, by query-grouped cross-validation on train+valid (never test).

    .venv/bin/python bench/teacher_probes.py --data data/cf --teacher runs/cf-teacher \
        [--sets "max_neighbour;k5+max_neighbour"] [--seeds 0,1,2] [--mlp]

Scores every judged pair of train and valid with the teacher's members once, then adds candidate features that no
member gives — more signals from the teacher's prf model (EmbeddingGemma by default) and the item's text — one set at
a time (an element ``-PREFIX`` of a set drops the teacher's columns whose names start with PREFIX;
``known_x_embeddings`` and ``lexical_x_embeddings`` are several columns: each embedding feature times the known-word
share, or times "most words known"), and cross-validates the teacher's own linear stacker on v7's features plus each
set (``teacher_cv.py``'s folds and metrics). ``--mlp`` instead cross-validates a residual MLP stacker beside the
linear ranker on the teacher's features alone (one GELU layer, output initialised at zero, the same ListNet + ordinal
loss). Rows 28, 29, 31, 33 and 34 of docs/results.md "A teacher worth distilling" come from this script; writes
bench/results/teacher-probes-DATE.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SEARCHREL_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).parent))

from encode import machine_info, write_result  # noqa: E402
from teacher_cv import cross_validate  # noqa: E402

ALL = ("query_as_document_title;query_as_document_description;prf_description;max_neighbour;weighted_centroid;k5;k20;"
       "k40;rocchio;document_prompt_neighbours;item_neighbourhood;both_neighbourhoods;title_length;description_length;"
       "has_description;title_coverage;title_length+description_length+has_description;"
       "map_bm25+map_coverage+map_all+map_known;map3_bm25+map3_coverage+map3_all+map3_known;"
       "-text_match:+map_bm25+map_coverage+map_all+map_known+map_bm25*known+map_coverage*known+map_all*known;"
       "-text_match:+map3_bm25+map3_coverage+map3_all+map3_known+map3_bm25*known+map3_coverage*known+map3_all*known;"
       "known_x_embeddings;lexical_x_embeddings")
MAP_MIN_SIM = 0.6  # a query word unknown to the catalogue maps to catalogue words at least this similar
MLPS = [(16, 1e-2, 60, 0.0), (16, 1e-1, 60, 0.0), (32, 1e-2, 30, 0.2), (8, 1e-2, 60, 0.0)]  # units, decay, epochs, drop


def mapped_text_match(teacher, enc, queries: list[str], texts: list[str], catalogue: list[str]) -> dict:
    """Text match after cross-lingual term mapping: each query word the catalogue does not know is replaced by its
    nearest catalogue words by the embedding model (words in two or more items; ``map``: the nearest one, ``map3``: up
    to three, weighted by similarity; only those at least ``MAP_MIN_SIM`` similar). A query slot matches an item if
    any of its words does: BM25 (the best word's weight per slot), coverage, all slots, the share of slots known after
    mapping, and the first three gated by that share (as the teacher's ``*known`` columns)."""
    from collections import Counter

    from searchrel.baselines.bm25 import tokenize
    from searchrel.teacher.ensemble import encode_distinct

    tm = teacher.text_match
    df: Counter = Counter()
    for t in catalogue:
        df.update(set(tokenize(t)))
    vocab = [w for w in sorted(tm.vocab) if df[w] >= 2 and w.isalpha() and len(w) > 1]
    V, _ = encode_distinct(enc, vocab, "query")
    vocab_cols = np.array([tm.vocab[w] for w in vocab])
    uq, q_inv = np.unique(np.asarray(queries, dtype=object), return_inverse=True)
    words = [list(dict.fromkeys(tokenize(q))) for q in uq]
    unknown = sorted({w for ws in words for w in ws if w not in tm.vocab})
    U, _ = encode_distinct(enc, unknown, "query")
    sims = U @ V.T
    top = np.argsort(-sims, 1)[:, :3]
    nearest = {w: (vocab_cols[top[i]], sims[i, top[i]]) for i, w in enumerate(unknown)}
    ui, i_inv = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    W = tm.item_side(list(ui)).tocsc()
    out = {}
    for name, m, weighted in (("map", 1, False), ("map3", 3, True)):
        cols = np.zeros((len(queries), 4), np.float32)
        for qi, ws in enumerate(words):
            slots = []
            for w in ws:
                if w in tm.vocab:
                    slots.append((np.array([tm.vocab[w]]), np.ones(1)))
                    continue
                c, s = nearest[w][0][:m], nearest[w][1][:m]
                keep = s >= MAP_MIN_SIM
                if keep.any():
                    slots.append((c[keep], s[keep] if weighted else np.ones(keep.sum())))
            if not slots:
                continue
            rows = np.flatnonzero(q_inv == qi)
            used = np.unique(np.concatenate([c for c, _ in slots]))
            where = {c: j for j, c in enumerate(used)}
            sub = np.asarray(W[:, used][i_inv[rows]].todense())
            bm25, present = np.zeros(len(rows)), np.zeros(len(rows))
            for c, wt in slots:
                v = sub[:, [where[x] for x in c]] * tm.idf[c] * wt
                bm25 += v.max(1)
                present += (v > 0).any(1)
            n = max(1, len(ws))
            cols[rows] = np.stack([np.log1p(bm25), present / n, present == n, np.full(len(rows), len(slots) / n)], 1)
        for j, col in enumerate(("bm25", "coverage", "all", "known")):
            out[f"{name}_{col}"] = cols[:, j]
        for j, col in enumerate(("bm25", "coverage", "all")):
            out[f"{name}_{col}*known"] = cols[:, j] * cols[:, 3]
    return out


def prf_terms(teacher, neighbours: np.ndarray, queries: list[str], texts: list[str], catalogue: list[str],
              terms: int = 10) -> dict:
    """Lexical pseudo-relevance feedback through the embedding model's neighbours (RM3-like, cross-lingual): the
    query's 10 nearest catalogue titles (as the prf member finds them) vote for their words — the share of the
    neighbours holding a word times its IDF —, the top ``terms`` form an expansion query in the catalogue's language,
    and the item is matched against it: ``prf_terms_bm25`` (log1p of the weighted BM25 sum), ``prf_terms_coverage``
    (the weighted share of expansion words the item holds)."""
    import pandas as pd

    from searchrel.baselines.bm25 import tokenize
    from searchrel.teacher.ensemble import title_of

    tm = teacher.text_match
    titles = pd.Series([title_of(t, teacher.config.text) for t in catalogue]).drop_duplicates()
    titles = titles[titles.str.len() > 0].tolist()  # the rows of the prf member's catalogue vectors, in order
    title_terms = [np.unique([tm.vocab[w] for w in tokenize(t) if w in tm.vocab]).astype(np.int64) for t in titles]
    ui, i_inv = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    W = tm.item_side(list(ui)).tocsr()
    uq, first, q_inv = np.unique(np.asarray(queries, dtype=object), return_index=True, return_inverse=True)
    bm25 = np.zeros(len(queries), np.float32)
    coverage = np.zeros(len(queries), np.float32)
    for qi in range(len(uq)):
        votes = np.bincount(np.concatenate([title_terms[j] for j in neighbours[first[qi]]]), minlength=len(tm.vocab))
        weight = votes / neighbours.shape[1] * tm.idf
        top = np.argsort(-weight)[:terms]
        top = top[weight[top] > 0]
        if not len(top):
            continue
        e = weight[top] / weight[top].sum()
        rows = np.flatnonzero(q_inv == qi)
        sub = np.asarray(W[i_inv[rows]][:, top].todense())
        bm25[rows] = np.log1p(sub @ (e * tm.idf[top]))
        coverage[rows] = (sub > 0) @ e
    return {"prf_terms_bm25": bm25, "prf_terms_coverage": coverage}


def candidates(teacher, model: str, queries: list[str], texts: list[str], catalogue: list[str],
               mapped: bool) -> dict[str, np.ndarray]:
    """One column per candidate feature for the pairs (queries[i], texts[i]); ``catalogue``: every item's text;
    ``mapped``: the cross-lingual text match too (it encodes the catalogue's vocabulary: minutes when not cached)."""
    from searchrel.annotate.text import split_item_text
    from searchrel.models.encode import load_encoder
    from searchrel.teacher.ensemble import encode_distinct, prf_file

    enc = load_encoder(model)
    C = np.load(teacher.path / prf_file(model)).astype(np.float32)  # the catalogue's title vectors
    parts = [split_item_text(t, teacher.config.text) for t in texts]
    titles = [p.get("title") or t for p, t in zip(parts, texts)]
    descs = [p.get("description", "") for p in parts]
    q, qi = encode_distinct(enc, queries, "query")
    qd, _ = encode_distinct(enc, queries, "passage")  # the query read with the document prompt
    T, ti = encode_distinct(enc, titles, "passage")
    D, di = encode_distinct(enc, [d or t for d, t in zip(descs, titles)], "passage")

    def norm(v):
        return v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-12)

    def nearest(Q, k):
        s = Q @ C.T
        idx = np.argpartition(-s, k - 1, axis=1)[:, :k]
        return idx, np.take_along_axis(s, idx, 1)

    def pair(A, a, B, b):
        return np.einsum("nd,nd->n", A[a], B[b])

    idx10, s10 = nearest(q, 10)
    centroid = norm(C[idx10].mean(1))
    w = np.exp((s10 - s10.max(1, keepdims=True)) / 0.02)
    w /= w.sum(1, keepdims=True)
    own, _ = nearest(T, 10)  # each item title's 10 nearest catalogue titles
    own_centroid = norm(C[own].mean(1))
    words = [re.findall(r"\w+", x.lower()) for x in titles]
    query_words = [set(re.findall(r"\w+", x.lower())) for x in queries]
    out = {
        "query_as_document_title": pair(qd, qi, T, ti),
        "query_as_document_description": pair(qd, qi, D, di),
        "prf_description": pair(centroid, qi, D, di),
        "max_neighbour": np.max([pair(C[idx10[:, j]], qi, T, ti) for j in range(10)], 0),
        "weighted_centroid": pair(norm((C[idx10] * w[:, :, None]).sum(1)), qi, T, ti),
        "rocchio": pair(norm(C[nearest(norm(q + centroid), 10)[0]].mean(1)), qi, T, ti),
        "document_prompt_neighbours": pair(norm(C[nearest(qd, 10)[0]].mean(1)), qi, T, ti),
        "item_neighbourhood": pair(q, qi, own_centroid, ti),
        "both_neighbourhoods": pair(centroid, qi, own_centroid, ti),
        "title_length": np.log1p([len(x) for x in words]),
        "description_length": np.log1p([len(re.findall(r"\w+", d.lower())) for d in descs]),
        "has_description": np.asarray([d != "" for d in descs], float),
        "title_coverage": np.asarray([np.mean([x in qw for x in ws]) if ws else 0.0
                                      for qw, ws in zip(query_words, words)]),
    }
    for k in (5, 20, 40):
        out[f"k{k}"] = pair(norm(C[nearest(q, k)[0]].mean(1)), qi, T, ti)
    out.update(prf_terms(teacher, idx10[qi], queries, texts, catalogue))  # each pair's query's neighbours
    if mapped:
        out.update(mapped_text_match(teacher, enc, queries, texts, catalogue))
    return {name: np.asarray(v, np.float32) for name, v in out.items()}


def mlp_fit(units: int, decay: float, epochs: int, dropout: float, grades: list[int], ordinal_weight: float):
    """A ``cross_validate`` fit: a linear ranker plus an MLP (zero at the start) on standardised features, ListNet +
    ``ordinal_weight`` x the ordinal likelihood, then the ensemble's ordinal calibration of the score."""
    import torch

    from searchrel.teacher.ensemble import fit_ordinal, train_listwise

    def fit(X, names, y, queries, seed):
        mean, std = X.mean(0), X.std(0) + 1e-6
        Z = torch.tensor((X - mean) / std, dtype=torch.float32)
        torch.manual_seed(seed)
        w = torch.zeros(X.shape[1], requires_grad=True)
        net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], units), torch.nn.GELU(), torch.nn.Dropout(dropout),
                                  torch.nn.Linear(units, 1))
        torch.nn.init.zeros_(net[3].weight)
        train_listwise(Z, y, queries, lambda z: z @ w + net(z).squeeze(-1),
                       lambda ordinal: torch.optim.AdamW([{"params": [w, *ordinal], "weight_decay": 1e-3},
                                                          {"params": net.parameters(), "weight_decay": decay}],
                                                         lr=1e-2),
                       grades, ordinal_weight, epochs, seed)
        net.eval()

        def score(Xn):
            with torch.no_grad():
                Zn = torch.tensor((Xn - mean) / std, dtype=torch.float32)
                return (Zn @ w + net(Zn).squeeze(-1)).numpy()

        ordinal = fit_ordinal(score(X), y, grades)
        return lambda Xn, _names: ordinal(score(Xn))

    return fit


def main() -> None:
    from searchrel.annotate.text import build_item_texts
    from searchrel.data.dataset import load_dataset
    from searchrel.teacher.config import TrainConfig
    from searchrel.teacher.ensemble import EnsembleTeacher

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="dataset directory with train and valid splits")
    ap.add_argument("--teacher", type=Path, required=True, help="a trained ensemble teacher with a prf member")
    ap.add_argument("--sets", default=ALL, help="candidate sets, ';'-separated, each '+'-joined; '' is the teacher")
    ap.add_argument("--seeds", default="0,1,2", help="fold seeds (the stacker's seed too)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--mlp", action="store_true", help="cross-validate the MLP stackers instead of candidate sets")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    teacher = EnsembleTeacher.load(args.teacher)
    prf = [m.source for m in teacher.config.members if m.kind == "prf"]
    if not prf:
        raise SystemExit(f"--teacher {args.teacher}: the probes read a prf member's catalogue vectors; it has none")
    sets = [[c for c in s.split("+") if c] for s in args.sets.split(";")]
    ds = load_dataset(args.data)
    pairs = ds.pairs("all").merge(ds.queries[["query_id", "group_id"]], on="query_id")
    pairs = pairs[pairs["query_id"].map(ds.split_of()).isin(["train", "valid"])].reset_index(drop=True)
    catalogue = build_item_texts(ds.items, teacher.config.text)
    texts = catalogue.loc[pairs["item_id"]].tolist()
    started = time.perf_counter()
    X, names = teacher.features(pairs["query"].tolist(), texts)
    extra = {} if args.mlp else candidates(teacher, prf[0], pairs["query"].tolist(), texts, catalogue.tolist(),
                                            any(c.startswith("map") for s in sets for c in s))
    if not args.mlp and "text_match:known" in names:  # every embedding feature's weight moving with the known share
        known = X[:, names.index("text_match:known")][:, None]
        embedding = X[:, [i for i, n in enumerate(names) if not n.startswith("text_match:")]]
        extra["known_x_embeddings"] = embedding * known
        extra["lexical_x_embeddings"] = embedding * (known > 0.5)
    unknown = sorted({c for s in sets for c in s if not c.startswith("-")} - set(extra)) if not args.mlp else []
    if unknown:
        raise SystemExit(f"--sets: unknown candidates {', '.join(unknown)} (known: {', '.join(sorted(extra))})")
    features_s = time.perf_counter() - started
    seeds = [int(s) for s in args.seeds.split(",")]
    ordinal_weight = TrainConfig().ordinal_weight
    grades = list(ds.info.scale.grades)
    runs = [("teacher's features, linear stacker", X, None, names)]
    if args.mlp:
        runs += [(f"MLP {u} units, weight decay {d:g}, {e} epochs, dropout {p:g}", X,
                  mlp_fit(u, d, e, p, grades, ordinal_weight), names) for u, d, e, p in MLPS]
    else:
        for s in filter(None, sets):
            drop = tuple(c[1:] for c in s if c.startswith("-"))
            kept = [i for i, n in enumerate(names) if not (drop and n.startswith(drop))]
            add = [c for c in s if not c.startswith("-")]
            runs.append((" ".join(("+ " if c in add else "") + c for c in s),
                         np.concatenate([X[:, kept]] + [extra[c].reshape(len(X), -1) for c in add], 1),
                         None, [names[i] for i in kept]))
    rows = []
    for system, Xs, fit, base in runs:
        t = time.perf_counter()
        cols = base + [f"candidate:{i}" for i in range(Xs.shape[1] - len(base))]
        result = cross_validate(pairs, Xs, cols, ds.info.scale, args.folds, seeds, ordinal_weight, fit)
        rows.append({"system": system, "cv_s": round(time.perf_counter() - t, 1), **result})
        print(f"{system}: NDCG@8 {result['ndcg@8']['mean']:.4f}", file=sys.stderr, flush=True)
    res = {"date": dt.date.today().isoformat(), "machine": machine_info(), "data": str(args.data),
           "teacher": str(args.teacher), "members": [m.label for m in teacher.config.members],
           "queries": int(pairs["query_id"].nunique()), "pairs": len(pairs), "folds": args.folds, "seeds": seeds,
           "ordinal_weight": ordinal_weight, "features_s": round(features_s, 1), "rows": rows}
    metrics = [m for m in rows[0] if m.startswith(("ndcg", "qwk"))]
    lines = ["| system | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    lines += [f"| {r['system']} | " + " | ".join(f"{r[m]['mean']:.4f}" for m in metrics) + " |" for r in rows]
    write_result(res, "teacher-probes" + ("-mlp" if args.mlp else ""), args.out, "\n".join(lines))


if __name__ == "__main__":
    main()
