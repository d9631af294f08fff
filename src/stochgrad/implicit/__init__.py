"""Implicit reparameterization gradients (Figurnov, Mohamed & Mnih, 2018).

Use as ``import stochgrad.implicit as irt``.
"""

__all__: list[str] = []
