"""The HTTP service on a tiny student and index: re-rank, related, home feed, limits, overload, metrics."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from searchrel.annotate.text import build_item_texts  # noqa: E402
from searchrel.data.dataset import load_dataset  # noqa: E402
from searchrel.data.synth import SynthConfig, synthesize  # noqa: E402
from searchrel.index import build_index  # noqa: E402
from searchrel.serve.app import create_app  # noqa: E402
from searchrel.serve.service import ServeConfig, Service  # noqa: E402
from searchrel.student.model import load_student, new_student  # noqa: E402
from test_student import _cfg  # noqa: E402


@pytest.fixture(scope="module")
def setup(tiny_bert, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    ds = synthesize(SynthConfig(n_items=120, n_queries=30, n_users=40, n_judged_pairs=150, n_searches=300))
    ds.save(tmp / "ds")
    ds = load_dataset(tmp / "ds")
    student = new_student(_cfg(tiny_bert).student)
    for f in student.features:
        f.fit(build_item_texts(ds.items, student.config.text).tolist())
    sdir = student.save(tmp / "student")
    build_index(sdir, ds, tmp / "index", bf16=False)
    return ds, sdir, tmp / "index"


@pytest.fixture(scope="module")
def client(setup):
    ds, sdir, index = setup
    cfg = ServeConfig(index=index, student=sdir, max_candidates=50, max_body_bytes=20_000)
    with TestClient(create_app(cfg)) as c:
        yield c


def test_rerank_orders_by_expected_grade_and_matches_offline_scores(setup, client):
    ds, sdir, _ = setup
    ids = ds.items["item_id"].tolist()[:20]
    query = ds.queries["text"].iloc[0].lower()
    r = client.post("/v1/rerank", json={"query": query, "language": "en", "item_ids": ids + ["nope"], "top_k": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unknown_item_ids"] == ["nope"] and len(body["items"]) == 10
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    for item in body["items"]:
        p = item["probabilities"]
        assert set(p) == {"1", "2", "3", "4", "5"} and abs(sum(p.values()) - 1) < 1e-3
        assert item["score"] == pytest.approx(sum(int(g) * v for g, v in p.items()), abs=1e-3)
    # the same pairs scored offline by the student (PyTorch) give the same expected grades
    student = load_student(sdir)
    texts = build_item_texts(ds.items, student.config.text)
    got = {i["item_id"]: i["score"] for i in body["items"]}
    q = student.side([query], "query", bf16=False)
    items = student.side(texts.loc[list(got)].tolist(), "item", bf16=False)
    probs = student.predict(q, np.zeros(len(got), np.int64), items, np.arange(len(got)))
    assert np.allclose(probs @ np.arange(1, 6), list(got.values()), atol=2e-3)


def test_score_gives_the_unrounded_probabilities_rerank_ranks_and_rounds(setup):
    ds, sdir, index = setup
    svc = Service(ServeConfig(index=index, student=sdir, onnx=False))
    ids = ds.items["item_id"].tolist()[:12]
    query = ds.queries["text"].iloc[1]
    scored, probs, unknown = svc.score(query, ids + [ids[0], "nope"], language="en")
    assert scored == ids and unknown == ["nope"]  # a duplicate scored once, in the order asked
    assert probs.shape == (12, 5) and np.allclose(probs.sum(1), 1, atol=1e-5)
    body = svc.rerank(query, ids, language="en")
    ranked = [i["item_id"] for i in body["items"]]
    expected = probs @ np.arange(1, 6)
    assert ranked == [ids[j] for j in np.argsort(-expected, kind="stable")]
    for item in body["items"]:
        row = probs[ids.index(item["item_id"])]
        assert np.allclose([item["probabilities"][str(g)] for g in range(1, 6)], row, atol=1e-5)


def test_a_lean_answer_leaves_out_the_probabilities_only(setup, client):
    ds, _, _ = setup
    ask = {"query": "red table", "item_ids": ds.items["item_id"].tolist()[:30]}
    full = client.post("/v1/rerank", json=ask).json()
    lean = client.post("/v1/rerank", json={**ask, "probabilities": False}).json()
    assert all("probabilities" not in i for i in lean["items"])
    assert [{k: v for k, v in i.items() if k != "probabilities"} for i in full["items"]] == lean["items"]


def test_an_index_published_under_traffic_is_picked_up_without_errors_or_mixed_answers(setup, tmp_path):
    import shutil
    import threading

    from searchrel.index import refresh_index

    ds, sdir, index = setup
    live = tmp_path / "index"
    shutil.copytree(index, live)
    svc = Service(ServeConfig(index=live, student=sdir, onnx=False, index_check_s=0.01))
    ids = ds.items["item_id"].tolist()[:30]
    changed = ids[0]
    query = ds.queries["text"].iloc[2]
    before = {i["item_id"]: i["score"] for i in svc.rerank(query, ids)["items"]}
    edited = ds.items.copy()
    edited.loc[edited["item_id"] == changed, "title"] = "a completely different title: garden hose reel"
    new_ds = type(ds)(info=ds.info, items=edited, queries=ds.queries, judgments=ds.judgments, splits=ds.splits,
                      search_log=ds.search_log)
    answers, errors, stop = [], [], threading.Event()

    def traffic():
        while not stop.is_set():
            try:
                body = svc.rerank(query, ids)
                answers.append((body["index_version"], {i["item_id"]: i["score"] for i in body["items"]}))
            except Exception as e:  # any error fails the test
                errors.append(repr(e))

    threads = [threading.Thread(target=traffic) for _ in range(2)]
    for t in threads:
        t.start()
    refresh_index(sdir, new_ds, live, bf16=False)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert not errors and svc.index.version == "2" and not svc.index_errors
    after = {i["item_id"]: i["score"] for i in svc.rerank(query, ids)["items"]}
    assert after[changed] != before[changed]
    versions = {v for v, _ in answers}
    assert versions <= {"1", "2"} and "2" in versions
    for version, scores in answers:  # each answer is wholly one version's
        assert scores == (before if version == "1" else after)

    # the HTTP endpoints that read the index follow the newest version too: health, related items
    refresh_index(sdir, type(ds)(info=ds.info, items=pd.concat([edited, edited.iloc[:1].assign(item_id="brand-new")]),
                                 queries=ds.queries, judgments=ds.judgments, splits=ds.splits,
                                 search_log=ds.search_log), live, bf16=False)
    time.sleep(0.05)
    with TestClient(create_app(svc.cfg, svc)) as c:
        assert c.get("/healthz").json()["index_version"] == "3"
        assert c.get("/v1/items/brand-new/related?k=3").status_code == 200


def test_the_numpy_scorer_gives_the_students_probabilities(setup):
    import torch

    from searchrel.serve.scoring import NumpyScorer

    ds, sdir, index = setup
    student = load_student(sdir)
    torch.manual_seed(0)
    with torch.no_grad():  # weights away from their start (zero MLP output), so every term counts
        for p in [*student.scorer.parameters(), *student.skip.parameters()]:
            p.add_(0.3 * torch.randn_like(p))
    texts = build_item_texts(ds.items, student.config.text)
    q = student.side(ds.queries["text"].head(3).tolist(), "query", bf16=False)
    items = student.side(texts.head(40).tolist(), "item", bf16=False)
    q_idx, i_idx = np.repeat(np.arange(3), 40), np.tile(np.arange(40), 3)
    expected = student.predict(q, q_idx, items, i_idx)
    got = NumpyScorer(student).predict(q, q_idx, items, i_idx)
    assert got.dtype == np.float32 and np.abs(got - expected).max() <= 1e-5
    assert np.abs(expected - expected.mean(0)).max() > 0.01  # the pairs differ: the check is not trivial


def test_unseen_items_sent_with_text_are_scored(setup, client):
    ds, _, _ = setup
    r = client.post("/v1/rerank", json={"query": "red table", "item_ids": [ds.items["item_id"].iloc[0]],
                                        "items": [{"item_id": "new-1", "title": "red wooden table", "brand": "x"},
                                                  {"item_id": "new-2", "image_caption": "a blue dress"}]})
    assert r.status_code == 200, r.text
    assert {i["item_id"] for i in r.json()["items"]} == {ds.items["item_id"].iloc[0], "new-1", "new-2"}



def test_an_id_is_answered_once_scored_from_its_text_when_sent_with_text(setup, client):
    ds, sdir, _ = setup
    first, second = ds.items["item_id"].iloc[:2]
    # in item_ids and in items; twice in items (the last text counts); twice in item_ids
    body = {"query": "red table", "item_ids": [first, second, second, "gone"],
            "items": [{"item_id": first, "title": "an old title"}, {"item_id": first, "title": "red wooden table"},
                      {"item_id": "new-1", "title": "blue dress"}, {"item_id": "new-1", "title": "green lamp"}]}
    r = client.post("/v1/rerank", json=body)
    assert r.status_code == 200, r.text
    got = {i["item_id"]: i["probabilities"] for i in r.json()["items"]}
    assert sorted(got) == sorted([first, second, "new-1"]) and len(r.json()["items"]) == 3
    assert r.json()["unknown_item_ids"] == ["gone"]
    alone = client.post("/v1/rerank", json={"query": "red table", "item_ids": [second], "items": [
        {"item_id": first, "title": "red wooden table"}, {"item_id": "new-1", "title": "green lamp"}]}).json()
    assert {i["item_id"]: i["probabilities"] for i in alone["items"]} == got


@pytest.mark.parametrize("content_type, status", [
    ("text/plain", 415), ("application/x-www-form-urlencoded", 415), ("application/json; charset=utf-8", 200),
    ("application/vnd.api+json", 200), (None, 415)])
def test_a_body_that_is_not_json_by_its_content_type_is_a_415(setup, client, content_type, status):
    ds, _, _ = setup
    body = json.dumps({"query": "red", "item_ids": ds.items["item_id"].tolist()[:3]})
    headers = {} if content_type is None else {"content-type": content_type}
    r = client.post("/v1/rerank", content=body, headers=headers)
    assert r.status_code == status, r.text
    if status == 415:
        assert (content_type or "no Content-Type was given") in r.json()["detail"]


def test_a_body_that_is_not_utf8_and_an_invisible_query_say_what_is_wrong(setup, client):
    ds, _, _ = setup
    r = client.post("/v1/rerank", content=b'{"query": "r\xe9d", "item_ids": ["a"]}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["detail"] == "the body is not UTF-8: byte 0xe9 at position 12"
    for query in ("\u200b", "\u200b\u200d \ufeff", "\u2060\u0007"):
        r = client.post("/v1/rerank", json={"query": query, "item_ids": ds.items["item_id"].tolist()[:2]})
        assert r.status_code == 422 and "no visible characters" in r.text, (query, r.text)
    r = client.post("/v1/rerank", json={"query": "\u200bred", "item_ids": ds.items["item_id"].tolist()[:2]})
    assert r.status_code == 200


def test_a_server_error_shows_in_metrics(setup):
    ds, sdir, index = setup
    app = create_app(ServeConfig(index=index, student=sdir))
    with TestClient(app, raise_server_exceptions=False) as c:
        def broken(*a, **k):
            raise RuntimeError("a bug")

        app.state.service.rerank = broken
        r = c.post("/v1/rerank", json={"query": "red", "item_ids": ds.items["item_id"].tolist()[:2]})
        assert r.status_code == 500
        text = c.get("/metrics").text
        assert 'searchrel_requests_total{endpoint="/v1/rerank",status="500"} 1.0' in text
        assert "searchrel_query_cache_errors 0.0" in text


def test_a_slow_workbench_search_never_holds_a_rerank_slot(setup):
    import asyncio

    import httpx

    ds, sdir, index = setup
    app = create_app(ServeConfig(index=index, student=sdir, max_inflight=1, max_queue=0, workbench_queue=0))
    bench = app.state.workbench
    bench.check = lambda ranker: None

    def slow_search(*a, **k):  # a teacher scoring a large pool: seconds of work
        time.sleep(1.5)
        return {"items": []}

    bench.search = slow_search
    ids = ds.items["item_id"].tolist()[:5]

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            search = asyncio.create_task(c.post("/v1/search", json={"query": "red", "ranker": "teacher"}))
            await asyncio.sleep(0.2)  # the search is computing
            second = await c.post("/v1/search", json={"query": "red", "ranker": "teacher"})  # its lane is full
            started = time.perf_counter()
            rerank = await c.post("/v1/rerank", json={"query": "red", "item_ids": ids})
            took = time.perf_counter() - started
            return (await search).status_code, second.status_code, rerank.status_code, took

    search, second, rerank, took = asyncio.run(scenario())
    assert (search, second, rerank) == (200, 503, 200)
    assert took < 1.0  # answered while the search still computes

@pytest.mark.parametrize("payload, status, says", [
    ({"query": "   ", "item_ids": ["a"]}, 422, "empty"),
    ({"query": "x" * 600, "item_ids": ["a"]}, 413, "characters"),
    ({"query": "red", "item_ids": []}, 422, "no candidates"),
    ({"query": "red", "item_ids": [f"i{k}" for k in range(51)]}, 413, "limit of 50"),
    ({"query": "red", "item_ids": "i1"}, 422, ""),
    ({"item_ids": ["a"]}, 422, "query"),
])
def test_bad_rerank_input_gets_a_clear_4xx(client, payload, status, says):
    r = client.post("/v1/rerank", json=payload)
    assert r.status_code == status, r.text
    assert says in r.text


def test_hostile_bodies_get_a_clear_4xx(client, setup):
    ds, sdir, index = setup
    ids = json.dumps(ds.items["item_id"].tolist()[:5])
    post = lambda text: client.post("/v1/rerank", content=text, headers={"content-type": "application/json"})  # noqa: E731
    r = post('{"query": "red \\ud800 table", "item_ids": ' + ids + "}")  # half of a UTF-16 pair
    assert r.status_code == 422 and "lone UTF-16 surrogate" in r.text and r.json()["detail"]
    for literal in ("NaN", "Infinity", "-Infinity"):  # not JSON, but Python's parser reads them
        r = post('{"query": "red", "item_ids": ' + ids + ', "top_k": ' + literal + "}")
        assert r.status_code == 422 and "finite number" in r.text
        json.loads(r.text, parse_constant=lambda c: pytest.fail(f"the answer holds {c}"))  # valid JSON back

    def chunked():  # no content-length: the limit holds all the same
        yield b'{"query": "red", "item_ids": ["' + b"x" * 15_000
        yield b"x" * 15_000 + b'"]}'

    r = client.post("/v1/rerank", content=chunked(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "over the limit of 20000" in r.text

    # a client that stalls mid-body, at the ASGI level (a test client sends whole bodies)
    import asyncio

    app = create_app(ServeConfig(index=index, student=sdir, body_timeout_s=0.2))
    parts = [{"type": "http.request", "body": b'{"query": "red", ', "more_body": True}]

    async def receive():
        if parts:
            return parts.pop(0)
        await asyncio.sleep(5)  # the rest never comes in time
        return {"type": "http.request", "body": b'"item_ids": []}', "more_body": False}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/rerank", "raw_path": b"/v1/rerank", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json")], "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80)}
    started = time.perf_counter()
    asyncio.run(app(scope, receive, send))
    assert time.perf_counter() - started < 2
    assert sent[0]["status"] == 408 and b"did not arrive within 0.2 s" in sent[1]["body"]


def test_payload_limit_malformed_json_and_unknown_ids(client, setup):
    ds, _, _ = setup
    r = client.post("/v1/rerank", content=json.dumps({"query": "red", "item_ids": ["x" * 100] * 300}),
                    headers={"content-type": "application/json"})
    assert r.status_code == 413 and "over the limit" in r.text
    r = client.post("/v1/rerank", content="{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert client.get("/v1/items/nope/related").status_code == 404
    assert client.post("/v1/homefeed", json={"item_ids": ["nope"]}).status_code == 404
    assert client.post("/v1/homefeed", json={"item_ids": []}).status_code == 422
    assert client.get(f"/v1/items/{ds.items['item_id'].iloc[0]}/related?k=0").status_code == 422


def test_related_and_homefeed(setup, client):
    ds, _, _ = setup
    first, second = ds.items["item_id"].iloc[:2]
    r = client.get(f"/v1/items/{first}/related?k=5")
    assert r.status_code == 200
    related = [i["item_id"] for i in r.json()["items"]]
    assert len(related) == 5 and first not in related
    r = client.post("/v1/homefeed", json={"item_ids": [first, second, "gone"], "k": 7})
    body = r.json()
    assert r.status_code == 200 and body["unknown_item_ids"] == ["gone"]
    ids = [i["item_id"] for i in body["items"]]
    assert len(ids) == 7 and first not in ids and second not in ids


def test_health_metrics_and_cache_hits(setup, client):
    ds, _, _ = setup
    assert client.get("/healthz").json()["status"] == "ok"
    for _ in range(3):
        client.post("/v1/rerank", json={"query": "Blue  Dress", "item_ids": ds.items["item_id"].tolist()[:5]})
    def metric(text: str, name: str) -> float:
        return float(next(ln.split()[-1] for ln in text.splitlines() if ln.startswith(name + " ")))

    before = client.get("/metrics").text
    client.post("/v1/rerank", json={"query": "blue dress", "item_ids": ds.items["item_id"].tolist()[:5]})
    text = client.get("/metrics").text
    assert 'searchrel_requests_total{endpoint="/v1/rerank",status="200"}' in text
    assert "searchrel_request_latency_seconds_bucket" in text
    # "blue dress" normalises to the key of "Blue  Dress" asked before: one more hit, no more misses
    hits, misses = (metric(text, f"searchrel_query_cache_{k}") - metric(before, f"searchrel_query_cache_{k}")
                    for k in ("hits", "misses"))
    assert (hits, misses) == (1, 0)
    total_hits, total_misses = metric(text, "searchrel_query_cache_hits"), metric(text, "searchrel_query_cache_misses")
    assert metric(text, "searchrel_query_cache_hit_rate") == pytest.approx(total_hits / (total_hits + total_misses))
    assert client.get("/openapi.json").json()["paths"]["/v1/rerank"]


def test_overload_is_shed_with_503_not_queued(setup):
    ds, sdir, index = setup
    cfg = ServeConfig(index=index, student=sdir, max_inflight=1, max_queue=0, cache="off")
    ids = ds.items["item_id"].tolist()
    with TestClient(create_app(cfg)) as c:
        def call(k):
            r = c.post("/v1/rerank", json={"query": f"query number {k}", "item_ids": ids})
            assert r.status_code != 503 or r.headers["retry-after"] == "1"
            return r.status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(call, range(24)))
        assert set(codes) <= {200, 503} and 503 in codes and 200 in codes
        assert "searchrel_shed_requests_total" in c.get("/metrics").text
        started = time.perf_counter()  # the load has stopped: the next request is served, at once
        assert call(99) == 200 and time.perf_counter() - started < 1.0


def test_index_of_another_student_is_refused(setup, tiny_bert, tmp_path):
    ds, _, index = setup
    other = new_student(_cfg(tiny_bert).student, seed=1)
    for f in other.features:
        f.fit(["x"])
    odir = other.save(tmp_path / "other")
    with pytest.raises(ValueError, match="another student"):
        Service(ServeConfig(index=index, student=odir))
