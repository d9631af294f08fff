"""The one value-with-another-gradient helper of the package.

Every place in stochgrad that gives a tensor the gradient of something other than its value
(straight-through samples, implicit reparameterization, surrogate losses, DReG's reweighted
gradients, RELAX's variance term) writes it with :func:`gradient_only`.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["gradient_only"]


def gradient_only(x: Tensor) -> Tensor:
    """Zero in value, with the gradient of ``x``: ``x − stop_grad(x)``.

    ``value.detach() + gradient_only(y)`` has the value of ``value`` and the gradient of ``y``
    (the straight-through trick); ``cost + gradient_only(signal * log_prob)`` is a surrogate
    loss whose value is ``cost`` and whose gradient adds the score-function term.

    Example::

        >>> x = torch.tensor(3.0, requires_grad=True)
        >>> y = gradient_only(x**2)
        >>> y.backward()
        >>> y.item(), x.grad.item()
        (0.0, 6.0)
    """
    return x - x.detach()
