"""The Laplace approximation (MacKay, 1992; Daxberger et al., 2021, "Laplace Redux").

A Gaussian around the MAP weights, ``N(theta_MAP, (GGN + delta I)^-1)``, where the
generalised Gauss-Newton ``GGN = sum_n J_n^T Lambda_n J_n`` uses the Jacobian ``J_n`` of the
network output with respect to the chosen weights and the Hessian ``Lambda_n`` of the
negative log-likelihood in the output: ``diag(p) - p p^T`` for ``Categorical`` (softmax)
and ``I / sigma^2`` for ``Gaussian`` (with the learned sigma when ``sigma=None``).

Hyperparameters:

* ``subset``: which weights are Bayesian (``"last_layer"``: the last ``nn.Linear``; its
  input features are computed once, by the deterministic prefix of the network);
* ``hessian``: ``"full"`` (exact GGN, P x P), ``"diag"`` (its diagonal) or ``"kfac"``
  (Kronecker factors per ``nn.Linear``/``nn.Conv2d``, Martens & Grosse 2015; "expand"
  weight sharing for convolutions, Eschenhagen et al. 2023);
* ``prior_precision`` ``delta``: maximiser of the Laplace log evidence (``"marglik"``),
  best validation NLL on a grid (``"gridsearch"``), the MAP prior's (``"prior"``) or a
  number. The MAP weights stay those of the training prior (post-hoc tuning, as in
  Laplace Redux).
* ``pred_type``: ``"glm"`` (the linearised network ``f(x, theta_MAP) + J(x) (theta -
  theta_MAP)``, recommended) or ``"nn"`` (the network at sampled weights).

Every curvature type is held in its eigenbasis, ``GGN = U diag(lambda) U^T``, so the
posterior for any ``delta`` costs nothing more: ``Sigma = U diag(1 / (lambda + delta)) U^T``.
The factors are buffers whose shapes follow from the model and ``subset``/``hessian``, so
``bayesdl.save``/``load`` restore a fitted approximation exactly.

Prediction draws S weight samples ``theta_s = theta_MAP + U diag((lambda + delta)^-1/2) z_s``
(the same S draws for every input). For ``"glm"`` the S outputs ``f(x) + J(x) (theta_s -
theta_MAP)`` are one ``vmap`` of forward-mode ``jvp`` over the draws: exact samples of the
linearised Gaussian ``N(f(x), J Sigma J^T)`` over the outputs, jointly consistent across
inputs. The closed forms are ``glm_moments`` (mean and covariance of the outputs; for
regression the predictive variance is ``diag(J Sigma J^T) + sigma^2``) and, for
classification, ``predict_probit`` (the probit approximation
``softmax(f / sqrt(1 + pi/8 diag(J Sigma J^T)))``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, jvp, vmap
from torch.nn import functional as F

from bayesdl import distributed
from bayesdl._checks import check_model_input, check_positive_int, draw
from bayesdl.engine import Batches, FitState, make_batches
from bayesdl.inputs import is_dict_input, map_tensors, num_examples, split_inputs, take
from bayesdl.likelihoods import Categorical, Gaussian, Likelihood
from bayesdl.memory import eigh_bytes
from bayesdl.methods._split import split_model, stacked_forward
from bayesdl.methods.base import BaseMethod, register_method
from bayesdl.methods.layers import WEIGHT_LAYERS, Subset, select_layers, subset_hparam
from bayesdl.priors import Normal, Prior
from bayesdl.progress import progress_bar
from bayesdl.types import DataLike, FitReport, ParamDict

Hessian = Literal["full", "diag", "kfac"]
"""GGN structure: ``"full"`` (P x P), ``"diag"`` (P), ``"kfac"`` (two factors per layer)."""
PredType = Literal["glm", "nn"]
"""``"glm"``: linearised network (recommended); ``"nn"``: network at sampled weights."""
PriorPrecision = Literal["marglik", "gridsearch", "prior"] | float
"""``"marglik"``: maximise the log evidence; ``"gridsearch"``: lowest NLL on ``val_data``
over ``GRID``; ``"prior"``: ``1 / scale^2`` of the ``Normal`` training prior; a number."""

GRID = torch.logspace(-4, 4, 33, dtype=torch.float64)
"""Prior precisions tried by ``prior_precision="gridsearch"`` (four per decade)."""
GRID_SAMPLES = 100
"""Posterior draws per validation prediction in the grid search with ``pred_type="nn"``
(fixed seed 0); ``"glm"`` uses the closed form (probit for classification)."""
_MARGLIK_START = torch.linspace(-6 * math.log(10), 6 * math.log(10), 49, dtype=torch.float64)


def _check_kfac_layer(name: str, layer: nn.Module) -> None:
    conv_ok = (
        isinstance(layer, nn.Conv2d)
        and layer.groups == 1
        and layer.padding_mode == "zeros"
        and not isinstance(layer.padding, str)
    )
    if not (isinstance(layer, nn.Linear) or conv_ok):
        raise ValueError(
            f"hessian='kfac' supports nn.Linear and nn.Conv2d (groups=1, integer zero padding); "
            f"layer {name!r} is {layer!r}. Use hessian='diag' or hessian='full' for it, or "
            "subset='last_layer'."
        )


def _tied_names(
    model: nn.Module, layers: dict[str, nn.Module]
) -> tuple[list[str], dict[str, list[nn.Module]]]:
    """The Bayesian parameters of ``layers`` under their model names, each once, and the
    modules using each of them.

    A tied (shared) parameter, such as a language model's output layer sharing the input
    embedding's matrix, is one parameter: ``named_parameters`` lists it once, under the
    name of its first owner, and its GGN takes every use into account (the Jacobians
    differentiate the network through all the modules holding it).
    """
    canonical = {id(p): n for n, p in model.named_parameters()}  # a shared one: its first name
    names = list(dict.fromkeys(
        canonical[id(p)] for layer in layers.values() for p in layer.parameters(recurse=False)
    ))  # fmt: skip
    users: dict[str, list[nn.Module]] = {n: [] for n in names}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if canonical[id(p)] in users:
                users[canonical[id(p)]].append(module)
    return names, users


def _check_kfac_untied(names: list[str], users: dict[str, list[nn.Module]]) -> None:
    tied = [n for n in names if len(users[n]) > 1]
    if tied:
        kinds = [type(m).__name__ for m in users[tied[0]]]
        raise ValueError(
            f"hessian='kfac' cannot cover the tied parameter {tied[0]!r} (shared by the "
            f"modules {kinds}): the curvature of a shared weight is not one Kronecker "
            "product; use hessian='diag' or 'full' (they include every use), or a subset "
            "without it."
        )


class _Curvature(nn.Module):
    """The GGN in an orthonormal eigenbasis: ``GGN = U diag(eigenvalues()) U^T``.

    Eigen-coordinates are flat vectors of length P in the curvature's own order; parameter
    coordinates are the subset parameters flattened in model order.
    """

    def reset(self) -> None:
        """Forget partial sums (a new ``fit_posterior`` starts from zero)."""
        self._sums = None  # running sums of the current fit_posterior

    def update(self, method: Laplace, args: tuple, y: Tensor) -> Tensor:
        """Add one batch's GGN to ``_sums``; return the network outputs (B, K)."""
        raise NotImplementedError

    def finish(self, n_data: int) -> None:
        """Turn the accumulated sums into the stored eigen-decomposition."""

    def reduce_sums(self) -> None:
        """Sum the partial sums over the ranks of a process group (``bayesdl.distributed``)."""
        if distributed.is_active():
            self._sums = distributed.all_reduce_sum(self._sums)

    def eigenvalues(self) -> Tensor:
        """GGN eigenvalues, shape (P,), in eigen-coordinate order."""
        raise NotImplementedError

    def to_params(self, z: Tensor) -> Tensor:
        """``U z`` for rows ``z`` (..., P): eigen- to parameter coordinates."""
        raise NotImplementedError

    def to_eigen(self, j: Tensor) -> Tensor:
        """``j U`` for rows ``j`` (..., P): parameter to eigen-coordinates."""
        raise NotImplementedError

    def marginal_variance(self, inv_spectrum: Tensor) -> Tensor:
        """``diag(U diag(inv_spectrum) U^T)``, shape (P,), parameter order."""
        raise NotImplementedError


class _Dense(_Curvature):
    """Full or diagonal GGN from per-example Jacobians (torch.func ``vmap(jacrev)``)."""

    def __init__(self, method: Laplace, diag: bool) -> None:
        super().__init__()
        p = method.num_params
        like = next(iter(method.mean().values()))
        self.diag = diag
        if diag:
            self.register_buffer("ggn_diag", like.new_zeros(p))
        else:
            self.register_buffer("eigvals", like.new_zeros(p))
            self.register_buffer("eigvecs", like.new_zeros(p, p))
        self.reset()

    def update(self, method, args, y):
        out, jac = method._jacobian(args)
        method.likelihood.check_target(out, y)
        m = torch.einsum("bkp,bkc->bcp", jac, method._loss_hessian_sqrt(out))  # (L^T J)
        if self.diag:
            part = m.square().sum((0, 1))
        else:
            part = torch.einsum("bcp,bcq->pq", m, m)
        if self._sums is None:
            self._sums = part
        else:
            self._sums += part  # in place: two P x P matrices at most, not three
        return out

    def finish(self, n_data):
        if self.diag:
            self.ggn_diag.copy_(self._sums)
        else:
            vals, vecs = torch.linalg.eigh(self._sums)
            self.eigvals.copy_(vals.clamp_min(0.0))  # PSD up to rounding
            self.eigvecs.copy_(vecs)
        self.reset()

    def eigenvalues(self):
        return self.ggn_diag if self.diag else self.eigvals

    def to_params(self, z):
        return z if self.diag else z @ self.eigvecs.T

    def to_eigen(self, j):
        return j if self.diag else j @ self.eigvecs

    def marginal_variance(self, inv_spectrum):
        return inv_spectrum if self.diag else self.eigvecs.square() @ inv_spectrum


class _KFAC(_Curvature):
    """Per layer ``GGN ~ G kron A`` on the weights augmented with the bias, ``[W | b]``.

    ``A = sum_{n,t} a a^T / (N T)`` over layer inputs ``a`` (with a 1 for the bias; for
    convolutions the unfolded patches at the T output positions) and ``G = sum_{n,t,c}
    g g^T`` over the output gradients ``g`` of the network output contracted with the
    columns of ``Lambda_n^(1/2)`` (one batched backward pass per batch). For one output
    position (T = 1) and a Gaussian likelihood with a single output this is the exact GGN.
    """

    def __init__(self, method: Laplace) -> None:
        super().__init__()
        self.layers = []  # (name, module, out, in, bias, offset)
        offset = 0
        for i, (name, layer) in enumerate(method.layers.items()):
            _check_kfac_layer(name, layer)
            w = layer.weight
            out, fan_in, bias = w.shape[0], w[0].numel(), layer.bias is not None
            self.layers.append((name, layer, out, fan_in, bias, offset))
            offset += out * fan_in + (out if bias else 0)
            aug = fan_in + bias
            self.register_buffer(f"A_vals_{i}", w.new_zeros(aug))
            self.register_buffer(f"A_vecs_{i}", w.new_zeros(aug, aug))
            self.register_buffer(f"G_vals_{i}", w.new_zeros(out))
            self.register_buffer(f"G_vecs_{i}", w.new_zeros(out, out))
        self._positions: list[int] = []
        self.reset()

    def _factor(self, kind: str, i: int) -> tuple[Tensor, Tensor]:
        return getattr(self, f"{kind}_vals_{i}"), getattr(self, f"{kind}_vecs_{i}")

    def backward(
        self, method: Laplace, args: tuple, y: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor], tuple[Tensor, ...]]:
        """One batch's passes: the outputs (B, K), every layer's inputs and the gradients
        of the outputs contracted with ``Lambda^(1/2)`` at the layers' outputs (C, B, ...).

        Args:
            method: The Laplace method.
            args: The tail's inputs (``split.prefix(x)``).
            y: Targets, checked against the outputs; ``None``: not checked.
        """
        inputs: dict[str, Tensor] = {}
        outputs: dict[str, Tensor] = {}

        def hook_for(name: str):
            def hook(module: nn.Module, inp: tuple, out: Tensor) -> Tensor:
                out = out if out.requires_grad else out.detach().requires_grad_()
                inputs[name], outputs[name] = inp[0].detach(), out
                return out

            return hook

        handles = [lay.register_forward_hook(hook_for(n)) for n, lay, *_ in self.layers]
        # only the Bayesian layers' outputs need gradients: with the parameters' switched
        # off, the graph (and its memory) starts at the first of them, not at the input
        trainable = [p for p in method.model.parameters() if p.requires_grad]
        try:
            for p in trainable:
                p.requires_grad_(False)
            with torch.enable_grad():
                out = method.split.tail(*args)
            if y is not None:
                method.likelihood.check_target(out, y)
            sqrt = method._loss_hessian_sqrt(out.detach())  # (B, K, C)
            grads = torch.autograd.grad(
                out, [outputs[n] for n, *_ in self.layers], sqrt.permute(2, 0, 1),
                is_grads_batched=True,
            )  # fmt: skip
        finally:
            for h in handles:
                h.remove()
            for p in trainable:
                p.requires_grad_(True)
        return out, inputs, grads

    def update(self, method, args, y):
        out, inputs, grads = self.backward(method, args, y)
        if self._sums is None:
            self._sums = [[] for _ in self.layers]
        self._positions = []
        for i, ((name, layer, o, fan_in, bias, _), g) in enumerate(
            zip(self.layers, grads, strict=True)
        ):
            a = inputs[name]
            if isinstance(layer, nn.Conv2d):
                a = F.unfold(a, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
                a = a.transpose(1, 2)  # (B, T, C kh kw)
                g = g.flatten(3).transpose(2, 3)  # (C, B, T, out)
            else:  # a Linear applied to (B, ..., in)
                a = a.reshape(a.shape[0], -1, fan_in)
                g = g.reshape(g.shape[0], g.shape[1], -1, o)
            if bias:
                a = torch.cat([a, a.new_ones(*a.shape[:-1], 1)], -1)
            self._positions.append(a.shape[1])
            parts = (torch.einsum("bti,btj->ij", a, a), torch.einsum("cbto,cbtp->op", g, g))
            acc = self._sums[i]
            if not acc:
                self._sums[i] = list(parts)
            else:
                for s, p in zip(acc, parts, strict=True):
                    s += p
        return out

    def finish(self, n_data):
        for i, (a_sum, g_sum) in enumerate(self._sums):
            a_sum /= n_data * self._positions[i]  # in place: no copy beside the sums
            for kind, mat in (("A", a_sum), ("G", g_sum)):
                vals, vecs = torch.linalg.eigh(mat)
                self._factor(kind, i)[0].copy_(vals.clamp_min(0.0))
                self._factor(kind, i)[1].copy_(vecs)
                del vals, vecs  # freed before the next factor's eigh
        self.reset()

    def eigenvalues(self):
        parts = []
        for i in range(len(self.layers)):
            parts.append(torch.outer(self._factor("G", i)[0], self._factor("A", i)[0]).flatten())
        return torch.cat(parts)

    def _blocks(self, t: Tensor):
        """Yield (layer index, layer info, slice of t's last dimension)."""
        for i, info in enumerate(self.layers):
            _, _, o, fan_in, bias, offset = info
            yield i, info, t[..., offset : offset + o * fan_in + (o if bias else 0)]

    def to_params(self, z):
        out = []
        for i, (_, _, o, fan_in, bias, _), zl in self._blocks(z):
            m = self._factor("G", i)[1] @ zl.unflatten(-1, (o, -1)) @ self._factor("A", i)[1].T
            out.append(self._unaugment(m, fan_in, bias))
        return torch.cat(out, -1)

    def to_eigen(self, j):
        out = []
        for i, (_, _, o, fan_in, bias, _), jl in self._blocks(j):
            m = self._augment(jl, o, fan_in, bias)
            out.append((self._factor("G", i)[1].T @ m @ self._factor("A", i)[1]).flatten(-2))
        return torch.cat(out, -1)

    def marginal_variance(self, inv_spectrum):
        # U = G kron A, so U^2 (elementwise) = G^2 kron A^2: per layer G^2 M (A^2)^T
        out = []
        for i, (_, _, o, fan_in, bias, _), block in self._blocks(inv_spectrum):
            g2, a2 = self._factor("G", i)[1].square(), self._factor("A", i)[1].square()
            out.append(self._unaugment(g2 @ block.unflatten(-1, (o, -1)) @ a2.T, fan_in, bias))
        return torch.cat(out, -1)

    @staticmethod
    def _augment(flat: Tensor, out: int, fan_in: int, bias: bool) -> Tensor:
        """Parameter order (weight, then bias) -> the (out, fan_in + bias) matrix [W | b]."""
        w = flat[..., : out * fan_in].unflatten(-1, (out, fan_in))
        return torch.cat([w, flat[..., out * fan_in :].unsqueeze(-1)], -1) if bias else w

    @staticmethod
    def _unaugment(m: Tensor, fan_in: int, bias: bool) -> Tensor:
        w = m[..., :fan_in].flatten(-2)
        return torch.cat([w, m[..., fan_in]], -1) if bias else w


@register_method("laplace")
class Laplace(BaseMethod):
    """Laplace approximation with a GGN (full, diagonal or KFAC) posterior precision.

    Post hoc by default: ``Laplace(trained_net).fit(data)`` computes the posterior at the
    network's weights and leaves them untouched. Training first is explicit:
    ``fit(data, epochs=E)`` trains the MAP weights (``NLL + (-log prior) / N``, the ``MAP``
    objective) for ``E`` epochs through the training engine, then fits the posterior. The
    network keeps the MAP weights; the posterior is stored beside them.
    ``fit(..., val_data=(X, y))`` is required by ``prior_precision="gridsearch"``.

    Args:
        model: The user's network (its parameters are the posterior mean).
        likelihood: ``Categorical()`` (default) or ``Gaussian(sigma)``; a learned sigma
            (``sigma=None``) is trained with the MAP weights and used in the GGN.
        prior: Training prior (weight decay) of the MAP fit; ``priors.Normal(1.0)`` by
            default. ``prior_precision="prior"`` takes ``1 / scale^2`` from it; a
            ``Centered`` prior also centres the Laplace prior in the log evidence.
        subset: ``"last_layer"`` (the last ``nn.Linear``, default), ``"all"`` Linear/Conv
            layers, a list of module names, ``"lora"`` (a ``peft`` model's LoRA adapters)
            or a predicate ``(name, parameter) -> bool`` (every Linear/Conv layer owning a
            chosen parameter); see ``layers.Subset``. Other parameters are point estimates.
        hessian: ``"kfac"`` (default), ``"full"`` or ``"diag"``; see ``Hessian``.
        prior_precision: ``"marglik"`` (default), ``"gridsearch"`` (needs ``val_data`` in
            ``fit``), ``"prior"`` or a positive number; see ``PriorPrecision``.
        pred_type: ``"glm"`` (default) or ``"nn"``; see ``PredType``.
        head: For non-Sequential models, the submodule holding every Bayesian layer whose
            output is the model's output (the rest is computed once per input).
        chunk_size: Examples per curvature call in ``fit_posterior`` (each minibatch is cut
            into chunks of this size), so the peak memory of the Jacobians / backward
            passes follows ``chunk_size`` and the subset, whatever the loader's batch
            size; ``None``: whole minibatches.

    Raises:
        ValueError: On an unknown option, a model without Linear layers, a likelihood
            other than Categorical/Gaussian, or ``hessian="kfac"`` on unsupported layers.

    Examples:
        >>> import torch, bayesdl as bdl
        >>> _ = torch.manual_seed(0)
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(),
        ...                           torch.nn.Linear(8, 3))
        >>> la = bdl.Laplace(net)
        >>> x, y = torch.randn(32, 2), torch.randint(0, 3, (32,))
        >>> _ = la.fit((x, y), epochs=5, progress=False)
        >>> la.predict(x[:4], samples=10).samples.shape
        torch.Size([10, 4, 3])
        >>> la.predict_probit(x[:4]).shape  # closed-form probit approximation
        torch.Size([4, 3])

    References:
        MacKay, "A Practical Bayesian Framework for Backpropagation Networks", 1992.
        Daxberger et al., "Laplace Redux - Effortless Bayesian Deep Learning", NeurIPS 2021.
        Martens & Grosse, "Optimizing Neural Networks with Kronecker-factored Approximate
        Curvature", ICML 2015.
    """

    default_epochs = 0  # post hoc: the weights the user trained are the MAP estimate
    memory_knobs = (
        "a smaller subset= (e.g. 'last_layer' or 'lora'), hessian='kfac' or 'diag' instead "
        "of 'full', chunk_size= (curvature), fewer samples= or chunk_size= (predict)"
    )
    min_epochs = 0
    validate_on_network = True  # no posterior until the curvature is computed

    def __init__(
        self,
        model: nn.Module,
        likelihood: Likelihood | None = None,
        prior: Prior | None = None,
        subset: Subset = "last_layer",
        hessian: Hessian = "kfac",
        prior_precision: PriorPrecision = "marglik",
        pred_type: PredType = "glm",
        head: str | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(model, likelihood, prior)
        if chunk_size is not None:
            check_positive_int(chunk_size, "chunk_size")
        self.chunk_size = chunk_size
        if type(self.likelihood) not in (Categorical, Gaussian):
            raise ValueError(
                "Laplace supports the Categorical and Gaussian likelihoods, got "
                f"{type(self.likelihood).__name__}."
            )
        if hessian not in ("full", "diag", "kfac"):
            raise ValueError(f"hessian must be 'full', 'diag' or 'kfac', got {hessian!r}.")
        if pred_type not in ("glm", "nn"):
            raise ValueError(f"pred_type must be 'glm' or 'nn', got {pred_type!r}.")
        if isinstance(prior_precision, str):
            if prior_precision not in ("marglik", "gridsearch", "prior"):
                raise ValueError(
                    "prior_precision must be 'marglik', 'gridsearch', 'prior' or a positive "
                    f"number, got {prior_precision!r}."
                )
        elif isinstance(prior_precision, bool) or not float(prior_precision) > 0:
            raise ValueError(f"prior_precision must be positive, got {prior_precision!r}.")
        self.hessian, self.pred_type, self.tuning = hessian, pred_type, prior_precision
        if not any(isinstance(m, WEIGHT_LAYERS) for m in model.modules()):
            raise ValueError("Laplace found no nn.Linear or nn.Conv layers in the model.")
        if subset == "last_layer":
            linear = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
            if not linear:
                raise ValueError("subset='last_layer' needs an nn.Linear layer in the model.")
            self.layers = dict(linear[-1:])
        else:
            self.layers = select_layers(model, subset, "Laplace")
        self.names, users = _tied_names(model, self.layers)
        if hessian == "kfac":
            _check_kfac_untied(self.names, users)
        bayesian = set(map(id, self.layers.values())) | {id(m) for u in users.values() for m in u}
        self.split = split_model(model, lambda m: id(m) in bayesian, head)
        like = next(iter(self.mean().values()))
        self.register_buffer("prior_precision", like.new_ones(()))
        self.register_buffer("log_likelihood", like.new_zeros(()))
        self.register_buffer("n_data", torch.zeros((), dtype=torch.long, device=like.device))
        self.curvature = _KFAC(self) if hessian == "kfac" else _Dense(self, diag=hessian == "diag")
        subset_h = subset_hparam(subset, list(self.layers))
        tuning_h = prior_precision if isinstance(prior_precision, str) else float(prior_precision)
        self.hparams = {
            "subset": subset_h, "hessian": hessian, "prior_precision": tuning_h,
            "pred_type": pred_type, "head": head, "chunk_size": chunk_size,
        }  # fmt: skip

    # -- the posterior -------------------------------------------------------------------------
    @property
    def num_params(self) -> int:
        """Number P of Bayesian parameters (entries of the subset's weights and biases)."""
        return sum(p.numel() for p in self.mean().values())

    def mean(self) -> ParamDict:
        """Posterior mean: the model's own (MAP) parameters of the subset, name -> tensor."""
        params = dict(self.model.named_parameters())
        return {n: params[n] for n in self.names}

    def _flat_mean(self) -> Tensor:
        return torch.cat([p.detach().flatten() for p in self.mean().values()])

    def _unflatten(self, flat: Tensor) -> ParamDict:
        """Rows (S, P) in parameter order -> name -> (S, *shape)."""
        means = self.mean()
        parts = flat.split([p.numel() for p in means.values()], -1)
        return {n: t.unflatten(-1, means[n].shape) for n, t in zip(self.names, parts, strict=True)}

    def _check_fitted(self) -> None:
        if int(self.n_data) == 0:
            raise RuntimeError("Laplace has no posterior yet; call fit or fit_posterior first.")

    def _spectrum(self, prior_precision: Tensor | None = None) -> Tensor:
        delta = self.prior_precision if prior_precision is None else prior_precision
        return self.curvature.eigenvalues() + delta

    def _dense(self, power: float) -> Tensor:
        root = self.curvature.to_params(torch.diag(self._spectrum() ** power))
        return root.T @ root

    def posterior_covariance(self) -> Tensor:
        """Dense posterior covariance ``(GGN + delta I)^-1``, shape (P, P), parameter order.

        Parameters are flattened in model order (weight, then bias, layer by layer). Dense,
        so meant for inspection of small subsets (P^2 entries).
        """
        self._check_fitted()
        return self._dense(-0.5)

    def posterior_precision(self) -> Tensor:
        """Dense posterior precision ``GGN + delta I``, shape (P, P), parameter order."""
        self._check_fitted()
        return self._dense(0.5)

    def weight_posterior(self) -> dict[str, tuple[Tensor, Tensor]]:
        """``(theta_MAP, marginal sd)`` of every parameter of the subset, name -> tensors.

        The marginal variances are the diagonal of ``(GGN + delta I)^-1`` (for KFAC and the
        full Hessian, the diagonal of the correlated covariance).

        Raises:
            RuntimeError: Before ``fit``.
        """
        self._check_fitted()
        sd = self._unflatten(self.curvature.marginal_variance(self._spectrum().reciprocal()).sqrt())
        return {n: (m.detach(), sd[n]) for n, m in self.mean().items()}

    @torch.no_grad()
    def fix_weights_at_zero(self, keep: dict[str, Tensor]) -> None:
        """Set ``theta_MAP = 0`` and the GGN diagonal to ``inf`` (variance 0) where ``keep``
        is ``False``; only ``hessian="diag"``, whose weights are independent.

        The marginal likelihood of a pruned posterior is not finite.

        Args:
            keep: Parameter name -> bool mask of its shape (parameters left out are kept).

        Raises:
            TypeError: For the KFAC or full Hessian: their weights are correlated, so
                fixing some at zero is not an operation on single weights.
        """
        if self.hessian != "diag":
            raise TypeError(
                f"prune needs Laplace(hessian='diag'), got hessian={self.hessian!r}: its "
                "weights are correlated, so fixing some at zero is not a per-weight operation."
            )
        self._check_fitted()
        mean = self.mean()
        kept = {n: keep[n].to(mean[n].device) if n in keep else torch.ones_like(mean[n], dtype=torch.bool)
                for n in self.names}  # fmt: skip
        for name in self.names:
            mean[name][~kept[name]] = 0.0
        self.curvature.ggn_diag[torch.cat([~kept[n].flatten() for n in self.names])] = math.inf

    def sample_params(self, n: int, generator: torch.Generator | None = None) -> ParamDict:
        """Draw ``n`` weight samples ``theta_MAP + Sigma^(1/2) z``: name -> (n, *shape).

        Only the subset's parameters are returned; the others are point estimates.

        Args:
            n: Number of samples.
            generator: Random generator (reproducible samples).
        """
        self._check_fitted()
        return {k: self.mean()[k].detach() + v for k, v in self._deltas(n, generator).items()}

    def _deltas(self, n: int, generator: torch.Generator | None) -> ParamDict:
        like = self.prior_precision
        z = draw("randn", (n, self.num_params), like, generator)
        return self._unflatten(self.curvature.to_params(z * self._spectrum().rsqrt()))

    def log_marginal_likelihood(self, prior_precision: Tensor | float | None = None) -> Tensor:
        """Laplace approximation of the log evidence ``log p(D | delta)``, a scalar tensor.

        ``log p(D | theta*) - delta/2 |theta* - mu|^2 + P/2 log delta - 1/2 log det(GGN +
        delta I)``; exact for a linear-Gaussian model when ``theta*`` is the MAP at ``delta``.

        Args:
            prior_precision: ``delta`` (a tensor keeps the graph, for tuning); ``None``:
                the current one.
        """
        self._check_fitted()
        delta = self.prior_precision if prior_precision is None else prior_precision
        delta = torch.as_tensor(delta, dtype=self.log_likelihood.dtype)
        dist = self._flat_mean() - self._prior_mean()
        return (
            self.log_likelihood
            - 0.5 * delta * dist.square().sum()
            + 0.5 * self.num_params * delta.log()
            - 0.5 * self._spectrum(delta).log().sum()
        )

    def _prior_mean(self) -> Tensor:
        return torch.cat([self.prior.mean(n, p).flatten() for n, p in self.mean().items()])

    # -- memory --------------------------------------------------------------------------------
    def fit_trace(self, x: Any) -> Any:
        """The curvature pass of one chunk on inputs ``x`` without accumulating it (traced
        by ``memory_estimate``): the deterministic prefix, then for ``"kfac"`` the forward
        pass and the backward passes to the Bayesian layers' outputs, for ``"full"`` /
        ``"diag"`` the per-example Jacobians.

        Args:
            x: Inputs on the model's device.
        """
        with torch.no_grad():
            args = self.split.prefix(x)
            if isinstance(self.curvature, _KFAC):
                return self.curvature.backward(self, args)
            return self._jacobian(args)

    def fit_memory(
        self, batch_size: int, outputs: int, traced: Callable[[int], int]
    ) -> dict[str, int]:
        """Peak bytes of ``fit_posterior``'s curvature work (in ``memory_estimate``).

        Per chunk of ``chunk_size`` (default: the batch) examples B with K outputs over P
        parameters, the traced peak of one chunk's passes (``fit_trace``: the prefix, the
        graph from the first Bayesian layer on, autograd's gradients, the Jacobians), and:
        ``"full"`` holds the running P x P sum and one batch's
        (2 P^2) beside the Jacobians' product with the loss Hessian's root (B K P), then
        ``torch.linalg.eigh``'s copy and workspace (``memory.eigh_bytes``) beside the sum;
        ``"diag"`` that product and two P-vectors; ``"kfac"`` the running factors of every
        layer, one layer's batch factors, and ``eigh`` of the largest factor.

        Args:
            batch_size: Examples per minibatch.
            outputs: Network outputs per example K.
            traced: ``traced(b)``: the traced peak bytes of ``fit_trace`` on ``b`` examples.
        """
        it = torch.empty((), dtype=self.dtype).element_size()
        b, k, p = min(self.chunk_size or batch_size, batch_size), outputs, self.num_params
        passes = traced(b)  # graph, gradients / Jacobians of one chunk
        if self.hessian == "full":
            acc = 2 * p * p * it + b * k * p * it + passes
            return {"curvature": max(acc, p * p * it + eigh_bytes(p, it))}
        if self.hessian == "diag":
            return {"curvature": b * k * p * it + 2 * p * it + passes}
        dims = [(fan_in + bias, out) for _, _, out, fan_in, bias, _ in self.curvature.layers]
        sums = sum(a * a + g * g for a, g in dims) * it
        batch = max(a * a + g * g for a, g in dims) * it + passes
        finish = max(eigh_bytes(max(a, g), it) for a, g in dims)
        return {"curvature": sums + max(batch, finish)}

    # -- training ------------------------------------------------------------------------------
    def on_fit_start(self, state: FitState) -> None:
        """Refuse a grid search without validation data before any training.

        Args:
            state: The fit's ``engine.FitState``.
        """
        val_data = state.val_data
        if state.phases and self.tuning != "gridsearch":
            val_data = None  # the MAP training's early stopping may use it
        self._check_val_data(val_data)

    def on_fit_end(self, state: FitState | None, report: FitReport) -> None:
        """Fit the posterior at the (trained or given) weights: ``fit_posterior``.

        Args:
            state: The fit's ``engine.FitState``.
            report: The fit's ``FitReport``, completed in place.
        """
        val = state.val_data if self.tuning == "gridsearch" else None
        post = self.fit_posterior(state.batches, progress=state.progress, val_data=val)
        report.extras.update(post.extras)

    def _check_val_data(self, val_data: DataLike | None) -> None:
        if self.tuning == "gridsearch" and val_data is None:
            raise ValueError("prior_precision='gridsearch' needs val_data=(X_val, y_val).")
        if self.tuning != "gridsearch" and val_data is not None:
            raise ValueError(
                f"val_data is only used by prior_precision='gridsearch', not {self.tuning!r}, "
                "and by early stopping of a MAP training (fit with epochs > 0)."
            )

    def fit_posterior(
        self,
        data: DataLike | Batches,
        *,
        batch_size: int = 128,
        progress: bool = True,
        val_data: DataLike | None = None,
    ) -> FitReport:
        """Compute the GGN at the model's current weights and set the prior precision.

        Args:
            data: The training data (the GGN is a sum over it), or a ``Batches`` sampler.
            batch_size: Examples per vectorised Jacobian/backward call (memory ~ B K P;
                ignored for a ``DataLoader`` or ``Batches``).
            progress: Show a tqdm progress bar.
            val_data: Validation data for ``prior_precision="gridsearch"``.

        Returns:
            A ``FitReport`` (no losses); ``extras`` holds ``prior_precision`` and
            ``log_marglik``.

        Raises:
            ValueError: On bad data or targets, or ``val_data`` missing for the grid search.
        """
        self._check_val_data(val_data)
        start = time.perf_counter()
        batches = make_batches(data, batch_size, shuffle=False, model=self.model)
        n = batches.n_data
        self.eval()
        self.curvature.reset()
        log_lik = self.log_likelihood.new_zeros(())
        bars = progress_bar(batches.epoch(None), desc="fit laplace GGN", total=len(batches),
                            disable=not progress, leave=False)  # fmt: skip
        for xb, yb in bars:
            n_b = num_examples(xb)
            if n_b == 0:  # this rank's empty slice of a short last minibatch
                continue
            xb, yb = self.to_model(xb), self.to_model(yb, targets=True)
            step = self.chunk_size or n_b
            for first in range(0, n_b, step):  # chunked: memory ~ chunk_size, not batch
                part = slice(first, first + step)
                x, y = (xb, yb) if step >= n_b else (take(xb, part), yb[part])
                with torch.no_grad():
                    out = self.curvature.update(self, self.split.prefix(x), y)
                    log_lik -= self.likelihood.nll(out.detach(), y) * num_examples(x)
        with torch.no_grad():  # under a process group: every rank's sums added
            self.curvature.reduce_sums()
            log_lik = distributed.all_reduce_sum(log_lik)
            self.curvature.finish(n)
            self.log_likelihood.copy_(log_lik)
            self.n_data.fill_(n)
            self.prior_precision.fill_(self._tune(val_data, batch_size))
            extras = {
                "prior_precision": float(self.prior_precision),
                "log_marglik": float(self.log_marginal_likelihood()),
            }
        return FitReport(n_data=n, wall_time_s=time.perf_counter() - start, extras=extras)

    def _tune(self, val_data: DataLike | None, batch_size: int) -> float:
        if not isinstance(self.tuning, str):
            return float(self.tuning)
        if self.tuning == "prior":
            scale = getattr(self.prior, "scale", None)
            if not isinstance(self.prior, Normal) or isinstance(scale, Mapping):
                raise ValueError(
                    "prior_precision='prior' needs a Normal prior with one global scale, got "
                    f"{type(self.prior).__name__}; pass prior_precision as a number instead."
                )
            return 1.0 / float(scale) ** 2
        if self.tuning == "gridsearch":
            batches = make_batches(val_data, batch_size, shuffle=False)
            nlls = [self._val_nll(batches.epoch(None), float(delta)) for delta in GRID]
            return float(GRID[int(torch.tensor(nlls).argmin())])
        return self._maximise_marglik()

    def _val_nll(self, loader, delta: float) -> float:
        """Validation NLL at ``delta``: closed-form linearised predictive for "glm" (probit
        for classification), ``GRID_SAMPLES`` draws with a fixed seed for "nn"."""
        self.prior_precision.fill_(delta)
        total = 0.0
        for x, y in loader:
            y = y.to(self.device)
            if self.pred_type == "nn":
                gen = torch.Generator(self.device).manual_seed(0)  # same draws, every batch
                log_lik = self.predict(x, samples=GRID_SAMPLES, generator=gen).log_likelihood(y)
            elif isinstance(self.likelihood, Categorical):
                log_lik = self._probit_logits(x).log_softmax(-1).gather(-1, y.unsqueeze(-1))
            else:
                mean, cov = self.glm_moments(x)
                std = (cov.diagonal(dim1=1, dim2=2) + self.likelihood.sigma.square()).sqrt()
                log_lik = torch.distributions.Normal(mean, std).log_prob(y.to(mean.dtype))
            total -= float(log_lik.sum())
        return float(distributed.all_reduce_sum(torch.tensor(total, dtype=torch.float64)))

    def _maximise_marglik(self) -> float:
        """``argmax_delta log_marginal_likelihood``: a grid in log delta, then LBFGS."""
        dtype = self.log_likelihood.dtype
        values = [float(self.log_marginal_likelihood(math.exp(t))) for t in _MARGLIK_START]
        log_delta = _MARGLIK_START[int(torch.tensor(values).argmax())].to(dtype).clone()
        log_delta.requires_grad_(True)
        opt = torch.optim.LBFGS(
            [log_delta], lr=1.0, max_iter=100, line_search_fn="strong_wolfe",
            tolerance_grad=1e-9, tolerance_change=1e-12,
        )  # fmt: skip

        def closure() -> Tensor:
            opt.zero_grad()
            loss = -self.log_marginal_likelihood(log_delta.exp())
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        delta = math.exp(float(log_delta))
        if not math.isfinite(delta) or delta <= 0:
            raise FloatingPointError(f"marginal-likelihood tuning diverged (delta = {delta}).")
        return delta

    # -- curvature helpers ---------------------------------------------------------------------
    def _loss_hessian_sqrt(self, out: Tensor) -> Tensor:
        """``L_n`` with ``L_n L_n^T`` the Hessian of the NLL in the outputs, shape (B, K, K)."""
        if isinstance(self.likelihood, Categorical):  # diag(p) - p p^T
            p = out.softmax(-1)
            root = p.sqrt()
            return torch.diag_embed(root) - p.unsqueeze(-1) * root.unsqueeze(-2)
        eye = torch.eye(out.shape[-1], dtype=out.dtype, device=out.device)
        return (eye / self.likelihood.sigma.detach()).expand(out.shape[0], -1, -1)

    def _jacobian(self, args: tuple) -> tuple[Tensor, Tensor]:
        """Outputs (B, K) and their Jacobians (B, K, P) w.r.t. the subset's parameters."""
        params = {self.split.tail_name(n): p.detach() for n, p in self.mean().items()}

        def one(p: ParamDict, *a: Tensor) -> tuple[Tensor, Tensor]:
            out = functional_call(self.split.tail, p, map_tensors(a, lambda t: t.unsqueeze(0)))
            return out.squeeze(0), out.squeeze(0)

        if any(is_dict_input(a) for a in args):
            # Hugging Face models branch on their masks' values, which vmap cannot trace:
            # one Jacobian per example instead
            rows = [
                jacrev(one, has_aux=True)(params, *map_tensors(args, lambda t: t[i]))  # noqa: B023
                for i in range(num_examples(args[0]))
            ]
            jac = {k: torch.stack([r[0][k] for r in rows]) for k in rows[0][0]}
            out = torch.stack([r[1] for r in rows])
        else:
            jac, out = vmap(jacrev(one, has_aux=True), in_dims=(None,) + (0,) * len(args))(
                params, *args
            )
        return out, torch.cat([jac[self.split.tail_name(n)].flatten(2) for n in self.names], 2)

    # -- prediction ----------------------------------------------------------------------------
    def _sample_outputs(self, x, plan, generator, context):
        self._check_fitted()
        args = self.split.prefix(x)
        mean = {self.split.tail_name(n): p.detach() for n, p in self.mean().items()}
        base = self.split.tail(*args) if self.pred_type == "glm" else None

        def tangent(d: ParamDict) -> Tensor:
            return jvp(lambda p: functional_call(self.split.tail, p, args), (mean,), (d,))[1]

        outs = []
        for s in plan.chunks():
            deltas = self._deltas(s, generator)
            if self.pred_type == "nn":
                theta = {n: self.mean()[n].detach() + d for n, d in deltas.items()}
                outs.append(stacked_forward(self.split, args, theta))
            else:
                d = {self.split.tail_name(n): t for n, t in deltas.items()}
                outs.append(base + vmap(tangent)(d))
        return torch.cat(outs)

    @torch.no_grad()
    def glm_moments(self, x: Tensor, chunk_size: int | None = None) -> tuple[Tensor, Tensor]:
        """Closed-form linearised predictive over the network outputs (no sampling).

        Args:
            x: Inputs, shape (N, ...).
            chunk_size: Inputs per vectorised Jacobian call (memory ~ chunk_size K P);
                default ``2^20 // P``.

        Returns:
            ``(mean, cov)``: ``f(x, theta_MAP)`` of shape (N, K) and ``J Sigma J^T`` of
            shape (N, K, K). For regression the predictive variance is
            ``diag(cov) + sigma^2``.

        Raises:
            RuntimeError: Before ``fit``.
            ValueError: If ``x`` is empty or holds NaN/inf.
        """
        self._check_fitted()
        x = self.to_model(check_model_input(self.model, x))
        modes = [(m, m.training) for m in self.modules()]
        self.eval()
        means, covs = [], []
        try:
            for xb in split_inputs(x, chunk_size or max(1, 2**20 // self.num_params)):
                out, jac = self._jacobian(self.split.prefix(xb))
                w = self.curvature.to_eigen(jac) * self._spectrum().rsqrt()
                means.append(out)
                covs.append(w @ w.transpose(1, 2))
        finally:
            for m, mode in modes:
                m.training = mode
        return torch.cat(means), torch.cat(covs)

    def predict_probit(self, x: Tensor, chunk_size: int | None = None) -> Tensor:
        """Class probabilities by the probit approximation of the linearised predictive.

        ``softmax(f / sqrt(1 + pi/8 diag(J Sigma J^T)))`` (MacKay, 1992), per input.

        Args:
            x: Inputs, shape (N, ...).
            chunk_size: Inputs per vectorised Jacobian call (see ``glm_moments``).

        Returns:
            Probabilities, shape (N, C).

        Raises:
            ValueError: For a regression likelihood, or an empty/non-finite ``x``.
        """
        return self._probit_logits(x, chunk_size).softmax(-1)

    def _probit_logits(self, x: Tensor, chunk_size: int | None = None) -> Tensor:
        if not isinstance(self.likelihood, Categorical):
            raise ValueError("predict_probit is for classification (Categorical likelihood).")
        mean, cov = self.glm_moments(x, chunk_size)
        return mean * (1 + math.pi / 8 * cov.diagonal(dim1=1, dim2=2)).rsqrt()
