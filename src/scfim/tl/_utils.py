"""Shared helpers of the AnnData adapters: input validation and key handling."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

__all__ = ["resolve_rep", "get_rep", "check_int", "clean_for_h5ad", "require_key"]


def resolve_rep(adata: AnnData, use_rep: str | None) -> str:
    """Input representation: ``use_rep``, else ``"X_pca"`` when present, else ``"X"``."""
    if use_rep is None:
        return "X_pca" if "X_pca" in adata.obsm else "X"
    if use_rep != "X" and use_rep not in adata.obsm:
        raise KeyError(
            f"use_rep={use_rep!r} is not in adata.obsm (available: {list(adata.obsm.keys())}); "
            "run e.g. `sc.pp.pca(adata)` first or pass use_rep='X'"
        )
    return use_rep


def get_rep(adata: AnnData, use_rep: str | None, *, min_obs: int = 3) -> tuple[np.ndarray, str]:
    """Validated dense float64 copy of the input representation.

    Sparse and integer matrices are accepted (densified / cast). Raises a ``ValueError`` with
    a clear message on NaN or infinite values, too few cells, or constant data.
    """
    name = resolve_rep(adata, use_rep)
    M = adata.X if name == "X" else adata.obsm[name]
    if M is None:
        raise ValueError("adata.X is empty; pass use_rep pointing to an obsm entry")
    if sp.issparse(M):
        if M.shape[1] > 1000:
            raise ValueError(
                f"use_rep={name!r} is a sparse matrix with {M.shape[1]} features; reduce it "
                "first (e.g. `sc.pp.pca(adata)`) and use the default use_rep='X_pca'"
            )
        M = M.toarray()
    elif hasattr(M, "to_numpy"):
        M = M.to_numpy()
    M = np.asarray(M)
    if M.ndim != 2:
        raise ValueError(f"use_rep={name!r} must be 2-D, got shape {M.shape}")
    if not (np.issubdtype(M.dtype, np.number) or M.dtype == bool):
        raise ValueError(f"use_rep={name!r} must be numeric, got dtype {M.dtype}")
    X = np.asarray(M, dtype=np.float64)
    if X.shape[0] < min_obs:
        raise ValueError(f"need at least {min_obs} cells, got {X.shape[0]}")
    if X.shape[1] < 1:
        raise ValueError(f"use_rep={name!r} has no features")
    bad = ~np.isfinite(X)
    if bad.any():
        rows = np.flatnonzero(bad.any(1))
        raise ValueError(
            f"use_rep={name!r} contains NaN or infinite values in {rows.size} cells "
            f"(first: {adata.obs_names[rows[0]]!r}); impute or remove them first"
        )
    if np.all(np.ptp(X, axis=0) == 0):
        raise ValueError(f"use_rep={name!r} is constant: all cells are identical")
    return X, name


def check_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Validate an integer option."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be ≥ {minimum}, got {value}")
    return int(value)


def check_common(random_state: Any, key_added: Any, copy: Any) -> int | None:
    """Validate the arguments every ``tl`` function shares; returns ``random_state``."""
    if random_state is not None:
        random_state = check_int("random_state", random_state, minimum=0)
    if not isinstance(key_added, str) or not key_added:
        raise TypeError(f"key_added must be a non-empty string, got {key_added!r}")
    if not isinstance(copy, (bool, np.bool_)):
        raise TypeError(f"copy must be True or False, got {copy!r}")
    return random_state


def clean_for_h5ad(d: dict) -> dict:
    """Drop None values (h5ad cannot store them) and convert tuples to lists, recursively."""
    out = {}
    for k, v in d.items():
        if v is None:
            continue
        if isinstance(v, dict):
            out[k] = clean_for_h5ad(v)
        elif isinstance(v, tuple):
            out[k] = np.asarray(v)
        else:
            out[k] = v
    return out


def require_key(adata: AnnData, key: str, producer: str) -> dict:
    """``adata.uns[key]`` or a clear error naming the function that writes it."""
    if key not in adata.uns:
        raise KeyError(f"adata.uns[{key!r}] not found; run `scfim.tl.{producer}(adata)` first")
    return adata.uns[key]
