"""``scfim.tl.neural_fim`` and ``scfim.tl.neural_fim_transform``: the learned FIM of cells."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import torch
from anndata import AnnData

from .. import _logging as logg
from .._docs import doc_params
from .._keys import neural_fim_keys
from .._progress import progress_bar
from ..geometry.diffusion import DiffusionOperator, build_operator
from ..geometry.graph import KernelSupport
from ..models.chunked import CHUNK_CELLS, is_dask_array, map_cells
from ..models.neural_fim import (
    EIG_RTOL,
    INTRINSIC_MAX_DIM,
    NeuralFIM,
    check_device,
    fit_ensemble,
    intrinsic_dimension,
    leading_log_volume,
    neighbors_from_transitions,
)
from ._basis import new_cells_basis
from ._basis import pca_projection as _pca_projection
from ._store import clean_for_h5ad, fim_ensemble_state, read_fim_ensemble, read_operator
from ._validate import (
    check_bool,
    check_common,
    check_float,
    check_int,
    check_key_added,
    check_use_rep,
    get_rep,
    rep_matrix,
    require_key,
    resolve_rep,
)

__all__ = ["neural_fim", "neural_fim_transform"]

#: Default ``fit_cells`` of :func:`neural_fim`: above it, training runs on a subsample.
FIT_CELLS = 3000


# ---------------------------------------------------------------------- validation
def _check_hidden(hidden: Sequence[int]) -> tuple[int, ...]:
    if isinstance(hidden, (int, np.integer)) or not isinstance(hidden, Sequence) or not hidden:
        raise TypeError(f"hidden must be a non-empty sequence of layer widths, got {hidden!r}")
    return tuple(check_int("hidden width", h) for h in hidden)


def _fields(key_added: str, res: dict[str, np.ndarray]) -> dict[str, str]:
    """Names of the fields written from ``res``: ``fim_*`` for the default key, else ``{key_added}_*``."""
    return {k: v[1] for k, v in neural_fim_keys(key_added).items() if k in res}


# ---------------------------------------------------------------------- training subsample
def _kernel_k(params: dict) -> int:
    """The kernel's k of an operator from its ``uns[diffusion_key]["params"]``.

    ``tl.diffusion`` stores the k it used; files written before it did fall back to the
    k of those versions, 15.
    """
    k = params.get("n_neighbors")
    return 15 if k is None else int(k)


def training_subsample(
    X: np.ndarray, fit_cells: int, params: dict
) -> tuple[np.ndarray, DiffusionOperator]:
    """The training subsample of :func:`neural_fim` and its diffusion operator.

    ``fit_cells`` cells drawn at random with the ``random_state`` of the full operator
    (``params``: the ``uns[diffusion_key]["params"]`` of :func:`scfim.tl.diffusion`), so that
    the subsample belongs to the data side, like the operator's landmarks: refitting with
    another training seed changes the networks, not their training cells. The operator is
    built on the subsample with the same parameters; its kNN graph is searched on the
    subsample itself (a scanpy graph of all cells does not restrict to it) and ``t`` is
    re-selected when it was ``"auto"``.

    Returns
    -------
    fit_obs, operator
        Sorted integer positions of the subsample's cells, and its operator.
    """

    def get(key, default):
        v = params.get(key, default)
        return default if v is None else v

    seed = params.get("random_state", 0)
    seed = None if seed is None or int(seed) < 0 else int(seed)
    rng = np.random.default_rng(seed)
    fit_obs = np.sort(rng.choice(X.shape[0], fit_cells, replace=False))
    t = get("t", "auto")
    n_landmarks = params.get("n_landmarks", "auto")
    if n_landmarks is not None and not isinstance(n_landmarks, str):
        n_landmarks = int(n_landmarks)
    if n_landmarks is None and fit_cells > 10_000:  # the exact operator's limit
        n_landmarks = "auto"
    sigma = params.get("sigma")
    op, _ = build_operator(
        np.ascontiguousarray(X[fit_obs]),
        n_neighbors=_kernel_k(params),
        kernel=str(get("kernel", "alpha_decay")),
        decay=float(get("decay", 40.0)),
        sigma=None if sigma is None else float(sigma),
        alpha=float(get("alpha", 1.0)),
        t="auto" if isinstance(t, str) else int(t),
        n_landmarks=n_landmarks,
        random_state=seed,
    )
    return fit_obs, op


# ---------------------------------------------------------------------- PCA projection
# ---------------------------------------------------------------------- writing
def _volume_frame(
    models: list[NeuralFIM], X: np.ndarray, n_dims: int | None, summaries: list | None = None
) -> tuple[int, float]:
    """``(k, reference)`` of the relative log-volume, measured on the training cells ``X``.

    ``k = n_dims``, or the intrinsic dimension of the pooled spectra of the members
    (:func:`~scfim.models.neural_fim.intrinsic_dimension`); ``reference`` is the median over
    the cells of the ensemble-mean log-volume over the k leading eigenvalues. ``summaries``
    are the members' :meth:`~scfim.models.neural_fim.NeuralFIM.summary` of ``X`` when
    already computed.
    """
    if summaries is None:
        summaries = [m.summary(X) for m in models]
    if n_dims is None:  # the members' spectra pooled, without a (members, cells, r) stack
        k = intrinsic_dimension([s["eigenvalues"] for s in summaries], max_dim=INTRINSIC_MAX_DIM)
    else:
        k = int(n_dims)
    lv = np.stack([leading_log_volume(s["eigenvalues"], k) for s in summaries])
    return k, float(np.median(lv.mean(0)))


def _summaries(
    models: list[NeuralFIM],
    X: np.ndarray,
    n_dims: int,
    reference: float,
    summaries: list | None = None,
    support: KernelSupport | None = None,
) -> dict[str, np.ndarray]:
    """Ensemble-mean per-cell fields (per-cell arrays only; see :func:`_volume_frame`).

    The log-volume is over the ``n_dims`` leading eigenvalues of each member, averaged, minus
    ``reference`` (the training median), so that new cells are measured on the same scale.
    With ``support`` (that of the training cells' kernel), ``outside_fit`` flags the cells
    outside it.
    """
    s = [m.summary(X) for m in models] if summaries is None else summaries
    lv = np.stack([leading_log_volume(x["eigenvalues"], n_dims) for x in s])
    tr = np.stack([x["trace"] for x in s])
    eig = s[0]["eigenvalues"].copy()  # the members' mean without a (members, cells, r) stack
    for x in s[1:]:
        eig += x["eigenvalues"]
    eig /= len(s)
    out = {
        "embedding": models[0].transform(X),
        "log_volume": lv.mean(0) - reference,
        "trace": tr.mean(0),
        "eigenvalues": eig,
    }
    out["volume"] = np.exp(out["log_volume"])
    if len(models) > 1:
        out["log_volume_std"] = lv.std(0, ddof=1)
        out["trace_std"] = tr.std(0, ddof=1)
    if support is not None:
        out["outside_fit"] = support.outside(X)
    return out


def _write(adata: AnnData, res: dict[str, np.ndarray], key_added: str) -> list[tuple[str, str]]:
    keys = neural_fim_keys(key_added)
    adata.obsm[keys["embedding"][1]] = res["embedding"].astype(np.float32)
    adata.obsm[keys["eigenvalues"][1]] = res["eigenvalues"]
    written = [keys["embedding"], keys["eigenvalues"]]
    for k in ("volume", "log_volume", "trace", "log_volume_std", "trace_std", "outside_fit"):
        if k in res:
            adata.obs[keys[k][1]] = res[k]
            written.append(keys[k])
        elif keys[k][1] in adata.obs:  # an earlier run's field (an ensemble's spread, a
            del adata.obs[keys[k][1]]  # subsample's flag) this run lacks: not left looking current
            logg.info(f"    removed {keys[k][1]!r} (adata.obs) of an earlier run")
    return [*written, keys["uns"]]


def _log_outside(outside: np.ndarray, names, key_added: str, of: str, remedy: str) -> None:
    """Say which cells lie outside the training kernel's reach (a warning from 1 %)."""
    n_out = int(np.count_nonzero(outside))
    if n_out == 0:
        logg.info(f"    every cell lies within the reach of the diffusion kernel of {of}")
        return
    col = neural_fim_keys(key_added)["outside_fit"][1]
    first = ", ".join(map(str, np.asarray(names)[np.flatnonzero(outside)[:5]]))
    msg = (
        f"{n_out} of {outside.size} cells ({100 * n_out / outside.size:.2g} %) lie outside the "
        f"reach of the diffusion kernel of {of} (obs[{col!r}]: {first}"
        f"{', …' if n_out > 5 else ''}); their FIM values are the networks' extrapolation: "
        f"{remedy} to include them"
    )
    if n_out >= 0.01 * outside.size:
        logg.warning(msg)
    else:
        logg.info(f"    {msg}")


# ---------------------------------------------------------------------- public
@doc_params()
def neural_fim(
    adata: AnnData,
    *,
    n_components: int = 20,
    hidden: Sequence[int] = (100, 100),
    activation: str = "silu",
    epochs: int = 300,
    batch_size: int = 512,
    lr: float = 1e-2,
    max_pairs: int = 1_500_000,
    n_ensemble: int = 5,
    n_dims: int | None = None,
    fit_cells: int | None = FIT_CELLS,
    num_threads: int | None = 1,
    device: str = "cpu",
    diffusion_key: str = "diffusion",
    random_state: int | None = 0,
    progress: bool = True,
    key_added: str = "neural_fim",
    copy: bool = False,
) -> AnnData | None:
    """Train neural FIM on the diffusion operator and write the per-cell Fisher information.

    An MLP ``φ`` (SiLU after every hidden layer, softmax output of size ``n_components``)
    maps the input representation of :func:`scfim.tl.diffusion` (its ``use_rep``) to the
    probability simplex so that ``√JS(φ(x), φ(y)) ≈ √JS(Pᵗ(x,·), Pᵗ(y,·))`` on pairs of
    cells (Fasina et al. 2023, Eq. 6): half of the partners uniformly random (the global
    layout), half among the cells a diffusion step most likely reaches (the local speed of
    φ, which is what the metric measures). Training runs until the held-out loss stops
    improving under a decaying learning rate. Each cell's metric is the Fisher information
    of the categorical distribution ``φ(x)``, ``g(x) = Σ_k φ_k ∇log φ_k ∇log φ_kᵀ`` (see
    :mod:`scfim.models.neural_fim`), of rank at most ``r = min(d, n_components − 1)``.
    By default five networks with different seeds are trained and their per-cell fields
    averaged: single networks agree on the branch points but their per-cell values differ
    more between training seeds than the mean of five does. The members are trained
    together as one batched network on shared pairs (each with its own initialisation,
    learning-rate schedule and early stopping; :func:`~scfim.models.neural_fim.fit_ensemble`),
    so that an ensemble costs far less than as many separate fits. Above ``fit_cells``
    cells the networks are trained on a subsample of that many cells, with its own
    diffusion operator, and evaluated on every cell: the per-cell FIM of denser data is
    otherwise far less reproducible between training seeds (see ``fit_cells``).

    The volume is measured on the ``k`` leading eigenvalues of g, ``k`` the intrinsic
    dimension (the participation ratio of the FIM spectrum, or ``n_dims``): the other
    eigenvalues are directions the diffusion operator hardly distinguishes. It is written
    relative to the median cell, so that values read as "× the typical cell". The networks
    learn the operator, so the volume's resolution is the operator's: on uniform points on
    a sphere (where it should be flat) it varies by 7–9 % (coefficient of variation
    over cells) with the default 30-NN kernel of :func:`scfim.tl.diffusion`, and by about
    10 % with scanpy's ``n_neighbors=15``, because a wider kernel averages each row of the
    operator over more cells.

    Parameters
    ----------
    adata
        Annotated data on which :func:`scfim.tl.diffusion` ran.
    n_components
        Size of the output simplex (≥ 2, and at most the number of diffusion states).
    hidden
        Hidden layer widths.
    activation
        ``"silu"``, ``"softplus"`` or ``"relu"`` (the paper's; its metric is piecewise
        constant and less reproducible between seeds).
    epochs
        Maximal number of epochs (an epoch visits every cell, at least 4096 pairs); also
        bounded by ``max_pairs`` and cut by early stopping on held-out pairs, which are
        checked after every epoch, or every 9216 training pairs (a round) when an epoch
        is longer.
    batch_size
        Cells per optimisation step (half of them anchors, half their near partners; the
        pairs are taken among the batch's cells).
    lr
        Initial AdamW learning rate (halved when the held-out loss stalls).
    max_pairs
        Bound on the number of training pairs of each network (near and random pairs).
    n_ensemble
        Number of independently initialised networks (seeds ``random_state + i``); the
        per-cell fields are their mean, with standard deviations written alongside.
    n_dims
        Number of leading eigenvalues of g in the log-volume; None estimates the intrinsic
        dimension from the spectra (:func:`~scfim.models.neural_fim.intrinsic_dimension`).
    fit_cells
        Above this many cells the networks are trained on a random subsample of
        ``fit_cells`` cells, with a diffusion operator built on the subsample with the
        parameters of ``diffusion_key`` (the same kernel, ``n_neighbors``, ``alpha`` and
        ``t``, re-selected when it was ``"auto"``); the per-cell fields are evaluated on
        all cells. The subsample is drawn with the operator's ``random_state`` (it belongs
        to the data, like the operator's landmarks), so that another ``random_state`` here
        trains other networks on the same cells. On denser data the operator's kernel is
        narrower (its bandwidth is the distance to the k-th neighbour) and its rows resolve
        finer, noisier detail, which the networks fit less reproducibly: on the 20-branch
        100-D toy tree, two fits (seeds 0 and 10) trained on all cells agree cell by cell
        at Pearson 0.87 (log-volume) and 0.82 (trace) at 20 000 cells and 0.85 / 0.72 at
        100 000, against 0.96 / 0.97 at 3000 cells; trained on a 3000-cell subsample they
        agree at 0.96 / 0.97 (20 000 cells) and 0.97 / 0.96 (100 000 cells). Training then
        costs the same at every size. A population of fewer than about
        ``n_obs / fit_cells`` cells may have no cell in the subsample, so that its values
        are the networks' extrapolation: such cells, when they lie beyond the reach of the
        subsample's kernel, are flagged in ``obs["fim_outside_fit"]`` (and counted in the
        log; a warning from 1 % of the cells). A population with even one cell in the
        subsample is within reach (that cell's kernel row joins it to the rest) and is
        not flagged, although its values then rest on that cell. Raise ``fit_cells`` for
        rare populations.
        None trains on all cells with the operator of ``diffusion_key``.
    num_threads
        Torch threads for the training (None: torch's setting). One thread is the fastest
        on a busy machine (on a 2-core machine under load, two threads were several times
        slower); on an idle machine more threads shorten the wall time at a higher CPU
        cost (whole pipeline on the 3000-cell toy tree, idle 2-core machine: 41.5 s wall /
        42.5 s CPU with one thread, 31.9 s / 60.1 s with two). A fit is bit-reproducible
        for a given thread count, not across counts.
    device
        Torch device (``"cpu"``, ``"cuda"``…).
    diffusion_key
        ``key_added`` of :func:`scfim.tl.diffusion`.
    {random_state}
    {progress}
    {key_added}
    {copy}

    Returns
    -------
    AnnData or None
        None, or the modified copy when ``copy=True``. With the default ``key_added`` writes
        (otherwise ``fim`` in these names is replaced by ``key_added``):

        ``adata.obsm["X_neural_fim"]``
            ``(n_obs, n_components)`` probabilities ``φ(x)`` (first ensemble member: the output
            coordinates of different members are not aligned);
        ``adata.obs["fim_log_volume"]``
            log of the relative volume: ``½ Σ_{i ≤ k} log λ_i`` over the ``k`` leading
            eigenvalues of g (each clamped below at ``1e-10 · λ_1``; ensemble mean) minus its
            median over the cells (0 for the median cell; the subtracted value is
            ``uns[key_added]["log_volume_reference"]``);
        ``adata.obs["fim_volume"]``
            ``exp(fim_log_volume)``: the Riemannian volume element relative to the median
            cell (1 = typical, 2 = twice its volume);
        ``adata.obs["fim_trace"]``
            ``tr g(x)`` (ensemble mean);
        ``adata.obsm["fim_eigenvalues"]``
            ``(n_obs, r)`` eigenvalues of g, descending (ensemble mean);
        ``adata.obs["fim_log_volume_std"]``, ``adata.obs["fim_trace_std"]``
            standard deviations over the ensemble (only when ``n_ensemble > 1``);
        ``adata.obs["fim_outside_fit"]``
            only when the networks were trained on a subsample (``fit_cells``): True for a
            cell farther from every training cell ``j`` than ``j``'s k-th nearest training
            cell (k = the operator's ``n_neighbors``), i.e. outside the reach of the
            subsample's kernel, so that no row of the operator the networks learned saw
            it and its values are extrapolated;
        ``adata.uns[key_added]``
            ``params`` (including ``use_rep``), ``train_loss`` / ``val_loss`` (one array per
            member, one value per round: an epoch, or 9216 training pairs; keyed by the
            member's index as a string, since h5ad keys are strings: member 0 is
            ``val_loss["0"]``), ``models`` (per member, the model state as NumPy arrays,
            see :meth:`~scfim.models.neural_fim.NeuralFIM.to_dict`), ``fit_seconds`` (wall
            time of the joint training of the members), ``fields``
            (the names above) and, when ``use_rep="X_pca"`` can be reproduced from
            ``adata.X`` and ``varm["PCs"]``, ``pca`` (the mean scanpy centred with) for
            :func:`neural_fim_transform`; ``intrinsic_dim`` (``k``), ``n_dims_estimated``
            and ``log_volume_reference``; when the networks were trained on a subsample
            (``fit_cells``), ``fit_obs`` (the integer positions of its cells) and
            ``fit_operator`` (``t`` and ``n_states`` of its diffusion operator).

    Raises
    ------
    ValueError, KeyError, TypeError
        On invalid input; ``adata`` is then left unchanged.
    """
    # ---------------- validate everything before touching adata
    n_components = check_int("n_components", n_components, minimum=2)
    hidden = _check_hidden(hidden)
    epochs = check_int("epochs", epochs)
    batch_size = check_int("batch_size", batch_size)
    max_pairs = check_int("max_pairs", max_pairs)
    n_ensemble = check_int("n_ensemble", n_ensemble)
    lr = check_float("lr", lr, minimum=0, exclusive_minimum=True)
    if n_dims is not None:
        n_dims = check_int("n_dims", n_dims)
    if fit_cells is not None:
        fit_cells = check_int("fit_cells", fit_cells, minimum=100)
    if num_threads is not None:
        num_threads = check_int("num_threads", num_threads)
    if activation not in ("silu", "softplus", "relu"):
        raise ValueError(f"activation must be 'silu', 'softplus' or 'relu', got {activation!r}")
    dev = check_device(device)
    progress = check_bool("progress", progress)
    random_state = check_common(random_state, key_added, copy)
    check_key_added(diffusion_key, "diffusion_key")
    info = require_key(adata, diffusion_key, "diffusion")
    use_rep = info.get("params", {}).get("use_rep")
    if use_rep is None:
        raise KeyError(f"adata.uns[{diffusion_key!r}]['params']['use_rep'] is missing")
    use_rep = str(use_rep)
    op = read_operator(adata, diffusion_key)
    X, use_rep = get_rep(adata, use_rep)
    if X.shape[0] != op.n_obs:
        raise ValueError(f"the diffusion operator has {op.n_obs} cells, adata has {X.shape[0]}")
    pca = _pca_projection(adata, X) if use_rep == "X_pca" else None
    # the operator the networks learn: that of diffusion_key, or of the training subsample
    fit_obs = None
    if fit_cells is not None and X.shape[0] > fit_cells:
        fit_obs, op = training_subsample(X, fit_cells, info.get("params", {}))
    if n_components > op.n_states:
        of = "" if fit_obs is None else f" of the {fit_cells}-cell training subsample"
        hint = "" if fit_obs is None else "; lower n_components or raise fit_cells"
        raise ValueError(
            f"n_components={n_components} exceeds the number of diffusion states{of} "
            f"({op.n_states}){hint}"
        )

    # ---------------- compute
    X_fit = X if fit_obs is None else X[fit_obs]
    neighbors = neighbors_from_transitions(op.transitions, 15)
    start = logg.info(
        f"training neural FIM ({n_ensemble} network{'s' if n_ensemble > 1 else ''}) "
        f"on {X_fit.shape[0]} cells (use_rep={use_rep!r})"
        + ("" if fit_obs is None else f", a random subsample of the {X.shape[0]} cells")
    )
    models = [
        NeuralFIM(
            n_components,
            hidden,
            activation=activation,
            epochs=epochs,
            max_pairs=max_pairs,
            batch_size=batch_size,
            lr=lr,
            random_state=None if random_state is None else random_state + i,
            device=dev,
            num_threads=num_threads,
            progress=progress,
        )
        for i in range(n_ensemble)
    ]
    fit_ensemble(models, X_fit, partial(op.rows, dtype=np.float32), neighbors)
    for i, model in enumerate(models):
        logg.info(
            f"    member {i}: {model.history_['val_loss'].size} rounds, held-out loss "
            f"{float(model.history_['best_val_loss']):.4g}"
        )
    if fit_obs is not None:
        logg.info(f"    evaluating the per-cell FIM of all {X.shape[0]} cells")
    # once, for the frame and the fields (about 40 µs a cell and network on one core: a
    # bar over the networks, since a million cells take minutes)
    outside = None
    if fit_obs is not None:  # the cells the training subsample's kernel does not reach
        k_fit = _kernel_k(info.get("params", {}))
        outside = KernelSupport.of(X_fit, k_fit).outside(X)  # before the per-cell arrays
        _log_outside(
            outside, adata.obs_names, key_added, "the training subsample", "raise fit_cells"
        )
    bar = progress_bar(models, desc="per-cell FIM", unit="network", progress=progress)
    summaries = [m.summary(X) for m in bar]
    k, reference = _volume_frame(models, X, n_dims, summaries)
    res = _summaries(models, X, k, reference, summaries)
    if outside is not None:
        res["outside_fit"] = outside

    # ---------------- write
    adata = adata.copy() if copy else adata
    fields = _write(adata, res, key_added)
    uns = {
        "params": {
            "n_components": n_components,
            "hidden": np.asarray(hidden, dtype=np.int64),
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "max_pairs": max_pairs,
            "activation": activation,
            "n_ensemble": n_ensemble,
            "n_dims": -1 if n_dims is None else n_dims,
            "fit_cells": -1 if fit_cells is None else fit_cells,
            "num_threads": -1 if num_threads is None else num_threads,
            "device": str(dev),
            "diffusion_key": diffusion_key,
            "random_state": random_state,
            "use_rep": use_rep,
            "eig_rtol": EIG_RTOL,
        },
        "models": fim_ensemble_state(models),
        "train_loss": {str(i): m.history_["train_loss"] for i, m in enumerate(models)},
        "val_loss": {str(i): m.history_["val_loss"] for i, m in enumerate(models)},
        "fit_seconds": float(models[0].history_["fit_seconds"]),
        "fields": _fields(key_added, res),
        "pca": pca,
        "intrinsic_dim": k,
        "n_dims_estimated": n_dims is None,
        "log_volume_reference": reference,
    }
    if fit_obs is not None:
        uns["fit_obs"] = fit_obs.astype(np.int64)
        uns["fit_operator"] = {"t": int(op.t), "n_states": int(op.n_states)}
    adata.uns[key_added] = clean_for_h5ad(uns)
    logg.info("    finished", time=start, deep=logg.added(fields))
    return adata if copy else None


def _training_support(model_from: AnnData, info: dict, train_rep: str) -> KernelSupport | None:
    """The support of the kernel the networks of ``model_from`` were trained on.

    Its training cells (``fit_obs``, or all its cells) in the training basis, with the k of
    its diffusion operator; None when ``model_from`` no longer holds them (then no cell is
    flagged).
    """
    import scipy.sparse as sp

    diffusion = model_from.uns.get(str(info["params"].get("diffusion_key", "diffusion")), {})
    k = diffusion.get("params", {}).get("n_neighbors") if isinstance(diffusion, dict) else None
    try:
        M = rep_matrix(model_from, resolve_rep(model_from, train_rep))
    except (KeyError, ValueError):
        M = None
    if k is None or M is None:
        logg.info("    model_from holds no training cells or kernel: no cell is flagged")
        return None
    if "fit_obs" in info:  # only the training rows, never a dense copy of all cells
        M = M[np.asarray(info["fit_obs"], dtype=np.int64)]
    if is_dask_array(M):
        M = M.compute()
    X_ref = M.toarray() if sp.issparse(M) else np.asarray(M)
    return KernelSupport.of(X_ref, int(k))


def _models_from(model_from: AnnData, key: str, device: torch.device) -> tuple[list, dict]:
    return read_fim_ensemble(model_from, key, device=device, what="model_from")


def neural_fim_transform(
    adata_new: AnnData,
    model_from: AnnData,
    *,
    key_added: str = "neural_fim",
    use_rep: str | None = None,
    device: str = "cpu",
    chunk_size: int = CHUNK_CELLS,
    store: str | None = None,
    progress: bool = False,
    copy: bool = False,
) -> AnnData | None:
    """Per-cell FIM fields of trained neural FIM model(s) for new cells.

    New cells must be in the input basis the models were trained in. By default:

    - trained on ``X``: ``adata_new.X``, with genes matched by ``var_names``;
    - trained on ``X_pca``: ``adata_new.obsm["X_pca"]`` when it comes from the same PCA
      (``adata_new.varm["PCs"]`` identical to ``model_from``'s, e.g. both are subsets of
      one object after ``sc.pp.pca``); otherwise ``adata_new.X`` projected on
      ``model_from.varm["PCs"]`` (genes matched by name, the projected centre recovered
      from ``model_from``'s cells) when those loadings are finite and reproduce
      ``model_from.obsm["X_pca"]``; PCA is *not* refitted;
    - any other representation, or a PCA that cannot be replayed: an error that says
      why and what to pass as ``use_rep``.

    ``use_rep`` names an ``adata_new`` representation that is already in the training
    basis (e.g. ``"X_pca"`` after projecting it yourself); it is used as is.

    **Out of core.** When the input (``X`` or the ``obsm`` entry) is a dask array, e.g. an
    AnnData read lazily with :func:`anndata.experimental.read_elem_lazy`, the cells are
    processed chunk by chunk (:func:`scfim.models.chunked.map_cells`) on the active dask
    scheduler (threads, or a ``dask.distributed`` cluster) and the input is never
    materialised. The per-cell ``obs`` columns are then held in memory; the ``obsm``
    fields are NumPy arrays, or, with ``store``, dask arrays reading from a zarr store
    written in the same pass, so that memory stays bounded by a few chunks. NaN or
    infinite values of a dask input are detected chunk by chunk and raise then
    (``adata_new`` is still left unchanged; ``store`` may hold partial results).

    Parameters
    ----------
    adata_new
        Cells to evaluate.
    model_from
        AnnData on which :func:`neural_fim` ran.
    key_added
        ``key_added`` of that :func:`neural_fim` call; the same names are written here.
    use_rep
        ``adata_new.obsm`` key in the training basis, used without projection.
    device
        Torch device for the evaluation.
    chunk_size
        Dask input only: largest number of cells per chunk (bigger chunks are split).
    store
        Dask input only: path of a zarr store (directory, overwritten) receiving the
        per-cell arrays; the ``obsm`` fields are then dask arrays backed by it.
    progress
        Dask input on a local scheduler: show a progress bar over the chunks.
    copy
        Return a modified copy instead of writing into ``adata_new``.

    Returns
    -------
    AnnData or None
        None, or the modified copy. Writes the same per-cell fields as :func:`neural_fim`
        (``obsm["X_neural_fim"]``, ``obs["fim_volume"]``, ``obs["fim_log_volume"]``,
        ``obs["fim_trace"]``, ``obsm["fim_eigenvalues"]`` and, for ensembles,
        ``obs["fim_log_volume_std"]``, ``obs["fim_trace_std"]``), ``obs["fim_outside_fit"]``
        (True for a new cell outside the reach of the kernel on ``model_from``'s training
        cells, whose values are extrapolated; not written when ``model_from`` no longer
        holds those cells or its diffusion parameters), and ``adata_new.uns[key_added]``
        with ``params`` (``model_from``'s, plus ``transform_rep``).

    Raises
    ------
    ValueError, KeyError, TypeError
        On invalid input; ``adata_new`` is then left unchanged.
    """
    check_key_added(key_added)
    check_use_rep(use_rep)
    check_bool("copy", copy)
    check_bool("progress", progress)
    dev = check_device(device)
    models, info = _models_from(model_from, key_added, dev)
    params = dict(info["params"])
    train_rep = str(params["use_rep"])
    d = models[0].n_features_
    X, rep = new_cells_basis(adata_new, model_from, train_rep, use_rep=use_rep, n_features=d)
    lazy = is_dask_array(X)  # a dask input stays lazy: evaluated chunk by chunk
    chunk_size = check_int("chunk_size", chunk_size)
    if store is not None and not lazy:
        raise ValueError("store= is for a dask-backed input; this input is in memory")
    start = logg.info(f"evaluating {len(models)} neural FIM model(s) on {X.shape[0]} new cells")
    if "intrinsic_dim" in info and "log_volume_reference" in info:
        k, reference = int(info["intrinsic_dim"]), float(info["log_volume_reference"])
    elif lazy:
        raise ValueError(
            "model_from was trained before the relative volume was stored; refit it, or "
            "transform an in-memory input"
        )
    else:  # models stored before the relative volume: measured on these cells
        k, reference = _volume_frame(models, X, None)
    support = _training_support(model_from, info, train_rep)
    if lazy:
        fn = partial(_summaries, models, n_dims=k, reference=reference, support=support)
        res = map_cells(fn, X, chunk_size=chunk_size, store=store, progress=progress)
        res = {name: np.asarray(v) if v.ndim == 1 else v for name, v in res.items()}  # obs
    else:
        res = _summaries(models, X, k, reference, support=support)
    if support is not None:
        _log_outside(
            res["outside_fit"],
            adata_new.obs_names,
            key_added,
            "model_from's training cells",
            "add such cells to the training data",
        )

    adata_new = adata_new.copy() if copy else adata_new
    fields = _write(adata_new, res, key_added)
    params["transform_rep"] = rep
    adata_new.uns[key_added] = clean_for_h5ad({"params": params, "fields": _fields(key_added, res)})
    logg.info("    finished", time=start, deep=logg.added(fields))
    return adata_new if copy else None
