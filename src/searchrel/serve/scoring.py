"""The student's scorer on the request path, in NumPy: one gather of the candidates' rows and one small MLP.

``Student.score`` in PyTorch pays per call for autograd bookkeeping, tensor wrapping and a lock around the module;
for 400 candidates that overhead is most of the scoring time. Here the same arithmetic runs on float32 arrays
copied once from the student's weights: ``[q*d, |q-d|, q.d, z]`` -> Linear -> GELU (exact, erf) -> Linear, plus the
linear residual on the standardised pair features ``z``, softmax over the grades. Stateless, so any number of
request threads may call it at once. Only the GELU borrows torch's kernel, on a tensor sharing the array's
memory: ``scipy.special.erf`` took 0.3-0.6 ms of a 1.3 ms call for 400 candidates, torch's GELU 0.03 ms. ``tests/test_serve.py`` checks it against ``Student.predict`` (max |dp| 1e-5).
"""

from __future__ import annotations

import numpy as np
import torch

from searchrel.student.model import Side, Student


def _array(t) -> np.ndarray:
    return t.detach().cpu().float().numpy().copy()


class NumpyScorer:
    """Grade probabilities of (query, item) pairs with a loaded student's scorer weights."""

    def __init__(self, student: Student):
        self.student = student
        lin1, lin2 = student.scorer[0], student.scorer[-1]
        self.w1, self.b1 = _array(lin1.weight).T.copy(), _array(lin1.bias)
        self.w2, self.b2 = _array(lin2.weight).T.copy(), _array(lin2.bias)
        self.mean, self.std = _array(student.feat_mean), _array(student.feat_std)
        self.skip = None if student.skip is None else (_array(student.skip.weight).T.copy(), _array(student.skip.bias))

    def predict(self, qs: Side, q_idx: np.ndarray, items: Side, i_idx: np.ndarray) -> np.ndarray:
        """``[n, n_grades]`` float32 for pairs (qs[q_idx[k]], items[i_idx[k]]), as ``Student.predict`` gives them."""
        q, d = qs.emb[q_idx], items.emb[i_idx]
        parts = [q * d, np.abs(q - d), np.einsum("nd,nd->n", q, d)[:, None]]
        z = None
        feats = self.student.pair_features(qs, q_idx, items, i_idx)
        if feats is not None:
            z = (feats.astype(np.float32) - self.mean) / self.std
            parts.append(z)
        h = np.concatenate(parts, 1, dtype=np.float32) @ self.w1 + self.b1
        h = torch.nn.functional.gelu(torch.from_numpy(h)).numpy()  # exact GELU; scipy's erf took half the time
        logits = h @ self.w2 + self.b2
        if self.skip is not None and z is not None:
            logits += z @ self.skip[0] + self.skip[1]
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        return (p / p.sum(1, keepdims=True)).astype(np.float32)
