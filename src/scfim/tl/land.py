"""``scfim.tl.land``: mixtures of locally adaptive normal distributions on the cells."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from anndata import AnnData

from ..geometry.land import LANDMetric, MetricManifold
from ..geometry.metric import SumMetric
from ._utils import check_int, clean_for_h5ad, get_rep, require_key

__all__ = ["land"]

logger = logging.getLogger("scfim")

_METRICS = ("land", "neural_fim")


def _positive(name: str, value, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _neural_metric(adata: AnnData, fim_key: str, X: np.ndarray, land_weight: float):
    """The neural-FIM metric of ``adata.uns[fim_key]`` (+ a LAND term so it is full rank)."""
    from ..geometry.metric import NeuralFIMMetric
    from ..models.neural_fim import NeuralFIM

    info = require_key(adata, fim_key, "neural_fim")
    if "models" not in info or not len(info["models"]):
        raise KeyError(f"adata.uns[{fim_key!r}] holds no neural FIM models")
    models = [NeuralFIM.from_dict(info["models"][k]) for k in sorted(info["models"], key=int)]
    if models[0].n_features_ != X.shape[1]:
        raise ValueError(
            f"the neural FIM takes {models[0].n_features_} features, use_rep has {X.shape[1]}"
        )
    fim = NeuralFIMMetric(models)
    if land_weight > 0:
        return SumMetric([fim, LANDMetric(X)], [1.0, land_weight])
    return fim


def land(
    adata: AnnData,
    *,
    n_components: int = 1,
    metric: str = "land",
    use_rep: str | None = None,
    sigma: float | None = None,
    rho: float | None = None,
    rho_rel: float = 0.1,
    max_points: int = 1000,
    fim_key: str = "neural_fim",
    land_weight: float = 1e-2,
    max_iter: int = 20,
    n_samples: int = 1000,
    mean_step: float = 0.2,
    cov_step: float = 0.2,
    n_steps: int = 12,
    log_tol: float = 1e-3,
    random_state: int | None = 0,
    verbose: bool = True,
    key_added: str = "land",
    copy: bool = False,
) -> AnnData | None:
    """Fit a mixture of locally adaptive normal distributions (LANDs) to the cells.

    Each component is ``p_k(x) = exp(−½ Log_μk(x)ᵀ Σk⁻¹ Log_μk(x)) / C_k`` under a Riemannian
    metric on the input space (Arvanitidis et al. 2016): the LAND metric
    ``M(x) = diag(Σ_n w_n(x)(x_nd − x_d)² + ρ)⁻¹`` built from the cells, or the pull-back
    Fisher metric of :func:`scfim.tl.neural_fim` (plus ``land_weight`` times the LAND
    metric so that it has full rank). Means, covariances and weights are fitted by
    maximum likelihood with EM (see :class:`scfim.models.land.LANDMixture`); Log maps are
    solved by shooting and failures are counted, not hidden.

    Parameters
    ----------
    adata
        Annotated data.
    n_components
        Number of mixture components.
    metric
        ``"land"`` or ``"neural_fim"``.
    use_rep
        Input representation (default ``"X_pca"`` when present, else ``X``); with
        ``metric="neural_fim"`` it must be (and defaults to) the one the network was
        trained on. LAND needs few dimensions (2–10).
    sigma, rho, rho_rel, max_points
        LAND-metric kernel width, regulariser (default ``rho_rel`` times the median local
        variance) and number of reference cells (see
        :class:`scfim.geometry.land.LANDMetric`).
    fim_key
        ``key_added`` of :func:`scfim.tl.neural_fim` (``metric="neural_fim"``).
    land_weight
        Weight of the LAND term added to the neural-FIM metric (0 disables it).
    max_iter
        EM iterations.
    n_samples
        Monte Carlo samples of each normalisation constant per iteration.
    mean_step, cov_step
        Step sizes of the mean and covariance updates.
    n_steps
        RK4 steps per geodesic.
    log_tol
        Relative tolerance of the Log-map boundary-value problems.
    random_state
        Seed (k-means start and Monte Carlo samples).
    verbose
        Progress bar over EM iterations.
    key_added
        ``uns`` key and prefix of the ``obs`` columns.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    AnnData or None
        None, or the modified copy when ``copy=True``. Writes

        ``adata.obs[f"{key_added}_log_likelihood"]``
            per-cell log-likelihood ``log Σ_k π_k p_k(x)`` at the fitted parameters;
        ``adata.obs[f"{key_added}_component"]``
            most responsible component (categorical);
        ``adata.obs[f"{key_added}_log_failed"]``
            True where a Log map of the cell did not converge (its best estimate was used);
        ``adata.obsm[f"{key_added}_responsibilities"]``
            ``(n_obs, n_components)``;
        ``adata.uns[key_added]``
            ``means`` (K × d, in ``use_rep``), ``covariances`` (K × d × d, tangent
            coordinates), ``precision_factors``, ``weights``, ``log_normalisers``, ``params``,
            ``diagnostics`` (log-likelihood and Log-map failures per iteration, final failure
            count and fraction, ``n_iter``, ``fit_seconds``, metric ``sigma``/``rho``).

    Raises
    ------
    ValueError, KeyError, TypeError
        On invalid input; ``adata`` is then left unchanged.
    """
    from ..models.land import LANDMixture

    # ---------------- validate everything before touching adata
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    n_components = check_int("n_components", n_components)
    max_iter = check_int("max_iter", max_iter)
    n_samples = check_int("n_samples", n_samples, minimum=2)
    n_steps = check_int("n_steps", n_steps, minimum=2)
    max_points = check_int("max_points", max_points, minimum=2)
    if random_state is not None:
        random_state = check_int("random_state", random_state, minimum=0)
    sigma = _positive("sigma", sigma, allow_none=True)
    rho = _positive("rho", rho, allow_none=True)
    rho_rel = _positive("rho_rel", rho_rel)
    mean_step = _positive("mean_step", mean_step)
    cov_step = _positive("cov_step", cov_step)
    log_tol = _positive("log_tol", log_tol)
    if isinstance(land_weight, bool) or not np.isfinite(land_weight) or land_weight < 0:
        raise ValueError(f"land_weight must be ≥ 0, got {land_weight!r}")
    if not isinstance(key_added, str) or not key_added or "/" in key_added:
        raise ValueError(f"key_added must be a non-empty string without '/', got {key_added!r}")
    if metric == "neural_fim":
        info = require_key(adata, fim_key, "neural_fim")
        fim_rep = str(info.get("params", {}).get("use_rep", "X"))
        if use_rep is not None and use_rep != fim_rep:
            raise ValueError(f"use_rep={use_rep!r} differs from the neural FIM's input {fim_rep!r}")
        use_rep = fim_rep
    X, use_rep = get_rep(adata, use_rep)
    if n_components > X.shape[0]:
        raise ValueError(f"n_components={n_components} exceeds the number of cells")
    if X.shape[1] > 50:
        raise ValueError(
            f"use_rep={use_rep!r} has {X.shape[1]} dimensions; LAND needs a low-dimensional "
            "representation (e.g. a few principal components)"
        )

    # ---------------- compute
    if metric == "land":
        G = LANDMetric(
            X, sigma, rho, rho_rel=rho_rel, max_points=max_points, random_state=random_state
        )
    else:
        G = _neural_metric(adata, fim_key, X, float(land_weight))
    manifold = MetricManifold(G, graph_data=X, n_steps=n_steps, tol=log_tol)
    model = LANDMixture(
        manifold,
        n_components,
        max_iter=max_iter,
        n_samples=n_samples,
        mean_step=mean_step,
        cov_step=cov_step,
        random_state=random_state,
        verbose=verbose,
    ).fit(X)
    failed = model.log_failed_.any(1)
    if failed.any():
        logger.warning(
            "land: the Log maps of %d of %d cells did not converge (flagged in obs[%r])",
            int(failed.sum()),
            X.shape[0],
            f"{key_added}_log_failed",
        )
    land_metric = G if isinstance(G, LANDMetric) else None
    if land_metric is None and isinstance(G, SumMetric):
        land_metric = G.metrics[1]
    st = model.to_dict()
    hist = st.pop("history")

    # ---------------- write
    adata = adata.copy() if copy else adata
    adata.obs[f"{key_added}_log_likelihood"] = model.log_likelihood_
    adata.obs[f"{key_added}_component"] = pd.Categorical(
        model.labels_.astype(str), categories=[str(k) for k in range(n_components)]
    )
    adata.obs[f"{key_added}_log_failed"] = failed
    adata.obsm[f"{key_added}_responsibilities"] = model.responsibilities_
    adata.uns[key_added] = clean_for_h5ad(
        {
            **st,
            "params": {
                "n_components": n_components,
                "metric": metric,
                "use_rep": use_rep,
                "sigma": None if land_metric is None else land_metric.sigma,
                "rho": None if land_metric is None else land_metric.rho,
                "rho_rel": rho_rel,
                "max_points": max_points,
                "fim_key": fim_key if metric == "neural_fim" else None,
                "land_weight": float(land_weight) if metric == "neural_fim" else None,
                "max_iter": max_iter,
                "n_samples": n_samples,
                "mean_step": mean_step,
                "cov_step": cov_step,
                "n_steps": n_steps,
                "log_tol": log_tol,
                "random_state": random_state,
            },
            "diagnostics": {
                **hist,
                "n_log_failed_cells": int(failed.sum()),
                "log_failed_fraction": float(failed.mean()),
            },
        }
    )
    return adata if copy else None
