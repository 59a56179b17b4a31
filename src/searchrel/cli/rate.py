"""``searchrel rate ...``: the rating round — a sheet of the pairs whose human label would help most, and the
experiment that checks suggested ratings beat random ones on the synthetic world."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from searchrel.cli.common import console, user_errors

rate_app = typer.Typer(help="The rating round: suggest pairs for people to grade (then `searchrel import ratings`).",
                       no_args_is_help=True)

Run = Annotated[Path, typer.Argument(help="a pipeline run directory (searchrel run ... --out RUN)")]


def _shares(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--shares {text!r}: expected reason=weight,..., e.g. disagree=0.4,uncertain=0.4,"
                             f"uncovered=0.2") from None
    return out


@rate_app.command("suggest")
@user_errors
def suggest_cmd(
    run: Run,
    budget: Annotated[int, typer.Option(min=1, help="rows in the sheet: pairs to grade")] = 200,
    out: Annotated[Path, typer.Option(help="the sheet to write (CSV)")] = Path("ratings.csv"),
    languages: Annotated[Optional[str], typer.Option(
        help="only queries in these languages, comma-separated (default: all; e.g. the teacher's train languages)"
    )] = None,
    per_query: Annotated[int, typer.Option(min=1, help="at most this many rows of one query")] = 3,
    shares: Annotated[Optional[str], typer.Option(
        help="budget share per reason (default disagree=0.4,uncertain=0.4,uncovered=0.2)")] = None,
    student: Annotated[Optional[Path], typer.Option(
        help="the student whose disagreement with the teacher counts (default: the run's served student)")] = None,
) -> None:
    """Pick the pairs whose human label would help most: teacher uncertainty, teacher-student disagreement, the
    queries and languages with the fewest labels; train-split queries only; one reason per row."""
    from searchrel.data.dataset import load_dataset
    from searchrel.data.ratings import write_sheet
    from searchrel.experiments.rating_round import SuggestConfig, candidates, suggest, summary
    from searchrel.experiments.rating_value import served_student
    from searchrel.layout import RunLayout

    at = RunLayout(run)
    ds = load_dataset(at.dataset)
    langs = [x for x in languages.split(",") if x] if languages else None
    cfg = SuggestConfig(budget=budget, per_query=per_query, languages=langs,
                        **({"shares": _shares(shares)} if shares else {}))
    pool = candidates(ds, at.labels, student or served_student(run), at.ratings, langs)
    if pool.empty:
        raise ValueError(f"{run}: no pair left to suggest (every labelled pair of a train query is judged or rated)")
    sheet = suggest(ds, pool, cfg)
    write_sheet(sheet, out)
    s = summary(sheet)
    console.print(f"{s['rows']} pairs over {s['queries']} queries from a pool of {len(pool):,}: "
                  f"by reason {s['by_reason']}, by language {s['by_language']}")
    console.print(f"-> {out}: fill in grade ({ds.info.scale.min}..{ds.info.scale.max}) and rater, then "
                  f"`searchrel import ratings {out} {run}`")


@rate_app.command("experiment")
@user_errors
def experiment_cmd(
    run: Run,
    out: Annotated[Path, typer.Option(help="where the teachers and rating-value.md/.json go")],
    budget: Annotated[int, typer.Option(min=1, help="ratings added per arm")] = 200,
    seeds: Annotated[int, typer.Option(min=1, help="training seeds (and random draws)")] = 3,
    split: Annotated[str, typer.Option(help="the split the teachers are measured on")] = "test",
) -> None:
    """On a synthetic-world run: the teacher retrained with +BUDGET suggested ratings vs +BUDGET random ones (the
    world's true grades as the rater), against the judgments alone; mean and spread over seeds."""
    from searchrel.experiments.rating_value import RatingValueConfig, rating_value

    res = rating_value(run, out, RatingValueConfig(budget=budget, seeds=seeds, split=split))
    for arm, row in res["arms"].items():
        console.print(f"{arm:>15}: " + "  ".join(f"{m} {v['mean']:.4f} ± {v['sd']:.4f}" for m, v in row.items()))
    console.print(f"-> {out / 'rating-value.md'}, {out / 'rating-value.json'}")
