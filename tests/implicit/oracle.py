"""40-digit mpmath references for implicit gradients: dz/dθ = -(∂F/∂θ)(z) / p(z)."""

import mpmath

mpmath.mp.dps = 40


def gamma_dz_dconcentration(a: float, x: float) -> float:
    """-(∂P(a, x)/∂a) / p(x) for Gamma(a, 1), by high-precision differentiation of P."""
    a, x = mpmath.mpf(a), mpmath.mpf(x)
    d_cdf = mpmath.diff(lambda aa: mpmath.gammainc(aa, 0, x, regularized=True), a)
    log_density = (a - 1) * mpmath.log(x) - x - mpmath.loggamma(a)
    return float(-d_cdf / mpmath.exp(log_density))


def _beta_log_density(a, b, x):
    return (a - 1) * mpmath.log(x) + (b - 1) * mpmath.log1p(-x) - mpmath.log(mpmath.beta(a, b))


def beta_dz_dconcentrations(a: float, b: float, x: float) -> tuple[float, float]:
    """(-(∂I/∂a)/p, -(∂I/∂b)/p) for Beta(a, b) at x.

    For moderate parameters, high-precision differentiation of mpmath's betainc; for large ones
    (where its hypergeometric series does not converge), tanh-sinh quadrature of
    ∂I/∂a = ∫ (log t - ψ(a) + ψ(a+b)) f(t) dt over the shorter tail, split at the mode.
    """
    a, b, x = mpmath.mpf(a), mpmath.mpf(b), mpmath.mpf(x)
    density = mpmath.exp(_beta_log_density(a, b, x))
    if max(a, b) < 200:
        d_a = mpmath.diff(lambda aa: mpmath.betainc(aa, b, 0, x, regularized=True), a)
        d_b = mpmath.diff(lambda bb: mpmath.betainc(a, bb, 0, x, regularized=True), b)
        return float(-d_a / density), float(-d_b / density)
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
