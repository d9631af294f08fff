"""The command line's objectives (stochgrad.vae losses): each estimator steps; unbiasedness."""

import itertools
import math

import pytest
import torch
from torch import nn

from stochgrad.cli import models
from stochgrad.cli.models import FAMILIES, VAE
from stochgrad.cli.objectives import ESTIMATORS, make_objective

PAIRS = [
    (latent, estimator)
    for latent, family in FAMILIES.items()
    for estimator in family.estimators
    if estimator in ESTIMATORS
]


def test_every_estimator_of_a_family_is_wired():
    assert [pair for pair in PAIRS] == [
        (latent, estimator)
        for latent, family in FAMILIES.items()
        for estimator in family.estimators
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
    objective = make_objective(estimator, vae, 16, samples=3, temperature=0.5)
    images = torch.bernoulli(torch.full((6, 16), 0.4))
    loss = objective(images)
    assert loss.shape == () and torch.isfinite(loss) and math.isfinite(objective.bound)
    loss.backward()
    # the model's and the learned control variates' parameters, from the one backward
    for name, parameter in objective.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    first_layer = [m for m in vae.encoder.modules() if isinstance(m, nn.Linear)][0]
    assert first_layer.weight.grad.abs().sum() > 0
    assert vae.decoder[1][0].weight.grad.abs().sum() > 0


class _LogitsEncoder(nn.Module):
    """An 'encoder' whose output is one learnable logit vector, the same for every image."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, images):
        return {"logits": self.logits.expand(len(images), -1)}


def _exact_elbo_gradient(vae, image):
    """d ELBO / d logits by enumerating the 2^3 latent states."""
    logits = vae.encoder.logits
    q = vae.posterior(image[None])
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)))
    log_likelihood = vae.gen_model.log_likelihood(image[None], states[None])[0].detach()
    probabilities = q.log_prob(states[:, None]).exp().squeeze(-1)
    kl = torch.distributions.kl_divergence(q, vae.prior().expand(q.batch_shape)).sum()
    elbo = (probabilities * log_likelihood).sum() - kl
    return torch.autograd.grad(elbo, logits)[0]


# (NVIL is left out: its variance normalisation rescales the score term by design.)
@pytest.mark.parametrize(
    "estimator", ["reinforce", "loo", "muprop", "arm", "disarm", "rebar", "relax"]
)
def test_score_function_estimators_are_unbiased(estimator):
    """20 groups x 2,000 copies of one image; the mean gradient must be within 5 SE of exact."""
    torch.manual_seed(2)
    vae = VAE(FAMILIES["bernoulli"], 3, 16, estimator, hidden=(8,))
    vae.inf_net.heads[0].module = _LogitsEncoder(torch.tensor([0.3, -1.0, 1.5]))
    objective = make_objective(estimator, vae, 16, samples=2, temperature=0.5)
    image = torch.bernoulli(torch.full((16,), 0.5))
    exact = _exact_elbo_gradient(vae, image)
    groups = []
    for _ in range(20):
        vae.zero_grad()
        objective(image.expand(2000, 16)).backward()
        groups.append(-vae.encoder.logits.grad.clone())  # the loss is the negative ELBO
    groups = torch.stack(groups)
    standard_error = groups.std(0) / math.sqrt(len(groups))
    assert ((groups.mean(0) - exact).abs() < 5 * standard_error).all()
    # twin: the same test rejects a gradient off by 10%
    assert ((groups.mean(0) - 1.1 * exact).abs() > 5 * standard_error).any()


# --- igr: InvertibleGaussian posterior and prior (Potapczynski et al., 2020) ---------------------

IGR_LATENTS = [("categorical", 3), ("bernoulli", 5)]  # (latent, dim)


def _output_size(vae):
    return [m for m in vae.encoder.modules() if isinstance(m, nn.Linear)][-1].out_features


def test_igr_is_wired_for_both_discrete_families():
    assert ("categorical", "igr") in PAIRS and ("bernoulli", "igr") in PAIRS
    # loc and scale of C - 1 Gaussians per unit: 20 x 9 of each for the 20x10 categorical VAE
    assert _output_size(VAE(FAMILIES["categorical"], 20, 16, "igr")) == 2 * 20 * 9
    assert _output_size(VAE(FAMILIES["bernoulli"], 200, 16, "igr")) == 2 * 200 * 1


def _independent_igr_elbo(vae, images, temperature, seed):
    """The single-sample IGR ELBO written out from the paper, sharing only the weights."""
    family, dim = vae.family, vae.dim
    free = family.categories - 1
    raw = vae.encoder.body(images).unflatten(-1, (dim, 2 * free))
    loc = raw[..., :free]
    scale = nn.functional.softplus(raw[..., free:]) + models._MIN_POSITIVE
    torch.manual_seed(seed)
    y = loc + scale * torch.randn(loc.shape, dtype=loc.dtype)
    if family.name == "bernoulli":  # softmax([y / t, 0])[0] = sigmoid(y / t)
        features = torch.sigmoid(y / temperature).squeeze(-1)
    else:
        one_hot = torch.softmax(torch.cat([y / temperature, torch.zeros_like(y[..., :1])], -1), -1)
        features = one_hot.flatten(-2)
    logits = vae.decoder[1](features)
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
    objective = make_objective("igr", vae, 16, samples=1, temperature=temperature)
    images = torch.bernoulli(torch.full((6, 16), 0.4, dtype=torch.float64))
    torch.manual_seed(11)
    loss = objective(images)
    reconstruction, kl = _independent_igr_elbo(vae, images, temperature, seed=11)
    torch.testing.assert_close(loss, (kl - reconstruction).mean(), rtol=1e-12, atol=1e-10)
    for index in range(len(images)):  # each example's bound, with the same noise
        torch.manual_seed(11)
        objective(images[index : index + 1])
        example = _independent_igr_elbo(vae, images[index : index + 1], temperature, seed=11)
        expected = (example[0] - example[1]).item()
        assert objective.bound == pytest.approx(expected, rel=1e-12, abs=1e-10)
    # twin: the one-sample Monte Carlo KL (same expectation) is not what the loss uses
    q, prior = vae.posterior(images), vae.prior()
    torch.manual_seed(11)
    z = q.rsample()
    monte_carlo_kl = q.log_prob(z) - prior.log_prob(z)
    assert not torch.allclose(monte_carlo_kl, kl, rtol=1e-3, atol=1e-3)


def test_igr_posterior_and_prior_share_the_model_temperature():
    # The temperature lives in the model only (q and p), so an objective cannot disagree with it.
    vae = VAE(FAMILIES["categorical"], 2, 16, "igr", hidden=(8,), temperature=0.7)
    assert vae.posterior(torch.zeros(3, 16)).base_dist.temperature.eq(0.7).all()
    assert vae.prior().base_dist.temperature.eq(0.7).all()


def test_igr_temperature_is_saved_with_the_weights():
    trained = VAE(FAMILIES["categorical"], 2, 16, "igr", hidden=(8,), temperature=0.3)
    reloaded = VAE(FAMILIES["categorical"], 2, 16, "igr", hidden=(8,))
    reloaded.load_state_dict(trained.state_dict())
    assert reloaded.posterior(torch.zeros(1, 16)).base_dist.temperature.eq(0.3).all()
    assert reloaded.prior().base_dist.temperature.eq(0.3).all()
    with pytest.raises(ValueError, match="temperature must be > 0, got 0.0"):
        VAE(FAMILIES["categorical"], 2, 16, "igr", temperature=0.0)
