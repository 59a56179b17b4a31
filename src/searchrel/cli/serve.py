"""CLI: ``serve`` — the re-ranking, related-items and home-feed service (FastAPI + uvicorn), and the relevance
workbench page at ``/`` (BM25 / student / teacher over one candidate pool; ``--data`` and ``--teacher`` enable all
three rankers, item fields and human labels)."""

from __future__ import annotations

import gc
from pathlib import Path

import typer

from searchrel.cli.common import console, user_errors
from searchrel.serve.service import ServeConfig

_D = {k: f.default for k, f in ServeConfig.model_fields.items()}


@user_errors
def serve_cmd(
    index: Path = typer.Option(..., help="item index from `searchrel index build`"),
    student: Path = typer.Option(..., help="the student the index was built with"),
    data: Path | None = typer.Option(None, "--data", metavar="DATASET",
                                     help="dataset, for the workbench at /: item fields, human labels, BM25"),
    teacher: Path | None = typer.Option(None, "--teacher", metavar="TEACHER_DIR",
                                        help="teacher, for the workbench's teacher ranker (needs --data)"),
    ratings: Path | None = typer.Option(None, "--ratings", metavar="FILE.csv",
                                        help="rating sheet the workbench's grades go into (needs --data): keys 1..N "
                                             "grade the focused item; then `searchrel import ratings FILE.csv RUN`"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
    cache: str = typer.Option("memory", help="query-embedding cache: memory, off, or redis://host:6379/0"),
    cache_items: int = typer.Option(_D["cache_items"], help="entries kept by the in-process cache"),
    cache_ttl_s: float = typer.Option(_D["cache_ttl_s"], help="seconds a cached query embedding lives"),
    onnx: bool = typer.Option(True, help="query side (the query tower and the zero_shot feature's model) on ONNX "
                              "Runtime (--no-onnx: PyTorch)"),
    int8: bool = typer.Option(False, help="both query-side ONNX models dynamically quantised to int8"),
    max_candidates: int = typer.Option(_D["max_candidates"]),
    max_inflight: int = typer.Option(_D["max_inflight"], help="requests computing at once"),
    max_queue: int = typer.Option(_D["max_queue"], help="requests waiting beyond that; more get 503"),
) -> None:
    """Serve POST /v1/rerank, GET /v1/items/{id}/related, POST /v1/homefeed, /healthz, /metrics (docs at /docs),
    and the relevance workbench at / (POST /v1/search, POST /v1/compare, GET /v1/items/{id}, GET /v1/workbench/info)."""
    import uvicorn

    from searchrel.serve.app import create_app

    cfg = ServeConfig(index=index, student=student, data=data, teacher=teacher, ratings=ratings, cache=cache,
                      cache_items=cache_items,
                      cache_ttl_s=cache_ttl_s, onnx=onnx, int8=int8, max_candidates=max_candidates,
                      max_inflight=max_inflight, max_queue=max_queue)
    app = create_app(cfg)
    rankers = [r for r, a in app.state.workbench.availability().items() if a["available"]]
    console.print(f"serving {len(app.state.service.index):,} items on http://{host}:{port} (API docs: /docs; "
                  f"workbench: http://{host}:{port}/ with {', '.join(rankers)})")
    # everything loaded so far (models, index, tokenizers: millions of objects) lives as long as the process; the
    # cyclic garbage collector scanned all of it on every full collection, a ~300 ms pause every ~20 s under load
    # that was the whole p99. Frozen, a collection scans only what requests create.
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=host, port=port, log_level="warning")
