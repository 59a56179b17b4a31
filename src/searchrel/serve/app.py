"""The HTTP service (FastAPI): re-ranking, related items, home feed, health, Prometheus metrics, and the relevance
workbench (a page at ``/`` over ``/v1/search``, ``/v1/compare``, ``/v1/items/{id}``, ``/v1/workbench/info`` and
``/v1/ratings``, where a rater's grades go; its logic is ``searchrel.serve.workbench``).

Bad input gets a 4xx that says what is wrong, never a 500: empty or oversized queries and payloads, too many
candidates, unknown ids (reported per item in a re-rank; 404 where nothing else can be answered). Under overload
the service sheds load: at most ``max_inflight`` requests compute at once, ``max_queue`` more wait, and any
request beyond that is answered 503 at once (with Retry-After) instead of queueing without bound.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import unicodedata
from pathlib import Path
from typing import Literal

import orjson
from fastapi import FastAPI, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, model_validator

from searchrel.serve.service import ServeConfig, Service
from searchrel.serve.workbench import GradeRejected, GradingOff, RankerUnavailable, TeacherLoadError, Workbench

STATIC = Path(__file__).parent / "static"
WORKBENCH_LANE = ("/v1/search", "/v1/compare")  # requests that may run the teacher: their own lane
Ranker = Literal["bm25", "student", "teacher"]


def _lone_surrogate(value) -> bool:
    """JSON may escape half of a UTF-16 pair (``"\\ud800"``): Python then holds a string no UTF-8 can encode."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_lone_surrogate(k) or _lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_lone_surrogate(v) for v in value)
    return False


def _finite(value):
    """``value`` with every NaN/Infinity float written as its name: JSON has no literal for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _json_type(content_type: bytes | None) -> bool:
    """Whether a request's Content-Type lets FastAPI read its body as JSON: ``application/json`` or
    ``application/*+json``, any parameters (without one, FastAPI does not parse the body)."""
    if not content_type:
        return False
    kind = content_type.split(b";")[0].strip().lower()
    return kind == b"application/json" or (kind.startswith(b"application/") and kind.endswith(b"+json"))


def _visible(text: str) -> bool:
    """Whether ``text`` has a character that shows: not only spaces, controls and format marks (zero-width spaces,
    joiners, BOMs, direction marks)."""
    return any(not (c.isspace() or unicodedata.category(c) in ("Cc", "Cf")) for c in text)


class Body(BaseModel):
    """A request body: every string in it must be text (a lone surrogate is a 422, not a failure later on)."""

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, data):
        if _lone_surrogate(data):
            raise ValueError("the body holds a lone UTF-16 surrogate (e.g. \\ud800): not valid text")
        return data


class CandidateItem(Body):
    """A candidate the index may not hold, sent with its text fields."""

    model_config = ConfigDict(extra="allow")  # any other text field the student's text config names (brand, ...)
    item_id: str = Field(min_length=1, max_length=200)
    title: str | None = None
    description: str | None = None
    image_caption: str | None = None
    board_titles: list[str] | None = None
    engaged_queries: list[str] | None = None


class RerankRequest(Body):
    query: str = Field(description="the query as typed, any language")
    language: str | None = Field(None, max_length=16)
    country: str | None = Field(None, max_length=16)
    item_ids: list[str] = Field(default_factory=list, description="candidates from the index")
    items: list[CandidateItem] = Field(default_factory=list, description="candidates sent with their text")
    top_k: int | None = Field(None, ge=1)
    probabilities: bool = Field(True, description="each item's grade probabilities; false: a leaner answer")


class Problem(BaseModel):
    """What every 4xx/5xx answer holds: a sentence saying what is wrong, or FastAPI's per-field validation list."""

    detail: str | list[dict]


# the error answers of the /v1 endpoints, declared so the OpenAPI schema says what a client may get back
ERRORS = {code: {"model": Problem, "description": what} for code, what in (
    (400, "the body is not UTF-8 text"), (404, "an unknown item"), (408, "the body did not arrive in time"),
    (409, "the asked ranker cannot answer (no teacher, no data)"),
    (413, "over a size limit (payload, query, candidates)"), (415, "a body that is not JSON (Content-Type)"),
    (422, "invalid input: a sentence, or FastAPI's per-field list"), (503, "overloaded, or a model failed to load"))}


class HomefeedRequest(Body):
    item_ids: list[str] = Field(description="items the user saved")
    k: int = Field(20, ge=1)


class SearchRequest(Body):
    query: str = Field(description="the query as typed, any language")
    language: str | None = Field(None, max_length=16, description="the query's language: the cache key and which "
                                 "judged query it may match")
    ranker: Ranker = "student"
    k: int = Field(20, ge=1, description="items returned, best first")
    pool: int = Field(50, ge=1, description="candidates from each source: BM25 top-N and the student's ANN top-N")
    include_judged: bool = Field(True, description="add a matching judged query's judged items to the pool")


class CompareRequest(Body):
    query: str = Field(description="the query as typed, any language")
    language: str | None = Field(None, max_length=16)
    rankers: list[Ranker] = Field(min_length=2, max_length=2, description="the two rankers, left and right")
    k: int = Field(20, ge=1)
    pool: int = Field(50, ge=1)
    include_judged: bool = True


class RatingRequest(Body):
    query_id: str = Field(min_length=1, max_length=200, description="the graded query (a train query of the dataset)")
    item_id: str = Field(min_length=1, max_length=200)
    grade: int = Field(description="a grade on the dataset's scale")
    rater: str = Field(min_length=1, max_length=100, description="who graded")


def _metrics():
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram  # prometheus_client: the serve extra

    reg = CollectorRegistry()
    buckets = (.001, .002, .003, .005, .0075, .01, .015, .02, .03, .05, .075, .1, .2, .5, 1, 2, 5)
    return reg, {
        "requests": Counter("searchrel_requests", "HTTP requests", ["endpoint", "status"], registry=reg),
        "latency": Histogram("searchrel_request_latency_seconds", "request latency", ["endpoint"],
                             buckets=buckets, registry=reg),
        "shed": Counter("searchrel_shed_requests", "requests answered 503 under overload", registry=reg),
        "inflight": Gauge("searchrel_inflight_requests", "requests admitted and not yet answered", registry=reg),
        "cache_hits": Gauge("searchrel_query_cache_hits", "query-embedding cache hits", registry=reg),
        "cache_misses": Gauge("searchrel_query_cache_misses", "query-embedding cache misses", registry=reg),
        "cache_hit_rate": Gauge("searchrel_query_cache_hit_rate", "hits / lookups", registry=reg),
        "cache_size": Gauge("searchrel_query_cache_size", "entries in the query cache", registry=reg),
        "cache_evictions": Gauge("searchrel_query_cache_evictions", "entries evicted or expired", registry=reg),
        "cache_errors": Gauge("searchrel_query_cache_errors", "failed cache calls (Redis unreachable, timed out): "
                              "each answered as a miss or a dropped write", registry=reg),
    }


async def _read_body(receive, limit: int) -> bytes | None:
    """The whole request body, or None once it passes ``limit`` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    """A ``receive`` that hands the app the body already read, then waits on the client as before."""
    sent = False

    async def again():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


def create_app(cfg: ServeConfig, service: Service | None = None) -> FastAPI:
    """The FastAPI app over a loaded ``Service`` (loaded from ``cfg`` unless given)."""
    svc = service or Service(cfg)
    bench = Workbench(svc, cfg.data, cfg.teacher, cfg.ratings)  # the page at / and its endpoints
    app = FastAPI(title="searchrel", version="1", description="Relevance re-ranking with a distilled bi-encoder "
                  "student; related items and home feed from the same item embeddings.")
    app.state.service = svc

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, exc: RequestValidationError) -> Response:
        # FastAPI's own answer, made valid JSON whatever the rejected input it echoes: ASCII-escaped (a lone
        # surrogate) and NaN/Infinity as strings
        body = json.dumps({"detail": _finite(jsonable_encoder(exc.errors()))}, ensure_ascii=True, allow_nan=False)
        return Response(body, status_code=422, media_type="application/json")
    app.state.workbench = bench
    registry, m = _metrics()
    # two lanes: the serving endpoints, and the workbench's searches (their teacher may take seconds of CPU per
    # request): each with its own computing slots and queue, so a teacher search never holds a re-rank's slot
    lanes = {"serve": (asyncio.Semaphore(cfg.max_inflight), cfg.max_queue),
             "workbench": (asyncio.Semaphore(1), cfg.workbench_queue)}
    admitted = {"serve": 0, "workbench": 0}

    async def limits(scope, receive, send, call):
        """Admission control, payload limit and per-endpoint metrics, as a plain ASGI wrapper: Starlette's
        ``@app.middleware("http")`` streams every response through extra tasks and queues, a cost per request
        that showed in the profile."""
        path = scope["path"]
        started = time.perf_counter()
        status = {"code": 500}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        def observe():
            route = scope.get("route")
            endpoint = route.path if route is not None else "unmatched"
            m["requests"].labels(endpoint, str(status["code"])).inc()
            m["latency"].labels(endpoint).observe(time.perf_counter() - started)

        if not path.startswith("/v1/"):
            try:
                await call(scope, receive, send_status)
            finally:
                observe()
            return
        headers = dict(scope.get("headers") or [])
        size = headers.get(b"content-length", b"").decode()
        if size.isdigit() and int(size) > cfg.max_body_bytes:
            m["requests"].labels("/v1", "413").inc()
            await JSONResponse({"detail": f"payload of {size} bytes is over the limit of {cfg.max_body_bytes}"},
                               status_code=413)(scope, receive, send)
            return
        # the body is read here, whole, before admission: a chunked body (no declared length) is held to the same
        # limit, and a client that sends too slowly is answered 408 instead of holding a request slot
        try:
            body = await asyncio.wait_for(_read_body(receive, cfg.max_body_bytes), cfg.body_timeout_s)
        except asyncio.TimeoutError:
            m["requests"].labels("/v1", "408").inc()
            await JSONResponse({"detail": f"the body did not arrive within {cfg.body_timeout_s:g} s"},
                               status_code=408)(scope, receive, send)
            return
        if body is None:
            m["requests"].labels("/v1", "413").inc()
            await JSONResponse({"detail": f"payload over the limit of {cfg.max_body_bytes} bytes"},
                               status_code=413)(scope, receive, send)
            return
        if not _json_type(headers.get(b"content-type")) and scope["method"] in ("POST", "PUT", "PATCH"):
            m["requests"].labels("/v1", "415").inc()
            given = headers.get(b"content-type")
            await JSONResponse({"detail": "the body must be JSON (Content-Type: application/json), " + (
                f"not {given.decode('latin-1')!r}" if given else "and no Content-Type was given")},
                               status_code=415)(scope, receive, send)
            return
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as e:  # json.loads would fail on it with a bare "error parsing the body"
            m["requests"].labels("/v1", "400").inc()
            await JSONResponse({"detail": f"the body is not UTF-8: byte 0x{body[e.start]:02x} at position {e.start}"},
                               status_code=400)(scope, receive, send)
            return
        receive = _replay(body, receive)
        lane = "workbench" if path in WORKBENCH_LANE else "serve"
        gate, queue = lanes[lane]
        if admitted[lane] >= (cfg.max_inflight if lane == "serve" else 1) + queue:
            m["shed"].inc()
            m["requests"].labels("/v1", "503").inc()
            await JSONResponse({"detail": "overloaded: try again shortly"}, status_code=503,
                               headers={"Retry-After": "1"})(scope, receive, send)
            return
        admitted[lane] += 1
        m["inflight"].set(sum(admitted.values()))
        try:
            async with gate:
                await call(scope, receive, send_status)
        finally:
            admitted[lane] -= 1
            m["inflight"].set(sum(admitted.values()))
            observe()

    def checked_query(text: str) -> str:
        query = text.strip()
        if not query:
            raise HTTPException(422, "query is empty")
        if not _visible(query):
            raise HTTPException(422, "query has no visible characters (only zero-width or control characters)")
        if len(query) > cfg.max_query_chars:
            raise HTTPException(413, f"query of {len(query)} characters is over the limit of {cfg.max_query_chars}")
        return query

    @app.post("/v1/rerank", response_class=Response, responses={**ERRORS, 200: {
        "description": "candidates by expected grade", "content": {"application/json": {"schema": {"type": "object"}}}}})
    async def rerank(req: RerankRequest) -> Response:
        """Candidates ordered by expected grade, each with its grade probabilities."""
        # computed on the event loop itself: the work is a few ms of GIL-bound NumPy, and handing it to a worker
        # thread and back cost more than that (the admission limits above still bound what waits)
        query = checked_query(req.query)
        n = len(req.item_ids) + len(req.items)
        if n == 0:
            raise HTTPException(422, "no candidates: give item_ids and/or items")
        if n > cfg.max_candidates:
            raise HTTPException(413, f"{n} candidates is over the limit of {cfg.max_candidates}")
        if len(req.items) > cfg.max_new_items:
            raise HTTPException(413, f"{len(req.items)} candidates with text is over the limit of {cfg.max_new_items}")
        body = svc.rerank(query, req.item_ids, [i.model_dump() for i in req.items], req.language, req.top_k,
                          req.probabilities)
        # serialised by orjson straight from the dict: FastAPI's generic encoder walks every value of a
        # 400-item answer and costs more than scoring it
        return Response(orjson.dumps(body), media_type="application/json")

    @app.get("/v1/items/{item_id}/related", responses=ERRORS)
    def related(item_id: str = PathParam(..., max_length=200), k: int = Query(10, ge=1),
                fields: bool = Query(False, description="add each item's text fields (needs --data)")) -> dict:
        """The items nearest to this one in the student's item-embedding space."""
        try:  # against the index version this request got (a newer one may have been published meanwhile)
            items = svc.related(item_id, min(k, cfg.max_k))
        except KeyError:
            raise HTTPException(404, f"item {item_id!r} is not in the index") from None
        if fields:
            found = bench.fields([i["item_id"] for i in items])
            items = [{**i, "fields": found[i["item_id"]]} for i in items]
        return {"item_id": item_id, "items": items}

    @app.get("/v1/items/{item_id}", responses=ERRORS)
    def item(item_id: str = PathParam(..., max_length=200)) -> dict:
        """One item: its text fields (with --data), whether the index holds it, and its human judgments."""
        found = bench.item(item_id)
        if found is None:
            raise HTTPException(404, f"item {item_id!r} is neither in the dataset nor in the index")
        return found

    def search_limits(query: str, k: int, pool: int, rankers: list[str]) -> str:
        query = checked_query(query)
        if k > cfg.max_k:
            raise HTTPException(413, f"k of {k} is over the limit of {cfg.max_k}")
        if pool > cfg.max_candidates:
            raise HTTPException(413, f"pool of {pool} per source is over the limit of {cfg.max_candidates}")
        for r in rankers:
            try:
                bench.check(r)
            except RankerUnavailable as e:
                raise HTTPException(409, str(e)) from None
        return query

    @app.post("/v1/search", responses=ERRORS)
    def search(req: SearchRequest) -> dict:
        """The workbench's search: the query's candidate pool (BM25 top-N ∪ student ANN top-N ∪ judged items)
        ordered by one ranker, with text fields, grade probabilities (models only) and human labels."""
        query = search_limits(req.query, req.k, req.pool, [req.ranker])
        try:
            return bench.search(query, req.language or None, req.ranker, req.k, req.pool, req.include_judged)
        except TeacherLoadError as e:
            raise HTTPException(503, str(e)) from None

    @app.post("/v1/compare", responses=ERRORS)
    def compare(req: CompareRequest) -> dict:
        """Two rankers over the same pool; each item carries its rank in the other ranking (``other_rank``),
        ``move`` (places higher here than there) and ``new`` (not in the other's top k)."""
        if req.rankers[0] == req.rankers[1]:
            raise HTTPException(422, f"compare needs two different rankers, got {req.rankers[0]!r} twice")
        query = search_limits(req.query, req.k, req.pool, req.rankers)
        try:
            return bench.compare(query, req.language or None, req.rankers, req.k, req.pool, req.include_judged)
        except TeacherLoadError as e:
            raise HTTPException(503, str(e)) from None

    @app.get("/v1/workbench/info", responses=ERRORS)
    def workbench_info() -> dict:
        """What the workbench can do here: rankers (and why one is not available), dataset, languages, examples."""
        return bench.info()

    @app.post("/v1/ratings", responses=ERRORS)
    def rate(req: RatingRequest) -> dict:
        """One rater's grade of one (train query, item) pair, saved into the server's rating sheet (``--ratings``;
        the format ``searchrel import ratings`` reads); the same rater grading the pair again replaces the grade."""
        try:
            return bench.grade(req.query_id, req.item_id, req.grade, req.rater)
        except GradingOff as e:
            raise HTTPException(409, str(e)) from None
        except GradeRejected as e:
            raise HTTPException(422, str(e)) from None

    @app.get("/", include_in_schema=False)
    def workbench_page() -> FileResponse:
        return FileResponse(STATIC / "workbench.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.post("/v1/homefeed", responses=ERRORS)
    def homefeed(req: HomefeedRequest) -> dict:
        """Items near the taste of the saved items (their mean embedding), the saved ones excluded."""
        if not req.item_ids:
            raise HTTPException(422, "item_ids is empty")
        if len(req.item_ids) > cfg.max_candidates:
            raise HTTPException(413, f"{len(req.item_ids)} saved items is over the limit of {cfg.max_candidates}")
        try:
            items, unknown = svc.homefeed(req.item_ids, min(req.k, cfg.max_k))
        except KeyError as e:
            raise HTTPException(404, str(e.args[0])) from None
        return {"items": items, "unknown_item_ids": unknown}

    @app.get("/healthz")
    def healthz() -> dict:
        index = svc.current_index()  # a health check also picks up a newly published version
        return {"status": "ok", "model_version": svc.model_version[:12], "index_version": index.version,
                "items": len(index), "uptime_s": round(time.time() - svc.started, 1)}

    @app.get("/metrics", response_class=Response, responses={200: {
        "description": "Prometheus text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}}})
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest  # prometheus_client: the serve extra

        s = svc.cache_stats()
        m["cache_hits"].set(s["hits"])
        m["cache_misses"].set(s["misses"])
        m["cache_hit_rate"].set(s["hit_rate"])
        m["cache_size"].set(s["size"])
        m["cache_evictions"].set(s["evictions"])
        m["cache_errors"].set(s["errors"])
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    inner = app.build_middleware_stack

    def build_middleware_stack():
        stack = inner()

        async def with_limits(scope, receive, send):
            if scope["type"] != "http":
                return await stack(scope, receive, send)
            await limits(scope, receive, send, stack)

        return with_limits

    app.build_middleware_stack = build_middleware_stack
    return app
