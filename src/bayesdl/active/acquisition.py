"""Acquisition functions: which unlabelled points to label next.

Every function takes a :class:`~bayesdl.predictive.CategoricalPredictive` over the pool,
whose per-sample log-probabilities ``pred.samples`` have shape (S, N, C) (MC samples first).
Two kinds are registered:

* **score** functions return one score per pool point, shape (N,); higher means "acquire
  first", and a batch of k is the top-k (``random``, ``entropy``, ``bald``,
  ``variation_ratio``, ``mean_std``);
* **batch** functions return the indices of a whole batch, shape (k,), chosen jointly
  (``batchbald``) or sampled (the stochastic ``power_bald``, ``softmax_bald``,
  ``softrank_bald``), or the top-k of scores that need options (``epig``).

Which posterior draws to give them (``predict(..., draws=...)``): functions that read the
dependence between pool points through the shared weight draws (``batchbald``, ``epig``:
``Acquisition.joint``) need ``draws="shared"``; per-point scores are better ranked with
``draws="independent"``, so that the Monte Carlo errors of the points are independent
(``ActiveLearner`` picks this by default; see ``preferred_draws``).

:func:`select` handles both: ``select("bald", pred, 10)`` is the top 10 by BALD,
``select("batchbald", pred, 10)`` the greedy BatchBALD batch. New functions are added with
:func:`register_acquisition`.

The scores reuse the Predictive's own summaries (``entropy``, ``mutual_information``,
``variation_ratio``, ``mean_std``), so an acquisition score and the uncertainty reported
elsewhere are the same number.

References:
    Houlsby et al., "Bayesian Active Learning for Classification and Preference
    Learning", 2011 (BALD). Gal, Islam & Ghahramani, "Deep Bayesian Active Learning with
    Image Data", ICML 2017. Kirsch, van Amersfoort & Gal, "BatchBALD: Efficient and
    Diverse Batch Acquisition for Deep Bayesian Active Learning", NeurIPS 2019.
    Kirsch et al., "Stochastic Batch Acquisition: A Simple Baseline for Deep Active
    Learning", TMLR 2023.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from bayesdl import distributed
from bayesdl.predictive import CategoricalPredictive

__all__ = [
    "Acquisition",
    "acquisition_names",
    "bald",
    "batchbald",
    "entropy",
    "epig",
    "epig_scores",
    "get_acquisition",
    "gumbel_top_k",
    "joint_entropy",
    "mean_std",
    "power_bald",
    "preferred_draws",
    "random",
    "register_acquisition",
    "select",
    "softmax_bald",
    "softrank_bald",
    "variation_ratio",
]

AcquisitionKind = Literal["score", "batch"]
"""``"score"``: returns (N,) scores, a batch is the top-k. ``"batch"``: returns (k,) indices."""

_ENTRY_ELEMENTS = 1 << 22
"""Most float64 elements of the (configurations x candidates x classes) block in BatchBALD."""

_LAZY_BLOCK = 64
"""Candidates whose BatchBALD gain is computed together in the lazy greedy search."""


@dataclass(frozen=True)
class Acquisition:
    """A registered acquisition function.

    Attributes:
        name: Canonical registry name (CLI spelling, e.g. ``"var-ratios"``).
        fn: The function: ``fn(pred[, generator=g])`` for scores,
            ``fn(pred, k, generator=g, **kw)`` for batches.
        kind: ``"score"`` or ``"batch"`` (see ``AcquisitionKind``).
        stochastic: Whether ``fn`` takes a ``generator`` (draws its own noise).
        needs_model: False when the predictions are not used (``random``), so a loop can
            skip predicting on the pool.
        joint: Whether ``fn`` reads the dependence between pool points through the weight
            draws they share (BatchBALD, EPIG), so it needs ``predict(draws="shared")``.
        sharded: Whether a batch ``fn`` splits its work over the ranks of a process group:
            it takes ``shard=(start, n)`` with ``pred`` the contiguous block of the ``n``
            candidates from ``start`` (``distributed.shard_bounds``) and returns the
            global indices, the same on every rank.
    """

    name: str
    fn: Callable[..., Tensor]
    kind: AcquisitionKind
    stochastic: bool = False
    needs_model: bool = True
    joint: bool = False
    sharded: bool = False


_REGISTRY: dict[str, Acquisition] = {}
_ALIASES: dict[str, str] = {}


def register_acquisition(
    name: str,
    kind: AcquisitionKind = "score",
    *,
    aliases: tuple[str, ...] = (),
    stochastic: bool = False,
    needs_model: bool = True,
    joint: bool = False,
    sharded: bool = False,
) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """Decorator registering an acquisition function under ``name`` (and ``aliases``).

    Args:
        name: Canonical name used by :func:`select`, the loop and the CLI.
        kind: ``"score"`` for (N,) scores, ``"batch"`` for functions returning indices.
        aliases: Other accepted spellings.
        stochastic: The function takes a ``generator`` keyword.
        needs_model: The function reads the predictions (False only for ``random``).
        joint: The function reads the joint predictive of several pool points, so it needs
            the same weight draws for every point (``predict(draws="shared")``).
        sharded: The batch function takes ``shard=(start, n)`` and splits its work over the
            ranks of a process group (see ``Acquisition``).

    Returns:
        The decorator; it returns the function unchanged.

    Raises:
        ValueError: If ``kind`` is unknown or a name is already taken.
    """
    if kind not in ("score", "batch"):
        raise ValueError(f"kind must be 'score' or 'batch', got {kind!r}.")

    def wrap(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        for key in (name, *aliases):
            if key in _REGISTRY or key in _ALIASES:
                raise ValueError(f"acquisition name {key!r} is already registered.")
        _REGISTRY[name] = Acquisition(name, fn, kind, stochastic, needs_model, joint, sharded)
        for alias in aliases:
            _ALIASES[alias] = name
        return fn

    return wrap


def acquisition_names(*, aliases: bool = False) -> list[str]:
    """Canonical names of every registered acquisition function (with ``aliases`` too).

    Args:
        aliases: Also list the alternative spellings.
    """
    return sorted([*_REGISTRY, *(_ALIASES if aliases else ())])


def get_acquisition(name: str) -> Acquisition:
    """Look an acquisition function up by name or alias.

    Args:
        name: E.g. ``"bald"``, ``"var-ratios"``, ``"variation_ratio"``, ``"batchbald"``.

    Raises:
        ValueError: If the name is unknown; the message lists the known names.
    """
    if not isinstance(name, str):
        raise TypeError(f"acquisition name must be a str, got {type(name).__name__}.")
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        raise ValueError(
            f"unknown acquisition function {name!r}; choose one of "
            f"{acquisition_names(aliases=True)}."
        )
    return _REGISTRY[key]


def preferred_draws(name: str) -> Literal["shared", "independent"]:
    """The posterior draws to score the pool with for the acquisition function ``name``.

    ``"shared"`` for functions that read the joint predictive of several points
    (``Acquisition.joint``: BatchBALD, EPIG); ``"independent"`` for the others, whose
    per-point scores are then ranked without the correlated Monte Carlo errors of shared
    draws (``benchmarks/results/acquisition_pools.md`` compares the two for BALD).

    Args:
        name: Registered name or alias.

    Raises:
        ValueError: If the name is unknown.
    """
    return "shared" if get_acquisition(name).joint else "independent"


# -- validation ---------------------------------------------------------------------------
def _check_pred(pred: Any) -> CategoricalPredictive:
    if not isinstance(pred, CategoricalPredictive):
        raise TypeError(
            f"pred must be a CategoricalPredictive (classification), got {type(pred).__name__}."
        )
    return pred


def _check_k(k: Any, n: int, name: str = "batch_size") -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"{name} must be an integer in [1, {n}] (the pool size), got {k!r}.")
    return k


def _check_scores(scores: Tensor, name: str, index: Tensor | None = None) -> Tensor:
    """Raise on NaN scores, naming their pool indices (``index[i]`` for position i if given)."""
    nan = torch.isnan(scores)
    if nan.any():
        bad = nan.nonzero().flatten()
        bad = bad if index is None else index[bad]
        raise ValueError(
            f"acquisition {name!r} produced NaN scores at {bad.numel()} pool point(s), "
            f"indices {bad[:10].tolist()}; check the model's predictions for these inputs."
        )
    return scores


# -- score functions ------------------------------------------------------------------------
@register_acquisition("random", stochastic=True, needs_model=False)
def random(pred: CategoricalPredictive, generator: torch.Generator | None = None) -> Tensor:
    """Uniform random scores: top-k of them is a uniformly random k-subset of the pool.

    Args:
        pred: Predictive over the pool, samples (S, N, C); only N is used.
        generator: CPU random generator; ``None`` uses torch's global RNG.

    Returns:
        Scores, shape (N,), i.i.d. uniform on [0, 1).
    """
    return torch.rand(len(_check_pred(pred)), generator=generator, dtype=torch.float64)


@register_acquisition("entropy", aliases=("max-entropy", "max_entropy"))
def entropy(pred: CategoricalPredictive) -> Tensor:
    """Max entropy: entropy of the model average ``H[(1/S) sum_s p(y|x, theta_s)]``.

    Args:
        pred: Predictive over the pool, samples (S, N, C).

    Returns:
        Scores, shape (N,), in nats; total (aleatoric + epistemic) uncertainty.

    Examples:
        >>> import torch
        >>> p = CategoricalPredictive(torch.zeros(3, 2, 4))
        >>> entropy(p)  # uniform over 4 classes: log 4
        tensor([1.3863, 1.3863])
    """
    return _check_pred(pred).entropy()


@register_acquisition("bald", aliases=("mutual_information", "mutual-information"))
def bald(pred: CategoricalPredictive) -> Tensor:
    """BALD: mutual information between the label and the weights (Houlsby et al., 2011).

    ``I[y; theta | x] = H[mean_s p_s] - mean_s H[p_s]``.

    Args:
        pred: Predictive over the pool, samples (S, N, C).

    Returns:
        Scores, shape (N,), in nats; higher is more informative about the weights.
    """
    return _check_pred(pred).mutual_information()


@register_acquisition("var-ratios", aliases=("variation_ratio", "variation-ratio", "var_ratios"))
def variation_ratio(pred: CategoricalPredictive) -> Tensor:
    """Variation ratio: ``1 - (votes for the modal class) / S`` over the S sampled argmaxes.

    Args:
        pred: Predictive over the pool, samples (S, N, C).

    Returns:
        Scores, shape (N,), in [0, 1 - 1/C].
    """
    return _check_pred(pred).variation_ratio()


@register_acquisition("mean-std", aliases=("mean_std",))
def mean_std(pred: CategoricalPredictive) -> Tensor:
    """Mean standard deviation: the std of ``p(y=c|x, theta_s)`` over samples, mean over c.

    Args:
        pred: Predictive over the pool, samples (S, N, C).

    Returns:
        Scores, shape (N,).
    """
    return _check_pred(pred).mean_std()


# -- batch functions ------------------------------------------------------------------------
def _conditional_entropy_terms(
    log_joint: Tensor, probs: Tensor, exact: bool
) -> tuple[Tensor, Tensor]:
    """Chain-rule pieces of the joint entropy of a batch plus each candidate.

    With ``log_joint[s, m] = log p(y_batch = m | theta_s)`` for M configurations m and
    candidate probabilities ``probs[s, i, c] = p(y_i = c | theta_s)``:

    * ``log p(m) = logsumexp_s log_joint[s, m] - log S``;
    * ``q_i(c | m) = sum_s w[m, s] probs[s, i, c]`` with ``w = softmax_s log_joint[:, m]``
      (the posterior over samples given the batch labels m), computed as a matrix
      product, so the products of many probabilities stay in log space;
    * ``H(y_batch, y_i) = sum_m rho_m (-log p(m) + H[q_i(. | m)])`` with ``rho_m = p(m)``
      when the M configurations are all of them (exact), ``1/M`` when they are samples from
      ``p(m)`` (a Monte Carlo estimate).

    Returns:
        ``(H(y_batch), H(y_i | y_batch))``: a scalar and a (N,) tensor, in nats.
    """
    s, m = log_joint.shape
    log_pm = torch.logsumexp(log_joint, 0) - math.log(s)
    rho = log_pm.exp() if exact else torch.full_like(log_pm, 1.0 / m)
    w = torch.softmax(log_joint, 0).T  # (M, S)
    n, c = probs.shape[1:]
    cond = torch.empty(n, dtype=probs.dtype, device=probs.device)
    step = max(1, _ENTRY_ELEMENTS // max(1, m * c))
    for start in range(0, n, step):
        block = probs[:, start : start + step]  # (S, b, C)
        q = (w @ block.reshape(s, -1)).reshape(m, -1, c)  # (M, b, C)
        h = -torch.special.xlogy(q, q).sum(-1)  # (M, b)
        cond[start : start + step] = rho @ h
    return -(rho * log_pm).sum(), cond


def joint_entropy(pred: CategoricalPredictive, indices: Tensor | list[int]) -> Tensor:
    """Exact joint entropy ``H(y_i1, ..., y_ik)`` of the labels of ``indices``.

    Under the model average the labels are dependent through the shared weights:
    ``p(y_1..y_k) = (1/S) sum_s prod_j p(y_j | x_j, theta_s)``. The (S, C^k) table of
    ``log prod_j p(y_j | theta_s)`` is built in log space, so its size grows as C^k.

    Args:
        pred: Predictive over the pool, samples (S, N, C), the same S samples for all points.
        indices: Pool positions, shape (k,); repeated positions are allowed (and count as
            independent draws given the weights).

    Returns:
        A float64 scalar tensor, in nats.

    Raises:
        ValueError: If an index is out of range or the table would exceed 10^7 entries.
    """
    pred = _check_pred(pred)
    idx = torch.as_tensor(indices, dtype=torch.long).flatten().cpu()
    logp = pred.samples.detach().double().cpu()
    s, n, c = logp.shape
    if idx.numel() and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"indices must lie in [0, {n - 1}], got {idx.tolist()}.")
    if s * c ** idx.numel() > 10**7:
        raise ValueError(
            f"the exact table has S * C^k = {s} * {c}^{idx.numel()} entries; too many."
        )
    log_joint = torch.zeros(s, 1, dtype=torch.float64)
    for j in idx.tolist():
        log_joint = (log_joint.unsqueeze(-1) + logp[:, j].unsqueeze(1)).reshape(s, -1)
    log_pm = torch.logsumexp(log_joint, 0) - math.log(s)
    return -(log_pm.exp() * log_pm).sum()


@register_acquisition("batchbald", kind="batch", stochastic=True, joint=True, sharded=True)
def batchbald(
    pred: CategoricalPredictive,
    batch_size: int,
    *,
    num_configs: int = 10_000,
    generator: torch.Generator | None = None,
    shard: tuple[int, int] | None = None,
) -> Tensor:
    """BatchBALD (Kirsch et al., 2019): greedy batch maximising the joint mutual information.

    ``a(x_1..x_k) = H(y_1..y_k) - sum_j E_theta H(y_j | theta)``, where the joint entropy
    uses the *same* S weight samples for every pool point (so two points that the weights
    decide together are not both informative). The batch is grown greedily: at step n
    the candidate i maximises ``H(y_batch, y_i) - E_theta H(y_i | theta)`` (a
    ``1 - 1/e`` approximation, as the objective is submodular). The search is lazy: a
    candidate's gain can only shrink as the batch grows and never exceeds its BALD score,
    so candidates are scored in blocks of 64 in order of these bounds and the search stops
    once the best gain beats every remaining bound (the same batch as scoring every
    candidate, usually at a small fraction of the cost).

    Joint entropies are exact, from the (S, C^n) table of batch-label log-probabilities,
    while ``C^n <= num_configs``; beyond that ``num_configs`` label configurations are
    sampled from the model average and the joint entropy is a Monte Carlo estimate (the
    paper's scheme). All products of probabilities are accumulated in log space, in float64.

    Args:
        pred: Predictive over the pool, samples (S, N, C); predictions must share their
            weight samples across the pool (every bayesdl method's ``predict`` does).
        batch_size: Batch size k, at most N.
        num_configs: Largest exact table (configurations of the batch's labels) and the
            number of sampled configurations beyond it. Cost per greedy step is
            ``O(num_configs * S * N * C)``.
        generator: CPU generator for the sampled configurations (only used when the exact
            table would exceed ``num_configs``).
        shard: Under a process group, ``(start, n)``: ``pred`` holds this rank's contiguous
            block of a pool of ``n`` candidates, from ``start`` (``distributed.shard_bounds``).
            Every rank then keeps the pool's bounds (n floats), scores the candidates of
            each block of the lazy search that it holds, and the block's gains are
            all-reduced; the chosen point's (S, C) draws are broadcast by its rank. Every
            rank follows the search of one process and returns its batch (global indices).

    Returns:
        Selected pool indices, shape (k,), int64, in selection order, all distinct.

    Raises:
        ValueError: If ``batch_size`` or ``num_configs`` is invalid, or a score is NaN.

    Examples:
        >>> import torch
        >>> logits = torch.randn(8, 5, 3, generator=torch.Generator().manual_seed(0))
        >>> batchbald(CategoricalPredictive(logits), 2).shape
        torch.Size([2])

    References:
        Kirsch, van Amersfoort & Gal, "BatchBALD: Efficient and Diverse Batch Acquisition
        for Deep Bayesian Active Learning", NeurIPS 2019.
    """
    pred = _check_pred(pred)
    s, n, c = pred.samples.shape
    offset, total = (0, n) if shard is None else shard
    _check_k(batch_size, total)
    if isinstance(num_configs, bool) or not isinstance(num_configs, int) or num_configs < 1:
        raise ValueError(f"num_configs must be a positive integer, got {num_configs!r}.")
    pred64 = CategoricalPredictive(pred.samples.detach().double().cpu())
    logp = pred64.samples  # (S, N, C)
    probs = pred64.sample_probs
    aleatoric = pred64.expected_entropy()  # E_theta H(y_i | theta), (N,)
    # Lazy greedy: a candidate's gain I(y_i; theta | y_batch) never exceeds its gain at an
    # earlier step (submodularity), nor its BALD score. Candidates are scored in blocks in
    # order of these bounds, stopping once the best gain found beats every remaining bound.
    bound = pred64.mutual_information()
    if shard is not None:  # every rank the whole pool's bounds
        bound = distributed.gather(bound)
    bound = _check_scores(bound, "batchbald").clone()
    log_joint = torch.zeros(s, 1, dtype=torch.float64)
    sampled: Tensor | None = None  # weight sample of each sampled configuration, (M,)
    chosen: list[int] = []
    columns: list[Tensor] = []  # the chosen points' log-probabilities, (S, C) each
    taken = torch.zeros(total, dtype=torch.bool)
    for _ in range(batch_size):
        order = torch.sort(bound.masked_fill(taken, -math.inf), descending=True, stable=True)
        order = order.indices[: total - len(chosen)]
        best, j = -math.inf, -1
        for start in range(0, order.numel(), _LAZY_BLOCK):
            ids = order[start : start + _LAZY_BLOCK]
            if best >= bound[ids[0]]:
                break
            mine = (ids >= offset) & (ids < offset + n)  # this rank's candidates
            local = ids[mine] - offset
            _, cond = _conditional_entropy_terms(log_joint, probs[:, local], sampled is None)
            # H(batch, y_i) - E H(y_i|theta), up to terms constant in i.
            gains = torch.zeros(ids.numel(), dtype=torch.float64)
            gains[mine] = cond - aleatoric[local]
            if shard is not None:
                gains = distributed.all_reduce_sum(gains)
            gains = _check_scores(gains, "batchbald", ids)
            bound[ids] = gains
            k = int(gains.argmax())
            if gains[k] > best:
                best, j = float(gains[k]), int(ids[k])
        chosen.append(j)
        taken[j] = True
        column = logp[:, j - offset] if offset <= j < offset + n else logp.new_zeros(s, c)
        if shard is not None:  # from the rank that holds it
            owner = next(r for r in range(distributed.world_size())
                         if j < distributed.shard_bounds(total, r)[1])  # fmt: skip
            distributed.broadcast_([column], owner)
        columns.append(column)
        if sampled is None and log_joint.shape[1] * c <= num_configs:
            log_joint = (log_joint.unsqueeze(-1) + column.unsqueeze(1)).reshape(s, -1)
            continue
        if sampled is None:  # switch to sampled configurations of the whole batch so far
            sampled = torch.randint(s, (num_configs,), generator=generator)
            log_joint = torch.zeros(s, num_configs, dtype=torch.float64)
            new = columns
        else:
            new = [column]
        for lp in new:  # y_i ~ p(y_i | theta_{s_m}) for each configuration m
            y = torch.multinomial(lp[sampled].exp(), 1, generator=generator).squeeze(-1)
            log_joint += lp[:, y]
    return torch.tensor(chosen, dtype=torch.long)


@register_acquisition("power-bald", kind="batch", aliases=("power_bald",), stochastic=True)
def power_bald(
    pred: CategoricalPredictive,
    batch_size: int,
    *,
    beta: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """PowerBALD (Kirsch et al., 2023): sample a batch with probability ~ BALD^beta.

    Stochastic batch acquisition draws k points without replacement with probabilities
    proportional to ``score^beta``; the Gumbel-top-k trick does this in one pass: the top
    k of ``beta * log(score_i) + g_i``, with ``g_i ~ Gumbel(0, 1)``. ``beta = 0`` is
    uniform random acquisition, ``beta -> inf`` is top-k BALD. Zero scores are clamped to
    the smallest positive float, so they are drawn (uniformly) only after every other point.

    Args:
        pred: Predictive over the pool, samples (S, N, C).
        batch_size: Batch size k, at most N.
        beta: Inverse temperature, finite and >= 0 (the paper's default is 1).
        generator: CPU generator for the Gumbel noise (reproducible batches).

    Returns:
        Selected pool indices, shape (k,), int64, distinct, best perturbed score first.

    Raises:
        ValueError: If ``batch_size`` or ``beta`` is invalid, or a BALD score is NaN.

    References:
        Kirsch, Farquhar, Atighehchian, Jesson, Branchaud-Charron & Gal, "Stochastic Batch
        Acquisition: A Simple Baseline for Deep Active Learning", TMLR 2023.
    """
    scores, beta = _checked_bald(pred, batch_size, beta, "power-bald")
    log_scores = scores.clamp_min(torch.finfo(torch.float64).tiny).log()
    return gumbel_top_k(beta * log_scores, batch_size, generator)


def gumbel_top_k(log_weights: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """Draw ``k`` distinct indices without replacement with probabilities ~ ``exp(log_weights)``.

    The Gumbel-top-k trick: the top k of ``log_weights + g``, ``g_i ~ Gumbel(0, 1)`` i.i.d.,
    is a draw of the successive sampling (Plackett-Luce) scheme: the first index with
    probability ``w_i / sum w``, the next among the rest likewise, and so on.

    Args:
        log_weights: Unnormalised log-probabilities, shape (N,), float64.
        k: Number of indices, at most N.
        generator: CPU generator for the Gumbel noise.

    Returns:
        Indices, shape (k,), int64, in order of drawing.
    """
    gumbel = -torch.empty_like(log_weights).exponential_(generator=generator).log()
    return torch.topk(log_weights + gumbel, k).indices


def _checked_bald(pred: Any, batch_size: Any, beta: Any, name: str) -> tuple[Tensor, float]:
    """Validate a stochastic BALD call; return the pool's BALD scores (float64, CPU), beta."""
    pred = _check_pred(pred)
    _check_k(batch_size, len(pred))
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}.")
    return _check_scores(bald(pred).detach().double().cpu(), name), float(beta)


@register_acquisition("softmax-bald", kind="batch", aliases=("softmax_bald",), stochastic=True)
def softmax_bald(
    pred: CategoricalPredictive,
    batch_size: int,
    *,
    beta: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """SoftmaxBALD (Kirsch et al., 2023): sample a batch with probability ~ exp(beta BALD).

    Drawn without replacement by the Gumbel-top-k trick (:func:`gumbel_top_k`) on
    ``beta * BALD_i``. ``beta = 0`` is uniform random acquisition, ``beta -> inf`` top-k
    BALD. BALD is in nats, so ``beta`` sets how many nats of score double a point's odds.

    Args:
        pred: Predictive over the pool, samples (S, N, C).
        batch_size: Batch size k, at most N.
        beta: Inverse temperature, finite and >= 0 (the paper's default is 1).
        generator: CPU generator for the Gumbel noise (reproducible batches).

    Returns:
        Selected pool indices, shape (k,), int64, distinct, in order of drawing.

    Raises:
        ValueError: If ``batch_size`` or ``beta`` is invalid, or a BALD score is NaN.

    References:
        Kirsch et al., "Stochastic Batch Acquisition: A Simple Baseline for Deep Active
        Learning", TMLR 2023.
    """
    scores, beta = _checked_bald(pred, batch_size, beta, "softmax-bald")
    return gumbel_top_k(beta * scores, batch_size, generator)


@register_acquisition("softrank-bald", kind="batch", aliases=("softrank_bald",), stochastic=True)
def softrank_bald(
    pred: CategoricalPredictive,
    batch_size: int,
    *,
    beta: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Soft-rank BALD (Kirsch et al., 2023): sample a batch with probability ~ rank^-beta.

    ``rank_i`` is point i's position when the pool is sorted by decreasing BALD (1 for
    the best; ties in pool order), so only the order of the scores matters, not their
    scale. Drawn without replacement by the Gumbel-top-k trick (:func:`gumbel_top_k`) on
    ``-beta * log(rank_i)``.

    Args, returns, errors and reference: as :func:`softmax_bald`, with ``pred`` the pool's
    predictive (S, N, C), ``batch_size`` k, ``beta`` the exponent of the rank (>= 0;
    0 is uniform random acquisition) and ``generator`` the Gumbel noise's generator.
    """
    scores, beta = _checked_bald(pred, batch_size, beta, "softrank-bald")
    order = torch.sort(scores, descending=True, stable=True).indices
    rank = torch.empty_like(scores)
    rank[order] = torch.arange(1, scores.numel() + 1, dtype=scores.dtype)
    return gumbel_top_k(-beta * rank.log(), batch_size, generator)


def epig_scores(pred: CategoricalPredictive, target: CategoricalPredictive) -> Tensor:
    """EPIG (Bickford Smith et al., 2023): expected information gain about target labels.

    ``EPIG(x) = E_{x*} I[y; y* | x, x*]``, the mutual information between the label of a
    pool point ``x`` and the label of a target input ``x*``, averaged over the M target
    inputs. Under the model average ``p(y, y*) = (1/S) sum_s p_s(y | x) p_s(y* | x*)``, so

    ``I[y; y*] = sum_{c,d} p(c, d) log p(c, d) + H[p(y)] + H[p(y*)]``.

    ``pred`` and ``target`` must come from the *same* S weight draws (one
    ``predict(..., draws="shared")`` call on the pool and the targets together, split).

    Args:
        pred: Predictive over the pool, samples (S, N, C).
        target: Predictive over the target inputs, samples (S, M, C), same draws.

    Returns:
        Scores, shape (N,), float64, in nats.

    Raises:
        ValueError: If the sample counts or classes of ``pred`` and ``target`` differ.

    References:
        Bickford Smith, Kirsch, Farquhar, Gal, Foster & Rainforth, "Prediction-Oriented
        Bayesian Active Learning", AISTATS 2023.
    """
    pred, target = _check_pred(pred), _check_pred(target)
    s, n, c = pred.samples.shape
    if target.samples.shape[0] != s or target.samples.shape[2] != c:
        raise ValueError(
            f"target must have the pool's samples and classes (S={s}, C={c}), got shape "
            f"{tuple(target.samples.shape)}; predict the pool and the targets in one call."
        )
    p = pred.sample_probs.detach().double().cpu()  # (S, N, C)
    q = target.sample_probs.detach().double().cpu()  # (S, M, C)
    m = q.shape[1]
    h_target = CategoricalPredictive(target.samples.detach().double().cpu()).entropy().mean()
    h_pool = CategoricalPredictive(pred.samples.detach().double().cpu()).entropy()
    out = torch.empty(n, dtype=torch.float64)
    step = max(1, _ENTRY_ELEMENTS // max(1, m * c * c))
    qf = q.reshape(s, m * c)
    for start in range(0, n, step):
        block = p[:, start : start + step]  # (S, b, C)
        joint = (block.reshape(s, -1).T @ qf / s).reshape(-1, c, m, c)  # (b, C, M, C)
        neg_h = torch.special.xlogy(joint, joint).sum((1, 3)).mean(-1)  # (b,)
        out[start : start + step] = neg_h
    return out + h_pool + h_target


@register_acquisition("epig", kind="batch", stochastic=True, joint=True)
def epig(
    pred: CategoricalPredictive,
    batch_size: int,
    *,
    num_targets: int = 100,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Top-k EPIG with target inputs drawn from the pool itself (Bickford Smith et al.).

    Without a separate target set, the pool is the sample of the input distribution:
    ``num_targets`` pool points (uniformly, without replacement) are the targets ``x*``
    of :func:`epig_scores`, and the ``batch_size`` points of highest EPIG are returned.
    ``pred`` must share its weight draws across the pool (``draws="shared"``).

    Args:
        pred: Predictive over the pool, samples (S, N, C), the same draws for every point.
        batch_size: Batch size k, at most N.
        num_targets: Target inputs M drawn from the pool (all N when larger than N).
        generator: CPU generator for drawing the targets.

    Returns:
        Selected pool indices, shape (k,), int64, highest EPIG first.

    Raises:
        ValueError: If ``batch_size`` or ``num_targets`` is invalid, or a score is NaN.

    References:
        Bickford Smith et al., "Prediction-Oriented Bayesian Active Learning", AISTATS 2023.
    """
    pred = _check_pred(pred)
    n = len(pred)
    _check_k(batch_size, n)
    if isinstance(num_targets, bool) or not isinstance(num_targets, int) or num_targets < 1:
        raise ValueError(f"num_targets must be a positive integer, got {num_targets!r}.")
    idx = torch.randperm(n, generator=generator)[: min(num_targets, n)]
    target = CategoricalPredictive(pred.samples[:, idx.to(pred.samples.device)])
    scores = _check_scores(epig_scores(pred, target), "epig")
    return torch.sort(scores, descending=True, stable=True).indices[:batch_size]


# -- one entry point ------------------------------------------------------------------------
def select(
    name: str,
    pred: CategoricalPredictive,
    k: int,
    generator: torch.Generator | None = None,
    **kwargs: Any,
) -> Tensor:
    """Choose ``k`` pool points with the acquisition function ``name``.

    Score functions give (N,) scores and the top ``k`` are returned, highest first (ties
    go to the lower index); batch functions are called with ``k`` as their batch size.

    Args:
        name: Registered name or alias (see :func:`acquisition_names`).
        pred: Predictive over the pool, samples (S, N, C).
        k: Number of points, 1 <= k <= N.
        generator: CPU generator passed to stochastic functions (``random``,
            ``batchbald``, ``power-bald``).
        **kwargs: Extra keyword arguments of a batch function (``num_configs``, ``beta``).

    Returns:
        Pool indices, shape (k,), int64, distinct.

    Raises:
        ValueError: If ``name`` is unknown (the message lists the known names), ``k`` is
            out of range, or a score is NaN (the message names the indices).

    Examples:
        >>> import torch
        >>> logits = torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(0))
        >>> select("bald", CategoricalPredictive(logits), 2).tolist()
        [3, 4]
    """
    acq = get_acquisition(name)
    pred = _check_pred(pred)
    _check_k(k, len(pred), "k")
    noise = {"generator": generator} if acq.stochastic else {}
    if acq.kind == "batch":
        return acq.fn(pred, k, **noise, **kwargs).to(torch.long).cpu()
    if kwargs:
        raise TypeError(f"acquisition {acq.name!r} takes no options, got {sorted(kwargs)}.")
    scores = _check_scores(acq.fn(pred, **noise).detach().cpu(), acq.name)
    if scores.shape != (len(pred),):
        raise ValueError(
            f"acquisition {acq.name!r} returned shape {tuple(scores.shape)}, "
            f"expected ({len(pred)},)."
        )
    # Stable descending sort: equal scores keep pool order (topk's tie order is unspecified).
    return torch.sort(scores, descending=True, stable=True).indices[:k]
