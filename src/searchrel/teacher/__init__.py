"""The teacher: a cross-encoder fine-tuned on human labels that judges (query, item) pairs on the graded scale."""

from searchrel.teacher.model import CrossEncoder, TeacherConfig, load_teacher
from searchrel.teacher.train import TrainConfig, train

__all__ = ["CrossEncoder", "TeacherConfig", "TrainConfig", "load_teacher", "train"]
