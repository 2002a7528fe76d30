"""Progress reporting that suits both a terminal and a log file.

Every progress bar in bayesdl goes through :func:`progress_bar`. On a terminal it is an
ordinary ``tqdm`` bar, redrawn in place. When the output is not a terminal (a log file, a
pipe, CI), redrawing in place would write a carriage-return update many times a second
into the file; there it prints one plain line every ``interval`` seconds instead, and a
last line when the bar closes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import IO, Any, TypeVar

from tqdm.auto import tqdm as _terminal_tqdm
from tqdm.std import tqdm as _std_tqdm

__all__ = ["progress_bar", "DEFAULT_INTERVAL"]

T = TypeVar("T")

DEFAULT_INTERVAL = 10.0
"""Seconds between two plain progress lines when the output is not a terminal."""


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except ValueError:  # a closed stream
        return False


class _LineBar(_std_tqdm):
    """A tqdm bar that writes whole lines, at most one per ``interval`` seconds.

    tqdm calls ``display`` whenever it would redraw; here that prints ``str(self)`` on a
    line of its own if ``interval`` seconds have passed since the last line (or the bar's
    start), and always once more when the bar closes, if the count or the postfix changed.
    """

    def __init__(self, *args: Any, interval: float, leave: bool = True, **kwargs: Any) -> None:
        self._interval = interval
        self._printed_at: float | None = None
        self._printed: tuple[Any, str] | None = None  # (n, postfix) of the last line
        # tqdm's own close() ends a bar it leaves with a newline and clears one it does not
        # leave with a carriage return; with leave=False it calls display(msg="") instead,
        # which is where the last line is printed.
        super().__init__(*args, leave=False, **kwargs)

    def _line(self, text: str) -> None:
        self.fp.write(text.strip() + "\n")
        self.fp.flush()
        self._printed_at, self._printed = self._time(), (self.n, self.postfix)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == "":  # close(): the last state, unless it was printed already
            if self._printed != (self.n, self.postfix):
                self._line(self.__str__())
            return False  # tells close() not to write "\r"
        if msg is not None:
            self._line(msg)
            return True
        if not hasattr(self, "start_t"):  # tqdm's first draw, from __init__: nothing done yet
            return True
        now = self._time()
        since = self.start_t if self._printed_at is None else self._printed_at
        if now - since >= self._interval:
            self._line(self.__str__())
        return True


def progress_bar(
    iterable: Iterable[T] | None = None,
    *,
    desc: str | None = None,
    total: int | float | None = None,
    disable: bool = False,
    leave: bool = True,
    interval: float = DEFAULT_INTERVAL,
    file: IO[str] | None = None,
    **kwargs: Any,
) -> _std_tqdm:
    """A progress bar: ``tqdm`` on a terminal, a plain line every ``interval`` s otherwise.

    Use it as ``tqdm``: iterate over it, or call ``update(n)``, ``set_postfix(...)`` and
    ``close()`` (or use it in a ``with`` block). The output is a terminal when ``file``'s
    ``isatty()`` says so; elsewhere (a log file, a pipe, CI) the bar prints one line per
    ``interval`` seconds and a last line when it closes, never carriage returns.

    Args:
        iterable: What to iterate over (``None``: update the bar by hand).
        desc: Text in front of the bar.
        total: Expected number of iterations (``None``: ``len(iterable)`` if it has one).
        disable: Show nothing (e.g. ``disable=not progress``).
        leave: On a terminal, keep the finished bar on screen; in a log the last line is
            always kept.
        interval: Seconds between two plain lines when ``file`` is not a terminal.
        file: Where to write; ``sys.stderr`` when ``None``.
        **kwargs: Further ``tqdm`` options (``initial``, ``unit``, ``unit_scale``, ...).

    Returns:
        The bar (a ``tqdm`` instance).

    Raises:
        ValueError: If ``interval`` is negative.

    Examples:
        >>> import io
        >>> log = io.StringIO()
        >>> for _ in progress_bar(range(3), desc="fit", file=log, interval=60):
        ...     pass
        >>> log.getvalue().count("\\n"), "\\r" in log.getvalue()
        (1, False)
    """
    if not interval >= 0:
        raise ValueError(f"interval must be a non-negative number of seconds, got {interval}.")
    stream = sys.stderr if file is None else file
    options = dict(desc=desc, total=total, disable=disable, leave=leave, file=stream, **kwargs)
    if _is_terminal(stream):
        return _terminal_tqdm(iterable, **options)
    return _LineBar(iterable, interval=interval, **options)
