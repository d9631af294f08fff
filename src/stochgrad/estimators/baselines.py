"""Baselines: sample-independent control variates of the score-function estimator.

A baseline configures :class:`~stochgrad.estimators.Reinforce` or
:class:`~stochgrad.estimators.MuProp`: ``Reinforce(baseline=MovingAverageBaseline())``. As a
piece it is an ``nn.Module`` called as ``surrogate = baseline(cost, log_prob, context)``: the
value of ``surrogate`` is ``cost`` and its gradient is ``∇cost + (cost − b) ∇log q(z)`` with a
baseline ``b`` that does not depend on the current sample, so the estimator stays unbiased.
Learned baselines add their own training gradient with zero value, so one backward pass trains
everything. Inside the estimators the sample dimension of ``cost`` is the *last* one (the batch
dimensions lead), which is what :class:`LeaveOneOutBaseline` (``dim=-1``) and
:class:`NVILBaseline` (a network output per batch element) expect.

Stateful baselines (running means and variances) reduce their statistics over all ranks with
``torch.distributed.all_reduce`` when a process group is initialised, so they stay identical
under ``DistributedDataParallel``. Statistics are only updated in training mode.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ._distributed import all_reduce_sum
from .surrogate import _check_log_prob_shape, gradient_only, score_function_surrogate

__all__ = ["Baseline", "LeaveOneOutBaseline", "MovingAverageBaseline", "NVILBaseline"]


def _check_decay(decay: float) -> float:
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay}")
    return float(decay)


class Baseline(nn.Module):
    """Base class: ``forward(cost, log_prob, context=None)`` returns a surrogate of value ``cost``.

    ∇ surrogate = ∇cost + (cost − b) ∇log q(z) for the subclass's baseline ``b``.

    Args (of ``forward``):
        cost: ``f(z)``, shape ``(*batch, [n_samples])``.
        log_prob: ``log q(z)`` summed over latent dimensions, broadcastable to ``cost``.
        context: input of an input-dependent baseline (e.g. the data ``x``); ignored otherwise.
    """

    min_samples: int = 1

    def forward(self, cost: Tensor, log_prob: Tensor, context: Any = None) -> Tensor:
        raise NotImplementedError


class _RunningMoments(nn.Module):
    """Bias-corrected exponential moving averages of the mean and variance of a signal."""

    running_mean: Tensor
    running_var: Tensor
    num_updates: Tensor

    def __init__(self, decay: float) -> None:
        super().__init__()
        self.decay = _check_decay(decay)
        self.register_buffer("running_mean", torch.zeros(()))
        self.register_buffer("running_var", torch.zeros(()))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def _correction(self) -> float:
        return 1.0 - self.decay ** int(self.num_updates)

    @property
    def mean(self) -> Tensor:
        """Current estimate of the mean (0 before the first update)."""
        if int(self.num_updates) == 0:
            return torch.zeros_like(self.running_mean)
        return self.running_mean / self._correction()

    @property
    def var(self) -> Tensor:
        """Current estimate of the variance of the centred signal (0 before the first update)."""
        if int(self.num_updates) == 0:
            return torch.zeros_like(self.running_var)
        return self.running_var / self._correction()

    @torch.no_grad()
    def centring(self, values: Tensor) -> Tensor:
        """The mean to subtract from each of ``values``: the running mean once there is one;
        before the first update, the mean of the *other* values of the call (over every rank),
        which does not depend on that element's sample, so a baseline built on it stays unbiased.

        Without it the first call would centre at 0 and hand the optimizer a learning signal of
        the size of the cost itself; Adam's second-moment estimate remembers that one gradient
        for thousands of steps and shrinks every later step of the score-function parameters.
        """
        if int(self.num_updates) > 0:
            return self.mean.to(values)
        values = values.detach()
        stats = torch.stack([values.sum(), values.new_tensor(float(values.numel()))])
        total, count = all_reduce_sum(stats).unbind()
        if count < 2:
            return torch.zeros_like(values)
        return (total - values) / (count - 1)

    @torch.no_grad()
    def mean_square(self, centred: Tensor) -> Tensor:
        """The variance to normalise by: the running one once there is one; before the first
        update, the mean of ``centred²`` over the call (over every rank)."""
        if int(self.num_updates) > 0:
            return self.var.to(centred)
        centred = centred.detach()
        stats = torch.stack([centred.square().sum(), centred.new_tensor(float(centred.numel()))])
        total, count = all_reduce_sum(stats).unbind()
        return total / count.clamp(min=1)

    @torch.no_grad()
    def update(self, values: Tensor, centred: Tensor | None = None) -> None:
        """Fold in ``values`` (and the squares of ``centred``), summed over every rank."""
        values = values.detach().to(self.running_mean)
        centred = values if centred is None else centred.detach().to(self.running_mean)
        stats = torch.stack(
            [values.sum(), centred.square().sum(), values.new_tensor(float(values.numel()))]
        )
        total, total_sq, count = all_reduce_sum(stats).unbind()
        if count == 0:
            return
        self.running_mean.mul_(self.decay).add_((1.0 - self.decay) * total / count)
        self.running_var.mul_(self.decay).add_((1.0 - self.decay) * total_sq / count)
        self.num_updates += 1


class MovingAverageBaseline(Baseline):
    """REINFORCE with a moving-average baseline: ∇ = ∇cost + (cost − b̄) ∇log q(z).

    b̄ is the bias-corrected exponential moving average of past costs (averaged over all
    elements of each call and over all ranks), taken *before* the current costs are folded in,
    so the estimator stays unbiased (Williams, 1992; Weaver & Tao, 2001). Before the first
    update there is no past: each element is centred by the mean of the *other* costs of the
    call (still unbiased), not by 0, whose learning signal of the size of the cost itself an
    optimiser like Adam would remember for thousands of steps (as NVIL's did).

    Args:
        decay: weight of the past in the moving average, in [0, 1).

    Example::

        >>> estimator = MovingAverageBaseline(decay=0.9)
        >>> logits = torch.zeros(16, requires_grad=True)
        >>> q = torch.distributions.Bernoulli(logits=logits)
        >>> z = q.sample()
        >>> estimator((z - 0.45) ** 2, q.log_prob(z)).mean().backward()
        >>> int(estimator.moments.num_updates)
        1
    """

    def __init__(self, decay: float = 0.9) -> None:
        super().__init__()
        self.moments = _RunningMoments(decay)

    @property
    def value(self) -> Tensor:
        """The running baseline b̄ (0 before the first update, when each call centres every
        element by the mean of the others instead)."""
        return self.moments.mean

    def forward(self, cost: Tensor, log_prob: Tensor, context: Any = None) -> Tensor:
        surrogate = score_function_surrogate(cost, log_prob, self.moments.centring(cost))
        if self.training:
            self.moments.update(cost)
        return surrogate


def _align(baseline: Tensor, cost: Tensor) -> Tensor:
    """Match a per-input baseline of shape ``(*batch, [1])`` to ``cost`` of ``(*batch, *rest)``."""
    if baseline.dim() > 0 and baseline.shape[-1] == 1:
        baseline = baseline.squeeze(-1)
    baseline = baseline.reshape(baseline.shape + (1,) * max(cost.dim() - baseline.dim(), 0))
    try:
        torch.broadcast_shapes(baseline.shape, cost.shape)
    except RuntimeError:
        raise ValueError(
            f"the baseline network's output {tuple(baseline.shape)} must match the leading "
            f"dimensions of cost {tuple(cost.shape)}"
        ) from None
    return baseline


class NVILBaseline(Baseline):
    """NVIL: input-dependent learned baseline plus running mean, with variance normalisation.

    ∇ = [∇cost + (cost − c̄ − u·b_ψ(x)) ∇log q(z)] / max(1, σ̄), and ψ minimises
    ((cost − c̄)/u − b_ψ(x))² (Mnih & Gregor, 2014, "Neural Variational Inference and Learning").
    c̄ is a bias-corrected moving average of the cost, σ̄² one of the centred signal's variance
    and u² = max(1, ·) of one of (cost − c̄)², all taken before the current batch; before the
    first update (no history) c̄ for each element is the mean of the *other* costs of the call,
    and σ̄², u² are the batch's mean squares. Normalisation divides the whole estimate (the
    direct term ∇cost too) by the positive factor ``last_scale_``; with ``normalize=False`` the
    estimator is unbiased. The network predicts in units of u, the spread of the centred cost,
    so that under a scale-free optimiser (Adam) it fits a cost of any size at the same speed.

    Args:
        net: module mapping ``context`` to a baseline of shape ``(*batch)`` or ``(*batch, 1)``,
            where ``*batch`` are the leading dimensions of ``cost``; ``None`` for none.
        decay: weight of the past in the moving averages, in [0, 1).
        normalize: divide the estimate by ``max(1, σ̄)``.

    Example::

        >>> estimator = NVILBaseline(torch.nn.Linear(5, 1))
        >>> x = torch.randn(4, 5)
        >>> logits = torch.zeros(4, 3, 10, requires_grad=True)  # batch 4, 3 samples, 10 latents
        >>> q = torch.distributions.Bernoulli(logits=logits)
        >>> z = q.sample()
        >>> cost = (z - 0.45).square().sum(-1)
        >>> estimator(cost, q.log_prob(z).sum(-1), context=x).mean().backward()
    """

    def __init__(
        self, net: nn.Module | None = None, decay: float = 0.8, normalize: bool = True
    ) -> None:
        super().__init__()
        self.net = net
        self.normalize = normalize
        self.moments = _RunningMoments(decay)
        self.spread = _RunningMoments(decay)  # of cost − c̄: the unit of the network's output
        self.last_scale_ = 1.0

    def forward(self, cost: Tensor, log_prob: Tensor, context: Any = None) -> Tensor:
        _check_log_prob_shape(cost, log_prob)
        residual = cost.detach() - self.moments.centring(cost)
        unit = 1.0
        if self.net is None:
            learned = torch.zeros((), dtype=cost.dtype, device=cost.device)
        else:
            if context is None:
                raise ValueError("context must be given when NVILBaseline has a net")
            unit = max(1.0, float(self.spread.mean_square(residual).sqrt()))
            learned = unit * _align(self.net(context), cost)
        centred = residual - learned.detach()
        scale = 1.0
        if self.normalize:
            scale = max(1.0, float(self.moments.mean_square(centred).sqrt()))
        self.last_scale_ = scale
        # The whole estimate is divided, the direct term ∇cost with it: left undivided, its noise
        # (for an ELBO, ∇log q(z|x) with mean zero) would outweigh the normalised signal.
        surrogate = cost.detach() + gradient_only(cost + centred * log_prob) / scale
        if self.net is not None:
            fit = ((residual - learned) / unit).square()
            surrogate = surrogate + gradient_only(fit.expand_as(surrogate))
        if self.training:
            self.moments.update(cost, centred)
            self.spread.update(residual)
        return surrogate


class LeaveOneOutBaseline(Baseline):
    """Leave-one-out baseline over K samples: b_k = (1/(K−1)) Σ_{j≠k} f(z_j).

    ∇ = (1/K) Σ_k [∇f(z_k) + (f(z_k) − b_k) ∇log q(z_k)] when averaged over the sample
    dimension (Kool et al., 2019, "Buy 4 REINFORCE samples, get a baseline for free!";
    Mnih & Rezende, 2016). Stateless.

    Use it as ``Reinforce(LeaveOneOutBaseline(), n_samples=K)``.

    Args:
        dim: the dimension of ``cost`` that indexes the K ≥ 2 independent samples (the last one
            inside :class:`~stochgrad.estimators.Reinforce`).

    Example::

        >>> logits = torch.zeros(4, 1, 10, requires_grad=True)  # batch 4, 10 latents
        >>> q = torch.distributions.Bernoulli(logits=logits.expand(4, 2, 10))
        >>> z = q.sample()  # 2 samples per batch element
        >>> cost = (z - 0.45).square().sum(-1)
        >>> LeaveOneOutBaseline(dim=1)(cost, q.log_prob(z).sum(-1)).mean().backward()
    """

    min_samples = 2

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, cost: Tensor, log_prob: Tensor, context: Any = None) -> Tensor:
        num_samples = cost.shape[self.dim] if cost.dim() > 0 else 1
        if num_samples < 2:
            raise ValueError(
                f"cost must hold at least 2 samples along dim {self.dim}, got {num_samples}"
            )
        detached = cost.detach()
        baseline = (detached.sum(self.dim, keepdim=True) - detached) / (num_samples - 1)
        return score_function_surrogate(cost, log_prob, baseline)
