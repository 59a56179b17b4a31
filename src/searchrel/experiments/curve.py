"""The amplification curve: students trained on the human labels only, then on x1, x10, x100... as many
teacher-labelled pairs, each evaluated next to the teacher — "more distilled data, better student", measured.

Pairs are sampled and labelled once, at the largest factor; each smaller factor trains on a uniform random
subset of them (nested: x1 is part of x10), so the curve varies the amount of distilled data and nothing else.
Every student gets the same epochs and budget. Finished stages are reused when the command runs again. Beside
the teacher, the curve shows the zero-shot model the students carry as a feature (when they carry one): distillation
has earned its place only where a student beats it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from searchrel.annotate.text import TextConfig
from searchrel.baselines.embed import embed_predictions
from searchrel.data.dataset import Dataset, DatasetError
from searchrel.distill.config import LabelConfig, SampleConfig
from searchrel.distill.label import label_pairs, read_labels
from searchrel.distill.sample import sample_pairs, save_pairs
from searchrel.eval.charts import line_chart
from searchrel.eval.evaluate import EvalConfig, EvalResult, evaluate
from searchrel.eval.paired import compare_predictions, markdown
from searchrel.experiments.common import write_outputs
from searchrel.experiments.scorers import load_scorer
from searchrel.progress import console
from searchrel.student.config import StudentTrainConfig
from searchrel.student.train import train_student


class CurveConfig(BaseModel):
    amplifications: list[float] = Field(default_factory=lambda: [1.0, 10.0])
    sample: SampleConfig = Field(default_factory=SampleConfig)  # its amplification is the largest of the curve
    label: LabelConfig = Field(default_factory=LabelConfig)
    train: StudentTrainConfig = Field(default_factory=StudentTrainConfig)
    split: str = "test"
    metric: str = "ndcg@8"


def distilled_subset(labels, factor: float, n_human: int, seed: int):
    """The first ``factor`` × ``n_human`` labelled pairs of one seeded permutation, in pair order: subsets of
    growing factors are nested (x1 is part of x10), so a curve varies the amount of distilled data only."""
    order = np.random.default_rng(seed).permutation(len(labels))
    return labels.iloc[np.sort(order[: min(len(labels), round(factor * n_human))])]


def _factor(a: float) -> str:
    return f"x{a:g}"


def curve(ds: Dataset, teacher: Path, out: Path, cfg: CurveConfig) -> dict[str, EvalResult]:
    """Run the curve into ``out``: pairs.parquet, labels/, student-human/, student-x<N>/, curve.md/.json/.png, and
    curve-paired.md/.json: the most distilled student against the human-only student and against the zero-shot model
    the students carry, per language, with bootstrap intervals over queries (``eval.paired``)."""
    out.mkdir(parents=True, exist_ok=True)
    factors = sorted(cfg.amplifications)
    if not factors or factors[0] <= 0:
        raise ValueError("amplifications must be positive factors, e.g. 1,10,100")
    teacher_text = TextConfig.model_validate(json.loads((teacher / "teacher.json").read_text())["text"])
    # students read the item text the teacher judged
    train_cfg = cfg.train.model_copy(update={"student": cfg.train.student.model_copy(update={"text": teacher_text})})
    sample_cfg = cfg.sample.model_copy(update={"amplification": factors[-1]})
    pairs_path = out / "pairs.parquet"
    if not pairs_path.exists():
        save_pairs(sample_pairs(ds, sample_cfg, teacher_text), pairs_path, ds, sample_cfg)
    labels_dir = label_pairs(teacher, pairs_path, out / "labels", cfg.label, dataset=ds)
    labels = read_labels(labels_dir)
    n_human = len(ds.judgments)

    ev = EvalConfig(split=cfg.split)
    results: dict[str, EvalResult] = {}
    predictions = {}
    notes: list[str] = []
    steps: list[str] = []
    runs = [("human labels only", None, "student-human")] + [(_factor(a), a, f"student-{_factor(a)}") for a in factors]
    for label, factor, name in runs:
        run = out / name
        subset = None if factor is None else distilled_subset(labels, factor, n_human, cfg.sample.seed)
        if not (run / "student.json").exists():
            if run.exists():  # an interrupted student: start it again
                shutil.rmtree(run)
            console.print(f"[bold]student: {label}[/] ({0 if subset is None else len(subset):,} distilled pairs)")
            train_student(ds, run, train_cfg, subset)
        rec = json.loads((run / "train.json").read_text())
        notes.append(f"student {label}: {rec['distilled_pairs']:,} distilled + human pairs = {rec['train_pairs']:,} "
                     f"training pairs, {rec['steps']} steps in {rec['elapsed_s'] / 60:.1f} min")
        predictions[label] = load_scorer(run).predict(ds, cfg.split)
        results[f"student: {label}"] = evaluate(ds, predictions[label], ev)
        steps.append(label)
    teacher_result = evaluate(ds, load_scorer(teacher).predict(ds, cfg.split), ev)
    students = {f"student: {s}": results[f"student: {s}"] for s in steps}
    baselines = {}
    student = train_cfg.student
    if {"zero_shot", "zero_shot_product"} & set(student.features):
        zero_shot = embed_predictions(ds, student.text, cfg.split, model=student.zero_shot_model)
        baselines[f"zero-shot {student.zero_shot_model} (the students' feature)"] = evaluate(ds, zero_shot, ev)
        predictions[f"zero-shot {student.zero_shot_model}"] = zero_shot
    write_paired(out, ds, predictions, steps[-1], cfg.split, cfg.metric)
    return write_curve(out, students, steps, teacher_result, f"{ds.info.name}: amplification curve ({cfg.split} split)",
                       notes, cfg.metric, baselines)


def write_paired(out: Path, ds: Dataset, predictions: dict, top: str, split: str, metric: str) -> None:
    """curve-paired.md/.json: student ``top`` against the human-only student and the zero-shot model (the other
    entries of ``predictions``: the smaller students are left out), paired per query with bootstrap intervals."""
    if metric.partition("@")[0] not in ("ndcg", "p"):
        return  # paired intervals are per-query metrics: a pooled one (QWK, AUROC) has none
    others = [name for name in predictions if name == "human labels only" or name.startswith("zero-shot")]
    try:
        compared = {name: compare_predictions(ds, predictions[top], predictions[name], split, metric)
                    for name in others if name != top}
    except DatasetError as e:  # e.g. no query of the split has a relevant candidate: the curve itself still stands
        console.print(f"note: no paired comparison ({e})")
        return
    if not compared:
        return
    text = "\n\n".join(markdown(r, f"student {top}", name) for name, r in compared.items())
    (out / "curve-paired.md").write_text(f"# {ds.info.name}: is the most distilled student better?\n\n{text}\n")
    (out / "curve-paired.json").write_text(json.dumps({name: r.model_dump() for name, r in compared.items()},
                                                      indent=2) + "\n")
    console.print(text, markup=False, soft_wrap=True)


def write_curve(out: Path, students: dict[str, EvalResult], steps: list[str], teacher: EvalResult, title: str,
                notes: list[str] | None = None, metric: str = "ndcg@8",
                baselines: dict[str, EvalResult] | None = None) -> dict[str, EvalResult]:
    """curve.md/.json/.png (``baselines`` first — e.g. the zero-shot model the students carry —, the students in step
    order, then the teacher) and curve-line.png: the students' metric vs distilled data, with the teacher and each
    baseline as a reference line."""
    baselines = baselines or {}
    results = baselines | students | {"teacher": teacher}
    write_outputs(out, "curve", results, title, notes)
    values = [r.overall.get(metric) for r in students.values()]
    references = {"teacher": teacher.overall.get(metric)} | {name.split(" (")[0]: r.overall.get(metric)
                                                              for name, r in baselines.items()}
    line_chart(steps, {"student": values}, out / "curve-line.png",
               f"{title.split(':')[0]}: student {metric} vs distilled data", metric, references=references)
    return results
