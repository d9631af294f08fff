"""stochgrad distributions inside Pyro: ``pyro.sample``, plates, ``to_event`` and SVI.

Pyro is optional; these tests are skipped without it.
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributions as td

import stochgrad.implicit as irt
import stochgrad.relaxed as relaxed

pyro = pytest.importorskip("pyro")
import pyro.distributions as dist  # noqa: E402
from pyro.distributions.torch_distribution import TorchDistributionMixin  # noqa: E402
from pyro.infer import SVI, Trace_ELBO  # noqa: E402
from pyro.optim import Adam  # noqa: E402


def _scalar(value: float) -> torch.Tensor:
    return torch.tensor(value)


# One constructor per public class of stochgrad.implicit (scalar batch, so plates must expand).
IMPLICIT = {
    "Beta": lambda: irt.Beta(_scalar(2.0), _scalar(3.0)),
    "Dirichlet": lambda: irt.Dirichlet(torch.tensor([1.0, 2.0, 3.0])),
    "Gamma": lambda: irt.Gamma(_scalar(2.0), _scalar(1.0)),
    "MultivariateNormal": lambda: irt.MultivariateNormal(torch.zeros(2), torch.eye(2)),
    "Normal": lambda: irt.Normal(_scalar(0.0), _scalar(1.0)),
    "StudentT": lambda: irt.StudentT(_scalar(4.0)),
    "Factorized": lambda: irt.Factorized(td.Gumbel(_scalar(0.0), _scalar(1.0))),
    "ImplicitReparam": lambda: irt.ImplicitReparam(td.Gumbel(_scalar(0.0), _scalar(1.0))),
    "Mixture": lambda: irt.Mixture(
        [td.Normal(_scalar(-1.0), _scalar(1.0)), td.Gumbel(_scalar(1.0), _scalar(1.0))]
    ),
    "MixtureSameFamily": lambda: irt.MixtureSameFamily(
        td.Categorical(logits=torch.zeros(2)), td.Normal(torch.tensor([-1.0, 1.0]), 1.0)
    ),
    "TruncatedNormal": lambda: irt.TruncatedNormal(_scalar(0.0), _scalar(1.0), -1.0, 2.0),
    "VonMises": lambda: irt.VonMises(_scalar(0.5), _scalar(2.0)),
}


def _public_distribution_classes(module) -> set[type]:
    """The distribution classes a module exports, each once (an alias such as ``Student`` of
    ``StudentT`` names the same class)."""
    exported = (getattr(module, name) for name in module.__all__)
    return {obj for obj in exported if isinstance(obj, type) and issubclass(obj, td.Distribution)}


def test_every_implicit_class_has_a_pyro_example():
    covered = {getattr(irt, name) for name in IMPLICIT}
    missing = sorted(cls.__name__ for cls in _public_distribution_classes(irt) - covered)
    assert not missing, f"implicit classes without a Pyro example: {missing}"


@pytest.mark.parametrize("name", list(IMPLICIT))
def test_pyro_sample_under_a_plate_broadcasts_every_implicit_class(name):
    # It raised "TypeError: 'Gamma' object is not callable" for every class.
    law = IMPLICIT[name]()
    if not isinstance(law, td.Distribution):  # ImplicitReparam may return the base itself
        pytest.skip(f"{name} returned {type(law).__name__}")
    assert isinstance(law, TorchDistributionMixin)

    def model():
        with pyro.plate("items", 5):
            return pyro.sample("z", IMPLICIT[name]())

    trace = pyro.poutine.trace(model).get_trace()
    site = trace.nodes["z"]
    assert site["value"].shape == (5, *law.event_shape)
    assert site["fn"].batch_shape == (5,)
    trace.compute_log_prob()
    assert site["log_prob"].shape == (5,) and torch.isfinite(site["log_prob"]).all()


@pytest.mark.parametrize("name", ["Gamma", "Beta", "VonMises", "MixtureSameFamily"])
def test_to_event_and_mask_on_implicit_classes(name):
    law = IMPLICIT[name]().expand((3,))
    independent = law.to_event(1)
    assert isinstance(independent, dist.Independent)
    assert independent.batch_shape == () and independent.event_shape == (3,)
    value = law.sample()
    torch.testing.assert_close(independent.log_prob(value), law.log_prob(value).sum())
    masked = law.mask(torch.tensor([True, False, True]))
    assert masked.log_prob(value)[1] == 0


def test_importing_stochgrad_does_not_import_pyro():
    code = "import sys, stochgrad.implicit, stochgrad.relaxed; assert 'pyro' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_law_built_before_importing_pyro_works_after_register():
    code = """
import torch, stochgrad.implicit as irt
from stochgrad.pyro import register
law = irt.Gamma(torch.tensor(2.0), torch.tensor(1.0))
import pyro
from pyro.distributions.torch_distribution import TorchDistributionMixin
assert not isinstance(law, TorchDistributionMixin)
register()
assert isinstance(law, TorchDistributionMixin)
with pyro.plate("items", 4):
    assert pyro.sample("z", law).shape == (4,)
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_unusable_pyro_does_not_break_the_classes():
    code = """
import sys, types
sys.modules["pyro"] = types.ModuleType("pyro")  # imported, but without pyro.distributions
import torch, stochgrad.implicit as irt
assert irt.Gamma(torch.tensor(2.0), torch.tensor(1.0)).sample().shape == ()
"""
    subprocess.run([sys.executable, "-c", code], check=True)


# --- SVI: a model and guide built from implicit and relaxed classes under a plate ------------

N = 4
COUNTS = torch.tensor([7.0, 9.0, 8.0, 10.0])  # Poisson counts: rates above the prior mean 2
HEADS = torch.tensor([1.0, 1.0, 1.0, 1.0])  # Bernoulli draws: probabilities above 1/2
ANGLES = torch.tensor([1.1, 0.9, 1.2, 1.0])  # von Mises draws around 1 (prior loc 0)
POINTS = torch.tensor([2.3, 1.8, 2.1, 2.6])  # near the +2 component of the mixture prior
SWITCHES = torch.tensor([0.95, 0.9, 0.97, 0.92])  # near 1: relaxed gates should open


def model():
    with pyro.plate("items", N):
        rate = pyro.sample("rate", irt.Gamma(_scalar(2.0), _scalar(1.0)))
        pyro.sample("counts", dist.Poisson(rate), obs=COUNTS)
        prob = pyro.sample("prob", irt.Beta(_scalar(1.0), _scalar(1.0)))
        pyro.sample("heads", dist.Bernoulli(prob), obs=HEADS)
        angle = pyro.sample("angle", irt.VonMises(_scalar(0.0), _scalar(1.0)))
        pyro.sample("angles", dist.VonMises(angle, _scalar(4.0)), obs=ANGLES)
        prior_mixture = irt.MixtureSameFamily(
            td.Categorical(logits=torch.zeros(2)), td.Normal(torch.tensor([-2.0, 2.0]), 1.0)
        )
        location = pyro.sample("location", prior_mixture)
        pyro.sample("points", dist.Normal(location, 0.5), obs=POINTS)
        gate = pyro.sample("gate", relaxed.RelaxedBernoulli(_scalar(0.5), probs=_scalar(0.5)))
        pyro.sample("switches", dist.Normal(gate, 0.2), obs=SWITCHES)


INITIAL = {
    "rate_concentration": torch.full((N,), 2.0),
    "rate_rate": torch.tensor(1.0),  # a scalar parameter: the plate expands the guide site
    "prob_a": torch.full((N,), 1.0),
    "prob_b": torch.full((N,), 1.0),
    "angle_loc": torch.zeros(N),
    "angle_concentration": torch.full((N,), 1.0),
    "location_logits": torch.zeros(N, 2),
    "location_loc": torch.tensor([-2.0, 2.0]),
    "gate_logits": torch.zeros(N),
}
POSITIVE = {"rate_concentration", "rate_rate", "prob_a", "prob_b", "angle_concentration"}


def guide():
    params = {
        name: pyro.param(
            name,
            value.clone(),
            constraint=dist.constraints.positive if name in POSITIVE else dist.constraints.real,
        )
        for name, value in INITIAL.items()
    }
    with pyro.plate("items", N):
        pyro.sample("rate", irt.Gamma(params["rate_concentration"], params["rate_rate"]))
        pyro.sample("prob", irt.Beta(params["prob_a"], params["prob_b"]))
        pyro.sample("angle", irt.VonMises(params["angle_loc"], params["angle_concentration"]))
        mixture = irt.MixtureSameFamily(
            td.Categorical(logits=params["location_logits"]),
            td.Normal(params["location_loc"].expand(N, 2), 1.0),
        )
        pyro.sample("location", mixture)
        pyro.sample("gate", relaxed.RelaxedBernoulli(_scalar(0.5), logits=params["gate_logits"]))
    return params


def test_svi_gradients_reach_every_guide_parameter():
    pyro.clear_param_store()
    torch.manual_seed(0)
    guide()  # create the parameters
    loss = Trace_ELBO(num_particles=8, vectorize_particles=False).differentiable_loss(model, guide)
    unconstrained = {name: pyro.param(name).unconstrained() for name in INITIAL}
    grads = torch.autograd.grad(loss, list(unconstrained.values()))
    for name, grad in zip(unconstrained, grads, strict=True):
        assert torch.isfinite(grad).all(), name
        assert (grad != 0).any(), f"no gradient reaches {name}"


def test_svi_moves_the_posterior_the_right_way():
    # Seed 0, 60 Adam steps. Every guide starts at its prior; a gradient of the wrong sign at any
    # site would move that site's summary to the wrong side of its starting value.
    pyro.clear_param_store()
    torch.manual_seed(0)
    svi = SVI(model, guide, Adam({"lr": 0.1}), Trace_ELBO())
    losses = torch.tensor([svi.step() for _ in range(60)])
    assert torch.isfinite(losses).all()
    assert losses[-10:].mean() < 0.7 * losses[:10].mean()
    p = {name: pyro.param(name).detach() for name in INITIAL}
    # Gamma: the mean rate rises from the prior's 2 towards the exact posterior mean ≈ 5.
    assert (p["rate_concentration"] / p["rate_rate"] > 2.5).all()
    # Beta: one head per item, so the mean rises from 1/2 towards the posterior's 2/3.
    assert (p["prob_a"] / (p["prob_a"] + p["prob_b"]) > 0.55).all()
    # von Mises: the location moves from 0 towards the observed angles around 1.
    assert (p["angle_loc"] > 0.3).all()
    # Mixture: the weight of the +2 component grows from 1/2.
    assert (torch.softmax(p["location_logits"], -1)[:, 1] > 0.6).all()
    # Relaxed Bernoulli: the gates open.
    assert (torch.sigmoid(p["gate_logits"]) > 0.6).all()


def test_example_script_runs_at_tiny_size(capsys):
    path = Path(__file__).parents[1] / "examples" / "pyro_svi.py"
    spec = importlib.util.spec_from_file_location("pyro_svi_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    summary = module.main(["--tiny"])
    assert all(math.isfinite(value) for value in summary.values())
    assert "ELBO loss" in capsys.readouterr().out
