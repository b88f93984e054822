"""scfim: learned Fisher information geometry of single-cell data.

The submodules :mod:`scfim.tl`, :mod:`scfim.pl` and :mod:`scfim.datasets` are imported on
first use (``scfim.tl.diffusion`` works right after ``import scfim``), so that
``import scfim`` and the ``scfim --help`` / ``--version`` command line answer without
loading PyTorch, AnnData or matplotlib.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from ._logging import settings

try:
    __version__ = version("scfim")
except PackageNotFoundError:  # pragma: no cover - source tree without install
    __version__ = "0.0.0"

_SUBMODULES = ("datasets", "pl", "tl")

__all__ = ["datasets", "pl", "tl", "settings", "__version__"]


def __getattr__(name: str):
    """Import a submodule on first access (PEP 562)."""
    if name in _SUBMODULES:
        module = import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
