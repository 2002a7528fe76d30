"""MC dropout (Gal & Ghahramani, 2016): dropout kept on at test time is a variational
posterior ``q(W) = W diag(z)``, ``z ~ Bernoulli(1 - p)``.

Hyperparameters: the model's own dropout layers and rates; the weight prior (weight decay).

Prediction draws S weight samples, i.e. one dropout mask per sample *shared by every input*
(as a weight-space posterior sample should be; this also makes joint predictions over a
pool consistent, which BatchBALD needs). ``predict(x, draws="independent")`` instead draws
S masks per input (what Gal et al.'s Keras code did at acquisition): the masks are then
applied to the activations, never folded into the weights. It is vectorised without a
loop over S:

* everything before the first dropout layer is computed once per input;
* a dropout followed by a ``Linear`` (possibly through ``nn.Flatten``) is applied to the
  weights, so the S masked layers become one matrix product ``h @ [W_1 ... W_S]^T`` and
  the input is never copied S times;
* any other layer runs on the (S x N) batch; dropout layers nested inside custom modules
  are handled by forward hooks that apply the per-sample masks.

BatchNorm stays in eval mode. Dropout called functionally (``F.dropout``) inside a forward
is invisible to this method: use ``nn.Dropout`` modules.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from bayesdl._checks import draw
from bayesdl.likelihoods import Likelihood
from bayesdl.methods._split import split_model
from bayesdl.methods.base import BaseMethod, register_method
from bayesdl.methods.layers import Subset, match_layers, select_named, subset_hparam
from bayesdl.priors import Prior

_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def is_dropout(m: nn.Module) -> bool:
    """Whether ``m`` is one of torch's dropout layers (``nn.Dropout``, ``nn.Dropout1d/2d/3d``).

    Args:
        m: Any module.
    """
    return isinstance(m, _DROPOUT)





def dropout_mask(
    module: nn.Module, samples: int, feature_shape: torch.Size, like: Tensor,
    generator: torch.Generator | None, inputs: int | None = None,
) -> Tensor:  # fmt: skip
    """Scaled keep-mask of shape (S, *feature_shape) (channel-wise for DropoutNd); with
    ``inputs=N``, one mask per input: (S, N, *feature_shape)."""
    shape = list(feature_shape)
    if type(module) is not nn.Dropout:  # Dropout1d/2d/3d drop whole channels
        shape = shape[:1] + [1] * (len(shape) - 1)
    keep = 1.0 - module.p
    per_input = () if inputs is None else (inputs,)
    u = draw("rand", (samples, *per_input, *shape), like, generator)
    return (u < keep).to(like.dtype) / keep if keep > 0 else torch.zeros_like(u)


def _flattens_features(m: nn.Module) -> bool:
    return type(m) is nn.Flatten and m.start_dim == 1 and m.end_dim == -1


def _flat_modules(module: nn.Module) -> Iterator[nn.Module]:
    if type(module) is nn.Sequential:
        for child in module:
            yield from _flat_modules(child)
    else:
        yield module


@register_method("mc-dropout")
class MCDropout(BaseMethod):
    """MC dropout on the model's own ``nn.Dropout`` layers.

    Args:
        model: The user's network; it must contain dropout modules.
        likelihood: Observation model; ``Categorical()`` by default.
        prior: Weight prior (weight decay); ``Normal(1.0)`` by default.
        head: For non-Sequential models, the submodule whose output is the model's output
            and which contains every dropout layer; the rest is computed once per input.
        subset: The dropout layers kept on at prediction: ``"all"``, the ``"last_layer"``
            (the last dropout module), ``"lora"`` (a ``peft`` model's ``lora_dropout``), a
            list of module names (prefixes) or a predicate ``(name, module) -> bool``; the
            others are off at prediction, as in evaluation mode.

    Raises:
        ValueError: If the model has no dropout layers, or ``subset`` selects none.

    References:
        Gal & Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.
    """

    needs_dropout = True
    native_independent_draws = True
    explicit_prior = False  # the prior is implicit in the dropout noise

    def __init__(
        self,
        model: nn.Module,
        likelihood: Likelihood | None = None,
        prior: Prior | None = None,
        head: str | None = None,
        subset: Subset = "all",
    ) -> None:
        super().__init__(model, likelihood, prior)
        if not any(is_dropout(m) for m in model.modules()):
            raise ValueError(
                "MCDropout needs nn.Dropout layers in the model, found none; add "
                "nn.Dropout(p) before the layers that should be stochastic, or use MeanFieldVI."
            )
        self.dropout_names = list(_select_dropout(model, subset))
        chosen = self._sampled()
        self.split = split_model(model, lambda m: id(m) in chosen, head)
        self.hparams = {"head": head}
        if subset != "all":  # recorded only when chosen (subclasses take no subset)
            self.hparams["subset"] = subset_hparam(subset, self.dropout_names)

    def _sampled(self) -> set[int]:
        """Ids of the dropout modules sampled at prediction (looked up by name, so copies
        and unpickled methods see their own modules)."""
        return {id(self.model.get_submodule(n)) for n in self.dropout_names}

    def _sample_outputs(self, x, plan, generator, context):
        args = self.split.prefix(x)
        per_input = plan.draws == "independent"
        return torch.cat([self._tail(args, s, generator, per_input) for s in plan.chunks()])

    def _tail(
        self, args: tuple, samples: int, generator: torch.Generator | None,
        per_input: bool = False,
    ) -> Tensor:  # fmt: skip
        """Run the stochastic tail for ``samples`` masks (per input if ``per_input``);
        returns (S, N, ...)."""
        chosen = self._sampled()
        if len(args) != 1 or not isinstance(args[0], Tensor):
            return self._run_hooked(self.split.tail, args, samples, generator, chosen,
                                    per_input=per_input)  # fmt: skip
        h, shared = args[0], True  # shared: h is (N, ...) and the same for every sample
        mods = list(_flat_modules(self.split.tail))
        i = 0
        while i < len(mods):
            m = mods[i]
            if id(m) in chosen:
                feat = h.shape[1:] if shared else h.shape[2:]
                n = h.shape[0] if shared else h.shape[1]
                if per_input:  # a mask per input, on the activations
                    mask = dropout_mask(m, samples, feat, h, generator, inputs=n)
                    h = (h.unsqueeze(0) if shared else h) * mask
                    shared = False
                    i += 1
                    continue
                mask = dropout_mask(m, samples, feat, h, generator)
                j = i + 1  # an elementwise mask commutes with flattening the features
                while j < len(mods) and _flattens_features(mods[j]):
                    j += 1
                nxt = mods[j] if j < len(mods) else None
                if (
                    type(m) is nn.Dropout
                    and isinstance(nxt, nn.Linear)
                    and (len(feat) == 1 or j > i + 1)
                ):
                    h = h.flatten(1 if shared else 2)  # fold the mask into the Linear's weights
                    h, shared = self._masked_linear(nxt, h, mask.flatten(1), shared), False
                    i = j + 1
                    continue
                h = (h.unsqueeze(0) if shared else h) * mask.unsqueeze(1)
                shared = False
            elif any(id(c) in chosen for c in m.modules()):
                h = self._run_hooked(m, (h.expand(samples, *h.shape) if shared else h,), samples,
                                     generator, chosen, stacked=True,
                                     per_input=per_input)  # fmt: skip
                shared = False
            elif shared:
                h = m(h)
            else:
                h = m(h.flatten(0, 1)).unflatten(0, h.shape[:2])
            i += 1
        return h.expand(samples, *h.shape) if shared else h

    @staticmethod
    def _masked_linear(lin: nn.Linear, h: Tensor, mask: Tensor, shared: bool) -> Tensor:
        """``Linear(h * mask_s)`` for every s as ``h @ (W * mask_s)^T``: (S, N, out)."""
        w = lin.weight.unsqueeze(0) * mask.unsqueeze(1)  # (S, out, in)
        if shared:
            s, o, i = w.shape
            out = (h @ w.reshape(s * o, i).T).unflatten(1, (s, o)).transpose(0, 1)
        else:
            out = torch.bmm(h, w.transpose(1, 2))
        return out + lin.bias if lin.bias is not None else out

    @staticmethod
    def _run_hooked(
        module: nn.Module, args: tuple, samples: int, generator: torch.Generator | None,
        chosen: set[int], stacked: bool = False, per_input: bool = False,
    ) -> Tensor:  # fmt: skip
        """Run ``module`` on S copies of the batch with per-sample masks applied by hooks
        on the ``chosen`` dropout modules.

        ``args`` are (N, ...) tensors (or dicts of them), or (S, N, ...) when ``stacked``;
        ``per_input``: a mask per sample and input.
        """

        def apply_mask(m: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
            x = inputs[0].unflatten(0, (samples, -1))
            if per_input:
                mask = dropout_mask(m, samples, x.shape[2:], x, generator, inputs=x.shape[1])
            else:
                mask = dropout_mask(m, samples, x.shape[2:], x, generator).unsqueeze(1)
            return (x * mask).flatten(0, 1)

        def flat(a: Any) -> Any:
            if isinstance(a, Mapping):
                return {k: flat(v) for k, v in a.items()}
            if not isinstance(a, Tensor):
                return a
            return a.flatten(0, 1) if stacked else a.repeat(samples, *[1] * (a.dim() - 1))

        handles = [m.register_forward_hook(apply_mask) for m in module.modules() if id(m) in chosen]
        try:
            out = module(*[flat(a) for a in args])
        finally:
            for h in handles:
                h.remove()
        return out.unflatten(0, (samples, -1))


def _select_dropout(model: nn.Module, subset: Subset) -> dict[str, nn.Module]:
    """The dropout modules of ``model`` chosen by ``subset`` (see ``MCDropout``)."""
    found = {n: m for n, m in model.named_modules() if is_dropout(m)}
    if subset == "all":
        return found
    if subset == "last_layer":
        last = list(found)[-1]
        return {last: found[last]}
    if subset == "lora" or callable(subset):
        return select_named(found, subset, "MCDropout", "dropout layer")
    if isinstance(subset, str):
        raise ValueError(
            "subset must be 'all', 'last_layer', 'lora', a list of module names or a predicate "
            f"(name, module) -> bool, got {subset!r}."
        )
    return match_layers(found, subset, "subset", "dropout")
