"""``scfim.tl.jsd_phate``: PHATE with Jensen–Shannon distances (neural-FIM paper, A.3)."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .. import _logging as logg
from .._docs import doc_params
from .._keys import jsd_phate_keys
from ..geometry.diffusion import extend_transitions
from ..geometry.jsd_phate import jsd_phate_embedding, jsd_phate_place
from ._basis import new_cells_basis
from ._store import read_operator
from ._validate import check_bool, check_int, check_key_added, check_use_rep, get_rep, require_key

__all__ = ["jsd_phate", "jsd_phate_transform"]


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
    out-of-sample rule); otherwise all cells are embedded directly (exact copies of a cell
    share its state and its coordinates). New cells: :func:`jsd_phate_transform`.

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
            ``params``, the normalised ``stress`` of the MDS fit and
            ``state_coordinates`` (the embedded diffusion states, used by
            :func:`jsd_phate_transform`).

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
    Y, Y_states, s1 = jsd_phate_embedding(op, n_components, max_iter=max_iter)

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
        "state_coordinates": Y_states,
    }
    logg.info(
        f"    finished: stress-1 {s1:.3f}",
        time=start,
        deep=logg.added(keys["embedding"], keys["uns"]),
    )
    return adata if copy else None


@doc_params()
def jsd_phate_transform(
    adata_new: AnnData,
    model_from: AnnData,
    *,
    key_added: str = "jsd_phate",
    use_rep: str | None = None,
    max_iter: int = 300,
    copy: bool = False,
) -> AnnData | None:
    """Place new cells in the JSD-PHATE embedding of ``model_from``.

    Each new cell is attached to the fitted diffusion chain as if it were one more cell:
    its one-step transitions to the fitted cells use the same kernel (alpha-decay with its
    own bandwidth and the fitted cells' bandwidths, symmetrised, anisotropic weights of the
    fitted kernel degrees), which for a fitted cell reproduces its row of P. With landmark
    clusters the new cell is placed at the transition-weighted average of the landmark
    coordinates, the rule that placed the fitted cells (PHATE's out-of-sample extension);
    when the diffusion states are the cells, it minimises its own metric-MDS stress between
    its √JS distances (its row of Pᵗ against the states') and its distances to the fixed
    state coordinates. A new cell identical to a fitted cell is that cell's state (as
    exact copies are in the fit) and gets its coordinates; fitted cells passed as new cells
    therefore land on their own coordinates (with landmarks, also by the placement rule).

    Parameters
    ----------
    adata_new
        New cells, in (or convertible to) the input basis of :func:`scfim.tl.diffusion` on
        ``model_from``: with ``use_rep="X_pca"`` their ``obsm["X_pca"]`` when it is the same
        PCA (identical ``varm["PCs"]``), else ``X`` projected on ``model_from``'s loadings.
    model_from
        AnnData on which :func:`scfim.tl.diffusion` and :func:`jsd_phate` ran.
    key_added
        ``key_added`` of that :func:`jsd_phate` call; the same names are written here.
    use_rep
        ``adata_new`` representation already in the fitted basis, used as is.
    max_iter
        Iteration limit of the stress placement.
    {copy}

    Returns
    -------
    AnnData or None
        None, or the modified copy when ``copy=True``. Writes

        ``adata_new.obsm[f"X_{key_added}"]``
            ``(n_new, n_components)`` coordinates in ``model_from``'s embedding;
        ``adata_new.uns[key_added]``
            ``params`` (``model_from``'s, plus ``transform_rep``: how the input was obtained).

    Raises
    ------
    ValueError, KeyError, TypeError
        On invalid input; ``adata_new`` is then left unchanged.
    """
    check_key_added(key_added)
    check_use_rep(use_rep)
    max_iter = check_int("max_iter", max_iter)
    check_bool("copy", copy)
    fit = require_key(model_from, key_added, "jsd_phate", what="model_from")
    if "state_coordinates" not in fit or "params" not in fit:
        raise KeyError(
            f"model_from.uns[{key_added!r}] has no state coordinates; rerun "
            "`scfim.tl.jsd_phate(model_from)`"
        )
    diffusion_key = str(fit["params"]["diffusion_key"])
    dif = require_key(model_from, diffusion_key, "diffusion", what="model_from")
    missing = [k for k in ("kernel_degrees", "radii") if k not in dif]
    if missing:
        raise KeyError(
            f"model_from.uns[{diffusion_key!r}] lacks {missing[0]!r} (written by newer "
            "versions of scfim.tl.diffusion); rerun `scfim.tl.diffusion` and "
            "`scfim.tl.jsd_phate` on model_from"
        )
    p = dif["params"]
    X_fit, train_rep = get_rep(model_from, str(p["use_rep"]))
    X_new, rep = new_cells_basis(
        adata_new, model_from, train_rep, use_rep=use_rep, n_features=X_fit.shape[1]
    )
    op = read_operator(model_from, diffusion_key)
    Y_states = np.asarray(fit["state_coordinates"], dtype=np.float64)
    keys = jsd_phate_keys(key_added)

    start = logg.info(f"placing {X_new.shape[0]} new cells in JSD-PHATE ({op.n_states} states)")
    T, matches = extend_transitions(
        X_fit,
        X_new,
        kernel_degrees=np.asarray(dif["kernel_degrees"], dtype=np.float64),
        radii=np.asarray(dif["radii"], dtype=np.float64),
        bandwidths=None if "bandwidths" not in dif else np.asarray(dif["bandwidths"]),
        kernel=str(p["kernel"]),
        n_neighbors=int(p["n_neighbors"]),
        decay=float(p["decay"]),
        sigma=None if p.get("sigma") is None else float(p["sigma"]),
        alpha=float(p["alpha"]),
        return_matches=True,
    )
    Y = jsd_phate_place(op, T, Y_states, matches=matches, max_iter=max_iter)

    adata_new = adata_new.copy() if copy else adata_new
    adata_new.obsm[keys["embedding"][1]] = Y.astype(np.float32)
    adata_new.uns[key_added] = {"params": {**dict(fit["params"]), "transform_rep": rep}}
    logg.info("    finished", time=start, deep=logg.added(keys["embedding"], keys["uns"]))
    return adata_new if copy else None
