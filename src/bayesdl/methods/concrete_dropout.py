"""Concrete dropout (Gal, Hron & Kendall, 2017): MC dropout with learned dropout rates.

Each of the model's own dropout layers gets a learned rate ``p = sigmoid(logit_p)``
(initialised at the layer's own ``p``; clipped to [eps, 1 - eps] of the dtype, so it stays
inside (0, 1) in floating point). Training replaces the layer's Bernoulli mask by its
concrete relaxation with temperature ``t`` (0.1 in the paper), so that ``p`` gets
gradients::

    u ~ U(0, 1),  drop = sigmoid((logit p + log u - log(1 - u)) / t),
    output = input * (1 - drop) / (1 - p)

(elementwise for ``nn.Dropout``, one value per example and channel for ``DropoutNd``).
Prediction is MC dropout with the learned rates (``MCDropout``'s vectorised prediction:
one mask per sample shared by every input, the deterministic prefix computed once).

Objective per example (the negative ELBO over ``N = n_data``)::

    NLL + sum_layers [ weight_regulariser * ||W||^2 / prod_i (1 - p_i)
                       + dropout_regulariser * K_i (p_i log p_i + (1 - p_i) log(1 - p_i)) ]
        - log p(other parameters) / N

where ``W`` is the weight of the layer each dropout feeds (the first ``Linear``/``Conv`` after
it in the model's module order; a layer fed by several dropouts divides by
the product of their keep rates) and ``K_i`` is the number of units the dropout acts on
(features per example for ``nn.Dropout``, channels for ``DropoutNd``), recorded at each
training forward. This is ``KL(q || p) / N`` of the paper with the prior ``N(0, 1/l^2)``
on ``W`` (length scale ``l``), which gives the defaults::

    weight_regulariser = l^2 / (2 N),   dropout_regulariser = 1 / N.

The paper's code writes ``l^2 / (tau N)`` and ``2 / (tau N)`` for an objective measured as
squared error, which is ``2 / tau`` times this one (``tau``: the model precision); the NLL
here already holds the precision, so both give the same optimum and ``tau`` cancels.
Biases and parameters that no dropout feeds get the weight prior ``prior``
(``Normal(1 / length_scale)`` by default, the same prior).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from bayesdl._checks import Rows, draw_rows
from bayesdl.engine import Terms
from bayesdl.likelihoods import Likelihood
from bayesdl.methods.base import register_method
from bayesdl.methods.mc_dropout import MCDropout, is_dropout
from bayesdl.priors import Normal, Prior


def _key(name: str) -> str:
    return name.replace(".", "__")


_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _fed_layers(model: nn.Module, dropouts: list[str]) -> dict[str, str]:
    """Dropout name -> name of the first Linear/Conv after it in the model's module order."""
    order = list(model.named_modules())
    index = {n: i for i, (n, _) in enumerate(order)}
    fed = {}
    for name in dropouts:
        for later, m in order[index[name] + 1 :]:
            if isinstance(m, _LAYERS):
                fed[name] = later
                break
    return fed


@register_method("concrete-dropout")
class ConcreteDropout(MCDropout):
    """MC dropout whose per-layer dropout rates are learned with the concrete relaxation.

    Args:
        model: The user's network; its ``nn.Dropout`` / ``DropoutNd`` layers get learned
            rates (the modules' own ``p`` is only the starting value and is left as is).
        likelihood: Observation model; ``Categorical()`` by default.
        prior: Prior of the biases and of the parameters no dropout feeds;
            ``Normal(1 / length_scale)`` by default.
        head: For non-Sequential models, the submodule whose output is the model's
            output and which contains every dropout layer (see ``MCDropout``).
        length_scale: Prior length scale ``l`` (prior ``N(0, 1/l^2)`` on the weights).
        weight_regulariser: Coefficient of ``||W||^2 / (1 - p)``; ``None``:
            ``l^2 / (2 N)`` with ``N`` the training-set size passed to ``loss``.
        dropout_regulariser: Coefficient of ``K (p log p + (1 - p) log(1 - p))``;
            ``None``: ``1 / N``.
        temperature: Temperature of the concrete relaxation during training.
        init_p: Initial dropout rate of every layer; ``None``: each layer's own ``p``.

    Raises:
        ValueError: If the model has no dropout layers, or a rate or hyperparameter is out
            of range.

    Examples:
        >>> import torch, bayesdl as bdl
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(),
        ...                           torch.nn.Dropout(0.2), torch.nn.Linear(16, 3))
        >>> m = bdl.ConcreteDropout(net)
        >>> x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
        >>> _ = m.fit((x, y), epochs=2, progress=False)
        >>> list(m.dropout_rates())
        ['2']
        >>> m.predict(x, samples=10).samples.shape
        torch.Size([10, 32, 3])

    References:
        Gal, Hron & Kendall, "Concrete Dropout", NeurIPS 2017.
    """

    per_example_noise = True  # relaxed masks drawn per example (draw_rows of the global minibatch)

    def __init__(
        self,
        model: nn.Module,
        likelihood: Likelihood | None = None,
        prior: Prior | None = None,
        head: str | None = None,
        length_scale: float = 1e-2,
        weight_regulariser: float | None = None,
        dropout_regulariser: float | None = None,
        temperature: float = 0.1,
        init_p: float | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        dropouts = {n: m for n, m in model.named_modules() if is_dropout(m)}
        if not dropouts:
            raise ValueError(
                "ConcreteDropout needs nn.Dropout layers in the model, found none; add "
                "nn.Dropout(p) before the layers that should be stochastic (p is the "
                "starting rate), or use MeanFieldVI."
            )
        if not length_scale > 0:
            raise ValueError(f"length_scale must be positive, got {length_scale}.")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        for what, value in (("weight_regulariser", weight_regulariser),
                            ("dropout_regulariser", dropout_regulariser)):  # fmt: skip
            if value is not None and not value >= 0:
                raise ValueError(f"{what} must be >= 0 or None, got {value}.")
        if init_p is not None and not 0 < init_p < 1:
            raise ValueError(f"init_p must lie in (0, 1), got {init_p}.")
        start = {n: m.p if init_p is None else init_p for n, m in dropouts.items()}
        bad = {n: p for n, p in start.items() if not 0 < p < 1}
        if bad:
            raise ValueError(
                f"dropout layers {bad} start at a rate outside (0, 1), where the learned "
                "logit is infinite; pass init_p (e.g. 0.1) or give them 0 < p < 1."
            )
        prior = Normal(1.0 / length_scale) if prior is None else prior
        super().__init__(model, likelihood, prior, head)
        self.dropouts = dropouts
        self.length_scale = float(length_scale)
        self.weight_regulariser = weight_regulariser
        self.dropout_regulariser = dropout_regulariser
        self.temperature = float(temperature)
        like = torch.empty((), dtype=self.dtype, device=self.device)
        self.logit_p = nn.ParameterDict(
            {_key(n): nn.Parameter(torch.logit(like.new_tensor(p))) for n, p in start.items()}
        )
        self.fed = _fed_layers(model, list(dropouts))
        self._input_dims: dict[str, int] = {}
        self.hparams.update(
            length_scale=self.length_scale, weight_regulariser=weight_regulariser,
            dropout_regulariser=dropout_regulariser, temperature=self.temperature,
            init_p=init_p,
        )  # fmt: skip

    def dropout_rates(self) -> dict[str, float]:
        """The learned dropout rate ``p`` of every dropout layer (module name -> p)."""
        return {n: float(self._rate(n).detach()) for n in self.dropouts}

    def _rate(self, name: str) -> Tensor:
        logit = self.logit_p[_key(name)]
        eps = torch.finfo(logit.dtype).eps
        return torch.sigmoid(logit).clamp(eps, 1 - eps)

    # -- training ------------------------------------------------------------------------
    def regulariser(self, n_data: int) -> Tensor:
        """The concrete-dropout regulariser ``KL / N`` of the dropout-fed weights (a scalar).

        Uses the unit counts ``K`` recorded by the latest training forward (``loss``).

        Args:
            n_data: Training-set size ``N`` (sets the default coefficients).

        Raises:
            RuntimeError: If ``loss`` has not run yet (``K`` unknown).
        """
        missing = [n for n in self.dropouts if n not in self._input_dims]
        if missing:
            raise RuntimeError(
                f"unit counts of dropout layers {missing} are unknown until a training "
                "forward; call loss() or fit() first."
            )
        wr, dr = self.weight_regulariser, self.dropout_regulariser
        wr = self.length_scale**2 / (2 * n_data) if wr is None else wr
        dr = 1.0 / n_data if dr is None else dr
        modules = dict(self.model.named_modules())
        keep: dict[str, Tensor] = {}
        terms = []
        for n in self.dropouts:
            p = self._rate(n)
            entropy_term = torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p)
            terms.append(dr * self._input_dims[n] * entropy_term)
            if n in self.fed:
                keep[self.fed[n]] = keep.get(self.fed[n], 1.0) * (1 - p)
        for layer, k in keep.items():
            weight = modules[layer].weight
            terms.append(wr * weight.pow(2).sum() / k)
        return torch.stack(terms).sum()

    def _prior_params(self) -> dict[str, Tensor]:
        """Parameters under ``prior``: all but the weights that a dropout feeds."""
        fed = {f"{layer}.weight" for layer in self.fed.values()}
        return {n: p for n, p in self.model.named_parameters() if n not in fed}

    @contextmanager
    def _relaxed(self, gen: torch.Generator | None, rows: Rows | None = None) -> Iterator[None]:
        """Replace each dropout layer's output by the concrete relaxation with learned p,
        drawing its uniform noise from ``gen`` (``rows`` of the global minibatch's)."""

        def hook_for(name: str):
            def hook(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
                x, p = inputs[0], self._rate(name)
                if type(module) is nn.Dropout:
                    shape, self._input_dims[name] = tuple(x.shape), x[0].numel()
                else:  # DropoutNd: one mask value per example and channel
                    shape = (*x.shape[:2], *[1] * (x.dim() - 2))
                    self._input_dims[name] = x.shape[1]
                u = draw_rows("rand", shape, x, gen, rows)
                eps = torch.finfo(u.dtype).eps
                noise = torch.logit(p) + torch.logit(u, eps=eps)
                return x * (1 - torch.sigmoid(noise / self.temperature)) / (1 - p)

            return hook

        modes = [(m, m.training) for m in self.dropouts.values()]
        handles = [m.register_forward_hook(hook_for(n)) for n, m in self.dropouts.items()]
        try:
            for m in self.dropouts.values():
                m.eval()  # the module itself passes its input through; the hook drops
            yield
        finally:
            for h in handles:
                h.remove()
            for m, mode in modes:
                m.training = mode

    def objective(self, x, y, n_data, generator=None, state=None) -> Terms:
        """Concrete-relaxed NLL; the dropout regulariser and ``-log p`` over N.

        Args and return: as ``BaseMethod.objective`` (``x``, ``y``, ``n_data``, ``generator``, ``state``).
        """
        with self._relaxed(generator, None if state is None else state.rows):
            output = self._forward_checked(x, y)
        log_prior = self.prior.log_prob(self._prior_params())
        return Terms(self.likelihood.nll(output, y), self.regulariser(n_data) - log_prior / n_data)

    # -- prediction ----------------------------------------------------------------------
    @contextmanager
    def _learned_rates(self) -> Iterator[None]:
        """Give the dropout modules their learned ``p`` while ``MCDropout`` draws masks."""
        rates = self.dropout_rates()
        old = {n: m.p for n, m in self.dropouts.items()}
        try:
            for n, m in self.dropouts.items():
                m.p = rates[n]
            yield
        finally:
            for n, m in self.dropouts.items():
                m.p = old[n]

    def _sample_outputs(self, x, plan, generator, context):
        with self._learned_rates():
            return super()._sample_outputs(x, plan, generator, context)
