"""Are suggested ratings worth more than random ones? Measured on the synthetic world, where the true grade is known.

From a finished synthetic pipeline run: the candidate pool of ``rating_round`` (the run's teacher labels and its
served student), one sheet of ``budget`` suggested pairs and, per seed, one of ``budget`` pairs drawn uniformly
from the same pool. A simulated rater grades each sheet with the world's true (noise-free) grade; the teacher is
retrained with the run's own training config on the run's judgments plus the ratings — and, as the reference,
on the judgments alone — once per seed (the training seed, and the random draw), and evaluated on the held-out
split. The result: NDCG@8 and QWK per arm (mean and spread over seeds), and how far the base teacher's expected
grade was from the truth on the pairs each sheet picked.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from searchrel.data.dataset import Dataset, load_dataset
from searchrel.data.ratings import merge_ratings
from searchrel.data.synth import SynthConfig, World, build_world
from searchrel.eval.evaluate import EvalConfig, evaluate
from searchrel.experiments.rating_round import SuggestConfig, candidates, random_sheet, suggest
from searchrel.experiments.scorers import load_scorer
from searchrel.io import write_json
from searchrel.layout import RunLayout
from searchrel.progress import console
from searchrel.teacher.config import TrainConfig
from searchrel.teacher.recipe import train_teacher

METRICS = ("ndcg@8", "qwk")


class RatingValueConfig(BaseModel):
    """The experiment's size: rows per sheet, seeds, the split it is measured on."""

    model_config = ConfigDict(extra="forbid")

    budget: int = Field(200, ge=1)
    seeds: int = Field(3, ge=1)
    split: str = "test"
    # None: the languages the run's teacher trains on (a rating in another language would not reach it)
    languages: list[str] | None = None


def served_student(run: Path) -> Path | None:
    """The run's served student: the one of the largest amplification factor (``students/x<factor>``)."""
    found = []
    for d in RunLayout(run).root.joinpath("students").glob("x*"):
        try:
            found.append((float(d.name[1:]), d))
        except ValueError:
            continue
    return max(found)[1] if found else None


def simulated_ratings(world: World, sheet: pd.DataFrame, rater: str = "world") -> pd.DataFrame:
    """The sheet graded by a rater who knows the world's true grade."""
    grades = world.true_grade(sheet["query_id"], sheet["item_id"])
    return pd.DataFrame({"query_id": sheet["query_id"].to_numpy(), "item_id": sheet["item_id"].to_numpy(),
                         "grade": grades.astype("int64"), "rater": rater})


def run_world(run: Path) -> World:
    """The synthetic world a run was built from (its data stage's synth config), checked against its dataset."""
    at = RunLayout(run)
    params = json.loads(at.record("data").read_text())["params"]
    if params.get("source") != "synthetic":
        raise ValueError(f"{run}: not a synthetic-world run (data.source = {params.get('source')!r}): the true "
                         f"grades this needs exist only in the synthetic world")
    return build_world(SynthConfig.model_validate(params["synth"]))


def _train_eval(ds: Dataset, where: Path, train: TrainConfig, split: str) -> dict:
    shutil.rmtree(where, ignore_errors=True)
    train_teacher(ds, where, train)
    res = evaluate(ds, load_scorer(where).predict(ds, split), EvalConfig(split=split))
    return {m: res.overall.get(m) for m in METRICS}


def rating_value(run: str | Path, out: str | Path, cfg: RatingValueConfig = RatingValueConfig()) -> dict:
    """Run the experiment; write ``out/rating-value.json`` and ``.md``; return the summary."""
    run, out = Path(run), Path(out)
    at = RunLayout(run)
    train = TrainConfig.model_validate(json.loads(at.record("teacher").read_text())["params"]["train"])
    ds = load_dataset(at.dataset)
    world = run_world(run)
    languages = cfg.languages if cfg.languages is not None else train.train_languages
    pool = candidates(ds, at.labels, served_student(run), None, languages)
    sheets = {"suggested": suggest(ds, pool, SuggestConfig(budget=cfg.budget, languages=languages))}
    for seed in range(cfg.seeds):
        sheets[f"random-{seed}"] = random_sheet(ds, pool, cfg.budget, seed)
    sheet_stats = {}
    for name, sheet in sheets.items():  # how wrong the base teacher was where each sheet asks for a label
        truth = world.true_grade(sheet["query_id"], sheet["item_id"])
        sheet_stats[name] = {"rows": len(sheet), "queries": int(sheet["query_id"].nunique()),
                             "teacher_abs_error": round(float(np.abs(sheet["teacher_expected"] - truth).mean()), 3),
                             "true_grade_mean": round(float(truth.mean()), 3)}
    arms: dict[str, list[dict]] = {"judgments only": [], "+ suggested": [], "+ random": []}
    for seed in range(cfg.seeds):
        seeded = train.model_copy(update={"seed": seed})
        console.rule(f"seed {seed}")
        arms["judgments only"].append(_train_eval(ds, out / "teachers" / f"base-{seed}", seeded, cfg.split))
        for arm, sheet in (("+ suggested", sheets["suggested"]), ("+ random", sheets[f"random-{seed}"])):
            merged, _ = merge_ratings(ds, simulated_ratings(world, sheet))
            arms[arm].append(_train_eval(merged, out / "teachers" / f"{arm[2:]}-{seed}", seeded, cfg.split))
    table = {arm: {m: {"mean": round(float(np.mean([r[m] for r in rs])), 4),
                       "sd": round(float(np.std([r[m] for r in rs], ddof=1)) if len(rs) > 1 else 0.0, 4),
                       "runs": [round(float(r[m]), 4) for r in rs]} for m in METRICS} for arm, rs in arms.items()}
    summary = {"run": str(run), "config": cfg.model_dump(), "languages": languages, "pool": int(len(pool)),
               "recipe": train.recipe, "split": cfg.split, "sheets": sheet_stats, "arms": table}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "rating-value.json", summary)
    lines = [f"# Suggested vs random ratings (+{cfg.budget} each, {cfg.seeds} seeds, {cfg.split} split)", "",
             "| teacher trained on | " + " | ".join(f"{m} mean ± sd" for m in METRICS) + " |",
             "|---|" + "---|" * len(METRICS)]
    for arm, row in table.items():
        lines.append(f"| {arm} | " + " | ".join(f"{row[m]['mean']:.4f} ± {row[m]['sd']:.4f}" for m in METRICS) + " |")
    lines += ["", "| sheet | rows | queries | base teacher's mean abs error vs true grade |", "|---|---|---|---|"]
    lines += [f"| {n} | {s['rows']} | {s['queries']} | {s['teacher_abs_error']:.3f} |" for n, s in sheet_stats.items()]
    (out / "rating-value.md").write_text("\n".join(lines) + "\n")
    return summary
