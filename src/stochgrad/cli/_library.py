"""The one adapter between the command line and the library's distributions.

Each function returns the stochgrad class when that part of the library provides it and a
torch.distributions stand-in otherwise (torch's Gamma, Beta and Dirichlet already use implicit
reparameterization internally), or ``None`` where no stand-in exists. Everything else in
:mod:`stochgrad.cli` goes through here, so switching to the library is a change in one file.
"""

from __future__ import annotations

import importlib

from torch import distributions as td

__all__ = ["available", "implicit_class", "relaxed_class"]

# family -> (name in stochgrad.implicit, torch stand-in or None)
_IMPLICIT = {
    "normal": ("Normal", td.Normal),
    "gamma": ("Gamma", td.Gamma),
    "beta": ("Beta", td.Beta),
    "dirichlet": ("Dirichlet", td.Dirichlet),
    "vonmises": ("VonMises", None),
    "mixture": ("MixtureSameFamily", None),
}

# relaxation -> (name in stochgrad.relaxed, torch stand-in or None)
_RELAXED = {
    "binary_concrete": ("RelaxedBernoulli", td.RelaxedBernoulli),
    "gumbel_softmax": ("RelaxedOneHotCategorical", td.RelaxedOneHotCategorical),
    "invertible_gaussian": ("InvertibleGaussian", None),
}


def _lookup(module: str, name: str):
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def implicit_class(family: str):
    """The implicitly reparameterized class of ``family`` (library, else stand-in, else None)."""
    name, stand_in = _IMPLICIT[family]
    found = _lookup("stochgrad.implicit", name)
    return found if found is not None and getattr(found, "has_rsample", False) else stand_in


def relaxed_class(relaxation: str):
    """The relaxed distribution class for ``relaxation`` (library, else stand-in, else None)."""
    name, stand_in = _RELAXED[relaxation]
    found = _lookup("stochgrad.relaxed", name)
    return found if found is not None else stand_in


def available(module: str, name: str) -> bool:
    """Whether ``module`` exports ``name`` (used to offer estimators only once they exist)."""
    return _lookup(module, name) is not None
