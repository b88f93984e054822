"""Diffusion-curvature plot: an embedding coloured by curvature, centred on 0."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._utils import (
    SCANPY_MARKER,
    check_plot_args,
    embedding_key,
    finish,
    marker_size,
    quantity_label,
    robust_limits,
    style_panel,
)

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

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
    na_color: str = "lightgray",
    title: str | None = None,
    frameon: bool = False,
    colorbar: bool = True,
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool = False,
    s: float | None = None,
) -> Axes | Figure | None:
    """Scatter plot of an embedding coloured by diffusion curvature.

    The diverging colour map is centred on 0 (white): red for positive curvature
    (walks stay close, sphere-like), blue for negative (saddle-like), with the same colour
    scale for both signs. The colour bar spans the values present (1st to 99th
    percentile and 0), so data of one sign are not drawn against an empty half of the
    scale. Cells with the largest absolute values are drawn on top. Cells without a value
    (``tl.diffusion_curvature(cells=...)`` scores only some) are drawn underneath in
    ``na_color``, as scanpy draws missing values.

    Reading the magnitude: the value is ``C − C_flat``, a difference of two probabilities
    (that a short walk from the cell ends near it, on the data and on the same cells
    flattened; see :func:`scfim.tl.diffusion_curvature`). −0.004 therefore means that the
    walk ends near its start 0.4 percentage points less often than on flat data; compare
    with ``C`` itself in ``obs[f"{key}_raw"]`` for the scale of the cell's patch.

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
        Marker size; default ``120000 / n_obs`` as in :func:`scanpy.pl.embedding`.
    na_color
        Colour of the cells without a curvature value (NaN).
    title
        Axes title; default ``key`` in words ("diffusion curvature"; the colour bar
        names the quantity), ``""`` for none.
    frameon
        Draw a frame with axis labels (scanpy's ``frameon``); default no frame, like
        :func:`scfim.pl.embedding`.
    colorbar
        Draw a colour bar, labelled with the quantity.
    ax, show, save, return_fig
        As in :func:`scanpy.pl.embedding`; see :mod:`scfim.pl`. Write key ``key``.
    s
        Alias of ``size`` (matplotlib's name).

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
    size = marker_size(len(c), size, s)
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
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 3.8))
    if not finite.all():  # unscored cells: context underneath, in scanpy's na_color
        ax.scatter(E[~finite, i], E[~finite, j], color=na_color, s=size, marker=SCANPY_MARKER)
    scored = np.flatnonzero(finite)
    order = scored[np.argsort(np.abs(c[scored]), kind="stable")]
    points = ax.scatter(
        E[order, i],
        E[order, j],
        c=c[order],
        cmap=cmap,
        norm=Normalize(vmin=-vmax, vmax=vmax),
        s=size,
        marker=SCANPY_MARKER,
    )
    if colorbar:
        cb = ax.figure.colorbar(points, ax=ax, label=quantity_label(key), extend=extend)
        if shown[1] > shown[0]:
            cb.ax.set_ylim(*shown)
    style_panel(
        ax,
        title=key.replace("_", " ") if title is None else title,
        frameon=frameon,
        basis=emb_key,
        components=(i, j),
    )
    return finish(ax, writekey=key, show=show, save=save, return_fig=return_fig)
