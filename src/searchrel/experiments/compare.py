"""The backbone comparison (Pinterest's key table): BM25, the zero-shot embedding model and one teacher per
backbone, on the same training data, test split and metrics."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from searchrel.annotate.text import TextConfig
from searchrel.baselines.bm25 import bm25_predictions
from searchrel.baselines.embed import embed_predictions
from searchrel.data.dataset import Dataset
from searchrel.eval.evaluate import EvalConfig, EvalResult, evaluate
from searchrel.experiments.common import teacher_result, training_note, write_outputs
from searchrel.models.registry import ModelError
from searchrel.progress import console
from searchrel.teacher.config import TrainConfig


class CompareConfig(BaseModel):
    backbones: list[str] = Field(default_factory=lambda: ["me5-small", "gemma-3-270m"])
    zero_shot_model: str = "me5-small"
    train: TrainConfig = Field(default_factory=TrainConfig)  # its teacher.backbone is replaced per backbone
    split: str = "test"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)


def compare(ds: Dataset, out: Path, cfg: CompareConfig) -> dict[str, EvalResult]:
    """Evaluate every system; a backbone that cannot be loaded is noted and skipped, never fatal to the rest."""
    text: TextConfig = cfg.train.teacher.text
    text.check(ds.text_fields)
    fields = ",".join(text.fields)
    ev = EvalConfig(split=cfg.split)
    results = {f"BM25 [{fields}]": evaluate(ds, bm25_predictions(ds, text, cfg.split), ev),
               f"zero-shot {cfg.zero_shot_model}": evaluate(
                   ds, embed_predictions(ds, text, cfg.split, model=cfg.zero_shot_model), ev)}
    notes = []
    for backbone in cfg.backbones:
        train_cfg = cfg.train.model_copy(update={"teacher": cfg.train.teacher.model_copy(update={"backbone": backbone})})
        run = out / f"teacher-{_slug(backbone)}"
        try:
            results[f"teacher {backbone}"] = teacher_result(ds, run, train_cfg, cfg.split)
            notes.append(training_note(f"teacher {backbone}", run))
        except (ModelError, ImportError) as e:
            notes.append(f"teacher {backbone} skipped: {e}")
            console.print(f"[yellow]skipped[/] teacher {backbone}: {e}")
    langs = f" (queries in {', '.join(cfg.train.train_languages)} only)" if cfg.train.train_languages else ""
    notes.append(f"teachers trained on the train split{langs}; fields: {fields}; evaluated on split {cfg.split}")
    write_outputs(out, "comparison", results, f"{ds.info.name}: backbone comparison ({cfg.split} split)", notes)
    return results
