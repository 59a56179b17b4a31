"""CLI: ``teacher train`` and ``teacher predict`` — fine-tune the cross-encoder teacher and score pairs with it."""

from __future__ import annotations

from pathlib import Path

import typer

from searchrel.cli.common import console, text_config, user_errors, write_table
from searchrel.data.dataset import load_dataset
from searchrel.teacher.config import BiEncoderConfig, LoraOptions, TeacherConfig, TrainConfig

teacher_app = typer.Typer(help="The cross-encoder teacher.", no_args_is_help=True)

# Defaults are declared once, in the typed configs; the options only show them.
_T = {k: f.default for k, f in TeacherConfig.model_fields.items()}
_R = TrainConfig().model_dump()


@teacher_app.command("train")
@user_errors
def train_cmd(
    dataset: Path = typer.Argument(..., help="dataset directory (its train/valid split is used)"),
    out: Path = typer.Option(..., help="run directory: checkpoints, then the finished teacher"),
    recipe: str = typer.Option(_R["recipe"], help="ensemble (members stacked on valid) or cross_encoder (one model)"),
    members: str = typer.Option(",".join(_R["members"]), help="ensemble members: fields:MODEL (the whole "
                                "item text and each field), fields-only:MODEL (each field alone), embed:MODEL, "
                                "prf:MODEL, text_match, cross_encoder, biencoder"),
    prf_k: int = typer.Option(_R["prf_k"], help="catalogue neighbours in a prf member's query centroid"),
    ordinal_weight: float = typer.Option(_R["ordinal_weight"], help="ensemble stacker: weight of the ordinal "
                                         "likelihood of the grades beside ListNet (0: ranking only)"),
    biencoder_backbone: str = typer.Option(BiEncoderConfig().backbone, help="the bi-encoder member's embedding model"),
    backbone: str = typer.Option(_T["backbone"], help="the cross-encoder's backbone: registered name (me5-small, "
                                 "embeddinggemma-300m, gemma-3-270m), local path or hub id"),
    fields: str | None = typer.Option(None, help="item fields, comma-separated (default: the filled core fields)"),
    budgets: str | None = typer.Option(None, help="per-field token budgets, e.g. description=96"),
    epochs: int = typer.Option(_R["epochs"]),
    max_length: int = typer.Option(_T["max_length"], help="tokens per (query, item) pair"),
    lr: float = typer.Option(_R["lr"], help="backbone learning rate"),
    head_lr: float = typer.Option(_R["head_lr"], help="head learning rate"),
    batch_size: int = typer.Option(_R["batch_size"]),
    max_minutes: float | None = typer.Option(None, help="the run's budget: a cross-encoder stops cleanly on it keeping "
                                             "its best checkpoint; an ensemble's zero-shot encodings come first and "
                                             "stop with an error when it is spent (kept in the cache: --resume)"),
    select_metric: str = typer.Option(_R["select_metric"], help="validation metric for early stopping: ndcg@8 or qwk"),
    train_languages: str | None = typer.Option(None, help="train on these query languages only, e.g. en"),
    label_smoothing: float = typer.Option(_R["label_smoothing"]),
    soft_targets: bool = typer.Option(_R["soft_targets"], help="spread targets by rater_variance"),
    listwise_weight: float = typer.Option(_R["listwise_weight"], help="weight of the ListNet loss over each query's items (0: pointwise only)"),
    unfreeze_embeddings: bool = typer.Option(False, help="also train the word-embedding table (slow, hurts other languages)"),
    freeze_layers: int = typer.Option(_T["freeze_layers"], help="freeze the lowest N transformer layers"),
    zero_shot_feature: bool = typer.Option(_T["zero_shot_feature"], help="give the head the frozen backbone's query-item cosine"),
    lora: int | None = typer.Option(None, help="train LoRA adapters of this rank instead of the whole backbone (peft)"),
    fp32: bool = typer.Option(False, help="no bf16 autocast"),
    device: str = typer.Option(_R["device"], help="auto (a CUDA GPU when there is one), cpu, cuda, cuda:N"),
    seed: int = typer.Option(_R["seed"]),
    resume: bool = typer.Option(False, help="continue the run in --out from its last checkpoint"),
    workers: int = typer.Option(_R["workers"], help="train the cross-encoder data-parallel on N Ray Train workers "
                                "(the global batch stays --batch-size)"),
    ray_address: str | None = typer.Option(None, help="join this Ray cluster (default: a local Ray)"),
    gpus_per_worker: float = typer.Option(_R["gpus_per_worker"], help="GPUs per Ray worker (0: CPUs, gloo)"),
    fsdp: bool = typer.Option(_R["fsdp"], help="shard weights, gradients and optimizer state over the --workers "
                              "(FSDP2) instead of a full copy on each (DDP): for backbones that do not fit one device"),
) -> None:
    """Fine-tune the teacher on the human labels of DATASET."""
    from searchrel.teacher.recipe import train_teacher

    ds = load_dataset(dataset)
    text = text_config(ds, fields, budgets)
    teacher = TeacherConfig(backbone=backbone, text=text, max_length=max_length,
                            freeze_embeddings=not unfreeze_embeddings, freeze_layers=freeze_layers,
                            zero_shot_feature=zero_shot_feature,
                            lora=LoraOptions(r=lora, alpha=2 * lora) if lora else None)
    if recipe not in ("ensemble", "cross_encoder"):
        raise ValueError(f"unknown recipe {recipe!r}: ensemble or cross_encoder")
    cfg = TrainConfig(recipe=recipe, members=[m.strip() for m in members.split(",") if m.strip()], prf_k=prf_k,
                      ordinal_weight=ordinal_weight,
                      biencoder=BiEncoderConfig(backbone=biencoder_backbone), teacher=teacher, epochs=epochs, lr=lr, head_lr=head_lr, batch_size=batch_size,
                      max_minutes=max_minutes, select_metric=select_metric, label_smoothing=label_smoothing,
                      soft_targets=soft_targets, listwise_weight=listwise_weight, seed=seed, bf16=False if fp32 else None, device=device,
                      train_languages=train_languages.split(",") if train_languages else None,
                      workers=workers, ray_address=ray_address, gpus_per_worker=gpus_per_worker, fsdp=fsdp)
    path = train_teacher(ds, out, cfg, resume=resume)
    console.print(f"teacher -> {path}  (evaluate: searchrel eval --model {path} --data {dataset})")


@teacher_app.command("predict")
@user_errors
def predict_cmd(
    model: Path = typer.Argument(..., help="a trained teacher directory"),
    dataset: Path = typer.Argument(..., help="dataset directory"),
    out: Path = typer.Option(..., help="Parquet or CSV with query_id, item_id, p_<grade>..., score, grade"),
    split: str = typer.Option("all", help="judged pairs of this split (test, valid, train, all)"),
    pairs: Path | None = typer.Option(None, help="score these query_id,item_id pairs instead of the judged ones"),
    batch_size: int = typer.Option(64),
) -> None:
    """Write per-pair grade probabilities of a teacher."""
    from searchrel.eval.evaluate import read_predictions
    from searchrel.teacher.inference import load_teacher, predict_dataset

    ds = load_dataset(dataset)
    m, tok = load_teacher(model)
    todo = read_predictions(pairs) if pairs else None
    preds = predict_dataset(m, tok, ds, split, batch_size=batch_size, pairs=todo)
    write_table(preds, out)
    console.print(f"{len(preds):,} pairs scored -> {out}")
