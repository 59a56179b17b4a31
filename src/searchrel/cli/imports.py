"""``searchrel import ...``: turn CrowdFlower, ESCI or any table of judged pairs into a searchrel dataset; bring a
completed rating sheet back into a pipeline run (``import ratings``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from searchrel.data.dataset import DatasetError, load_dataset
from searchrel.data.importers import (
    ImportReport,
    import_crowdflower,
    import_esci,
    import_table,
    parse_fields,
    parse_scale,
    save_import,
)
from searchrel.data.ratings import import_ratings
from searchrel.layout import RunLayout
from searchrel.locks import exclusive

import_app = typer.Typer(help="Import judged query–item pairs (CrowdFlower, ESCI, any CSV/JSONL/Parquet table) "
                              "into a searchrel dataset.", no_args_is_help=True)
out_console = Console()
err_console = Console(stderr=True)

Out = Annotated[Path, typer.Argument(help="dataset directory to write (replaced atomically if it is one)")]
SkipBad = Annotated[bool, typer.Option("--skip-bad", help="quarantine bad rows and go on (default: stop at the "
                                                          "first, naming its row and reason)")]
Quarantine = Annotated[Optional[Path], typer.Option(help="where bad rows go with --skip-bad "
                                                         "(default: OUT/quarantine.csv)")]


def _finish(run, out: Path, quarantine: Path | None, what: str) -> ImportReport:
    """Run an import, save it, print the summary; bad input ends in one line and exit code 2."""
    try:
        ds, report = run()
        save_import(ds, report, out, quarantine)
    except (DatasetError, OSError) as e:
        err_console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    table = Table(title=f"imported {what}", title_justify="left", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in report.summary():
        table.add_row(key, value)
    out_console.print(table)
    if report.skipped:
        out_console.print(f"[yellow]{report.skipped:,} bad row(s) quarantined in {report.quarantine}[/yellow]")
    out_console.print(f"dataset written to [bold]{report.out}[/bold]")
    return report


@import_app.command("crowdflower")
def crowdflower(csv: Annotated[Path, typer.Argument(help="CrowdFlower train/dev CSV")], out: Out,
                translations: Annotated[Optional[Path], typer.Option(
                    help="JSONL of {\"en\": query, \"es\": ..., ...}: add each query's translations")] = None,
                skip_bad: SkipBad = False, quarantine: Quarantine = None,
                name: Annotated[str, typer.Option(help="dataset name")] = "crowdflower") -> None:
    """CrowdFlower Search Results Relevance CSV (1–4 scale, relevant from 3)."""
    _finish(lambda: import_crowdflower(csv, translations=translations, skip_bad=skip_bad, name=name),
            out, quarantine, "crowdflower")


@import_app.command("esci")
def esci(out: Out,
         examples: Annotated[Path, typer.Option(help="shopping_queries_dataset_examples.parquet")],
         products: Annotated[Path, typer.Option(help="shopping_queries_dataset_products.parquet")],
         small_version: Annotated[bool, typer.Option("--small-version",
                                                     help="keep only small_version == 1 rows")] = False,
         valid_fraction: Annotated[float, typer.Option(min=0.0, max=0.9, help="share of ESCI train queries "
                                                                                 "carved out as valid")] = 0.1,
         skip_bad: SkipBad = False, quarantine: Quarantine = None,
         name: Annotated[str, typer.Option(help="dataset name")] = "esci") -> None:
    """Amazon Shopping Queries (ESCI): E/S/C/I → 4/3/2/1, ESCI's own train/test kept."""
    _finish(lambda: import_esci(examples, products, small_version=small_version, skip_bad=skip_bad,
                                valid_fraction=valid_fraction, name=name), out, quarantine, "esci")


@import_app.command("table")
def table(file: Annotated[Path, typer.Argument(help="CSV, TSV, JSONL or Parquet; one judged pair per row")],
          out: Out,
          query: Annotated[str, typer.Option(help="column with the query text")],
          label: Annotated[str, typer.Option(help="column with the integer grade")],
          scale: Annotated[str, typer.Option(help="grade range MIN:MAX, e.g. 1:4")],
          field: Annotated[list[str], typer.Option(help="item field NAME=COLUMN (repeat), e.g. title=product_title")],
          relevant_min: Annotated[Optional[int], typer.Option(
              help="lowest relevant grade (default: upper half)")] = None,
          item_id: Annotated[Optional[str], typer.Option(help="column with an item id (default: items keyed by "
                                                              "their field texts)")] = None,
          language: Annotated[Optional[str], typer.Option(help="column with the query language")] = None,
          default_language: Annotated[str, typer.Option(help="language when there is no --language column")] = "en",
          item_language: Annotated[Optional[str], typer.Option(help="language of every item (default: that of the "
                                                                    "row first naming it)")] = None,
          country: Annotated[Optional[str], typer.Option(help="column with the query country")] = None,
          query_group: Annotated[Optional[str], typer.Option(help="column whose equal values keep queries in one "
                                                                  "split (e.g. a query and its translations)")] = None,
          skip_bad: SkipBad = False, quarantine: Quarantine = None,
          name: Annotated[Optional[str], typer.Option(help="dataset name (default: the file's stem)")] = None) -> None:
    """Any table of judged (query, item) pairs, mapped by column names."""
    def run():
        return import_table(file, query=query, label=label, fields=parse_fields(field), scale=parse_scale(scale),
                            relevant_min=relevant_min, item_id=item_id, language=language, country=country,
                            query_group=query_group, default_language=default_language,
                            item_language=item_language, skip_bad=skip_bad, name=name)
    _finish(run, out, quarantine, file.name)


@import_app.command("ratings")
def ratings(sheet: Annotated[Path, typer.Argument(help="a completed rating sheet (CSV: query_id, item_id, grade, "
                                                       "rater; from `searchrel rate suggest` or the workbench)")],
            run: Annotated[Path, typer.Argument(help="the pipeline run directory the sheet was made from")],
            skip_unrated: Annotated[bool, typer.Option("--skip-unrated", help="leave rows without a grade out "
                                                       "(default: an empty grade is an error)")] = False) -> None:
    """Bring a completed rating sheet back as judgments of RUN: validated (every bad row listed with its row number),
    added to RUN/ratings/ratings.parquet; the next `searchrel run ... --out RUN` retrains what the labels reach."""
    at = RunLayout(run)
    try:
        if not at.dataset.is_dir():
            raise DatasetError(f"{run}: not a pipeline run directory (no dataset/ in it)")
        with exclusive(run / ".lock", f"{run}: a `searchrel run` is writing this run directory; import when it ends"):
            res = import_ratings(sheet, load_dataset(at.dataset), at.ratings, skip_unrated)
    except (DatasetError, OSError) as e:
        err_console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    skipped = f", {res['unrated_rows']} row(s) without a grade left out" if res["unrated_rows"] else ""
    out_console.print(f"imported {res['ratings']} rating(s) of {res['pairs']} pair(s) over {res['queries']} "
                      f"queries by {', '.join(res['raters'])}{skipped}; by language {res['by_language']}")
    out_console.print(f"{res['store_ratings']} rating(s) in [bold]{res['store']}[/bold]; next: "
                      f"`searchrel run CONFIG --out {run}` retrains the teacher and what reads it")
