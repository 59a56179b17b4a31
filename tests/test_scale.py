"""bench/scale.py's arithmetic: the TTL query-cache model against a simulated query stream, and the Zipf sums."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from scale import _zipf_grid, ttl_cache, ttl_for  # noqa: E402


def _simulate(n: int, s: float, rate: float, ttl: float, searches: int, seed: int = 0) -> tuple[float, float]:
    """Hit rate and mean entries of a write-TTL cache (hits do not extend an entry) on a Poisson Zipf stream."""
    rng = np.random.default_rng(seed)
    p = np.arange(1, n + 1, dtype=float) ** -s
    q = rng.choice(n, searches, p=p / p.sum())
    t = np.cumsum(rng.exponential(1 / rate, searches))
    expiry = np.full(n, -np.inf)
    hits, sizes = 0, []
    for k in range(searches):
        if expiry[q[k]] > t[k]:
            hits += 1
        else:
            expiry[q[k]] = t[k] + ttl
        if k > searches // 2 and k % 10_000 == 0:
            sizes.append(int((expiry > t[k]).sum()))
    return hits / searches, float(np.mean(sizes))


@pytest.mark.parametrize("n, s, rate, ttl", [(20_000, 1.0, 100.0, 30.0), (50_000, 0.8, 300.0, 60.0)])
def test_the_ttl_cache_model_matches_a_simulated_stream(n, s, rate, ttl):
    hit, entries = ttl_cache(rate, ttl, n, s)
    sim_hit, sim_entries = _simulate(n, s, rate, ttl, 200_000)
    assert abs(hit - sim_hit) < 0.01 and abs(entries - sim_entries) / sim_entries < 0.05, (hit, sim_hit, entries,
                                                                                         sim_entries)
    # the TTL found for that hit rate gives it back
    assert ttl_for(hit, rate, n, s) == pytest.approx(ttl, rel=1e-3)


def test_the_zipf_grid_sums_to_one_and_bins_the_tail():
    p, counts = _zipf_grid(2e9, 0.8)
    assert counts.sum() == pytest.approx(2e9, rel=1e-9) and float(np.sum(p * counts)) == pytest.approx(1.0)
    exact_p, _ = _zipf_grid(1e5, 1.0, exact=10**6)
    binned_p, binned_counts = _zipf_grid(1e5, 1.0, exact=1_000, bins=2_000)
    # the share of the top 1,000 queries is the same whether the tail is binned or summed term by term
    assert float(binned_p[:1000].sum()) == pytest.approx(float(exact_p[:1000].sum()), rel=1e-3)
    assert math.isclose(float(np.sum(binned_p * binned_counts)), 1.0, rel_tol=1e-9)
