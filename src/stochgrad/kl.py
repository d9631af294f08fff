"""Every KL divergence registration of stochgrad in one place.

Importing :mod:`stochgrad` registers them with :func:`torch.distributions.kl.register_kl`.
"""

from __future__ import annotations

__all__: list[str] = []
