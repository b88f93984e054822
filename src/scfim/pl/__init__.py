"""Plotting: every function returns matplotlib Axes (or a Figure)."""

from ._embedding import diffusion_entropy, embedding
from ._fim import eigenspectrum

__all__ = ["diffusion_entropy", "embedding", "eigenspectrum"]
