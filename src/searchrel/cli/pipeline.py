"""``searchrel run``: a whole experiment from one TOML config, redoing only the stages a change reaches."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from searchrel.cli.common import console, user_errors
from searchrel.layout import RunLayout


@user_errors
def run_cmd(config: Annotated[str, typer.Argument(help="a TOML config, or a built-in one: demo, crowdflower")],
            out: Annotated[Optional[Path], typer.Option(help="run directory (default: runs/<config name>)")] = None,
            set_: Annotated[Optional[list[str]], typer.Option("--set", help="override a config key: "
                                                              "section.key=value (repeat)")] = None,
            force: Annotated[Optional[list[str]], typer.Option(help="rerun this stage even if unchanged (repeat; "
                                                               "'all' for every stage)")] = None,
            dry_run: Annotated[bool, typer.Option("--dry-run", help="validate the config and list the stages, "
                                                  "with which would run and which would be reused")] = False) -> None:
    """Run the pipeline — data, baselines, teacher, ablation, distillation, students, index, evaluation, latency,
    report — skipping every stage whose inputs are unchanged since the last run into the same directory."""
    from searchrel.pipeline import load_config, run_pipeline

    cfg = load_config(config, set_)
    out = out or Path("runs") / cfg.name
    if dry_run:
        _show_plan(cfg, out, set(force or []))
        return
    summary = run_pipeline(cfg, out, force)
    table = Table(title=f"run {cfg.name} → {out}", title_justify="left")
    for col in ("stage", "status", "seconds"):
        table.add_column(col, justify="right" if col == "seconds" else "left")
    for s in summary["stages"]:
        reused = s["status"] == "skipped"
        table.add_row(s["name"], "reused" if reused else "ran", "-" if reused else f"{s['seconds'] or 0:.1f}")
    console.print(table)
    report = RunLayout(out).report / "report.html"
    if report.exists():
        console.print(f"report: [bold]{report}[/] (and report.md beside it)")
    teacher = f" --teacher {out / 'teacher'}"
    console.print("serve it, with the relevance workbench at http://127.0.0.1:8000/ :\n"
                  f"  searchrel serve --index {out / 'index'} --student {summary['served_student']} "
                  f"--data {out / 'dataset'}{teacher}")


def _show_plan(cfg, out: Path, force: set[str]) -> None:
    from searchrel.pipeline.runner import read_record, stage_key
    from searchrel.pipeline.stages import plan

    _, stages = plan(cfg, out)
    unknown = force - {s.name for s in stages} - {"all"}
    if unknown:
        raise ValueError(f"--force {', '.join(sorted(unknown))}: no such stage")
    keys: dict[str, str] = {}
    runs: set[str] = set()
    table = Table(title=f"plan of {cfg.name} → {out}", title_justify="left")
    for col in ("stage", "reads", "would"):
        table.add_column(col)
    for s in stages:  # the runner's rule: same key, done, artefacts there, nothing it reads runs again
        keys[s.name] = stage_key(s, keys)
        rec = read_record(out, s.name)
        same = rec is not None and rec.get("key") == keys[s.name] and rec.get("status") == "done" \
            and all((out / p).exists() for p in s.outputs)
        if not same or "all" in force or s.name in force or any(d in runs for d in s.deps):
            runs.add(s.name)
        table.add_row(s.name, ", ".join(s.deps) or "-", "run" if s.name in runs else "reuse")
    console.print(table)
