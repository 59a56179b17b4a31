"""The default teacher recipe: score the zero-shot members, train the others within what is left of the budget, then
fit the stacker.

``searchrel teacher train`` runs this when ``recipe = "ensemble"`` (the default): the zero-shot and text-match
members need no training and are scored first — their encodings are a fixed cost, stopped with ``BudgetSpent`` when
``max_minutes`` runs out (what was encoded stays in the embedding cache) —, then trained members are trained on the
train split into sub-directories of the run (``biencoder/``, ``cross-encoder/``), each stopping cleanly on its share
of the budget left, and the stacker and the QWK cut points are fitted on the validation split — labels no trained
member has seen. A member already finished in the run directory is reused, so an interrupted run resumes at the
member it stopped in (the cross-encoder from its own checkpoint, the encodings from the cache).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from searchrel.annotate.text import build_item_texts
from searchrel.baselines.text_match import TextMatch
from searchrel.data.dataset import Dataset
from searchrel.eval.grades import fit_thresholds
from searchrel.models.training import Budget
from searchrel.progress import console
from searchrel.teacher.biencoder import HEAD_FILE, train_biencoder
from searchrel.teacher.config import TrainConfig
from searchrel.teacher.ensemble import EnsembleConfig, EnsembleTeacher, Member, fit_stacker, reference_items
from searchrel.teacher.train import _training_pairs
from searchrel.teacher.train import train as train_alone

BIENCODER_DIR = "biencoder"
CROSS_ENCODER_DIR = "cross-encoder"


# members read through a zero-shot model named after the prefix: PREFIX:MODEL
_MODEL_MEMBERS = {"fields": {"kind": "fields"}, "fields-only": {"kind": "fields", "whole": False},
                  "prf": {"kind": "prf"}, "embed": {"kind": "embed"}}


def _members(cfg: TrainConfig) -> list[Member]:
    out = []
    for name in cfg.members:
        if name == "biencoder":
            out.append(Member(kind="biencoder", source=BIENCODER_DIR))
        elif name == "cross_encoder":
            out.append(Member(kind="cross_encoder", source=CROSS_ENCODER_DIR))
        elif name == "text_match":
            out.append(Member(kind="text_match"))
        elif name.partition(":")[0] in _MODEL_MEMBERS:
            prefix, _, model = name.partition(":")
            if not model.strip():
                raise ValueError(f"ensemble member {name!r} names no model (e.g. {prefix}:embeddinggemma-300m)")
            out.append(Member(source=model, **_MODEL_MEMBERS[prefix]))
        else:
            raise ValueError(f"unknown ensemble member {name!r} (biencoder, cross_encoder, text_match, "
                             + ", ".join(f"{p}:MODEL" for p in _MODEL_MEMBERS) + ")")
    return out


def train_ensemble(ds: Dataset, run: Path, cfg: TrainConfig, resume: bool = False) -> Path:
    """Train the members into ``run``, fit the stacker on valid, write an ensemble teacher directory."""
    run = Path(run)
    if run.exists() and any(run.iterdir()) and not resume:
        raise FileExistsError(f"{run} is not empty: pass resume=True (--resume) to continue it, or choose another --out")
    run.mkdir(parents=True, exist_ok=True)
    members = _members(cfg)
    text = cfg.teacher.text
    texts = build_item_texts(ds.items, text)
    train_pairs = _training_pairs(ds, cfg, "train")
    # the valid split in the training languages (all by default): with train_languages set, no label of another
    # language reaches any level of the ensemble, so the other languages measure transfer
    valid = _training_pairs(ds, cfg, "valid", required=False).reset_index(drop=True)
    if valid.empty:
        raise ValueError("the ensemble's stacker is fitted on the valid split, which is empty"
                         + (f" in {', '.join(cfg.train_languages)}" if cfg.train_languages else "")
                         + ": give the dataset a valid split (or train --recipe cross_encoder)")
    budget = Budget(cfg.max_minutes)  # the whole run: the zero-shot members' encodings first, then training
    trained = [m for m in members if m.trained]
    tm = TextMatch({}).fit(texts.tolist()) if any(m.kind == "text_match" for m in members) else None
    config = EnsembleConfig(scale=ds.info.scale, text=text, members=members, prf_k=cfg.prf_k)
    teacher = EnsembleTeacher(run, config, reference_items(texts, seed=cfg.seed), tm, budget=budget)
    # untrained members are scored on every judged pair of train and valid, before any training: their encodings
    # are a fixed cost that stops with an error when the budget is spent (kept in the embedding cache), where a
    # trained member stops cleanly on whatever share of the budget is left
    pairs = pd.concat([train_pairs.assign(_held_out=False), valid.assign(_held_out=True)], ignore_index=True)
    held_out = pairs["_held_out"].to_numpy()
    features: list[tuple[np.ndarray, list[str]] | None] = [None] * len(members)  # each member's columns, in order

    def score(i: int, member: Member) -> None:
        rows = held_out if member.trained else np.ones(len(pairs), bool)
        Xm, nm = teacher.member_features(member, pairs.loc[rows, "query"].tolist(),
                                         texts.loc[pairs.loc[rows, "item_id"]].tolist())
        full = np.full((len(pairs), Xm.shape[1]), np.nan, np.float32)
        full[rows] = Xm
        features[i] = full, nm

    for i, member in enumerate(members):
        if member.kind == "prf":
            teacher.write_catalogue(member, texts, seed=cfg.seed)
        if not member.trained:
            score(i, member)

    def share(member: Member) -> float | None:
        """Minutes for a trained member: its share of what is left of the budget."""
        if budget.left_min is None:
            return None
        todo = [m for m in trained if not _finished(run, m)]
        weight = {"biencoder": cfg.biencoder_share, "cross_encoder": 1 - cfg.biencoder_share}
        total = sum(weight[m.kind] for m in todo) or 1.0
        return max(0.5, budget.left_min * 0.9 * weight[member.kind] / total)  # 10% kept for scoring valid

    for member in trained:
        if _finished(run, member):
            console.print(f"ensemble: {member.source} already trained in {run}, reused")
            continue
        if member.kind == "biencoder":
            bcfg = cfg.biencoder.model_copy(update={"max_minutes": share(member), "seed": cfg.seed})
            train_biencoder(ds, run / BIENCODER_DIR, bcfg, texts, train_pairs,
                            _training_pairs(ds, cfg, "valid", required=False))
        else:
            ccfg = cfg.model_copy(update={"recipe": "cross_encoder", "max_minutes": share(member)})
            train_cross_encoder(ds, run / CROSS_ENCODER_DIR, ccfg, resume=(run / CROSS_ENCODER_DIR).exists())
    teacher.budget = None  # the trained members stopped within theirs; scoring the valid pairs is not cut short
    for i, member in enumerate(members):  # trained members: on the valid pairs, none of which they learnt from
        if member.trained:
            score(i, member)
    X = np.concatenate([Xm for Xm, _ in features], 1)
    names = [n for _, nm in features for n in nm]
    trained_names = {n for m, (_, nm) in zip(members, features) if m.trained for n in nm}
    y = pairs["label"].to_numpy()
    config.stacker = fit_stacker(X, names, y, pairs["query_id"].to_numpy(), held_out, trained_names,
                                 list(ds.info.scale.grades), ordinal_weight=cfg.ordinal_weight, seed=cfg.seed)
    calibrate = held_out if trained_names else np.ones(len(y), bool)  # untrained members: every labelled pair
    probs = config.stacker.predict(X[calibrate], names)
    if cfg.fit_thresholds:
        config.thresholds = fit_thresholds(probs, y[calibrate], ds.info.scale)
    config.fitted_on = {"level1": {"splits": ["train", "valid"], "pairs": int(len(pairs))},
                        "level2_and_grades": {"split": "valid" if trained_names else "train+valid",
                                              "pairs": int(calibrate.sum()),
                                              "queries": int(valid["query_id"].nunique()),
                                              "languages": sorted(valid["language"].unique().tolist())}}
    teacher.save()
    st = config.stacker
    record = {"config": cfg.model_dump(), "members": [m.label for m in members],
              "elapsed_s": round(budget.elapsed_s, 1),
              "level1_weights": dict(zip(st.level1.features, np.round(st.level1.weights, 4).tolist())),
              "level2_weights": dict(zip(st.level2.features, np.round(st.level2.weights, 4).tolist()))
              if st.level2 else None, "ordinal": st.ordinal.model_dump()}
    (run / "train.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    console.print(f"ensemble teacher ({', '.join(m.label for m in members)}) -> {run}")
    return run


def train_cross_encoder(ds: Dataset, run: Path, cfg: TrainConfig, resume: bool = False) -> Path:
    """The cross-encoder's loop: in this process, or data-parallel on Ray Train when ``cfg.workers`` > 1 or a
    cluster is named (``teacher.distributed``; the workers read the dataset from its directory)."""
    if cfg.fsdp and cfg.workers < 2:
        raise ValueError("--fsdp shards the model over Ray Train workers: pass --workers 2 or more")
    if cfg.workers == 1 and cfg.ray_address is None:
        return train_alone(ds, run, cfg, resume=resume)
    if ds.path is None:
        raise ValueError("training on Ray workers needs a dataset saved to a directory (its path is what the "
                         "workers load)")
    from searchrel.teacher.distributed import train_on_ray  # ray: an extra, imported where a cluster is used

    return train_on_ray(ds.path, run, cfg, cfg.workers, resume=resume, address=cfg.ray_address,
                        gpus_per_worker=cfg.gpus_per_worker)


def _finished(run: Path, member: Member) -> bool:
    if member.kind == "biencoder":
        return (run / member.source / HEAD_FILE).is_file()
    return (run / member.source / "teacher.json").is_file()


def train_teacher(ds: Dataset, run: Path, cfg: TrainConfig, resume: bool = False) -> Path:
    """The one entry point: the ensemble recipe or the cross-encoder alone, as ``cfg.recipe`` says."""
    if cfg.recipe == "ensemble":
        return train_ensemble(ds, run, cfg, resume=resume)
    return train_cross_encoder(ds, run, cfg, resume=resume)
