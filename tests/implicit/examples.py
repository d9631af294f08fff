"""One list of foundation families for the property tests (issue 2)."""

from dataclasses import dataclass, field

import torch

import stochgrad.implicit as irt


@dataclass
class Example:
    name: str
    cls: type
    params: dict
    # closed-form E[f(z)] as a function of the parameters (same order as params), per statistic
    moments: dict = field(default_factory=dict)
    # Monte Carlo sample size of the unbiasedness tests: large enough that a 10% bias moves the
    # z-score by >= 9 = 2 x Z_TOL for every parameter (measured), so that the unbiased test and
    # its scaled-gradient twin cannot both be decided by one unlucky seed.
    samples: int = 200_000


def _t(*values):
    return torch.tensor(values, dtype=torch.float64)


def studentt_abs_mean(df, loc, scale):
    # E|T| for the standard t, scaled; loc = 0 in the example.
    log_c = torch.lgamma((df + 1) / 2) - torch.lgamma(df / 2)
    return scale * 2 * torch.sqrt(df) * torch.exp(log_c) / (torch.pi**0.5 * (df - 1))


EXAMPLES = [
    Example(
        "gamma",
        irt.Gamma,
        {"concentration": _t(0.3, 2.5), "rate": _t(1.5, 0.7)},
        {
            "z": (lambda z: z, lambda a, r: a / r),
            "z^2": (lambda z: z**2, lambda a, r: a * (a + 1) / r**2),
        },
    ),
    Example(
        "gamma_small",
        irt.Gamma,
        {"concentration": _t(0.02), "rate": _t(1.0)},
        {"z": (lambda z: z, lambda a, r: a / r)},
        samples=600_000,  # rate: 5.7 at 200k
    ),
    Example(
        "beta",
        irt.Beta,
        {"concentration1": _t(0.7, 3.0), "concentration0": _t(2.0, 0.4)},
        {
            "z": (lambda z: z, lambda a, b: a / (a + b)),
            "z^2": (lambda z: z**2, lambda a, b: a * (a + 1) / ((a + b) * (a + b + 1))),
        },
    ),
    Example(
        "beta_small",
        irt.Beta,
        {"concentration1": _t(0.05), "concentration0": _t(0.08)},
        {"z": (lambda z: z, lambda a, b: a / (a + b))},
    ),
    Example(
        "dirichlet",
        irt.Dirichlet,
        {"concentration": _t(0.5, 2.0, 4.0)},
        {
            "z_0": (lambda z: z[..., 0], lambda c: c[..., 0] / c.sum(-1)),
            "z_2^2": (
                lambda z: z[..., 2] ** 2,
                lambda c: c[..., 2] * (c[..., 2] + 1) / (c.sum(-1) * (c.sum(-1) + 1)),
            ),
        },
    ),
    Example(
        "dirichlet_small",
        irt.Dirichlet,
        {"concentration": _t(0.02, 0.05)},
        {"z_0": (lambda z: z[..., 0], lambda c: c[..., 0] / c.sum(-1))},
        samples=300_000,  # 8.5 at 200k
    ),
    Example(
        "studentt",
        irt.StudentT,
        {"df": _t(4.0), "loc": _t(0.0), "scale": _t(1.7)},
        {"|z|": (lambda z: z.abs(), studentt_abs_mean)},
    ),
    Example(
        "studentt_loc",
        irt.StudentT,
        {"df": _t(6.0), "loc": _t(0.4), "scale": _t(2.0)},
        {"z^2": (lambda z: z**2, lambda df, m, s: m**2 + s**2 * df / (df - 2))},
        samples=500_000,  # df 6.8, loc 6.6 at 200k
    ),
    Example(
        "normal",
        irt.Normal,
        {"loc": _t(0.3, -1.0), "scale": _t(0.5, 2.0)},
        {"z^2": (lambda z: z**2, lambda m, s: m**2 + s**2)},
    ),
    Example(
        "mvn",
        irt.MultivariateNormal,
        {
            "loc": _t(0.5, -0.3),
            "scale_tril": torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64),
        },
        {
            "z0*z1": (
                lambda z: z[..., 0] * z[..., 1],
                lambda m, L: m[..., 0] * m[..., 1] + (L @ L.transpose(-1, -2))[..., 0, 1],
            ),
        },
    ),
]


# ---- mixvm (issue 11, item 1): a mixture with full-covariance Gaussian components ----------
# Built through ``make`` (the registry's builder from keyword parameters, added on the tests
# branch); the guard only keeps this block inert on a registry without it and can go after
# the merge. The same law is tested in tests/implicit/test_mixture.py.
def _mvn_mixture(logits, loc, scale_tril):
    components = irt.MultivariateNormal(loc, scale_tril=scale_tril)
    return irt.MixtureSameFamily(torch.distributions.Categorical(logits=logits), components)


def _mvn_mixture_moment(logits, loc, scale_tril):
    # E[z0 z1 + z1² + z2] from each component's mean and (lower-triangular) covariance
    scale_tril = scale_tril.tril()
    second = scale_tril @ scale_tril.mT + loc.unsqueeze(-1) * loc.unsqueeze(-2)
    per = second[..., 0, 1] + second[..., 1, 1] + loc[..., 2]
    return (torch.softmax(logits, -1) * per).sum(-1)


if "make" in Example.__dataclass_fields__:
    EXAMPLES.append(
        Example(
            "mixture_same_family_mvn",
            irt.MixtureSameFamily,
            {
                "logits": torch.tensor([0.3, -0.4], dtype=torch.float64),
                "loc": torch.tensor([[-1.0, 0.5, 1.5], [1.0, -0.5, 0.0]], dtype=torch.float64),
                "scale_tril": torch.tensor(
                    [
                        [[0.8, 0.0, 0.0], [0.5, 0.7, 0.0], [-0.3, 0.4, 0.6]],
                        [[1.1, 0.0, 0.0], [-0.6, 0.5, 0.0], [0.2, -0.7, 0.9]],
                    ],
                    dtype=torch.float64,
                ),
            },
            {
                "z0*z1+z1^2+z2": (
                    lambda z: z[..., 0] * z[..., 1] + z[..., 1] ** 2 + z[..., 2],
                    _mvn_mixture_moment,
                )
            },
            samples=40_000,
            twin_per_entry=False,  # small cross-coordinate entries would need many more draws
            make=_mvn_mixture,
        )
    )
