"""The serving core, without HTTP: re-rank candidates with the student, find related items, build a home feed.

Item sides (tower vectors and feature state) come from the offline index; the query side — the student's query
tower (ONNX Runtime by default) and, when the student uses it, the zero-shot model's query vector — comes from a
cache keyed by normalised query text and language, computed on a miss. Candidates the index lacks can be sent
with their text: their item side is computed in the request. The relevance workbench (``searchrel.serve.workbench``,
enabled further by ``ServeConfig.data`` and ``.teacher``) builds on this: its pools come from ``query_side`` and the
index, and its student ranking is ``rerank``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from searchrel.annotate.text import build_item_texts
from searchrel.eval.grades import decode_grades
from searchrel.index import ItemIndex, load_index, model_version
from searchrel.index.layout import read_current
from searchrel.serve.cache import CachedQueryEncoder, make_cache
from searchrel.serve.onnx_tower import QueryEmbedder
from searchrel.serve.scoring import NumpyScorer
from searchrel.student.model import Side, load_student


class ServeConfig(BaseModel):
    """What the service loads and the limits it enforces."""

    index: Path
    student: Path
    data: Path | None = None  # a dataset, for the workbench: item fields, human labels, BM25 and teacher views
    teacher: Path | None = None  # the workbench's teacher view
    ratings: Path | None = None  # the workbench's grades go into this rating sheet (CSV; searchrel import ratings)
    onnx: bool = True  # query side on ONNX Runtime: the query tower and the zero_shot feature's model (False: PyTorch)
    int8: bool = False  # both query-side ONNX models dynamically quantised to int8
    cache: str | None = "memory"  # memory, off, or redis://host:port/db
    cache_items: int = 100_000
    cache_ttl_s: float = 3600.0
    max_candidates: int = 1000
    max_query_chars: int = 512
    max_new_items: int = 64  # candidates sent with text (embedded in the request)
    max_k: int = 200
    max_body_bytes: int = 1_000_000
    body_timeout_s: float = 10.0  # a /v1 body must arrive within this (slow clients get 408)
    max_inflight: int = 2  # requests computing at once (the CPU's cores)
    index_check_s: float = 1.0  # how often a request may look for a newly published index version (0: never)
    max_queue: int = 64  # requests waiting beyond that; more are shed with 503
    workbench_queue: int = 4  # workbench searches waiting for their own lane (one computes at a time)


class Service:
    """Loaded student + index + query cache; every method is safe to call from several threads."""

    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg
        self.student = load_student(cfg.student)
        self.index = load_index(cfg.index)
        version = model_version(cfg.student)
        if self.index.model_version != version:
            raise ValueError(f"index {cfg.index} (version {self.index.version}) was built with another student "
                             f"(model {self.index.model_version[:12]}, this one {version[:12]}): "
                             f"run `searchrel index refresh {cfg.student} DATASET --out {cfg.index}`")
        self.model_version = version
        self._index_lock = threading.Lock()  # one reload at a time; requests never wait on it
        self._index_checked = time.monotonic()
        self.index_errors: list[str] = []  # versions that could not be served (another model, unreadable)
        self.embedder = QueryEmbedder(self.student, cfg.student, cfg.onnx, cfg.int8)
        self.queries = CachedQueryEncoder(self.embedder, make_cache(cfg.cache, cfg.cache_items, cfg.cache_ttl_s),
                                          namespace=self.embedder.fingerprint)
        self.grades = self.student.config.scale.grades
        self.scorer = NumpyScorer(self.student)
        self._lock = threading.Lock()  # the student's item tower (new items sent with text): one at a time in torch
        self.started = time.time()

    # -- query side ---------------------------------------------------------------------------------
    def query_side(self, query: str, language: str | None = None) -> Side:
        tower, cached = self.embedder.split(self.queries.encode([query], [language]))
        # the other features are cheap text features: computed per request from the query as typed
        feats = {f.name: cached[f.name] if f.query_cached else f.query_side([query]) for f in self.student.features}
        return Side(tower, feats)

    # -- endpoints' work ----------------------------------------------------------------------------
    def score(self, query: str, item_ids: Sequence[str], items: Sequence[dict] | None = None,
              language: str | None = None) -> tuple[list[str], np.ndarray, list[str]]:
        """Grade probabilities of the candidates, unrounded: ``(ids, probs [n, grades], unknown ids)``.

        ``item_ids`` are scored from the index (duplicates once, unknown ones reported), ``items`` (dicts with an
        ``item_id`` and text fields) from their text; ``ids`` lists the scored rows in that order."""
        return self._score(query, item_ids, items, language)[:3]

    # -- the index: a newly published version is picked up between requests -------------------------
    def current_index(self) -> ItemIndex:
        """The index version to answer one request with; at most every ``index_check_s``, one request looks at
        CURRENT and, when a new version was published, loads it and swaps it in. A request holds the version it
        started with throughout, so no answer mixes two versions; a version that cannot be served (another
        student's, unreadable) is reported in ``index_errors`` and the live one stays."""
        index = self.index
        now = time.monotonic()
        if not self.cfg.index_check_s or now - self._index_checked < self.cfg.index_check_s:
            return index
        if not self._index_lock.acquire(blocking=False):  # another request is already looking
            return index
        try:
            self._index_checked = now
            name = read_current(Path(self.cfg.index))
            if name is None or name == index.version:
                return index
            try:
                new = load_index(self.cfg.index)
                if new.model_version != self.model_version:
                    raise ValueError(f"built with another student (model {new.model_version[:12]})")
            except (OSError, ValueError) as e:
                message = f"index version {name} not served: {e}"
                if message not in self.index_errors:
                    self.index_errors.append(message)
                return index
            self.index = new
            return new
        finally:
            self._index_lock.release()

    def _score(self, query, item_ids, items, language):
        index = self.current_index()
        # one answer row per id: an id sent with text is scored from that text (the last text given for it), even
        # when the index holds it or item_ids names it too; the other ids are scored from the index, once each
        sent = {str(item["item_id"]): item for item in items or []}
        rows, known, unknown = index.lookup(i for i in dict.fromkeys(item_ids) if i not in sent)
        new = list(sent.values())
        t0 = time.perf_counter()
        qs = self.query_side(query, language)
        t_query = time.perf_counter() - t0
        probs_parts, out_ids = [], []
        if known:  # NumPy only: no lock, any number of requests at once
            probs_parts.append(self.scorer.predict(qs, np.zeros(len(rows), np.int64), index.side(rows),
                                                   np.arange(len(rows))))
            out_ids += known
        if new:
            frame = pd.DataFrame(new)
            frame["item_id"] = frame["item_id"].astype(str)
            for col in self.student.config.text.fields:
                if col not in frame:
                    frame[col] = None
            texts = build_item_texts(frame, self.student.config.text)
            with self._lock:  # the item tower runs in PyTorch: one request at a time inside it
                side = self.student.side(texts.tolist(), "item")
            probs_parts.append(self.scorer.predict(qs, np.zeros(len(texts), np.int64), side, np.arange(len(texts))))
            out_ids += frame["item_id"].tolist()
        probs = np.concatenate(probs_parts) if probs_parts else np.zeros((0, len(self.grades)), np.float32)
        return out_ids, probs, unknown, t_query, index.version

    def rerank(self, query: str, item_ids: Sequence[str], items: Sequence[dict] | None = None,
               language: str | None = None, top_k: int | None = None, probabilities: bool = True) -> dict:
        """Candidates ordered by expected grade with their grade probabilities (``probabilities=False``: without
        them, a leaner answer); unknown ids are reported."""
        t0 = time.perf_counter()
        out_ids, probs, unknown, t_query, index_version = self._score(query, item_ids, items, language)
        expected = probs @ np.asarray(self.grades, dtype=float)
        order = np.argsort(-expected, kind="stable")[: top_k or len(expected)]
        decoded = decode_grades(probs[order], self.student.config.scale, self.student.config.thresholds).tolist()
        # rounded to 5 decimals in NumPy (the same doubles Python's round gives: checked on millions of values)
        scores = np.round(expected[order], 5).tolist()
        rows = order.tolist()
        if probabilities:
            keys = [str(g) for g in self.grades]
            rounded = np.round(probs[order].astype(np.float64), 5).tolist()
            ranked = [{"item_id": out_ids[i], "score": s, "grade": g, "probabilities": dict(zip(keys, p))}
                      for i, s, g, p in zip(rows, scores, decoded, rounded)]
        else:
            ranked = [{"item_id": out_ids[i], "score": s, "grade": g} for i, s, g in zip(rows, scores, decoded)]
        done = time.perf_counter()
        return {"query": query, "language": language, "items": ranked, "unknown_item_ids": unknown,
                "model_version": self.model_version[:12], "index_version": index_version,
                "timing_ms": {"query": round(1000 * t_query, 3), "total": round(1000 * (done - t0), 3)}}

    def related(self, item_id: str, k: int) -> list[dict]:
        ids, scores = self.current_index().related(item_id, k)
        return [{"item_id": i, "similarity": round(float(s), 5)} for i, s in zip(ids, scores) if i is not None]

    def homefeed(self, item_ids: Sequence[str], k: int) -> tuple[list[dict], list[str]]:
        ids, scores, unknown = self.current_index().homefeed(item_ids, k)
        return [{"item_id": i, "similarity": round(float(s), 5)} for i, s in zip(ids, scores) if i is not None], unknown

    def cache_stats(self) -> dict:
        return self.queries.stats()
