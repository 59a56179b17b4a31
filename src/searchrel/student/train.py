"""Train the student: KL divergence to the teacher's grade distributions, plus cross-entropy on human labels.

Batches are built around items: each step takes ``batch_items`` items with every training pair that names one
of them, runs the item tower once per item and the query tower once per distinct query, and scores all pairs.
So the towers' cost per epoch depends on the number of distinct items and queries, not on the number of pairs,
and a hundred times more distilled pairs costs little more than the human labels alone (see README).
Pair features are computed once before training. With ``head_epochs`` the head — scorer, residual and the towers'
projections — is first trained on the backbones' pooled states (computed once) and the pair features, many epochs
in seconds (linear probing before fine-tuning, LP-FT), and the backbones then start from a head that already uses
what the pooled states and the pair features can give.
Validation picks the best weights — the starting point included, so training can only keep or improve what the
student started as: with distilled labels, NDCG@8 against the teacher on a held-out share of their queries
("teacher-valid", ``teacher_valid_share``), else NDCG@8 on the valid split's human labels. From
``head_average_from`` on, the head scored and kept is the mean of its epochs' weights. A time budget stops cleanly.
"""

from __future__ import annotations

import contextlib
import copy
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from searchrel.annotate.text import build_item_texts
from searchrel.data.dataset import Dataset
from searchrel.distill.label import query_texts
from searchrel.eval.evaluate import EvalConfig, evaluate
from searchrel.eval.grades import fit_thresholds, pair_frame
from searchrel.eval.metrics import ndcg_at_k
from searchrel.models.encode import cpu_has_bf16, default_threads
from searchrel.models.pairs import collate
from searchrel.models.training import Budget, EarlyStopping, warmup_then_decay
from searchrel.progress import console, step
from searchrel.student.config import StudentTrainConfig
from searchrel.student.features import sides
from searchrel.student.model import Side, Student, new_student
from searchrel.student.predict import pair_sides, predict_pairs


def training_rows(ds: Dataset, labels: pd.DataFrame | None, cfg: StudentTrainConfig,
                  human_splits: tuple[str, ...] = ("train",)) -> tuple[pd.DataFrame, np.ndarray]:
    """``query_id, item_id, query, weight, source`` rows and their target distributions: distilled pairs (teacher
    probabilities, weight 1, source ``teacher``) and the human labels of ``human_splits`` (one-hot, weight
    ``human_weight``, source ``human``). ``query`` is the query's text: the dataset's, or the labels' own for queries
    the dataset does not have (pseudo-queries)."""
    grades = cfg.student.scale.grades
    parts, targets = [], []
    if labels is not None and len(labels):
        cols = [f"p_{g}" for g in grades]
        missing = [c for c in cols if c not in labels]
        if missing:
            raise ValueError(f"the labels lack {', '.join(missing)}: were they made by a teacher of this scale?")
        split = labels["query_id"].map(ds.split_of())
        leaked = split.isin(["valid", "test"])
        if leaked.any():
            console.print(f"note: {int(leaked.sum()):,} distilled pairs of valid/test queries left out")
        labels = labels[~leaked]
        parts.append(labels[["query_id", "item_id"]].assign(query=query_texts(ds, labels).to_numpy(), weight=1.0,
                                                            source="teacher"))
        t = labels[cols].to_numpy(np.float32)
        targets.append(t / t.sum(1, keepdims=True))
    if cfg.human_weight > 0 or not parts:
        human = pd.concat([ds.pairs(split) for split in human_splits], ignore_index=True)
        if cfg.train_languages:
            human = human[human["language"].isin(cfg.train_languages)]
        if human.empty and not parts:
            raise ValueError(f"no training data: no distilled labels and no human labels in {'/'.join(human_splits)}")
        parts.append(human[["query_id", "item_id", "query"]].assign(weight=cfg.human_weight if parts else 1.0,
                                                                    source="human"))
        targets.append((np.asarray(grades)[None, :] == human["label"].to_numpy()[:, None]).astype(np.float32))
    rows = pd.concat(parts, ignore_index=True)
    return rows, np.concatenate(targets)


def pair_inputs(student: Student, ds: Dataset, rows: pd.DataFrame
                ) -> tuple[np.ndarray, np.ndarray, list[str], list[str], np.ndarray | None]:
    """What training needs of ``rows`` (``training_rows``): each row's index into the distinct queries and items,
    their texts, and the rows' pair features (None without features) — the student's features fitted on the whole
    catalogue first."""
    texts = build_item_texts(ds.items, student.config.text)
    unknown = ~rows["item_id"].isin(texts.index) | rows["query"].isna()
    if unknown.any():
        raise ValueError(f"{int(unknown.sum())} training pair(s) name a query or item the dataset does not have "
                         "(and the labels give no query text)")
    q_ids, q_row = np.unique(rows["query_id"].to_numpy(), return_inverse=True)
    i_ids, i_row = np.unique(rows["item_id"].to_numpy(), return_inverse=True)
    q_text = rows.drop_duplicates("query_id").set_index("query_id")["query"].loc[q_ids].tolist()
    i_text = texts.loc[i_ids].tolist()
    with step("student pair features", total=None):
        for f in student.features:
            f.fit(texts.tolist())  # catalogue statistics: every item, not only the trained ones
        qs = Side(np.zeros((len(q_ids), 0), np.float32), sides(student.features, q_text, "query"))
        its = Side(np.zeros((len(i_ids), 0), np.float32), sides(student.features, i_text, "item"))
        feats = student.pair_features(qs, q_row, its, i_row)
    return q_row, i_row, q_text, i_text, feats


def item_batches(item_of_row: np.ndarray, batch_items: int, seed: int) -> list[np.ndarray]:
    """Row indices grouped so each batch holds every row of ``batch_items`` distinct items (shuffled by seed)."""
    rng = np.random.default_rng(seed)
    items, inverse = np.unique(item_of_row, return_inverse=True)
    perm = rng.permutation(len(items))
    rank = np.empty_like(perm)
    rank[perm] = np.arange(len(perm))
    batch_of_row = rank[inverse] // batch_items
    order = np.argsort(batch_of_row, kind="stable")
    bounds = np.flatnonzero(np.diff(batch_of_row[order])) + 1
    return np.split(order, bounds)


@dataclass
class TeacherValid:
    """Distilled pairs held out of training to choose on: ``rows`` (indices into the training rows), ``gains`` (the
    teacher's expected grade of each) and ``pairs`` (their ``query_id, item_id``)."""

    rows: np.ndarray
    gains: np.ndarray
    pairs: pd.DataFrame

    def __len__(self) -> int:
        return len(self.rows)

    def ndcg(self, expected: np.ndarray, scale_min: int) -> float | None:
        """Mean NDCG@8 over the held-out queries of a ranking by ``expected`` (one value per held-out row), the
        teacher's expected grades as the gains."""
        frame = self.pairs.assign(_gain=self.gains, _score=expected)
        values = [ndcg_at_k(g["_gain"].to_numpy(), g["_score"].to_numpy(), g["item_id"].to_numpy(), 8, scale_min)
                  for _, g in frame.groupby("query_id", sort=False)]
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None


def teacher_valid(rows: pd.DataFrame, targets: np.ndarray, cfg: StudentTrainConfig) -> TeacherValid:
    """A seeded ``teacher_valid_share`` of the distilled rows' queries, every pair of each; empty when that is fewer
    than ``teacher_valid_min_queries`` queries (or there are no distilled rows)."""
    distilled = (rows["source"] == "teacher").to_numpy()
    queries = np.unique(rows.loc[distilled, "query_id"].to_numpy())
    n = int(round(cfg.teacher_valid_share * len(queries)))
    if n < cfg.teacher_valid_min_queries:
        held = np.zeros(0, np.int64)
    else:
        picked = np.random.default_rng(cfg.seed).choice(queries, n, replace=False)
        held = np.flatnonzero(distilled & rows["query_id"].isin(picked).to_numpy())
    gains = targets[held] @ np.asarray(cfg.student.scale.grades, np.float32)
    return TeacherValid(held, gains, rows.iloc[held][["query_id", "item_id"]].reset_index(drop=True))


def _head_named(student: Student) -> dict[str, torch.nn.Parameter]:
    """Everything trainable outside the backbones, by name: the towers' projections, the scorer and the residual."""
    return {n: p for n, p in student.named_parameters() if p.requires_grad and ".backbone." not in f".{n}"}


def _head_parameters(student: Student) -> list[torch.nn.Parameter]:
    return list(_head_named(student).values())


class HeadAverage:
    """The running mean of the head's weights over the epochs it is updated after (stochastic weight averaging).
    ``applied()`` puts the mean into the student for as long as the ``with`` block lasts (to score it) and puts the
    live weights back after, so training goes on from its own last epoch; ``apply()`` puts the mean in for good."""

    def __init__(self, student: Student):
        self.head = _head_named(student)
        self.mean: dict[str, torch.Tensor] | None = None
        self.n = 0

    def update(self) -> None:
        live = {n: p.detach().clone() for n, p in self.head.items()}
        self.n += 1
        self.mean = live if self.mean is None else {n: m + (live[n] - m) / self.n for n, m in self.mean.items()}

    @torch.no_grad()
    def _copy_in(self, weights: dict[str, torch.Tensor]) -> None:
        for n, p in self.head.items():
            p.copy_(weights[n])

    @contextlib.contextmanager
    def applied(self):
        live = {n: p.detach().clone() for n, p in self.head.items()}
        self._copy_in(self.mean)
        try:
            yield
        finally:
            self._copy_in(live)

    def apply(self) -> None:
        self._copy_in(self.mean)


def pooled_logits(student: Student, q_pool: torch.Tensor, i_pool: torch.Tensor, q_row: torch.Tensor,
                  i_row: torch.Tensor, feats: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor:
    """Grade logits of the training rows ``rows`` from the frozen backbones' pooled states: row ``r`` pairs query
    state ``q_pool[q_row[r]]`` with item state ``i_pool[i_row[r]]``."""
    return student.score(student.query_tower.project(q_pool[q_row[rows]]),
                         student.item_tower.project(i_pool[i_row[rows]]), None if feats is None else feats[rows])


def _valid_metrics(student: Student, ds: Dataset, valid: pd.DataFrame, probs: np.ndarray) -> dict:
    """Overall metrics of the student's grade probabilities on the valid split's pairs."""
    frame = pair_frame(student.config.scale, student.config.thresholds, probs, valid)
    return evaluate(ds, frame, EvalConfig(split="valid"), pairs=valid).overall


def head_epoch(student: Student, opt: torch.optim.Optimizer, q_pool: torch.Tensor, i_pool: torch.Tensor,
               q_row: torch.Tensor, i_row: torch.Tensor, feats: torch.Tensor | None, targets: torch.Tensor,
               weights: torch.Tensor, batch: int, gen: torch.Generator, rows: torch.Tensor | None = None) -> None:
    """One epoch of the head on frozen pooled states: training rows ``rows`` (all when None) in a random order,
    ``batch`` at a time, each row's cross-entropy to its target distribution weighted by ``weights``. Row ``r`` pairs
    query state ``q_pool[q_row[r]]`` with item state ``i_pool[i_row[r]]``."""
    order = torch.randperm(len(q_row) if rows is None else len(rows), generator=gen)
    student.train()
    for b in (order if rows is None else rows[order]).split(batch):
        logits = pooled_logits(student, q_pool, i_pool, q_row, i_row, feats, b)
        ce = torch.sum(-targets[b] * torch.log_softmax(logits, -1), -1)
        loss = (ce * weights[b]).sum() / weights[b].sum()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


def _chosen_on(tv: TeacherValid, valid: pd.DataFrame) -> str | None:
    """Which score the student's epochs and steps are chosen on: ``teacher-valid``, ``valid`` or None (nothing)."""
    return "teacher-valid" if len(tv) else ("valid" if len(valid) else None)


def _train_head(student: Student, ds: Dataset, cfg: StudentTrainConfig, valid: pd.DataFrame, tv: TeacherValid,
                train_rows: np.ndarray, q_row: np.ndarray, i_row: np.ndarray, q_text: list[str], i_text: list[str],
                feats: np.ndarray | None, targets: torch.Tensor, weights: torch.Tensor, bf16: bool,
                history: list[dict], budget: Budget) -> int:
    """Train the head — the scorer, the residual and the towers' projections — on the towers' backbones frozen at
    their start: every query and item's pooled state computed once, then ``head_epochs`` epochs of ``head_batch``
    random pairs of ``train_rows``; from epoch ``head_average_from`` on the candidate is the mean of the weights since
    (SWA). The best candidate on teacher-valid (else valid) is kept; with neither, the last."""
    q_pool = torch.from_numpy(student.embed(q_text, "query", bf16=bf16, pooled=True))
    i_pool = torch.from_numpy(student.embed(i_text, "item", bf16=bf16, pooled=True))
    f_all = None if feats is None else torch.from_numpy(feats)
    if len(valid):
        vq, vq_idx, vi, vi_idx = pair_sides(student, ds, valid, bf16=bf16, pooled=True)  # valid's states, once too
    on = _chosen_on(tv, valid)
    opt = torch.optim.AdamW(_head_parameters(student), lr=cfg.head_lr, weight_decay=cfg.weight_decay)
    q_row_t, i_row_t = torch.from_numpy(q_row), torch.from_numpy(i_row)
    tv_rows = torch.from_numpy(tv.rows)
    early, best = EarlyStopping(), copy.deepcopy(student.state_dict()) if on else None
    gen = torch.Generator().manual_seed(cfg.seed)
    average = HeadAverage(student)
    grades = np.asarray(student.config.scale.grades, np.float32)

    def score(epoch: int) -> None:
        nonlocal best
        if on is None:  # nothing to select on: the last epoch is kept
            return
        metrics: dict = {}
        with torch.no_grad():
            if len(valid):
                qs = Side(student.query_tower.project(torch.from_numpy(vq.emb)).numpy(), vq.features)
                its = Side(student.item_tower.project(torch.from_numpy(vi.emb)).numpy(), vi.features)
                metrics = _valid_metrics(student, ds, valid, student.predict(qs, vq_idx, its, vi_idx))
            if len(tv):
                logits = pooled_logits(student, q_pool, i_pool, q_row_t, i_row_t, f_all, tv_rows)
                metrics["teacher_valid_ndcg@8"] = tv.ndcg(torch.softmax(logits, -1).numpy() @ grades, int(grades[0]))
        history.append({"head_epoch": epoch, "elapsed_s": round(budget.elapsed_s, 1), **metrics})
        if early.update(metrics["teacher_valid_ndcg@8" if on == "teacher-valid" else "ndcg@8"], epoch):
            best = copy.deepcopy(student.state_dict())

    student.eval()
    score(0)
    rows = torch.from_numpy(train_rows)
    with step("training the student's head on frozen backbones", total=cfg.head_epochs) as advance:
        for epoch in range(1, cfg.head_epochs + 1):
            head_epoch(student, opt, q_pool, i_pool, q_row_t, i_row_t, f_all, targets, weights, cfg.head_batch, gen,
                       rows=rows)
            student.eval()
            if cfg.head_average_from and epoch >= cfg.head_average_from:  # the candidate: the mean since then
                average.update()
                with average.applied():
                    score(epoch)
            else:
                score(epoch)
            advance()
            if early.stop(cfg.head_patience) or budget.spent():
                break
    if on is not None:
        student.load_state_dict(best)
        console.print(f"student head: best {on} ndcg@8 {early.best:.4f} after {early.best_step} of {epoch} epochs")
    else:
        if average.mean is not None:  # the last candidate: the mean of the weights
            average.apply()
        console.print(f"student head: nothing to choose an epoch on: kept the last of {epoch} epochs")
    return epoch


def _teacher_valid_ndcg(student: Student, tv: TeacherValid, q_row: np.ndarray, i_row: np.ndarray,
                        q_text: list[str], i_text: list[str], feats: np.ndarray | None, bf16: bool) -> float | None:
    """Teacher-valid NDCG@8 of the whole student (its towers as they are now): each held-out query and item
    embedded once."""
    uq, q_idx = np.unique(q_row[tv.rows], return_inverse=True)
    ui, i_idx = np.unique(i_row[tv.rows], return_inverse=True)
    queries = Side(student.embed([q_text[i] for i in uq], "query", bf16=bf16), {})
    items = Side(student.embed([i_text[i] for i in ui], "item", bf16=bf16), {})
    probs = student.predict(queries, q_idx, items, i_idx, None if feats is None else feats[tv.rows])
    grades = np.asarray(student.config.scale.grades, np.float32)
    return tv.ndcg(probs @ grades, int(grades[0]))


def _optimizer(student: Student, cfg: StudentTrainConfig, total: int):
    tower = [p for n, p in student.named_parameters() if p.requires_grad and ".backbone." in f".{n}"]
    opt = torch.optim.AdamW([{"params": tower, "lr": cfg.lr}, {"params": _head_parameters(student), "lr": cfg.head_lr}],
                            weight_decay=cfg.weight_decay)
    return opt, warmup_then_decay(opt, cfg.warmup, total)


def train_student(ds: Dataset, out: Path, cfg: StudentTrainConfig, labels: pd.DataFrame | None = None) -> Path:
    """Train a student on ``labels`` (teacher soft labels; None: human labels only) into ``out``."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: choose another --out")
    torch.set_num_threads(default_threads())
    bf16 = cpu_has_bf16() if cfg.bf16 is None else cfg.bf16
    cfg = cfg.model_copy(update={"student": cfg.student.model_copy(update={"scale": ds.info.scale})})
    student = new_student(cfg.student, cfg.seed)
    scfg = student.config

    rows, targets = training_rows(ds, labels, cfg)
    tv = teacher_valid(rows, targets, cfg)
    train_rows = np.setdiff1d(np.arange(len(rows)), tv.rows)
    q_row, i_row, q_text, i_text, feats = pair_inputs(student, ds, rows)
    console.print(f"student training data: {len(train_rows):,} pairs ({len(q_text):,} queries, {len(i_text):,} items)"
                  + (f"; {len(tv):,} pairs of {tv.pairs['query_id'].nunique():,} distilled queries held out to "
                     "choose on (teacher-valid)" if len(tv) else ""))
    if feats is not None:
        student.feat_mean.copy_(torch.from_numpy(feats[train_rows].mean(0)))
        student.feat_std.copy_(torch.from_numpy(feats[train_rows].std(0) + 1e-3))  # a constant feature: 1e-3, not 0
    q_tok, i_tok = student.tokenize(q_text, "query"), student.tokenize(i_text, "item")
    weights = torch.from_numpy(rows["weight"].to_numpy(np.float32))
    targets_t = torch.from_numpy(targets)

    valid = ds.pairs("valid")
    on = _chosen_on(tv, valid)
    steps_per_epoch = len(item_batches(i_row[train_rows], cfg.batch_items, 0))
    total = steps_per_epoch * cfg.epochs
    opt, sched = _optimizer(student, cfg, total)
    budget = Budget(cfg.max_minutes)
    history: list[dict] = []
    early, best_state = EarlyStopping(), None
    global_step, seen_pairs, stop = 0, 0, False

    def validate() -> None:
        nonlocal best_state
        if on is None:  # nothing to select on: the latest weights are the best
            best_state, early.best_step = copy.deepcopy(student.state_dict()), global_step
            return
        student.eval()
        metrics = {}
        if len(valid):
            metrics = _valid_metrics(student, ds, valid, predict_pairs(student, ds, valid, bf16=bf16))
        if len(tv):
            metrics["teacher_valid_ndcg@8"] = _teacher_valid_ndcg(student, tv, q_row, i_row, q_text, i_text, feats,
                                                                  bf16)
        history.append({"step": global_step, "elapsed_s": round(budget.elapsed_s, 1), **metrics})
        if early.update(metrics["teacher_valid_ndcg@8" if on == "teacher-valid" else "ndcg@8"], global_step):
            best_state = copy.deepcopy(student.state_dict())
        student.train()

    head_epochs_run = 0
    if cfg.head_epochs:
        head_epochs_run = _train_head(student, ds, cfg, valid, tv, train_rows, q_row, i_row, q_text, i_text, feats,
                                      targets_t, weights, bf16, history, budget)
    validate()  # the starting point (the residual's feature, or the trained head) is a candidate too
    student.train()
    with step(f"training student ({scfg.backbone}, {scfg.layers or 'all'} layers)", total=total) as advance:
        for epoch in range(cfg.epochs):
            # one order per (seed, epoch), of the training rows (teacher-valid's are held out)
            batches = [train_rows[b] for b in item_batches(i_row[train_rows], cfg.batch_items, cfg.seed * 1000 + epoch)]
            for n, b in enumerate(batches):
                uq, uq_inv = np.unique(q_row[b], return_inverse=True)
                ui, ui_inv = np.unique(i_row[b], return_inverse=True)
                q_ids_t, q_mask = collate([q_tok[i] for i in uq], student.tokenizer.pad_token_id)
                i_ids_t, i_mask = collate([i_tok[i] for i in ui], student.tokenizer.pad_token_id)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    q = student.query_tower(q_ids_t, q_mask)
                    d = student.item_tower(i_ids_t, i_mask)
                    logits = student.score(q[torch.from_numpy(uq_inv)], d[torch.from_numpy(ui_inv)],
                                           None if feats is None else torch.from_numpy(feats[b]))
                ce = torch.sum(-targets_t[b] * torch.log_softmax(logits.float(), -1), -1)  # = KL + const
                loss = (ce * weights[b]).sum() / weights[b].sum()
                loss.backward()
                # clip at norm 1, as the teacher does: a guard against a rare exploding batch
                torch.nn.utils.clip_grad_norm_([p for p in student.parameters() if p.requires_grad], 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                global_step += 1
                seen_pairs += len(b)
                advance()
                out_of_time = budget.spent()
                if global_step % cfg.eval_every == 0 or n == len(batches) - 1 or out_of_time:
                    validate()
                    if early.stop(cfg.patience):
                        console.print(f"early stop at step {global_step}")
                        stop = True
                if out_of_time:
                    console.print(f"time budget of {cfg.max_minutes} min spent at step {global_step}")
                    stop = True
                if stop:
                    break
            if stop:
                break
    elapsed = budget.elapsed_s
    student.load_state_dict(best_state)
    student.eval()
    if cfg.fit_thresholds and not valid.empty:  # the grades' cut points: on the human labels
        probs = predict_pairs(student, ds, valid, bf16=bf16)
        student.config.thresholds = fit_thresholds(probs, valid["label"].to_numpy(), scfg.scale)
    student.save(out)
    record = {"config": cfg.model_dump(), "train_pairs": len(train_rows), "distilled_pairs": 0 if labels is None else len(labels),
              "queries": len(q_text), "items": len(i_text), "head_epochs_run": head_epochs_run, "steps": global_step,
              "elapsed_s": round(elapsed, 1),
              "pairs_per_s": round(seen_pairs / elapsed, 1) if elapsed else None,
              "teacher_valid": {"queries": int(tv.pairs["query_id"].nunique()), "pairs": len(tv)},
              "best": {"ndcg@8": early.best, "step": early.best_step, "on": on}, "history": history}
    (out / "train.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    best = "n/a" if early.best is None else f"{early.best:.4f}"
    console.print(f"student (best {on or 'valid'} ndcg@8 {best} at step {early.best_step}) -> {out}")
    return out
