"""The ensemble teacher: several judges of a (query, item) pair, combined by a small stacker fitted on labels.

The teacher runs offline, so it may be several models. Each member turns a pair into a few numbers:

* ``fields`` — a zero-shot embedding model (EmbeddingGemma by default) reading the query against the whole item text
  and against each item field alone: which field matters is learnt from the labels, not assumed (on CrowdFlower
  the title alone ranks 1.5 NDCG@8 points better than title + description); ``fields-only`` reads each field alone
  and skips the whole-text pass — half a large model's encoding time where the whole text adds nothing (the
  default for EmbeddingGemma);
* ``embed`` — a zero-shot embedding model's cosine on the whole item text, and that cosine standardised per query;
* ``prf`` — pseudo-relevance feedback through a zero-shot embedding model: the item's title against the centroid of
  the query's ``prf_k`` nearest titles in the catalogue the teacher was trained on (saved with the teacher, so the
  feature depends on the pair alone). The neighbours say what the query means in this catalogue; on CrowdFlower it
  added 0.4 NDCG@8 and 0.02–0.05 QWK in query-grouped cross-validation (bench/teacher_cv.py), most in Spanish;
* ``text_match`` — BM25 with the catalogue's statistics, query-term coverage, all terms present, the share of the
  query's terms the catalogue knows at all, and the three gated by that share (a query in another language than the
  catalogue's has no lexical evidence; the gate lets the stacker tell that from a mismatch);
* ``cross_encoder`` — a fine-tuned cross-encoder teacher directory: its expected grade and log grade probabilities;
* ``biencoder`` — a fine-tuned bi-encoder (``teacher.biencoder``): its cosine and the standardised cosine.

"Standardised per query" is against a fixed sample of catalogue items saved with the teacher (the query's mean and
spread of cosines over them), so a pair's score never depends on which other pairs are scored with it — the same
pair gets the same grade in evaluation, in labelling and in the workbench.

The stacker has two levels and one calibration, all linear:

1. a ListNet-trained linear ranker over the members that learnt nothing from the labels (zero-shot, text match),
   fitted on every judged pair of train and valid — they cannot have overfitted any of them;
2. where trained members exist, a second ListNet-trained linear ranker over the first level's score and the
   trained members' outputs, fitted on the valid split only (labels no member trained on);
3. an ordinal logistic model (``P(grade >= g) = sigmoid(a * score - c_g)``, ``a > 0``) turning the final score
   into grade probabilities: the expected grade rises with the score, so ranking by it is ranking by the score,
   and distillation stays KL on distributions. QWK cut points are fitted on the same pairs.

A directory holds ``teacher.json`` (``kind: ensemble``: members, stacker, thresholds), ``reference.json`` (the
reference item texts), ``text_match.json`` (catalogue statistics), ``prf-<model>.npy`` (the catalogue's title vectors,
float16, for each ``prf`` member) and one sub-directory per trained member.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, Field

from searchrel.annotate.text import TextConfig, split_item_text
from searchrel.baselines.text_match import TextMatch
from searchrel.data.dataset import Scale
from searchrel.models import embed_cache
from searchrel.models.encode import load_encoder
from searchrel.models.training import Budget, BudgetSpent
from searchrel.teacher.losses import listnet_loss
from searchrel.teacher.model import load_cross_encoder
from searchrel.teacher.predict import cross_encoder_probs

CONFIG_FILE = "teacher.json"
REFERENCE_FILE = "reference.json"
TEXT_MATCH_FILE = "text_match.json"
ENCODE_CHUNK = 1024  # texts between two checks of a training run's budget (each chunk lands in the embedding cache)


class Member(BaseModel):
    """One judge: its kind and where it comes from (a sub-directory, or a registered model name)."""

    kind: Literal["cross_encoder", "biencoder", "embed", "fields", "prf", "text_match"]
    source: str = ""  # sub-directory (cross_encoder, biencoder) or model name (embed, fields)
    whole: bool = True  # fields: also the whole item text (``fields:MODEL``), or each field alone (``fields-only:``)

    @property
    def trained(self) -> bool:
        """Learnt from the labels: its outputs on the training pairs are not to be trusted for stacking."""
        return self.kind in ("cross_encoder", "biencoder")

    @property
    def label(self) -> str:
        kind = "fields-only" if self.kind == "fields" and not self.whole else self.kind
        return f"{kind}:{self.source}" if self.source else kind


class Linear(BaseModel):
    """``((x - mean) / std) @ weights``: one level of the stacker, over the named features."""

    features: list[str]
    mean: list[float]
    std: list[float]
    weights: list[float]
    fitted_on: dict = Field(default_factory=dict)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return ((X - np.asarray(self.mean)) / np.asarray(self.std)) @ np.asarray(self.weights)


class Ordinal(BaseModel):
    """``P(grade >= g_k) = sigmoid(slope * score - cuts[k-1])`` for k >= 1, cuts increasing, slope > 0."""

    slope: float
    cuts: list[float]

    def __call__(self, score: np.ndarray) -> np.ndarray:
        z = self.slope * score[:, None] - np.asarray(self.cuts)[None, :]
        above = 1 / (1 + np.exp(-z))  # P(grade >= g_1..g_{G-1}), decreasing along the row
        upper = np.concatenate([np.ones((len(score), 1)), above], 1)
        lower = np.concatenate([above, np.zeros((len(score), 1))], 1)
        p = np.clip(upper - lower, 1e-7, 1)
        return (p / p.sum(1, keepdims=True)).astype(np.float32)


class Stacker(BaseModel):
    """Level 1 over the untrained members, level 2 over level 1 and the trained members, then the ordinal model."""

    level1: Linear
    level2: Linear | None = None
    ordinal: Ordinal

    @property
    def features(self) -> list[str]:
        return self.level1.features + ([f for f in self.level2.features if f != LEVEL1] if self.level2 else [])

    def score(self, X: np.ndarray, names: list[str]) -> np.ndarray:
        col = {n: i for i, n in enumerate(names)}
        s = self.level1(X[:, [col[f] for f in self.level1.features]])
        if self.level2 is None:
            return s
        cols = [s if f == LEVEL1 else X[:, col[f]] for f in self.level2.features]
        return self.level2(np.stack(cols, 1))

    def predict(self, X: np.ndarray, names: list[str]) -> np.ndarray:
        return self.ordinal(self.score(X, names))


LEVEL1 = "level1"


class EnsembleConfig(BaseModel):
    """Everything needed to rebuild an ensemble teacher; ``teacher.json`` of its directory."""

    kind: Literal["ensemble"] = "ensemble"
    scale: Scale = Field(default_factory=Scale)
    text: TextConfig = Field(default_factory=TextConfig)
    members: list[Member]
    prf_k: int = Field(10, ge=1)  # catalogue neighbours averaged into a prf member's query centroid
    stacker: Stacker | None = None
    thresholds: list[float] | None = None
    fitted_on: dict = Field(default_factory=dict)  # split, pairs, queries, languages the stacker saw


def prf_file(model: str) -> str:
    """The file of a prf member's catalogue vectors (a model name or a path, made a file name)."""
    return "prf-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in model.strip("/")) + ".npy"


def title_of(text: str, config: TextConfig) -> str:
    """An item text's first field (its title by default); the whole text where that field is empty or alone."""
    if len(config.fields) < 2:
        return text
    return split_item_text(text, config)[config.fields[0]] or text


def encode_within(enc, texts: list[str], kind: str, max_length: int | None = None, budget: Budget | None = None,
                  what: str = "texts") -> np.ndarray:
    """``enc.encode(texts)``; with a ``budget`` (a training run's), in chunks of ``ENCODE_CHUNK`` checked against
    it: once it is spent, ``BudgetSpent`` — each finished chunk is in the embedding cache, so a rerun does not
    encode it again."""
    progress = len(texts) > 256
    if budget is None or budget.max_minutes is None:
        return enc.encode(texts, kind=kind, max_length=max_length, progress=progress)
    chunks: list[np.ndarray] = []
    stream = enc.iter_encode(texts, kind, max_length=max_length, progress=progress, total=len(texts),
                             chunk_size=ENCODE_CHUNK)
    while True:
        if budget.spent():
            stream.close()
            kept = ("what was encoded is kept in the embedding cache: train again into the same directory with "
                    "--resume (resume=True) and a larger --max-minutes, or none, to continue without encoding it "
                    "again") if embed_cache.enabled() else (
                    "the embedding cache is off (SEARCHREL_EMBED_CACHE=0), so training again encodes it all again: "
                    "give a larger --max-minutes, or none")
            raise BudgetSpent(f"the time budget of {budget.max_minutes:g} min ran out while encoding {what} "
                              f"({sum(map(len, chunks)):,} of {len(texts):,} done); {kept}")
        chunk = next(stream, None)
        if chunk is None:
            break
        chunks.append(chunk)
    return np.concatenate(chunks) if chunks else np.zeros((0, enc.dim), np.float32)


def encode_distinct(enc, texts, kind: str, max_length: int | None = None, budget: Budget | None = None,
                    what: str = "texts") -> tuple[np.ndarray, np.ndarray]:
    """Each distinct text of ``texts`` encoded once (within ``budget``, as ``encode_within``): its vectors, and
    each input's row among them."""
    distinct, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    return encode_within(enc, [str(t) for t in distinct], kind, max_length, budget, what), inverse


def is_ensemble(path: str | Path) -> bool:
    try:
        return json.loads((Path(path) / CONFIG_FILE).read_text()).get("kind") == "ensemble"
    except (OSError, ValueError):
        return False


class EnsembleTeacher:
    """Members + stacker: ``predict_probs(queries, items)`` gives grade probabilities per pair."""

    def __init__(self, path: Path, config: EnsembleConfig, reference: list[str], text_match: TextMatch | None,
                 device: str = "cpu", budget: Budget | None = None):
        self.path, self.config, self.reference, self.text_match = path, config, reference, text_match
        self.device = device
        self.budget = budget  # a training run's: the zero-shot members' encodings stop when it is spent
        self._loaded: dict[str, object] = {}

    # -- members ------------------------------------------------------------------------------------
    def _cross_encoder(self, member: Member):
        if member.source not in self._loaded:
            self._loaded[member.source] = load_cross_encoder(self.path / member.source, self.device)
        return self._loaded[member.source]

    def _cosine_features(self, model: str, queries: list[str], items: list[str], query_len: int | None = None,
                         item_len: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``[n, 2]``: the cosine and the cosine standardised by the query's cosines to the reference items; with the
        distinct queries' vectors and each pair's row among them (for more item-side cosines)."""
        enc = load_encoder(model)
        q, q_inv = encode_distinct(enc, queries, "query", query_len, self.budget, f"{model}'s queries")
        d, i_inv = encode_distinct(enc, items, "passage", item_len, self.budget, f"{model}'s item texts")
        ref = enc.encode(self.reference, kind="passage", max_length=item_len, progress=False)
        ref_cos = q @ ref.T
        mu, sd = ref_cos.mean(1), ref_cos.std(1) + 1e-6
        cos = np.einsum("nd,nd->n", q[q_inv], d[i_inv])
        return np.stack([cos, (cos - mu[q_inv]) / sd[q_inv]], 1).astype(np.float32), q, q_inv

    def _field_features(self, member: Member, queries: list[str], items: list[str]) -> tuple[np.ndarray, list[str]]:
        """Cosine with the whole text (raw and standardised per query; ``fields`` only), then with each field alone.
        An item without a field gets the whole text's cosine there (``fields``), or its first filled field's
        (``fields-only``: for a title + description text, the same text but for the labels)."""
        model, label, fields = member.source, member.label, self.config.text.fields
        enc = load_encoder(model)
        if member.whole:
            whole, q, q_inv = self._cosine_features(model, queries, items)
            head, head_names = whole, [f"{label}:cos", f"{label}:zcos"]
            if len(fields) < 2:
                return head, head_names
        else:
            q, q_inv = encode_distinct(enc, queries, "query", budget=self.budget, what=f"{label}'s queries")
            head, head_names = np.zeros((len(items), 0), np.float32), []
        parts = ([split_item_text(t, self.config.text) for t in items] if len(fields) > 1
                 else [{fields[0]: t} for t in items])
        cols, filled = [], []
        for f in fields:
            values = np.asarray([p[f] for p in parts], dtype=object)
            d, i_inv = encode_distinct(enc, values, "passage", budget=self.budget, what=f"{label}'s item {f}s")
            cols.append(np.einsum("nd,nd->n", q[q_inv], d[i_inv]))
            filled.append(values != "")
        cos, filled = np.stack(cols, 1), np.stack(filled, 1)
        if member.whole:
            fallback = whole[:, 0]
        else:  # the first filled field's cosine; the whole text's for an item with none (encoded for those alone)
            fallback = cos[np.arange(len(items)), filled.argmax(1)]
            bare = np.flatnonzero(~filled.any(1))
            if len(bare):
                d = enc.encode([items[i] for i in bare], kind="passage", progress=False)
                fallback[bare] = np.einsum("nd,nd->n", q[q_inv[bare]], d)
        X = np.where(filled, cos, fallback[:, None])
        return np.concatenate([head, X], 1).astype(np.float32), head_names + [f"{label}:{f}" for f in fields]

    def write_catalogue(self, member: Member, texts: pd.Series, limit: int = 100_000, seed: int = 0) -> Path:
        """Encode the catalogue's titles for a prf member (a seeded sample of ``limit`` distinct ones at most) and
        save them, float16, in the teacher directory (atomically: a crash leaves no half-written file)."""
        titles = pd.Series([title_of(t, self.config.text) for t in texts.tolist()]).drop_duplicates()
        titles = titles[titles.str.len() > 0]
        if titles.empty:
            raise ValueError(f"the {member.label} member needs item titles to find a query's neighbours among, and "
                             "the catalogue has none")
        if len(titles) > limit:
            titles = titles.sample(limit, random_state=seed)
        vectors = encode_within(load_encoder(member.source), titles.tolist(), "passage", budget=self.budget,
                                what=f"{member.label}'s catalogue titles")
        out = self.path / prf_file(member.source)
        tmp = out.with_suffix(".tmp.npy")
        np.save(tmp, vectors.astype(np.float16))
        tmp.replace(out)
        return out

    def _prf_features(self, member: Member, queries: list[str], items: list[str]) -> tuple[np.ndarray, list[str]]:
        """The item's title vector against the mean of the query's ``prf_k`` nearest catalogue titles."""
        file = prf_file(member.source)
        if file not in self._loaded:  # EnsembleTeacher.load checked that it exists
            self._loaded[file] = np.load(self.path / file).astype(np.float32)
        catalogue = self._loaded[file]
        enc = load_encoder(member.source)
        q, q_inv = encode_distinct(enc, queries, "query", budget=self.budget, what=f"{member.label}'s queries")
        k = min(self.config.prf_k, len(catalogue))
        centroid = np.empty_like(q)
        for lo in range(0, len(q), 256):  # 256 queries x the catalogue at a time
            sims = q[lo:lo + 256] @ catalogue.T
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            centroid[lo:lo + 256] = catalogue[top].mean(1)
        centroid /= np.linalg.norm(centroid, axis=1, keepdims=True) + 1e-12
        d, i_inv = encode_distinct(enc, [title_of(t, self.config.text) for t in items], "passage",
                                   budget=self.budget, what=f"{member.label}'s item titles")
        return np.einsum("nd,nd->n", centroid[q_inv], d[i_inv])[:, None].astype(np.float32), [f"{member.label}:title"]

    def member_features(self, member: Member, queries: list[str], items: list[str]) -> tuple[np.ndarray, list[str]]:
        if member.kind == "cross_encoder":
            model, tok = self._cross_encoder(member)
            p = cross_encoder_probs(model, tok, queries, items, progress="cross-encoder member" if len(queries) > 512 else None)
            grades = np.asarray(self.config.scale.grades, dtype=float)
            X = np.concatenate([(p @ grades)[:, None], np.log(np.clip(p, 1e-6, 1))], 1)
            return X, [f"{member.label}:expected"] + [f"{member.label}:logp_{g}" for g in self.config.scale.grades]
        if member.kind == "fields":
            return self._field_features(member, queries, items)
        if member.kind == "prf":
            return self._prf_features(member, queries, items)
        if member.kind in ("biencoder", "embed"):
            if member.kind == "biencoder":
                head = json.loads((self.path / member.source / "biencoder.json").read_text())
                X = self._cosine_features(str(self.path / member.source), queries, items, head["query_max_length"],
                                          head["item_max_length"])[0]
            else:
                X = self._cosine_features(member.source, queries, items)[0]
            return X, [f"{member.label}:cos", f"{member.label}:zcos"]
        if self.text_match is None:
            raise ValueError(f"{self.path}: a text_match member needs {TEXT_MATCH_FILE}")
        X = self.text_match.score(queries, items)
        uq, q_inv = np.unique(np.asarray(queries, dtype=object), return_inverse=True)
        known = self.text_match.known_share(list(uq))[q_inv][:, None]
        cols = ["text_match:bm25", "text_match:coverage", "text_match:all"]
        # the lexical features gated by how much of the query the catalogue's words can match at all, so a linear
        # stacker can trust text match for queries in the catalogue's language and lean on the embedding elsewhere
        return (np.concatenate([X, known, X * known], 1),
                cols + ["text_match:known"] + [f"{c}*known" for c in cols])

    def features(self, queries: list[str], items: list[str]) -> tuple[np.ndarray, list[str]]:
        parts = [self.member_features(m, list(queries), list(items)) for m in self.config.members]
        return np.concatenate([p[0] for p in parts], 1), [n for p in parts for n in p[1]]

    def predict_probs(self, queries, items, **_) -> np.ndarray:
        if len(queries) != len(items):
            raise ValueError(f"{len(queries)} queries but {len(items)} items")
        if len(queries) == 0:
            return np.zeros((0, self.config.scale.n_grades), np.float32)
        if self.config.stacker is None:
            raise ValueError(f"{self.path}: this ensemble has no fitted stacker")
        X, names = self.features(queries, items)
        missing = [f for f in self.config.stacker.features if f not in names]
        if missing:
            raise ValueError(f"{self.path}: the stacker expects features {missing} that no member gives")
        return self.config.stacker.predict(X, names)

    # -- persistence --------------------------------------------------------------------------------
    def save(self) -> Path:
        (self.path / REFERENCE_FILE).write_text(json.dumps(self.reference, ensure_ascii=False) + "\n")
        if self.text_match is not None:
            (self.path / TEXT_MATCH_FILE).write_text(json.dumps(self.text_match.state()) + "\n")
        (self.path / CONFIG_FILE).write_text(self.config.model_dump_json(indent=2) + "\n")  # last: the commit point
        return self.path

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> "EnsembleTeacher":
        path = Path(path)
        config = EnsembleConfig.model_validate_json((path / CONFIG_FILE).read_text())
        reference = json.loads((path / REFERENCE_FILE).read_text())
        tm = TextMatch(json.loads((path / TEXT_MATCH_FILE).read_text())) if (path / TEXT_MATCH_FILE).is_file() else None
        missing = [m.source for m in config.members if m.kind in ("cross_encoder", "biencoder")
                   and not (path / m.source).is_dir()]
        if missing:
            raise FileNotFoundError(f"{path}: member director{'y' if len(missing) == 1 else 'ies'} "
                                    f"{', '.join(missing)} missing")
        missing = [prf_file(m.source) for m in config.members if m.kind == "prf"
                   and not (path / prf_file(m.source)).is_file()]
        if missing:
            raise FileNotFoundError(f"{path}: the prf member's catalogue vectors {', '.join(missing)} missing")
        return cls(path, config, reference, tm, device)


def _ordinal_nll(score, k, first, log_gaps):
    """Mean negative log-likelihood of grade indices ``k`` under ``P(grade >= g_j) = sigmoid(score - cut_j)``."""
    cuts = torch.cat([first, first + torch.cumsum(torch.exp(log_gaps), 0)])
    above = torch.sigmoid(score[:, None] - cuts[None, :])
    upper = torch.cat([torch.ones(len(score), 1, dtype=score.dtype), above], 1)
    lower = torch.cat([above, torch.zeros(len(score), 1, dtype=score.dtype)], 1)
    p = (upper - lower).clamp_min(1e-9)
    return -torch.log(p[torch.arange(len(score)), k]).mean()


def train_listwise(Z: torch.Tensor, y: np.ndarray, groups: np.ndarray, score, make_optimizer,
                   grades: list[int] | None = None, ordinal_weight: float = 1.0, epochs: int = 60,
                   seed: int = 0) -> None:
    """Train ``score`` (a function of standardised feature rows, its parameters in the optimizer) in place: ListNet
    over each query's pairs plus, with ``grades``, ``ordinal_weight`` x an ordinal-logistic likelihood of the grades
    on the same score, over chunks of 16 queries. ``make_optimizer(ordinal_params)`` builds the optimizer from the
    ordinal model's cut parameters (empty without ``grades``) and the caller's own."""
    labels = torch.tensor(y, dtype=torch.float32)
    codes = pd.factorize(pd.Series(groups))[0]
    g = torch.from_numpy(codes.astype(np.int64))
    ordinal = []
    if grades is not None:
        k = torch.tensor(np.searchsorted(grades, y), dtype=torch.long)
        first = torch.zeros(1, requires_grad=True)
        log_gaps = torch.zeros(max(0, len(grades) - 2), requires_grad=True)
        ordinal = [first, log_gaps]
    opt = make_optimizer(ordinal)
    rng = np.random.default_rng(seed)
    queries = np.unique(codes)
    for _ in range(epochs):
        for chunk in np.array_split(rng.permutation(queries), max(1, len(queries) // 16)):
            rows = torch.from_numpy(np.isin(codes, chunk))
            s = score(Z[rows])
            loss = listnet_loss(s, labels[rows], g[rows])
            if grades is not None:
                loss = loss + ordinal_weight * _ordinal_nll(s, k[rows], first, log_gaps)
            opt.zero_grad()
            loss.backward()
            opt.step()


def fit_listwise(X: np.ndarray, y: np.ndarray, groups: np.ndarray, names: list[str], grades: list[int] | None = None,
                 ordinal_weight: float = 1.0, weight_decay: float = 1e-3, epochs: int = 60, seed: int = 0) -> Linear:
    """A linear ranker on standardised features: ListNet over each query's pairs (the order within a query) plus,
    with ``grades``, ``ordinal_weight`` x an ordinal-logistic likelihood of the grades on the same score (so the
    score means the same across queries and languages, which grades need). Adam over chunks of 16 queries."""
    mean, std = X.mean(0), X.std(0) + 1e-6
    Z = torch.tensor((X - mean) / std, dtype=torch.float32)
    torch.manual_seed(seed)
    w = torch.zeros(X.shape[1], requires_grad=True)
    train_listwise(Z, y, groups, lambda z: z @ w,
                   lambda ordinal: torch.optim.Adam([w, *ordinal], lr=1e-2, weight_decay=weight_decay),
                   grades, ordinal_weight, epochs, seed)
    return Linear(features=names, mean=mean.tolist(), std=std.tolist(), weights=w.detach().tolist(),
                  fitted_on={"pairs": int(len(y)), "queries": int(len(np.unique(groups))),
                             "ordinal_weight": ordinal_weight if grades is not None else 0.0})


def fit_ordinal(score: np.ndarray, y: np.ndarray, grades: list[int]) -> Ordinal:
    """Maximum-likelihood ordinal logistic model of the grades on a score (LBFGS; slope and gaps kept positive)."""
    s = torch.tensor((score - score.mean()) / (score.std() + 1e-6), dtype=torch.float64)
    k = torch.tensor(np.searchsorted(grades, y), dtype=torch.long)
    n_cuts = len(grades) - 1
    log_slope = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    first = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    log_gaps = torch.zeros(max(0, n_cuts - 1), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_slope, first, log_gaps], max_iter=500, line_search_fn="strong_wolfe")

    def cuts():
        return torch.cat([first, first + torch.cumsum(torch.exp(log_gaps), 0)])

    def nll():
        return _ordinal_nll(torch.exp(log_slope) * s, k, first, log_gaps)

    def closure():
        opt.zero_grad()
        loss = nll()
        loss.backward()
        return loss

    opt.step(closure)
    a = float(torch.exp(log_slope).detach())
    slope = a / (score.std() + 1e-6)  # back to the raw score's units
    c = cuts().detach().numpy() + a * score.mean() / (score.std() + 1e-6)
    return Ordinal(slope=slope, cuts=c.tolist())


def fit_stacker(X: np.ndarray, names: list[str], y: np.ndarray, groups: np.ndarray, held_out: np.ndarray,
                trained: set[str], grades: list[int], ordinal_weight: float = 1.0, seed: int = 0) -> Stacker:
    """Level 1 on the untrained members' features over every row; level 2 (if any feature is in ``trained``) and
    the ordinal model on the ``held_out`` rows (those no trained member learnt from) — on every row when no
    feature is in ``trained``."""
    if len(np.unique(y)) < 2:
        raise ValueError("the stacker needs pairs of at least two different grades")
    first = [i for i, n in enumerate(names) if n not in trained]
    second = [i for i, n in enumerate(names) if n in trained]
    if not first:
        raise ValueError("the ensemble needs at least one member that is not trained on the labels (a zero-shot "
                         "embedding model or text_match)")
    level1 = fit_listwise(X[:, first], y, groups, [names[i] for i in first], grades=grades,
                          ordinal_weight=ordinal_weight, seed=seed)
    score = level1(X[:, first])
    level2 = None
    if second:
        X2 = np.concatenate([score[held_out, None], X[held_out][:, second]], 1)  # NaN-free: trained members are
        # scored on the held-out rows only
        level2 = fit_listwise(X2, y[held_out], groups[held_out], [LEVEL1] + [names[i] for i in second], grades=grades,
                              ordinal_weight=ordinal_weight, seed=seed)
        score = level2(np.concatenate([score[held_out, None], X[held_out][:, second]], 1))
        return Stacker(level1=level1, level2=level2, ordinal=fit_ordinal(score, y[held_out], grades))
    # no member learnt from the labels: every labelled pair can calibrate the grades
    return Stacker(level1=level1, level2=None, ordinal=fit_ordinal(score, y, grades))


def reference_items(texts: pd.Series, n: int = 256, seed: int = 0) -> list[str]:
    """A fixed random sample of catalogue item texts (distinct, non-empty) for per-query standardisation."""
    pool = pd.Series(texts.unique())
    pool = pool[pool.str.len() > 0]
    return pool.sample(min(n, len(pool)), random_state=seed).tolist()
