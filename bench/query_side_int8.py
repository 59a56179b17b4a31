"""What an int8 query side costs in ranking: a student's NDCG@8 per language with its query side offline (PyTorch)
and served on ONNX Runtime in fp32 and several int8 recipes.

    .venv/bin/python bench/query_side_int8.py --student runs/cf-student --data data/cf [--split test]

The item side is the student's own (PyTorch), as the index holds it; only the query side changes: the query
tower and the ``zero_shot`` feature's model, each fp32 or int8 (every MatMul, or the zero-shot model with some
MatMuls kept fp32). Scores come from the serving scorer (``NumpyScorer``). Writes bench/results/
query-side-int8-DATE.json with the machine and prints a table; the recipe ``serve --int8`` uses is marked.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SEARCHREL_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).parent))

from encode import machine_info, write_result  # noqa: E402


def main() -> None:
    from searchrel.annotate.text import build_item_texts
    from searchrel.data.dataset import load_dataset
    from searchrel.eval.metrics import ndcg_at_k
    from searchrel.serve.onnx_tower import (
        ZERO_SHOT_FILE,
        QueryEmbedder,
        _session,
        ffn_output_matmuls,
        quantize_int8,
        zero_shot_query_encoder,
    )
    from searchrel.serve.scoring import NumpyScorer
    from searchrel.student.model import Side, load_student

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    ds, st = load_dataset(args.data), load_student(args.student)
    pairs = ds.pairs(args.split)
    used = pairs["item_id"].unique()
    items = st.side(build_item_texts(ds.items, st.config.text).loc[used].tolist(), "item")
    queries = pairs["query"].unique().tolist()
    q_idx = pairs["query"].map({q: k for k, q in enumerate(queries)}).to_numpy()
    i_idx = pairs["item_id"].map({i: k for k, i in enumerate(used)}).to_numpy()
    scorer, grades = NumpyScorer(st), np.asarray(st.config.scale.grades, float)

    def ndcg(side) -> dict:
        scored = pairs.assign(score=scorer.predict(side, q_idx, items, i_idx) @ grades)
        out = {}
        for lang, g in [("all", scored), *scored.groupby("language")]:
            v = [x for _, q in g.groupby("query_id") if (x := ndcg_at_k(
                q["label"].to_numpy(), q["score"].to_numpy(), q["item_id"].to_numpy(), 8, ds.info.scale.min))
                 is not None]
            out[lang] = round(float(np.mean(v)), 4)
        return out

    def served(tower_int8: bool, zero_shot: Path | None) -> Side:
        emb = QueryEmbedder(st, args.student, onnx=True, int8=tower_int8)
        if zero_shot is not None:  # this zero-shot graph instead of the one the flag picks
            for name, enc in emb.onnx_features.items():
                enc = copy.copy(enc)
                enc.session = _session(zero_shot)
                emb.onnx_features[name] = enc
        tower, cached = emb.split(emb.encode(queries))
        return Side(tower, {f.name: cached[f.name] if f.query_cached else f.query_side(queries) for f in st.features})

    fp32 = args.student / ZERO_SHOT_FILE
    zero_shot_query_encoder(st.config.zero_shot_model, args.student)  # exported if missing
    rows = [{"query side": "offline (PyTorch)", **ndcg(st.side(queries, "query"))},
            {"query side": "ONNX fp32, both models (serve default)", **ndcg(served(False, None))},
            {"query side": "ONNX int8 tower, fp32 zero-shot", **ndcg(served(True, fp32))}]
    with tempfile.TemporaryDirectory() as tmp:
        layers = ffn_output_matmuls(fp32)
        last4 = [n for n in _matmuls(fp32) if any(f"layer.{k}/" in n for k in range(8, 12))]
        for label, exclude in (("ONNX int8, both, every MatMul", []),
                               ("ONNX int8, zero-shot without its last 4 layers quantized", last4),
                               ("ONNX int8, zero-shot FFN output projections fp32 (serve --int8)", layers)):
            path = quantize_int8(fp32, Path(tmp) / f"zs-{len(rows)}.onnx", exclude=exclude)
            rows.append({"query side": label, **ndcg(served(True, path))})
    res = {"date": dt.date.today().isoformat(), "machine": machine_info(), "student": str(args.student),
           "data": str(args.data), "split": args.split, "metric": "ndcg@8", "rows": rows}
    langs = [k for k in rows[0] if k != "query side"]
    lines = ["| query side | " + " | ".join(langs) + " |", "|---|" + "---:|" * len(langs)]
    lines += ["| " + r["query side"] + " | " + " | ".join(f"{r[k]:.4f}" for k in langs) + " |" for r in rows]
    write_result(res, "query-side-int8", args.out, "\n".join(lines))


def _matmuls(path: Path) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type == "MatMul"]


if __name__ == "__main__":
    main()
