"""Mixtures with implicit reparameterization gradients through the distributional transform.

For a mixture with weights ``w_k`` and factorized components ``p_k(z) = Π_d p_kd(z_d)`` the
distributional transform (Figurnov, Mohamed & Mnih, 2018, Sec. 3.3) maps ``z`` to
``u_d = F_d(z_d | z_<d) = Σ_k π_k^{(d)} F_kd(z_d)`` with posterior weights
``π_k^{(d)} ∝ w_k Π_{j<d} p_kj(z_j)``. Its Jacobian is lower triangular with the conditional
densities on the diagonal; :func:`stochgrad.implicit._core.implicit_triangular` solves it by
forward substitution. Univariate mixtures are the case ``D = 1``:
``dz/dθ = -(Σ_k ∂(w_k F_k)/∂θ) / Σ_k w_k p_k``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.distributions as td
from torch import Tensor
from torch.distributions import constraints

from stochgrad.implicit._core import implicit_triangular, needs_grad
from stochgrad.implicit.factorized import _coordinates, _tensors_of
from stochgrad.pyro import PyroCompatible

__all__ = ["Mixture", "MixtureSameFamily"]

_PerCoordinate = Callable[[Tensor], Tensor]


def _log_cdf_and_survival(dist: td.Distribution, value: Tensor) -> tuple[Tensor, Tensor]:
    """``(log F, log(1 - F))`` without gradients; exact in both tails for Normal laws."""
    with torch.no_grad():
        if isinstance(dist, td.Normal):
            standard = (value - dist.loc) / dist.scale
            # log_ndtr once, on the tail side; the other side is log1p(-Φ) without cancellation
            small = torch.special.log_ndtr(-standard.abs())
            large = torch.log1p(-torch.exp(small))
            upper = standard > 0
            return torch.where(upper, large, small), torch.where(upper, small, large)
        cdf = dist.cdf(value).clamp(0, 1)
        return torch.log(cdf), torch.log1p(-cdf)


def _support_bounds(support: constraints.Constraint) -> tuple[float, float]:
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    low = getattr(support, "lower_bound", -float("inf"))
    high = getattr(support, "upper_bound", float("inf"))
    return float(low), float(high)


@contextlib.contextmanager
def _unvalidated(dist: td.Distribution) -> Iterator[None]:
    """Switch off value checks of ``dist`` and its base laws (values are already screened, and
    e.g. torch's Gumbel rejects its own CDF's rounding to 1)."""
    chain = [dist]
    while isinstance(getattr(chain[-1], "base_dist", None), td.Distribution):
        chain.append(chain[-1].base_dist)
    # the default setting is a class attribute: restore "absent", not None (which would be falsy)
    absent = object()
    saved = [d.__dict__.get("_validate_args", absent) for d in chain]
    for d in chain:
        d._validate_args = False
    try:
        yield
    finally:
        for d, flag in zip(chain, saved, strict=True):
            if flag is absent:
                del d._validate_args
            else:
                d._validate_args = flag


class _Coordinatewise:
    """Per-coordinate ``log p``, ``F``, ``log F``, ``log(1-F)``; total outside the support."""

    def __init__(self, dist: td.Distribution) -> None:
        self.inner, self.folded = _coordinates(dist)
        self.low, self.high = _support_bounds(self.inner.support)

    def _safe(self, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        below, above = value <= self.low, value >= self.high
        if not (below.any() or above.any()):
            return value, below, above
        low, high = self.low, self.high
        inside = (low + high) / 2 if abs(low) + abs(high) < float("inf") else None
        if inside is None:
            inside = low + 1 if low > -float("inf") else high - 1
        return torch.where(below | above, torch.full_like(value, inside), value), below, above

    @property
    def _whole_line(self) -> bool:
        return self.low == -float("inf") and self.high == float("inf")

    def log_prob(self, value: Tensor) -> Tensor:
        if self._whole_line:
            with _unvalidated(self.inner):
                return self.inner.log_prob(value)
        safe, below, above = self._safe(value)
        with _unvalidated(self.inner):
            log_prob = self.inner.log_prob(safe)
        return torch.where(below | above, -float("inf"), log_prob)

    def cdf(self, value: Tensor) -> Tensor:
        if self._whole_line:
            with _unvalidated(self.inner):
                return self.inner.cdf(value)
        safe, below, above = self._safe(value)
        with _unvalidated(self.inner):
            out = torch.where(below, 0.0, self.inner.cdf(safe))
        return torch.where(above, 1.0, out)

    def log_cdf_and_survival(self, value: Tensor) -> tuple[Tensor, Tensor]:
        if self._whole_line:
            with _unvalidated(self.inner):
                return _log_cdf_and_survival(self.inner, value)
        safe, below, above = self._safe(value)
        with _unvalidated(self.inner):
            log_cdf, log_survival = _log_cdf_and_survival(self.inner, safe)
        log_cdf = torch.where(above, 0.0, torch.where(below, -float("inf"), log_cdf))
        log_survival = torch.where(below, 0.0, torch.where(above, -float("inf"), log_survival))
        return log_cdf, log_survival


def _mixture_rsample(
    z: Tensor,
    log_weights: Tensor,
    log_prob: _PerCoordinate,
    cdf: _PerCoordinate,
    log_cdf_and_survival: Callable[[Tensor], tuple[Tensor, Tensor]],
) -> Tensor:
    """Reparameterize ``z`` (``..., D``) of a mixture of factorized components.

    ``log_weights`` is ``(..., K)``; the callables map ``x`` of shape ``(..., K, D)`` (the sample
    repeated per component) to per-component, per-coordinate values of the same shape.
    """
    z = z.detach()
    num_components, dim = log_weights.shape[-1], z.shape[-1]
    x = z.unsqueeze(-2).expand(*z.shape[:-1], num_components, dim)
    if dim > 1:
        # The posterior weights depend on earlier coordinates only through log p_kj(z_j); their
        # first-order expansion L0 + s·(z̃_j - z_j) (value unchanged) carries exactly the
        # derivatives the forward substitution needs, with one density evaluation in all.
        x_leaf = x.detach().clone().requires_grad_()
        with torch.enable_grad():
            log_density = log_prob(x_leaf)
            (score,) = torch.autograd.grad(log_density.sum(), x_leaf, retain_graph=True)
    else:
        log_density, score = log_prob(x), None
    log_cdf, log_survival = log_cdf_and_survival(x)
    # One contiguous (..., K) slab per coordinate: the loop below reads them in order.
    log_density, cdf_value, log_cdf, log_survival = (
        t.movedim(-1, 0).contiguous() for t in (log_density, cdf(x), log_cdf, log_survival)
    )
    score = None if score is None else score.movedim(-1, 0).contiguous()
    log_density_value = log_density.detach()
    # unbind once: per-step indexing of a graph tensor would zero-fill it in backward, D times
    log_density, cdf_value = log_density.unbind(0), cdf_value.unbind(0)
    running = torch.zeros_like(log_weights)

    def conditional(d: int, previous: list[Tensor]) -> tuple[Tensor, Tensor]:
        nonlocal running
        if d > 0:
            shift = (previous[-1] - z[..., d - 1]).unsqueeze(-1) * score[d - 1]
            running = running + log_density[d - 1] + shift
        log_posterior = torch.log_softmax(log_weights + running, dim=-1)
        posterior = log_posterior.exp()
        lp = log_posterior.detach()
        log_u = torch.logsumexp(lp + log_cdf[d], dim=-1, keepdim=True)
        log_s = torch.logsumexp(lp + log_survival[d], dim=-1, keepdim=True)
        # F_kd - u_d, from CDFs below the conditional median and from survivals above it, so
        # that far tails do not cancel (Σ_k ∂π_k = 0 makes the constant irrelevant).
        offset = torch.where(
            log_u <= log_s,
            log_cdf[d].exp() - log_u.exp(),
            log_s.exp() - log_survival[d].exp(),
        )
        numerator = (posterior.detach() * cdf_value[d]).sum(-1)
        numerator = numerator + (posterior * offset).sum(-1)
        density = torch.logsumexp(lp + log_density_value[d], dim=-1).exp()
        return numerator, density

    return implicit_triangular(z, conditional)


class MixtureSameFamily(PyroCompatible, td.MixtureSameFamily):
    """Mixture of one family (``torch.distributions.MixtureSameFamily``) with ``rsample``.

    Gradient path: ``dz/dθ = -(∂u/∂z)⁻¹ ∂u/∂θ`` through the distributional transform
    ``u_d = Σ_k π_k^{(d)} F_kd(z_d)``, solved by forward substitution (Figurnov, Mohamed & Mnih,
    2018, Sec. 3.3). Components must be univariate, or ``Independent`` of univariate laws (e.g.
    diagonal Gaussians), and have a differentiable ``cdf``.

    Args:
        mixture_distribution: ``Categorical`` over the rightmost batch dimension of the components.
        component_distribution: the components, batch shape ``(..., K)``.
        validate_args: check parameters and values against their constraints.

    Example::

        >>> logits = torch.zeros(3, requires_grad=True)
        >>> loc = torch.tensor([-2.0, 0.0, 2.0], requires_grad=True)
        >>> mix = MixtureSameFamily(td.Categorical(logits=logits), td.Normal(loc, torch.ones(3)))
        >>> (mix.rsample((100,)) ** 2).mean().backward()
        >>> loc.grad.shape
        torch.Size([3])
    """

    has_rsample = True

    def __init__(
        self,
        mixture_distribution: td.Categorical,
        component_distribution: td.Distribution,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(mixture_distribution, component_distribution, validate_args)
        self._coordinatewise = _Coordinatewise(component_distribution)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(MixtureSameFamily, _instance)
        new = super().expand(batch_shape, _instance=new)
        new._coordinatewise = _Coordinatewise(new.component_distribution)
        return new

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        z = self.sample(sample_shape)
        if not needs_grad(*_tensors_of(self)):
            return z
        flat = z.reshape(*z.shape[: z.dim() - len(self.event_shape)], -1)
        coordinates = self._coordinatewise

        def per_component(fn: Callable[[Tensor], Tensor]) -> _PerCoordinate:
            # (..., K, D) -> the component batch (..., K, *event) -> (..., K, D)
            return lambda x: fn(x.reshape(*x.shape[:-1], *self.event_shape)).reshape(x.shape)

        def log_cdf_and_survival(x: Tensor) -> tuple[Tensor, Tensor]:
            pair = coordinates.log_cdf_and_survival(x.reshape(*x.shape[:-1], *self.event_shape))
            return pair[0].reshape(x.shape), pair[1].reshape(x.shape)

        log_weights = torch.log_softmax(self.mixture_distribution.logits, dim=-1)
        out = _mixture_rsample(
            flat,
            log_weights.expand(flat.shape[:-1] + log_weights.shape[-1:]),
            per_component(coordinates.log_prob),
            per_component(coordinates.cdf),
            log_cdf_and_survival,
        )
        return out.reshape(z.shape)


class Mixture(PyroCompatible, td.Distribution):
    """Mixture of distributions of different families, with ``rsample``.

    ``p(z) = Σ_k w_k p_k(z)``; the gradient path is the distributional transform of
    :class:`MixtureSameFamily` (Figurnov, Mohamed & Mnih, 2018, Sec. 3.3). Every component must
    be univariate or ``Independent`` of univariate laws, with the same event shape and a
    differentiable ``cdf``; outside a component's support its density is 0 and its CDF 0 or 1.

    Args:
        components: the list of component distributions (batch shapes broadcast together).
        weights: mixture probabilities ``(..., K)`` (exclusive with ``logits``); uniform if both
            are omitted.
        logits: unnormalized log-probabilities ``(..., K)``.
        validate_args: check parameters and values against their constraints.

    Example::

        >>> scale = torch.tensor(1.0, requires_grad=True)
        >>> weights = torch.tensor([0.3, 0.7])
        >>> mix = Mixture([td.Normal(0.0, scale), td.Gumbel(3.0, 1.0)], weights=weights)
        >>> mix.rsample((500,)).mean().backward()
        >>> scale.grad.shape
        torch.Size([])
    """

    has_rsample = True

    def __init__(
        self,
        components: Sequence[td.Distribution],
        weights: Tensor | None = None,
        logits: Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        components = list(components)
        if not components:
            raise ValueError("components must hold at least one distribution, got an empty list")
        if weights is not None and logits is not None:
            raise ValueError("give weights or logits, not both")
        event_shape = components[0].event_shape
        for component in components:
            if component.event_shape != event_shape:
                raise ValueError(
                    "components must share one event_shape, got "
                    f"{[tuple(c.event_shape) for c in components]}"
                )
            _coordinates(component)
        reference = next(
            (t for c in components for t in _tensors_of(c) if t.is_floating_point()),
            torch.zeros(()),
        )
        if weights is None and logits is None:
            logits = torch.zeros(len(components), dtype=reference.dtype, device=reference.device)
        if weights is not None:
            self.weights = weights
            # log 0 = -inf without the 0 · inf = NaN that torch.log(0) would put in the gradient
            positive = weights > 0
            safe = torch.where(positive, weights, 1.0)
            logits = torch.where(positive, torch.log(safe), -math.inf)
        if logits.shape[-1:] != (len(components),):
            raise ValueError(
                f"weights/logits must have last dimension {len(components)} (one per component), "
                f"got shape {tuple(logits.shape)}"
            )
        self.logits = logits - logits.logsumexp(-1, keepdim=True)
        batch_shape = torch.broadcast_shapes(
            self.logits.shape[:-1], *(c.batch_shape for c in components)
        )
        self.components = [c.expand(batch_shape) for c in components]
        self._coordinatewise = [_Coordinatewise(c) for c in self.components]
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Mixture, _instance)
        batch_shape = torch.Size(batch_shape)
        new.components = [c.expand(batch_shape) for c in self.components]
        new._coordinatewise = [_Coordinatewise(c) for c in new.components]
        new.logits = self.logits.expand(batch_shape + self.logits.shape[-1:])
        if "weights" in self.__dict__:
            new.weights = self.weights.expand(batch_shape + self.weights.shape[-1:])
        super(Mixture, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def arg_constraints(self) -> dict[str, constraints.Constraint]:  # type: ignore[override]
        given = {"logits": constraints.real_vector}
        if "weights" in self.__dict__:
            given["weights"] = constraints.simplex
        return given

    @property
    def support(self) -> constraints.Constraint:
        bounds = {_support_bounds(c.support) for c in self.components}
        if len(bounds) == 1:
            return self.components[0].support
        return constraints.independent(constraints.real, len(self.event_shape))

    @property
    def probs(self) -> Tensor:
        return self.logits.exp()

    @property
    def mean(self) -> Tensor:
        means = torch.stack([c.mean for c in self.components], -1 - len(self.event_shape))
        return (self._event_weights() * means).sum(-1 - len(self.event_shape))

    @property
    def variance(self) -> Tensor:
        dim = -1 - len(self.event_shape)
        means = torch.stack([c.mean for c in self.components], dim)
        second = torch.stack([c.variance + c.mean**2 for c in self.components], dim)
        mean = (self._event_weights() * means).sum(dim)
        return (self._event_weights() * second).sum(dim) - mean**2

    def _event_weights(self) -> Tensor:
        return self.probs.reshape(self.probs.shape + (1,) * len(self.event_shape))

    def _stacked(self, value: Tensor, method: str) -> Tensor:
        """``(..., K)`` per-component log densities or CDFs of whole events."""
        per = []
        for wise in self._coordinatewise:
            out = getattr(wise, method)(value)
            if wise.folded:
                out = out.flatten(-wise.folded)
                out = out.sum(-1) if method == "log_prob" else out.prod(-1)
            per.append(out)
        return torch.stack(per, -1)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        with torch.no_grad():
            samples = torch.stack([c.sample(sample_shape) for c in self.components], -1)
            index = td.Categorical(logits=self.logits).sample(sample_shape)
            index = index.reshape(index.shape + (1,) * len(self.event_shape) + (1,))
            index = index.expand(samples.shape[:-1] + (1,))
            return samples.gather(-1, index).squeeze(-1)

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        z = self.sample(sample_shape)
        if not needs_grad(self.logits, *(t for c in self.components for t in _tensors_of(c))):
            return z
        event_shape = self.event_shape
        flat = z.reshape(*z.shape[: z.dim() - len(event_shape)], -1)

        def stack(method: str) -> Callable[[Tensor], Tensor | tuple[Tensor, Tensor]]:
            def fn(x: Tensor):
                outs = []
                for k, wise in enumerate(self._coordinatewise):
                    xk = x[..., k, :].reshape(*x.shape[:-2], *event_shape)
                    outs.append(getattr(wise, method)(xk))
                if method == "log_cdf_and_survival":
                    return tuple(
                        torch.stack([o[i].reshape(x.shape[:-2] + x.shape[-1:]) for o in outs], -2)
                        for i in range(2)
                    )
                return torch.stack([o.reshape(x.shape[:-2] + x.shape[-1:]) for o in outs], -2)

            return fn

        logits = self.logits.expand(flat.shape[:-1] + self.logits.shape[-1:])
        out = _mixture_rsample(
            flat,
            logits,
            stack("log_prob"),
            stack("cdf"),
            stack("log_cdf_and_survival"),
        )
        return out.reshape(z.shape)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return torch.logsumexp(self.logits + self._stacked(value, "log_prob"), -1)

    def cdf(self, value: Tensor) -> Tensor:
        """Mixture CDF ``Σ_k w_k F_k(z)`` (univariate mixtures; for events, the joint CDF)."""
        if self._validate_args:
            self._validate_sample(value)
        return (self.probs * self._stacked(value, "cdf")).sum(-1)
