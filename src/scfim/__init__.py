"""scfim: learned Fisher information geometry of single-cell data."""

from importlib.metadata import PackageNotFoundError, version

from . import datasets, pl, tl
from ._logging import settings

try:
    __version__ = version("scfim")
except PackageNotFoundError:  # pragma: no cover - source tree without install
    __version__ = "0.0.0"

__all__ = ["datasets", "pl", "tl", "settings", "__version__"]
