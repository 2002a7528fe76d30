"""Observation models p(y | f(x)) that turn network outputs into losses and Predictives.

Likelihoods are ``nn.Module`` so that learned noise (``Gaussian(sigma=None)``) is trained
together with the network and saved with it.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from bayesdl._checks import check_labels
from bayesdl.predictive import CategoricalPredictive, GaussianPredictive, Predictive

__all__ = ["Likelihood", "Categorical", "Gaussian", "HeteroscedasticGaussian", "from_config"]

_REGISTRY: dict[str, type[Likelihood]] = {}


class Likelihood(nn.Module):
    """Base class: ``nll`` for training, ``predictive`` for model averaging."""

    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.name] = cls

    def nll(self, output: Tensor, y: Tensor) -> Tensor:
        """Mean negative log-likelihood of the minibatch (a scalar).

        Args:
            output: Network output for the batch, shape (N, ...).
            y: Targets, shape (N,) labels or (N, D) values.
        """
        raise NotImplementedError

    def check_target(self, output: Tensor, y: Tensor) -> None:
        """Raise ``ValueError`` if targets ``y`` do not fit the network ``output``."""
        raise NotImplementedError

    def predictive(self, outputs: Tensor) -> Predictive:
        """Wrap stacked network ``outputs`` (S, N, ...) as a Predictive."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments (for ``bayesdl.save``)."""
        return {"name": self.name}

    def output_curvature(self) -> float | None:
        """Bound on the per-example NLL's curvature in the network output, or ``None``.

        The largest eigenvalue of the Hessian of one example's NLL with respect to the
        network's output, bounded over outputs and targets, at the likelihood's current
        parameters. Step sizes stable for one likelihood stay stable for another when they
        are divided by the ratio of these bounds (the SG-MCMC samplers do so). ``None``:
        unbounded or unknown (the default).
        """
        return None


def from_config(config: dict[str, Any]) -> Likelihood:
    """Rebuild a likelihood from ``Likelihood.config()``."""
    config = dict(config)
    name = config.pop("name", None)
    if name not in _REGISTRY:
        raise ValueError(f"unknown likelihood {name!r}; known: {sorted(_REGISTRY)}.")
    return _REGISTRY[name](**config)


class Categorical(Likelihood):
    """Classification: the network outputs logits of shape (N, C); labels are int64 (N,)."""

    name = "categorical"

    def nll(self, output: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(output, y)

    def check_target(self, output: Tensor, y: Tensor) -> None:
        if output.dim() != 2:
            raise ValueError(
                f"Categorical expects model outputs (N, C) of logits, got {tuple(output.shape)}."
            )
        check_labels(y, output.shape[0], output.shape[1], regression_hint=True, minibatch=True)

    def predictive(self, outputs: Tensor) -> CategoricalPredictive:
        return CategoricalPredictive(outputs)

    def output_curvature(self) -> float:
        """1/2: the Hessian of cross-entropy in the logits, ``diag(p) - p p^T``, has its
        eigenvalues in [0, 1/2] (1/2 reached by two classes at p = 1/2)."""
        return 0.5


def _check_regression_target(output: Tensor, y: Tensor, d: int) -> None:
    if not y.is_floating_point():
        raise TypeError(
            f"regression targets must be floating point, got {y.dtype}; use y.float() (or the "
            "default Categorical likelihood for class labels)."
        )
    if y.dim() == 1 and d == 1 and y.shape[0] == output.shape[0]:
        return  # one target per example for a one-output model: (N,) stands for (N, 1)
    if y.shape[:1] != output.shape[:1] or tuple(y.shape[1:]) != (d,):
        got = "one value" if y.dim() == 1 else f"shape {tuple(y.shape[1:])}"
        fix = (
            f"pass y of shape (N, {d})" + (" or (N,)" if d == 1 else "")
            + (f", or give the model {math.prod(y.shape[1:])} output(s)" if y.dim() > 1 else "")
        )  # fmt: skip
        raise ValueError(
            f"regression targets must have shape (N, {d}){' or (N,)' if d == 1 else ''} for a "
            f"model with {d} output(s) per example, got {got} per example; {fix}."
        )


def _as_output_shape(output: Tensor, y: Tensor) -> Tensor:
    """Targets (N,) of a one-output model as (N, 1), so they do not broadcast to (N, N)."""
    return y.unsqueeze(-1) if y.dim() == 1 and output.dim() == 2 else y


class Gaussian(Likelihood):
    """Homoscedastic regression: ``y ~ N(f(x), sigma^2)``; the network outputs the mean (N, D).

    Targets have shape (N, D), or (N,) for a one-output network.

    Args:
        sigma: Fixed noise standard deviation, or ``None`` to learn it (initialised at
            ``init_sigma``, parameterised by its log).
        init_sigma: Starting value when ``sigma`` is learned.
    """

    name = "gaussian"

    def __init__(self, sigma: float | None = None, init_sigma: float = 1.0) -> None:
        super().__init__()
        if sigma is not None and not sigma > 0:
            raise ValueError(f"sigma must be positive or None (learned), got {sigma}.")
        if not init_sigma > 0:
            raise ValueError(f"init_sigma must be positive, got {init_sigma}.")
        self.learned = sigma is None
        log_sigma = torch.tensor(math.log(init_sigma if sigma is None else sigma))
        if self.learned:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)
        self._init_sigma = init_sigma

    @property
    def sigma(self) -> Tensor:
        """Current noise standard deviation."""
        return self.log_sigma.exp()

    def nll(self, output: Tensor, y: Tensor) -> Tensor:
        return self.nll_at(output, y, self.log_sigma)

    @staticmethod
    def nll_at(output: Tensor, y: Tensor, log_sigma: Tensor) -> Tensor:
        """``nll`` with the noise ``exp(log_sigma)`` given (HMC samples it).

        Args:
            output: Predicted means, shape (N, D).
            y: Targets, shape (N, D), or (N,) when D = 1.
            log_sigma: Log noise standard deviation, a scalar tensor.
        """
        var = (2 * log_sigma).exp()
        y = _as_output_shape(output, y)
        return (
            F.gaussian_nll_loss(output, y, var.expand_as(output), full=True, reduction="sum")
            / (output.shape[0])
        )

    def check_target(self, output: Tensor, y: Tensor) -> None:
        _check_regression_target(output, y, output.shape[-1])

    def predictive(self, outputs: Tensor) -> GaussianPredictive:
        return GaussianPredictive(outputs, (2 * self.log_sigma.detach()).exp())

    def output_curvature(self) -> float:
        """``1 / sigma^2`` at the current noise (the NLL is quadratic in the mean)."""
        return float((-2 * self.log_sigma.detach()).exp())

    def config(self) -> dict[str, Any]:
        sigma = None if self.learned else float(self.sigma)
        return {"name": self.name, "sigma": sigma, "init_sigma": self._init_sigma}


class HeteroscedasticGaussian(Likelihood):
    """Input-dependent noise: the network outputs (N, 2D) = [mean, log-variance]."""

    name = "heteroscedastic_gaussian"

    @staticmethod
    def _split(output: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_var = output.chunk(2, dim=-1)
        return mean, log_var.clamp(-20.0, 20.0).exp()

    def nll(self, output: Tensor, y: Tensor) -> Tensor:
        mean, var = self._split(output)
        y = _as_output_shape(mean, y)
        return F.gaussian_nll_loss(mean, y, var, full=True, reduction="sum") / output.shape[0]

    def check_target(self, output: Tensor, y: Tensor) -> None:
        if output.shape[-1] % 2:
            raise ValueError(
                "HeteroscedasticGaussian needs 2D outputs (mean and log-variance), got "
                f"{output.shape[-1]} output features; double the last layer's width."
            )
        _check_regression_target(output, y, output.shape[-1] // 2)

    def predictive(self, outputs: Tensor) -> GaussianPredictive:
        mean, var = self._split(outputs)
        return GaussianPredictive(mean, var)
