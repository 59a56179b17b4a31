"""The one-command pipeline: a TOML config describes a whole experiment, ``searchrel run`` executes it stage by
stage into one run directory and redoes only what a change reaches (see ``runner`` and ``stages``)."""

from __future__ import annotations

from pathlib import Path

from searchrel.layout import RunLayout
from searchrel.pipeline.config import PipelineConfig, load_config
from searchrel.pipeline.runner import run_stages
from searchrel.pipeline.stages import plan


def run_pipeline(cfg: PipelineConfig, out: str | Path, force: list[str] | None = None) -> dict:
    """Run every stage of ``cfg`` into ``out`` (reusing unchanged ones); return the run summary."""
    out = Path(out)
    run, stages = plan(cfg, out)
    out.mkdir(parents=True, exist_ok=True)
    RunLayout(out).config.write_text(cfg.model_dump_json(indent=2) + "\n")
    summary = run_stages(stages, out, cfg.name, cfg.model_dump(mode="json"), frozenset(force or []))
    summary["served_student"] = str(run.served_student())
    return summary


__all__ = ["PipelineConfig", "load_config", "run_pipeline"]
