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

from bayesdl.priors.base import Prior, from_config, unit_scales
from bayesdl.priors.base import Scale as Scale
from bayesdl.priors.base import expect_normal as expect_normal
from bayesdl.priors.heavy_tails import GammaPrecision, Laplace, ScaleMixture, StudentT
from bayesdl.priors.horseshoe import Group as Group
from bayesdl.priors.horseshoe import Horseshoe
from bayesdl.priors.normal import Centered, Normal

__all__ = [
    "Prior", "Normal", "ScaleMixture", "Laplace", "Centered", "GammaPrecision", "StudentT",
    "Horseshoe", "from_config", "unit_scales",
]  # fmt: skip
