"""The service under load from an independent generator: `hey` (Debian package), rate-limited, on its own core.

    .venv/bin/python bench/serve_hey.py --student DIR --index DIR [--seconds 30] [--rates 50,100,200]

For each of 100 / 400 candidates and cache memory (every request after the first a hit: one query repeated) /
off (every request a miss: both query-side models run), a server pinned to core 0 (taskset) is driven by
`hey -z SECONDS -q 10 -c RATE/10` pinned to core 1. Writes bench/results/serve-hey-DATE.json with hey's latency
percentiles, requests/s and status codes per setting. bench/serve.py replays the Zipf log instead, but its Python
client needs most of a core at 200 req/s: this is the cross-check.
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


def hey(url: str, body: Path, rate: int, seconds: int, core: int) -> dict:
    workers = max(1, rate // 10)
    out = subprocess.run(["taskset", "-c", str(core), "hey", "-z", f"{seconds}s", "-q", "10", "-c", str(workers),
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
    ap.add_argument("--out", type=Path, default=Path(f"bench/results/serve-hey-{dt.date.today()}.json"))
    args = ap.parse_args()
    import pandas as pd

    current = (args.index / "CURRENT").read_text().strip()
    ids = pd.read_parquet(args.index / "versions" / current / "items.parquet")["item_id"].astype(str).tolist()
    rows = []
    for cands in (100, 400):
        body = Path(tempfile.mkstemp(suffix=".json")[1])
        body.write_text(json.dumps({"query": "red summer dress", "language": "en", "item_ids": ids[:cands]}))
        for cache in ("memory", "off"):
            server = Server(Path("."), args.student, args.index, cache, core=0)
            try:
                hey(server.url + "/v1/rerank", body, 10, 3, core=1)  # warm-up: sessions, shapes, the cache entry
                for rate in [int(r) for r in args.rates.split(",")]:
                    row = {"candidates": cands, "cache": "warm" if cache == "memory" else "off",
                           **hey(server.url + "/v1/rerank", body, rate, args.seconds, core=1)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    args.out.write_text(json.dumps({"machine": machine_info(), "date": str(dt.date.today()),
                                                    "seconds_per_setting": args.seconds, "generator": "hey",
                                                    "cores": {"server": 0, "client": 1}, "rows": rows}, indent=2))
            finally:
                server.stop()


if __name__ == "__main__":
    main()
