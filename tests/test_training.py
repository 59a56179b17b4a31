"""The helpers the teacher's and the student's training loops share: schedule, budget, early stopping."""

import math

import pytest
import torch

from searchrel.models.training import Budget, EarlyStopping, warmup_then_decay


def test_schedule_warms_up_linearly_then_decays_to_zero():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_then_decay(opt, warmup_share=0.2, total_steps=10)  # 2 warm-up steps
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert lrs[2:] == sorted(lrs[2:], reverse=True) and lrs[-1] == pytest.approx(1 / 8)
    assert opt.param_groups[0]["lr"] == 0.0  # zero once every step is done


def test_early_stopping_keeps_the_best_and_counts_what_follows():
    early = EarlyStopping()
    assert early.update(None, 1) is False and early.best is None  # a missing score is never the best
    assert early.update(0.5, 2) and early.update(0.6, 3)
    assert not early.update(0.6, 4) and not early.update(0.1, 5)  # ties do not count as better
    assert (early.best, early.best_step, early.bad) == (0.6, 3, 2) and early.stop(2) and not early.stop(3)
    restored = EarlyStopping.model_validate_json(early.model_dump_json())  # saved with a checkpoint
    assert restored == early


def test_budget_counts_what_a_resumed_run_spent():
    assert not Budget(None, spent_s=1e9).spent() and Budget(None).limit_s == math.inf
    assert Budget(1.0, spent_s=61).spent() and not Budget(1.0, spent_s=30).spent()
