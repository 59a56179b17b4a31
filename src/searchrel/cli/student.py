"""CLI: ``student train`` and ``student predict`` — the bi-encoder student distilled from the teacher."""

from __future__ import annotations

from pathlib import Path

import typer

from searchrel.cli.common import console, text_config, user_errors, write_table
from searchrel.data.dataset import load_dataset
from searchrel.student.config import StudentConfig, StudentTrainConfig

student_app = typer.Typer(help="The bi-encoder student.", no_args_is_help=True)
_M = StudentConfig().model_dump()
_T = StudentTrainConfig().model_dump()


@student_app.command("train")
@user_errors
def train_cmd(
    dataset: Path = typer.Argument(..., help="dataset directory (human labels of train, validation on valid)"),
    out: Path = typer.Option(..., help="directory for the finished student"),
    labels: Path | None = typer.Option(None, help="teacher labels from `distill label` (default: human labels only)"),
    backbone: str = typer.Option(_M["backbone"], help="tower backbone: registered name, local path or hub id"),
    layers: int | None = typer.Option(_M["layers"], help="keep the first N transformer layers of each tower"),
    dim: int = typer.Option(_M["dim"], help="embedding size"),
    features: str = typer.Option(",".join(_M["features"]), help="pair features for the scorer ('' for none)"),
    zero_shot_model: str = typer.Option(_M["zero_shot_model"], help="model behind the zero_shot feature"),
    fields: str | None = typer.Option(None, help="item fields (default: the teacher's, else the filled core fields)"),
    epochs: int = typer.Option(_T["epochs"]),
    batch_items: int = typer.Option(_T["batch_items"], help="items per step, each with all its pairs"),
    lr: float = typer.Option(_T["lr"]),
    head_lr: float = typer.Option(_T["head_lr"]),
    head_epochs: int = typer.Option(_T["head_epochs"], help="epochs of the head alone on frozen backbones first (LP-FT)"),
    human_weight: float = typer.Option(_T["human_weight"], help="weight of the human-label cross-entropy (0: off)"),
    head_average_from: int = typer.Option(_T["head_average_from"], help="from this head epoch on, keep the mean of "
                                          "the head's weights since (0: each epoch's own)"),
    teacher_valid_share: float = typer.Option(_T["teacher_valid_share"], help="share of the distilled queries held "
                                              "out to choose on, against the teacher (0: the human valid split)"),
    max_minutes: float | None = typer.Option(None, help="stop cleanly within this budget, keeping the best"),
    seed: int = typer.Option(_T["seed"]),
) -> None:
    """Train the student on the teacher's soft labels (KL) plus the human labels (cross-entropy)."""
    from searchrel.distill.label import read_labels
    from searchrel.student.train import train_student

    ds = load_dataset(dataset)
    text = text_config(ds, fields, None)
    if fields is None and labels is not None:  # the item text the teacher judged
        import json

        from searchrel.annotate.text import TextConfig

        manifest = json.loads((labels / "labels.json").read_text()) if (labels / "labels.json").is_file() else {}
        teacher_json = Path(manifest.get("teacher", "")) / "teacher.json"
        if teacher_json.is_file():
            text = TextConfig.model_validate(json.loads(teacher_json.read_text())["text"])
    student = StudentConfig(backbone=backbone, layers=layers, dim=dim, text=text, zero_shot_model=zero_shot_model,
                            features=[f for f in features.split(",") if f])
    cfg = StudentTrainConfig(student=student, epochs=epochs, batch_items=batch_items, lr=lr, head_lr=head_lr,
                             head_epochs=head_epochs, human_weight=human_weight, head_average_from=head_average_from,
                             teacher_valid_share=teacher_valid_share, max_minutes=max_minutes, seed=seed)
    path = train_student(ds, out, cfg, read_labels(labels) if labels else None)
    console.print(f"student -> {path}  (evaluate: searchrel eval --model {path} --data {dataset})")


@student_app.command("predict")
@user_errors
def predict_cmd(
    model: Path = typer.Argument(..., help="a trained student directory"),
    dataset: Path = typer.Argument(..., help="dataset directory"),
    out: Path = typer.Option(..., help="Parquet or CSV with query_id, item_id, p_<grade>..., score, grade"),
    split: str = typer.Option("all", help="judged pairs of this split (test, valid, train, all)"),
    pairs: Path | None = typer.Option(None, help="score these query_id,item_id pairs instead of the judged ones"),
) -> None:
    """Write per-pair grade probabilities of a student."""
    from searchrel.eval.evaluate import read_predictions
    from searchrel.student.model import load_student
    from searchrel.student.predict import predict_dataset

    ds = load_dataset(dataset)
    preds = predict_dataset(load_student(model), ds, split, pairs=read_predictions(pairs) if pairs else None)
    write_table(preds, out)
    console.print(f"{len(preds):,} pairs scored -> {out}")
