"""Cross-validate the student's head on train+valid (never the test split): does what it learns carry to new queries?

    .venv/bin/python bench/student_cv.py --data data/cf --teacher runs/cf-teacher --labels runs/cf-curve/labels \
        [--factors 0,10] [--hidden 128,1024] [--epochs 12] [--folds 5] [--seed 0] [--human-weight W] \
        [--zero-shot-model embeddinggemma-300m] [--features text_match,zero_shot,zero_shot_product] [--average-from E]

The students choose their head epoch on the valid split: 18 queries per language on CrowdFlower, where the head
gains several points that the test split does not see. This runs the head phase of ``student.train`` (scorer,
residual and the towers' projections on the frozen towers' pooled states and the pair features, ``head_epoch``) in
query-grouped k-fold cross-validation over the train and valid queries: trained on all folds but one — their human
labels (weight ``--human-weight`` beside distilled pairs; at 0 they are only scored) and the teacher's labels of every query but the held-out
fold's (pseudo-queries always) — and scored on the held-out fold's human labels after every epoch. Folds keep a
query's translations together (``group_id``). ``--factors`` picks the curve's distilled subsets (0: human labels
only; N: the first N × the human labels of the curve's labelled pairs, as ``distill curve`` takes them). Epoch 0 is
the student's start: its zero-shot feature through the residual. ``--average-from E`` scores, from epoch E on, the mean
of the head's weights since (as ``head_average_from``); ``--teacher-valid-share S`` holds S of the pseudo-queries out
of every fold's training and also reports the head's NDCG@8 against the teacher's expected grades on them
("teacher-valid", as ``teacher_valid_share``). Reports the folds' mean NDCG@8 after each epoch,
overall and per language; writes bench/results/student-cv-DATE.json with the machine it ran on.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SEARCHREL_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).parent))

from encode import machine_info, write_result  # noqa: E402
from teacher_cv import ndcg_and_qwk  # noqa: E402


def _numbers(kind, least):
    """An argparse type: comma-separated numbers of ``kind``, each at least ``least``."""
    def parse(value: str) -> list:
        try:
            out = [kind(x) for x in value.split(",") if x.strip()]
        except ValueError:
            out = []
        if not out or min(out) < least:
            raise argparse.ArgumentTypeError(f"{value!r}: give numbers of at least {least}, comma-separated")
        return out
    return parse


def cross_validate_head(ds, labels, student_cfg, train_cfg, factor: float, folds: int, epochs: int,
                        sample_seed: int, average_from: int = 0, teacher_valid_share: float = 0.0) -> dict:
    """Mean held-out NDCG@8 per head epoch (``[epochs + 1]``, overall and per language) and each fold's. With
    ``average_from`` E > 0, what is scored after epoch e >= E is the head whose weights are the mean of the weights
    after epochs E..e (stochastic weight averaging), not the last epoch's."""
    import torch

    from searchrel.experiments.curve import distilled_subset
    from searchrel.student.model import new_student
    from searchrel.student.train import (
        HeadAverage,
        _head_parameters,
        head_epoch,
        pair_inputs,
        pooled_logits,
        teacher_valid,
        training_rows,
    )

    subset = None if factor == 0 else distilled_subset(labels, factor, len(ds.judgments), sample_seed)
    rows, targets = training_rows(ds, subset, train_cfg, human_splits=("train", "valid"))
    n_trainable = len(rows)  # rows the folds train on; those appended below are only scored
    if not (rows["source"] == "human").any():  # human_weight 0: the held-out folds' human labels are still scored
        human_rows, human_targets = training_rows(ds, None, train_cfg, human_splits=("train", "valid"))
        rows = pd.concat([rows, human_rows], ignore_index=True)
        targets = np.concatenate([targets, human_targets])
    judged = ds.pairs("all")[["query_id", "item_id", "label", "language"]]
    n = len(rows)
    rows = rows.merge(judged, on=["query_id", "item_id"], how="left")  # label, language: human rows only
    if len(rows) != n:
        raise ValueError("the dataset judges some (query, item) pair twice: deduplicate its judgments first")
    queries = ds.queries.set_index("query_id")
    own = queries.index.to_series()  # a query without a group_id is a group of its own
    group_of = queries["group_id"].where(queries["group_id"].notna(), own) if "group_id" in queries else own
    group_of = group_of.astype(str)
    group = rows["query_id"].map(group_of)
    # the same folds for every factor and width: the train and valid queries' groups in sorted order, permuted
    groups = np.sort(group_of[ds.pairs("train")["query_id"].tolist() + ds.pairs("valid")["query_id"].tolist()].unique())
    fold_of = dict(zip(groups, np.random.default_rng(train_cfg.seed).permutation(len(groups)) % folds))
    fold = group.map(fold_of).fillna(-1).to_numpy()  # -1: pseudo-queries, in every training fold

    start = new_student(student_cfg, train_cfg.seed)  # every fold's student starts as a copy of this one
    rng_after_init = torch.get_rng_state()
    q_row, i_row, q_text, i_text, feats = pair_inputs(start, ds, rows)
    feats = None if feats is None else torch.from_numpy(feats)
    q_pool = torch.from_numpy(start.embed(q_text, "query", bf16=False, pooled=True))
    i_pool = torch.from_numpy(start.embed(i_text, "item", bf16=False, pooled=True))
    q_row_t, i_row_t = torch.from_numpy(q_row), torch.from_numpy(i_row)
    weights = torch.from_numpy(rows["weight"].to_numpy(np.float32))
    targets = torch.from_numpy(targets)
    grades = list(ds.info.scale.grades)
    human = (rows["source"] == "human").to_numpy()
    trainable = np.arange(len(rows)) < n_trainable
    # teacher-valid: held out as the student holds it out (student.train.teacher_valid), from the pseudo-queries only
    # (in no fold; the folds' own queries are scored on their human labels), scored against the teacher's expected
    # grades — how closely the head follows the teacher on queries it has not seen
    pseudo = (fold == -1) & ~human
    tv = teacher_valid(rows.assign(source=np.where(pseudo, "teacher", "fold")), targets.numpy(),
                       train_cfg.model_copy(update={"teacher_valid_share": teacher_valid_share,
                                                    "teacher_valid_min_queries": 1}))
    trainable[tv.rows] = False

    def expected_grade(student, which: np.ndarray) -> np.ndarray:
        """The student's expected grade of the rows ``which``, from the frozen pooled states."""
        with torch.no_grad():
            logits = pooled_logits(student, q_pool, i_pool, q_row_t, i_row_t, feats, torch.from_numpy(which))
            return torch.softmax(logits, -1).numpy() @ np.asarray(grades, np.float32)

    per_fold: list[list[dict]] = []
    for k in range(folds):
        student = copy.deepcopy(start)
        torch.set_rng_state(rng_after_init)  # each fold's dropout draws as a freshly made student's would
        train = torch.from_numpy(np.flatnonzero((fold != k) & trainable))
        held = np.flatnonzero((fold == k) & human)
        if feats is not None:
            student.feat_mean.copy_(feats[train].mean(0))
            student.feat_std.copy_(feats[train].std(0) + 1e-3)
        opt = torch.optim.AdamW(_head_parameters(student), lr=train_cfg.head_lr, weight_decay=train_cfg.weight_decay)
        gen = torch.Generator().manual_seed(train_cfg.seed)
        trace = []
        average = HeadAverage(student)
        for epoch in range(epochs + 1):
            if epoch:
                head_epoch(student, opt, q_pool, i_pool, q_row_t, i_row_t, feats, targets, weights,
                           train_cfg.head_batch, gen, rows=train)
            averaging = bool(average_from) and epoch >= average_from  # score the running mean of the head's weights
            if averaging:
                average.update()
            student.eval()
            with average.applied() if averaging else contextlib.nullcontext():
                trace.append(ndcg_and_qwk(rows.iloc[held], expected_grade(student, held), None, grades))
                if len(tv):
                    trace[-1]["teacher-valid ndcg@8"] = tv.ndcg(expected_grade(student, tv.rows), grades[0])
        per_fold.append(trace)
        print(f"  x{factor:g} fold {k}: " + " ".join(f"{t['ndcg@8']:.4f}" for t in trace), file=sys.stderr)
        if len(tv):
            print(f"  x{factor:g} fold {k}, teacher-valid: "
                  + " ".join(f"{t['teacher-valid ndcg@8']:.4f}" for t in trace), file=sys.stderr)
    keys = list(per_fold[0][0])
    mean = [{key: round(float(np.mean([f[e][key] for f in per_fold])), 4) for key in keys} for e in range(epochs + 1)]
    return {"mean": mean, "folds": [[round(t["ndcg@8"], 4) for t in f] for f in per_fold],
            "folds_teacher_valid": [[round(t["teacher-valid ndcg@8"], 4) for t in f] for f in per_fold]
            if len(tv) else None, "teacher_valid_queries": int(tv.pairs["query_id"].nunique()),
            "training_rows": n_trainable, "queries": len(q_text)}


def load_inputs(ap: argparse.ArgumentParser, args: argparse.Namespace):
    """``args.data``'s dataset, ``args.labels``'s labels and ``args.teacher``'s item-text config; a usage error
    naming what is missing, without a traceback."""
    from searchrel.annotate.text import TextConfig
    from searchrel.data.dataset import load_dataset
    from searchrel.distill.label import read_labels

    teacher_json = args.teacher / "teacher.json"
    if not teacher_json.is_file():
        ap.error(f"{args.teacher}: no teacher.json (give the directory `searchrel teacher train --out` wrote)")
    try:
        ds = load_dataset(args.data)
        labels = read_labels(args.labels)
    except (OSError, ValueError) as e:  # no dataset or labels there: say which
        ap.error(str(e))
    return ds, labels, TextConfig.model_validate(json.loads(teacher_json.read_text())["text"])


def main() -> None:
    from searchrel.student.config import StudentConfig, StudentTrainConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="dataset directory")
    ap.add_argument("--teacher", type=Path, required=True, help="the teacher whose item text the students read")
    ap.add_argument("--labels", type=Path, required=True, help="a curve's labels/ (distill label's output)")
    ap.add_argument("--factors", type=_numbers(float, 0), default=[0.0, 10.0],
                    help="distilled pairs per human label, comma-separated; 0 = human labels only")
    ap.add_argument("--hidden", type=_numbers(int, 1), default=[128], help="scorer widths to compare (scorer_hidden)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="fold assignment and the students' seed")
    ap.add_argument("--sample-seed", type=int, default=0, help="the curve's sampling seed (its distilled subsets)")
    ap.add_argument("--human-weight", type=float, default=None, help="default: the student's")
    ap.add_argument("--zero-shot-model", default=None,
                    help="the frozen model behind the students' zero_shot features (default: the student's)")
    ap.add_argument("--features", default=None, help="the students' pair features, comma-separated (default: the "
                    "student's)")
    ap.add_argument("--average-from", type=int, default=0,
                    help="score the mean of the head's weights over epochs E.. (stochastic weight averaging); 0: off")
    ap.add_argument("--teacher-valid-share", type=float, default=0.0,
                    help="hold this share of the pseudo-queries out of training and score the head against the "
                    "teacher on them after every epoch ('teacher-valid ndcg@8'); 0: off")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.folds < 2 or args.epochs < 1:
        ap.error("--folds must be at least 2 and --epochs at least 1")
    started = time.perf_counter()
    ds, labels, text = load_inputs(ap, args)
    results = []
    for hidden in args.hidden:
        student_cfg = StudentConfig(text=text, scale=ds.info.scale, scorer_hidden=hidden)
        if args.zero_shot_model:
            student_cfg = student_cfg.model_copy(update={"zero_shot_model": args.zero_shot_model})
        if args.features:
            student_cfg = student_cfg.model_copy(update={"features": [f for f in args.features.split(",") if f]})
        train_cfg = StudentTrainConfig(student=student_cfg, seed=args.seed)
        if args.human_weight is not None:
            train_cfg = train_cfg.model_copy(update={"human_weight": args.human_weight})
        for factor in args.factors:
            res = cross_validate_head(ds, labels, student_cfg, train_cfg, factor, args.folds, args.epochs,
                                      args.sample_seed, args.average_from, args.teacher_valid_share)
            results.append({"factor": factor, "scorer_hidden": hidden, **res})
    res = {"date": dt.date.today().isoformat(), "machine": machine_info(), "data": str(args.data),
           "labels": str(args.labels), "folds": args.folds, "epochs": args.epochs, "seed": args.seed,
           "human_weight": train_cfg.human_weight, "zero_shot_model": student_cfg.zero_shot_model,
           "features": student_cfg.features, "average_from": args.average_from,
           "teacher_valid_share": args.teacher_valid_share,
           "minutes": round((time.perf_counter() - started) / 60, 1),
           "results": results}
    langs = [k.removeprefix("ndcg@8 ") for k in results[0]["mean"][0] if k.startswith("ndcg@8 ")]
    lines = ["| student | hidden | start (epoch 0) | best epoch | NDCG@8 there | " + " | ".join(langs)
             + " | last epoch |", "|---|---:|---:|---:|---:|" + "---:|" * len(langs) + "---:|"]
    for r in results:
        trace = r["mean"]
        best = max(range(len(trace)), key=lambda e: trace[e]["ndcg@8"])
        name = "human labels only" if r["factor"] == 0 else f"x{r['factor']:g}"
        per_lang = " | ".join(f"{trace[best][f'ndcg@8 {lang}']:.3f}" for lang in langs)
        lines.append(f"| {name} | {r['scorer_hidden']} | {trace[0]['ndcg@8']:.4f} | {best} | "
                     f"{trace[best]['ndcg@8']:.4f} | {per_lang} | {trace[-1]['ndcg@8']:.4f} |")
    write_result(res, "student-cv", args.out, "\n".join(lines))


if __name__ == "__main__":
    main()
