"""Benchmark: teacher vs student cost per (query, candidate) pair, measured in one run on this machine.

    .venv/bin/python bench/student.py [--candidates 400] [--teacher DIR] [--student DIR] [--data DATASET]

The teacher scores each pair with a full cross-encoder forward (query and item text together). The student
scores a request the way the service does: item sides (tower embeddings + feature state) precomputed offline,
the query side cached after its first request, so a request costs the pair features (BM25 from the stored term
weights, zero-shot cosine) and the small scorer. Reports pairs/s of each and the ratio; also the student's cost
with a cold query (its query tower and zero-shot query embedding computed in the request).
Without --teacher/--student, untrained me5-small models of the default configs are used (speed does not
depend on the weights). Writes bench/results/student-DATE.json with the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SEARCHREL_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).parent))

from encode import machine_info  # noqa: E402


def _timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", type=int, default=400)
    ap.add_argument("--teacher-pairs", type=int, default=512)
    ap.add_argument("--teacher", type=Path)
    ap.add_argument("--student", type=Path)
    ap.add_argument("--data", type=Path, help="dataset for item and query texts (default: a synthetic world)")
    ap.add_argument("--out", type=Path, default=Path(f"bench/results/student-{dt.date.today()}.json"))
    args = ap.parse_args()

    from searchrel.annotate.text import TextConfig, build_item_texts
    from searchrel.data.dataset import load_dataset
    from searchrel.data.synth import SynthConfig, synthesize
    from searchrel.distill.label import TeacherLabeler
    from searchrel.student.config import StudentConfig
    from searchrel.student.model import load_student, new_student
    from searchrel.teacher.config import TeacherConfig
    from searchrel.teacher.model import new_teacher

    ds = load_dataset(args.data) if args.data else synthesize(SynthConfig())
    text = TextConfig.default_for(ds.items)
    teacher_dir = args.teacher
    if teacher_dir is None:
        import tempfile

        teacher_dir = Path(tempfile.mkdtemp()) / "teacher"
        new_teacher(TeacherConfig(text=text))[0].save(teacher_dir, new_teacher(TeacherConfig(text=text))[1])
    labeler = TeacherLabeler(str(teacher_dir))  # the teacher's fastest path: what labelling runs
    teacher = labeler.model
    student = load_student(args.student) if args.student else new_student(StudentConfig(text=text))
    item_texts = build_item_texts(ds.items, student.config.text)
    rng = np.random.default_rng(0)
    queries = ds.queries["text"].tolist()

    # teacher: cross-encoder over (query, item) pairs on the labelling path (bf16 jit where the CPU has it)
    n = args.teacher_pairs
    q_texts = [queries[i] for i in rng.integers(0, len(queries), n)]
    t_items = build_item_texts(ds.items, teacher.config.text)
    i_texts = [t_items.iloc[i] for i in rng.integers(0, len(t_items), n)]
    labeler.probs(q_texts, i_texts)  # warm-up: compiles the jit shapes these pairs need
    t_teacher = min(_timed(lambda: labeler.probs(q_texts, i_texts), 2))
    teacher_pps = n / t_teacher

    # student: offline item side for the whole catalogue, then requests of `candidates` items
    t0 = time.perf_counter()
    for f in student.features:
        f.fit(item_texts.tolist())
    items = student.side(item_texts.tolist(), "item")
    offline_s = time.perf_counter() - t0
    k = args.candidates
    request_q = [queries[i] for i in rng.integers(0, len(queries), 50)]
    cands = [rng.choice(len(item_texts), k, replace=False) for _ in request_q]
    cached = {q: student.side([q], "query") for q in request_q}  # what the query cache holds

    def warm_request(j: int) -> None:
        student.predict(cached[request_q[j]], np.zeros(k, np.int64), items, cands[j])

    def cold_request(j: int) -> None:
        student.predict(student.side([request_q[j]], "query"), np.zeros(k, np.int64), items, cands[j])

    for j in range(5):
        warm_request(j)
        cold_request(j)
    warm = [min(_timed(lambda j=j: warm_request(j), 3)) for j in range(len(request_q))]
    cold = [_timed(lambda j=j: cold_request(j), 1)[0] for j in range(len(request_q))]
    warm_pps = k / statistics.median(warm)
    cold_pps = k / statistics.median(cold)
    result = {
        "machine": machine_info(), "date": str(dt.date.today()),
        "teacher": {"backbone": teacher.config.backbone, "path": "fast" if labeler.fast is not None else "eager", "pairs": n, "seconds": round(t_teacher, 3),
                    "pairs_per_s": round(teacher_pps, 1)},
        "student": {"backbone": student.config.backbone, "layers": student.config.layers, "dim": student.config.dim,
                    "features": student.config.features, "candidates_per_request": k,
                    "catalogue_items": len(item_texts), "offline_item_side_s": round(offline_s, 1),
                    "warm_query_request_ms_p50": round(1000 * statistics.median(warm), 3),
                    "cold_query_request_ms_p50": round(1000 * statistics.median(cold), 3),
                    "pairs_per_s_cached_query": round(warm_pps, 1), "pairs_per_s_cold_query": round(cold_pps, 1)},
        "speedup_per_pair_cached_query": round(warm_pps / teacher_pps, 1),
        "speedup_per_pair_cold_query": round(cold_pps / teacher_pps, 1),
        "target": "student >= 1000x faster per pair than the teacher (cached query embedding)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
