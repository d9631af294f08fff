"""The command line's training objectives: every estimator steps, VIMCO's baseline, unbiasedness."""

import itertools
import math

import pytest
import torch
from torch import nn

from stochgrad.cli import models
from stochgrad.cli.models import FAMILIES, VAE
from stochgrad.cli.objectives import estimator_available, make_objective
from stochgrad.cli.train import UsageError

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


# --- igr: InvertibleGaussian posterior and prior (Potapczynski et al., 2020) ---------------------

IGR_LATENTS = [("categorical", 3), ("bernoulli", 5)]  # (latent, dim)


def test_igr_is_wired_for_both_discrete_families():
    assert ("categorical", "igr") in PAIRS and ("bernoulli", "igr") in PAIRS
    # loc and scale of C - 1 Gaussians per unit: 20 x 9 of each for the 20x10 categorical VAE
    assert FAMILIES["categorical"].param_size(20, "igr") == 2 * 20 * 9
    assert FAMILIES["bernoulli"].param_size(200, "igr") == 2 * 200 * 1


def _independent_igr_elbo(vae, images, temperature, seed):
    """The single-sample IGR ELBO written out from the paper, sharing only the weights."""
    family, dim = vae.family, vae.dim
    free = family.categories - 1
    raw = vae.encoder(images).unflatten(-1, (dim, 2 * free))
    loc = raw[..., :free]
    scale = nn.functional.softplus(raw[..., free:]) + models._MIN_POSITIVE
    torch.manual_seed(seed)
    y = loc + scale * torch.randn(loc.shape, dtype=loc.dtype)
    if family.name == "bernoulli":  # softmax([y / t, 0])[0] = sigmoid(y / t)
        features = torch.sigmoid(y / temperature).squeeze(-1)
    else:
        one_hot = torch.softmax(torch.cat([y / temperature, torch.zeros_like(y[..., :1])], -1), -1)
        features = one_hot.flatten(-2)
    logits = vae.decoder(features)
    reconstruction = -nn.functional.binary_cross_entropy_with_logits(
        logits, images, reduction="none"
    ).sum(-1)
    # softmax++ is one bijection for q and p, so KL = sum of KL(N(loc, scale) || N(0, 1))
    kl = (-scale.log() + (scale**2 + loc**2) / 2 - 0.5).sum((-2, -1))
    return reconstruction, kl


@pytest.mark.parametrize(("latent", "dim"), IGR_LATENTS)
def test_igr_loss_is_reconstruction_plus_closed_form_kl(latent, dim):
    torch.manual_seed(0)
    temperature = 0.7
    vae = VAE(FAMILIES[latent], dim, 16, "igr", hidden=(12,), temperature=temperature).double()
    objective = make_objective("igr", 16, samples=1, temperature=temperature, dim=dim)
    images = torch.bernoulli(torch.full((6, 16), 0.4, dtype=torch.float64))
    torch.manual_seed(11)
    loss, bound = objective(vae, images)
    reconstruction, kl = _independent_igr_elbo(vae, images, temperature, seed=11)
    torch.testing.assert_close(bound, reconstruction - kl, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(loss, (kl - reconstruction).mean(), rtol=1e-12, atol=1e-10)
    # twin: the one-sample Monte Carlo KL (same expectation) is not what the loss uses
    q, prior = vae.posterior(images), vae.prior(images)
    torch.manual_seed(11)
    z = q.rsample()
    monte_carlo_kl = q.log_prob(z) - prior.log_prob(z)
    assert not torch.allclose(monte_carlo_kl, kl, rtol=1e-3, atol=1e-3)


def test_igr_model_and_objective_must_share_the_temperature():
    vae = VAE(FAMILIES["categorical"], 2, 16, "igr", hidden=(8,), temperature=0.5)
    objective = make_objective("igr", 16, samples=1, temperature=1.0, dim=2)
    with pytest.raises(UsageError, match="--temperature 1.0 with --estimator igr"):
        objective(vae, torch.zeros(3, 16))


def test_igr_temperature_is_saved_with_the_weights():
    trained = VAE(FAMILIES["categorical"], 2, 16, "igr", hidden=(8,), temperature=0.3)
    reloaded = VAE(FAMILIES["categorical"], 2, 16, "igr", hidden=(8,))
    reloaded.load_state_dict(trained.state_dict())
    assert reloaded.posterior(torch.zeros(1, 16)).base_dist.temperature.eq(0.3).all()
    assert reloaded.prior(torch.zeros(())).base_dist.temperature.eq(0.3).all()
    with pytest.raises(ValueError, match="temperature must be > 0, got 0.0"):
        VAE(FAMILIES["categorical"], 2, 16, "igr", temperature=0.0)
