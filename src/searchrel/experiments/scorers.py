"""Load any trained model directory as a scorer of a dataset's judged pairs, so ``eval --model`` treats all alike.

It sits above the teacher and the student (it loads either), beside the experiments that compare them; the
evaluation itself (``eval/``) only reads prediction tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pandas as pd

from searchrel.data.dataset import Dataset
from searchrel.student import predict as student_predict
from searchrel.student.model import CONFIG_FILE as STUDENT_CONFIG
from searchrel.student.model import load_student
from searchrel.teacher import inference as teacher_inference
from searchrel.teacher.model import CONFIG_FILE as TEACHER_CONFIG


class Scorer(Protocol):
    def predict(self, ds: Dataset, split: str = "all", pairs: pd.DataFrame | None = None) -> pd.DataFrame:
        """``query_id, item_id, p_<grade>..., score, grade`` for the judged pairs of ``split``."""


class TeacherScorer:
    def __init__(self, path: Path, device: str = "auto"):
        self.model, self.tokenizer = teacher_inference.load_teacher(path, device)

    def predict(self, ds: Dataset, split: str = "all", pairs: pd.DataFrame | None = None) -> pd.DataFrame:
        return teacher_inference.predict_dataset(self.model, self.tokenizer, ds, split, pairs=pairs)


class StudentScorer:
    def __init__(self, path: Path):
        self.model = load_student(path)

    def predict(self, ds: Dataset, split: str = "all", pairs: pd.DataFrame | None = None) -> pd.DataFrame:
        return student_predict.predict_dataset(self.model, ds, split, pairs=pairs)


# Each kind of model directory is known by the config file it holds.
KINDS = {TEACHER_CONFIG: TeacherScorer, STUDENT_CONFIG: StudentScorer}


def load_scorer(path: str | Path) -> Scorer:
    path = Path(path)
    for marker, kind in KINDS.items():
        if (path / marker).is_file():
            return kind(path)
    raise FileNotFoundError(f"{path}: not a trained model directory (expected one of {', '.join(KINDS)})")
