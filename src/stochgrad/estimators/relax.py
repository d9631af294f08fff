"""REBAR and RELAX: relaxation-based control variates for Bernoulli latents, still unbiased.

With z = α + logit(u) (so b = H(z) ~ Bernoulli(σ(α))) and z̃ ~ p(z | b) reparameterised,

    ĝ = [f(b) − c(z̃)] ∇log p(b) + ∇c(z) − ∇c(z̃)

is unbiased for any differentiable control variate ``c`` (Grathwohl et al., 2018, "Backpropagation
through the Void"). REBAR (Tucker et al., 2017) takes c(z) = η f(σ(z / λ)); RELAX adds (or uses
only) a neural network r_ρ(σ(z / λ)). The parameters of ``c`` (η, λ, ρ) are trained to minimise
the variance E‖ĝ‖² by their own optimizer in :meth:`RELAX.step`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stochgrad.relaxed._utils import conditional_logistic, logistic_like, uniform_like

from ._distributed import all_reduce_mean
from .surrogate import gradient_only

__all__ = ["REBAR", "RELAX"]


class RELAX(nn.Module):
    """RELAX surrogate for ∇_α E_{b ~ Bernoulli(σ(α))}[f(b)] with a learned control variate.

    ĝ = [f(b) − c(z̃)] ∇log p(b) + ∇c(z) − ∇c(z̃), c(z) = η f(σ(z/λ)) + r_ρ(σ(z/λ))
    (Grathwohl, Choi, Wu, Roeder & Duvenaud, 2018).

    Call ``surrogate = relax(f, logits)``; its value is f(b) and its gradient is ĝ. Then
    ``relax.step(surrogate.mean(), encoder_params)`` writes ĝ into the encoder parameters'
    ``.grad`` and takes one step of ``relax.optimizer`` on (η, λ, ρ) along ∇‖ĝ‖²,
    the variance-minimising update. Under ``torch.distributed`` the control variate's gradients
    and ĝ itself are averaged over ranks (``step`` differentiates with ``torch.autograd.grad``,
    which bypasses ``DistributedDataParallel``'s gradient hooks), so every rank keeps the same
    control variate and receives the same encoder gradient.

    Args:
        control: network r_ρ mapping relaxed samples of ``logits``' shape (values in (0, 1))
            to shape ``logits.shape[:-event_dims]`` (a trailing size-1 dimension is dropped),
            or ``None`` (then ``relaxed_cost`` must be True: REBAR).
        relaxed_cost: include η f(σ(z/λ)) in c (``f`` must accept values in (0, 1)).
        temperature: initial λ > 0 (learned as ``log_temperature``).
        scale: initial η (learned).
        lr: learning rate of the Adam optimizer of the control variate.

    Example::

        >>> logits = torch.zeros(8, 10, requires_grad=True)
        >>> control = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(),
        ...                                torch.nn.Linear(16, 1))
        >>> relax = RELAX(control)
        >>> surrogate = relax(lambda b: (b - 0.45).square().sum(-1), logits)
        >>> grads = relax.step(surrogate.mean(), [logits])
        >>> logits.grad.shape
        torch.Size([8, 10])
    """

    def __init__(
        self,
        control: nn.Module | None = None,
        *,
        relaxed_cost: bool = True,
        temperature: float = 0.5,
        scale: float = 1.0,
        lr: float = 1e-3,
    ) -> None:
        super().__init__()
        if control is None and not relaxed_cost:
            raise ValueError("control must be given when relaxed_cost is False")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.control = control
        self.relaxed_cost = relaxed_cost
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        if not relaxed_cost:
            self.scale.requires_grad_(False)
        self.optimizer = torch.optim.Adam([p for p in self.parameters() if p.requires_grad], lr=lr)

    @property
    def temperature(self) -> Tensor:
        """The current relaxation temperature λ."""
        return self.log_temperature.exp()

    def control_variate(self, f: Callable[[Tensor], Tensor], z: Tensor, event_dims: int) -> Tensor:
        """c(z) = η f(σ(z/λ)) + r_ρ(σ(z/λ)), each term present as configured."""
        relaxed = torch.sigmoid(z / self.temperature.to(z))
        out = torch.zeros((), dtype=z.dtype, device=z.device)
        if self.relaxed_cost:
            out = out + self.scale.to(z) * f(relaxed)
        if self.control is not None:
            learned = self.control(relaxed)
            if learned.dim() == z.dim() - event_dims + 1 and learned.shape[-1] == 1:
                learned = learned.squeeze(-1)
            out = out + learned
        return out

    def forward(self, f: Callable[[Tensor], Tensor], logits: Tensor, event_dims: int = 1) -> Tensor:
        """Surrogate of value f(b), b ~ Bernoulli(σ(logits)), whose gradient is ĝ.

        Args:
            f: maps a tensor of ``logits``' shape to costs of shape ``logits.shape[:-event_dims]``.
            logits: α; the last ``event_dims`` dimensions are the latents.
            event_dims: how many trailing dimensions of ``logits`` ``f`` reduces over.
        """
        if not 0 <= event_dims <= logits.dim():
            raise ValueError(f"event_dims must be in [0, {logits.dim()}], got {event_dims}")
        z = logits + logistic_like(logits.shape, logits)
        b = (z > 0).to(logits.dtype).detach()
        z_tilde = conditional_logistic(logits, b, uniform_like(logits.shape, logits))
        log_prob = -F.binary_cross_entropy_with_logits(logits, b, reduction="none")
        if event_dims > 0:
            log_prob = log_prob.sum(tuple(range(-event_dims, 0)))
        cost = f(b)
        control = self.control_variate(f, z, event_dims)
        control_tilde = self.control_variate(f, z_tilde, event_dims)
        score_term = (cost.detach() - control_tilde.detach()) * log_prob
        # Value and first derivative zero; it carries ∂ĝ/∂c of the score term's coefficient
        # [f(b) − c(z̃)], which the variance step needs and a plain detach would drop.
        coefficient_path = gradient_only(-control_tilde) * gradient_only(log_prob)
        return cost + gradient_only(score_term + control - control_tilde) + coefficient_path

    def step(
        self, loss: Tensor, params: Iterable[Tensor], retain_graph: bool = False
    ) -> list[Tensor]:
        """Accumulate ĝ = ∂loss/∂params into ``.grad`` and step the control variate on ‖ĝ‖².

        Args:
            loss: a scalar reduction (e.g. the mean) of surrogates returned by this module.
            params: the parameters upstream of ``logits`` (the encoder); their ``.grad`` gets ĝ.
            retain_graph: keep the graph, e.g. to call ``loss.backward(inputs=decoder_params)``.

        Returns:
            ĝ, detached (averaged over ranks under ``torch.distributed``), one per parameter.
        """
        params = list(params)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        variance = sum(grad.square().sum() for grad in grads)
        own = [p for p in self.parameters() if p.requires_grad]
        own_grads = torch.autograd.grad(variance, own, allow_unused=True, retain_graph=retain_graph)
        for param, grad in zip(own, own_grads, strict=True):
            param.grad = all_reduce_mean(
                torch.zeros_like(param) if grad is None else grad.detach().clone()
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        estimates = [all_reduce_mean(grad.detach().clone()) for grad in grads]
        for param, grad in zip(params, estimates, strict=True):
            param.grad = grad.clone() if param.grad is None else param.grad + grad
        return estimates


class REBAR(RELAX):
    """REBAR: RELAX with c(z) = η f(σ(z/λ)), η and λ tuned to minimise variance.

    ĝ = [f(b) − η f(σ_λ(z̃))] ∇log p(b) + η ∇f(σ_λ(z)) − η ∇f(σ_λ(z̃)) (Tucker, Mnih, Maddison,
    Lawson & Sohl-Dickstein, 2017). ``f`` must accept relaxed values in (0, 1).

    Args:
        temperature: initial λ > 0.
        scale: initial η.
        lr: learning rate of the Adam optimizer of (η, λ).

    Example::

        >>> logits = torch.zeros(10, requires_grad=True)
        >>> rebar = REBAR()
        >>> surrogate = rebar(lambda b: (b - 0.45).square().sum(-1), logits)
        >>> surrogate.backward()
    """

    def __init__(self, *, temperature: float = 0.5, scale: float = 1.0, lr: float = 1e-3) -> None:
        super().__init__(None, relaxed_cost=True, temperature=temperature, scale=scale, lr=lr)
