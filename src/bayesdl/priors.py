"""Priors over network weights.

Every prior is factorised over parameter tensors (``GammaPrecision`` couples the weights
within a tensor; the others factorise over weights too) and exposes

* ``log_prob(params)``: ``sum log p(theta)`` over a dict ``name -> tensor``;
* ``kl(mu, sigma)``: ``KL(q || p)`` summed over all weights, for a factorised Gaussian
  ``q = N(mu, sigma^2)``, in closed form where one exists and by Monte Carlo otherwise.

Scales may be global (a float) or per layer: a mapping from a module-name prefix to a
scale, the longest matching prefix winning (``{"": 1.0, "head": 0.1}``). A ``Normal`` scale
of ``math.inf`` is a flat (improper) prior: no weight decay on those layers, as in Gal et
al.'s active-learning CNN, which decays only its first dense layer
(``{"": math.inf, "7": 0.4}``). Objectives that use only ``log p`` (MAP, MC dropout, SWAG,
the samplers) accept it; VI does not (the KL to a flat prior is infinite).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.distributions import Laplace as _LaplaceDist
from torch.distributions import Normal as _NormalDist
from torch.distributions import kl_divergence

from bayesdl._checks import draw

__all__ = [
    "Prior", "Normal", "ScaleMixture", "Laplace", "Centered", "GammaPrecision", "from_config",
]  # fmt: skip

Scale = float | Mapping[str, float]
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _normal(loc: Tensor | float, scale: Tensor | float) -> _NormalDist:
    # argument validation costs more than the KL itself in a training step
    return _NormalDist(loc, scale, validate_args=False)


def _laplace(loc: Tensor | float, scale: Tensor | float) -> _LaplaceDist:
    return _LaplaceDist(loc, scale, validate_args=False)


_REGISTRY: dict[str, type[Prior]] = {}


def _resolve(scale: Scale, name: str) -> float:
    if not isinstance(scale, Mapping):
        return float(scale)
    best = None
    for prefix in scale:
        if prefix == "" or name == prefix or name.startswith(prefix + "."):
            if best is None or len(prefix) > len(best):
                best = prefix
    if best is None:
        raise ValueError(
            f"no prior scale for parameter {name!r}: add its module name or '' (default) "
            f"to the scale mapping {dict(scale)}."
        )
    return float(scale[best])


def _check_scale(scale: Scale, what: str = "scale", flat: bool = False) -> None:
    values = scale.values() if isinstance(scale, Mapping) else [scale]
    for v in values:
        if not (float(v) > 0 and (flat or math.isfinite(float(v)))):
            must = "positive (math.inf: flat)" if flat else "positive and finite"
            raise ValueError(f"prior {what} must be {must}, got {v}.")


class Prior:
    """Base class of factorised weight priors."""

    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.name] = cls

    def log_prob_param(self, name: str, value: Tensor) -> Tensor:
        """``log p(value)`` summed over every element of one parameter tensor.

        Args:
            name: The parameter's name in the model (selects per-layer scales).
            value: Parameter values (any shape).
        """
        raise NotImplementedError

    def log_prob(self, params: Mapping[str, Tensor]) -> Tensor:
        """``sum log p(theta)`` over every tensor of ``params`` (name -> tensor), a scalar."""
        terms = [self.log_prob_param(n, v) for n, v in params.items()]
        return torch.stack(terms).sum() if terms else torch.tensor(0.0)

    def kl_param(
        self, name: str, mu: Tensor, sigma: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """``KL(N(mu, sigma^2) || p)`` summed over one parameter's weights.

        Args:
            name: The parameter's name in the model.
            mu: Posterior means.
            sigma: Posterior standard deviations (same shape).
            generator: Random generator for Monte Carlo estimates.

        The default is a one-sample reparameterised Monte Carlo estimate (unbiased, with
        gradients); subclasses override it with a closed form where one exists.
        """
        eps = draw("randn", tuple(mu.shape), mu, generator)
        w = mu + sigma * eps
        log_q = _normal(mu, sigma).log_prob(w).sum()
        return log_q - self.log_prob_param(name, w)

    def kl_elements(self, name: str, mu: Tensor, sigma: Tensor) -> Tensor:
        """``KL(N(mu_i, sigma_i^2) || p)`` of every weight separately, shape of ``mu``.

        Defined for priors that factorise over weights and have a closed-form KL (the
        summed ``kl_param`` is then its sum); others raise ``NotImplementedError``.

        Args:
            name: The parameter's name in the model.
            mu: Posterior means.
            sigma: Posterior standard deviations (same shape).
        """
        raise NotImplementedError(
            f"the {type(self).__name__} prior has no closed-form per-weight KL; use a "
            "Normal, Centered or Laplace prior."
        )

    def marginal_std(self, name: str) -> float:
        """Standard deviation of one weight of parameter ``name`` under the prior.

        Args:
            name: The parameter's name in the model (selects per-layer scales).
        """
        raise NotImplementedError(f"{type(self).__name__} does not define marginal_std.")

    def kl(
        self,
        mu: Mapping[str, Tensor],
        sigma: Mapping[str, Tensor],
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``KL(q || p)`` summed (not averaged) over every weight.

        Args:
            mu: Parameter name -> posterior means.
            sigma: Parameter name -> posterior standard deviations.
            generator: Random generator for Monte Carlo estimates.
        """
        terms = [self.kl_param(n, mu[n], sigma[n], generator) for n in mu]
        return torch.stack(terms).sum() if terms else torch.tensor(0.0)

    def mean(self, name: str, like: Tensor) -> Tensor:
        """The prior mean of the named parameter (zero unless the prior is centred).

        Args:
            name: The parameter's name in the model.
            like: A tensor of the parameter's shape, dtype and device.

        Returns:
            A tensor like ``like``.
        """
        return torch.zeros_like(like)

    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments and ``"name"`` (for ``bayesdl.save``)."""
        raise NotImplementedError

    def tensors(self) -> dict[str, Tensor]:
        """Tensors the prior needs besides ``config()`` (e.g. ``Centered``'s means), by name;
        empty for most priors. ``bayesdl.save`` stores them next to the weights."""
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], tensors: Mapping[str, Tensor]) -> Prior:
        """Rebuild the prior from ``config()`` without its ``"name"`` and ``tensors()``.

        Args:
            config: Constructor arguments as returned by ``config()``, less ``"name"``.
            tensors: What ``tensors()`` returned.

        Raises:
            ValueError: If tensors are given to a prior that takes none.
        """
        if tensors:
            raise ValueError(
                f"prior {cls.name!r} takes no tensors, got {sorted(tensors)[:5]}; the file "
                "was altered or written by another version."
            )
        return cls(**config)


def from_config(config: Mapping[str, Any], tensors: Mapping[str, Tensor] | None = None) -> Prior:
    """Rebuild a prior from its ``config()`` and ``tensors()`` (the registry's inverse).

    Args:
        config: What ``Prior.config()`` returned (with its ``"name"``).
        tensors: What ``Prior.tensors()`` returned (``None``: none).

    Raises:
        ValueError: On an unknown prior name or arguments it does not take.
    """
    config = dict(config)
    name = config.pop("name", None)
    if name not in _REGISTRY:
        raise ValueError(f"unknown prior {name!r}; known: {sorted(_REGISTRY)}.")
    return _REGISTRY[name].from_config(config, dict(tensors or {}))


class Normal(Prior):
    """Zero-mean Gaussian prior ``N(0, scale^2)``; as MAP it is weight decay ``1/(2 scale^2)``.

    Args:
        scale: Standard deviation, global or per layer (see the module docstring);
            ``math.inf`` makes those layers' prior flat (log density 0, no weight decay).
    """

    name = "normal"

    def __init__(self, scale: Scale = 1.0) -> None:
        _check_scale(scale, flat=True)
        self.scale = scale

    def log_prob(self, params: Mapping[str, Tensor]) -> Tensor:
        """``sum log p(theta)``; with one global finite scale, over all tensors at once (one
        concatenation and one dot product instead of kernels per tensor, which dominate a
        small network's training step).

        Args:
            params: Parameter name -> tensor.
        """
        own = type(self).log_prob_param is Normal.log_prob_param  # not a subclass's density
        if not own or isinstance(self.scale, Mapping) or math.isinf(self.scale) or not params:
            return super().log_prob(params)
        flat = torch.cat([v.reshape(-1) for v in params.values()])
        log_norm = flat.numel() * (math.log(self.scale) + _HALF_LOG_2PI)
        return flat.dot(flat) * (-0.5 / self.scale**2) - log_norm

    def log_prob_param(self, name: str, value: Tensor) -> Tensor:
        scale = _resolve(self.scale, name)
        if math.isinf(scale):  # flat: log density 0
            return value.new_zeros(())
        # closed form, summed: two kernels a step instead of torch.distributions' broadcasting
        log_norm = value.numel() * (math.log(scale) + _HALF_LOG_2PI)
        return value.square().sum() * (-0.5 / scale**2) - log_norm

    def _finite_for_kl(self, name: str) -> None:
        if math.isinf(_resolve(self.scale, name)):
            raise ValueError(
                f"parameter {name!r} has a flat (infinite-scale) prior, whose KL divergence is "
                "infinite: variational methods need a finite prior scale on every layer."
            )

    def kl_elements(self, name, mu, sigma):  # noqa: D102 - closed form
        self._finite_for_kl(name)
        scale = torch.tensor(_resolve(self.scale, name), dtype=mu.dtype, device=mu.device)
        return kl_divergence(_normal(mu, sigma), _normal(torch.zeros_like(scale), scale))

    def kl_param(self, name, mu, sigma, generator=None):  # noqa: D102 - closed form
        return self.kl_elements(name, mu, sigma).sum()

    def marginal_std(self, name: str) -> float:  # noqa: D102 - the scale
        return _resolve(self.scale, name)

    def config(self) -> dict[str, Any]:
        scale = dict(self.scale) if isinstance(self.scale, Mapping) else self.scale
        return {"name": self.name, "scale": scale}


class Centered(Normal):
    """Gaussian prior centred on given weights, ``N(loc, scale^2)`` (e.g. a pretrained model).

    Args:
        params: Parameter name -> prior mean (the names of the model's parameters).
        scale: Standard deviation, global or per layer.
    """

    name = "centered"

    def __init__(self, params: Mapping[str, Tensor], scale: Scale = 1.0) -> None:
        super().__init__(scale)
        self.loc = {n: p.detach().clone() for n, p in params.items()}

    def mean(self, name: str, like: Tensor) -> Tensor:
        """The given weights of parameter ``name``, on ``like``'s device and dtype.

        Raises:
            ValueError: If no mean was given for ``name``.
        """
        if name not in self.loc:
            raise ValueError(f"Centered prior has no mean for parameter {name!r}.")
        return self.loc[name].to(like.device, like.dtype).expand_as(like)

    def log_prob_param(self, name: str, value: Tensor) -> Tensor:
        return super().log_prob_param(name, value - self.mean(name, value))

    def kl_elements(self, name, mu, sigma):  # noqa: D102 - closed form
        self._finite_for_kl(name)
        loc = self.mean(name, mu)
        prior = _normal(loc, torch.full_like(mu, _resolve(self.scale, name)))
        return kl_divergence(_normal(mu, sigma), prior)

    def tensors(self) -> dict[str, Tensor]:
        """The means, as ``"loc.<parameter name>"``."""
        return {f"loc.{n}": v for n, v in self.loc.items()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], tensors: Mapping[str, Tensor]) -> Centered:
        """Rebuild from ``config()`` (less ``"name"``) and the ``"loc.*"`` tensors."""
        odd = [k for k in tensors if not k.startswith("loc.")]
        if odd:
            raise ValueError(f"Centered prior: unexpected tensors {odd[:5]} (want 'loc.*').")
        return cls({k[len("loc.") :]: v for k, v in tensors.items()}, **config)


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
        _check_scale(sigma1, "sigma1")
        _check_scale(sigma2, "sigma2")
        self.pi, self.sigma1, self.sigma2 = float(pi), float(sigma1), float(sigma2)

    def log_prob_param(self, name: str, value: Tensor) -> Tensor:
        zero = torch.zeros((), dtype=value.dtype, device=value.device)
        lp1 = _normal(zero, self.sigma1).log_prob(value) + math.log(self.pi)
        lp2 = _normal(zero, self.sigma2).log_prob(value) + math.log1p(-self.pi)
        return torch.logaddexp(lp1, lp2).sum()

    def marginal_std(self, name: str) -> float:  # noqa: D102 - mixture of two variances
        return math.sqrt(self.pi * self.sigma1**2 + (1 - self.pi) * self.sigma2**2)

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
        _check_scale(scale)
        self.scale = scale

    def log_prob_param(self, name: str, value: Tensor) -> Tensor:
        zero = torch.zeros((), dtype=value.dtype, device=value.device)
        return _laplace(zero, _resolve(self.scale, name)).log_prob(value).sum()

    def kl_param(self, name, mu, sigma, generator=None):  # noqa: D102 - closed form
        return self.kl_elements(name, mu, sigma).sum()

    def marginal_std(self, name: str) -> float:  # noqa: D102 - sqrt(2) b
        return math.sqrt(2) * _resolve(self.scale, name)

    def kl_elements(self, name, mu, sigma):  # noqa: D102 - closed form
        b = _resolve(self.scale, name)
        std_normal = _normal(torch.zeros_like(mu), torch.ones_like(mu))
        abs_mean = sigma * math.sqrt(2 / math.pi) * torch.exp(-0.5 * (mu / sigma) ** 2) + mu * (
            1 - 2 * std_normal.cdf(-mu / sigma)
        )
        neg_entropy = -_normal(mu, sigma).entropy()
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
        _check_scale(shape, "shape")
        _check_scale(rate, "rate")
        self.shape, self.rate = float(shape), float(rate)

    def log_prob_param(self, name: str, value: Tensor) -> Tensor:
        a, b, half_n = self.shape, self.rate, value.numel() / 2
        const = a * math.log(b) - math.lgamma(a) + math.lgamma(a + half_n)
        const -= half_n * math.log(2 * math.pi)
        return const - (a + half_n) * torch.log(b + 0.5 * value.square().sum())

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "shape": self.shape, "rate": self.rate}
