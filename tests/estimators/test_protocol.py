"""The estimator protocol: ``surrogate = estimator(f, distribution, context)`` for every class.

For each estimator on ``Independent(Bernoulli(logits), 1)``: the surrogate has the batch shape,
its backward reaches the logits, the learned control variates (NVIL's network, REBAR's η and λ,
RELAX's network) get a gradient from that same backward, and no estimator holds an optimizer.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal

import stochgrad.estimators as est

BATCH, DIM = 6, 4


def _control() -> nn.Module:
    return nn.Sequential(nn.Linear(DIM, 8), nn.Tanh(), nn.Linear(8, 1))


ESTIMATORS = {
    "Reinforce": lambda: est.Reinforce(),
    "Reinforce+MovingAverageBaseline": lambda: est.Reinforce(est.MovingAverageBaseline()),
    "Reinforce+NVILBaseline": lambda: est.Reinforce(est.NVILBaseline(nn.Linear(3, 1))),
    "Reinforce+LeaveOneOutBaseline": lambda: est.Reinforce(est.LeaveOneOutBaseline(), n_samples=3),
    "MuProp": lambda: est.MuProp(),
    "ARM": lambda: est.ARM(),
    "DisARM": lambda: est.DisARM(),
    "REBAR": lambda: est.REBAR(),
    "RELAX": lambda: est.RELAX(_control()),
    "StraightThrough": lambda: est.StraightThrough(),
    "GumbelStraightThrough": lambda: est.GumbelStraightThrough(temperature=0.5),
}
LEARNED = {"Reinforce+NVILBaseline", "REBAR", "RELAX"}


def test_every_estimator_class_is_probed():
    probed = {type(make()).__name__ for make in ESTIMATORS.values()} | {"Pathwise"}
    classes = {
        name
        for name in est.__all__
        if isinstance(getattr(est, name), type)
        and issubclass(getattr(est, name), est.Estimator)
        and name != "Estimator"
    }
    assert classes == probed


@pytest.mark.parametrize("n_samples", [None, 2])
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_probe(name, n_samples):
    torch.manual_seed(0)
    estimator = ESTIMATORS[name]()
    logits = torch.randn(BATCH, DIM, requires_grad=True)
    weight = torch.tensor(1.3, requires_grad=True)  # a parameter of f: its pathwise gradient
    context = torch.randn(BATCH, 3)
    calls = []

    def f(b):
        calls.append(b.shape)
        return weight * (b - 0.45).square().sum(-1)

    q = Independent(Bernoulli(logits=logits), 1)
    if n_samples is None:
        surrogate = estimator(f, q, context)
    else:
        surrogate = estimator(f, q, context, n_samples=max(n_samples, estimator.n_samples))
    assert surrogate.shape == q.batch_shape
    samples = estimator.n_samples if n_samples is None else max(n_samples, estimator.n_samples)
    sample_shape = () if samples == 1 else (samples,)
    assert calls[0] == torch.Size(sample_shape + (BATCH, DIM))
    surrogate.mean().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert weight.grad is not None and weight.grad.abs() > 0
    own = [p for p in estimator.parameters() if p.requires_grad]
    if name in LEARNED:
        assert own and all(p.grad is not None and p.grad.abs().sum() > 0 for p in own)
    else:
        assert not own


def _holds_optimizer(obj, seen) -> bool:
    if id(obj) in seen:
        return False
    seen.add(id(obj))
    if isinstance(obj, torch.optim.Optimizer):
        return True
    if isinstance(obj, nn.Module):
        return any(_holds_optimizer(value, seen) for value in vars(obj).values()) or any(
            _holds_optimizer(m, seen) for m in obj.children()
        )
    if isinstance(obj, dict):
        return any(_holds_optimizer(value, seen) for value in obj.values())
    if isinstance(obj, (list, tuple, set)):
        return any(_holds_optimizer(value, seen) for value in obj)
    return False


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_no_estimator_holds_an_optimizer(name):
    estimator = ESTIMATORS[name]()
    assert not _holds_optimizer(estimator, set())
    assert not hasattr(estimator, "step")


def test_optimizer_probe_finds_an_optimizer():
    """Twin: the probe detects an optimizer hidden in a module attribute."""
    estimator = est.RELAX(_control())
    estimator.hidden = {"opt": torch.optim.SGD(estimator.parameters(), lr=0.1)}
    assert _holds_optimizer(estimator, set())


def test_pathwise_probe():
    loc = torch.randn(BATCH, DIM, requires_grad=True)
    surrogate = est.Pathwise()(lambda z: z.square().sum(-1), Independent(Normal(loc, 1.0), 1))
    assert surrogate.shape == (BATCH,)
    surrogate.mean().backward()
    assert loc.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["REBAR", "RELAX"])
def test_learned_control_variates_get_no_gradient_when_the_logits_are_fixed(name):
    """Without a gradient path to the logits there is no ĝ whose variance to reduce."""
    estimator = ESTIMATORS[name]()
    q = Independent(Bernoulli(logits=torch.zeros(BATCH, DIM)), 1)
    weight = torch.tensor(1.0, requires_grad=True)
    estimator(lambda b: weight * b.sum(-1), q).mean().backward()
    assert all(p.grad is None for p in estimator.parameters())
