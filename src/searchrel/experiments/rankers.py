"""The rankers of a run directory, by name, each scoring a candidate pool: what an online simulation puts in its arms.

Names follow the run's file stems: ``bm25``, ``zero-shot``, ``teacher``, ``student-<step>`` (``student-human``,
``student-x1``, ...), and ``student``, the served student. Each ranker scores ``query_id, item_id`` pairs and
a higher score ranks first; the models are the ones the run trained, read from their directories. The served
student scores as serving does: the item side from the run's index (built from it), the query side computed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from searchrel.annotate.text import TextConfig, build_item_texts
from searchrel.baselines.bm25 import BM25Scorer
from searchrel.baselines.embed import embed_scores
from searchrel.data.dataset import Dataset
from searchrel.experiments.scorers import KINDS, load_scorer
from searchrel.index import load_index, model_version
from searchrel.layout import RunLayout
from searchrel.student.model import load_student

SERVED = "student"  # the name of the served student, whichever amplification it was trained on

# the served student both retrieves candidates and ranks them: loaded once (one at a time, kept while it is used)
_student = lru_cache(maxsize=1)(load_student)


@dataclass(frozen=True)
class RankerSpec:
    """A ranker the run has: its name here, its name in the run's tables, and where its offline metrics are."""

    name: str  # bm25, zero-shot, teacher, student-<step>
    system: str  # the run's name for it ("BM25", "student: x3"), as eval/systems.json writes it
    kind: str  # bm25, zero-shot, teacher, student
    model: Path | None = None  # the model directory; None for the baselines
    backbone: str | None = None  # the zero-shot baseline's embedding model
    index: Path | None = None  # the item index built from this student (its item side is read, not computed)
    metrics: Path | None = None  # its metrics on the evaluation split, when the run evaluated it


def run_config(run_dir: Path) -> dict:
    """The resolved pipeline config the run wrote (``config.json``)."""
    path = RunLayout(run_dir).config
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no {path.name}; is it a `searchrel run` directory?")
    return json.loads(path.read_text())


def _is_model(path: Path) -> bool:
    return any((path / marker).is_file() for marker in KINDS)


def available(run_dir: Path) -> dict[str, RankerSpec]:
    """Every ranker the run has, in the order the report shows systems; ``student`` names the served one."""
    at, cfg = RunLayout(run_dir), run_config(run_dir)
    systems: dict[str, dict] = {}
    served = None
    if at.systems.is_file():
        spec = json.loads(at.systems.read_text())
        for s in spec["systems"]:
            stem = Path(s["metrics"]).stem.removeprefix("metrics-")
            systems[stem] = {"system": s["name"], "metrics": at.eval / s["metrics"]}
            if s["name"] == spec.get("student"):
                served = stem
    out: dict[str, RankerSpec] = {}

    def add(name: str, kind: str, model: Path | None, fallback: str, backbone: str | None = None) -> None:
        known = systems.get(name, {})
        out[name] = RankerSpec(name, known.get("system", fallback), kind, model=model, backbone=backbone,
                               metrics=known.get("metrics"))

    if cfg.get("baselines", {}).get("bm25", True):
        add("bm25", "bm25", None, "BM25")
    if zero_shot := cfg.get("baselines", {}).get("zero_shot"):
        add("zero-shot", "zero-shot", None, f"zero-shot {zero_shot}", backbone=zero_shot)
    if _is_model(at.teacher):
        add("teacher", "teacher", at.teacher, "teacher")
    students = sorted((p for p in (run_dir / "students").glob("*") if _is_model(p)),
                      key=lambda p: (p.name != "human", float(p.name[1:]) if p.name[1:].replace(".", "").isdigit()
                                     else 0.0, p.name))
    for p in students:
        step = p.name
        add(f"student-{step}", "student", p, "student: human labels only" if step == "human" else f"student: {step}")
    if served is None and students:  # no evaluation yet: the largest amplification serves
        served = f"student-{students[-1].name}"
    if served in out:
        spec = out[served]
        if at.index.exists() and load_index(at.index, with_faiss=False, mmap=True).model_version == \
                model_version(spec.model):
            spec = out[served] = replace(spec, index=at.index)
        out[SERVED] = spec
    return out


def resolve(names: list[str], specs: dict[str, RankerSpec]) -> list[RankerSpec]:
    """The rankers named (``student`` = the served student), each once; an unknown name lists what exists."""
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ValueError(f"unknown ranker(s) {', '.join(unknown)}; this run has: {', '.join(specs)}")
    chosen: dict[str, RankerSpec] = {}
    for n in names:
        chosen.setdefault(specs[n].name, specs[n])
    return list(chosen.values())


def _bm25(spec: RankerSpec, ds: Dataset, pool: pd.DataFrame, text: TextConfig) -> np.ndarray:
    texts = build_item_texts(ds.items, text)
    row = pd.Series(np.arange(len(texts)), index=texts.index)
    return BM25Scorer(texts.tolist()).score_pairs(pool["query"].tolist(), row.loc[pool["item_id"]].to_numpy())


def _zero_shot(spec: RankerSpec, ds: Dataset, pool: pd.DataFrame, text: TextConfig) -> np.ndarray:
    texts = build_item_texts(ds.items, text)
    row = pd.Series(np.arange(len(texts)), index=texts.index)
    q_ids, q_idx = np.unique(pool["query_id"].to_numpy(), return_inverse=True)
    query_text = ds.queries.set_index("query_id")["text"].loc[q_ids].tolist()
    return embed_scores(query_text, texts.tolist(), (q_idx, row.loc[pool["item_id"]].to_numpy()), model=spec.backbone)


def _model(spec: RankerSpec, ds: Dataset, pool: pd.DataFrame, text: TextConfig) -> np.ndarray:
    if spec.index is None:
        return load_scorer(spec.model).predict(ds, pairs=pool[["query_id", "item_id"]])["score"].to_numpy(float)
    student, idx = _student(spec.model), load_index(spec.index, with_faiss=False)
    q_ids, q_idx = np.unique(pool["query_id"].to_numpy(), return_inverse=True)
    i_ids, i_idx = np.unique(pool["item_id"].to_numpy(), return_inverse=True)
    queries = student.side(ds.queries.set_index("query_id")["text"].loc[q_ids].tolist(), "query")
    probs = student.predict(queries, q_idx, idx.side(idx.rows_of(i_ids)), i_idx)
    return probs @ np.asarray(student.config.scale.grades, dtype=float)  # the expected grade, as serving ranks


# how each kind scores: the baselines from the catalogue and the run's item text, models from their directory
SCORE = {"bm25": _bm25, "zero-shot": _zero_shot, "teacher": _model, "student": _model}


def score_pool(spec: RankerSpec, ds: Dataset, pool: pd.DataFrame, text: TextConfig) -> np.ndarray:
    """Scores of ``pool`` (``query_id, query, item_id`` rows) by the ranker ``spec``, in row order; ``text`` is
    the run's item text (the baselines read it; a model reads its own)."""
    return np.asarray(SCORE[spec.kind](spec, ds, pool, text), dtype=float)


def retrieve(spec: RankerSpec, queries: pd.DataFrame, k: int) -> dict[str, list[str]]:
    """Two-tower retrieval with an indexed student: per query (``query_id, text``), the ``k`` items of its index
    whose item-tower vectors are nearest (inner product, exact) to the query tower's vector, best first."""
    if spec.index is None:
        raise ValueError(f"{spec.name} has no item index to retrieve from")
    idx = load_index(spec.index, with_faiss=False)
    sims = _student(spec.model).embed(queries["text"].tolist(), "query") @ np.asarray(idx.vectors, np.float32).T
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return {qid: idx.item_ids[rows].tolist() for qid, rows in zip(queries["query_id"], top)}
