"""Relaxed families inside Pyro inference: an SVI step runs with them as guide sites."""

from __future__ import annotations

import pytest
import torch

import stochgrad.relaxed as relaxed

pyro = pytest.importorskip("pyro")
import pyro.distributions as pyro_dist  # noqa: E402
from pyro.infer import SVI, Trace_ELBO  # noqa: E402
from pyro.optim import Adam  # noqa: E402


def _svi_step(model, guide) -> float:
    pyro.clear_param_store()
    svi = SVI(model, guide, Adam({"lr": 0.1}), Trace_ELBO())
    torch.manual_seed(0)
    losses = [svi.step() for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))
    return losses[-1]


def test_svi_with_a_relaxed_bernoulli_guide_under_a_plate():
    data = torch.tensor([0.9, 0.1, 0.8])

    def model():
        with pyro.plate("items", 3):
            z = pyro.sample("z", relaxed.RebarRelaxation(torch.tensor(0.5), torch.tensor(0.5)))
            pyro.sample("x", pyro_dist.Normal(z, 0.3), obs=data)

    def guide():
        theta = pyro.param(
            "theta", torch.full((3,), 0.5), constraint=pyro_dist.constraints.unit_interval
        )
        with pyro.plate("items", 3):
            pyro.sample("z", relaxed.RebarRelaxation(theta, torch.tensor(0.5)))

    _svi_step(model, guide)
    theta = pyro.param("theta")
    assert theta.shape == (3,) and not torch.equal(theta, torch.full((3,), 0.5))


def test_svi_with_igr_guide_and_registered_kl_shapes():
    def model():
        prior = relaxed.InvertibleGaussian(torch.zeros(2), torch.ones(2), 0.5)
        z = pyro.sample("z", prior)
        pyro.sample("x", pyro_dist.Normal(z[..., 0], 0.2), obs=torch.tensor(0.8))

    def guide():
        loc = pyro.param("loc", torch.zeros(2))
        pyro.sample("z", relaxed.InvertibleGaussian(loc, torch.ones(2), 0.5))

    _svi_step(model, guide)
    assert pyro.param("loc").shape == (2,)


def test_svi_with_straight_through_guide_and_bernoulli_model():
    def model():
        with pyro.plate("items", 4):
            b = pyro.sample("b", pyro_dist.Bernoulli(0.5))
            pyro.sample("x", pyro_dist.Normal(b, 0.5), obs=torch.tensor([1.0, 0.0, 1.0, 1.0]))

    def guide():
        logits = pyro.param("logits", torch.zeros(4))
        with pyro.plate("items", 4):
            pyro.sample("b", relaxed.StraightThroughBernoulli(logits=logits))

    _svi_step(model, guide)
    assert (pyro.param("logits") != 0).all()


def test_to_event_and_mask_return_pyro_distributions():
    dist = relaxed.HardConcrete(torch.ones(3), 0.5).to_event(1)
    assert isinstance(dist, pyro_dist.Independent) and dist.event_shape == (3,)
    masked = relaxed.HardConcrete(torch.ones(3), 0.5).mask(torch.tensor([True, False, True]))
    assert masked.log_prob(torch.full((3,), 0.5))[1] == 0
