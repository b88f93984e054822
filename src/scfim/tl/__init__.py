"""Tools: thin AnnData adapters over :mod:`scfim.geometry` and :mod:`scfim.models`."""

from .diffusion import diffusion
from .jsd_phate import jsd_phate

__all__ = ["diffusion", "jsd_phate"]
