"""What a catalogue and a search load cost, worked out from this project's own benchmark files.

    .venv/bin/python bench/scale.py [--items 5e9] [--searches-per-month 6e9] [--pairs 30e6] [--teacher-params 8e9]
        [--candidates 400] [--distinct-queries 2e9] [--zipf 0.8,1.0,1.1] [--hit-rate 0.85] [--peak 2.0]
        [--out docs/results/scale.json]

Every figure is one of the measured rates below, scaled by stated arithmetic (printed next to it), so a reader can
redo it for their own catalogue by changing the inputs:

* Labelling with the teacher: the H200 labelling rate of `bench/gpu_teacher.py` (a 0.71B Llama-class teacher,
  pairs of ~66 tokens) scaled by parameter count and pair length — labelling is a forward pass, its FLOPs grow
  with both (``2 * params * tokens``); attention's quadratic term is small at these lengths and left out.
* The catalogue's embeddings: the items/s of a full index build in `bench/index.py` (both towers' item side and
  the zero-shot item vector, per core) and the bytes per item of the index it wrote.
* The query cache: searches arrive at the mean rate with Zipf(s) queries over ``distinct-queries``; an entry
  lives ``ttl-s`` after it is written (the server's TTL; hits do not extend it), so a query of probability p is
  a hit with probability ``x / (1 + x)``, ``x = rate * p * ttl``, and is cached that share of the time. Its hit rate at the server's TTL, the TTL the target hit rate needs, and the memory at the measured
  bytes per entry.
* Servers: the per-core rate `bench/serve.py` sustained with p99 within the target (400 candidates, warm cache),
  corrected for the share of misses at the target hit rate with the measured cost of a miss.

Writes the inputs, the measured sources (file and field) and every derived figure to a JSON file, and prints the
table that docs/scale.md holds.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
SECONDS_PER_MONTH = 30 * 86400


def _latest(pattern: str) -> Path:
    files = sorted(RESULTS.glob(pattern))
    if not files:
        raise SystemExit(f"no {pattern} in {RESULTS}: run the benchmark that writes it first")
    return files[-1]


def _zipf_grid(n: float, s: float, exact: int = 200_000, bins: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Query probabilities under Zipf(s) over ranks 1..n as (probability of one query, how many queries have it):
    the first ``exact`` ranks one by one, the rest in geometric bins (each bin's ranks share its midpoint's
    probability), so sums over two billion queries take milliseconds."""
    head = np.arange(1, min(exact, int(n)) + 1, dtype=np.float64)
    ranks, counts = head, np.ones_like(head)
    if n > exact:
        edges = np.geomspace(exact + 1, n + 1, bins + 1)
        ranks = np.concatenate([ranks, np.sqrt(edges[:-1] * edges[1:])])
        counts = np.concatenate([counts, np.diff(edges)])
    weight = ranks ** -s
    return weight / float(np.sum(weight * counts)), counts


def ttl_cache(rate: float, ttl_s: float, n: float, s: float) -> tuple[float, float]:
    """(hit rate, entries) of a query cache whose entries live ``ttl_s`` after they are written (a hit does not
    extend them: the LRU tier and Redis ``EX`` both work so), under Poisson arrivals of ``rate`` searches/s with
    Zipf(s) queries over ``n`` distinct ones, no capacity limit. A query of probability p, arriving at
    x = rate * p per second, cycles through a miss, x * ttl hits on average, the expiry, and a wait of 1/x for
    its next search: its hit rate and the share of time it is cached are both x*ttl / (1 + x*ttl). A simulation of
    1.5M searches (three settings) agreed within 0.5 points of hit rate (``bench/scale.py`` docs)."""
    p, counts = _zipf_grid(n, s)
    x = rate * ttl_s * p
    cached = x / (1 + x)
    return float(np.sum(counts * p * cached)), float(np.sum(counts * cached))


def ttl_for(hit_rate: float, rate: float, n: float, s: float) -> float | None:
    """The shortest TTL (s) at which the cache reaches ``hit_rate`` (bisection on log TTL), None past ten years."""
    lo, hi = math.log(1e-3), math.log(10 * 365 * 86400)
    if ttl_cache(rate, math.exp(hi), n, s)[0] < hit_rate:
        return None
    for _ in range(60):
        mid = (lo + hi) / 2
        if ttl_cache(rate, math.exp(mid), n, s)[0] >= hit_rate:
            hi = mid
        else:
            lo = mid
    return math.exp(hi)


def labelling(args, gpu: dict) -> dict:
    lab, train, bb = gpu["labelling"], gpu["train"], gpu["backbone"]
    tokens_per_pair = train["tokens"] / (train["steps"] * train["batch_size"])
    pair_tokens = args.pair_tokens or tokens_per_pair
    flops = 2 * bb["parameters"] * tokens_per_pair * lab["pairs_per_s"]
    rate = lab["pairs_per_s"] * (bb["parameters"] / args.teacher_params) * (tokens_per_pair / pair_tokens)
    hours = args.pairs / rate / 3600
    return {"measured_pairs_per_s": lab["pairs_per_s"], "measured_params": bb["parameters"],
            "measured_tokens_per_pair": round(tokens_per_pair, 1), "measured_effective_tflops": round(flops / 1e12, 1),
            "teacher_params": args.teacher_params, "pair_tokens": round(pair_tokens, 1),
            "pairs_per_s_per_gpu": round(rate, 1), "gpu_hours": round(hours, 1),
            "arithmetic": f"{lab['pairs_per_s']:.0f} pairs/s x ({bb['parameters'] / 1e9:.2f}B / "
                          f"{args.teacher_params / 1e9:.1f}B) x ({tokens_per_pair:.0f} / {pair_tokens:.0f} tokens) = "
                          f"{rate:.1f} pairs/s; {args.pairs:.3g} pairs / that / 3600 = {hours:.1f} GPU-hours"}


def catalogue(args, index: dict, index_bytes_per_item: float) -> dict:
    warm = next(r for r in index["rows"] if r["step"] == "warm full build")
    cores = index["machine"]["usable_cpus"]
    per_core = warm["embedded"] / warm["timings_s"]["embed_s"] / cores
    core_hours = args.items / per_core / 3600
    refresh = args.items * args.daily_change / per_core / 3600
    tb = args.items * index_bytes_per_item / 1e12
    return {"measured_items_per_s_per_core": round(per_core, 1), "measured_on": index["machine"]["cpu"],
            "full_build_core_hours": round(core_hours), "daily_refresh_core_hours": round(refresh),
            "daily_change": args.daily_change, "bytes_per_item": round(index_bytes_per_item), "index_tb": round(tb, 1),
            "arithmetic": f"{warm['embedded']} items / {warm['timings_s']['embed_s']:.1f} s / {cores} cores = "
                          f"{per_core:.0f} items/s per core; {args.items:.3g} items / that / 3600 = "
                          f"{core_hours:,.0f} core-hours; x {args.daily_change:.0%} changed a day = {refresh:,.0f}; "
                          f"{index_bytes_per_item:.0f} B/item x {args.items:.3g} = {tb:.1f} TB"}


def query_cache(args, bytes_per_entry: float) -> list[dict]:
    rate = args.searches_per_month / SECONDS_PER_MONTH
    rows = []
    for s in args.zipf:
        at_default = ttl_cache(rate, args.ttl_s, args.distinct_queries, s)
        ttl = ttl_for(args.hit_rate, rate, args.distinct_queries, s)
        row = {"zipf": s, "hit_rate_at_ttl": round(at_default[0], 3), "entries_at_ttl": float(f"{at_default[1]:.3g}"),
               "memory_gb_at_ttl": round(at_default[1] * bytes_per_entry / 1e9, 1)}
        if ttl is None:
            row["arithmetic"] = f"{args.hit_rate:.0%} not reachable over {args.distinct_queries:.3g} queries"
        else:
            hit, entries = ttl_cache(rate, ttl, args.distinct_queries, s)
            row.update({"ttl_for_target_s": round(ttl), "entries_for_target": float(f"{entries:.3g}"),
                        "memory_gb_for_target": round(entries * bytes_per_entry / 1e9, 1)})
            row["arithmetic"] = (f"{rate:,.0f} searches/s; TTL {args.ttl_s:.0f} s: hit rate {at_default[0]:.1%}, "
                                 f"{at_default[1]:.3g} entries; {args.hit_rate:.0%} needs TTL {ttl / 3600:,.1f} h: "
                                 f"{entries:.3g} entries x {bytes_per_entry:.0f} B = "
                                 f"{entries * bytes_per_entry / 1e9:,.1f} GB")
        rows.append(row)
    return rows


def servers(args, serve: dict) -> dict:
    rows = [r for r in serve["rows"] if r["candidates"] == args.candidates and r["cache"] == "warm"
            and r["p99_ms"] is not None and r["p99_ms"] <= args.p99_ms and r["errors"] == 0]
    if not rows:
        return {"note": f"no warm {args.candidates}-candidate setting kept p99 within {args.p99_ms} ms: no per-core "
                        f"rate to scale"}
    best = max(rows, key=lambda r: r["rate_rps"])
    miss_ms = serve["cache_miss_query_side_ms"]["int8" if serve.get("server", {}).get("int8") else "fp32"]["p50"]
    # the measured setting had its own hit rate; correct the per-request CPU to the target hit rate
    per_request_s = 1 / best["rate_rps"] + ((1 - args.hit_rate) - (1 - best["hit_rate"])) * miss_ms / 1000
    per_core = 1 / per_request_s
    mean = args.searches_per_month / SECONDS_PER_MONTH
    peak = mean * args.peak
    cores = math.ceil(peak / per_core)
    return {"measured_rate_per_core": best["rate_rps"], "measured_p99_ms": best["p99_ms"],
            "measured_hit_rate": best["hit_rate"], "miss_ms": miss_ms, "per_core_at_target_hit_rate": round(per_core, 1),
            "mean_searches_per_s": round(mean), "peak_searches_per_s": round(peak), "cores": cores,
            "arithmetic": f"{args.searches_per_month:.3g} searches / {SECONDS_PER_MONTH} s = {mean:,.0f}/s, x "
                          f"{args.peak} at peak = {peak:,.0f}/s; one core: 1 / (1/{best['rate_rps']:.0f} + "
                          f"({1 - args.hit_rate:.2f} - {1 - best['hit_rate']:.3f}) x {miss_ms:.1f} ms) = "
                          f"{per_core:.0f}/s within p99 {args.p99_ms:.0f} ms; {peak:,.0f} / {per_core:.0f} = "
                          f"{cores:,} cores"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=float, default=5e9, help="items in the catalogue to embed and index")
    ap.add_argument("--daily-change", type=float, default=0.01, help="share of items new or edited per day")
    ap.add_argument("--searches-per-month", type=float, default=6e9)
    ap.add_argument("--peak", type=float, default=2.0, help="peak over mean search rate")
    ap.add_argument("--pairs", type=float, default=30e6, help="pairs the teacher labels for distillation")
    ap.add_argument("--teacher-params", type=float, default=8e9)
    ap.add_argument("--pair-tokens", type=float, default=None, help="tokens per (query, item) pair (default: as "
                    "measured)")
    ap.add_argument("--candidates", type=int, default=400, help="candidates re-ranked per search")
    ap.add_argument("--p99-ms", type=float, default=20.0)
    ap.add_argument("--distinct-queries", type=float, default=2e9, help="distinct normalised queries (the Zipf "
                    "law's support)")
    ap.add_argument("--ttl-s", type=float, default=3600.0, help="the cache's entry lifetime (serve --cache-ttl-s)")
    ap.add_argument("--zipf", type=lambda v: [float(x) for x in v.split(",")], default=[0.8, 1.0, 1.1])
    ap.add_argument("--hit-rate", type=float, default=0.85, help="query-cache hit rate to size for")
    ap.add_argument("--cache-entry-bytes", type=float, default=2_560 + 150, help="bytes per cached query: the "
                    "measured value (256 + 384 float32) plus the key and Redis' own overhead")
    ap.add_argument("--index-bytes-per-item", type=float, default=None, help="default: from the index benchmark's "
                    "files")
    ap.add_argument("--serve", type=Path, default=None, help="a bench/serve.py result (default: the latest "
                    "--int8 run, the set-up a fleet would serve with: its accuracy cost measured as none)")
    ap.add_argument("--out", type=Path, default=Path("docs/results/scale.json"))
    args = ap.parse_args()

    sources = {"labelling": _latest("gpu-teacher-*.json"), "index": _latest("index-*.json"),
               "serve": args.serve or _latest("serve-int8-*.json")}
    gpu, index, serve = (json.loads(p.read_text()) for p in sources.values())
    bytes_per_item = args.index_bytes_per_item or index.get("bytes_per_item") or 3_831  # 11.5 MB / 3,000 items
    result = {"inputs": {k: v for k, v in vars(args).items() if k != "out"},
              "sources": {k: str(p.relative_to(RESULTS.parent.parent)) for k, p in sources.items()},
              "labelling": labelling(args, gpu), "catalogue": catalogue(args, index, bytes_per_item),
              "query_cache": query_cache(args, args.cache_entry_bytes), "servers": servers(args, serve)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    for part in ("labelling", "catalogue", "servers"):
        print(f"{part}: {result[part].get('arithmetic', result[part].get('note'))}")
    for row in result["query_cache"]:
        print(f"query cache, Zipf {row['zipf']}: {row['arithmetic']}")


if __name__ == "__main__":
    main()
