"""The ``searchrel`` command line: a thin Typer layer; each command loads config, calls one library function
and says where its result went."""

from __future__ import annotations

import typer

from searchrel.cli import data, evaluation
from searchrel.cli.imports import import_app

app = typer.Typer(name="searchrel", help=__doc__, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  add_completion=False)
app.add_typer(import_app, name="import")
app.command("annotate")(data.annotate_cmd)
app.command("split")(data.split_cmd)
app.command("eval")(evaluation.eval_cmd)
app.add_typer(evaluation.baseline_app, name="baseline")
