"""The prior interface (``Prior``), the registry behind ``bayesdl.save`` / ``load``, and the
helpers every prior family uses (per-layer scales, Gauss-Hermite expectations)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Normal as _NormalDist

from bayesdl._checks import draw

# the helpers below (normal_dist, resolve_scale, ...) serve the prior families
__all__ = ["Prior", "Scale", "from_config", "unit_scales", "expect_normal"]

Scale = float | Mapping[str, float]
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def normal_dist(loc: Tensor | float, scale: Tensor | float) -> _NormalDist:
    # argument validation costs more than the KL itself in a training step
    return _NormalDist(loc, scale, validate_args=False)


_REGISTRY: dict[str, type[Prior]] = {}


def resolve_scale(scale: Scale, name: str) -> float:
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


def check_scale(scale: Scale, what: str = "scale", flat: bool = False) -> None:
    values = scale.values() if isinstance(scale, Mapping) else [scale]
    for v in values:
        if not (float(v) > 0 and (flat or math.isfinite(float(v)))):
            must = "positive (math.inf: flat)" if flat else "positive and finite"
            raise ValueError(f"prior {what} must be {must}, got {v}.")


@lru_cache(maxsize=4)
def _hermite(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite nodes and weights for ``E[f(Z)]``, ``Z ~ N(0, 1)`` (probabilists')."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    return x, w / math.sqrt(2 * math.pi)


def expect_normal(f: Any, loc: Tensor, scale: Tensor, nodes: int = 24) -> Tensor:
    """``E[f(u)]`` for ``u ~ N(loc, scale^2)`` elementwise, by Gauss-Hermite quadrature.

    Deterministic and differentiable in ``loc`` and ``scale``; exact for polynomials of
    degree ``< 2 nodes`` and accurate for the smooth log densities used here.

    Args:
        f: Elementwise function of a tensor.
        loc: Means (any shape).
        scale: Standard deviations (broadcastable with ``loc``).
        nodes: Quadrature nodes.

    Returns:
        A tensor of the broadcast shape of ``loc`` and ``scale``.
    """
    x, w = _hermite(nodes)
    x = torch.as_tensor(x, dtype=loc.dtype, device=loc.device)
    w = torch.as_tensor(w, dtype=loc.dtype, device=loc.device)
    u = loc.unsqueeze(-1) + scale.unsqueeze(-1) * x
    return (f(u) * w).sum(-1)


def seed_from(generator: torch.Generator | None) -> int | None:
    """A seed drawn from ``generator`` for draws that cannot take one (gamma variates)."""
    if generator is None:
        return None
    return int(torch.randint(2**62, (), generator=generator, device=generator.device))


def check_prefixes(scale: Any, params: Mapping[str, Tensor], what: str) -> None:
    """Raise if a per-layer key of ``scale`` matches no parameter name."""
    if not isinstance(scale, Mapping):
        return
    for prefix in scale:
        if prefix and not any(n == prefix or n.startswith(prefix + ".") for n in params):
            layers = sorted({n.rsplit(".", 1)[0] for n in params if "." in n})
            raise ValueError(
                f"prior {what} names layer {prefix!r}, which matches no parameter of the "
                f"model; its layers are {layers[:12]}."
            )


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
        log_q = normal_dist(mu, sigma).log_prob(w).sum()
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

    # -- latent variables and draws ------------------------------------------------------------
    latents: nn.Module | None = None
    """The latent variables' parameters once bound to a model (``None``: the prior has none).
    A method registers this module, so its optimiser trains it and ``bayesdl.save`` stores it."""

    def bind(self, params: Mapping[str, Tensor]) -> Prior:
        """The prior for a model with parameters ``params`` (methods call this once).

        Checks that every per-layer key names a layer of the model. Priors without latent
        variables return themselves; those with (``Horseshoe``) return a copy owning latent
        parameters shaped for ``params`` (the same prior passed to two methods gives each
        its own latents; read them from ``method.prior``).

        Args:
            params: The model's parameters, name -> tensor.

        Raises:
            ValueError: If a per-layer key matches no parameter.
        """
        check_prefixes(getattr(self, "scale", None), params, "scale")
        return self

    def latent_values(self) -> dict[str, Tensor]:
        """The latent variables' current values on an unconstrained scale (e.g. log scales),
        by name; empty for priors without latents. ``log_prob`` is the joint density there."""
        return {}

    def log_joint(self, params: Mapping[str, Tensor], latents: Mapping[str, Tensor]) -> Tensor:
        """``log p(theta, z)`` at weights ``params`` and latent values ``latents``.

        Args:
            params: Parameter name -> tensor.
            latents: Latent name -> unconstrained value (as ``latent_values()``).
        """
        return self.log_prob(params)

    def to_weights(
        self, coords: Mapping[str, Tensor], latents: Mapping[str, Tensor]
    ) -> tuple[dict[str, Tensor], Tensor]:
        """Weights from a sampler's coordinates, and ``log |d weights / d coords|``.

        The identity by default. Hierarchical priors use the non-centred parameterisation
        (``w = scale(z) * beta``), which removes the funnel between weights and scales
        that defeats Hamiltonian samplers (Betancourt & Girolami, 2015).

        Args:
            coords: Sampler coordinates, named like the parameters.
            latents: Latent values (as ``latent_values()``).
        """
        like = next(iter(coords.values()), torch.zeros(()))
        return dict(coords), like.new_zeros(())

    def from_weights(
        self, params: Mapping[str, Tensor], latents: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """Inverse of ``to_weights``: a sampler's coordinates of weights ``params``.

        Args:
            params: Parameter name -> tensor.
            latents: Latent values (as ``latent_values()``).
        """
        return dict(params)

    def set_latent_draws(self, draws: Mapping[str, Tensor]) -> None:
        """Summarise a sampler's draws of the latents (name -> (S, ...)) in the prior's
        latent factor (mean and standard deviation on the unconstrained scale), so that
        ``unit_scales`` reports them. No-op for priors without latents.

        Args:
            draws: Latent name -> draws with a leading sample dimension.
        """

    def unit_scales(self) -> dict[str, Tensor]:
        """Posterior median scale of every group of weights (unit or weight), by parameter
        name; only for priors with latent scales.

        Raises:
            ValueError: For a prior without latent scales.
        """
        raise ValueError(
            f"the {type(self).__name__} prior has no latent scales; use priors.Horseshoe to "
            "learn which units the data switch off."
        )

    def sample_param(
        self, name: str, like: Tensor, n: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """``n`` draws of parameter ``name`` from the prior, shape (n, *like.shape).

        Args:
            name: The parameter's name in the model.
            like: A tensor of the parameter's shape, dtype and device.
            n: Number of draws.
            generator: Random generator (reproducible draws).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot draw weights.")

    def sample(
        self, params: Mapping[str, Tensor], n: int, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """``n`` draws of every parameter in ``params`` from the prior.

        Args:
            params: Parameter name -> tensor (gives names, shapes, dtypes and devices).
            n: Number of draws.
            generator: Random generator (reproducible draws).

        Returns:
            Name -> tensor of shape (n, *param.shape).
        """
        return {k: self.sample_param(k, v.detach(), n, generator) for k, v in params.items()}

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


def unit_scales(method: Any) -> dict[str, Tensor]:
    """The posterior scale of every unit (or weight) under a prior with latent scales.

    ``method.prior.unit_scales()``: for a ``Horseshoe``, the posterior median
    ``lambda_k tau`` of every group, by weight name (the data switched off the groups with
    small values). From MAP and the samplers, the joint mode or last iterate; from
    ``MeanFieldVI``, the variational factor; from ``HMC``, the draws' log-mean.

    Args:
        method: A bayesdl method (anything with a ``prior`` bound by it).

    Returns:
        Weight name -> scales, shape ``(out, 1, ...)`` for ``group="unit"`` and the
        weight's shape for ``group="weight"``.

    Raises:
        ValueError: If the method's prior has no latent scales.
        TypeError: If ``method`` has no prior.
    """
    prior = getattr(method, "prior", None)
    if not isinstance(prior, Prior):
        raise TypeError(
            f"unit_scales takes a bayesdl method with a prior, got {type(method).__name__}."
        )
    return prior.unit_scales()
