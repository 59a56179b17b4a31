"""The one text builder: turns an item's chosen fields into model input text under per-field token budgets.

Every later stage (BM25, embeddings, teacher, student, the ablation) builds item text here, so a field list
means the same thing everywhere. Budgets count tokens with ``count_tokens`` (words, and each CJK character
as one token — close to what a subword tokenizer spends on them) unless a model tokenizer is passed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence

import pandas as pd
from pydantic import BaseModel, Field, field_validator

DEFAULT_FIELDS = ("title", "description", "image_caption", "board_titles", "engaged_queries")
# Budgets in tokens: long descriptions dominate a 128-token window unless capped; titles are short already.
DEFAULT_BUDGETS = {"title": 32, "description": 64, "image_caption": 48, "board_titles": 24,
                   "engaged_queries": 24}
FALLBACK_BUDGET = 32  # for extra source fields (brand, color, bullet_point, ...)
LABELS = {"title": "title", "description": "description", "image_caption": "image",
          "board_titles": "boards", "engaged_queries": "searches"}

_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|[^\s\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]+")


_SPACES = re.compile(r"\s+")


def normalise_query(text: str) -> str:
    """The one query normaliser (the serving cache's key, the workbench's judged-query match, the latency stage's
    distinct queries): Unicode NFKC, casefolded, runs of whitespace collapsed to one space, stripped."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text or "").casefold()).strip()


def count_tokens(text: str) -> list[tuple[int, int]]:
    """Token spans of ``text``: whitespace-separated words, each CJK character on its own."""
    return [m.span() for m in _TOKEN.finditer(text)]


def truncate(text: str, budget: int, tokenize: Callable[[str], list[tuple[int, int]]] = count_tokens) -> str:
    """Cut ``text`` after ``budget`` tokens, at a token boundary."""
    spans = tokenize(text)
    if len(spans) <= budget:
        return text
    return text[: spans[budget - 1][1]] if budget > 0 else ""


class TextConfig(BaseModel):
    """Which item fields make the model's item text, in which order, with how many tokens each."""

    fields: list[str] = Field(default_factory=lambda: list(DEFAULT_FIELDS))
    budgets: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_BUDGETS))
    with_labels: bool = True  # "title: ... | image: ..." lets a model tell fields apart

    @field_validator("fields")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("choose at least one field")
        return v

    @classmethod
    def parse(cls, fields: str | Sequence[str] | None = None, budgets: str | None = None) -> "TextConfig":
        """From CLI strings: ``--fields title,image_caption --budgets title=16,description=100``."""
        cfg = cls()
        if fields:
            names = fields.split(",") if isinstance(fields, str) else list(fields)
            cfg = cls(fields=[f.strip() for f in names if f.strip()])
        if budgets:
            for part in budgets.split(","):
                name, _, n = part.partition("=")
                if not n.strip().isdigit():
                    raise ValueError(f"budget must look like FIELD=TOKENS, got {part!r}")
                cfg.budgets[name.strip()] = int(n)
        return cfg

    @classmethod
    def default_for(cls, items: pd.DataFrame) -> "TextConfig":
        """The default fields that this item table actually fills (CrowdFlower has no captions or boards)."""
        filled = filled_fields(items)
        return cls(fields=[f for f in DEFAULT_FIELDS if f in filled] or ["title"])

    def budget(self, field: str) -> int:
        return self.budgets.get(field, FALLBACK_BUDGET)

    def check(self, available: Sequence[str]) -> None:
        missing = [f for f in self.fields if f not in available]
        if missing:
            raise ValueError(f"unknown item field(s) {', '.join(missing)}; this dataset has: {', '.join(available)}")


def filled_fields(items: pd.DataFrame) -> set[str]:
    """Item columns with at least one value (a column of nulls counts as missing)."""
    return {c for c in items.columns if c != "item_id" and items[c].notna().any()}


def _field_text(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        return "; ".join(str(v) for v in (value.tolist() if hasattr(value, "tolist") else value) if v)
    return str(value).strip()


def build_item_text(item: dict | pd.Series, config: TextConfig,
                    tokenize: Callable[[str], list[tuple[int, int]]] = count_tokens) -> str:
    """One item's model text: each chosen, non-empty field cut to its budget, joined with `` | ``."""
    parts = []
    for f in config.fields:
        text = _field_text(item.get(f))
        if not text:
            continue
        text = truncate(text, config.budget(f), tokenize)
        parts.append(f"{LABELS.get(f, f.replace('_', ' '))}: {text}" if config.with_labels else text)
    return " | ".join(parts)


def build_item_texts(items: pd.DataFrame, config: TextConfig,
                     tokenize: Callable[[str], list[tuple[int, int]]] = count_tokens) -> pd.Series:
    """``item_id`` -> model text for every item; fields the table lacks raise a clear error."""
    config.check(list(items.columns))
    texts = [build_item_text(row, config, tokenize) for row in items[config.fields].to_dict("records")]
    return pd.Series(texts, index=items["item_id"].to_numpy(), name="text")


def split_item_text(text: str, config: TextConfig) -> dict[str, str]:
    """The fields of a text that ``build_item_text`` made with labels (its inverse, up to each field's budget).

    A field value that itself contains `` | `` stays whole: a part counts as a new field only where it starts with
    the label of one of ``config.fields``. Fields the text lacks (empty on the item) map to ``""``."""
    out = {f: "" for f in config.fields}
    if not config.with_labels:
        raise ValueError("split_item_text needs texts built with field labels (TextConfig.with_labels)")
    prefixes = {f"{LABELS.get(f, f.replace('_', ' '))}: ": f for f in config.fields}
    current = None
    for part in text.split(" | "):
        field = next((f for p, f in prefixes.items() if part.startswith(p)), None)
        if field is not None:
            current = field
            out[field] = part[len(next(p for p, f in prefixes.items() if f == field)):]
        elif current is not None:
            out[current] += " | " + part
    return out
