"""Plots of the learned Fisher information metric."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes

__all__ = ["eigenspectrum"]


def eigenspectrum(
    adata: AnnData,
    groupby: str | None = None,
    key: str = "fim_eigenvalues",
    ax: Axes | None = None,
) -> Axes:
    """Eigenspectrum of the FIM: eigenvalue index against mean eigenvalue (log scale).

    As in Fig. 6 of Fasina et al. (2023): one line per group of cells (or one for all
    cells), the mean of the i-th largest eigenvalue over the group against i.

    Parameters
    ----------
    adata
        Annotated data on which :func:`scfim.tl.neural_fim` ran.
    groupby
        Categorical ``obs`` column; one line per category. None: one line for all cells.
    key
        ``obsm`` key of the ``(n_obs, r)`` descending eigenvalues.
    ax
        Axes to draw into; a new figure when omitted.

    Returns
    -------
    Axes
        The Axes.
    """
    if key not in adata.obsm:
        raise KeyError(f"adata.obsm[{key!r}] not found; run `scfim.tl.neural_fim(adata)` first")
    E = np.asarray(adata.obsm[key], dtype=np.float64)
    if E.ndim != 2:
        raise ValueError(f"adata.obsm[{key!r}] must be 2-D, got shape {E.shape}")
    if groupby is None:
        groups = {"all cells": np.ones(adata.n_obs, dtype=bool)}
    else:
        if groupby not in adata.obs:
            raise KeyError(f"groupby={groupby!r} is not a column of adata.obs")
        col = adata.obs[groupby]
        cats = col.cat.categories if hasattr(col, "cat") else np.unique(col.to_numpy())
        groups = {str(c): (col == c).to_numpy() for c in cats}
    new_figure = ax is None
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 3))
    idx = np.arange(1, E.shape[1] + 1)
    tiny = np.finfo(np.float64).tiny
    for name, mask in groups.items():
        if mask.any():
            ax.plot(idx, np.maximum(E[mask].mean(0), tiny), marker="o", ms=3, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("eigenvalue index")
    ax.set_ylabel("mean eigenvalue")
    if len(groups) > 1:
        ax.legend(frameon=False, title=groupby, fontsize="small")
    if new_figure:
        ax.figure.tight_layout()
    return ax
