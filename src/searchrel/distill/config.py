"""How distillation data is made, declared once: which pairs are sampled (SampleConfig) and how the
teacher labels them (LabelConfig). Light to import — the CLI reads its defaults from here."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator


class SampleConfig(BaseModel):
    """Pairs to label: ``amplification`` x the number of human labels, from the search log where there is one,
    topped up (or, without a log, made entirely) by retrieval over the whole catalogue — for the dataset's
    queries and, if asked, for pseudo-queries cut from the catalogue's titles."""

    amplification: float = 10.0
    source: Literal["auto", "log", "retrieval"] = "auto"  # auto: log first, retrieval for the rest
    exclude_splits: list[str] = Field(default_factory=lambda: ["valid", "test"])  # their queries are never sampled
    # retrieval mix per query: shares of the per-query budget from BM25, the zero-shot embedding and random items
    bm25_share: float = 0.4
    embed_share: float = 0.4
    random_share: float = 0.2  # easy negatives
    embed_model: str = "me5-small"
    # queries cut from item titles (distill.pseudo), labelled like any other: a number, or "auto" = as many as give
    # about ``candidates_per_query`` candidates per query when the dataset has no search log (else none). "auto" by
    # default: in query-grouped cross-validation on CrowdFlower (no log) the x10 student's head gains +1.7 NDCG@8 on
    # new queries with them and nothing without them (docs/results.md)
    pseudo_queries: int | Literal["auto"] = "auto"
    candidates_per_query: int = 50
    seed: int = 0

    @field_validator("amplification")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("amplification must be > 0")
        return v

    @field_validator("pseudo_queries")
    @classmethod
    def _not_negative(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 0:
            raise ValueError("pseudo_queries must be >= 0 (0: none) or 'auto'")
        return v

    @field_validator("candidates_per_query")
    @classmethod
    def _at_least_one(cls, v: int) -> int:
        if v < 1:
            raise ValueError("candidates_per_query must be >= 1")
        return v


class LabelConfig(BaseModel):
    """Teacher labelling: pairs are processed in shards, each written atomically, so a run resumes."""

    backend: Literal["local", "ray"] = "local"
    shard_size: int = 4096  # pairs per Parquet shard (the unit of work and of crash recovery)
    batch_size: int = 64  # pairs per forward pass
    ray_address: str | None = None  # None: start a local Ray; "auto" or ray://host:10001 for a cluster
    ray_actors: int = 1  # model replicas in the Ray actor pool
    ray_cpus_per_actor: float = 1.0
    ray_gpus_per_actor: float = 0.0
    bf16: bool | None = None  # None: where the device has native bf16
    device: str = "auto"  # where each labeller runs: auto (a CUDA GPU when it sees one, else the CPU), cpu, cuda:N
