"""The ``searchrel`` command line: a thin Typer layer; each command loads config, calls one library function
and says where its result went.

Most commands import the library inside their functions, on purpose: training, labelling and serving pull in
transformers, FastAPI and Ray, which ``searchrel --help`` and a mistyped option should not wait for; only the
typed configs the options are declared from are imported here.
"""

from __future__ import annotations

import typer

from searchrel.cli import data, evaluation, experiments, pipeline, report
from searchrel.cli.distill import distill_app
from searchrel.cli.imports import import_app
from searchrel.cli.index import index_app
from searchrel.cli.models import models_app
from searchrel.cli.rate import rate_app
from searchrel.cli.serve import serve_cmd
from searchrel.cli.simulate import simulate_cmd
from searchrel.cli.student import student_app
from searchrel.cli.teacher import teacher_app

app = typer.Typer(name="searchrel", help=__doc__, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  add_completion=False)
app.command("synth")(data.synth_cmd)
app.add_typer(import_app, name="import")
app.add_typer(rate_app, name="rate")
app.add_typer(data.annotate_app, name="annotate")
app.command("split")(data.split_cmd)
app.command("eval")(evaluation.eval_cmd)
app.add_typer(evaluation.baseline_app, name="baseline")
app.add_typer(teacher_app, name="teacher")
app.add_typer(distill_app, name="distill")
app.add_typer(student_app, name="student")
app.add_typer(index_app, name="index")
app.command("serve")(serve_cmd)
app.add_typer(models_app, name="models")
app.command("compare")(experiments.compare_cmd)
app.command("ablate")(experiments.ablate_cmd)
app.command("run")(pipeline.run_cmd)
app.command("report")(report.report_cmd)
app.command("simulate")(simulate_cmd)
