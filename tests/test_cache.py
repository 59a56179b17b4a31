"""The query-embedding cache: keys, LRU order, TTL, counters, only misses encoded, and a real Redis."""

import shutil
import socket
import subprocess
import time

import numpy as np
import pytest

from searchrel.annotate.text import normalise_query
from searchrel.serve.cache import (
    CachedQueryEncoder,
    LRUCache,
    NullCache,
    RedisCache,
    cache_key,
    make_cache,
)


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class CountingEncoder:
    """Deterministic vectors from the text; remembers every batch it was asked to encode."""

    dim = 4

    def __init__(self):
        self.calls: list[list[str]] = []

    def encode(self, texts):
        self.calls.append(list(texts))
        out = np.array([[len(t), sum(map(ord, t)) % 97, t.count(" "), 1.0] for t in texts], np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def vec(x):
    return np.full(4, x, np.float32)


def test_key_normalisation():
    assert normalise_query("  Red\tTABLE \n") == "red table"
    assert normalise_query("ｒｅｄ　ｔａｂｌｅ") == "red table"  # NFKC: full-width letters, ideographic space
    assert normalise_query("ﬁle") == "file"
    assert normalise_query("STRASSE") == normalise_query("Straße")  # casefolded, not only lower-cased
    assert cache_key("Red  Table", "EN") == cache_key("red table", "en") == "|en|red table"
    assert cache_key("red table", "en") != cache_key("red table", "es")
    assert cache_key("red table", None) == cache_key("red table", "") != cache_key("red table", "en")
    assert cache_key("red table", "en", "m1") != cache_key("red table", "en", "m2")
    long = cache_key("x " * 300, "en")
    assert long.startswith("h:") and len(long) == 34 and long == cache_key(" X" * 300, "EN")


def test_lru_eviction_order_and_counters():
    c = LRUCache(max_items=3, ttl_s=None)
    for k in "abc":
        c.put(k, vec(ord(k)))
    assert c.get("a") is not None  # a is now the most recently used: b is the oldest
    c.put("d", vec(4))
    assert c.get("b") is None and c.size == 3 and c.evictions_lru == 1
    c.put("e", vec(5))  # c goes next
    assert c.get("c") is None and [c.get(k) is not None for k in "ade"] == [True, True, True]
    assert (c.hits, c.misses, c.evictions, c.evictions_expired) == (4, 2, 2, 0)
    c.put("a", vec(9))  # overwriting keeps the size and refreshes the order
    assert c.size == 3 and c.get("a")[0] == 9
    got = c.get_many(["d", "zz", "e"])
    assert got[0][0] == 4 and got[1] is None and got[2][0] == 5
    with pytest.raises(ValueError):
        c.put_many(["x"], [vec(1), vec(2)])
    with pytest.raises(ValueError):  # cached vectors are read-only copies
        got[0][0] = 1


def test_ttl_expiry_with_a_fake_clock():
    clock = FakeClock()
    c = LRUCache(max_items=10, ttl_s=60, clock=clock)
    c.put_many(["a", "b"], np.stack([vec(1), vec(2)]))
    clock.t += 59
    assert c.get("a") is not None
    c.put("b", vec(3))  # written again: a new minute
    clock.t += 1.5
    assert c.get("a") is None and c.evictions_expired == 1 and c.size == 1
    assert c.get("b")[0] == 3
    clock.t += 60
    assert c.get_many(["b"]) == [None] and c.evictions == 2 and c.size == 0
    assert (c.hits, c.misses) == (2, 2)


def test_cached_encoder_encodes_only_misses():
    enc = CountingEncoder()
    cached = CachedQueryEncoder(enc, LRUCache(100, 3600))
    first = cached.encode(["Red table", "blue dress", "red  TABLE"], ["en", "en", "en"])
    assert enc.calls == [["Red table", "blue dress"]]  # one batch, each distinct key once, as first typed
    assert np.array_equal(first[0], first[2])
    second = cached.encode(["red table", "mesa roja", "blue dress"], "en")
    assert enc.calls[1] == ["mesa roja"]
    assert np.array_equal(second[0], first[0]) and np.array_equal(second[2], first[1])
    cached.encode(["red table"], ["es"])  # another language is another key
    assert enc.calls[2] == ["red table"]
    cached.encode(["red table", "mesa roja"], ["en", "en"])  # all hits: no encoder call
    assert len(enc.calls) == 3
    s = cached.stats()
    assert (s["hits"], s["misses"], s["size"], s["evictions"]) == (4, 5, 4, 0)
    assert s["hit_rate"] == pytest.approx(4 / 9)
    assert cached.encode([], []).shape == (0, 4)
    with pytest.raises(ValueError, match="languages"):
        cached.encode(["a", "b"], ["en"])
    # caching off: the same vectors, every time from the encoder
    off = CachedQueryEncoder(off_enc := CountingEncoder(), make_cache("off", 10, 10))
    assert np.array_equal(off.encode(["Red table", "mesa roja"], "en"), second[[0, 1]])
    off.encode(["Red table"], "en")
    assert len(off_enc.calls) == 2 and off.stats()["hits"] == 0 and off.stats()["misses"] == 3
    normalised = CachedQueryEncoder(enc2 := CountingEncoder(), LRUCache(10, 10), encode_normalised=True)
    normalised.encode(["Red  Table", "red table"], "en")
    assert enc2.calls == [["red table"]]


def test_make_cache():
    assert isinstance(make_cache(None, 5, 10), LRUCache) and make_cache("memory", 5, 10).max_items == 5
    assert isinstance(make_cache("off", 5, 10), NullCache)
    r = make_cache("redis://127.0.0.1:1/0", 5, 30)  # nothing is contacted until it is used
    assert isinstance(r, RedisCache) and r.ttl_s == 30
    with pytest.raises(ValueError, match="unknown query cache"):
        make_cache("memcached://x", 5, 10)


def test_redis_outage_is_a_miss_not_an_error():
    port = _free_port()  # nothing listens here once closed
    c = RedisCache(f"redis://127.0.0.1:{port}/0", ttl_s=60, retry_s=60)
    assert c.get_many(["a", "b"]) == [None, None]
    c.put("a", vec(1))  # kept in the local tier; Redis is not tried again within retry_s
    assert (c.hits, c.misses, c.errors) == (0, 2, 1) and not c.available
    assert np.array_equal(c.get("a"), vec(1)) and c.size == -1 and c.evictions == -1  # answered locally
    cached = CachedQueryEncoder(CountingEncoder(), c)
    assert cached.encode(["red table"], "en").shape == (1, 4)


def _redis_binary() -> str:
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is not installed: scripts/system-deps (which make test runs) installs it"
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_redis(binary: str, port: int, workdir) -> subprocess.Popen:
    import redis

    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
                             "--save", "", "--appendonly", "no", "--daemonize", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port).ping()
            return proc
        except redis.exceptions.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {port}")
            time.sleep(0.05)


@pytest.fixture
def redis_url(tmp_path):
    port = _free_port()
    proc = _start_redis(_redis_binary(), port, tmp_path)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.integration
def test_redis_killed_mid_traffic_costs_no_error_and_is_used_again_once_back(tmp_path):
    binary, port = _redis_binary(), _free_port()
    proc = _start_redis(binary, port, tmp_path)
    try:
        cache = RedisCache(f"redis://127.0.0.1:{port}/0", ttl_s=60, retry_s=0.2)
        enc = CachedQueryEncoder(CountingEncoder(), cache)
        queries = [f"query {i % 40}" for i in range(600)]  # a head of 40 queries, repeated
        for q in queries[:100]:
            enc.encode([q], "en")
        assert cache.errors == 0 and cache.client.dbsize() == 40
        proc.kill()  # the outage: every call from here must still answer
        proc.wait()
        # the head is answered from the local tier; new queries are computed (a miss, not an error)
        mixed = [q if i % 2 else f"new during the outage {i}" for i, q in enumerate(queries[100:400])]
        started = time.monotonic()
        outage = [enc.encode([q], "en") for q in mixed]
        assert all(v.shape == (1, 4) for v in outage) and cache.errors >= 1
        tries = 1 + (time.monotonic() - started) / cache.retry_s
        assert cache.errors <= tries + 1  # not one connection attempt per request: once per retry_s at most
        proc = _start_redis(binary, port, tmp_path)  # back, empty
        time.sleep(0.25)  # past retry_s
        for q in queries[400:] + ["a new query"]:
            enc.encode([q], "en")
        assert cache.client.dbsize() >= 1  # written to Redis again
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.integration
def test_redis_cache_get_put_mget_ttl(redis_url):
    c = make_cache(redis_url, 10, ttl_s=1)
    assert isinstance(c, RedisCache)
    v = np.arange(8, dtype=np.float32) / 7
    assert c.get("|en|red table") is None
    c.put("|en|red table", v)
    got = c.get("|en|red table")
    assert got.dtype == np.float32 and np.array_equal(got, v)
    c.put_many(["a", "b"], np.stack([v, -v]))
    many = c.get_many(["a", "missing", "b"])
    assert np.array_equal(many[0], v) and many[1] is None and np.array_equal(many[2], -v)
    assert 0 < c.client.ttl(c.prefix + "a") <= 1  # written with EX ttl_s, under the prefix
    assert (c.hits, c.misses, c.errors) == (3, 2, 0) and c.size == 3
    cached = CachedQueryEncoder(enc := CountingEncoder(), c)
    cached.encode(["Mesa roja", "mesa  roja"], "es")
    cached.encode(["mesa roja"], "es")
    assert enc.calls == [["Mesa roja"]]
    time.sleep(1.3)  # past the TTL: Redis expired them
    assert c.get_many(["a", "b"]) == [None, None]
    assert c.evictions >= 2  # expired_keys (+ evicted_keys), server-wide
    c.close()
