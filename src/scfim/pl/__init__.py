"""Plotting: read the results of :mod:`scfim.tl` back from ``adata`` and draw them.

Every function takes ``ax``, ``show``, ``save`` and ``return_fig`` the way
:func:`scanpy.pl.embedding` does:

* ``ax`` — draw into existing Axes (a new figure otherwise);
* ``save=True`` writes ``{scanpy.settings.figdir}/{writekey}.{scanpy.settings.file_format_figs}``;
  a string is appended to the write key as in scanpy (``save="_pbmc.png"`` writes
  ``figures/<writekey>_pbmc.png``); a :class:`pathlib.Path` is written exactly there. The
  file is written after everything is drawn;
* ``show=True`` calls :func:`matplotlib.pyplot.show` and returns None; by default
  (``show=None``) the Axes are returned without showing them, so that plots compose in
  subplots (Jupyter's inline backend displays them anyway);
* ``return_fig=True`` returns the Figure.

Continuous colours get outlier-robust limits (1st–99th percentile) and colour bars
labelled with the quantity. Every scatter panel looks like :func:`scfim.pl.embedding`
(scanpy's marker at scanpy's size, ``120000 / n_obs``, no frame) and takes scanpy's
``title``, ``size`` (``s`` is an alias) and ``frameon``; ``legend_loc=None`` hides a
legend, as in scanpy. matplotlib is imported when a plot is drawn, not with this module.
"""

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
