"""The variance of the classifier's gradients over an epoch (paper Figure 7).

For each tracked term (unweighted) of the classifier's game loss, the sums of g and g^2 per
parameter over the epoch's steps give the total variance trace(Cov g) = sum(E[g^2] - E[g]^2)
and the squared norm of the mean gradient ||E[g]||^2: a low-variance estimator shows a small
first number beside the second.
"""

from __future__ import annotations

import torch
from torch import nn


class GradientVariance:
    """Accumulates per-step gradients of some loss terms of one model, epoch by epoch."""

    def __init__(self, model: nn.Module, terms: tuple[str, ...] = ("cls/adv", "cls/distill")) -> None:
        self.model = model
        self.terms = terms
        self._sums: dict[str, list] = {}  # term -> [sum of g, sum of g^2, steps]

    def track(self, terms: dict[str, torch.Tensor]) -> None:
        """Add the gradient of each tracked term present in `terms` (the graph is kept for the
        step's own backward pass)."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        for term in self.terms:
            if term not in terms:
                continue
            grads = torch.autograd.grad(terms[term], params, retain_graph=True)
            g = torch.cat([x.reshape(-1) for x in grads])  # (P,) every parameter
            acc = self._sums.setdefault(term, [torch.zeros_like(g), torch.zeros_like(g), 0])
            acc[0] += g
            acc[1] += g * g
            acc[2] += 1

    def summary(self) -> dict[str, float]:
        """`grad/<term>_var` and `grad/<term>_mean_sq` of each term seen since the last
        summary; starts the next epoch's sums."""
        out = {}
        for term, (s1, s2, k) in self._sums.items():
            mean = s1 / k
            out[f"grad/{term.split('/')[1]}_var"] = float((s2 / k - mean * mean).sum())
            out[f"grad/{term.split('/')[1]}_mean_sq"] = float((mean * mean).sum())
        self._sums = {}
        return out
