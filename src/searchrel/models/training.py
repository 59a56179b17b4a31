"""What the teacher's and the student's training loops share: the learning-rate schedule, the time budget (and the
error for work it cannot cut short) and early stopping. The loops themselves stay two linear loops
(``teacher/train.py``, ``student/train.py``)."""

from __future__ import annotations

import math
import time

import torch
from pydantic import BaseModel


def warmup_then_decay(opt: torch.optim.Optimizer, warmup_share: float, total_steps: int):
    """Linear warm-up over ``warmup_share`` of the steps (at least one), then linear decay to zero at the end."""
    warm = max(1, int(warmup_share * total_steps))

    def factor(s: int) -> float:
        return min((s + 1) / warm, max(0.0, (total_steps - s) / max(1, total_steps - warm)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


class Budget:
    """Wall-clock minutes for a run (None: no limit), counting what a resumed run had already spent."""

    def __init__(self, max_minutes: float | None, spent_s: float = 0.0):
        self.max_minutes = max_minutes
        self.limit_s = max_minutes * 60 if max_minutes else math.inf
        self.started = time.perf_counter() - spent_s

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def spent(self) -> bool:
        return self.elapsed_s > self.limit_s

    @property
    def left_min(self) -> float | None:
        """Minutes left (never below 0); None without a limit."""
        return None if self.max_minutes is None else max(0.0, self.limit_s - self.elapsed_s) / 60


class BudgetSpent(RuntimeError):
    """The time budget ran out in work with no usable partial result (an ensemble teacher's zero-shot encodings,
    where a training loop would stop cleanly with its best checkpoint). What was done is kept; the message says how
    to continue."""


class EarlyStopping(BaseModel):
    """The best validation score so far, its step, and how many validations since brought nothing better; saved
    with a checkpoint so a resumed run stops where an uninterrupted one would."""

    best: float | None = None
    best_step: int = -1
    bad: int = 0

    def update(self, score: float | None, step: int) -> bool:
        """Record one validation; True when it is the best so far (a missing score never is)."""
        value = -math.inf if score is None else score
        if value > (-math.inf if self.best is None else self.best):
            self.best, self.best_step, self.bad = value, step, 0
            return True
        self.bad += 1
        return False

    def stop(self, patience: int) -> bool:
        return self.bad >= patience


class Parallel:
    """This process's place in a data-parallel run (rank ``rank`` of ``world``; 0 of 1 alone).

    Every rank walks the same batch order; ``share`` gives each its part of a global batch, and ``weight`` scales
    its mean loss so that the ranks' gradients, averaged by DDP, are the gradient of the global batch's mean loss —
    the same step a single process takes on the whole batch. Rank 0 leads: it validates, checkpoints and decides
    when to stop; ``agree`` hands its decision to every rank."""

    def __init__(self, rank: int = 0, world: int = 1):
        self.rank, self.world = rank, world

    @property
    def lead(self) -> bool:
        return self.rank == 0

    def share(self, batch, groups=None):
        """This rank's rows of ``batch`` (row indices): contiguous slices, or whole groups (queries) when
        ``groups`` gives each row's group, so a per-group loss sees each group on one rank."""
        import numpy as np

        batch = np.asarray(batch)
        if self.world == 1:
            return batch
        if groups is None:
            return np.array_split(batch, self.world)[self.rank]
        keys = list(dict.fromkeys(np.asarray(groups)[batch].tolist()))
        mine = set(np.array_split(np.asarray(keys, dtype=object), self.world)[self.rank].tolist())
        return batch[[g in mine for g in np.asarray(groups)[batch].tolist()]]

    def weight(self, local: int, total: int) -> float:
        """Factor on this rank's mean over ``local`` of the batch's ``total`` units (pairs, or groups)."""
        return self.world * local / total if total else 0.0

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank."""
        if self.world == 1:
            return flag
        import torch.distributed as dist

        t = torch.tensor([int(flag)])
        dist.broadcast(t, src=0)
        return bool(t.item())
