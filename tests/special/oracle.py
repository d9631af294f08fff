"""40-digit mpmath references for the special functions and implicit gradients.

dz/dθ = -(∂F/∂θ)(z) / p(z) for the Gamma, Beta, Student t and von Mises laws; the von Mises CDF.
"""

import functools

import mpmath

mpmath.mp.dps = 40


def gamma_dz_dconcentration(a: float, x: float) -> float:
    """-(∂P(a, x)/∂a) / p(x) for Gamma(a, 1), by high-precision differentiation of P.

    Above the mean it differentiates Q = 1 - P instead (∂P/∂a = -∂Q/∂a): far in the upper tail
    P rounds to 1 even at 40 digits and its derivative would read 0.
    """
    a, x = mpmath.mpf(a), mpmath.mpf(x)
    if a > 1e5:  # the hypergeometric series of gammainc no longer converges
        return _gamma_dz_dconcentration_by_quadrature(a, x)
    if x <= a:
        d_cdf = mpmath.diff(lambda aa: mpmath.gammainc(aa, 0, x, regularized=True), a)
    else:
        d_cdf = -mpmath.diff(lambda aa: mpmath.gammainc(aa, x, mpmath.inf, regularized=True), a)
    log_density = (a - 1) * mpmath.log(x) - x - mpmath.loggamma(a)
    return float(-d_cdf / mpmath.exp(log_density))


def _gamma_dz_dconcentration_by_quadrature(a, x) -> float:
    """-(∂P/∂a)/p at large ``a``: ∂P/∂a = ∫_0^x (log t - ψ(a)) p(t) dt = -∫_x^∞ (same) dt.

    Integrated over the shorter tail, relative to ``p(x)`` (the ratio ``p(t)/p(x)`` in closed
    form), by tanh-sinh quadrature at 60 digits with break points at multiples of the width √a
    (the integrand is negligible beyond 80 widths; log t - ψ(a) ~ 1/√a keeps 50 digits).
    """
    with mpmath.workdps(60):
        psi = mpmath.digamma(a)
        width = mpmath.sqrt(a)

        def integrand(t):
            return (mpmath.log(t) - psi) * mpmath.exp((a - 1) * mpmath.log(t / x) - (t - x))

        marks = [0, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 80]
        if x <= a:
            points = sorted({max(x - m * width, mpmath.mpf(0)) for m in marks})
            return float(-mpmath.quad(integrand, points))
        return float(mpmath.quad(integrand, [x + m * width for m in marks]))


def _beta_log_density(a, b, x):
    return (a - 1) * mpmath.log(x) + (b - 1) * mpmath.log1p(-x) - mpmath.log(mpmath.beta(a, b))


def beta_dz_dconcentrations(a: float, b: float, x: float) -> tuple[float, float]:
    """(-(∂I/∂a)/p, -(∂I/∂b)/p) for Beta(a, b) at x.

    High-precision differentiation of mpmath's betainc; where its hypergeometric series does not
    converge (both parameters large, e.g. (1e4, 1e4)), tanh-sinh quadrature of
    ∂I/∂a = ∫ (log t - ψ(a) + ψ(a+b)) f(t) dt over the shorter tail, split at the mode. (The
    quadrature is not used first: with a small parameter against a large one, e.g. (0.05, 250),
    the singular end point t^(a-1) defeats it.)
    """
    a, b, x = mpmath.mpf(a), mpmath.mpf(b), mpmath.mpf(x)
    density = mpmath.exp(_beta_log_density(a, b, x))
    try:
        d_a = mpmath.diff(lambda aa: mpmath.betainc(aa, b, 0, x, regularized=True), a)
        d_b = mpmath.diff(lambda bb: mpmath.betainc(a, bb, 0, x, regularized=True), b)
        return float(-d_a / density), float(-d_b / density)
    except (ValueError, mpmath.libmp.NoConvergence):  # hypsum() failed to converge
        pass
    psi_ab = mpmath.digamma(a + b)
    mode = (a - 1) / (a + b - 2) if a > 1 and b > 1 else x
    spread = mpmath.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))

    def integral(g):
        f = lambda t: g(t) * mpmath.exp(_beta_log_density(a, b, t))  # noqa: E731
        if x <= mode:
            points = [max(mpmath.mpf(0), x - 60 * spread), x]
            return mpmath.quad(f, [0] + points if points[0] > 0 else points)
        points = [x, min(mpmath.mpf(1), x + 60 * spread)]
        return -mpmath.quad(f, points + [1] if points[1] < 1 else points)

    d_a = integral(lambda t: mpmath.log(t) - mpmath.digamma(a) + psi_ab)
    d_b = integral(lambda t: mpmath.log1p(-t) - mpmath.digamma(b) + psi_ab)
    return float(-d_a / density), float(-d_b / density)


def studentt_dz_ddf(df: float, t: float) -> float:
    """-(∂F/∂ν)/p for the standard Student t, F written with the regularized incomplete beta."""
    df, t = mpmath.mpf(df), mpmath.mpf(t)

    def cdf(nu):
        tail = mpmath.betainc(nu / 2, mpmath.mpf(1) / 2, 0, nu / (nu + t * t), regularized=True) / 2
        return 1 - tail if t > 0 else tail

    log_density = (
        mpmath.loggamma((df + 1) / 2)
        - mpmath.loggamma(df / 2)
        - mpmath.log(mpmath.sqrt(df * mpmath.pi))
        - (df + 1) / 2 * mpmath.log1p(t * t / df)
    )
    return float(-mpmath.diff(cdf, df) / mpmath.exp(log_density))


def _von_mises_nodes(x, kappa):
    """Quadrature break points: multiples of the width 1/√κ around the mode and below x."""
    width = 1 / mpmath.sqrt(kappa)
    marks = [m * width for m in (-16, -8, -4, -2, -1, 0, 1, 2, 4, 8, 16)]
    marks += [x - m * width for m in (64, 32, 16, 8, 4, 2, 1)]
    return sorted({-mpmath.pi, x, *(m for m in marks if -mpmath.pi < m < x)})


@functools.cache
def von_mises_dz_dconcentration(x, kappa):
    """dz/dκ = -∫_{-π}^{x} (cos t - A(κ)) p(t)/p(x) dt at 40 digits."""
    with mpmath.workdps(40):
        x, kappa = mpmath.mpf(x), mpmath.mpf(kappa)
        ratio = mpmath.besseli(1, kappa) / mpmath.besseli(0, kappa)

        def integrand(t):
            return (mpmath.cos(t) - ratio) * mpmath.exp(kappa * (mpmath.cos(t) - mpmath.cos(x)))

        return float(-mpmath.quad(integrand, _von_mises_nodes(x, kappa)))


@functools.cache
def von_mises_cdf(x, kappa):
    """F(x) = ∫_{-π}^{x} p(t) dt at 40 digits."""
    with mpmath.workdps(40):
        x, kappa = mpmath.mpf(x), mpmath.mpf(kappa)
        cdf = mpmath.quad(
            lambda t: mpmath.exp(kappa * (mpmath.cos(t) - 1)), _von_mises_nodes(x, kappa)
        )
        return float(cdf * mpmath.exp(kappa) / (2 * mpmath.pi * mpmath.besseli(0, kappa)))
