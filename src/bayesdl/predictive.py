"""Bayesian model averaging over S stochastic outputs (samples first).

A method's ``predict(x, samples=S)`` returns one of these. Classification keeps the S
log-probability vectors ``(S, N, C)``; regression keeps the S predictive means ``(S, N, D)``
and the observation-noise variances of each sample. Every summary is computed from them:

* the Bayesian model average ``p(y|x) = 1/S sum_s p(y|x, theta_s)``, in log space;
* total uncertainty = aleatoric (expected) + epistemic (mutual information / spread of means).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bayesdl._checks import check_finite, check_labels

__all__ = ["Predictive", "CategoricalPredictive", "GaussianPredictive"]


class Predictive:
    """Base class of the model-averaged predictive distribution.

    Attributes:
        samples: The S stochastic outputs, sample dimension first.
    """

    samples: Tensor

    @property
    def num_samples(self) -> int:
        """Number of Monte Carlo samples S."""
        return self.samples.shape[0]

    def __len__(self) -> int:
        return self.samples.shape[1]

    def log_likelihood(self, y: Tensor) -> Tensor:
        """Log density of targets ``y`` under the model average, shape (N,)."""
        raise NotImplementedError

    def cpu(self) -> Predictive:
        """A copy with every tensor on the CPU."""
        raise NotImplementedError


class CategoricalPredictive(Predictive):
    """Model average of S categorical distributions.

    Args:
        logits: Unnormalised log-probabilities, shape (S, N, C).

    Examples:
        >>> import torch
        >>> p = CategoricalPredictive(torch.zeros(4, 2, 3))
        >>> p.probs.shape
        torch.Size([2, 3])
    """

    def __init__(self, logits: Tensor) -> None:
        if logits.dim() != 3:
            raise ValueError(
                f"logits must have shape (S, N, C), got {tuple(logits.shape)}; "
                "add the sample dimension first (logits.unsqueeze(0) for S = 1)."
            )
        check_finite(logits, "logits", rows_dim=1)  # rows: the inputs
        self.samples = torch.log_softmax(logits, dim=-1)

    @property
    def log_probs(self) -> Tensor:
        """Log of the averaged class probabilities, ``logsumexp_s log p_s - log S``, (N, C)."""
        return torch.logsumexp(self.samples, dim=0) - math.log(self.num_samples)

    @property
    def probs(self) -> Tensor:
        """Averaged class probabilities, shape (N, C)."""
        return self.log_probs.exp()

    @property
    def sample_probs(self) -> Tensor:
        """Per-sample class probabilities, shape (S, N, C)."""
        return self.samples.exp()

    def predicted(self) -> Tensor:
        """Most probable class under the model average, shape (N,)."""
        return self.log_probs.argmax(-1)

    def entropy(self) -> Tensor:
        """Total predictive uncertainty ``H[E_theta p(y|x,theta)]`` in nats, shape (N,)."""
        lp = self.log_probs
        return -(lp.exp() * lp).sum(-1)

    def expected_entropy(self) -> Tensor:
        """Aleatoric part ``E_theta H[p(y|x,theta)]`` in nats, shape (N,)."""
        return -(self.samples.exp() * self.samples).sum(-1).mean(0)

    def mutual_information(self) -> Tensor:
        """Epistemic part ``I[y; theta | x]`` = entropy - expected entropy (BALD), shape (N,).

        Clamped at zero: the difference is non-negative by Jensen but may round below it.
        """
        return (self.entropy() - self.expected_entropy()).clamp_min(0.0)

    def variation_ratio(self) -> Tensor:
        """``1 - (votes for the modal class) / S`` over the S sampled predictions, shape (N,)."""
        votes = torch.nn.functional.one_hot(self.samples.argmax(-1), self.samples.shape[-1])
        return 1.0 - votes.sum(0).max(-1).values.to(self.samples.dtype) / self.num_samples

    def mean_std(self) -> Tensor:
        """Standard deviation of the class probabilities over samples, averaged over classes."""
        return self.sample_probs.std(dim=0, correction=0).mean(-1)

    def log_likelihood(self, y: Tensor) -> Tensor:
        """``log p(y|x)`` of labels ``y`` (N,) under the model average, shape (N,)."""
        y = check_labels(y, len(self), self.samples.shape[-1], regression_hint=True)
        return self.log_probs.gather(-1, y.to(self.samples.device).unsqueeze(-1)).squeeze(-1)

    def cpu(self) -> CategoricalPredictive:
        return CategoricalPredictive(self.samples.cpu())


class GaussianPredictive(Predictive):
    """Model average of S Gaussians: a mixture with S equally weighted components.

    Args:
        means: Per-sample predictive means, shape (S, N, D).
        noise_variance: Observation-noise variance of each sample, broadcastable to
            (S, N, D) (a scalar for homoscedastic noise).
    """

    def __init__(self, means: Tensor, noise_variance: Tensor) -> None:
        if means.dim() != 3:
            raise ValueError(f"means must have shape (S, N, D), got {tuple(means.shape)}.")
        noise_variance = torch.as_tensor(noise_variance, dtype=means.dtype, device=means.device)
        if (noise_variance <= 0).any():
            raise ValueError("noise_variance must be positive.")
        self.samples = means
        self.noise_variance = noise_variance.expand_as(means)

    @property
    def mean(self) -> Tensor:
        """Predictive mean, shape (N, D)."""
        return self.samples.mean(0)

    @property
    def epistemic_variance(self) -> Tensor:
        """Variance of the sampled means (uncertainty about the weights), shape (N, D)."""
        return self.samples.var(0, correction=0)

    @property
    def aleatoric_variance(self) -> Tensor:
        """Expected observation-noise variance, shape (N, D)."""
        return self.noise_variance.mean(0)

    @property
    def variance(self) -> Tensor:
        """Total predictive variance (law of total variance), shape (N, D)."""
        return self.epistemic_variance + self.aleatoric_variance

    @property
    def stddev(self) -> Tensor:
        """Total predictive standard deviation, shape (N, D)."""
        return self.variance.sqrt()

    def log_likelihood(self, y: Tensor) -> Tensor:
        """Log density of ``y`` (N, D) under the S-component mixture, summed over D, (N,)."""
        if y.dim() == 1:
            y = y.unsqueeze(-1)
        if y.shape != self.samples.shape[1:]:
            raise ValueError(
                f"y must have shape {tuple(self.samples.shape[1:])}, got {tuple(y.shape)}."
            )
        normal = torch.distributions.Normal(self.samples, self.noise_variance.sqrt())
        per_sample = normal.log_prob(y.to(self.samples.dtype)).sum(-1)
        return torch.logsumexp(per_sample, 0) - math.log(self.num_samples)

    def cpu(self) -> GaussianPredictive:
        return GaussianPredictive(self.samples.cpu(), self.noise_variance.cpu())
