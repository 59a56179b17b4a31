"""Choose the ensemble teacher's members by query-grouped cross-validation on train+valid (never the test split).

    .venv/bin/python bench/teacher_cv.py --data data/cf \
        --sets "fields:embeddinggemma-300m,fields:me5-small,text_match;fields:embeddinggemma-300m,fields:me5-small,prf:embeddinggemma-300m,text_match" \
        [--prf-k 10] [--folds 5] [--seeds 0,1,2] [--ordinal-weight 1] [--train-languages "en;en,es;en,de"]

Trains one ensemble teacher with the union of the sets' members (zero-shot members only: nothing in it learns from
the labels but the stacker), scores every judged pair of train and valid once, then for each member set fits the
stacker (``teacher.ensemble.fit_stacker``, as ``teacher train`` does) on all folds but one and scores the held-out
one; folds keep a query's translations together (``group_id``). QWK cut points are fitted on the training folds.
Reports NDCG@8 per language and QWK per language, the mean over fold seeds and their spread (max − min), and the
same numbers for each zero-shot model's whole-text cosine alone (the bar). ``--train-languages en`` also fits each
set's stacker on the English pairs of the training folds only, so the other languages are ones it never saw labels
in: how the teacher transfers to a new language. Writes
bench/results/teacher-cv-DATE.json with the machine it ran on. The rows of docs/results.md "A teacher worth
distilling" that say "CV" come from this script (an earlier exploratory copy for rows 13–21).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SEARCHREL_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).parent))

from encode import machine_info, write_result  # noqa: E402


def ndcg_and_qwk(pairs, score, grade, grades: list[int]) -> dict[str, float]:
    """Mean NDCG@8 over queries and QWK over pairs, overall and per language."""
    from searchrel.eval.metrics import ndcg_at_k, quadratic_weighted_kappa

    frame = pairs.assign(_s=score, _g=grade)
    per_query = frame.groupby("query_id").apply(
        lambda g: ndcg_at_k(g["label"].to_numpy(), g["_s"].to_numpy(), g["item_id"].to_numpy(), 8, grades[0]),
        include_groups=False)
    language = frame.groupby("query_id")["language"].first()
    out = {"ndcg@8": float(per_query.mean())}
    for lang in sorted(frame["language"].unique()):
        out[f"ndcg@8 {lang}"] = float(per_query[language == lang].mean())
        if grade is not None:
            rows = frame["language"] == lang
            out[f"qwk {lang}"] = quadratic_weighted_kappa(frame.loc[rows, "label"].to_numpy(),
                                                          frame.loc[rows, "_g"].to_numpy().astype(int), grades)
    return out


def cross_validate(pairs, X, names, scale, folds: int, seeds: list[int], ordinal_weight: float, fit=None,
                   train_rows: np.ndarray | None = None) -> dict:
    """Query-grouped k-fold CV of a stacker, the mean and spread over fold seeds. ``fit(X, names, y, queries, seed)``
    returns a function from features to grade probabilities; by default the ensemble's own linear stacker. With
    ``train_rows`` (a mask) the stacker and cut points learn from those rows of the training folds only (e.g. one
    language's), and the held-out folds are scored whole."""
    from searchrel.eval.grades import decode_grades, fit_thresholds
    from searchrel.teacher.ensemble import fit_stacker

    y, queries = pairs["label"].to_numpy(), pairs["query_id"].to_numpy()
    grades = list(scale.grades)
    if fit is None:
        def fit(X_, names_, y_, queries_, seed):
            return fit_stacker(X_, names_, y_, queries_, np.ones(len(y_), bool), set(), grades,
                               ordinal_weight=ordinal_weight, seed=seed).predict
    runs = []
    for seed in seeds:
        groups = pairs["group_id"].unique()
        fold_of = dict(zip(groups, np.random.default_rng(seed).permutation(len(groups)) % folds))
        fold = pairs["group_id"].map(fold_of).to_numpy()
        score, grade = np.zeros(len(pairs)), np.zeros(len(pairs), int)
        for k in range(folds):
            train, held = fold != k, fold == k
            if train_rows is not None:
                train &= train_rows
            predict = fit(X[train], names, y[train], queries[train], seed)
            probs = predict(X[held], names)
            score[held] = probs @ np.asarray(grades, float)
            cuts = fit_thresholds(predict(X[train], names), y[train], scale)
            grade[held] = decode_grades(probs, scale, cuts)
        runs.append(ndcg_and_qwk(pairs, score, grade, grades))
    return {m: {"mean": round(float(np.mean([r[m] for r in runs])), 4),
                "spread": round(float(np.ptp([r[m] for r in runs])), 4)} for m in runs[0]}


def main() -> None:
    from searchrel.annotate.text import TextConfig, build_item_texts
    from searchrel.data.dataset import load_dataset
    from searchrel.teacher.config import TeacherConfig, TrainConfig
    from searchrel.teacher.ensemble import EnsembleTeacher
    from searchrel.teacher.recipe import train_teacher

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="dataset directory with train and valid splits")
    ap.add_argument("--sets", required=True, help="member sets to compare, ';'-separated, each ','-separated")
    ap.add_argument("--prf-k", type=int, default=TrainConfig().prf_k)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seeds", default="0,1,2", help="fold seeds (the stacker's seed too)")
    ap.add_argument("--ordinal-weight", type=float, default=TrainConfig().ordinal_weight)
    ap.add_argument("--train-languages", default="",
                    help="';'-separated language lists, e.g. 'en;en,es': each set is also cross-validated with its "
                         "stacker fitted on these query languages only (the others unseen), scored in every language")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    sets = [[m.strip() for m in s.split(",") if m.strip()] for s in args.sets.split(";") if s.strip()]
    trained = {m for s in sets for m in s if m in ("cross_encoder", "biencoder")}
    if not sets or trained:
        raise SystemExit("--sets: give one or more sets of zero-shot members (fields:, embed:, prf:, text_match)"
                         + (f"; {', '.join(sorted(trained))} learn from the labels and cannot be cross-validated "
                            "here" if trained else ""))
    union = list(dict.fromkeys(m for s in sets for m in s))
    ds = load_dataset(args.data)
    train_languages = [langs for ls in args.train_languages.split(";")
                       if (langs := [x.strip() for x in ls.split(",") if x.strip()])]
    unknown = sorted({x for langs in train_languages for x in langs} - set(ds.queries["language"]))
    if unknown:
        raise SystemExit(f"--train-languages: no queries in {', '.join(unknown)} "
                         f"(the dataset has {', '.join(sorted(set(ds.queries['language'])))})")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        text = TextConfig.default_for(ds.items)  # as `searchrel teacher train` without --fields
        run = train_teacher(ds, Path(tmp) / "t", TrainConfig(members=union, prf_k=args.prf_k,
                                                             teacher=TeacherConfig(text=text)))
        teacher = EnsembleTeacher.load(run)
        pairs = ds.pairs("all").merge(ds.queries[["query_id", "group_id"]], on="query_id")
        pairs = pairs[pairs["query_id"].map(ds.split_of()).isin(["train", "valid"])].reset_index(drop=True)
        texts = build_item_texts(ds.items, teacher.config.text)
        X, names = teacher.features(pairs["query"].tolist(), texts.loc[pairs["item_id"]].tolist())
    features_s = time.perf_counter() - started
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for zero_shot in [n for n in names if n.endswith(":cos") and n.startswith(("fields:", "embed:"))]:
        rows.append({"system": f"zero-shot {zero_shot.removesuffix(':cos')} (whole text)",
                     **{m: {"mean": round(v, 4), "spread": 0.0} for m, v in
                        ndcg_and_qwk(pairs, X[:, names.index(zero_shot)], None, ds.info.scale.grades).items()}})
    for members in sets:
        cols = [i for i, n in enumerate(names) if any(n.startswith(m + ":") for m in members)]
        t = time.perf_counter()
        result = cross_validate(pairs, X[:, cols], [names[i] for i in cols], ds.info.scale, args.folds, seeds,
                                args.ordinal_weight)
        rows.append({"system": ",".join(members), "cv_s": round(time.perf_counter() - t, 1), **result})
        for langs in train_languages:
            t = time.perf_counter()
            result = cross_validate(pairs, X[:, cols], [names[i] for i in cols], ds.info.scale, args.folds, seeds,
                                    args.ordinal_weight, train_rows=pairs["language"].isin(langs).to_numpy())
            rows.append({"system": f"{','.join(members)}, labels of {'+'.join(langs)} only",
                         "cv_s": round(time.perf_counter() - t, 1), **result})
    res = {"date": dt.date.today().isoformat(), "machine": machine_info(), "data": str(args.data),
           "queries": int(pairs["query_id"].nunique()), "pairs": len(pairs), "folds": args.folds, "seeds": seeds,
           "prf_k": args.prf_k, "ordinal_weight": args.ordinal_weight, "features_s": round(features_s, 1),
           "rows": rows}
    metrics = [m for m in rows[-1] if m.startswith(("ndcg", "qwk"))]
    lines = ["| system | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    lines += [f"| {r['system']} | " + " | ".join(f"{r[m]['mean']:.4f}" if m in r else "n/a" for m in metrics) + " |"
              for r in rows]
    write_result(res, "teacher-cv", args.out, "\n".join(lines))


if __name__ == "__main__":
    main()
