"""Relaxed k-subset sampling: Gumbel top-k with the successive-softmax relaxation."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from stochgrad.relaxed._utils import EMPTY_SHAPE, PyroCompatible, gumbel_like
from stochgrad.special._autograd import gradient_only

__all__ = ["GumbelSoftmaxTopK"]

# Beyond this K the exact subset probability (a sum over K! orderings) is too costly.
_MAX_K_LOG_PROB = 8


class GumbelSoftmaxTopK(PyroCompatible, Distribution):
    r"""Relaxed k-hot sample of a size-K subset drawn without replacement.

    Math: keys ``s = logits + Gumbel``; the top-K keys form a sample without replacement
    (Kool et al.); the relaxation sums ``a_j = softmax(s_j / tau)`` with
    ``s_{j+1} = s_j + log(1 - a_j)`` for ``j = 1..K`` (Xie & Ermon), non-negative and summing to
    K. ``hard=True`` returns the exact k-hot with the relaxed gradient (straight-through), and
    then ``log_prob`` is the exact subset probability
    ``sum over orderings prod_j p_{i_j} / (1 - sum_{l<j} p_{i_l})``.
    Xie & Ermon, "Reparameterizable Subset Sampling via Continuous Relaxations", IJCAI 2019;
    Kool, van Hoof & Welling, "Stochastic Beams and Where to Find Them", ICML 2019.

    Args:
        logits: unnormalised log-probabilities of the n items, shape ``(..., n)``.
        K: subset size, ``1 <= K <= n``.
        tau: temperature > 0, broadcastable to the batch shape.
        hard: return exact k-hot samples with straight-through gradients.
        validate_args: check parameters and values.

    Example::

        >>> dist = GumbelSoftmaxTopK(torch.zeros(5), K=2, tau=0.5)
        >>> dist.rsample((3,)).sum(-1)
        tensor([2.0000, 2.0000, 2.0000])
    """

    arg_constraints = {"logits": constraints.real_vector, "tau": constraints.positive}
    has_rsample = True

    def __init__(
        self,
        logits: Tensor,
        K: int,
        tau: Tensor | float = 1.0,
        hard: bool = False,
        *,
        validate_args: bool | None = None,
    ) -> None:
        if logits.dim() < 1:
            raise ValueError(f"logits must have at least one dimension, got {logits.shape}")
        num_items = logits.shape[-1]
        if not 1 <= int(K) <= num_items:
            raise ValueError(f"K must be in [1, {num_items}] (the number of items), got {K}")
        tau = torch.as_tensor(tau, dtype=logits.dtype, device=logits.device)
        batch_shape = torch.broadcast_shapes(logits.shape[:-1], tau.shape)
        self.logits = logits.expand(batch_shape + logits.shape[-1:])
        self.tau = tau.expand(batch_shape)
        self.K = int(K)
        self.hard = bool(hard)
        super().__init__(batch_shape, logits.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(GumbelSoftmaxTopK, _instance)
        batch_shape = torch.Size(batch_shape)
        new.logits = self.logits.expand(batch_shape + self.event_shape)
        new.tau = self.tau.expand(batch_shape)
        new.K, new.hard = self.K, self.hard
        super(GumbelSoftmaxTopK, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self):
        if self.hard:
            return constraints.independent(constraints.boolean, 1)
        # The relaxed k-hot sums to K; away from the limit one coordinate can exceed 1.
        return constraints.independent(constraints.interval(0.0, float(self.K)), 1)

    def rsample(self, sample_shape: torch.Size = EMPTY_SHAPE) -> Tensor:
        keys = self.logits + gumbel_like(self._extended_shape(sample_shape), self.logits)
        tau = self.tau.unsqueeze(-1)
        tiny = torch.finfo(keys.dtype).tiny
        soft = torch.zeros_like(keys)
        scores = keys
        for _ in range(self.K):
            onehot = torch.softmax(scores / tau, dim=-1)
            soft = soft + onehot
            scores = scores + (1 - onehot).clamp_min(tiny).log()
        if not self.hard:
            return soft
        top = keys.topk(self.K, dim=-1).indices
        khot = torch.zeros_like(keys).scatter_(-1, top, 1.0)
        return khot + gradient_only(soft)

    def log_prob(self, value: Tensor) -> Tensor:
        if not self.hard:
            raise NotImplementedError(
                "the relaxed top-K sample has no closed-form density; "
                "use hard=True for the exact subset probability"
            )
        if self.K > _MAX_K_LOG_PROB:
            raise NotImplementedError(
                f"log_prob sums over K! orderings and supports K <= {_MAX_K_LOG_PROB}, got {self.K}"
            )
        if self._validate_args:
            self._validate_sample(value)
        log_probs = torch.log_softmax(self.logits, dim=-1)
        log_probs, value = torch.broadcast_tensors(log_probs, value)
        chosen = value > 0.5
        # Stable sort puts the K chosen items first, in index order.
        chosen_index = chosen.to(torch.uint8).argsort(dim=-1, descending=True, stable=True)
        chosen_log_probs = log_probs.gather(-1, chosen_index[..., : self.K])
        log_left_out = torch.where(chosen, -torch.inf, log_probs).logsumexp(-1)
        orders = torch.tensor(
            list(itertools.permutations(range(self.K))), device=value.device, dtype=torch.long
        )
        ordered = chosen_log_probs[..., orders]  # (..., K!, K)
        # Mass still available before each draw: left-out items plus chosen items not yet drawn.
        not_yet_drawn = ordered.flip(-1).logcumsumexp(-1).flip(-1)
        remaining = torch.logaddexp(log_left_out[..., None, None], not_yet_drawn)
        return (ordered - remaining).sum(-1).logsumexp(-1)
