"""Argument checks shared by every tool, one rule for the error types.

``TypeError`` for a wrong type (a string where a number is expected, a bool where an
integer is), ``ValueError`` for a wrong value (out of range, empty key, unknown choice),
``KeyError`` for a missing prerequisite (an ``obsm``/``uns`` entry another function
writes). Every tool validates all of its arguments before it reads or touches ``adata``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from .._keys import rep_matrix

__all__ = [
    "check_int",
    "check_float",
    "check_bool",
    "check_choice",
    "check_key_added",
    "check_random_state",
    "check_common",
    "resolve_rep",
    "get_rep",
    "require_key",
]


def check_int(name: str, value: Any, *, minimum: int | None = 1, maximum: int | None = None) -> int:
    """An integer option (bools and strings are a ``TypeError``) in ``[minimum, maximum]``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be ≥ {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be ≤ {maximum}, got {value}")
    return int(value)


def check_float(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    allow_none: bool = False,
) -> float | None:
    """A finite real option in ``[minimum, maximum]`` (``(minimum, …`` if exclusive)."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if minimum is not None and (v <= minimum if exclusive_minimum else v < minimum):
        raise ValueError(f"{name} must be {'>' if exclusive_minimum else '≥'} {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be ≤ {maximum}, got {v}")
    return v


def check_bool(name: str, value: Any) -> bool:
    """``True`` or ``False`` (NumPy bools too); anything else is a ``TypeError``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_choice(name: str, value: Any, choices: Collection) -> Any:
    """One of ``choices``; a non-string for string choices is a ``TypeError``."""
    if all(isinstance(c, str) for c in choices) and not isinstance(value, str):
        raise TypeError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_key_added(key_added: Any, name: str = "key_added") -> str:
    """A non-empty key without ``'/'`` (h5ad cannot store it)."""
    if not isinstance(key_added, str):
        raise TypeError(f"{name} must be a string, got {key_added!r}")
    if not key_added or "/" in key_added:
        raise ValueError(f"{name} must be a non-empty string without '/', got {key_added!r}")
    return key_added


def check_random_state(random_state: Any) -> int | None:
    """None (not reproducible) or a seed ≥ 0; a ``numpy.random.Generator`` is not accepted.

    Seeds are stored in ``params`` (h5ad) and offset per ensemble member, so only integer
    seeds are accepted.
    """
    if random_state is None:
        return None
    return check_int("random_state", random_state, minimum=0)


def check_common(random_state: Any, key_added: Any, copy: Any) -> int | None:
    """Check the arguments every tool shares; returns ``random_state`` as an int or None."""
    check_key_added(key_added)
    check_bool("copy", copy)
    return check_random_state(random_state)


def check_use_rep(use_rep: Any) -> str | None:
    """``use_rep`` is a string or None (TypeError otherwise); checked before ``adata`` is read."""
    if use_rep is not None and not isinstance(use_rep, str):
        raise TypeError(f"use_rep must be a string or None, got {use_rep!r}")
    return use_rep


def resolve_rep(adata: AnnData, use_rep: str | None) -> str:
    """Input representation: ``use_rep``, else ``"X_pca"`` when present, else ``"X"``.

    The one resolver of ``use_rep`` (like scanpy's ``_choose_representation``).
    """
    if use_rep is None:
        return "X_pca" if "X_pca" in adata.obsm else "X"
    check_use_rep(use_rep)
    rep_matrix(adata, use_rep)  # KeyError when it is missing
    return use_rep


def get_rep(adata: AnnData, use_rep: str | None, *, min_obs: int = 3) -> tuple[np.ndarray, str]:
    """Validated dense float64 copy of the input representation and its resolved name.

    Sparse and integer matrices are accepted (densified / cast). Raises a ``ValueError`` with
    a clear message on NaN or infinite values, too few cells, or constant data.
    """
    name = resolve_rep(adata, use_rep)
    M = rep_matrix(adata, name)
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


def require_key(adata: AnnData, key: str, producer: str, *, what: str = "adata") -> dict:
    """``adata.uns[key]`` or a ``KeyError`` naming the function that writes it."""
    if key not in adata.uns:
        raise KeyError(f"{what}.uns[{key!r}] not found; run `scfim.tl.{producer}({what})` first")
    return adata.uns[key]
