r"""Gamma variates: Marsaglia & Tsang's rejection sampler, vectorized, on torch's random words.

For ``a >= 1``, with ``d = a - 1/3`` and ``c = 1/(3√d)``, propose ``x = d (1 + t)^3`` with
``t = c n``, ``n ~ N(0, 1)``, ``t > -1``, and accept it with probability
``exp(n²/2 + d (1 - v + log v))``, ``v = (1 + t)^3`` (Marsaglia & Tsang, "A simple method for
generating gamma variables", ACM TOMS 2000). With a uniform ``U``, accept if
``log U < 3 d R(t)``, ``R(t) = log1p(t) - t + t²/2 - t³/3``. That is the same bound
(``n²/2 = 4.5 d t²`` up to the rounding of ``c``) written without the cancellation of
``1 - v + log v``, which lost every digit at ``a = 1e30``. A squeeze decides most proposals
without a logarithm (:func:`_squeeze_accepts`). Then
``x = d (1 + t)^3`` (see :func:`_linear_draw`) and ``log x = log d + 3 log1p(t)``. For
``a < 1`` the draw is boosted: ``Gamma(a) = Gamma(a + 1) U^(1/a)``, in log space
``log Gamma(a + 1) + log(U) / a``, which never underflows. Everything is computed in float64,
for float32 inputs too, so large-``a`` draws keep their digits.

**Randomness.** Only torch's generator is used: ``int64`` random words (63 random bits each,
``Tensor.random_``) drawn serially. So draws follow ``torch.manual_seed``,
``torch.random.fork_rng`` and an explicit ``generator``, and do not depend on the thread count.
For each pair of elements (2i, 2i+1) of a round:

* word 0 gives the Box-Muller radius (bits 31-62) and angle (bits 0-30). The two normals
  ``r cos θ`` and ``r sin θ`` go to the two elements.
* word 1 gives the two acceptance uniforms (bits 31-62 and 0-30).
* In a round where some concentration is below 1, words 1 and 2 instead give one element each
  its boost uniform (bits 31-62) and its acceptance uniform (bits 0-30). That is 3 words a pair
  rather than 4, which saves 2 ms per 10^6 draws.

A uniform from ``k`` bits is ``(j + 1/2) 2^-k``, exact in float64. Where that resolution cuts a
tail it has 32 bits. The radius uniform is at least ``2^-33``, so radii above
``√(66 ln 2) = 6.76`` are never drawn: probability ``2^-33 ≈ 1.2e-10`` a pair. Each normal
therefore misses at most that much of its mass, mostly ``|n| > 6.76`` (1.3e-11). The boost's
``U`` is at least ``2^-33``, so ``log U >= -22.9`` cuts the lowest ``1.2e-10`` of
``log x``'s law (its far lower tail, e.g. ``log x < -22900`` at ``a = 1e-3``).

**Rounds.** A round draws words for the pending elements, then one fused pass does uniforms ->
normals -> proposal -> acceptance. The kernel draws the words itself, through the same
``Tensor.random_``, so that no torch op scans the concentrations: each would be a parallel
region, and waking threads costs milliseconds on a loaded machine. The pass writes the accepted
draws and returns the rejected positions, which the next round redraws with fresh words: exact
rejection sampling. A round rejects at most 4.9% of the proposals (at a = 1 and boosted
a -> 0; 0.6% at a = 5, 0.01% at a = 500). 10^6 draws therefore take 2-5 rounds. A NaN or
negative concentration gives NaN and ``inf`` gives ``inf``, both accepted at once. After 64
rounds the sampler raises, which cannot happen unless the kernel is broken.

**Where.** On eager CPU float32/float64 tensors the pass is the compiled kernel
``torch.ops.stochgrad_special.gamma_sample_`` (``csrc/kernels.cpp``). Without it
(``STOCHGRAD_NATIVE=0``, no compiler) :func:`_round` runs the same pass in torch ops on the same
words, so both give the same draws to a few ulps. float16/bfloat16 are sampled in float32. CUDA
tensors and traced code (``torch.compile``, ``torch.func``) keep ``torch._standard_gamma``:
its CUDA kernel is fine, and a data-dependent rejection loop would break the graph. So draws
under a given seed differ from ``torch.distributions.Gamma``'s on CPU.

Example::

    >>> from stochgrad.special import log_standard_gamma_sample, standard_gamma_sample
    >>> _ = torch.manual_seed(0)
    >>> x = standard_gamma_sample(torch.full((100000,), 5.0, dtype=torch.float64))
    >>> round(x.mean().item(), 1), round(x.var().item(), 1)  # a and a
    (5.0, 5.0)
    >>> log_standard_gamma_sample(torch.tensor([1e-30])).isfinite().item()  # x underflows
    True
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from stochgrad.special import _native
from stochgrad.special._quadrature import traced, working_dtype

__all__ = ["log_standard_gamma_sample", "standard_gamma_sample"]

_MAX_ROUNDS = 64
# R(t) by its series (to t^14, truncation below 1e-17 relative) where |t| < 2^-5; directly
# elsewhere, where the cancellation costs at most 4/|t|^3 ~ 2^17 ulps, i.e. an error of 1e-11
# in the acceptance probability.
_SERIES_LIMIT = 2.0**-5
_PRODUCT_BELOW = -0.25


def standard_gamma_sample(
    concentration: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """Draws ``x ~ Gamma(concentration, 1)``, elementwise, without gradient.

    For ``concentration < 1`` the draw ``Gamma(a + 1) U^(1/a)`` may underflow to 0. Use
    :func:`log_standard_gamma_sample` where that matters.

    Example::

        >>> x = standard_gamma_sample(torch.tensor([0.5, 5.0, 500.0]))
        >>> x.shape, bool((x > 0).all())
        (torch.Size([3]), True)
    """
    return _sample(concentration, log_space=False, generator=generator)


def log_standard_gamma_sample(
    concentration: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """Draws ``log x`` for ``x ~ Gamma(concentration, 1)``, elementwise, without gradient.

    ``log Gamma(a + 1) + log(U) / a``: finite where ``x`` itself underflows, for every
    ``concentration`` down to ~1e-300 (below that ``log(U) / a`` exceeds the float range: -inf).

    Example::

        >>> log_x = log_standard_gamma_sample(torch.tensor([1e-3, 1.0, 1e20]))
        >>> bool(log_x.isfinite().all())
        True
    """
    return _sample(concentration, log_space=True, generator=generator)


def _sample(concentration: Tensor, log_space: bool, generator: torch.Generator | None) -> Tensor:
    a = concentration.detach()
    if a.device.type != "cpu" or traced(a):
        return _torch_sampler(a, log_space, generator)
    flat = a.to(working_dtype(a.dtype)).reshape(-1).contiguous()
    out = torch.empty_like(flat)
    one_round = torch.ops.stochgrad_special.gamma_sample_ if _native.usable(flat) else _round
    index: Tensor | None = None
    count = flat.numel()
    with torch.no_grad():
        for _ in range(_MAX_ROUNDS):
            if count == 0:
                return out.reshape(a.shape).to(a.dtype)
            index = one_round(out, flat, index, generator, log_space)
            count = index.numel()
    raise RuntimeError(
        f"Gamma sampler: {count} draws still rejected after {_MAX_ROUNDS} rounds "
        f"(concentrations {flat[index][:5].tolist()}...); this is a bug, please report it"
    )


def _uniform(bits: Tensor, width: int) -> Tensor:
    return (bits.double() + 0.5) / 2.0**width


def _round(
    out: Tensor,
    concentration: Tensor,
    index: Tensor | None,
    generator: torch.Generator | None,
    log_space: bool,
) -> Tensor:
    """One round in torch ops: the twin of ``gamma_sample_`` in ``csrc/kernels.cpp``.

    Draws the words of the elements ``concentration[index]`` (3 a pair where some ``a`` is not
    ``>= 1``, else 2), writes the accepted draws to ``out[index]``, returns the rejected
    positions in order. About 4x slower than ``torch._standard_gamma`` (150-180 ms per 10^6
    draws, one thread); blocks of 2^12-2^16 elements were no faster.
    """
    # + 0.0: -0.0 is the concentration 0 (x = 0), not log(U) / -0.0 = +inf
    a = (concentration if index is None else concentration[index]).double() + 0.0
    count = a.numel()
    columns = 2 if bool(a.min() >= 1) else 3  # NaN gives 3, as in the kernel
    words = torch.empty(((count + 1) // 2, columns), dtype=torch.int64)
    words.random_(generator=generator)
    value, accept = _draws(a, words, log_space)
    if index is None:
        out.masked_scatter_(accept, value[accept].to(out.dtype))
        return (~accept).nonzero().squeeze(1)
    out[index[accept]] = value[accept].to(out.dtype)
    return index[~accept]


def _draws(a: Tensor, words: Tensor, log_space: bool) -> tuple[Tensor, Tensor]:
    """``(draw, accepted)`` of the float64 concentrations ``a`` from their words."""
    count = a.numel()
    radius = (-2.0 * _uniform(words[:, 0] >> 31, 32).log()).sqrt()
    angle = 2 * math.pi * _uniform(words[:, 0] & 0x7FFFFFFF, 31)
    normal = torch.stack([radius * angle.cos(), radius * angle.sin()], -1).reshape(-1)[:count]
    if words.shape[1] == 2:  # acceptance uniforms of 32 and 31 bits, (pairs, 2)
        high, low = _uniform(words[:, 1] >> 31, 32), _uniform(words[:, 1] & 0x7FFFFFFF, 31)
        u = torch.stack([high, low], -1)
    else:  # boost and acceptance uniforms of 32 and 31 bits, one word per element
        u = _uniform(words[:, 1:] & 0x7FFFFFFF, 31)
    u = u.reshape(-1)[:count]
    small = a < 1
    d = torch.where(small, a + 1, a) - 1.0 / 3.0
    c = 1.0 / (3.0 * d.sqrt())  # no overflow for any finite a, nor in 3d/4 and d (3 R) below
    t = c * normal
    proposed = t > -1.0
    accept = proposed & _squeeze_accepts(d, t, u)
    # The log test only where the squeeze left it open (0.01-6% of the proposals): the same
    # arithmetic as the kernel's, on fewer elements.
    undecided = (proposed & ~accept).nonzero().squeeze(1)
    t_open = t[undecided]
    bound = d[undecided] * (3.0 * _log1p_remainder(t_open, _log1p(t_open)))
    accept[undecided] = u[undecided].log() < bound
    if log_space:
        value = d.log() + 3.0 * _log1p(t)
    else:
        value = _linear_draw(d, t)
    if words.shape[1] == 3:
        boost = _uniform(words[:, 1:] >> 31, 32).reshape(-1)[:count]
        shrink = boost.log() / a
        value = torch.where(small, value + shrink if log_space else value * shrink.exp(), value)
    invalid = a.isnan() | (a < 0)
    infinite = a == math.inf
    value = torch.where(infinite, math.inf, value)
    value = torch.where(invalid, math.nan, value)
    return value, accept | invalid | infinite


def _linear_draw(d: Tensor, t: Tensor) -> Tensor:
    """``x = d (1 + t)^3``. Expanded as ``d + d t (3 + 3t + t²)`` where ``t >= -1/4``, so that
    draws of huge ``a`` (``|t| ~ a^-1/2`` below the rounding of ``1 + t``) keep their spread;
    as the product below, where the expanded form cancels (``x -> 0`` as ``t -> -1``: 450 ulps
    at a = 1) and ``1 + t`` rounds by at most a third of an ulp."""
    w = 1.0 + t
    expanded = d + d * (t * (3.0 + t * (3.0 + t)))
    return torch.where(t < _PRODUCT_BELOW, d * (w * w * w), expanded)


def _squeeze_accepts(d: Tensor, t: Tensor, u: Tensor) -> Tensor:
    """Where ``U < 1 + 3 d L(t)``, which implies acceptance: ``L(t) = -t⁴ / (4 (1 + min(t, 0)))``.

    ``R(t) = -∫_0^t s³/(1 + s) ds`` gives ``R >= L`` for ``t > -1``: bound ``1/(1 + s)`` by 1
    for ``s > 0`` and by ``1/(1 + t)`` for ``t < s < 0``. Then ``exp(3dR) >= 1 + 3dL``. As
    ``3 d t⁴/4 = n⁴/(108 d)``, this is 16x tighter than Marsaglia & Tsang's
    ``1 - 0.0331 n⁴`` at a = 5. The log test is needed for 0.75% of proposals at a = 5 (their
    squeeze: 8.3%), 3.8% at a = 1.5 (8.2%), 6.3% at a = 1 (7.5%) (10^6 normals). Written
    without a division, as ``U m < m - (3d/4) t⁴``,
    ``m = 1 + min(t, 0) > 0``.
    """
    m = 1.0 + t.clamp(max=0.0)
    t2 = t * t
    return u * m < m - (0.75 * d) * (t2 * t2)


def _log1p(t: Tensor) -> Tensor:
    """``log1p(t)`` as ``log(w) t / (w - 1)``, ``w = 1 + t``: a few ulps given an accurate log
    (Goldberg 1991, Theorem 4), at half the cost of Sleef's double-double ``log1p``."""
    w = 1.0 + t
    return torch.where(w == 1.0, t, w.log() * t / (w - 1.0))


def _log1p_remainder(t: Tensor, log1p_t: Tensor) -> Tensor:
    """``log1p(t) - t + t²/2 - t³/3`` (see ``_SERIES_LIMIT``)."""
    p = -1.0 / 14 * t + 1.0 / 13
    for k in range(12, 3, -1):
        p = p * t + (1.0 if k % 2 else -1.0) / k
    t2 = t * t
    series = p * (t2 * t2)
    direct = ((log1p_t - t) + 0.5 * t2) - t2 * t / 3.0
    return torch.where(t.abs() < _SERIES_LIMIT, series, direct)


def _torch_sampler(a: Tensor, log_space: bool, generator: torch.Generator | None) -> Tensor:
    """``torch._standard_gamma`` (CUDA, traced code), boosted in log space where ``a < 1``."""
    if not log_space:
        return torch._standard_gamma(a, generator=generator)
    tiny = torch.finfo(a.dtype).tiny
    small = a < 1
    # Eager mode: all-small or none-small tensors (the usual case: broadcast parameters) skip the
    # masks; mixed ones use them, without index/nonzero (which cost 3x the arithmetic).
    any_small = traced(a) or bool(small.any())
    if not any_small:
        return torch._standard_gamma(a, generator=generator).clamp_min_(tiny).log_()
    all_small = not traced(a) and bool(small.all())
    boosted = torch._standard_gamma(
        a + 1 if all_small else torch.where(small, a + 1, a), generator=generator
    )
    boosted = boosted.clamp_min(tiny).log()
    uniform = torch.rand(a.shape, dtype=a.dtype, device=a.device, generator=generator)
    shrink = uniform.clamp_min(tiny).log() / a
    if all_small:
        return boosted + shrink
    return torch.where(small, boosted + shrink, boosted)
