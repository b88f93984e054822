"""Pure geometry: NumPy/SciPy/torch only, no AnnData."""

from . import diffusion, divergences, geodesic, mds, metric

__all__ = ["diffusion", "divergences", "geodesic", "mds", "metric"]
