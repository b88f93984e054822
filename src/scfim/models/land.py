"""LAND: locally adaptive normal distributions and their mixtures (pure numpy/torch).

A LAND (Arvanitidis, Hansen & Hauberg 2016) on a Riemannian manifold is

``p(x | μ, Σ) = exp(−½ Log_μ(x)ᵀ Σ⁻¹ Log_μ(x)) / C(μ, Σ)``,
``C(μ, Σ) = ∫ m(μ, v) exp(−½ vᵀΣ⁻¹v) dv ≈ Z · (1/S) Σ_s m(μ, v_s)``, ``v_s ~ N(0, Σ)``,

with ``Z = √((2π)^k det Σ)`` and ``m(μ, v) = √det M(Exp_μ(v))`` the volume factor (the
Jacobian of Exp is ignored, as in the paper). The maximum-likelihood fit minimises
``φ = (1/2N) Σ_n Log_μ(x_n)ᵀ Σ⁻¹ Log_μ(x_n) + log C``:

* mean: ``∇_μ φ = −Σ⁻¹ d`` with ``d = (1/N) Σ_n Log_μ(x_n) − Σ_s q_s v_s`` and
  ``q_s = m_s / Σ m`` (the ``Z/C`` weights; the Monte Carlo moments use the known
  Gaussian moments ``E[v] = 0``, ``E[vvᵀ] = Σ`` as control variates, i.e.
  ``Σ_s (q_s − 1/S) v_s`` and ``Σ + Σ_s (q_s − 1/S) v_s v_sᵀ``, exact when m is constant).
  The step is taken along ``−Σ ∇_μ φ = d`` (steepest direction independent of the
  conditioning of Σ): ``μ ← Exp_μ(α_μ d)``;
* covariance: ``Σ⁻¹ = AᵀA`` (A invertible keeps Σ symmetric positive definite);
  ``∇_A φ = A (S_data − S_model)`` with ``S_data = (1/N) Σ Log Logᵀ`` and
  ``S_model = Σ_s q_s v_s v_sᵀ``. The gradient is right-multiplied by the SPD matrix
  ``AᵀA`` (still a descent direction, and scale free): ``ΔA = −α_Σ E A`` with the
  symmetric ``E = A (S_data − S_model) Aᵀ``, applied multiplicatively as
  ``A ← expm(−α_Σ E) A`` (eigenvalues of ``α_Σ E`` clipped to ±1), which keeps A invertible;
* mixtures by EM: responsibilities ``r_nk ∝ π_k p_k(x_n)``, weights ``π_k = mean_n r_nk``,
  and one weighted mean/covariance step per component per iteration (generalised EM).

Manifolds are objects of :mod:`scfim.geometry.land` (``exp``, ``log``, ``log_volume``,
``tangent_dim``): :class:`~scfim.geometry.land.MetricManifold` for a learned metric (LAND
metric, neural FIM, ...) and :class:`~scfim.geometry.land.SphereManifold` as a known one.
Log maps that fail (boundary-value problem not solved) are counted per iteration and
flagged per point.
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy.special import logsumexp

__all__ = ["LANDMixture", "LAND"]


def _sym_expm(E: np.ndarray, clip: float) -> np.ndarray:
    w, U = np.linalg.eigh(0.5 * (E + E.T))
    return (U * np.exp(np.clip(w, -clip, clip))) @ U.T


class LANDMixture:
    """Mixture of locally adaptive normal distributions, fitted by (generalised) EM.

    Parameters
    ----------
    manifold
        A manifold of :mod:`scfim.geometry.land` (``exp``, ``log``, ``log_volume``).
    n_components
        Number of components.
    max_iter
        EM iterations.
    n_samples
        Monte Carlo tangent samples per component and iteration for the normalisation
        constant (antithetic pairs).
    mean_step, cov_step
        Step sizes ``α_μ`` and ``α_Σ``.
    tol
        Stop when the mean log-likelihood changes by less than ``tol`` twice in a row
        (0 runs all ``max_iter`` iterations; the Monte Carlo noise of ``log C`` sets a floor).
    init_means
        Optional ``(n_components, D)`` starting means; else k-means (one point: the data
        point nearest the Euclidean mean), each mean snapped to the nearest data point.
    reg_covar
        Ridge (relative to the average variance) of the initial covariances.
    random_state
        Seed of k-means and of the Monte Carlo samples.
    verbose
        Progress bar over the EM iterations.
    """

    def __init__(
        self,
        manifold,
        n_components: int = 1,
        *,
        max_iter: int = 20,
        n_samples: int = 1000,
        mean_step: float = 0.2,
        cov_step: float = 0.2,
        tol: float = 0.0,
        init_means: np.ndarray | None = None,
        reg_covar: float = 1e-3,
        random_state: int | None = 0,
        verbose: bool = False,
    ) -> None:
        if int(n_components) < 1:
            raise ValueError("n_components must be ≥ 1")
        if int(max_iter) < 1 or int(n_samples) < 2:
            raise ValueError("max_iter must be ≥ 1 and n_samples ≥ 2")
        if not (mean_step > 0 and cov_step > 0):
            raise ValueError("mean_step and cov_step must be > 0")
        self.manifold = manifold
        self.n_components = int(n_components)
        self.max_iter = int(max_iter)
        self.n_samples = int(n_samples)
        self.mean_step = float(mean_step)
        self.cov_step = float(cov_step)
        self.tol = float(tol)
        self.init_means = init_means
        self.reg_covar = float(reg_covar)
        self.random_state = random_state
        self.verbose = bool(verbose)

    # ------------------------------------------------------------------ helpers
    @property
    def covariances_(self) -> np.ndarray:
        """``(K, k, k)`` covariances ``Σ = (AᵀA)⁻¹`` in the tangent coordinates."""
        return np.stack([np.linalg.inv(A.T @ A) for A in self.precision_factors_])

    def _initial_means(self, X: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
        K = self.n_components
        if self.init_means is not None:
            M = np.asarray(self.init_means, dtype=np.float64)
            if M.shape != (K, X.shape[1]):
                raise ValueError(f"init_means must have shape {(K, X.shape[1])}")
            labels = np.argmin(((X[:, None] - M[None]) ** 2).sum(-1), 1)
            return M.copy(), labels
        if K == 1:
            i = int(np.argmin(((X - X.mean(0)) ** 2).sum(1)))
            return X[i][None].copy(), np.zeros(len(X), dtype=int)
        from sklearn.cluster import KMeans

        km = KMeans(K, n_init=4, random_state=int(rng.integers(2**31 - 1))).fit(X)
        labels = km.labels_
        M = np.empty((K, X.shape[1]))
        for k in range(K):
            members = np.flatnonzero(labels == k)
            j = members[np.argmin(((X[members] - km.cluster_centers_[k]) ** 2).sum(1))]
            M[k] = X[j]
        return M, labels

    def _logs(self, X, means, prev, prev_means):
        """Log maps of all points at every mean (warm-started from the previous ones)."""
        out, fails = [], []
        for k in range(self.n_components):
            init = None
            if prev is not None and self.manifold.tangent_dim == X.shape[1]:
                init = prev[k] + (prev_means[k] - means[k])
            r = self.manifold.log(means[k], X, init=init)
            out.append(r.v)
            fails.append(~r.converged)
        return np.stack(out), np.stack(fails)

    def _normalisers(self, means, rng):
        """``log C_k`` and the weighted tangent samples of each component."""
        k_dim = self.manifold.tangent_dim
        half = (self.n_samples + 1) // 2
        logC, samples = [], []
        for k in range(self.n_components):
            A = self.precision_factors_[k]
            eps = rng.standard_normal((half, k_dim))
            eps = np.concatenate([eps, -eps])  # antithetic pairs
            V = np.linalg.solve(A, eps.T).T  # cov A⁻¹A⁻ᵀ = Σ
            lv = self.manifold.log_volume(self.manifold.exp(means[k], V))
            lv = np.where(np.isfinite(lv), lv, -np.inf)
            lse = logsumexp(lv)
            logZ = 0.5 * k_dim * math.log(2 * math.pi) - np.linalg.slogdet(A)[1]
            logC.append(logZ + lse - math.log(len(V)))
            samples.append((V, np.exp(lv - lse)))
        return np.asarray(logC), samples

    def _log_prob(self, L):
        """``(N, K)`` component log-densities from tangent vectors ``L`` (K, N, k)."""
        q = np.stack(
            [((L[k] @ self.precision_factors_[k].T) ** 2).sum(1) for k in range(len(L))], 1
        )
        return -0.5 * q - self.log_normalisers_[None, :]

    # ------------------------------------------------------------------ fit
    def fit(self, X) -> LANDMixture:
        """Fit the means, covariances and weights to points ``X`` (N, D) on the manifold.

        Sets ``means_``, ``precision_factors_`` (A with ``Σ⁻¹ = AᵀA``), ``covariances_``,
        ``weights_``, ``log_normalisers_``, and for the training points
        ``log_likelihood_`` (per point, at the final parameters), ``responsibilities_``,
        ``labels_``, ``log_failed_`` (N, K: Log map not solved), plus ``history_``
        (per-iteration mean log-likelihood, Log-map failures, seconds), ``n_iter_`` and
        ``converged_``.
        """
        from tqdm.auto import tqdm

        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or len(X) < 2 or not np.isfinite(X).all():
            raise ValueError("X must be a finite (N ≥ 2, D) array")
        K, N = self.n_components, len(X)
        if N < K:
            raise ValueError(f"{N} points for {K} components")
        rng = np.random.default_rng(self.random_state)
        t0 = time.perf_counter()
        means, labels = self._initial_means(X, rng)
        L, fail = self._logs(X, means, None, None)
        # initial covariances from the Logs of each k-means cluster
        k_dim = L.shape[2]
        avg_var = float(np.mean([np.trace(np.cov(L[k].T).reshape(k_dim, k_dim)) for k in range(K)]))
        A_list = []
        for k in range(K):
            Lk = L[k][labels == k]
            S = Lk.T @ Lk / max(len(Lk), 1) if len(Lk) > k_dim else np.cov(L[k].T)
            S = np.atleast_2d(S) + self.reg_covar * avg_var / k_dim * np.eye(k_dim)
            A_list.append(np.linalg.inv(np.linalg.cholesky(S)))
        self.precision_factors_ = np.stack(A_list)
        self.weights_ = np.bincount(labels, minlength=K) / N + 1e-12
        self.weights_ /= self.weights_.sum()

        hist = {"log_likelihood": [], "n_log_failures": [], "seconds": []}
        self.converged_ = False
        small = 0
        bar = tqdm(range(self.max_iter), desc="LAND EM", disable=not self.verbose)
        n_done = 0
        for it in bar:
            n_done = it + 1
            # ---- E-step
            self.log_normalisers_, samples = self._normalisers(means, rng)
            logp = self._log_prob(L) + np.log(self.weights_)[None]
            lse = logsumexp(logp, axis=1)
            R = np.exp(logp - lse[:, None])
            ll = float(lse.mean())
            hist["log_likelihood"].append(ll)
            hist["n_log_failures"].append(int(fail.sum()))
            hist["seconds"].append(time.perf_counter() - t0)
            bar.set_postfix(loglik=f"{ll:.4g}", log_failures=int(fail.sum()))
            if len(hist["log_likelihood"]) > 1:
                small = small + 1 if abs(ll - hist["log_likelihood"][-2]) < self.tol else 0
                if small >= 2:
                    self.converged_ = True
                    break
            # ---- M-step
            self.weights_ = (R.sum(0) + 1e-10) / (N + K * 1e-10)
            new_means = means.copy()
            new_A = self.precision_factors_.copy()
            for k in range(K):
                # unsolved Log maps (flagged, counted) do not enter the parameter updates
                w = R[:, k] * ~fail[k]
                w = w / max(w.sum(), 1e-300)
                V, q = samples[k]
                Lk = L[k]
                A = self.precision_factors_[k]
                # model moments E_p[v], E_p[vvᵀ] (p ∝ m · N(0, Σ)) with the known Gaussian
                # moments (0, Σ) as control variates: exact when m is constant
                u = np.full(len(V), 1.0 / len(V))
                d = w @ Lk - (q - u) @ V
                S_data = (Lk * w[:, None]).T @ Lk
                S_model = np.linalg.inv(A.T @ A) + (V * (q - u)[:, None]).T @ V
                E = A @ (S_data - S_model) @ A.T
                new_A[k] = _sym_expm(-self.cov_step * E, 1.0) @ A
                new_means[k] = self.manifold.exp(means[k], (self.mean_step * d)[None])[0]
            self.precision_factors_ = new_A
            L, fail = self._logs(X, new_means, L, means)
            means = new_means
        self.means_ = means
        self.n_iter_ = n_done
        # ---- final E-step at the final parameters
        self.log_normalisers_, _ = self._normalisers(means, rng)
        logp = self._log_prob(L) + np.log(self.weights_)[None]
        lse = logsumexp(logp, axis=1)
        self.log_likelihood_ = lse
        self.responsibilities_ = np.exp(logp - lse[:, None])
        self.labels_ = np.argmax(self.responsibilities_, 1)
        self.log_failed_ = fail.T.copy()
        hist["final_log_likelihood"] = float(lse.mean())
        hist["final_n_log_failures"] = int(fail.sum())
        hist["fit_seconds"] = time.perf_counter() - t0
        self.history_ = {k: np.asarray(v) for k, v in hist.items()}
        return self

    # ------------------------------------------------------------------ scoring
    def _check_fitted(self):
        if not hasattr(self, "means_"):
            raise RuntimeError("LANDMixture is not fitted; call fit() first")

    def _logp(self, X):
        self._check_fitted()
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        L, fail = self._logs(X, self.means_, None, None)
        return self._log_prob(L) + np.log(self.weights_)[None], fail.T

    def score_samples(self, X) -> np.ndarray:
        """Per-point log-likelihood ``log Σ_k π_k p_k(x)`` (N,)."""
        return logsumexp(self._logp(X)[0], axis=1)

    def predict_proba(self, X) -> np.ndarray:
        """Responsibilities ``(N, K)``."""
        lp = self._logp(X)[0]
        return np.exp(lp - logsumexp(lp, axis=1, keepdims=True))

    def predict(self, X) -> np.ndarray:
        """Most responsible component per point."""
        return np.argmax(self._logp(X)[0], 1)

    def to_dict(self) -> dict:
        """Fitted parameters and diagnostics as NumPy arrays / scalars."""
        self._check_fitted()
        return {
            "means": self.means_,
            "covariances": self.covariances_,
            "precision_factors": self.precision_factors_,
            "weights": self.weights_,
            "log_normalisers": self.log_normalisers_,
            "n_iter": int(self.n_iter_),
            "converged": bool(self.converged_),
            "history": dict(self.history_),
        }

    @classmethod
    def from_dict(cls, state: dict, manifold, **kwargs) -> LANDMixture:
        """Rebuild a fitted mixture on ``manifold`` from :meth:`to_dict` output.

        Also accepts the ``uns`` entry of :func:`scfim.tl.land` (after an h5ad round trip);
        ``kwargs`` are the constructor's options (they matter only for a refit).
        """
        A = np.asarray(state["precision_factors"], dtype=np.float64)
        model = cls(manifold, n_components=A.shape[0], **kwargs)
        model.means_ = np.asarray(state["means"], dtype=np.float64)
        model.precision_factors_ = A
        model.weights_ = np.asarray(state["weights"], dtype=np.float64)
        model.log_normalisers_ = np.asarray(state["log_normalisers"], dtype=np.float64)
        model.n_iter_ = int(state.get("n_iter", 0))
        model.converged_ = bool(state.get("converged", False))
        model.history_ = {k: np.asarray(v) for k, v in dict(state.get("history", {})).items()}
        return model


class LAND(LANDMixture):
    """A single locally adaptive normal distribution (:class:`LANDMixture` with K = 1)."""

    def __init__(self, manifold, **kwargs) -> None:
        kwargs.pop("n_components", None)
        super().__init__(manifold, 1, **kwargs)

    @property
    def mean_(self) -> np.ndarray:
        """``(D,)`` mean."""
        return self.means_[0]

    @property
    def covariance_(self) -> np.ndarray:
        """``(k, k)`` covariance in the tangent coordinates at the mean."""
        return self.covariances_[0]
