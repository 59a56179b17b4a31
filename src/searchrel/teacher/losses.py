"""The teacher's losses: grade cross-entropy (calibrated grades) and a listwise ranking loss (the order within a query).

Pointwise cross-entropy alone learns each pair's grade but not the order of one query's items; ListNet (Cao et al.,
2007, the top-one form that sentence-transformers' ``ListNetLoss`` also uses) compares, per query, the softmax of
the model's scores with the softmax of the human grades. The teacher trains on ``ce + listwise_weight * listnet``.
"""

from __future__ import annotations

import torch


def grade_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the grade logits ``[n, G]`` against target distributions ``[n, G]``."""
    return torch.sum(-targets * torch.log_softmax(logits.float(), -1), -1).mean()


def listnet_loss(scores: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor,
                 temperature: float = 1.0) -> torch.Tensor:
    """ListNet top-one loss averaged over the groups (queries) of a batch that have two or more items.

    Per group g: ``-sum_i softmax(labels_g / T)_i * log softmax(scores_g)_i``. ``groups`` holds one id per row;
    rows of one group need not be contiguous. A batch without a group of two gives 0 (no ranking to learn)."""
    losses = []
    for g in torch.unique(groups):
        rows = groups == g
        if int(rows.sum()) < 2:
            continue
        target = torch.softmax(labels[rows].float() / temperature, -1)
        losses.append(-(target * torch.log_softmax(scores[rows].float(), -1)).sum())
    if not losses:
        return scores.sum() * 0.0
    return torch.stack(losses).mean()
