"""What the experiments share: train-or-reuse a teacher, evaluate it, and write tables and charts."""

from __future__ import annotations

import json
from pathlib import Path

from searchrel.data.dataset import Dataset
from searchrel.eval.charts import bar_chart
from searchrel.eval.evaluate import EvalConfig, EvalResult, evaluate
from searchrel.eval.tables import markdown_table
from searchrel.experiments.scorers import load_scorer
from searchrel.progress import console
from searchrel.teacher.config import TrainConfig
from searchrel.teacher.model import CONFIG_FILE
from searchrel.teacher.train import train


def teacher_result(ds: Dataset, run: Path, cfg: TrainConfig, split: str) -> EvalResult:
    """Train a teacher into ``run`` (reusing a finished one, resuming an interrupted one) and evaluate it."""
    if (run / CONFIG_FILE).exists():
        console.print(f"reusing the finished teacher in {run}")
    else:
        train(ds, run, cfg, resume=run.exists())
    return evaluate(ds, load_scorer(run).predict(ds, split), EvalConfig(split=split))


def training_note(name: str, run: Path) -> str:
    """How a teacher was trained, from its own record: budget, steps, time, throughput, best step."""
    rec = json.loads((run / "train.json").read_text())
    c = rec["config"]
    budget = f"{c['max_minutes']:g}-minute budget" if c.get("max_minutes") else f"{c['epochs']} epochs"
    return (f"{name}: {budget}, {rec['steps']} steps in {rec['elapsed_s'] / 60:.1f} min "
            f"({rec['tokens_per_s'] or 0:,.0f} tokens/s), best valid {c['select_metric']} at step {rec['best']['step']}")


def write_outputs(out: Path, name: str, results: dict[str, EvalResult], title: str,
                  notes: list[str] | None = None) -> dict[str, Path]:
    """``NAME.md`` (tables + chart), ``NAME.json`` (every metric) and ``NAME.png``."""
    out.mkdir(parents=True, exist_ok=True)
    chart = bar_chart(results, out / f"{name}.png", title)
    md = [f"# {title}\n", markdown_table(results, breakdown=False), "", "Per language and country:\n",
          markdown_table(results, breakdown=True), "", f"![{title}]({chart.name})", ""]
    if notes:
        md += ["Notes:", *[f"- {n}" for n in notes], ""]
    (out / f"{name}.md").write_text("\n".join(md))
    (out / f"{name}.json").write_text(json.dumps({k: v.model_dump() for k, v in results.items()} | {"notes": notes or []},
                                                 indent=2) + "\n")
    return {"markdown": out / f"{name}.md", "json": out / f"{name}.json", "chart": chart}
