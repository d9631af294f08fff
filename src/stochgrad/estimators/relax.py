"""REBAR and RELAX: relaxation-based control variates for Bernoulli latents, still unbiased.

With z = α + logit(u) (so b = H(z) ~ Bernoulli(σ(α))) and z̃ ~ p(z | b) reparameterised,

    ĝ = [f(b) − c(z̃)] ∇log p(b) + ∇c(z) − ∇c(z̃)

is unbiased for any differentiable control variate ``c`` (Grathwohl et al., 2018, "Backpropagation
through the Void"). REBAR (Tucker et al., 2017) takes c(z) = η f(σ(z / λ)); RELAX adds (or uses
only) a neural network r_ρ(σ(z / λ)). The parameters of ``c`` (η, λ, ρ) minimise the variance
E‖ĝ‖², ĝ the estimate of the gradient with respect to the logits α.

No optimizer lives here. The forward pass computes ĝ with ``create_graph=True`` and attaches
∇_{η,λ,ρ} ‖ĝ‖² to the surrogate as a term of value zero that is linear in (η, λ, ρ), so the
user's one ``backward`` gives the logits ĝ, the parameters of ``f`` their pathwise gradient and
(η, λ, ρ) the variance gradient, and the user's optimizer (and ``DistributedDataParallel``'s
gradient averaging) does the rest.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution

from stochgrad.relaxed._utils import conditional_logistic, logistic_like, uniform_like

from .base import BernoulliEstimator, Cost, sum_rightmost
from .surrogate import gradient_only

__all__ = ["REBAR", "RELAX"]


class RELAX(BernoulliEstimator):
    """RELAX estimator of ∇_α E_{b ~ Bernoulli(σ(α))}[f(b)] with a learned control variate.

    ĝ = [f(b) − c(z̃)] ∇log p(b) + ∇c(z) − ∇c(z̃), c(z) = η f(σ(z/λ)) + r_ρ(σ(z/λ))
    (Grathwohl, Choi, Wu, Roeder & Duvenaud, 2018). The surrogate's value is f(b); one backward
    of (a mean or sum of) it gives the logits ĝ and (η, λ, ρ) the gradient of the per-example
    E‖ĝ‖² (reduced the same way), so give ``estimator.parameters()`` to the optimizer.
    Supports ``Bernoulli`` and ``Independent(Bernoulli)``.

    Args:
        control: network r_ρ mapping relaxed samples (shape ``sample_shape + batch_shape +
            event_shape``, values in (0, 1)) to ``sample_shape + batch_shape`` (a trailing
            size-1 dimension is dropped), or ``None`` (then ``relaxed_cost`` must be True).
        relaxed_cost: include η f(σ(z/λ)) in c (``f`` must accept values in (0, 1)).
        temperature: initial λ > 0 (learned as ``log_temperature``).
        scale: initial η (learned).
        n_samples: samples per batch element.

    Example::

        >>> from torch.distributions import Bernoulli, Independent
        >>> logits = torch.zeros(8, 10, requires_grad=True)
        >>> control = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(),
        ...                                torch.nn.Linear(16, 1))
        >>> relax = RELAX(control)
        >>> optimizer = torch.optim.Adam([logits, *relax.parameters()], lr=1e-2)
        >>> q = Independent(Bernoulli(logits=logits), 1)
        >>> relax(lambda b: (b - 0.45).square().sum(-1), q).mean().backward()
        >>> logits.grad.shape, control[0].weight.grad is not None
        (torch.Size([8, 10]), True)
        >>> optimizer.step()
    """

    def __init__(
        self,
        control: nn.Module | None = None,
        *,
        relaxed_cost: bool = True,
        temperature: float = 0.5,
        scale: float = 1.0,
        n_samples: int = 1,
    ) -> None:
        super().__init__(n_samples)
        if control is None and not relaxed_cost:
            raise ValueError("control must be given when relaxed_cost is False")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.control = control
        self.relaxed_cost = relaxed_cost
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        if not relaxed_cost:
            self.scale.requires_grad_(False)

    @property
    def temperature(self) -> Tensor:
        """The current relaxation temperature λ."""
        return self.log_temperature.exp()

    def control_variate(self, f: Cost, z: Tensor, shape: torch.Size) -> Tensor:
        """c(z) = η f(σ(z/λ)) + r_ρ(σ(z/λ)), each term present as configured; of ``shape``."""
        relaxed = torch.sigmoid(z / self.temperature.to(z))
        out = torch.zeros(shape, dtype=z.dtype, device=z.device)
        if self.relaxed_cost:
            out = out + self.scale.to(z) * self._cost(f, relaxed, shape)
        if self.control is not None:
            learned = self.control(relaxed)
            if learned.shape == shape + (1,):
                learned = learned.squeeze(-1)
            if learned.shape != shape:
                raise ValueError(
                    f"the control network must return shape {tuple(shape)} (or with a trailing "
                    f"1), got {tuple(learned.shape)}"
                )
            out = out + learned
        return out

    def _surrogate(
        self, f: Cost, distribution: Distribution, sample_shape: torch.Size, context: Any
    ) -> Tensor:
        logits, event_dims = self._logits(distribution)
        shape = sample_shape + distribution.batch_shape
        noise_shape = sample_shape + logits.shape
        z = logits + logistic_like(noise_shape, logits)
        b = (z > 0).to(logits.dtype).detach()
        z_tilde = conditional_logistic(logits, b, uniform_like(noise_shape, logits))
        cost = self._cost(f, b, shape)
        if not (torch.is_grad_enabled() and logits.requires_grad):
            return cost
        log_prob = -F.binary_cross_entropy_with_logits(
            logits.expand(noise_shape), b, reduction="none"
        )
        log_prob = sum_rightmost(log_prob, event_dims)
        control = self.control_variate(f, z, shape)
        control_tilde = self.control_variate(f, z_tilde, shape)
        score_term = (cost.detach() - control_tilde.detach()) * log_prob
        # Value and first derivative zero; it carries ∂ĝ/∂c of the score term's coefficient
        # [f(b) − c(z̃)], which the variance gradient needs and a plain detach would drop.
        coefficient_path = gradient_only(-control_tilde) * gradient_only(log_prob)
        estimate = score_term + control - control_tilde + coefficient_path
        # ĝ of the sample mean, per batch element (the elements are independent).
        samples = tuple(range(len(sample_shape)))
        (grad_estimate,) = torch.autograd.grad(
            estimate.mean(samples).sum() if samples else estimate.sum(), logits, create_graph=True
        )
        grad = grad_estimate
        if cost.requires_grad:  # f's own dependence on the logits (e.g. through −log q)
            (grad_cost,) = torch.autograd.grad(
                cost.mean(samples).sum() if samples else cost.sum(),
                logits,
                retain_graph=True,
                allow_unused=True,
                materialize_grads=True,
            )
            grad = grad + grad_cost.detach()
        variance_term = self._variance_term(grad, distribution.batch_shape)
        # The logits get ĝ; nothing of c reaches f's parameters or (η, λ, ρ) to first order.
        score = sum_rightmost(grad_estimate.detach() * logits, event_dims)
        return cost + gradient_only(score) + variance_term

    def _variance_term(self, grad: Tensor, batch_shape: torch.Size) -> Tensor:
        """Zero in value, linear in (η, λ, ρ) with slope ∇ Σ_i ‖ĝ_i‖² / N, N the number of batch
        elements: the mean (sum) of the surrogate carries ∇ of the mean (sum) of ‖ĝ_i‖²."""
        own = [p for p in self.parameters() if p.requires_grad]
        if not own or not grad.requires_grad:
            return torch.zeros((), dtype=grad.dtype, device=grad.device)
        variance = grad.square().sum()
        own_grads = torch.autograd.grad(
            variance, own, retain_graph=True, allow_unused=True, materialize_grads=True
        )
        linear = torch.stack(
            [(gradient_only(p) * g.detach()).sum() for p, g in zip(own, own_grads, strict=True)]
        ).sum()
        return linear / math.prod(batch_shape)


class REBAR(RELAX):
    """REBAR: RELAX with c(z) = η f(σ(z/λ)), η and λ trained to minimise the variance.

    ĝ = [f(b) − η f(σ_λ(z̃))] ∇log p(b) + η ∇f(σ_λ(z)) − η ∇f(σ_λ(z̃)) (Tucker, Mnih, Maddison,
    Lawson & Sohl-Dickstein, 2017). ``f`` must accept relaxed values in (0, 1). Supports
    ``Bernoulli`` and ``Independent(Bernoulli)``.

    Args:
        temperature: initial λ > 0.
        scale: initial η.
        n_samples: samples per batch element.

    Example::

        >>> from torch.distributions import Bernoulli, Independent
        >>> logits = torch.zeros(10, requires_grad=True)
        >>> rebar = REBAR()
        >>> q = Independent(Bernoulli(logits=logits), 1)
        >>> rebar(lambda b: (b - 0.45).square().sum(-1), q).backward()
        >>> rebar.scale.grad is not None and rebar.log_temperature.grad is not None
        True
    """

    def __init__(self, *, temperature: float = 0.5, scale: float = 1.0, n_samples: int = 1) -> None:
        super().__init__(
            None, relaxed_cost=True, temperature=temperature, scale=scale, n_samples=n_samples
        )
