"""Spectral-normalised neural Gaussian process, SNGP (Liu et al., 2020).

A deterministic network whose uncertainty grows with the distance from the training data:

* **distance-preserving features**: every hidden ``nn.Linear`` / ``nn.Conv`` layer's
  weight is spectral-normalised, ``W / sigma_max(W)`` with ``sigma_max`` tracked by one
  power iteration per training step (Miyato et al., 2018), which bounds the feature map's
  Lipschitz constant so that inputs far from the data cannot be mapped onto the data's
  features. It is the computation of torch's
  ``torch.nn.utils.parametrizations.spectral_norm``, applied through
  ``torch.func.functional_call`` instead of a parametrisation registered on the model:
  the user's network is not modified, and the method pickles (torch refuses to pickle a
  parametrised module);
* **a Gaussian-process output layer** replacing the network's last ``nn.Linear``: random
  Fourier features ``phi(h) = sqrt(2 / D) cos(W h / l + b)`` (``W ~ N(0, I)``,
  ``b ~ U(0, 2 pi)``, fixed; Rahimi & Recht, 2007) approximate an RBF kernel of
  lengthscale ``l`` on the features ``h``, and the output is ``f = beta^T phi(h)`` with
  ``beta ~ N(0, I / prior_precision)``;
* **a Laplace posterior** for ``beta``: training finds the MAP ``beta`` with the rest of
  the network; after training the posterior precision is accumulated over one epoch of the
  training data, ``P_k = prior_precision I + sum_i w_ik phi_i phi_i^T`` with
  ``w_ik = p_ik (1 - p_ik)`` per class ``k`` for the Categorical likelihood (Liu et al.'s
  eq. 9: the Hessian's class blocks, cross-class terms dropped) and ``w_i = 1 / sigma^2``,
  one matrix shared by every output, for the Gaussian likelihood (then exactly Bayesian
  linear regression on ``phi``).

Far from the data ``phi`` is nearly orthogonal to every training feature, so
``phi^T P^{-1} phi`` returns to the prior variance: the logits spread out and the
predictive entropy rises in every direction, where a ReLU network's softmax stays confident
(Hein et al., 2019).

Hyperparameters: ``head`` (the replaced layer), ``random_features`` (D, or ``None`` for
the identity map: a Bayesian linear last layer), ``lengthscale``, ``prior_precision``,
``spectral_norm`` and ``seed`` (random features and power-iteration start).

References:
    Liu et al., "Simple and Principled Uncertainty Estimation with Deterministic Deep
    Learning via Distance Awareness", NeurIPS 2020.
    Rahimi & Recht, "Random Features for Large-Scale Kernel Machines", NeurIPS 2007.
    Miyato et al., "Spectral Normalization for Generative Adversarial Networks", ICLR 2018.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from bayesdl import distributed
from bayesdl.engine import FitState, Terms
from bayesdl.likelihoods import Categorical, Gaussian, Likelihood
from bayesdl.methods.base import BaseMethod, register_method
from bayesdl.predictive import Predictive
from bayesdl.priors import Prior
from bayesdl.runtime import eval_mode
from bayesdl.types import FitReport

__all__ = ["SNGP"]

NORMALISED_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""Layer types whose weights ``SNGP`` spectral-normalises."""

POWER_ITERATIONS_AT_START = 15
"""Power iterations run at construction, as torch's ``spectral_norm`` does."""


@register_method("sngp")
class SNGP(BaseMethod):
    """SNGP: spectral-normalised features and a random-feature GP output layer.

    **How it attaches to your network.** The network's last ``nn.Linear`` (or the one named
    ``head``) is replaced by the GP layer *while the method runs it*: a forward hook,
    registered only for the duration of each ``fit`` step / ``predict`` call, returns the
    GP output in place of that layer's output, so the layer's input ``h`` is the feature
    vector and the layer's own weights are left unused (they are not trained and not
    regularised). The GP layer's parameters (``gp_weight``, the random features, the
    posterior precision) live on the method, not in your model. The head's output must be
    the model's output (nothing may follow it). The hidden layers' spectral normalisation
    is applied on the fly too (``torch.func.functional_call`` with the normalised weights;
    the power-iteration vectors ``sn_u<i>`` are the method's buffers), so the model's
    modules, parameters and ``state_dict`` keys are never changed: training updates the
    raw weights ``W``, and ``model(x)`` on its own uses them un-normalised with the
    original last layer. Use ``predict`` (or ``features``) for the SNGP network.
    ``spectral_norm=False`` trains the features without the normalisation.

    **Predictions** sample the GP output: each of the S draws is a posterior draw
    ``beta_s ~ N(beta_map, P^{-1})`` of the output weights, shared by every input (so the
    draws are functions, and ``predict`` of a subset of inputs is the subset of the
    predictions); the logits are ``beta_s^T phi(h)``. Sampling rather than Liu et al.'s
    mean-field approximation ``softmax(mean / sqrt(1 + pi var / 8))`` keeps the S outputs
    that every ``Predictive`` summary (mutual information, BALD, variance) needs, and is
    exact for the Gaussian posterior up to Monte Carlo error.

    The posterior precision is accumulated over one pass of the training data after the
    last epoch, at the final weights (Liu et al. accumulate it during the last epoch,
    while the weights still move; the extra pass costs one forward epoch and gives the
    Laplace approximation at the trained mode itself).

    Args:
        model: The user's network, ending in an ``nn.Linear`` (or with ``head`` naming one).
        likelihood: ``Categorical()`` (default) or ``Gaussian(sigma)``.
        prior: Prior of the hidden layers' weights (weight decay of the MAP training);
            ``priors.Normal(1.0)`` by default. The GP layer's own prior is
            ``N(0, I / prior_precision)``.
        head: Dotted name of the ``nn.Linear`` the GP layer replaces; ``None``: the model's
            last ``nn.Linear``.
        random_features: Number D of random Fourier features; ``None``: the identity map
            ``phi(h) = h`` (a Bayesian linear last layer, a linear kernel).
        lengthscale: Lengthscale ``l`` of the RBF kernel on the features.
        prior_precision: Precision of the GP layer's Gaussian prior on ``beta`` (the
            kernel's amplitude is ``1 / prior_precision``).
        spectral_norm: Spectral-normalise the hidden layers (on the fly, see above).
        seed: Seed of the random features, the GP layer's initial weights and the power
            iteration's starting vectors.

    Raises:
        ValueError: On a model without an ``nn.Linear`` head, a ``head`` that is not an
            ``nn.Linear`` submodule, a likelihood other than Categorical / Gaussian, or a
            non-positive ``random_features``, ``lengthscale`` or ``prior_precision``.

    Examples:
        >>> import torch, bayesdl as bdl
        >>> _ = torch.manual_seed(0)
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(),
        ...                           torch.nn.Linear(16, 3))
        >>> sngp = bdl.SNGP(net, random_features=64)
        >>> x, y = torch.randn(32, 2), torch.randint(0, 3, (32,))
        >>> _ = sngp.fit((x, y), epochs=5, progress=False)
        >>> sngp.predict(x[:4], samples=10).samples.shape
        torch.Size([10, 4, 3])

    References:
        Liu et al., "Simple and Principled Uncertainty Estimation with Deterministic Deep
        Learning via Distance Awareness", NeurIPS 2020.
    """

    validate_on_network = True  # no posterior until the precision is accumulated

    def default_lr(self) -> float:
        """Adam's 1e-2: the GP layer's output weights must grow to make confident logits
        from bounded random features. On an MNIST validation split (MLP 784-200-10, 8,000
        training and 2,000 validation images, 3 epochs) the validation NLL was 0.99, 0.42
        and 0.32 at 1e-3, 3e-3 and 1e-2."""
        return 1e-2

    def __init__(
        self,
        model: nn.Module,
        likelihood: Likelihood | None = None,
        prior: Prior | None = None,
        *,
        head: str | None = None,
        random_features: int | None = 1024,
        lengthscale: float = 1.0,
        prior_precision: float = 1.0,
        spectral_norm: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(model, likelihood, prior)
        if type(self.likelihood) not in (Categorical, Gaussian):
            raise ValueError(
                "SNGP supports the Categorical and Gaussian likelihoods, got "
                f"{type(self.likelihood).__name__}."
            )
        if random_features is not None and (
            isinstance(random_features, bool)
            or not isinstance(random_features, int)
            or random_features < 1
        ):
            raise ValueError(
                f"random_features must be a positive integer or None, got {random_features!r}."
            )
        for arg, value in (("lengthscale", lengthscale), ("prior_precision", prior_precision)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{arg} must be a positive number, got {value!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
        self.head_name = self._find_head(model, head)
        layer = model.get_submodule(self.head_name)
        device, dtype = self.device, self.dtype
        width = layer.in_features
        dim = width if random_features is None else random_features
        outputs = layer.out_features
        g = torch.Generator().manual_seed(seed)
        if random_features is not None:
            rff_w = torch.randn(dim, width, generator=g, dtype=torch.float64) / lengthscale
            rff_b = torch.rand(dim, generator=g, dtype=torch.float64) * (2 * math.pi)
            self.register_buffer("rff_weight", rff_w.to(device, dtype))
            self.register_buffer("rff_bias", rff_b.to(device, dtype))
        bound = 1.0 / math.sqrt(dim)  # nn.Linear's default initialisation
        init = (torch.rand(outputs, dim, generator=g, dtype=torch.float64) * 2 - 1) * bound
        self.gp_weight = nn.Parameter(init.to(device, dtype))
        blocks = outputs if isinstance(self.likelihood, Categorical) else 1
        self.register_buffer("precision_chol", torch.zeros(blocks, dim, dim, device=device,
                                                           dtype=dtype))  # fmt: skip
        self.register_buffer("n_data", torch.zeros((), dtype=torch.long, device=device))
        self.normalised = [
            name for name, m in model.named_modules()
            if spectral_norm and isinstance(m, NORMALISED_LAYERS) and name != self.head_name
        ]  # fmt: skip
        for i, name in enumerate(self.normalised):
            rows = model.get_submodule(name).weight.shape[0]
            u = nn.functional.normalize(torch.randn(rows, generator=g, dtype=torch.float64), dim=0)
            self.register_buffer(f"sn_u{i}", u.to(device, dtype))
        with torch.no_grad():
            for _ in range(POWER_ITERATIONS_AT_START):
                self._normalised_weights(update=True)
        self.hparams = {
            "head": head, "random_features": random_features, "lengthscale": float(lengthscale),
            "prior_precision": float(prior_precision), "spectral_norm": bool(spectral_norm),
            "seed": seed,
        }  # fmt: skip

    @staticmethod
    def _find_head(model: nn.Module, head: str | None) -> str:
        if head is None:
            linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
            if not linear:
                raise ValueError(
                    "SNGP replaces the model's last nn.Linear by its GP layer, but the model "
                    "has none; add one as the output layer or name it with head=."
                )
            return linear[-1]
        try:
            layer = model.get_submodule(head)
        except AttributeError as err:
            raise ValueError(f"head={head!r} is not a submodule of the model.") from err
        if not isinstance(layer, nn.Linear):
            raise ValueError(
                f"head={head!r} is a {type(layer).__name__}; SNGP replaces an nn.Linear layer."
            )
        return head

    # -- the GP layer --------------------------------------------------------------------------
    @property
    def prior_precision(self) -> float:
        """Precision of the GP layer's Gaussian prior on its weights ``beta``."""
        return self.hparams["prior_precision"]

    def _phi(self, h: Tensor) -> Tensor:
        if not hasattr(self, "rff_weight"):
            return h
        scale = math.sqrt(2.0 / self.rff_weight.shape[0])
        return torch.cos(h @ self.rff_weight.T.to(h.dtype) + self.rff_bias.to(h.dtype)) * scale

    @contextmanager
    def _gp_head(self, seen: list[tuple[Tensor, Tensor]] | None = None) -> Iterator[None]:
        """Within the block the head layer's output is the GP layer's mean output; its
        features and output are appended to ``seen``."""

        def hook(_module: nn.Module, args: tuple[Any, ...], _output: Tensor) -> Tensor:
            phi = self._phi(args[0])
            out = phi @ self.gp_weight.T.to(phi.dtype)
            if seen is not None:
                seen.append((phi, out))
            return out

        handle = self.model.get_submodule(self.head_name).register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def _normalised_weights(self, *, update: bool) -> dict[str, Tensor]:
        """``name.weight -> W / sigma_max(W)`` for every normalised layer (Miyato et al.).

        ``sigma_max`` is estimated as ``||W^T u||`` from the layer's left singular-vector
        estimate ``u`` (a buffer); ``update`` first runs one power iteration on ``u``, as
        torch's ``spectral_norm`` does at every training forward pass. Gradients flow
        through ``sigma`` into ``W`` (``d sigma / d W = u v^T``), ``u`` held fixed.
        """
        weights = {}
        for i, name in enumerate(self.normalised):
            w = self.model.get_submodule(name).weight
            mat = w.flatten(1)
            u = getattr(self, f"sn_u{i}")
            if update:
                with torch.no_grad():
                    m = mat.detach().to(u.dtype)
                    v = nn.functional.normalize(m.T @ u, dim=0, eps=1e-12)
                    u.copy_(nn.functional.normalize(m @ v, dim=0, eps=1e-12))
            sigma = torch.linalg.vector_norm(mat.T @ u.clone().to(mat.dtype))
            weights[f"{name}.weight"] = w / sigma
        return weights

    def _network(self, x: Tensor) -> Tensor:
        """The model's forward pass with its hidden layers spectral-normalised."""
        weights = self._normalised_weights(update=self.training and torch.is_grad_enabled())
        return functional_call(self.model, weights, (x,)) if weights else self.model(x)

    def _features_and_mean(self, x: Tensor) -> tuple[Tensor, Tensor]:
        seen: list[tuple[Tensor, Tensor]] = []
        with self._gp_head(seen):
            out = self._network(x)
        if len(seen) != 1 or out is not seen[0][1]:
            raise ValueError(
                f"SNGP needs the output of head {self.head_name!r} to be the model's output, "
                "computed once per forward pass; name the output layer with head=."
            )
        return seen[0]

    def features(self, x: Tensor) -> Tensor:
        """The GP layer's features ``phi(h(x))`` (random Fourier features of the head's input).

        Args:
            x: Inputs, shape (N, ...).

        Returns:
            Tensor of shape (N, D).
        """
        with torch.no_grad(), eval_mode(self):
            return self._features_and_mean(self.to_model(x))[0]

    def _check_fitted(self) -> None:
        if int(self.n_data) == 0:
            raise ValueError("SNGP has no posterior yet: call fit(data) first.")

    def posterior_covariance(self) -> Tensor:
        """Posterior covariance of the GP layer's weights ``beta``, shape (K, D, D).

        K is the number of classes for the Categorical likelihood (one matrix per class's
        weight row) and 1 for the Gaussian likelihood (shared by every output).

        Raises:
            ValueError: Before ``fit``.
        """
        self._check_fitted()
        return torch.cholesky_inverse(self.precision_chol)

    def sample_params(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Posterior draws of the GP layer's weights.

        Args:
            n: Number of draws.
            generator: Random generator for the draws.

        Returns:
            ``{"gp_weight": tensor of shape (n, C, D)}``.
        """
        self._check_fitted()
        return {"gp_weight": self.gp_weight.detach() + self._deltas(n, generator).mT}

    def _deltas(self, n: int, generator: torch.Generator | None) -> Tensor:
        """``beta_s - beta_map`` for ``n`` draws, shape (n, D, C)."""
        chol = self.precision_chol
        blocks, dim, _ = chol.shape
        per = self.gp_weight.shape[0] // blocks  # outputs per precision block
        z = torch.randn(blocks, dim, n * per, generator=generator, device=chol.device,
                        dtype=chol.dtype)  # fmt: skip
        delta = torch.linalg.solve_triangular(chol.mT, z, upper=True)  # L^-T z ~ N(0, P^-1)
        return delta.view(blocks, dim, n, per).permute(2, 1, 0, 3).reshape(n, dim, -1)

    # -- training ------------------------------------------------------------------------------
    def objective(
        self,
        x: Tensor,
        y: Tensor,
        n_data: int,
        generator: torch.Generator | None = None,
        state: FitState | None = None,
    ) -> Terms:
        """Mean NLL of the GP layer's mean output plus the priors' term per example.

        Args:
            x: Inputs, shape (B, ...).
            y: Targets, shape (B,) labels or (B, D) regression targets.
            n_data: Size of the training set N.
            generator: Unused (the objective has no noise beyond the model's own dropout).
            state: The engine's state inside ``fit``.
        """
        out = self._features_and_mean(x)[1]
        self.likelihood.check_target(out, y)
        head = self.head_name + "."  # the replaced layer's parameters are unused
        hidden = {
            n: p for n, p in self.model.named_parameters()
            if self.head_name and not n.startswith(head)
        }  # fmt: skip
        beta = self.gp_weight
        log_prior = self.prior.log_prob(hidden) - 0.5 * self.prior_precision * beta.square().sum()
        return Terms(self.likelihood.nll(out, y), -log_prior / n_data)

    def current_predictive(
        self, x: Tensor, samples: int, generator: torch.Generator | None = None
    ) -> Predictive:
        """The GP layer's mean output (what ``fit`` validates before the posterior exists).

        Args:
            x: Inputs on the model's device.
            samples: Unused.
            generator: Unused.
        """
        with eval_mode(self), torch.no_grad():
            return self.likelihood.predictive(self._features_and_mean(x)[1].unsqueeze(0))

    def on_fit_end(self, state: FitState | None, report: FitReport) -> None:
        """Accumulate the GP layer's posterior precision over one pass of the training data.

        Args:
            state: The fit's ``engine.FitState``.
            report: The fit's ``FitReport``.
        """
        chol = self.precision_chol
        blocks, dim, _ = chol.shape
        prior = torch.eye(dim, device=chol.device, dtype=chol.dtype) * self.prior_precision
        precision = chol.new_zeros(blocks, dim, dim)  # the data's part (this rank's shard)
        with torch.no_grad(), eval_mode(self):
            for x, _y in state.batches.epoch(state.generator):
                phi, out = self._features_and_mean(self.to_model(x))
                phi, out = phi.reshape(-1, dim).to(chol.dtype), out.reshape(-1, out.shape[-1])
                if isinstance(self.likelihood, Categorical):
                    p = out.to(chol.dtype).softmax(-1)
                    weights = (p * (1 - p)).T  # (C, B)
                else:
                    sigma = float(self.likelihood.sigma.detach())
                    weights = phi.new_full((1, phi.shape[0]), sigma**-2)
                scaled = phi * weights.sqrt().unsqueeze(-1)  # (K, B, D)
                precision += scaled.mT @ scaled
            precision = prior + distributed.all_reduce_sum(precision)  # every rank's data
            chol.copy_(torch.linalg.cholesky(precision))
            self.n_data.fill_(state.batches.n_data)

    # -- prediction ----------------------------------------------------------------------------
    def _sample_outputs(self, x, plan, generator, context):
        self._check_fitted()
        phi, mean = self._features_and_mean(x)
        outs = []
        for s in plan.chunks():
            delta = self._deltas(s, generator).to(phi.dtype)  # (s, D, C)
            outs.append(mean.unsqueeze(0) + torch.einsum("...d,sdc->s...c", phi, delta))
        return torch.cat(outs)
