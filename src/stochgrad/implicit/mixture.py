"""Mixtures with implicit reparameterization gradients through the distributional transform.

For a mixture with weights ``w_k`` and components ``p_k`` the distributional transform
(Figurnov, Mohamed & Mnih, 2018, Sec. 3.3) maps ``z`` to its conditional CDFs
``u_d = F_d(z_d | z_<d) = Σ_k π_k^{(d)} F_kd(z_d | z_<d)`` with posterior weights
``π_k^{(d)} ∝ w_k p_k(z_<d)``. Factorized components have ``F_kd(z_d | z_<d) = F_kd(z_d)``;
full-covariance Gaussians have Gaussian conditionals ``Φ(ε_kd)`` with ``ε_k = L_k⁻¹(z - μ_k)``.
The Jacobian ``∂u/∂z`` is lower triangular with the conditional densities on its diagonal, so
``dz/dθ = -(∂u/∂z)⁻¹ ∂u/∂θ`` is one batched triangular solve. Univariate mixtures are the
case ``D = 1``: ``dz/dθ = -(Σ_k ∂(w_k F_k)/∂θ) / Σ_k w_k p_k``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeGuard, cast

import torch
import torch.distributions as td
from torch import Tensor
from torch.distributions import constraints

from stochgrad._typing import SampleShape
from stochgrad.implicit._core import needs_grad
from stochgrad.implicit.factorized import _coordinates, _tensors_of
from stochgrad.pyro import PyroCompatible
from stochgrad.special._autograd import gradient_only
from stochgrad.special._quadrature import working_dtype

__all__ = ["Mixture", "MixtureSameFamily"]

_Bound = float | Tensor
_HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def _support_bounds(support: constraints.Constraint | None) -> tuple[_Bound, _Bound]:
    """Lower and upper bound of a support: floats, or tensors for per-component bounds."""
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    low = getattr(support, "lower_bound", -math.inf)
    high = getattr(support, "upper_bound", math.inf)
    return low, high


def _has_tensor_bounds(support: constraints.Constraint) -> bool:
    """Whether the bounds of a support are per-component tensors (``Binomial``, ``Uniform``)."""
    return any(isinstance(bound, Tensor) for bound in _support_bounds(support))


class _InAnyComponent(constraints.MixtureSameFamilyConstraint):
    """Support of a mixture: the values in the support of at least one component.

    torch's ``MixtureSameFamilyConstraint`` asks for all of them, so a mixture of laws with
    per-component bounds (``Uniform(low, high)``, ``Binomial``) rejects its own draws.
    """

    def per_component(self, value: Tensor) -> Tensor:
        """``(..., K)``, or ``(..., 1)`` for shared bounds: ``value`` in each support."""
        if value.dim() < self.event_dim:
            raise ValueError(f"Expected value.dim() >= {self.event_dim} but got {value.dim()}")
        return self.base_constraint.check(value.unsqueeze(-1 - self.event_dim))

    def check(self, value: Tensor) -> Tensor:
        return self.per_component(value).any(-1)


def _same_bounds(first: tuple[_Bound, _Bound], second: tuple[_Bound, _Bound]) -> bool:
    def equal(a: _Bound, b: _Bound) -> bool:
        if isinstance(a, Tensor) or isinstance(b, Tensor):
            a, b = torch.as_tensor(a), torch.as_tensor(b)
            return a.shape == b.shape and bool((a == b).all())
        return float(a) == float(b)

    return all(equal(a, b) for a, b in zip(first, second, strict=True))


@contextlib.contextmanager
def _unvalidated(dist: td.Distribution) -> Iterator[None]:
    """Switch off value checks of ``dist`` and its base laws (values are already screened, and
    e.g. torch's Gumbel rejects its own CDF's rounding to 1)."""
    chain: list[Any] = [dist]
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
    """Per-coordinate ``log p``, ``F``, ``log F``, ``log(1-F)``; total outside the support.

    Support bounds may be numbers or tensors broadcasting with the coordinates (``Binomial``,
    ``Uniform(low, high)`` with tensor bounds).
    """

    def __init__(self, dist: td.Distribution) -> None:
        self.inner, self.folded = _coordinates(dist)
        self.low, self.high = _support_bounds(self.inner.support)

    @property
    def _whole_line(self) -> bool:
        bounded = (self.low, self.high)
        return not any(isinstance(b, Tensor) for b in bounded) and bounded == (-math.inf, math.inf)

    def _safe(self, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``value`` with points outside the support moved inside, and the masks below/above."""
        low = torch.as_tensor(self.low, dtype=value.dtype, device=value.device)
        high = torch.as_tensor(self.high, dtype=value.dtype, device=value.device)
        below, above = value <= low, value >= high
        finite_low, finite_high = low.isfinite(), high.isfinite()
        inside = torch.where(
            finite_low & finite_high,
            (low + high) / 2,
            torch.where(finite_low, low + 1, torch.where(finite_high, high - 1, 0.0)),
        )
        return torch.where(below | above, inside.to(value.dtype), value), below, above

    def log_prob(self, value: Tensor) -> Tensor:
        if self._whole_line:
            with _unvalidated(self.inner):
                return self.inner.log_prob(value)
        safe, below, above = self._safe(value)
        with _unvalidated(self.inner):
            log_prob = self.inner.log_prob(safe)
        return torch.where(below | above, -math.inf, log_prob)

    def cdf(self, value: Tensor) -> Tensor:
        if self._whole_line:
            with _unvalidated(self.inner):
                return self.inner.cdf(value)
        safe, below, above = self._safe(value)
        with _unvalidated(self.inner):
            out = torch.where(below, 0.0, self.inner.cdf(safe))
        return torch.where(above, 1.0, out)

    def pieces(self, value: Tensor, score: bool) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """``(log p, F, 1 - F, ∂log p/∂z)`` per coordinate.

        ``log p`` and ``F`` carry the parameters' graph; the survival and the score (computed
        only if ``score``) are detached. Normal laws in closed form, with an exact survival.
        """
        inner = self.inner
        if self._whole_line and isinstance(inner, td.Normal):
            standard = (value - inner.loc) / inner.scale
            log_density = -0.5 * standard.square() - inner.scale.log() - _HALF_LOG_TWO_PI
            fixed = standard.detach()
            gradient = -fixed / inner.scale.detach() if score else None
            return log_density, torch.special.ndtr(standard), torch.special.ndtr(-fixed), gradient
        if score:
            leaf = value.detach().clone().requires_grad_()
            with torch.enable_grad():
                log_density = self.log_prob(leaf)
                (gradient,) = torch.autograd.grad(log_density.sum(), leaf, retain_graph=True)
        else:
            log_density, gradient = self.log_prob(value), None
        cdf = self.cdf(value)
        return log_density, cdf, (1 - cdf.detach()).clamp(0, 1), gradient


def _log_joint(log_weights: Tensor, log_density: Tensor) -> Tensor:
    """``log w_k + Σ_{j<d} log p_kj`` (``..., K, D``): one cumsum of ``[log w_k, log p_k0, …]``,
    so a ``-inf`` term never meets its own negative."""
    log_weights = log_weights.unsqueeze(-1)
    if log_density.shape[-1] == 1:
        return log_weights
    head = log_weights.expand(*log_density.shape[:-1], 1)
    return torch.cat([head, log_density[..., :-1]], dim=-1).cumsum(-1)


def _transform(
    logits: tuple[Tensor, Tensor],
    cdf: tuple[Tensor, Tensor],
    survival: Tensor,
    density: Tensor,
    finite: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Conditional CDFs ``u_d`` (``..., D``) as a differentiable surrogate, and for the Jacobian
    ``a_kd = π_kd (F_kd - u_d)`` (``..., K, D``) and the conditional densities ``q_d``.

    Inputs are ``(..., K, D)`` (torch's softmax over a short last dimension is 50x slower).
    Pairs are ``(value, graph)``: the value detached, the graph tensor carrying the derivative in
    the parameters (its value is irrelevant). ``logits`` is ``log w_k + Σ_{j<d} log p_kj``
    (:func:`_log_joint`), ``cdf`` is ``F_kd``; ``survival`` ``1 - F_kd`` and ``density``
    ``p_kd`` are values. With ``π_kd = softmax_k(logits)`` and ``Σ_k a_kd = 0``,
    ``∂u_d = Σ_k π_kd ∂F_kd + Σ_k a_kd ∂logits_kd``, linear in the graph tensors.
    ``F_kd - u_d`` is taken from CDFs below the conditional median and from survivals above it,
    so upper tails do not cancel. ``finite`` promises ``logits > -∞`` (else masked where π = 0).
    """
    posterior = torch.softmax(logits[0], dim=-2)
    fixed = cdf[0]
    below = (posterior * fixed).sum(-2, keepdim=True)
    above = (posterior * survival).sum(-2, keepdim=True)
    weighted_offset = posterior * torch.where(below <= above, fixed - below, above - survival)
    graph = logits[1] if finite else torch.where(posterior > 0, logits[1], 0.0)
    u = (posterior * cdf[1] + weighted_offset * graph).sum(-2)
    return u, weighted_offset, (posterior * density).sum(-2)


def _jacobian(weighted_offset: Tensor, score: Tensor | None, density: Tensor) -> Tensor:
    """``∂u/∂z`` of factorized components: ``∂u_d/∂z_j = Σ_k a_kd ∂log p_kj/∂z_j`` below the
    diagonal, ``q_d`` on it. The upper triangle is left as is: the solves never read it."""
    if score is None:
        return density.unsqueeze(-1)
    jacobian = weighted_offset.mT @ score
    jacobian.diagonal(dim1=-2, dim2=-1).copy_(density)
    return jacobian


def _factorized_transform(
    z: Tensor,
    log_weights: Tensor,
    pieces: Callable[[Tensor, bool], tuple[Tensor, Tensor, Tensor, Tensor | None]],
) -> tuple[Tensor, Tensor]:
    """``(u, ∂u/∂z)`` for factorized components; ``z`` is ``(..., D)``, ``log_weights``
    ``(..., K)``; ``pieces(x, score)`` maps ``x`` (``..., K, D``) to the per-component,
    per-coordinate ``(log p, F, 1 - F, ∂log p/∂z)`` (see :meth:`_Coordinatewise.pieces`).
    """
    num_components, dim = log_weights.shape[-1], z.shape[-1]
    x = z.unsqueeze(-2).expand(*z.shape[:-1], num_components, dim)
    log_density, cdf, survival, score = pieces(x, dim > 1)
    logits = _log_joint(log_weights, log_density)
    fixed = log_density.detach().exp()
    u, weighted_offset, density = _transform(
        (logits.detach(), logits), (cdf.detach(), cdf), survival, fixed
    )
    return u, _jacobian(weighted_offset, score, density)


def _normal_pieces(
    z: Tensor, log_weights: Tensor, loc: Tensor, scale: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Values (no graph) for diagonal Gaussians ``loc``, ``scale`` (``..., K, D``).

    With ``s = (z - μ)/σ`` returns ``(a, s/σ, P, q)``: ``a_kd = π_kd (F_kd - u_d)`` as in
    :func:`_transform`, the scores ``s/σ = -∂log p/∂z``,
    ``P_kd = π_kd p_kd`` and the conditional densities ``q_d = Σ_k P_kd``. The Jacobian
    ``∂u/∂z`` is ``q`` on the diagonal and ``-Σ_k a_kd s_kj/σ_kj`` below it. Few passes, most
    in place: at (4096, 10, 32) a new tensor costs more in page faults than its arithmetic.
    """
    inverse_scale = scale.reciprocal()
    standard = torch.addcmul(-loc * inverse_scale, z.unsqueeze(-2), inverse_scale)
    log_density = torch.addcmul(-(scale.log() + _HALF_LOG_TWO_PI), standard, standard, value=-0.5)
    # log w_k + Σ_{j<d} log p_kj: an exclusive cumsum, exact (no cumsum minus the term)
    logits = torch.nn.functional.pad(log_density[..., :-1], (1, 0))
    logits[..., 0] = log_weights
    posterior = torch.softmax(logits.cumsum_(-1), dim=-2)
    del logits
    weighted_density = log_density.exp_().mul_(posterior)
    cdf = torch.special.ndtr(standard)
    survival = standard.neg()
    survival = torch.special.ndtr(survival, out=survival)
    below = (posterior * cdf).sum(-2, keepdim=True)
    above = (posterior * survival).sum(-2, keepdim=True)
    # F - u from CDFs below the conditional median, from survivals above it (no cancellation)
    offset = torch.where(below <= above, cdf.sub_(below), torch.sub(above, survival, out=survival))
    del cdf, survival
    score = standard.mul_(inverse_scale)
    return offset.mul_(posterior), score, weighted_density, weighted_density.sum(-2)


def _normal_jacobian(weighted_offset: Tensor, score: Tensor, density: Tensor) -> Tensor:
    """``∂u/∂z`` from :func:`_normal_pieces`: ``-Σ_k a_kd s_kj/σ_kj`` below the diagonal,
    ``q_d`` on it (the upper triangle is left as is: the solves never read it)."""
    jacobian = (weighted_offset.mT @ score).neg_()
    jacobian.diagonal(dim1=-2, dim2=-1).copy_(density)
    return jacobian


# samples per chunk of the diagonal-Gaussian path: (chunk, K, D) temporaries stay in cache
_CHUNK_ELEMENTS = 1 << 18


def _chunks(z: Tensor, batch_ndim: int) -> list[Tensor]:
    """``z`` (``*S, *B, D``) split along its first sample dimension into cache-sized pieces."""
    if z.dim() - 1 - batch_ndim < 1:
        return [z]
    per_row = z[0].numel() * 16  # about K · D elements of temporaries per row, for K ≤ 16
    rows = max(1, _CHUNK_ELEMENTS // per_row)
    return list(z.split(rows))


class _NormalMixtureGradient(torch.autograd.Function):
    """``z`` in value with ``dz/dθ = -(∂u/∂z)⁻¹ ∂u/∂θ`` for diagonal-Gaussian components.

    The backward in closed form, from the pieces of :func:`_normal_pieces`: ``λ = J⁻ᵀ g`` (one
    batched triangular solve), ``R_kj = Σ_{d>j} a_kd λ_d`` (one cumsum), then
    with ``G_kj = λ_j P_kj - R_kj s_kj/σ_kj`` (summed over the batch):
    ``∂L/∂μ_kj = G_kj``, ``∂L/∂σ_kj = s_kj G_kj + R_kj/σ_kj``, ``∂L/∂log w_k = -Σ_d a_kd λ_d``.
    Forward and backward run over chunks of the samples (:func:`_chunks`).
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, log_weights: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
        pieces = [
            _normal_pieces(chunk, log_weights, loc, scale) for chunk in _chunks(z, loc.dim() - 2)
        ]
        ctx.save_for_backward(scale, *(t for chunk in pieces for t in chunk))
        ctx.shapes = (log_weights.shape, loc.shape)
        return z.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        scale, *saved = ctx.saved_tensors
        log_weights_shape, loc_shape = ctx.shapes
        grad_log_weights = torch.zeros(log_weights_shape, dtype=grad.dtype, device=grad.device)
        grad_loc = torch.zeros(loc_shape, dtype=grad.dtype, device=grad.device)
        weighted_score = torch.zeros_like(grad_loc)
        later_total = torch.zeros_like(grad_loc)
        grads = grad.split(saved[0].shape[0]) if len(saved) > 4 else [grad]
        for index, grad_chunk in enumerate(grads):
            weighted_offset, score, weighted_density, density = saved[4 * index : 4 * index + 4]
            if grad_chunk.shape[-1] > 1:
                jacobian = _normal_jacobian(weighted_offset, score, density)
                step = torch.linalg.solve_triangular(
                    jacobian.mT, grad_chunk.unsqueeze(-1), upper=True
                ).mT
            else:
                step = (grad_chunk / density).unsqueeze(-2)
            later = weighted_offset * step  # a_kd λ_d
            total = later.sum(-1, keepdim=True)
            # R_kj = Σ_{d>j} a_kd λ_d
            later = torch.sub(total, later.cumsum_(-1), out=later)
            grad_log_weights -= total.squeeze(-1).sum_to_size(log_weights_shape)
            direct = torch.mul(weighted_density, step).addcmul_(later, score, value=-1)
            grad_loc += direct.sum_to_size(loc_shape)
            weighted_score += direct.mul_(score).sum_to_size(loc_shape)
            later_total += later.sum_to_size(loc_shape)
        grad_scale = weighted_score.mul_(scale) + later_total / scale
        return None, grad_log_weights, grad_loc, grad_scale


def _gaussian_transform(
    z: Tensor, log_weights: Tensor, loc: Tensor, scale_tril: Tensor
) -> tuple[Tensor, Tensor]:
    """``(u, ∂u/∂z)`` for full-covariance Gaussian components ``N(loc_k, L_k L_kᵀ)``.

    ``z`` is ``(*S, *B, D)``, ``loc`` ``(*B, K, D)``, ``scale_tril`` ``(*B, K, D, D)``. With
    ``ε_k = L_k⁻¹(z - μ_k)`` the conditional of coordinate ``d`` is ``Φ(ε_kd)`` with density
    ``φ(ε_kd)/L_kdd``; ``∂ε_k/∂z = L_k⁻¹``, so ``∂u_d/∂z_i = Σ_k π_kd [φ(ε_kd) L_k⁻¹[d, i]
    - (F_kd - u_d) Σ_{j<d} ε_kj L_k⁻¹[j, i]]``.
    """
    batch_ndim = loc.dim() - 2
    sample_shape = z.shape[: z.dim() - 1 - batch_ndim]
    samples = sample_shape.numel()
    # the samples become right-hand sides of one solve per component: L is never broadcast
    columns = z.reshape(samples, *z.shape[len(sample_shape) :]).movedim(0, -1).unsqueeze(-3)
    eps = torch.linalg.solve_triangular(scale_tril, columns - loc.unsqueeze(-1), upper=False)
    eps = eps.movedim(-1, 0).reshape(*sample_shape, *eps.shape[:-1])
    log_scale = scale_tril.diagonal(dim1=-2, dim2=-1).log()
    log_density = -0.5 * eps.square() - log_scale - _HALF_LOG_TWO_PI
    e = eps.detach()
    logits = _log_joint(log_weights, log_density)
    u, weighted_offset, density = _transform(
        (logits.detach(), logits),
        (torch.special.ndtr(e), torch.special.ndtr(eps)),
        torch.special.ndtr(-e),
        log_density.detach().exp(),
        finite=True,
    )
    posterior = torch.softmax(logits.detach(), dim=-2)
    eye = torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)
    inverse = torch.linalg.solve_triangular(scale_tril.detach(), eye, upper=False)
    standard_density = posterior * torch.exp(-0.5 * e.square() - _HALF_LOG_TWO_PI)
    through_conditional = torch.einsum("...kd,...kdi->...di", standard_density, inverse)
    earlier_scores = e.unsqueeze(-1) * inverse
    earlier_scores = earlier_scores.cumsum(-2) - earlier_scores
    through_weights = torch.einsum("...kd,...kdi->...di", weighted_offset, earlier_scores)
    jacobian = through_conditional - through_weights
    jacobian.diagonal(dim1=-2, dim2=-1).copy_(density)
    return u, jacobian


def _implicit_solve(z: Tensor, u: Tensor, jacobian: Tensor) -> Tensor:
    """``z`` in value with gradient ``dz/dθ = -(∂u/∂z)⁻¹ ∂u/∂θ`` (``jacobian`` lower triangular).

    Backward is one more batched triangular solve; no loop over coordinates.
    """
    change = gradient_only(u).unsqueeze(-1)
    jacobian = jacobian.detach()
    if jacobian.shape[-1] == 1:
        step = change / jacobian
    else:
        step = torch.linalg.solve_triangular(jacobian, change, upper=False)
    return z.detach() - step.squeeze(-1)


def _is_gaussian(
    dist: td.Distribution,
) -> TypeGuard[td.MultivariateNormal | td.LowRankMultivariateNormal]:
    return isinstance(dist, (td.MultivariateNormal, td.LowRankMultivariateNormal))


def _reparameterizable(dist: td.Distribution) -> bool:
    """Whether the distributional transform of ``dist`` is implemented: full-covariance
    Gaussians, and continuous univariate (or ``Independent`` of univariate) laws with a cdf."""
    if _is_gaussian(dist):
        return True
    try:
        inner, _ = _coordinates(dist)
    except ValueError:
        return False
    support = cast(constraints.Constraint, inner.support)
    return not support.is_discrete and type(inner).cdf is not td.Distribution.cdf


class MixtureSameFamily(PyroCompatible, td.MixtureSameFamily):
    """Mixture of one family (``torch.distributions.MixtureSameFamily``) with ``rsample``.

    Gradient path: ``dz/dθ = -(∂u/∂z)⁻¹ ∂u/∂θ`` through the distributional transform
    ``u_d = Σ_k π_k^{(d)} F_kd(z_d | z_<d)``, one batched triangular solve (Figurnov, Mohamed &
    Mnih, 2018, Sec. 3.3). ``rsample`` supports univariate components, ``Independent`` of
    univariate ones with a differentiable ``cdf`` (e.g. diagonal Gaussians), and
    ``MultivariateNormal`` / ``LowRankMultivariateNormal`` components (Gaussian conditionals).
    Every other component torch accepts (e.g. ``Dirichlet``) constructs, samples and scores as in
    torch; its ``rsample`` raises ``NotImplementedError`` and ``has_rsample`` is ``False``.
    Unlike torch, an unbatched ``Categorical`` broadcasts against batched components.

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

    def __init__(
        self,
        mixture_distribution: td.Categorical,
        component_distribution: td.Distribution,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(mixture_distribution, component_distribution, validate_args)
        mixture_batch = self._mixture_distribution.batch_shape
        component_batch = self._component_distribution.batch_shape
        batch_shape = torch.broadcast_shapes(mixture_batch, component_batch[:-1])
        if mixture_batch != batch_shape:
            self._mixture_distribution = self._mixture_distribution.expand(batch_shape)
        if component_batch[:-1] != batch_shape:
            self._component_distribution = self._component_distribution.expand(
                batch_shape + component_batch[-1:]
            )
        self._batch_shape = batch_shape

    @property
    def has_rsample(self) -> bool:  # type: ignore[override]
        return _reparameterizable(self._component_distribution)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(MixtureSameFamily, _instance)
        return super().expand(batch_shape, _instance=new)

    def _normal_coordinates(self) -> td.Normal | None:
        """The coordinate law when the components are (``Independent``) Normals."""
        if not _reparameterizable(self._component_distribution):
            return None
        if _is_gaussian(self._component_distribution):
            return None
        inner, _ = _coordinates(self._component_distribution)
        return inner if isinstance(inner, td.Normal) else None

    @constraints.dependent_property
    def support(self) -> _InAnyComponent:  # type: ignore[override]
        return _InAnyComponent(self._component_distribution.support)

    def sample(self, sample_shape: SampleShape = ()) -> Tensor:
        sample_shape = torch.Size(sample_shape)
        shape = self._extended_shape(sample_shape)
        logits = self.mixture_distribution.logits
        if shape.numel() == 0:
            return torch.empty(shape, dtype=logits.dtype, device=logits.device)
        normal = self._normal_coordinates()
        if normal is None:
            return super().sample(sample_shape)
        # Normal components: draw the index, then only the chosen component's coordinates
        # (torch draws every component and keeps one: K times the noise)
        with torch.no_grad():
            index = self.mixture_distribution.sample(sample_shape)
            dim, event = len(sample_shape) + len(self.batch_shape), self.event_shape
            index = index.reshape(index.shape + (1,) * (1 + len(event)))
            index = index.expand(index.shape[: dim + 1] + event)
            full = sample_shape + normal.batch_shape
            loc, scale = (
                t.expand(full).gather(dim, index).squeeze(dim) for t in (normal.loc, normal.scale)
            )
            return torch.normal(loc, scale)

    def log_prob(self, value: Tensor) -> Tensor:
        """``log Σ_k w_k p_k(value)``, with ``p_k = 0`` outside component ``k``'s support.

        The value is validated against the mixture's support (:class:`_InAnyComponent`), not
        against each component's: a draw of one component lies outside another's support.
        """
        if self._validate_args:
            self._validate_sample(value)
        shape = torch.broadcast_shapes(
            value.shape[: value.dim() - len(self.event_shape)], self.batch_shape
        )
        if shape.numel() == 0:  # torch's Independent.log_prob cannot reshape an empty batch
            return torch.empty(shape, dtype=value.dtype, device=value.device)
        work = working_dtype(value.dtype)
        components = self.component_distribution
        with _unvalidated(components):
            log_prob = components.log_prob(self._pad(value.to(work)))
        support = self.support
        if _has_tensor_bounds(support.base_constraint):
            inside = support.per_component(value.to(work))
            log_prob = torch.where(inside, log_prob, -math.inf)
        log_weights = torch.log_softmax(self.mixture_distribution.logits.to(work), dim=-1)
        return torch.logsumexp(log_prob + log_weights, dim=-1).to(value.dtype)

    def cdf(self, value: Tensor) -> Tensor:
        """``Σ_k w_k F_k(value)``, with ``F_k`` 0 below and 1 above component ``k``'s support."""
        if self._validate_args:
            self._validate_sample(value)
        components = self.component_distribution
        padded = self._pad(value)
        if components.event_shape:  # torch's path (no multivariate cdf in torch)
            with _unvalidated(components):
                cdf = components.cdf(padded)
        else:
            cdf = _Coordinatewise(components).cdf(padded)
        return (cdf * self.mixture_distribution.probs).sum(-1)

    def rsample(self, sample_shape: SampleShape = ()) -> Tensor:
        components = self.component_distribution
        if not self.has_rsample:
            raise NotImplementedError(
                f"MixtureSameFamily.rsample is not implemented for {type(components).__name__} "
                "components (supported: univariate or Independent laws with a differentiable cdf, "
                "MultivariateNormal, LowRankMultivariateNormal); use sample() for draws "
                "without gradients"
            )
        z = self.sample(sample_shape)
        if z.numel() == 0 or not needs_grad(*_tensors_of(self)):
            return z
        work = working_dtype(z.dtype)
        log_weights = torch.log_softmax(self.mixture_distribution.logits.to(work), dim=-1)
        event_ndim = len(self.event_shape)
        flat = z.to(work).reshape(*z.shape[: z.dim() - event_ndim], self.event_shape.numel())
        if _is_gaussian(components):
            loc, scale_tril = components.loc.to(work), components.scale_tril.to(work)
            u, jacobian = _gaussian_transform(flat, log_weights, loc, scale_tril)
            return _implicit_solve(flat, u, jacobian).reshape(z.shape).to(z.dtype)
        coordinates = _Coordinatewise(components)
        inner = coordinates.inner
        if isinstance(inner, td.Normal) and coordinates._whole_line:
            shape = components.batch_shape + (flat.shape[-1],)
            loc, scale = (
                t.expand(inner.batch_shape).reshape(shape).to(work)
                for t in (inner.loc, inner.scale)
            )
            flat = _NormalMixtureGradient.apply(flat, log_weights, loc, scale)
            return flat.reshape(z.shape).to(z.dtype)
        u, jacobian = self._factorized_transform(flat, log_weights, coordinates)
        return _implicit_solve(flat, u, jacobian).reshape(z.shape).to(z.dtype)

    def _factorized_transform(
        self, flat: Tensor, log_weights: Tensor, coordinates: _Coordinatewise
    ) -> tuple[Tensor, Tensor]:
        event_shape = self.event_shape

        def pieces(x: Tensor, score: bool) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
            # (..., K, D) -> the component batch (..., K, *event) -> (..., K, D)
            out = coordinates.pieces(x.reshape(*x.shape[:-1], *event_shape), score)
            reshaped = tuple(None if t is None else t.reshape(x.shape) for t in out)
            return cast("tuple[Tensor, Tensor, Tensor, Tensor | None]", reshaped)

        return _factorized_transform(flat, log_weights, pieces)


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
        assert logits is not None  # set above when weights and logits are both None
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
        given: dict[str, constraints.Constraint] = {"logits": constraints.real_vector}
        if "weights" in self.__dict__:
            given["weights"] = constraints.simplex
        return given

    @property
    def support(self) -> constraints.Constraint:
        first = _support_bounds(self.components[0].support)
        if all(_same_bounds(first, _support_bounds(c.support)) for c in self.components):
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

    def sample(self, sample_shape: SampleShape = ()) -> Tensor:
        sample_shape = torch.Size(sample_shape)
        with torch.no_grad():
            samples = torch.stack([c.sample(sample_shape) for c in self.components], -1)
            if samples.numel() == 0:
                return samples.sum(-1)
            logits = self.logits.expand(self.batch_shape + self.logits.shape[-1:])
            index = td.Categorical(logits=logits, validate_args=False).sample(sample_shape)
            index = index.reshape(index.shape + (1,) * len(self.event_shape) + (1,))
            index = index.expand(samples.shape[:-1] + (1,))
            return samples.gather(-1, index).squeeze(-1)

    def rsample(self, sample_shape: SampleShape = ()) -> Tensor:
        z = self.sample(sample_shape)
        parameters = (self.logits, *(t for c in self.components for t in _tensors_of(c)))
        if z.numel() == 0 or not needs_grad(*parameters):
            return z
        event_shape = self.event_shape
        work = working_dtype(z.dtype)
        flat = z.to(work).reshape(*z.shape[: z.dim() - len(event_shape)], event_shape.numel())

        def pieces(x: Tensor, score: bool) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
            per = []
            for k, wise in enumerate(self._coordinatewise):
                xk = x[..., k, :].reshape(x.shape[:-2] + event_shape)
                per.append(
                    [
                        t if t is None else t.reshape(x.shape[:-2] + x.shape[-1:])
                        for t in wise.pieces(xk, score)
                    ]
                )
            stacked = tuple(
                None if column[0] is None else torch.stack(column, -2)
                for column in zip(*per, strict=True)
            )
            return cast("tuple[Tensor, Tensor, Tensor, Tensor | None]", stacked)

        u, jacobian = _factorized_transform(flat, self.logits.to(work), pieces)
        return _implicit_solve(flat, u, jacobian).reshape(z.shape).to(z.dtype)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        work = working_dtype(value.dtype)
        log_prob = self._stacked(value.to(work), "log_prob")
        return torch.logsumexp(self.logits.to(work) + log_prob, -1).to(value.dtype)

    def cdf(self, value: Tensor) -> Tensor:
        """Mixture CDF ``Σ_k w_k F_k(z)`` (univariate mixtures; for events, the joint CDF)."""
        if self._validate_args:
            self._validate_sample(value)
        return (self.probs * self._stacked(value, "cdf")).sum(-1)
