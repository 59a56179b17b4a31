"""Benchmark the shared CPU inference path (me5-small): throughput, latency, bf16 accuracy cost, matmul efficiency.

    .venv/bin/python bench/encode.py [--quick] [--out bench/results/encode-YYYY-MM-DD.json]

Measures, in one run on this machine: (1) a calibration bf16 and fp32 2048^3 matmul in GFLOP/s; (2) encoding
throughput (tokens/s, texts/s) for item-length (~128 tokens) and query-length (~8 tokens) texts, fp32 and bf16,
batch sizes 1 and 64; (3) the fraction of the calibrated matmul rate achieved, counting 2 x non-embedding
parameters FLOPs per token; (4) the single-query p50/p95 latency; (5) the embedding cosine fp32 vs bf16; (6) an
end-to-end stream of item texts of varied length (batch 64), cold (a fresh Encoder: the jit backend's per-shape
trace/compile warm-up included) and warm (the same stream again). Each precision runs on the backend ``Encoder``
picks by default and, where that is not eager, on the eager backend too, for comparison.
Writes JSON with machine info and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SEARCHREL_PROGRESS", "0")

WORDS = ("modern wooden dining table vintage leather bag handmade ceramic vase minimalist wall art boho living room "
         "rustic farmhouse kitchen decor summer dress linen shirt running shoes garden ideas chocolate cake recipe "
         "easy healthy breakfast bowl robe d'été rouge table en bois cuisine rustique Sommerkleid Holztisch "
         "vestido de verano mesa de madera 夏のワンピース 木製テーブル 北欧インテリア 夏季连衣裙 木制餐桌 客厅装饰 "
         "летнее платье деревянный стол").split()


def machine_info() -> dict:
    import torch
    cpu = platform.processor()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from searchrel.models.encode import cpu_has_bf16, default_threads
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "usable_cpus": default_threads(),
            "torch_threads": torch.get_num_threads(), "cpu_bf16": cpu_has_bf16(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "load_average_at_start": os.getloadavg()}


def calibrate(n: int = 2048, repeats: int = 7, dtypes: tuple[str, ...] = ("bf16", "fp32"),
              threads: int | None = None) -> dict:
    """GFLOP/s of an n^3 matmul per dtype (median of ``repeats``), on ``threads`` torch threads (default: as set)."""
    import torch
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    out = {}
    try:
        for name in dtypes:
            dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[name]
            a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
            for _ in range(2):
                a @ b
            ts = []
            for _ in range(repeats):
                t = time.perf_counter()
                a @ b
                ts.append(time.perf_counter() - t)
            out[name] = 2 * n**3 / float(np.median(ts)) / 1e9
    finally:
        torch.set_num_threads(before)
    return out


def make_texts(n: int, words: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=words)) for _ in range(n)]


def token_count(enc, texts: list[str], kind: str, max_length: int) -> int:
    prefix = enc.backbone.query_prefix if kind == "query" else enc.backbone.passage_prefix
    enc._set_truncation(max_length)
    return sum(len(e.ids) for e in enc.tokenizer.encode_batch([prefix + t for t in texts]))


def make_varied_texts(n: int, seed: int) -> list[str]:
    """Item-like texts from 3 to 140 words (about 6 to 128+ tokens): every length bucket gets visited."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(3, 140))) for _ in range(n)]


def max_rss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(quick: bool) -> dict:
    import torch

    from searchrel.models import load_encoder, resolve_model
    from searchrel.models.encode import Encoder, resolve_backend

    info = machine_info()
    path = resolve_model("me5-small")
    calib = calibrate()
    defaults = {p: resolve_backend("auto", p) for p in ("fp32", "bf16")}
    configs = [(p, b) for p in ("fp32", "bf16") for b in dict.fromkeys(("eager", defaults[p]))]
    encoders = {(p, b): load_encoder("me5-small", precision=p, backend=b) for p, b in configs}
    model = encoders[("fp32", "eager")].model
    non_emb = sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)
    flop_per_token = 2 * non_emb

    scale = 0.25 if quick else 1.0
    shapes = {  # name -> (texts, kind, max_length)
        "item (128 tok)": (make_texts(int(256 * scale), 120, 1), "passage", 128),
        "query (~8 tok)": (make_texts(int(512 * scale), 3, 2), "query", 128),
    }
    rows = []
    for shape, (texts, kind, max_len) in shapes.items():
        for (prec, backend), enc in encoders.items():
            for bs in (1, 64):
                sample = texts if bs == 64 else texts[:max(8, int((32 if kind == "passage" else 200) * scale))]
                # warm; the jit backend profiles then compiles each new shape: steady state here, warm-up in stream
                for warm in ([sample, sample] if backend == "jit" else [sample[:bs * 2]]):
                    enc.encode(warm, kind=kind, batch_size=bs, max_length=max_len, progress=False)
                lat = []
                t0 = time.perf_counter()
                if bs == 1:
                    for t in sample:
                        t1 = time.perf_counter()
                        enc.encode([t], kind=kind, batch_size=1, max_length=max_len, progress=False)
                        lat.append(time.perf_counter() - t1)
                else:
                    enc.encode(sample, kind=kind, batch_size=bs, max_length=max_len, progress=False)
                wall = time.perf_counter() - t0
                tokens = token_count(enc, sample, kind, max_len)
                gflops = tokens * flop_per_token / wall / 1e9
                rows.append({
                    "shape": shape, "precision": prec, "backend": backend, "default": backend == defaults[prec],
                    "batch_size": bs, "texts": len(sample),
                    "mean_tokens": tokens / len(sample), "tokens_per_s": tokens / wall,
                    "texts_per_s": len(sample) / wall, "model_gflop_per_s": gflops,
                    "fraction_of_calibrated": gflops / calib[prec],
                    "p50_ms": 1000 * float(np.median(lat)) if lat else None,
                    "p95_ms": 1000 * float(np.percentile(lat, 95)) if lat else None,
                })
                print(f"  {shape:15s} {prec} {backend:5s} bs={bs:<3d} {tokens / wall:9.0f} tok/s  "
                      f"{100 * gflops / calib[prec]:5.1f}% of matmul", file=sys.stderr)

    # end to end on a stream of varied lengths: cold (fresh Encoder, warm-up included), then the same stream warm
    stream = make_varied_texts(int(2000 * scale), 3)
    stream_tokens = token_count(encoders[("fp32", "eager")], stream, "passage", 128)
    for backend in dict.fromkeys(("eager", defaults["bf16"])):
        enc = Encoder(path, encoders[("bf16", backend)].backbone, precision="bf16", backend=backend)
        for phase in ("cold", "warm"):
            t0 = time.perf_counter()
            enc.encode(stream, kind="passage", batch_size=64, max_length=128, progress=False)
            wall = time.perf_counter() - t0
            gflops = stream_tokens * flop_per_token / wall / 1e9
            rows.append({
                "shape": f"item stream ({phase})", "precision": "bf16", "backend": backend,
                "default": backend == defaults["bf16"], "batch_size": 64, "texts": len(stream),
                "mean_tokens": stream_tokens / len(stream), "tokens_per_s": stream_tokens / wall,
                "texts_per_s": len(stream) / wall, "model_gflop_per_s": gflops,
                "fraction_of_calibrated": gflops / calib["bf16"], "p50_ms": None, "p95_ms": None,
                "wall_s": wall, "compiled_shapes": len(enc.shapes),
            })
            print(f"  item stream ({phase}) bf16 {backend:5s} {stream_tokens / wall:9.0f} tok/s  {wall:.1f} s  "
                  f"{len(enc.shapes)} shapes", file=sys.stderr)
        del enc

    # accuracy cost of bf16: cosine between fp32 and bf16 embeddings of the same texts, per bf16 backend
    acc = {}
    for shape, (texts, kind, max_len) in shapes.items():
        a = encoders[("fp32", "eager")].encode(texts[:128], kind=kind, max_length=max_len, progress=False)
        for (prec, backend), enc in encoders.items():
            if prec == "bf16":
                b = enc.encode(texts[:128], kind=kind, max_length=max_len, progress=False)
                cos = np.sum(a * b, axis=1)
                acc[f"{shape}, {backend}"] = {"min": float(cos.min()), "mean": float(cos.mean())}

    def pick(shape, bs):
        return next(r for r in rows if r["shape"] == shape and r["precision"] == "bf16" and r["default"]
                    and r["batch_size"] == bs)
    targets = {"item_bf16_fraction_of_matmul": 0.5, "query_p50_ms": 10.0}
    achieved = {"item_bf16_fraction_of_matmul": pick("item (128 tok)", 64)["fraction_of_calibrated"],
                "query_p50_ms": pick("query (~8 tok)", 1)["p50_ms"]}
    met = {"item_bf16_fraction_of_matmul": achieved["item_bf16_fraction_of_matmul"] >= 0.5,
           "query_p50_ms": achieved["query_p50_ms"] <= 10.0}

    return {"date": dt.date.today().isoformat(), "machine": info, "model": "me5-small",
            "non_embedding_params": non_emb, "flop_per_token": flop_per_token,
            "calibration_gflop_per_s": calib, "default_backend": defaults, "results": rows,
            "bf16_vs_fp32_cosine": acc, "load_average_at_end": os.getloadavg(),
            "torch_threads": torch.get_num_threads(), "max_rss_mb": max_rss_mb(),
            "targets": targets, "achieved": achieved, "targets_met": met}


def markdown(res: dict) -> str:
    c = res["calibration_gflop_per_s"]
    lines = [f"me5-small on {res['machine']['cpu']} ({res['machine']['usable_cpus']} CPUs, torch "
             f"{res['machine']['torch']}); calibrated 2048³ matmul: bf16 {c['bf16']:.0f} GFLOP/s, "
             f"fp32 {c['fp32']:.0f} GFLOP/s; load average at start {res['machine']['load_average_at_start'][0]:.1f}.",
             "",
             f"Default backend: {', '.join(f'{k} {v}' for k, v in res['default_backend'].items())} (marked *).",
             "",
             "| texts | precision | backend | batch | tokens/s | texts/s | model GFLOP/s | % of matmul | p50 ms "
             "| p95 ms |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["results"]:
        p50 = f"{r['p50_ms']:.1f}" if r["p50_ms"] is not None else "–"
        p95 = f"{r['p95_ms']:.1f}" if r["p95_ms"] is not None else "–"
        backend = r["backend"] + ("*" if r["default"] else "")
        lines.append(f"| {r['shape']} | {r['precision']} | {backend} | {r['batch_size']} | "
                     f"{r['tokens_per_s']:,.0f} | {r['texts_per_s']:,.1f} | {r['model_gflop_per_s']:.0f} | "
                     f"{100 * r['fraction_of_calibrated']:.0f}% | {p50} | {p95} |")
    acc = "; ".join(f"{k}: min {v['min']:.5f}, mean {v['mean']:.5f}" for k, v in res["bf16_vs_fp32_cosine"].items())
    streams = "; ".join(f"{r['backend']} {r['shape'].split('(')[1][:-1]}: {r['wall_s']:.1f} s, "
                        f"{r['compiled_shapes']} compiled shapes" for r in res["results"] if "wall_s" in r)
    a, t, m = res["achieved"], res["targets"], res["targets_met"]
    lines += ["", f"bf16 vs fp32 embedding cosine — {acc}.",
              f"Item stream ({res['results'][-1]['texts']} texts of 3–140 words, mean "
              f"{res['results'][-1]['mean_tokens']:.0f} tokens, batch 64) — {streams}. "
              f"Max RSS {res['max_rss_mb']:.0f} MB; load average at end {res['load_average_at_end'][0]:.1f}.",
              f"Targets (bf16, default backend): item batch 64 at {100 * a['item_bf16_fraction_of_matmul']:.0f}% of "
              f"matmul (target ≥ {100 * t['item_bf16_fraction_of_matmul']:.0f}%: "
              f"{'met' if m['item_bf16_fraction_of_matmul'] else 'not met'}); single query p50 "
              f"{a['query_p50_ms']:.1f} ms (target ≤ {t['query_p50_ms']:.0f} ms: "
              f"{'met' if m['query_p50_ms'] else 'not met'})."]
    return "\n".join(lines)


def write_result(res: dict, name: str, out: Path | None, summary: str) -> Path:
    """Write a benchmark's JSON (default: bench/results/<name>-<date>.json), print its Markdown summary."""
    out = out or Path(__file__).parent / "results" / f"{name}-{res['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(summary)
    print(f"\nwrote {out}", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="a quarter of the texts (smoke test)")
    args = ap.parse_args()
    res = run(args.quick)
    write_result(res, "encode", args.out, markdown(res))


if __name__ == "__main__":
    main()
