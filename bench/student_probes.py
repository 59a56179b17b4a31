"""Probe levers for the student's head before building them, by the query-grouped cross-validation of
``student_cv.py`` (train+valid only, never the test split):

    .venv/bin/python bench/student_probes.py --data data/cf --teacher runs/cf-teacher --labels runs/cf-curve/labels \
        --probe item-offset [--lr 2e-4]
    .venv/bin/python bench/student_probes.py ... --probe prf [--k 20] [--gate none|both|only] [--exclude-source]

* ``item-offset`` — an offline item memory: every item of the training pairs gets a free vector (zeros at the start,
  its own learning rate ``--lr``) added to its projected item vector before normalising, trained by the head's
  epochs on the teacher's labels. Served, it would be stored with the item's vector in the index.
* ``prf`` — pseudo-relevance feedback through the students' zero-shot model as a new pair feature
  (``zero_shot_prf``): the item's title vector against the centroid of the query's ``--k`` nearest catalogue titles
  (the teacher's ``prf:`` member on me5-small; served, one more nearest-neighbour search per query, cacheable).
  ``--gate both`` adds the feature times the query's known-word share (as ``text_match_gated`` does), ``--gate
  only`` keeps that product alone; ``--exclude-source`` leaves each pseudo-query's own source title out of its
  neighbours (the pseudo-queries made again with the sample's seed, as ``distill sample`` made them).

Each probe changes the head as ``student.train`` builds it (patching its ``pair_inputs`` / ``pooled_logits`` /
``_head_parameters``, or registering the feature) and runs ``student_cv.cross_validate_head`` for each
``--factors`` (default: 10, then 0 = the human-only head), head averaged from ``--average-from`` (3), ``--epochs``
head epochs (14; 12 for the human-only head). Reports the folds' mean NDCG@8 after each epoch and its mean over
epochs 3 and after, overall and per language; writes bench/results/student-probes-DATE.json with the machine.
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
from student_cv import _numbers, cross_validate_head, load_inputs  # noqa: E402

DEFAULT_FEATURES = ["text_match_gated", "zero_shot", "zero_shot_product"]


def patch_item_offset(lr: float) -> None:
    """Give the head a learned offset per item (added to the projected item vector, then normalised)."""
    import torch
    from torch import nn

    import searchrel.student.train as T

    pair_inputs, head_parameters = T.pair_inputs, T._head_parameters

    def with_offsets(student, ds, rows):
        out = pair_inputs(student, ds, rows)
        student.item_offset = nn.Parameter(torch.zeros(len(out[3]), student.config.dim))  # one row per item
        return out

    def logits(student, q_pool, i_pool, q_row, i_row, feats, rows):
        d = student.item_tower.project(i_pool[i_row[rows]]) + student.item_offset[i_row[rows]]
        return student.score(student.query_tower.project(q_pool[q_row[rows]]), nn.functional.normalize(d, dim=-1),
                             None if feats is None else feats[rows])

    def groups(student):
        offset = student.item_offset
        return [{"params": [p for p in head_parameters(student) if p is not offset]},
                {"params": [offset], "lr": lr}]

    T.pair_inputs, T.pooled_logits, T._head_parameters = with_offsets, logits, groups


def register_prf(text, k: int, gate: str, sources: dict[str, str]) -> str:
    """Register the ``zero_shot_prf`` student feature; ``sources``: pseudo-query text -> its source item's title,
    left out of that query's neighbours. Returns the feature's name."""
    from searchrel.annotate.text import split_item_text
    from searchrel.models.encode import load_encoder
    from searchrel.student.features import TextMatchGated, register

    catalogue: dict[str, object] = {}

    def titles(texts) -> list[str]:
        return [split_item_text(t, text).get("title") or t for t in texts]

    class ZeroShotPrf:
        size = 1 if gate != "both" else 2
        needs_model, query_cached, source = True, True, "zero_shot_prf"

        def __init__(self, state, model: str = "me5-small", **_):
            self.model = model

        def fit(self, item_texts):
            names = list(dict.fromkeys(titles(item_texts)))
            catalogue["vectors"] = load_encoder(self.model).encode(names, kind="passage")
            catalogue["row"] = {t: i for i, t in enumerate(names)}
            self.text_match = TextMatchGated({}).fit(list(item_texts))
            return self

        def state(self) -> dict:
            return {}

        def item_side(self, texts):
            return load_encoder(self.model).encode(titles(texts), kind="passage")

        def query_side(self, queries):
            queries = list(queries)
            q = load_encoder(self.model).encode(queries, kind="query")
            sims = q @ catalogue["vectors"].T
            for r, t in enumerate(queries):
                if t in sources:
                    sims[r, catalogue["row"][sources[t]]] = -np.inf
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            centroid = catalogue["vectors"][top].mean(1)
            centroid /= np.linalg.norm(centroid, axis=1, keepdims=True) + 1e-12
            known = np.array([len(cols) / n for cols, n in self.text_match.query_side(queries)], np.float32)
            return centroid, known

        def pairs(self, qside, q_idx, iside, i_idx):
            centroid, known = qside
            prf = np.einsum("nd,nd->n", centroid[q_idx], iside[i_idx]).astype(np.float32)
            gated = prf * known[q_idx]
            return {"none": prf[:, None], "both": np.stack([prf, gated], 1), "only": gated[:, None]}[gate]

    return register("zero_shot_prf")(ZeroShotPrf).name


def pseudo_sources(ds, labels, text) -> dict[str, str]:
    """Each labelled pseudo-query's text -> the title of the item it was cut from (made again with the sample's seed
    and held-out texts, as ``distill sample`` made them; a mismatch with the labels' texts is an error)."""
    from searchrel.annotate.text import build_item_texts, split_item_text
    from searchrel.distill.config import SampleConfig
    from searchrel.distill.pseudo import PREFIX, pseudo_queries

    made_for = labels[labels["query_id"].str.startswith(PREFIX)].drop_duplicates("query_id")[["query_id", "query"]]
    trained = ds.queries["query_id"].isin(ds.pairs("train")["query_id"].unique())
    made = pseudo_queries(ds.items, len(made_for), SampleConfig().seed, exclude=set(ds.queries.loc[~trained, "text"]))
    both = made_for.merge(made, on="query_id")
    if len(both) != len(made_for) or (both["query"] != both["text"]).any():
        raise SystemExit("--exclude-source: the pseudo-queries made again differ from the labels' (another sample "
                         "seed or split?)")
    texts = build_item_texts(ds.items, text)
    title = {i: split_item_text(t, text).get("title") or t for i, t in texts.items()}
    return {q: title[i] for q, i in zip(both["query"], both["item_id"])}


def main() -> None:
    from searchrel.student.config import StudentConfig, StudentTrainConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="dataset directory")
    ap.add_argument("--teacher", type=Path, required=True, help="the teacher whose item text the students read")
    ap.add_argument("--labels", type=Path, required=True, help="a curve's labels/ (distill label's output)")
    ap.add_argument("--probe", choices=["item-offset", "prf"], required=True)
    ap.add_argument("--lr", type=float, default=2e-4, help="item-offset: the offsets' learning rate")
    ap.add_argument("--k", type=int, default=20, help="prf: catalogue titles averaged per query")
    ap.add_argument("--gate", choices=["none", "both", "only"], default="none", help="prf: the known-word gate")
    ap.add_argument("--exclude-source", action="store_true", help="prf: a pseudo-query's source title is not among "
                    "its neighbours")
    ap.add_argument("--factors", type=_numbers(float, 0), default=[10.0, 0.0])
    ap.add_argument("--epochs", type=int, default=14, help="head epochs (the human-only head: 12)")
    ap.add_argument("--average-from", type=int, default=3)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.folds < 2 or args.epochs < 1 or args.k < 1 or args.lr <= 0:
        ap.error("--folds must be at least 2, --epochs and --k at least 1, --lr positive")
    started = time.perf_counter()
    ds, labels, text = load_inputs(ap, args)
    features = list(DEFAULT_FEATURES)
    if args.probe == "item-offset":
        patch_item_offset(args.lr)
    else:
        sources = pseudo_sources(ds, labels, text) if args.exclude_source else {}
        features.append(register_prf(text, args.k, args.gate, sources))
    student_cfg = StudentConfig(text=text, scale=ds.info.scale, features=features)
    train_cfg = StudentTrainConfig(student=student_cfg, seed=args.seed)
    results = []
    for factor in args.factors:
        epochs = args.epochs if factor else min(args.epochs, 12)
        res = cross_validate_head(ds, labels, student_cfg, train_cfg, factor, args.folds, epochs, 0,
                                  average_from=args.average_from)
        late = res["mean"][3:] or res["mean"]
        res["mean_from_epoch_3"] = {key: round(float(np.mean([e[key] for e in late])), 4) for key in late[0]}
        results.append({"factor": factor, **res})
    res = {"date": dt.date.today().isoformat(), "machine": machine_info(), "data": str(args.data),
           "labels": str(args.labels), "probe": args.probe, "lr": args.lr, "k": args.k, "gate": args.gate,
           "exclude_source": args.exclude_source, "features": features, "folds": args.folds,
           "average_from": args.average_from, "seed": args.seed,
           "minutes": round((time.perf_counter() - started) / 60, 1), "results": results}
    langs = [k.removeprefix("ndcg@8 ") for k in results[0]["mean"][0] if k.startswith("ndcg@8 ")]
    lines = ["| student | mean of epochs 3+ | " + " | ".join(langs) + " | best epoch | NDCG@8 there |",
             "|---|---:|" + "---:|" * len(langs) + "---:|---:|"]
    for r in results:
        m, trace = r["mean_from_epoch_3"], r["mean"]
        best = max(range(len(trace)), key=lambda e: trace[e]["ndcg@8"])
        name = "human labels only" if r["factor"] == 0 else f"x{r['factor']:g}"
        lines.append(f"| {name} | {m['ndcg@8']:.4f} | " + " | ".join(f"{m[f'ndcg@8 {lang}']:.3f}" for lang in langs)
                     + f" | {best} | {trace[best]['ndcg@8']:.4f} |")
    write_result(res, "student-probes", args.out, "\n".join(lines))


if __name__ == "__main__":
    main()
