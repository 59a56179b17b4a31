"""The report's content: one function per section turns the collected run into tables, figures (drawn into the
report folder) and notes; a part the run lacks becomes a one-line "not part of this run"."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from searchrel.eval.charts import bar_chart, line_chart
from searchrel.eval.evaluate import EvalResult
from searchrel.eval.paired import p_text, points
from searchrel.eval.tables import HEADLINE
from searchrel.report import analysis
from searchrel.report import charts as C
from searchrel.report.collect import READ_ERRORS, Run, System, describe, predicted_grades
from searchrel.report.document import Bold, Details, Document, Figure, Markup, Note, Paragraph, Section, Table

PRIMARY = "ndcg@8"  # the metric the per-slice tables, the ablation and the curve follow
N_DISAGREEMENTS = 15
LABELS = {"ndcg@8": "NDCG@8", "ndcg@20": "NDCG@20", "p@8": "P@8", "accuracy": "accuracy", "macro_f1": "macro-F1",
          "qwk": "QWK"}


def num(v: float | None, digits: int = 3) -> str:
    """A metric as every table shows it (n/a for a metric a system does not have)."""
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def metric_label(key: str) -> str:
    if key.startswith("auroc@>="):
        return f"AUROC ≥{key.removeprefix('auroc@>=')}"
    return LABELS.get(key, key)


def missing(run: Run, what: str) -> Note:
    """"Not part of this run", or, where the file is there but unreadable, why it could not be read."""
    part = what.split(",")[0]
    problem = next((p for p in run.problems if p.startswith(part)), None)
    return Note(problem) if problem else Note(f"Not part of this run (no {what}).")


TITLES = {  # section id -> heading, in reading order
    "run": "What was run",
    "comparison": "Systems compared",
    "by-language": "Per language",
    "by-country": "Per country",
    "confusion": "Confusion matrices",
    "calibration": "Calibration of the grade probabilities",
    "ablation": "Feature ablation",
    "curve": "Amplification curve",
    "online": "Online experiment (simulated users)",
    "latency": "Latency",
    "disagreements": "Where the teacher and the student disagree most",
}


def _section(sid: str) -> Section:
    return Section(sid, TITLES[sid])


def build_document(run: Run, out: Path) -> Document:
    """Every section, in reading order; figures are written into ``out``."""
    builders: dict[str, Callable[[Run, Path], Section]] = {
        "run": overview, "comparison": comparison, "by-language": by_language, "by-country": by_country,
        "confusion": confusion, "calibration": calibration, "ablation": ablation, "curve": curve, "online": online,
        "latency": latency, "disagreements": disagreements}
    subtitle = f"run directory {run.path}" + (f", finished {run.finished}" if run.finished else "")
    return Document(title=f"searchrel report: {run.name}", subtitle=subtitle,
                    sections=[_guarded(sid, builders[sid], run, out) for sid in TITLES])


def _guarded(sid: str, builder: Callable[[Run, Path], Section], run: Run, out: Path) -> Section:
    """A section whose files hold something unexpected says so, and the rest of the report is still written."""
    try:
        return builder(run, out)
    except READ_ERRORS as e:
        sec = _section(sid)
        sec.blocks.append(Note(f"This section could not be built: {type(e).__name__}: {describe(e)}"))
        return sec


# --- what was run ------------------------------------------------------------------------------------------

def _duration(start: str | None, end: str | None) -> str:
    try:
        s = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return f" ({s / 60:.1f} min)" if s >= 60 else f" ({s:.1f} s)"


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(d, dict) and d:
        return [kv for k, v in d.items() for kv in _flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    text = d if isinstance(d, str) else json.dumps(d, ensure_ascii=False, default=str)
    return [(prefix, text if len(text) <= 160 else text[:157] + "...")]


def overview(run: Run, out: Path) -> Section:
    sec = _section("run")
    when = (f"Started {run.started or '?'}, finished {run.finished}{_duration(run.started, run.finished)}."
            if run.finished else f"Started {run.started or '?'}; still running when this report was written.")
    sec.blocks.append(Paragraph(f"Run {run.name!r}. {when}"))
    ds = run.dataset
    if ds is None:
        sec.blocks.append(missing(run, "dataset/"))
    else:
        info = ds.info
        scale = ", ".join(f"{g} {n}" if n != str(g) else str(g) for g, n in zip(info.scale.grades, info.scale.names))
        langs = ds.queries["language"].value_counts()
        rows = [["dataset", info.name + (" (synthetic)" if info.synthetic else "")],
                ["source", info.source or "—"],
                ["items / queries / judged pairs", f"{len(ds.items):,} / {len(ds.queries):,} / {len(ds.judgments):,}"],
                ["query languages", ", ".join(f"{k} {v:,}" for k, v in langs.items())],
                ["grade scale", scale]]
        if "country" in ds.queries:
            rows.append(["query countries", f"{ds.queries['country'].nunique():,}"])
        if run.split:
            try:
                pairs = ds.pairs(run.split)
                rows.append(["evaluation split", f"{run.split}: {pairs['query_id'].nunique():,} queries, "
                                                 f"{len(pairs):,} judged pairs"])
            except ValueError:
                rows.append(["evaluation split", run.split])
        if ds.search_log is not None:
            rows.append(["search log", f"{len(ds.search_log):,} events"])
        sec.blocks.append(Table(["", "value"], rows))
    if run.config:
        sec.blocks.append(Details("Configuration (resolved)", [Table(["setting", "value"],
                                                                     [list(kv) for kv in _flatten(run.config)])]))
    if run.stages:
        rows = []
        for s in run.stages:
            metrics = s.record.get("metrics") or {}
            shown = ", ".join(f"{k}={num(v) if isinstance(v, float) else v}" for k, v in list(metrics.items())[:4]
                              if isinstance(v, (int, float, str)))
            rows.append([s.name, Bold(s.status) if s.status == "failed" else s.status,
                         "—" if s.seconds is None else f"{s.seconds:,.1f}", (s.key or "—")[:12], shown])
        total = sum(s.seconds or 0 for s in run.stages)
        sec.blocks.append(Table(["stage", "status", "seconds", "key", "stage metrics"], rows, numeric={2},
                                caption=f"Pipeline: {len(run.stages)} stages, {total:,.1f} s in all; "
                                        "reused = inputs unchanged, the earlier output kept."))
    else:
        sec.blocks.append(missing(run, "stage records in run.json or stages/"))
    sec.blocks += [Note(f"Stage {s.name} failed: {(str(s.record['error']).splitlines() or [''])[0]}")
                   for s in run.stages if s.record.get("error") and s.status == "failed"]
    sec.blocks += [Note(p) for p in run.problems]
    return sec


# --- comparison and slices ------------------------------------------------------------------------------

def _metric_keys(results: list[EvalResult]) -> list[str]:
    keys = dict.fromkeys(k for r in results for k in r.overall)
    return [k for k in HEADLINE if k in keys] + [k for k in keys if k.startswith("auroc@")]


def _best(values: list[float | None]) -> float | None:
    """The value to print in bold: the highest, unless every system has the same (then none stands out)."""
    present = [v for v in values if v is not None]
    return max(present) if len(set(present)) > 1 else None


def metric_table(results: dict[str, EvalResult], kinds: dict[str, str] | None = None, caption: str = "") -> Table:
    """One row per system, one column per overall metric; the best value of each column in bold."""
    keys = _metric_keys(list(results.values()))
    best = {k: _best([r.overall.get(k) for r in results.values()]) for k in keys}
    lead = ["system"] + (["kind"] if kinds else [])
    rows = []
    for name, r in results.items():
        cells: list = [name] + ([kinds.get(name, "")] if kinds else [])
        for k in keys:
            v = r.overall.get(k)
            cells.append(Bold(num(v)) if v is not None and v == best[k] else num(v))
        rows.append(cells)
    return Table(lead + [metric_label(k) for k in keys], rows, numeric=set(range(len(lead), len(lead) + len(keys))),
                 caption=caption)


def _split_caption(systems: list[System], split: str | None) -> str:
    sizes = {(s.result.n_queries, s.result.n_pairs) for s in systems}
    size = f"{next(iter(sizes))[0]:,} queries, {next(iter(sizes))[1]:,} judged pairs" if len(sizes) == 1 else ""
    return f"{split or systems[0].result.split} split" + (f", {size}" if size else "") + \
        "; best of each column in bold; n/a = the system does not predict grades."


def comparison(run: Run, out: Path) -> Section:
    sec = _section("comparison")
    if not run.systems:
        sec.blocks.append(missing(run, "eval/systems.json"))
        return sec
    results = {s.name: s.result for s in run.systems}
    sec.blocks.append(metric_table(results, {s.name: s.kind for s in run.systems},
                                   _split_caption(run.systems, run.split)))
    chart = bar_chart(results, out / "comparison.png", f"{run.name}: {run.split or 'test'} split")
    sec.blocks.append(Figure(chart, "bar chart of the headline metrics per system"))
    return sec


def _pivot(run: Run, attr: str, metric: str, graded_only: bool = False) -> Table | None:
    systems = [s for s in run.systems if not graded_only or s.result.overall.get(metric) is not None]
    slices = sorted({k for s in systems for k in getattr(s.result, attr)},
                    key=lambda k: (-max(getattr(s.result, attr).get(k, {}).get("n_queries") or 0 for s in systems), k))
    if not systems or not slices:
        return None
    rows = []
    for k in slices:
        values = [getattr(s.result, attr).get(k, {}).get(metric) for s in systems]
        best = _best(values)
        first = next(getattr(s.result, attr)[k] for s in systems if k in getattr(s.result, attr))
        rows.append([k, f"{int(first.get('n_queries') or 0):,}", f"{int(first.get('n_pairs') or 0):,}",
                     *(Bold(num(v)) if v is not None and v == best else num(v) for v in values)])
    return Table([_slice_word(attr), "queries", "pairs", *(s.name for s in systems)], rows,
                 numeric=set(range(1, 3 + len(systems))),
                 caption=f"{metric_label(metric)} per {_slice_word(attr)}; best of each row in bold.")


def _slice_word(attr: str) -> str:
    return "language" if attr == "by_language" else "country"


def _slices(run: Run, attr: str, sid: str, out: Path, chart: bool) -> Section:
    sec = _section(sid)
    if not run.systems:
        sec.blocks.append(missing(run, "eval/systems.json"))
        return sec
    table = _pivot(run, attr, PRIMARY)
    if table is None:
        sec.blocks.append(Note(f"The evaluation has no per-{_slice_word(attr)} breakdown."))
        return sec
    sec.blocks.append(table)
    if qwk := _pivot(run, attr, "qwk", graded_only=True):
        sec.blocks.append(qwk)
    if chart:
        slices = [r[0] for r in table.rows]
        path = C.grouped_bars(slices, {s.name: [getattr(s.result, attr).get(k, {}).get(PRIMARY) for k in slices]
                                       for s in run.systems},
                              out / f"{sid}.png", f"{metric_label(PRIMARY)} per query language", metric_label(PRIMARY))
        sec.blocks.append(Figure(path, f"{metric_label(PRIMARY)} per language and system"))
    return sec


def by_language(run: Run, out: Path) -> Section:
    return _slices(run, "by_language", "by-language", out, chart=True)


def by_country(run: Run, out: Path) -> Section:
    return _slices(run, "by_country", "by-country", out, chart=False)


# --- grades: confusion and calibration --------------------------------------------------------------------

def _judged(run: Run, keep: Callable[[System], bool]) -> dict[str, pd.DataFrame]:
    """Per system ``keep`` accepts: its predictions on the split's judged pairs, with the human ``label``."""
    frames = {}
    for s in run.systems:
        if s.predictions is not None and keep(s):
            df = analysis.labelled(run.dataset, s, run.split)
            if len(df):
                frames[s.name] = df
    return frames


def _needs_predictions(run: Run, sec: Section) -> bool:
    if run.dataset is None:
        sec.blocks.append(missing(run, "dataset/, which holds the human grades"))
    elif not run.systems:
        sec.blocks.append(missing(run, "eval/systems.json"))
    else:
        return True
    return False


def confusion(run: Run, out: Path) -> Section:
    sec = _section("confusion")
    if not _needs_predictions(run, sec):
        return sec
    ds = run.dataset
    grades = ds.info.scale.grades
    mats = {name: analysis.confusion(df["label"].to_numpy(), predicted_grades(df, grades).to_numpy(), grades)
            for name, df in _judged(run, lambda s: s.predicted_grades(grades) is not None).items()}
    if not mats:
        sec.blocks.append(Note("Not part of this run (no system predicts grades)."))
        return sec
    names = ds.info.scale.names
    labels = [f"{g}\n{n}" if n != str(g) else str(g) for g, n in zip(grades, names)]
    sec.blocks.append(Paragraph(f"Human grade (rows) against predicted grade (columns) on the judged pairs of the "
                                f"{run.split or 'evaluation'} split. Each cell: pairs, and their share of the row "
                                "(colour)."))
    sec.blocks.append(Figure(C.confusion_grid(mats, labels, out / "confusion.png"), "confusion matrices"))
    return sec


def calibration(run: Run, out: Path) -> Section:
    sec = _section("calibration")
    if not _needs_predictions(run, sec):
        return sec
    ds = run.dataset
    grades = ds.info.scale.grades
    cols = [f"p_{g}" for g in grades]
    cals = {name: analysis.calibration(df[cols].to_numpy(float), df["label"].to_numpy(), grades)
            for name, df in _judged(run, lambda s: bool(s.prob_columns(grades))).items()}
    if not cals:
        sec.blocks.append(Note("Not part of this run (no system gives grade probabilities)."))
        return sec
    sec.blocks.append(Table(["system", "pairs", "classwise ECE", "top-label ECE", "Brier"],
                            [[n, f"{c.n:,}", num(c.classwise_ece), num(c.top_label_ece), num(c.brier)]
                             for n, c in cals.items()], numeric={1, 2, 3, 4},
                            caption=f"Expected calibration error over {analysis.BINS} equal-width bins (lower is "
                                    "better): classwise = each grade one-vs-rest, averaged; top-label = the most "
                                    "probable grade's probability against how often it is right. Brier: summed "
                                    "squared error of the probability vector."))
    sec.blocks.append(Figure(C.reliability_grid({n: c.curves for n, c in cals.items()}, out / "calibration.png"),
                             "reliability diagrams per system and grade"))
    return sec


# --- experiments ---------------------------------------------------------------------------------------------

def _notes(notes: list[str]) -> list:
    return [Details(f"Notes ({len(notes)})", [Note(n) for n in notes])] if notes else []


def ablation(run: Run, out: Path) -> Section:
    sec = _section("ablation")
    if run.ablation is None:
        sec.blocks.append(missing(run, "ablation/ablation.json"))
        return sec
    results = run.ablation.results
    sec.blocks.append(Paragraph("The teacher trained on growing item-field sets, BM25 on the same fields beside it."))
    sec.blocks.append(metric_table(results, caption="Each step adds fields to the previous one; best in bold."))
    steps: list[str] = []
    series: dict[str, dict[str, float | None]] = {}
    for name, r in results.items():
        kind, _, step = name.partition(": ")
        if not step:
            continue
        steps += [step] if step not in steps else []
        series.setdefault(kind, {})[step] = r.overall.get(PRIMARY)
    if steps:
        path = line_chart(steps, {k: [v.get(s) for s in steps] for k, v in series.items()}, out / "ablation.png",
                          f"{metric_label(PRIMARY)} as item fields are added", metric_label(PRIMARY))
        sec.blocks.append(Figure(path, "ablation line chart"))
    sec.blocks += _notes(run.ablation.notes)
    return sec


def curve(run: Run, out: Path) -> Section:
    sec = _section("curve")
    if run.curve is None:
        sec.blocks.append(missing(run, "curve/curve.json"))
        return sec
    results = run.curve.results
    zero_shot = [n for n in results if n.startswith("zero-shot")]
    sec.blocks.append(Paragraph("Students trained on the human labels only, then on growing amounts of "
                                "teacher-labelled pairs (x N the human labels), each next to the teacher"
                                + (f" and to {zero_shot[0]}: distillation pays where a student beats both the "
                                   "human-only student and that model." if zero_shot else ".")))
    sec.blocks.append(metric_table(results, caption="Best in bold."))
    steps = [n.removeprefix("student: ") for n in results if n.startswith("student: ")]
    refs = {n: r.overall.get(PRIMARY) for n, r in results.items() if not n.startswith("student: ")}
    if steps:
        path = line_chart(steps, {"student": [results[f"student: {s}"].overall.get(PRIMARY) for s in steps]},
                          out / "curve.png", f"student {metric_label(PRIMARY)} vs distilled data",
                          metric_label(PRIMARY), references=refs)
        sec.blocks.append(Figure(path, "amplification curve"))
    if run.curve_paired and steps:
        rows = [[other, r.slice, str(r.queries), points(r.diff), f"[{points(r.lo)}, {points(r.hi)}]", p_text(r.p_value)]
                for other, res in run.curve_paired.items() for r in res.rows]
        first = next(iter(run.curve_paired.values()))
        sec.blocks.append(Table(["against", "slice", "queries", f"difference ({metric_label(first.metric)}, points)",
                                 f"{round(first.level * 100)}% interval", "p"], rows, numeric={2, 3, 5},
                                caption=f"student: {steps[-1]} against each, paired per query: the difference's "
                                        "bootstrap interval over queries and a sign-flip randomization test "
                                        "(curve/curve-paired.json)."))
    sec.blocks += _notes(run.curve.notes)
    return sec


# --- latency ---------------------------------------------------------------------------------------------------

def _ms(v: Any) -> str:
    return "—" if v is None else f"{float(v):,.2f}"


def latency(run: Run, out: Path) -> Section:
    sec = _section("latency")
    lat = run.latency
    if lat is None:
        sec.blocks.append(missing(run, "latency/latency.json"))
        return sec
    machine = lat.get("machine") or {}
    if machine:
        rest = ", ".join(f"{k} {v}" for k, v in machine.items() if k not in ("cpu", "cores"))
        sec.blocks.append(Paragraph(f"Measured on {machine.get('cpu', 'an unnamed CPU')}, "
                                    f"{machine.get('cores', '?')} cores" + (f"; {rest}" if rest else "") + "."))
    rows = lat.get("rerank") or []
    if rows:
        sec.blocks.append(Table(["candidates", "cache", "requests", "p50 ms", "p95 ms", "p99 ms"],
                                [[f"{r.get('candidates', '?')}", str(r.get("cache", "")), f"{r.get('n', '?')}",
                                  _ms(r.get("p50_ms")), _ms(r.get("p95_ms")), _ms(r.get("p99_ms"))] for r in rows],
                                numeric={0, 2, 3, 4, 5}, caption="Re-ranking one query's candidates with the student."))
        if len({r.get("candidates") for r in rows}) > 1:
            sec.blocks.append(Figure(C.latency_chart(rows, out / "latency.png", "re-ranking latency"),
                                     "latency against candidates"))
    other = []
    if q := lat.get("query_encode_ms"):
        other.append(["query encoding", f"p50 {_ms(q.get('p50'))} ms, p99 {_ms(q.get('p99'))} ms"])
    t, s = lat.get("teacher_pairs_per_s"), lat.get("student_pairs_per_s")
    how = lat.get("teacher_labelling") or {}
    where = ", ".join(f"{k} {v}" for k, v in how.items() if v)
    other.append(["teacher throughput (labelling, batched" + (f"; {where})" if where else ")"),
                  "—" if t is None else f"{t:,.0f} pairs/s"])
    other.append(["student throughput (one request, warm cache, largest candidate set)",
                  "—" if s is None else f"{s:,.0f} pairs/s"])
    if t and s:
        other.append(["student / teacher (different setups: see above)", f"{s / t:,.1f}x"])
    sec.blocks.append(Table(["", "value"], other))
    return sec


# --- online experiment ---------------------------------------------------------------------------------------

def _ci(v: dict | None, digits: int = 3, signed: bool = False) -> str:
    """An estimate with its interval, "0.512 [0.498, 0.526]"; n/a where there is none."""
    if not v or v.get("mean") is None:
        return "n/a"
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    return f"{f.format(v['mean'])} [{f.format(v['lo'])}, {f.format(v['hi'])}]"


def _searches(n: int | None) -> str:
    return "∞ (no measured effect)" if n is None else f"{n:,}"


def online(run: Run, out: Path) -> Section:
    sec = _section("online")
    res = run.online
    if res is None:
        sec.blocks.append(missing(run, "simulate/online.json"))
        return sec
    if "skipped" in res:
        sec.blocks.append(Note(f"The simulate stage did not run an experiment: {res['skipped']}"))
        return sec
    cfg, world, pool, arms = res["config"], res["world"], res["pool"], res["arms"]
    k = cfg["top_k"]
    name = {n: a.get("system", n) for n, a in arms.items()}
    sec.blocks.append(Paragraph(
        f"{cfg['searches']:,} searches replayed over the {world['queries']:,} queries of the {res['split']} split "
        f"(Zipf within each language, exponent {world['zipf_exponent']:g}, in the order of the world's search "
        "log; languages in proportion to their queries). Each search's candidates: "
        f"{' ∪ '.join(pool['sources'])} top {cfg['pool_k']} ({pool['per_query']:g} per query, "
        f"{pool['relevant_per_query']:g} of them truly relevant); every arm re-ranks the same pool and the user "
        f"sees its top {k}. A/B: each search goes to one of {len(arms)} arms at random. Interleaving: every "
        "search again, team-draft, once per compared pair. Users click, stay (long click) and save by the "
        "synthetic world's click model on the true grade. Fulfilled = a save or a long click. Intervals: "
        f"bootstrap 95% over searches ({cfg['bootstrap']:,} resamples)."))
    ovo = res.get("offline_vs_online") or {}
    offline = ovo.get("offline") or {}
    rows = [[name[n], n, f"{a['searches']:,}", _ci(a["fulfilment"]), _ci(a["saves_per_search"]),
             _ci(a["clicks_per_search"]), _ci(a["ndcg"]), num(offline.get(n))] for n, a in arms.items()]
    sec.blocks.append(Table(["system", "arm", "searches", "fulfilment", "saves / search", "clicks / search",
                             f"online NDCG@{k}", f"offline {metric_label(ovo.get('offline_metric', PRIMARY))}"],
                            rows, numeric={2, 3, 4, 5, 6, 7},
                            caption=f"A/B arms; online NDCG@{k} is the shown screen against the true grades."))
    if ovo.get("statement"):
        sec.blocks.append(Paragraph(ovo["statement"]))
    comparisons = []
    for il, ab in zip(res.get("interleaving", []), res.get("ab", [])):
        comparisons.append([f"{name.get(il['a'], il['a'])} vs {name.get(il['b'], il['b'])}",
                            _ci(il["preference"], signed=True), f"{il['searches_with_clicks']:,}",
                            _searches(il["searches_needed"]), _ci(ab["fulfilment"], 4, signed=True),
                            _searches(ab["fulfilment"]["searches_per_arm_needed"]), _ci(ab["ndcg"], signed=True)])
    if comparisons:
        sec.blocks.append(Table(
            ["A vs B", "interleaving preference for A", "searches with clicks", "interleaved searches needed",
             "A/B fulfilment A − B", "A/B searches per arm needed", f"A/B NDCG@{k} A − B"], comparisons,
            numeric={1, 2, 3, 4, 5, 6},
            caption=f"Preference = (wins A − wins B) / searches with a credited click. Searches needed: to detect "
                    f"the measured effect at α = {cfg['alpha']:g} with power {cfg['power']:g} (normal "
                    "approximation; an A/B per arm, interleaving in all)."))
    rows = [[lang, name[n], f"{a['by_language'][lang]['searches']:,}", _ci(a["by_language"][lang]["fulfilment"]),
             _ci(a["by_language"][lang]["saves_per_search"]), _ci(a["by_language"][lang]["ndcg"])]
            for lang in res["languages"] for n, a in arms.items() if lang in a["by_language"]]
    blocks: list = [Table(["language", "system", "searches", "fulfilment", "saves / search", f"online NDCG@{k}"],
                          rows, numeric={2, 3, 4, 5})]
    il_rows = [[lang, f"{name.get(il['a'], il['a'])} vs {name.get(il['b'], il['b'])}",
                f"{il['by_language'][lang]['searches']:,}", _ci(il["by_language"][lang]["preference"], signed=True)]
               for lang in res["languages"] for il in res.get("interleaving", []) if lang in il["by_language"]]
    if il_rows:
        blocks.append(Table(["language", "A vs B", "searches", "interleaving preference for A"], il_rows,
                            numeric={2, 3}))
    sec.blocks.append(Details(f"Per language ({len(res['languages'])})", blocks))
    if ovo.get("pairs"):
        pair_rows = [[f"{name.get(p['offline_better'], p['offline_better'])} vs {name.get(p['other'], p['other'])}",
                      f"{p['offline_diff']:+.3f}", _ci(p["fulfilment"], 4, signed=True), p["fulfilment"]["verdict"],
                      _ci(p["ndcg"], signed=True), p["ndcg"]["verdict"],
                      _ci(p.get("interleaving"), signed=True), (p.get("interleaving") or {}).get("verdict", "—")]
                     for p in ovo["pairs"]]
        sec.blocks.append(Details("Every pair of arms, offline against online", [Table(
            ["offline better vs other", "offline difference", "online fulfilment difference", "",
             f"online NDCG@{k} difference", "", "interleaving preference", ""], pair_rows, numeric={1, 2, 4, 6},
            caption="Online differences are the offline-better arm's minus the other's (the interleaving preference "
                    "is for the offline-better arm; n/a where the pair was not interleaved). agree: the interval "
                    "excludes 0 on the offline side; flip: on the other side; not separated: it includes 0.")]))
    sec.blocks.append(Note("Simulated users are the world's click model, not people: the experiment measures how "
                           "rankings differ under that model (docs/online.md says what it leaves out)."))
    return sec


# --- disagreements -------------------------------------------------------------------------------------------

def _dist(p: np.ndarray, grades: list[int]) -> Markup:
    """The probability vector as a tiny bar chart in HTML (exact values on hover), as numbers in Markdown."""
    title = html.escape(" ".join(f"p{g}={v:.2f}" for g, v in zip(grades, p)))
    bars = "".join(f'<span style="height:{max(1, round(v * 22))}px"></span>' for v in p)
    return Markup(f'<span class="dist" title="{title}">{bars}</span>', " ".join(f"{v:.2f}" for v in p))


def _short(text: Any, n: int = 90) -> str:
    text = "" if text is None or (isinstance(text, float) and np.isnan(text)) else str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def disagreements(run: Run, out: Path) -> Section:
    sec = _section("disagreements")
    if run.dataset is None:
        sec.blocks.append(missing(run, "dataset/"))
        return sec
    grades = run.dataset.info.scale.grades
    t, s = run.system(run.teacher), run.system(run.student)
    if t is None or s is None or not t.prob_columns(grades) or not s.prob_columns(grades):
        which = " and ".join(k for k, x in (("teacher", t), ("student", s)) if x is None or not x.prob_columns(grades))
        sec.blocks.append(Note(f"Not part of this run (no {which} predictions with grade probabilities)."))
        return sec
    df = analysis.disagreements(run.dataset, t, s, run.split, N_DISAGREEMENTS)
    sec.blocks.append(Paragraph(f"Teacher: {t.name}. Student: {s.name}. The {len(df)} pairs with the largest "
                                "|student − teacher| expected grade (Σ p_g·g); the bars are the probabilities of "
                                f"grades {grades[0]}..{grades[-1]}."))
    rows = []
    for i, r in df.iterrows():
        item = _short(r["title"]) or "—"
        cap = _short(r["caption"], 70)
        item_cell = Markup(html.escape(item) + (f'<br><small>{html.escape(cap)}</small>' if cap else ""),
                           item + (f" — {cap}" if cap else ""))
        label = "—" if r["label"] is None or (isinstance(r["label"], float) and np.isnan(r["label"])) else \
            str(int(r["label"]))
        rows.append([str(i + 1), _short(r["query"], 60), _short(r["language"], 12), item_cell, label,
                     num(r["teacher"], 2), _dist(r["teacher_p"], grades), num(r["student"], 2),
                     _dist(r["student_p"], grades), f"{r['diff']:+.2f}"])
    sec.blocks.append(Table(["#", "query", "lang", "item (title, caption)", "human", "teacher E[g]", "teacher p",
                             "student E[g]", "student p", "student − teacher"], rows, numeric={0, 4, 5, 7, 9}))
    return sec
