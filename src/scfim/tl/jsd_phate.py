"""``scfim.tl.jsd_phate``: PHATE with Jensen–Shannon distances (neural-FIM paper, A.3)."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .. import _logging as logg
from .._docs import doc_params
from .._keys import jsd_phate_keys
from ..geometry.divergences import pairwise_js
from ..geometry.mds import interpolate, metric_mds
from ._store import read_operator
from ._validate import check_bool, check_int, check_key_added

__all__ = ["jsd_phate"]


@doc_params()
def jsd_phate(
    adata: AnnData,
    *,
    n_components: int = 2,
    diffusion_key: str = "diffusion",
    max_iter: int = 300,
    key_added: str = "jsd_phate",
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
        Name of the result: the embedding is ``obsm[f"X_{key_added}"]``, the fit
        statistics ``uns[key_added]``.
    {copy}

    Returns
    -------
    AnnData or None
        None, or the modified copy when ``copy=True``. Writes

        ``adata.obsm[f"X_{key_added}"]``
            ``(n_obs, n_components)`` embedding (``"X_jsd_phate"`` by default);
        ``adata.uns[key_added]``
            ``params`` and the normalised ``stress`` of the MDS fit.

    Raises
    ------
    ValueError, KeyError, TypeError
        On invalid input; ``adata`` is then left unchanged.
    """
    n_components = check_int("n_components", n_components)
    max_iter = check_int("max_iter", max_iter)
    check_key_added(diffusion_key, "diffusion_key")
    check_key_added(key_added)
    check_bool("copy", copy)
    op = read_operator(adata, diffusion_key)
    if n_components >= op.n_states:
        raise ValueError(
            f"n_components={n_components} must be smaller than the number of diffusion "
            f"states ({op.n_states})"
        )
    start = logg.info(f"computing JSD-PHATE of {op.n_states} diffusion states")
    rows = op.landmark_rows()
    D = np.sqrt(pairwise_js(rows))
    Y_states, s1 = metric_mds(D, n_components, max_iter=max_iter)
    Y = interpolate(op.cell_to_landmark(), Y_states) if op.is_landmark else Y_states

    keys = jsd_phate_keys(key_added)
    adata = adata.copy() if copy else adata
    adata.obsm[keys["embedding"][1]] = Y.astype(np.float32)
    adata.uns[key_added] = {
        "params": {
            "n_components": n_components,
            "diffusion_key": diffusion_key,
            "key_added": key_added,
        },
        "stress": float(s1),
    }
    logg.info(
        f"    finished: stress-1 {s1:.3f}",
        time=start,
        deep=logg.added(keys["embedding"], keys["uns"]),
    )
    return adata if copy else None
