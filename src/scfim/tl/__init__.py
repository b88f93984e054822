"""Tools: thin AnnData adapters over :mod:`scfim.geometry` and :mod:`scfim.models`."""

from .diffusion import diffusion
from .jsd_phate import jsd_phate
from .neural_fim import neural_fim, neural_fim_transform

__all__ = ["diffusion", "jsd_phate", "neural_fim", "neural_fim_transform"]
