"""The command line's training objectives: every estimator steps, VIMCO's baseline, unbiasedness."""

import itertools
import math

import pytest
import torch
from torch import nn

from stochgrad.cli.models import FAMILIES, VAE
from stochgrad.cli.objectives import estimator_available, make_objective

PAIRS = [
    (latent, estimator)
    for latent, family in FAMILIES.items()
    for estimator in family.estimators
    if family.available() and estimator_available(estimator)
]


def test_the_main_job_pairs_are_available():
    for pair in [("normal", "implicit"), ("gamma", "implicit"), ("beta", "implicit"),
                 ("vonmises", "implicit"), ("bernoulli", "gumbel"), ("bernoulli", "nvil"),
                 ("bernoulli", "vimco"), ("bernoulli", "disarm")]:  # fmt: skip
        assert pair in PAIRS


@pytest.mark.parametrize(("latent", "estimator"), PAIRS, ids=lambda value: str(value))
def test_one_step_gives_finite_gradients_everywhere(latent, estimator):
    torch.manual_seed(0)
    family = FAMILIES[latent]
    dim = 4 if family.name != "bernoulli" else 8
    vae = VAE(family, dim, 16, estimator, hidden=(12, 8))
    objective = make_objective(estimator, 16, samples=3, temperature=0.5, dim=dim)
    images = torch.bernoulli(torch.full((6, 16), 0.4))
    loss, bound = objective(vae, images)
    assert loss.shape == () and bound.shape == (6,)
    assert torch.isfinite(loss) and torch.isfinite(bound).all()
    if hasattr(objective, "backward"):  # REBAR / RELAX step their control variate themselves
        objective.backward(loss, vae)
    else:
        loss.backward()
    owned = [] if hasattr(objective, "backward") else list(objective.named_parameters())
    for name, parameter in [*vae.named_parameters(), *owned]:
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert vae.encoder[0].weight.grad.abs().sum() > 0
    assert vae.decoder[0].weight.grad.abs().sum() > 0


class _LogitsEncoder(nn.Module):
    """An 'encoder' whose output is one learnable logit vector, the same for every image."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, images):
        return self.logits.expand(len(images), -1)


def _exact_elbo_gradient(vae, image):
    """d ELBO / d logits by enumerating the 2^3 latent states."""
    logits = vae.encoder.logits
    q = vae.posterior(image[None])
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)))
    log_likelihood = vae.log_likelihood(image, states).detach()
    probabilities = q.log_prob(states[:, None]).exp().squeeze(-1)
    kl = torch.distributions.kl_divergence(q, vae.prior(image).expand(q.batch_shape)).sum()
    elbo = (probabilities * log_likelihood).sum() - kl
    return torch.autograd.grad(elbo, logits)[0]


@pytest.mark.parametrize("estimator", ["reinforce", "disarm", "rebar", "relax"])
def test_score_function_estimators_are_unbiased(estimator):
    """20 groups x 2,000 copies of one image; the mean gradient must be within 5 SE of exact."""
    torch.manual_seed(2)
    vae = VAE(FAMILIES["bernoulli"], 3, 16, estimator, hidden=(8,))
    vae.encoder = _LogitsEncoder(torch.tensor([0.3, -1.0, 1.5]))
    objective = make_objective(estimator, 16, samples=2, temperature=0.5, dim=3)
    image = torch.bernoulli(torch.full((16,), 0.5))
    exact = _exact_elbo_gradient(vae, image)
    groups = []
    for _ in range(20):
        vae.zero_grad()
        loss, _ = objective(vae, image.expand(2000, 16))
        if hasattr(objective, "backward"):
            objective.backward(loss, vae)
        else:
            loss.backward()
        groups.append(-vae.encoder.logits.grad.clone())  # the loss is the negative ELBO
    groups = torch.stack(groups)
    standard_error = groups.std(0) / math.sqrt(len(groups))
    assert ((groups.mean(0) - exact).abs() < 5 * standard_error).all()
    # twin: the same test rejects a gradient off by 10%
    assert ((groups.mean(0) - 1.1 * exact).abs() > 5 * standard_error).any()
