"""The synthetic world: a seeded Pinterest-like catalogue, multilingual queries, graded judgments and a search log.

Everything derives from a latent structure. An item has a vertical (recipes, home decor, ...), a sub-topic
(pasta, sofa, ...) and attributes (colour, material, style, audience, season). A query targets a sub-topic
(or a whole vertical) and optionally some attributes. The *true relevance* of a pair follows from that
structure (``true_grades``); judgments are the true grade plus rater noise, and the search log comes from a
naive lexical ranker and a position-biased click model driven by the true grade.

The item fields carry different, complementary information, so a feature ablation shows each field's effect:

* ``title``/``description`` — in the item's language; sub-topic, colour, material, sometimes style. A fifth of
  the items are *thin*: a generic title ("Love this!") and an empty description.
* ``image_caption`` — always English (a VLM's), sub-topic, colour, material, sometimes style or a visible season;
  the only description of a thin item. A few non-thin items have none.
* board titles — in the saver's language; mostly style, audience and season ("xmas gifts for dad"). They are
  recorded on ``save`` events of the log; ``annotate`` aggregates them into ``items.board_titles``.
* engaged queries — the phrasings and languages users found the item with (synonyms the item text lacks).
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from searchrel.data.dataset import Dataset, DatasetInfo, Scale
from searchrel.data.splits import make_splits
from searchrel.data.synth_lexicon import (
    ATTRIBUTES,
    BOARD_TEMPLATES,
    BRANDED_VERTICALS,
    BRANDS,
    CAPTION_SEASON,
    CAPTION_TEMPLATES,
    COUNTRIES,
    FILLERS,
    JOINER,
    KINDS,
    LANGUAGES,
    PHRASE_ORDER,
    THIN_TITLES,
    TITLE_TEMPLATES,
    VERTICALS,
)
from searchrel.progress import step

SCALE = Scale(min=1, max=5, names=["irrelevant", "weak", "partial", "relevant", "perfect"])

# Click model, indexed by true grade - 1: P(click) = examination(position) * ATTRACTIVENESS[grade].
ATTRACTIVENESS = np.array([0.02, 0.06, 0.20, 0.45, 0.75])
P_LONG_CLICK = np.array([0.05, 0.15, 0.35, 0.60, 0.80])  # given a click: the user stayed on the pin
P_SAVE = np.array([0.02, 0.06, 0.18, 0.40, 0.55])  # given a click: the user saved the pin to a board
EXAMINATION_DECAY = 0.8  # examination(position) = (1 + position) ** -decay

VERTICAL_NAMES = list(VERTICALS)
TOPICS = [(v, t) for v in VERTICAL_NAMES for t in VERTICALS[v].topics]  # flat sub-topic index
TOPIC_VERTICAL = np.array([VERTICAL_NAMES.index(v) for v, _ in TOPICS])
VALUES = {kind: list(ATTRIBUTES[kind]) for kind in KINDS}
KIND_APPLIES = np.array([[k in VERTICALS[v].kinds for k in KINDS] for v in VERTICAL_NAMES])  # vertical x kind
STYLE, AUDIENCE, SEASON = (KINDS.index(k) for k in ("style", "audience", "season"))

# How often an item's attribute is written in its title / description / English caption. Audience and season
# are rare in item text on purpose: they reach the index mostly through board titles.
TITLE_ATTR_P = {"colour": 0.5, "material": 0.4, "style": 0.25, "audience": 0.08, "season": 0.08}
DESC_ATTR_P = {"colour": 0.5, "material": 0.6, "style": 0.4, "audience": 0.12, "season": 0.12}
CAPTION_ATTR_P = {"colour": 0.9, "material": 0.8, "style": 0.3}


class SynthConfig(BaseModel):
    """Size and shape of the synthetic world; the defaults run the demo in minutes on 2 cores."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0  # same seed, identical tables
    n_items: int = Field(3000, ge=20)  # ~15 items per sub-topic and language: retrieval is not trivial
    n_queries: int = Field(500, ge=10)  # ~100 test queries after the 70/10/20 split
    n_users: int = Field(2000, ge=5)  # enough savers for varied board titles per item
    n_judged_pairs: int = Field(6000, ge=10)  # ~12 graded pairs per query, like a small labelling budget
    n_searches: int = Field(12_000, ge=10)  # x 15 impressions plus engagements: ~200k log events
    impressions_per_search: int = Field(15, ge=1, le=50)  # one screen of pins
    languages: tuple[str, ...] = LANGUAGES  # the teacher is trained mostly on English, measured on all
    english_query_share: float = Field(0.6, ge=0, le=1)  # expected share of English queries
    english_item_share: float = Field(0.5, ge=0, le=1)  # share of English items; the rest spread evenly
    translated_share: float = Field(0.25, ge=0, le=1)  # intents asked in a second language (same group_id)
    zipf_exponent: float = Field(1.1, gt=0)  # query popularity ~ rank^-s: a query cache sees heavy reuse
    thin_item_share: float = Field(0.2, ge=0, le=1)  # items whose meaning lives only in the image caption
    no_caption_share: float = Field(0.03, ge=0, le=1)  # non-thin items without a caption (missing field)
    rater_noise: float = Field(0.6, ge=0)  # std of each rater's error, in grades, before rounding
    n_raters: int = Field(3, ge=1)  # raters per pair; the label is their median
    log_days: int = Field(60, ge=1)  # span of the search log
    start_date: str = "2025-01-01"  # first day of the log

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [lang for lang in v if lang not in LANGUAGES]
        if not v or unknown:
            raise ValueError(f"languages must be a non-empty subset of {', '.join(LANGUAGES)}; unknown: {unknown}")
        return tuple(dict.fromkeys(v))


@dataclass(frozen=True)
class Latent:
    """The hidden structure of items or queries: vertical, sub-topic (-1: the whole vertical), attribute codes."""

    vertical: np.ndarray  # (n,) index into VERTICAL_NAMES
    topic: np.ndarray  # (n,) index into TOPICS, -1 for a vertical-wide query
    attrs: np.ndarray  # (n, len(KINDS)) value index per kind, -1 where absent / not asked

    def frame(self, ids: pd.Series) -> pd.DataFrame:
        """Readable view: id, vertical, topic and one column per attribute kind (None where absent)."""
        df = pd.DataFrame({ids.name: ids.to_numpy(), "vertical": np.array(VERTICAL_NAMES)[self.vertical],
                           "topic": [TOPICS[t][1] if t >= 0 else None for t in self.topic]})
        for k, kind in enumerate(KINDS):
            df[kind] = [VALUES[kind][v] if v >= 0 else None for v in self.attrs[:, k]]
        return df


def true_grades(q: Latent, qi: np.ndarray, it: Latent, ii: np.ndarray) -> np.ndarray:
    """True grade (1..5) of the pairs (query qi[n], item ii[n]), elementwise.

    Sub-topic query: right sub-topic -> 5 minus one per missed attribute, at least 3 ("partial"); same vertical
    -> 3 if every asked attribute matches else 2; elsewhere -> 2 if every asked attribute matches else 1.
    Vertical-wide query (its attributes are the point): same vertical -> 5 all match, 3 some, 2 none.
    """
    qa, ia = q.attrs[qi], it.attrs[ii]
    asked = qa >= 0
    n_asked = asked.sum(1)
    matched = (asked & (qa == ia)).sum(1)
    all_match = (matched == n_asked) & (n_asked > 0)
    same_vert = q.vertical[qi] == it.vertical[ii]
    same_topic = q.topic[qi] == it.topic[ii]
    by_topic = np.where(same_topic, np.maximum(3, 5 - (n_asked - matched)),
                        np.where(same_vert, 2 + all_match, 1 + all_match))
    by_vertical = np.where(same_vert, np.where(matched == n_asked, 5, np.where(matched > 0, 3, 2)), 1 + all_match)
    return np.where(q.topic[qi] >= 0, by_topic, by_vertical).astype(np.int64)


@dataclass(frozen=True)
class World:
    """The synthesized dataset together with the latent structure it was drawn from (for tests and analysis)."""

    dataset: Dataset
    items: Latent
    queries: Latent

    def true_grade(self, query_ids: Iterable[str], item_ids: Iterable[str]) -> np.ndarray:
        """True (noise-free) grade of each (query_id, item_id) pair."""
        qpos = pd.Index(self.dataset.queries["query_id"]).get_indexer(pd.Series(query_ids))
        ipos = pd.Index(self.dataset.items["item_id"]).get_indexer(pd.Series(item_ids))
        if (qpos < 0).any() or (ipos < 0).any():
            raise KeyError("true_grade: unknown query_id or item_id")
        return true_grades(self.queries, qpos, self.items, ipos)


def synthesize(config: SynthConfig | None = None) -> Dataset:
    """Build the synthetic dataset (validated, with splits); save it with ``.save(path)``."""
    return build_world(config or SynthConfig()).dataset


def build_world(config: SynthConfig) -> World:
    """Build the dataset and keep the latent structure: ``world.true_grade(query_ids, item_ids)``."""
    seeds = np.random.SeedSequence(config.seed).spawn(5)  # one random stream per part of the world
    rngs = [np.random.default_rng(s) for s in seeds]
    with step("synthesizing a world", total=5) as advance:
        items, item_lat = _make_items(config, rngs[0])
        advance()
        queries, query_lat = _make_queries(config, rngs[1])
        advance()
        cand, cand_score = _naive_ranker(items, queries, item_lat, query_lat, rngs[2])
        advance()
        judgments = _make_judgments(config, rngs[3], query_lat, item_lat, cand)
        advance()
        log = _make_log(config, rngs[4], queries, items, query_lat, item_lat, cand, cand_score)
        advance()
    info = DatasetInfo(
        name="synth", scale=SCALE, relevant_min=4, languages=list(config.languages), source="searchrel synth",
        synthetic=True,
        description=(f"SYNTHETIC data generated by searchrel synth (seed {config.seed}): a Pinterest-like world of "
                     f"{len(items)} items, {len(queries)} queries, {len(judgments)} simulated 5-point judgments "
                     f"and a simulated {config.log_days}-day search log. Not real users or content."))
    ds = Dataset(info, items, queries, judgments, log, make_splits(queries, seed=config.seed)).validate()
    return World(ds, item_lat, query_lat)


# --- text rendering ---------------------------------------------------------------------------------

def _word(r: random.Random, kind: str, value: int, lang: str, canonical: bool) -> str:
    syns = ATTRIBUTES[kind][VALUES[kind][value]][lang]
    return syns[0] if canonical else r.choice(syns)


def _phrase(lang: str, slots: dict[str, str]) -> str:
    """Words in the language's order, e.g. es: topic, colour, ..., 'para' audience; ja without spaces."""
    parts = [pre + slots[slot] + suf for slot, pre, suf in PHRASE_ORDER[lang] if slots.get(slot)]
    return JOINER[lang].join(parts)


def _attr_slots(r: random.Random, attrs: np.ndarray, lang: str, probs: dict[str, float], canonical: bool) -> dict:
    return {kind: _word(r, kind, attrs[k], lang, canonical) for k, kind in enumerate(KINDS)
            if attrs[k] >= 0 and r.random() < probs.get(kind, 0.0)}


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _make_items(cfg: SynthConfig, rng: np.random.Generator) -> tuple[pd.DataFrame, Latent]:
    """Items with a latent sub-topic and attributes, their text *rich* (title and description name the topic
    and some attributes), *medium* (title names the topic, description is filler) or *thin* (generic title,
    empty description: only the image caption tells what it is)."""
    n = cfg.n_items
    topic = rng.integers(len(TOPICS), size=n)
    vert = TOPIC_VERTICAL[topic]
    attrs = np.full((n, len(KINDS)), -1)
    for k, kind in enumerate(KINDS):
        present = KIND_APPLIES[vert, k] & (rng.random(n) < 0.85)
        attrs[:, k] = np.where(present, rng.integers(len(VALUES[kind]), size=n), -1)
    langs = list(cfg.languages)
    lang = rng.choice(langs, size=n, p=_language_p(langs, cfg.english_item_share))
    roll = rng.random(n)
    medium = cfg.thin_item_share + 0.3  # 30% name only the topic, the rest are rich
    kind_of = np.where(roll < cfg.thin_item_share, "thin", np.where(roll < medium, "medium", "rich"))
    r = random.Random(int(rng.integers(2**62)))
    rows = []
    for i in range(n):
        (vname, tname), l = TOPICS[topic[i]], str(lang[i])
        topic_words = VERTICALS[vname].topics[tname]
        if kind_of[i] == "thin":
            title, desc = r.choice(THIN_TITLES[l]), ""
        elif kind_of[i] == "medium":
            title = r.choice(TITLE_TEMPLATES[l]).format(x=topic_words[l][0])
            desc = r.choice(FILLERS[l]) if r.random() < 0.7 else ""
        else:
            slots = _attr_slots(r, attrs[i], l, TITLE_ATTR_P, canonical=True) | {"topic": topic_words[l][0]}
            title = r.choice(TITLE_TEMPLATES[l]).format(x=_phrase(l, slots))
            slots = _attr_slots(r, attrs[i], l, DESC_ATTR_P, canonical=False) | {"topic": r.choice(topic_words[l])}
            desc = f"{_cap(_phrase(l, slots))}. {r.choice(FILLERS[l])}"
        caption = None
        if kind_of[i] == "thin" or r.random() >= cfg.no_caption_share:
            slots = _attr_slots(r, attrs[i], "en", CAPTION_ATTR_P, canonical=False)
            scene = r.choice(VERTICALS[vname].scenes)
            season = VALUES["season"][attrs[i, SEASON]] if attrs[i, SEASON] >= 0 else None
            if season in CAPTION_SEASON and r.random() < 0.5:
                scene += " " + CAPTION_SEASON[season]
            x = _phrase("en", slots | {"topic": r.choice(topic_words["en"])})
            caption = r.choice(CAPTION_TEMPLATES).format(x=x.lower(), scene=scene)
        colour = VALUES["colour"][attrs[i, 0]] if attrs[i, 0] >= 0 and r.random() < 0.7 else None
        brand = r.choice(BRANDS) if vname in BRANDED_VERTICALS and r.random() < 0.5 else None
        rows.append((f"i{i:06d}", _cap(title), desc, caption, l, colour, brand))
    df = pd.DataFrame(rows, columns=["item_id", "title", "description", "image_caption", "language", "color", "brand"])
    df.insert(4, "board_titles", pd.Series([None] * n, dtype=object))  # filled by annotate from the log
    df.insert(5, "engaged_queries", pd.Series([None] * n, dtype=object))
    return df, Latent(vert, topic, attrs)


def _language_p(langs: list[str], english_share: float) -> np.ndarray:
    if "en" not in langs or len(langs) == 1:
        return np.full(len(langs), 1 / len(langs))
    other = (1 - english_share) / (len(langs) - 1)
    return np.array([english_share if lang == "en" else other for lang in langs])


def _make_queries(cfg: SynthConfig, rng: np.random.Generator) -> tuple[pd.DataFrame, Latent]:
    """Unique intents, each asked in a home language and sometimes translated (sharing a group_id)."""
    langs = list(cfg.languages)
    t = cfg.translated_share if len(langs) > 1 else 0.0
    # home-language share h such that English makes up english_query_share of all queries in expectation
    h = min(1.0, max(0.0, (cfg.english_query_share * (1 + t) - t) / (1 - t))) if t < 1 else 0.5
    home_p = _language_p(langs, h)
    r = random.Random(int(rng.integers(2**62)))
    rows, latent, seen, texts = [], [], set(), set()
    for _ in range(200 * cfg.n_queries):  # bounded: a tiny vocabulary may run out of unique intents
        if len(rows) >= cfg.n_queries:
            break
        wide = rng.random() < 0.1  # a vertical-wide query like "christmas recipes" always names attributes
        topic = int(rng.integers(len(TOPICS)))
        vert = int(TOPIC_VERTICAL[topic])
        kinds = np.flatnonzero(KIND_APPLIES[vert])
        n_attr = int(rng.choice([1, 2], p=[0.7, 0.3])) if wide else int(rng.choice([0, 1, 2], p=[0.35, 0.45, 0.2]))
        attrs = np.full(len(KINDS), -1)
        for k in rng.choice(kinds, size=min(n_attr, len(kinds)), replace=False):
            attrs[k] = rng.integers(len(VALUES[KINDS[k]]))
        vname, tname = TOPICS[topic]
        topic_words = VERTICALS[vname].words if wide else VERTICALS[vname].topics[tname]
        topic = -1 if wide else topic
        key = (vert, topic, tuple(attrs))
        if key in seen:
            continue
        seen.add(key)
        home = str(rng.choice(langs, p=home_p))
        asked_in = [home]
        if rng.random() < t:
            others = [x for x in langs if x != home]
            asked_in.append("en" if "en" in others else str(rng.choice(others)))  # translations mostly from/to English
        rendered = []
        for lang in asked_in:
            slots = _attr_slots(r, attrs, lang, dict.fromkeys(KINDS, 1.0), canonical=False)
            text = _phrase(lang, slots | {"topic": r.choice(topic_words[lang])}).lower()
            if (lang, text) not in texts:
                texts.add((lang, text))
                rendered.append((lang, text))
        group = f"g{len(seen):05d}" if len(rendered) > 1 else None
        for lang, text in rendered[: cfg.n_queries - len(rows)]:
            rows.append((f"q{len(rows):05d}", text, lang, r.choice(COUNTRIES[lang]), group))
            latent.append((vert, topic, attrs))
    df = pd.DataFrame(rows, columns=["query_id", "text", "language", "country", "group_id"])
    lat = Latent(np.array([x[0] for x in latent]), np.array([x[1] for x in latent]), np.array([x[2] for x in latent]))
    return df, lat


# --- the naive ranker that produced the impressions ---------------------------------------------------

_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]+|\w+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]")


def _tokens(text: object) -> set[str]:
    """Lower-cased words; Japanese runs as character bigrams (it has no spaces)."""
    out: set[str] = set()
    for tok in _TOKEN.findall(text.lower() if isinstance(text, str) else ""):
        if _CJK.match(tok) and len(tok) > 1:
            out.update(tok[j:j + 2] for j in range(len(tok) - 1))
        else:
            out.add(tok)
    return out


def _naive_ranker(items: pd.DataFrame, queries: pd.DataFrame, it: Latent, q: Latent,
                  rng: np.random.Generator, n_cand: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n_cand`` items per query by word overlap with title+description (caption at half weight),
    a noisy query-vertical classifier and noise. Imperfect on purpose: it knows no synonyms or translations."""
    def postings(texts) -> dict[str, list[int]]:
        index: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            for tok in _tokens(text):
                index.setdefault(tok, []).append(i)
        return index

    td = postings((items["title"] + " " + items["description"]).tolist())
    cap = postings(items["image_caption"].tolist())
    n_items, n_q = len(items), len(queries)
    n_cand = min(n_cand, n_items)
    predicted = np.where(rng.random(n_q) < 0.85, q.vertical, rng.integers(len(VERTICAL_NAMES), size=n_q))
    cand = np.empty((n_q, n_cand), dtype=np.int64)
    cand_score = np.empty((n_q, n_cand))
    for j, text in enumerate(queries["text"]):
        toks = _tokens(text)
        score = (it.vertical == predicted[j]) + rng.normal(0, 0.5, n_items)
        for tok in toks:
            score[td.get(tok, [])] += 2.0 / len(toks)
            score[cap.get(tok, [])] += 1.0 / len(toks)
        top = np.argpartition(-score, n_cand - 1)[:n_cand]
        top = top[np.argsort(-score[top], kind="stable")]
        cand[j], cand_score[j] = top, score[top]
    return cand, cand_score


# --- judgments ---------------------------------------------------------------------------------------

def _make_judgments(cfg: SynthConfig, rng: np.random.Generator, q: Latent, it: Latent,
                    cand: np.ndarray) -> pd.DataFrame:
    """Per query, pairs drawn from: exact matches, its sub-topic, its vertical, the ranker's top, anything;
    each rated by ``n_raters`` noisy raters; the label is their median."""
    n_q, n_items = len(q.topic), len(it.topic)
    per_query = np.full(n_q, cfg.n_judged_pairs // n_q)
    per_query[: cfg.n_judged_pairs % n_q] += 1
    per_query = np.minimum(per_query, n_items)
    all_items = np.arange(n_items)
    qi, ii = [], []
    for j in range(n_q):
        grades = true_grades(q, np.array([j]), it, all_items)  # one query broadcast against every item
        same_vert = it.vertical == q.vertical[j]
        same_topic = (it.topic == q.topic[j]) if q.topic[j] >= 0 else same_vert
        in_cand = np.zeros(n_items, bool)
        in_cand[cand[j]] = True
        pools = [(grades == 5, 0.15), (same_topic, 0.2), (same_vert & ~same_topic, 0.2), (in_cand, 0.15),
                 (np.ones(n_items, bool), 0.3)]
        w = sum(share * m / m.sum() for m, share in pools if m.any())
        pick = rng.choice(n_items, size=per_query[j], replace=False, p=w / w.sum())
        qi.append(np.full(len(pick), j))
        ii.append(np.sort(pick))
    qi, ii = np.concatenate(qi), np.concatenate(ii)
    true = true_grades(q, qi, it, ii)
    scores = np.clip(np.rint(true[:, None] + rng.normal(0, cfg.rater_noise, (len(true), cfg.n_raters))),
                     SCALE.min, SCALE.max)
    return pd.DataFrame({"query_id": [f"q{j:05d}" for j in qi], "item_id": [f"i{i:06d}" for i in ii],
                         "label": np.rint(np.median(scores, axis=1)).astype(np.int64),
                         "rater_variance": scores.var(axis=1)})


# --- users, boards and the search log ------------------------------------------------------------------

@dataclass(frozen=True)
class _Users:
    language: np.ndarray  # (n,) language string
    activity: np.ndarray  # (n,) relative search rate (heavy and light users)
    kind_order: np.ndarray  # (n, 3) preference over style/audience/season for naming boards
    specific: np.ndarray  # (n,) names boards by sub-topic ("boho bedding inspo") rather than vertical
    combo: np.ndarray  # (n,) makes season+audience boards ("xmas gifts for dad")
    catch_all: np.ndarray  # (n,) probability of saving to a catch-all board ("things i love")


def _make_users(cfg: SynthConfig, rng: np.random.Generator) -> _Users:
    langs = list(cfg.languages)
    lang = rng.choice(langs, size=cfg.n_users, p=_language_p(langs, cfg.english_query_share))
    lang[: len(langs)] = langs  # every language has at least one user
    order = np.argsort(rng.random((cfg.n_users, 3)), axis=1)
    return _Users(lang, rng.lognormal(0, 1, cfg.n_users), np.array([STYLE, AUDIENCE, SEASON])[order],
                  rng.random(cfg.n_users) < 0.5, rng.random(cfg.n_users) < 0.4, rng.uniform(0, 0.25, cfg.n_users))


def _board_title(users: _Users, u: int, it: Latent, i: int, r: random.Random, cache: dict) -> str:
    """The title of the board user ``u`` saves item ``i`` to: named by the item's style/audience/season as
    the user tends to name boards, in the user's language. One board per (user, topic, attribute) key."""
    lang, attrs = str(users.language[u]), it.attrs[i]
    present = [k for k in users.kind_order[u] if attrs[k] >= 0]
    if r.random() < users.catch_all[u]:
        kind = "generic"
    elif not present:
        kind = "topic"
    elif users.combo[u] and attrs[SEASON] >= 0 and attrs[AUDIENCE] >= 0:
        kind = "season_audience"
    else:
        kind = KINDS[present[0]]
    slots = {k: int(attrs[KINDS.index(k)]) for k in kind.split("_") if k in KINDS}
    topic = int(it.topic[i]) if users.specific[u] else -1
    key = (u, kind) if kind == "generic" else (u, kind, int(it.vertical[i]), topic, tuple(slots.items()))
    if key not in cache:
        br = random.Random(zlib.crc32(repr(key).encode()))  # the board's name is fixed once per key
        vname, tname = TOPICS[it.topic[i]]
        topic_words = VERTICALS[vname].topics[tname] if topic >= 0 else VERTICALS[vname].words
        fill = {k: br.choice(ATTRIBUTES[k][VALUES[k][v]][lang]) for k, v in slots.items()}
        title = br.choice(BOARD_TEMPLATES[lang][kind]).format(topic=br.choice(topic_words[lang]), **fill)
        cache[key] = title if lang == "de" else title.lower()
    return cache[key]


def engagement(rng: np.random.Generator, grade: np.ndarray, position: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The world's users looking at pins of true ``grade`` (1..5) shown at 0-based ``position`` (arrays of one
    shape: one search's screen, or searches x positions): ``(click, long_click, save)``, boolean arrays of that shape.

    P(click) = (1 + position) ** -EXAMINATION_DECAY * ATTRACTIVENESS[grade]; given a click, a long click with
    P_LONG_CLICK[grade] and a save with P_SAVE[grade], drawn independently. The search log is made with it, and
    ``searchrel simulate`` replays rankings through it."""
    g = np.asarray(grade) - SCALE.min
    click = rng.random(g.shape) < (1 + np.asarray(position)) ** -EXAMINATION_DECAY * ATTRACTIVENESS[g]
    long_click = click & (rng.random(g.shape) < P_LONG_CLICK[g])
    save = click & (rng.random(g.shape) < P_SAVE[g])
    return click, long_click, save


def _make_log(cfg: SynthConfig, rng: np.random.Generator, queries: pd.DataFrame, items: pd.DataFrame,
              q: Latent, it: Latent, cand: np.ndarray, cand_score: np.ndarray) -> pd.DataFrame:
    """Searches with Zipf-distributed queries; impressions from the naive ranker (re-noised per search);
    clicks from a position-biased click model on the true grade; long clicks and saves given a click."""
    users = _make_users(cfg, rng)
    n_q, S = len(queries), cfg.n_searches
    k = min(cfg.impressions_per_search, cand.shape[1])
    popularity = np.arange(1, n_q + 1, dtype=float) ** -cfg.zipf_exponent
    sq = rng.permutation(n_q)[rng.choice(n_q, size=S, p=popularity / popularity.sum())]
    su = np.empty(S, dtype=np.int64)
    qlang = queries["language"].to_numpy()[sq]
    for lang in cfg.languages:  # a search comes from a user who speaks the query's language
        pool = np.flatnonzero(users.language == lang)
        mask = qlang == lang
        su[mask] = rng.choice(pool, size=mask.sum(), p=users.activity[pool] / users.activity[pool].sum())
    order = np.argsort(-(cand_score[sq] + rng.normal(0, 0.5, (S, cand.shape[1]))), axis=1)[:, :k]
    shown = np.take_along_axis(cand[sq], order, axis=1).ravel()
    search = np.repeat(np.arange(S), k)
    pos = np.tile(np.arange(k), S)
    click, long_click, save = engagement(rng, true_grades(q, sq[search], it, shown), pos)

    t_search = np.sort(rng.integers(0, cfg.log_days * 86_400, S))[search]
    t_click = t_search + 3 + 2 * pos + rng.integers(0, 30, len(shown))
    parts = [(np.ones_like(click), t_search, 0), (click, t_click, 1),
             (long_click, t_click + rng.integers(30, 600, len(shown)), 2),
             (save, t_click + rng.integers(5, 90, len(shown)), 3)]
    rows = np.concatenate([np.flatnonzero(m) for m, _, _ in parts])
    ts = np.concatenate([t[m] for m, t, _ in parts])
    event = np.concatenate([np.full(m.sum(), code) for m, _, code in parts])
    srt = np.lexsort((event, pos[rows], search[rows], ts))
    rows, ts, event = rows[srt], ts[srt], event[srt]

    r, cache = random.Random(int(rng.integers(2**62))), {}
    user = su[search[rows]]
    board = np.full(len(rows), None, dtype=object)
    for n in np.flatnonzero(event == 3):
        board[n] = _board_title(users, int(user[n]), it, int(shown[rows[n]]), r, cache)
    start = np.datetime64(cfg.start_date, "s")
    return pd.DataFrame({
        "ts": start + ts.astype("timedelta64[s]"),
        "user_id": np.char.add("u", np.char.zfill(user.astype(str), 6)).astype(object),
        "query_id": queries["query_id"].to_numpy()[sq[search[rows]]],
        "item_id": items["item_id"].to_numpy()[shown[rows]],
        "position": pos[rows].astype(np.int64),
        "event": np.array(["impression", "click", "long_click", "save"])[event].astype(object),
        "board_title": board,
    })
