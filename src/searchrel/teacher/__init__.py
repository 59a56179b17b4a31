"""The teacher: a cross-encoder fine-tuned on human labels that judges (query, item) pairs on the graded scale."""

from searchrel.teacher.config import LoraOptions, TeacherConfig, TrainConfig

__all__ = ["CrossEncoder", "LoraOptions", "TeacherConfig", "TrainConfig", "load_teacher", "train"]


def __getattr__(name):  # torch and transformers load only when a model is asked for
    if name in ("CrossEncoder", "load_teacher"):
        from searchrel.teacher import inference, model
        return getattr(inference if name == "load_teacher" else model, name)
    if name == "train":
        from searchrel.teacher.train import train
        return train
    raise AttributeError(name)
