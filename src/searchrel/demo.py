"""The built-in end-to-end job on synthetic data: synthesize → annotate → baselines → teacher → evaluation.

Each stage writes its artefact under the run directory so the result can be inspected (and evaluated
again with ``searchrel eval``) without rerunning anything.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from searchrel.annotate.logs import AnnotateConfig, annotate
from searchrel.annotate.text import TextConfig
from searchrel.baselines.bm25 import bm25_predictions
from searchrel.baselines.embed import embed_predictions
from searchrel.data.synth import SynthConfig, synthesize
from searchrel.eval.evaluate import EvalConfig, EvalResult, evaluate
from searchrel.eval.tables import markdown_table
from searchrel.progress import console

# The field sets the BM25 baseline is shown with: what each field adds is visible from the first run.
BM25_FIELD_SETS = {
    "bm25[title,description]": ["title", "description"],
    "bm25[+image_caption]": ["title", "description", "image_caption"],
    "bm25[+boards,+queries]": ["title", "description", "image_caption", "board_titles", "engaged_queries"],
}


ALL_FIELDS = BM25_FIELD_SETS["bm25[+boards,+queries]"]
TEACHER_MINUTES = 4.0  # enough for the teacher to pass the baselines on the default world; the README has longer runs


def run_demo(out: Path, synth: SynthConfig | None = None, split: str = "test",
             teacher_backbone: str = "me5-small", teacher_minutes: float | None = TEACHER_MINUTES) -> dict[str, EvalResult]:
    """Run the demo into ``out``; return each system's evaluation on ``split``. ``teacher_minutes=None``
    skips the teacher (baselines only)."""
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    ds = synthesize(synth or SynthConfig())
    timings["synthesize"] = time.perf_counter() - t
    console.print(f"synthesized {len(ds.items):,} items, {len(ds.queries):,} queries, {len(ds.judgments):,} "
                  f"judgments, {len(ds.search_log):,} log events")

    t = time.perf_counter()
    ds, report = annotate(ds, AnnotateConfig())
    ds.save(out / "dataset")
    timings["annotate"] = time.perf_counter() - t
    console.print(f"annotated: {report.items_with_boards:,} items with board titles, "
                  f"{report.items_with_queries:,} with engaged queries -> {out / 'dataset'}")

    results: dict[str, EvalResult] = {}
    t = time.perf_counter()
    for name, fields in BM25_FIELD_SETS.items():
        preds = bm25_predictions(ds, TextConfig(fields=fields), split)
        preds.to_parquet(out / f"predictions-{_slug(name)}.parquet", index=False)
        results[name] = evaluate(ds, preds, EvalConfig(split=split))
        results[name].save(out / f"metrics-{_slug(name)}.json")
    timings["bm25"] = time.perf_counter() - t

    t = time.perf_counter()
    preds = embed_predictions(ds, TextConfig(fields=ALL_FIELDS), split, model=teacher_backbone)
    results[f"zero-shot {teacher_backbone}"] = evaluate(ds, preds, EvalConfig(split=split))
    results[f"zero-shot {teacher_backbone}"].save(out / "metrics-zero-shot.json")
    timings["zero_shot"] = time.perf_counter() - t

    if teacher_minutes is not None:
        from searchrel.experiments.common import teacher_result
        from searchrel.teacher.config import TeacherConfig, TrainConfig

        t = time.perf_counter()
        cfg = TrainConfig(teacher=TeacherConfig(backbone=teacher_backbone, text=TextConfig(fields=ALL_FIELDS)),
                          max_minutes=teacher_minutes, train_languages=["en"])
        name = f"teacher {teacher_backbone} (trained on English queries, {teacher_minutes:g} min)"
        results[name] = teacher_result(ds, out / "teacher", cfg, split)
        results[name].save(out / "metrics-teacher.json")
        timings["teacher"] = time.perf_counter() - t

    (out / "results.md").write_text(f"# searchrel demo — synthetic world, split={split}\n\n"
                                    + markdown_table(results) + "\n")
    (out / "run.json").write_text(json.dumps({"timings_s": timings, "systems": list(results)}, indent=2) + "\n")
    return results


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-").replace("--", "-")
