"""The horseshoe prior, whose scales are latent variables the prior owns."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.distributions import kl_divergence
from torch.nn import functional as F

from bayesdl._checks import draw
from bayesdl.priors.base import (
    HALF_LOG_2PI,
    Prior,
    Scale,
    check_prefixes,
    check_scale,
    expect_normal,
    normal_dist,
    resolve_scale,
)

__all__ = ["Horseshoe", "Group"]


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
        check_scale(scale_global, "scale_global")
        if group not in ("unit", "weight"):
            raise ValueError(f"Horseshoe group must be 'unit' or 'weight', got {group!r}.")
        if slab_scale is not None:
            check_scale(slab_scale, "slab_scale")
        check_scale(bias_scale, "bias_scale")
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
        check_prefixes(self.scale_global, params, "scale_global")
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
        b = resolve_scale(self.scale_global, name)
        return (_log_half_cauchy_of_log(latents[name + ".global"], b)
                + _log_half_cauchy_of_log(latents[name + ".local"], 1.0).sum())  # fmt: skip

    def _log_normal(self, value: Tensor, log_s: Tensor) -> Tensor:
        return (-0.5 * (value * torch.exp(-log_s)).square() - log_s - HALF_LOG_2PI).sum()

    def log_joint(self, params, latents):  # noqa: D102 - log p(w | z) + log p(z)
        total = []
        for name, value in params.items():
            if not self._is_weight(name):
                total.append(normal_dist(0.0, self.bias_scale).log_prob(value).sum())
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
            prior = normal_dist(torch.zeros_like(mu), torch.full_like(mu, self.bias_scale))
            return kl_divergence(normal_dist(mu, sigma), prior).sum()
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
        b = resolve_scale(self.scale_global, name)
        kl_z = []
        for kind, scale in ((".global", b), (".local", 1.0)):
            zm, zs = loc[name + kind], sd[name + kind]
            cross = expect_normal(lambda z, s=scale: _log_half_cauchy_of_log(z, s), zm, zs)
            kl_z.append((-normal_dist(zm, zs).entropy() - cross).sum())
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
            tau = _half_cauchy((n,), resolve_scale(self.scale_global, name), like, generator)
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
