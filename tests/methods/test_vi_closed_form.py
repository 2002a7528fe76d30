"""Mean-field VI on conjugate Bayesian linear regression against the exact answer.

Model: y = X w + b + eps, eps ~ N(0, sigma^2) with sigma known, prior N(0, s^2) on w and b.
The exact posterior is N(m, Lambda^-1) with Lambda = A^T A / sigma^2 + I / s^2 and
m = Lambda^-1 A^T y / sigma^2, where A = [X, 1]. Mean-field VI on a Gaussian target has a
known optimum: means m and variances 1 / diag(Lambda) (Bishop, PRML sec. 10.1.2).

Tolerance: the ELBO gradient is a one-sample Monte Carlo estimate, so SGD iterates
fluctuate around the optimum. After a burn-in at a larger step we average the iterates of a
second phase and estimate the Monte Carlo standard error of that average by batch means
(10 batches, long enough to absorb the autocorrelation); the test allows Z standard errors and also
requires that error to be small next to the posterior scale, so it cannot pass by being
noisy. Plain SGD is used because for a quadratic objective (the means) its stationary mean
is the optimum; Adam's per-coordinate rescaling of the very noisy rho gradients biases it.
"""

import pytest
import torch
from _blr import SIGMA, D, N, S, batch_means_se, blr_data, blr_posterior
from _policy import Z
from torch import nn

import bayesdl as bdl

BURN_IN, KEEP = 1500, 3000


def _exact(x, y):
    """Mean-field optimum: the exact means and sds 1 / sqrt(diag(Lambda))."""
    mean, cov = blr_posterior(x, y)
    return mean, torch.linalg.inv(cov).diagonal().rsqrt()


@pytest.mark.parametrize("estimator", ["reparam", "local", "flipout"])
def test_vi_recovers_the_mean_field_optimum(estimator):
    torch.manual_seed(0)  # the model's initialisation
    x, y = blr_data()
    model = nn.Linear(D, 1).double()
    vi = bdl.MeanFieldVI(
        model, likelihood=bdl.likelihoods.Gaussian(sigma=SIGMA), prior=bdl.priors.Normal(S),
        estimator=estimator,
    )  # fmt: skip
    gen = torch.Generator().manual_seed(1)
    # The loss is ~100x less curved in rho than in the means (d2/drho2 = 2 Lambda sigma^2 / N
    # versus Lambda / N): scale the step sizes so both converge at a similar rate.
    opt = torch.optim.SGD([{"params": model.parameters(), "lr": 0.02},
                           {"params": vi.rho.parameters(), "lr": 2.0}])  # fmt: skip
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=BURN_IN, gamma=0.2)
    trace_m, trace_s = [], []
    for step in range(BURN_IN + KEEP):  # users' own loop: full-batch steps on method.loss
        opt.zero_grad()
        vi.loss(x, y, N, generator=gen).backward()
        opt.step()
        sched.step()
        if step >= BURN_IN:
            trace_m.append(torch.cat([model.weight.flatten(), model.bias]).detach())
            std = vi.std()
            trace_s.append(torch.cat([std["weight"].flatten(), std["bias"]]).detach())
    mean, sd = _exact(x, y)
    tm, ts = torch.stack(trace_m), torch.stack(trace_s)
    se_m, se_s = batch_means_se(tm), batch_means_se(ts)
    assert (se_m < 0.05 * sd).all() and (se_s < 0.05 * sd).all()  # a meaningful test
    assert ((tm.mean(0) - mean).abs() <= Z * se_m).all(), (tm.mean(0), mean, se_m)
    assert ((ts.mean(0) - sd).abs() <= Z * se_s).all(), (ts.mean(0), sd, se_s)
