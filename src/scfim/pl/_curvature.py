"""Diffusion-curvature plot: an embedding coloured by curvature, centred on 0."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ._utils import check_plot_args, embedding_key, finish, quantity_label, robust_limits

__all__ = ["curvature"]


def curvature(
    adata: AnnData,
    basis: str = "X_jsd_phate",
    *,
    key: str = "diffusion_curvature",
    components: tuple[int, int] = (0, 1),
    vmax: float | None = None,
    cmap: str = "RdBu_r",
    size: float | None = None,
    colorbar: bool = True,
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool = False,
) -> Axes | Figure | None:
    """Scatter plot of an embedding coloured by diffusion curvature.

    The diverging colour map is centred on 0 (white): red for positive curvature
    (walks stay close, sphere-like), blue for negative (saddle-like), with the same colour
    scale for both signs. The colour bar spans the values present (1st to 99th
    percentile and 0), so data of one sign are not drawn against an empty half of the
    scale. Cells with the largest absolute values are drawn on top.

    Parameters
    ----------
    adata
        Annotated data on which :func:`scfim.tl.diffusion_curvature` ran.
    basis
        ``obsm`` key of the embedding (with or without the ``X_`` prefix).
    key
        ``obs`` column with the curvature (``key_added`` of the tool).
    components
        The two embedding columns to draw.
    vmax
        Colour limit ``±vmax``; default the largest absolute value of the 1st and 99th
        percentiles of the curvature.
    cmap
        Diverging colour map.
    size
        Marker size (default scaled with the number of cells).
    colorbar
        Draw a colour bar, labelled with the quantity.
    ax, show, save, return_fig
        As in :func:`scanpy.pl.embedding`; see :mod:`scfim.pl`. Write key ``key``.

    Returns
    -------
    Axes, Figure or None
        The Axes; the Figure with ``return_fig=True``; None with ``show=True``.
    """
    check_plot_args(show, save, return_fig)
    emb_key = embedding_key(adata, basis)
    if key not in adata.obs:
        raise KeyError(
            f"adata.obs[{key!r}] not found; run `scfim.tl.diffusion_curvature(adata)` first"
        )
    c = adata.obs[key]
    if not pd.api.types.is_numeric_dtype(c):
        raise ValueError(f"adata.obs[{key!r}] is not numeric")
    c = c.to_numpy(dtype=np.float64)
    E = np.asarray(adata.obsm[emb_key])
    i, j = (int(v) for v in components)
    if E.ndim != 2 or max(i, j) >= E.shape[1] or min(i, j) < 0:
        raise ValueError(f"components {components} out of range for {emb_key!r} {E.shape}")
    finite = np.isfinite(c)
    lo, hi = robust_limits(c)  # 1st and 99th percentiles
    if vmax is None:
        vmax = max(abs(lo), abs(hi)) if lo is not None else 1.0
    if not np.isfinite(vmax) or vmax <= 0:
        vmax = 1.0
    # the colour bar spans the data (and 0) within ±vmax; arrows mark clipped values
    cmin, cmax = (float(c[finite].min()), float(c[finite].max())) if finite.any() else (-1, 1)
    shown = (max(min(cmin, 0.0), -vmax), min(max(cmax, 0.0), vmax))
    extend = {(False, False): "neither", (True, False): "min", (False, True): "max"}.get(
        (cmin < -vmax, cmax > vmax), "both"
    )
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 3.8))
    order = np.argsort(np.where(finite, np.abs(c), -1.0), kind="stable")
    if size is None:
        size = float(np.clip(12000.0 / max(len(c), 1), 1.0, 40.0))
    sc = ax.scatter(
        E[order, i],
        E[order, j],
        c=c[order],
        cmap=cmap,
        norm=Normalize(vmin=-vmax, vmax=vmax),
        s=size,
        linewidths=0,
        plotnonfinite=True,
    )
    if colorbar:
        cb = ax.figure.colorbar(sc, ax=ax, label=quantity_label(key), extend=extend)
        if shown[1] > shown[0]:
            cb.ax.set_ylim(*shown)
    # the look of scfim.pl.embedding (scanpy's frameon=False): no frame, ticks or labels
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_frame_on(False)
    ax.set_title(quantity_label(key))
    return finish(ax, writekey=key, show=show, save=save, return_fig=return_fig)
