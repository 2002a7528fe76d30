"""Device, RNG and numerics utilities shared by the training engine and the methods.

Nothing here knows about posterior approximations: these are the small pieces every
method needs to follow the model's device, to be reproducible under a ``generator`` and
to stay fast on a CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

__all__ = ["eval_mode", "default_chunk_rows", "seeded_global_rng", "peek_seed", "flush_subnormal_"]


class eval_mode:  # noqa: N801 (a context manager, named like torch.no_grad)
    """Put ``module`` in eval mode, then restore every submodule's own mode exactly.

    A class rather than a generator-based context manager: ``predict`` enters it on every
    call, and on a small model its fixed cost is a visible part of the call.

    Args:
        module: Any module; its submodules may be in mixed train/eval modes.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Dropout(0.5))
        >>> with eval_mode(net):
        ...     net.training
        False
        >>> net.training
        True
    """

    __slots__ = ("_module", "_modes")

    def __init__(self, module: nn.Module) -> None:
        self._module = module
        self._modes: list[tuple[nn.Module, bool]] | None = None

    def __enter__(self) -> None:
        modules = list(self._module.modules())
        if any(m.training for m in modules):  # else already in eval mode: nothing to switch
            self._modes = [(m, m.training) for m in modules]
            self._module.eval()

    def __exit__(self, *exc: object) -> None:
        if self._modes is not None:
            for m, mode in self._modes:
                m.training = mode
            self._modes = None


def default_chunk_rows(device: torch.device) -> int:
    """Default ``chunk_size``: (sample, input) rows per vectorised call on ``device``.

    On a CPU cache-sized calls (about one sample of 1,000 inputs) are fastest and leanest; a
    GPU needs large calls to fill it (``benchmarks/predict_speed.py``).

    Args:
        device: The model's device.
    """
    return 65536 if device.type == "cuda" else 1024


@contextmanager
def seeded_global_rng(seed: int | None, device: torch.device | None = None) -> Iterator[None]:
    """Run the block on a fork of torch's global RNG seeded with ``seed``.

    For code that cannot take a generator (``nn.Dropout`` in training, ``nn.init``, Pyro);
    the global state is restored afterwards. Forks the CPU RNG and ``device``'s if it is
    CUDA (``None``: every initialised CUDA device). No-op for ``seed=None``.

    Args:
        seed: Seed of the fork; ``None`` runs the block on the global RNG itself.
        device: The device whose CUDA generator is forked too.
    """
    if seed is None:
        yield
        return
    if device is None:
        live = torch.cuda.is_available() and torch.cuda.is_initialized()
        cuda = list(range(torch.cuda.device_count())) if live else []
    elif device.type == "cuda":
        cuda = [device.index if device.index is not None else torch.cuda.current_device()]
    else:
        cuda = []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def peek_seed(generator: torch.Generator | None) -> int | None:
    """A seed drawn from ``generator``'s current state without advancing it.

    Args:
        generator: Any generator; ``None`` gives ``None``.
    """
    if generator is None:
        return None
    peek = torch.Generator(generator.device).set_state(generator.get_state())
    return int(torch.randint(2**62, (), generator=peek, device=generator.device))


@torch.no_grad()
def flush_subnormal_(params: list[Tensor]) -> None:
    """Set the subnormal entries (``0 < |x| < finfo.tiny``) of floating ``params`` to zero.

    A weight that gets no gradient from the data (an input that is always zero, a dead
    unit) feels only the prior's pull, and Adam shrinks it geometrically until it is stuck
    around 1e-38, in float32's subnormal range. CPUs multiply subnormals far more slowly
    (``benchmarks/results/subnormal_speed.md``), and ``torch.set_flush_denormal`` reaches only the calling thread, so such
    weights slowed MC dropout training on MNIST several-fold as they accumulated
    (``benchmarks/subnormal_speed.py``). Their values are below anything the network can
    resolve, so zero is the same weight, at full speed.

    Args:
        params: Tensors changed in place.
    """
    for p in params:
        if p.is_floating_point():
            p.masked_fill_(p.abs() < torch.finfo(p.dtype).tiny, 0.0)
