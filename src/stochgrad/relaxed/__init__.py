"""Continuous and straight-through relaxations of discrete random variables.

Every class is a :class:`torch.distributions.Distribution` whose ``rsample`` carries gradients
and whose ``log_prob`` describes the law of ``rsample``; all of them can be used with
``pyro.sample`` (see :mod:`stochgrad.pyro`). Their KL divergences are registered in
:mod:`stochgrad.kl`.
"""

from stochgrad.relaxed.categorical import (
    RelaxedBernoulli,
    RelaxedOneHotCategorical,
    StraightThroughOneHotCategorical,
)
from stochgrad.relaxed.correlated_bernoulli import CorrelatedRelaxedBernoulli
from stochgrad.relaxed.decoupled import DecoupledStraightThroughGumbelSoftmax
from stochgrad.relaxed.gaussian_bernoulli import GaussianRelaxedBernoulli
from stochgrad.relaxed.generalized_gumbel import GeneralizedGumbelSoftmax
from stochgrad.relaxed.hard_concrete import HardConcrete
from stochgrad.relaxed.invertible_gaussian import InvertibleGaussian, softmax_plus_plus
from stochgrad.relaxed.logistic_normal import (
    LogisticNormalSoftmax,
    dirichlet_approximation,
    lognorm_approximation,
)
from stochgrad.relaxed.rebar import RebarRelaxation, RebarSample
from stochgrad.relaxed.straight_through import StochasticTimesSmooth, StraightThroughBernoulli
from stochgrad.relaxed.topk import GumbelSoftmaxTopK

__all__ = [
    "CorrelatedRelaxedBernoulli",
    "DecoupledStraightThroughGumbelSoftmax",
    "GaussianRelaxedBernoulli",
    "GeneralizedGumbelSoftmax",
    "GumbelSoftmaxTopK",
    "HardConcrete",
    "InvertibleGaussian",
    "LogisticNormalSoftmax",
    "RebarRelaxation",
    "RebarSample",
    "RelaxedBernoulli",
    "RelaxedOneHotCategorical",
    "StochasticTimesSmooth",
    "StraightThroughBernoulli",
    "StraightThroughOneHotCategorical",
    "dirichlet_approximation",
    "lognorm_approximation",
    "softmax_plus_plus",
]
