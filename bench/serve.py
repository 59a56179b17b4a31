"""Load benchmark of the service: a Zipf query stream replayed on loopback at fixed request rates.

    .venv/bin/python bench/serve.py [--student DIR --index DIR --data DATASET] [--seconds 15] [--rates 50,100,200]

Without --student/--index, builds them on the default synthetic world (3,000 items): an untrained me5-small
student of the default config (serving cost does not depend on the weights) and its item index.
The stream is the synthetic search log's searches in time order (its queries follow a Zipf law: the head of
queries makes most searches). Each request re-ranks 100 or 400 candidates: the items the log shows for that
search, topped up with random catalogue items. For each (candidates, cache) setting a server is started
(`searchrel serve`, cache "memory" or "off"), warmed with the stream's first requests (for the warm cache),
then driven open-loop at each rate for --seconds: requests are sent on schedule whatever the replies do, and
latency runs from the scheduled send time, so queueing shows. The server is pinned to one core (taskset) and this
client to another (--server-core, --client-core), so the client's work does not count against the server. The
client speaks HTTP/1.1 over asyncio streams itself (keep-alive connections, bodies serialised before the clock
starts, uvloop when installed): httpx's client saturated its core at ~200 req/s, this one is far from it.
Writes bench/results/serve-DATE.json: one row per setting with candidates, rate_rps, cache, p50_ms, p99_ms,
throughput_rps, hit_rate, errors; plus what a cache miss costs: the whole query side (the query tower and the
zero-shot model) for one new query on the server's core, fp32 and int8. `--int8` serves with `--int8`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SEARCHREL_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).parent))

from encode import calibrate, machine_info  # noqa: E402


def calibrate_core() -> float:
    """fp32 GFLOP/s of one thread on this process's core (a 1024^3 matmul, median of 15): the same-run yardstick
    that makes latencies from runs on different (or differently loaded) machines comparable."""
    return round(calibrate(1024, 15, ("fp32",), threads=1)["fp32"], 1)


ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(work: Path, args) -> tuple[Path, Path, Path]:
    from searchrel.annotate.text import build_item_texts
    from searchrel.data.synth import SynthConfig, synthesize
    from searchrel.index import build_index
    from searchrel.student.config import StudentConfig
    from searchrel.student.model import new_student

    data = args.data or work / "world"
    if not (Path(data) / "info.json").exists() and not args.data:
        synthesize(SynthConfig()).save(data)
    student_dir = args.student or work / "student"
    if not args.student and not (Path(student_dir) / "student.json").exists():
        from searchrel.data.dataset import load_dataset

        ds = load_dataset(data)
        student = new_student(StudentConfig())
        for f in student.features:
            f.fit(build_item_texts(ds.items, student.config.text).tolist())
        student.save(student_dir)
    index = args.index or work / "index"
    if not args.index and not (Path(index) / "CURRENT").exists():
        build_index(student_dir, data, index)
    return Path(data), Path(student_dir), Path(index)


def stream(data: Path, candidates: int, n: int, seed: int = 0) -> list[dict]:
    """Requests in log order: (query, language, candidate ids) of each search, topped up with random items."""
    from searchrel.data.dataset import load_dataset

    ds = load_dataset(data)
    log = ds.search_log[ds.search_log["event"] == "impression"]
    searches = log.groupby(["ts", "user_id", "query_id"], sort=True)["item_id"].agg(list).reset_index()
    queries = ds.queries.set_index("query_id")
    all_items = ds.items["item_id"].to_numpy()
    rng = np.random.default_rng(seed)
    out = []
    rows = [s for _, s in searches.iterrows()]
    for k in range(n):  # the log's searches in order, again from the start when a long run needs more
        s = rows[k % len(rows)]
        shown = list(dict.fromkeys(s["item_id"]))[:candidates]
        extra = rng.choice(all_items, candidates, replace=False)
        ids = (shown + [i for i in extra if i not in set(shown)])[:candidates]
        q = queries.loc[s["query_id"]]
        out.append({"query": q["text"], "language": q["language"], "item_ids": ids})
    return out


class Server:
    def __init__(self, data: Path, student: Path, index: Path, cache: str, core: int | None = None,
                 extra: list[str] | None = None):
        self.port = _free_port()
        pin = ["taskset", "-c", str(core)] if core is not None else []
        cmd = [*pin, sys.executable, "-m", "searchrel.cli", "serve", "--index", str(index), "--student", str(student),
               "--port", str(self.port), "--cache", cache, "--max-queue", "256", *(extra or [])]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env={**os.environ, "SEARCHREL_PROGRESS": "0"})
        self.url = f"http://127.0.0.1:{self.port}"
        import httpx

        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.5)
        raise RuntimeError("server did not come up in 300 s")

    def cache_counts(self) -> tuple[float, float]:
        import httpx

        text = httpx.get(self.url + "/metrics").text
        val = {ln.split()[0]: float(ln.split()[1]) for ln in text.splitlines() if ln.startswith("searchrel_query_cache")}
        return val.get("searchrel_query_cache_hits", 0.0), val.get("searchrel_query_cache_misses", 0.0)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class _Conn:
    """One keep-alive HTTP/1.1 connection, speaking just enough of the protocol for this benchmark: a POST with a
    Content-Length body, and a reply with a Content-Length body (what uvicorn sends). httpx's client needed most
    of a core at 200 req/s; this one needs a few per cent of one, so the client never limits what is measured."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def post(self, head: bytes, body: bytes) -> int:
        self.writer.write(head + body)
        status_line, *headers = (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        length = 0
        for line in headers:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                raise RuntimeError("chunked replies are not read by this client")
        await self.reader.readexactly(length)
        return int(status_line.split()[1])


async def drive(url: str, requests: list[dict], rate: float) -> tuple[list[float], int, float]:
    """Open loop: request i is sent at t0 + i / rate on an idle keep-alive connection (a new one when none is
    idle); latency counts from that scheduled time, so queueing anywhere shows."""
    import orjson

    host, port = url.removeprefix("http://").split(":")
    bodies = [orjson.dumps(b) for b in requests]  # serialised before the clock starts
    lat: list[float] = []
    errors = 0
    idle: list[_Conn] = []

    async def one(at: float, body: bytes) -> None:
        nonlocal errors
        head = (f"POST /v1/rerank HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        while True:
            reused = bool(idle)
            conn = idle.pop() if reused else _Conn(*await asyncio.open_connection(host, int(port)))
            try:
                status = await conn.post(head, body)
                break
            except (OSError, asyncio.IncompleteReadError, RuntimeError) as e:
                conn.writer.close()
                # the server closes keep-alive connections idle for 5 s: a reused one that was closed before any
                # reply came is sent again on another, as HTTP clients do; any other failure is an error
                if not (reused and isinstance(e, (asyncio.IncompleteReadError, ConnectionError))):
                    errors += 1
                    return
        idle.append(conn)
        if status != 200:
            errors += 1
            return
        lat.append(time.perf_counter() - at)

    tasks = []
    t0 = time.perf_counter() + 0.05
    for i, body in enumerate(bodies):
        at = t0 + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(at, body)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    for conn in idle:
        conn.writer.close()
    return lat, errors, wall


def run(coro):
    """``asyncio.run`` on uvloop when it is installed (the client's own overhead, not the server's)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _http_stack() -> str:
    """What uvicorn runs on here ("auto" picks uvloop and httptools when they are installed)."""
    import importlib.util

    have = [m for m in ("uvloop", "httptools") if importlib.util.find_spec(m)]
    return "+".join(have) if have else "asyncio+h11"


def _write(out: Path, rows: list[dict], args, cold: dict, calibration: dict) -> dict:
    result = {"machine": machine_info(), "date": str(dt.date.today()), "seconds_per_setting": args.seconds,
              "calibration_fp32_gflops_one_core": calibration,
              "cores": {"server": args.server_core, "client": args.client_core,
                        "how": "server started under taskset -c; client os.sched_setaffinity"},
              "stream": "synthetic search log, searches in time order (Zipf over queries)",
              "server": {"int8": args.int8, "http": _http_stack()},
              "cache_miss_query_side_ms": cold,
              "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def setup_arguments(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """What `prepare` reads: a student, index and dataset, or a work directory to build them in."""
    ap.add_argument("--student", type=Path)
    ap.add_argument("--index", type=Path)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--work", type=Path, default=Path("/tmp/searchrel-bench-serve"))
    return ap


def main() -> None:
    ap = setup_arguments(argparse.ArgumentParser())
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--server-core", type=int, default=0)
    ap.add_argument("--client-core", type=int, default=1)
    ap.add_argument("--rates", default="50,100,200")
    ap.add_argument("--candidates", default="100,400")
    ap.add_argument("--int8", action="store_true", help="serve with --int8 (both query-side models in int8)")
    ap.add_argument("--warmup", type=int, default=3000, help="requests replayed before measuring (warm cache)")
    ap.add_argument("--out", type=Path, default=Path(f"bench/results/serve-{dt.date.today()}.json"))
    args = ap.parse_args()
    os.sched_setaffinity(0, {args.client_core})  # this process (the load generator) on its own core
    args.work.mkdir(parents=True, exist_ok=True)
    data, student, index = prepare(args.work, args)
    rates = [float(r) for r in args.rates.split(",")]

    # a cache miss, measured apart on the server's core: the whole query side (the query tower and, when the
    # student has the zero_shot feature, its model), each in fp32 and int8
    from searchrel.serve.onnx_tower import QueryEmbedder
    from searchrel.student.model import load_student

    os.sched_setaffinity(0, {args.server_core})
    calibration = {"server_core_start": calibrate_core()}
    loaded = load_student(student)
    words = ["red summer dress", "mesa de madera", "wooden table", "Sommerkleid", "boho living room", "木製テーブル"]
    cold = {}
    for name, int8 in (("fp32", False), ("int8", True)):
        emb = QueryEmbedder(loaded, student, onnx=True, int8=int8)
        emb.encode(words)
        times = []
        for i in range(200):
            q = f"{words[i % len(words)]} {i}"  # never seen: no cache anywhere
            t = time.perf_counter()
            emb.encode([q])
            times.append(1000 * (time.perf_counter() - t))
        cold[name] = {"p50": round(statistics.median(times), 3), "p95": round(float(np.percentile(times, 95)), 3),
                      "models": ["query tower", *emb.onnx_features]}
    del loaded, emb
    os.sched_setaffinity(0, {args.client_core})

    rows = []
    for cands in [int(c) for c in args.candidates.split(",")]:
        need = args.warmup + int(max(rates) * args.seconds) * len(rates)
        reqs = stream(data, cands, need)
        for cache in ("warm", "off"):
            server = Server(data, student, index, "memory" if cache == "warm" else "off", args.server_core,
                            ["--int8"] if args.int8 else [])
            try:
                pos = 0
                if cache == "warm":  # replay the head of the stream so the cache holds what traffic has seen
                    run(drive(server.url, reqs[: args.warmup], 400.0))
                    pos = args.warmup
                for rate in rates:
                    n = int(rate * args.seconds)
                    window = reqs[pos:pos + n]
                    pos += n
                    h0, m0 = server.cache_counts()
                    lat, errors, wall = run(drive(server.url, window, rate))
                    h1, m1 = server.cache_counts()
                    lat_ms = sorted(1000 * x for x in lat)
                    lookups = (h1 - h0) + (m1 - m0)
                    row = {"candidates": cands, "rate_rps": rate, "cache": cache,
                           "p50_ms": round(statistics.median(lat_ms), 2) if lat_ms else None,
                           "p99_ms": round(float(np.percentile(lat_ms, 99)), 2) if lat_ms else None,
                           "throughput_rps": round(len(lat) / wall, 1), "hit_rate": round((h1 - h0) / lookups, 3)
                           if lookups else 0.0, "requests": n, "errors": errors}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    _write(args.out, rows, args, cold, calibration)  # after every setting: a stopped run keeps what it measured
            finally:
                server.stop()
    os.sched_setaffinity(0, {args.server_core})
    calibration["server_core_end"] = calibrate_core()
    print(json.dumps(_write(args.out, rows, args, cold, calibration)["cache_miss_query_side_ms"]))


if __name__ == "__main__":
    main()
