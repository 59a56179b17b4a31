"""The pipeline's configuration, declared once: one typed section per stage, read from a TOML file.

Every section reuses the stage's own config class (``TrainConfig``, ``SampleConfig``, ``StudentConfig``, ...), so
a TOML key means exactly what the matching CLI option means. Unknown keys are errors (a typo must not silently
fall back to a default), and so are keys another section decides (``teacher.model.text`` is ``[text]``).
``--set section.key=value`` overrides any key from the command line; TOML has no null, so ``none`` (in ``--set``
or as a TOML string) turns an optional setting off.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from searchrel.annotate.logs import AnnotateConfig
from searchrel.annotate.text import TextConfig
from searchrel.data.synth import SynthConfig
from searchrel.distill.config import LabelConfig, SampleConfig
from searchrel.eval.evaluate import EvalConfig
from searchrel.experiments.rating_round import SuggestConfig
from searchrel.experiments.simulate import SimulateConfig
from searchrel.index import IndexConfig
from searchrel.student.config import StudentConfig, StudentTrainConfig
from searchrel.teacher.config import TeacherConfig, TrainConfig

BUILT_IN = ("demo", "crowdflower")  # configs shipped in searchrel/pipeline/configs/


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitSection(Section):
    """Re-split the queries (query-grouped, stratified by language; ``searchrel split``) before annotation."""

    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)  # train, valid, test
    seed: int = 0

    @model_validator(mode="after")
    def _fractions(self) -> "SplitSection":
        if any(f < 0 for f in self.fractions) or abs(sum(self.fractions) - 1) > 1e-6:
            raise ValueError(f"data.splits.fractions must be three non-negative numbers summing to 1, "
                             f"got {list(self.fractions)}")
        return self


class DataSection(Section):
    """Where the dataset comes from: the built-in synthetic world, a CrowdFlower CSV, or a searchrel dataset."""

    source: Literal["synthetic", "crowdflower", "dataset"] = "synthetic"
    path: Path | None = None  # crowdflower: the CSV; dataset: a dataset directory (searchrel import ... writes one)
    translations: Path | None = None  # crowdflower: JSONL of each query's translations
    synth: SynthConfig = Field(default_factory=SynthConfig)
    splits: SplitSection | None = None  # None: keep the split the source comes with
    annotate: AnnotateConfig | None = Field(default_factory=AnnotateConfig)  # none/false: keep item fields as given

    @field_validator("splits", "annotate", "path", "translations", mode="before")
    @classmethod
    def _off(cls, v):
        return _none(v)

    @model_validator(mode="after")
    def _path_given(self) -> "DataSection":
        if self.source != "synthetic" and self.path is None:
            raise ValueError(f"data.source = {self.source!r} needs data.path "
                             f"(e.g. --set data.path=/path/to/{'dev.csv' if self.source == 'crowdflower' else 'dataset'})")
        return self


def _none(v):
    """TOML cannot say null: the string "none" (any case) or false turns an optional setting off."""
    return None if v is False or (isinstance(v, str) and v.strip().lower() in ("none", "null", "")) else v


class BaselinesSection(Section):
    bm25: bool = True
    zero_shot: str | None = "me5-small"  # an embedding backbone (registry name, local path or hub id); none: off

    @field_validator("zero_shot", mode="before")
    @classmethod
    def _off(cls, v):
        return _none(v)


class TeacherSection(Section):
    model: TeacherConfig = Field(default_factory=TeacherConfig)  # its item text comes from [text]
    train: TrainConfig = Field(default_factory=TrainConfig)  # its `teacher` is replaced by [teacher.model]


class AblationSection(Section):
    """The feature ablation (searchrel ablate): BM25 and, with a budget, a teacher per growing field set."""

    enabled: bool = False
    teacher_minutes: float = Field(0.0, ge=0)  # training budget of each step's teacher; 0: BM25 only


class DistillSection(Section):
    amplifications: list[float] = Field(default_factory=lambda: [1.0])  # one student per factor; the largest serves
    human_only: bool = True  # also train a student on the human labels alone (the curve's first point)
    sample: SampleConfig = Field(default_factory=SampleConfig)  # its amplification is the largest factor
    label: LabelConfig = Field(default_factory=LabelConfig)

    @model_validator(mode="after")
    def _factors(self) -> "DistillSection":
        if not self.amplifications or min(self.amplifications) <= 0:
            raise ValueError("distill.amplifications must be positive factors, e.g. [1, 10]")
        self.amplifications = sorted(set(self.amplifications))
        return self


class StudentSection(Section):
    model: StudentConfig = Field(default_factory=StudentConfig)  # its item text comes from [text]
    train: StudentTrainConfig = Field(default_factory=StudentTrainConfig)  # its `student` is [student.model]


class LatencySection(Section):
    """The re-ranking service timed in process on the built index: query encoding and scoring per request."""

    enabled: bool = True
    candidates: list[int] = Field(default_factory=lambda: [100, 400])
    queries: int = Field(50, ge=1)  # distinct queries per setting (each timed cold, then warm)
    onnx: bool = True

    @field_validator("candidates")
    @classmethod
    def _counts(cls, v: list[int]) -> list[int]:
        if not v or min(v) < 1:
            raise ValueError("latency.candidates must list one or more positive counts, e.g. [100, 400]")
        return v


class RateSection(Section):
    """The rating round (``searchrel rate suggest``): a sheet of the pairs whose human label would help most, in
    ``rate/suggestions.csv``; on the synthetic world also ``rate/simulated.csv``, graded with the true grade."""

    enabled: bool = True
    suggest: SuggestConfig = Field(default_factory=SuggestConfig)
    simulated_rater: bool = True  # synthetic world only: the sheet completed by a rater who knows the true grade


class SimulateSection(SimulateConfig):
    """The online experiment (``searchrel simulate``): held-out searches replayed through the run's rankers as an
    A/B split and as team-draft interleaving, users simulated by the synthetic world; other data has no world, and
    the stage records that it did not run."""

    enabled: bool = True


class ReportSection(Section):
    enabled: bool = True


class PipelineConfig(Section):
    """A whole experiment: ``searchrel run CONFIG`` executes it stage by stage into one run directory."""

    name: str = "run"
    data: DataSection = Field(default_factory=DataSection)
    text: TextConfig = Field(default_factory=TextConfig)  # the item text every model reads (fields, budgets)
    baselines: BaselinesSection = Field(default_factory=BaselinesSection)
    teacher: TeacherSection = Field(default_factory=TeacherSection)
    ablation: AblationSection = Field(default_factory=AblationSection)
    distill: DistillSection = Field(default_factory=DistillSection)
    student: StudentSection = Field(default_factory=StudentSection)
    index: IndexConfig = Field(default_factory=IndexConfig)
    evaluate: EvalConfig = Field(default_factory=EvalConfig)
    simulate: SimulateSection = Field(default_factory=SimulateSection)
    latency: LatencySection = Field(default_factory=LatencySection)
    rate: RateSection = Field(default_factory=RateSection)
    report: ReportSection = Field(default_factory=ReportSection)

    def train_config(self) -> TrainConfig:
        """The teacher's TrainConfig, its model and item text filled in from their sections."""
        model = self.teacher.model.model_copy(update={"text": self.text})
        return self.teacher.train.model_copy(update={"teacher": model})

    def student_train_config(self) -> StudentTrainConfig:
        model = self.student.model.model_copy(update={"text": self.text})
        return self.student.train.model_copy(update={"student": model})


# keys of the reused stage configs that another section decides: setting them would be silently overwritten
DECIDED_ELSEWHERE = {
    "teacher.train.teacher": "set the teacher in [teacher.model]",
    "student.train.student": "set the student in [student.model]",
    "teacher.model.text": "the item text of every model is [text]",
    "student.model.text": "the item text of every model is [text]",
    "teacher.model.scale": "the grade scale is the dataset's",
    "student.model.scale": "the grade scale is the dataset's",
    "teacher.model.thresholds": "grade thresholds are fitted on the valid split",
    "student.model.thresholds": "grade thresholds are fitted on the valid split",
    "distill.sample.amplification": "the sample's amplification is the largest of distill.amplifications",
}


def _check_keys(model: type[BaseModel], data: Any, where: str = "") -> None:
    """Refuse keys no field has, at any depth (the reused stage configs would otherwise ignore them), and keys
    another section decides."""
    if not isinstance(data, dict):
        return
    fields = model.model_fields
    for key, value in data.items():
        if f"{where}{key}" in DECIDED_ELSEWHERE:
            raise ValueError(f"config key {where}{key} cannot be set: {DECIDED_ELSEWHERE[where + key]}")
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ValueError(f"unknown config key {where}{key!r} (known here: {known})")
        annotation = fields[key].annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                _check_keys(candidate, value, f"{where}{key}.")
                break


def _set(data: dict, dotted: str, raw: str) -> None:
    """Apply one ``section.key=value`` override; the value is read as TOML (numbers, booleans, lists), else text."""
    keys = dotted.split(".")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = None if raw.strip().lower() in ("none", "null") else raw  # plain text; none: an optional setting off
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ValueError(f"--set {dotted}: {k} is not a section")
    node[keys[-1]] = value


def config_path(name_or_path: str | Path) -> Path:
    """A TOML file, or the name of a built-in config (``demo``, ``crowdflower``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if str(name_or_path) in BUILT_IN:
        return Path(str(resources.files("searchrel.pipeline") / "configs" / f"{name_or_path}.toml"))
    raise FileNotFoundError(f"{name_or_path}: no such config file (built-in configs: {', '.join(BUILT_IN)})")


def load_config(name_or_path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read a pipeline config, apply ``key=value`` overrides, validate every section."""
    path = config_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML: {e}") from None
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected section.key=value")
        key, raw = item.split("=", 1)
        _set(data, key.strip(), raw.strip())
    _check_keys(PipelineConfig, data)
    # relative data paths are relative to the directory the command runs in (not to the config file): a shipped
    # config takes its data path from --set
    return PipelineConfig.model_validate(data)
