"""Load any trained model directory as a scorer of a dataset's judged pairs, so ``eval --model`` treats all alike."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pandas as pd

from searchrel.data.dataset import Dataset


class Scorer(Protocol):
    def predict(self, ds: Dataset, split: str = "all", pairs: pd.DataFrame | None = None) -> pd.DataFrame:
        """``query_id, item_id, p_<grade>..., score, grade`` for the judged pairs of ``split``."""


class TeacherScorer:
    def __init__(self, path: Path, device: str = "auto"):
        from searchrel.teacher.model import load_teacher

        self.model, self.tokenizer = load_teacher(path, device)

    def predict(self, ds: Dataset, split: str = "all", pairs: pd.DataFrame | None = None) -> pd.DataFrame:
        from searchrel.teacher.predict import predict_dataset

        if self.model.config.scale.grades != ds.info.scale.grades:
            raise ValueError(f"the model predicts grades {self.model.config.scale.min}..{self.model.config.scale.max} "
                             f"but the dataset's scale is {ds.info.scale.min}..{ds.info.scale.max}")
        return predict_dataset(self.model, self.tokenizer, ds, split, pairs=pairs)


class StudentScorer:
    def __init__(self, path: Path):
        from searchrel.student.model import load_student

        self.model = load_student(path)

    def predict(self, ds: Dataset, split: str = "all", pairs: pd.DataFrame | None = None) -> pd.DataFrame:
        from searchrel.student.predict import predict_dataset

        if self.model.config.scale.grades != ds.info.scale.grades:
            raise ValueError(f"the model predicts grades {self.model.config.scale.min}..{self.model.config.scale.max} "
                             f"but the dataset's scale is {ds.info.scale.min}..{ds.info.scale.max}")
        return predict_dataset(self.model, ds, split, pairs=pairs)


# Each kind of model directory is known by the config file it holds.
KINDS = {"teacher.json": TeacherScorer, "student.json": StudentScorer}


def load_scorer(path: str | Path) -> Scorer:
    path = Path(path)
    for marker, kind in KINDS.items():
        if (path / marker).is_file():
            return kind(path)
    raise FileNotFoundError(f"{path}: not a trained model directory (expected one of {', '.join(KINDS)})")
