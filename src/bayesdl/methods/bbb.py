"""Mean-field Gaussian variational inference: Bayes by Backprop (Blundell et al., 2015).

``q(theta) = prod_i N(mu_i, sigma_i^2)`` over the weights and biases of the chosen
``Linear``/``Conv`` layers; ``sigma = softplus(rho)``. The means are the model's own
parameters (so after fitting, the model holds the posterior mean); only ``rho`` is added.

Objective per example (the negative ELBO divided by N)::

    E_q[-log p(y | x, theta)]  +  beta * KL(q || p) / N

with the KL *summed* over every weight. Gradient estimators of the expected NLL:

* ``"reparam"``: one weight sample per minibatch, ``theta = mu + sigma * eps``;
* ``"local"``: local reparameterisation (Kingma et al., 2015): sample pre-activations,
  ``N(x mu, x^2 sigma^2)``, independently per example (lower variance);
* ``"flipout"`` (Wen et al., 2018): one perturbation per minibatch decorrelated across
  examples by random sign flips.

Prediction always draws S full weight samples (consistent across inputs), vectorised with
``torch.func.vmap`` over ``functional_call``; layers before the first stochastic one are
computed once.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn import functional as F

from bayesdl._checks import Rows, draw, draw_rows
from bayesdl.engine import Terms
from bayesdl.likelihoods import Likelihood
from bayesdl.methods._split import split_model, stacked_forward
from bayesdl.methods.base import BaseMethod, register_method
from bayesdl.methods.layers import Subset, layer_op, select_layers, subset_hparam
from bayesdl.priors import Prior
from bayesdl.types import ParamDict

Estimator = Literal["reparam", "local", "flipout"]


@register_method("vi")
class MeanFieldVI(BaseMethod):
    """Bayes by Backprop with a factorised Gaussian posterior.

    Args:
        model: The user's network (its parameters become the posterior means).
        likelihood: Observation model; ``Categorical()`` by default.
        prior: Weight prior; ``priors.Normal(1.0)`` by default. Its KL is closed-form when
            one exists, a Monte Carlo estimate otherwise.
        subset: ``"all"`` Linear/Conv layers, only the ``"last_layer"``, a list of module
            names, ``"lora"`` or a predicate ``(name, parameter) -> bool`` (every
            Linear/Conv layer owning a chosen parameter; see ``layers.Subset``). Other
            parameters are point estimates (no prior), or fixed where frozen.
        estimator: Gradient estimator for training: ``"reparam"``, ``"local"``, ``"flipout"``.
        init_scale: Initial posterior std as a fraction of ``1/sqrt(fan_in)``.
        kl_annealing_steps: Linearly warm the KL weight from 0 to 1 over this many steps.
        head: For non-Sequential models, the module holding every stochastic layer whose
            output is the model's output (the rest is computed once at prediction).

    References:
        Blundell et al., "Weight Uncertainty in Neural Networks", ICML 2015.
    """

    def __init__(
        self,
        model: nn.Module,
        likelihood: Likelihood | None = None,
        prior: Prior | None = None,
        subset: Subset = "all",
        estimator: Estimator = "reparam",
        init_scale: float = 0.1,
        kl_annealing_steps: int = 0,
        head: str | None = None,
    ) -> None:
        super().__init__(model, likelihood, prior)
        if estimator not in ("reparam", "local", "flipout"):
            raise ValueError(
                f"estimator must be 'reparam', 'local' or 'flipout', got {estimator!r}."
            )
        if not init_scale > 0:
            raise ValueError(f"init_scale must be positive, got {init_scale}.")
        if kl_annealing_steps < 0:
            raise ValueError(f"kl_annealing_steps must be >= 0, got {kl_annealing_steps}.")
        self.estimator = estimator
        self.kl_annealing_steps = kl_annealing_steps
        self.layers = select_layers(model, subset, "MeanFieldVI")
        self.names: list[str] = []  # variational parameter names, in model order
        rho = {}
        for lname, layer in self.layers.items():
            fan_in = layer.weight[0].numel()
            std = init_scale / math.sqrt(fan_in)
            for pname, p in layer.named_parameters(recurse=False):
                name = f"{lname}.{pname}" if lname else pname
                self.names.append(name)
                rho[name.replace(".", "__")] = nn.Parameter(
                    torch.full_like(p, math.log(math.expm1(std)))
                )
        self.rho = nn.ParameterDict(rho)
        stochastic = set(map(id, self.layers.values()))
        self.split = split_model(model, lambda m: id(m) in stochastic, head)
        subset_h = subset_hparam(subset, list(self.layers))
        self.hparams = {
            "subset": subset_h, "estimator": estimator, "init_scale": init_scale,
            "kl_annealing_steps": kl_annealing_steps, "head": head,
        }  # fmt: skip

    # -- the variational posterior -----------------------------------------------------------
    @property
    def per_example_noise(self) -> bool:  # type: ignore[override]
        """Whether training draws noise per example: ``"local"`` and ``"flipout"`` do."""
        return self.estimator != "reparam"

    def mean(self) -> ParamDict:
        """Posterior means (the model's own parameters), name -> tensor."""
        params = dict(self.model.named_parameters())
        return {n: params[n] for n in self.names}

    def std(self) -> ParamDict:
        """Posterior standard deviations ``softplus(rho)``, name -> tensor."""
        return {n: F.softplus(self.rho[n.replace(".", "__")]) for n in self.names}

    def sample_params(self, n: int, generator: torch.Generator | None = None) -> ParamDict:
        """Draw ``n`` weight samples: name -> tensor of shape (n, *param.shape).

        Only the variational parameters are returned; the others are point estimates.

        Args:
            n: Number of samples.
            generator: Random generator (reproducible samples).
        """
        mean, std = self.mean(), self.std()
        out = {}
        for name in self.names:
            mu = mean[name]
            eps = draw("randn", (n, *mu.shape), mu, generator)
            out[name] = mu + std[name] * eps
        return out

    def weight_posterior(self) -> dict[str, tuple[Tensor, Tensor]]:
        """``(mu, sigma)`` of every variational parameter, name -> detached tensors."""
        mean, std = self.mean(), self.std()
        return {n: (mean[n].detach(), std[n].detach()) for n in self.names}

    @torch.no_grad()
    def fix_weights_at_zero(self, keep: dict[str, Tensor]) -> None:
        """Set ``mu = 0`` and ``sigma = 0`` (``rho = -inf``) where ``keep`` is ``False``.

        The KL of a zero-width weight is infinite, so a pruned method is for prediction,
        not for further fitting.

        Args:
            keep: Parameter name -> bool mask of its shape.
        """
        mean = self.mean()
        for name, mask in keep.items():
            drop = ~mask.to(mean[name].device)
            mean[name][drop] = 0.0
            self.rho[name.replace(".", "__")][drop] = -math.inf

    def kl(self, generator: torch.Generator | None = None) -> Tensor:
        """``KL(q || p)`` summed over every variational weight.

        Args:
            generator: Random generator of a Monte Carlo KL (priors without a closed form).
        """
        return self.prior.kl(self.mean(), self.std(), generator)

    # -- training ----------------------------------------------------------------------------
    def objective(self, x, y, n_data, generator=None, state=None) -> Terms:
        """Expected NLL (one draw, per ``estimator``) and the weighted ``KL / N``.

        With ``kl_annealing_steps`` the KL weight grows linearly over the first steps of a
        ``fit`` (``state.step``); outside ``fit`` (``state=None``) it is 1. The per-example
        noise of ``"local"`` and ``"flipout"`` is drawn for the whole global minibatch when
        ``state.rows`` says this process holds a part of it (``_checks.draw_rows``).

        Args and return: as ``BaseMethod.objective`` (``x``, ``y``, ``n_data``, ``generator``, ``state``).
        """
        if self.estimator == "reparam":
            sample = {k: v[0] for k, v in self.sample_params(1, generator).items()}
            forward = lambda inp: functional_call(self.model, sample, (inp,))  # noqa: E731
            output = self._forward_checked(x, y, forward)
        else:
            with self._noise_hooks(generator, None if state is None else state.rows):
                output = self._forward_checked(x, y)
        weight = 1.0
        if self.kl_annealing_steps and state is not None:
            weight = min(1.0, (state.step + 1) / self.kl_annealing_steps)
        return Terms(self.likelihood.nll(output, y), weight * self.kl(generator) / n_data)

    @contextmanager
    def _noise_hooks(self, gen: torch.Generator | None, rows: Rows | None) -> Iterator[None]:
        """Add local-reparameterisation or Flipout noise, drawn from ``gen``, to each
        layer's mean output (per-example noise: ``rows`` of the global minibatch's)."""
        std = self.std()

        def randn(shape, like):  # one draw per minibatch
            return draw("randn", shape, like, gen)

        def per_example(shape, like):
            return draw_rows("randn", shape, like, gen, rows)

        def sign(shape, like):
            return per_example(shape, like).sign()

        def hook_for(lname: str):
            prefix = f"{lname}." if lname else ""
            s_w, s_b = std[prefix + "weight"], std.get(prefix + "bias")

            def hook(module: nn.Module, inputs: tuple, out: Tensor) -> Tensor:
                x = inputs[0]
                if self.estimator == "local":
                    var = layer_op(module, x * x, s_w * s_w, None if s_b is None else s_b * s_b)
                    return out + var.clamp_min(1e-16).sqrt() * per_example(out.shape, out)
                # flipout: signs per example and channel, broadcast over spatial positions
                in_shape = (x.shape[0], x.shape[1]) + (1,) * (x.dim() - 2)
                out_shape = (out.shape[0], out.shape[1]) + (1,) * (out.dim() - 2)
                delta_w = s_w * randn(s_w.shape, s_w)
                pert = layer_op(module, x * sign(in_shape, x), delta_w, None) * sign(
                    out_shape, out
                )
                if s_b is not None:
                    bshape = (1, -1) + (1,) * (out.dim() - 2)
                    pert = pert + (s_b * randn(s_b.shape, s_b)).view(bshape)
                return out + pert

            return hook

        handles = [m.register_forward_hook(hook_for(n)) for n, m in self.layers.items()]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    # -- prediction --------------------------------------------------------------------------
    def _sample_outputs(self, x, plan, generator, context):
        args = self.split.prefix(x)
        return torch.cat(
            [
                stacked_forward(self.split, args, self.sample_params(s, generator))
                for s in plan.chunks()
            ]
        )
