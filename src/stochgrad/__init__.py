"""stochgrad: gradients through random sampling for PyTorch.

Subpackages:

- :mod:`stochgrad.implicit` -- implicit reparameterization (Figurnov et al., 2018),
- :mod:`stochgrad.relaxed` -- continuous relaxations of discrete variables,
- :mod:`stochgrad.estimators` -- score-function estimators and control variates,
- :mod:`stochgrad.vae` -- a model-agnostic VAE toolkit.
"""

from stochgrad import kl  # registers every KL divergence with torch.distributions

__version__ = "0.2.0"

__all__ = ["__version__", "kl"]
