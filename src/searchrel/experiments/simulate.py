"""``searchrel simulate``: an online experiment on the synthetic world, replaying held-out searches through a run's
rankers as an A/B split and as team-draft interleaving, with simulated users.

The world is rebuilt from the run's ``data.synth`` config (checked against the run's dataset): it knows the true
grade of every (query, item) pair, and its users behave by the click model the search log was made with
(``data.synth.engagement``: examination decaying with position, clicks by true grade, long clicks and saves
given a click). One simulation:

1. **Traffic.** ``searches`` searches over the queries of the held-out split (``split``, the run's evaluation
   split): each language gets searches in proportion to its held-out queries, and within a language queries
   are drawn Zipf (the world's exponent) in the order of their searches in the world's log — the world's head
   queries stay the head, and every held-out query, tail included, gets some traffic.
2. **Candidates.** Per query, a pool every arm re-ranks: BM25's top ``pool_k`` over the catalogue ∪ the served
   student's index, its ``pool_k`` nearest items to the query tower's vector (the two-tower retrieval serving
   would use). Every arm scores the same pool; the user sees its first ``top_k``.
3. **A/B.** Each search goes to one arm at random (search-level split, equal shares); per search: impressions,
   clicks, long clicks, saves, *fulfilled* (a save or a long click) and NDCG@``top_k`` of the screen against the
   true grades (gain 2^(g - min) - 1, ideal = the pool's best ``top_k``).
4. **Interleaving.** For each compared pair (A, B), every search again, its screen team-draft interleaved from
   A's and B's rankings; clicks credit teams (``eval.online``).
5. **Statistics** (``eval.online``): per arm and per language, each metric with a bootstrap 95% interval over
   searches; per compared pair the A/B difference with its interval and the searches per arm an A/B needs to
   detect it (power), the interleaving preference with its interval and the searches it needs; and whether the
   offline ordering of the arms (their NDCG@8 on the judged held-out pairs) predicts the online one.

Writes ``simulate/online.json`` (everything above) and ``simulate/searches.parquet`` (one row per simulated
search and experiment). A simulated user is not a real one: see docs/online.md for what that leaves out.
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from searchrel.annotate.text import TextConfig, build_item_texts
from searchrel.baselines.bm25 import BM25Scorer
from searchrel.data.dataset import Dataset, load_dataset
from searchrel.data.synth import SynthConfig, World, build_world, engagement
from searchrel.eval import online
from searchrel.eval.evaluate import EvalResult
from searchrel.eval.metrics import rank_order
from searchrel.experiments.rankers import SERVED, RankerSpec, available, resolve, retrieve, run_config, score_pool
from searchrel.io import write_json
from searchrel.layout import RunLayout
from searchrel.progress import console, step

OFFLINE = "ndcg@8"  # the offline metric whose ordering is compared with the online one
METRICS = ("fulfilment", "saves_per_search", "clicks_per_search", "ndcg")  # online metrics, per search
ORDERED_BY = ("fulfilment", "ndcg")  # online metrics whose ordering of the arms is compared with the offline one


class SimulateConfig(BaseModel):
    """One online experiment; the defaults fit the demo's stage into about a minute on 2 cores."""

    model_config = ConfigDict(extra="forbid")

    # A/B arms; none: the baselines, the human-only student and the served one (the teacher, slow per pair, and the
    # other amplifications, one more item-tower pass over the pool each, only when named)
    arms: list[str] | None = None
    compare: list[tuple[str, str]] | None = None  # interleaved (and A/B-contrasted) pairs; none: served vs the rest
    searches: int = Field(20_000, ge=100)  # traffic: split between the A/B arms; each interleaving replays all
    top_k: int = Field(20, ge=1, le=100)  # pins on the first screen: what users see and NDCG is cut at
    pool_k: int = Field(50, ge=1)  # candidates per retrieval source (BM25, the served index)
    split: str | None = None  # the held-out queries; none: the run's evaluation split
    seed: int = 0  # traffic, arm assignment, interleaving coins, users and bootstrap all derive from it
    bootstrap: int = Field(1000, ge=100)  # resamples per interval
    alpha: float = Field(0.05, gt=0, lt=1)  # two-sided test level of the power calculation
    power: float = Field(0.8, gt=0, lt=1)  # its power

    @model_validator(mode="after")
    def _pairs(self) -> "SimulateConfig":
        for a, b in self.compare or []:
            if a == b:
                raise ValueError(f"simulate.compare: {a} against itself")
        return self


class NoWorld(ValueError):
    """The run's dataset is not the synthetic world: nothing knows the true relevance users would act on."""


def check_world(run_dir: Path, ds: Dataset) -> SynthConfig:
    """The run's world config; NoWorld when the run's data is not the synthetic world."""
    data = run_config(run_dir).get("data") or {}
    if data.get("source") != "synthetic" or not ds.info.synthetic:
        raise NoWorld(f"{run_dir}: its dataset ({ds.info.name}, source {data.get('source')!r}) is not the synthetic "
                      "world, so no model of true relevance and user behaviour exists to simulate an online "
                      "experiment with (runs with data.source = \"synthetic\" have one)")
    return SynthConfig.model_validate(data.get("synth") or {})


def load_world(synth: SynthConfig, ds: Dataset) -> World:
    """The world ``synth`` builds, checked to be the run's dataset ``ds`` (same items and queries)."""
    world = build_world(synth)
    mine = world.dataset
    same = (mine.items["item_id"].tolist() == ds.items["item_id"].tolist()
            and mine.queries[["query_id", "text", "language"]].equals(ds.queries[["query_id", "text", "language"]]))
    if not same:
        raise ValueError(f"{ds.path}: the world its run's data.synth config builds is not this dataset "
                         "(items or queries differ); was the dataset changed after the run?")
    return world


# --- traffic, candidates, rankings -----------------------------------------------------------------------------

def traffic(queries: pd.DataFrame, n: int, exponent: float, rng: np.random.Generator,
            head: np.ndarray | None = None) -> np.ndarray:
    """Row positions into ``queries`` of ``n`` searches: languages in proportion to their queries and, within a
    language, query of popularity rank r drawn with probability ∝ r^-exponent. ``head`` orders the queries by
    popularity (higher first; ties by row), e.g. their searches in the world's log; without it the order is a
    random one drawn from ``rng``."""
    lang = queries["language"].to_numpy()
    langs, counts = np.unique(lang, return_counts=True)
    per_search = rng.choice(len(langs), size=n, p=counts / counts.sum())
    out = np.empty(n, dtype=np.int64)
    for j, code in enumerate(langs):
        rows = np.flatnonzero(lang == code)
        rows = rng.permutation(rows) if head is None else rows[np.argsort(-head[rows], kind="stable")]
        popularity = np.arange(1, len(rows) + 1, dtype=float) ** -exponent
        mask = per_search == j
        out[mask] = rows[rng.choice(len(rows), size=int(mask.sum()), p=popularity / popularity.sum())]
    return out


def log_searches(ds: Dataset, query_ids: pd.Series) -> np.ndarray | None:
    """Searches per query in the dataset's log (its first impressions), None without a log."""
    log = ds.search_log
    if log is None or log.empty:
        return None
    first = log[(log["event"] == "impression") & (log["position"] == 0)]
    return query_ids.map(first["query_id"].value_counts()).fillna(0).to_numpy(float)


def candidate_pool(ds: Dataset, queries: pd.DataFrame, text: TextConfig, served: RankerSpec | None,
                   k: int) -> pd.DataFrame:
    """``query_id, query, item_id, source`` rows: BM25's top ``k`` (matching items only) and, when the served
    student has its index, the ``k`` items nearest to its query vector (source bm25, index or both)."""
    texts = build_item_texts(ds.items, text)
    ids = texts.index.to_numpy()
    bm25 = BM25Scorer(texts.tolist())
    found: dict[str, dict[str, str]] = {q: {} for q in queries["query_id"]}
    for qid, qtext in zip(queries["query_id"], queries["text"]):
        s = bm25.score_all(qtext)
        top = np.argsort(-s, kind="stable")[:k]
        found[qid].update({ids[i]: "bm25" for i in top[s[top] > 0]})
    if served is not None and served.index is not None:
        for qid, items in retrieve(served, queries, k).items():
            for item in items:
                found[qid][item] = "both" if found[qid].get(item) == "bm25" else "index"
    pool = pd.DataFrame([(q, i, src) for q, items in found.items() for i, src in items.items()],
                        columns=["query_id", "item_id", "source"])
    return pool.merge(queries[["query_id", "text"]].rename(columns={"text": "query"}), on="query_id")


def rankings(pool: pd.DataFrame, scores: np.ndarray, query_ids: list[str], k: int) -> np.ndarray:
    """``[queries, k]`` row positions into ``pool`` of each query's top ``k`` by ``scores`` (ties by item id),
    -1 past the end of a short pool."""
    out = np.full((len(query_ids), k), -1, dtype=np.int64)
    groups = pool.groupby("query_id", sort=False).indices
    for j, qid in enumerate(query_ids):
        rows = groups.get(qid, np.zeros(0, np.int64))
        top = rows[rank_order(scores[rows], pool["item_id"].to_numpy()[rows])][:k]
        out[j, :len(top)] = top
    return out


def ndcg_of(shown_grades: np.ndarray, ideal_grades: np.ndarray, scale_min: int) -> np.ndarray:
    """NDCG of each row of ``shown_grades`` (0 = no item) against the ideal row ``ideal_grades`` (sorted, best
    first); nan where the ideal has no gain."""
    def dcg(g: np.ndarray) -> np.ndarray:
        gain = np.where(g > 0, 2.0 ** (g - scale_min) - 1, 0.0)
        return (gain / np.log2(np.arange(2, g.shape[1] + 2))).sum(1)

    ideal = dcg(ideal_grades)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ideal > 0, dcg(shown_grades) / ideal, np.nan)


# --- the experiments ---------------------------------------------------------------------------------------

def _engage(rng: np.random.Generator, grades: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The world's users on screens of ``grades`` (searches x positions; 0 = nothing shown there)."""
    shown = grades > 0
    pos = np.broadcast_to(np.arange(grades.shape[1]), grades.shape)
    click, long_click, save = engagement(rng, np.where(shown, grades, 1), pos)
    return click & shown, long_click & shown, save & shown


def ab_test(top: dict[str, np.ndarray], grade: np.ndarray, ideal: np.ndarray, q_of: np.ndarray,
            rng: np.random.Generator, scale_min: int) -> pd.DataFrame:
    """One row per search: its arm (uniform at random), impressions, clicks, long clicks, saves, fulfilled, NDCG."""
    arms = list(top)
    arm_of = rng.integers(len(arms), size=len(q_of))
    screens = np.stack([top[a] for a in arms])[arm_of, q_of]  # searches x top_k pool rows
    grades = np.where(screens >= 0, grade[np.maximum(screens, 0)], 0)
    click, long_click, save = _engage(rng, grades)
    return pd.DataFrame({"arm": np.array(arms, dtype=object)[arm_of], "impressions": (grades > 0).sum(1),
                         "clicks": click.sum(1), "long_clicks": long_click.sum(1), "saves": save.sum(1),
                         "fulfilled": (long_click | save).any(1), "ndcg": ndcg_of(grades, ideal[q_of], scale_min)})


def interleave(top_a: np.ndarray, top_b: np.ndarray, grade: np.ndarray, q_of: np.ndarray,
               rng: np.random.Generator) -> pd.DataFrame:
    """One row per search, its screen team-draft interleaved from A's and B's top k: credited clicks per team and
    the outcome (+1 A won, -1 B won, 0 a tie, nan no click)."""
    k = top_a.shape[1]
    coins = rng.random((len(q_of), k)) < 0.5
    grades = np.zeros((len(q_of), k), dtype=np.int64)
    team_a = np.zeros((len(q_of), k), dtype=bool)
    for s, q in enumerate(q_of):
        a, b = top_a[q][top_a[q] >= 0], top_b[q][top_b[q] >= 0]
        shown, team = online.team_draft(a, b, k, coins[s])
        grades[s, :len(shown)] = grade[shown]
        team_a[s, :len(shown)] = team
    click, _, _ = _engage(rng, grades)
    credit_a, credit_b, outcome = online.credit(team_a, click)
    return pd.DataFrame({"credit_a": credit_a, "credit_b": credit_b, "outcome": outcome})


# --- statistics ----------------------------------------------------------------------------------------------

def _per_search(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Numerators and denominators of the METRICS per search (NDCG counts only where it is defined)."""
    defined = frame["ndcg"].notna().to_numpy(float)
    num = np.stack([frame["fulfilled"].to_numpy(float), frame["saves"].to_numpy(float),
                    frame["clicks"].to_numpy(float), frame["ndcg"].fillna(0).to_numpy(float)], 1)
    den = np.stack([np.ones(len(frame)), np.ones(len(frame)), np.ones(len(frame)), defined], 1)
    return num, den


def _interval(est: float, lo: float, hi: float) -> dict:
    return {"mean": None if np.isnan(est) else round(est, 5), "lo": None if np.isnan(lo) else round(lo, 5),
            "hi": None if np.isnan(hi) else round(hi, 5)}


def _needed(n: float) -> int | None:
    return None if not np.isfinite(n) else int(np.ceil(n))


def arm_summary(frame: pd.DataFrame, cfg: SimulateConfig, seed: int) -> dict:
    """Searches, impressions and each metric with its interval."""
    num, den = _per_search(frame)
    stats = online.bootstrap_ratios(num, den, cfg.bootstrap, seed)
    return {"searches": len(frame), "impressions_per_search": round(float(frame["impressions"].mean()), 3),
            **{m: _interval(*stats[j]) for j, m in enumerate(METRICS)}}


def _metric_values(frame: pd.DataFrame, metric: str) -> np.ndarray:
    col = {"fulfilment": "fulfilled", "saves_per_search": "saves", "clicks_per_search": "clicks", "ndcg": "ndcg"}
    v = frame[col[metric]].to_numpy(float)
    return v[~np.isnan(v)]


def ab_contrast(fa: pd.DataFrame, fb: pd.DataFrame, cfg: SimulateConfig, seed: int) -> dict:
    """Per metric: mean(A) - mean(B), its interval and the searches per arm to detect it."""
    out = {}
    for j, m in enumerate(METRICS):
        a, b = _metric_values(fa, m), _metric_values(fb, m)
        diff = online.bootstrap_difference(a, b, cfg.bootstrap, seed + j)
        out[m] = _interval(*diff) | {"searches_per_arm_needed": _needed(
            online.ab_searches_needed(a, b, cfg.alpha, cfg.power))}
    return out


def interleaving_summary(frame: pd.DataFrame, cfg: SimulateConfig, seed: int) -> dict:
    o = frame["outcome"].to_numpy(float)
    clicked = ~np.isnan(o)
    pref = online.bootstrap_ratio(np.nan_to_num(o), clicked, cfg.bootstrap, seed)
    return {"searches": len(o), "searches_with_clicks": int(clicked.sum()), "wins_a": int((o == 1).sum()),
            "wins_b": int((o == -1).sum()), "ties": int((o == 0).sum()), "preference": _interval(*pref),
            "searches_needed": _needed(online.interleaving_searches_needed(o, cfg.alpha, cfg.power))}


def _verdict(lo: float, hi: float) -> str:
    """The online side of a pair "offline better minus other": its 95% interval above 0, below 0, or across."""
    return "agree" if lo > 0 else "flip" if hi < 0 else "not separated"


def offline_vs_online(arms: list[RankerSpec], ab: pd.DataFrame, interleaved: dict[tuple[str, str], pd.DataFrame],
                      summary: dict, cfg: SimulateConfig, seed: int) -> dict:
    """Do the arms' offline NDCG@8 (judged held-out pairs) order them as the online experiment does? Kendall's tau
    per online metric, and per pair of arms the online differences "offline better minus other" — A/B fulfilment,
    A/B online NDCG and, for an interleaved pair, the preference — each with its interval and verdict: agree
    (interval above 0), flip (below 0), not separated (across 0)."""
    offline = {}
    for a in arms:
        if a.metrics is not None and a.metrics.is_file():
            offline[a.name] = EvalResult.model_validate_json(a.metrics.read_text()).overall.get(OFFLINE)
    ranked = [a.name for a in arms if offline.get(a.name) is not None]
    out: dict = {"offline_metric": OFFLINE, "offline": {n: offline[n] for n in ranked}, "tau": {}, "pairs": []}
    if len(ranked) < 2:
        out["statement"] = "Fewer than two arms have offline metrics: no ordering to compare."
        return out
    for m in ORDERED_BY:
        out["tau"][m] = round(online.kendall_tau([offline[n] for n in ranked],
                                                 [summary[n][m]["mean"] for n in ranked]), 4)
    groups: dict[str, list[str]] = {"agree": [], "flip": [], "mixed": [], "not separated": []}
    for i, (x, y) in enumerate(combinations(ranked, 2)):
        hi, lo = (x, y) if offline[x] >= offline[y] else (y, x)  # offline says hi >= lo
        rec = {"offline_better": hi, "other": lo, "offline_diff": round(offline[hi] - offline[lo], 5)}
        for m in ORDERED_BY:
            d = online.bootstrap_difference(_metric_values(ab[ab["arm"] == hi], m),
                                            _metric_values(ab[ab["arm"] == lo], m), cfg.bootstrap, seed + i)
            rec[m] = _interval(*d) | {"verdict": _verdict(d[1], d[2])}
        for (a, b), frame in interleaved.items():
            if {a, b} == {hi, lo}:
                sign = 1 if a == hi else -1
                o = sign * frame["outcome"].to_numpy(float)
                d = online.bootstrap_ratio(np.nan_to_num(o), ~np.isnan(o), cfg.bootstrap, seed + i)
                rec["interleaving"] = _interval(*d) | {"verdict": _verdict(d[1], d[2])}
        verdicts = {rec[m]["verdict"] for m in (*ORDERED_BY, "interleaving") if m in rec}
        overall = ("mixed" if {"agree", "flip"} <= verdicts else "agree" if "agree" in verdicts
                   else "flip" if "flip" in verdicts else "not separated")
        rec["verdict"] = overall
        out["pairs"].append(rec)
        labels = {"fulfilment": "fulfilment", "ndcg": f"NDCG@{cfg.top_k}", "interleaving": "interleaving"}
        evidence = [labels[m] + ("" if overall != "mixed" else f" {rec[m]['verdict']}s") for m in labels
                    if m in rec and rec[m]["verdict"] != "not separated"]
        tie = " (tied offline)" if rec["offline_diff"] == 0 else ""
        groups[overall].append(f"{hi} > {lo}{tie}" + (f" ({', '.join(evidence)})" if evidence else ""))
    order_off = " > ".join(f"{n} {offline[n]:.4f}" for n in sorted(ranked, key=lambda n: -offline[n]))
    order_on = " > ".join(sorted(ranked, key=lambda n: -summary[n]["fulfilment"]["mean"]))
    order_ndcg = " > ".join(sorted(ranked, key=lambda n: -summary[n]["ndcg"]["mean"]))
    text = (f"Offline {OFFLINE.upper()}: {order_off}. Online fulfilment: {order_on} (Kendall tau with offline "
            f"{out['tau']['fulfilment']:+.2f}); online NDCG@{cfg.top_k}: {order_ndcg} (tau {out['tau']['ndcg']:+.2f})."
            " Pairs, offline order first, against what the online experiment separates (95% interval excluding 0):")
    for name, what in (("agree", "online agrees"), ("flip", "online reverses"),
                       ("mixed", "online metrics disagree"), ("not separated", "not separated online")):
        if groups[name]:
            text += f" {what}: {'; '.join(groups[name])}."
    out["statement"] = text
    return out


# --- the whole simulation ------------------------------------------------------------------------------------

def choose_arms(cfg: SimulateConfig, specs: dict[str, RankerSpec]) -> tuple[list[RankerSpec], list[tuple[str, str]]]:
    """The A/B arms (the compared rankers join them) and the compared pairs, by the rankers' own names."""
    served = specs.get(SERVED)
    names = cfg.arms if cfg.arms is not None else \
        [n for n, s in specs.items() if s.kind in ("bm25", "zero-shot") or n in ("student-human", SERVED)]
    pairs = cfg.compare if cfg.compare is not None else \
        [(SERVED, n) for n in ("bm25", "student-human") if n in specs and served and specs[n] != served]
    arms = resolve(list(dict.fromkeys([*names, *(n for pair in pairs for n in pair)])), specs)
    compare = []
    for pair in pairs:
        resolve(list(pair), specs)  # unknown names: the error lists what exists
        a, b = specs[pair[0]].name, specs[pair[1]].name
        if a == b:
            raise ValueError(f"compare {pair[0]} with {pair[1]}: both name {a}")
        compare.append((a, b))
    if not arms:
        raise ValueError(f"no rankers to simulate (this run has: {', '.join(specs) or 'none'})")
    return arms, compare



def simulate(run_dir: str | Path, cfg: SimulateConfig | None = None, out: Path | None = None) -> dict:
    """Run the online experiment on ``run_dir``; write ``online.json`` and ``searches.parquet`` into ``out``
    (default ``RUN/simulate``) and return what ``online.json`` holds. NoWorld for a run whose data is not
    synthetic; ValueError naming the rankers the run has for an unknown one."""
    cfg = cfg or SimulateConfig()
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else RunLayout(run_dir).simulate
    rc = run_config(run_dir)
    ds = load_dataset(RunLayout(run_dir).dataset, validate=False)
    synth = check_world(run_dir, ds)
    specs = available(run_dir)
    served = specs.get(SERVED)
    arms, compare = choose_arms(cfg, specs)
    world = load_world(synth, ds)
    split = cfg.split or (rc.get("evaluate") or {}).get("split", "test")
    held = ds.queries[ds.queries["query_id"].map(ds.split_of()) == split].reset_index(drop=True)
    if held.empty:
        raise ValueError(f"{run_dir}: no queries in the {split!r} split to replay")
    text = TextConfig.model_validate(rc.get("text") or {})
    seeds = np.random.SeedSequence(cfg.seed).spawn(3 + len(compare))
    scale_min = ds.info.scale.min

    pool = candidate_pool(ds, held, text, served, cfg.pool_k)
    grade = world.true_grade(pool["query_id"], pool["item_id"])
    qids = held["query_id"].tolist()
    ideal = np.zeros((len(qids), cfg.top_k), dtype=np.int64)  # each query's best screen of its pool
    groups = pool.groupby("query_id", sort=False).indices
    for j, q in enumerate(qids):
        best = np.sort(grade[groups.get(q, np.zeros(0, np.int64))])[::-1][: cfg.top_k]
        ideal[j, :len(best)] = best
    top: dict[str, np.ndarray] = {}
    with step("scoring the candidate pool", total=len(arms)) as advance:
        for a in arms:
            top[a.name] = rankings(pool, score_pool(a, ds, pool, text), qids, cfg.top_k)
            advance()
    exponent = synth.zipf_exponent
    q_of = traffic(held, cfg.searches, exponent, np.random.default_rng(seeds[0]), log_searches(ds, held["query_id"]))
    language = held["language"].to_numpy()[q_of]

    def searches(frame: pd.DataFrame) -> pd.DataFrame:  # which search each row is: its number, query and language
        return pd.concat([pd.DataFrame({"search": np.arange(len(q_of)), "query_id": np.array(qids, object)[q_of],
                                        "language": language}), frame], axis=1)

    ab = searches(ab_test(top, grade, ideal, q_of, np.random.default_rng(seeds[1]), scale_min))
    langs = sorted(set(language), key=lambda x: (-int((language == x).sum()), x))
    bseed = int(np.random.default_rng(seeds[2]).integers(2**31))
    result: dict = {"config": json.loads(cfg.model_dump_json()), "split": split, "languages": langs,
                    "world": {"seed": synth.seed, "zipf_exponent": exponent, "queries": len(held),
                              "searches_per_language": {x: int((language == x).sum()) for x in langs}},
                    "pool": {"sources": ["bm25", "index"] if served is not None and served.index is not None
                             else ["bm25"], "per_query": round(len(pool) / len(held), 1),
                             "relevant_per_query": round(float((grade >= ds.info.relevant_min).sum()) / len(held), 2)},
                    "arms": {}, "ab": [], "interleaving": []}
    for i, a in enumerate(arms):
        fa = ab[ab["arm"] == a.name]
        result["arms"][a.name] = {"system": a.system, "kind": a.kind, **arm_summary(fa, cfg, bseed + i),
                                  "by_language": {x: arm_summary(fa[fa["language"] == x], cfg, bseed + i)
                                                  for x in langs}}
    frames, interleaved = [ab.assign(experiment="ab")], {}
    for c, (x, y) in enumerate(compare):
        result["ab"].append({"a": x, "b": y, **ab_contrast(ab[ab["arm"] == x], ab[ab["arm"] == y], cfg, bseed + c)})
        il = searches(interleave(top[x], top[y], grade, q_of, np.random.default_rng(seeds[3 + c])))
        result["interleaving"].append({"a": x, "b": y, **interleaving_summary(il, cfg, bseed + c),
                                       "by_language": {lang: interleaving_summary(il[il["language"] == lang], cfg,
                                                                                  bseed + c) for lang in langs}})
        frames.append(il.assign(experiment=f"interleave {x} vs {y}", a=x, b=y))
        interleaved[(x, y)] = il
    result["offline_vs_online"] = offline_vs_online(arms, ab, interleaved, result["arms"], cfg, bseed)
    out.mkdir(parents=True, exist_ok=True)
    pd.concat(frames, ignore_index=True).to_parquet(out / "searches.parquet", index=False)
    write_json(out / "online.json", result)
    console.print(f"simulated {cfg.searches:,} searches x {1 + len(compare)} experiments → {out}")
    return result

