"""Gaussian priors: zero-mean ``Normal`` (weight decay) and ``Centered`` (around given weights)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import kl_divergence

from bayesdl._checks import draw
from bayesdl.priors.base import (
    HALF_LOG_2PI,
    Prior,
    Scale,
    check_scale,
    normal_dist,
    resolve_scale,
)

__all__ = ["Normal", "Centered"]


class Normal(Prior):
    """Zero-mean Gaussian prior ``N(0, scale^2)``; as MAP it is weight decay ``1/(2 scale^2)``.

    Args:
        scale: Standard deviation, global or per layer (see the module docstring);
            ``math.inf`` makes those layers' prior flat (log density 0, no weight decay).
    """

    name = "normal"

    def __init__(self, scale: Scale = 1.0) -> None:
        check_scale(scale, flat=True)
        self.scale = scale

    @classmethod
    def fan_in(cls, model: nn.Module, scale: float = 1.0, bias_scale: float = 1.0) -> Normal:
        """The fan-in scaled prior of Neal (1996): ``N(0, scale^2 / fan_in)`` on every weight
        tensor, ``N(0, bias_scale^2)`` on every bias (every 1-d parameter).

        ``fan_in`` is a weight's inputs per output unit (``weight[0].numel()``: in-features,
        or in-channels times the kernel size). The prior predictive of every unit then keeps
        a variance of order one whatever the width, where a fixed ``Normal(1)`` grows with it:
        on UCI Boston's 13 standardised inputs a 13-50-1 ReLU network has prior predictive
        sd 17.8 under ``Normal(1)`` and 1.4 under this prior (standardised targets: 1;
        ``benchmarks/prior_predictive_boston.py``).

        Args:
            model: The network whose parameter names and shapes set the per-layer scales.
            scale: Weight scale before the ``1 / sqrt(fan_in)`` factor.
            bias_scale: Standard deviation of the biases.

        Examples:
            >>> import torch, bayesdl as bdl
            >>> net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
            >>> bdl.priors.Normal.fan_in(net).scale
            {'0.weight': 0.5, '0.bias': 1.0, '2.weight': 0.25, '2.bias': 1.0}
        """
        check_scale({"scale": scale, "bias_scale": bias_scale})
        scales = {
            name: bias_scale if p.dim() < 2 else scale / math.sqrt(p[0].numel())
            for name, p in model.named_parameters()
        }
        if not scales:
            raise ValueError("fan_in needs a model with parameters.")
        return cls(scales)

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
        log_norm = flat.numel() * (math.log(self.scale) + HALF_LOG_2PI)
        return flat.dot(flat) * (-0.5 / self.scale**2) - log_norm

    def log_prob_param(self, name: str, value: Tensor) -> Tensor:
        scale = resolve_scale(self.scale, name)
        if math.isinf(scale):  # flat: log density 0
            return value.new_zeros(())
        # closed form, summed: two kernels a step instead of torch.distributions' broadcasting
        log_norm = value.numel() * (math.log(scale) + HALF_LOG_2PI)
        return value.square().sum() * (-0.5 / scale**2) - log_norm

    def _finite_for_kl(self, name: str) -> None:
        if math.isinf(resolve_scale(self.scale, name)):
            raise ValueError(
                f"parameter {name!r} has a flat (infinite-scale) prior, whose KL divergence is "
                "infinite: variational methods need a finite prior scale on every layer."
            )

    def kl_elements(self, name, mu, sigma):  # noqa: D102 - closed form
        self._finite_for_kl(name)
        scale = torch.tensor(resolve_scale(self.scale, name), dtype=mu.dtype, device=mu.device)
        return kl_divergence(normal_dist(mu, sigma), normal_dist(torch.zeros_like(scale), scale))

    def kl_param(self, name, mu, sigma, generator=None):  # noqa: D102 - closed form
        return self.kl_elements(name, mu, sigma).sum()

    def marginal_std(self, name: str) -> float:  # noqa: D102 - the scale
        return resolve_scale(self.scale, name)

    def sample_param(self, name, like, n, generator=None):  # noqa: D102 - mean + scale * eps
        scale = resolve_scale(self.scale, name)
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
        prior = normal_dist(loc, torch.full_like(mu, resolve_scale(self.scale, name)))
        return kl_divergence(normal_dist(mu, sigma), prior)

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
