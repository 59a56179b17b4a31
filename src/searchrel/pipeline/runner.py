"""Run a list of stages into one directory, skipping every stage whose inputs are unchanged.

A stage's key is a sha256 over its own parameters and the keys of the stages it reads from, so keys chain: a
change anywhere reaches exactly the stages downstream of it. Each stage writes ``stages/<name>.json`` — key,
parameters, upstream keys, status, timings, metrics, artefacts — before it starts (``running``) and when it ends
(``done`` or ``failed`` with the error). A rerun reuses a ``done`` stage with the same key whose artefacts are all
there and none of whose upstream stages ran again in this run (``--force``, lost artefacts); a resumable stage
(teacher training, labelling) interrupted with the same key continues where it stopped; anything else is removed
and run again. Stages a config no longer plans (a dropped amplification factor, a disabled ablation) lose their
artefacts and records, so nothing stale reaches the report. ``run.json`` sums the run up after every stage.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from searchrel import __version__
from searchrel.io import write_json
from searchrel.layout import RunLayout
from searchrel.locks import exclusive
from searchrel.progress import console


@dataclass
class Stage:
    """One step of the pipeline: what it reads (deps), what it depends on (params), what it owns (outputs)."""

    name: str
    run: Callable[[], dict]  # does the work; returns the stage's metrics (JSON-able)
    params: dict = field(default_factory=dict)
    deps: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # paths under the run directory, removed before a fresh run
    resumable: bool = False  # an interrupted run with the same key continues instead of starting over


def stage_key(stage: Stage, upstream: dict[str, str]) -> str:
    blob = json.dumps({"stage": stage.name, "params": stage.params, "deps": {d: upstream[d] for d in stage.deps},
                       "searchrel": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_record(out: Path, name: str) -> dict | None:
    path = RunLayout(out).record(name)
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _drop_unplanned(out: Path, planned: set[str]) -> None:
    for path in sorted(RunLayout(out).records.glob("*.json")):
        if path.stem in planned:
            continue
        rec = read_record(out, path.stem) or {}
        for artefact in rec.get("artefacts", []):
            _remove(out / artefact)
        path.unlink()
        console.print(f"[dim]stage {path.stem}: no longer planned, its artefacts removed[/]")


def run_stages(stages: list[Stage], out: Path, name: str, config: dict, force: frozenset[str] = frozenset()) -> dict:
    """Run ``stages`` in order into ``out``; return the run summary (also written to ``out/run.json``). One run at
    a time per directory: a second one is refused while the first holds ``out/.lock``."""
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out / ".lock", f"{out}: another `searchrel run` is writing this run directory"):
        return _run(stages, out, name, config, force)


def _run(stages: list[Stage], out: Path, name: str, config: dict, force: frozenset[str]) -> dict:
    at = RunLayout(out)
    at.records.mkdir(exist_ok=True)
    unknown = set(force) - {s.name for s in stages} - {"all"}
    if unknown:
        raise ValueError(f"--force {', '.join(sorted(unknown))}: no such stage (stages: "
                         f"{', '.join(s.name for s in stages)})")
    summary = {"name": name, "config": config, "stages": [], "started": now(), "finished": None}
    _drop_unplanned(out, {s.name for s in stages})
    keys: dict[str, str] = {}
    ran: set[str] = set()  # stages that ran in this call: what reads them is stale even with its key unchanged
    for stage in stages:
        missing = [d for d in stage.deps if d not in keys]
        if missing:
            raise ValueError(f"stage {stage.name} reads {', '.join(missing)}, which does not run before it")
        key = keys[stage.name] = stage_key(stage, keys)
        rec = read_record(out, stage.name)
        outputs = [out / p for p in stage.outputs]
        forced = "all" in force or stage.name in force or any(d in ran for d in stage.deps)
        if (not forced and rec and rec.get("key") == key and rec.get("status") == "done"
                and all(p.exists() for p in outputs)):
            console.print(f"[dim]stage {stage.name}: unchanged, reused ({rec.get('seconds', 0):.1f} s last time)[/]")
            summary["stages"].append({"name": stage.name, "status": "skipped", "key": key,
                                      "seconds": rec.get("seconds")})
            continue
        resume = stage.resumable and not forced and rec is not None and rec.get("key") == key
        if not resume:
            for p in outputs:
                _remove(p)
        record = {"stage": stage.name, "key": key, "params": stage.params,
                  "deps": {d: keys[d] for d in stage.deps}, "status": "running", "started": now(),
                  "resumed": resume, "seconds": None, "metrics": {}, "artefacts": stage.outputs}
        write_json(at.record(stage.name), record)
        console.rule(f"[bold]stage {stage.name}[/]" + (" (resuming)" if resume else ""))
        t0 = time.perf_counter()
        ran.add(stage.name)
        try:
            metrics = stage.run() or {}
        except BaseException as e:  # KeyboardInterrupt too: the record must say the stage did not finish
            console.print(f"[bold red]stage {stage.name} failed[/] after {time.perf_counter() - t0:.1f} s "
                          f"(record: {at.record(stage.name)})")
            record.update(status="failed", seconds=round(time.perf_counter() - t0, 2),
                          error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=20))
            write_json(at.record(stage.name), record)
            summary["stages"].append({"name": stage.name, "status": "failed", "key": key,
                                      "seconds": record["seconds"]})
            write_json(at.summary, summary)
            raise
        record.update(status="done", seconds=round(time.perf_counter() - t0, 2), finished=now(), metrics=metrics)
        write_json(at.record(stage.name), record)
        summary["stages"].append({"name": stage.name, "status": "done", "key": key, "seconds": record["seconds"]})
        write_json(at.summary, summary)
        console.print(f"stage {stage.name}: done in {record['seconds']:.1f} s")
    summary["finished"] = now()
    write_json(at.summary, summary)
    return summary
