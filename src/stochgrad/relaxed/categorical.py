"""torch's relaxed families and straight-through one-hot categorical, callable from Pyro models.

These are torch's own classes, re-exported so that :mod:`stochgrad.relaxed` is one entry point; the
subclasses add the hooks ``pyro.sample`` needs (see :class:`PyroCompatible`), and
:class:`RelaxedOneHotCategorical` keeps cold draws on the simplex with a finite ``log_prob``.
"""

from __future__ import annotations

import torch
from torch import Tensor, distributions

from stochgrad._typing import SampleShape
from stochgrad.relaxed._utils import EMPTY_SHAPE, PyroCompatible, gumbel_like

__all__ = ["RelaxedBernoulli", "RelaxedOneHotCategorical", "StraightThroughOneHotCategorical"]


class RelaxedBernoulli(PyroCompatible, distributions.RelaxedBernoulli):
    r"""torch's binary concrete ``sigmoid((logits + L) / temperature)``.

    Math: ``L ~ Logistic(0, 1)``; dz/dlogits = z (1 - z) / temperature. Maddison, Mnih & Teh,
    "The Concrete Distribution", ICLR 2017; Jang, Gu & Poole, "Categorical Reparameterization
    with Gumbel-Softmax", ICLR 2017.

    Args:
        temperature: temperature > 0.
        probs: probability of a one (give ``probs`` or ``logits``).
        logits: log-odds of a one.
        validate_args: check parameters and values.

    Example::

        >>> RelaxedBernoulli(torch.tensor(0.5), probs=torch.tensor([0.2, 0.9])).rsample().shape
        torch.Size([2])
    """


class RelaxedOneHotCategorical(PyroCompatible, distributions.RelaxedOneHotCategorical):
    r"""torch's Gumbel-softmax (concrete) ``softmax((logits + g) / temperature)``.

    Math: ``g`` i.i.d. Gumbel; density over the first n-1 coordinates as in Maddison et al. (2017).
    Jang, Gu & Poole, ICLR 2017; Maddison, Mnih & Teh, ICLR 2017.

    Unlike torch's class, draws are formed by one ``softmax`` (torch exponentiates a log-softmax,
    whose float32 rows miss the simplex tolerance) and kept ``>= finfo.tiny``: at temperature 0.1
    in float32 torch's weights underflow to exact zeros and ``log_prob`` is NaN.

    Args:
        temperature: temperature > 0.
        probs: category probabilities (give ``probs`` or ``logits``).
        logits: unnormalised log-probabilities.
        validate_args: check parameters and values.

    Example::

        >>> RelaxedOneHotCategorical(torch.tensor(0.5), logits=torch.zeros(3)).rsample().shape
        torch.Size([3])
    """

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(RelaxedOneHotCategorical, _instance)
        return super().expand(batch_shape, _instance=new)

    def rsample(self, sample_shape: SampleShape = EMPTY_SHAPE) -> Tensor:
        logits = self.logits
        noise = gumbel_like(self._extended_shape(sample_shape), logits)
        weights = torch.softmax((logits + noise) / self.temperature.unsqueeze(-1), dim=-1)
        # The floor moves a row's sum by at most n · tiny, far inside the simplex tolerance.
        return weights.clamp_min(torch.finfo(weights.dtype).tiny)


class StraightThroughOneHotCategorical(
    PyroCompatible, distributions.OneHotCategoricalStraightThrough
):
    r"""torch's one-hot categorical with the straight-through gradient of its probabilities.

    Math: forward ``onehot ~ Categorical(probs)``; backward d onehot / d probs := identity.
    Bengio, Léonard & Courville, arXiv:1308.3432, 2013. For a Gumbel-softmax backward pass use
    :class:`DecoupledStraightThroughGumbelSoftmax`.

    Args:
        probs: category probabilities (give ``probs`` or ``logits``).
        logits: unnormalised log-probabilities.
        validate_args: check parameters and values.

    Example::

        >>> StraightThroughOneHotCategorical(logits=torch.zeros(3)).rsample((2,)).sum(-1)
        tensor([1., 1.])
    """
