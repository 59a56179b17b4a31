"""The relevance workbench's logic, without HTTP: one query's candidate pool, ordered by BM25, the student or the
teacher, with each item's text fields and, where the query was judged, the human labels.

**The pool.** Every ranker orders the same candidates, so side-by-side comparisons are fair. A query's pool is
the union of

* ``bm25``: the BM25 top-N over the whole catalogue (bm25s over the exact item text the student reads:
  ``build_item_texts`` with the student's text config; items with no query term are not retrieved);
* ``ann``: the student's top-N from the item index (FAISS over the item-tower vectors, queried with the
  service's cached query vector);
* ``judged``: when the query as typed (NFKC, casefolded, whitespace collapsed) is a judged query of the dataset
  (of the same language, when one is given), the items judged for it, so their human labels can be seen wherever
  a ranker puts them.

With a dataset (``ServeConfig.data``) the catalogue is the dataset's items; index hits the dataset lacks are left
out of the pool (counted in ``pool.dropped``) since neither BM25 nor the teacher has their text; dataset items
the index lacks are scored by the student from their text. Without a dataset the catalogue is the index's items
(which keep no text): only the student ranks, and items have no fields.

**The rankers.** ``bm25``: the BM25 score (no grade probabilities: none are invented); ``student``: expected
grade from ``Service.rerank``; ``teacher``: expected grade from the cross-encoder on (query text, item text)
pairs, the teacher's own text config building the item text. The teacher is loaded once, on first use, and
scores one request at a time (a lock). Ties are broken by item id (``searchrel.eval.metrics.rank_order``), as
offline evaluation does.

**Grading.** With a ratings sheet (``ServeConfig.ratings``), a rater grades the shown items of a query: the typed
query must be a train-split query of the dataset (its text, and its language when one is given, name exactly one
query; a valid or test query is never graded — the grade would leak into evaluation). Each grade goes into the
sheet in the format of ``searchrel.data.ratings`` (one row per rater and pair, a corrected grade replacing the
earlier one), which ``searchrel import ratings`` reads back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from searchrel.annotate.text import build_item_texts, normalise_query
from searchrel.baselines.bm25 import BM25Scorer
from searchrel.data.dataset import load_dataset
from searchrel.data.ratings import upsert_sheet_row
from searchrel.eval.grades import decode_grades
from searchrel.eval.metrics import ndcg_at_k, rank_order
from searchrel.teacher import inference as teacher_inference

RANKERS = ("bm25", "student", "teacher")
SOURCES = ("bm25", "ann", "judged")


class RankerUnavailable(Exception):
    """The ranker cannot run in this server's configuration; the message says why and what would enable it."""


class GradeRejected(ValueError):
    """A grade the workbench cannot take (unknown or held-out query, unknown item, off the scale, no rater)."""


class GradingOff(RuntimeError):
    """The server has no ratings sheet to write grades into."""


class TeacherLoadError(RuntimeError):
    """The teacher's directory looked right at start-up but its model failed to load on first use."""


def _field_value(value):
    """An item field as JSON: a stripped string, a list of non-empty strings, or None when empty."""
    if value is None:
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        out = [str(v).strip() for v in value if v is not None and str(v).strip()]
        return out or None
    if isinstance(value, float) and np.isnan(value):
        return None
    text = str(value).strip()
    return text or None


@dataclass
class Pool:
    """One query's candidates: ids in a fixed order and, per id, which sources retrieved it."""

    ids: list[str]
    sources: dict[str, list[str]]
    dropped: int = 0  # index hits the dataset lacks (no text for BM25 or the teacher)
    labels: dict[str, tuple[int, float | None]] = field(default_factory=dict)  # item -> (human label, variance)
    judged: dict | None = None  # the judged query the typed one matched
    bm25: np.ndarray | None = None  # the query's BM25 score of every catalogue item (computed once)

    def summary(self) -> dict:
        counts = {s: sum(s in v for v in self.sources.values()) for s in SOURCES}
        return {"size": len(self.ids), "sources": counts, "dropped": self.dropped}


@dataclass
class Ranking:
    """A pool ordered by one ranker: ids best first with their scores and, for models, grade probabilities."""

    ranker: str
    ids: list[str]
    scores: np.ndarray
    probs: np.ndarray | None = None  # [n, n_grades]
    grades: np.ndarray | None = None  # decoded grade per item
    ms: float = 0.0

    def rank_of(self) -> dict[str, int]:
        return {i: r for r, i in enumerate(self.ids, 1)}


class Workbench:
    """The workbench over a loaded ``Service`` and, optionally, a dataset and a teacher; thread-safe."""

    def __init__(self, service, data: Path | None = None, teacher: Path | None = None, ratings: Path | None = None):
        self.svc = service
        self.ratings = Path(ratings) if ratings is not None else None  # the sheet grades go into
        self._ratings_lock = threading.Lock()
        self.ds = load_dataset(data) if data is not None else None
        self.scale = self.ds.info.scale if self.ds is not None else service.student.config.scale
        self.grades = np.asarray(self.scale.grades, dtype=float)
        self.bm25 = None
        self.items = None  # the dataset's item table indexed by item_id
        if self.ds is not None:
            items = self.ds.items
            self.catalogue = items["item_id"].astype(str).tolist()
            self.items = items.set_index(items["item_id"].astype(str), drop=False)
            self.field_names = [*self.ds.text_fields, *(["language"] if "language" in items else [])]
            texts = build_item_texts(items, service.student.config.text)  # what the student reads
            self.bm25 = BM25Scorer(texts.tolist())
            self._index_judgments()
        else:
            self.catalogue = [str(i) for i in service.index.item_ids]
            self.field_names = []
            self.judged_queries: dict[str, list[dict]] = {}
            self.judgments: dict[str, dict[str, tuple[int, float | None]]] = {}
            self.item_judgments: dict[str, list[dict]] = {}
        self.position = pd.Series(np.arange(len(self.catalogue)), index=pd.Index(self.catalogue))
        self._catalogue = np.asarray(self.catalogue, dtype=object)
        if self.ratings is not None and self.ds is None:
            raise ValueError("grading (--ratings) needs the dataset: start the server with --data DATASET")
        self.teacher_dir = Path(teacher) if teacher is not None else None
        self.teacher_config = self._check_teacher() if self.teacher_dir is not None else None
        self._teacher = None
        self._teacher_texts: pd.Series | None = None
        self._teacher_lock = threading.Lock()

    # -- setup ----------------------------------------------------------------------------------------
    def _index_judgments(self) -> None:
        ds = self.ds
        split = ds.split_of()
        self.all_queries: dict[str, list[dict]] = {}  # normalised text -> every query with it (for grading)
        for row in ds.queries[["query_id", "text", "language"]].itertuples(index=False):
            self.all_queries.setdefault(normalise_query(row.text), []).append(
                {"query_id": str(row.query_id), "text": row.text, "language": row.language,
                 "split": str(split.get(row.query_id, ""))})
        self.judged_queries = {}
        q = ds.queries[ds.queries["query_id"].isin(ds.judgments["query_id"])]
        for row in q[["query_id", "text", "language"]].itertuples(index=False):
            self.judged_queries.setdefault(normalise_query(row.text), []).append(
                {"query_id": str(row.query_id), "text": row.text, "language": row.language})
        j = ds.judgments
        var = j["rater_variance"] if "rater_variance" in j else pd.Series(np.nan, j.index)
        self.judgments = {}  # query_id -> item_id -> (label, rater variance)
        self.item_judgments = {}  # item_id -> its judgments, for the item view
        queries = ds.queries.set_index("query_id")
        for qid, iid, label, v in zip(ds.judgments["query_id"], ds.judgments["item_id"], ds.judgments["label"], var):
            qid, iid, v = str(qid), str(iid), None if pd.isna(v) else round(float(v), 4)
            self.judgments.setdefault(qid, {})[iid] = (int(label), v)
            self.item_judgments.setdefault(iid, []).append(
                {"query_id": qid, "query": queries.at[qid, "text"], "language": queries.at[qid, "language"],
                 "label": int(label), "variance": v})
        for js in self.item_judgments.values():
            js.sort(key=lambda j: (-j["label"], j["query_id"]))

    def _check_teacher(self):
        path = self.teacher_dir
        cfg = teacher_inference.read_teacher_config(path)
        if self.ds is not None:
            if cfg.scale.grades != self.scale.grades:
                raise ValueError(f"the teacher {path} predicts grades {cfg.scale.min}..{cfg.scale.max} but the "
                                 f"dataset's scale is {self.scale.min}..{self.scale.max}")
            cfg.text.check(self.ds.text_fields)
        return cfg

    # -- what is available ----------------------------------------------------------------------------
    def availability(self) -> dict[str, dict]:
        no_data = "needs item text: start the server with --data DATASET"
        out = {"student": {"available": True, "reason": None}}
        out["bm25"] = {"available": self.bm25 is not None, "reason": None if self.bm25 is not None else no_data}
        if self.teacher_dir is None:
            reason = "no teacher loaded: start the server with --teacher TEACHER_DIR" + \
                     ("" if self.ds is not None else " --data DATASET")
            out["teacher"] = {"available": False, "reason": reason}
        elif self.ds is None:
            out["teacher"] = {"available": False, "reason": no_data}
        else:
            out["teacher"] = {"available": True, "reason": None}
        return {r: out[r] for r in RANKERS}

    def check(self, ranker: str) -> None:
        """Raise ``RankerUnavailable`` (saying why) unless ``ranker`` can run here."""
        if ranker not in RANKERS:
            raise RankerUnavailable(f"unknown ranker {ranker!r}: choose one of {', '.join(RANKERS)}")
        a = self.availability()[ranker]
        if not a["available"]:
            raise RankerUnavailable(f"ranker {ranker!r} is not available: {a['reason']}")

    def languages(self) -> list[str]:
        if self.ds is None:
            return []
        langs = list(self.ds.info.languages) or sorted(set(self.ds.queries["language"].dropna()))
        return [str(x) for x in langs]

    def examples(self, n: int = 12) -> list[dict]:
        """Judged queries to try: the most-judged first, taking turns across languages."""
        if self.ds is None:
            return []
        counts = self.ds.judgments.groupby("query_id").size()
        q = self.ds.queries[self.ds.queries["query_id"].isin(counts.index)].copy()
        q["n_judged"] = q["query_id"].map(counts).astype(int)
        q = q.sort_values(["n_judged", "query_id"], ascending=[False, True])
        q["turn"] = q.groupby("language").cumcount()
        q = q.sort_values(["turn", "n_judged", "query_id"], ascending=[True, False, True]).head(n)
        return [{"query": r.text, "language": r.language, "query_id": r.query_id, "n_judged": int(r.n_judged)}
                for r in q.itertuples(index=False)]

    def info(self) -> dict:
        ds = self.ds
        svc = self.svc
        return {
            "dataset": None if ds is None else {
                "name": ds.info.name, "n_items": len(ds.items),
                "n_judged_queries": int(ds.judgments["query_id"].nunique()),
                "synthetic": bool(ds.info.synthetic), "description": ds.info.description},
            "rankers": self.availability(),
            "default_ranker": "student",
            "languages": self.languages(),
            "fields": self.field_names,
            "fields_note": None if ds is not None else
            "item fields and human labels need the dataset: start the server with --data DATASET",
            "scale": {"grades": self.scale.grades, "names": self.scale.names},
            "examples": self.examples(),
            "grading": {"enabled": self.ratings is not None,
                        "file": None if self.ratings is None else str(self.ratings),
                        "reason": None if self.ratings is not None else
                        "start the server with --data DATASET --ratings FILE.csv to grade items"},
            "teacher": None if self.teacher_dir is None else
            {"path": str(self.teacher_dir), "backbone": Path(self.teacher_config.backbone).name,
             "loaded": self._teacher is not None},
            "model_version": svc.model_version[:12], "index_version": svc.index.version, "index_items": len(svc.index),
            "limits": {"max_k": svc.cfg.max_k, "max_pool": svc.cfg.max_candidates,
                       "max_query_chars": svc.cfg.max_query_chars},
        }

    # -- items ----------------------------------------------------------------------------------------
    def fields(self, item_ids: Sequence[str]) -> dict[str, dict | None]:
        """Each item's text fields (empty ones left out); None for items the dataset lacks or with no dataset."""
        if self.items is None:
            return {i: None for i in item_ids}
        known = [i for i in item_ids if i in self.position.index]
        out: dict[str, dict | None] = {i: None for i in item_ids}
        if known:
            rows = self.items.loc[known, self.field_names].to_dict("records")
            for i, row in zip(known, rows):
                out[i] = {k: v for k, v in ((k, _field_value(v)) for k, v in row.items()) if v is not None}
        return out

    def item(self, item_id: str) -> dict | None:
        """One item: its fields, whether the index holds it, and every judgment of it; None when unknown."""
        in_data = item_id in self.position.index if self.ds is not None else False
        in_index = item_id in self.svc.index
        if not in_data and not in_index:
            return None
        return {"item_id": item_id, "in_index": in_index, "in_dataset": in_data,
                "fields": self.fields([item_id])[item_id], "judgments": self.item_judgments.get(item_id, [])}

    # -- the pool -------------------------------------------------------------------------------------
    def match_judged(self, query: str, language: str | None) -> tuple[dict | None, dict[str, tuple[int, float | None]]]:
        """The judged query (or queries, with no language given) the typed one matches, and their labels."""
        found = self.judged_queries.get(normalise_query(query), [])
        if language:
            found = [q for q in found if q["language"] == language]
        if not found:
            return None, {}
        found = sorted(found, key=lambda q: q["query_id"])
        labels: dict[str, tuple[int, float | None]] = {}
        for q in found:  # the first query's label wins where two judged queries share the text
            for item, lv in self.judgments.get(q["query_id"], {}).items():
                labels.setdefault(item, lv)
        info = {"query_ids": [q["query_id"] for q in found], "text": found[0]["text"],
                "languages": sorted({q["language"] for q in found}), "n_judged": len(labels)}
        return info, labels

    def pool(self, query: str, language: str | None, size: int, include_judged: bool = True) -> Pool:
        """BM25 top-``size`` ∪ student ANN top-``size`` (∪ the judged items of a matching judged query)."""
        sources: dict[str, list[str]] = {}

        def add(ids, source):
            for i in ids:
                sources.setdefault(i, []).append(source)

        qs = self.svc.query_side(query, language)
        ann, _ = self.svc.index.search(qs.emb, size)
        ann_ids = [str(i) for i in ann[0] if i is not None]
        dropped = 0
        if self.ds is not None:
            keep = [i for i in ann_ids if i in self.position.index]
            dropped = len(ann_ids) - len(keep)
            ann_ids = keep
        add(ann_ids, "ann")
        scores = None
        if self.bm25 is not None:
            scores = self.bm25.score_all(query)
            hit = np.flatnonzero(scores > 0)
            top = hit[rank_order(scores[hit], self._catalogue[hit])][:size]
            add(self._catalogue[top].tolist(), "bm25")
        judged, labels = self.match_judged(query, language)
        if include_judged and labels:
            add([i for i in labels if i in self.position.index], "judged")
        pool = Pool(list(sources), sources, dropped, labels, judged, scores)
        if judged is not None:
            judged["n_in_pool"] = sum(i in sources for i in labels)
        return pool

    # -- rankers --------------------------------------------------------------------------------------
    def rank(self, ranker: str, query: str, language: str | None, pool: Pool) -> Ranking:
        """The pool ordered by ``ranker`` (best first, ties by item id)."""
        self.check(ranker)
        t0 = time.perf_counter()
        ids = list(pool.ids)
        probs = grades = None
        if not ids:
            scores = np.zeros(0)
        elif ranker == "bm25":
            bm25 = pool.bm25 if pool.bm25 is not None else self.bm25.score_all(query)
            scores = np.asarray(bm25, dtype=float)[self.position.loc[ids].to_numpy()]
        elif ranker == "student":
            scores, probs, grades = self._student(query, language, ids)
        else:
            scores, probs, grades = self._teacher_scores(query, ids)
        order = rank_order(scores, np.asarray(ids, dtype=object))
        return Ranking(ranker, [ids[j] for j in order], scores[order], None if probs is None else probs[order],
                       None if grades is None else grades[order], 1000 * (time.perf_counter() - t0))

    def _student(self, query: str, language: str | None, ids: list[str]):
        known = [i for i in ids if i in self.svc.index]
        new = [i for i in ids if i not in self.svc.index]  # dataset items the index lacks: scored from their text
        items = []
        if new:
            text_fields = self.svc.student.config.text.fields
            rows = self.items.loc[new, ["item_id", *[f for f in text_fields if f in self.items]]]
            items = [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()}
                     for r in rows.to_dict("records")]
        scored, probs, _ = self.svc.score(query, known, items, language)
        row = {i: r for r, i in enumerate(scored)}
        probs = probs[[row[i] for i in ids]].astype(float)
        cfg = self.svc.student.config
        return probs @ self.grades, probs, decode_grades(probs, cfg.scale, cfg.thresholds)

    def _load_teacher(self):
        """``(model, tokenizer)`` through the one teacher inference path, loaded on first use."""
        if self._teacher is None:  # under self._teacher_lock
            try:
                model, tokenizer = teacher_inference.load_teacher(self.teacher_dir)
            except Exception as e:  # corrupt or mismatched weights: said once per request, retried on the next
                raise TeacherLoadError(f"the teacher {self.teacher_dir} failed to load: {e}") from e
            self._teacher_texts = build_item_texts(self.ds.items, model.config.text).set_axis(self.catalogue)
            self._teacher = model, tokenizer
        return self._teacher

    def _teacher_scores(self, query: str, ids: list[str]):
        with self._teacher_lock:  # loaded once; one request at a time inside the model
            model, tokenizer = self._load_teacher()
            probs = teacher_inference.predict_probs(model, tokenizer, [query] * len(ids),
                                                    self._teacher_texts.loc[ids].tolist(), progress=None)
        probs = probs.astype(float)
        return probs @ self.grades, probs, decode_grades(probs, model.config.scale, model.config.thresholds)

    # -- grading ---------------------------------------------------------------------------------------
    def grading(self, query: str, language: str | None) -> dict:
        """Whether the shown items of ``query`` can be graded here, the query id grades go to, or why not."""
        if self.ratings is None:
            return {"enabled": False, "query_id": None, "reason": "grading is off: start the server with --ratings "
                                                                  "FILE.csv"}
        found = self.all_queries.get(normalise_query(query), [])
        if language:
            found = [q for q in found if q["language"] == language]
        if not found:
            return {"enabled": False, "query_id": None, "reason": "not a query of the dataset: only its train queries "
                                                                  "can be graded"}
        if len(found) > 1:
            langs = ", ".join(sorted({q["language"] for q in found}))
            return {"enabled": False, "query_id": None, "reason": f"the text is a query in several languages "
                                                                  f"({langs}): pick the language"}
        q = found[0]
        if q["split"] != "train":
            return {"enabled": False, "query_id": q["query_id"], "reason": f"{q['query_id']} is a {q['split']} query: "
                    f"grading it would leak into evaluation"}
        return {"enabled": True, "query_id": q["query_id"], "reason": None}

    def grade(self, query_id: str, item_id: str, grade: int, rater: str) -> dict:
        """Save one rater's grade of one pair into the ratings sheet; raise ``GradeRejected`` saying what is wrong."""
        if self.ratings is None:
            raise GradingOff("grading is off: start the server with --data DATASET --ratings FILE.csv")
        rater = rater.strip()
        queries = self.ds.queries.set_index("query_id")
        if query_id not in queries.index:
            raise GradeRejected(f"query_id {query_id!r} is not a query of the dataset")
        split = self.ds.split_of().get(query_id)
        if split != "train":
            raise GradeRejected(f"{query_id} is a {split} query: grading it would leak into evaluation")
        if item_id not in self.position.index:
            raise GradeRejected(f"item_id {item_id!r} is not an item of the dataset")
        if grade not in self.scale.grades:
            raise GradeRejected(f"grade {grade} is off the scale {self.scale.min}..{self.scale.max}")
        if not rater or any(c in rater for c in "\r\n"):
            raise GradeRejected("rater must be a name or an id on one line")
        q = queries.loc[query_id]
        title = self.items.at[item_id, "title"] if "title" in self.items else ""
        row = {"query_id": query_id, "item_id": item_id, "language": q["language"], "query": q["text"],
               "item_title": _field_value(title) or "", "reason": "workbench", "grade": str(grade), "rater": rater}
        with self._ratings_lock:
            n = upsert_sheet_row(self.ratings, row)
        return {"saved": True, "query_id": query_id, "item_id": item_id, "grade": grade, "rater": rater,
                "rows": n, "file": str(self.ratings)}

    # -- the responses --------------------------------------------------------------------------------
    def _items(self, ranking: Ranking, pool: Pool, k: int, other: Ranking | None = None) -> list[dict]:
        top = ranking.ids[:k]
        fields = self.fields(top)
        other_rank = other.rank_of() if other is not None else {}
        keys = [str(g) for g in self.scale.grades]
        out = []
        for r, item in enumerate(top):
            row = {"rank": r + 1, "item_id": item, "score": round(float(ranking.scores[r]), 5),
                   "expected_grade": None, "grade": None, "probabilities": None,
                   "human_label": None, "label_variance": None, "sources": pool.sources.get(item, []),
                   "in_index": item in self.svc.index, "fields": fields[item]}
            if ranking.probs is not None:
                row["expected_grade"] = row["score"]
                row["grade"] = int(ranking.grades[r])
                row["probabilities"] = {g: round(float(p), 5) for g, p in zip(keys, ranking.probs[r])}
            if item in pool.labels:
                row["human_label"], row["label_variance"] = pool.labels[item]
            if other is not None:
                o = other_rank[item]
                row["other_rank"] = o
                row["move"] = o - (r + 1)  # > 0: this many places higher here than in the other ranking
                row["new"] = o > k  # not in the other ranking's top k
            out.append(row)
        return out

    def _judged_metrics(self, ranking: Ranking, pool: Pool, k: int) -> dict | None:
        if not pool.labels:
            return None
        judged = [(j, i) for j, i in enumerate(ranking.ids) if i in pool.labels]
        in_top = sum(1 for j, _ in judged if j < k)
        ndcg = None
        if judged:  # over the judged items of the pool only (the unjudged ones left out, not counted as bad)
            labels = np.array([pool.labels[i][0] for _, i in judged])
            scores = -np.array([j for j, _ in judged], dtype=float)  # this ranking's order
            ndcg = ndcg_at_k(labels, scores, np.array([i for _, i in judged], dtype=object), k, self.scale.min)
        return {"judged_in_pool": len(judged), "judged_in_top_k": in_top, "k": k,
                "ndcg": None if ndcg is None else round(ndcg, 4)}

    def _column(self, ranking: Ranking, pool: Pool, k: int, other: Ranking | None = None) -> dict:
        return {"ranker": ranking.ranker, "items": self._items(ranking, pool, k, other),
                "judged": self._judged_metrics(ranking, pool, k), "timing_ms": round(ranking.ms, 3)}

    def _head(self, query: str, language: str | None, k: int, pool: Pool, started: float, t_pool: float) -> dict:
        return {"query": query, "language": language, "k": k, "pool": pool.summary(), "judged_query": pool.judged,
                "grading": self.grading(query, language),
                "scale": {"grades": self.scale.grades, "names": self.scale.names},
                "model_version": self.svc.model_version[:12], "index_version": self.svc.index.version,
                "timing_ms": {"pool": round(1000 * (t_pool - started), 3)}}

    def search(self, query: str, language: str | None, ranker: str, k: int, pool_size: int,
               include_judged: bool = True) -> dict:
        """The pool ordered by ``ranker``: the top ``k`` with scores, probabilities, fields and human labels."""
        self.check(ranker)
        t0 = time.perf_counter()
        pool = self.pool(query, language, pool_size, include_judged)
        t_pool = time.perf_counter()
        ranking = self.rank(ranker, query, language, pool)
        out = self._head(query, language, k, pool, t0, t_pool)
        col = self._column(ranking, pool, k)
        out.update(ranker=ranker, items=col["items"], judged=col["judged"])
        out["timing_ms"].update(rank=col["timing_ms"], total=round(1000 * (time.perf_counter() - t0), 3))
        return out

    def compare(self, query: str, language: str | None, rankers: Sequence[str], k: int, pool_size: int,
                include_judged: bool = True) -> dict:
        """Two rankers over the same pool, side by side; each item says where the other ranker puts it."""
        a, b = rankers
        self.check(a)
        self.check(b)
        t0 = time.perf_counter()
        pool = self.pool(query, language, pool_size, include_judged)
        t_pool = time.perf_counter()
        ra = self.rank(a, query, language, pool)
        rb = self.rank(b, query, language, pool)
        out = self._head(query, language, k, pool, t0, t_pool)
        cols = [self._column(ra, pool, k, rb), self._column(rb, pool, k, ra)]
        top_a, top_b = ra.ids[:k], rb.ids[:k]
        n = len(pool.ids)
        rho = None
        if n > 1:  # Spearman's rank correlation of the two orders over the whole pool
            rank_b = rb.rank_of()
            d = np.array([r - rank_b[i] for r, i in enumerate(ra.ids, 1)], dtype=float)
            rho = round(1 - 6 * float((d ** 2).sum()) / (n * (n ** 2 - 1)), 4)
        summary = {"overlap": len(set(top_a) & set(top_b)), "same_position": sum(x == y for x, y in zip(top_a, top_b)),
                   "shown": min(k, n), "spearman": rho}
        out.update(rankers=[a, b], columns=cols, summary=summary)
        out["timing_ms"].update(rank={a: round(ra.ms, 3), b: round(rb.ms, 3)},
                                total=round(1000 * (time.perf_counter() - t0), 3))
        return out
