"""The feature ablation: the teacher trained on growing field sets — caption only; + title and description;
+ board titles; + engaged queries — each step's metrics as a table and a chart (BM25 alongside, for scale).
With ``teacher=False`` only BM25 runs: every field's lexical effect in seconds."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from searchrel.annotate.text import TextConfig, filled_fields
from searchrel.baselines.bm25 import bm25_predictions
from searchrel.data.dataset import Dataset
from searchrel.eval.charts import line_chart
from searchrel.eval.evaluate import EvalConfig, EvalResult, evaluate
from searchrel.experiments.common import teacher_result, training_note, write_outputs
from searchrel.progress import console
from searchrel.teacher.config import TrainConfig

STEPS: list[tuple[str, list[str]]] = [
    ("caption", ["image_caption"]),
    ("+ title, description", ["title", "description"]),
    ("+ board titles", ["board_titles"]),
    ("+ engaged queries", ["engaged_queries"]),
]


class AblateConfig(BaseModel):
    train: TrainConfig = Field(default_factory=TrainConfig)  # its text fields are replaced per step
    split: str = "test"
    metric: str = "ndcg@8"  # the one the chart follows
    teacher: bool = True  # False: BM25 only


def ablate(ds: Dataset, out: Path, cfg: AblateConfig) -> tuple[list[str], dict[str, EvalResult], list[str]]:
    """Train and evaluate one teacher per step that adds a field the dataset has; say which were skipped."""
    have = filled_fields(ds.items) & set(ds.text_fields)
    fields: list[str] = []
    steps, results, notes = [], {}, []
    ev = EvalConfig(split=cfg.split)
    for label, added in STEPS:
        missing = [f for f in added if f not in have]
        if missing:
            notes.append(f"step '{label}': the dataset has no {', '.join(missing)}; "
                         + ("step skipped" if len(missing) == len(added) else "left out"))
            console.print(f"[yellow]ablation:[/] {notes[-1]}")
        new = [f for f in added if f in have]
        if not new:
            continue
        fields = fields + new
        text = cfg.train.teacher.text.model_copy(update={"fields": list(fields)})
        train_cfg = cfg.train.model_copy(update={"teacher": cfg.train.teacher.model_copy(update={"text": text})})
        steps.append(label)
        if cfg.teacher:
            results[f"teacher: {label}"] = teacher_result(ds, out / f"step{len(steps)}", train_cfg, cfg.split)
            notes.append(training_note(f"teacher: {label}", out / f"step{len(steps)}"))
        results[f"BM25: {label}"] = evaluate(ds, bm25_predictions(ds, TextConfig(fields=list(fields)), cfg.split), ev)
    if not steps:
        raise ValueError(f"no ablation step applies: the dataset fills none of "
                         f"{', '.join(f for _, fs in STEPS for f in fs)}")
    write_outputs(out, "ablation", results, f"{ds.info.name}: feature ablation ({cfg.split} split)", notes)
    line_chart(steps, {kind: [results[f"{kind}: {s}"].overall.get(cfg.metric) for s in steps]
                       for kind in (("teacher", "BM25") if cfg.teacher else ("BM25",))},
               out / "ablation-curve.png", f"{ds.info.name}: {cfg.metric} as fields are added", cfg.metric)
    return steps, results, notes
