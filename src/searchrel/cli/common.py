"""What every CLI command shares: turning user errors into one clear line and a non-zero exit."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from searchrel.annotate.text import TextConfig
from searchrel.data.dataset import DatasetError
from searchrel.models.registry import ModelError
from searchrel.models.training import BudgetSpent

F = TypeVar("F", bound=Callable)
# Off a terminal (pipes, CI logs) Rich would wrap tables at 80 columns; metric tables need more.
console = Console(width=None if sys.stdout.isatty() else 180)
err_console = Console(stderr=True)

USER_ERRORS = (DatasetError, ModelError, ValidationError, ValueError, FileNotFoundError, FileExistsError, KeyError,
               BudgetSpent)


def user_errors(fn: F) -> F:
    """Report bad input as ``error: ...`` with exit code 2 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as e:
            msg = str(e) if not isinstance(e, KeyError) else f"unknown name {e}"
            err_console.print(f"[bold red]error:[/] {escape(msg)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def write_table(df, out: Path) -> None:
    """Write a result table as Parquet (``.parquet``) or CSV (anything else), creating the folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        df.to_parquet(out, index=False)
    else:
        df.to_csv(out, index=False)


def text_config(ds, fields: str | None, budgets: str | None) -> TextConfig:
    """The item text of ``--fields``/``--budgets`` (default: the core fields the dataset fills), checked against it."""
    cfg = TextConfig.parse(fields, budgets) if fields else TextConfig.default_for(ds.items)
    if budgets and not fields:
        cfg = TextConfig.parse(",".join(cfg.fields), budgets)
    cfg.check(ds.text_fields)
    return cfg
