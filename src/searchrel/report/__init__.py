"""The run report: one self-contained HTML page and a Markdown twin that tell what a ``searchrel run`` did and
how its systems compare — ``collect`` reads the run, ``sections`` builds the content (figures via ``charts``,
derived numbers via ``analysis``), ``render`` writes it."""

from __future__ import annotations

from pathlib import Path

from searchrel.layout import RunLayout
from searchrel.report.collect import collect
from searchrel.report.document import Details, Figure
from searchrel.report.render import to_html, to_markdown
from searchrel.report.sections import build_document

CHARTS = ("comparison", "by-language", "confusion", "calibration", "ablation", "curve", "latency")


def build_report(run_dir: Path, out: Path | None = None) -> dict[str, Path]:
    """Write ``report.html``, ``report.md`` and the chart PNGs into ``out`` (default ``RUN_DIR/report``);
    return their paths by name (``html``, ``markdown``, then one per chart). Raises FileNotFoundError/ValueError
    when ``run_dir`` is no run directory; parts of a run that are missing become notes in the report."""
    run = collect(Path(run_dir))
    out = Path(out) if out is not None else RunLayout(run.path).report
    out.mkdir(parents=True, exist_ok=True)
    for name in CHARTS:  # a chart of an earlier report whose part this run lacks must not linger
        (out / f"{name}.png").unlink(missing_ok=True)
    doc = build_document(run, out)
    paths = {"html": out / "report.html", "markdown": out / "report.md"}
    paths["html"].write_text(to_html(doc), encoding="utf-8")
    paths["markdown"].write_text(to_markdown(doc), encoding="utf-8")

    def figures(blocks):
        for b in blocks:
            if isinstance(b, Figure):
                yield b
            elif isinstance(b, Details):
                yield from figures(b.blocks)

    paths |= {f.path.stem: f.path for s in doc.sections for f in figures(s.blocks)}
    return paths


__all__ = ["build_report"]
