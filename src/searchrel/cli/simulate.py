"""CLI: ``simulate`` — an online experiment (A/B and team-draft interleaving) on a run's synthetic world."""

from __future__ import annotations

from pathlib import Path

import typer

from searchrel.cli.common import console, user_errors
from searchrel.layout import RunLayout


def _interval(v: dict, digits: int = 3) -> str:
    return "n/a" if v.get("mean") is None else f"{v['mean']:.{digits}f} [{v['lo']:.{digits}f}, {v['hi']:.{digits}f}]"


@user_errors
def simulate_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory of `searchrel run` on the synthetic world"),
    a: str | None = typer.Option(None, "--a", help="ranker A (e.g. student = the served student, student-human, "
                                                   "bm25, zero-shot, teacher); with --b: A against B, in the "
                                                   "A/B and interleaved. Default: the served student interleaved "
                                                   "with BM25 and with the human-only student"),
    b: str | None = typer.Option(None, "--b", help="ranker B"),
    arms: str | None = typer.Option(None, "--arms", help="comma-separated A/B arms (default: the baselines, the "
                                                         "human-only and the served student; with --a/--b: A and B)"),
    searches: int = typer.Option(20_000, "--searches", help="simulated searches (split between the A/B arms; each "
                                                            "interleaving replays all of them)"),
    seed: int = typer.Option(0, "--seed"),
    out: Path | None = typer.Option(None, "--out", help="folder for online.json and searches.parquet "
                                                        "(default: RUN_DIR/simulate)"),
) -> None:
    """Replay held-out searches through the run's rankers with the world's simulated users: fulfilment, saves,
    online NDCG@20 per arm and language, interleaving preference, power, offline vs online ordering."""
    from searchrel.experiments.simulate import SimulateConfig, simulate

    if (a is None) != (b is None):
        raise ValueError("--a and --b go together: the two rankers to compare")
    chosen = [x.strip() for x in arms.split(",") if x.strip()] if arms else None
    pair = {"arms": chosen or [a, b], "compare": [(a, b)]} if a is not None else {"arms": chosen}
    res = simulate(run_dir, SimulateConfig(searches=searches, seed=seed, **pair), out)
    for name, arm in res["arms"].items():
        console.print(f"{name:>16} ({arm['searches']:,} searches): fulfilment {_interval(arm['fulfilment'])}, "
                      f"saves/search {_interval(arm['saves_per_search'])}, NDCG@{res['config']['top_k']} "
                      f"{_interval(arm['ndcg'])}")
    for il, ab in zip(res["interleaving"], res["ab"]):
        need = ab["fulfilment"]["searches_per_arm_needed"]
        console.print(f"{il['a']} vs {il['b']}: interleaving preference {_interval(il['preference'])} "
                      f"(needs ~{il['searches_needed'] or '∞'} searches); A/B fulfilment difference "
                      f"{_interval(ab['fulfilment'], 4)} (needs ~{need or '∞'} searches per arm)")
    console.print(res["offline_vs_online"]["statement"])
    where = out or RunLayout(run_dir).simulate
    console.print(f"online experiment: {where / 'online.json'} (+ searches.parquet)")
