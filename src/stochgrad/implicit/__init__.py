"""Implicit reparameterization gradients (Figurnov, Mohamed & Mnih, 2018).

Use as ``import stochgrad.implicit as irt``. Every class is a drop-in replacement for the
``torch.distributions`` class of the same name, with ``rsample`` gradients
``dz/dθ = -(∂F(z; θ)/∂θ) / p(z; θ)``.
"""

from stochgrad.implicit.beta import Beta
from stochgrad.implicit.dirichlet import Dirichlet
from stochgrad.implicit.factorized import Factorized, ImplicitReparam
from stochgrad.implicit.gamma import Gamma
from stochgrad.implicit.mixture import Mixture, MixtureSameFamily
from stochgrad.implicit.multivariate_normal import MultivariateNormal
from stochgrad.implicit.normal import Normal
from stochgrad.implicit.studentt import StudentT
from stochgrad.implicit.truncated_normal import TruncatedNormal
from stochgrad.implicit.vonmises import VonMises

Student = StudentT  # the name the seed used

__all__ = [
    "Beta",
    "Dirichlet",
    "Gamma",
    "MultivariateNormal",
    "Normal",
    "Student",
    "StudentT",
    "Factorized",
    "ImplicitReparam",
    "Mixture",
    "MixtureSameFamily",
    "TruncatedNormal",
    "VonMises",
]
