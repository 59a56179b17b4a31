"""The relevance workbench on a tiny student, index and teacher over the small synthetic world: the candidate pool
and the three rankers through the API, human labels, comparisons, limits, what happens without --data or
--teacher, and the page end to end in headless Chromium (a screenshot kept in tests/artifacts/workbench.png)."""

import contextlib
import dataclasses
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from searchrel.annotate.text import (
    build_item_texts,  # noqa: E402
    normalise_query,  # noqa: E402
)
from searchrel.baselines.bm25 import BM25Scorer  # noqa: E402
from searchrel.index import build_index  # noqa: E402
from searchrel.serve.app import create_app  # noqa: E402
from searchrel.serve.service import ServeConfig  # noqa: E402
from searchrel.student.model import load_student, new_student  # noqa: E402
from searchrel.teacher.inference import (
    load_teacher,  # noqa: E402
    predict_probs,  # noqa: E402
)
from searchrel.teacher.train import train  # noqa: E402
from test_student import _cfg  # noqa: E402
from test_teacher import _config  # noqa: E402

UNINDEXED = 3  # the last items of the dataset are left out of the index: the student scores them from their text


@pytest.fixture(scope="module")
def setup(world, tiny_bert, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workbench")
    ds = world
    student = new_student(_cfg(tiny_bert).student)
    for f in student.features:
        f.fit(build_item_texts(ds.items, student.config.text).tolist())
    sdir = student.save(tmp / "student")
    kept = ds.items.iloc[:-UNINDEXED]
    older = dataclasses.replace(ds, items=kept, judgments=ds.judgments[ds.judgments["item_id"].isin(kept["item_id"])],
                                search_log=None)
    build_index(sdir, older, tmp / "index", bf16=False)
    teacher = train(ds, tmp / "teacher", _config(tiny_bert, epochs=1, batch_size=16, eval_every=1000,
                                                        checkpoint_every=1000))
    return ds, sdir, tmp / "index", teacher


@pytest.fixture(scope="module")
def app(setup):
    ds, sdir, index, teacher = setup
    return create_app(ServeConfig(index=index, student=sdir, data=ds.path, teacher=teacher, max_k=100,
                                  max_candidates=80))


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


def _judged_query(ds, n_min=4):
    """A judged query with at least ``n_min`` judgments: (text, language, {item_id: label})."""
    counts = ds.judgments.groupby("query_id").size()
    qid = sorted(counts[counts >= n_min].index)[0]
    q = ds.queries.set_index("query_id").loc[qid]
    j = ds.judgments[ds.judgments["query_id"] == qid]
    return q["text"], q["language"], dict(zip(j["item_id"], j["label"]))


def _search(client, **body):
    r = client.post("/v1/search", json={"k": 100, "pool": 20, **body})
    assert r.status_code == 200, r.text
    return r.json()


def test_info_says_what_is_available(client, setup):
    ds = setup[0]
    info = client.get("/v1/workbench/info").json()
    assert {r: a["available"] for r, a in info["rankers"].items()} == {"bm25": True, "student": True, "teacher": True}
    assert info["dataset"]["name"] == ds.info.name and info["dataset"]["n_items"] == len(ds.items)
    assert set(info["languages"]) == set(ds.info.languages) and info["scale"]["grades"] == [1, 2, 3, 4, 5]
    assert info["examples"] and {"query", "language", "n_judged"} <= set(info["examples"][0])
    assert {e["language"] for e in info["examples"]} == set(ds.queries["language"])  # taking turns across languages
    assert "title" in info["fields"] and info["fields_note"] is None


def test_every_ranker_orders_the_same_pool_with_human_labels(client, setup):
    ds, sdir, _, teacher = setup
    text, lang, labels = _judged_query(ds)
    res = {r: _search(client, query=text, language=lang, ranker=r) for r in ("bm25", "student", "teacher")}
    pools = {r: {i["item_id"] for i in out["items"]} for r, out in res.items()}
    assert pools["bm25"] == pools["student"] == pools["teacher"]
    pool = pools["bm25"]
    assert len(pool) == res["bm25"]["pool"]["size"] and set(labels) <= pool  # judged items are in the pool
    assert res["bm25"]["pool"] == res["student"]["pool"] == res["teacher"]["pool"]
    assert res["student"]["judged_query"]["n_judged"] == len(labels)
    for r, out in res.items():
        scores = [i["score"] for i in out["items"]]
        assert scores == sorted(scores, reverse=True), r
        assert [i["rank"] for i in out["items"]] == list(range(1, len(pool) + 1))
        got = {i["item_id"]: i["human_label"] for i in out["items"] if i["human_label"] is not None}
        assert got == labels, r  # every judged item, with its label; no other item has one
        assert out["judged"]["judged_in_pool"] == len(labels) and 0 <= out["judged"]["ndcg"] <= 1
        titles = ds.items.set_index("item_id")["title"]
        for i in out["items"]:
            assert i["fields"]["language"] and i["fields"].get("title") == (titles[i["item_id"]].strip() or None)
    for i in res["bm25"]["items"]:  # BM25 has no grade probabilities, and none are made up
        assert i["probabilities"] is None and i["expected_grade"] is None and i["grade"] is None
    for r in ("student", "teacher"):
        for i in res[r]["items"]:
            p = i["probabilities"]
            assert set(p) == {"1", "2", "3", "4", "5"} and abs(sum(p.values()) - 1) < 1e-3
            assert i["expected_grade"] == pytest.approx(sum(int(g) * v for g, v in p.items()), abs=1e-3)
            assert i["grade"] in range(1, 6)
    # sources: BM25 hits have a BM25 score above zero, the rest come from the student's neighbours or judgments
    bm25 = BM25Scorer(build_item_texts(ds.items, load_student(sdir).config.text).tolist())
    all_scores = dict(zip(ds.items["item_id"], bm25.score_all(text)))
    for i in res["bm25"]["items"]:
        assert i["score"] == pytest.approx(all_scores[i["item_id"]], abs=1e-4)
        assert i["sources"] and set(i["sources"]) <= {"bm25", "ann", "judged"}
        assert "bm25" not in i["sources"] or i["score"] > 0
    n_hits = sum(s > 0 for s in all_scores.values())
    assert n_hits > 0 and res["bm25"]["pool"]["sources"]["bm25"] == min(20, n_hits)
    assert res["bm25"]["pool"]["sources"]["ann"] == 20 and res["bm25"]["pool"]["dropped"] == 0
    # the student's scores are the re-rank endpoint's; items left out of the index are scored from their text
    student = {i["item_id"]: i["score"] for i in res["student"]["items"]}
    indexed = [i for i in student if i in set(ds.items["item_id"].iloc[:-UNINDEXED])]
    rr = client.post("/v1/rerank", json={"query": text, "language": lang, "item_ids": indexed}).json()
    assert {i["item_id"]: i["score"] for i in rr["items"]} == {i: student[i] for i in indexed}
    # the teacher's are the cross-encoder's on (query, item text) pairs
    model, tok = load_teacher(teacher)
    texts = build_item_texts(ds.items, model.config.text)
    ids = list(student)
    probs = predict_probs(model, tok, [text] * len(ids), texts.loc[ids].tolist(), bf16=False, progress=None)
    served = {i["item_id"]: i["expected_grade"] for i in res["teacher"]["items"]}
    assert np.allclose(probs @ np.arange(1, 6), [served[i] for i in ids], atol=0.05)


def test_unindexed_items_are_scored_from_their_text(client, setup):
    ds = setup[0]
    gone = ds.items.iloc[-1]
    query = f"{gone['title']} {gone['image_caption'] or ''}"
    out = _search(client, query=query, ranker="student")
    hit = next((i for i in out["items"] if i["item_id"] == gone["item_id"]), None)
    assert hit is not None and hit["in_index"] is False and hit["probabilities"] is not None
    assert client.get(f"/v1/items/{gone['item_id']}").json()["in_index"] is False


def test_typed_queries_match_judged_ones_by_normalised_text_and_language(client, setup):
    ds = setup[0]
    text, lang, labels = _judged_query(ds)
    typed = "  " + " ".join(text.upper().split()) .replace(" ", "   ") + " "
    assert normalise_query(typed) == normalise_query(text)
    out = _search(client, query=typed, ranker="student")  # no language: any judged query with that text
    assert out["judged_query"]["text"] == text
    assert sum(i["human_label"] is not None for i in out["items"]) == len(labels)
    other = next(x for x in ds.info.languages if x != lang)
    out = _search(client, query=text, language=other, ranker="student")
    assert out["judged_query"] is None and all(i["human_label"] is None for i in out["items"])
    out = _search(client, query=text, language=lang, ranker="student", include_judged=False)
    assert out["judged_query"]["n_judged"] == len(labels) and out["pool"]["sources"]["judged"] == 0


def test_compare_marks_where_the_other_ranker_puts_each_item(client, setup):
    ds = setup[0]
    text, lang, _ = _judged_query(ds)
    k = 8
    r = client.post("/v1/compare", json={"query": text, "language": lang, "rankers": ["student", "bm25"], "k": k,
                                         "pool": 20})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["rankers"] == ["student", "bm25"] and [c["ranker"] for c in body["columns"]] == ["student", "bm25"]
    full = {name: [i["item_id"] for i in _search(client, query=text, language=lang, ranker=name)["items"]]
            for name in ("student", "bm25")}
    for col, other in zip(body["columns"], ("bm25", "student")):
        assert [i["item_id"] for i in col["items"]] == full[col["ranker"]][:k]
        for i in col["items"]:
            assert i["other_rank"] == full[other].index(i["item_id"]) + 1
            assert i["move"] == i["other_rank"] - i["rank"] and i["new"] == (i["other_rank"] > k)
    a, b = (set(full[n][:k]) for n in ("student", "bm25"))
    assert body["summary"]["overlap"] == len(a & b) and -1 <= body["summary"]["spearman"] <= 1
    assert any(i["move"] != 0 for c in body["columns"] for i in c["items"])


def test_items_and_related_with_fields(client, setup):
    ds = setup[0]
    qid, iid, label = ds.judgments.iloc[0][["query_id", "item_id", "label"]]
    item = client.get(f"/v1/items/{iid}").json()
    row = ds.items.set_index("item_id").loc[iid]
    assert item["in_index"] and item["in_dataset"] and item["fields"]["language"] == row["language"]
    assert {"query_id": qid, "label": int(label)}.items() <= next(j for j in item["judgments"]
                                                                   if j["query_id"] == qid).items()
    rel = client.get(f"/v1/items/{iid}/related?k=5&fields=true").json()["items"]
    assert len(rel) == 5 and all(r["fields"]["language"] for r in rel)
    assert "fields" not in client.get(f"/v1/items/{iid}/related?k=5").json()["items"][0]
    assert client.get("/v1/items/nope").status_code == 404


@pytest.mark.parametrize("path, payload, status, says", [
    ("/v1/search", {"query": "  ", "ranker": "bm25"}, 422, "empty"),
    ("/v1/search", {"query": "x" * 600, "ranker": "bm25"}, 413, "characters"),
    ("/v1/search", {"query": "red", "ranker": "tf-idf"}, 422, "student"),
    ("/v1/search", {"query": "red", "k": 0}, 422, "k"),
    ("/v1/search", {"query": "red", "k": 101}, 413, "k of 101 is over the limit of 100"),
    ("/v1/search", {"query": "red", "pool": 81}, 413, "pool of 81"),
    ("/v1/search", {"ranker": "bm25"}, 422, "query"),
    ("/v1/compare", {"query": "red", "rankers": ["bm25", "bm25"]}, 422, "two different rankers"),
    ("/v1/compare", {"query": "red", "rankers": ["bm25"]}, 422, "rankers"),
    ("/v1/compare", {"query": "red", "rankers": ["bm25", "student", "teacher"]}, 422, "rankers"),
])
def test_bad_search_input_gets_a_clear_4xx(client, path, payload, status, says):
    r = client.post(path, json=payload)
    assert r.status_code == status, r.text
    assert says in r.text


def test_without_teacher_or_data_the_rankers_say_why(setup):
    ds, sdir, index, _ = setup
    with TestClient(create_app(ServeConfig(index=index, student=sdir, data=ds.path))) as c:
        info = c.get("/v1/workbench/info").json()
        assert not info["rankers"]["teacher"]["available"] and "--teacher" in info["rankers"]["teacher"]["reason"]
        r = c.post("/v1/search", json={"query": "red", "ranker": "teacher"})
        assert r.status_code == 409 and "--teacher TEACHER_DIR" in r.json()["detail"]
        r = c.post("/v1/compare", json={"query": "red", "rankers": ["student", "teacher"]})
        assert r.status_code == 409
        assert c.post("/v1/search", json={"query": "red", "ranker": "bm25"}).status_code == 200
    with TestClient(create_app(ServeConfig(index=index, student=sdir))) as c:  # the index alone: student only
        info = c.get("/v1/workbench/info").json()
        assert [r for r, a in info["rankers"].items() if a["available"]] == ["student"]
        assert "--data" in info["fields_note"] and info["dataset"] is None and info["examples"] == []
        r = c.post("/v1/search", json={"query": "red", "ranker": "bm25"})
        assert r.status_code == 409 and "--data DATASET" in r.json()["detail"]
        out = c.post("/v1/search", json={"query": "red", "ranker": "student", "k": 5, "pool": 10}).json()
        assert len(out["items"]) == 5 and all(i["fields"] is None and i["sources"] == ["ann"] for i in out["items"])
        first = out["items"][0]["item_id"]
        assert c.get(f"/v1/items/{first}").json() == {"item_id": first, "in_index": True, "in_dataset": False,
                                                      "fields": None, "judgments": []}
    with pytest.raises(FileNotFoundError, match="not a teacher directory"):
        create_app(ServeConfig(index=index, student=sdir, data=ds.path, teacher=sdir))


def test_a_teacher_that_fails_to_load_gets_503_not_500(setup, tmp_path):
    import shutil

    ds, sdir, index, teacher = setup
    broken = shutil.copytree(teacher, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"not weights")
    with TestClient(create_app(ServeConfig(index=index, student=sdir, data=ds.path, teacher=broken))) as c:
        r = c.post("/v1/search", json={"query": "red", "ranker": "teacher"})
        assert r.status_code == 503 and "failed to load" in r.json()["detail"]
        assert c.post("/v1/search", json={"query": "red", "ranker": "student"}).status_code == 200


def test_the_teacher_is_loaded_once_on_first_use(setup, monkeypatch):
    from searchrel.teacher import inference

    ds, sdir, index, teacher = setup
    made = []
    real = inference.load_teacher

    def counting(*a, **kw):
        made.append(1)
        time.sleep(0.2)  # a slow load: concurrent first requests must still load it once
        return real(*a, **kw)

    monkeypatch.setattr(inference, "load_teacher", counting)
    text, lang, _ = _judged_query(ds)
    with TestClient(create_app(ServeConfig(index=index, student=sdir, data=ds.path, teacher=teacher))) as c:
        assert c.get("/v1/workbench/info").json()["teacher"]["loaded"] is False and not made
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda q: c.post("/v1/search", json={"query": q, "ranker": "teacher"}).status_code,
                                  [text, "red table", text, "blue dress"]))
        assert codes == [200] * 4 and made == [1]
        assert c.get("/v1/workbench/info").json()["teacher"]["loaded"] is True


def test_the_page_and_its_assets_are_served(client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "/static/workbench.js" in r.text and "http" not in r.text  # no external assets
    assert 'searchrel_requests_total{endpoint="/",status="200"}' in client.get("/metrics").text
    for asset in ("workbench.js", "workbench.css"):
        r = client.get(f"/static/{asset}")
        assert r.status_code == 200 and len(r.text) > 1000
        assert "https://" not in r.text and "http://" not in r.text


# -- end to end in headless Chromium ----------------------------------------------------------------
@contextlib.contextmanager
def serving(app):
    """The app on a free local port, served by uvicorn in a background thread."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.integration
def test_workbench_page_end_to_end(app, client, setup):
    from browser import browser_page, screenshot

    ds = setup[0]
    text, lang, labels = _judged_query(ds)
    k, pool = 12, 15
    titles = ds.items.set_index("item_id")["title"].str.strip()
    with serving(app) as url, browser_page() as page:
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.goto(url + "/")
        page.wait_for_selector('body[data-state="ready"]')
        assert page.locator("#ranker-a option[value=teacher]").is_enabled()
        assert page.locator("#examples .chip").count() > 0

        # one ranker: titles, probabilities and human labels as the API has them
        page.fill("#query", text)
        page.select_option("#language", lang)
        page.select_option("#ranker-a", "student")
        page.fill("#k", str(k))
        page.fill("#pool", str(pool))
        page.click("#search-btn")
        page.wait_for_selector('body[data-state="done"]')
        want = client.post("/v1/search", json={"query": text, "language": lang, "ranker": "student", "k": k,
                                               "pool": pool}).json()
        cards = page.locator(".column .card")
        assert cards.count() == k
        assert [cards.nth(j).get_attribute("data-item-id") for j in range(k)] == [i["item_id"] for i in want["items"]]
        for j, i in enumerate(want["items"]):
            shown = cards.nth(j).locator(".title").inner_text()
            assert shown == (titles[i["item_id"]] or "(no title)")
        assert page.locator(".column .probs").count() == k
        assert page.locator(".column .probs").first.locator("span").count() == 5
        probnums = cards.first.locator(".probnums").inner_text()
        assert probnums.startswith("1:") and "5:" in probnums
        n_labelled = sum(i["human_label"] is not None for i in want["items"])
        assert n_labelled > 0 and page.locator(".human-label").count() == n_labelled
        badge = page.locator(".human-label").first.inner_text()
        assert badge.startswith("human ") and int(badge.split()[1]) in labels.values()
        assert "judged query" in page.locator("#status").inner_text()

        # two rankers side by side, the changed positions marked
        page.check("#compare")
        page.select_option("#ranker-b", "bm25")
        page.click("#search-btn")
        page.wait_for_function("document.querySelectorAll('.column').length === 2 "
                               "&& document.body.dataset.state === 'done'")
        want = client.post("/v1/compare", json={"query": text, "language": lang, "rankers": ["student", "bm25"],
                                                "k": k, "pool": pool}).json()
        right = page.locator('.column[data-ranker="bm25"] .card')
        assert right.count() == k and page.locator(".move").count() == 2 * k
        for j, i in enumerate(want["columns"][1]["items"]):
            mark = right.nth(j).locator(".move").inner_text()
            move = i["move"]
            expect = "new" if i["new"] else f"▲{move}" if move > 0 else f"▼{-move}" if move < 0 else "="
            assert mark == expect
        assert page.locator(".move.up, .move.down, .move.new").count() > 0
        assert page.locator('.column[data-ranker="bm25"] .probs').count() == 0
        assert page.locator('.column[data-ranker="bm25"] .na').count() == k  # BM25: probabilities n/a

        # click an item: its related items, with titles
        first = page.locator('.column[data-ranker="student"] .card').first
        item_id = first.get_attribute("data-item-id")
        first.click()
        page.wait_for_selector("#related .related-item")
        related = client.get(f"/v1/items/{item_id}/related?k=8").json()["items"]
        shown = page.locator("#related .related-item")
        assert [shown.nth(j).get_attribute("data-item-id") for j in range(shown.count())] == \
            [r["item_id"] for r in related]
        assert shown.first.locator(".rt").inner_text() == (titles[related[0]["item_id"]] or related[0]["item_id"])
        assert page.locator(".card.selected").count() >= 1
        path = screenshot(page, "workbench.png")
        assert not errors, errors
    assert path.is_file() and path.stat().st_size > 20_000


# -- grading: a rater's grades land in the rating sheet `searchrel import ratings` reads ----------------------

def _train_query(ds):
    """A train query whose text (normalised) and language name it alone: (query_id, text, language)."""
    split = ds.split_of()
    q = ds.queries.assign(key=ds.queries["text"].map(normalise_query))
    unique = q[~q.duplicated(["key", "language"], keep=False) & (q["query_id"].map(split) == "train")]
    row = unique.sort_values("query_id").iloc[0]
    return row["query_id"], row["text"], row["language"]


@pytest.fixture
def graded(setup, tmp_path):
    ds, sdir, index, _ = setup
    sheet = tmp_path / "workbench-ratings.csv"
    with TestClient(create_app(ServeConfig(index=index, student=sdir, data=ds.path, ratings=sheet))) as c:
        yield c, sheet


def test_grades_land_in_the_rating_sheet_that_import_reads(graded, setup):
    from searchrel.data.ratings import read_sheet, validate_ratings

    client, sheet = graded
    ds = setup[0]
    qid, text, lang = _train_query(ds)
    assert client.get("/v1/workbench/info").json()["grading"] == {"enabled": True, "file": str(sheet), "reason": None}
    out = client.post("/v1/search", json={"query": text, "language": lang, "k": 5, "pool": 10}).json()
    assert out["grading"] == {"enabled": True, "query_id": qid, "reason": None}
    a, b = (i["item_id"] for i in out["items"][:2])
    for item, grade in ((a, 2), (b, 5), (a, 4)):  # a is graded again: the second grade replaces the first
        r = client.post("/v1/ratings", json={"query_id": qid, "item_id": item, "grade": grade, "rater": "ann"})
        assert r.status_code == 200, r.text
    assert r.json()["rows"] == 2
    ratings, _ = validate_ratings(read_sheet(sheet), ds, str(sheet))
    assert sorted(zip(ratings["item_id"], ratings["grade"], ratings["rater"])) == sorted([(a, 4, "ann"), (b, 5, "ann")])
    row = read_sheet(sheet).set_index("item_id").loc[a]
    assert row["query"] == text and row["language"] == lang and row["reason"] == "workbench"


def test_bad_grades_get_422_and_held_out_queries_cannot_be_graded(graded, setup):
    client, sheet = graded
    ds = setup[0]
    qid, _, _ = _train_query(ds)
    item = ds.items["item_id"].iloc[0]
    split = ds.split_of()
    test_q = ds.queries[ds.queries["query_id"].map(split) == "test"].iloc[0]
    for body, says in [
        ({"query_id": "nope", "item_id": item, "grade": 3, "rater": "ann"}, "not a query"),
        ({"query_id": test_q["query_id"], "item_id": item, "grade": 3, "rater": "ann"}, "leak into evaluation"),
        ({"query_id": qid, "item_id": "nope", "grade": 3, "rater": "ann"}, "not an item"),
        ({"query_id": qid, "item_id": item, "grade": 9, "rater": "ann"}, "off the scale 1..5"),
        ({"query_id": qid, "item_id": item, "grade": 3, "rater": " "}, "rater"),
        ({"query_id": qid, "item_id": item, "grade": "x", "rater": "ann"}, "grade"),
        ({"query_id": qid, "item_id": item, "grade": 3, "rater": ""}, "rater"),
    ]:
        r = client.post("/v1/ratings", json=body)
        assert r.status_code == 422 and says in r.text, (body, r.text)
    assert not sheet.exists()
    out = client.post("/v1/search", json={"query": test_q["text"], "language": test_q["language"], "k": 3}).json()
    assert not out["grading"]["enabled"] and "leak into evaluation" in out["grading"]["reason"]
    out = client.post("/v1/search", json={"query": "zzz qqq", "k": 3}).json()
    assert not out["grading"]["enabled"] and "not a query of the dataset" in out["grading"]["reason"]


def test_without_a_ratings_sheet_grading_is_off_and_says_how_to_turn_it_on(client, setup):
    qid, _, _ = _train_query(setup[0])
    info = client.get("/v1/workbench/info").json()
    assert not info["grading"]["enabled"] and "--ratings FILE.csv" in info["grading"]["reason"]
    r = client.post("/v1/ratings", json={"query_id": qid, "item_id": "x", "grade": 3, "rater": "ann"})
    assert r.status_code == 409 and "--ratings FILE.csv" in r.json()["detail"]


@pytest.mark.integration
def test_a_rater_grades_the_shown_items_with_key_presses_in_chromium(setup, tmp_path):
    from browser import browser_page, screenshot
    from searchrel.data.ratings import read_sheet, validate_ratings

    ds, sdir, index, _ = setup
    sheet = tmp_path / "ratings.csv"
    app = create_app(ServeConfig(index=index, student=sdir, data=ds.path, ratings=sheet))
    qid, text, lang = _train_query(ds)
    with serving(app) as url, browser_page() as page:
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(url + "/")
        page.wait_for_selector('body[data-state="ready"]')
        assert page.locator("#rater-box").is_visible()
        assert "null" not in page.locator("#meta").inner_text()  # no teacher: no badge (and no "null" for one)
        page.fill("#query", text)
        page.select_option("#language", lang)
        page.fill("#k", "6")
        page.click("#search-btn")
        page.wait_for_selector('body[data-state="done"]')
        assert qid in page.locator("#grading").inner_text()
        ids = [page.locator(".card").nth(j).get_attribute("data-item-id") for j in range(6)]

        def graded(n):
            page.wait_for_function(f"document.querySelectorAll('.my-grade:not([hidden])').length === {n}")

        page.keyboard.press("4")  # no rater yet: nothing is saved, the page says why
        assert "rater box" in page.locator("#error").inner_text() and not sheet.exists()
        page.fill("#rater", "ann")
        page.locator(".card").nth(0).click()  # focus the first item again (clicking also opens its detail)
        page.keyboard.press("4")  # the first item; the focus moves on to the second
        graded(1)
        page.keyboard.press("5")
        graded(2)
        page.keyboard.press("j")  # skip the third
        page.keyboard.press("3")
        graded(3)
        for _ in range(4):
            page.keyboard.press("k")  # back to the first
        page.keyboard.press("2")  # a corrected grade replaces the first
        page.wait_for_function("document.querySelector('.card .my-grade').textContent.startsWith('graded 2')")
        page.focus("#query")
        page.keyboard.press("1")  # typing in the query box grades nothing
        assert page.locator(".card.focused").get_attribute("data-item-id") == ids[1]
        screenshot(page, "workbench-grading.png")
        assert not errors, errors
    ratings, _ = validate_ratings(read_sheet(sheet), ds, str(sheet))
    assert sorted(zip(ratings["item_id"], ratings["grade"])) == sorted([(ids[0], 2), (ids[1], 5), (ids[3], 3)])
    assert set(ratings["query_id"]) == {qid} and set(ratings["rater"]) == {"ann"}
