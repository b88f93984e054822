"""Logging of scfim, in the style of scanpy's ``logg``.

Every tool reports what it computes, how long it took and what it added to ``adata``::

    start = logg.info("computing the diffusion operator")
    ...
    logg.info("    finished", time=start, deep=added(("obsp", "diffusion_transitions")))

Messages go to ``scfim.settings.logfile``; when it is None (the default), information to
standard output (notebooks show it as ordinary output) and warnings and errors to
standard error. Unlike scanpy, whose default verbosity hides ``info``,
scfim shows ``info`` by default; silence it with ``scfim.settings.verbosity = "warning"``
(or ``0`` / ``"error"`` for errors only, which also hides the progress bars of
:mod:`scfim._progress`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import IO

__all__ = ["settings", "error", "warning", "info", "hint", "debug", "added"]

HINT = (logging.INFO + logging.DEBUG) // 2
logging.addLevelName(HINT, "HINT")

_NAMES = ("error", "warning", "info", "hint", "debug")
_LEVELS = (logging.ERROR, logging.WARNING, logging.INFO, HINT, logging.DEBUG)


class _Settings:
    """Global options of scfim: ``verbosity`` and ``logfile``.

    ``verbosity`` is 0 (``"error"``), 1 (``"warning"``), 2 (``"info"``, the default),
    3 (``"hint"``) or 4 (``"debug"``). ``logfile`` is a writable text stream, or None for
    standard output (warnings and errors: standard error).
    """

    def __init__(self) -> None:
        self._verbosity = 2
        self.logfile: IO[str] | None = None

    @property
    def verbosity(self) -> int:
        """Verbosity level (0–4); also settable by name (``"error"`` … ``"debug"``)."""
        return self._verbosity

    @verbosity.setter
    def verbosity(self, value: int | str) -> None:
        if isinstance(value, str):
            if value not in _NAMES:
                raise ValueError(f"verbosity must be one of {_NAMES} or 0–4, got {value!r}")
            value = _NAMES.index(value)
        elif isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"verbosity must be an integer 0–4 or a name, got {value!r}")
        self._verbosity = min(max(int(value), 0), len(_NAMES) - 1)
        _logger.setLevel(_LEVELS[self._verbosity])

    def __repr__(self) -> str:
        return f"scfim.settings(verbosity={_NAMES[self._verbosity]!r}, logfile={self.logfile!r})"


def _format_time(td: timedelta) -> str:
    s = td.total_seconds()
    if s < 60:
        return f"{s:.2f} s"
    m, s = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.ERROR:
            msg = f"ERROR: {msg}"
        elif record.levelno >= logging.WARNING:
            msg = f"WARNING: {msg}"
        passed = getattr(record, "time_passed", None)
        if passed is not None:
            msg = f"{msg} ({_format_time(passed)})"
        deep = getattr(record, "deep", None)
        if deep:
            msg = f"{msg}\n    {deep}"
        return msg


class _Handler(logging.Handler):
    """Writes to ``settings.logfile`` as it is at the time of the message."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = settings.logfile
            if stream is None:
                stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging must never break a computation
            self.handleError(record)


_logger = logging.getLogger("scfim")
_logger.propagate = False
_logger.setLevel(logging.INFO)
if not any(isinstance(h, _Handler) for h in _logger.handlers):
    _handler = _Handler()
    _handler.setFormatter(_Formatter())
    _logger.addHandler(_handler)

settings = _Settings()


def _log(level: int, msg: str, time: datetime | None, deep: str | None) -> datetime:
    now = datetime.now(timezone.utc)
    passed = None if time is None else now - time
    _logger.log(level, msg, extra={"time_passed": passed, "deep": deep})
    return now


def error(msg: str, *, time: datetime | None = None, deep: str | None = None) -> datetime:
    """Log an error; returns the current time (pass it as ``time=`` to a later call)."""
    return _log(logging.ERROR, msg, time, deep)


def warning(msg: str, *, time: datetime | None = None, deep: str | None = None) -> datetime:
    """Log a warning (shown at verbosity ≥ 1)."""
    return _log(logging.WARNING, msg, time, deep)


def info(msg: str, *, time: datetime | None = None, deep: str | None = None) -> datetime:
    """Log a message (shown at verbosity ≥ 2, the default).

    Parameters
    ----------
    msg
        The message.
    time
        A start time returned by an earlier call; the time elapsed since is appended.
    deep
        Details printed on the following lines (e.g. :func:`added`).

    Returns
    -------
    datetime.datetime
        The current time (UTC).
    """
    return _log(logging.INFO, msg, time, deep)


def hint(msg: str, *, time: datetime | None = None, deep: str | None = None) -> datetime:
    """Log a hint (shown at verbosity ≥ 3)."""
    return _log(HINT, msg, time, deep)


def debug(msg: str, *, time: datetime | None = None, deep: str | None = None) -> datetime:
    """Log a debugging message (shown at verbosity 4)."""
    return _log(logging.DEBUG, msg, time, deep)


def added(*fields: tuple[str, str] | Iterable[tuple[str, str]]) -> str:
    """``deep`` text listing what a tool wrote: ``added("obsm", "X_jsd_phate")``-style pairs.

    Each argument is an ``(attribute, key)`` pair such as ``("obsm", "X_jsd_phate")``, or
    an iterable of them.
    """
    pairs: list[tuple[str, str]] = []
    for f in fields:
        if isinstance(f, tuple) and len(f) == 2 and all(isinstance(x, str) for x in f):
            pairs.append(f)
        else:
            pairs.extend(f)
    return "added\n" + "\n".join(f"    {name!r} (adata.{attr})" for attr, name in pairs)
