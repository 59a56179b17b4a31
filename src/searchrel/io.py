"""Small file helpers every layer shares: content hashes, atomic JSON writes, reading a directory's JSON config.

Atomic means written to a temporary name beside the target and renamed into place: a reader (or a run restarted
after kill -9) sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

BLOCK = 1 << 20  # bytes read at a time: hashing a multi-GB weights file never holds it in memory


def _update(h, path: Path) -> None:
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            h.update(block)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    _update(h, Path(path))
    return h.hexdigest()


def sha256_named(files: Iterable[tuple[str, Path]]) -> str:
    """Hex sha256 over ``(name, path)`` pairs in the order given: each name, a NUL, then the file's bytes — so a
    renamed file changes the hash as an edited one does."""
    h = hashlib.sha256()
    for name, path in files:
        h.update(name.encode() + b"\0")
        _update(h, path)
    return h.hexdigest()


def sha256_tree(path: str | Path) -> str:
    """Content hash of a file, or of every file under a directory (relative names and bytes, sorted)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    if not files:
        raise FileNotFoundError(f"{path}: no such file or directory")
    return sha256_named((str(f.relative_to(path)) if f != path else f.name, f) for f in files)


def write_json(path: str | Path, data) -> Path:
    """Write ``data`` as indented JSON atomically (values JSON cannot hold are written as their ``str``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def read_config(directory: str | Path, name: str, what: str) -> dict:
    """``directory/name`` parsed, or an error saying the directory is not a ``what`` directory."""
    path = Path(directory) / name
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: not a {what} directory ({name} is missing)")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
