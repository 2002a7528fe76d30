"""L0 regularisation with hard-concrete gates (Louizos, Welling & Kingma, 2018).

Every chosen ``nn.Linear`` has one gate per *input unit* and every chosen ``nn.Conv2d``
one gate per *input channel*; a closed gate removes the whole column (Linear) or the
input-channel slice ``weight[:, c]`` (Conv2d) of the layer's weight, i.e. the paper's
group sparsity over the weights leaving one unit. The model is used as is: gates are
applied by temporary forward pre-hooks while training and by gated weights passed with
``torch.func.functional_call`` when predicting.

Hard-concrete gate with location ``log_alpha``, temperature ``beta`` and stretch
``(gamma, zeta) = (-0.1, 1.1)``::

    u ~ U(0, 1),  s = sigmoid((log u - log(1 - u) + log_alpha) / beta),
    z = min(1, max(0, s (zeta - gamma) + gamma))

so ``P(z = 0) = sigmoid(beta log(-gamma / zeta) - log_alpha)`` and
``P(z = 1) = sigmoid(log_alpha - beta log((1 - gamma) / (zeta - 1)))``.

Objective per example (``n_data = N``)::

    NLL + l0_weight * E[L0] / N - log p(theta) / N,
    E[L0] = sum_g |g| (1 - P(z_g = 0)) = sum_g |g| sigmoid(log_alpha_g - beta log(-gamma/zeta))

where ``|g|`` is the number of weights gate ``g`` controls (``out_features`` for a Linear
input unit, ``out_channels / groups * kh * kw`` for a Conv2d input channel; biases are not
gated), as in the paper's group-sparsity penalty (eq. 14 and its code), and ``p(theta)``
is the weight prior (plain weight decay on the model's own parameters). Training draws
independent gates per example (lower-variance gradients); prediction draws S gate
vectors, each shared by every input like a weight-space posterior sample, or uses the
deterministic test-time gates ``z = min(1, max(0, sigmoid(log_alpha) (zeta - gamma) + gamma))``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from bayesdl._checks import Rows, check_model_input, draw, draw_rows
from bayesdl.engine import Terms
from bayesdl.likelihoods import Likelihood
from bayesdl.methods._split import split_model, stacked_forward
from bayesdl.methods.base import BaseMethod, register_method
from bayesdl.methods.layers import match_layers
from bayesdl.predictive import Predictive
from bayesdl.priors import Prior
from bayesdl.types import ParamDict

GAMMA, ZETA = -0.1, 1.1
"""Stretch interval of the hard-concrete distribution (the paper's values)."""

_GATED = (nn.Linear, nn.Conv2d)


def _key(name: str) -> str:
    return name.replace(".", "__") or "_model"


def _weight_name(layer: str) -> str:
    return f"{layer}.weight" if layer else "weight"


def _units(m: nn.Module) -> int:
    """Gates of a layer: input units (Linear) or input channels (Conv2d)."""
    return m.in_features if isinstance(m, nn.Linear) else m.in_channels


def _outputs(m: nn.Module) -> int:
    return m.out_features if isinstance(m, nn.Linear) else m.out_channels


def _select(model: nn.Module, layers: Sequence[str] | None) -> dict[str, nn.Module]:
    found = {n: m for n, m in model.named_modules() if isinstance(m, _GATED)}
    if not found:
        raise ValueError("L0 found no nn.Linear or nn.Conv2d layers in the model to gate.")
    if layers is None:
        return found
    if isinstance(layers, str):
        raise ValueError(f"layers must be a list of module names, got the string {layers!r}.")
    chosen = match_layers(found, layers, "layers", "Linear/Conv2d")
    return {n: m for n, m in found.items() if n in chosen}  # model order


def _gate_weight(m: nn.Module, weight: Tensor, z: Tensor) -> Tensor:
    """``weight`` with its input units/channels scaled by gates ``z`` of shape (S, units).

    Returns (S, *weight.shape); ``Linear(x * z) == Linear_with(weight * z)(x)`` and
    likewise for a convolution (gates are constant over each channel's positions).
    """
    if isinstance(m, nn.Linear):
        return weight * z.unsqueeze(-2)
    g = m.groups
    out, per_group = weight.shape[:2]
    w = weight.view(g, out // g, per_group, *weight.shape[2:])
    zg = z.view(z.shape[0], g, 1, per_group, *[1] * (weight.dim() - 2))
    return (w * zg).reshape(z.shape[0], *weight.shape)


@register_method("l0")
class L0(BaseMethod):
    """Sparse network with learned hard-concrete gates and an expected-L0 penalty.

    Args:
        model: The user's network; its ``nn.Linear`` input units and ``nn.Conv2d`` input
            channels get one gate each.
        likelihood: Observation model; ``Categorical()`` by default.
        prior: Weight prior: plain weight decay ``-log p(theta) / N`` on the model's own
            parameters (not weighted by the gates); ``Normal(1.0)`` by default, as for
            ``MAP``.
        l0_weight: ``lambda``, the cost of one expected active weight in nats (the
            penalty is ``l0_weight * E[L0] / N`` per example).
        droprate_init: Initial probability of dropping a unit; every ``log_alpha``
            starts at ``log(1 - droprate_init) - log(droprate_init)`` (the paper's code,
            without its small random jitter).
        temperature: ``beta`` of the hard-concrete distribution.
        layers: Module names (or prefixes) of the layers to gate; ``None``: every
            ``nn.Linear`` and ``nn.Conv2d``.
        head: For non-Sequential models, the submodule holding every gated layer whose
            output is the model's output; the rest is computed once at prediction.

    ``predict`` option: ``deterministic=True`` predicts with the test-time gates ``gates()``
    (one output, the sparse network the paper reports) instead of gate draws.

    Raises:
        ValueError: On hyperparameters out of range or no layer to gate.

    Examples:
        >>> import torch, bayesdl as bdl
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> m = bdl.L0(net, l0_weight=0.1)
        >>> x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
        >>> _ = m.fit((x, y), epochs=2, progress=False)
        >>> m.predict(x, samples=10).samples.shape
        torch.Size([10, 32, 3])
        >>> sorted(m.sparsity())
        ['flops_remaining', 'layers', 'units_removed', 'weights_removed']

    References:
        Louizos, Welling & Kingma, "Learning Sparse Neural Networks through L0
        Regularization", ICLR 2018.
    """

    per_example_noise = True  # gates drawn per example (draw_rows of the global minibatch)

    def __init__(
        self,
        model: nn.Module,
        likelihood: Likelihood | None = None,
        prior: Prior | None = None,
        l0_weight: float = 0.1,
        droprate_init: float = 0.5,
        temperature: float = 2 / 3,
        layers: Sequence[str] | None = None,
        head: str | None = None,
    ) -> None:
        super().__init__(model, likelihood, prior)
        if not l0_weight >= 0:
            raise ValueError(f"l0_weight must be >= 0, got {l0_weight}.")
        if not 0 < droprate_init < 1:
            raise ValueError(f"droprate_init must lie in (0, 1), got {droprate_init}.")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        self.l0_weight = float(l0_weight)
        self.temperature = float(temperature)
        self.layers = _select(model, layers)
        init = math.log(1 - droprate_init) - math.log(droprate_init)
        self.log_alpha = nn.ParameterDict(
            {
                _key(n): nn.Parameter(m.weight.new_full((_units(m),), init))
                for n, m in self.layers.items()
            }
        )
        gated = set(map(id, self.layers.values()))
        self.split = split_model(model, lambda m: id(m) in gated, head)
        self.hparams = {
            "l0_weight": self.l0_weight, "droprate_init": droprate_init,
            "temperature": self.temperature,
            "layers": None if layers is None else list(layers), "head": head,
        }  # fmt: skip

    # -- the gates -----------------------------------------------------------------------
    def _log_alpha(self, name: str) -> Tensor:
        return self.log_alpha[_key(name)]

    def _hard_concrete(self, log_alpha: Tensor, u: Tensor) -> Tensor:
        """Gate values for uniforms ``u`` (broadcast against ``log_alpha``)."""
        eps = torch.finfo(u.dtype).eps
        s = torch.sigmoid((torch.logit(u, eps=eps) + log_alpha) / self.temperature)
        return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)

    def sample_gates(self, n: int, generator: torch.Generator | None = None) -> ParamDict:
        """Draw ``n`` gate vectors per layer from the hard-concrete distribution.

        Args:
            n: Number of draws.
            generator: Random generator (reproducible draws).

        Returns:
            Layer name -> gates in [0, 1], shape (n, units).
        """
        out = {}
        for name in self.layers:
            la = self._log_alpha(name)
            out[name] = self._hard_concrete(la, draw("rand", (n, la.numel()), la, generator))
        return out

    def gates(self) -> ParamDict:
        """Deterministic test-time gates.

        ``z = min(1, max(0, sigmoid(log_alpha) (zeta - gamma) + gamma))`` (the paper's eq. 13).

        Returns:
            Layer name -> gates, shape (units,); a unit with gate 0 is removed.
        """
        return {
            n: (torch.sigmoid(self._log_alpha(n)) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)
            for n in self.layers
        }

    def prob_nonzero(self) -> ParamDict:
        """``P(z != 0) = 1 - P(z = 0) = sigmoid(log_alpha - beta log(-gamma / zeta))`` per gate.

        Returns:
            Layer name -> probabilities, shape (units,).
        """
        shift = self.temperature * math.log(-GAMMA / ZETA)
        return {n: torch.sigmoid(self._log_alpha(n) - shift) for n in self.layers}

    def weights_per_gate(self) -> dict[str, int]:
        """Number of weights each gate of a layer controls (``|g|`` in the penalty)."""
        return {n: m.weight.numel() // _units(m) for n, m in self.layers.items()}

    def expected_l0(self) -> Tensor:
        """Expected number of non-zero gated weights, ``sum_g |g| P(z_g != 0)`` (a scalar)."""
        sizes = self.weights_per_gate()
        return torch.stack([sizes[n] * p.sum() for n, p in self.prob_nonzero().items()]).sum()

    def _gated_params(self, z: ParamDict) -> ParamDict:
        return {
            _weight_name(n): _gate_weight(m, m.weight, z[n].to(m.weight.dtype))
            for n, m in self.layers.items()
        }

    def sample_params(self, n: int, generator: torch.Generator | None = None) -> ParamDict:
        """Draw ``n`` gated weight tensors ``weight * z`` (biases are not gated).

        Args:
            n: Number of samples.
            generator: Random generator (reproducible samples).

        Returns:
            Weight name -> tensor of shape (n, *weight.shape).
        """
        return self._gated_params(self.sample_gates(n, generator))

    # -- training ------------------------------------------------------------------------
    @contextmanager
    def _per_example_gates(self, gen: torch.Generator | None, rows: Rows | None) -> Iterator[None]:
        """Pre-hooks multiplying each gated layer's input by gates drawn per example
        from ``gen`` (``rows`` of the global minibatch's)."""

        def hook_for(name: str, conv: bool):
            def hook(module: nn.Module, args: tuple) -> tuple:
                x, la = args[0], self._log_alpha(name)
                if conv:  # (..., C, H, W): one gate per example and channel
                    shape, la = (*x.shape[:-3], la.numel(), 1, 1), la.view(-1, 1, 1)
                else:  # (B, ..., in): one gate per example and unit
                    shape = (*x.shape[:1], *[1] * (x.dim() - 2), la.numel())
                u = draw_rows("rand", shape, x, gen, rows)
                return (x * self._hard_concrete(la, u), *args[1:])

            return hook

        handles = [
            m.register_forward_pre_hook(hook_for(n, isinstance(m, nn.Conv2d)))
            for n, m in self.layers.items()
        ]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def objective(self, x, y, n_data, generator=None, state=None) -> Terms:
        """NLL under per-example gates; the expected-L0 penalty and ``-log p`` over N.

        Args and return: as ``BaseMethod.objective`` (``x``, ``y``, ``n_data``, ``generator``, ``state``).
        """
        with self._per_example_gates(generator, None if state is None else state.rows):
            output = self._forward_checked(x, y)
        penalty = self.l0_weight * self.expected_l0()
        log_prior = self.prior.log_prob(dict(self.model.named_parameters()))
        return Terms(self.likelihood.nll(output, y), (penalty - log_prior) / n_data)

    # -- prediction ----------------------------------------------------------------------
    def _predict_context(self, samples: int, options: dict[str, Any]) -> tuple[int, bool]:
        """``predict(x, deterministic=True)``: the test-time gates ``gates()`` (S = 1), the
        sparse network the paper reports; otherwise ``samples`` gate draws."""
        deterministic = bool(options.pop("deterministic", False))
        super()._predict_context(samples, options)
        return (1 if deterministic else samples), deterministic

    def predict_deterministic(self, x: Tensor, *, chunk_size: int | None = None) -> Predictive:
        """The sparse network with the test-time gates: ``predict(x, deterministic=True)``.

        Args:
            x: Inputs, shape (N, ...).
            chunk_size: Most inputs per call.
        """
        return self.predict(x, deterministic=True, chunk_size=chunk_size)

    def _sample_outputs(self, x, plan, generator, context):
        args = self.split.prefix(x)
        if context:  # deterministic
            z = {n: g.unsqueeze(0) for n, g in self.gates().items()}
            return stacked_forward(self.split, args, self._gated_params(z))
        return torch.cat(
            [
                stacked_forward(self.split, args, self.sample_params(s, generator))
                for s in plan.chunks()
            ]
        )

    # -- sparsity ------------------------------------------------------------------------
    @torch.no_grad()
    def _positions(self, x: Tensor | None) -> dict[str, int]:
        """Output positions per example of every gated layer (1 for a Linear on (N, in))."""
        if x is None:
            conv = [n for n, m in self.layers.items() if isinstance(m, nn.Conv2d)]
            if conv:
                raise ValueError(
                    f"sparsity() needs an example input x to count the FLOPs of the "
                    f"convolutions {conv} (their output size depends on the input size)."
                )
            return dict.fromkeys(self.layers, 1)
        x = check_model_input(self.model, x)
        found: dict[str, int] = {}

        def hook_for(name: str):
            def hook(module: nn.Module, args: tuple, out: Tensor) -> None:
                found[name] = out[:1].numel() // _outputs(module)

            return hook

        handles = [m.register_forward_hook(hook_for(n)) for n, m in self.layers.items()]
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        try:
            self.model(self.to_model(x[:1]))
        finally:
            for h in handles:
                h.remove()
            for m, mode in modes:
                m.training = mode
        return {n: found.get(n, 0) for n in self.layers}

    @torch.no_grad()
    def sparsity(self, x: Tensor | None = None) -> dict[str, Any]:
        """How much of the network the deterministic test-time gates remove.

        A gated weight is removed when its input unit/channel has gate 0, or when its
        output unit/channel is read by no open gate of the next gated layer (in the
        model's module order, assuming the layers form a chain): when that layer has as
        many inputs as this one has outputs, output k feeds its input k; when it has P
        times as many (a Conv2d flattened into a Linear), output channel k feeds inputs
        ``k P ... (k + 1) P - 1``; otherwise (and for the last gated layer) every output
        counts as used. FLOPs are multiply-adds of the gated layers, ``remaining weights x
        output positions`` per layer (positions: H_out x W_out for a Conv2d, 1 for a
        Linear on (N, in)), for one example; biases and other layers are not counted.

        Args:
            x: Example input (one row is used) to measure the convolutions' output sizes;
                needed only when a Conv2d is gated.

        Returns:
            ``{"weights_removed", "units_removed", "flops_remaining"}``: fractions over all
            gated layers, and ``"layers"``: layer name -> the same three fractions plus
            ``"units"`` (gate count) and ``"active_units"``.

        Raises:
            ValueError: If a Conv2d is gated and ``x`` is not given.
        """
        positions = self._positions(x)
        active_in = {n: g > 0 for n, g in self.gates().items()}
        names = list(self.layers)
        layers: dict[str, dict[str, float]] = {}
        weights = kept_weights = units = removed = flops = kept_flops = 0
        for i, (name, m) in enumerate(self.layers.items()):
            outs = _outputs(m)
            active_out = torch.ones(outs, dtype=torch.bool, device=m.weight.device)
            if i + 1 < len(names):
                following = active_in[names[i + 1]]
                if following.numel() % outs == 0:
                    active_out = following.view(outs, -1).any(1)
            groups = getattr(m, "groups", 1)
            pairs = active_out.view(groups, -1, 1) & active_in[name].view(groups, 1, -1)
            kept = int(pairs.sum()) * m.weight[0, 0].numel()  # times the kernel size
            total = m.weight.numel()
            n_units, on = active_in[name].numel(), int(active_in[name].sum())
            layers[name] = {
                "units": n_units,
                "active_units": on,
                "units_removed": 1 - on / n_units,
                "weights_removed": 1 - kept / total,
                "flops_remaining": kept / total,
            }
            weights, kept_weights = weights + total, kept_weights + kept
            units, removed = units + n_units, removed + n_units - on
            flops, kept_flops = flops + total * positions[name], kept_flops + kept * positions[name]
        return {
            "weights_removed": 1 - kept_weights / weights,
            "units_removed": removed / units,
            "flops_remaining": kept_flops / flops if flops else 1.0,
            "layers": layers,
        }
