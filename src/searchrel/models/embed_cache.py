"""A disk cache of text embeddings, so that a text is embedded once per model however many stages ask for it.

Keyed by the model's fingerprint (its weights' sha256 from the manifest, or the weight file's path, size and
mtime), the precision, the truncation length and the exact text with its prompt; one SQLite file per fingerprint
under ``$SEARCHREL_HOME/embeddings``. Encoding EmbeddingGemma's 7,000 CrowdFlower items takes minutes on two
cores; the baselines, the teacher's members, the student's feature and labelling all need them. Turn it off with
``SEARCHREL_EMBED_CACHE=0``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path

import numpy as np

from searchrel.models.registry import MANIFEST, searchrel_home


def enabled() -> bool:
    return os.environ.get("SEARCHREL_EMBED_CACHE", "1").lower() not in ("0", "false", "no", "off")


def fingerprint(model_dir: Path, precision: str) -> str:
    """What identifies a model's embeddings: its weights (by hash where a manifest has one) and the precision."""
    weights = next((model_dir / n for n in ("model.safetensors", "pytorch_model.bin") if (model_dir / n).is_file()),
                   None)
    try:
        files = json.loads((model_dir / MANIFEST).read_text())["files"]
        ident = files["model.safetensors"]["sha256"]
    except (OSError, ValueError, KeyError):
        st = weights.stat() if weights else None
        ident = f"{model_dir.resolve()}:{st.st_size if st else 0}:{st.st_mtime_ns if st else 0}"
    return hashlib.sha256(f"{ident}:{precision}".encode()).hexdigest()[:24]


class EmbeddingCache:
    """``get(keys) -> (vectors or None per key)`` and ``put(keys, vectors)`` over one SQLite file (thread-safe)."""

    def __init__(self, fingerprint: str, root: Path | None = None):
        root = root or searchrel_home() / "embeddings"
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / f"{fingerprint}.sqlite"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=60)
        self._db.execute("CREATE TABLE IF NOT EXISTS emb (key BLOB PRIMARY KEY, vec BLOB NOT NULL)")

    @staticmethod
    def key(text: str, max_length: int, normalize: bool) -> bytes:
        return hashlib.sha256(f"{max_length}:{int(normalize)}:{text}".encode()).digest()[:20]

    def get(self, keys: list[bytes]) -> list[np.ndarray | None]:
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                part = keys[start:start + 500]
                rows = self._db.execute(f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(part))})", part)
                found.update((k, np.frombuffer(v, np.float32)) for k, v in rows)
        return [found.get(k) for k in keys]

    def put(self, keys: list[bytes], vectors: np.ndarray) -> None:
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)",
                                 [(k, np.ascontiguousarray(v, np.float32).tobytes()) for k, v in zip(keys, vectors)])
