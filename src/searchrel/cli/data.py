"""CLI: make and prepare datasets — ``synth``, ``annotate logs|captions``, ``split``."""

from __future__ import annotations

from pathlib import Path

import click
import typer
from typer.core import TyperGroup

from searchrel.annotate.logs import AnnotateConfig, annotate
from searchrel.cli.common import console, user_errors
from searchrel.data.dataset import load_dataset
from searchrel.data.splits import make_splits


class _LogsByDefault(TyperGroup):
    """``searchrel annotate DATASET [OPTIONS]``, the form from before ``captions`` existed, runs ``annotate logs``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["logs", *args]
        return super().parse_args(ctx, args)


annotate_app = typer.Typer(
    cls=_LogsByDefault, no_args_is_help=True,
    help="Fill item fields: from the search log (logs; `searchrel annotate DATASET` is short for it) or from images "
         "(captions).")


@annotate_app.command("logs")
@user_errors
def annotate_cmd(
    dataset: Path = typer.Argument(..., help="dataset directory with a search_log table"),
    out: Path | None = typer.Option(None, help="write the annotated dataset here (default: in place)"),
    top_k_boards: int = typer.Option(8, help="board titles kept per item"),
    top_k_queries: int = typer.Option(8, help="engaged queries kept per item"),
    window_days: int | None = typer.Option(None, help="only use the last N days of the log"),
    min_count: int = typer.Option(1, help="keep a title/query only if seen this often"),
    exclude_split: str = typer.Option("valid,test", help="query splits kept out of item features ('' for none)"),
) -> None:
    """Aggregate board titles and engaged queries per item from the search log (DuckDB)."""
    ds = load_dataset(dataset)
    cfg = AnnotateConfig(top_k_boards=top_k_boards, top_k_queries=top_k_queries, window_days=window_days,
                         min_count=min_count, exclude_splits=[s for s in exclude_split.split(",") if s])
    ds, report = annotate(ds, cfg)
    path = ds.save(out or dataset)
    console.print(f"annotated {len(ds.items):,} items: {report.items_with_boards:,} with board titles, "
                  f"{report.items_with_queries:,} with engaged queries ({report.events_used:,} engagements used, "
                  f"{report.events_excluded_split:,} from held-out queries left out) -> {path}")


@annotate_app.command("captions")
@user_errors
def captions_cmd(
    dataset: Path = typer.Argument(..., help="dataset directory"),
    images: Path = typer.Option(..., help="directory of images named after item ids: <item_id>.jpg|png|webp|..."),
    model: str = typer.Option(..., help="an image-to-text model: a local directory or a Hugging Face hub id "
                                        "(e.g. Salesforce/blip-image-captioning-base)"),
    out: Path | None = typer.Option(None, help="write the captioned dataset here (default: in place)"),
    batch_size: int = typer.Option(16, help="images per generate() call"),
    max_new_tokens: int = typer.Option(32, help="caption length cap in tokens"),
    num_beams: int = typer.Option(1, help="1: greedy; more: beam search, that many times the cost"),
    device: str = typer.Option("auto", help="auto (a CUDA GPU when there is one, else the CPU), cpu, cuda, cuda:N"),
    dtype: str = typer.Option("float32", help="float32, bfloat16 or float16 (half precision: on a GPU)"),
    only_missing: bool = typer.Option(False, help="caption only items whose image_caption is empty"),
    skip_bad: bool = typer.Option(False, help="count and skip unreadable images instead of stopping"),
    workers: int = typer.Option(4, help="threads decoding images while the model generates"),
) -> None:
    """Caption items from their images with a transformers image-to-text model (batched, resumable after a kill)."""
    from searchrel.annotate.captions import CaptionConfig, caption_dataset  # torch, transformers: seconds to import
    from searchrel.models.registry import resolve_model

    ds = load_dataset(dataset)
    if not images.is_dir():  # before resolving the model, which may download it
        raise FileNotFoundError(f"{images}: no such images directory")
    cfg = CaptionConfig(batch_size=batch_size, max_new_tokens=max_new_tokens, num_beams=num_beams, device=device,
                        dtype=dtype, only_missing=only_missing, skip_bad=skip_bad, workers=workers)
    r = caption_dataset(ds, images, resolve_model(model), out or dataset, cfg, model_name=model)
    bad = f", {len(r.unreadable):,} unreadable images skipped" if r.unreadable else ""
    console.print(f"captioned {r.captioned:,} of {r.items:,} items ({r.generated:,} generated now, {r.resumed:,} "
                  f"from an interrupted run, {r.replaced:,} earlier captions replaced); {r.without_image:,} without "
                  f"an image, {r.kept_existing:,} kept their caption, {r.empty:,} empty captions{bad}; "
                  f"{r.unmatched_files:,} image files named after no item -> {out or dataset}")


@user_errors
def split_cmd(
    dataset: Path = typer.Argument(..., help="dataset directory"),
    fractions: str = typer.Option("0.7,0.1,0.2", help="train,valid,test fractions"),
    seed: int = typer.Option(0, help="hash seed of the assignment"),
) -> None:
    """(Re)write the query-grouped, language-stratified train/valid/test split."""
    ds = load_dataset(dataset)
    try:
        fr = tuple(float(x) for x in fractions.split(","))
    except ValueError:
        raise ValueError(f"fractions must be three numbers like 0.7,0.1,0.2, got {fractions!r}") from None
    ds.splits = make_splits(ds.queries, fr, seed)  # type: ignore[arg-type]
    ds.save(dataset)
    counts = ds.splits["split"].value_counts()
    console.print(", ".join(f"{s}: {counts.get(s, 0):,} queries" for s in ("train", "valid", "test")) + f" -> {dataset}")


@user_errors
def synth_cmd(
    out: Path = typer.Argument(..., help="where to write the synthetic dataset"),
    seed: int = typer.Option(0, help="same seed, identical world"),
    items: int = typer.Option(3000, help="catalogue size"),
    queries: int = typer.Option(500, help="distinct queries"),
    users: int = typer.Option(2000, help="users (savers with boards)"),
    judged_pairs: int = typer.Option(6000, help="human-judged (query, item) pairs"),
    searches: int = typer.Option(12_000, help="searches in the log (x ~15 impressions each)"),
    languages: str = typer.Option("en,es,de,fr,ja", help="languages of queries and items"),
) -> None:
    """Generate the synthetic Pinterest-like world (clearly labelled synthetic), deterministic by seed."""
    from searchrel.data.synth import SynthConfig, synthesize

    cfg = SynthConfig(seed=seed, n_items=items, n_queries=queries, n_users=users, n_judged_pairs=judged_pairs,
                      n_searches=searches, languages=tuple(s.strip() for s in languages.split(",") if s.strip()))
    ds = synthesize(cfg)
    path = ds.save(out)
    console.print(f"synthetic world: {len(ds.items):,} items, {len(ds.queries):,} queries, {len(ds.judgments):,} "
                  f"judgments, {len(ds.search_log):,} log events -> {path}")
