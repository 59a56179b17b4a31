"""Running a model class over a table on a Ray Data actor pool — what labelling and index building share.

The table is cut into shards of ``shard_size`` rows, one input block each, so each block goes whole to one actor
as one batch and comes back as one block: the caller receives finished shards, in any order, as they arrive.
A local Ray is started (sized to the actor pool) when none is running and ``address`` is None, and shut down
afterwards; an already running Ray (or a cluster address) is joined and left as it was.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pandas as pd


def map_shards(frame: pd.DataFrame, fn: type, fn_kwargs: dict, cfg, batch_format: str = "pandas") -> Iterator:
    """Yield ``fn(**fn_kwargs)(shard)`` for every shard of ``frame``. ``cfg`` carries ``shard_size``,
    ``ray_address``, ``ray_actors``, ``ray_cpus_per_actor`` and ``ray_gpus_per_actor`` (LabelConfig, IndexConfig)."""
    try:
        import ray  # ray: an optional extra (searchrel[ray]), heavy to import
        import ray.data
    except ImportError:
        raise ImportError("the ray backend needs Ray Data: pip install 'searchrel[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        init: dict = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if cfg.ray_address:
            init["address"] = cfg.ray_address
        else:  # a local Ray sized to the actor pool, not to the whole machine
            init["num_cpus"] = max(2, math.ceil(cfg.ray_actors * cfg.ray_cpus_per_actor))
        ray.init(**init)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        ctx.execution_options.preserve_order = False
        blocks = [frame.iloc[i:i + cfg.shard_size].reset_index(drop=True)
                  for i in range(0, len(frame), cfg.shard_size)]
        resources: dict = {"num_cpus": cfg.ray_cpus_per_actor}
        if cfg.ray_gpus_per_actor > 0:
            resources["num_gpus"] = cfg.ray_gpus_per_actor
        mapped = ray.data.from_pandas(blocks).map_batches(
            fn, fn_constructor_kwargs=fn_kwargs, batch_size=cfg.shard_size, batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(size=cfg.ray_actors), **resources)
        yield from mapped.iter_batches(batch_size=None, batch_format=batch_format)
    finally:
        if started_here:
            ray.shutdown()
