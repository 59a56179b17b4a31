"""CLI: ``compare`` (the backbone comparison) and ``ablate`` (the feature ablation)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import typer

from searchrel.annotate.text import TextConfig
from searchrel.cli.common import console, user_errors
from searchrel.data.dataset import load_dataset
from searchrel.eval.tables import rich_table
from searchrel.teacher.config import TrainConfig


def train_config(ds, config: Path | None, max_minutes: float | None, epochs: int | None, fields: str | None,
                 train_languages: str | None) -> TrainConfig:
    """A TrainConfig from an optional TOML/JSON file, with the common options on top."""
    cfg = TrainConfig()
    if config is not None:
        raw = tomllib.loads(config.read_text()) if config.suffix == ".toml" else json.loads(config.read_text())
        cfg = TrainConfig.model_validate(raw)
    update: dict = {}
    if max_minutes is not None:
        update["max_minutes"] = max_minutes
    if epochs is not None:
        update["epochs"] = epochs
    if train_languages:
        update["train_languages"] = train_languages.split(",")
    text = TextConfig.parse(fields) if fields else (cfg.teacher.text if config else TextConfig.default_for(ds.items))
    update["teacher"] = cfg.teacher.model_copy(update={"text": text})
    return cfg.model_copy(update=update)


@user_errors
def compare_cmd(
    dataset: Path = typer.Argument(..., help="dataset directory"),
    out: Path = typer.Option(..., help="where the teachers, comparison.md/.json/.png go"),
    backbones: str = typer.Option("me5-small,gemma-3-270m", help="teacher backbones, comma-separated"),
    zero_shot_model: str = typer.Option("me5-small", help="the zero-shot embedding baseline's model"),
    max_minutes: float | None = typer.Option(None, help="training budget per teacher"),
    epochs: int | None = typer.Option(None),
    fields: str | None = typer.Option(None, help="item fields for every system"),
    train_languages: str | None = typer.Option(None, help="train teachers on these query languages only"),
    config: Path | None = typer.Option(None, help="TrainConfig as TOML or JSON (teacher options, lr, ...)"),
    split: str = typer.Option("test"),
) -> None:
    """BM25, the zero-shot embedding model and a teacher per backbone: one table and one chart."""
    from searchrel.experiments.compare import CompareConfig, compare

    ds = load_dataset(dataset)
    cfg = CompareConfig(backbones=[b for b in backbones.split(",") if b], zero_shot_model=zero_shot_model,
                        train=train_config(ds, config, max_minutes, epochs, fields, train_languages), split=split)
    results = compare(ds, out, cfg)
    console.print(rich_table(results, title=f"comparison ({split} split)", breakdown=False))
    console.print(f"-> {out / 'comparison.md'}, {out / 'comparison.json'}, {out / 'comparison.png'}")


@user_errors
def ablate_cmd(
    dataset: Path = typer.Argument(..., help="dataset directory (annotated, for board titles and engaged queries)"),
    out: Path = typer.Option(..., help="where the teachers, ablation.md/.json/.png go"),
    max_minutes: float | None = typer.Option(None, help="training budget per step"),
    epochs: int | None = typer.Option(None),
    train_languages: str | None = typer.Option(None),
    config: Path | None = typer.Option(None, help="TrainConfig as TOML or JSON"),
    split: str = typer.Option("test"),
) -> None:
    """Train the teacher on growing field sets (caption; + title, description; + boards; + engaged queries)."""
    from searchrel.experiments.ablate import AblateConfig, ablate

    ds = load_dataset(dataset)
    cfg = AblateConfig(train=train_config(ds, config, max_minutes, epochs, None, train_languages), split=split)
    _, results, notes = ablate(ds, out, cfg)
    for n in notes:
        console.print(f"note: {n}")
    console.print(rich_table(results, title=f"feature ablation ({split} split)", breakdown=False))
    console.print(f"-> {out / 'ablation.md'}, {out / 'ablation.json'}, {out / 'ablation.png'}, {out / 'ablation-curve.png'}")
