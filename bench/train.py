"""Benchmark teacher training on the CPU: tokens/s and the share of the calibrated bf16 matmul rate it reaches.

    .venv/bin/python bench/train.py [--steps 12] [--out bench/results/train-YYYY-MM-DD.json]
    .venv/bin/python bench/train.py --backbone embeddinggemma-300m --settings frozen,frozen-half --steps 4

One run on this machine measures, for me5-small cross-encoder training steps (batch 16, ~128-token pairs,
bf16 autocast, AdamW): (a) the default — word embeddings frozen; (b) the whole model trained, i.e. a dense
AdamW update of the 96M-parameter embedding table on every step; (c) the whole model with a sparse embedding
gradient (SparseAdam updates only the rows a batch uses); (d) frozen embeddings and the lowest 6 layers frozen. FLOPs are counted as 6 × trainable non-embedding parameters per token (forward, and backward for
activations and weights); for (c) that formula leaves out the frozen layers' forward pass, so its GFLOP/s
understates the work done — compare its tokens/s. Writes JSON with the machine it ran on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SEARCHREL_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).parent))

from encode import calibrate, machine_info, make_texts  # noqa: E402  (the same calibration as bench/encode.py)

SETTINGS = {  # short name -> (row label, TeacherConfig options)
    "frozen": ("frozen embeddings (default)", {"freeze_embeddings": True, "freeze_layers": 0}),
    "dense": ("all parameters, dense embedding update", {"freeze_embeddings": False, "freeze_layers": 0}),
    "sparse": ("all parameters, sparse embedding update",
               {"freeze_embeddings": False, "freeze_layers": 0, "sparse": True}),
    "frozen-half": ("frozen embeddings + lowest half of the layers", {"freeze_embeddings": True, "freeze_layers": -1}),
}


def measure(setting: dict, steps: int, batch: int = 16, max_length: int = 128, backbone: str = "me5-small") -> dict:
    import torch

    from searchrel.models.pairs import collate, encode_pairs
    from searchrel.teacher.model import TeacherConfig, new_teacher

    torch.set_num_threads(os.cpu_count() or 1)
    setting = dict(setting)
    sparse = setting.pop("sparse", False)
    if setting.get("freeze_layers") == -1:  # half of the backbone's layers
        from transformers import AutoConfig

        from searchrel.models.registry import resolve_model

        setting["freeze_layers"] = AutoConfig.from_pretrained(resolve_model(backbone)).num_hidden_layers // 2
    model, tok = new_teacher(TeacherConfig(backbone=backbone, max_length=max_length, **setting))
    model.train()
    queries = make_texts(batch * (steps + 2), 3, seed=1)
    items = make_texts(batch * (steps + 2), 110, seed=2)
    ids = encode_pairs(tok, queries, items, max_length, query_prefix=model.config.query_prefix,
                       passage_prefix=model.config.passage_prefix)
    params = [p for p in model.parameters() if p.requires_grad]
    emb = model.backbone.get_input_embeddings()
    if sparse:  # only the rows a batch touches get gradients and Adam moments (SparseAdam)
        emb.sparse = True
        dense = [p for p in params if p is not emb.weight]
        optimizers = [torch.optim.AdamW(dense, lr=1e-5), torch.optim.SparseAdam([emb.weight], lr=1e-5)]
    else:
        optimizers = [torch.optim.AdamW(params, lr=1e-5)]
    target = torch.zeros(batch, dtype=torch.long)
    times, tokens = [], 0
    for s in range(steps + 2):  # the first two steps warm up allocators and kernels
        input_ids, mask = collate(ids[s * batch:(s + 1) * batch], tok.pad_token_id)
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids, mask)
        torch.nn.functional.cross_entropy(logits.float(), target).backward()
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        if s >= 2:
            times.append(time.perf_counter() - t)
            tokens += int(mask.sum())
    trainable = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "embeddings" not in n)
    tps = tokens / sum(times)
    return {"tokens_per_s": tps, "step_s_median": float(np.median(times)), "trainable_non_embedding_params": trainable,
            "trainable_params": sum(p.numel() for p in params), "gflops": 6 * trainable * tps / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--backbone", default="me5-small", help="registered name or path (e.g. embeddinggemma-300m)")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of: {', '.join(SETTINGS)}")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    tag = "" if args.backbone == "me5-small" else f"-{Path(args.backbone).name}"
    args.out = args.out or Path(__file__).parent / "results" / f"train{tag}-{dt.date.today()}.json"
    started = os.getloadavg()[0]
    calib = calibrate()
    rows = []
    for key in args.settings.split(","):
        name, setting = SETTINGS[key]
        r = measure(setting, args.steps, backbone=args.backbone)
        r.update(setting=name, pct_of_bf16_matmul=100 * r["gflops"] / calib["bf16"])
        rows.append(r)
        print(f"{name:42s} {r['tokens_per_s']:8.0f} tok/s  {r['step_s_median']:.2f} s/step  "
              f"{r['gflops']:6.0f} GFLOP/s  {r['pct_of_bf16_matmul']:4.1f}% of bf16 matmul", flush=True)
    res = {"machine": machine_info() | {"load_average_start": started, "load_average_end": os.getloadavg()[0]},
           "calibration_gflops": calib, "backbone": args.backbone, "batch": 16, "max_length": 128, "steps": args.steps, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print("\n| setting | tokens/s | s/step | trainable non-emb. params | GFLOP/s | % of bf16 matmul |\n|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['setting']} | {r['tokens_per_s']:,.0f} | {r['step_s_median']:.2f} | "
              f"{r['trainable_non_embedding_params'] / 1e6:.1f}M | {r['gflops']:.0f} | {r['pct_of_bf16_matmul']:.1f}% |")
    print(f"\ncalibrated matmul: bf16 {calib['bf16']:.0f}, fp32 {calib['fp32']:.0f} GFLOP/s; wrote {args.out}")


if __name__ == "__main__":
    main()
