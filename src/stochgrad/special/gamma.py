"""Derivative of a Gamma sample with respect to its concentration.

For ``x ~ Gamma(a, 1)`` with CDF ``P(a, x)`` (the regularized lower incomplete gamma function),
implicit differentiation gives ``dx/da = -(dP/da)(a, x) / p(x)`` with

    dP/da (a, x) = ∫_0^x (log t - ψ(a)) t^(a-1) e^(-t) / Γ(a) dt = -∫_x^∞ (same) dt.

Dividing by ``p(x) = x^(a-1) e^(-x) / Γ(a)`` cancels ``Γ(a)``. Substituting ``t = x e^(∓s)``
turns both tails into ``x ∫_0^∞ (log x - ψ(a) ∓ s) exp(φ(s)) ds`` with ``φ(0) = 0`` concave and
decreasing (use the lower tail when ``x <= a``, the upper one otherwise):

    lower: φ(s) = -a s + x (1 - e^(-s)),    upper: φ(s) = a s - x (e^s - 1).

Both are evaluated as ``φ(s) = -|x - a| s - x g(∓s)`` with ``g(u) = e^u - 1 - u`` computed
without cancellation (:func:`~stochgrad.special.elementary.expm1_excess`): the two terms of
the forms above are each ~√(a C) near the mode, and their difference cost ``ε √(a C)`` of the
exponent (float32 lost every digit at a = 1e15, float64 kept 7 at a = 1e20).

The integral is evaluated by Gauss-Legendre quadrature on ``[0, S]`` where ``φ(S) = -C`` (Newton
iterations from an upper bound, which stay to the right of the root because ``φ`` is concave);
beyond ``s = C`` the lower integrand is ``exp(x - a s)`` to working precision and is integrated
in closed form. Everything is elementwise torch ops: no per-element loop, no convergence test,
so it vectorizes on CPU/CUDA and traces under ``torch.func``/``torch.compile``. On CPU in eager
mode the same arithmetic runs as one fused compiled kernel (``_native.py``).

Example::

    >>> from stochgrad.special.gamma import standard_gamma_grad
    >>> a = torch.tensor([0.5, 5.0], dtype=torch.float64)
    >>> x = torch.tensor([0.3, 4.0], dtype=torch.float64)
    >>> standard_gamma_grad(a, x)  # torch's approximation gives 1.0098, 0.9228
    tensor([1.0098, 0.9227], dtype=torch.float64)
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from stochgrad.special import _native
from stochgrad.special._quadrature import (
    blockwise,
    gauss_legendre,
    kernel_tiers,
    tier_rule,
    traced,
    working_dtype,
)
from stochgrad.special.elementary import expm1_excess

__all__ = ["gammainc", "standard_gamma_grad", "standard_gamma_log_grad"]

_NEWTON_STEPS = 1

# In eager mode the torch path forms g(u) = e^u - 1 - u as expm1(u) - u (2 passes a node instead
# of ~25) when every element of a block has x·S below this: the exponent's rounding is then at
# most ~ε·x·S (4.5e-13 in float64, 1.5e-5 in float32, the size of the rules' own errors).
_DIRECT_LIMIT = {torch.float64: 2048.0, torch.float32: 256.0}

# (nodes, weights, cut-off C): integrands exp(φ) are cut where φ = -C. Sized against a 40-digit
# mpmath oracle on 856 points (43 concentrations from 1e-3 to 1e4, 21 quantiles from 1e-7 to
# 1 - 1e-7). a ~ 1 (near-exponential decay of the integrand over [0, C]) needs the most nodes; as
# a grows the integrand turns near-Gaussian and fewer suffice. Each tier (lowest a it serves,
# nodes) and its maximum relative error of dx/da over the a it serves:
#   float64: a >= 0: 32 nodes, 2.0e-12;  a >= 3: 26 nodes, 2.6e-12;  a >= 4.5: 24 nodes, 1.7e-12;
#            a >= 30: 20 nodes, 9e-13
#   float32: a >= 0: 11 nodes, 1.4e-5;   a >= 3: 10 nodes, 8e-6;     a >= 10: 9 nodes, 7e-6
# (Denser scans next to the mode, quantiles 0.3-0.7, found 24 nodes at 1.6e-11 for a in [3, 4)
# and 2.9e-12 at 4.25, hence the 26-node tier below 4.5; 2.8e-5 in float32 at a = 1.32.) In
# eager mode a block (the fused kernel: a group of SIMD lanes) uses the tier of its smallest a;
# traced code always uses the first. Shorter rules for larger a do not hold the accuracy: next
# to the mode the integrand is ~exp(-C t²) on [0, 1] whatever a is (float64 over a in [30, 1e20]
# against a 96-node rule: 20 nodes 1.2e-12, 18 nodes 1.1e-10, 16 nodes 7.7e-10; 18 nodes with
# C = 30: 1.6e-11).
_TIERS = {
    torch.float64: ((0.0, (*gauss_legendre(32), 34.0)), (3.0, (*gauss_legendre(26), 34.0)),
                    (4.5, (*gauss_legendre(24), 34.0)), (30.0, (*gauss_legendre(20), 34.0))),
    torch.float32: ((0.0, (*gauss_legendre(11), 15.0)), (3.0, (*gauss_legendre(10), 15.0)),
                    (10.0, (*gauss_legendre(9), 15.0))),
}  # fmt: skip


def _smallest(a: Tensor, log_x: Tensor) -> float | None:
    """The block's smallest concentration in eager mode (None when traced or empty).

    A NaN anywhere gives 0, i.e. the rules for all ``a``, so that it cannot switch the other
    elements of its block to the large-``a`` shortcuts.
    """
    if traced(a, log_x) or a.numel() == 0:
        return None
    smallest = a.min().item()
    return smallest if smallest == smallest else 0.0


def _rule(a: Tensor, smallest: float | None) -> tuple[tuple[float, ...], tuple[float, ...], float]:
    """The quadrature rule for a block (float16/bfloat16 use float32's)."""
    return tier_rule(_TIERS.get(a.dtype, _TIERS[torch.float32]), smallest)


def standard_gamma_log_grad(concentration: Tensor, log_sample: Tensor) -> Tensor:
    """``d log x / da`` for ``x ~ Gamma(a, 1)`` given ``log x`` (exact implicit derivative).

    Works in log space, so it stays finite where ``x`` itself underflows (``a`` below ~0.01).
    The result is a value, not differentiable in the inputs (no second derivatives).
    float16/bfloat16 are computed in float32; float32 under ``torch.compile`` in float64, because
    Inductor's vectorized float32 ``expm1`` is ``exp(x) - 1`` (pytorch/pytorch#189803), which
    cost 3.5e-4 relative at a = 1e4.
    """
    a, log_x = (t.detach() for t in torch.broadcast_tensors(concentration, log_sample))
    dtype = a.dtype
    work = _work_dtype(dtype)
    if work != dtype:
        a, log_x = a.to(work), log_x.to(work)
    if _native.usable(a, log_x):
        rules = _native_rules(work)
        return torch.ops.stochgrad_special.gamma_log_grad(a, log_x.to(work), *rules).to(dtype)
    return blockwise(_log_grad_block, a, log_x)[0].to(dtype)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    work = working_dtype(dtype)
    if work == torch.float32 and torch.compiler.is_compiling():
        return torch.float64
    return work


@functools.cache
def _native_rules(
    dtype: torch.dtype,
) -> tuple[list[float], list[Tensor], list[Tensor], list[float]]:
    """``_TIERS[dtype]`` as the fused kernel takes it (it picks a tier per group of SIMD lanes)."""
    return kernel_tiers(_TIERS[dtype])


def _log_grad_block(a: Tensor, log_x: Tensor, sample: Tensor | None = None) -> tuple[Tensor]:
    # Masks are kept as ±1/0-1 floats: on CPU, comparisons, bool tensors and torch.where cost
    # 3-6x an arithmetic pass. ``sample`` (x itself, in a's dtype) is given when x is known more
    # precisely than exp(log_x) (a float32 log x loses ~|log x| ulps of x).
    smallest = _smallest(a, log_x)
    nodes, weights, cutoff = _rule(a, smallest)
    inplace = smallest is not None
    x = log_x.exp() if sample is None else sample
    diff = x - a
    sign = torch.copysign(a.new_ones(()), diff)  # -1 on the lower tail (x < a), +1 on the upper
    lower = (1 - sign) / 2  # 1 on the lower tail, 0 on the upper
    slope = diff.abs()  # -φ'(0)
    tiny = torch.finfo(a.dtype).tiny
    x_safe = x.clamp_min(tiny)
    # Upper bounds on the root of φ(S) = -C: lower tail φ <= -(a-x)s and φ <= x - a s;
    # upper tail φ <= -(x-a)s - x s²/2 and, for s <= that root R, φ <= a R - x (e^s - 1).
    s_lower = torch.minimum(cutoff / slope.clamp_min(tiny), (cutoff + x) / a)
    # Lower tail, s <= 1: 1 - e^(-s) <= s - s²/2 + s³/6 <= s - s²/3, so φ <= -(a-x)s - x s²/3;
    # its root bounds S whenever it is <= 1 (tight where x ≈ a, the Gaussian regime). Where it is
    # > 1 it is pushed beyond s_lower (by (root3 - 1)·1e30) so that the minimum ignores it.
    # Both roots in the rationalized form 2C / (slope + √(slope² + k C x)), with hypot: no
    # cancellation when slope² >> C x, and no overflow of slope² for huge x.
    root3 = 2 * cutoff / (slope + torch.hypot(slope, torch.sqrt((4 / 3) * cutoff * x)))
    s_lower = torch.minimum(s_lower, root3 + (root3 - 1).clamp_min(0) * 1e30)
    root = 2 * cutoff / (slope + torch.hypot(slope, torch.sqrt(2 * cutoff * x)))
    s_upper = torch.minimum(root, torch.log1p((cutoff + a * root) / x_safe))
    end = torch.lerp(s_upper, s_lower, lower)  # both finite: exactly one of them
    for _ in range(_NEWTON_STEPS):
        signed_end = sign * end
        phi = -slope * end - x * expm1_excess(signed_end)
        dphi = -(slope + x * (sign * torch.expm1(signed_end)))  # sign·expm1(sign·s) >= 0
        end = end - (phi + cutoff) / dphi
    panel = end.clamp(max=cutoff)
    # At s = t·panel the exponent is -t·(slope·panel) - x·g(t·(sign·panel)); the first moment
    # accumulates t·term and is scaled by panel once at the end.
    signed_panel = sign * panel
    minus_slope_panel = -slope * panel
    if inplace:  # the same arithmetic as the else branch, 8 passes a node, into one buffer
        minus_x = -x
        limit = _DIRECT_LIMIT.get(a.dtype, _DIRECT_LIMIT[torch.float32])
        direct = not bool((x * panel > limit).any())
        term, u = torch.empty_like(x), torch.empty_like(x)  # fresh tensors cost more per node
        moment0, moment1 = torch.empty_like(x), torch.empty_like(x)
        for i, (node, weight) in enumerate(zip(nodes, weights, strict=True)):
            torch.mul(signed_panel, node, out=u)
            if direct:
                torch.expm1(u, out=term).sub_(u)
            else:
                term.copy_(expm1_excess(u))
            term.mul_(minus_x).add_(minus_slope_panel, alpha=node).exp_()
            if i == 0:
                torch.mul(term, weight, out=moment0)
                torch.mul(term, weight * node, out=moment1)
            else:
                moment0.add_(term, alpha=weight)
                moment1.add_(term, alpha=weight * node)
    else:
        moment0 = torch.zeros_like(x)
        moment1 = torch.zeros_like(x)
        for node, weight in zip(nodes, weights, strict=True):
            term = torch.exp(node * minus_slope_panel - x * expm1_excess(node * signed_panel))
            moment0 = moment0 + weight * term
            moment1 = moment1 + (weight * node) * term
    moment0 = moment0 * panel
    moment1 = moment1 * panel * panel
    # Closed-form tail of the lower integral beyond s = C: ∫ (1, s) exp(x - a s) ds. In eager mode
    # it is skipped when no element has one (the common case for a > 1).
    beyond = (end - cutoff).clamp_min(0) * lower  # > 0 exactly where a lower tail is cut
    if not inplace or bool((beyond > 0).any()):  # (a NaN must not hide the others' tails)
        tail = torch.where(beyond > 0, torch.exp(x - a * cutoff) / a, torch.zeros_like(x))
        moment0 = moment0 + tail
        moment1 = moment1 + tail * (cutoff + 1 / a)
    centred = _centred_log(a, log_x, diff, smallest)
    # lower tail: moment1 - centred·moment0; upper tail: moment1 + centred·moment0.
    return (torch.addcmul(moment1, sign * centred, moment0),)


# log a - ψ(a) = 1/(2a) + Σ B_2k / (2k a^2k): with the terms to a^-14, the error at a >= 10 is
# below the a^-16 term, 4e-17 (1e-15 relative to log a - ψ(a) ≈ 1/(2a)).
_STIRLING = (1 / 12, -1 / 120, 1 / 252, -1 / 240, 1 / 132, -691 / 32760, 1 / 12)


def _log_minus_digamma(a: Tensor) -> Tensor:
    """``log a - ψ(a)`` for ``a >= 10`` by its asymptotic series (relative error <= 2e-15)."""
    inv = a.reciprocal()
    inv2 = inv * inv
    series = torch.full_like(a, _STIRLING[-1])
    for coefficient in reversed(_STIRLING[:-1]):
        series.mul_(inv2).add_(coefficient)
    return series.mul_(inv2).add_(inv, alpha=0.5)


def _centred_log(a: Tensor, log_x: Tensor, diff: Tensor, smallest: float | None) -> Tensor:
    """``log x - ψ(a)``, which cancels near the mode ``x ≈ a``; ``diff = x - a``.

    For ``a >= 10``: ``log(x/a) + (log a - ψ(a))``, with ``log(x/a) = log1p((x - a)/a)`` near
    the mode (``x - a`` exact there; not ``x/a - 1``, whose rounding is the whole of
    ``(x - a)/a`` when x is a few ulps from a) and ``log x - log a`` away from it; in working
    precision when every ``a >= 10`` (eager mode). Otherwise ``log x - ψ(a)`` in float64 (keeps
    float32 accurate), and the first form in float64 for the elements with ``a >= 10`` (the
    difference of two numbers ~log a loses ε log(a) √a of the result: 2e-5 at a = 1e20).
    """
    if smallest is not None and smallest >= 10:
        return _centred_log_large(a, log_x.to(a.dtype), diff)
    a64 = a.double()
    centred = log_x.double() - torch.digamma(a64)
    if smallest is None or bool((a >= 10).any()):
        large = _centred_log_large(a64.clamp_min(10), log_x.double(), diff.double())
        centred = torch.where(a64 >= 10, large, centred)
    return centred.to(a.dtype)


def _centred_log_large(a: Tensor, log_x: Tensor, diff: Tensor) -> Tensor:
    ratio = diff / a
    near = torch.log1p(ratio.clamp(-0.5, 1.0))
    far = log_x - a.log()
    # |log(x/a)| >= 0.4 outside [a/2, 2a], so the direct difference loses little there; the
    # 0/1 weight is built by arithmetic (both branches are finite, so lerp picks one exactly).
    outside = ((ratio - 1).clamp_min(0) + (-0.5 - ratio).clamp_min(0)).sign()
    return torch.lerp(near, far, outside).add_(_log_minus_digamma(a))


def standard_gamma_grad(concentration: Tensor, sample: Tensor) -> Tensor:
    """``dx/da = -(∂P(a, x)/∂a) / p(x)`` for ``x ~ Gamma(a, 1)``; 0 where ``x`` underflowed to 0.

    NaN (and negative) ``x`` give NaN; subnormal ``x`` keep their exact logarithm.
    """
    a, sample = (t.detach() for t in torch.broadcast_tensors(concentration, sample))
    if a.dtype == sample.dtype and _native.usable(a, sample):  # log, kernel and product fused
        rules = _native_rules(a.dtype)
        return torch.ops.stochgrad_special.gamma_log_grad(a, sample, *rules, from_sample=True)
    # The torch path takes x as it is (exp of a rounded log x would move it by ~|log x| ulps).
    dtype = torch.promote_types(a.dtype, sample.dtype)
    work = _work_dtype(dtype)
    a_work, x_work = a.to(work), sample.to(work)
    log_x = x_work.log()
    log_grad = blockwise(_log_grad_block, a_work, log_x, x_work)[0].to(dtype)
    return torch.where(sample == 0, torch.zeros_like(log_grad), sample * log_grad)


def gammainc(concentration: Tensor, value: Tensor) -> Tensor:
    """Regularized lower incomplete gamma ``P(a, x)``, differentiable in ``a`` and ``x``.

    The value is :func:`torch.special.gammainc`; gradients are ``∂P/∂x = p(x)`` and
    ``∂P/∂a = -p(x) dx/da`` with ``dx/da`` from :func:`standard_gamma_grad`.
    """
    a, x = torch.broadcast_tensors(concentration, value)
    a_, x_ = a.detach(), x.detach()
    out = torch.special.gammainc(a_, x_)
    if not (a.requires_grad or x.requires_grad):
        return out
    positive = x_ > 0
    xs = torch.where(positive, x_, torch.ones_like(x_))
    density = torch.exp((a_ - 1) * torch.log(xs) - xs - torch.lgamma(a_))
    density = torch.where(positive, density, torch.zeros_like(density))
    out = out + (x - x_) * density
    if a.requires_grad:
        out = out - (a - a_) * standard_gamma_grad(a_, torch.where(positive, x_, 0 * x_)) * density
    return out
