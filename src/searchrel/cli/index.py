"""CLI: ``index build`` and ``index refresh`` — the student's item embedding index (vectors, feature state, FAISS)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from searchrel.cli.common import console, user_errors
from searchrel.index import MANIFEST, IndexConfig

index_app = typer.Typer(help="The item embedding index of a student (versioned, refreshed incrementally).",
                        no_args_is_help=True)
_C = IndexConfig().model_dump()


def _config(backend: str, batch_size: int, ray_address: str | None, ray_actors: int, faiss: str,
            keep: int) -> IndexConfig:
    if backend not in ("local", "ray"):
        raise ValueError(f"--backend must be local or ray, got {backend!r}")
    if faiss not in ("auto", "flat", "hnsw"):
        raise ValueError(f"--faiss must be auto, flat or hnsw, got {faiss!r}")
    return IndexConfig(backend=backend, batch_size=batch_size, ray_address=ray_address, ray_actors=ray_actors,
                       faiss=faiss, keep=keep)  # type: ignore[arg-type]


def _summary(vdir: Path) -> None:
    m = json.loads((vdir / MANIFEST).read_text())
    c, t = m["counts"], m["timings_s"]
    if m["full_build_reason"]:
        console.print(f"full build ({m['full_build_reason']})")
    console.print(f"index version {m['version']}: {m['n_items']:,} items ({c['new']:,} new, {c['changed']:,} changed, "
                  f"{c['unchanged']:,} unchanged, {c['deleted']:,} deleted); {c['embedded']:,} embedded, "
                  f"{c['copied']:,} copied; {t['total_s']:.1f} s (embedding {t['embed_s']:.1f} s, "
                  f"FAISS {m['faiss']['kind']} {t['faiss_s']:.2f} s) -> {vdir}")


_STUDENT = typer.Argument(..., help="a student directory (student.json, model.safetensors)")
_DATASET = typer.Argument(..., help="dataset directory whose items are indexed")
_OUT = typer.Option(..., help="index directory (versions/, CURRENT)")
_BACKEND = typer.Option(_C["backend"], help="local (this process) or ray (Ray Data actor pool)")
_BATCH = typer.Option(_C["batch_size"], help="texts per tower forward pass")
_ADDRESS = typer.Option(None, help="Ray cluster address (default: start a local Ray)")
_ACTORS = typer.Option(_C["ray_actors"], help="students in the Ray actor pool")
_FAISS = typer.Option(_C["faiss"], help=f"auto (flat below {_C['hnsw_min_items']:,} items, else HNSW), flat or hnsw")
_KEEP = typer.Option(_C["keep"], help="versions kept after publishing (the live one included)")


def _command(update: str, doc: str):
    """``index build`` and ``index refresh`` take the same options and differ only in the build function."""

    @user_errors
    def command(student: Path = _STUDENT, dataset: Path = _DATASET, out: Path = _OUT, backend: str = _BACKEND,
                batch_size: int = _BATCH, ray_address: str | None = _ADDRESS, ray_actors: int = _ACTORS,
                faiss: str = _FAISS, keep: int = _KEEP) -> None:
        from searchrel.index import build  # the index pulls in the student (torch): loaded when run

        cfg = _config(backend, batch_size, ray_address, ray_actors, faiss, keep)
        _summary(getattr(build, update)(student, dataset, out, cfg))

    command.__doc__ = doc
    return command


index_app.command("build")(_command("build_index", "Embed every item and publish a new index version."))
index_app.command("refresh")(_command("refresh_index", "Re-embed only new and changed items, copy the rest, drop "
                                                       "deleted ones; a full build if the model changed."))
