"""``scfim.tl.land``: mixtures of locally adaptive normal distributions on the cells."""

from __future__ import annotations

import pandas as pd
from anndata import AnnData

from .. import _logging as logg
from .._docs import doc_params
from .._keys import land_keys
from ..models.neural_fim import check_device
from ._store import clean_for_h5ad, land_manifold
from ._validate import (
    check_bool,
    check_choice,
    check_common,
    check_float,
    check_int,
    check_key_added,
    get_rep,
    require_key,
)

__all__ = ["land"]

_METRICS = ("land", "land_diagonal", "neural_fim")


@doc_params()
def land(
    adata: AnnData,
    *,
    n_components: int = 1,
    metric: str = "land",
    use_rep: str | None = None,
    n_pcs: int | None = 10,
    sigma: float | None = None,
    rho: float | None = None,
    rho_rel: float = 0.1,
    max_points: int = 1000,
    fim_key: str = "neural_fim",
    land_weight: float = 1e-2,
    max_iter: int = 20,
    n_samples: int = 1000,
    normaliser: str = "gaussian",
    mean_step: float | None = None,
    cov_step: float | None = None,
    tol: float = 1e-3,
    n_steps: int = 12,
    log_tol: float = 1e-3,
    random_state: int | None = 0,
    progress: bool = True,
    device: str = "cpu",
    key_added: str = "land",
    copy: bool = False,
) -> AnnData | None:
    """Fit a mixture of locally adaptive normal distributions (LANDs) to the cells.

    Each component is ``p_k(x) = exp(−½ Log_μk(x)ᵀ Σk⁻¹ Log_μk(x)) / C_k`` under a Riemannian
    metric on the input space (Arvanitidis et al. 2016): the LAND metric
    ``M(x) = diag(Σ_n w_n(x)(x_nd − x_d)² + ρ)⁻¹`` built from the cells, or the pull-back
    Fisher metric of :func:`scfim.tl.neural_fim` (plus ``land_weight`` times the LAND
    metric so that it has full rank). Means, covariances and weights are fitted by
    maximum likelihood with EM (see :class:`scfim.models.land.LANDMixture`): a step that
    lowers the likelihood is rejected, so the fitted likelihood is never below the starting
    one. Log maps are solved by shooting (cold starts from kNN-graph shortest paths, warm
    starts from the previous iteration) and failures are counted, not hidden.

    Parameters
    ----------
    adata
        Annotated data.
    n_components
        Number of mixture components.
    metric
        ``"land"`` (the inverse local covariance of the cells,
        :class:`scfim.geometry.land.LocalCovarianceMetric`: full and density-normalised),
        ``"land_diagonal"`` (the diagonal metric of the LAND paper,
        :class:`scfim.geometry.land.LANDMetric`) or ``"neural_fim"``.
    use_rep
        Input representation (default ``"X_pca"`` when present, else ``X``); with
        ``metric="neural_fim"`` it must be (and defaults to) the one the network was
        trained on. LAND needs few dimensions (2–10).
    n_pcs
        Use only the first ``n_pcs`` columns of an ``obsm`` representation (its leading
        principal components); None uses all. Ignored for ``X`` and for
        ``metric="neural_fim"`` (the network fixes the input).
    sigma, rho, rho_rel, max_points
        LAND-metric kernel width, regulariser (default ``rho_rel`` times the median local
        variance) and number of reference cells (see
        :class:`scfim.geometry.land.LocalCovarianceMetric` and
        :class:`scfim.geometry.land.LANDMetric`). Without ``sigma``, ``metric="land"``
        chooses it for the data (:func:`scfim.geometry.land.select_sigma`: the smallest
        of a ladder of local sampling scales whose pilot Log maps converge);
        ``"land_diagonal"`` takes the median distance to the N/6-th nearest neighbour.
    fim_key
        ``key_added`` of :func:`scfim.tl.neural_fim` (``metric="neural_fim"``).
    land_weight
        Weight of the LAND term added to the neural-FIM metric (0 disables it).
    max_iter
        EM iterations (at most).
    n_samples
        Monte Carlo samples of each normalisation constant (drawn once, reused; only
        with ``normaliser="volume"``).
    normaliser
        ``"gaussian"``: the Logs are normal in the tangent coordinates at the mean, so the
        normalisation constant is the Gaussian's; ``"volume"``: the LAND paper's Monte
        Carlo constant with the metric's volume factor (see
        :class:`scfim.models.land.LANDMixture`).
    mean_step, cov_step
        Initial step sizes of the mean and covariance updates (halved when a step is
        rejected); default 1 with ``normaliser="gaussian"`` (the Fréchet-mean step and the
        exact covariance M-step), 0.2 with ``"volume"``.
    tol
        Stop when an iteration raises the mean log-likelihood by less than ``tol`` twice in
        a row.
    n_steps
        RK4 steps per geodesic.
    log_tol
        Relative tolerance of the Log-map boundary-value problems.
    random_state
        Seed (k-means start and Monte Carlo samples).
    progress
        Progress bars from the start: over the pilot Log maps of the kernel width, the
        initial Log maps and the EM iterations.
    device
        Torch device of the metric and of every Exp and Log map (``"cpu"``, ``"cuda"``,
        ``"cuda:1"`` ...); a device this machine does not have is an error, never a
        silent fall-back to the CPU. The EM updates themselves are small and run on the
        host.
    key_added
        ``uns`` key and prefix of the ``obs`` columns.
    {copy}

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
            ``diagnostics`` (mean log-likelihood, Log-map failures and seconds at the start,
            ``initial_*``, and after each iteration, whether its covariance and mean steps
            were accepted, the final log-likelihood and failure count and fraction,
            ``fit_seconds``), ``n_iter``; ``params`` holds the resolved metric
            ``sigma``/``rho`` and, when σ was chosen for the data, ``sigma_selection``
            (the widths tried and the fraction of their pilot Log maps that failed).

    Raises
    ------
    ValueError, KeyError, TypeError
        On invalid input; ``adata`` is then left unchanged.
    """
    from ..models.land import LANDMixture

    # ---------------- validate everything before touching adata
    check_choice("metric", metric, _METRICS)
    n_components = check_int("n_components", n_components)
    max_iter = check_int("max_iter", max_iter)
    n_samples = check_int("n_samples", n_samples, minimum=2)
    n_steps = check_int("n_steps", n_steps, minimum=2)
    if n_pcs is not None:
        n_pcs = check_int("n_pcs", n_pcs)
    tol = check_float("tol", tol, minimum=0.0)
    max_points = check_int("max_points", max_points, minimum=2)
    sigma = check_float("sigma", sigma, minimum=0, exclusive_minimum=True, allow_none=True)
    rho = check_float("rho", rho, minimum=0, exclusive_minimum=True, allow_none=True)
    rho_rel = check_float("rho_rel", rho_rel, minimum=0, exclusive_minimum=True)
    mean_step = check_float(
        "mean_step", mean_step, minimum=0, exclusive_minimum=True, allow_none=True
    )
    cov_step = check_float("cov_step", cov_step, minimum=0, exclusive_minimum=True, allow_none=True)
    log_tol = check_float("log_tol", log_tol, minimum=0, exclusive_minimum=True)
    land_weight = check_float("land_weight", land_weight, minimum=0.0)
    progress = check_bool("progress", progress)
    check_choice("normaliser", normaliser, ("gaussian", "volume"))
    random_state = check_common(random_state, key_added, copy)
    device = check_device(device)
    check_key_added(fim_key, "fim_key")
    if metric == "neural_fim":
        info = require_key(adata, fim_key, "neural_fim")
        fim_rep = str(info.get("params", {}).get("use_rep", "X"))
        if use_rep is not None and use_rep != fim_rep:
            raise ValueError(f"use_rep={use_rep!r} differs from the neural FIM's input {fim_rep!r}")
        use_rep = fim_rep
    X, use_rep = get_rep(adata, use_rep)
    if metric == "neural_fim" or use_rep == "X" or n_pcs is None or n_pcs >= X.shape[1]:
        n_pcs = None
    else:
        X = X[:, :n_pcs]
    if n_components > X.shape[0]:
        raise ValueError(f"n_components={n_components} exceeds the number of cells")
    if X.shape[1] > 50:
        raise ValueError(
            f"use_rep={use_rep!r} has {X.shape[1]} dimensions; LAND needs a low-dimensional "
            "representation (e.g. a few principal components)"
        )

    # ---------------- compute
    start = logg.info(
        f"fitting a {n_components}-component LAND mixture ({metric} metric) to "
        f"{X.shape[0]} cells (use_rep={use_rep!r})"
    )
    manifold, _, land_metric = land_manifold(
        adata,
        X,
        metric=metric,
        sigma=sigma,
        rho=rho,
        rho_rel=rho_rel,
        max_points=max_points,
        fim_key=fim_key,
        land_weight=land_weight,
        n_steps=n_steps,
        log_tol=log_tol,
        random_state=random_state,
        progress=progress,
        device=device,
    )
    model = LANDMixture(
        manifold,
        n_components,
        max_iter=max_iter,
        n_samples=n_samples,
        normaliser=normaliser,
        mean_step=mean_step,
        cov_step=cov_step,
        random_state=random_state,
        tol=tol,
        progress=progress,
    ).fit(X)
    failed = model.log_failed_.any(1)
    keys = land_keys(key_added)
    if failed.any():
        logg.warning(
            f"land: the Log maps of {int(failed.sum())} of {X.shape[0]} cells did not "
            f"converge (flagged in obs[{keys['log_failed'][1]!r}])"
        )
    st = model.to_dict()
    hist = st.pop("history")

    # ---------------- write
    adata = adata.copy() if copy else adata
    adata.obs[keys["log_likelihood"][1]] = model.log_likelihood_
    adata.obs[keys["component"][1]] = pd.Categorical(
        model.labels_.astype(str), categories=[str(k) for k in range(n_components)]
    )
    adata.obs[keys["log_failed"][1]] = failed
    adata.obsm[keys["responsibilities"][1]] = model.responsibilities_
    adata.uns[key_added] = clean_for_h5ad(
        {
            **st,
            "params": {
                "n_components": n_components,
                "metric": metric,
                "use_rep": use_rep,
                "n_pcs": n_pcs,
                "sigma": None if land_metric is None else land_metric.sigma,
                "sigma_selection": getattr(land_metric, "sigma_selection", None),
                "rho": None if land_metric is None else land_metric.rho,
                "rho_rel": rho_rel,
                "max_points": max_points,
                "fim_key": fim_key if metric == "neural_fim" else None,
                "land_weight": land_weight if metric == "neural_fim" else None,
                "max_iter": max_iter,
                "n_samples": n_samples,
                "normaliser": normaliser,
                "mean_step": model.mean_step,
                "cov_step": model.cov_step,
                "tol": tol,
                "n_steps": n_steps,
                "log_tol": log_tol,
                "random_state": random_state,
                "device": str(device),
            },
            "diagnostics": {
                **hist,
                "n_log_failed_cells": int(failed.sum()),
                "log_failed_fraction": float(failed.mean()),
            },
        }
    )
    logg.info(
        f"    finished: mean log-likelihood {float(model.log_likelihood_.mean()):.4g}",
        time=start,
        deep=logg.added(list(keys.values())),
    )
    return adata if copy else None
