"""LAND: locally adaptive normal distributions and their mixtures (pure numpy/torch).

A LAND (Arvanitidis, Hansen & Hauberg 2016) on a Riemannian manifold is

``p(x | μ, Σ) = exp(−½ Log_μ(x)ᵀ Σ⁻¹ Log_μ(x)) / C(μ, Σ)``,
``C(μ, Σ) = ∫ m(μ, v) exp(−½ vᵀΣ⁻¹v) dv ≈ Z · (1/S) Σ_s m(μ, v_s)``, ``v_s ~ N(0, Σ)``,

with ``Z = √((2π)^k det Σ)`` and ``m(μ, v) = √det M(Exp_μ(v))`` the volume factor (the
Jacobian of Exp is ignored, as in the paper): ``normaliser="volume"``.

That factor is not a property of the geometry alone: without the Jacobian of Exp it
changes with the chart, and a learned metric's determinant also moves with the sampling
(it grows towards the sparse edges of the data, where a kernel estimate of the local
covariance shrinks, and with the metric across the data in the normal directions). On a
sphere in R³ it rises by 0.1–0.4 in log over the data and the fitted Σ shrinks by it.
``normaliser="gaussian"`` (the default) freezes ``m`` at its value at the mean,
``m ≡ m(μ, 0) = √det M(μ)``: the Logs are modelled as ``N(0, Σ)`` in the tangent
coordinates at μ — the wrapped (pushed-forward) tangent Gaussian, whose density with
respect to the Riemannian volume has the normaliser ``Z √det M(μ)`` exactly (for the
closed-form sphere, whose tangent frames are orthonormal, ``√det M = 1``) — so that ``C``
needs no Monte Carlo, Σ is the covariance of the Logs at μ and the likelihood does not
depend on the chart (``√det M(μ)`` turns the ambient tangent coordinates into
orthonormal ones; without it a mean step towards a larger metric would shorten every Log
and be favoured for that alone). Both agree when the metric is constant along the data. The maximum-likelihood fit minimises
``φ = (1/2N) Σ_n Log_μ(x_n)ᵀ Σ⁻¹ Log_μ(x_n) + log C``:

* mean: ``∇_μ φ = −Σ⁻¹ d`` with ``d = (1/N) Σ_n Log_μ(x_n) − Σ_s q_s v_s`` and
  ``q_s = m_s / Σ m`` (the ``Z/C`` weights; the Monte Carlo moments use the known
  Gaussian moments ``E[v] = 0``, ``E[vvᵀ] = Σ`` as control variates, i.e.
  ``Σ_s (q_s − 1/S) v_s`` and ``Σ + Σ_s (q_s − 1/S) v_s v_sᵀ``, exact when m is constant).
  The step is taken along ``−Σ ∇_μ φ = d`` (steepest direction independent of the
  conditioning of Σ): ``μ ← Exp_μ(α_μ d)``, with a backtracking line search on
  ``α_μ``; the trial keeps the covariance's shape in orthonormal coordinates
  (``Σ' = T Σ Tᵀ``, ``T = M(μ')^{-1/2} M(μ)^{1/2}``);
* covariance: ``Σ⁻¹ = AᵀA`` (A invertible keeps Σ symmetric positive definite);
  ``∇_A φ = A (S_data − S_model)`` with ``S_data = (1/N) Σ Log Logᵀ`` and
  ``S_model = Σ_s q_s v_s v_sᵀ``. The gradient is right-multiplied by the SPD matrix
  ``AᵀA`` (still a descent direction, and scale free): ``ΔA = −α_Σ E A`` with the
  symmetric ``E = A (S_data − S_model) Aᵀ``, applied multiplicatively as
  ``A ← expm(−α_Σ E) A`` (eigenvalues of ``α_Σ E`` clipped to ±1), which keeps A invertible;
* mixtures by EM: responsibilities ``r_nk ∝ π_k p_k(x_n)``, weights ``π_k = mean_n r_nk``,
  and one weighted mean/covariance step per component per iteration (generalised EM).

Manifolds follow the protocol of :mod:`scfim.geometry.exp_log` (``exp``, ``log``,
``log_volume``, ``tangent_dim``, optionally ``metric_tensor``):
:class:`~scfim.geometry.exp_log.MetricManifold` for a learned metric (LAND metric, neural
FIM, ...) and :class:`~scfim.geometry.known_manifolds.SphereManifold` as a known one.
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
        A manifold (:mod:`scfim.geometry.exp_log` protocol: ``exp``, ``log``,
        ``log_volume``, ``tangent_dim``, optionally ``metric_tensor``).
    n_components
        Number of components.
    max_iter
        EM iterations.
    n_samples
        Monte Carlo tangent samples per component and iteration for the normalisation
        constant (antithetic pairs).
    mean_step, cov_step
        Step sizes ``α_μ`` and ``α_Σ``; default 1 with ``normaliser="gaussian"`` (then
        ``μ ← Exp_μ(d)`` is the fixed-point step of the Fréchet mean and the covariance
        step ``Σ ← Σ + α_Σ (S_data − Σ)`` is the exact M-step at ``α_Σ = 1``), 0.2 with
        ``"volume"``.
    tol
        Stop when the mean log-likelihood rises by less than ``tol`` in two iterations in
        a row (0 runs up to ``max_iter`` iterations).
    max_backtracks
        A mean step that lowers the log-likelihood is undone and retried, in the same
        iteration, with the step halved, at most this many times; when none of them
        gains, the means are final (the line search found no better point).
    init_means
        Optional ``(n_components, D)`` starting means; else k-means (one point: the data
        point nearest the Euclidean mean), each mean snapped to the nearest data point.
    reg_covar
        Ridge (relative to the average variance) of the initial covariances.
    random_state
        Seed of k-means and of the Monte Carlo samples.
    progress
        Progress bars over the initial Log maps (updated as they are solved) and over the
        EM iterations.
    normaliser
        ``"gaussian"`` (the Logs are ``N(0, Σ)`` in the tangent coordinates: ``C = Z``) or
        ``"volume"`` (the paper's Monte Carlo estimate with the volume factor
        ``√det M(Exp_μ(v))``); see the module description.
    """

    def __init__(
        self,
        manifold,
        n_components: int = 1,
        *,
        max_iter: int = 20,
        n_samples: int = 1000,
        mean_step: float | None = None,
        cov_step: float | None = None,
        tol: float = 0.0,
        max_backtracks: int = 3,
        init_means: np.ndarray | None = None,
        reg_covar: float = 1e-3,
        random_state: int | None = 0,
        progress: bool = False,
        normaliser: str = "gaussian",
    ) -> None:
        if normaliser not in ("gaussian", "volume"):
            raise ValueError(f"normaliser must be 'gaussian' or 'volume', got {normaliser!r}")
        if int(n_components) < 1:
            raise ValueError("n_components must be ≥ 1")
        if int(max_iter) < 1 or int(n_samples) < 2:
            raise ValueError("max_iter must be ≥ 1 and n_samples ≥ 2")
        step = 1.0 if normaliser == "gaussian" else 0.2
        mean_step = step if mean_step is None else mean_step
        cov_step = step if cov_step is None else cov_step
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
        self.max_backtracks = int(max_backtracks)
        self.progress = bool(progress)
        self.normaliser = normaliser

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

    def _logs(self, X, means, prev, prev_means, prev_jac=None, progress=None):
        """Log maps of all points at every mean (warm-started from the previous ones)."""
        out, fails, jacs = [], [], []
        for k in range(self.n_components):
            init = jac = None
            if prev is not None and self.manifold.tangent_dim == X.shape[1]:
                init = prev[k] + (prev_means[k] - means[k])
                if prev_jac is not None and prev_jac[k] is not None:
                    jac = np.where(np.isfinite(prev_jac[k]), prev_jac[k], np.eye(X.shape[1]))
            kw = {} if progress is None else {"progress": progress}
            r = self.manifold.log(means[k], X, init=init, jacobian=jac, **kw)
            out.append(r.v)
            fails.append(~r.converged)
            jacs.append(r.jacobian)
        return np.stack(out), np.stack(fails), jacs

    def _normalisers(self, means):
        """``log C_k`` and the weighted tangent samples of each component.

        The standard normal draws are fixed at the start of the fit (common random
        numbers), so ``log C`` is a deterministic, smooth function of ``(μ, Σ)``.
        """
        k_dim = self.manifold.tangent_dim
        logC, samples = [], []
        for k in range(self.n_components):
            A = self.precision_factors_[k]
            eps = np.concatenate([self._eps[k], -self._eps[k]])  # antithetic pairs
            V = np.linalg.solve(A, eps.T).T  # cov A⁻¹A⁻ᵀ = Σ
            if self.normaliser == "gaussian":
                lv = np.zeros(len(V))
            else:
                lv = self.manifold.log_volume(self.manifold.exp(means[k], V))
                lv = np.where(np.isfinite(lv), lv, -np.inf)
            lse = logsumexp(lv)
            logZ = 0.5 * k_dim * math.log(2 * math.pi) - np.linalg.slogdet(A)[1]
            log_m0 = 0.0
            if self.normaliser == "gaussian":  # the volume factor frozen at its value at μ
                log_m0 = float(self.manifold.log_volume(means[k][None])[0])
            logC.append(logZ + lse - math.log(len(V)) + log_m0)
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

        Expectation–conditional maximisation with step control. The Monte Carlo samples
        of the normalisation constants are drawn once (common random numbers), so the
        estimated log-likelihood is one deterministic function of the parameters. Each
        iteration takes a covariance-and-weights step at fixed means (the Log maps do not
        change, so it is cheap to check; rejected, with its step halved, when it lowers
        the likelihood), then a line search along the mean step (new Log maps per trial;
        the step is halved after each rejection, up to ``max_backtracks`` times; when no
        trial gains, the means are kept from then on). The fit stops when two iterations
        in a row gain less than ``tol``, or when neither step can gain any more. Every
        accepted iterate is at least as likely as the previous one, so the final
        log-likelihood is never below the starting one.

        Sets ``means_``, ``precision_factors_`` (A with ``Σ⁻¹ = AᵀA``), ``covariances_``,
        ``weights_``, ``log_normalisers_``, and for the training points
        ``log_likelihood_`` (per point, at the final parameters), ``responsibilities_``,
        ``labels_``, ``log_failed_`` (N, K: Log map not solved), plus ``history_``
        (mean log-likelihood, Log-map failures and seconds at the start and after each
        iteration, whether its covariance and mean steps were accepted, the number of mean
        trials), ``n_iter_`` and ``converged_``.
        """
        from .._progress import progress_bar

        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or len(X) < 2 or not np.isfinite(X).all():
            raise ValueError("X must be a finite (N ≥ 2, D) array")
        K, N = self.n_components, len(X)
        if N < K:
            raise ValueError(f"{N} points for {K} components")
        rng = np.random.default_rng(self.random_state)
        t0 = time.perf_counter()
        bar = progress_bar(total=K * N, desc="LAND initial Log maps", progress=self.progress)
        try:
            means, labels = self._initial_means(X, rng)
            L, fail, J = self._logs(X, means, None, None, progress=bar.update)
        finally:
            bar.close()
        bar = progress_bar(total=self.max_iter, desc="LAND EM", progress=self.progress)
        try:
            return self._fit(X, rng, t0, bar, means, labels, L, fail, J)
        finally:
            bar.close()

    def _fit(self, X, rng, t0, bar, means, labels, L, fail, J) -> LANDMixture:
        K, N = self.n_components, len(X)
        # initial covariances from the Logs of each k-means cluster
        k_dim = L.shape[2]
        avg_var = float(np.mean([np.trace(np.cov(L[k].T).reshape(k_dim, k_dim)) for k in range(K)]))
        A_list = []
        for k in range(K):
            Lk = L[k][labels == k]
            S = Lk.T @ Lk / max(len(Lk), 1) if len(Lk) > k_dim else np.cov(L[k].T)
            S = np.atleast_2d(S) + self.reg_covar * avg_var / k_dim * np.eye(k_dim)
            A_list.append(np.linalg.inv(np.linalg.cholesky(S)))
        weights = np.bincount(labels, minlength=K) / N + 1e-12
        # common random numbers: one set of standard normal draws per component, reused
        half = (self.n_samples + 1) // 2
        self._eps = [rng.standard_normal((half, k_dim)) for _ in range(K)]

        state = self._evaluate(means, np.stack(A_list), weights / weights.sum(), L, fail, J)
        hist = {
            "initial_log_likelihood": state["ll"],
            "initial_n_log_failures": int(fail.sum()),
            "initial_seconds": time.perf_counter() - t0,
            "log_likelihood": [],
            "n_log_failures": [],
            "seconds": [],
            "mean_accepted": [],
            "cov_accepted": [],
            "mean_trials": [],
        }
        bar.set_postfix(loglik=f"{state['ll']:.4g}", log_failures=int(fail.sum()), refresh=True)
        self.converged_ = False
        mean_step, cov_step = self.mean_step, self.cov_step
        small = 0
        frozen = False
        n_done = 0
        for it in range(self.max_iter):
            n_done = it + 1
            ll_start = state["ll"]
            # ---- 1. covariances and weights at fixed means: the Log maps do not change
            A_new, w_new = self._cov_step(state, cov_step)
            trial = self._evaluate(
                state["means"], A_new, w_new, state["L"], state["fail"], state["J"]
            )
            cov_ok = trial["ll"] >= state["ll"]
            if cov_ok:
                state = trial
            else:
                cov_step *= 0.5
            # ---- 2. means (new Log maps): a line search along the mean step, the step
            # halved after each rejection, up to max_backtracks halvings in this iteration
            mean_ok = False
            n_mean_trials = 0
            if not frozen:
                for _ in range(self.max_backtracks + 1):
                    n_mean_trials += 1
                    mu_new = self._mean_step(state, mean_step)
                    L_new, fail_new, J_new = self._logs(
                        X, mu_new, state["L"], state["means"], state["J"]
                    )
                    A_t = self._transport(state["means"], mu_new, state["A"])
                    trial = self._evaluate(mu_new, A_t, state["weights"], L_new, fail_new, J_new)
                    if self.normaliser == "gaussian":
                        # also the profile likelihood (the exact covariance M-step at the
                        # trial means): a fixed Σ from the old tangent space can misjudge a
                        # long step, whose Logs point in rotated directions
                        A_p, w_p = self._cov_step(trial, 1.0)
                        prof = self._evaluate(mu_new, A_p, w_p, L_new, fail_new, J_new)
                        trial = prof if prof["ll"] > trial["ll"] else trial
                    if trial["ll"] >= state["ll"]:
                        state, mean_ok = trial, True
                        break
                    mean_step *= 0.5  # the step lowered the likelihood: keep the old means
                # no gain down to the smallest step: the means are where they stay
                frozen = not mean_ok
            hist["log_likelihood"].append(state["ll"])
            hist["n_log_failures"].append(int(state["fail"].sum()))
            hist["seconds"].append(time.perf_counter() - t0)
            hist["mean_accepted"].append(bool(mean_ok))
            hist["cov_accepted"].append(bool(cov_ok))
            hist["mean_trials"].append(n_mean_trials)
            bar.set_postfix(
                loglik=f"{state['ll']:.4g}", log_failures=int(state["fail"].sum()), refresh=False
            )
            bar.update(1)
            # converged: two iterations in a row that gain less than tol, each with either an
            # accepted mean step or a line search that found no gain at any step size
            small = small + 1 if state["ll"] - ll_start < self.tol else 0
            if small >= 2 or (frozen and state["ll"] - ll_start <= self.tol):
                self.converged_ = True
                break
        # ---- the final (best) iterate, its Logs solved cold as score_samples solves them
        # (the warm solves of the line search agree only to the Log-map tolerance)
        if any(hist["mean_accepted"]):
            L, fail, J = self._logs(X, state["means"], None, None)
            state = self._evaluate(state["means"], state["A"], state["weights"], L, fail, J)
            bar.set_postfix(
                loglik=f"{state['ll']:.4g}", log_failures=int(state["fail"].sum()), refresh=True
            )
        self.means_ = state["means"]
        self.precision_factors_ = state["A"]
        self.weights_ = state["weights"]
        self.log_normalisers_ = state["logC"]
        self.n_iter_ = n_done
        self.log_likelihood_ = state["lse"]
        self.responsibilities_ = state["R"]
        self.labels_ = np.argmax(state["R"], 1)
        self.log_failed_ = state["fail"].T.copy()
        hist["final_log_likelihood"] = float(state["ll"])
        hist["final_n_log_failures"] = int(state["fail"].sum())
        hist["fit_seconds"] = time.perf_counter() - t0
        self.history_ = {k: np.asarray(v) for k, v in hist.items()}
        return self

    def _evaluate(self, means, A, weights, L, fail, J=None) -> dict:
        """E-step: normalisers, responsibilities and mean log-likelihood of a parameter set."""
        self.precision_factors_ = A
        logC, samples = self._normalisers(means)
        self.log_normalisers_ = logC
        logp = self._log_prob(L) + np.log(weights)[None]
        lse = logsumexp(logp, axis=1)
        return {
            "means": means,
            "A": A,
            "weights": weights,
            "L": L,
            "fail": fail,
            "logC": logC,
            "samples": samples,
            "lse": lse,
            "R": np.exp(logp - lse[:, None]),
            "ll": float(lse.mean()),
            "J": J,
        }

    def _component_weights(self, state, k: int) -> np.ndarray:
        # unsolved Log maps (flagged, counted) do not enter the parameter updates
        w = state["R"][:, k] * ~state["fail"][k]
        return w / max(w.sum(), 1e-300)

    def _cov_step(self, state, cov_step: float):
        """Multiplicative step on each precision factor, and the EM weights."""
        K, R = self.n_components, state["R"]
        weights = (R.sum(0) + 1e-10) / (len(R) + K * 1e-10)
        new_A = state["A"].copy()
        for k in range(K):
            w = self._component_weights(state, k)
            V, q = state["samples"][k]
            Lk, A = state["L"][k], state["A"][k]
            # model moment E_p[vvᵀ] (p ∝ m · N(0, Σ)) with the known Gaussian moment Σ as
            # control variate: exact when m is constant
            u = np.full(len(V), 1.0 / len(V))
            S_data = (Lk * w[:, None]).T @ Lk
            if self.normaliser == "gaussian":  # S_model = Σ: step towards the M-step S_data
                C = np.linalg.inv(A.T @ A)
                C = C + min(cov_step, 1.0) * (S_data - C)
                C += 1e-3 * self.reg_covar * np.trace(C) / len(C) * np.eye(len(C))
                new_A[k] = np.linalg.inv(np.linalg.cholesky(0.5 * (C + C.T)))
                continue
            S_model = np.linalg.inv(A.T @ A) + (V * (q - u)[:, None]).T @ V
            E = A @ (S_data - S_model) @ A.T
            new_A[k] = _sym_expm(-cov_step * E, 1.0) @ A
        return new_A, weights

    def _transport(self, means, new_means, A) -> np.ndarray:
        """Precision factors at the new means that keep each covariance's intrinsic shape.

        The tangent coordinates of a learned metric are the ambient ones, in which the
        metric at μ is ``M(μ)``; the covariance in orthonormal coordinates is
        ``M(μ)^{1/2} Σ M(μ)^{1/2}``. Moving μ to μ' keeps that fixed:
        ``Σ' = T Σ Tᵀ`` with ``T = M(μ')^{-1/2} M(μ)^{1/2}``, i.e. ``A' = A T⁻¹``. Without it
        a mean step is judged in a rescaled chart (a Σ fitted where the metric is large is
        too small where it is smaller), and on real data every mean step was rejected.
        Manifolds without ``metric_tensor`` (orthonormal frames) keep ``A``.
        """
        tensor = getattr(self.manifold, "metric_tensor", None)
        if tensor is None:
            return A
        M0, M1 = tensor(np.asarray(means)), tensor(np.asarray(new_means))
        out = np.array(A, copy=True)
        for k in range(len(A)):
            w0, U0 = np.linalg.eigh(0.5 * (M0[k] + M0[k].T))
            w1, U1 = np.linalg.eigh(0.5 * (M1[k] + M1[k].T))
            if min(w0.min(), w1.min()) <= 0 or not (
                np.isfinite(w0).all() and np.isfinite(w1).all()
            ):
                continue
            R0_inv = (U0 / np.sqrt(w0)) @ U0.T
            R1 = (U1 * np.sqrt(w1)) @ U1.T
            out[k] = A[k] @ R0_inv @ R1
        return out

    def _mean_step(self, state, mean_step: float) -> np.ndarray:
        """``μ ← Exp_μ(α_μ d)`` per component, ``d = E_data[Log] − E_model[v]``.

        No retraction onto the data: the volume factor of the normaliser already makes a
        mean off the data (where the learned metric grows) unlikely, and a projection onto
        the local principal subspace of the data moved even a zero step by up to 0.4 (in
        PCA units on pbmc68k_reduced), so that no step was accepted.
        """
        new_means = state["means"].copy()
        for k in range(self.n_components):
            w = self._component_weights(state, k)
            V, q = state["samples"][k]
            u = np.full(len(V), 1.0 / len(V))
            d = w @ state["L"][k] - (q - u) @ V
            new_means[k] = self.manifold.exp(state["means"][k], (mean_step * d)[None])[0]
        return new_means

    # ------------------------------------------------------------------ scoring
    def _check_fitted(self):
        if not hasattr(self, "means_"):
            raise RuntimeError("LANDMixture is not fitted; call fit() first")

    def _logp(self, X):
        self._check_fitted()
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        L, fail, _ = self._logs(X, self.means_, None, None)
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
