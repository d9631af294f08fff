"""Score-function gradient estimators and control variates.

Every estimator returns a *surrogate*: a tensor whose value is the Monte Carlo objective
``f(z)`` and whose gradient is the estimator, so ``surrogate.mean().backward()`` is all a
training loop needs. See ``docs/estimators.md``.

- :func:`score_function_surrogate`, :func:`reinforce`, :func:`gradient_only` -- the pieces;
- :class:`Reinforce`, :class:`MovingAverageBaseline`, :class:`NVILBaseline`,
  :class:`LeaveOneOutBaseline` -- baselines, called as ``estimator(cost, log_prob, context)``;
- :func:`muprop` -- first-order Taylor control variate;
- :func:`arm`, :func:`disarm` -- antithetic estimators for Bernoulli latents;
- :class:`REBAR`, :class:`RELAX` -- relaxation-based control variates with a variance step;
- :func:`straight_through_bernoulli`, :func:`gumbel_straight_through_bernoulli`,
  :func:`gumbel_straight_through_categorical` -- biased straight-through samples.
"""

from .arm import arm, disarm
from .baselines import (
    LeaveOneOutBaseline,
    MovingAverageBaseline,
    NVILBaseline,
    Reinforce,
    ScoreFunctionEstimator,
)
from .muprop import muprop
from .relax import REBAR, RELAX
from .straight_through import (
    gumbel_straight_through_bernoulli,
    gumbel_straight_through_categorical,
    straight_through_bernoulli,
)
from .surrogate import gradient_only, reinforce, score_function_surrogate

__all__ = [
    "REBAR",
    "RELAX",
    "LeaveOneOutBaseline",
    "MovingAverageBaseline",
    "NVILBaseline",
    "Reinforce",
    "ScoreFunctionEstimator",
    "arm",
    "disarm",
    "gradient_only",
    "gumbel_straight_through_bernoulli",
    "gumbel_straight_through_categorical",
    "muprop",
    "reinforce",
    "score_function_surrogate",
    "straight_through_bernoulli",
]
