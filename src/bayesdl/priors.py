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

Priors with latent variables (``Horseshoe``'s scales) own them: a method ``bind``s its
prior to the model's parameters, which gives the prior an ``nn.Module`` of latent
parameters (``Prior.latents``) that the method registers, trains and saves with its own
state. ``log_prob`` is then the joint density at the latents' current values (MAP, SWAG,
ensembles, SG-MCMC optimise it over weights and latents), ``kl`` includes the variational
factor of the latents (``MeanFieldVI``), and ``log_joint`` / ``to_weights`` /
``from_weights`` let a sampler move the latents with the weights (``HMC``). Every prior
can draw weights (``sample``), which ``bayesdl.prior_predictive`` uses.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Laplace as _LaplaceDist
from torch.distributions import Normal as _NormalDist
from torch.distributions import kl_divergence
from torch.nn import functional as F

from bayesdl._checks import draw
from bayesdl.runtime import seeded_global_rng

__all__ = [
    "Prior", "Normal", "ScaleMixture", "Laplace", "Centered", "GammaPrecision", "StudentT",
    "Horseshoe", "from_config", "unit_scales",
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


def _seed(generator: torch.Generator | None) -> int | None:
    """A seed drawn from ``generator`` for draws that cannot take one (gamma variates)."""
    if generator is None:
        return None
    return int(torch.randint(2**62, (), generator=generator, device=generator.device))


def _half_cauchy(
    shape: tuple[int, ...], scale: float, like: Tensor, gen: torch.Generator | None
) -> Tensor:
    """Half-Cauchy(0, scale) draws by inversion: ``scale tan(pi u / 2)``."""
    u = draw("rand", shape, like, gen).clamp(1e-7, 1 - 1e-7)
    return scale * torch.tan(0.5 * math.pi * u)


def _log_half_cauchy_of_log(z: Tensor, scale: float) -> Tensor:
    """Log density of ``z = log lambda`` for ``lambda ~ half-Cauchy(0, scale)`` (with the
    Jacobian ``lambda``): ``log(2/pi) + log b + z - log(b^2 + exp(2z))``."""
    log_b = math.log(scale)
    return math.log(2 / math.pi) + log_b + z - torch.logaddexp(z.new_tensor(2 * log_b), 2 * z)


def _check_prefixes(scale: Any, params: Mapping[str, Tensor], what: str) -> None:
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
        _check_prefixes(getattr(self, "scale", None), params, "scale")
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

    def sample_param(self, name, like, n, generator=None):  # noqa: D102 - mean + scale * eps
        scale = _resolve(self.scale, name)
        if math.isinf(scale):
            raise ValueError(
                f"parameter {name!r} has a flat (infinite-scale) prior, which cannot be drawn "
                "from; give every layer a finite scale to draw from the prior."
            )
        eps = draw("randn", (n, *like.shape), like, generator)
        return self.mean(name, like) + scale * eps

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

    @classmethod
    def from_model(
        cls, pretrained: nn.Module, scale: Scale = 1.0, exclude: tuple[str, ...] = ("head",),
        *, like: nn.Module | None = None,
    ) -> Centered:  # fmt: skip
        """A prior centred on another network's weights (Fortuin's "start from knowledge").

        Every parameter of ``pretrained`` becomes the prior mean of the parameter of the
        same name, except those of the layers in ``exclude``, which keep a zero mean (a
        new head for new classes). With ``like``, the shapes are checked against the
        network the prior is for (its excluded layers may differ in shape: their zero
        means take the new shapes).

        Args:
            pretrained: The trained network whose weights are the prior mean.
            scale: Standard deviation around them, global or per layer
                (``{"": 0.05, "head": 1.0}``).
            exclude: Module names (prefixes) whose parameters get a zero prior mean; names
                that match no parameter of ``pretrained`` (nor of ``like``) are an error.
                For an ``nn.Sequential`` the layers are named by position (``"10"``).
            like: The network that will be fitted with this prior (optional check).

        Raises:
            ValueError: If an excluded name matches no parameter, or the shapes of
                ``pretrained`` and ``like`` differ outside the excluded layers.
            TypeError: If ``pretrained`` is not an ``nn.Module``.

        Examples:
            >>> import torch, bayesdl as bdl
            >>> old = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 5))
            >>> new = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 3))
            >>> prior = bdl.priors.Centered.from_model(old, 0.1, exclude=("1",), like=new)
            >>> bool(prior.mean("0.weight", new[0].weight).equal(old[0].weight))
            True
            >>> float(prior.mean("1.weight", new[1].weight).abs().sum())
            0.0
        """
        if not isinstance(pretrained, nn.Module):
            raise TypeError(f"pretrained must be an nn.Module, got {type(pretrained).__name__}.")
        if isinstance(exclude, str):
            exclude = (exclude,)
        source = dict(pretrained.named_parameters())
        target = source if like is None else dict(like.named_parameters())

        def excluded(name: str) -> bool:
            return any(name == e or name.startswith(e + ".") for e in exclude)

        for e in exclude:
            if not any(n == e or n.startswith(e + ".") for n in (*source, *target)):
                layers = sorted({n.rsplit(".", 1)[0] for n in target if "." in n})
                raise ValueError(
                    f"exclude names layer {e!r}, which matches no parameter; the model's "
                    f"layers are {layers[:12]}."
                )
        loc = {}
        for name, p in target.items():
            if excluded(name):
                loc[name] = torch.zeros_like(p.detach())
                continue
            if name not in source or source[name].shape != p.shape:
                got = tuple(source[name].shape) if name in source else "missing"
                raise ValueError(
                    f"pretrained parameter {name!r} does not fit: {got} against "
                    f"{tuple(p.shape)}; exclude its layer (exclude=(...)) or use a network of "
                    "the same architecture."
                )
            loc[name] = source[name].detach()
        return cls(loc, scale)

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
        _check_scale(scale)
        self.scale = scale

    def log_prob_param(self, name: str, value: Tensor) -> Tensor:
        zero = torch.zeros((), dtype=value.dtype, device=value.device)
        return _laplace(zero, _resolve(self.scale, name)).log_prob(value).sum()

    def kl_param(self, name, mu, sigma, generator=None):  # noqa: D102 - closed form
        return self.kl_elements(name, mu, sigma).sum()

    def marginal_std(self, name: str) -> float:  # noqa: D102 - sqrt(2) b
        return math.sqrt(2) * _resolve(self.scale, name)

    def sample_param(self, name, like, n, generator=None):  # noqa: D102 - by inversion
        u = draw("rand", (n, *like.shape), like, generator).clamp(1e-7, 1 - 1e-7) - 0.5
        return -_resolve(self.scale, name) * u.sign() * torch.log1p(-2 * u.abs())

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

    def sample_param(self, name, like, n, generator=None):  # noqa: D102 - precision, then weights
        with seeded_global_rng(_seed(generator), like.device):
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
        _check_scale(scale)
        self.df, self.scale = float(df), scale

    def _log_density(self, value: Tensor, scale: float) -> Tensor:
        nu = self.df
        const = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(nu * math.pi)
        return (
            const - math.log(scale) - (nu + 1) / 2 * torch.log1p(value.square() / (nu * scale**2))
        )

    def log_prob_param(self, name: str, value: Tensor) -> Tensor:
        return self._log_density(value, _resolve(self.scale, name)).sum()

    def kl_elements(self, name, mu, sigma):  # noqa: D102 - quadrature
        scale = _resolve(self.scale, name)
        cross = expect_normal(lambda w: self._log_density(w, scale), mu, sigma, nodes=48)
        return -_normal(mu, sigma).entropy() - cross

    def kl_param(self, name, mu, sigma, generator=None):  # noqa: D102 - quadrature
        return self.kl_elements(name, mu, sigma).sum()

    def marginal_std(self, name: str) -> float:  # noqa: D102 - infinite for df <= 2
        scale = _resolve(self.scale, name)
        return scale * math.sqrt(self.df / (self.df - 2)) if self.df > 2 else math.inf

    def sample_param(self, name, like, n, generator=None):  # noqa: D102 - normal / sqrt(chi2/df)
        with seeded_global_rng(_seed(generator), like.device):
            chi2 = torch.distributions.Chi2(
                torch.full((n, *like.shape), self.df, dtype=like.dtype, device=like.device)
            ).sample()
        eps = draw("randn", (n, *like.shape), like, generator)
        return _resolve(self.scale, name) * eps * (chi2 / self.df).rsqrt()

    def config(self) -> dict[str, Any]:
        scale = dict(self.scale) if isinstance(self.scale, Mapping) else self.scale
        return {"name": self.name, "df": self.df, "scale": scale}


Group = Literal["unit", "weight"]
"""How ``Horseshoe`` shares local scales: ``"unit"``: one per output unit (the weights into
one neuron or one convolution filter, Ghosh et al.'s node-wise shrinkage); ``"weight"``: one
per weight (the classic horseshoe, e.g. on the inputs of a linear model)."""

_INIT_SD = 0.1  # initial standard deviation of the latents' variational factor


def _softplus_inv(x: float) -> float:
    return math.log(math.expm1(x))


class Horseshoe(Prior):
    """Horseshoe prior with latent scales (Ghosh, Yao & Doshi-Velez, 2019).

    For every weight tensor (``dim >= 2``; one per layer) with groups ``k`` (output units or
    single weights, see ``group``)::

        tau ~ C+(0, scale_global)          one global scale per layer
        lambda_k ~ C+(0, 1)                one local scale per group
        w_kj | lambda, tau ~ N(0, s_k^2),  s_k = lambda_k tau

    and with ``slab_scale = c`` the regularised horseshoe of Piironen & Vehtari (2017),
    ``s_k^2 = c^2 lambda_k^2 tau^2 / (c^2 + lambda_k^2 tau^2)``: weights of switched-on
    units are still shrunk by a ``N(0, c^2)`` slab. Biases (``dim < 2``) get
    ``N(0, bias_scale^2)``.

    The scales are latent variables, held on the log scale ``z = log lambda`` (and
    ``log tau``) by the prior once a method binds it (``Prior.latents``); they belong to the
    method's state and are saved with it. How each method treats them:

    * MAP, SWAG, ensembles, L0, Laplace's MAP fit: ``log_prob`` is the joint density
      ``log p(w | z) + log p(z)`` at the latents' values, optimised over weights and
      latents together (the joint mode: unneeded units are driven to zero);
    * SGLD / SGHMC: the latents are sampled with the weights, in the same joint density;
    * HMC (NUTS): the latents are sampled with the weights in the non-centred
      parameterisation ``w = s * beta``, ``beta ~ N(0, 1)`` (``to_weights``), which removes
      the funnel between small scales and small weights; the draws' mean and standard
      deviation of ``z`` are kept (``set_latent_draws``). The non-centred coordinates
      leave a funnel of their own where the data pin a weight down (a null weight, or a
      large one, whose local scale can still grow): NUTS's step size adapts to its neck
      (0.03-0.17 on small sparse regressions), so trajectories are long, the default
      ``max_tree_depth=6`` caps nearly every one of them (57-59 of 63 gradients a draw),
      and short runs do not mix (split R-hat 1.1-1.6 after 100-150 draws per chain, and
      the two chains' step sizes apart). A few hundred warm-up iterations and draws per
      chain do (R-hat 1.01 after 300 + 300 on 12 inputs), and the draws then agree with
      an exact Gibbs sampler (``benchmarks/horseshoe_hmc.py``); check ``HMC.diagnostics``;
    * MeanFieldVI: the scales get log-normal factors ``q(z) = N(m, v^2)`` beside the
      method's Gaussian ``q(w)``. Instead of the paper's inverse-gamma decomposition (which
      makes coordinate-ascent updates conjugate), the KL is computed directly:
      ``E_q(z) KL(q(w) || N(0, s^2))`` is closed form for a log-normal ``s``
      (``E log s = m``, ``E s^-2 = exp(-2m + 2v^2)``), and ``E_q log C+(e^z)`` is a
      one-dimensional Gauss-Hermite quadrature per group; the objective is deterministic
      given ``q(w)`` and needs no auxiliary variables. The regularised horseshoe's
      ``E log s~`` is also a quadrature. The limit of this centred mean-field family: a
      group's scale cannot fall far below the sd of its weights' own factor (about
      ``sigma / sqrt(N)`` in a linear model), so VI shrinks a null weight to no less than
      about half its data estimate, where the exact posterior (HMC) shrinks it much
      further (``tests/test_priors_horseshoe.py``).

    ``unit_scales()`` (or ``priors.unit_scales(method)``) gives the posterior median
    ``exp(m_k + m_tau)`` of every group's scale, so the groups the data switched off show.

    Args:
        scale_global: Scale of the global half-Cauchy, global or per layer
            (``{"": 1.0, "head": 0.1}``). Piironen & Vehtari suggest
            ``p0 / (D - p0) / sqrt(N)`` (times the noise sd) for ``p0`` expected non-zero
            weights out of ``D``.
        group: ``"unit"`` (default) or ``"weight"``; see ``Group``.
        slab_scale: ``c`` of the regularised horseshoe; ``None``: the plain horseshoe.
        bias_scale: Standard deviation of the biases' Gaussian prior.

    Raises:
        ValueError: On a non-positive scale or an unknown group.

    Examples:
        >>> import torch, bayesdl as bdl
        >>> vi = bdl.MeanFieldVI(torch.nn.Linear(10, 1), bdl.likelihoods.Gaussian(0.1),
        ...                      prior=bdl.priors.Horseshoe(1.0, group="weight"))
        >>> bdl.priors.unit_scales(vi)["weight"].shape
        torch.Size([1, 10])

    References:
        Ghosh, Yao & Doshi-Velez, "Model Selection in Bayesian Neural Networks via Horseshoe
        Priors", JMLR 2019. Piironen & Vehtari, "Sparsity information and regularization in
        the horseshoe and other shrinkage priors", EJS 2017. Carvalho, Polson & Scott, "The
        horseshoe estimator for sparse signals", Biometrika 2010.
    """

    name = "horseshoe"

    def __init__(
        self, scale_global: Scale = 1.0, group: Group = "unit", slab_scale: float | None = None,
        bias_scale: float = 1.0,
    ) -> None:  # fmt: skip
        _check_scale(scale_global, "scale_global")
        if group not in ("unit", "weight"):
            raise ValueError(f"Horseshoe group must be 'unit' or 'weight', got {group!r}.")
        if slab_scale is not None:
            _check_scale(slab_scale, "slab_scale")
        _check_scale(bias_scale, "bias_scale")
        self.scale_global, self.group = scale_global, group
        self.slab_scale = None if slab_scale is None else float(slab_scale)
        self.bias_scale = float(bias_scale)
        self.shapes: dict[str, tuple[int, ...]] = {}  # bound parameters (weights and biases)

    # -- binding: the latents ------------------------------------------------------------
    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "__")

    def _group_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape if self.group == "weight" else (shape[0],) + (1,) * (len(shape) - 1)

    def bind(self, params: Mapping[str, Tensor]) -> Horseshoe:
        """A copy of the prior owning log-scale latents for ``params`` (see ``Prior.bind``).

        The latents start where the weights are: ``tau`` at the root mean square of the
        layer's initial weights and every ``lambda`` at 1, so the prior's scale matches
        the initialisation; their variational standard deviation starts at 0.1.

        Args:
            params: The model's parameters, name -> tensor.

        Raises:
            ValueError: If a per-layer key of ``scale_global`` matches no parameter.
        """
        _check_prefixes(self.scale_global, params, "scale_global")
        shapes = {n: tuple(p.shape) for n, p in params.items()}
        if self.latents is not None and shapes == self.shapes:
            return self  # already bound to this model (e.g. by prior_predictive)
        bound = copy.copy(self)
        bound.shapes = shapes
        store = nn.ParameterDict()
        sd = _softplus_inv(_INIT_SD)
        for n, p in params.items():
            if p.dim() < 2:
                continue
            k = self._key(n)
            rms = float(p.detach().square().mean().sqrt().clamp_min(1e-3))
            gshape = self._group_shape(tuple(p.shape))
            store[k + "__global"] = nn.Parameter(p.new_full((), math.log(rms)))
            store[k + "__local"] = nn.Parameter(p.new_zeros(gshape))
            store[k + "__global_rho"] = nn.Parameter(p.new_full((), sd))
            store[k + "__local_rho"] = nn.Parameter(p.new_full(gshape, sd))
        bound.latents = store
        return bound

    def _store(self) -> nn.ParameterDict:
        if self.latents is None:
            raise RuntimeError(
                "this Horseshoe is not bound to a model: pass it to a method (prior=...) and "
                "use method.prior."
            )
        return self.latents  # type: ignore[return-value]

    def latent_values(self) -> dict[str, Tensor]:
        """Log scales ``log tau`` (``"<param>.global"``) and ``log lambda``
        (``"<param>.local"``) of every weight tensor: their point values (MAP, samplers)
        or variational means (VI)."""
        store = self._store()
        out = {}
        for n, shape in self.shapes.items():
            if len(shape) >= 2:
                k = self._key(n)
                out[n + ".global"] = store[k + "__global"]
                out[n + ".local"] = store[k + "__local"]
        return out

    def latent_std(self) -> dict[str, Tensor]:
        """Standard deviations of the latents' factor, named like ``latent_values()``
        (VI's variational factor, or the spread of HMC's draws)."""
        store = self._store()
        out = {}
        for n, shape in self.shapes.items():
            if len(shape) >= 2:
                k = self._key(n)
                out[n + ".global"] = F.softplus(store[k + "__global_rho"])
                out[n + ".local"] = F.softplus(store[k + "__local_rho"])
        return out

    # -- densities ---------------------------------------------------------------------
    def _is_weight(self, name: str) -> bool:
        if name not in self.shapes:
            raise ValueError(
                f"the Horseshoe was bound to another model: it has no parameter {name!r}."
            )
        return len(self.shapes[name]) >= 2

    def _log_scale(self, name: str, latents: Mapping[str, Tensor]) -> Tensor:
        """``log s`` per group (broadcastable against the weight), regularised if asked."""
        u = latents[name + ".local"] + latents[name + ".global"]
        if self.slab_scale is None:
            return u
        log_c = math.log(self.slab_scale)
        return u + log_c - 0.5 * torch.logaddexp(u.new_tensor(2 * log_c), 2 * u)

    def _log_p_latents(self, name: str, latents: Mapping[str, Tensor]) -> Tensor:
        b = _resolve(self.scale_global, name)
        return (_log_half_cauchy_of_log(latents[name + ".global"], b)
                + _log_half_cauchy_of_log(latents[name + ".local"], 1.0).sum())  # fmt: skip

    def _log_normal(self, value: Tensor, log_s: Tensor) -> Tensor:
        return (-0.5 * (value * torch.exp(-log_s)).square() - log_s - _HALF_LOG_2PI).sum()

    def log_joint(self, params, latents):  # noqa: D102 - log p(w | z) + log p(z)
        total = []
        for name, value in params.items():
            if not self._is_weight(name):
                total.append(_normal(0.0, self.bias_scale).log_prob(value).sum())
                continue
            log_s = self._log_scale(name, latents).expand_as(value)
            total.append(self._log_normal(value, log_s) + self._log_p_latents(name, latents))
        return torch.stack(total).sum() if total else torch.tensor(0.0)

    def log_prob(self, params: Mapping[str, Tensor]) -> Tensor:
        """Joint ``log p(theta, z)`` at the latents' current values (``latent_values()``).

        Args:
            params: Parameter name -> tensor.
        """
        return self.log_joint(params, self.latent_values())

    def log_prob_param(self, name: str, value: Tensor) -> Tensor:
        return self.log_prob({name: value})

    def to_weights(self, coords, latents):  # noqa: D102 - w = s * beta (non-centred)
        out, log_det = {}, []
        for name, beta in coords.items():
            if self._is_weight(name):
                log_s = self._log_scale(name, latents).expand_as(beta)
                out[name] = beta * log_s.exp()
                log_det.append(log_s.sum())
            else:
                out[name] = beta
        like = next(iter(coords.values()))
        return out, torch.stack(log_det).sum() if log_det else like.new_zeros(())

    def from_weights(self, params, latents):  # noqa: D102 - beta = w / s
        return {
            n: (w * torch.exp(-self._log_scale(n, latents)) if self._is_weight(n) else w)
            for n, w in params.items()
        }

    def set_latent_draws(self, draws: Mapping[str, Tensor]) -> None:
        """Keep the draws' mean and standard deviation of every log scale as its factor.

        Args:
            draws: Latent name (as ``latent_values()``) -> draws, shape (S, ...).
        """
        store = self._store()
        with torch.no_grad():
            for name, d in draws.items():
                base, kind = name.rsplit(".", 1)
                k = self._key(base) + "__" + kind
                sd = d.std(0) if d.shape[0] > 1 else torch.full_like(d[0], _INIT_SD)
                store[k].copy_(d.mean(0))
                store[k + "_rho"].copy_(torch.log(torch.expm1(sd.clamp_min(1e-6))))

    def unit_scales(self) -> dict[str, Tensor]:
        """Posterior median ``exp(E log lambda_k + E log tau)`` of every group's scale (the
        slab applied), by weight name; shape (out, 1, ...) per unit or the weight's shape.
        Small values are groups the data switched off."""
        latents = self.latent_values()
        return {
            n: self._log_scale(n, latents).detach().exp()
            for n, shape in self.shapes.items() if len(shape) >= 2
        }  # fmt: skip

    def kl_param(self, name, mu, sigma, generator=None):  # noqa: D102 - see the class docstring
        if not self._is_weight(name):
            prior = _normal(torch.zeros_like(mu), torch.full_like(mu, self.bias_scale))
            return kl_divergence(_normal(mu, sigma), prior).sum()
        loc, sd = self.latent_values(), self.latent_std()
        m = loc[name + ".local"] + loc[name + ".global"]
        v2 = sd[name + ".local"].square() + sd[name + ".global"].square()
        # E 1/s^2 and E log s of the (regularised) scale under the log-normal factor
        inv_var = torch.exp(-2 * m + 2 * v2)
        if self.slab_scale is None:
            e_log_s = m
        else:
            inv_var = inv_var + 1 / self.slab_scale**2
            log_c = math.log(self.slab_scale)
            e_log_s = (
                m
                + log_c
                - 0.5
                * expect_normal(
                    lambda u: torch.logaddexp(u.new_tensor(2 * log_c), 2 * u), m, v2.sqrt()
                )
            )
        e_log_s, inv_var = e_log_s.expand_as(mu), inv_var.expand_as(mu)
        kl_w = e_log_s - torch.log(sigma) + 0.5 * (sigma.square() + mu.square()) * inv_var - 0.5
        b = _resolve(self.scale_global, name)
        kl_z = []
        for kind, scale in ((".global", b), (".local", 1.0)):
            zm, zs = loc[name + kind], sd[name + kind]
            cross = expect_normal(lambda z, s=scale: _log_half_cauchy_of_log(z, s), zm, zs)
            kl_z.append((-_normal(zm, zs).entropy() - cross).sum())
        return kl_w.sum() + kl_z[0] + kl_z[1]

    def marginal_std(self, name: str) -> float:  # noqa: D102 - infinite (Cauchy tails)
        return math.inf if self._is_weight(name) else self.bias_scale

    def sample(self, params, n, generator=None):  # noqa: D102 - scales, then weights
        out = {}
        for name, p in params.items():
            like = p.detach()
            eps = draw("randn", (n, *like.shape), like, generator)
            if like.dim() < 2:
                out[name] = self.bias_scale * eps
                continue
            tau = _half_cauchy((n,), _resolve(self.scale_global, name), like, generator)
            lam = _half_cauchy((n, *self._group_shape(tuple(like.shape))), 1.0, like, generator)
            s = lam * tau.view(n, *([1] * like.dim()))
            if self.slab_scale is not None:
                c = self.slab_scale
                s = c * s / torch.sqrt(c**2 + s.square())
            out[name] = s * eps
        return out

    def sample_param(self, name, like, n, generator=None):  # noqa: D102 - see sample
        return self.sample({name: like}, n, generator)[name]

    def config(self) -> dict[str, Any]:
        scale = (
            dict(self.scale_global) if isinstance(self.scale_global, Mapping) else self.scale_global
        )
        return {
            "name": self.name, "scale_global": scale, "group": self.group,
            "slab_scale": self.slab_scale, "bias_scale": self.bias_scale,
        }  # fmt: skip


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
