"""Running under PyTorch's distributed runtime (``torchrun``, ``torch.distributed``).

When a process group is initialised (``torchrun`` sets ``RANK`` / ``WORLD_SIZE`` and
``bayesdl``'s CLI calls ``init_from_env``; a user's script calls
``torch.distributed.init_process_group`` itself), bayesdl spreads its work over the ranks
and gives the answers of one process:

* ``fit`` draws one permutation of the N examples per epoch, the same on every rank (seeded
  as ``torch.utils.data.DistributedSampler`` is: ``seed + epoch``), cuts it into global
  minibatches of ``batch_size`` and gives every rank a contiguous slice of each
  (``ShardedBatches``). After the backward pass the gradients are all-reduced, each rank's
  weighted by its share of the global minibatch (``all_reduce_gradients``), so every rank
  takes the step one process would take on the whole minibatch; N in the ELBO / prior term
  is the global data size. The weights, the optimiser state and the method's generator stay
  identical on every rank, so noise drawn per parameter (SGLD / SGHMC, a weight sample of
  MeanFieldVI's ``"reparam"`` estimator) is drawn once per global step, the same on every
  rank, and SWAG's moments and sample banks are collected once per global step. Noise drawn
  per example (VI's local reparameterisation and Flipout, concrete dropout's and L0's
  gates, the model's ``nn.Dropout`` masks: ``global_dropout``) is drawn for the whole
  global minibatch on every rank and cut to the rank's rows (``FitState.rows``), so those
  fits equal one process's too.
* Ensemble members (DeepEnsemble, MultiSWAG) and HMC chains are spread over the ranks
  (member or chain ``m`` on rank ``m % world``, each run ``alone`` with seeds of its own)
  and broadcast from there at the end (``broadcast_``).
* Prediction in shards: ``predict_sharded`` predicts each rank's contiguous block of the
  inputs with the same posterior draws and all-gathers the outputs.
* Laplace all-reduces its curvature and log-likelihood sums; active learning scores its pool
  in shards and takes the global top-k by an all-gather of (score, index); BatchBALD splits
  its greedy search over the ranks.
* Rank 0 alone writes files (``is_main``).

Why an explicit all-reduce rather than ``DistributedDataParallel``: the engine already owns
the one training loop, and a method's parameters are not only the user's module's (VI's
standard deviations, a learned noise, L0's gates, ensemble members re-initialised in turn);
one flat all-reduce of every trainable gradient after ``backward`` covers them all without
wrapping the model, changing its ``state_dict`` keys, or special-casing a method. What it
gives up is DDP's overlap of communication with the backward pass (see the guide's table of
bytes per step).

A config that differs between ranks (``check_same``) or a world size that does not divide
what must be divided (``check_divisible``) raises a ``ValueError`` on every rank, and
``init_from_env`` sets a timeout on the process group so that a rank that is gone ends the
run with an error instead of a hang.
"""

from __future__ import annotations

import contextvars
import copy
import datetime
import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from bayesdl.engine import TensorBatches
from bayesdl.inputs import num_examples
from bayesdl.runtime import default_chunk_rows

if TYPE_CHECKING:
    from bayesdl.predictive import Predictive

__all__ = [
    "is_active", "rank", "world_size", "is_main", "init_from_env", "barrier", "check_same",
    "check_divisible", "shared_seed", "rank_generator", "all_reduce_sum",
    "all_reduce_gradients", "shard_bounds", "shard", "gather", "gather_predictive",
    "predict_sharded", "top_k", "ShardedBatches", "DatasetBatches", "DEFAULT_TIMEOUT_S",
    "global_dropout", "broadcast_rng", "alone", "broadcast_", "gather_objects",
]  # fmt: skip

DEFAULT_TIMEOUT_S = 300.0
"""Seconds a collective waits for the other ranks before the run fails (``init_from_env``)."""


_ALONE = contextvars.ContextVar("bayesdl_distributed_alone", default=False)


def is_active() -> bool:
    """Whether a process group with more than one rank is initialised (and this rank is not
    working ``alone``)."""
    if _ALONE.get():
        return False
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@contextmanager
def alone() -> Iterator[None]:
    """Run the block as one process would, on this rank's own (no sharding, no collective):
    how a rank trains its ensemble members or runs its HMC chains. ``rank()`` and
    ``world_size()`` then say 0 and 1, so the block must not write files that rank 0 alone
    should write."""
    token = _ALONE.set(True)
    try:
        yield
    finally:
        _ALONE.reset(token)


def gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order (``[value]`` without a group).

    Args:
        value: This rank's object.
    """
    if not is_active():
        return [value]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def broadcast_(tensors: Sequence[Tensor], src: int) -> None:
    """Overwrite ``tensors`` on every rank with rank ``src``'s values, in place (views of a
    larger tensor included).

    Args:
        tensors: The same shapes and dtypes on every rank, in the same order.
        src: The rank whose values everyone takes.
    """
    if not is_active():
        return
    for t in tensors:
        buf = _comm(t.detach().clone().contiguous())
        dist.broadcast(buf, src)
        with torch.no_grad():
            t.copy_(buf.to(t.device))


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_active() else 0


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if is_active() else 1


def is_main() -> bool:
    """Whether this process is rank 0, the one that writes files (``True`` alone)."""
    return rank() == 0


def init_from_env(backend: str | None = None, timeout_s: float | None = None) -> bool:
    """Initialise the default process group when launched by ``torchrun`` with several ranks.

    Reads ``WORLD_SIZE`` (and ``RANK``, ``MASTER_ADDR``, ``MASTER_PORT``, set by
    ``torchrun``); does nothing if ``WORLD_SIZE`` is unset or 1, or a group already exists.
    The keys of each ``torchrun`` restart go under their own prefix in the rendezvous store.
    On a GPU each rank uses ``cuda:LOCAL_RANK``.

    Args:
        backend: ``"nccl"`` or ``"gloo"``; ``None``: NCCL when CUDA is available, else gloo.
        timeout_s: Seconds a collective waits for the other ranks before raising (``None``:
            ``BAYESDL_DIST_TIMEOUT`` from the environment, else ``DEFAULT_TIMEOUT_S``).

    Returns:
        Whether this call initialised a process group.

    Raises:
        ValueError: If ``WORLD_SIZE`` or the timeout is not a positive number, or
            ``RANK``, ``MASTER_ADDR`` or ``MASTER_PORT`` is missing.
    """
    raw = os.environ.get("WORLD_SIZE", "1")
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(
            f"WORLD_SIZE must be a positive integer, got {raw!r}; launch with torchrun."
        )
    if int(raw) == 1 or (dist.is_available() and dist.is_initialized()):
        return False
    if timeout_s is None:
        timeout_s = float(os.environ.get("BAYESDL_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}.")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(
            f"WORLD_SIZE={raw} but {missing} are not set; launch with torchrun, which sets them."
        )
    timeout = datetime.timedelta(seconds=timeout_s)
    rank_, world = int(os.environ["RANK"]), int(raw)
    # torchrun's agent keeps its store over restarts (--max-restarts): the keys of this
    # attempt go under their own prefix, so a restarted group never reads a dead rank's address
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
        is_master=not agent and rank_ == 0, timeout=timeout,
    )  # fmt: skip
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    store = dist.PrefixStore(f"bayesdl/attempt_{attempt}", store)
    dist.init_process_group(backend, store=store, rank=rank_, world_size=world, timeout=timeout)
    return True


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if is_active():
        dist.barrier()


def _fingerprint(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=repr)
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", text)  # a function's repr holds its address
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_same(value: Any, what: str) -> None:
    """Raise on every rank unless ``value`` is the same on every rank.

    Args:
        value: A JSON-serialisable value (a config dict; other objects compare by ``repr``).
        what: What it is, for the message (``"the active-learning config"``).

    Raises:
        ValueError: If some rank's value differs from rank 0's (the message names the ranks).
    """
    if not is_active():
        return
    prints: list[Any] = [None] * world_size()
    dist.all_gather_object(prints, _fingerprint(value))
    bad = [r for r, p in enumerate(prints) if p != prints[0]]
    if bad:
        raise ValueError(
            f"{what} is not the same on every rank: ranks {bad} differ from rank 0; start "
            "every rank with the same command, arguments and data."
        )


def check_divisible(n: int, what: str) -> None:
    """Raise unless the world size divides ``n``.

    Args:
        n: The number that must be split evenly over the ranks.
        what: Its name, for the message (``"batch_size"``).

    Raises:
        ValueError: If ``n`` is not a multiple of the world size.
    """
    w = world_size()
    if n % w:
        raise ValueError(
            f"{what}={n} is not divisible by the world size {w}; choose a multiple of {w} "
            f"(e.g. {max(w, n // w * w)}) or another number of processes."
        )


def shared_seed(generator: torch.Generator | None) -> int:
    """A seed that is the same on every rank: drawn from ``generator`` (advancing it) or, with
    ``None``, from torch's global RNG on rank 0 and broadcast.

    Args:
        generator: The fit's generator (identical on every rank when given).
    """
    device = "cpu" if generator is None else generator.device
    seed = torch.randint(2**62, (1,), generator=generator, device=device).cpu()
    if is_active() and generator is None:
        dist.broadcast(seed, 0)
    return int(seed)


def rank_generator(generator: torch.Generator) -> torch.Generator:
    """A generator of this rank's own, seeded from one draw of the shared ``generator``.

    Only where a rank's rows of the global minibatch are unknown (a user's own
    ``DataLoader``; otherwise per-example noise is the global minibatch's, cut to
    ``FitState.rows``): noise drawn per example must differ between the ranks' examples,
    while the shared generator must advance the same on every rank (it also shuffles and
    draws per-parameter noise), so one draw from it, offset by the rank, seeds this one.

    Args:
        generator: The fit's generator, in the same state on every rank.
    """
    seed = int(torch.randint(2**62, (), generator=generator, device=generator.device))
    return torch.Generator(generator.device).manual_seed(seed + rank() * 0x9E3779B97F4A7C15 % 2**62)


_MASKED_DIMS = {nn.Dropout: None, nn.Dropout1d: 3, nn.Dropout2d: 4, nn.Dropout3d: 5}
"""torch's dropout layers that ``global_dropout`` replaces, with the input dimensions
(batched) for which it does (``None``: any)."""


def _global_mask(module: nn.Module, x: Tensor, rows: tuple[int, int, int]) -> Tensor:
    """``module``'s dropout of ``x``, rows ``start:stop`` of a minibatch of ``total``, with
    the mask of the whole minibatch drawn as torch's CPU kernel draws it (``bernoulli_`` on
    an empty tensor of the whole shape, then ``/ (1 - p)``)."""
    start, stop, total = rows
    p = module.p
    if p == 0:
        return x
    if p == 1:
        return x * x.new_zeros(())
    shape = (total, *x.shape[1:])
    if type(module) is not nn.Dropout:  # one value per example and channel
        shape = (total, x.shape[1], *[1] * (x.dim() - 2))
    noise = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1 - p).div_(1 - p)
    return x * noise[start:stop]


@contextmanager
def global_dropout(model: nn.Module, rows: tuple[int, int, int] | None) -> Iterator[None]:
    """Within the block, ``model``'s dropout layers in training mode draw the mask of the
    whole global minibatch from torch's global RNG and apply its rows ``start:stop``.

    Under ``ShardedBatches`` every rank runs its dropout on a fork of the global RNG seeded
    alike, so every rank draws the masks one process draws for the whole minibatch and its
    examples get one process's masks. Exactly one process's on a CPU, where torch's
    ``F.dropout`` draws ``bernoulli_`` on the input's shape; on CUDA torch's fused dropout
    kernel draws otherwise, so there the masks are one valid draw, not one process's.
    ``nn.Dropout`` and ``Dropout1d/2d/3d`` on batched inputs are replaced, other layers
    (``AlphaDropout``, inputs whose first dimension is not the examples) left as they are.

    Args:
        model: The network being trained.
        rows: ``(start, stop, total)`` of this rank (``FitState.rows``); ``None``: no change.
    """
    mods = [m for m in model.modules() if type(m) in _MASKED_DIMS] if rows is not None else []
    if not mods:
        yield
        return
    replaced: set[int] = set()

    def pre(module: nn.Module, args: tuple) -> None:
        x, dims = args[0] if args else None, _MASKED_DIMS[type(module)]
        if (
            module.training and isinstance(x, Tensor) and x.dim() >= 1
            and x.shape[0] == rows[1] - rows[0] and dims in (None, x.dim())
        ):  # fmt: skip
            module.training = False  # its own forward passes the input through, drawing nothing
            replaced.add(id(module))

    def post(module: nn.Module, args: tuple, out: Tensor) -> Tensor | None:
        if id(module) not in replaced:
            return None
        replaced.discard(id(module))
        module.training = True
        return _global_mask(module, args[0], rows)

    handles = [m.register_forward_pre_hook(pre) for m in mods]
    handles += [m.register_forward_hook(post) for m in mods]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for m in mods:
            if id(m) in replaced:  # a forward that raised
                m.training = True


def broadcast_rng(generator: torch.Generator | None, device: torch.device) -> None:
    """Give every rank rank 0's random state: ``generator`` and torch's global RNG (CPU,
    and ``device``'s if it is CUDA).

    After a step in which some rank held no example of a short global minibatch (and so
    drew no noise), this puts the ranks back on the state of one process.

    Args:
        generator: The fit's generator (``None``: only the global RNG).
        device: The method's device.
    """
    if not is_active():
        return
    cuda = device.type == "cuda"
    states = [torch.get_rng_state()]
    states += [generator.get_state()] if generator is not None else []
    states += [torch.cuda.get_rng_state(device)] if cuda else []
    on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    out = []
    for t in states:
        buf = t.to(on) if on is not None else t.clone()
        dist.broadcast(buf, 0)
        out.append(buf.cpu())
    torch.set_rng_state(out.pop(0))
    if generator is not None:
        generator.set_state(out.pop(0))
    if cuda:
        torch.cuda.set_rng_state(out.pop(0), device)


def _comm(t: Tensor) -> Tensor:
    """``t`` on a device the backend can reduce (gloo: CPU)."""
    if dist.get_backend() == "gloo" and t.device.type != "cpu":
        return t.cpu()
    return t


def all_reduce_sum(t: Any) -> Any:
    """The sum of ``t`` over the ranks, new tensors (``t`` itself without a process group).

    Args:
        t: A tensor of the same shape on every rank, or a (nested) list / tuple of them.
    """
    if not is_active() or t is None:
        return t
    if isinstance(t, (list, tuple)):
        return type(t)(all_reduce_sum(v) for v in t)
    buf = _comm(t.detach().clone())
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.to(t.device)


def all_reduce_gradients(params: Sequence[Tensor], weight: float) -> None:
    """Replace every gradient by the sum over ranks of ``weight * grad`` (one flat all-reduce).

    With ``weight`` a rank's share of the global minibatch (its examples / the global
    minibatch size) the result is the gradient of the global minibatch's mean objective. A
    missing gradient (a rank with no examples in a short last minibatch) counts as zero.

    Args:
        params: The trainable parameters, in the same order on every rank.
        weight: This rank's weight.
    """
    if not is_active() or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    dtype = torch.promote_types(grads[0].dtype, torch.float32)
    flat = _comm(torch.cat([g.reshape(-1).to(dtype) for g in grads])) * weight
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).to(p.device, p.dtype)
        offset += n


def shard_bounds(n: int, rank_: int | None = None, world: int | None = None) -> tuple[int, int]:
    """``(start, stop)`` of a rank's contiguous block of ``n`` items (sizes differ by <= 1).

    The first ``n % world`` ranks get one item more, as ``torch.tensor_split`` splits.

    Args:
        n: Number of items.
        rank_: The rank (``None``: this process's).
        world: Number of ranks (``None``: this run's world size).
    """
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    base, extra = divmod(n, w)
    start = r * base + min(r, extra)
    return start, start + base + (r < extra)


def shard(x: Tensor) -> Tensor:
    """This rank's contiguous block of the rows of ``x`` (all of ``x`` without a group).

    Args:
        x: Tensor whose first dimension is split over the ranks.
    """
    start, stop = shard_bounds(x.shape[0])
    return x[start:stop]


def gather(t: Tensor, dim: int = 0) -> Tensor:
    """Concatenate every rank's ``t`` along ``dim`` in rank order (sizes may differ).

    Args:
        t: This rank's part; the other dimensions must agree over ranks.
        dim: The dimension the parts are concatenated along.
    """
    if not is_active():
        return t
    sizes: list[Any] = [None] * world_size()
    dist.all_gather_object(sizes, t.shape[dim])
    biggest = max(sizes)
    part = _comm(t.detach()).movedim(dim, 0)
    pad = part.new_zeros((biggest - part.shape[0], *part.shape[1:]))
    parts = [part.new_empty((biggest, *part.shape[1:])) for _ in sizes]
    dist.all_gather(parts, torch.cat([part, pad]).contiguous())
    out = torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)])
    return out.movedim(0, dim).to(t.device)


def gather_predictive(pred: Predictive) -> Predictive:
    """Every rank's ``Predictive`` of its block of inputs joined into the whole one.

    Every tensor of ``pred`` with the inputs in its second dimension (``samples``, a
    Gaussian's ``noise_variance``) is gathered along it.

    Args:
        pred: This rank's predictive, for its ``shard`` of the inputs.
    """
    if not is_active():
        return pred
    n = len(pred)
    out = copy.copy(pred)
    for name, value in vars(pred).items():
        if isinstance(value, Tensor) and value.dim() >= 2 and value.shape[1] == n:
            setattr(out, name, gather(value.contiguous(), 1))
    return out


def predict_sharded(
    method: Any,
    x: Tensor,
    samples: int = 100,
    *,
    generator: torch.Generator | None = None,
    **options: Any,
) -> Predictive:
    """``method.predict(x, ...)`` computed in shards, one per rank, joined on every rank.

    Every rank predicts its ``shard`` of ``x`` with the same posterior draws (the same
    ``generator`` state on every rank: ``predict`` rewinds it for every block of inputs), and
    the outputs are all-gathered, so the result equals one process's ``predict``.

    Args:
        method: A fitted bayesdl method, identical on every rank.
        x: All the inputs, the same on every rank, shape (N, ...).
        samples: Posterior draws S.
        generator: Random generator of the draws, in the same state on every rank (``None``:
            a seed is drawn on rank 0 and broadcast).
        **options: The method's own ``predict`` options (``chunk_size=``, ...).

    Returns:
        The ``Predictive`` of all N inputs.
    """
    if not is_active():
        return method.predict(x, samples=samples, generator=generator, **options)
    if generator is None:
        generator = torch.Generator(method.device).manual_seed(shared_seed(None))
    # The draws come in chunks of ``rows // min(rows, N)`` samples (``BaseMethod.predict``);
    # a chunk size per shard that keeps that number keeps the draws of one process.
    rows = options.pop("chunk_size", None) or default_chunk_rows(method.device)
    n = x.shape[0]
    start, stop = shard_bounds(n)
    per_call = max(1, rows // min(rows, n))
    chunk = max(1, per_call * (stop - start) if rows >= n else min(rows, stop - start))
    part = method.predict(x[start:stop], samples=samples, generator=generator,
                          chunk_size=chunk, **options)  # fmt: skip
    return gather_predictive(part)


def top_k(scores: Tensor, indices: Tensor, k: int) -> Tensor:
    """The ``k`` indices with the highest scores over every rank's candidates, highest first.

    Each rank passes (at least) its own top ``k`` (score, global index) pairs; the pairs are
    all-gathered and merged so that equal scores keep the global index order, as a stable
    descending sort of the whole score vector would.

    Args:
        scores: This rank's candidates' scores, shape (m,).
        indices: Their global indices, shape (m,).
        k: How many to return (at most the total number of candidates).
    """
    pairs = torch.stack([scores.double().cpu(), indices.double().cpu()], 1)
    pairs = gather(pairs)
    pairs = pairs[torch.sort(pairs[:, 1], stable=True).indices]  # global order first
    best = torch.sort(pairs[:, 0], descending=True, stable=True).indices[:k]
    return pairs[best, 1].long()


class ShardedBatches(TensorBatches):
    """One process's minibatches, each split over the ranks.

    Every rank draws the permutation that ``engine.TensorBatches`` (one process) draws from
    the fit's generator, the same on every rank, cuts it into global minibatches of
    ``batch_size`` and yields its contiguous slice of each (``shard_bounds``); a short last
    minibatch is split as evenly as it goes (a rank may get none of it). With the gradient
    all-reduce weighted by ``shard_weight`` a fit under a process group then takes the steps
    of a single-process ``fit`` with the same generator. ``epoch(None)`` walks the data in
    its order (a curvature pass); torch's global RNG is never used, as it may differ between
    ranks.

    Args:
        x: Every input, the same on every rank, shape (N, ...).
        y: Every target, shape (N, ...).
        batch_size: Global minibatch size (a multiple of the world size).
        shuffle: Draw a new order every epoch; ``False``: the data's order.
        rank: This process's rank (``None``: the process group's).
        world: Number of ranks (``None``: the process group's).
        loader_draws: Draw from the generator when a ``DataLoader`` over a ``Dataset`` would
            (its sampler's second permutation at the end of the epoch, after the method's
            draws of the epoch), to equal a single-process fit given a ``Dataset`` rather than
            a tuple (``TensorBatches`` draws both permutations first).

    Raises:
        ValueError: If ``batch_size`` is not a positive multiple of the world size.
    """

    def __init__(
        self, x: Tensor, y: Tensor, batch_size: int, *, shuffle: bool = True,
        rank: int | None = None, world: int | None = None, loader_draws: bool = False,
    ) -> None:  # fmt: skip
        self.rank = globals()["rank"]() if rank is None else rank
        self.world = world_size() if world is None else world
        if not (isinstance(batch_size, int) and batch_size > 0):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        if batch_size % self.world:
            raise ValueError(
                f"batch_size={batch_size} is the global minibatch and must be divisible by the "
                f"world size {self.world}; choose a multiple of {self.world}."
            )
        super().__init__(x, y, batch_size, shuffle=shuffle)
        self._global = batch_size
        self.loader_draws = loader_draws

    def epoch(self, generator: torch.Generator | None) -> Iterator[tuple[Tensor, Tensor]]:
        """This rank's slices of one epoch's global minibatches.

        Args:
            generator: The fit's generator, in the same state on every rank (``None``: the
                data's order).
        """
        n, bs = self.n_data, self.batch_size
        late = generator is not None and self.shuffle and self.loader_draws
        if late:  # the loader's seed and its sampler's first permutation
            torch.empty((), dtype=torch.int64).random_(generator=generator)
            order = torch.randperm(n, generator=generator)
        else:
            order = self.epoch_order(generator) if generator is not None else None
        if order is None:
            order = torch.arange(n)
        for i in range(0, n, bs):
            block = order[i : i + bs]
            if late and block.numel() < bs:  # the sampler runs dry before a short last batch
                torch.randperm(n, generator=generator)
            self._global = block.numel()
            start, stop = shard_bounds(block.numel(), self.rank, self.world)
            self._rows = (start, stop, block.numel())
            idx = block[start:stop]
            yield self.x[idx], self.y[idx]
        if late and n % bs == 0:  # ... or after a full one
            torch.randperm(n, generator=generator)

    def shard_weight(self, b: int) -> float:
        """``b`` / the size of the global minibatch being yielded.

        Args:
            b: Examples in this rank's slice.
        """
        return b / self._global

    def rows(self) -> tuple[int, int, int]:
        """``(start, stop, total)``: this rank's rows of the global minibatch being yielded
        (``FitState.rows``: per-example noise is drawn for all ``total`` and cut to them)."""
        return self._rows


class DatasetBatches:
    """A map-style ``Dataset`` under a process group: a ``DistributedSampler`` per rank.

    Every rank loads ``batch_size / world`` examples a step from its ``DistributedSampler``
    (seeded with ``seed``, a new shuffle every epoch through ``set_epoch``), so a step covers
    a global minibatch of ``batch_size``. The sampler pads the last round with repeated
    examples so that every rank has as many (at most ``world - 1`` repeats an epoch), and
    every rank's gradient weighs ``1 / world``.

    Args:
        dataset: A sized map-style dataset yielding ``(x, y)``, the same on every rank.
        batch_size: Global minibatch size (a multiple of the world size).
        seed: Shuffling seed, the same on every rank.
        shuffle: Draw a new order every epoch.
        model: The network the inputs must fit (checked per minibatch).

    Raises:
        ValueError: If ``batch_size`` is not a multiple of the world size or the dataset is
            empty.
    """

    def __init__(
        self, dataset: Any, batch_size: int, *, seed: int = 0, shuffle: bool = True,
        model: torch.nn.Module | None = None,
    ) -> None:  # fmt: skip
        from torch.utils.data import DataLoader, DistributedSampler

        from bayesdl.engine import LoaderBatches

        check_divisible(batch_size, "batch_size")
        self.world = world_size()
        self.sampler = DistributedSampler(
            dataset, num_replicas=self.world, rank=rank(), shuffle=shuffle, seed=seed
        )
        loader = DataLoader(dataset, batch_size=batch_size // self.world, sampler=self.sampler)
        self.inner = LoaderBatches(loader, model)
        self.n_data = self.inner.n_data
        self._epochs = 0

    def __len__(self) -> int:
        return len(self.inner)

    def epoch(self, generator: torch.Generator | None) -> Iterator[tuple[Tensor, Tensor]]:
        """This rank's minibatches of the next epoch (``generator`` unused: the sampler's
        ``seed`` and the epoch count decide the order)."""
        self.sampler.set_epoch(self._epochs)
        self._epochs += 1
        for x, y in self.inner.epoch(generator):
            self._local = num_examples(x)
            yield x, y

    def rows(self) -> tuple[int, int, int]:
        """``(start, stop, total)``: rank r's rows ``r b : (r + 1) b`` of a global minibatch of
        ``world b`` (every rank loads ``b`` examples a step), so that per-example noise,
        drawn for the whole global minibatch, differs between the ranks' examples."""
        b = self._local
        return rank() * b, (rank() + 1) * b, self.world * b

    def shard_weight(self, b: int) -> float:
        """``1 / world``: every rank holds as many examples per step.

        Args:
            b: Examples in this rank's minibatch (unused).
        """
        return 1.0 / self.world

    def first_inputs(self, batches: int) -> Tensor:
        """This rank's first ``batches`` minibatches' inputs."""
        return self.inner.first_inputs(batches)
