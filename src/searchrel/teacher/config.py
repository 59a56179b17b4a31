"""The teacher's configuration, declared once: what the model is (TeacherConfig) and how it is trained
(TrainConfig). Light to import — the CLI reads its defaults from here without loading torch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from searchrel.annotate.text import TextConfig
from searchrel.data.dataset import Scale


class LoraOptions(BaseModel):
    """Low-rank adapters (peft) instead of full fine-tuning: for large LLM backbones on a GPU."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"


class TeacherConfig(BaseModel):
    """Everything needed to rebuild a teacher; saved next to its weights."""

    backbone: str = "me5-small"
    pooling: Literal["auto", "cls", "mean", "last"] = "auto"  # auto: mean for encoders, last for decoders
    scale: Scale = Field(default_factory=Scale)
    text: TextConfig = Field(default_factory=TextConfig)
    max_length: int = 128  # CrowdFlower pairs fit in ~128 tokens with the default budgets
    head_hidden: int = 256
    dropout: float = 0.1
    freeze_embeddings: bool = True  # the 96M-parameter word table: freezing it keeps unseen languages intact
    freeze_layers: int = 0  # also freeze the lowest N transformer layers (faster steps, less forgetting)
    zero_shot_feature: bool = False  # feed the frozen backbone's query-item embedding cosine to the head
    lora: LoraOptions | None = None
    query_prefix: str = ""
    passage_prefix: str = ""
    is_decoder: bool = False
    # grade decoding: cut points on the expected grade, fitted on valid for QWK; None = most probable grade
    thresholds: list[float] | None = None


class TrainConfig(BaseModel):
    """How the teacher is trained. Defaults: the recipe measured on CrowdFlower (see README)."""

    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    epochs: int = 4
    lr: float = 4e-5  # backbone; small, so the multilingual pretraining survives
    head_lr: float = 1e-3  # the head starts from scratch and may move fast
    weight_decay: float = 0.01
    warmup: float = 0.06  # share of steps with a linear warm-up
    batch_size: int = 16
    label_smoothing: float = 0.0
    soft_targets: bool = False  # targets spread by rater_variance instead of one-hot labels
    max_minutes: float | None = None  # stop cleanly when the budget is spent, keeping the best checkpoint
    eval_every: int = 100  # steps between validation passes (and always at an epoch's end)
    checkpoint_every: int = 50  # steps between resumable checkpoints
    patience: int = 6  # validation passes without improvement before stopping early
    select_metric: Literal["ndcg@8", "qwk"] = "ndcg@8"
    train_languages: list[str] | None = None  # e.g. ["en"]: train on these query languages only
    fit_thresholds: bool = True  # cut points on the expected grade that maximise valid QWK
    bf16: bool | None = None  # None: on where the device has native bf16
    device: str = "auto"  # auto (a CUDA GPU when there is one, else the CPU), cpu, cuda, cuda:N
    seed: int = 0
