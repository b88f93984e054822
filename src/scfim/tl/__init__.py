"""Tools: thin AnnData adapters over :mod:`scfim.geometry` and :mod:`scfim.models`."""

from .curvature import diffusion_curvature
from .diffusion import diffusion
from .geodesic import fisher_rao_distances, geodesic
from .jsd_phate import jsd_phate, jsd_phate_transform
from .land import land
from .neural_fim import neural_fim, neural_fim_transform
from .parameter_fim import parameter_embeddings, parameter_fim
from .pseudotime import fisher_rao_pseudotime

__all__ = [
    "diffusion",
    "diffusion_curvature",
    "fisher_rao_distances",
    "fisher_rao_pseudotime",
    "geodesic",
    "jsd_phate",
    "jsd_phate_transform",
    "land",
    "neural_fim",
    "neural_fim_transform",
    "parameter_embeddings",
    "parameter_fim",
]
