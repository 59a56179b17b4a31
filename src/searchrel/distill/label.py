"""Teacher labelling at scale: the full grade distribution for every sampled pair, in crash-safe Parquet shards.

Output directory::

    labels.json          what is being labelled (teacher, pairs file and its hash, scale) and, once done, totals
    part-000000123.parquet  pair_idx, query_id, item_id, query, p_<grade>...  (one shard per unit of work)

Each shard is written to a temporary name and renamed into place, so a shard either exists whole or not at all.
A run killed at any moment (kill -9 included) and started again reads which ``pair_idx`` the finished shards
hold and labels only the rest: the finished output has every pair exactly once. Two backends run the same code
on each batch: ``local`` (one model in this process, the shared bf16 inference path) and ``ray`` (Ray Data
``map_batches`` over an actor pool, each actor holding one model; ``ray_address`` points at a cluster).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from searchrel.annotate.text import build_item_texts
from searchrel.data.dataset import Dataset, load_dataset
from searchrel.distill.config import LabelConfig
from searchrel.distill.sample import read_pairs
from searchrel.io import sha256_file
from searchrel.models.encode import default_threads
from searchrel.progress import console, step
from searchrel.ray_pool import map_shards
from searchrel.teacher.inference import load_teacher, predict_probs, read_teacher_config

MANIFEST = "labels.json"


def query_texts(ds: Dataset, pairs: pd.DataFrame) -> pd.Series:
    """Each pair's query text: the dataset's, or for a query it does not have (a pseudo-query), the pairs' own
    ``query`` column; NaN where neither knows it."""
    text = pairs["query_id"].map(ds.queries.set_index("query_id")["text"])
    if "query" in pairs.columns:
        text = text.fillna(pairs["query"])
    return text


def pair_texts(ds: Dataset, pairs: pd.DataFrame, text_config) -> pd.DataFrame:
    """``pair_idx, query_id, item_id, query, item_text`` for the pairs, checked against the dataset."""
    texts = build_item_texts(ds.items, text_config)
    query = query_texts(ds, pairs)
    bad = ~pairs["item_id"].isin(texts.index) | query.isna().to_numpy()
    if bad.any():
        row = pairs[bad].iloc[0]
        raise ValueError(f"{int(bad.sum())} pair(s) name a query or item the dataset does not have (and give no "
                         f"query text), e.g. ({row['query_id']}, {row['item_id']})")
    return pd.DataFrame({"pair_idx": np.arange(len(pairs), dtype=np.int64),
                         "query_id": pairs["query_id"].to_numpy(), "item_id": pairs["item_id"].to_numpy(),
                         "query": query.to_numpy(), "item_text": texts.loc[pairs["item_id"]].to_numpy()})


class TeacherLabeler:
    """Callable on a batch of ``pair_idx, query_id, item_id, query, item_text`` -> the same keys + ``p_<grade>``.
    One instance holds one model: the local backend makes one, each Ray actor makes its own. The model runs on the
    one teacher inference path (``teacher.inference``) that evaluation and the workbench use."""

    def __init__(self, teacher: str, batch_size: int = 64, bf16: bool | None = None, device: str = "auto"):
        torch.set_num_threads(default_threads())
        # bf16=False asks for fp32: off the (bf16) fast path
        self.model, self.tokenizer = load_teacher(teacher, device, fast=False if bf16 is False else None)
        self.batch_size, self.bf16 = batch_size, bf16
        self.columns = [f"p_{g}" for g in self.model.config.scale.grades]

    def probs(self, queries: list[str], items: list[str]) -> np.ndarray:
        return predict_probs(self.model, self.tokenizer, queries, items, batch_size=self.batch_size, bf16=self.bf16,
                             progress=None)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        probs = self.probs(batch["query"].tolist(), batch["item_text"].tolist())
        # the query's text too: a pseudo-query's is in no dataset
        out = batch[["pair_idx", "query_id", "item_id", "query"]].reset_index(drop=True)
        return pd.concat([out, pd.DataFrame(probs, columns=self.columns)], axis=1)


def _write_shard(out: Path, shard: pd.DataFrame) -> None:
    name = f"part-{int(shard['pair_idx'].min()):09d}.parquet"
    tmp = out / f".{name}.tmp"
    shard.to_parquet(tmp, index=False)
    tmp.replace(out / name)  # atomic: a reader (or a restart) sees the whole shard or none of it


def finished_pairs(out: Path) -> np.ndarray:
    """``pair_idx`` of every pair already labelled in ``out`` (finished shards only)."""
    shards = sorted(out.glob("part-*.parquet"))
    if not shards:
        return np.zeros(0, np.int64)
    return np.concatenate([pq.read_table(s, columns=["pair_idx"])["pair_idx"].to_numpy() for s in shards])


def label_pairs(teacher: str | Path, pairs_path: str | Path, out: str | Path, cfg: LabelConfig = LabelConfig(),
                dataset: Dataset | str | Path | None = None) -> Path:
    """Label every pair of ``pairs_path`` with the teacher into ``out``, resuming whatever a previous run finished."""
    teacher, pairs_path, out = Path(teacher).resolve(), Path(pairs_path), Path(out)
    tcfg = read_teacher_config(teacher)
    pairs, meta = read_pairs(pairs_path)
    if dataset is None:
        if not meta.get("dataset"):
            raise ValueError(f"{pairs_path} does not say which dataset its ids belong to: pass the dataset")
        dataset = meta["dataset"]
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    if ds.info.scale.grades != tcfg.scale.grades:
        raise ValueError(f"the teacher predicts grades {tcfg.scale.min}..{tcfg.scale.max} but the dataset's scale "
                         f"is {ds.info.scale.min}..{ds.info.scale.max}")
    manifest = {"teacher": str(teacher), "teacher_config_sha256": sha256_file(teacher / "teacher.json"),
                "pairs": str(pairs_path.resolve()), "pairs_sha256": sha256_file(pairs_path), "n_pairs": len(pairs),
                "grades": tcfg.scale.grades, "dataset": str(ds.path) if ds.path else None}
    _check_or_start(out, manifest)
    for tmp in out.glob(".part-*.tmp"):  # a shard a killed run was writing
        tmp.unlink()

    todo = pair_texts(ds, pairs, tcfg.text)
    done = finished_pairs(out)
    if len(done):
        todo = todo[~todo["pair_idx"].isin(done)]
        console.print(f"resuming: {len(done):,} of {len(pairs):,} pairs already labelled")
    t0 = time.perf_counter()
    if len(todo):
        run = _run_ray if cfg.backend == "ray" else _run_local
        run(str(teacher), todo.reset_index(drop=True), out, cfg)
    seconds = time.perf_counter() - t0
    done = finished_pairs(out)
    if len(done) != len(pairs) or len(np.unique(done)) != len(pairs):
        raise RuntimeError(f"{out}: {len(np.unique(done)):,} distinct of {len(pairs):,} pairs labelled "
                           f"({len(done):,} rows): run again to finish")
    manifest.update(complete=True, backend=cfg.backend, seconds_last_run=round(seconds, 2),
                    pairs_last_run=int(len(todo)), pairs_per_s=round(len(todo) / seconds, 1) if seconds else None)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def _check_or_start(out: Path, manifest: dict) -> None:
    path = out / MANIFEST
    if path.is_file():
        old = json.loads(path.read_text())
        for key in ("teacher_config_sha256", "pairs_sha256", "n_pairs"):
            if old.get(key) != manifest[key]:
                raise FileExistsError(f"{out} holds labels of another teacher or pairs file ({key} differs): "
                                      "use a new output directory")
        return
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not a labels directory: use a new output directory")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def _run_local(teacher: str, todo: pd.DataFrame, out: Path, cfg: LabelConfig) -> None:
    labeler = TeacherLabeler(teacher, cfg.batch_size, cfg.bf16, cfg.device)
    with step("teacher labelling", total=len(todo)) as advance:
        for start in range(0, len(todo), cfg.shard_size):
            shard = labeler(todo.iloc[start:start + cfg.shard_size])
            _write_shard(out, shard)
            advance(len(shard))


def _run_ray(teacher: str, todo: pd.DataFrame, out: Path, cfg: LabelConfig) -> None:
    kwargs = {"teacher": teacher, "batch_size": cfg.batch_size, "bf16": cfg.bf16, "device": cfg.device}
    with step("teacher labelling (ray)", total=len(todo)) as advance:
        for shard in map_shards(todo, TeacherLabeler, kwargs, cfg):
            if len(shard):
                _write_shard(out, shard)  # written by the driver as each batch arrives: a crash loses no shard
                advance(len(shard))


def read_labels(path: str | Path) -> pd.DataFrame:
    """The labels of a finished run: ``pair_idx, query_id, item_id, query, p_<grade>...`` in pair order (``query``,
    the query's text, is missing from labels written before it was kept)."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{path}: not a labels directory ({MANIFEST} is missing)")
    manifest = json.loads(manifest_path.read_text())
    if not manifest.get("complete"):
        raise ValueError(f"{path}: labelling has not finished; run `searchrel distill label` again to complete it")
    df = pd.concat([pd.read_parquet(s) for s in sorted(path.glob("part-*.parquet"))], ignore_index=True)
    return df.sort_values("pair_idx", kind="stable").reset_index(drop=True)
