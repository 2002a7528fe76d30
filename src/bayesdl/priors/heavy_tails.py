"""Priors with heavier tails than a Gaussian: ``ScaleMixture``, ``Laplace``, ``GammaPrecision``
(a learned precision per tensor, integrated out) and ``StudentT``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Laplace as _LaplaceDist

from bayesdl._checks import draw
from bayesdl.priors.base import (
    Prior,
    Scale,
    check_scale,
    expect_normal,
    normal_dist,
    resolve_scale,
    seed_from,
)
from bayesdl.runtime import seeded_global_rng

__all__ = ["ScaleMixture", "Laplace", "GammaPrecision", "StudentT"]


def _laplace(loc: Tensor | float, scale: Tensor | float) -> _LaplaceDist:
    return _LaplaceDist(loc, scale, validate_args=False)


class ScaleMixture(Prior):
    """Scale mixture of two zero-mean Gaussians (Blundell et al., 2015, eq. 7).

    ``p(w) = pi N(0, sigma1^2) + (1 - pi) N(0, sigma2^2)``, typically ``sigma1 >> sigma2``.
    Its KL to a Gaussian has no closed form, so ``kl`` is a Monte Carlo estimate.

    Args:
        pi: Weight of the first (wide) component, in (0, 1).
        sigma1: Standard deviation of the first component.
        sigma2: Standard deviation of the second component.
    """

    name = "scale_mixture"

    def __init__(self, pi: float = 0.5, sigma1: float = 1.0, sigma2: float = math.exp(-6)) -> None:
        if not 0 < pi < 1:
            raise ValueError(f"pi must lie in (0, 1), got {pi}.")
        check_scale(sigma1, "sigma1")
        check_scale(sigma2, "sigma2")
        self.pi, self.sigma1, self.sigma2 = float(pi), float(sigma1), float(sigma2)

    def log_prob_param(self, name: str, value: Tensor) -> Tensor:
        zero = torch.zeros((), dtype=value.dtype, device=value.device)
        lp1 = normal_dist(zero, self.sigma1).log_prob(value) + math.log(self.pi)
        lp2 = normal_dist(zero, self.sigma2).log_prob(value) + math.log1p(-self.pi)
        return torch.logaddexp(lp1, lp2).sum()

    def marginal_std(self, name: str) -> float:  # noqa: D102 - mixture of two variances
        return math.sqrt(self.pi * self.sigma1**2 + (1 - self.pi) * self.sigma2**2)

    def sample_param(self, name, like, n, generator=None):  # noqa: D102 - pick, then draw
        shape = (n, *like.shape)
        wide = draw("rand", shape, like, generator) < self.pi
        scale = torch.where(wide, self.sigma1, self.sigma2).to(like.dtype)
        return scale * draw("randn", shape, like, generator)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "pi": self.pi, "sigma1": self.sigma1, "sigma2": self.sigma2}


class Laplace(Prior):
    """Zero-mean Laplace prior with density ``exp(-|w|/scale) / (2 scale)`` (L1 as MAP).

    ``KL(N(mu, sigma^2) || Laplace(0, b))`` is in closed form:
    ``-H[q] + log(2b) + E_q|w| / b`` with the folded-normal mean
    ``E_q|w| = sigma sqrt(2/pi) exp(-mu^2 / 2 sigma^2) + mu (1 - 2 Phi(-mu/sigma))``.

    Args:
        scale: Laplace scale ``b``, global or per layer.
    """

    name = "laplace"

    def __init__(self, scale: Scale = 1.0) -> None:
        check_scale(scale)
        self.scale = scale

    def log_prob_param(self, name: str, value: Tensor) -> Tensor:
        zero = torch.zeros((), dtype=value.dtype, device=value.device)
        return _laplace(zero, resolve_scale(self.scale, name)).log_prob(value).sum()

    def kl_param(self, name, mu, sigma, generator=None):  # noqa: D102 - closed form
        return self.kl_elements(name, mu, sigma).sum()

    def marginal_std(self, name: str) -> float:  # noqa: D102 - sqrt(2) b
        return math.sqrt(2) * resolve_scale(self.scale, name)

    def sample_param(self, name, like, n, generator=None):  # noqa: D102 - by inversion
        u = draw("rand", (n, *like.shape), like, generator).clamp(1e-7, 1 - 1e-7) - 0.5
        return -resolve_scale(self.scale, name) * u.sign() * torch.log1p(-2 * u.abs())

    def kl_elements(self, name, mu, sigma):  # noqa: D102 - closed form
        b = resolve_scale(self.scale, name)
        std_normal = normal_dist(torch.zeros_like(mu), torch.ones_like(mu))
        abs_mean = sigma * math.sqrt(2 / math.pi) * torch.exp(-0.5 * (mu / sigma) ** 2) + mu * (
            1 - 2 * std_normal.cdf(-mu / sigma)
        )
        neg_entropy = -normal_dist(mu, sigma).entropy()
        return neg_entropy + math.log(2 * b) + abs_mean / b

    def config(self) -> dict[str, Any]:
        scale = dict(self.scale) if isinstance(self.scale, Mapping) else self.scale
        return {"name": self.name, "scale": scale}


class GammaPrecision(Prior):
    """Hierarchical prior: a Gaussian per parameter tensor whose precision is learned.

    Neal's (1996) hierarchical prior for Bayesian networks: the weights of one parameter
    tensor are ``N(0, 1/lambda)`` with one precision ``lambda ~ Gamma(shape, rate)`` per
    tensor, so each layer's weight scale adapts to the data instead of being chosen. The
    precision is integrated out in closed form: a tensor of ``n`` weights has the
    multivariate Student-t density

    ``log p(w) = shape log rate - lgamma(shape) + lgamma(shape + n/2) - (n/2) log(2 pi)
    - (shape + n/2) log(rate + ||w||^2 / 2)``,

    which is exactly the weights' marginal under the two-level model, so MAP, the samplers
    and HMC work on the weights alone (no extra latent variables, no funnel). One weight
    alone (``n = 1``) is Student-t with ``2 shape`` degrees of freedom and scale
    ``sqrt(rate / shape)``. ``kl`` is a Monte Carlo estimate.

    Args:
        shape: Gamma shape of each tensor's precision.
        rate: Gamma rate; the prior mean precision is ``shape / rate``.
    """

    name = "gamma_precision"

    def __init__(self, shape: float = 1.0, rate: float = 1.0) -> None:
        check_scale(shape, "shape")
        check_scale(rate, "rate")
        self.shape, self.rate = float(shape), float(rate)

    def log_prob_param(self, name: str, value: Tensor) -> Tensor:
        a, b, half_n = self.shape, self.rate, value.numel() / 2
        const = a * math.log(b) - math.lgamma(a) + math.lgamma(a + half_n)
        const -= half_n * math.log(2 * math.pi)
        return const - (a + half_n) * torch.log(b + 0.5 * value.square().sum())

    def sample_param(self, name, like, n, generator=None):  # noqa: D102 - precision, then weights
        with seeded_global_rng(seed_from(generator), like.device):
            precision = torch.distributions.Gamma(
                torch.full((n,), self.shape, dtype=like.dtype, device=like.device), self.rate
            ).sample()
        eps = draw("randn", (n, *like.shape), like, generator)
        return eps * precision.rsqrt().view(n, *([1] * like.dim()))

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "shape": self.shape, "rate": self.rate}


class StudentT(Prior):
    """Zero-mean Student-t prior: heavy tails (Fortuin et al., 2022).

    ``p(w) = Gamma((df+1)/2) / (Gamma(df/2) sqrt(df pi) scale) (1 + w^2 / (df scale^2))^-((df+1)/2)``.
    Fortuin et al. found heavy-tailed priors better than Gaussians for fully connected
    networks. ``KL(N(mu, sigma^2) || p)`` has no closed form: it is ``-H[q] - E_q[log p(w)]``
    with the expectation by 48-point Gauss-Hermite quadrature per weight (deterministic,
    with exact gradients; ``kl_elements`` gives it per weight). Its error is below 3e-4 nats
    per weight even for a Cauchy prior (``df=1``) and a posterior twice as wide as the
    prior, and far smaller for the narrow posteriors of trained networks; it costs 48
    density evaluations per weight and step.

    Args:
        df: Degrees of freedom, > 0 (1: Cauchy; large: close to ``Normal(scale)``).
        scale: Scale, global or per layer (see the module docstring).

    Raises:
        ValueError: If ``df <= 0`` or a scale is not positive and finite.

    References:
        Fortuin et al., "Bayesian Neural Network Priors Revisited", ICLR 2022.
    """

    name = "student_t"

    def __init__(self, df: float = 3.0, scale: Scale = 1.0) -> None:
        if isinstance(df, bool) or not (
            isinstance(df, (int, float)) and math.isfinite(df) and df > 0
        ):
            raise ValueError(f"StudentT df must be a positive finite number, got {df!r}.")
        check_scale(scale)
        self.df, self.scale = float(df), scale

    def _log_density(self, value: Tensor, scale: float) -> Tensor:
        nu = self.df
        const = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(nu * math.pi)
        return (
            const - math.log(scale) - (nu + 1) / 2 * torch.log1p(value.square() / (nu * scale**2))
        )

    def log_prob_param(self, name: str, value: Tensor) -> Tensor:
        return self._log_density(value, resolve_scale(self.scale, name)).sum()

    def kl_elements(self, name, mu, sigma):  # noqa: D102 - quadrature
        scale = resolve_scale(self.scale, name)
        cross = expect_normal(lambda w: self._log_density(w, scale), mu, sigma, nodes=48)
        return -normal_dist(mu, sigma).entropy() - cross

    def kl_param(self, name, mu, sigma, generator=None):  # noqa: D102 - quadrature
        return self.kl_elements(name, mu, sigma).sum()

    def marginal_std(self, name: str) -> float:  # noqa: D102 - infinite for df <= 2
        scale = resolve_scale(self.scale, name)
        return scale * math.sqrt(self.df / (self.df - 2)) if self.df > 2 else math.inf

    def sample_param(self, name, like, n, generator=None):  # noqa: D102 - normal / sqrt(chi2/df)
        with seeded_global_rng(seed_from(generator), like.device):
            chi2 = torch.distributions.Chi2(
                torch.full((n, *like.shape), self.df, dtype=like.dtype, device=like.device)
            ).sample()
        eps = draw("randn", (n, *like.shape), like, generator)
        return resolve_scale(self.scale, name) * eps * (chi2 / self.df).rsqrt()

    def config(self) -> dict[str, Any]:
        scale = dict(self.scale) if isinstance(self.scale, Mapping) else self.scale
        return {"name": self.name, "df": self.df, "scale": scale}
