"""Full-batch Hamiltonian Monte Carlo with the No-U-Turn sampler (Neal, 2011; Hoffman &
Gelman, 2014), run by Pyro's ``NUTS`` kernel over every parameter of the network.

Target: ``p(theta | D) ∝ exp(-U(theta))`` with the full-data potential
``U(theta) = -log p(D | theta) - log p(theta) = N * mean NLL(D) - log p(theta)``, evaluated
with ``torch.func.functional_call`` on the model in evaluation mode (dropout off, BatchNorm
with its running statistics). The gold standard for small networks and small data sets;
each step costs full passes over the data.

The defaults (50 warm-up and 50 kept draws, one chain, trees of depth <= 6) make a quick
first run; ``diagnostics`` (called by ``fit``) says when it is too short.

Hyperparameters: ``num_samples`` per chain and ``num_chains`` (they fix the sample bank,
``num_samples * num_chains`` draws, chain after chain; each chain's jitter and sampler draw
from seeds of its own, so a chain depends on its index alone, and under a process group
chain ``c`` runs on rank ``c % world`` and its draws are broadcast to every rank), and the kernel's ``step_size``,
``adapt_step_size``, ``adapt_mass_matrix``, ``full_mass``, ``target_accept`` and
``max_tree_depth``; ``fit`` takes the warm-up length.

State: the sample bank of ``SampleBank`` and the number of divergent transitions per chain
(buffers saved with the method, so ``diagnostics`` also works on a loaded posterior).

Initialisation: ``fit`` first runs ``epochs`` epochs of the minibatch MAP objective with Adam
(``epochs``, ``lr`` and ``batch_size`` of the common ``fit`` interface mean exactly that; 0
epochs starts from the model's weights), then starts each chain there plus
``init_jitter`` times standard normal noise, so that chains start apart as split R-hat
assumes. A learned likelihood noise (``Gaussian(sigma=None)``) is fitted in that MAP phase,
which gives its starting point, and is then sampled with the weights: ``log sigma`` under a
flat prior (``p(sigma) ∝ 1 / sigma``, Jeffreys), so each draw carries its own noise and the
predictive is the mixture over draws of ``N(f_s(x), sigma_s^2)``; ``sample_noise=False``
keeps it at its MAP value instead. A fixed noise (``Gaussian(sigma)``) stays fixed.

Pyro (``pip install bayesdl[mcmc]``) is needed by ``fit`` and ``diagnostics`` only; a saved
posterior predicts without it.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from bayesdl import distributed
from bayesdl._checks import check_input, check_positive_int, draw
from bayesdl.engine import make_batches
from bayesdl.likelihoods import Gaussian, Likelihood
from bayesdl.methods._bank import SampleBank
from bayesdl.methods.base import register_method
from bayesdl.priors import Prior
from bayesdl.runtime import seeded_global_rng
from bayesdl.types import DataLike, FitReport, ParamDict

__all__ = ["HMC", "HMCDiagnostics", "chain_stats"]

#: Name of the sampled log noise standard deviation among the sampler's parameters.
NOISE = "likelihood.log_sigma"
#: Prefix of the prior's latent variables (``Prior.latent_values()``) among them.
LATENT = "prior."


def _pyro() -> Any:
    try:
        import pyro  # noqa: F401
        import pyro.infer
        import pyro.ops.stats
    except ImportError as err:
        raise ImportError(
            "HMC needs Pyro: pip install bayesdl[mcmc] (or pip install pyro-ppl)."
        ) from err
    return pyro


ESS_MEMORY = 2**28
"""Bytes that ``chain_stats`` lets one block of quantities take in Pyro's ESS (256 MiB)."""


def chain_stats(draws: Tensor, *, max_bytes: int = ESS_MEMORY) -> tuple[Tensor, Tensor]:
    """Split R-hat and effective sample size of every quantity of a set of chains.

    Computed with ``pyro.ops.stats`` (Gelman et al.'s split R-hat; Geyer's initial monotone
    sequence ESS, as in Stan). Pyro's monotone sequence takes memory quadratic in the chain
    length per quantity (8 bytes x (draws / 2)^2), which for long chains and many
    quantities (a reference run's predictions) is more than a machine has; the quantities
    are therefore taken in blocks of at most ``max_bytes``. The results do not depend on it.

    Args:
        draws: Shape (chains, draws, quantities).
        max_bytes: Memory one block of quantities may take in the ESS computation.

    Returns:
        ``(r_hat, ess)``, each of shape (quantities,); ESS counts all chains together.

    Raises:
        ImportError: Without Pyro.
    """
    stats = _pyro().ops.stats
    draws = draws.detach().double().cpu()
    per_quantity = 9 * (draws.shape[1] // 2) ** 2 + 1  # float64 copy and a bool mask
    block = max(1, max_bytes // per_quantity)
    ess = [
        stats.effective_sample_size(draws[..., i : i + block])
        for i in range(0, draws.shape[-1], block)
    ]
    return stats.split_gelman_rubin(draws), torch.cat(ess)


@dataclass
class HMCDiagnostics:
    """Convergence diagnostics of an HMC run, per parameter tensor of the model (and per
    latent variable of the prior, named ``"prior.<name>"``, e.g. a horseshoe's log scales).

    Attributes:
        r_hat: Parameter name -> largest split R-hat over the tensor's entries (Gelman et
            al.); near 1 when the chains (and their halves) agree. ``inf``/``nan`` when a
            chain never moved.
        ess: Parameter name -> smallest effective sample size over the tensor's entries,
            all chains together.
        divergences: Divergent transitions after warm-up, all chains together.
    """

    r_hat: dict[str, float]
    ess: dict[str, float]
    divergences: int

    @property
    def max_r_hat(self) -> float:
        """The largest R-hat of all parameters (``nan`` if any is undefined)."""
        values = list(self.r_hat.values())
        return math.nan if any(math.isnan(v) for v in values) else max(values)

    @property
    def min_ess(self) -> float:
        """The smallest effective sample size of all parameters (``nan`` if any is)."""
        values = list(self.ess.values())
        return math.nan if any(math.isnan(v) for v in values) else min(values)


@register_method("hmc")
class HMC(SampleBank):
    """NUTS over all weights of a small network, on the full data set (Pyro's kernel).

    Args:
        model: The user's network; every parameter is sampled.
        likelihood: Observation model; ``Categorical()`` by default.
        prior: Weight prior; ``priors.Normal(1.0)`` by default.
        num_samples: Draws kept per chain after warm-up (at least 4, for split R-hat).
        num_chains: Independent chains, run one after the other; the bank holds
            ``num_samples * num_chains`` draws.
        step_size: Leapfrog step size; the starting value when ``adapt_step_size``.
        adapt_step_size: Tune the step size during warm-up (dual averaging).
        adapt_mass_matrix: Tune the mass matrix during warm-up.
        full_mass: Dense mass matrix instead of a diagonal one (small models only).
        target_accept: Acceptance probability the step-size adaptation aims at, in (0, 1).
        max_tree_depth: Most doublings of a NUTS trajectory (at most ``2**depth - 1``
            leapfrog steps, and gradient evaluations, per draw). The default 6 bounds the
            cost of a quick run; Stan and Pyro use 10, better for hard posteriors.
        sample_noise: Sample a learned Gaussian noise with the weights (default); ``False``
            holds it at the value of the initialising MAP fit.

    Examples:
        >>> import torch, bayesdl as bdl
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(32, 2, generator=g)
        >>> y = x @ torch.tensor([[1.0], [-1.0]]) + 0.1 * torch.randn(32, 1, generator=g)
        >>> hmc = bdl.HMC(torch.nn.Linear(2, 1), likelihood=bdl.likelihoods.Gaussian(0.1),
        ...               num_samples=50)
        >>> _ = hmc.fit((x, y), warmup=50, progress=False, generator=g)  # needs pyro-ppl
        >>> hmc.predict(x[:4], samples=10).samples.shape
        torch.Size([10, 4, 1])

    References:
        Neal, "MCMC Using Hamiltonian Dynamics", Handbook of MCMC, 2011. Hoffman & Gelman,
        "The No-U-Turn Sampler", JMLR 2014. Bingham et al., "Pyro", JMLR 2019.
    """

    full_batch = True

    def __init__(
        self,
        model: nn.Module,
        likelihood: Likelihood | None = None,
        prior: Prior | None = None,
        num_samples: int = 50,
        num_chains: int = 1,
        step_size: float = 1.0,
        adapt_step_size: bool = True,
        adapt_mass_matrix: bool = True,
        full_mass: bool = False,
        target_accept: float = 0.8,
        max_tree_depth: int = 6,
        sample_noise: bool = True,
    ) -> None:
        check_positive_int(num_samples, "num_samples")
        if num_samples < 4:
            raise ValueError(
                f"num_samples must be at least 4 (split R-hat halves each chain), got "
                f"{num_samples}."
            )
        check_positive_int(num_chains, "num_chains")
        check_positive_int(max_tree_depth, "max_tree_depth")
        if not step_size > 0:
            raise ValueError(f"step_size must be positive, got {step_size}.")
        if not 0 < target_accept < 1:
            raise ValueError(f"target_accept must lie in (0, 1), got {target_accept}.")
        super().__init__(model, likelihood, num_samples * num_chains, prior=prior)
        self.num_samples, self.num_chains = num_samples, num_chains
        self.kernel_options = {
            "step_size": step_size, "adapt_step_size": adapt_step_size,
            "adapt_mass_matrix": adapt_mass_matrix, "full_mass": full_mass,
            "target_accept_prob": target_accept, "max_tree_depth": max_tree_depth,
        }  # fmt: skip
        self.register_buffer("divergences", torch.zeros(num_chains, dtype=torch.long))
        self.latent_draws: dict[str, Tensor] = {}
        """The last ``fit``'s draws of the prior's latent variables (a horseshoe's log
        scales, unconstrained), name -> (chains x draws, ...) in chain order, so that
        ``diagnostics`` covers them; empty for priors without latents and after ``load``
        (the prior keeps their summary, ``set_latent_draws``)."""
        self.noise_sampled = sample_noise and self._bank_noise("noise_bank")
        self.hparams = {
            "num_samples": num_samples, "num_chains": num_chains, "step_size": step_size,
            "adapt_step_size": adapt_step_size, "adapt_mass_matrix": adapt_mass_matrix,
            "full_mass": full_mass, "target_accept": target_accept,
            "max_tree_depth": max_tree_depth, "sample_noise": sample_noise,
        }  # fmt: skip

    def potential(self, params: ParamDict, x: Tensor, y: Tensor) -> Tensor:
        """Full-data potential ``U = N * mean NLL - log p(theta)`` at ``params``.

        Args:
            params: Parameter name -> value for every parameter of the model, plus
                ``NOISE`` (the log noise sd, flat prior) when the noise is sampled, plus
                ``LATENT + name`` for every latent variable of the prior (a horseshoe's
                log scales). The parameters are the prior's sampler coordinates
                (``Prior.to_weights``): the weights themselves, or for a hierarchical
                prior the non-centred ``beta = w / scale``.
            x: All training inputs, shape (N, ...), on the model's device and dtype.
            y: All training targets.

        Returns:
            A scalar tensor, differentiable in ``params``.
        """
        latents = {k[len(LATENT) :]: v for k, v in params.items() if k.startswith(LATENT)}
        coords = {k: v for k, v in params.items() if k != NOISE and not k.startswith(LATENT)}
        weights, log_det = self.prior.to_weights(coords, latents)
        out = functional_call(self.model, weights, (x,))
        if NOISE in params:
            nll = Gaussian.nll_at(out, y, params[NOISE])
        else:
            nll = self.likelihood.nll(out, y)
        return len(x) * nll - self.prior.log_joint(weights, latents) - log_det

    def fit(
        self,
        data: DataLike,
        *,
        warmup: int = 50,
        epochs: int = 0,
        lr: float = 1e-3,
        batch_size: int = 128,
        init_jitter: float = 0.1,
        progress: bool = True,
        generator: torch.Generator | None = None,
        amp: torch.dtype | None = None,
    ) -> FitReport:
        """Initialise at a short MAP fit, run ``num_chains`` NUTS chains, fill the bank.

        Warns (see ``diagnostics``) when the run shows signs of not having converged.

        Args:
            data: A ``DataLoader``, a ``Dataset`` or a tuple ``(X, y)``; NUTS uses all of it
                at every step, so it must fit in memory.
            warmup: Warm-up (adaptation) iterations per chain, discarded.
            epochs: Epochs of the minibatch MAP fit (Adam) that initialises the chains;
                0 starts from the model's weights. Not HMC iterations.
            lr: Learning rate of that MAP fit.
            batch_size: Minibatch size of that MAP fit (ignored for a ``DataLoader``).
            init_jitter: Standard deviation of the Gaussian noise added to the initial
                weights for each chain (0: every chain starts at the same point).
            progress: Show progress bars (the MAP fit's and Pyro's).
            generator: Random generator for the MAP fit's shuffling and the chains' seeds
                (each chain's jitter and sampler: Pyro draws from torch's global RNG, which
                is seeded from the chain's seed inside ``torch.random.fork_rng`` and
                restored afterwards). Under a process group the chains are spread over the
                ranks and the MAP fit runs on every rank alone (it is short), so the draws
                are those of one process with the same generator.
            amp: ``torch.bfloat16``: mixed precision of the training steps, as in
                ``BaseMethod.fit`` (the initialising MAP fit only; NUTS runs in float32).

        Returns:
            A ``FitReport``: ``losses`` are the MAP fit's per epoch (empty for 0 epochs);
            ``extras`` hold ``divergences``, ``accept_rate`` (mean over chains),
            ``max_r_hat`` and ``min_ess``.

        Raises:
            ImportError: Without Pyro.
            ValueError: On bad arguments or data.
        """
        pyro = _pyro()
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}.")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"epochs must be an integer >= 0, got {epochs!r}.")
        if not init_jitter >= 0:
            raise ValueError(f"init_jitter must be >= 0, got {init_jitter}.")
        start = time.perf_counter()
        here, world = distributed.rank(), distributed.world_size()
        if world > 1 and generator is None:  # the same seeds on every rank
            generator = torch.Generator().manual_seed(distributed.shared_seed(None))
        with distributed.alone():  # every rank holds all the data and runs one process's fit
            x, y, n = self._full_data(data, batch_size)
        if epochs:
            with distributed.alone():
                report = super().fit(data, epochs=epochs, lr=lr, batch_size=batch_size,
                                     progress=progress, generator=generator, amp=amp)  # fmt: skip
        else:
            report = FitReport(n_data=n)
        with torch.no_grad():
            self._forward_checked(x, y)  # the targets fit the model's outputs
        names = list(self.names)
        init = {k: v.detach().clone() for k, v in self.model.named_parameters()}
        latents = {k: v.detach().clone() for k, v in self.prior.latent_values().items()}
        init = self.prior.from_weights(init, latents)  # the sampler's coordinates
        init.update({LATENT + k: v for k, v in latents.items()})
        if self.noise_sampled:
            init[NOISE] = self.likelihood.log_sigma.detach().clone()
        self.clear()
        self.divergences.zero_()
        self.eval()  # the potential is that of the deterministic network
        device = "cpu" if generator is None else generator.device
        seeds = torch.randint(2**62, (self.num_chains, 2), generator=generator, device=device)
        chains: dict[int, tuple[float, dict[str, Tensor]]] = {}  # acceptance, latent draws
        for chain, (jitter_seed, seed) in enumerate(seeds.tolist()):
            if chain % world != here:  # another rank's chain
                continue
            jitter = torch.Generator(device).manual_seed(jitter_seed)
            with seeded_global_rng(seed, self.device):  # Pyro draws from the global RNG
                start_at = {
                    k: (v + init_jitter * draw("randn", tuple(v.shape), v, jitter)).detach()
                    for k, v in init.items()
                }
                kernel = pyro.infer.NUTS(
                    potential_fn=lambda p: self.potential(p, x, y), **self.kernel_options
                )
                mcmc = pyro.infer.MCMC(
                    kernel, num_samples=self.num_samples, warmup_steps=warmup,
                    initial_params=start_at, disable_progbar=not progress,
                )  # fmt: skip
                mcmc.run()
                draws = mcmc.get_samples()
                self.stored.fill_(chain * self.num_samples)  # the chain's own rows
                for i in range(self.num_samples):
                    noise = draws[NOISE][i] if self.noise_sampled else None
                    z = {k: draws[LATENT + k][i] for k in latents}
                    weights, _ = self.prior.to_weights({k: draws[k][i] for k in names}, z)
                    self.store(weights, log_sigma=noise)
                diag = mcmc.diagnostics()
                self.divergences[chain] = len(diag["divergences"]["chain 0"])
                chains[chain] = (float(diag["acceptance rate"]["chain 0"]),
                                 {k: draws[LATENT + k] for k in latents})  # fmt: skip
        if world > 1:  # every rank gets every chain
            for chain in range(self.num_chains):
                rows = slice(chain * self.num_samples, (chain + 1) * self.num_samples)
                distributed.broadcast_([*self.slots(rows), self.divergences[chain]], chain % world)
            chains = {c: v for part in distributed.gather_objects(chains) for c, v in part.items()}
        self.stored.fill_(self.bank_size)
        accept = [chains[c][0] for c in range(self.num_chains)]
        self.latent_draws = {
            k: torch.cat([chains[c][1][k] for c in range(self.num_chains)]) for k in latents
        }
        self.prior.set_latent_draws(self.latent_draws)
        summary = self.diagnostics()
        report.extras.update(
            divergences=float(summary.divergences), accept_rate=sum(accept) / len(accept),
            max_r_hat=summary.max_r_hat, min_ess=summary.min_ess,
        )  # fmt: skip
        report.wall_time_s = time.perf_counter() - start
        return report

    def _full_data(self, data: DataLike, batch_size: int) -> tuple[Tensor, Tensor, int]:
        """The whole data set as two tensors on the model's device."""
        # in the data's order; a private generator: iterating a DataLoader draws a seed
        batches = make_batches(
            data, batch_size, shuffle=False, generator=torch.Generator(), model=self.model
        )
        xs, ys = zip(*batches.epoch(None), strict=True)
        x, y = self.to_model(torch.cat(xs)), torch.cat(ys).to(self.device)
        check_input(x, "X")
        return x, y, batches.n_data

    def diagnostics(self, *, max_r_hat: float = 1.01, min_ess: float = 100.0) -> HMCDiagnostics:
        """Split R-hat, effective sample size and divergences of the stored draws (the
        weights, a sampled noise, and the prior's latent variables as ``"prior.<name>"``).

        Computed with ``pyro.ops.stats`` (Gelman et al. split R-hat; Geyer's initial
        monotone sequence ESS, as in Stan) over the chains' draws of each parameter entry,
        and summarised per parameter tensor. Emits a ``UserWarning`` when any R-hat
        exceeds ``max_r_hat`` (or is undefined), any ESS is below ``min_ess``, or any
        transition diverged. The defaults follow Vehtari et al. (2021): R-hat < 1.01 and
        an ESS of at least 100.

        Args:
            max_r_hat: Largest acceptable R-hat.
            min_ess: Smallest acceptable effective sample size (all chains together).

        Returns:
            An ``HMCDiagnostics``.

        Raises:
            ImportError: Without Pyro.
            RuntimeError: Before ``fit``.
        """
        if int(self.stored) < self.bank_size:
            raise RuntimeError("HMC has no complete run to diagnose; call fit first.")
        r_hat, ess = {}, {}
        bank = self.bank()
        if self.noise_sampled:
            bank[NOISE] = self.noise_bank.unsqueeze(-1)
        bank.update({LATENT + k: v for k, v in self.latent_draws.items()})
        for name, draws in bank.items():
            r, e = chain_stats(draws.reshape(self.num_chains, self.num_samples, -1))
            r_hat[name], ess[name] = float(r.max()), float(e.min())
        result = HMCDiagnostics(r_hat, ess, int(self.divergences.sum()))
        problems = []
        if not result.max_r_hat <= max_r_hat:
            problems.append(f"max R-hat {result.max_r_hat:.3g} > {max_r_hat}")
        if not result.min_ess >= min_ess:
            problems.append(f"min ESS {result.min_ess:.3g} < {min_ess}")
        if result.divergences:
            problems.append(f"{result.divergences} divergent transitions")
        if problems:
            warnings.warn(
                "HMC may not have converged: " + "; ".join(problems) + ". Run longer "
                "(warmup, num_samples), use more chains, or a smaller step size "
                "(higher target_accept).",
                UserWarning,
                stacklevel=2,
            )
        return result
