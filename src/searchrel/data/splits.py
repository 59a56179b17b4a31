"""Deterministic query-grouped train/valid/test splits, stratified by language.

A query and everything grouped with it (``group_id``: e.g. its translations) land on one side only.
Assignment hashes the group key with a seed, so it is stable across runs and machines and does not
depend on row order; within each language the groups are ranked by hash and cut at the fractions.
"""

from __future__ import annotations

import hashlib

import pandas as pd

DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)


def _hash(key: str, seed: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest(), "big")


def _home_language(languages: pd.Series) -> str:
    """A group's stratum: English where the group has it (the source of translations), else the first."""
    langs = sorted(set(languages))
    return "en" if "en" in langs else langs[0]


def make_splits(queries: pd.DataFrame, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
                seed: int = 0) -> pd.DataFrame:
    """Return a ``query_id, split`` table covering every query.

    Groups are stratified by the language of their first query (a group's "home" language), so each
    language is spread across train/valid/test in the given fractions.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    q = queries[["query_id", "language"]].copy()
    group = queries["group_id"] if "group_id" in queries else None
    q["group"] = q["query_id"] if group is None else group.fillna(q["query_id"])
    home = q.groupby("group", sort=False)["language"].agg(_home_language)
    assignment: dict[str, str] = {}
    for _, groups in home.groupby(home):
        keys = sorted(groups.index, key=lambda g: _hash(str(g), seed))
        n = len(keys)
        n_train = round(n * fractions[0])
        n_valid = round(n * (fractions[0] + fractions[1])) - n_train
        if n >= 3 and fractions[2] > 0 and n_train + n_valid >= n:  # keep a non-empty test split when asked for
            n_train = min(n_train, n - 1 - n_valid) if n_valid else min(n_train, n - 1)
        for i, g in enumerate(keys):
            assignment[g] = "train" if i < n_train else "valid" if i < n_train + n_valid else "test"
    return pd.DataFrame({"query_id": q["query_id"].to_numpy(), "split": q["group"].map(assignment).to_numpy()})
