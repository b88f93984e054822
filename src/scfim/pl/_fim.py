"""Plots of the learned Fisher information metric."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._utils import check_plot_args, finish, legend_off

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["eigenspectrum"]

# one line per group: more than this is not readable (and not a categorical column)
_MAX_GROUPS = 40


def eigenspectrum(
    adata: AnnData,
    groupby: str | None = None,
    key: str = "fim_eigenvalues",
    *,
    title: str | None = None,
    legend_loc: str | None = "right margin",
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool = False,
) -> Axes | Figure | None:
    """Eigenspectrum of the FIM: eigenvalue index against mean eigenvalue (log scale).

    As in Fig. 6 of Fasina et al. (2023): one line per group of cells (or one for all
    cells), the mean of the i-th largest eigenvalue over the group against i. A spectrum
    that falls off quickly means that the cells' diffusion distributions change along a
    few directions only. Groups take the colours of ``adata.uns[f"{groupby}_colors"]``
    when scanpy stored them, so lines match the embedding plots.

    Parameters
    ----------
    adata
        Annotated data on which :func:`scfim.tl.neural_fim` ran.
    groupby
        Categorical ``obs`` column (or one with at most 40 distinct values); one line per
        category. None: one line for all cells. A continuous column raises ValueError.
    key
        ``obsm`` key of the ``(n_obs, r)`` descending eigenvalues.
    title
        Axes title (default "FIM eigenspectrum", with the grouping).
    legend_loc
        ``"right margin"`` (outside the Axes, as scanpy), a matplotlib legend location
        (``"best"``, ``"upper right"`` …), or ``None`` / ``"none"`` for no legend (as in
        scanpy).
    ax, show, save, return_fig
        As in :func:`scanpy.pl.embedding`; see :mod:`scfim.pl`. Write key
        ``"eigenspectrum"``.

    Returns
    -------
    Axes, Figure or None
        The Axes; the Figure with ``return_fig=True``; None with ``show=True``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    check_plot_args(show, save, return_fig)
    if key not in adata.obsm:
        raise KeyError(f"adata.obsm[{key!r}] not found; run `scfim.tl.neural_fim(adata)` first")
    E = np.asarray(adata.obsm[key], dtype=np.float64)
    if E.ndim != 2:
        raise ValueError(f"adata.obsm[{key!r}] must be 2-D, got shape {E.shape}")
    colours: list | None = None
    if groupby is None:
        groups = {"all cells": np.ones(adata.n_obs, dtype=bool)}
    else:
        if groupby not in adata.obs:
            raise KeyError(f"groupby={groupby!r} is not a column of adata.obs")
        col = adata.obs[groupby]
        if not hasattr(col, "cat") and pd.api.types.is_float_dtype(col):
            raise ValueError(
                f"groupby={groupby!r} is a continuous column; pass a categorical column "
                f"(e.g. bin it first: adata.obs['{groupby}_bin'] = pd.cut(adata.obs[{groupby!r}], 5))"
            )
        cats = col.cat.categories if hasattr(col, "cat") else np.unique(col.to_numpy())
        if len(cats) > _MAX_GROUPS:
            raise ValueError(
                f"groupby={groupby!r} has {len(cats)} distinct values; the eigenspectrum "
                f"draws one line per group (at most {_MAX_GROUPS}): pass a categorical column"
            )
        groups = {str(c): (col == c).to_numpy() for c in cats}
        stored = adata.uns.get(f"{groupby}_colors")
        if stored is not None and len(stored) == len(cats):
            colours = list(stored)
    new_figure = ax is None
    if ax is None:
        # room for the legend in the right margin: the Axes keep about 4.5 × 3.6 inches
        margin = groupby is not None and legend_loc == "right margin"
        _, ax = plt.subplots(figsize=(8.5 if margin else 4.8, 3.8))
    idx = np.arange(1, E.shape[1] + 1)
    tiny = np.finfo(np.float64).tiny
    for g, (name, mask) in enumerate(groups.items()):
        if mask.any():
            kw = {"color": colours[g]} if colours is not None else {}
            label = f"{name} ({int(mask.sum())})" if groupby is not None else name
            ax.plot(idx, np.maximum(E[mask].mean(0), tiny), marker="o", ms=3, label=label, **kw)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("eigenvalue index i (largest first)")
    ax.set_ylabel("mean i-th eigenvalue of g")
    if title is None:
        title = "FIM eigenspectrum" + (f" by {groupby}" if groupby is not None else "")
    ax.set_title(title)
    if len(groups) > 1 and not legend_off(legend_loc):
        kw = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0)}
        if legend_loc != "right margin":
            kw = {"loc": legend_loc}
        ax.legend(frameon=False, title=f"{groupby} (cells)", fontsize="small", **kw)
    if new_figure:
        ax.figure.tight_layout()
    return finish(ax, writekey="eigenspectrum", show=show, save=save, return_fig=return_fig)
