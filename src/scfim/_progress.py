"""One progress bar for every slow loop of scfim (tools, solvers, model fits).

Usage: ``for i in progress_bar(range(n), desc="LAND EM", progress=progress): ...`` or
``bar = progress_bar(total=n, desc="neural FIM", unit="epoch", progress=progress)`` with
``bar.update()`` / ``bar.close()``. ``progress=False`` (or ``scfim.settings.verbosity``
below ``"warning"``) disables the bar. Free of AnnData, so geometry and models may use it.
Written to a file rather than a terminal or a notebook (a batch job's log), a bar refreshes
at most every :data:`LOG_REFRESH_S` seconds, so that a long loop adds a few lines to the log
instead of one every tenth of a second.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["progress_bar"]

#: Seconds between two refreshes of a bar that writes to a file (tqdm's own default is 0.1).
LOG_REFRESH_S = 30.0


def _writes_to_log(tqdm_class: type, file: Any) -> bool:
    """Whether a bar of ``tqdm_class`` on ``file`` goes to a log: no notebook, no terminal."""
    if any(c.__module__ == "tqdm.notebook" for c in tqdm_class.__mro__):
        return False
    isatty = getattr(file, "isatty", None)
    try:
        return not (callable(isatty) and isatty())
    except ValueError:  # a closed file
        return True


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
    progress: bool = True,
    leave: bool = False,
    **kwargs: Any,
):
    """A ``tqdm.auto`` bar, disabled when ``progress`` is False or scfim is silenced.

    Parameters
    ----------
    iterable
        Iterable to wrap (or None and ``total`` for manual ``update()`` calls).
    total
        Number of expected iterations.
    desc
        Label of the bar.
    unit
        Unit of an iteration.
    progress
        Show the bar.
    leave
        Keep the finished bar on screen.
    **kwargs
        Passed to :class:`tqdm.auto.tqdm`. ``mininterval`` defaults to tqdm's 0.1 s on a
        terminal and to :data:`LOG_REFRESH_S` when the bar writes to a file.

    Returns
    -------
    tqdm.auto.tqdm
        The bar (iterate over it, or call ``update``/``close``).
    """
    import sys

    from tqdm.auto import tqdm

    from ._logging import settings

    if _writes_to_log(tqdm, kwargs.get("file") or sys.stderr):
        kwargs.setdefault("mininterval", LOG_REFRESH_S)

    disable = not progress or settings.verbosity < 1
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, disable=disable, **kwargs)
