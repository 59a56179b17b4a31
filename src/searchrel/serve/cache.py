"""The query-embedding cache: most search traffic repeats a small head of queries, whose tower pass can be skipped.

Keys are the query text normalised (``annotate.text.normalise_query``: NFKC, casefolded, whitespace collapsed) plus its language,
under an optional namespace naming the model (``CachedQueryEncoder`` uses the encoder's ``fingerprint``, a hash of
its ONNX file, so a shared Redis never returns vectors of an older model). Values are float32 vectors.

* ``LRUCache``: in-process, thread-safe, least-recently-used eviction at ``max_items``, entries expire ``ttl_s``
  after they were written (checked on read with ``time.monotonic``; the clock is injectable for tests).
* ``RedisCache``: shared between processes and replicas; vectors as raw float32 bytes with ``EX ttl_s``, batches
  through ``MGET`` and a pipeline of ``SET``. Hits and misses are counted by this process; ``evictions`` and
  ``size`` come from the server (``INFO stats`` evicted_keys + expired_keys, ``DBSIZE``) and so cover the whole
  Redis database, not only this cache's keys: give the cache a database of its own (``redis://host:6379/3``).
  A Redis error never fails a request: reads count as misses, writes are dropped, both are counted in ``errors``.
* ``NullCache``: caching off (every lookup a miss), so the code path is the same with and without a cache.

``CachedQueryEncoder`` encodes the text as typed (the first spelling of a key it sees), which is what the student
was trained and evaluated on; spellings that differ only in case, width or spacing then share that first vector.
``encode_normalised=True`` encodes the normalised text instead: results no longer depend on which spelling came
first (cache on or off, any order, the same vector), but differ from ``Student.embed`` on the text as typed. How much
that matters: on me5-small's 4-layer student (untrained projection) lower-casing moved 4 of 51 queries, to cosine
0.88 at worst (e.g. "Kleid blau" -> "kleid blau").
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from searchrel.annotate.text import normalise_query

MAX_KEY_BYTES = 200  # longer keys are stored under a hash (Redis keys, and memory, stay bounded)


def cache_key(text: str, language: str | None = None, namespace: str = "") -> str:
    """The cache key of a query: ``namespace|language|normalised text`` (hashed when longer than 200 bytes)."""
    key = f"{namespace}|{(language or '').strip().lower()}|{normalise_query(text)}"
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        key = "h:" + hashlib.blake2b(key.encode("utf-8"), digest_size=16).hexdigest()
    return key


class QueryCache(Protocol):
    hits: int
    misses: int

    def get(self, key: str) -> np.ndarray | None: ...
    def put(self, key: str, vec: np.ndarray) -> None: ...
    def get_many(self, keys: Sequence[str]) -> list[np.ndarray | None]: ...
    def put_many(self, keys: Sequence[str], vecs: Sequence[np.ndarray] | np.ndarray) -> None: ...
    @property
    def size(self) -> int: ...
    @property
    def evictions(self) -> int: ...


def _vector(vec) -> np.ndarray:
    v = np.array(vec, dtype=np.float32).reshape(-1)  # a copy: callers cannot change what is cached
    v.flags.writeable = False
    return v


class LRUCache:
    """In-process LRU cache with a time-to-live. ``ttl_s`` None or <= 0: entries never expire."""

    def __init__(self, max_items: int = 100_000, ttl_s: float | None = 3600.0,
                 clock: Callable[[], float] = time.monotonic):
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1 (got {max_items})")
        self.max_items = max_items
        self.ttl_s = ttl_s if ttl_s and ttl_s > 0 else None
        self._clock = clock
        self._items: OrderedDict[str, tuple[np.ndarray, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions_lru = self.evictions_expired = 0

    @property
    def evictions(self) -> int:
        return self.evictions_lru + self.evictions_expired

    @property
    def size(self) -> int:
        """Entries held (expired ones are dropped when next read, or when pushed out as least recently used)."""
        return len(self._items)

    def _get(self, key: str, now: float) -> np.ndarray | None:
        entry = self._items.get(key)
        if entry is not None and entry[1] <= now:
            del self._items[key]
            self.evictions_expired += 1
            entry = None
        if entry is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return entry[0]

    def _put(self, key: str, vec, now: float) -> None:
        expires = now + self.ttl_s if self.ttl_s is not None else float("inf")
        self._items[key] = (_vector(vec), expires)
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)
            self.evictions_lru += 1

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            return self._get(key, self._clock())

    def put(self, key: str, vec: np.ndarray) -> None:
        with self._lock:
            self._put(key, vec, self._clock())

    def get_many(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        with self._lock:
            now = self._clock()
            return [self._get(k, now) for k in keys]

    def put_many(self, keys: Sequence[str], vecs: Sequence[np.ndarray] | np.ndarray) -> None:
        if len(keys) != len(vecs):
            raise ValueError(f"{len(keys)} keys but {len(vecs)} vectors")
        with self._lock:
            now = self._clock()
            for k, v in zip(keys, vecs):
                self._put(k, v, now)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class NullCache:
    """Caching off: nothing is stored, every lookup is a miss."""

    size = 0
    evictions = 0

    def __init__(self):
        self.hits = self.misses = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> None:
        with self._lock:
            self.misses += 1

    def put(self, key: str, vec: np.ndarray) -> None:
        pass

    def get_many(self, keys: Sequence[str]) -> list[None]:
        with self._lock:
            self.misses += len(keys)
        return [None] * len(keys)

    def put_many(self, keys: Sequence[str], vecs) -> None:
        pass


class RedisCache:
    """Query vectors in Redis (float32 bytes, ``EX ttl_s``), under ``prefix``, in front of which sits a small
    in-process LRU (``local_items``): a hit there costs no round trip, and when Redis is unreachable the service
    keeps answering from it (and recomputes what it lacks) instead of failing. After an error Redis is left alone
    for ``retry_s`` — no connection attempt per request during an outage — then tried again (redis-py reconnects).
    See the module notes on counters."""

    def __init__(self, url: str = "redis://localhost:6379/0", ttl_s: float | None = 3600.0,
                 prefix: str = "searchrel:q:", socket_timeout: float = 0.25, client=None, local_items: int = 10_000,
                 retry_s: float = 1.0):
        if client is None:
            import redis  # redis: the serve extra, only for --cache redis

            client = redis.Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)
        self.client = client
        self.url = url
        self.ttl_s = max(1, int(round(ttl_s))) if ttl_s and ttl_s > 0 else None
        self.prefix = prefix
        self.local = LRUCache(local_items, ttl_s)
        self.retry_s = retry_s
        self._down_until = 0.0
        self._lock = threading.Lock()
        self.hits = self.misses = self.errors = 0

    def _count(self, hits: int = 0, misses: int = 0, errors: int = 0) -> None:
        with self._lock:
            self.hits += hits
            self.misses += misses
            self.errors += errors

    @staticmethod
    def _decode(raw: bytes | None) -> np.ndarray | None:
        if raw is None or len(raw) == 0 or len(raw) % 4:
            return None
        v = np.frombuffer(raw, dtype=np.float32).copy()
        v.flags.writeable = False
        return v

    def get(self, key: str) -> np.ndarray | None:
        return self.get_many([key])[0]

    def put(self, key: str, vec: np.ndarray) -> None:
        self.put_many([key], [vec])

    @property
    def available(self) -> bool:
        """False for ``retry_s`` after an error: requests then use the local tier only."""
        return time.monotonic() >= self._down_until

    def _failed(self) -> None:
        self._down_until = time.monotonic() + self.retry_s
        self._count(errors=1)

    def get_many(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        if not keys:
            return []
        out = self.local.get_many(keys)
        todo = [j for j, v in enumerate(out) if v is None]
        if todo and self.available:
            try:
                raw = self.client.mget([self.prefix + keys[j] for j in todo])
            except Exception:  # noqa: BLE001 - a cache outage must not fail the request
                self._failed()
            else:
                for j, r in zip(todo, raw):
                    v = self._decode(r)
                    if v is not None:
                        out[j] = v
                        self.local.put(keys[j], v)
        n_hit = sum(v is not None for v in out)
        self._count(hits=n_hit, misses=len(keys) - n_hit)
        return out

    def put_many(self, keys: Sequence[str], vecs: Sequence[np.ndarray] | np.ndarray) -> None:
        if len(keys) != len(vecs):
            raise ValueError(f"{len(keys)} keys but {len(vecs)} vectors")
        if not keys:
            return
        self.local.put_many(keys, vecs)
        if not self.available:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for k, v in zip(keys, vecs):
                pipe.set(self.prefix + k, np.asarray(v, dtype=np.float32).tobytes(), ex=self.ttl_s)
            pipe.execute()
        except Exception:  # noqa: BLE001
            self._failed()

    @property
    def size(self) -> int:
        """Keys in the Redis database (DBSIZE: all keys there, not only this cache's); -1 when unreachable."""
        try:
            return int(self.client.dbsize())
        except Exception:  # noqa: BLE001
            return -1

    @property
    def evictions(self) -> int:
        """Keys the server evicted (maxmemory) or expired (TTL) since it started, for the whole server (INFO stats);
        -1 when unreachable."""
        try:
            info = self.client.info("stats")
            return int(info.get("evicted_keys", 0)) + int(info.get("expired_keys", 0))
        except Exception:  # noqa: BLE001
            return -1

    def close(self) -> None:
        self.client.close()


def make_cache(spec: str | None = None, max_items: int = 100_000, ttl_s: float | None = 3600.0):
    """The cache a spec names: None or ``"memory"`` an ``LRUCache``, ``"redis://..."`` (``rediss://``, ``unix://``)
    a ``RedisCache``, ``"off"`` a ``NullCache``."""
    if spec is None or spec.strip().lower() in ("", "memory"):
        return LRUCache(max_items, ttl_s)
    if spec.strip().lower() in ("off", "none"):
        return NullCache()
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisCache(spec, ttl_s)
    raise ValueError(f"unknown query cache {spec!r}: 'memory', 'off' or a redis:// URL")


class CachedQueryEncoder:
    """An encoder (``encode(texts) -> [n, dim]``) behind a query cache: only misses are encoded, in one batch.

    ``namespace`` prefixes every key (default: the encoder's ``fingerprint`` when it has one, else ``""``).
    The encoder gets the first spelling seen of each missing key, as typed, or with ``encode_normalised`` the
    normalised text (see the module notes)."""

    def __init__(self, encoder, cache=None, namespace: str | None = None, encode_normalised: bool = False):
        self.encoder = encoder
        self.encode_normalised = encode_normalised
        self.cache = cache if cache is not None else LRUCache()
        self.namespace = namespace if namespace is not None else str(getattr(encoder, "fingerprint", ""))

    def encode(self, queries: Sequence[str], languages: Sequence[str | None] | str | None = None) -> np.ndarray:
        queries = list(queries)
        if languages is None or isinstance(languages, str):
            languages = [languages] * len(queries)
        if len(languages) != len(queries):
            raise ValueError(f"{len(queries)} queries but {len(languages)} languages")
        keys = [cache_key(q, lang, self.namespace) for q, lang in zip(queries, languages)]
        found = self.cache.get_many(keys)
        missing: dict[str, str] = {}  # key -> normalised text, each distinct miss once
        for k, q, v in zip(keys, queries, found):
            if v is None and k not in missing:
                missing[k] = normalise_query(q) if self.encode_normalised else q
        fresh: dict[str, np.ndarray] = {}
        if missing:
            vecs = np.asarray(self.encoder.encode(list(missing.values())), dtype=np.float32)
            fresh = dict(zip(missing, vecs))
            self.cache.put_many(list(fresh), vecs)
        rows = [v if v is not None else fresh[k] for k, v in zip(keys, found)]
        if not rows:
            return np.zeros((0, int(getattr(self.encoder, "dim", 0))), np.float32)
        return np.stack(rows).astype(np.float32, copy=False)

    __call__ = encode

    def stats(self) -> dict:
        c = self.cache
        hits, misses = c.hits, c.misses
        return {"hits": hits, "misses": misses, "hit_rate": hits / (hits + misses) if hits + misses else 0.0,
                "size": c.size, "evictions": c.evictions, "errors": getattr(c, "errors", 0)}
