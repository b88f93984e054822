"""One progress bar for every slow loop of scfim (tools, solvers, model fits).

Usage: ``for i in progress_bar(range(n), desc="LAND EM", progress=progress): ...`` or
``bar = progress_bar(total=n, desc="neural FIM", unit="epoch", progress=progress)`` with
``bar.update()`` / ``bar.close()``. ``progress=False`` (or ``scfim.settings.verbosity``
below ``"warning"``) disables the bar. Free of AnnData, so geometry and models may use it.
A bar is drawn on a terminal or in a notebook only: written to a file (a script's
redirected output, a batch job's log) its carriage-return refreshes would interleave with
the log lines, which already say what runs and how long it took.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["progress_bar"]


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
        Passed to :class:`tqdm.auto.tqdm` (``file`` included: a bar whose file is not a
        terminal, outside a notebook, is disabled).

    Returns
    -------
    tqdm.auto.tqdm
        The bar (iterate over it, or call ``update``/``close``).
    """
    import sys

    from tqdm.auto import tqdm

    from ._logging import settings

    disable = (
        not progress
        or settings.verbosity < 1
        or _writes_to_log(tqdm, kwargs.get("file") or sys.stderr)
    )
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, disable=disable, **kwargs)
