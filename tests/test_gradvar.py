"""kdgan.gradvar: the epoch's gradient variance against a plain computation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdgan.gradvar import GradientVariance


def test_the_sums_give_the_variance_and_mean_of_the_per_step_gradients():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    tracker = GradientVariance(model)
    grads = []
    for _ in range(5):
        loss = model(torch.randn(8, 4)).pow(2).mean()
        grads.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()),
                                                                         retain_graph=True)]))
        tracker.track({"cls/adv": loss, "cls/other": 2 * loss})  # an untracked term is left out
        loss.backward()  # the step's own pass still has its graph
    g = torch.stack(grads)  # (steps, parameters)
    out = tracker.summary()
    assert set(out) == {"grad/adv_var", "grad/adv_mean_sq"}
    assert out["grad/adv_var"] == pytest.approx(g.var(dim=0, unbiased=False).sum().item(), rel=1e-5)
    assert out["grad/adv_mean_sq"] == pytest.approx(g.mean(0).pow(2).sum().item(), rel=1e-5)
    assert tracker.summary() == {}  # the next epoch starts afresh
