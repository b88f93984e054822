"""New cells in the input basis of a fitted model (for the ``*_transform`` tools).

A model fitted on ``use_rep`` of ``model_from`` takes new cells in that same basis. The
basis is chosen in this order:

1. ``use_rep`` given by the caller: taken as is;
2. fitted on ``X``: ``adata_new.X`` with genes matched by name;
3. fitted on ``obsm[rep]`` and ``adata_new.obsm[rep]`` is provably the same basis: for
   ``X_pca``, both objects carry identical PCA loadings ``varm["PCs"]`` over the same genes
   (e.g. ``adata_new`` is a subset of the object PCA ran on);
4. fitted on ``X_pca`` and the PCA can be replayed: ``adata_new.X`` is projected on
   ``model_from.varm["PCs"]`` (finite loadings, genes matched by name) and shifted by the
   projected centre, which is recovered from ``model_from``'s own cells (so a PCA fitted on
   a larger object than ``model_from`` is replayed correctly);
5. otherwise an error that names the cause and the argument to pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from ..models.chunked import is_dask_array

__all__ = ["new_cells_basis", "pca_projection", "project_new"]

_PCA_CHECK_CELLS = 500
_PCA_RTOL = 1e-3


def _dense(M, what: str) -> np.ndarray:
    """Dense float64 cells; a dask array stays lazy (read chunk by chunk later)."""
    if M is None:
        raise ValueError(f"{what} is empty")
    if is_dask_array(M):
        return M
    if sp.issparse(M):
        M = M.toarray()
    elif hasattr(M, "to_numpy"):
        M = M.to_numpy()
    return np.asarray(M, dtype=np.float64)


def _pca_layer(adata: AnnData) -> str | None:
    params = dict(adata.uns.get("pca", {}).get("params", {}))
    layer = params.get("layer")
    return None if layer is None or isinstance(layer, (bool, np.bool_)) else str(layer)


def _used_loadings(PCs: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """Genes that enter the PCA, or the reason why the loadings cannot be used.

    Rows that are all zero or all NaN are genes outside the PCA.
    """
    nan = np.isnan(PCs)
    excluded = nan.all(1) | (np.where(nan, 0.0, PCs) == 0).all(1)
    partial = nan.any(1) & ~nan.all(1)
    if partial.any() or not np.isfinite(PCs[~excluded]).all():
        return None, (
            f"model_from.varm['PCs'] holds {int(nan.sum())} NaN or infinite entries in genes "
            "that enter the PCA"
        )
    return np.flatnonzero(~excluded), None


def pca_projection(adata: AnnData, X_pca: np.ndarray) -> dict | None:
    """How to replay ``obsm['X_pca'] = X @ varm['PCs'] − c`` on ``adata``, or None.

    scanpy stores the loadings (``varm['PCs']``) but not the mean it centred with, and the
    PCA may have been fitted on a larger object than ``adata``. Only the projected centre
    ``c = mean @ PCs`` is needed; it is recovered from ``adata``'s own cells and the
    projection is checked on up to 500 of them, so that a change of ``X`` after PCA (e.g.
    scaling) is caught. Genes whose loadings are all NaN or all zero are treated as not in
    the PCA.

    Returns
    -------
    dict or None
        ``pca_offset`` (``c``) and ``layer`` (when the PCA used one), or None when the PCA
        cannot be replayed (the transform tools then report why).
    """
    out, _ = _pca_projection_or_reason(adata, X_pca)
    return out


def _pca_projection_or_reason(adata: AnnData, X_pca: np.ndarray) -> tuple[dict | None, str]:
    if "PCs" not in adata.varm:
        return None, "model_from has no varm['PCs']"
    PCs = np.asarray(adata.varm["PCs"], dtype=np.float64)
    if PCs.shape[1] != X_pca.shape[1]:
        return None, (
            f"model_from.varm['PCs'] has {PCs.shape[1]} components, X_pca {X_pca.shape[1]}"
        )
    used, problem = _used_loadings(PCs)
    if problem:
        return None, problem
    layer = _pca_layer(adata)
    M = adata.X if layer is None else adata.layers.get(layer)
    if M is None:
        return None, f"model_from has no {'X' if layer is None else f'layer {layer!r}'}"
    sel = np.linspace(0, adata.n_obs - 1, min(adata.n_obs, _PCA_CHECK_CELLS)).astype(np.int64)
    Ms = _dense(M[sel][:, used], "model_from.X")
    shift = Ms @ PCs[used] - np.asarray(X_pca, dtype=np.float64)[sel]
    offset = np.median(shift, axis=0)
    scale = np.abs(X_pca[sel]).max() + 1e-12
    err = np.abs(shift - offset).max()
    if not np.isfinite(err) or err > _PCA_RTOL * scale:
        n_nan = int(np.isnan(PCs).all(1).sum())
        nan_note = (
            f" (varm['PCs'] holds NaN in {n_nan} genes, {int(np.isnan(PCs).sum())} entries, "
            "taken as genes outside the PCA)"
            if n_nan
            else ""
        )
        return None, (
            "model_from.obsm['X_pca'] is not reproduced by projecting model_from.X on "
            f"varm['PCs'] (off by {err:.3g}, {err / scale:.1%} of its range: X changed after "
            f"PCA?){nan_note}"
        )
    out: dict[str, Any] = {"pca_offset": offset}
    if layer is not None:
        out["layer"] = layer
    return out, ""


def project_new(adata_new: AnnData, model_from: AnnData, proj: dict) -> np.ndarray:
    """``adata_new`` projected on ``model_from``'s PCA (genes matched by name)."""
    PCs = np.asarray(model_from.varm["PCs"], dtype=np.float64)
    used, problem = _used_loadings(PCs)
    if problem:
        raise ValueError(problem)
    genes = model_from.var_names[used]
    missing = genes.difference(adata_new.var_names)
    if len(missing):
        raise ValueError(
            f"adata_new lacks {len(missing)} genes used by the PCA of model_from "
            f"(first: {missing[0]!r}); subset/reorder it to model_from.var_names or pass use_rep"
        )
    layer = proj.get("layer")
    if layer is not None and layer not in adata_new.layers:
        raise KeyError(f"the PCA used layer {layer!r}, which adata_new lacks")
    M = adata_new.X if layer is None else adata_new.layers[layer]
    if M is None:
        raise ValueError("adata_new.X is empty")
    M = M[:, adata_new.var_names.get_indexer(genes)]
    offset = np.asarray(proj["pca_offset"], dtype=np.float64)
    W = PCs[used]
    if is_dask_array(M):  # lazy: projected chunk by chunk when the FIM is computed
        return M.rechunk({1: -1}).map_blocks(
            _project_block, W, offset, dtype=np.float64, chunks=(M.chunks[0], (W.shape[1],))
        )
    out = np.empty((adata_new.n_obs, PCs.shape[1]))
    for s in range(0, adata_new.n_obs, 65536):
        out[s : s + 65536] = _project_block(M[s : s + 65536], W, offset)
    return out


def _project_block(block, W: np.ndarray, offset: np.ndarray) -> np.ndarray:
    return _dense(block, "adata_new.X") @ W - offset


def _same_pca(adata_new: AnnData, model_from: AnnData, n_comps: int) -> tuple[bool, str]:
    if "PCs" not in adata_new.varm:
        return False, "adata_new has no varm['PCs'] to show it is the same PCA"
    if "PCs" not in model_from.varm:
        return False, "model_from has no varm['PCs']"
    if not adata_new.var_names.equals(model_from.var_names):
        return False, "adata_new and model_from have different var_names"
    A = np.asarray(adata_new.varm["PCs"])
    B = np.asarray(model_from.varm["PCs"])
    if A.shape != B.shape or B.shape[1] != n_comps:
        return False, "adata_new.varm['PCs'] has another shape than model_from's"
    if not np.array_equal(A, B, equal_nan=True):
        return False, "adata_new.varm['PCs'] differs from model_from's (another PCA)"
    return True, ""


def new_cells_basis(
    adata_new: AnnData,
    model_from: AnnData,
    train_rep: str,
    *,
    use_rep: str | None = None,
    n_features: int,
) -> tuple[np.ndarray, str]:
    """``adata_new`` in the input basis ``train_rep`` of ``model_from`` (see module notes).

    Parameters
    ----------
    adata_new
        New cells.
    model_from
        The AnnData the model was fitted on.
    train_rep
        ``"X"`` or the ``obsm`` key the model was fitted on.
    use_rep
        ``adata_new`` representation to take as is (``"X"`` or an ``obsm`` key).
    n_features
        Number of input features the model takes.

    Returns
    -------
    X, description
        Dense float64 ``(n_new, n_features)`` input, and how it was obtained (stored as
        ``transform_rep``).

    Raises
    ------
    KeyError, ValueError
        When no basis can be established; the message says what to pass.
    """
    if use_rep is not None:
        if use_rep != "X" and use_rep not in adata_new.obsm:
            raise KeyError(
                f"use_rep={use_rep!r} is not in adata_new.obsm "
                f"(available: {list(adata_new.obsm.keys())})"
            )
        M = adata_new.X if use_rep == "X" else adata_new.obsm[use_rep]
        X, rep = _dense(M, f"adata_new's {use_rep}"), f"{use_rep} (given)"
    elif train_rep == "X":
        missing = model_from.var_names.difference(adata_new.var_names)
        if len(missing):
            raise ValueError(
                f"adata_new lacks {len(missing)} of the training genes (first: {missing[0]!r})"
            )
        if adata_new.X is None:
            raise ValueError("adata_new.X is empty")
        idx = adata_new.var_names.get_indexer(model_from.var_names)
        X, rep = _dense(adata_new.X[:, idx], "adata_new.X"), "X"
    else:
        X, rep = _obsm_basis(adata_new, model_from, train_rep, n_features)
    if X.ndim != 2 or X.shape[0] < 1:
        raise ValueError(f"no cells to transform (input shape {X.shape})")
    if X.shape[1] != n_features:
        raise ValueError(
            f"the model expects {n_features} input features, got {X.shape[1]} from {rep}"
        )
    bad = np.zeros((0, 1), dtype=bool) if is_dask_array(X) else ~np.isfinite(X)
    if bad.any():  # a dask input is checked chunk by chunk when it is evaluated
        rows = np.flatnonzero(bad.any(1))
        raise ValueError(
            f"the input ({rep}) of adata_new contains NaN or infinite values in {rows.size} "
            f"cells (first: {adata_new.obs_names[rows[0]]!r})"
        )
    return X, rep


def _obsm_basis(
    adata_new: AnnData, model_from: AnnData, train_rep: str, n_features: int
) -> tuple[np.ndarray, str]:
    has_rep = train_rep in adata_new.obsm
    if train_rep != "X_pca":
        hint = (
            f"if adata_new.obsm[{train_rep!r}] is in the same basis, pass use_rep={train_rep!r}"
            if has_rep
            else f"put the new cells in that basis into adata_new.obsm[{train_rep!r}] and "
            f"pass use_rep={train_rep!r}"
        )
        raise ValueError(
            f"the model was fitted on obsm[{train_rep!r}], which scfim cannot compute for "
            f"new cells; {hint}"
        )
    why_not_same = ""
    if has_rep:
        same, why_not_same = _same_pca(adata_new, model_from, n_features)
        if same:
            X = _dense(adata_new.obsm[train_rep], "adata_new.obsm['X_pca']")
            return (
                X,
                "obsm['X_pca'] (the same PCA as model_from: identical varm['PCs'])",
            )
    X_pca = _dense(model_from.obsm.get(train_rep), "model_from.obsm['X_pca']")
    proj, why_no_replay = _pca_projection_or_reason(model_from, X_pca)
    if proj is not None:
        return project_new(adata_new, model_from, proj), "X (projected on model_from.varm['PCs'])"
    reasons = f"the PCA of model_from cannot be replayed on adata_new.X: {why_no_replay}"
    if has_rep:
        reasons += f"; adata_new.obsm['X_pca'] is not known to be that PCA: {why_not_same}"
        todo = (
            "if adata_new.obsm['X_pca'] comes from the same PCA as model_from's (e.g. both are "
            "subsets of one object after sc.pp.pca), pass use_rep='X_pca'"
        )
    else:
        todo = (
            "run sc.pp.pca on one object holding both training and new cells before "
            "splitting (then adata_new.obsm['X_pca'] is used), or project the new cells "
            "into model_from's PCA yourself, store them in adata_new.obsm['X_pca'] and pass "
            "use_rep='X_pca'"
        )
    raise ValueError(f"{reasons}. To transform: {todo}.")
