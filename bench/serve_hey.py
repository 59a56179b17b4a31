"""The service under load from an independent generator: `hey` (Debian package), rate-limited, on its own core.

    .venv/bin/python bench/serve_hey.py --student DIR --index DIR [--seconds 30] [--rates 50,100,200]
        [--candidates 100,400] [--caches memory,off] [--int8]

For each of 100 / 400 candidates and cache memory (every request after the first a hit: one query repeated) /
off (every request a miss: both query-side models run), a server pinned to core 0 (taskset) is driven by
`hey -z SECONDS -q RATE/W -c W` (W = RATE/50 workers, rounded up) pinned to core 1. Writes bench/results/serve-hey-DATE.json with hey's latency
percentiles, requests/s and status codes per setting. bench/serve.py replays the Zipf log instead with its own
open-loop client: this is the cross-check with a generator it does not share code with.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from encode import machine_info  # noqa: E402
from serve import Server  # noqa: E402


def hey(url: str, body: Path, rate: int, seconds: int, core: int, per_worker: int = 50) -> dict:
    # hey's rate limit is per worker and its workers tick together: requests come in bursts of one per worker, so
    # few workers at a high per-worker rate (2 x 50/s for 100/s) keep the bursts small; each worker waits for its
    # reply before the next tick, so this holds while a reply takes less than 1/per_worker s (20 ms)
    workers = max(1, -(-rate // per_worker))
    out = subprocess.run(["taskset", "-c", str(core), "hey", "-z", f"{seconds}s", "-q", f"{rate / workers:g}",
                          "-c", str(workers),
                          "-m", "POST", "-T", "application/json", "-D", str(body), url],
                         capture_output=True, text=True, check=True).stdout
    pct = {f"p{p}_ms": round(1000 * float(s), 2) for p, s in re.findall(r"(\d+)%+ in ([\d.]+) secs", out)}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    return {"rate_rps": rate, "throughput_rps": round(rps, 1), **{k: pct[k] for k in ("p50_ms", "p90_ms", "p99_ms")
                                                                   if k in pct}, "status": codes}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--student", type=Path, required=True)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--rates", default="50,100,200")
    ap.add_argument("--candidates", default="100,400")
    ap.add_argument("--caches", default="memory,off")
    ap.add_argument("--int8", action="store_true", help="serve with --int8 (both query-side models in int8)")
    ap.add_argument("--out", type=Path, default=Path(f"bench/results/serve-hey-{dt.date.today()}.json"))
    args = ap.parse_args()
    import pandas as pd

    current = (args.index / "CURRENT").read_text().strip()
    ids = pd.read_parquet(args.index / "versions" / current / "items.parquet")["item_id"].astype(str).tolist()
    rows = []
    for cands in [int(c) for c in args.candidates.split(",")]:
        body = Path(tempfile.mkstemp(suffix=".json")[1])
        body.write_text(json.dumps({"query": "red summer dress", "language": "en", "item_ids": ids[:cands]}))
        for cache in args.caches.split(","):
            server = Server(Path("."), args.student, args.index, cache, core=0, extra=["--int8"] if args.int8 else [])
            try:
                hey(server.url + "/v1/rerank", body, 10, 3, core=1)  # warm-up: sessions, shapes, the cache entry
                for rate in [int(r) for r in args.rates.split(",")]:
                    row = {"candidates": cands, "cache": "warm" if cache == "memory" else "off",
                           **hey(server.url + "/v1/rerank", body, rate, args.seconds, core=1)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    args.out.write_text(json.dumps({"machine": machine_info(), "date": str(dt.date.today()),
                                                    "seconds_per_setting": args.seconds, "generator": "hey", "int8": args.int8,
                                                    "cores": {"server": 0, "client": 1}, "rows": rows}, indent=2))
            finally:
                server.stop()


if __name__ == "__main__":
    main()
