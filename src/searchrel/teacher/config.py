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


class BiEncoderConfig(BaseModel):
    """How the fine-tuned bi-encoder member is trained."""

    backbone: str = "embeddinggemma-300m"
    train_layers: int = 4  # top transformer blocks trained; the rest (and the word table) stay frozen
    lr: float = 2e-5
    head_lr: float = 1e-2
    epochs: int = 2
    listwise_weight: float = 1.0
    scale: float = 20.0  # cosine -> ListNet score (a softmax temperature of 0.05)
    item_max_length: int = 128
    query_max_length: int = 32
    max_minutes: float | None = None
    seed: int = 0


class TrainConfig(BaseModel):
    """How the teacher is trained. Defaults: the recipe measured on CrowdFlower (see README)."""

    # ensemble (default): members stacked by listwise rankers and an ordinal calibration fitted on the labels
    # (teacher.recipe, teacher.ensemble); cross_encoder: the cross-encoder alone (``teacher`` and the options below)
    recipe: Literal["ensemble", "cross_encoder"] = "ensemble"
    # measured on CrowdFlower (docs/results.md): the cross-encoder and the fine-tuned bi-encoder did not earn their
    # CPU minutes there; both stay available as members (cross_encoder, biencoder)
    # EmbeddingGemma reads each field alone (fields-only): its whole-text pass cost half its encoding time and added
    # nothing in query-grouped CV on CrowdFlower (0.8593 with it, 0.8591 without; bench/teacher_cv.py)
    members: list[str] = Field(default_factory=lambda: ["fields-only:embeddinggemma-300m", "fields:me5-small",
                                                        "prf:embeddinggemma-300m", "text_match"])
    prf_k: int = Field(10, ge=1)  # catalogue neighbours in a prf member's query centroid (5/10/20 measured: 10)
    # the stacker's rankers: ListNet + ordinal_weight x an ordinal likelihood of the grades (0: ranking only);
    # 1 was chosen for v3's members; for v5's, query-grouped CV on CrowdFlower rose to 4-8 and fell after (8 kept)
    ordinal_weight: float = Field(8.0, ge=0)
    biencoder: BiEncoderConfig = Field(default_factory=BiEncoderConfig)
    biencoder_share: float = Field(0.5, ge=0, le=1)  # of the trained members' budget
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    epochs: int = 4
    lr: float = 4e-5  # backbone; small, so the multilingual pretraining survives
    head_lr: float = 1e-3  # the head starts from scratch and may move fast
    weight_decay: float = 0.01
    warmup: float = 0.06  # share of steps with a linear warm-up
    batch_size: int = 16
    label_smoothing: float = 0.0
    soft_targets: bool = False  # targets spread by rater_variance instead of one-hot labels
    # weight of the ListNet loss over each query's items beside the grade cross-entropy; > 0 batches by query
    listwise_weight: float = 0.0
    # a cross-encoder stops cleanly when the budget is spent, keeping its best checkpoint; the ensemble recipe's
    # zero-shot encodings (first) stop with BudgetSpent, its trained members share what is left
    max_minutes: float | None = None
    eval_every: int = 100  # steps between validation passes (and always at an epoch's end)
    checkpoint_every: int = 50  # steps between resumable checkpoints
    patience: int = 6  # validation passes without improvement before stopping early
    select_metric: Literal["ndcg@8", "qwk"] = "ndcg@8"
    train_languages: list[str] | None = None  # e.g. ["en"]: train on these query languages only
    fit_thresholds: bool = True  # cut points on the expected grade that maximise valid QWK
    bf16: bool | None = None  # None: on where the device has native bf16
    device: str = "auto"  # auto (a CUDA GPU when there is one, else the CPU), cpu, cuda, cuda:N
    seed: int = 0
    # the cross-encoder's loop data-parallel on Ray Train (teacher.distributed): more than one worker, or a cluster
    workers: int = Field(1, ge=1)
    ray_address: str | None = None  # a running Ray cluster to join (None: a local Ray when workers > 1)
    gpus_per_worker: float = Field(0.0, ge=0)  # > 0: each worker trains on a GPU (NCCL), else on CPUs (gloo)
    # shard weights, gradients and optimizer state over the workers (FSDP2) instead of a full copy on each (DDP):
    # for backbones that do not fit one device; the same steps, the same checkpoints
    fsdp: bool = False
