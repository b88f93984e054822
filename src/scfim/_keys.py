"""The AnnData keys that :mod:`scfim.tl` writes and :mod:`scfim.pl` reads: one table.

Each tool's default ``key_added`` is a constant here, and each function maps a
``key_added`` to the names derived from it, as ``(attribute, key)`` pairs (attribute one
of ``obs``, ``obsm``, ``obsp``, ``uns``). Tools write under these names, plots read them,
and the log lines of :mod:`scfim._logging` list them. :func:`rep_matrix` is the one place
that knows where an input representation (``use_rep``) lives.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

__all__ = [
    "DIFFUSION",
    "JSD_PHATE",
    "NEURAL_FIM",
    "CURVATURE",
    "GEODESIC",
    "FISHER_RAO_DISTANCES",
    "LAND",
    "PARAMETER_FIM",
    "diffusion_keys",
    "jsd_phate_keys",
    "neural_fim_keys",
    "curvature_keys",
    "land_keys",
    "rep_matrix",
    "rep_array",
    "pseudotime_keys",
]

DIFFUSION = "diffusion"
JSD_PHATE = "jsd_phate"
NEURAL_FIM = "neural_fim"
CURVATURE = "diffusion_curvature"
GEODESIC = "geodesic"
FISHER_RAO_DISTANCES = "fisher_rao_distances"
LAND = "land"
PARAMETER_FIM = "parameter_fim"


def diffusion_keys(key: str = DIFFUSION) -> dict[str, tuple[str, str]]:
    """``transitions`` (obsp, one-step Markov matrix) and ``uns`` of :func:`scfim.tl.diffusion`."""
    return {"transitions": ("obsp", f"{key}_transitions"), "uns": ("uns", key)}


def jsd_phate_keys(key: str = JSD_PHATE) -> dict[str, tuple[str, str]]:
    """``embedding`` (obsm ``X_{key}``) and ``uns`` of :func:`scfim.tl.jsd_phate`."""
    return {"embedding": ("obsm", f"X_{key}"), "uns": ("uns", key)}


def neural_fim_keys(key: str = NEURAL_FIM) -> dict[str, tuple[str, str]]:
    """Per-cell fields of :func:`scfim.tl.neural_fim`: ``fim_*`` for the default key.

    With another ``key`` the prefix ``fim`` becomes ``key``; the embedding is ``X_{key}``.
    """
    p = "fim" if key == NEURAL_FIM else key
    return {
        "embedding": ("obsm", f"X_{key}"),
        "volume": ("obs", f"{p}_volume"),
        "log_volume": ("obs", f"{p}_log_volume"),
        "trace": ("obs", f"{p}_trace"),
        "eigenvalues": ("obsm", f"{p}_eigenvalues"),
        "log_volume_std": ("obs", f"{p}_log_volume_std"),
        "trace_std": ("obs", f"{p}_trace_std"),
        "outside_fit": ("obs", f"{p}_outside_fit"),
        "uns": ("uns", key),
    }


def curvature_keys(key: str = CURVATURE) -> dict[str, tuple[str, str]]:
    """Columns of :func:`scfim.tl.diffusion_curvature` (``raw``: only with the flat reference)."""
    return {"curvature": ("obs", key), "raw": ("obs", f"{key}_raw"), "uns": ("uns", key)}


def land_keys(key: str = LAND) -> dict[str, tuple[str, str]]:
    """Fields of :func:`scfim.tl.land`."""
    return {
        "log_likelihood": ("obs", f"{key}_log_likelihood"),
        "component": ("obs", f"{key}_component"),
        "log_failed": ("obs", f"{key}_log_failed"),
        "responsibilities": ("obsm", f"{key}_responsibilities"),
        "uns": ("uns", key),
    }


def rep_matrix(adata: AnnData, name: str):
    """The stored matrix of representation ``name`` (``"X"`` or an ``obsm`` key), as is.

    Raises
    ------
    KeyError
        When ``name`` is neither ``"X"`` nor in ``adata.obsm``.
    """
    if name == "X":
        return adata.X
    if name not in adata.obsm:
        raise KeyError(
            f"use_rep={name!r} is not in adata.obsm (available: {list(adata.obsm.keys())}); "
            "run e.g. `sc.pp.pca(adata)` first or pass use_rep='X'"
        )
    return adata.obsm[name]


def rep_array(adata: AnnData, name: str) -> np.ndarray:
    """Dense float64 copy of representation ``name`` (for plots; tools validate with ``tl``)."""
    M = rep_matrix(adata, name)
    if sp.issparse(M):
        M = M.toarray()
    elif hasattr(M, "to_numpy"):
        M = M.to_numpy()
    return np.asarray(M, dtype=np.float64)


def pseudotime_keys(key: str = "fisher_rao_pseudotime") -> dict[str, tuple[str, str]]:
    """Fields of :func:`scfim.tl.fisher_rao_pseudotime`."""
    return {"pseudotime": ("obs", key), "root": ("obs", f"{key}_root"), "uns": ("uns", key)}
