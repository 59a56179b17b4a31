"""Pseudo-queries cut from the catalogue's titles: new queries for the teacher to label where the search log does
not cover the query space (or there is no log).

Distillation pays when the student sees the teacher judge far more *queries* than the human labels cover: more
items for the same few hundred judged queries teach a bi-encoder little about a query it has never seen. Without a
log, the catalogue itself says what shoppers look for: a product title ends in what the product is ("... Heated
Throw Blanket"), often after a brand ("Upton Home ... Wine Rack"). Each pseudo-query is one short phrase from one
title — its last one to three words, the brand and the last words, or a two- or three-word span — lower-cased,
without the model numbers and sizes a shopper does not type, never starting or ending on a function word,
de-duplicated, and never the text of a query in an excluded (held-out) split. Each is in its item's language (a
multilingual catalogue gives multilingual pseudo-queries); the teacher's labels, not the title it came from,
say which items are relevant to it.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from searchrel.annotate.text import normalise_query

PREFIX = "pseudo:"  # query ids of pseudo-queries (sampling refuses a dataset whose own ids start with it)

_CLAUSE = re.compile(r"\s[-–—|/]\s|[(),:;|\[\]]")  # what follows is a size, colour, pack or model detail
_WORD = re.compile(r"[^\W_]+(?:['’&.+-][^\W_]+)*")
# words a query does not start or end with: function words of the languages catalogues are commonly in, and the
# pack and unit words of product titles
_STOP = frozenset("""a an and the of for with without in on at to by from or & x vs per our your my new
set pack pc pcs piece count ct inch oz lb lbs ml mm cm ft qt gb tb
de del la las el los en y o con para por un una al
le les du des et ou avec pour sur au aux une à
der die das den dem des und oder mit für von zu im am ein eine
il lo gli di da della e per con""".split())
# phrase shapes and how often each is drawn: tail of 2, 3 or 1 words, brand + tail, a span inside the title
_SHAPES = (("tail2", 0.35), ("tail3", 0.2), ("tail1", 0.1), ("brand", 0.2), ("span", 0.15))


def title_words(title: str) -> list[str]:
    """The words of a title's head clause, lower-cased, without the ones holding a digit (model codes, sizes)."""
    head = _CLAUSE.split(str(title or ""), maxsplit=1)[0]
    words = [w.casefold() for w in _WORD.findall(head)]
    return [w for w in words if not any(c.isdigit() for c in w)]


def _phrase(words: list[str], shape: str, rng: np.random.Generator) -> str:
    n = len(words)
    if shape.startswith("tail"):
        k = int(shape[4:])
        if n < k:
            return ""
        out = words[n - k:]
    elif shape == "brand":
        if n < 3:
            return ""
        out = [words[0]] + words[n - int(rng.integers(1, 3)):]
    else:
        k = int(rng.integers(2, 4))
        if n < k + 1:
            return ""
        start = int(rng.integers(0, n - k + 1))
        out = words[start:start + k]
    if not out or out[0] in _STOP or out[-1] in _STOP or all(w in _STOP for w in out):
        return ""
    return " ".join(out)


def pseudo_queries(items: pd.DataFrame, n: int, seed: int = 0, exclude: set[str] | frozenset[str] = frozenset(),
                   max_passes: int = 8) -> pd.DataFrame:
    """Up to ``n`` distinct pseudo-queries from ``items``' titles: ``query_id, text, language, item_id`` (the
    item each came from; its relevance is still for the teacher to judge). ``exclude`` holds query texts never to
    make (normalised with ``normalise_query``), e.g. the held-out splits' queries."""
    if n < 0:
        raise ValueError(f"the number of pseudo-queries must be >= 0 (got {n})")
    if "title" not in items.columns:
        raise ValueError("pseudo-queries are cut from item titles, and the items have no title column")
    rng = np.random.default_rng(seed)
    shapes, weights = zip(*_SHAPES)
    p = np.asarray(weights) / sum(weights)
    language = (items["language"].fillna("und") if "language" in items.columns
                else pd.Series("und", index=items.index))
    words = [title_words(t) for t in items["title"].tolist()]
    seen = {normalise_query(t) for t in exclude}
    rows: list[tuple[str, str, str]] = []
    for _ in range(max_passes):  # a title gives several phrases: go round the catalogue again until n are made
        for i in rng.permutation(len(items)):
            if len(rows) >= n:
                break
            text = _phrase(words[i], str(rng.choice(shapes, p=p)), rng)
            key = normalise_query(text)
            if len(key) < 3 or key in seen:
                continue
            seen.add(key)
            rows.append((text, str(language.iloc[i]), str(items["item_id"].iloc[i])))
        if len(rows) >= n:
            break
    out = pd.DataFrame(rows, columns=["text", "language", "item_id"])
    out.insert(0, "query_id", [f"{PREFIX}{k}" for k in range(len(out))])
    return out
