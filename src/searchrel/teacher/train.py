"""Fine-tune the teacher on human labels: one linear loop — evaluate and keep the best, step, checkpoint.

The run directory holds, as it goes:
    checkpoint/       the last resumable state (trainable weights, optimizer, schedule, RNG, position)
    best.safetensors  the trainable weights of the best validation score so far
    train.json        the config, the validation history, throughput
and, at the end, the finished teacher (``teacher.json``, ``model.safetensors``, ``backbone/``).
A run killed at any point resumes from ``checkpoint/`` with ``resume=True`` and ends where an uninterrupted
run would: batches come from a per-epoch seed, and the RNG state travels with the checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, Field
from safetensors.torch import load_file, save_file

from searchrel.annotate.text import build_item_texts
from searchrel.data.dataset import Dataset
from searchrel.eval.evaluate import EvalConfig, evaluate
from searchrel.eval.grades import fit_thresholds, pair_frame
from searchrel.models.device import autocast, bf16_native, resolve_device
from searchrel.models.pairs import collate, encode_pairs, length_batches, query_batches
from searchrel.models.training import Budget, EarlyStopping, Parallel, warmup_then_decay
from searchrel.progress import console, step
from searchrel.teacher.config import TrainConfig
from searchrel.teacher.features import pair_features
from searchrel.teacher.losses import grade_cross_entropy, listnet_loss
from searchrel.teacher.model import CrossEncoder, new_teacher
from searchrel.teacher.predict import cross_encoder_probs


class _Progress(BaseModel):
    epoch: int = 0
    batch: int = 0  # batches of this epoch already done
    global_step: int = 0
    elapsed_s: float = 0.0
    early: EarlyStopping = Field(default_factory=EarlyStopping)
    tokens: int = 0
    history: list[dict] = Field(default_factory=list)
    done: bool = False
    parallel: str = "none"  # how the latest stretch ran: none, ddp or fsdp (over how many workers: train.json)


def _targets(labels: np.ndarray, variance: np.ndarray | None, cfg: TrainConfig) -> torch.Tensor:
    """One-hot labels, optionally smoothed or spread as a discretised normal by the raters' variance."""
    grades = np.array(cfg.teacher.scale.grades, dtype=float)
    if cfg.soft_targets and variance is not None:
        # a floor on the variance: unanimous raters (variance 0) keep a proper distribution (~99.99% on the label)
        var = np.nan_to_num(variance, nan=0.0)[:, None] + 0.05
        t = np.exp(-((grades[None, :] - labels[:, None]) ** 2) / (2 * var))
    else:
        t = (grades[None, :] == labels[:, None]).astype(float)
    t = t / t.sum(1, keepdims=True)
    if cfg.label_smoothing:
        t = (1 - cfg.label_smoothing) * t + cfg.label_smoothing / len(grades)
    return torch.tensor(t, dtype=torch.float32)


def _training_pairs(ds: Dataset, cfg: TrainConfig, split: str, required: bool = True) -> pd.DataFrame:
    """Judged pairs of ``split`` in the training languages (validation stays in them too: no peeking)."""
    pairs = ds.pairs(split)
    if cfg.train_languages:
        pairs = pairs[pairs["language"].isin(cfg.train_languages)]
    if pairs.empty and required:
        raise ValueError(f"no training pairs: the {split} split is empty"
                         + (f" for languages {cfg.train_languages}" if cfg.train_languages else ""))
    return pairs.reset_index(drop=True)


# -- sharding (FSDP2) and the full states it gathers --------------------------------------------------------
def _shard(model: CrossEncoder) -> None:
    """Shard ``model`` over the process group (FSDP2, in place): each transformer block its own unit (the blocks
    the backbone names in ``_no_split_modules``, as accelerate does), the rest — embeddings, head — in the root."""
    from torch.distributed.fsdp import fully_shard

    blocks = {name for m in model.modules() for name in (getattr(m, "_no_split_modules", None) or [])}
    for m in model.modules():
        if type(m).__name__ in blocks:
            fully_shard(m)
    fully_shard(model)


def _weights(model: CrossEncoder, sharded: bool) -> dict[str, torch.Tensor]:
    """The trainable weights, whole. Sharded, every rank must call it (an all-gather); rank 0 gets them."""
    if not sharded:
        return model.trainable_state()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.contiguous() for k, v in full.items() if k in names}


def _optimizer_state(model: CrossEncoder, opt, sharded: bool) -> dict:
    """The optimizer's state, whole (keyed by parameter name when sharded; every rank must call it then)."""
    if not sharded:
        return opt.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _save_checkpoint(run: Path, weights: dict, optimizer: dict, sched, prog: _Progress) -> None:
    tmp = run / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(weights, str(tmp / "weights.safetensors"))
    torch.save({"optimizer": optimizer, "scheduler": sched.state_dict(), "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
               tmp / "optimizer.pt")
    (tmp / "progress.json").write_text(prog.model_dump_json())
    final = run / "checkpoint"
    old = run / "checkpoint.old"
    if final.exists():
        final.rename(old)
    tmp.rename(final)  # the rename is the commit point: a kill before it leaves the previous checkpoint
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(run: Path, model: CrossEncoder, opt, sched, sharded: bool = False) -> _Progress | None:
    ckpt = run / "checkpoint"
    if not ckpt.exists() and (run / "checkpoint.old").exists():  # killed between the two renames
        (run / "checkpoint.old").rename(ckpt)
    if not (ckpt / "progress.json").exists():
        return None
    weights = load_file(str(ckpt / "weights.safetensors"))
    state = torch.load(ckpt / "optimizer.pt", weights_only=False, map_location="cpu")
    if sharded:  # every rank reads the whole state and keeps its shards
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True, strict=False))
        # strict=False: a trainable weight no batch reached yet (a backbone's pooler) has no moments to restore
        set_optimizer_state_dict(model, opt, state["optimizer"],
                                 options=StateDictOptions(full_state_dict=True, strict=False))
    else:
        model.load_state_dict(weights, strict=False)
        opt.load_state_dict(state["optimizer"])  # moves the moments to the parameters' device
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return _Progress.model_validate_json((ckpt / "progress.json").read_text())


def _optimizer(model: CrossEncoder, cfg: TrainConfig, total_steps: int):
    head = [p for p in model.head.parameters() if p.requires_grad]
    body = [p for p in model.backbone.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": body, "lr": cfg.lr}, {"params": head, "lr": cfg.head_lr}],
                            weight_decay=cfg.weight_decay)
    return opt, warmup_then_decay(opt, cfg.warmup, total_steps)


def validate(model: CrossEncoder, tokenizer, ds: Dataset, valid: pd.DataFrame, texts: pd.Series,
             bf16: bool, features: np.ndarray | None) -> tuple[dict, np.ndarray]:
    probs = cross_encoder_probs(model, tokenizer, valid["query"].tolist(), texts.loc[valid["item_id"]].tolist(),
                          bf16=bf16, progress=None, features=features)
    frame = pair_frame(model.config.scale, model.config.thresholds, probs, valid)
    result = evaluate(ds, frame, EvalConfig(split="valid"), pairs=valid)
    return result.overall, probs


def train(ds: Dataset, run: Path, cfg: TrainConfig, resume: bool = False, parallel: Parallel | None = None) -> Path:
    """Train a teacher on ``ds``'s train split into ``run``; returns the finished model's directory.

    ``parallel`` makes this process one rank of a data-parallel run (``teacher/distributed.py`` starts them on Ray
    Train, the process group already set up): the model is wrapped in DDP (or sharded with FSDP2 when
    ``cfg.fsdp``), each global batch is split over the ranks with its loss weighted so that a step equals the
    single-process one, and rank 0 validates, writes checkpoints and the finished teacher while the others follow
    its decisions. Sharded, every rank joins the forward passes of validation and the gathering of full states
    (collectives), and rank 0 alone uses them."""
    par = parallel or Parallel()
    sharded = cfg.fsdp and par.world > 1
    run = Path(run)
    if run.exists() and any(run.iterdir()) and not resume:
        raise FileExistsError(f"{run} is not empty: pass resume=True (--resume) to continue it, or choose another --out")
    run.mkdir(parents=True, exist_ok=True)
    cfg = cfg.model_copy(update={"teacher": cfg.teacher.model_copy(update={"scale": ds.info.scale})})
    if resume and (run / "train.json").exists():
        saved = TrainConfig.model_validate(json.loads((run / "train.json").read_text())["config"])
        # the budget may grow, the device and the workers change (the global batch stays); nothing else
        same = {"max_minutes", "device", "workers", "ray_address", "gpus_per_worker"}
        if saved.model_dump(exclude=same) != cfg.model_dump(exclude=same):
            raise ValueError(f"{run} was started with another configuration; resume it with the same options")
    # a Ray worker gets OMP_NUM_THREADS = its CPUs; alone, every core
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count() or 1)
    device = resolve_device(cfg.device)
    bf16 = bf16_native(device) if cfg.bf16 is None else cfg.bf16

    model, tokenizer = new_teacher(cfg.teacher, cfg.seed)
    model.to(device)
    net = model
    if sharded:  # each rank holds 1/world of the weights, gradients and moments; blocks gathered as they run
        _shard(model)
    elif par.world > 1:  # gradients averaged over the ranks in backward (gloo on CPUs, NCCL on GPUs)
        # find_unused_parameters: trainable weights a forward pass may skip (a backbone's pooler, a feature head
        # without features) would otherwise stall the gradient reduction
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=None if device.type == "cpu" else [device],
                                                        find_unused_parameters=True)
    if device.type != "cpu":
        console.print(f"training on {device} ({torch.cuda.get_device_name(device)}), bf16 {bf16}")
    tcfg = model.config
    texts = build_item_texts(ds.items, tcfg.text)
    train_pairs = _training_pairs(ds, cfg, "train")
    valid = _training_pairs(ds, cfg, "valid", required=False)
    train_items = texts.loc[train_pairs["item_id"]].tolist()
    ids = encode_pairs(tokenizer, train_pairs["query"].tolist(), train_items,
                       tcfg.max_length, tcfg.is_decoder, tcfg.query_prefix, tcfg.passage_prefix)
    features = pair_features(tcfg, train_pairs["query"].tolist(), train_items)
    valid_features = pair_features(tcfg, valid["query"].tolist(), texts.loc[valid["item_id"]].tolist())
    lengths = [len(x) for x in ids]
    variance = train_pairs["rater_variance"].to_numpy(float) if "rater_variance" in train_pairs else None
    targets = _targets(train_pairs["label"].to_numpy(), variance, cfg)
    grade_values = torch.tensor(tcfg.scale.grades, dtype=torch.float32)
    label_values = torch.tensor(train_pairs["label"].to_numpy(), dtype=torch.float32)
    query_codes = torch.from_numpy(pd.factorize(train_pairs["query_id"])[0].astype(np.int64))
    steps_per_epoch = math.ceil(len(ids) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    opt, sched = _optimizer(model, cfg, total)

    prog = (_load_checkpoint(run, model, opt, sched, sharded) if resume else None) or _Progress()
    if prog.global_step:
        console.print(f"resuming {run} at step {prog.global_step} (epoch {prog.epoch + 1}, batch {prog.batch})")
    prog.parallel = "fsdp" if sharded else "ddp" if par.world > 1 else "none"
    if par.lead:
        _write_record(run, cfg, prog, model, len(ids))
    budget = Budget(cfg.max_minutes, spent_s=prog.elapsed_s)

    def evaluate_and_keep() -> None:
        # rank 0 validates and keeps the best; the others wait for its decision (sharded: they join its passes)
        if not (par.lead or sharded):
            return
        if valid.empty:  # nothing to select on: the latest weights are the best
            weights = _weights(model, sharded)
            if par.lead:
                save_file(weights, str(run / "best.safetensors"))
                prog.early.best_step = prog.global_step
            return
        metrics, _ = validate(model, tokenizer, ds, valid, texts, bf16, valid_features)
        better = False
        if par.lead:
            prog.history.append({"step": prog.global_step, "epoch": prog.epoch,
                                 "elapsed_s": round(budget.elapsed_s, 1), **metrics})
            better = prog.early.update(metrics[cfg.select_metric], prog.global_step)
        if sharded:
            better = par.agree(better)
        if better:
            weights = _weights(model, sharded)
            if par.lead:
                save_file(weights, str(run / "best.safetensors"))
        model.train()

    model.train()
    stop = prog.done
    bar = step(f"training teacher ({tcfg.backbone})", total=total) if par.lead else \
        contextlib.nullcontext(lambda k=1: None)
    groups = query_codes.numpy() if cfg.listwise_weight else None
    with bar as advance:
        advance(prog.global_step)
        while not stop and prog.epoch < cfg.epochs:
            seed = cfg.seed * 1000 + prog.epoch  # one batch order per (seed, epoch): a resumed epoch replays it
            batches = (query_batches(query_codes.numpy(), cfg.batch_size, seed) if cfg.listwise_weight
                       else length_batches(lengths, cfg.batch_size, seed=seed))
            while prog.batch < len(batches):
                b = np.asarray(batches[prog.batch])
                mine = par.share(b, groups)  # the whole batch alone; this rank's part of it in a parallel run
                rows = mine if len(mine) else b[:1]  # a rank left without rows computes a zero-weight loss
                input_ids, mask = collate([ids[i] for i in rows], tokenizer.pad_token_id)
                feats = None if features is None else torch.from_numpy(features[rows]).to(device)
                with autocast(bf16, device):
                    logits = net(input_ids.to(device), mask.to(device), feats)
                loss = par.weight(len(mine), len(b)) * grade_cross_entropy(logits, targets[rows].to(device))
                if cfg.listwise_weight:
                    expected = torch.softmax(logits.float(), -1) @ grade_values.to(device)
                    ranked = lambda r: int((np.bincount(groups[r]) >= 2).sum())  # noqa: E731  groups listnet counts
                    loss = loss + cfg.listwise_weight * par.weight(ranked(mine) if len(mine) else 0, ranked(b)) * \
                        listnet_loss(expected, label_values[rows].to(device), query_codes[rows].to(device))
                loss.backward()
                # clip at norm 1: the usual guard for transformer fine-tuning against a rare exploding batch
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                prog.batch += 1
                prog.global_step += 1
                prog.tokens += int(mask.sum())
                advance()
                out_of_time = par.agree(budget.spent())
                epoch_end = prog.batch == len(batches)
                if prog.global_step % cfg.eval_every == 0 or epoch_end or out_of_time:
                    evaluate_and_keep()
                    if par.agree(par.lead and prog.early.stop(cfg.patience)):
                        if par.lead:
                            console.print(f"early stop at step {prog.global_step}: no better {cfg.select_metric} "
                                          f"in {cfg.patience} validations")
                        stop = True
                if out_of_time:
                    if par.lead:
                        console.print(f"time budget of {cfg.max_minutes} min spent at step {prog.global_step}")
                    stop = True
                if epoch_end:
                    prog.epoch, prog.batch = prog.epoch + 1, 0
                prog.elapsed_s = budget.elapsed_s
                if (par.lead or sharded) and (stop or prog.global_step % cfg.checkpoint_every == 0 or epoch_end):
                    prog.done = stop or prog.epoch >= cfg.epochs
                    weights, moments = _weights(model, sharded), _optimizer_state(model, opt, sharded)
                    if par.lead:
                        _save_checkpoint(run, weights, moments, sched, prog)
                if stop or epoch_end:
                    break
    prog.done = True
    if not par.lead:
        return run
    if sharded:  # the finish runs on rank 0 alone: an unsharded copy takes the best weights
        model = new_teacher(cfg.teacher, cfg.seed)[0].to(device)
    return _finish(run, cfg, model, tokenizer, ds, valid, texts, bf16, prog, len(ids), valid_features)


def _finish(run: Path, cfg: TrainConfig, model: CrossEncoder, tokenizer, ds: Dataset, valid: pd.DataFrame,
            texts: pd.Series, bf16: bool, prog: _Progress, n_pairs: int, valid_features: np.ndarray | None) -> Path:
    """Load the best weights, fit grade thresholds on valid, write the finished teacher."""
    model.load_state_dict(load_file(str(run / "best.safetensors")), strict=False)
    model.eval()
    if cfg.fit_thresholds and not valid.empty:
        _, probs = validate(model, tokenizer, ds, valid, texts, bf16, valid_features)
        model.config.thresholds = fit_thresholds(probs, valid["label"].to_numpy(), model.config.scale)
    model.save(run, tokenizer)
    _write_record(run, cfg, prog, model, n_pairs)
    best = "n/a" if prog.early.best is None else f"{prog.early.best:.4f}"
    console.print(f"teacher (best valid {cfg.select_metric} {best} at step {prog.early.best_step}) -> {run}")
    return run


def _write_record(run: Path, cfg: TrainConfig, prog: _Progress, model: CrossEncoder, n_pairs: int) -> None:
    trainable = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "embeddings" not in n)
    record = {"config": cfg.model_dump(), "parallel": prog.parallel, "train_pairs": n_pairs, "steps": prog.global_step,
              "elapsed_s": round(prog.elapsed_s, 1), "tokens": prog.tokens,
              "tokens_per_s": round(prog.tokens / prog.elapsed_s, 1) if prog.elapsed_s else None,
              "trainable_non_embedding_params": trainable, "best": {cfg.select_metric: prog.early.best, "step": prog.early.best_step},
              "history": prog.history}
    (run / "train.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
