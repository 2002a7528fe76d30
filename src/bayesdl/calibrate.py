"""Post-hoc calibration of any method's classification predictive.

Temperature scaling (Guo et al., 2017) divides the logits of every posterior sample by one
scalar ``T > 0``, fitted on a validation split by minimising the NLL of the model average

    ``-1/N sum_n log (1/S sum_s softmax(z_ns / T)_{y_n})``

over ``log T`` (LBFGS). The result is again a ``CategoricalPredictive`` with S samples, so
the model average, its entropy and the aleatoric/epistemic decomposition still apply.
Dividing the stored log-softmax samples by ``T`` is the same as dividing the logits (the
per-sample normaliser is a constant shift). With one sample (a deterministic network) the
arg-max is unchanged; with S > 1 the arg-max of the average may move, since the samples
are sharpened or flattened before averaging.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bayesdl._checks import check_labels, check_positive_int
from bayesdl.predictive import CategoricalPredictive, Predictive

__all__ = ["TemperatureScaling"]


def _log_probs(predictive: Predictive | Tensor) -> Tensor:
    """The (S, N, C) log-softmax samples of a CategoricalPredictive or of raw logits."""
    if isinstance(predictive, Tensor):
        if predictive.dim() == 2:
            predictive = predictive.unsqueeze(0)
        predictive = CategoricalPredictive(predictive)  # checks the shape and NaN/inf
    if not isinstance(predictive, CategoricalPredictive):
        raise TypeError(
            "temperature scaling needs a CategoricalPredictive (classification) or logits "
            f"of shape (N, C) or (S, N, C), got {type(predictive).__name__}."
        )
    return predictive.samples


class TemperatureScaling:
    """Temperature scaling of a classification predictive (Guo et al., 2017).

    Args:
        temperature: A known temperature ``T > 0`` to apply without fitting; ``None``
            (default) requires ``fit`` first.

    Attributes:
        temperature: The fitted (or given) temperature; > 1 softens overconfident
            predictions, < 1 sharpens underconfident ones.

    Raises:
        ValueError: If ``temperature`` is not positive.

    Examples:
        >>> import torch
        >>> from bayesdl.calibrate import TemperatureScaling
        >>> g = torch.Generator().manual_seed(0)
        >>> logits = torch.randn(2000, 4, generator=g)
        >>> y = torch.multinomial(logits.softmax(-1), 1, generator=g).squeeze(-1)
        >>> cal = TemperatureScaling().fit(3.0 * logits, y)  # an overconfident model
        >>> abs(cal.temperature - 3.0) < 0.2  # within sampling error of the truth
        True
        >>> cal(3.0 * logits).probs.shape
        torch.Size([2000, 4])

    References:
        Guo et al., "On Calibration of Modern Neural Networks", ICML 2017.
    """

    def __init__(self, temperature: float | None = None) -> None:
        if temperature is not None and not float(temperature) > 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}.")
        self.temperature = None if temperature is None else float(temperature)

    def fit(
        self, predictive: Predictive | Tensor, y: Tensor, *, max_iter: int = 100
    ) -> TemperatureScaling:
        """Fit ``T`` on validation predictions by minimising the NLL of the model average.

        Args:
            predictive: A method's ``CategoricalPredictive`` for the validation inputs, or
                logits of shape (N, C) or (S, N, C).
            y: Validation labels, integer tensor of shape (N,) with values in [0, C).
            max_iter: Most LBFGS iterations on ``log T``.

        Returns:
            ``self``, with ``temperature`` set.

        Raises:
            TypeError: If ``predictive`` is not categorical or ``y`` is not integer.
            ValueError: On NaN/inf logits, or labels of the wrong shape or range.
            FloatingPointError: If the optimisation does not give a finite temperature.
        """
        check_positive_int(max_iter, "max_iter")
        log_p = _log_probs(predictive).detach()
        y = check_labels(y, log_p.shape[1], log_p.shape[2])
        index = y.to(log_p.device).view(1, -1, 1).expand(log_p.shape[0], -1, 1)
        log_t = log_p.new_tensor(0.0 if self.temperature is None else math.log(self.temperature))
        log_t.requires_grad_(True)
        opt = torch.optim.LBFGS([log_t], max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            opt.zero_grad()
            scaled = torch.log_softmax(log_p * torch.exp(-log_t), -1).gather(-1, index)
            nll = -(torch.logsumexp(scaled, 0) - math.log(log_p.shape[0])).mean()
            nll.backward()
            return nll

        with torch.enable_grad():
            opt.step(closure)
        temperature = math.exp(float(log_t.detach()))
        if not math.isfinite(temperature) or temperature <= 0:
            raise FloatingPointError(f"temperature fit diverged (T = {temperature}).")
        self.temperature = temperature
        return self

    def __call__(self, predictive: Predictive | Tensor) -> CategoricalPredictive:
        """The predictive with every sample's logits divided by ``temperature``.

        Args:
            predictive: A ``CategoricalPredictive``, or logits (N, C) or (S, N, C).

        Returns:
            A new ``CategoricalPredictive`` with the same number of samples.

        Raises:
            RuntimeError: If no temperature was given or fitted.
            TypeError: If ``predictive`` is not categorical.
        """
        if self.temperature is None:
            raise RuntimeError("TemperatureScaling has no temperature yet; call fit first.")
        return CategoricalPredictive(_log_probs(predictive) / self.temperature)
