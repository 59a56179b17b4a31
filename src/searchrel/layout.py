"""The run directory of ``searchrel run``, declared once: where each stage writes and the report reads.

::

    RUN/
      run.json                  the run's summary (stages, their status and seconds)
      stages/<stage>.json       one record per stage (its key, metrics, error)
      config.json               the resolved pipeline config
      dataset/                  the dataset every stage reads (``searchrel.data``)
      baselines/                predictions-<system>.parquet, metrics-<system>.json
      teacher/                  the teacher directory
      ablation/ablation.json    BM25 (or teacher) per field set
      distill/pairs.parquet     sampled pairs;  distill/labels/  the teacher's labels (shards + labels.json)
      ratings/ratings.parquet   human ratings imported into the run (``searchrel import ratings``; the run's own)
      rate/                     the rating round's sheet (suggestions.csv) and, synthetic only, a simulated one
      students/<name>/          one student per amplification (``human``, ``x1``, ...)
      index/                    the served student's item index
      eval/systems.json         which systems were evaluated; eval/predictions-*.parquet, eval/metrics-*.json
      curve/curve.json          the amplification curve
      simulate/online.json      the online experiment on the synthetic world (+ searches.parquet)
      latency/latency.json      the re-ranking latency measured on the served student
      report/                   report.html, report.md and the charts
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SUMMARY = "run.json"
RECORDS = "stages"
CONFIG = "config.json"


@dataclass(frozen=True)
class RunLayout:
    """Paths inside one run directory."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY

    def record(self, stage: str) -> Path:
        return self.root / RECORDS / f"{stage}.json"

    @property
    def records(self) -> Path:
        return self.root / RECORDS

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def baselines(self) -> Path:
        return self.root / "baselines"

    @property
    def teacher(self) -> Path:
        return self.root / "teacher"

    @property
    def ablation(self) -> Path:
        return self.root / "ablation"

    @property
    def pairs(self) -> Path:
        return self.root / "distill" / "pairs.parquet"

    @property
    def labels(self) -> Path:
        return self.root / "distill" / "labels"

    @property
    def ratings(self) -> Path:
        return self.root / "ratings" / "ratings.parquet"

    @property
    def rate(self) -> Path:
        return self.root / "rate"

    def student(self, name: str) -> Path:
        return self.root / "students" / name

    @property
    def index(self) -> Path:
        return self.root / "index"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def systems(self) -> Path:
        return self.eval / "systems.json"

    @property
    def curve(self) -> Path:
        return self.root / "curve"

    @property
    def simulate(self) -> Path:
        return self.root / "simulate"

    @property
    def latency(self) -> Path:
        return self.root / "latency" / "latency.json"

    @property
    def report(self) -> Path:
        return self.root / "report"
