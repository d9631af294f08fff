"""Functional VAE losses on ``log_q``, ``log_p`` tensors of shape ``(batch_size, n_samples)``.

Every function returns a surrogate whose *value* is the loss (a negative bound, mean over the
batch) and whose *gradient* is the named estimator. Which samples the inputs come from matters:

- reparameterized ``z`` (``inf_net.rsample``): :func:`elbo_loss`, :func:`iwae_loss`,
  :func:`dreg_loss` (with ``log_q`` evaluated with stopped parameters);
- ``z`` drawn without gradient (``inf_net.sample``): :func:`vimco_loss`,
  :func:`score_function_elbo_loss`, :func:`pwake_loss`, :func:`qwake_loss`;
- ``(x, z) ~ p`` (``gen_model.sample``): :func:`qsleep_loss`.

Reductions: log-densities are already summed over latent and data dimensions; samples are
averaged (or log-mean-exp'ed) and the batch is reduced by ``reduction`` (``"mean"``, ``"sum"``
or ``"none"`` for the per-datapoint losses of shape ``(batch_size,)``).
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor
from torch.distributions import Distribution, kl_divergence

from stochgrad.estimators.surrogate import gradient_only, score_function_surrogate

__all__ = [
    "analytic_kl",
    "dreg_loss",
    "elbo_loss",
    "elbo_loss_analytic_kl",
    "iwae_bound",
    "iwae_loss",
    "leave_one_out_log_mean_exp",
    "log_mean_exp",
    "pwake_loss",
    "qsleep_loss",
    "qwake_loss",
    "score_function_elbo_loss",
    "self_normalized_weights",
    "vimco_loss",
]

_REDUCTIONS = ("mean", "sum", "none")


def log_mean_exp(value: Tensor, dim: int = -1, keepdim: bool = False) -> Tensor:
    """log(1/n Σ_i exp(value_i)) along ``dim``, computed stably as
    m + log(1/n Σ_i exp(value_i − m)) with m = max_i value_i.

    Its gradient is softmax(value) to working precision at any offset (the backward of
    ``logsumexp``, exp(value − result), inherits the rounding of a large result: a relative error
    of 4e-4 at |value| = 1e4 in float32).

    Args:
        value: tensor of log-values.
        dim: dimension averaged over (size n).
        keepdim: keep ``dim`` with size 1.

    Example::

        >>> log_mean_exp(torch.tensor([[1000.0, 1000.0]]), dim=1)
        tensor([1000.])
    """
    shift = value.detach().amax(dim=dim, keepdim=True)
    # Rows of -inf (or +inf) would give inf - inf = nan; shift them by 0 instead.
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    result = shift + torch.log(torch.exp(value - shift).mean(dim=dim, keepdim=True))
    return result if keepdim else result.squeeze(dim)


def leave_one_out_log_mean_exp(log_w: Tensor) -> Tensor:
    """VIMCO's leave-one-out estimate: log-mean-exp of ``log_w`` with entry j replaced by the
    mean of the others, for every j (Mnih & Rezende, 2016, eq. 9).

    log L̂₋ⱼ = log(1/K (Σ_{i≠j} w_i + exp(1/(K−1) Σ_{i≠j} log w_i))).

    Args:
        log_w: log-weights, shape ``(batch_size, K)`` with ``K >= 2``.

    Returns:
        Tensor of shape ``(batch_size, K)``.

    Example::

        >>> leave_one_out_log_mean_exp(torch.zeros(1, 3))
        tensor([[0., 0., 0.]])
    """
    n_samples = log_w.shape[-1]
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2 for leave-one-out estimates, got {n_samples}")
    others_mean = (log_w.sum(-1, keepdim=True) - log_w) / (n_samples - 1)
    eye = torch.eye(n_samples, dtype=torch.bool, device=log_w.device)
    # Row j of the last two dims is log_w with its j-th entry replaced by others_mean[j].
    replaced = torch.where(eye, others_mean.unsqueeze(-1), log_w.unsqueeze(-2))
    return log_mean_exp(replaced, dim=-1)


def self_normalized_weights(log_q: Tensor, log_p: Tensor) -> Tensor:
    """Normalized importance weights w̃_k = w_k / Σ_j w_j with w = p(x, z)/q(z | x), no gradient.

    Example::

        >>> self_normalized_weights(torch.zeros(1, 2), torch.tensor([[1.0, 3.0]]).log())
        tensor([[0.2500, 0.7500]])
    """
    _check_shapes(log_q, log_p)
    return torch.softmax((log_p - log_q).detach(), dim=-1)


def iwae_bound(log_q: Tensor, log_p: Tensor) -> Tensor:
    """Per-datapoint importance-weighted bound log(1/K Σ_k p(x, z_k)/q(z_k | x)), shape
    ``(batch_size,)`` (Burda et al., 2016); ``K = 1`` gives the ELBO.

    Example::

        >>> iwae_bound(torch.zeros(2, 4), torch.zeros(2, 4))
        tensor([0., 0.])
    """
    _check_shapes(log_q, log_p)
    return log_mean_exp(log_p - log_q, dim=-1)


def elbo_loss(log_q: Tensor, log_p: Tensor, reduction: str = "mean") -> Tensor:
    """Negative ELBO, −1/K Σ_k (log p(x, z_k) − log q(z_k | x)) (Kingma & Welling, 2014).

    With reparameterized ``z`` its gradient is the pathwise ELBO gradient.

    Args:
        log_q: log q(z | x), shape ``(batch_size, n_samples)``.
        log_p: log p(x, z), same shape.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.

    Example::

        >>> elbo_loss(torch.full((2, 3), -1.0), torch.full((2, 3), -4.0))
        tensor(3.)
    """
    _check_shapes(log_q, log_p)
    return _reduce(-(log_p - log_q).mean(-1), reduction)


def analytic_kl(q: Distribution, prior: Distribution) -> Tensor | None:
    """KL(q ‖ prior) in closed form, the prior first expanded to q's batch shape (torch's
    Bernoulli and other KLs index with masks of each argument's shape); ``None`` where torch
    registers no closed form.

    Example::

        >>> from torch.distributions import Bernoulli, Gamma
        >>> q = Bernoulli(logits=torch.zeros(4, 3))
        >>> analytic_kl(q, Bernoulli(probs=torch.full((3,), 0.5))).shape
        torch.Size([4, 3])
        >>> analytic_kl(q, Gamma(1.0, 1.0)) is None
        True
    """
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        prior = prior.expand(q.batch_shape)
    try:
        return kl_divergence(q, prior)
    except NotImplementedError:
        return None


def elbo_loss_analytic_kl(log_likelihood: Tensor, kl: Tensor, reduction: str = "mean") -> Tensor:
    """Negative ELBO with the KL in closed form: −(1/K Σ_k log p(x | z_k) − KL(q(z | x) ‖ p(z))).

    Args:
        log_likelihood: log p(x | z), shape ``(batch_size, n_samples)``.
        kl: KL(q(z | x) ‖ p(z)), shape ``(batch_size,)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.

    Example::

        >>> elbo_loss_analytic_kl(torch.full((2, 3), -4.0), torch.ones(2))
        tensor(5.)
    """
    if log_likelihood.dim() != 2 or kl.shape != log_likelihood.shape[:1]:
        raise ValueError(
            "log_likelihood must have shape (batch_size, n_samples) and kl (batch_size,), got "
            f"{tuple(log_likelihood.shape)} and {tuple(kl.shape)}"
        )
    return _reduce(kl - log_likelihood.mean(-1), reduction)


def iwae_loss(log_q: Tensor, log_p: Tensor, reduction: str = "mean") -> Tensor:
    """Negative IWAE bound −log(1/K Σ_k w_k), w_k = p(x, z_k)/q(z_k | x) (Burda et al., 2016).

    With reparameterized ``z`` the gradient is Σ_k w̃_k ∇log w_k.

    Args:
        log_q: log q(z | x), shape ``(batch_size, K)``.
        log_p: log p(x, z), same shape.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.

    Example::

        >>> iwae_loss(torch.zeros(1, 2), torch.tensor([[1.0, 3.0]]).log())
        tensor(-0.6931)
    """
    return _reduce(-iwae_bound(log_q, log_p), reduction)


def dreg_loss(log_q: Tensor, log_p: Tensor, reduction: str = "mean") -> Tensor:
    """Negative IWAE bound with the doubly reparameterized gradient of the inference network
    (Tucker et al., 2019): ∇φ = Σ_k w̃_k² ∂log w_k/∂z_k ∂z_k/∂φ.

    ``log_q`` must be log q(z | x) at reparameterized ``z`` with the distribution parameters
    stopped (``inf_net.log_prob(z, detach_params=True)``), so that φ enters through ``z`` only.
    The gradient it gives generative-model parameters is Σ_k w̃_k² ∇θ log p, not the IWAE one;
    the :class:`~stochgrad.vae.DReG` loss object routes θ to Σ_k w̃_k ∇θ log p.

    Args:
        log_q: log q(z | x) with stopped parameters, shape ``(batch_size, K)``.
        log_p: log p(x, z), same shape.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.

    Example::

        >>> dreg_loss(torch.zeros(1, 2), torch.tensor([[1.0, 3.0]]).log())
        tensor(-0.6931)
    """
    bound = iwae_bound(log_q, log_p)
    log_w = log_p - log_q
    squared_weights = torch.softmax(log_w.detach(), dim=-1) ** 2
    surrogate = (squared_weights * log_w).sum(-1)
    return _reduce(-(bound.detach() + gradient_only(surrogate)), reduction)


def vimco_loss(log_q: Tensor, log_p: Tensor, reduction: str = "mean") -> Tensor:
    """Negative IWAE bound with the VIMCO gradient (Mnih & Rezende, 2016):
    ∇ = Σ_k w̃_k ∇log w_k + Σ_k (log L̂ − log L̂₋ₖ) ∇log q(z_k | x), with leave-one-out L̂₋ₖ.

    ``z`` must be sampled without gradient (``inf_net.sample``); works for discrete latents.

    Args:
        log_q: log q(z | x), shape ``(batch_size, K)``, ``K >= 2``.
        log_p: log p(x, z), same shape.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.

    Example::

        >>> vimco_loss(torch.zeros(1, 2), torch.tensor([[1.0, 3.0]]).log())
        tensor(-0.6931)
    """
    bound = iwae_bound(log_q, log_p)
    learning_signal = bound.detach().unsqueeze(-1) - leave_one_out_log_mean_exp(
        (log_p - log_q).detach()
    )
    score = (learning_signal * log_q).sum(-1)
    return _reduce(-(bound + gradient_only(score)), reduction)


def score_function_elbo_loss(
    log_q: Tensor,
    log_p: Tensor,
    baseline: Tensor | float | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Negative ELBO with the REINFORCE gradient for the inference network (Williams, 1992;
    Mnih & Gregor, 2014): ∇φ = 1/K Σ_k (f_k − b) ∇log q(z_k | x) − ∇log q(z_k | x),
    f = log p(x, z) − log q(z | x).

    ``z`` must be sampled without gradient; ``baseline`` must not depend on ``z_k`` itself
    (a leave-one-out baseline over the other samples is fine).

    Args:
        log_q: log q(z | x), shape ``(batch_size, n_samples)``.
        log_p: log p(x, z), same shape.
        baseline: control variate b for the learning signal f, broadcastable to
            ``(batch_size, n_samples)`` (detached here); ``None`` means 0.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.

    Example::

        >>> score_function_elbo_loss(torch.full((2, 3), -1.0), torch.full((2, 3), -4.0), 0.5)
        tensor(3.)
    """
    _check_shapes(log_q, log_p)
    if baseline is not None:
        baseline = -torch.as_tensor(baseline, dtype=log_q.dtype, device=log_q.device)
        if baseline.dim() == 1 and baseline.numel() > 1:
            raise ValueError(
                "baseline must be a scalar or broadcastable to (batch_size, n_samples), e.g. "
                f"(batch_size, 1); got shape {tuple(baseline.shape)}"
            )
    # The cost minimised is -f; its baseline is -b.
    surrogate = score_function_surrogate(-(log_p - log_q), log_q, baseline)
    return _reduce(surrogate.mean(-1), reduction)


def pwake_loss(log_q: Tensor, log_p: Tensor, reduction: str = "mean") -> Tensor:
    """Reweighted wake-sleep wake-θ loss (Bornschein & Bengio, 2015): the negative IWAE bound
    with gradient Σ_k w̃_k ∇θ log p(x, z_k) and no gradient to the inference network.

    Args:
        log_q: log q(z | x), shape ``(batch_size, K)`` (detached here).
        log_p: log p(x, z) at ``z`` sampled without gradient, same shape.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.

    Example::

        >>> pwake_loss(torch.zeros(1, 2), torch.tensor([[1.0, 3.0]]).log())
        tensor(-0.6931)
    """
    return iwae_loss(log_q.detach(), log_p, reduction)


def qwake_loss(log_q: Tensor, log_p: Tensor, reduction: str = "mean") -> Tensor:
    """Reweighted wake-sleep wake-φ loss (Bornschein & Bengio, 2015; Le et al., 2019):
    −Σ_k w̃_k log q(z_k | x), a self-normalized estimate of KL(p(z | x) ‖ q(z | x)) + H[p(z | x)].

    Its gradient −Σ_k w̃_k ∇φ log q(z_k | x) goes to the inference network only (the weights
    are detached).

    Args:
        log_q: log q(z | x) at ``z`` sampled without gradient, shape ``(batch_size, K)``.
        log_p: log p(x, z), same shape (detached here).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.

    Example::

        >>> qwake_loss(torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.0, -2.0]]))
        tensor(1.5000)
    """
    weights = self_normalized_weights(log_q, log_p.detach())
    return _reduce(-(weights * log_q).sum(-1), reduction)


def qsleep_loss(log_q: Tensor, reduction: str = "mean") -> Tensor:
    """Wake-sleep sleep-φ loss (Hinton et al., 1995): −log q(z | x) at ``(x, z) ~ p(x, z)``,
    a Monte Carlo estimate of E_{p(x)} KL(p(z | x) ‖ q(z | x)) up to a constant.

    Args:
        log_q: log q(z | x) at samples of the generative model, shape ``(batch_size, n_samples)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.

    Example::

        >>> qsleep_loss(torch.tensor([[-1.0], [-3.0]]))
        tensor(2.)
    """
    if log_q.dim() != 2:
        raise ValueError(f"log_q must have shape (batch_size, n_samples), got {tuple(log_q.shape)}")
    return _reduce(-log_q.mean(-1), reduction)


def _check_shapes(log_q: Tensor, log_p: Tensor) -> None:
    if log_q.dim() != 2 or log_q.shape != log_p.shape:
        raise ValueError(
            "log_q and log_p must both have shape (batch_size, n_samples), got "
            f"{tuple(log_q.shape)} and {tuple(log_p.shape)}"
        )


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
