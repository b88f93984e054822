"""Plotting: every function returns matplotlib Axes (or a Figure)."""

from ._embedding import diffusion_entropy, embedding
from ._fim import eigenspectrum
from ._geodesic import geodesic

__all__ = ["diffusion_entropy", "embedding", "eigenspectrum", "geodesic"]
