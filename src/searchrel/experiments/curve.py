"""The amplification curve: students trained on the human labels only, then on x1, x10, x100... as many
teacher-labelled pairs, each evaluated next to the teacher — "more distilled data, better student", measured.

Pairs are sampled and labelled once, at the largest factor; each smaller factor trains on a uniform random
subset of them (nested: x1 is part of x10), so the curve varies the amount of distilled data and nothing else.
Every student gets the same epochs and budget; with several student seeds each is trained once per seed and the
curve reports their mean (``curve-seeds.md``: every seed and the spread). Finished stages are reused when the
command runs again. Beside the teacher, the curve shows the zero-shot model the students carry as a feature (when
they carry one): distillation has earned its place only where a student beats it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field, field_validator

from searchrel.annotate.text import TextConfig
from searchrel.baselines.embed import embed_predictions
from searchrel.data.dataset import Dataset, DatasetError
from searchrel.distill.config import LabelConfig, SampleConfig
from searchrel.distill.label import label_pairs, read_labels
from searchrel.distill.sample import sample_pairs, save_pairs
from searchrel.eval.charts import line_chart
from searchrel.eval.evaluate import EvalConfig, EvalResult, evaluate, mean_of
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
    # several student seeds: every student trained once per seed (student-<name>-s<seed>/), the curve reporting their
    # mean, curve-seeds.md each seed and the spread, the paired comparison each query's mean over the seeds;
    # None: the one seed of ``train``
    student_seeds: list[int] | None = None

    @field_validator("student_seeds")
    @classmethod
    def _distinct(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None and (not seeds or len(set(seeds)) != len(seeds)):
            raise ValueError(f"student seeds must be distinct and at least one (got {seeds})")
        return seeds


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
    predictions: dict[str, list] = {}
    per_seed: dict[str, list[EvalResult]] = {}
    notes: list[str] = []
    steps: list[str] = []
    seeds = cfg.student_seeds or [train_cfg.seed]
    for stale in ("curve-seeds.md", "curve-seeds.json", "curve-paired.md", "curve-paired.json"):
        (out / stale).unlink(missing_ok=True)  # an earlier run's: written again below where they apply
    runs = [("human labels only", None, "student-human")] + [(_factor(a), a, f"student-{_factor(a)}") for a in factors]
    for label, factor, name in runs:
        subset = None if factor is None else distilled_subset(labels, factor, n_human, cfg.sample.seed)
        predictions[label], per_seed[label] = [], []
        for seed in seeds:
            run = out / (f"{name}-s{seed}" if len(seeds) > 1 else name)
            if not (run / "student.json").exists():
                if run.exists():  # an interrupted student: start it again
                    shutil.rmtree(run)
                console.print(f"[bold]student: {label}[/] ({0 if subset is None else len(subset):,} distilled pairs"
                              + (f", seed {seed}" if len(seeds) > 1 else "") + ")")
                train_student(ds, run, train_cfg.model_copy(update={"seed": seed}), subset)
            rec = json.loads((run / "train.json").read_text())
            held = (rec.get("teacher_valid") or {}).get("pairs", 0)
            notes.append(f"student {label}{f' (seed {seed})' if len(seeds) > 1 else ''}: {rec['distilled_pairs']:,} "
                         f"distilled + human pairs = {rec['train_pairs']:,} training pairs"
                         + (f" ({held:,} distilled pairs held out to choose on)" if held else "")
                         + f", {rec.get('head_epochs_run', 0)} head epochs and {rec['steps']} tower steps in "
                         f"{rec['elapsed_s'] / 60:.1f} min, chosen on {rec['best'].get('on') or 'nothing (the last)'}")
            predictions[label].append(load_scorer(run).predict(ds, cfg.split))
            per_seed[label].append(evaluate(ds, predictions[label][-1], ev))
        results[f"student: {label}"] = mean_of(per_seed[label])
        steps.append(label)
    if len(seeds) > 1:
        write_seeds(out, ds.info.name, per_seed, seeds, cfg.metric)
    teacher_result = evaluate(ds, load_scorer(teacher).predict(ds, cfg.split), ev)
    students = {f"student: {s}": results[f"student: {s}"] for s in steps}
    baselines = {}
    student = train_cfg.student
    if {"zero_shot", "zero_shot_product"} & set(student.features):
        zero_shot = embed_predictions(ds, student.text, cfg.split, model=student.zero_shot_model)
        baselines[f"zero-shot {student.zero_shot_model} (the students' feature)"] = evaluate(ds, zero_shot, ev)
        predictions[f"zero-shot {student.zero_shot_model}"] = [zero_shot]
    write_paired(out, ds, predictions, steps[-1], cfg.split, cfg.metric)
    return write_curve(out, students, steps, teacher_result, f"{ds.info.name}: amplification curve ({cfg.split} split)",
                       notes, cfg.metric, baselines)


def write_seeds(out: Path, name: str, per_seed: dict[str, list[EvalResult]], seeds: list[int], metric: str) -> None:
    """curve-seeds.md/.json: each student's ``metric`` at every seed, overall and per language, with the mean and the
    spread (max - min) over the seeds."""
    table = {}
    lines = [f"# {name}: the curve's students at each seed ({metric})", "",
             "| student | slice | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | spread |",
             "|---|---|" + "---:|" * (len(seeds) + 2)]
    for label, runs in per_seed.items():
        slices = {"all": [r.overall.get(metric) for r in runs]}
        slices |= {f"lang={lang}": [r.by_language[lang].get(metric) for r in runs] for lang in runs[0].by_language}
        table[label] = {}
        for slice_, values in slices.items():
            if any(v is None for v in values):
                continue
            mean, spread = float(np.mean(values)), float(max(values) - min(values))
            table[label][slice_] = {"seeds": dict(zip(map(str, seeds), values)), "mean": mean, "spread": spread}
            lines.append(f"| {label} | {slice_} | " + " | ".join(f"{v:.3f}" for v in values)
                         + f" | {mean:.3f} | {spread:.3f} |")
    (out / "curve-seeds.md").write_text("\n".join(lines) + "\n")
    (out / "curve-seeds.json").write_text(json.dumps({"metric": metric, "seeds": seeds, "students": table},
                                                     indent=2) + "\n")


def write_paired(out: Path, ds: Dataset, predictions: dict, top: str, split: str, metric: str) -> None:
    """curve-paired.md/.json: student ``top`` against the human-only student and the zero-shot model (the other
    entries of ``predictions``: the smaller students are left out), paired per query with bootstrap intervals. Each
    entry is a prediction table or a list of them (seeds), compared through each query's mean over the list."""
    if metric.partition("@")[0] not in ("ndcg", "p"):
        return  # the curve is compared by a per-query metric: QWK needs grades the zero-shot model has not
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
