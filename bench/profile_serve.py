"""Where a re-ranking request spends its time: py-spy samples the server under steady load.

    .venv/bin/python bench/profile_serve.py [--student DIR --index DIR --data DATASET] [--rate 100] [--seconds 20]

Starts `searchrel serve` pinned to one core, replays the synthetic log's searches (400 candidates, warm cache) at
--rate from another core, and records the server with py-spy (`--idle` off: CPU time only). Writes
bench/results/profile-serve-DATE.json (the functions with the most own samples and the most samples including
callees, as a flame graph would show them) and the raw samples (profile-serve-DATE.raw, folded stacks).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from encode import machine_info  # noqa: E402
from serve import Server, drive, prepare, run, setup_arguments, stream  # noqa: E402


def top(raw: Path, n: int = 15) -> tuple[list, list]:
    own, total, samples = collections.Counter(), collections.Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        k = int(count)
        samples += k
        own[frames[-1]] += k
        for f in set(frames):
            total[f] += k
    fmt = lambda c: [{"frame": f, "share": round(v / samples, 3)} for f, v in c.most_common(n)]  # noqa: E731
    return fmt(own), fmt(total)


def main() -> None:
    ap = setup_arguments(argparse.ArgumentParser())
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--candidates", type=int, default=400)
    ap.add_argument("--out", type=Path, default=Path(f"bench/results/profile-serve-{dt.date.today()}"))
    args = ap.parse_args()
    os.sched_setaffinity(0, {1})
    args.work.mkdir(parents=True, exist_ok=True)
    data, student, index = prepare(args.work, args)
    reqs = stream(data, args.candidates, 2000 + int(args.rate * args.seconds))
    server = Server(data, student, index, "memory", core=0)
    try:
        run(drive(server.url, reqs[:2000], 300.0))  # warm the cache and every code path
        raw = args.out.with_suffix(".raw")
        spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(server.proc.pid),
                                "-d", str(int(args.seconds)), "-f", "raw", "-o", str(raw), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lat, errors, wall = run(drive(server.url, reqs[2000:], args.rate))
        spy.wait(60)
        own, total = top(raw)
        lat_ms = sorted(1000 * x for x in lat)
        result = {"machine": machine_info(), "date": str(dt.date.today()), "rate_rps": args.rate,
                  "candidates": args.candidates, "seconds": args.seconds, "cores": {"server": 0, "client": 1},
                  "p50_ms": lat_ms[len(lat_ms) // 2] if lat_ms else None,
                  "p99_ms": lat_ms[int(0.99 * (len(lat_ms) - 1))] if lat_ms else None, "errors": errors,
                  "top_own": own, "top_including_callees": total}
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
