"""What a query-cache miss costs in the student's zero-shot feature: one short query encoded alone, per model.

    .venv/bin/python bench/query_miss.py [--models me5-small,embeddinggemma-300m] [--out bench/results/query-miss-DATE.json]

The same 48 queries (8 languages, each made unique so no cache answers) are encoded one at a time by each model's
default PyTorch path (``load_encoder``: bf16 where the CPU has it), after five warm-up queries; the embedding cache
is off. Reports the p50 and p95 in ms and each model's p50 as a ratio of the first model's (the bare times differ
between machines: compare the ratios), with the calibrated matmul rate and the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SEARCHREL_PROGRESS", "0")
os.environ["SEARCHREL_EMBED_CACHE"] = "0"  # every query is a miss
sys.path.insert(0, str(Path(__file__).parent))

from encode import calibrate, machine_info, write_result  # noqa: E402

QUERIES = ["red wooden table", "zapatillas de running mujer", "kabellose kopfhörer mit geräuschunterdrückung",
           "usb c charger 65w", "vintage leather handbag", "lampe de chevet en bois", "giacca invernale bambino",
           "スマホケース 手帳型"]


def run(models: list[str]) -> dict:
    from searchrel.models.encode import load_encoder

    res = {"date": dt.date.today().isoformat(), "machine": machine_info(), "calibration": calibrate(), "models": {}}
    for name in models:
        enc = load_encoder(name)
        for q in QUERIES[:5]:
            enc.encode([q], kind="query", progress=False)
        times = []
        for i in range(6):
            for q in QUERIES:
                t = time.perf_counter()
                enc.encode([f"{q} {i}"], kind="query", progress=False)
                times.append(1000 * (time.perf_counter() - t))
        res["models"][name] = {"p50_ms": round(float(np.median(times)), 2),
                               "p95_ms": round(float(np.percentile(times, 95)), 2), "n": len(times)}
    first = res["models"][models[0]]["p50_ms"]
    for r in res["models"].values():
        r["p50_ratio"] = round(r["p50_ms"] / first, 1)
    return res


def markdown(res: dict) -> str:
    rows = [f"| {m} | {r['p50_ms']} | {r['p95_ms']} | {r['p50_ratio']}x |" for m, r in res["models"].items()]
    return "\n".join(["| model | p50 ms | p95 ms | p50 ratio |", "|---|---:|---:|---:|", *rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="me5-small,embeddinggemma-300m")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    res = run([m for m in args.models.split(",") if m])
    write_result(res, "query-miss", args.out, markdown(res))


if __name__ == "__main__":
    main()
