"""``scfim.tl.jsd_phate``: PHATE with Jensen–Shannon distances (neural-FIM paper, A.3)."""

from __future__ import annotations

import logging

import numpy as np
from anndata import AnnData

from ..geometry.divergences import pairwise_js
from ..geometry.mds import interpolate, metric_mds
from ._operator import operator_from_adata
from ._utils import check_int

__all__ = ["jsd_phate"]

logger = logging.getLogger("scfim")


def jsd_phate(
    adata: AnnData,
    *,
    n_components: int = 2,
    diffusion_key: str = "diffusion",
    max_iter: int = 300,
    key_added: str = "X_jsd_phate",
    copy: bool = False,
) -> AnnData | None:
    """JSD-PHATE: metric MDS of Jensen–Shannon distances between rows of Pᵗ.

    The distance between cells i and j is ``sqrt(JS(Pᵗ(i,·), Pᵗ(j,·)))`` on the true
    probability rows (not on log-potentials). With a landmark operator, the landmarks are
    embedded by metric MDS (SMACOF from classical MDS) and every cell is placed at the
    transition-weighted average of the landmarks it reaches in one step (PHATE's
    out-of-sample rule); otherwise all cells are embedded directly.

    Parameters
    ----------
    adata
        Annotated data on which :func:`scfim.tl.diffusion` ran.
    n_components
        Embedding dimension (any value below the number of states).
    diffusion_key
        ``key_added`` of :func:`scfim.tl.diffusion`.
    max_iter
        SMACOF iteration limit.
    key_added
        ``obsm`` key of the embedding.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    AnnData or None
        None, or the modified copy when ``copy=True``. Writes

        ``adata.obsm[key_added]``
            ``(n_obs, n_components)`` embedding;
        ``adata.uns["jsd_phate"]``
            ``params`` and the normalised ``stress`` of the MDS fit.
    """
    n_components = check_int("n_components", n_components)
    max_iter = check_int("max_iter", max_iter)
    op = operator_from_adata(adata, diffusion_key)
    if n_components >= op.n_states:
        raise ValueError(
            f"n_components={n_components} must be smaller than the number of diffusion "
            f"states ({op.n_states})"
        )
    rows = op.landmark_rows()
    D = np.sqrt(pairwise_js(rows))
    Y_states, s1 = metric_mds(D, n_components, max_iter=max_iter)
    Y = interpolate(op.cell_to_landmark(), Y_states) if op.is_landmark else Y_states
    logger.info("jsd_phate: %d states, stress-1 %.3f", op.n_states, s1)

    adata = adata.copy() if copy else adata
    adata.obsm[key_added] = Y.astype(np.float32)
    adata.uns["jsd_phate"] = {
        "params": {
            "n_components": n_components,
            "diffusion_key": diffusion_key,
            "key_added": key_added,
        },
        "stress": float(s1),
    }
    return adata if copy else None
