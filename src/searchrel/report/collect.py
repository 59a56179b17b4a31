"""Read a run directory (what ``searchrel run`` writes) into typed values; a part the run lacks is ``None``.

Layout read (every part but ``run.json`` optional)::

    run.json                 name, resolved config, stages [{name, status, key, seconds}], started, finished
    stages/<stage>.json      one stage's record: key, params, deps, status, seconds, metrics, artefacts
    dataset/                 the dataset the run used
    eval/systems.json        split, main teacher and student, systems [{name, kind, predictions, metrics}]
    ablation/ablation.json   ``experiments.common.write_outputs``: {system: EvalResult, ..., "notes": [...]}
    curve/curve.json         the same format, for the amplification curve
    curve/curve-paired.json  the most distilled student against the human-only student and the zero-shot model
    latency/latency.json     machine, rerank percentiles, query encoding, teacher/student throughput
    simulate/online.json     the online experiment: arms, languages, A/B, interleaving, offline vs online

A part that is present but unreadable does not stop the report: it is left out and said so in ``problems``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from searchrel.data.dataset import Dataset, DatasetError, load_dataset
from searchrel.eval.evaluate import EvalResult, read_predictions
from searchrel.eval.paired import PairedResult
from searchrel.layout import RunLayout

# run.json says done/skipped/failed; a skipped stage is one whose inputs were unchanged, its output reused.
STATUS_LABELS = {"done": "ran", "skipped": "reused", "failed": "failed"}
KINDS = ("bm25", "zero-shot", "teacher", "student")


@dataclass
class Stage:
    name: str
    status: str  # ran, reused, failed (or run.json's word, if it is another)
    seconds: float | None
    key: str | None
    record: dict[str, Any] = field(default_factory=dict)  # stages/<name>.json, when present


@dataclass
class System:
    name: str
    kind: str
    result: EvalResult
    predictions: pd.DataFrame | None  # None when the file is missing

    def prob_columns(self, grades: list[int]) -> list[str]:
        """The ``p_<grade>`` columns, when the predictions have all of them; else []."""
        cols = [f"p_{g}" for g in grades]
        return cols if self.predictions is not None and all(c in self.predictions for c in cols) else []

    def predicted_grades(self, grades: list[int]) -> pd.Series | None:
        """The decoded ``grade`` column, else the most probable grade, else None (a ranker only)."""
        return None if self.predictions is None else predicted_grades(self.predictions, grades)


def predicted_grades(frame: pd.DataFrame, grades: list[int]) -> pd.Series | None:
    """A prediction frame's decoded ``grade`` column, else its most probable grade, else None (a ranker only)."""
    if "grade" in frame:
        return frame["grade"].astype(int)
    cols = [f"p_{g}" for g in grades]
    if all(c in frame for c in cols):
        return pd.Series(np.array(grades)[frame[cols].to_numpy(float).argmax(1)], index=frame.index)
    return None


@dataclass
class Experiment:
    """An ablation or a curve: results in step order, and the notes the experiment wrote."""

    results: dict[str, EvalResult]
    notes: list[str]


@dataclass
class Run:
    path: Path
    name: str
    config: dict[str, Any]
    started: str | None
    finished: str | None
    stages: list[Stage]
    dataset: Dataset | None = None
    split: str | None = None
    systems: list[System] = field(default_factory=list)
    teacher: str | None = None  # main teacher / student of the comparison, by name
    student: str | None = None
    ablation: Experiment | None = None
    curve: Experiment | None = None
    curve_paired: dict[str, PairedResult] | None = None  # curve/curve-paired.json: the served student, paired
    latency: dict[str, Any] | None = None
    online: dict[str, Any] | None = None  # simulate/online.json
    problems: list[str] = field(default_factory=list)  # parts present but unreadable, said in the report

    def system(self, name: str | None) -> System | None:
        return next((s for s in self.systems if s.name == name), None)


READ_ERRORS = (OSError, ValueError, KeyError, TypeError, ValidationError, DatasetError)


def describe(e: BaseException) -> str:
    """An error in one line (pydantic's run to many, with links): the count and the first."""
    if isinstance(e, ValidationError):
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        return f"{e.error_count()} validation error(s), e.g. {where}: {first['msg']}"
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def collect(run_dir: Path) -> Run:
    """Read ``run_dir``; raise FileNotFoundError/ValueError when it is no run directory at all."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    meta_path = RunLayout(run_dir).summary
    if not meta_path.exists() and not RunLayout(run_dir).records.is_dir():
        raise FileNotFoundError(f"{run_dir}: not a run directory (no run.json; `searchrel run CONFIG` writes one)")
    meta = _json(meta_path) if meta_path.exists() else {}  # a first run's report stage may come before run.json
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path}: expected a JSON object")
    run = Run(path=run_dir, name=str(meta.get("name") or run_dir.name), config=meta.get("config") or {},
              started=meta.get("started"), finished=meta.get("finished"), stages=_stages(run_dir, meta))
    at = RunLayout(run_dir)
    for path, reader in ((at.dataset, _read_dataset), (at.systems, _read_systems),
                         (at.ablation / "ablation.json", _read_ablation), (at.curve / "curve.json", _read_curve),
                         (at.latency, _read_latency), (at.simulate / "online.json", _read_online)):
        if path.exists():
            try:
                reader(run)
            except READ_ERRORS as e:
                run.problems.append(f"{path.relative_to(run_dir)} could not be read: {describe(e)}")
    return run


def _stages(run_dir: Path, meta: dict) -> list[Stage]:
    records = {}
    for path in sorted(RunLayout(run_dir).records.glob("*.json")):
        try:
            records[path.stem] = _json(path)
        except (OSError, ValueError):
            continue
    listed = meta.get("stages") or [{"name": k, **v} for k, v in records.items()]  # run.json first, else records
    stages = []
    for s in listed:
        name = str(s.get("name") or s.get("stage"))
        rec = records.get(name, {})
        status = str(s.get("status") or rec.get("status") or "?")
        seconds = s.get("seconds", rec.get("seconds"))
        label = STATUS_LABELS.get(status, status) + (" (resumed)" if status == "done" and rec.get("resumed") else "")
        stages.append(Stage(name=name, status=label,
                            seconds=None if seconds is None else float(seconds), key=s.get("key") or rec.get("key"),
                            record=rec))
    return stages


def _rel(path: Path, root: Path) -> str:
    return os.path.relpath(path, root)


def _read_dataset(run: Run) -> None:
    run.dataset = load_dataset(RunLayout(run.path).dataset, validate=False)  # the pipeline validated it when writing


def _read_systems(run: Run) -> None:
    eval_dir = RunLayout(run.path).eval
    spec = _json(RunLayout(run.path).systems)
    run.split = spec.get("split")
    run.teacher, run.student = spec.get("teacher"), spec.get("student")
    for s in spec["systems"]:
        name = str(s["name"])
        metrics = eval_dir / s["metrics"]
        if not metrics.exists():
            run.problems.append(f"system {name!r}: {_rel(metrics, run.path)} is missing; left out")
            continue
        result = EvalResult.model_validate_json(metrics.read_text())
        preds = None
        if s.get("predictions"):
            path = eval_dir / s["predictions"]
            if path.exists():
                preds = read_predictions(path)
                preds["query_id"], preds["item_id"] = preds["query_id"].astype(str), preds["item_id"].astype(str)
            else:
                run.problems.append(f"system {name!r}: {_rel(path, run.path)} is missing")
        run.systems.append(System(name=name, kind=str(s.get("kind", "?")), result=result, predictions=preds))
    run.split = run.split or (run.systems[0].result.split if run.systems else None)
    # no main teacher/student named: the last system of that kind with grade probabilities stands in
    for kind in ("teacher", "student"):
        if getattr(run, kind) is None or run.system(getattr(run, kind)) is None:
            grades = run.dataset.info.scale.grades if run.dataset is not None else []
            candidates = [s for s in run.systems if s.kind == kind and (not grades or s.prob_columns(grades))]
            setattr(run, kind, candidates[-1].name if candidates else None)


def _experiment(path: Path) -> Experiment:
    data = _json(path)
    notes = [str(n) for n in data.pop("notes", [])]
    results = {}
    for name, value in data.items():
        try:
            results[name] = EvalResult.model_validate(value)
        except ValidationError as e:
            raise ValueError(f"{name!r}: {describe(e)}") from None
    return Experiment(results, notes)


def _read_ablation(run: Run) -> None:
    run.ablation = _experiment(RunLayout(run.path).ablation / "ablation.json")


def _read_curve(run: Run) -> None:
    at = RunLayout(run.path).curve
    run.curve = _experiment(at / "curve.json")
    if (at / "curve-paired.json").is_file():  # runs before 2026-12-04 have none
        data = _json(at / "curve-paired.json")
        if not isinstance(data, dict):
            raise ValueError("curve-paired.json: expected a JSON object")
        try:
            run.curve_paired = {name: PairedResult.model_validate(v) for name, v in data.items()}
        except ValidationError as e:
            raise ValueError(f"curve-paired.json: {describe(e)}") from None


def _read_latency(run: Run) -> None:
    data = _json(RunLayout(run.path).latency)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    run.latency = data


def _read_online(run: Run) -> None:
    data = _json(RunLayout(run.path).simulate / "online.json")
    if not isinstance(data, dict) or not ("skipped" in data or "arms" in data):
        raise ValueError("expected the JSON object searchrel simulate writes")
    run.online = data
