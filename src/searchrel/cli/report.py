"""CLI: ``report`` — the run directory of ``searchrel run`` as one self-contained HTML page and Markdown."""

from __future__ import annotations

from pathlib import Path

import typer

from searchrel.cli.common import console, user_errors


@user_errors
def report_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory written by `searchrel run CONFIG`"),
    out: Path | None = typer.Option(None, "--out", help="folder for report.html, report.md and the charts "
                                                        "(default: RUN_DIR/report)"),
) -> None:
    """Write the run's report: comparison, slices, confusion, calibration, ablation, curve, latency, disagreements."""
    from searchrel.report import build_report

    paths = build_report(run_dir, out)
    console.print(f"report: {paths['html']} (self-contained), {paths['markdown']} "
                  f"(+ {len(paths) - 2} charts beside it)")
