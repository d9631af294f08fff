"""A model-agnostic VAE toolkit: model protocols, wrappers, loss objects and functional losses.

- :mod:`~stochgrad.vae.protocols` -- :class:`InferenceNetwork`, :class:`GenerativeModel` (base
  classes) and their structural ``Protocol`` twins;
- :mod:`~stochgrad.vae.wrappers` -- :class:`DistributionNet`, :class:`Prior`,
  :class:`DistributionInferenceNetwork`, :class:`DistributionGenerativeModel`;
- :mod:`~stochgrad.vae.losses` -- :class:`ELBO`, :class:`IWAE`, :class:`DReG`, :class:`VIMCO`,
  :class:`ScoreFunctionELBO`, :class:`PWake`, :class:`QWake`, :class:`QSleep`;
- :mod:`~stochgrad.vae.functional` -- the same losses on ``log_q``, ``log_p`` tensors.

See ``docs/vae.md``.
"""

from stochgrad.vae import functional
from stochgrad.vae.losses import (
    ELBO,
    IWAE,
    VIMCO,
    DReG,
    PWake,
    QSleep,
    QWake,
    ScoreFunctionELBO,
    VAELoss,
)
from stochgrad.vae.protocols import (
    GenerativeModel,
    GenerativeModelProtocol,
    InferenceNetwork,
    InferenceNetworkProtocol,
    Tensors,
)
from stochgrad.vae.wrappers import (
    DistributionGenerativeModel,
    DistributionInferenceNetwork,
    DistributionNet,
    Prior,
)

__all__ = [
    "ELBO",
    "IWAE",
    "VIMCO",
    "DReG",
    "DistributionGenerativeModel",
    "DistributionInferenceNetwork",
    "DistributionNet",
    "GenerativeModel",
    "GenerativeModelProtocol",
    "InferenceNetwork",
    "InferenceNetworkProtocol",
    "PWake",
    "Prior",
    "QSleep",
    "QWake",
    "ScoreFunctionELBO",
    "Tensors",
    "VAELoss",
    "functional",
]
