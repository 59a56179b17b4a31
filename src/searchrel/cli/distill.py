"""CLI: ``distill sample``, ``distill label`` and ``distill curve`` — distillation data and the amplification curve."""

from __future__ import annotations

from pathlib import Path

import typer

from searchrel.cli.common import console, user_errors
from searchrel.data.dataset import load_dataset
from searchrel.distill.config import LabelConfig, SampleConfig

distill_app = typer.Typer(help="Distillation: sample pairs, label them with the teacher, measure the curve.",
                          no_args_is_help=True)
_S = {k: f.default for k, f in SampleConfig.model_fields.items()}
_L = {k: f.default for k, f in LabelConfig.model_fields.items()}


_PSEUDO = ("queries cut from item titles, labelled beside the dataset's: a number, or auto (without a search log, "
           "enough for about --candidates-per-query candidates each)")


def _pseudo(value: str) -> int | str:
    """``--pseudo-queries``: ``auto`` or a whole number (validated by SampleConfig)."""
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise typer.BadParameter(f"a whole number or auto, not {value!r}") from None


def _splits(value: str) -> list[str]:
    return [s for s in value.split(",") if s]


@distill_app.command("sample")
@user_errors
def sample_cmd(
    dataset: Path = typer.Argument(..., help="dataset directory"),
    out: Path = typer.Option(..., help="Parquet file of query_id, item_id, source"),
    amplification: float = typer.Option(_S["amplification"], help="pairs to sample, as a multiple of the human labels"),
    source: str = typer.Option(_S["source"], help="auto (log, topped up by retrieval), log or retrieval"),
    exclude_splits: str = typer.Option("valid,test", help="splits whose queries are never sampled ('' for none)"),
    embed_model: str = typer.Option(_S["embed_model"], help="zero-shot model for embedding retrieval"),
    pseudo_queries: str = typer.Option(str(_S["pseudo_queries"]), help=_PSEUDO),
    candidates_per_query: int = typer.Option(_S["candidates_per_query"],
                                             help="the automatic number of pseudo-queries aims at this many "
                                                  "candidates per query"),
    seed: int = typer.Option(_S["seed"]),
) -> None:
    """Sample (query, candidate) pairs for the teacher to label, from the search log or by retrieval."""
    from searchrel.distill.sample import sample_pairs, save_pairs

    ds = load_dataset(dataset)
    cfg = SampleConfig(amplification=amplification, source=source, exclude_splits=_splits(exclude_splits),
                       embed_model=embed_model, pseudo_queries=_pseudo(pseudo_queries),
                       candidates_per_query=candidates_per_query, seed=seed)
    pairs = sample_pairs(ds, cfg)
    save_pairs(pairs, out, ds, cfg)
    by = ", ".join(f"{k} {v:,}" for k, v in pairs["source"].value_counts().items())
    console.print(f"{len(pairs):,} pairs ({by}; {len(ds.judgments):,} human labels) -> {out}")


@distill_app.command("label")
@user_errors
def label_cmd(
    teacher: Path = typer.Argument(..., help="a trained teacher directory"),
    pairs: Path = typer.Argument(..., help="pairs file from `distill sample` (or Parquet/CSV with query_id, item_id)"),
    out: Path = typer.Option(..., help="labels directory (Parquet shards); rerun the same command to resume"),
    dataset: Path | None = typer.Option(None, help="dataset the ids belong to (default: the one the pairs file names)"),
    backend: str = typer.Option(_L["backend"], help="local, or ray (Ray Data actor pool)"),
    ray_address: str | None = typer.Option(None, help="Ray cluster to join (e.g. ray://head:10001, auto); "
                                                      "default: a local Ray"),
    ray_actors: int = typer.Option(_L["ray_actors"], help="model replicas in the Ray actor pool"),
    ray_cpus_per_actor: float = typer.Option(_L["ray_cpus_per_actor"]),
    ray_gpus_per_actor: float = typer.Option(_L["ray_gpus_per_actor"]),
    shard_size: int = typer.Option(_L["shard_size"], help="pairs per shard (the unit of work and of recovery)"),
    batch_size: int = typer.Option(_L["batch_size"], help="pairs per forward pass"),
    device: str = typer.Option(_L["device"], help="where each labeller runs: auto (a CUDA GPU when it sees one), "
                                                  "cpu, cuda, cuda:N"),
) -> None:
    """Label every pair with the teacher's grade distribution (crash-safe: rerun to resume)."""
    from searchrel.distill.label import label_pairs, read_labels

    cfg = LabelConfig(backend=backend, ray_address=ray_address, ray_actors=ray_actors,
                      ray_cpus_per_actor=ray_cpus_per_actor, ray_gpus_per_actor=ray_gpus_per_actor,
                      shard_size=shard_size, batch_size=batch_size, device=device)
    done = label_pairs(teacher, pairs, out, cfg, dataset=dataset)
    console.print(f"{len(read_labels(done)):,} pairs labelled -> {done}")


@distill_app.command("curve")
@user_errors
def curve_cmd(
    dataset: Path = typer.Argument(..., help="dataset directory"),
    teacher: Path = typer.Option(..., help="the trained teacher that labels the pairs"),
    out: Path = typer.Option(..., help="where pairs, labels, students and curve.md/.json/.png go"),
    amplifications: str = typer.Option("1,10", help="distilled pairs per human label, e.g. 1,10,100"),
    epochs: int | None = typer.Option(None, help="epochs per student (default: the student's)"),
    max_minutes: float | None = typer.Option(None, help="training budget per student"),
    head_epochs: int | None = typer.Option(None, help="epochs of each student's head on frozen backbones first"),
    features: str | None = typer.Option(None, help="the students' pair features, comma-separated (default: "
                                        "the student's)"),
    layers: int | None = typer.Option(None, help="tower layers kept from the backbone"),
    zero_shot_model: str | None = typer.Option(None, help="the students' zero_shot feature model (default: "
                                               "me5-small; e.g. embeddinggemma-300m)"),
    human_weight: float | None = typer.Option(None, help="weight of each human label beside each distilled pair "
                                              "(default: the student's)"),
    head_average_from: int | None = typer.Option(None, help="from this head epoch on, each student keeps the mean "
                                                 "of its head's weights since (default: the student's; 0: off)"),
    teacher_valid_share: float | None = typer.Option(None, help="share of each student's distilled queries held out "
                                                     "to choose on, against the teacher (default: the student's; "
                                                     "0: the human valid split)"),
    student_seed: str | None = typer.Option(None, help="the students' seed (initialisation and batch order), or "
                                            "several comma-separated (0,1,2): every student once per seed, the curve "
                                            "their mean, curve-seeds.md each seed; the pairs and labels stay those "
                                            "of --out"),
    split: str = typer.Option("test"),
    backend: str = typer.Option(_L["backend"], help="labelling backend: local or ray"),
    pseudo_queries: str = typer.Option(str(_S["pseudo_queries"]), help=_PSEUDO),
) -> None:
    """Students on human labels only, then on x1, x10, ... teacher-labelled pairs, next to the teacher."""
    from searchrel.eval.tables import rich_table
    from searchrel.experiments.curve import CurveConfig, curve
    from searchrel.student.config import StudentTrainConfig

    ds = load_dataset(dataset)
    seeds = None
    if student_seed is not None:  # CurveConfig refuses repeated seeds
        try:
            seeds = [int(x) for x in student_seed.split(",") if x.strip()]
        except ValueError:
            seeds = []
        if not seeds:
            raise typer.BadParameter(f"{student_seed!r}: give an integer seed or several distinct ones, "
                                     "comma-separated (0,1,2)", param_hint="--student-seed")
    update = {k: v for k, v in {"epochs": epochs, "max_minutes": max_minutes, "head_epochs": head_epochs,
                                "human_weight": human_weight, "head_average_from": head_average_from,
                                "teacher_valid_share": teacher_valid_share, "seed": seeds[0] if seeds else None}.items()
              if v is not None}
    student = {k: v for k, v in {"layers": layers, "zero_shot_model": zero_shot_model,
                                 "features": None if features is None else [f for f in features.split(",") if f]
                                 }.items() if v is not None}
    train = StudentTrainConfig.model_validate({**update, "student": student})  # validated: a bad value is refused
    cfg = CurveConfig(amplifications=[float(a) for a in amplifications.split(",") if a], train=train, split=split,
                      label=LabelConfig(backend=backend), sample=SampleConfig(pseudo_queries=_pseudo(pseudo_queries)),
                      student_seeds=seeds)
    results = curve(ds, teacher, out, cfg)
    console.print(rich_table(results, title=f"amplification curve ({split} split)", breakdown=False))
    console.print(f"-> {out / 'curve.md'}, {out / 'curve.json'}, {out / 'curve.png'}, {out / 'curve-line.png'}")
