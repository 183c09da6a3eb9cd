"""Each loss against a hand-computed value; the sampler and the schedule against theory."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdgan import losses


def test_l2_logits_hand_computed():
    zs = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    zt = torch.tensor([[1.0, 0.0, 4.0], [1.0, 1.0, 1.0]])
    # row 1: 0.5 * (0 + 4 + 1) = 2.5; row 2: 0.5 * 3 = 1.5; mean 2.0
    assert losses.l2_logits(zs, zt).item() == pytest.approx(2.0)


def test_kl_distill_hand_computed():
    zs = torch.tensor([[0.0, 0.0]])
    zt = torch.tensor([[math.log(3.0) * 2, 0.0]])  # at T=2 the teacher gives p = (3/4, 1/4)
    p = torch.tensor([0.75, 0.25])
    expected = 4 * (p * torch.log(p / 0.5)).sum().item()  # T^2 KL(p || uniform)
    assert losses.kl_distill(zs, zt, temperature=2.0).item() == pytest.approx(expected, rel=1e-6)
    assert losses.kl_distill(zt, zt, temperature=2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_distillation_targets_are_detached():
    zs = torch.zeros(2, 3, requires_grad=True)
    zt = torch.ones(2, 3, requires_grad=True)
    for kind in ("l2", "kl"):
        losses.distillation(kind, zs, zt, 4.0).backward()
    assert zt.grad is None and zs.grad is not None


def test_discriminator_terms_hand_computed():
    s = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    y = torch.tensor([1, 0])
    sig = torch.sigmoid
    real = -(math.log(sig(torch.tensor(2.0))) + math.log(sig(torch.tensor(1.0)))) / 2
    assert losses.dis_real(s, y).item() == pytest.approx(real, rel=1e-6)
    p = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    fake = -(0.5 * math.log(0.5) + 0.5 * math.log(1 - sig(torch.tensor(2.0)).item())
             + math.log(1 - sig(torch.tensor(1.0)).item())) / 2
    assert losses.dis_fake_exact(s, p).item() == pytest.approx(fake, rel=1e-6)
    # a one-hot sample picks one label's score, exactly as the expectation's term does
    one_hot = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    sampled = -(math.log(1 - sig(torch.tensor(2.0)).item())
                + math.log(1 - sig(torch.tensor(1.0)).item())) / 2
    assert losses.dis_fake_sampled(s, one_hot).item() == pytest.approx(sampled, rel=1e-6)


def test_adversarial_costs():
    score = torch.tensor([0.0, 3.0])
    assert losses.adversarial_cost(score, "saturating").tolist() == pytest.approx(
        [math.log(0.5), math.log(1 - 1 / (1 + math.exp(-3)))], rel=1e-6)
    assert losses.adversarial_cost(score, "nonsaturating").tolist() == pytest.approx(
        [-math.log(0.5), -math.log(1 / (1 + math.exp(-3)))], rel=1e-6)
    with pytest.raises(ValueError, match="adv_loss"):
        losses.adversarial_cost(score, "wgan")


def test_gumbel_noise_is_finite_and_has_gumbel_moments():
    torch.manual_seed(0)
    g = losses.gumbel_noise((200_000,))
    assert torch.isfinite(g).all()
    # Gumbel(0, 1): mean = Euler-Mascheroni constant, variance = pi^2 / 6
    assert g.mean().item() == pytest.approx(0.5772, abs=0.01)
    assert g.var().item() == pytest.approx(math.pi**2 / 6, abs=0.03)


def test_gumbel_softmax_argmax_frequencies_match_p():
    torch.manual_seed(0)
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    draws = 40_000
    samples = losses.gumbel_softmax(p.log().expand(draws, 4), tau=0.5)
    freq = torch.bincount(samples.argmax(-1), minlength=4).double() / draws
    # each frequency within 5 binomial standard errors of p
    se = torch.sqrt(p.double() * (1 - p.double()) / draws)
    assert ((freq - p.double()).abs() < 5 * se).all(), (freq, p)


def test_gumbel_softmax_approaches_one_hot_as_tau_goes_to_zero():
    torch.manual_seed(0)
    log_p = torch.log_softmax(torch.randn(2000, 10), -1)
    max_mass = [losses.gumbel_softmax(log_p, tau).max(-1).values.mean().item()
                for tau in (5.0, 1.0, 0.1, 0.01)]
    assert max_mass == sorted(max_mass)
    assert max_mass[0] < 0.5 and max_mass[-1] > 0.99
    # at every temperature a sample is a point of the simplex
    sample = losses.gumbel_softmax(log_p, 0.3)
    assert torch.allclose(sample.sum(-1), torch.ones(2000)) and (sample >= 0).all()


def test_straight_through_is_one_hot_with_the_relaxed_gradient():
    torch.manual_seed(0)
    logits = torch.randn(5, 4, requires_grad=True)
    y = losses.gumbel_softmax(logits, 0.5, hard=True)
    one_hot = torch.nn.functional.one_hot(y.detach().argmax(-1), 4).float()
    assert torch.allclose(y.detach(), one_hot, atol=1e-6)
    (y * torch.arange(4.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_tau_schedule_end_points_and_exponential_decay():
    assert losses.tau_at(0.0, 1.0, 0.1) == pytest.approx(1.0)
    assert losses.tau_at(1.0, 1.0, 0.1) == pytest.approx(0.1)
    assert losses.tau_at(0.5, 1.0, 0.1) == pytest.approx(math.sqrt(0.1))  # geometric midpoint
    assert losses.tau_at(-1.0) == pytest.approx(1.0) and losses.tau_at(2.0) == pytest.approx(0.1)


def _expected_cost_gradient(logits: torch.Tensor, s: torch.Tensor, kind: str) -> torch.Tensor:
    """The exact gradient of E_{y~softmax(logits)}[cost(s_y)] by summing over labels."""
    logits = logits.clone().requires_grad_(True)
    p = torch.softmax(logits, -1)
    (p * losses.adversarial_cost(s, kind)).sum(-1).mean().backward()
    return logits.grad


@pytest.mark.parametrize("baseline", [False, True])
def test_reinforce_gradient_is_unbiased(baseline):
    torch.manual_seed(0)
    logits = torch.tensor([[0.5, -0.2, 1.0]])
    s = torch.tensor([[2.0, -1.0, 0.0]])
    exact = _expected_cost_gradient(logits, s, "nonsaturating")
    reps = 20_000
    batch = logits.expand(reps, 3).clone().requires_grad_(True)
    loss = losses.adv_reinforce(batch, s.expand(reps, 3), "nonsaturating", baseline=baseline)
    loss.backward()
    estimate = batch.grad.sum(0, keepdim=True)  # mean over reps of per-example gradients
    assert torch.allclose(estimate, exact, atol=0.03), (estimate, exact)


def test_pathwise_gradient_moves_mass_towards_labels_d_accepts():
    logits = torch.zeros(1, 3, requires_grad=True)
    s = torch.tensor([[5.0, -5.0, -5.0]])  # D believes label 0, rejects 1 and 2
    torch.manual_seed(0)
    loss = sum(losses.adv_pathwise(logits, s, 1.0, "nonsaturating") for _ in range(200))
    loss.backward()
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1]  # descent raises logit 0, lowers 1


def test_cross_entropy_skips_unlabelled_rows():
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    y = torch.tensor([2, -100, 0, -100, 3])  # -100: kdgan.data.UNLABELED
    labelled = torch.tensor([0, 2, 4])
    torch.testing.assert_close(losses.cross_entropy(logits, y),
                               F.cross_entropy(logits[labelled], y[labelled]))
    dist = torch.zeros(5, 4)
    dist[0, 2] = dist[2, 0] = dist[4, 3] = 0.5
    dist[0, 1] = dist[2, 1] = dist[4, 0] = 0.5  # multi-label rows; rows 1 and 3 unlabelled
    expected = -(dist[labelled] * F.log_softmax(logits[labelled], -1)).sum(-1).mean()
    torch.testing.assert_close(losses.cross_entropy(logits, dist), expected)
    # the unlabelled rows get no gradient
    losses.cross_entropy(logits, dist).backward()
    assert logits.grad[[1, 3]].abs().sum() == 0 and logits.grad[labelled].abs().sum() > 0
