"""Benchmark the item embedding index: a full build against an incremental refresh after 1% of the items changed.

    .venv/bin/python bench/index.py [--world /tmp/world] [--changed 30] [--out bench/results/index-YYYY-MM-DD.json]
    .venv/bin/python bench/index.py --world /tmp/world100k --changed 1000 --warm-only   # a large catalogue
    .venv/bin/python bench/index.py --world /tmp/world1m --items 1000000 --changed 10000 --warm-only \
        --workdir /tmp/bench-index-1m      # keep the index for bench/faiss_choice.py --index

The student is ``new_student(StudentConfig())`` — me5-small towers cut to 4 layers, dim 256, features text_match
(fitted on the catalogue) and zero_shot (the full 12-layer me5-small) — untrained, which costs the same to run as
a trained one. The catalogue is the synthetic world (``searchrel synth /tmp/world``: 3000 items; made here with
the same defaults when ``--world`` does not exist). ``--changed`` items (30 = 1%) get their title edited, a field
the student reads, so exactly those are re-embedded.

Measured twice, on the default (local) backend and precision (``--encode-backend eager`` runs the zero-shot encoder
without its jit, whose per-shape warm-up a small refresh pays in full):

* cold — each step in a fresh Python process, as a cron job or the CLI runs it: imports, dataset load, student and
  zero-shot encoder load (and its per-shape compile) included; full build, then refresh of the edited catalogue;
* warm — in this process after a first full build (the student and the zero-shot encoder are cached, the
  encoder's shapes compiled): refresh of the edited catalogue, then a full build of the edited catalogue (whose
  vectors the refresh must match).

Writes JSON with the machine it ran on (``machine_info`` of bench/encode.py) and prints a short table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SEARCHREL_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).parent))

from encode import machine_info, max_rss_mb, write_result  # noqa: E402  (the same machine record and output)

COLD = """
import json, sys, time
t0 = time.perf_counter()
from searchrel.data.dataset import load_dataset
from searchrel.index import {op}
t1 = time.perf_counter()
ds = load_dataset(sys.argv[2])
t2 = time.perf_counter()
v = {op}(sys.argv[1], ds, sys.argv[3])
t3 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "load_dataset_s": t2 - t1, "call_s": t3 - t2, "version": str(v)}}))
"""


def world(path: Path, items: int = 3000):
    from searchrel.data.dataset import load_dataset
    from searchrel.data.synth import SynthConfig, synthesize

    if not (path / "dataset.json").is_file():  # what `searchrel synth PATH --items N` writes (seed 0)
        synthesize(SynthConfig(n_items=items)).save(path)
    ds = load_dataset(path)
    if len(ds.items) != items:
        raise SystemExit(f"{path} holds {len(ds.items):,} items, not --items {items:,}: pass another --world")
    return ds


def edit_titles(ds, n: int, seed: int = 0):
    """A copy of ``ds`` with ``n`` random items' titles edited."""
    from searchrel.data.dataset import Dataset

    items = ds.items.copy()
    rows = np.random.default_rng(seed).choice(len(items), n, replace=False)
    items.loc[items.index[rows], "title"] = "edited: " + items["title"].iloc[rows].fillna("")
    return Dataset(ds.info, items, ds.queries, ds.judgments, ds.search_log, ds.splits), items["item_id"].iloc[rows]


def make_student(ds, out: Path) -> Path:
    from searchrel.annotate.text import build_item_texts
    from searchrel.student.config import StudentConfig
    from searchrel.student.model import new_student

    student = new_student(StudentConfig())
    texts = build_item_texts(ds.items, student.config.text).tolist()
    for f in student.features:
        f.fit(texts)
    return student.save(out)


def cold(op: str, student: Path, dataset: Path, out: Path) -> dict:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", COLD.format(op=op), str(student), str(dataset), str(out)],
                       capture_output=True, text=True, env={**os.environ, "SEARCHREL_PROGRESS": "0"})
    wall = time.perf_counter() - t
    if r.returncode:
        raise RuntimeError(f"{op} failed:\n{r.stderr[-3000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    return {"process_wall_s": wall, **res, "manifest": json.loads((Path(res["version"]) / "manifest.json").read_text())}


def warm(fn, *args, **options) -> dict:
    t = time.perf_counter()
    v = fn(*args, **options)
    wall = time.perf_counter() - t
    return {"call_s": wall, "version": str(v), "manifest": json.loads((Path(v) / "manifest.json").read_text())}


def run_warm_only(world_path: Path, items: int, n_changed: int, workdir: Path, backend: str,
                  ray_actors: int = 1) -> dict:
    """One full build and one refresh, in this process: for catalogues where three full builds take too long."""
    from searchrel.index import build_index, refresh_index

    info = machine_info()
    ds = world(world_path, items)
    student = make_student(ds, workdir / "student")
    edited, _ = edit_titles(ds, n_changed)
    print(f"warm only: full build of {len(ds.items):,} items, then refresh after {n_changed:,} edits", file=sys.stderr)
    ray = {"ray_actors": ray_actors} if backend == "ray" else {}  # one CPU each (IndexConfig.ray_cpus_per_actor)
    full = warm(build_index, student, ds, workdir / "warm", None, backend=backend, **ray)
    rss_build = max_rss_mb()
    refresh = warm(refresh_index, student, edited, workdir / "warm", None, backend=backend, **ray)
    counts = refresh["manifest"]["counts"]
    assert counts["embedded"] == n_changed and counts["changed"] == n_changed, counts
    rows = [{"step": name, "seconds": r["call_s"], "process_wall_s": None, "embedded": r["manifest"]["counts"]["embedded"],
             "copied": r["manifest"]["counts"]["copied"], "timings_s": r["manifest"]["timings_s"]}
            for name, r in (("full build (first in process)", full), ("refresh", refresh))]
    return {"date": dt.date.today().isoformat(), "machine": info, "mode": "warm-only", "n_items": len(ds.items),
            "n_changed": n_changed, "changed_share": n_changed / len(ds.items),
            "student": "new_student(StudentConfig()): me5-small 4 layers, dim 256, text_match + zero_shot (me5-small)",
            "backend": backend, **ray, "faiss": full["manifest"]["faiss"], "refresh_faiss": refresh["manifest"]["faiss"],
            "rows": rows,
            "refresh_share_of_full_build": refresh["call_s"] / full["call_s"],
            "items_per_s_full_build": len(ds.items) / full["call_s"],
            "max_rss_mb_after_build": rss_build, "max_rss_mb": max_rss_mb(),
            "load_average_at_end": os.getloadavg()}


def run(world_path: Path, items: int, n_changed: int, workdir: Path) -> dict:
    from searchrel.index import build_index, load_index, refresh_index

    info = machine_info()
    ds = world(world_path, items)
    student = make_student(ds, workdir / "student")
    edited, _ = edit_titles(ds, n_changed)
    edited_path = workdir / "edited"
    edited.save(edited_path)

    print("cold: full build, then refresh, each in a fresh process", file=sys.stderr)
    cold_full = cold("build_index", student, world_path, workdir / "cold")
    cold_refresh = cold("refresh_index", student, edited_path, workdir / "cold")
    print("warm: first full build (warm-up), refresh, full build of the edited catalogue", file=sys.stderr)
    first = warm(build_index, student, ds, workdir / "warm")
    warm_refresh = warm(refresh_index, student, edited, workdir / "warm")
    warm_full = warm(build_index, student, edited, workdir / "warm-full")

    # the refresh must hold what a full build of the edited catalogue holds
    a, b = load_index(warm_refresh["version"]), load_index(warm_full["version"])
    assert list(a.item_ids) == list(b.item_ids)
    cos = np.sum(a.vectors * b.vectors, 1)
    counts = warm_refresh["manifest"]["counts"]
    assert counts["embedded"] == n_changed and counts["changed"] == n_changed, counts

    def row(name, r, key="call_s"):
        m = r["manifest"]
        return {"step": name, "seconds": r[key], "process_wall_s": r.get("process_wall_s"),
                "embedded": m["counts"]["embedded"], "copied": m["counts"]["copied"], "timings_s": m["timings_s"]}

    rows = [row("cold full build", cold_full), row("cold refresh", cold_refresh),
            row("warm-up full build (first in process)", first), row("warm refresh", warm_refresh),
            row("warm full build", warm_full)]
    return {
        "date": dt.date.today().isoformat(), "machine": info, "n_items": len(ds.items), "n_changed": n_changed,
        "changed_share": n_changed / len(ds.items),
        "student": "new_student(StudentConfig()): me5-small 4 layers, dim 256, text_match + zero_shot (me5-small)",
        "backend": "local", "encode_backend": os.environ.get("SEARCHREL_ENCODE_BACKEND", "auto") or "auto",
        "bf16": "auto" if warm_full["manifest"]["bf16"] is None else warm_full["manifest"]["bf16"],
        "faiss": warm_full["manifest"]["faiss"]["kind"],
        "rows": rows,
        "cold": {"full_build_s": cold_full["process_wall_s"], "refresh_s": cold_refresh["process_wall_s"],
                 "ratio": cold_full["process_wall_s"] / cold_refresh["process_wall_s"],
                 "full_build_call_s": cold_full["call_s"], "refresh_call_s": cold_refresh["call_s"],
                 "call_ratio": cold_full["call_s"] / cold_refresh["call_s"]},
        "warm": {"full_build_s": warm_full["call_s"], "refresh_s": warm_refresh["call_s"],
                 "ratio": warm_full["call_s"] / warm_refresh["call_s"]},
        "refresh_vs_full_build_vectors": {"min_cosine": float(cos.min()),
                                          "max_abs_diff": float(np.abs(a.vectors - b.vectors).max())},
        "load_average_at_end": os.getloadavg(), "max_rss_mb": max_rss_mb(),
    }


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [f"Item index on {m['cpu']} ({m['usable_cpus']} CPUs, native bf16 {m['cpu_bf16']}, precision "
             f"{res['bf16']}, zero-shot encoder backend {res['encode_backend']}, FAISS {res['faiss']}): "
             f"{res['n_items']:,} items, refresh after {res['n_changed']} titles edited "
             f"({100 * res['changed_share']:.0f}%); load average {m['load_average_at_start'][0]:.1f} at start, "
             f"{res['load_average_at_end'][0]:.1f} at end.", "",
             "| step | seconds | process wall s | embedded | copied | embed s | faiss s | write s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        t = r["timings_s"]
        pw = f"{r['process_wall_s']:.1f}" if r["process_wall_s"] is not None else "–"
        lines.append(f"| {r['step']} | {r['seconds']:.2f} | {pw} | {r['embedded']:,} | {r['copied']:,} | "
                     f"{t['embed_s']:.2f} | {t['faiss_s']:.3f} | {t['write_s']:.3f} |")
    c, w, v = res["cold"], res["warm"], res["refresh_vs_full_build_vectors"]
    lines += ["", f"Cold (fresh process each): full build {c['full_build_s']:.1f} s, refresh {c['refresh_s']:.1f} s, "
              f"ratio {c['ratio']:.1f}x (calls alone: {c['full_build_call_s']:.1f} s vs {c['refresh_call_s']:.1f} s, "
              f"{c['call_ratio']:.1f}x).",
              f"Warm (in process): full build {w['full_build_s']:.1f} s, refresh {w['refresh_s']:.2f} s, "
              f"ratio {w['ratio']:.1f}x.",
              f"Refreshed vs fully rebuilt vectors: min cosine {v['min_cosine']:.6f}, max |diff| "
              f"{v['max_abs_diff']:.2e}."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, default=Path("/tmp/world"), help="synthetic world (made if missing)")
    ap.add_argument("--items", type=int, default=3000, help="catalogue size (the world is made when missing)")
    ap.add_argument("--changed", type=int, default=30, help="items whose title is edited before the refresh")
    ap.add_argument("--backend", choices=("local", "ray"), default="local",
                    help="--warm-only: embed in this process or on Ray Data (a local cluster, or RAY_ADDRESS)")
    ap.add_argument("--ray-actors", type=int, default=os.cpu_count() or 1,
                    help="--backend ray: students in the actor pool, one CPU each (default: this machine's CPUs)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the student and indexes here (default: temp)")
    ap.add_argument("--encode-backend", choices=("auto", "eager", "jit"), default=None,
                    help="SEARCHREL_ENCODE_BACKEND for the zero-shot encoder (default: as the environment says)")
    ap.add_argument("--warm-only", action="store_true", help="one full build and one refresh in this process (no "
                    "cold processes, no rebuild to compare with): for large catalogues")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.encode_backend:
        os.environ["SEARCHREL_ENCODE_BACKEND"] = args.encode_backend  # read per call; the cold processes inherit it
    with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.warm_only:
            res = run_warm_only(args.world, args.items, args.changed, workdir, args.backend, args.ray_actors)
            text = (f"{res['n_items']:,} items ({res['faiss']['kind']}): full build {res['rows'][0]['seconds']:.1f} s "
                    f"({res['items_per_s_full_build']:.0f} items/s), refresh of {res['n_changed']:,} "
                    f"{res['rows'][1]['seconds']:.1f} s = {100 * res['refresh_share_of_full_build']:.1f}% of it; "
                    f"peak memory {res['max_rss_mb']:,.0f} MB")
        else:
            res = run(args.world, args.items, args.changed, workdir)
            text = markdown(res)
    write_result(res, "index", args.out, text)


if __name__ == "__main__":
    main()
