"""Storage layer of the tools: models and operators to and from ``adata``.

One home for what the tools write into ``adata`` and rebuild from it (in the spirit of
cellrank's ``write_to_adata`` / ``from_adata``): the diffusion operator of
:func:`scfim.tl.diffusion`, the neural-FIM ensemble of :func:`scfim.tl.neural_fim` and the
LAND mixture of :func:`scfim.tl.land`. Everything stored is NumPy arrays, scalars and
strings, so it survives ``AnnData.write_h5ad``. Key names come from :mod:`scfim._keys`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from .._keys import DIFFUSION, LAND, NEURAL_FIM, diffusion_keys
from ..geometry.diffusion import DiffusionOperator
from ._validate import get_rep, require_key

__all__ = [
    "clean_for_h5ad",
    "write_operator",
    "read_operator",
    "fim_ensemble_state",
    "read_fim_ensemble",
    "land_manifold",
    "read_land",
]


def clean_for_h5ad(d: dict) -> dict:
    """Drop None values (h5ad cannot store them) and convert tuples to arrays, recursively."""
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


# ---------------------------------------------------------------------- diffusion operator
def write_operator(
    adata: AnnData,
    op: DiffusionOperator,
    key: str,
    *,
    params: dict,
    entropy=None,
    extra: dict | None = None,
) -> list[tuple[str, str]]:
    """Write ``op`` under ``key`` (``obsp`` transitions and ``uns``); returns the fields.

    ``extra`` entries are merged into ``uns[key]`` (e.g. per-cell quantities a later
    out-of-sample transform needs); ``params`` is stored as given, ``None`` values included
    (anndata writes them to h5ad).
    """
    keys = diffusion_keys(key)
    tkey = keys["transitions"][1]
    adata.obsp[tkey] = op.transitions.astype(np.float64, copy=False)  # no second P
    result: dict[str, Any] = {
        "params": params,
        "t": int(op.t),
        "degrees": op.degrees,
        "n_states": int(op.n_states),
        "transitions_key": tkey,
    }
    if entropy is not None:
        result["entropy"] = entropy
    if op.landmark_labels is not None:
        result["landmark_labels"] = op.landmark_labels
    result["duplicates_collapsed"] = bool(op.duplicates_collapsed)
    result.update(extra or {})
    adata.uns[key] = {**clean_for_h5ad(result), "params": dict(params)}
    return [keys["transitions"], keys["uns"]]


def read_operator(adata: AnnData, key: str = DIFFUSION) -> DiffusionOperator:
    """The :class:`~scfim.geometry.diffusion.DiffusionOperator` written by ``tl.diffusion``.

    Parameters
    ----------
    adata
        Annotated data on which :func:`scfim.tl.diffusion` ran.
    key
        Its ``key_added``.

    Returns
    -------
    DiffusionOperator
        The operator (one-step matrix, stationary weights, t, landmark labels).
    """
    info = require_key(adata, key, "diffusion")
    tkey = str(info["transitions_key"])
    if tkey not in adata.obsp:
        raise KeyError(f"adata.obsp[{tkey!r}] is missing; rerun `scfim.tl.diffusion`")
    P = sp.csr_matrix(adata.obsp[tkey])
    labels = info.get("landmark_labels")
    labels = None if labels is None else np.asarray(labels, dtype=np.int64)
    degrees = np.asarray(info["degrees"], dtype=np.float64)
    n_fit = degrees.shape[0]
    if n_fit != adata.n_obs or (labels is not None and labels.shape[0] != adata.n_obs):
        # obsp is subset with the cells, uns is not: the operator of other cells
        raise ValueError(
            f"adata.uns[{key!r}] describes a diffusion operator of {n_fit} cells, but adata "
            f"has {adata.n_obs} (a subset of the cells it was computed on?); rerun "
            "`scfim.tl.diffusion` on this AnnData"
        )
    return DiffusionOperator(
        P,
        degrees,
        int(info["t"]),
        labels,
        duplicates_collapsed=bool(info.get("duplicates_collapsed", False)),
    )


# ---------------------------------------------------------------------- neural FIM ensemble
def fim_ensemble_state(models) -> dict[str, dict]:
    """``uns[...]["models"]``: each member's :meth:`~scfim.models.neural_fim.NeuralFIM.to_dict`."""
    return {str(i): m.to_dict() for i, m in enumerate(models)}


def read_fim_ensemble(
    adata: AnnData, key: str = NEURAL_FIM, *, device="cpu", what: str = "adata"
) -> tuple[list, dict]:
    """The fitted :class:`~scfim.models.neural_fim.NeuralFIM` members and ``uns[key]``.

    Parameters
    ----------
    adata
        Annotated data on which :func:`scfim.tl.neural_fim` ran.
    key
        Its ``key_added``.
    device
        Torch device of the rebuilt models.
    what
        Name of ``adata`` in error messages (e.g. ``"model_from"``).

    Returns
    -------
    tuple of list and dict
        The models in member order, and ``adata.uns[key]``.
    """
    from ..models.neural_fim import NeuralFIM

    info = require_key(adata, key, "neural_fim", what=what)
    if "models" not in info or not len(info["models"]) or "params" not in info:
        raise KeyError(f"{what}.uns[{key!r}] holds no neural FIM models")
    states = info["models"]
    models = [NeuralFIM.from_dict(states[k], device=device) for k in sorted(states, key=int)]
    return models, info


# ---------------------------------------------------------------------- LAND mixture
def land_manifold(
    adata: AnnData,
    X: np.ndarray,
    *,
    metric: str,
    sigma: float | None,
    rho: float | None,
    rho_rel: float,
    max_points: int,
    fim_key: str,
    land_weight: float,
    n_steps: int,
    log_tol: float,
    random_state: int | None,
    progress: bool = False,
    device="cpu",
):
    """The manifold a LAND lives on: LAND metric or neural FIM (+ LAND term), and its metric.

    For ``metric="land"`` without ``sigma`` the kernel width is chosen for the data by
    :func:`~scfim.geometry.land.select_sigma` (its report is ``land_metric.sigma_selection``).
    The metric (and so every Exp and Log map) lives on ``device``.

    Returns
    -------
    tuple
        ``(MetricManifold, metric, land_metric)``; ``land_metric`` is the LAND-metric part
        (None for a pure neural-FIM metric).
    """
    from ..geometry.exp_log import MetricManifold
    from ..geometry.land import LANDMetric, LocalCovarianceMetric, select_sigma
    from ..geometry.metric import NeuralFIMMetric, SumMetric

    if metric in ("land", "land_diagonal"):
        cls = LocalCovarianceMetric if metric == "land" else LANDMetric
        selection = None
        if sigma is None and metric == "land":
            sigma, selection = select_sigma(
                X,
                rho_rel=rho_rel,
                n_steps=n_steps,
                tol=log_tol,
                max_points=max_points,
                random_state=random_state,
                progress=progress,
                device=device,
            )
        G = cls(
            X,
            sigma,
            rho,
            rho_rel=rho_rel,
            max_points=max_points,
            random_state=random_state,
            device=device,
        )
        G.sigma_selection = selection
        land_metric = G
    else:
        models, _ = read_fim_ensemble(adata, fim_key, device=device)
        if models[0].n_features_ != X.shape[1]:
            raise ValueError(
                f"the neural FIM takes {models[0].n_features_} features, use_rep has {X.shape[1]}"
            )
        G = NeuralFIMMetric(models, device=device)
        land_metric = None
        if land_weight > 0:
            land_metric = LANDMetric(X, device=device)
            G = SumMetric([G, land_metric], [1.0, land_weight])
    manifold = MetricManifold(G, graph_data=X, n_steps=n_steps, tol=log_tol)
    return manifold, G, land_metric


def read_land(adata: AnnData, key: str = LAND):
    """The fitted :class:`~scfim.models.land.LANDMixture` written by :func:`scfim.tl.land`.

    The metric is rebuilt from the stored parameters (the resolved ``sigma`` and ``rho``,
    the seed of the reference cells, or the neural FIM of ``fim_key``).

    Returns
    -------
    LANDMixture
        The mixture, ready for ``score_samples`` / ``predict_proba`` on new points.
    """
    from ..models.land import LANDMixture

    info = require_key(adata, key, "land")
    if "means" not in info or "params" not in info:
        raise KeyError(f"adata.uns[{key!r}] holds no LAND fit")
    p = info["params"]
    X, _ = get_rep(adata, str(p["use_rep"]))
    if p.get("n_pcs") is not None:  # tl.land used the leading components only
        X = X[:, : int(p["n_pcs"])]
    metric = str(p["metric"])
    if metric == "land" and "normaliser" not in p:  # written before the full LAND metric
        metric = "land_diagonal"
    manifold, _, _ = land_manifold(
        adata,
        X,
        metric=metric,
        sigma=None if "sigma" not in p else float(p["sigma"]),
        rho=None if "rho" not in p else float(p["rho"]),
        rho_rel=float(p["rho_rel"]),
        max_points=int(p["max_points"]),
        fim_key=str(p.get("fim_key", NEURAL_FIM)),
        land_weight=float(p.get("land_weight", 0.0)),
        n_steps=int(p["n_steps"]),
        log_tol=float(p["log_tol"]),
        random_state=None if "random_state" not in p else int(p["random_state"]),
    )
    return LANDMixture.from_dict(info, manifold, normaliser=str(p.get("normaliser", "volume")))
