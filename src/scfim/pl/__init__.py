"""Plotting: every function returns matplotlib Axes (or a Figure)."""

from ._curvature import curvature
from ._embedding import diffusion_entropy, embedding
from ._fim import eigenspectrum
from ._geodesic import geodesic
from ._land import land
from ._parameter import parameter_landscape

__all__ = [
    "curvature",
    "diffusion_entropy",
    "eigenspectrum",
    "embedding",
    "geodesic",
    "land",
    "parameter_landscape",
]
