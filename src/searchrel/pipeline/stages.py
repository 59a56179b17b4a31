"""The pipeline's stages, built from a PipelineConfig: data → baselines → ratings → teacher → ablation → sample →
label → students → index → evaluate → rate → simulate → latency → report. Each is a thin call into the library
function that does the work (the same one the matching CLI command calls); this module only says where artefacts
go and which parameters each stage depends on.

Run directory::

    dataset/                  the dataset every stage reads (imported or synthesized, annotated, split)
    baselines/                predictions-<system>.parquet + metrics-<system>.json on the evaluation split
    teacher/                  the trained teacher (+ its predictions and metrics on the evaluation split)
    ablation/                 ablation.md/.json/.png, per step a teacher when it has a budget
    distill/pairs.parquet     sampled (query, candidate) pairs; distill/labels/ the teacher's soft labels
    ratings/ratings.parquet   human ratings imported into the run (searchrel import ratings): merged into the
                              judgments the teacher and the students train on
    rate/                     the rating round: suggestions.csv (and, synthetic only, simulated.csv)
    students/<human|xN>/      one student per amplification factor (the largest is the one served)
    index/                    the item index of the served student
    eval/                     systems.json, comparison.md/.json/.png; curve/ the amplification curve
    simulate/                 online.json, searches.parquet: the online experiment on the synthetic world
    latency/latency.json      the re-ranking service timed in process
    report/                   report.html (self-contained) and report.md
    stages/<stage>.json       each stage's record; run.json the run's summary
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from searchrel.annotate.logs import annotate
from searchrel.annotate.text import normalise_query
from searchrel.baselines.bm25 import bm25_predictions
from searchrel.baselines.embed import embed_predictions
from searchrel.data.dataset import load_dataset
from searchrel.data.importers import import_crowdflower
from searchrel.data.ratings import merge_ratings, read_store, write_sheet
from searchrel.data.splits import make_splits
from searchrel.data.synth import build_world, synthesize
from searchrel.distill.label import MANIFEST, label_pairs, read_labels
from searchrel.distill.sample import sample_pairs, save_pairs
from searchrel.eval.evaluate import EvalResult, evaluate, read_predictions
from searchrel.experiments.ablate import AblateConfig, ablate
from searchrel.experiments.common import write_outputs
from searchrel.experiments.curve import distilled_subset, write_curve, write_paired
from searchrel.experiments.rating_round import candidates, suggest
from searchrel.experiments.rating_round import summary as sheet_summary
from searchrel.experiments.rating_value import simulated_ratings
from searchrel.experiments.scorers import load_scorer
from searchrel.experiments.simulate import NoWorld, SimulateConfig, simulate
from searchrel.index import build_index, load_index
from searchrel.io import sha256_file, sha256_tree, write_json
from searchrel.layout import RunLayout
from searchrel.models.encode import default_threads
from searchrel.pipeline.config import PipelineConfig
from searchrel.pipeline.runner import Stage, now
from searchrel.report import build_report
from searchrel.serve.service import ServeConfig, Service
from searchrel.student.train import train_student
from searchrel.teacher.model import CONFIG_FILE
from searchrel.teacher.recipe import train_teacher


def _dump(model) -> dict:
    return json.loads(model.model_dump_json())


def factor_name(a: float) -> str:
    return f"x{a:g}"


class Run:
    """One pipeline run: its config, its directory and the dataset, loaded once and shared by the stages."""

    def __init__(self, cfg: PipelineConfig, out: Path):
        self.cfg, self.out = cfg, Path(out)
        self.at = RunLayout(self.out)
        self._ds = None

    # -- shared state ---------------------------------------------------------------------------------
    def dataset(self):
        if self._ds is None:
            self._ds = load_dataset(self.at.dataset)
        return self._ds

    def train_dataset(self):
        """The dataset with the ratings imported into the run merged into its judgments: what the teacher and the
        students train on (the ratings are of train queries only, so evaluation reads the same labels as before)."""
        store = read_store(self.at.ratings)
        return self.dataset() if store.empty else merge_ratings(self.dataset(), store)[0]

    @property
    def split(self) -> str:
        return self.cfg.evaluate.split

    def served_student(self) -> Path:
        return self.at.student(factor_name(self.cfg.distill.amplifications[-1]))

    def _evaluate(self, preds, name: str, where: Path) -> EvalResult:
        """Write ``predictions-<name>.parquet`` and ``metrics-<name>.json`` into ``where``; return the result."""
        where.mkdir(parents=True, exist_ok=True)
        preds.to_parquet(where / f"predictions-{name}.parquet", index=False)
        result = evaluate(self.dataset(), preds, self.cfg.evaluate)
        result.save(where / f"metrics-{name}.json")
        return result

    # -- stages ---------------------------------------------------------------------------------------
    def data(self) -> dict:
        d = self.cfg.data
        if d.source == "synthetic":
            ds = synthesize(d.synth)
        elif d.source == "crowdflower":
            ds, _ = import_crowdflower(d.path, translations=d.translations)
        else:
            ds = load_dataset(d.path)
        if d.splits is not None:  # before annotation, which keeps held-out queries out of the item text
            ds.splits = make_splits(ds.queries, d.splits.fractions, d.splits.seed)
        annotated = d.annotate is not None and ds.search_log is not None and len(ds.search_log) > 0
        if annotated:
            ds, _ = annotate(ds, d.annotate)
        self.cfg.text.check(ds.text_fields)
        ds.save(self.at.dataset)
        self._ds = None
        ds = self.dataset()
        split = ds.split_of()
        return {"items": len(ds.items), "queries": len(ds.queries), "judgments": len(ds.judgments),
                "log_events": 0 if ds.search_log is None else len(ds.search_log), "annotated": annotated,
                "languages": sorted(ds.queries["language"].unique().tolist()),
                "queries_per_split": {s: int(n) for s, n in ds.queries["query_id"].map(split).value_counts().items()}}

    def ratings(self) -> dict:
        """Check the imported ratings against this run's dataset and count what they add to its judgments."""
        store = read_store(self.at.ratings)
        if store.empty:
            return {"ratings": 0}
        ds = self.dataset()
        off = store[store["query_id"].map(ds.split_of()) != "train"]
        if len(off):
            raise ValueError(f"{self.at.ratings}: {len(off)} rating(s) name queries that are not train queries of "
                             f"this run's dataset (e.g. {off['query_id'].iloc[0]}): the data config changed since "
                             f"they were imported; move the file away to run without them")
        _, stats = merge_ratings(ds, store)  # validates ids and grades
        return stats | {"raters": int(store["rater"].nunique()), "sheets": sorted(store["source"].unique().tolist())}

    def baselines(self) -> dict:
        ds, where, metrics = self.dataset(), self.at.baselines, {}
        where.mkdir(parents=True, exist_ok=True)
        if self.cfg.baselines.bm25:
            metrics["bm25"] = self._evaluate(bm25_predictions(ds, self.cfg.text, self.split), "bm25", where)
        if self.cfg.baselines.zero_shot:
            preds = embed_predictions(ds, self.cfg.text, self.split, model=self.cfg.baselines.zero_shot)
            metrics["zero-shot"] = self._evaluate(preds, "zero-shot", where)
        return {name: {k: v for k, v in r.overall.items() if v is not None} for name, r in metrics.items()}

    def teacher(self) -> dict:
        run = self.at.teacher
        if not (run / CONFIG_FILE).exists():
            train_teacher(self.train_dataset(), run, self.cfg.train_config(), resume=run.exists())
        rec = json.loads((run / "train.json").read_text())
        return {"steps": rec.get("steps"), "train_minutes": round(rec.get("elapsed_s", 0) / 60, 2),
                "tokens_per_s": rec.get("tokens_per_s"), "best_valid": rec.get("best")}

    def ablation(self) -> dict:
        a = self.cfg.ablation
        train = self.cfg.train_config().model_copy(update={"max_minutes": a.teacher_minutes or None})
        steps, results, _ = ablate(self.dataset(), self.at.ablation,
                                   AblateConfig(train=train, split=self.split, teacher=a.teacher_minutes > 0))
        return {name: r.overall.get("ndcg@8") for name, r in results.items()}

    def sample(self) -> dict:
        cfg = self.cfg.distill.sample.model_copy(update={"amplification": self.cfg.distill.amplifications[-1]})
        path = self.at.pairs
        path.parent.mkdir(parents=True, exist_ok=True)
        pairs = sample_pairs(self.dataset(), cfg, self.cfg.text)
        save_pairs(pairs, path, self.dataset(), cfg)
        return {"pairs": len(pairs), "queries": int(pairs["query_id"].nunique()),
                "items": int(pairs["item_id"].nunique())}

    def label(self) -> dict:
        out = label_pairs(self.at.teacher, self.at.pairs, self.at.labels,
                          self.cfg.distill.label, dataset=self.dataset())
        m = json.loads((out / MANIFEST).read_text())
        return {"pairs": m["n_pairs"], "pairs_per_s": m.get("pairs_per_s"), "backend": m.get("backend")}

    def student(self, factor: float | None) -> dict:
        ds = self.train_dataset()
        run = self.at.student("human" if factor is None else factor_name(factor))
        subset = None
        if factor is not None:  # nested random subsets of one labelled sample: x1 is part of x10
            subset = distilled_subset(read_labels(self.at.labels), factor, len(self.dataset().judgments),
                                      self.cfg.distill.sample.seed)
        train_student(ds, run, self.cfg.student_train_config(), subset)
        rec = json.loads((run / "train.json").read_text())
        return {"distilled_pairs": rec["distilled_pairs"], "train_pairs": rec["train_pairs"], "steps": rec["steps"],
                "train_minutes": round(rec["elapsed_s"] / 60, 2), "best_valid": rec.get("best")}

    def index(self) -> dict:
        version = build_index(self.served_student(), self.dataset(), self.at.index, self.cfg.index)
        idx = load_index(version, with_faiss=False)
        return {"items": len(idx), "version": idx.version}

    def systems(self) -> list[tuple[str, str, str, Path]]:
        """(name, kind, file stem, model directory) of every evaluated system, in the order the tables show them;
        baselines have no model directory (their predictions come from the baselines stage)."""
        cfg = self.cfg
        systems: list[tuple[str, str, str, Path | None]] = []
        if cfg.baselines.bm25:
            systems.append(("BM25", "bm25", "bm25", None))
        if cfg.baselines.zero_shot:
            systems.append((f"zero-shot {cfg.baselines.zero_shot}", "zero-shot", "zero-shot", None))
        recipe = cfg.teacher.train.recipe
        teacher = f"teacher {cfg.teacher.model.backbone}" if recipe == "cross_encoder" else f"teacher ({recipe})"
        systems.append((teacher, "teacher", "teacher", self.at.teacher))
        factors = ([None] if cfg.distill.human_only else []) + list(cfg.distill.amplifications)
        for a in factors:
            step = "human" if a is None else factor_name(a)
            name = "student: human labels only" if a is None else f"student: {step}"
            systems.append((name, "student", f"student-{step}", self.at.student(step)))
        return systems

    def evaluate(self) -> dict:
        """Every system on the evaluation split (models predicted here, so changing the split or the metrics
        retrains nothing): eval/predictions-*.parquet, metrics-*.json, systems.json, comparison.*; curve/."""
        where = self.at.eval
        where.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.at.curve, ignore_errors=True)  # written again below when there is a curve
        entries, results, paths, predictions = [], {}, {}, {}
        for name, kind, stem, model in self.systems():
            d = where
            if model is None:  # a baseline: the baselines stage wrote its predictions and metrics
                d = self.at.baselines
                results[name] = EvalResult.model_validate_json((d / f"metrics-{stem}.json").read_text())
            else:
                predictions[name] = load_scorer(model).predict(self.dataset(), self.split)
                results[name] = self._evaluate(predictions[name], stem, where)
            paths[name] = d / f"predictions-{stem}.parquet"
            entries.append({"name": name, "kind": kind, "predictions": os.path.relpath(paths[name], where),
                            "metrics": os.path.relpath(d / f"metrics-{stem}.json", where)})
        teacher = next(n for n, k, _, _ in self.systems() if k == "teacher")
        student = f"student: {factor_name(self.cfg.distill.amplifications[-1])}"
        self.at.systems.write_text(json.dumps({"split": self.split, "teacher": teacher, "student": student,
                                                        "systems": entries}, indent=2) + "\n")
        write_outputs(where, "comparison", results, f"{self.dataset().info.name}: comparison ({self.split} split)")
        students = [n for n, k, _, _ in self.systems() if k == "student"]
        if len(students) > 1:
            steps = [n.removeprefix("student: ") for n in students]
            zero_shot = {n: results[n] for n, k, _, _ in self.systems() if k == "zero-shot"}
            write_curve(self.at.curve, {n: results[n] for n in students}, steps, results[teacher],
                        f"{self.dataset().info.name}: amplification curve ({self.split} split)", baselines=zero_shot)
            paired = {n.removeprefix("student: "): predictions[n] if n in predictions else read_predictions(paths[n])
                      for n in students + list(zero_shot)}
            write_paired(self.at.curve, self.dataset(), paired, steps[-1], self.split, "ndcg@8")
        return {name: r.overall.get("ndcg@8") for name, r in results.items()}

    def rate(self) -> dict:
        """The rating round's sheet for this run (``searchrel rate suggest``) and, on the synthetic world, the same
        sheet graded by a rater who knows the true grade (``searchrel import ratings rate/simulated.csv RUN``)."""
        cfg, ds, where = self.cfg.rate, self.dataset(), self.at.rate
        pool = candidates(ds, self.at.labels, self.served_student(), self.at.ratings, cfg.suggest.languages)
        sheet = suggest(ds, pool, cfg.suggest)
        write_sheet(sheet, where / "suggestions.csv")
        record = sheet_summary(sheet) | {"pool": int(len(pool)), "simulated": None}
        if cfg.simulated_rater and self.cfg.data.source == "synthetic" and len(sheet):
            graded = simulated_ratings(build_world(self.cfg.data.synth), sheet, rater="simulated")
            write_sheet(sheet.assign(grade=graded["grade"].to_numpy(), rater="simulated"), where / "simulated.csv")
            record["simulated"] = "simulated.csv"
        write_json(where / "rate.json", record)
        return record

    def simulate(self) -> dict:
        """The online experiment on the synthetic world (``searchrel simulate``); other data has no world to
        simulate users with, and ``simulate/online.json`` says so."""
        cfg = SimulateConfig.model_validate(self.cfg.simulate.model_dump(exclude={"enabled"}))
        try:
            res = simulate(self.out, cfg.model_copy(update={"split": cfg.split or self.split}))
        except NoWorld as e:
            reason = str(e)
            self.at.simulate.mkdir(parents=True, exist_ok=True)
            write_json(self.at.simulate / "online.json", {"skipped": reason})
            return {"skipped": reason}
        metrics: dict = {"searches": cfg.searches, "kendall_tau": res["offline_vs_online"]["tau"].get("fulfilment")}
        metrics |= {f"fulfilment {n}": a["fulfilment"]["mean"] for n, a in res["arms"].items()}
        return metrics | {f"preference {i['a']} vs {i['b']}": i["preference"]["mean"] for i in res["interleaving"]}

    def latency(self) -> dict:
        cfg, ds = self.cfg.latency, self.dataset()
        torch.set_num_threads(default_threads())  # the same threads whatever ran before in this process
        svc = Service(ServeConfig(index=self.at.index, student=self.served_student(), cache="memory",
                                  onnx=cfg.onnx))
        split = ds.split_of()
        queries = ds.queries.assign(_key=ds.queries["text"].map(normalise_query) + "\0" + ds.queries["language"])
        queries = queries.drop_duplicates("_key")  # a repeated query would be a cache hit in the cold pass
        held = queries[queries["query_id"].map(split) == self.split]
        timed = (held if len(held) else queries).head(cfg.queries)
        warmup = queries[~queries["query_id"].isin(timed["query_id"])].head(5)
        ids = svc.index.items["item_id"].astype(str).to_numpy()
        for text, lang in zip(warmup["text"], warmup["language"]):  # one-off costs (sessions, shapes) before timing
            for n in cfg.candidates:
                svc.rerank(text, ids[: min(n, len(ids))].tolist(), language=lang)
        rng = np.random.default_rng(0)
        rows, encode_ms = [], []
        for n in cfg.candidates:
            n = min(n, len(ids))
            cands = rng.choice(ids, n, replace=False).tolist()
            for cache in ("cold", "warm"):
                if cache == "cold":
                    svc.queries.cache.clear()
                times = []
                for text, lang in zip(timed["text"], timed["language"]):
                    t = time.perf_counter()
                    res = svc.rerank(text, cands, language=lang)
                    times.append(1000 * (time.perf_counter() - t))
                    if cache == "cold":
                        encode_ms.append(res["timing_ms"]["query"])
                p = np.percentile(times, [50, 95, 99])
                rows.append({"candidates": n, "cache": cache, "n": len(times), "p50_ms": round(float(p[0]), 3),
                             "p95_ms": round(float(p[1]), 3), "p99_ms": round(float(p[2]), 3)})
        warm = [r for r in rows if r["cache"] == "warm"]
        biggest = max(warm, key=lambda r: r["candidates"])
        labels = json.loads((self.at.labels / MANIFEST).read_text())
        record = {"machine": machine(), "rerank": rows,
                  "query_encode_ms": {"p50": round(float(np.percentile(encode_ms, 50)), 3),
                                      "p99": round(float(np.percentile(encode_ms, 99)), 3)},
                  # the teacher's figure is its labelling throughput (batches; the backend and device it ran on)
                  "teacher_pairs_per_s": labels.get("pairs_per_s") or None,
                  "teacher_labelling": {"backend": labels.get("backend"), "device": self.cfg.distill.label.device},
                  "student_pairs_per_s": round(1000 * biggest["candidates"] / biggest["p50_ms"], 1),
                  "onnx": cfg.onnx}
        self.at.latency.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.at.latency, record)
        return {k: record[k] for k in ("query_encode_ms", "teacher_pairs_per_s", "student_pairs_per_s")}

    def report(self) -> dict:
        # the report is the run's last stage: every stage before it has finished
        summary = json.loads(self.at.summary.read_text())
        write_json(self.at.summary, summary | {"finished": summary.get("finished") or now()})
        paths = build_report(self.out)
        return {k: str(v) for k, v in paths.items()}


def machine() -> dict:
    """The CPU the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "platform": platform.platform()}


def plan(cfg: PipelineConfig, out: Path) -> tuple[Run, list[Stage]]:
    """The stages of ``cfg`` in order, each with the parameters its output depends on."""
    r = Run(cfg, out)
    d = cfg.data
    data_params = _dump(d)
    if d.source != "synthetic":  # the content of the inputs, not their names or where the command runs
        data_params |= {"path": sha256_tree(Path(d.path)),
                        "translations": sha256_tree(Path(d.translations)) if d.translations else None}
    text, ev = _dump(cfg.text), _dump(cfg.evaluate)
    # where the teacher trains (CPU or GPU) is how the work runs, not what it is: like the labelling backend
    train = {k: v for k, v in _dump(cfg.train_config()).items() if k != "device"}
    stages = [
        Stage("data", r.data, data_params | {"text": text}, [], ["dataset"]),
        Stage("baselines", r.baselines, {"baselines": _dump(cfg.baselines), "text": text, "eval": ev}, ["data"],
              ["baselines"]),
        # the ratings imported into the run (their content): what the teacher and the students train on besides
        # the dataset's judgments; nothing else reads them, so new ratings leave the data and baselines as they are
        Stage("ratings", r.ratings, {"ratings": sha256_file(r.at.ratings) if r.at.ratings.is_file() else None},
              ["data"], []),
        # models are evaluated by the evaluate stage: changing the split or the metrics retrains nothing
        Stage("teacher", r.teacher, {"train": train}, ["data", "ratings"], ["teacher"], resumable=True),
    ]
    if cfg.ablation.enabled:
        stages.append(Stage("ablation", r.ablation, {"ablation": _dump(cfg.ablation), "train": train, "eval": ev},
                            ["data"], ["ablation"], resumable=True))
    sample = cfg.distill.sample.model_copy(update={"amplification": cfg.distill.amplifications[-1]})
    # how labels are computed (backend, actors, shard and batch sizes) does not change them; bf16 does
    label = {"bf16": cfg.distill.label.bf16}
    stages += [
        Stage("sample", r.sample, {"sample": _dump(sample), "text": text}, ["data"], ["distill/pairs.parquet"]),
        Stage("label", r.label, label, ["sample", "teacher"], ["distill/labels"], resumable=True),
    ]
    student = {"train": _dump(cfg.student_train_config())}
    if cfg.distill.human_only:
        stages.append(Stage("student-human", lambda: r.student(None), student, ["data", "ratings"],
                            ["students/human"]))
    for a in cfg.distill.amplifications:
        name = f"student-{factor_name(a)}"
        stages.append(Stage(name, lambda a=a: r.student(a), student | {"factor": a, "seed": cfg.distill.sample.seed},
                            ["data", "ratings", "label"], [f"students/{factor_name(a)}"]))
    served = f"student-{factor_name(cfg.distill.amplifications[-1])}"
    # the backend and sizes of the work do not change the index; the FAISS settings do
    index = {k: v for k, v in _dump(cfg.index).items() if not k.startswith("ray_") and k not in ("backend", "batch_size",
                                                                                                  "shard_size")}
    students = [s.name for s in stages if s.name.startswith("student-")]
    stages += [
        Stage("index", r.index, index, ["data", served], ["index"]),
        Stage("evaluate", r.evaluate, {"eval": ev}, ["baselines", "teacher", *students],
              ["eval", "curve"] if len(students) > 1 else ["eval"]),
    ]
    if cfg.rate.enabled:
        stages.append(Stage("rate", r.rate, {"rate": _dump(cfg.rate)}, ["data", "ratings", "label", served],
                            ["rate"]))
    if cfg.simulate.enabled:  # reads the index (the candidate pool), the students and their offline metrics
        stages.append(Stage("simulate", r.simulate, {"simulate": _dump(cfg.simulate)}, ["data", "index", "evaluate"],
                            ["simulate"]))
    if cfg.latency.enabled:
        stages.append(Stage("latency", r.latency, _dump(cfg.latency), ["index", "label"], ["latency"]))
    if cfg.report.enabled:
        deps = [s.name for s in stages]
        stages.append(Stage("report", r.report, {}, deps, ["report"]))
    return r, stages
