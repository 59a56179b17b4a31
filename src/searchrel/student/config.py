"""The student's configuration, declared once: what the model is (StudentConfig) and how it is trained
(StudentTrainConfig). Light to import: the CLI reads its defaults from here without loading torch."""

from __future__ import annotations

from pydantic import BaseModel, Field

from searchrel.annotate.text import TextConfig
from searchrel.data.dataset import Scale


class StudentConfig(BaseModel):
    """Everything needed to rebuild a student; saved next to its weights."""

    backbone: str = "me5-small"  # each tower starts from this backbone
    layers: int | None = 4  # keep the first N transformer layers of each tower (None: all); 4 of 12 = 3x faster
    dim: int = 256  # size of the L2-normalised embeddings the towers output (a projection of the pooled state)
    query_max_length: int = 32
    item_max_length: int = 128
    text: TextConfig = Field(default_factory=TextConfig)
    scale: Scale = Field(default_factory=Scale)
    # see student.features; zero_shot_product lets the head re-weight the frozen model's similarity, which the
    # head's epochs (StudentTrainConfig.head_epochs) learn from many distilled pairs in seconds; text_match_gated is
    # text_match with the share of the query's words the catalogue knows, alone and times each text-match column: in
    # query-grouped cross-validation on CrowdFlower +0.5 NDCG@8 for the x10 head, nothing for the human-only one
    # (docs/results.md)
    features: list[str] = Field(default_factory=lambda: ["text_match_gated", "zero_shot", "zero_shot_product"])
    zero_shot_model: str = "me5-small"  # the frozen embedding model behind the zero_shot feature
    # grade logits = MLP + a linear residual on the pair features that starts as ``residual_start`` alone: the
    # student begins as its best cheap feature, so distillation can only add to it
    residual: bool = True
    residual_start: str = "zero_shot"
    scorer_hidden: int = 128
    dropout: float = 0.1
    freeze_embeddings: bool = True  # the word-embedding table stays as pretrained (and is shared by both towers)
    query_prefix: str = ""
    passage_prefix: str = ""
    thresholds: list[float] | None = None  # grade cut points on the expected grade, fitted on valid for QWK


class StudentTrainConfig(BaseModel):
    """How the student is trained: KL divergence to the teacher's grade distribution on distilled pairs, plus
    ``human_weight`` x cross-entropy on the human labels of the train split (none by default; human labels only
    when no distilled labels are given)."""

    student: StudentConfig = Field(default_factory=StudentConfig)
    # epochs of the towers themselves, after the head. 0 by default: on 2 CPU cores no tower step has beaten the head
    # it starts from — the demo's best students were their heads to 0.001, CrowdFlower's towers scored below them at
    # every step and cost 20-40 minutes a student (docs/results.md). Give epochs (and max_minutes) where a GPU and a
    # large log can feed the towers
    epochs: int = Field(0, ge=0)
    batch_items: int = 32  # items per step, each with all its pairs: tower cost per step does not grow with data
    lr: float = 5e-5  # tower layers
    head_lr: float = 1e-3  # projections and scorer
    weight_decay: float = 0.01
    warmup: float = 0.06
    # the head first (linear probing, then fine-tuning: LP-FT): up to ``head_epochs`` epochs that train the head —
    # scorer, residual and the towers' projections — on the backbones' pooled states and the pair features, computed
    # once, so an epoch over 200,000 pairs takes seconds, not a tower pass per step — chosen on valid; then all of it
    head_epochs: int = Field(40, ge=0)
    head_batch: int = Field(1024, ge=1)  # pairs per step of the head's epochs
    head_patience: int = Field(5, ge=1)  # head epochs without a better score to choose on before the towers' phase
    # from this head epoch on, the head scored and kept is the running mean of its weights over the epochs since
    # (stochastic weight averaging): one epoch's weights move the ranking of new queries by up to a point from epoch
    # to epoch, their mean by less than half as much (query-grouped CV on CrowdFlower, docs/results.md). 0: each
    # epoch's own weights
    head_average_from: int = Field(3, ge=0)
    # what the epochs and steps are chosen on: with distilled labels, this share of their queries is held out of
    # training and the student is scored against the teacher's expected grades on them ("teacher-valid": hundreds
    # of queries, where CrowdFlower's human valid split has 54 and chose on noise, docs/results.md), when that
    # gives at least ``teacher_valid_min_queries``; otherwise, and for human labels alone, the human valid split.
    # 0: always the human valid split. The grade thresholds are fitted on the human valid split either way
    teacher_valid_share: float = Field(0.05, ge=0, lt=1)
    teacher_valid_min_queries: int = Field(50, ge=1)
    # weight of each human label's cross-entropy beside each distilled pair's KL. 0: a student given teacher labels
    # learns from them alone (the teacher learnt the human labels): in query-grouped cross-validation on CrowdFlower
    # the x10 head gains most on new queries with 0 (+0.9 to +1.7 NDCG@8 over its start from its third epoch on),
    # less with 1, least with 8, which the 54-list valid split had chosen (docs/results.md). Without teacher labels
    # the human labels weigh 1
    human_weight: float = Field(0.0, ge=0)
    train_languages: list[str] | None = None  # human labels of these query languages only (distilled: all)
    max_minutes: float | None = None
    eval_every: int = 100
    patience: int = 6
    fit_thresholds: bool = True
    bf16: bool | None = None
    seed: int = 0
