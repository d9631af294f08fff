"""Gradient estimators behind one protocol: ``surrogate = estimator(f, distribution, context)``.

Every estimator is an :class:`Estimator` (an ``nn.Module``): it draws its own samples from a
``torch.distributions.Distribution``, evaluates the per-example cost ``f``, and returns a
*surrogate* of shape ``distribution.batch_shape`` whose value is the Monte Carlo estimate of
E f and whose gradient is the estimator. Learned control variates are the estimator's own
parameters, trained by the user's optimizer from the same ``backward``. See
``docs/estimators.md``.

- unbiased, any distribution: :class:`Reinforce` (with a :class:`Baseline`:
  :class:`MovingAverageBaseline`, :class:`NVILBaseline`, :class:`LeaveOneOutBaseline`),
  :class:`MuProp`;
- unbiased, Bernoulli latents: :class:`ARM`, :class:`DisARM`, :class:`REBAR`, :class:`RELAX`;
- biased, discrete latents: :class:`StraightThrough`, :class:`GumbelStraightThrough`;
- reparameterizable latents: :class:`Pathwise`;
- the pieces: :func:`gradient_only`, :func:`score_function_surrogate`.
"""

from .arm import ARM, DisARM
from .base import Estimator
from .baselines import Baseline, LeaveOneOutBaseline, MovingAverageBaseline, NVILBaseline
from .relax import REBAR, RELAX
from .score_function import MuProp, Reinforce
from .straight_through import GumbelStraightThrough, Pathwise, StraightThrough
from .surrogate import gradient_only, score_function_surrogate

__all__ = [
    "ARM",
    "REBAR",
    "RELAX",
    "Baseline",
    "DisARM",
    "Estimator",
    "GumbelStraightThrough",
    "LeaveOneOutBaseline",
    "MovingAverageBaseline",
    "MuProp",
    "NVILBaseline",
    "Pathwise",
    "Reinforce",
    "StraightThrough",
    "gradient_only",
    "score_function_surrogate",
]
