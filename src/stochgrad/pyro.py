"""Pyro support for every distribution of :mod:`stochgrad.implicit` and :mod:`stochgrad.relaxed`.

Pyro is optional and never imported by stochgrad itself. Two pieces make ``pyro.sample`` work:

- :class:`PyroCompatible`, a mixin in the bases of every stochgrad distribution, supplies the
  methods Pyro calls on a distribution (``__call__``, ``event_dim``, ``shape``, ``expand_by``,
  ``score_parts``, ``to_event``, ``mask``); the last three import Pyro when called.
- :func:`register` makes every stochgrad distribution an instance of Pyro's
  ``TorchDistributionMixin`` (a virtual subclass of that ABC), which is what Pyro's plates, guide
  and enumeration messengers test before broadcasting a site. Constructing a stochgrad
  distribution calls it once Pyro has been imported, so ``pyro.sample("z", irt.Gamma(a, b))``
  works inside ``pyro.plate`` with nothing to set up; call it yourself only if you built a
  distribution before importing Pyro.

Example::

    >>> import pyro
    >>> import stochgrad.implicit as irt
    >>> def model():
    ...     with pyro.plate("items", 3):
    ...         return pyro.sample("rate", irt.Gamma(torch.tensor(2.0), torch.tensor(1.0)))
    >>> model().shape
    torch.Size([3])
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.distributions import Distribution

__all__ = ["PyroCompatible", "register"]

_EMPTY = torch.Size()
_registered = False


def register() -> None:
    """Make every stochgrad distribution count as a Pyro distribution (idempotent).

    Registers :class:`PyroCompatible`, and so every class that has it as a base (including
    user subclasses of stochgrad classes), as a virtual subclass of
    ``pyro.distributions.torch_distribution.TorchDistributionMixin``; Pyro's ``pyro.plate`` then
    expands the batch shape of stochgrad sites through their ``expand``. Raises ``ImportError``
    when Pyro is not installed.
    """
    global _registered
    from pyro.distributions.torch_distribution import TorchDistributionMixin

    TorchDistributionMixin.register(PyroCompatible)
    _registered = True


_tried = False


def _register_once() -> None:
    """:func:`register` on first use; an unusable Pyro must not break stochgrad's classes."""
    global _tried
    if _tried:
        return
    _tried = True
    try:
        register()
    except ImportError:
        pass


if TYPE_CHECKING:
    _DistributionMixin = Distribution  # the classes that mix this in are Distributions
else:
    _DistributionMixin = object


class PyroCompatible(_DistributionMixin):
    """The hooks ``pyro.sample``, Pyro's plates and ELBOs call on a distribution.

    A mixin placed first in the bases of a ``torch.distributions.Distribution`` subclass; it
    imports nothing from Pyro until Pyro calls it, and :func:`register`\\s the classes with Pyro
    when a distribution is built while Pyro is loaded.
    """

    def __new__(cls, *args, **kwargs):
        # __new__, not __init__: torch's expand() compares a subclass's __init__ with its own.
        if not _registered and not torch.compiler.is_compiling() and "pyro" in sys.modules:
            _register_once()
        return super().__new__(cls)

    def __call__(self, sample_shape: torch.Size = _EMPTY) -> Tensor:
        if self.has_rsample:
            return self.rsample(sample_shape)
        return self.sample(sample_shape)

    @property
    def event_dim(self) -> int:
        return len(self.event_shape)

    def shape(self, sample_shape: torch.Size = _EMPTY) -> torch.Size:
        return torch.Size(sample_shape) + self.batch_shape + self.event_shape

    def expand_by(self, sample_shape: torch.Size):
        return self.expand(torch.Size(sample_shape) + self.batch_shape)

    def score_parts(self, value: Tensor):
        from pyro.distributions.score_parts import ScoreParts

        log_prob = self.log_prob(value)
        # A reparameterized site needs no score-function term.
        score_function = 0 if self.has_rsample else log_prob
        # ScoreParts annotates score_function as Tensor, but pyro's own
        # Distribution.score_parts (distribution.py) passes 0 for reparameterized sites too.
        return ScoreParts(
            log_prob=log_prob,
            score_function=score_function,  # type: ignore[arg-type]
            entropy_term=log_prob,
        )

    def to_event(self, reinterpreted_batch_ndims: int | None = None):
        from pyro.distributions import Independent

        if reinterpreted_batch_ndims is None:
            reinterpreted_batch_ndims = len(self.batch_shape)
        if reinterpreted_batch_ndims == 0:
            return self
        return Independent(self, reinterpreted_batch_ndims)

    def mask(self, mask: Tensor | bool):
        from pyro.distributions import MaskedDistribution

        return MaskedDistribution(self, mask)
