"""Pure geometry: NumPy/SciPy/torch only, no AnnData."""

from . import diffusion, divergences, mds

__all__ = ["diffusion", "divergences", "mds"]
